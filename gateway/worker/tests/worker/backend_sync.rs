//! The backend-sync consumer, through its public API, against the real broker (a vhost
//! per test) and the fake backend's lifecycle webhook receiver.

use std::time::Duration;

use chrono::Utc;
use lapin::message::BasicGetMessage;
use lapin::options::BasicGetOptions;
use lapin::types::ShortString;
use secrecy::SecretString;
use serde_json::json;
use spritz_proto::properties::{
    self, ATTEMPT, Envelope, ORIGIN_EXCHANGE, ORIGIN_ROUTING_KEY, PARK_REASON,
};
use spritz_proto::topology::{
    BACKEND_SYNC_QUEUE, LIFECYCLE_EXCHANGE, PARKING_LOT_QUEUE, RetryTiers,
};
use spritz_proto::traceparent::TraceParent;
use spritz_proto::{LifecycleEvent, MessageType, Phase};
use spritz_sandbox::backend::FakeBackend;
use spritz_sandbox::isolation::{BrokerAdmin, TestVhost, eventually};
use spritz_service::metrics::BrokerMetrics;
use spritz_service::{Broker, BrokerSettings, Trust};
use spritz_worker::backend_sync::{
    BackendSyncMetrics, BackendSyncSettings, SyncOutcome, run, run_without_webhook,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

const HOOK_TOKEN: &str = "hook-token";
const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    vhost: TestVhost,
    broker: Broker,
    backend: FakeBackend,
    metrics: BackendSyncMetrics,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Harness {
    async fn start(max_attempts: u32) -> Harness {
        Self::start_with(max_attempts, None).await
    }

    /// With `webhook` instead of the fake backend's receiver.
    async fn start_with(max_attempts: u32, webhook: Option<Url>) -> Harness {
        let vhost = BrokerAdmin::from_env().create_vhost().await.expect("vhost");
        let mut broker_settings = BrokerSettings::new(vhost.amqp_url(), "backend-sync-test");
        broker_settings.topology.backend_sync_retry_tiers =
            RetryTiers::new([Duration::from_millis(50), Duration::from_millis(100)]);
        let (broker, _supervisor) = Broker::start(broker_settings, BrokerMetrics::unregistered());
        broker.wait_ready(WAIT).await.expect("broker ready");

        let backend = FakeBackend::start("internal").await.expect("fake backend");
        backend.set_lifecycle_token(HOOK_TOKEN);
        let settings = BackendSyncSettings {
            url: webhook.unwrap_or_else(|| Url::parse(&backend.lifecycle_url()).expect("url")),
            token: Some(SecretString::from(HOOK_TOKEN)),
            timeout: Duration::from_secs(2),
            max_attempts,
            retry_delays: vec![Duration::from_millis(50), Duration::from_millis(100)],
            trust: Trust::default(),
        };
        let metrics = BackendSyncMetrics::unregistered();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            broker.clone(),
            settings,
            metrics.clone(),
            shutdown.clone(),
        ));
        Harness {
            vhost,
            broker,
            backend,
            metrics,
            shutdown,
            task,
        }
    }

    async fn publish_raw(&self, routing_key: &str, body: &[u8], message_id: &str) {
        let envelope = Envelope::new(message_id, MessageType::Lifecycle, TraceParent::new_root());
        eventually(WAIT, || async {
            self.broker
                .publish(LIFECYCLE_EXCHANGE, routing_key, body, &envelope)
                .await
                .ok()
        })
        .await
        .expect("published");
    }

    async fn publish(&self, instance_id: &str, phase: Phase) -> LifecycleEvent {
        let event = LifecycleEvent::new(
            "team-a".to_owned(),
            instance_id.to_owned(),
            format!("uid-{instance_id}"),
            phase,
            None,
            "7".to_owned(),
            Utc::now(),
        );
        let body = serde_json::to_vec(&event).expect("json");
        self.publish_raw(&event.routing_key(), &body, &event.message_id())
            .await;
        event
    }

    /// The next parked message, waiting for one to arrive.
    async fn next_parked(&self) -> BasicGetMessage {
        let link = self.broker.wait_ready(WAIT).await.expect("link");
        let channel = link.create_channel().await.expect("channel");
        eventually(WAIT, || async {
            channel
                .basic_get(
                    ShortString::from(PARKING_LOT_QUEUE),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .ok()
                .flatten()
        })
        .await
        .expect("a parked message")
    }

    async fn wait_for(&self, outcome: SyncOutcome, count: u64) {
        eventually(WAIT, || async {
            (self.metrics.count(outcome) >= count).then_some(())
        })
        .await
        .unwrap_or_else(|_| panic!("{outcome:?} never reached {count}"));
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("run returns after shutdown")
            .expect("run");
        self.broker.close().await;
        let _ = self.vhost.delete().await;
    }
}

