//! The `spritz.lifecycle.backend-sync` consumer: one consumer group across all workers
//! that forwards every `spritz.lifecycle.v1` event to the backend's lifecycle webhook
//! (SPEC §5), retrying failures through the backend-sync delay tiers and parking an
//! event after its last try, or at once when it cannot be read.
//!
//! Layout: this file holds the settings and the consume loop (restarted on every new
//! broker link, manual acks, small prefetch, drained on shutdown); [`forward`] decides
//! what one delivery becomes and publishes its retry or parking-lot copy; `webhook`
//! makes the HTTP call; [`metrics`] counts outcomes.
//!
//! A delivery is acked only after its effect is done: the webhook answered 2xx, or the
//! broker confirmed the retry or parking-lot copy. When a copy cannot be published the
//! delivery is handed back (nack, requeue) after a short pause; the work queue's
//! delivery limit parks it if that keeps happening.

mod forward;
pub mod metrics;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use secrecy::SecretString;
use spritz_proto::topology::BACKEND_SYNC_QUEUE;
use spritz_service::link_consumer::follow_links;
use spritz_service::{Broker, Link, Trust};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use forward::Outcome;
pub use metrics::{BackendSyncMetrics, SyncOutcome};

use forward::Forwarder;
use webhook::Webhook;

/// Unacked deliveries per worker: enough to overlap a few webhook calls, small enough
/// that one slow worker does not hold back events other workers could forward.
pub const PREFETCH: u16 = 8;

/// How events reach the lifecycle webhook.
#[derive(Clone, Debug)]
pub struct BackendSyncSettings {
    /// `SPRITZ_LIFECYCLE_NOTIFY_URL`, used as is.
    pub url: Url,
    /// `SPRITZ_LIFECYCLE_NOTIFY_AUTH_TOKEN`, sent as a bearer when set.
    pub token: Option<SecretString>,
    /// `SPRITZ_LIFECYCLE_NOTIFY_TIMEOUT`: the whole webhook call.
    pub timeout: Duration,
    /// Webhook tries per event, the first included; after the last it is parked.
    pub max_attempts: u32,
    /// The wait before retry n (the last entry repeats). Each wait takes the nearest
    /// declared backend-sync tier at or above it (`TopologyOptions::backend_sync_retry_tiers`).
    pub retry_delays: Vec<Duration>,
    /// Whom an HTTPS webhook must prove itself to.
    pub trust: Trust,
}

impl BackendSyncSettings {
    /// Defaults: no token, 3s timeout, 8 tries, waits of 1s, 5s, 30s, then 60s.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            token: None,
            timeout: Duration::from_secs(3),
            max_attempts: 8,
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(60),
            ],
            trust: Trust::default(),
        }
    }
}

/// Forwards lifecycle events to the webhook until `shutdown`; then stops consuming,
/// finishes the deliveries in flight and returns. Survives broker reconnects by
/// consuming again on every new link.
pub async fn run(
    broker: Broker,
    settings: BackendSyncSettings,
    metrics: BackendSyncMetrics,
    shutdown: CancellationToken,
) {
    let http = match settings
        .trust
        .http_client_builder()
        .timeout(settings.timeout)
        .tcp_nodelay(true)
        .build()
    {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "backend sync: cannot build the HTTP client; not forwarding lifecycle events");
            return;
        }
    };
    let webhook = Webhook::new(http, settings.url.clone(), settings.token.clone());
    let forwarder = Forwarder::new(
        broker.clone(),
        Some(webhook),
        settings.max_attempts,
        settings.retry_delays,
        metrics,
    );
    consume_links(broker, Arc::new(forwarder), shutdown).await;
}

/// Consumes the backend-sync queue without a webhook, acking every event (counted as
/// `skipped`), so the queue does not grow without bound in a deployment that has no
/// `SPRITZ_LIFECYCLE_NOTIFY_URL`. Unreadable events are still parked.
pub async fn run_without_webhook(
    broker: Broker,
    metrics: BackendSyncMetrics,
    shutdown: CancellationToken,
) {
    let forwarder = Forwarder::new(broker.clone(), None, 1, Vec::new(), metrics);
    consume_links(broker, Arc::new(forwarder), shutdown).await;
}

/// Consumes on every live link in turn ([`follow_links`]), like every other
/// subscription of the worker.
async fn consume_links(broker: Broker, forwarder: Arc<Forwarder>, shutdown: CancellationToken) {
    follow_links(&broker, "backend sync", &shutdown, |link| {
        let (forwarder, shutdown) = (forwarder.clone(), shutdown.clone());
        async move {
            tracing::info!(
                generation = link.generation(),
                "backend sync: consuming {BACKEND_SYNC_QUEUE}"
            );
            consume(&link, &forwarder, &shutdown).await
        }
    })
    .await;
}

/// Consumes on one link until it breaks, the channel ends or shutdown; in-flight
/// deliveries are finished before it returns.
async fn consume(
    link: &Link,
    forwarder: &Arc<Forwarder>,
    shutdown: &CancellationToken,
) -> Result<(), lapin::Error> {
    let channel = link
        .create_channel()
        .await
        .inspect_err(|_| link.report_broken())?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            ShortString::from(BACKEND_SYNC_QUEUE),
            ShortString::from(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut in_flight = JoinSet::new();
    let ended = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                if let Err(error) = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await {
                    tracing::debug!(%error, "backend sync: cancelling the consumer");
                }
                break Ok(());
            }
            () = link.closed() => break Ok(()),
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    in_flight.spawn(forwarder.clone().deliver(delivery, shutdown.clone()));
                }
                Some(Err(error)) => break Err(error),
                None => break Ok(()),
            },
        }
    };
    while in_flight.join_next().await.is_some() {}
    if channel.status().connected() {
        let _ = channel
            .close(200, ShortString::from("backend sync stopped"))
            .await;
    }
    ended
}
