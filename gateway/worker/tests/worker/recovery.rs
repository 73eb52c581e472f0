//! SPEC §5.2–5.3 recovery: a stale, missing or waking runtime; the one status message;
//! the deadline; drops.

use std::time::Duration;

use spritz_sandbox::backend::ExchangeMode;
use spritz_sandbox::spritz_api::SpritzCall;

use crate::support::{
    NO_DEADLINE, STATUS, STATUS_AT_ONCE, TEAM, TERMINAL, WAIT, World, timing, with_text,
};

#[tokio::test]
async fn fast_recovery_under_the_threshold_posts_no_status_message() {
    let mut world = World::new().await;
    // The threshold is far off: however slow the machine, the recovery ends under it.
    world.spawn_worker().await;
    world
        .backend
        .script_exchange(TEAM, vec![ExchangeMode::Unavailable]);
    let event = world.channel_message("wake up");
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, "echo: wake up");
    world.settled().await;
    assert_eq!(
        world.slack.posts().len(),
        1,
        "no status message under the threshold"
    );
    assert_eq!(world.backend.exchange_calls(TEAM), 2);
    world.finish().await;
}

#[tokio::test]
async fn slow_recovery_posts_one_status_message_then_the_reply() {
    let mut world = World::new().await;
    let ops = world.spawn_worker_timed(STATUS_AT_ONCE, NO_DEADLINE).await;
    world
        .backend
        .script_exchange(TEAM, vec![ExchangeMode::Unavailable; 6]);
    let event = world.thread_message("1690000000.000009", "are you there?");
    world.publish(&event).await;

    let posts = world.posts(2).await;
    assert_eq!(posts[0].text, STATUS);
    assert_eq!(
        posts[0].thread_ts.as_deref(),
        Some("1690000000.000009"),
        "status in the source thread"
    );
    assert_eq!(posts[1].text, "echo: are you there?");
    world.settled().await;
    assert_eq!(with_text(&world.slack.posts(), STATUS).len(), 1);
    assert_eq!(world.spritz.prompts().len(), 1);
    assert_eq!(
        world
            .metric(ops, "spritz_worker_deliveries_total{outcome=\"recovered\"}")
            .await,
        1.0
    );
    assert_eq!(
        world
            .metric(
                ops,
                "spritz_worker_status_messages_total{purpose=\"runtime-recovery\"}"
            )
            .await,
        1.0
    );
    assert!(
        world
            .metric(ops, "spritz_worker_retries_total{stage=\"session\"}")
            .await
            >= 6.0
    );
    world.finish().await;
}

#[tokio::test]
async fn a_runtime_vanishing_after_exchange_recovers_with_still_one_status_message() {
    let mut world = World::new().await;
    world.spawn_worker_timed(STATUS_AT_ONCE, NO_DEADLINE).await;
    let (namespace, instance) = (
        world.install.namespace.clone(),
        world.install.instance_id.clone(),
    );
    // Waking up past the threshold (status posted), then the runtime it resolved to
    // vanishes under the upsert: recovery again, without a second status message.
    world
        .backend
        .script_exchange(TEAM, vec![ExchangeMode::Unavailable; 3]);
    world.spritz.vanish_instance(&namespace, &instance);
    let event = world.channel_message("still there?");
    world.publish(&event).await;

    let first = world.posts(1).await;
    assert_eq!(first[0].text, STATUS);
    world
        .backend
        .wait_for_exchange_calls(TEAM, 5, WAIT)
        .await
        .expect("exchanges continue");
    world.spritz.restore_instance(&namespace, &instance);

    let posts = world.posts(2).await;
    assert_eq!(posts[1].text, "echo: still there?");
    world.settled().await;
    assert_eq!(with_text(&world.slack.posts(), STATUS).len(), 1);
    assert_eq!(world.spritz.prompts().len(), 1);
    world.finish().await;
}

#[tokio::test]
async fn a_prompt_slower_than_the_threshold_gets_the_status_message() {
    let mut world = World::new().await;
    world.spawn_worker_timed(STATUS_AT_ONCE, NO_DEADLINE).await;
    // The agent answers only once the status message is there: the prompt is slower
    // than the threshold by construction, not by a race against it.
    world.spritz.hold_prompts();
    let event = world.channel_message("think hard");
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, STATUS);
    world.spritz.release_prompts();
    let posts = world.posts(2).await;
    assert_eq!(posts[1].text, "echo: think hard");
    world.settled().await;
    assert_eq!(world.slack.posts().len(), 2);
    assert_eq!(world.spritz.prompts().len(), 1);
    world.finish().await;
}

#[tokio::test]
async fn the_deadline_posts_the_failure_reply_once() {
    let mut world = World::new().await;
    let deadline = timing().processing_timeout;
    let ops = world.spawn_worker_timed(STATUS_AT_ONCE, deadline).await;
    world
        .backend
        .set_exchange_mode(TEAM, ExchangeMode::Unavailable);
    let event = world.channel_message("never mind");
    world.publish(&event).await;

    let posts = world.posts(2).await;
    assert_eq!(posts[0].text, STATUS);
    assert_eq!(posts[1].text, TERMINAL);
    // The worker posts it only once its clock is past the deadline, so ours is too
    // (the boundary itself is tested in milliseconds in `pipeline::deadlines`).
    assert!(
        chrono::Utc::now() >= event.received_at + chrono::Duration::from_std(deadline).expect("ms"),
        "not before the deadline"
    );
    world
        .metric_reaches(
            ops,
            "spritz_worker_deliveries_total{outcome=\"failed_terminal\"}",
            1.0,
        )
        .await;
    world.settled().await;
    assert_eq!(world.slack.posts().len(), 2);
    assert!(world.spritz.prompts().is_empty());
    world.finish().await;
}