#[tokio::test]
async fn a_lifecycle_event_is_forwarded_to_the_webhook_with_its_bearer() {
    let harness = Harness::start(8).await;
    harness.publish("concierge", Phase::Expired).await;

    let hooks = harness
        .backend
        .wait_for_lifecycle_webhooks(1, WAIT)
        .await
        .expect("webhook");
    assert_eq!(
        hooks,
        vec![json!({"namespace": "team-a", "instanceId": "concierge", "phase": "Expired"})]
    );
    harness.wait_for(SyncOutcome::Forwarded, 1).await;
    assert_eq!(harness.metrics.count(SyncOutcome::Retry), 0);
    harness.stop().await;
}

#[tokio::test]
async fn a_failing_webhook_is_retried_through_the_delay_tiers_until_it_succeeds() {
    let harness = Harness::start(8).await;
    harness.backend.fail_next_lifecycle_webhooks(2, 500);
    harness.publish("concierge", Phase::Ready).await;

    let hooks = harness
        .backend
        .wait_for_lifecycle_webhooks(1, WAIT)
        .await
        .expect("webhook");
    assert_eq!(hooks[0]["phase"], "Ready");
    harness.wait_for(SyncOutcome::Forwarded, 1).await;
    let traces: Vec<String> = harness
        .backend
        .traced_requests()
        .iter()
        .filter(|r| r.path == "/lifecycle")
        .map(|r| {
            let header = r.traceparent.as_deref().expect("a traceparent");
            TraceParent::parse(header).expect("well formed").trace_id()
        })
        .collect();
    assert_eq!(traces.len(), 3, "two failed tries, then the forward");
    assert!(
        traces.iter().all(|t| *t == traces[0]),
        "every try carries the event's one trace: {traces:?}"
    );
    assert_eq!(harness.backend.lifecycle_attempts(), 3);
    assert_eq!(harness.metrics.count(SyncOutcome::Retry), 2);
    // Exact, unlike the management API's lagging queue counts.
    assert_eq!(harness.metrics.count(SyncOutcome::DeadLettered), 0);
    harness.stop().await;
}

#[tokio::test]
async fn a_webhook_that_always_fails_parks_the_event_after_the_last_try() {
    let harness = Harness::start(3).await;
    harness.backend.fail_next_lifecycle_webhooks(100, 503);
    let event = harness.publish("concierge", Phase::Deleted).await;

    let parked = harness.next_parked().await;
    let props = &parked.delivery.properties;
    assert_eq!(
        properties::header_str(props, PARK_REASON).as_deref(),
        Some(spritz_proto::ParkReason::LifecycleWebhookFailed.as_str())
    );
    assert_eq!(
        properties::header_str(props, ORIGIN_EXCHANGE).as_deref(),
        Some("")
    );
    assert_eq!(
        properties::header_str(props, ORIGIN_ROUTING_KEY).as_deref(),
        Some(BACKEND_SYNC_QUEUE)
    );
    assert_eq!(properties::header_i64(props, ATTEMPT), Some(2));
    assert_eq!(properties::message_id(props), Some(event.message_id()));
    assert_eq!(
        spritz_proto::decode::<LifecycleEvent>(&parked.delivery.data).expect("body"),
        event
    );
    harness.wait_for(SyncOutcome::DeadLettered, 1).await;
    assert_eq!(harness.backend.lifecycle_attempts(), 3);
    assert!(harness.backend.lifecycle_webhooks().is_empty());
    harness.stop().await;
}

#[tokio::test]
async fn garbage_and_unknown_versions_are_parked_at_once() {
    let harness = Harness::start(8).await;
    harness
        .publish_raw("lifecycle.Ready", b"not json at all", "garbage-1")
        .await;
    let first = harness.next_parked().await;
    assert_eq!(
        properties::header_str(&first.delivery.properties, PARK_REASON).as_deref(),
        Some("malformed")
    );
    assert_eq!(first.delivery.data, b"not json at all");

    let future = br#"{"v":2,"namespace":"team-a","instanceId":"concierge","phase":"Ready"}"#;
    harness
        .publish_raw("lifecycle.Ready", future, "future-1")
        .await;
    let second = harness.next_parked().await;
    assert_eq!(
        properties::header_str(&second.delivery.properties, PARK_REASON).as_deref(),
        Some("unknown_version")
    );
    harness.wait_for(SyncOutcome::DeadLettered, 2).await;
    assert_eq!(harness.backend.lifecycle_attempts(), 0);
    harness.stop().await;
}

#[tokio::test]
async fn the_consumer_comes_back_after_the_broker_connection_is_cut() {
    let harness = Harness::start(8).await;
    harness.publish("first", Phase::Ready).await;
    harness
        .backend
        .wait_for_lifecycle_webhooks(1, WAIT)
        .await
        .expect("first webhook");

    harness
        .vhost
        .close_connections()
        .await
        .expect("cut connections");
    harness.publish("second", Phase::Expiring).await;
    let hooks = harness
        .backend
        .wait_for_lifecycle_webhooks(2, WAIT)
        .await
        .expect("second webhook");
    assert_eq!(hooks[1]["instanceId"], "second");
    harness.stop().await;
}

