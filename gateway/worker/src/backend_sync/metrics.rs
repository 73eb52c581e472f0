//! `spritz_backend_sync_total{outcome}` (docs/metrics.md): what became of each
//! lifecycle event the backend-sync consumer took off its queue.

use prometheus::{IntCounterVec, Opts, Registry};

/// The outcomes, a fixed set of label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The webhook answered 2xx.
    Forwarded,
    /// The webhook failed; a copy waits in a delay tier.
    Retry,
    /// Unreadable, or the webhook failed on the last try: parked.
    DeadLettered,
    /// No webhook is configured; the event was acked and dropped.
    Skipped,
}

impl SyncOutcome {
    pub const ALL: [SyncOutcome; 4] = [
        SyncOutcome::Forwarded,
        SyncOutcome::Retry,
        SyncOutcome::DeadLettered,
        SyncOutcome::Skipped,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            SyncOutcome::Forwarded => "forwarded",
            SyncOutcome::Retry => "retry",
            SyncOutcome::DeadLettered => "dead_lettered",
            SyncOutcome::Skipped => "skipped",
        }
    }
}

/// The backend-sync consumer's metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BackendSyncMetrics {
    total: IntCounterVec,
}

impl BackendSyncMetrics {
    /// Registers the counter, every outcome starting at zero.
    ///
    /// # Errors
    /// A metric with the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let total = IntCounterVec::new(
            Opts::new(
                "spritz_backend_sync_total",
                "Lifecycle events forwarded to the backend webhook, by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(total.clone()))?;
        for outcome in SyncOutcome::ALL {
            total.with_label_values(&[outcome.label()]);
        }
        Ok(Self { total })
    }

    /// Metrics registered nowhere (tools, tests).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a fresh registry has no clashes")
    }

    pub fn record(&self, outcome: SyncOutcome) {
        self.total.with_label_values(&[outcome.label()]).inc();
    }

    /// The count so far for one outcome.
    pub fn count(&self, outcome: SyncOutcome) -> u64 {
        self.total.with_label_values(&[outcome.label()]).get()
    }
}
