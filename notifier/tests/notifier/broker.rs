//! A broker outage: nothing is recorded that was not published, and the change is
//! published once the broker is back.

use std::time::Duration;

use spritz_notifier::NOTIFIED_PHASE_ANNOTATION;
use spritz_notifier::metrics::EventOutcome;
use spritz_proto::Phase;
use spritz_sandbox::isolation::TestVhost;

use crate::support::{World, eventually};

/// Takes the test user's permissions on the vhost away (so reconnecting fails) or
/// gives them back, through the management API.
async fn set_access(vhost: &TestVhost, allowed: bool) {
    let management = std::env::var("SPRITZ_TEST_RABBITMQ_MANAGEMENT_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned());
    let url = format!("{management}/api/permissions/{}/guest", vhost.name());
    let http = spritz_sandbox::tls::http_client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let request = if allowed {
        http.put(&url)
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
    } else {
        http.delete(&url)
    };
    request
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("management API");
}

#[tokio::test]
async fn a_publish_failure_leaves_the_annotation_alone_and_the_event_follows_when_the_broker_returns()
 {
    let world = World::start().await;
    let leader = world.leader("a").await;
    world
        .fake
        .create_spritz("team-a", "concierge-1", Some("Provisioning"));
    world
        .wait_until_recorded(
            "team-a",
            "concierge-1",
            "Provisioning",
            "Provisioning recorded",
        )
        .await;

    set_access(&world.vhost, false).await;
    world
        .vhost
        .close_connections()
        .await
        .expect("connections closed");
    world.fake.set_phase("team-a", "concierge-1", "Ready");
    eventually("a failed publish", || {
        leader
            .metrics
            .events(Phase::Ready, EventOutcome::PublishFailed)
            >= 1
    })
    .await;
    assert_eq!(
        world
            .fake
            .annotations("team-a", "concierge-1")
            .get(NOTIFIED_PHASE_ANNOTATION)
            .map(String::as_str),
        Some("Provisioning"),
        "nothing recorded before the broker confirmed"
    );

    set_access(&world.vhost, true).await;
    world
        .wait_until_recorded(
            "team-a",
            "concierge-1",
            "Ready",
            "Ready recorded once published",
        )
        .await;
    let mut events = world.events().await;
    let first = events.next().await;
    assert_eq!(first.event.phase, Phase::Provisioning);
    let ready = events.next().await;
    assert_eq!(ready.event.phase, Phase::Ready);
    assert_eq!(ready.event.previous_phase, Some(Phase::Provisioning));
    assert_eq!(
        leader.metrics.events(Phase::Ready, EventOutcome::Published),
        1
    );
    assert!(events.until_marker(&world.fake, "team-a").await.is_empty());
}
