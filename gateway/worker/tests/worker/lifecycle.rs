//! Lifecycle events on this worker's broadcast queue (SPEC §5 "Lifecycle"): end of
//! life drops cached sessions; `Ready` wakes deliveries waiting for their runtime.

use std::time::{Duration, Instant};

use spritz_proto::Phase;
use spritz_sandbox::backend::ExchangeMode;

use crate::support::{TEAM, WAIT, World};

#[tokio::test]
async fn ready_wakes_a_waiting_delivery_long_before_its_retry_delay() {
    let mut world = World::new().await;
    let mut config = world.config();
    config.timing.session_retry_interval = Duration::from_secs(5);
    config.timing.status_message_delay = Duration::from_secs(20);
    config.timing.processing_timeout = Duration::from_secs(30);
    let ops = world.spawn_worker_with(config).await;
    world
        .backend
        .set_exchange_mode(TEAM, ExchangeMode::Unavailable);
    let event = world.channel_message("wake me");
    world.publish(&event).await;

    world
        .metric_reaches(ops, "spritz_worker_retries_total{stage=\"session\"}", 1.0)
        .await;
    world
        .backend
        .set_exchange_mode(TEAM, ExchangeMode::Resolved);
    let ready_at = Instant::now();
    world.lifecycle(Phase::Ready).await;

    let posts = world.posts(1).await;
    let waited = ready_at.elapsed();
    assert_eq!(posts[0].text, "echo: wake me");
    assert!(
        waited < Duration::from_secs(2),
        "woken after {waited:?}, not after the 5s delay"
    );
    world
        .metric_reaches(
            ops,
            "spritz_worker_lifecycle_events_total{action=\"woke\",phase=\"Ready\"}",
            1.0,
        )
        .await;
    world.settled().await;
    assert_eq!(
        world.slack.posts().len(),
        1,
        "the delayed copy is dropped as superseded"
    );
    assert_eq!(world.spritz.prompts().len(), 1);
    world.finish().await;
}

#[tokio::test]
async fn an_expired_runtime_drops_the_cached_session() {
    let mut world = World::new().await;
    let ops = world.spawn_worker().await;
    let first = world.direct_message("one");
    world.publish(&first).await;
    world.posts(1).await;
    assert_eq!(world.backend.exchange_calls(TEAM), 1);

    world.lifecycle(Phase::Expired).await;
    world
        .metric_reaches(
            ops,
            "spritz_worker_lifecycle_events_total{action=\"invalidated\",phase=\"Expired\"}",
            1.0,
        )
        .await;
    let second = world.direct_message("two");
    world.publish(&second).await;
    world.posts(2).await;
    assert_eq!(
        world.backend.exchange_calls(TEAM),
        2,
        "a fresh exchange after the runtime expired"
    );
    assert!(
        world
            .metric(
                ops,
                "spritz_worker_session_cache_total{result=\"invalidated\"}"
            )
            .await
            >= 1.0
    );
    let _ = WAIT;
    world.finish().await;
}
