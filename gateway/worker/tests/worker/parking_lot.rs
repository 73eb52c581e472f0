//! The parking lot (SPEC §4, §9): poison messages are parked with a reason, `dlq list`
//! shows them without text, `dlq replay` brings them back.

use spritz_proto::MessageType;
use spritz_proto::properties::{self, Envelope};
use spritz_proto::topology;
use spritz_proto::traceparent::TraceParent;
use spritz_worker::dlq::{self, Selection};

use crate::support::{World, timing};

async fn parked(world: &World, n: u32) {
    world
        .wait_for_ready(topology::PARKING_LOT_QUEUE, n)
        .await
        .unwrap_or_else(|_| panic!("expected {n} parked messages"));
}

#[tokio::test]
async fn poison_messages_are_parked_with_a_reason_and_listed_without_text() {
    let mut world = World::new().await;
    let ops = world.spawn_worker().await;
    world.publish_raw("garbage-1", b"secret garbage {").await;
    world
        .publish_raw("v2-1", br#"{"v":2,"receivedAt":"2026-01-01T00:00:00Z","eventId":"E","teamId":"T1","event":{"kind":"app_uninstalled"},"text":"secret"}"#)
        .await;

    parked(&world, 2).await;
    let mut listed = dlq::list(&world.publisher).await.expect("list");
    listed.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    assert_eq!(listed[0].message_id, "garbage-1");
    assert_eq!(listed[0].reason, "malformed");
    assert_eq!(listed[1].message_id, "v2-1");
    assert_eq!(listed[1].reason, "unknown_version");
    let table = dlq::render_table(&listed);
    assert!(!table.contains("secret"), "never message text");
    // Listing consumes nothing: both come back, in the same order.
    parked(&world, 2).await;
    let again: Vec<String> = dlq::list(&world.publisher)
        .await
        .expect("list again")
        .into_iter()
        .map(|p| p.message_id)
        .collect();
    let mut sorted = again.clone();
    sorted.sort();
    assert_eq!(sorted, ["garbage-1", "v2-1"]);
    parked(&world, 2).await;
    assert_eq!(
        world
            .metric(
                ops,
                "spritz_worker_deliveries_total{outcome=\"dead_lettered\"}"
            )
            .await,
        2.0
    );

    let report = dlq::replay(&world.publisher, &Selection::All)
        .await
        .expect("replay");
    assert_eq!(report.replayed.len(), 2);
    world
        .metric_reaches(
            ops,
            "spritz_worker_deliveries_total{outcome=\"dead_lettered\"}",
            4.0,
        )
        .await;
    parked(&world, 2).await;
    world.finish().await;
}

#[tokio::test]
async fn dlq_replay_brings_a_parked_message_back_to_the_worker() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    let kept = world.channel_message("stays parked");
    let event = world.channel_message("try me again");
    for parked_event in [&kept, &event] {
        let body = serde_json::to_vec(parked_event).expect("json");
        let envelope = Envelope::new(
            &parked_event.event_id,
            MessageType::SlackEvent,
            TraceParent::new_root(),
        )
        .with_header(properties::PARK_REASON, "reply_exhausted")
        .with_header(properties::ORIGIN_EXCHANGE, topology::WORK_EXCHANGE)
        .with_header(properties::ORIGIN_ROUTING_KEY, topology::WORK_ROUTING_KEY)
        .with_number(properties::PARKED_AT, chrono::Utc::now().timestamp());
        world
            .publisher
            .publish(topology::DEAD_LETTER_EXCHANGE, "", &body, &envelope)
            .await
            .expect("parked");
    }
    parked(&world, 2).await;
    let listed = dlq::list(&world.publisher).await.expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].team_id.as_deref(), Some("T1"));
    assert_eq!(listed[0].channel_id.as_deref(), Some("C1"));

    parked(&world, 2).await;
    let report = dlq::replay(
        &world.publisher,
        &Selection::Ids(vec![event.event_id.clone(), "nope".into()]),
    )
    .await
    .expect("replay");
    assert_eq!(report.replayed, vec![event.event_id.clone()]);
    assert_eq!(report.missing, ["nope"]);
    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, "echo: try me again");
    let left = dlq::list(&world.publisher).await.expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].message_id, kept.event_id,
        "the other one stays parked"
    );
    world.finish().await;
}

#[tokio::test]
async fn a_replayed_attempts_exhausted_message_is_answered_not_parked_again() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    let mut event = world.channel_message("one more time");
    // As a worker wrote it after the last re-queue the limit allows.
    event.resume = Some(
        serde_json::from_value(serde_json::json!({
            "attempt": timing().max_attempts,
            "stage": "session",
            "recovering": true,
        }))
        .expect("resume"),
    );
    event.received_at = chrono::Utc::now();
    let body = serde_json::to_vec(&event).expect("json");
    world.publish_raw(&event.event_id, &body).await;
    parked(&world, 1).await;
    let listed = dlq::list(&world.publisher).await.expect("list");
    assert_eq!(listed[0].reason, "attempts_exhausted");

    let report = dlq::replay(&world.publisher, &Selection::All)
        .await
        .expect("replay");
    assert_eq!(report.replayed, vec![event.event_id.clone()]);
    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, "echo: one more time");
    world.settled().await;
    assert!(dlq::list(&world.publisher).await.expect("list").is_empty());
    world.finish().await;
}
