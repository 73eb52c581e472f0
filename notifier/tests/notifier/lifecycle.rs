//! Phase changes, deletion, the annotation, and restarts of the notifier.

use spritz_notifier::NOTIFIED_PHASE_ANNOTATION;
use spritz_notifier::metrics::EventOutcome;
use spritz_proto::Phase;

use crate::support::World;

#[tokio::test]
async fn a_phase_change_publishes_one_event_then_records_the_phase() {
    let world = World::start().await;
    let _leader = world.leader("a").await;
    let mut events = world.events().await;

    let created = world
        .fake
        .create_spritz("team-a", "concierge-1", Some("Provisioning"));
    let first = events.next().await;
    assert_eq!(first.event.phase, Phase::Provisioning);
    assert_eq!(first.event.previous_phase, None);
    world
        .wait_until_recorded(
            "team-a",
            "concierge-1",
            "Provisioning",
            "Provisioning recorded",
        )
        .await;

    let changed = world
        .fake
        .try_set_phase("team-a", "concierge-1", "Ready")
        .expect("exists");
    let second = events.next().await;
    assert_eq!(second.routing_key, "lifecycle.Ready");
    assert_eq!(second.message_type.as_deref(), Some("spritz.lifecycle.v1"));
    assert!(second.persistent);
    let event = &second.event;
    assert_eq!(event.v, 1);
    assert_eq!(event.namespace, "team-a");
    assert_eq!(event.instance_id, "concierge-1");
    assert_eq!(event.uid, created.uid);
    assert_eq!(event.phase, Phase::Ready);
    assert_eq!(event.previous_phase, Some(Phase::Provisioning));
    assert_eq!(event.resource_version, changed.resource_version);
    assert_eq!(
        second.message_id.as_deref(),
        Some(event.message_id().as_str())
    );
    world
        .wait_until_recorded("team-a", "concierge-1", "Ready", "Ready recorded")
        .await;

    assert!(
        events.until_marker(&world.fake, "team-a").await.is_empty(),
        "one event per change"
    );
}

#[tokio::test]
async fn deletion_announces_deleted_after_the_last_phase() {
    let world = World::start().await;
    let _leader = world.leader("a").await;
    let mut events = world.events().await;
    let created = world
        .fake
        .create_spritz("team-a", "concierge-1", Some("Ready"));
    assert_eq!(events.next().await.event.phase, Phase::Ready);
    world
        .wait_until_recorded("team-a", "concierge-1", "Ready", "Ready recorded")
        .await;

    world.fake.delete_spritz("team-a", "concierge-1");
    let deleted = events.next().await;
    assert_eq!(deleted.routing_key, "lifecycle.Deleted");
    assert_eq!(deleted.event.phase, Phase::Deleted);
    assert_eq!(deleted.event.previous_phase, Some(Phase::Ready));
    assert_eq!(deleted.event.uid, created.uid);
    assert!(events.until_marker(&world.fake, "team-a").await.is_empty());
}

#[tokio::test]
async fn a_restarted_notifier_announces_only_what_changed_while_it_was_down() {
    let world = World::start().await;
    let first = world.leader("a").await;
    let mut events = world.events().await;
    world.fake.create_spritz("team-a", "one", Some("Ready"));
    world.fake.create_spritz("team-a", "two", Some("Expiring"));
    events.next().await;
    events.next().await;
    for (name, phase) in [("one", "Ready"), ("two", "Expiring")] {
        world
            .wait_until_recorded("team-a", name, phase, "recorded")
            .await;
    }
    first.stop().await;

    world.fake.set_phase("team-a", "two", "Expired");
    let _second = world.leader("b").await;
    let expired = events.next().await;
    assert_eq!(expired.event.instance_id, "two");
    assert_eq!(expired.event.phase, Phase::Expired);
    assert_eq!(expired.event.previous_phase, Some(Phase::Expiring));
    assert!(
        events.until_marker(&world.fake, "team-a").await.is_empty(),
        "Ready of `one` not announced again"
    );
}

#[tokio::test]
async fn phases_outside_the_enum_are_ignored() {
    let world = World::start().await;
    let _leader = world.leader("a").await;
    let mut events = world.events().await;
    world
        .fake
        .create_spritz("team-a", "odd", Some("Hibernating"));
    world.fake.create_spritz("team-a", "empty", Some(""));
    world.fake.create_spritz("team-a", "none", None);
    assert!(events.until_marker(&world.fake, "team-a").await.is_empty());
    assert!(
        !world
            .fake
            .annotations("team-a", "odd")
            .contains_key(NOTIFIED_PHASE_ANNOTATION)
    );
}

#[tokio::test]
async fn a_failed_annotation_patch_is_counted_and_retried_without_a_second_event() {
    let world = World::start().await;
    let leader = world.leader("a").await;
    let mut events = world.events().await;
    world.fake.fail_next_patches(1);
    world
        .fake
        .create_spritz("team-a", "concierge-1", Some("Ready"));
    assert_eq!(events.next().await.event.phase, Phase::Ready);
    world
        .wait_until_recorded("team-a", "concierge-1", "Ready", "recorded by the retry")
        .await;
    assert_eq!(
        leader
            .metrics
            .events(Phase::Ready, EventOutcome::AnnotateFailed),
        1
    );
    assert!(
        events.until_marker(&world.fake, "team-a").await.is_empty(),
        "the retry publishes nothing"
    );
}

#[tokio::test]
async fn only_the_configured_namespaces_are_watched() {
    let world = World::start().await;
    let replica = spritz_notifier_replica(&world, &["team-a", "team-c"]).await;
    replica.wait_until_leading_and_synced().await;
    let mut events = world.events().await;
    world
        .fake
        .create_spritz("team-b", "elsewhere", Some("Ready"));
    world.fake.create_spritz("team-c", "here", Some("Ready"));
    assert_eq!(events.next().await.event.instance_id, "here");
    assert!(
        events.until_marker(&world.fake, "team-a").await.is_empty(),
        "team-b is not watched"
    );
}

async fn spritz_notifier_replica(world: &World, namespaces: &[&str]) -> crate::support::Replica {
    crate::support::Replica::spawn(world.config("a", namespaces), &world.fake).await
}

#[tokio::test]
async fn quick_successive_changes_of_one_object_are_announced_in_order_as_a_chain() {
    let world = World::start().await;
    let _leader = world.leader("a").await;
    let mut events = world.events().await;
    world
        .fake
        .create_spritz("team-a", "concierge-1", Some("Provisioning"));
    for phase in ["Ready", "Expiring", "Expired", "Terminating"] {
        world.fake.set_phase("team-a", "concierge-1", phase);
    }
    let mut previous = None;
    for phase in [
        Phase::Provisioning,
        Phase::Ready,
        Phase::Expiring,
        Phase::Expired,
        Phase::Terminating,
    ] {
        let received = events.next().await;
        assert_eq!(
            (received.event.phase, received.event.previous_phase),
            (phase, previous)
        );
        previous = Some(phase);
    }
    world
        .wait_until_recorded(
            "team-a",
            "concierge-1",
            "Terminating",
            "the last phase recorded",
        )
        .await;
}
