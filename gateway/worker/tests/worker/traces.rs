//! Traces that can be followed: the calls a delivery makes carry a `traceparent` of
//! the message's trace, on the first attempt and on every retry.

use spritz_proto::traceparent::TraceParent;
use spritz_sandbox::TracedRequest;
use spritz_sandbox::backend::ExchangeMode;

use spritz_sandbox::isolation;

use crate::support::{WAIT, World};

/// The traceparents of the requests to `path`, parsed.
fn traceparents(requests: &[TracedRequest], path: &str) -> Vec<TraceParent> {
    requests
        .iter()
        .filter(|request| request.path == path)
        .map(|request| {
            let header = request
                .traceparent
                .as_deref()
                .unwrap_or_else(|| panic!("{path} without a traceparent"));
            TraceParent::parse(header).expect("a well-formed traceparent")
        })
        .collect()
}

const EXCHANGE: &str = "/internal/v1/spritz/channel-sessions/exchange";
const UPSERT: &str = "/api/channel-conversations/upsert";

#[tokio::test]
async fn the_exchange_upsert_bootstrap_and_acp_connect_of_a_delivery_carry_a_child_of_its_trace() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    let event = world.channel_message("hello there");
    let trace = TraceParent::new_root();
    let body = serde_json::to_vec(&event).expect("json");
    world
        .publish_traced(&event.event_id, &body, trace.clone())
        .await;
    world.posts(1).await;
    world.settled().await;

    let backend = world.backend.traced_requests();
    let spritz = world.spritz.traced_requests();
    let exchanges = traceparents(&backend, EXCHANGE);
    let upserts = traceparents(&spritz, UPSERT);
    let bootstrap = spritz
        .iter()
        .find(|r| r.path.ends_with("/bootstrap"))
        .expect("a bootstrap")
        .path
        .clone();
    let bootstraps = traceparents(&spritz, &bootstrap);
    let connect = bootstrap.replace("/bootstrap", "/connect");
    let connects = traceparents(&spritz, &connect);
    assert_eq!(exchanges.len(), 1);
    assert_eq!(upserts.len(), 2, "the conversation, then the reply alias");
    assert_eq!(bootstraps.len(), 1);
    assert_eq!(
        connects.len(),
        1,
        "the ACP websocket upgrade carries it too"
    );
    for call in exchanges
        .iter()
        .chain(&upserts)
        .chain(&bootstraps)
        .chain(&connects)
    {
        assert_eq!(call.trace_id(), trace.trace_id());
        assert_ne!(
            call.parent_id_bytes(),
            trace.parent_id_bytes(),
            "a call is a child of the delivery, not the gateway's span again"
        );
    }
    world.finish().await;
}

#[tokio::test]
async fn a_delivery_retried_through_a_delay_queue_keeps_its_trace_on_every_call() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    let team = world.install.team_id.clone();
    world.backend.script_exchange(
        &team,
        vec![ExchangeMode::Unavailable, ExchangeMode::Transient(503)],
    );
    let event = world.channel_message("hello again");
    let trace = TraceParent::new_root();
    let body = serde_json::to_vec(&event).expect("json");
    world
        .publish_traced(&event.event_id, &body, trace.clone())
        .await;
    // A status message may come first, depending on how long the retries took.
    let slack = &world.slack;
    isolation::eventually(WAIT, || async move {
        slack
            .posts()
            .iter()
            .any(|post| post.text == "echo: hello again")
            .then_some(())
    })
    .await
    .expect("the reply");
    world.settled().await;

    let exchanges = traceparents(&world.backend.traced_requests(), EXCHANGE);
    assert_eq!(exchanges.len(), 3, "unavailable, transient, then resolved");
    for call in &exchanges {
        assert_eq!(call.trace_id(), trace.trace_id());
    }
    world.finish().await;
}
