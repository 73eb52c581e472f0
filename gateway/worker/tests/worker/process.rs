//! The worker process (issue 3 item 1): uninstall events, SIGTERM, broker reconnects,
//! Redis away.

use spritz_proto::{SlackEvent, SlackEventKind};
use spritz_sandbox::isolation;

use crate::support::{TEAM, WAIT, World};

#[tokio::test]
async fn app_uninstalled_disconnects_at_the_backend_with_retries_and_drops_the_session() {
    let mut world = World::new().await;
    let ops = world.spawn_worker().await;
    let hello = world.direct_message("hi");
    world.publish(&hello).await;
    world.posts(1).await;

    world.backend.fail_next_disconnects(1, 503);
    let mut uninstall = SlackEvent::new(
        chrono::Utc::now(),
        "EvUninstall".into(),
        TEAM.into(),
        SlackEventKind::AppUninstalled,
    );
    uninstall.api_app_id = Some(world.install.api_app_id.clone());
    world.publish(&uninstall).await;
    let disconnects = world
        .backend
        .wait_for_disconnects(1, WAIT)
        .await
        .expect("disconnect");
    assert_eq!(disconnects[0]["externalTenantId"], TEAM);
    world
        .metric_reaches(
            ops,
            "spritz_worker_deliveries_total{outcome=\"disconnected\"}",
            1.0,
        )
        .await;
    assert_eq!(
        world
            .metric(ops, "spritz_worker_retries_total{stage=\"disconnect\"}")
            .await,
        1.0
    );

    // Installed again (the fake backend forgot the team on disconnect).
    world.backend.install_team(world.install.clone());
    let again = world.direct_message("still there?");
    world.publish(&again).await;
    world.posts(2).await;
    assert_eq!(
        world.backend.exchange_calls(TEAM),
        2,
        "the team's session was dropped"
    );
    world.finish().await;
}

#[tokio::test]
async fn sigterm_finishes_the_delivery_in_flight_and_takes_no_new_work() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    world.spritz.hold_prompts();
    let first = world.channel_message("finish me");
    world.publish(&first).await;
    world
        .spritz
        .wait_for_prompts(1, WAIT)
        .await
        .expect("prompt");

    let stopped = world.stop_worker(0).await;
    let second = world.channel_message("not now");
    world.publish(&second).await;
    world.spritz.release_prompts();
    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, "echo: finish me");
    tokio::time::timeout(WAIT, stopped)
        .await
        .expect("worker exits")
        .expect("cleanly");
    world
        .wait_for_ready(spritz_proto::topology::WORK_QUEUE, 1)
        .await
        .expect("the new message waits for another worker");
    assert_eq!(world.spritz.prompts().len(), 1);
    world.finish().await;
}

#[tokio::test]
async fn a_delivery_still_running_when_the_grace_period_ends_is_handed_back() {
    let mut world = World::new().await;
    let mut config = world.config();
    config.shutdown_grace = std::time::Duration::from_millis(300);
    world.spawn_worker_with(config).await;
    world.spritz.hold_prompts();
    let event = world.channel_message("too slow to finish");
    world.publish(&event).await;
    world
        .spritz
        .wait_for_prompts(1, WAIT)
        .await
        .expect("prompt");

    let stopped = world.stop_worker(0).await;
    tokio::time::timeout(WAIT, stopped)
        .await
        .expect("worker exits within the grace")
        .expect("cleanly");
    world
        .wait_for_ready(spritz_proto::topology::WORK_QUEUE, 1)
        .await
        .expect("handed back to the queue");

    // The prompt had reached the agent: the next worker must not send it again.
    world.spritz.release_prompts();
    world.spawn_worker().await;
    // Only the internal-error reply counts here (whatever else was posted before it).
    let slack = &world.slack;
    isolation::eventually(WAIT, || async move {
        slack
            .posts()
            .iter()
            .any(|p| p.text == crate::support::INTERNAL)
            .then_some(())
    })
    .await
    .expect("the internal-error reply");
    world.settled().await;
    assert_eq!(world.spritz.prompts().len(), 1);
    world.finish().await;
}

#[tokio::test]
async fn the_worker_resumes_consuming_after_the_broker_connection_drops() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    let before = world.direct_message("before");
    world.publish(&before).await;
    world.posts(1).await;

    world
        .vhost
        .close_connections()
        .await
        .expect("connections closed");
    let after = world.direct_message("after");
    let body = serde_json::to_vec(&after).expect("json");
    let world_ref = &world;
    let body = &body;
    let id = after.event_id.as_str();
    isolation::eventually(WAIT, || async move {
        let envelope = spritz_proto::properties::Envelope::new(
            id,
            spritz_proto::MessageType::SlackEvent,
            spritz_proto::traceparent::TraceParent::new_root(),
        );
        world_ref
            .publisher
            .publish(
                spritz_proto::topology::WORK_EXCHANGE,
                spritz_proto::topology::WORK_ROUTING_KEY,
                body,
                &envelope,
            )
            .await
            .ok()
    })
    .await
    .expect("published after reconnect");
    let posts = world.posts(2).await;
    assert_eq!(posts[1].text, "echo: after");
    world.finish().await;
}

#[tokio::test]
async fn without_redis_deliveries_are_retried_and_never_processed_unclaimed() {
    let mut world = World::new().await;
    let mut config = world.config();
    config.redis_url = "redis://127.0.0.1:1".into();
    let ops = world.spawn_worker_unready(config).await;
    let event = world.channel_message("no ledger");
    world.publish(&event).await;

    world
        .metric_reaches(ops, "spritz_worker_retries_total{stage=\"ledger\"}", 3.0)
        .await;
    assert!(world.spritz.prompts().is_empty());
    assert!(world.slack.posts().is_empty());
    assert_eq!(world.backend.exchange_calls(TEAM), 0);
    let ready = reqwest::get(format!("http://{ops}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503, "not ready without redis");
    world.finish().await;
}

#[tokio::test]
async fn the_worker_comes_back_when_the_broker_cancels_its_consumer() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    let before = world.direct_message("before");
    world.publish(&before).await;
    world.posts(1).await;

    // Deleting the work queue makes the broker cancel every consumer of it.
    let link = world.publisher.link().expect("publisher linked");
    let channel = link.create_channel().await.expect("channel");
    channel
        .queue_delete(
            spritz_proto::topology::WORK_QUEUE.into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .expect("queue deleted");

    // The worker reconnects and redeclares the queue; then a new message is answered.
    let after = world.direct_message("after");
    let world_ref = &world;
    let after_ref = &after;
    isolation::eventually(WAIT, || async move {
        let body = serde_json::to_vec(after_ref).ok()?;
        let envelope = spritz_proto::properties::Envelope::new(
            after_ref.event_id.as_str(),
            spritz_proto::MessageType::SlackEvent,
            spritz_proto::traceparent::TraceParent::new_root(),
        );
        world_ref
            .publisher
            .publish(
                spritz_proto::topology::WORK_EXCHANGE,
                spritz_proto::topology::WORK_ROUTING_KEY,
                &body,
                &envelope,
            )
            .await
            .ok()
    })
    .await
    .expect("published once the queue is back");
    let posts = world.posts(2).await;
    assert_eq!(posts[1].text, "echo: after");
    world.finish().await;
}
