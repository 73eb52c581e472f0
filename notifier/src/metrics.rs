//! The notifier's metrics, exactly as docs/metrics.md names them ("Notifier"). Label
//! values come from fixed sets: the seven phases and three outcomes.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use spritz_proto::Phase;
use spritz_service::metrics::latency_histogram;

/// `outcome` label of `spritz_notifier_events_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// Confirmed by the broker.
    Published,
    /// Not confirmed; the object stays dirty and is retried with backoff.
    PublishFailed,
    /// Published (or to be recorded) but the annotation patch failed; the event may be
    /// announced again after a restart.
    AnnotateFailed,
}

impl EventOutcome {
    pub const ALL: [EventOutcome; 3] = [
        EventOutcome::Published,
        EventOutcome::PublishFailed,
        EventOutcome::AnnotateFailed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Published => "published",
            EventOutcome::PublishFailed => "publish_failed",
            EventOutcome::AnnotateFailed => "annotate_failed",
        }
    }
}

/// Handles on the notifier metrics; clones share the series.
#[derive(Clone, Debug)]
pub struct NotifierMetrics {
    events: IntCounterVec,
    pub publish_seconds: Histogram,
    pub watch_restarts: IntCounter,
    pub is_leader: IntGauge,
    pub watched_objects: IntGauge,
}

impl NotifierMetrics {
    /// Registers every series; each `phase` × `outcome` pair starts at zero so
    /// dashboards and alerts see the series before the first event.
    ///
    /// # Errors
    /// A metric with the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let events = IntCounterVec::new(
            Opts::new(
                "spritz_notifier_events_total",
                "Lifecycle events by phase and outcome",
            ),
            &["phase", "outcome"],
        )?;
        let publish_seconds = latency_histogram(
            "spritz_notifier_publish_seconds",
            "Phase observed to event confirmed by the broker",
        )?;
        let watch_restarts = IntCounter::new(
            "spritz_notifier_watch_restarts_total",
            "Watch streams restarted after an error",
        )?;
        let is_leader = IntGauge::new(
            "spritz_notifier_is_leader",
            "1 on the replica holding the Lease",
        )?;
        let watched_objects = IntGauge::new(
            "spritz_notifier_watched_objects",
            "Spritz objects in the watch cache",
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(publish_seconds.clone()))?;
        registry.register(Box::new(watch_restarts.clone()))?;
        registry.register(Box::new(is_leader.clone()))?;
        registry.register(Box::new(watched_objects.clone()))?;
        for phase in Phase::ALL {
            for outcome in EventOutcome::ALL {
                events.with_label_values(&[phase.as_str(), outcome.as_str()]);
            }
        }
        Ok(Self {
            events,
            publish_seconds,
            watch_restarts,
            is_leader,
            watched_objects,
        })
    }

    pub fn count_event(&self, phase: Phase, outcome: EventOutcome) {
        self.events
            .with_label_values(&[phase.as_str(), outcome.as_str()])
            .inc();
    }

    /// The current count for one `phase` × `outcome` pair (tests, benchmarks).
    pub fn events(&self, phase: Phase, outcome: EventOutcome) -> u64 {
        self.events
            .with_label_values(&[phase.as_str(), outcome.as_str()])
            .get()
    }

    /// Events of every phase with this outcome.
    pub fn events_with_outcome(&self, outcome: EventOutcome) -> u64 {
        Phase::ALL
            .into_iter()
            .map(|phase| self.events(phase, outcome))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_series_is_exported() {
        let registry = Registry::new();
        let metrics = NotifierMetrics::register(&registry).expect("register");
        metrics.count_event(Phase::Ready, EventOutcome::Published);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for name in [
            "spritz_notifier_events_total",
            "spritz_notifier_publish_seconds",
            "spritz_notifier_watch_restarts_total",
            "spritz_notifier_is_leader",
            "spritz_notifier_watched_objects",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing");
        }
        assert_eq!(metrics.events(Phase::Ready, EventOutcome::Published), 1);
        assert_eq!(metrics.events_with_outcome(EventOutcome::Published), 1);
    }
}
