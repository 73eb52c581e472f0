//! `spritz.lifecycle.v1`: a Spritz runtime changed phase or was deleted.
//!
//! Published by the notifier on the `spritz.lifecycle` topic exchange with routing key
//! `lifecycle.<phase>`; workers use it to drop stale sessions and wake waiting
//! deliveries, and the backend-sync consumer forwards it to the lifecycle webhook.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::message::version;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleEvent {
    #[serde(default = "version")]
    pub v: u32,
    pub namespace: String,
    pub instance_id: String,
    pub uid: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_phase: Option<Phase>,
    pub resource_version: String,
    pub observed_at: DateTime<Utc>,
}

impl LifecycleEvent {
    pub fn new(
        namespace: String,
        instance_id: String,
        uid: String,
        phase: Phase,
        previous_phase: Option<Phase>,
        resource_version: String,
        observed_at: DateTime<Utc>,
    ) -> Self {
        Self {
            v: version(),
            namespace,
            instance_id,
            uid,
            phase,
            previous_phase,
            resource_version,
            observed_at,
        }
    }

    /// The dedupe key: one object, one phase, one observed version.
    pub fn message_id(&self) -> String {
        format!("{}:{}:{}", self.uid, self.phase, self.resource_version)
    }

    /// `lifecycle.<phase>` on the `spritz.lifecycle` exchange.
    pub fn routing_key(&self) -> String {
        self.phase.routing_key()
    }
}

/// `status.phase` of a Spritz object, plus `Deleted` for an object that is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    Provisioning,
    Ready,
    Expiring,
    Expired,
    Terminating,
    Error,
    Deleted,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Provisioning,
        Phase::Ready,
        Phase::Expiring,
        Phase::Expired,
        Phase::Terminating,
        Phase::Error,
        Phase::Deleted,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Expiring => "Expiring",
            Phase::Expired => "Expired",
            Phase::Terminating => "Terminating",
            Phase::Error => "Error",
            Phase::Deleted => "Deleted",
        }
    }

    /// Parses a `status.phase` value; `None` for anything outside the CRD's enum.
    pub fn parse(value: &str) -> Option<Self> {
        Phase::ALL.into_iter().find(|phase| phase.as_str() == value)
    }

    /// Whether a session bound to a runtime in this phase must not be used any more.
    pub const fn invalidates_sessions(self) -> bool {
        matches!(
            self,
            Phase::Expiring | Phase::Expired | Phase::Terminating | Phase::Error | Phase::Deleted
        )
    }

    pub fn routing_key(self) -> String {
        format!("lifecycle.{}", self.as_str())
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifecycle_event_round_trips_with_the_spec_field_names() {
        let event = LifecycleEvent::new(
            "team-a".into(),
            "concierge-1".into(),
            "uid-1".into(),
            Phase::Expired,
            Some(Phase::Ready),
            "42".into(),
            Utc::now(),
        );
        let body = serde_json::to_vec(&event).expect("serialise");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        for field in [
            "v",
            "namespace",
            "instanceId",
            "uid",
            "phase",
            "previousPhase",
            "resourceVersion",
            "observedAt",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        assert_eq!(
            crate::decode::<LifecycleEvent>(&body).expect("decode"),
            event
        );
        assert_eq!(event.routing_key(), "lifecycle.Expired");
    }

    #[test]
    fn only_end_of_life_phases_invalidate_sessions() {
        let invalidating: Vec<_> = Phase::ALL
            .into_iter()
            .filter(|p| p.invalidates_sessions())
            .collect();
        assert_eq!(
            invalidating,
            [
                Phase::Expiring,
                Phase::Expired,
                Phase::Terminating,
                Phase::Error,
                Phase::Deleted
            ]
        );
        assert_eq!(Phase::parse("Ready"), Some(Phase::Ready));
        assert_eq!(Phase::parse("ready"), None);
    }

    #[test]
    fn an_unknown_lifecycle_version_is_refused() {
        let body = br#"{"v":7,"namespace":"n"}"#;
        assert!(matches!(
            crate::decode::<LifecycleEvent>(body),
            Err(crate::DecodeError::UnknownVersion(7))
        ));
    }
}
