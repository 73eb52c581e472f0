//! This worker's broadcast queue on `spritz.lifecycle` (SPEC §4, §5 "Lifecycle"):
//! end-of-life phases drop cached sessions bound to the runtime; `Ready` wakes the
//! deliveries this worker left waiting for it (see [`crate::wake`]).
//!
//! The queue is exclusive and server-named, redeclared on every new broker link; an
//! event missed while disconnected only costs a stale session (the next call on it
//! fails and recovers) or a wake-up at the end of the normal delay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use spritz_proto::{LifecycleEvent, Phase};
use spritz_proto::{properties, topology};
use spritz_service::link_consumer::follow_links;
use spritz_service::{Broker, Link};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::ledger::Ledger;
use crate::message_trace;
use crate::metrics::WorkerMetrics;
use crate::requeue::Requeue;
use crate::sessions::SessionCache;
use crate::wake::Waker;

/// What the lifecycle consumer acts on.
#[derive(Clone)]
pub struct LifecycleHandler {
    pub sessions: SessionCache,
    pub waker: Waker,
    pub requeue: Requeue,
    pub ledger: Ledger,
    pub metrics: WorkerMetrics,
    /// True while this worker's broadcast queue is consumed (a readiness check: a
    /// worker that misses invalidations must not take work).
    pub subscribed: Arc<AtomicBool>,
}

/// What a worker does on `phase`: the `action` label of
/// `spritz_worker_lifecycle_events_total`.
pub fn action(phase: Phase) -> &'static str {
    if phase.invalidates_sessions() {
        "invalidated"
    } else if phase == Phase::Ready {
        "woke"
    } else {
        "ignored"
    }
}

impl LifecycleHandler {
    /// Applies one lifecycle event to this worker.
    pub async fn apply(&self, event: &LifecycleEvent) {
        let phase = event.phase;
        if phase.invalidates_sessions() {
            let dropped = self
                .sessions
                .invalidate_runtime(&event.namespace, &event.instance_id);
            tracing::info!(namespace = %event.namespace, instance_id = %event.instance_id, %phase, dropped, "runtime ending; sessions dropped");
        } else if phase == Phase::Ready {
            let woken = self
                .waker
                .wake_runtime(
                    &event.namespace,
                    &event.instance_id,
                    &self.sessions,
                    &self.requeue,
                    &self.ledger,
                )
                .await;
            tracing::info!(namespace = %event.namespace, instance_id = %event.instance_id, woken, "runtime ready; waiting deliveries woken");
        }
        self.metrics
            .lifecycle_events
            .with_label_values(&[phase.as_str(), action(phase)])
            .inc();
    }
}

/// Consumes lifecycle events until `shutdown`, starting over on every new link.
pub async fn run(broker: Broker, handler: LifecycleHandler, shutdown: CancellationToken) {
    let (handler, shutdown_ref) = (&handler, &shutdown);
    follow_links(
        &broker,
        "lifecycle consumer",
        &shutdown,
        |link| async move {
            let result = consume_on(&link, handler, shutdown_ref).await;
            handler.subscribed.store(false, Ordering::Relaxed);
            result
        },
    )
    .await;
}

async fn consume_on(
    link: &Link,
    handler: &LifecycleHandler,
    shutdown: &CancellationToken,
) -> Result<(), lapin::Error> {
    let channel = link.create_channel().await?;
    channel.basic_qos(32, BasicQosOptions::default()).await?;
    let queue = topology::declare_lifecycle_broadcast_queue(&channel).await?;
    let mut consumer = channel
        .basic_consume(
            ShortString::from(queue.as_str()),
            ShortString::from(""),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    handler.subscribed.store(true, Ordering::Relaxed);
    loop {
        tokio::select! {
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let trace = message_trace::of_delivery(&delivery.properties);
                    let span = tracing::info_span!(
                        "lifecycle_event",
                        trace_id = %trace.trace_id(),
                        message_id = properties::message_id(&delivery.properties).unwrap_or_default(),
                    );
                    spritz_service::trace::continue_trace(&span, &trace);
                    async {
                        match spritz_proto::decode::<LifecycleEvent>(&delivery.data) {
                            Ok(event) => handler.apply(&event).await,
                            Err(error) => {
                                // The backend-sync queue parks its own copy; this one is dropped.
                                tracing::warn!(reason = error.reason(), "undecodable lifecycle event ignored");
                            }
                        }
                    }
                    .instrument(span)
                    .await;
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                }
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            },
            () = link.closed() => return Ok(()),
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}
