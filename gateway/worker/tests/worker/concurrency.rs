//! Many workers on one queue (SPEC §5.1, §5.3): duplicates give one reply, one prompt
//! at a time per conversation, a crash never causes a second prompt.

use spritz_sandbox::isolation;

use crate::support::{INTERNAL, TEAM, WAIT, World};

#[tokio::test]
async fn two_workers_and_a_duplicated_message_give_one_reply() {
    let mut world = World::new().await;
    let first = world.spawn_worker().await;
    let second = world.spawn_worker().await;
    let event = world.channel_message("only once");
    for _ in 0..3 {
        world.publish(&event).await;
    }

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, "echo: only once");
    world.settled().await;
    assert_eq!(world.slack.posts().len(), 1);
    assert_eq!(world.spritz.prompts().len(), 1);
    let label = "spritz_worker_deliveries_total{outcome=\"duplicate\"}";
    let duplicates = world.metric(first, label).await + world.metric(second, label).await;
    assert_eq!(duplicates, 2.0);
    world.finish().await;
}

#[tokio::test]
async fn two_messages_in_one_conversation_are_never_prompted_concurrently() {
    let mut world = World::new().await;
    let first = world.spawn_worker().await;
    let second = world.spawn_worker().await;
    world.spritz.hold_prompts();
    let a = world.thread_message("1690000000.000042", "first");
    let b = world.thread_message("1690000000.000042", "second");
    world.publish(&a).await;
    world.publish(&b).await;

    let prompts = world
        .spritz
        .wait_for_prompts(1, WAIT)
        .await
        .expect("one prompt");
    let label = "spritz_worker_retries_total{stage=\"conversation_busy\"}";
    let world_ref = &world;
    isolation::eventually(WAIT, || async move {
        let busy = world_ref.metric(first, label).await + world_ref.metric(second, label).await;
        (busy >= 2.0).then_some(())
    })
    .await
    .expect("the second message waits for the conversation");
    assert_eq!(
        world.spritz.prompts().len(),
        1,
        "still one prompt while the first is held"
    );
    world.spritz.release_prompts();

    // Only the replies count here (a status message, were one due, is not a reply).
    let world_ref = &world;
    let replies = isolation::eventually(WAIT, || async move {
        let mut texts: Vec<String> = world_ref
            .slack
            .posts()
            .into_iter()
            .map(|p| p.text)
            .filter(|t| t.starts_with("echo: "))
            .collect();
        texts.sort_unstable();
        (texts.len() == 2).then_some(texts)
    })
    .await
    .expect("both replies");
    assert_eq!(replies, ["echo: first", "echo: second"]);
    assert_eq!(
        world
            .spritz
            .max_concurrent_prompts(&prompts[0].conversation_id),
        1
    );
    world.finish().await;
}

#[tokio::test]
async fn a_worker_killed_mid_delivery_never_causes_a_second_prompt() {
    let mut world = World::new().await;
    world.spritz.hold_prompts();
    let doomed = world.spawn_killable_worker();
    crate::support::wait_ready(doomed.ops_addr).await;
    let event = world.channel_message("don't repeat me");
    let key = event
        .user_message()
        .expect("message")
        .message_key(&event.team_id);
    world.publish(&event).await;

    world
        .spritz
        .wait_for_prompts(1, WAIT)
        .await
        .expect("prompt delivered");
    let world_ref = &world;
    let prompt_key = format!("prompt:{key}");
    let prompt_key = &prompt_key;
    isolation::eventually(WAIT, || async move {
        world_ref.redis_exists(prompt_key).await.then_some(())
    })
    .await
    .expect("the ledger recorded the delivered prompt");
    doomed.kill(&world).await;
    world.spritz.release_prompts();
    world.spawn_worker().await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, INTERNAL, "the user hears about it once");
    world.settled().await;
    assert_eq!(
        world.spritz.prompts().len(),
        1,
        "the prompt was never sent again"
    );
    assert_eq!(world.slack.posts().len(), 1);
    world.finish().await;
}

#[tokio::test]
async fn fifty_concurrent_messages_for_a_cold_team_make_one_exchange() {
    let mut world = World::new().await;
    let mut config = world.config();
    config.prefetch = 64;
    // Queued before the worker starts, so it takes all fifty at once.
    let events: Vec<_> = (0..50)
        .map(|i| world.channel_message(&format!("burst {i}")))
        .collect();
    for event in &events {
        world.publish(event).await;
    }
    world.spawn_worker_with(config).await;
    isolation::eventually(WAIT, || async {
        let replies = world
            .slack
            .posts()
            .iter()
            .filter(|p| p.text.starts_with("echo: burst"))
            .count();
        (replies == 50).then_some(())
    })
    .await
    .expect("fifty replies");
    assert_eq!(
        world.backend.exchange_calls(TEAM),
        1,
        "concurrent misses for one team share one exchange"
    );
    world.finish().await;
}
