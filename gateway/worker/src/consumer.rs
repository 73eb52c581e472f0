//! The consume loop: takes deliveries off the work queue (manual acks, bounded
//! prefetch), runs the pipeline on each concurrently, and settles every outcome with
//! the broker. It starts over on every new broker link, and on shutdown cancels the
//! consumer, lets in-flight deliveries finish within the grace period and hands the
//! rest back (nack, requeue).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use lapin::Acker;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{FieldTable, ShortString};
use spritz_proto::topology;
use spritz_service::link_consumer::follow_links;
use spritz_service::{Broker, Link};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ledger::Ledger;
use crate::message_trace;
use crate::metrics::WorkerMetrics;
use crate::outcome::{Incoming, Outcome, RetryStage};
use crate::pipeline::Pipeline;
use crate::requeue::Requeue;
use crate::wake::Waker;

/// Settles outcomes: the only place that acks, nacks and publishes copies.
#[derive(Clone)]
pub struct Settler {
    pub requeue: Requeue,
    pub waker: Waker,
    pub ledger: Ledger,
    pub metrics: WorkerMetrics,
}

impl Settler {
    /// Does what `outcome` asks of the broker. Returns whether the delivery was acked.
    pub async fn settle(
        &self,
        acker: &Acker,
        incoming: &Incoming,
        outcome: Outcome,
        started: Instant,
    ) -> bool {
        let acked = match &outcome {
            Outcome::RetryLater {
                stage,
                after,
                event,
            } => {
                match self
                    .requeue
                    .retry(event, &incoming.properties, *after)
                    .await
                {
                    Ok(delay) => {
                        self.metrics
                            .retries
                            .with_label_values(&[stage.as_str()])
                            .inc();
                        let acked = ack(acker).await;
                        if *stage == RetryStage::Session
                            && !delay.is_zero()
                            && self.waker.note(event, &incoming.properties, delay, started)
                        {
                            self.waker
                                .wake_event(&event.event_id, &self.requeue, &self.ledger)
                                .await;
                        }
                        acked
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "retry copy not confirmed; handing the delivery back");
                        nack(acker).await;
                        return false;
                    }
                }
            }
            Outcome::ParkingLot { reason } => match self
                .requeue
                .park(&incoming.body, &incoming.properties, *reason)
                .await
            {
                Ok(()) => ack(acker).await,
                Err(error) => {
                    tracing::warn!(error = %error, "parking-lot copy not confirmed; handing the delivery back");
                    nack(acker).await;
                    return false;
                }
            },
            Outcome::HandBack => {
                nack(acker).await;
                return false;
            }
            _ => ack(acker).await,
        };
        self.metrics
            .deliveries
            .with_label_values(&[outcome.label()])
            .inc();
        acked
    }
}

async fn ack(acker: &Acker) -> bool {
    match acker.ack(BasicAckOptions::default()).await {
        Ok(_) => true,
        Err(error) => {
            // The channel is gone; the broker redelivers and the ledger sees a duplicate.
            tracing::warn!(error = %error, "ack failed");
            false
        }
    }
}

async fn nack(acker: &Acker) {
    if let Err(error) = acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
    {
        tracing::warn!(error = %error, "nack failed");
    }
}

/// How the consume loop runs.
#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    pub prefetch: u16,
    pub shutdown_grace: Duration,
    /// True while the work queue is consumed (a readiness check).
    pub consuming: Arc<AtomicBool>,
}

/// Consumes until `shutdown`, then drains. Returns when every delivery is settled or
/// handed back.
pub async fn run(
    broker: Broker,
    pipeline: Arc<Pipeline>,
    settler: Settler,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let hand_back = CancellationToken::new();
    let work = Work {
        pipeline: &pipeline,
        settler: &settler,
        tracker: &tracker,
        hand_back: &hand_back,
    };
    let (settings, work, shutdown_ref) = (&settings, &work, &shutdown);
    follow_links(&broker, "work consumer", &shutdown, |link| async move {
        let result = consume_on(&link, settings, work, shutdown_ref).await;
        settings.consuming.store(false, Ordering::Relaxed);
        result
    })
    .await;
    drain(&tracker, &hand_back, settings.shutdown_grace).await;
}

/// Lets in-flight deliveries finish within `grace`, then hands the rest back.
async fn drain(tracker: &TaskTracker, hand_back: &CancellationToken, grace: Duration) {
    tracker.close();
    let in_flight = tracker.len();
    if in_flight > 0 {
        tracing::info!(in_flight, "waiting for in-flight deliveries");
    }
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            in_flight = tracker.len(),
            "grace period over; handing in-flight deliveries back"
        );
        hand_back.cancel();
        tracker.wait().await;
    }
}

struct Work<'a> {
    pipeline: &'a Arc<Pipeline>,
    settler: &'a Settler,
    tracker: &'a TaskTracker,
    hand_back: &'a CancellationToken,
}

async fn consume_on(
    link: &Arc<Link>,
    settings: &ConsumerSettings,
    work: &Work<'_>,
    shutdown: &CancellationToken,
) -> Result<(), lapin::Error> {
    let channel = link.create_channel().await?;
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            ShortString::from(topology::WORK_QUEUE),
            ShortString::from(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    settings.consuming.store(true, Ordering::Relaxed);
    tracing::info!(
        generation = link.generation(),
        prefetch = settings.prefetch,
        "consuming the work queue"
    );
    loop {
        tokio::select! {
            next = consumer.next() => match next {
                Some(Ok(delivery)) => spawn_delivery(delivery, work),
                Some(Err(error)) => return Err(error),
                None => {
                    tracing::warn!("the broker cancelled the work consumer");
                    return Ok(());
                }
            },
            () = link.closed() => return Ok(()),
            () = shutdown.cancelled() => {
                // Stop taking work, then settle what is in flight on this channel
                // (closing it first would hand those deliveries back and fail their
                // acks); deliveries prefetched but not started go back when it closes.
                if let Err(error) = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await {
                    tracing::warn!(error = %error, "cancelling the consumer failed");
                }
                drain(work.tracker, work.hand_back, settings.shutdown_grace).await;
                return Ok(());
            }
        }
    }
}

fn spawn_delivery(delivery: lapin::message::Delivery, work: &Work<'_>) {
    let pipeline = work.pipeline.clone();
    let settler = work.settler.clone();
    let hand_back = work.hand_back.clone();
    work.tracker.spawn(async move {
        let started = Instant::now();
        settler.metrics.in_flight.inc();
        let acker = delivery.acker;
        let incoming = Incoming {
            body: delivery.data,
            properties: message_trace::ensure_header(delivery.properties),
            redelivered: delivery.redelivered,
        };
        let outcome = tokio::select! {
            outcome = pipeline.process(&incoming) => outcome,
            () = hand_back.cancelled() => Outcome::HandBack,
        };
        // Boxed: settling (publishing a copy, acking) is over quickly, and inline its
        // state would take room in every waiting delivery's task.
        Box::pin(settler.settle(&acker, &incoming, outcome, started)).await;
        settler.metrics.in_flight.dec();
    });
}
