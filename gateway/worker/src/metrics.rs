//! The worker's metrics, exactly as docs/metrics.md ("Worker") names them. Label
//! values come from the fixed sets below; never ids or error text.
//! (`spritz_backend_sync_total` is registered by [`crate::backend_sync`].)

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use spritz_service::metrics::{END_TO_END_BUCKETS, LATENCY_BUCKETS};

/// `outcome` of `spritz_worker_deliveries_total`.
pub const OUTCOMES: &[&str] = &[
    "replied",
    "duplicate",
    "ignored",
    "recovered",
    "retry",
    "failed_terminal",
    "dead_lettered",
    "disconnected",
    "dropped_not_installed",
    "dropped_app_mismatch",
];

/// An external call, as the `stage` label of `spritz_worker_stage_seconds` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// The backend's channel-session exchange.
    Exchange,
    /// A Spritz conversation upsert (the turn's, or the reply alias).
    Upsert,
    /// The ACP bootstrap of a conversation.
    Bootstrap,
    /// The ACP prompt, from connect to the end of the turn.
    Prompt,
    /// The reply's `chat.postMessage`.
    Reply,
}

impl Call {
    /// Every call, so the label set is derived and cannot miss one.
    pub const ALL: [Call; 5] = [
        Call::Exchange,
        Call::Upsert,
        Call::Bootstrap,
        Call::Prompt,
        Call::Reply,
    ];

    /// The label value (dashboards and docs/metrics.md use these).
    pub const fn as_str(self) -> &'static str {
        match self {
            Call::Exchange => "exchange",
            Call::Upsert => "upsert",
            Call::Bootstrap => "bootstrap",
            Call::Prompt => "prompt",
            Call::Reply => "reply",
        }
    }
}

/// Worker metrics; cheap to clone.
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    pub deliveries: IntCounterVec,
    pub stage_seconds: HistogramVec,
    pub receive_to_reply: Histogram,
    pub status_messages: IntCounterVec,
    pub time_to_first_status: Histogram,
    pub session_cache: IntCounterVec,
    pub retries: IntCounterVec,
    pub in_flight: IntGauge,
    pub lifecycle_events: IntCounterVec,
    /// Deliveries handed back because their ledger claim was lost mid-work.
    pub claims_lost: IntCounter,
    /// How late each lease renewal tick started (runtime starvation shows here first).
    pub lease_renewal_lateness: Histogram,
    /// One renewal tick: every claim held, in pipelined Redis calls.
    pub lease_renewal_seconds: Histogram,
    /// Renewal ticks Redis did not answer (tried again shortly).
    pub lease_renewal_failures: IntCounter,
}

