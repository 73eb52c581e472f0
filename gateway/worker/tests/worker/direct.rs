//! The unit of work called directly, without the queue: `Pipeline::process` turns one
//! delivery into one outcome and acks nothing.

use std::sync::Arc;

use spritz_proto::properties::Envelope;
use spritz_proto::traceparent::TraceParent;
use spritz_proto::{MessageType, ParkReason};
use spritz_sandbox::isolation;
use spritz_worker::pipeline::Pipeline;
use spritz_worker::{Application, Incoming, Outcome, RetryStage};

use crate::support::{STATUS, WAIT, World};

fn incoming(message_id: &str, body: Vec<u8>) -> Incoming {
    let properties =
        Envelope::new(message_id, MessageType::SlackEvent, TraceParent::new_root()).properties();
    Incoming::new(body, properties)
}

/// The world's worker built but not consuming, its pipeline driven directly once the
/// ledger is connected. The application is kept alive beside it.
async fn connected_pipeline(world: &World) -> (Application, Arc<Pipeline>) {
    let app = Application::build(world.config()).await.expect("app");
    let pipeline = app.pipeline();
    isolation::eventually(WAIT, || async {
        pipeline.ledger().is_connected().then_some(())
    })
    .await
    .expect("redis");
    (app, pipeline)
}

#[tokio::test]
async fn process_answers_once_then_calls_the_same_delivery_a_duplicate() {
    let world = World::new().await;
    let (_app, pipeline) = connected_pipeline(&world).await;
    let mut world = world;
    let event = world.direct_message("directly");
    let delivery = incoming(&event.event_id, serde_json::to_vec(&event).expect("json"));

    let first = pipeline.process(&delivery).await;
    assert!(
        matches!(first, Outcome::Replied { recovered: false }),
        "{first:?}"
    );
    assert_eq!(world.slack.posts()[0].text, "echo: directly");
    let second = pipeline.process(&delivery).await;
    assert!(matches!(second, Outcome::Duplicate), "{second:?}");
    assert_eq!(world.slack.posts().len(), 1);
    world.finish().await;
}

#[tokio::test]
async fn process_parks_garbage_and_asks_for_a_retry_while_the_runtime_is_away() {
    let mut world = World::new().await;
    let (_app, pipeline) = connected_pipeline(&world).await;

    let garbage = pipeline
        .process(&incoming("junk", b"{not json".to_vec()))
        .await;
    assert!(
        matches!(
            garbage,
            Outcome::ParkingLot {
                reason: ParkReason::Malformed
            }
        ),
        "{garbage:?}"
    );

    world
        .backend
        .set_exchange_mode("T1", spritz_sandbox::backend::ExchangeMode::Unavailable);
    let event = world.channel_message("later");
    let outcome = pipeline
        .process(&incoming(
            &event.event_id,
            serde_json::to_vec(&event).expect("json"),
        ))
        .await;
    let Outcome::RetryLater {
        stage,
        after,
        event: copy,
    } = outcome
    else {
        panic!("expected a retry, got {outcome:?}");
    };
    assert_eq!(stage, RetryStage::Session);
    assert_eq!(
        after,
        world.config().timing.session_retry_interval,
        "the retry interval (when it is shortened is tested in `pipeline::deadlines`)"
    );
    let resume = copy.resume.expect("resume state");
    assert_eq!(resume.attempt(), 1);
    assert!(resume.recovering);
    assert!(world.slack.posts().is_empty());
    world.finish().await;
}

#[tokio::test]
async fn a_delivery_whose_claim_is_lost_mid_prompt_is_handed_back() {
    let mut world = World::new().await;
    let (_app, pipeline) = connected_pipeline(&world).await;
    world.spritz.hold_prompts();
    let event = world.direct_message("slow one");
    let delivery = incoming(&event.event_id, serde_json::to_vec(&event).expect("json"));
    let working = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.process(&delivery).await }
    });
    world
        .spritz
        .wait_for_prompts(1, WAIT)
        .await
        .expect("prompt started");

    // The lease ran out and another worker claimed the message meanwhile.
    let message_key = event.user_message().map(|m| m.message_key(&event.team_id));
    let key = spritz_worker::ledger::keys::MessageKeys::new(
        &world.redis_prefix,
        &event.event_id,
        message_key.as_deref(),
    )
    .claim_event;
    let client = redis::Client::open(isolation::redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("another-worker")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .expect("set");

    let outcome = tokio::time::timeout(WAIT, working)
        .await
        .expect("the work stops")
        .expect("join");
    assert!(matches!(outcome, Outcome::HandBack), "{outcome:?}");
    assert!(
        world.slack.posts().iter().all(|p| p.text == STATUS),
        "no reply or failure message without the claim (the status message may show)"
    );
    let held_by: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(
        held_by, "another-worker",
        "the other worker's claim is untouched"
    );
    world.spritz.release_prompts();
    world.finish().await;
}

#[tokio::test]
async fn a_terminal_failure_message_that_cannot_be_posted_is_parked_after_the_reply_attempts() {
    let mut world = World::new().await;
    let (_app, pipeline) = connected_pipeline(&world).await;
    // Past its deadline after a visible status message, with only the terminal failure
    // message left to post and one post short of the reply-attempt limit (as an older
    // worker wrote the copy).
    let mut event = world.channel_message("too late");
    event.received_at = chrono::Utc::now() - chrono::Duration::seconds(60);
    event.resume = Some(
        serde_json::from_value(serde_json::json!({
            "attempt": 40,
            "stage": "terminal-failure",
            "recovering": true,
            "statusPosted": true,
            "replyAttempts": 9,
        }))
        .expect("resume"),
    );
    world.slack.fail_next_posts(1, "internal_error");

    let outcome = pipeline
        .process(&incoming(
            &event.event_id,
            serde_json::to_vec(&event).expect("json"),
        ))
        .await;
    assert!(
        matches!(
            outcome,
            Outcome::ParkingLot {
                reason: ParkReason::ReplyExhausted
            }
        ),
        "the terminal failure message has the reply's attempt limit: {outcome:?}"
    );
    assert_eq!(world.slack.post_attempts(), 1);
    world.finish().await;
}

#[tokio::test]
async fn marks_of_the_release_before_hash_tags_still_count_during_an_upgrade() {
    let mut world = World::new().await;
    let (_app, pipeline) = connected_pipeline(&world).await;
    let client = redis::Client::open(isolation::redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");

    // An old worker finished this one (untagged done mark): a duplicate.
    let finished = world.direct_message("finished by an old worker");
    let key = format!("{}done:event:{}", world.redis_prefix, finished.event_id);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("1")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .expect("set");
    let delivery = incoming(
        &finished.event_id,
        serde_json::to_vec(&finished).expect("json"),
    );
    let outcome = pipeline.process(&delivery).await;
    assert!(matches!(outcome, Outcome::Duplicate), "{outcome:?}");

    // An old worker holds this one (untagged claim): busy, retried later.
    let held = world.direct_message("held by an old worker");
    let message_key = held.user_message().map(|m| m.message_key(&held.team_id));
    let key = format!(
        "{}claim:msg:{}",
        world.redis_prefix,
        message_key.expect("a user message")
    );
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("old-worker")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .expect("set");
    let delivery = incoming(&held.event_id, serde_json::to_vec(&held).expect("json"));
    let outcome = pipeline.process(&delivery).await;
    assert!(
        matches!(
            outcome,
            Outcome::RetryLater {
                stage: RetryStage::Ledger,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(world.slack.posts().is_empty(), "neither was answered");
    assert!(world.spritz.prompts().is_empty(), "nor prompted");
    world.finish().await;
}
