//! SPEC §5.4 the reply post: retried through the delay tiers with the reply text, 429
//! honouring `Retry-After`, never a second prompt.

use std::time::{Duration, Instant};

use crate::support::World;

#[tokio::test]
async fn a_failed_slack_post_is_retried_without_a_second_prompt() {
    let mut world = World::new().await;
    let ops = world.spawn_worker().await;
    world.slack.fail_next_posts(2, "internal_error");
    world.slack.fail_next_posts_with_status(1, 500);
    let event = world.channel_message("post me");
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, "echo: post me");
    world.settled().await;
    assert_eq!(world.slack.posts().len(), 1);
    assert_eq!(world.slack.post_attempts(), 4);
    assert_eq!(
        world.spritz.prompts().len(),
        1,
        "the agent is not prompted again"
    );
    assert_eq!(
        world
            .metric(ops, "spritz_worker_retries_total{stage=\"reply\"}")
            .await,
        3.0
    );
    world.finish().await;
}

#[tokio::test]
async fn a_rate_limited_post_waits_for_retry_after() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    world.slack.rate_limit_next_posts(1, 1);
    let event = world.direct_message("slow down");
    let started = Instant::now();
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, "echo: slow down");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(world.spritz.prompts().len(), 1);
    world.finish().await;
}