#[tokio::test]
async fn a_transient_backend_error_during_recovery_keeps_recovering() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    world.backend.script_exchange(
        TEAM,
        vec![
            ExchangeMode::Transient(503),
            ExchangeMode::Unavailable,
            ExchangeMode::Transient(500),
            ExchangeMode::Transient(502),
        ],
    );
    let event = world.channel_message("flaky");
    world.publish(&event).await;

    let posts = world.posts(1).await;
    let reply = posts.iter().find(|p| p.text == "echo: flaky");
    let posts = if reply.is_some() {
        posts
    } else {
        world.posts(2).await
    };
    assert!(posts.iter().any(|p| p.text == "echo: flaky"));
    world.settled().await;
    assert!(with_text(&world.slack.posts(), STATUS).len() <= 1);
    assert_eq!(world.backend.exchange_calls(TEAM), 5);
    world.finish().await;
}

#[tokio::test]
async fn a_deadline_without_any_bot_token_parks_the_message() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    world
        .backend
        .set_exchange_mode(TEAM, ExchangeMode::Transient(503));
    let event = world.channel_message("nobody hears");
    world.publish(&event).await;

    world
        .wait_for_ready(spritz_proto::topology::PARKING_LOT_QUEUE, 1)
        .await
        .expect("parked");
    assert!(world.slack.posts().is_empty());
    let parked = spritz_worker::dlq::list(&world.publisher)
        .await
        .expect("list");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].reason, "recovery_deadline");
    assert_eq!(parked[0].message_id, event.event_id);
    world.finish().await;
}

#[tokio::test]
async fn a_team_that_is_not_installed_is_dropped_and_counted() {
    let mut world = World::new().await;
    let ops = world.spawn_worker().await;
    world
        .backend
        .set_exchange_mode(TEAM, ExchangeMode::NotInstalled);
    let event = world.channel_message("hello?");
    world.publish(&event).await;

    world
        .metric_reaches(
            ops,
            "spritz_worker_deliveries_total{outcome=\"dropped_not_installed\"}",
            1.0,
        )
        .await;
    assert!(world.slack.posts().is_empty());
    assert!(world.spritz.prompts().is_empty());
    world.finish().await;
}

#[tokio::test]
async fn an_event_from_another_slack_app_is_dropped_and_counted() {
    let mut world = World::new().await;
    let ops = world.spawn_worker().await;
    let mut event = world.channel_message("wrong app");
    event.api_app_id = Some("AOTHER".into());
    world.publish(&event).await;

    world
        .metric_reaches(
            ops,
            "spritz_worker_deliveries_total{outcome=\"dropped_app_mismatch\"}",
            1.0,
        )
        .await;
    assert!(world.slack.posts().is_empty());
    assert!(world.spritz.prompts().is_empty());
    world.finish().await;
}

#[tokio::test]
async fn a_refusal_during_a_visible_recovery_ends_with_the_terminal_reply_at_the_deadline() {
    let mut world = World::new().await;
    world
        .backend
        .set_exchange_mode(TEAM, ExchangeMode::Unavailable);
    world
        .spawn_worker_timed(STATUS_AT_ONCE, timing().processing_timeout)
        .await;
    let event = world.channel_message("are you there?");
    world.publish(&event).await;
    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, STATUS);

    world
        .backend
        .set_exchange_mode(TEAM, ExchangeMode::NotInstalled);
    let posts = world.posts(2).await;
    assert_eq!(
        posts[1].text, TERMINAL,
        "never silence after \"still waking up\""
    );
    world.settled().await;
    assert_eq!(world.slack.posts().len(), 2);
    world.finish().await;
}

#[tokio::test]
async fn a_slow_conversation_upsert_gets_the_status_message_before_the_reply() {
    let mut world = World::new().await;
    world
        .spritz
        .delay(SpritzCall::Upsert, Duration::from_millis(900));
    world.spawn_worker_timed(STATUS_AT_ONCE, NO_DEADLINE).await;
    let event = world.channel_message("take your time");
    world.publish(&event).await;

    let posts = world.posts(2).await;
    assert_eq!(
        posts[0].text, STATUS,
        "the threshold passed during the upsert"
    );
    assert_eq!(posts[1].text, "echo: take your time");
    world.settled().await;
    assert_eq!(with_text(&world.slack.posts(), STATUS).len(), 1);
    world.finish().await;
}

#[tokio::test]
async fn a_slow_bootstrap_gets_the_status_message_before_the_reply() {
    let mut world = World::new().await;
    world
        .spritz
        .delay(SpritzCall::Bootstrap, Duration::from_millis(900));
    world.spawn_worker_timed(STATUS_AT_ONCE, NO_DEADLINE).await;
    let event = world.direct_message("slow start");
    world.publish(&event).await;

    let posts = world.posts(2).await;
    assert_eq!(posts[0].text, STATUS);
    assert_eq!(posts[1].text, "echo: slow start");
    world.finish().await;
}
