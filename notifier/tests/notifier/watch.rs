//! The watch survives API server restarts and `410 Gone`, without announcing anything
//! twice, and notices deletions it did not see as events.

use spritz_proto::Phase;

use crate::support::{WAIT, World, eventually};

#[tokio::test]
async fn the_watch_survives_an_api_server_restart_and_announces_deletions_made_meanwhile() {
    let world = World::start().await;
    let leader = world.leader("a").await;
    let mut events = world.events().await;
    world.fake.create_spritz("team-a", "kept", Some("Ready"));
    world.fake.create_spritz("team-a", "removed", Some("Ready"));
    events.next().await;
    events.next().await;
    for name in ["kept", "removed"] {
        world
            .wait_until_recorded("team-a", name, "Ready", "recorded")
            .await;
    }

    world.fake.restart().await;
    // Deleted while the watch is cut: the re-list no longer contains it.
    world.fake.delete_spritz("team-a", "removed");
    let deleted = events.next().await;
    assert_eq!(
        (deleted.event.instance_id.as_str(), deleted.event.phase),
        ("removed", Phase::Deleted)
    );
    assert_eq!(deleted.event.previous_phase, Some(Phase::Ready));

    eventually("a counted watch restart", || {
        leader.metrics.watch_restarts.get() >= 1
    })
    .await;
    world.fake.set_phase("team-a", "kept", "Expiring");
    let expiring = events.next().await;
    assert_eq!(
        (expiring.event.instance_id.as_str(), expiring.event.phase),
        ("kept", Phase::Expiring)
    );
    assert!(
        events.until_marker(&world.fake, "team-a").await.is_empty(),
        "the re-list repeats nothing"
    );
}

#[tokio::test]
async fn the_watch_relists_after_410_gone_without_repeating_events() {
    let world = World::start().await;
    let leader = world.leader("a").await;
    let mut events = world.events().await;
    world
        .fake
        .create_spritz("team-a", "concierge-1", Some("Ready"));
    events.next().await;
    world
        .wait_until_recorded("team-a", "concierge-1", "Ready", "recorded")
        .await;
    let expired_before = world.fake.request_counts().expired;

    world.fake.compact();
    world.fake.end_watches();
    world
        .fake
        .wait_until(WAIT, |fake| fake.request_counts().expired > expired_before)
        .await
        .expect("the resumed watch was told 410 Gone");
    eventually("a counted watch restart", || {
        leader.metrics.watch_restarts.get() >= 1
    })
    .await;

    world.fake.set_phase("team-a", "concierge-1", "Terminating");
    let terminating = events.next().await;
    assert_eq!(terminating.event.phase, Phase::Terminating);
    assert_eq!(terminating.event.previous_phase, Some(Phase::Ready));
    assert!(events.until_marker(&world.fake, "team-a").await.is_empty());
}
