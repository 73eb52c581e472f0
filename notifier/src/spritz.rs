//! The `spritzes.spritz.sh/v1` custom resource, reduced to what the notifier reads:
//! metadata (name, namespace, uid, resourceVersion, annotations) and `status.phase`.
//!
//! The type is written by hand instead of derived with `CustomResource` because the
//! notifier neither reads nor requires `spec`: a Spritz whose spec this crate does not
//! know (or that has none) still deserialises, and nothing else is kept in memory.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use spritz_proto::Phase;

/// Where the notifier records the last phase it announced for an object, so a restart
/// does not announce it again.
pub const NOTIFIED_PHASE_ANNOTATION: &str = "spritz.sh/lifecycle-notified-phase";

/// A Spritz runtime as the notifier sees it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Spritz {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SpritzStatus>,
}

/// `status` of a Spritz: only the phase.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SpritzStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

impl kube::Resource for Spritz {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Spritz")
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("spritz.sh")
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("spritzes")
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Identity of a watched object: namespace and name (the event's `instanceId`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The few fields of one observed version of a Spritz; the rest of the object is
/// dropped as soon as it is read, so 10,000 watched objects cost little memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub key: Key,
    pub uid: String,
    pub resource_version: String,
    /// `status.phase` as written, which may be empty or outside the enum.
    pub phase: Option<String>,
    /// The [`NOTIFIED_PHASE_ANNOTATION`] value as written.
    pub notified: Option<String>,
}

impl Snapshot {
    /// `None` for an object without name, namespace or uid (never served by a real API
    /// server, but not worth a panic).
    pub fn of(spritz: &Spritz) -> Option<Self> {
        let meta = &spritz.metadata;
        Some(Self {
            key: Key::new(meta.namespace.clone()?, meta.name.clone()?),
            uid: meta.uid.clone()?,
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            phase: spritz
                .status
                .as_ref()
                .and_then(|status| status.phase.clone()),
            notified: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(NOTIFIED_PHASE_ANNOTATION).cloned()),
        })
    }

    /// The phase, when it is one of the enum's values (`Deleted` is never a
    /// `status.phase`).
    pub fn phase(&self) -> Option<Phase> {
        self.phase
            .as_deref()
            .and_then(Phase::parse)
            .filter(|phase| *phase != Phase::Deleted)
    }

    /// The recorded phase, when the annotation holds a valid one.
    pub fn notified_phase(&self) -> Option<Phase> {
        self.notified.as_deref().and_then(Phase::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spritz_without_spec_deserialises_and_keeps_only_what_the_notifier_reads() {
        let spritz: Spritz = serde_json::from_value(serde_json::json!({
            "apiVersion": "spritz.sh/v1",
            "kind": "Spritz",
            "metadata": {
                "name": "concierge-1", "namespace": "team-a", "uid": "u1", "resourceVersion": "7",
                "annotations": {NOTIFIED_PHASE_ANNOTATION: "Ready"}
            },
            "status": {"phase": "Expiring", "url": "https://x"}
        }))
        .expect("deserialise");
        let snapshot = Snapshot::of(&spritz).expect("complete");
        assert_eq!(snapshot.key, Key::new("team-a", "concierge-1"));
        assert_eq!(snapshot.phase(), Some(Phase::Expiring));
        assert_eq!(snapshot.notified_phase(), Some(Phase::Ready));
        assert_eq!(snapshot.resource_version, "7");
    }

    #[test]
    fn phases_outside_the_enum_and_deleted_are_not_phases() {
        let mut snapshot = Snapshot {
            key: Key::new("n", "a"),
            uid: "u".into(),
            resource_version: "1".into(),
            phase: Some("Sleeping".into()),
            notified: None,
        };
        assert_eq!(snapshot.phase(), None);
        snapshot.phase = Some(String::new());
        assert_eq!(snapshot.phase(), None);
        snapshot.phase = Some("Deleted".into());
        assert_eq!(snapshot.phase(), None);
    }
}