/// A webhook that reports each request and answers 200 only when released.
async fn held_webhook() -> (
    Url,
    tokio::sync::mpsc::Receiver<()>,
    tokio::sync::watch::Sender<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = Url::parse(&format!(
        "http://{}/hook",
        listener.local_addr().expect("addr")
    ))
    .expect("url");
    let (arrived_tx, arrived) = tokio::sync::mpsc::channel(16);
    let (release, released) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let arrived_tx = arrived_tx.clone();
            let mut released = released.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 16 * 1024];
                if socket.read(&mut buffer).await.unwrap_or(0) == 0 {
                    return;
                }
                let _ = arrived_tx.send(()).await;
                let _ = released.wait_for(|r| *r).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    (url, arrived, release)
}

#[tokio::test]
async fn shutdown_stops_consuming_and_finishes_the_event_in_flight() {
    let (url, mut arrived, release) = held_webhook().await;
    let mut harness = Harness::start_with(8, Some(url)).await;
    harness.publish("in-flight", Phase::Ready).await;
    tokio::time::timeout(WAIT, arrived.recv())
        .await
        .expect("webhook called")
        .expect("request");

    harness.shutdown.cancel();
    harness.publish("after-shutdown", Phase::Ready).await;
    let _ = release.send(true);
    tokio::time::timeout(WAIT, &mut harness.task)
        .await
        .expect("run returns")
        .expect("run");
    assert_eq!(harness.metrics.count(SyncOutcome::Forwarded), 1);
    assert!(arrived.try_recv().is_err(), "no event taken after shutdown");
    let depth = eventually(WAIT, || async {
        harness
            .vhost
            .queue_depth(BACKEND_SYNC_QUEUE)
            .await
            .ok()
            .filter(|depth| *depth == 1)
    })
    .await;
    assert!(
        depth.is_ok(),
        "the event published after shutdown waits in the queue"
    );
    harness.broker.close().await;
    let _ = harness.vhost.delete().await;
}

#[tokio::test]
async fn without_a_webhook_events_are_acked_and_counted_as_skipped() {
    let vhost = BrokerAdmin::from_env().create_vhost().await.expect("vhost");
    let (broker, _supervisor) = Broker::start(
        BrokerSettings::new(vhost.amqp_url(), "backend-sync-test"),
        BrokerMetrics::unregistered(),
    );
    broker.wait_ready(WAIT).await.expect("broker ready");
    let metrics = BackendSyncMetrics::unregistered();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_without_webhook(
        broker.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    let event = LifecycleEvent::new(
        "team-a".to_owned(),
        "concierge".to_owned(),
        "uid-1".to_owned(),
        Phase::Ready,
        None,
        "1".to_owned(),
        Utc::now(),
    );
    let body = serde_json::to_vec(&event).expect("json");
    let envelope = Envelope::new(
        event.message_id(),
        MessageType::Lifecycle,
        TraceParent::new_root(),
    );
    broker
        .publish(LIFECYCLE_EXCHANGE, &event.routing_key(), &body, &envelope)
        .await
        .expect("published");
    eventually(WAIT, || async {
        (metrics.count(SyncOutcome::Skipped) == 1).then_some(())
    })
    .await
    .expect("skipped");
    let drained = eventually(WAIT, || async {
        vhost
            .queue_depth(BACKEND_SYNC_QUEUE)
            .await
            .ok()
            .filter(|depth| *depth == 0)
    })
    .await;
    assert!(drained.is_ok());

    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run returns")
        .expect("run");
    broker.close().await;
    let _ = vhost.delete().await;
}

#[tokio::test]
async fn backend_sync_comes_back_when_the_broker_cancels_its_consumer() {
    let harness = Harness::start(8).await;
    harness.publish("before", Phase::Ready).await;
    harness.wait_for(SyncOutcome::Forwarded, 1).await;

    // Deleting the queue makes the broker cancel its consumer; the link stays up.
    let link = harness.broker.wait_ready(WAIT).await.expect("link");
    let channel = link.create_channel().await.expect("channel");
    channel
        .queue_delete(
            ShortString::from(BACKEND_SYNC_QUEUE),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .expect("queue deleted");

    // Reconnecting redeclares the queue (publishing is refused as unroutable until
    // then); the consumer is back on it.
    harness.publish("after", Phase::Ready).await;
    harness.wait_for(SyncOutcome::Forwarded, 2).await;
    let hooks = harness
        .backend
        .wait_for_lifecycle_webhooks(2, WAIT)
        .await
        .expect("webhooks");
    assert_eq!(hooks[1]["instanceId"], "after");
    harness.stop().await;
}