impl WorkerMetrics {
    /// Registers every worker metric, with each label value pre-created so dashboards
    /// see zeros instead of gaps.
    ///
    /// # Errors
    /// A metric of the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let deliveries = IntCounterVec::new(
            Opts::new(
                "spritz_worker_deliveries_total",
                "Deliveries taken off the work queue, by outcome",
            ),
            &["outcome"],
        )?;
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new(
                "spritz_worker_stage_seconds",
                "One call to an external service",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["stage"],
        )?;
        let receive_to_reply = Histogram::with_opts(
            HistogramOpts::new(
                "spritz_worker_receive_to_reply_seconds",
                "Gateway receivedAt to reply posted",
            )
            .buckets(END_TO_END_BUCKETS.to_vec()),
        )?;
        let status_messages = IntCounterVec::new(
            Opts::new(
                "spritz_worker_status_messages_total",
                "Status and failure messages posted to Slack",
            ),
            &["purpose"],
        )?;
        let time_to_first_status = Histogram::with_opts(
            HistogramOpts::new(
                "spritz_worker_time_to_first_status_seconds",
                "receivedAt to the first status message",
            )
            .buckets(END_TO_END_BUCKETS.to_vec()),
        )?;
        let session_cache = IntCounterVec::new(
            Opts::new(
                "spritz_worker_session_cache_total",
                "Session cache lookups and invalidations",
            ),
            &["result"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "spritz_worker_retries_total",
                "Deliveries re-queued through a delay tier",
            ),
            &["stage"],
        )?;
        let in_flight = IntGauge::new("spritz_worker_in_flight", "Deliveries being processed now")?;
        let lifecycle_events = IntCounterVec::new(
            Opts::new(
                "spritz_worker_lifecycle_events_total",
                "Lifecycle events seen by this worker",
            ),
            &["phase", "action"],
        )?;
        let claims_lost = IntCounter::new(
            "spritz_worker_claims_lost_total",
            "Deliveries handed back because their ledger claim was lost mid-work",
        )?;
        let lease_renewal_lateness = Histogram::with_opts(
            HistogramOpts::new(
                "spritz_worker_lease_renewal_lateness_seconds",
                "How late a claim-renewal tick started after it was due",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let lease_renewal_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "spritz_worker_lease_renewal_seconds",
                "One claim-renewal tick: every claim in flight, pipelined",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let lease_renewal_failures = IntCounter::new(
            "spritz_worker_lease_renewal_failures_total",
            "Claim-renewal ticks Redis did not answer",
        )?;
        for outcome in OUTCOMES {
            deliveries.with_label_values(&[*outcome]);
        }
        for call in Call::ALL {
            stage_seconds.with_label_values(&[call.as_str()]);
        }
        for purpose in ["runtime-recovery", "terminal-failure", "internal-error"] {
            status_messages.with_label_values(&[purpose]);
        }
        for result in ["hit", "miss", "invalidated"] {
            session_cache.with_label_values(&[result]);
        }
        for stage in spritz_proto::RetryStage::ALL {
            retries.with_label_values(&[stage.as_str()]);
        }
        for phase in spritz_proto::Phase::ALL {
            lifecycle_events.with_label_values(&[phase.as_str(), crate::lifecycle::action(phase)]);
        }
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(stage_seconds.clone()))?;
        registry.register(Box::new(receive_to_reply.clone()))?;
        registry.register(Box::new(status_messages.clone()))?;
        registry.register(Box::new(time_to_first_status.clone()))?;
        registry.register(Box::new(session_cache.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(lifecycle_events.clone()))?;
        registry.register(Box::new(claims_lost.clone()))?;
        registry.register(Box::new(lease_renewal_lateness.clone()))?;
        registry.register(Box::new(lease_renewal_seconds.clone()))?;
        registry.register(Box::new(lease_renewal_failures.clone()))?;
        Ok(Self {
            deliveries,
            stage_seconds,
            receive_to_reply,
            status_messages,
            time_to_first_status,
            session_cache,
            retries,
            in_flight,
            lifecycle_events,
            claims_lost,
            lease_renewal_lateness,
            lease_renewal_seconds,
            lease_renewal_failures,
        })
    }

    /// Metrics registered nowhere (tools, unit tests).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a fresh registry has no clashes")
    }

    /// Times one call to an external service.
    pub fn stage(&self, call: Call) -> prometheus::HistogramTimer {
        self.stage_seconds
            .with_label_values(&[call.as_str()])
            .start_timer()
    }
}

#[cfg(test)]
mod tests {
    use spritz_proto::RetryStage;

    use super::*;

    const DOC: &str = include_str!("../../../docs/metrics.md");

    /// The label values docs/metrics.md lists for `metric`, in its table row.
    fn documented(metric: &str) -> Vec<String> {
        let row = DOC
            .lines()
            .find(|line| line.starts_with(&format!("| `{metric}`")))
            .unwrap_or_else(|| panic!("{metric} is documented"));
        let labels = row.split('|').nth(3).expect("a labels column");
        labels
            .split('`')
            .skip(3)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_stage_label_sets_are_the_documented_ones() {
        let retries: Vec<&str> = RetryStage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(documented("spritz_worker_retries_total"), retries);
        let calls: Vec<&str> = Call::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(documented("spritz_worker_stage_seconds"), calls);
    }
}
