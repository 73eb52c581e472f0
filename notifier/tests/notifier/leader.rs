//! Two replicas: one leader publishes; a dead leader is replaced within the lease
//! duration; a stopped leader hands over at once; readiness follows.

use std::collections::HashMap;
use std::time::Instant;

use spritz_proto::Phase;

use crate::support::{LEASE, RENEW, WAIT, World};

#[tokio::test]
async fn two_replicas_publish_each_change_once() {
    let world = World::start().await;
    let a = world.leader("a").await;
    let b = world.replica("b").await;
    let mut events = world.events().await;
    // b has competed at least once and lost.
    world
        .fake
        .wait_until(WAIT, |fake| {
            fake.lease(crate::support::LEASE_NS, "spritz-notifier")
                .is_some()
        })
        .await
        .expect("lease exists");
    assert!(!b.status.is_leader());

    let names: Vec<String> = (0..20).map(|i| format!("concierge-{i}")).collect();
    for name in &names {
        world
            .fake
            .create_spritz("team-a", name, Some("Provisioning"));
    }
    for name in &names {
        world.fake.set_phase("team-a", name, "Ready");
    }
    let mut seen: HashMap<(String, Phase), usize> = HashMap::new();
    for _ in 0..names.len() * 2 {
        let received = events.next().await;
        *seen
            .entry((received.event.instance_id, received.event.phase))
            .or_default() += 1;
    }
    let extra = events.until_marker(&world.fake, "team-a").await;
    assert!(extra.is_empty(), "duplicates: {extra:?}");
    for name in &names {
        for phase in [Phase::Provisioning, Phase::Ready] {
            assert_eq!(seen.get(&(name.clone(), phase)), Some(&1), "{name} {phase}");
        }
    }
    assert!(a.status.is_leader());
    assert!(!b.status.is_leader());
    assert_eq!(b.metrics.is_leader.get(), 0);
    assert_eq!(a.metrics.is_leader.get(), 1);
}

#[tokio::test]
async fn a_new_leader_takes_over_within_the_lease_duration_when_the_leader_dies() {
    let world = World::start().await;
    let a = world.leader("a").await;
    let b = world.replica("b").await;
    let mut events = world.events().await;
    world
        .fake
        .create_spritz("team-a", "concierge-1", Some("Ready"));
    assert_eq!(events.next().await.event.phase, Phase::Ready);
    world
        .wait_until_recorded("team-a", "concierge-1", "Ready", "recorded")
        .await;

    let died = Instant::now();
    a.kill().await;
    assert!(
        b.status.wait_for_leadership(true, WAIT).await,
        "b takes over"
    );
    let took = died.elapsed();
    assert!(
        took <= LEASE + RENEW,
        "took over after {took:?} (lease {LEASE:?})"
    );
    assert_eq!(world.lease_holder().as_deref(), Some("b"));
    assert!(b.status.wait_until_synced(WAIT).await);

    world.fake.set_phase("team-a", "concierge-1", "Expired");
    let expired = events.next().await;
    assert_eq!(expired.event.phase, Phase::Expired);
    assert_eq!(expired.event.previous_phase, Some(Phase::Ready));
    assert!(events.until_marker(&world.fake, "team-a").await.is_empty());
}

#[tokio::test]
async fn a_stopped_leader_releases_the_lease_so_another_replica_takes_over_at_once() {
    let world = World::start().await;
    let a = world.leader("a").await;
    assert_eq!(world.lease_holder().as_deref(), Some("a"));
    a.stop().await;
    assert_eq!(world.lease_holder(), None, "released on shutdown");

    let started = Instant::now();
    let b = world.replica("b").await;
    assert!(b.status.wait_for_leadership(true, WAIT).await);
    assert!(
        started.elapsed() < LEASE,
        "no wait for the old claim to run out"
    );
    let lease = world
        .fake
        .lease(crate::support::LEASE_NS, "spritz-notifier")
        .expect("lease");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn readiness_needs_the_broker_and_for_the_leader_a_synced_watch() {
    let world = World::start().await;
    let a = world.leader("a").await;
    let b = world.replica("b").await;
    let http = spritz_sandbox::tls::http_client();
    let get = |addr: std::net::SocketAddr, path: &'static str| {
        let http = http.clone();
        async move {
            http.get(format!("http://{addr}{path}"))
                .send()
                .await
                .expect("ops listener")
        }
    };
    assert_eq!(get(a.ops_addr, "/healthz").await.status(), 200);
    // Readiness has no push signal: poll /readyz. The leader is ready once its broker
    // connection is up and its watch synced; a follower needs only the broker.
    for (who, addr) in [("leader", a.ops_addr), ("follower", b.ops_addr)] {
        let ready = spritz_sandbox::isolation::eventually(WAIT, || {
            let response = get(addr, "/readyz");
            async move { (response.await.status() == 200).then_some(()) }
        })
        .await;
        assert!(ready.is_ok(), "the {who} never became ready");
    }
    let metrics = get(a.ops_addr, "/metrics")
        .await
        .text()
        .await
        .expect("metrics body");
    assert!(metrics.contains("spritz_notifier_is_leader 1"), "{metrics}");
    assert!(metrics.contains("spritz_notifier_watched_objects"));
    assert!(metrics.contains("spritz_build_info{process=\"notifier\""));
}

#[tokio::test]
async fn a_replica_that_loses_the_lease_stops_watching_at_once_and_resumes_when_it_is_back() {
    let world = World::start().await;
    let a = world.leader("a").await;
    let mut events = world.events().await;
    world
        .fake
        .create_spritz("team-a", "concierge-1", Some("Provisioning"));
    assert_eq!(events.next().await.event.phase, Phase::Provisioning);
    world
        .wait_until_recorded("team-a", "concierge-1", "Provisioning", "recorded")
        .await;

    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    world.fake.put_lease(
        crate::support::LEASE_NS,
        "spritz-notifier",
        serde_json::json!({"holderIdentity": "intruder", "leaseDurationSeconds": 3600, "acquireTime": now, "renewTime": now}),
    );
    assert!(
        a.status.wait_for_leadership(false, WAIT).await,
        "a notices it lost the lease"
    );
    world
        .fake
        .wait_until(WAIT, |fake| fake.watch_connections() == 0)
        .await
        .expect("a stopped watching");
    assert!(!a.status.is_synced());

    world.fake.set_phase("team-a", "concierge-1", "Ready");
    world.fake.put_lease(
        crate::support::LEASE_NS,
        "spritz-notifier",
        serde_json::json!({"leaseDurationSeconds": 1}),
    );
    assert!(
        a.status.wait_for_leadership(true, WAIT).await,
        "a takes the released lease back"
    );
    let ready = events.next().await;
    assert_eq!(ready.event.phase, Phase::Ready);
    assert_eq!(ready.event.previous_phase, Some(Phase::Provisioning));
    assert!(events.until_marker(&world.fake, "team-a").await.is_empty());
}
