//! What one backend-sync delivery becomes — forwarded, re-queued through a delay tier,
//! or parked — and the confirmed publish of its retry or parking-lot copy.

use std::sync::Arc;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use spritz_proto::copies::{PARKING_HEADERS, copy_of, parked_copy};
use spritz_proto::properties::{self, ATTEMPT};
use spritz_proto::topology::{
    self, BACKEND_SYNC_QUEUE, BACKEND_SYNC_RETRY_EXCHANGE, DEAD_LETTER_EXCHANGE, RetryTiers,
};
use spritz_proto::{LifecycleEvent, MessageType, ParkReason};
use spritz_service::{Broker, PublishError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use tracing::field::Empty;

use super::metrics::{BackendSyncMetrics, SyncOutcome};
use super::webhook::Webhook;
use crate::message_trace;

/// Pause before handing a delivery back when its copy could not be published.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// What became of one delivery; the caller acks it in every case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Forwarded,
    /// A copy waits `delay` in the backend-sync delay tier; it carries `attempt`.
    Retry {
        attempt: u32,
        delay: Duration,
    },
    Parked {
        reason: ParkReason,
    },
    Skipped,
}

impl Outcome {
    fn metric(&self) -> SyncOutcome {
        match self {
            Outcome::Forwarded => SyncOutcome::Forwarded,
            Outcome::Retry { .. } => SyncOutcome::Retry,
            Outcome::Parked { .. } => SyncOutcome::DeadLettered,
            Outcome::Skipped => SyncOutcome::Skipped,
        }
    }
}

pub(super) struct Forwarder {
    broker: Broker,
    webhook: Option<Webhook>,
    max_attempts: u32,
    retry_delays: Vec<Duration>,
    tiers: RetryTiers,
    metrics: BackendSyncMetrics,
}

impl Forwarder {
    pub(super) fn new(
        broker: Broker,
        webhook: Option<Webhook>,
        max_attempts: u32,
        retry_delays: Vec<Duration>,
        metrics: BackendSyncMetrics,
    ) -> Self {
        // Only declared tiers route; waits between them round up.
        let tiers = broker.settings().topology.backend_sync_retry_tiers.clone();
        Self {
            broker,
            webhook,
            max_attempts: max_attempts.max(1),
            retry_delays,
            tiers,
            metrics,
        }
    }

    /// Processes one delivery and acks it once its effect is done; hands it back
    /// (nack, requeue) when its retry or parking copy was not confirmed.
    pub(super) async fn deliver(self: Arc<Self>, delivery: Delivery, shutdown: CancellationToken) {
        let message_id = properties::message_id(&delivery.properties).unwrap_or_default();
        let trace = message_trace::of_delivery(&delivery.properties);
        let span = tracing::info_span!(
            "backend_sync",
            trace_id = %trace.trace_id(),
            %message_id,
            namespace = Empty,
            instance_id = Empty,
            phase = Empty,
        );
        spritz_service::trace::continue_trace(&span, &trace);
        message_trace::within(trace, self.settle(delivery, message_id, shutdown))
            .instrument(span)
            .await;
    }

    async fn settle(&self, delivery: Delivery, message_id: String, shutdown: CancellationToken) {
        match self.process(&delivery).await {
            Ok(outcome) => {
                tracing::debug!(%message_id, ?outcome, "backend sync: delivery done");
                self.metrics.record(outcome.metric());
                if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                    tracing::warn!(%message_id, %error, "backend sync: ack failed; the event will come again");
                }
            }
            Err(error) => {
                tracing::warn!(%message_id, %error, "backend sync: retry or parking copy not confirmed; handing the event back");
                tokio::select! {
                    () = tokio::time::sleep(REQUEUE_PAUSE) => {}
                    () = shutdown.cancelled() => {}
                }
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                };
                if let Err(error) = delivery.acker.nack(requeue).await {
                    tracing::debug!(%message_id, %error, "backend sync: nack failed; the broker requeues on channel close");
                }
            }
        }
    }

    /// # Errors
    /// The retry or parking-lot copy was not confirmed by the broker.
    pub(super) async fn process(&self, delivery: &Delivery) -> Result<Outcome, PublishError> {
        let requeued = properties::header_i64(&delivery.properties, ATTEMPT)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let event = match spritz_proto::decode::<LifecycleEvent>(&delivery.data) {
            Ok(event) => event,
            Err(error) => {
                let reason = ParkReason::from(&error);
                tracing::warn!(
                    reason = reason.as_str(),
                    "backend sync: parking an unreadable lifecycle event"
                );
                self.park(delivery, reason, requeued).await?;
                return Ok(Outcome::Parked { reason });
            }
        };
        let Some(webhook) = &self.webhook else {
            return Ok(Outcome::Skipped);
        };
        let span = tracing::Span::current();
        span.record("namespace", event.namespace.as_str());
        span.record("instance_id", event.instance_id.as_str());
        span.record("phase", event.phase.as_str());
        let failure = match webhook.send(&event).await {
            Ok(()) => return Ok(Outcome::Forwarded),
            Err(failure) => failure,
        };
        let tries = requeued.saturating_add(1);
        if tries >= self.max_attempts {
            tracing::warn!(tries, %failure, "backend sync: webhook failed on the last try; parking the event");
            let reason = ParkReason::LifecycleWebhookFailed;
            self.park(delivery, reason, requeued).await?;
            return Ok(Outcome::Parked { reason });
        }
        let delay = self.delay_before_retry(requeued);
        tracing::info!(tries, %failure, delay_ms = delay.as_millis(), "backend sync: webhook failed; retrying later");
        let envelope = copy_of(
            &delivery.properties,
            MessageType::Lifecycle,
            &PARKING_HEADERS,
        )
        .with_number(ATTEMPT, i64::from(tries));
        self.broker
            .publish(
                BACKEND_SYNC_RETRY_EXCHANGE,
                &topology::tier_label(delay),
                &delivery.data,
                &envelope,
            )
            .await?;
        Ok(Outcome::Retry {
            attempt: tries,
            delay,
        })
    }

    /// The tier the copy waits in before retry `requeued + 1`.
    fn delay_before_retry(&self, requeued: u32) -> Duration {
        let index = usize::try_from(requeued).unwrap_or(usize::MAX);
        let wanted = self
            .retry_delays
            .get(index)
            .or(self.retry_delays.last())
            .copied()
            .unwrap_or(Duration::from_secs(1));
        self.tiers.at_or_above(wanted)
    }

    async fn park(
        &self,
        delivery: &Delivery,
        reason: ParkReason,
        requeued: u32,
    ) -> Result<(), PublishError> {
        let envelope = parked_copy(
            &delivery.properties,
            MessageType::Lifecycle,
            reason,
            "",
            BACKEND_SYNC_QUEUE,
        )
        .with_number(ATTEMPT, i64::from(requeued));
        self.broker
            .publish(
                DEAD_LETTER_EXCHANGE,
                BACKEND_SYNC_QUEUE,
                &delivery.data,
                &envelope,
            )
            .await
    }
}
