//! The resource types the fake API server serves, with the per-type rules a real API
//! server applies (status subresource, unconditional updates, strategic merge).

/// One served resource type. The set is closed: only what the gateway reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// `spritzes.spritz.sh/v1`, the custom resource the notifier watches.
    Spritz,
    /// `leases.coordination.k8s.io/v1`, used for notifier leader election.
    Lease,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 2] = [ResourceKind::Spritz, ResourceKind::Lease];

    /// Finds the type served under `/apis/{group}/{version}/…/{plural}`.
    pub fn from_path(group: &str, version: &str, plural: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| {
            kind.group() == group && kind.version() == version && kind.plural() == plural
        })
    }

    pub fn group(self) -> &'static str {
        match self {
            ResourceKind::Spritz => "spritz.sh",
            ResourceKind::Lease => "coordination.k8s.io",
        }
    }

    pub fn version(self) -> &'static str {
        "v1"
    }

    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::Spritz => "spritzes",
            ResourceKind::Lease => "leases",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            ResourceKind::Spritz => "spritz",
            ResourceKind::Lease => "lease",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            ResourceKind::Spritz => "Spritz",
            ResourceKind::Lease => "Lease",
        }
    }

    pub fn list_kind(self) -> String {
        format!("{}List", self.kind())
    }

    pub fn api_version(self) -> String {
        format!("{}/{}", self.group(), self.version())
    }

    /// `spritzes.spritz.sh`, the name real API servers use in error messages.
    pub fn qualified_plural(self) -> String {
        format!("{}.{}", self.plural(), self.group())
    }

    /// With a status subresource, writes to the main resource ignore `status` and
    /// writes to `/status` ignore everything but `status` (CRD semantics).
    pub fn has_status_subresource(self) -> bool {
        matches!(self, ResourceKind::Spritz)
    }

    /// Custom resources reject a PUT without `metadata.resourceVersion`; leases take it.
    pub fn allows_unconditional_update(self) -> bool {
        matches!(self, ResourceKind::Lease)
    }

    /// Custom resources answer 415 to strategic merge patches; built-in types take them.
    pub fn supports_strategic_merge(self) -> bool {
        matches!(self, ResourceKind::Lease)
    }
}
