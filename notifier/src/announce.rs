//! The unit of work: announce one change of one object — publish the lifecycle event
//! and wait for the broker's confirm, *then* record the phase in the object's
//! annotation — or only record the phase when an earlier patch failed.
//!
//! The order is the point: an annotation is written only for an event the broker has
//! confirmed, so a crash between the two repeats the event (consumers are idempotent)
//! and never loses it.

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use spritz_proto::properties::Envelope;
use spritz_proto::topology::LIFECYCLE_EXCHANGE;
use spritz_proto::traceparent::TraceParent;
use spritz_proto::{LifecycleEvent, MessageType, Phase};
use spritz_service::{Broker, PublishError};

use crate::metrics::{EventOutcome, NotifierMetrics};
use crate::spritz::{Key, NOTIFIED_PHASE_ANNOTATION, Spritz};
use crate::tracker::{Change, Work, WorkResult};

/// Publishes and annotates; cheap to clone into every task.
#[derive(Clone)]
pub struct Announcer {
    broker: Broker,
    client: kube::Client,
    metrics: NotifierMetrics,
}

impl Announcer {
    pub fn new(broker: Broker, client: kube::Client, metrics: NotifierMetrics) -> Self {
        Self {
            broker,
            client,
            metrics,
        }
    }

    /// Does `work` for the object `key` and reports how it ended; every failure is
    /// logged and counted here.
    pub async fn run(&self, key: &Key, work: &Work) -> WorkResult {
        match work {
            Work::Announce { change, record } => {
                if let Err(error) = self.publish(key, change).await {
                    self.metrics
                        .count_event(change.phase, EventOutcome::PublishFailed);
                    tracing::warn!(
                        namespace = %key.namespace, instance_id = %key.name, uid = %change.uid,
                        phase = %change.phase, reason = error.reason(), error = %error,
                        "lifecycle event not published; will retry"
                    );
                    return WorkResult::PublishFailed;
                }
                self.metrics
                    .count_event(change.phase, EventOutcome::Published);
                self.metrics
                    .publish_seconds
                    .observe(change.observed.elapsed().as_secs_f64());
                tracing::debug!(
                    namespace = %key.namespace, instance_id = %key.name, uid = %change.uid,
                    phase = %change.phase, previous_phase = ?change.previous, "lifecycle event published"
                );
                if *record && !self.record(key, change.phase).await {
                    return WorkResult::NotRecorded;
                }
                WorkResult::Done
            }
            Work::Record { phase } => {
                if self.record(key, *phase).await {
                    WorkResult::Done
                } else {
                    WorkResult::NotRecorded
                }
            }
        }
    }

    async fn publish(&self, key: &Key, change: &Change) -> Result<(), PublishError> {
        let event = LifecycleEvent::new(
            key.namespace.clone(),
            key.name.clone(),
            change.uid.clone(),
            change.phase,
            change.previous,
            change.resource_version.clone(),
            change.observed_at,
        );
        // Strings, an enum and a timestamp: serialising cannot fail, but is not unwrapped.
        let body = serde_json::to_vec(&event).map_err(|_| PublishError::Unavailable)?;
        let envelope = Envelope::new(
            event.message_id(),
            MessageType::Lifecycle,
            TraceParent::new_root(),
        );
        self.broker
            .publish(LIFECYCLE_EXCHANGE, &event.routing_key(), &body, &envelope)
            .await
    }

    /// Merge-patches the annotation. A vanished object counts as done: there is nothing
    /// left to record on, and its `Deleted` comes through the watch.
    async fn record(&self, key: &Key, phase: Phase) -> bool {
        let api: Api<Spritz> = Api::namespaced(self.client.clone(), &key.namespace);
        let patch =
            json!({"metadata": {"annotations": {NOTIFIED_PHASE_ANNOTATION: phase.as_str()}}});
        match api
            .patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if status.is_not_found() => true,
            Err(error) => {
                self.metrics
                    .count_event(phase, EventOutcome::AnnotateFailed);
                tracing::warn!(
                    namespace = %key.namespace, instance_id = %key.name, phase = %phase, error = %error,
                    "could not record the announced phase; the event may be announced again after a restart"
                );
                false
            }
        }
    }
}
