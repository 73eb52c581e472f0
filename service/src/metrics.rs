//! Metrics every process exports (docs/metrics.md, "Every process"): build info, the
//! standard `process_*` metrics, broker connection state and confirmed publishes.
//! Role-specific metrics live in each role's own `metrics` module and register into the
//! same [`prometheus::Registry`].

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use spritz_proto::topology;

/// Buckets for sub-second operations (publish confirms, HTTP calls).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for end-to-end waits that may take a minute (receive to reply).
pub const END_TO_END_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// The `exchange` label values: every exchange of the topology, and the default
/// exchange (backend-sync retries route through it by queue name).
pub const PUBLISH_EXCHANGES: [&str; 6] = [
    topology::WORK_EXCHANGE,
    topology::RETRY_EXCHANGE,
    topology::DEAD_LETTER_EXCHANGE,
    topology::LIFECYCLE_EXCHANGE,
    topology::BACKEND_SYNC_RETRY_EXCHANGE,
    DEFAULT_EXCHANGE_LABEL,
];

/// The `exchange` label of a publish to the default exchange.
pub const DEFAULT_EXCHANGE_LABEL: &str = "(default)";

/// The `outcome` label values of `spritz_publish_total`.
pub const PUBLISH_OUTCOMES: [&str; 6] = [
    "confirmed",
    "nacked",
    "returned",
    "timeout",
    "unavailable",
    "error",
];

/// [`crate::PublishError::reason`] values: the ways a publish can fail.
pub const PUBLISH_FAILURE_REASONS: [&str; 5] =
    ["unavailable", "nacked", "returned", "timeout", "error"];

/// Broker and publish metrics, shared by every role.
#[derive(Clone, Debug)]
pub struct BrokerMetrics {
    pub connected: IntGauge,
    pub reconnects: IntCounter,
    pub publishes: IntCounterVec,
    pub confirm_seconds: HistogramVec,
}

impl BrokerMetrics {
    /// # Errors
    /// A metric with the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let connected = IntGauge::new(
            "spritz_broker_connected",
            "1 while the broker connection is up and the topology declared",
        )?;
        let reconnects = IntCounter::new(
            "spritz_broker_reconnects_total",
            "Broker connections established after the first",
        )?;
        let publishes = IntCounterVec::new(
            Opts::new(
                "spritz_publish_total",
                "Confirmed publish attempts by outcome",
            ),
            &["exchange", "outcome"],
        )?;
        let confirm_seconds = HistogramVec::new(
            HistogramOpts::new(
                "spritz_publish_confirm_seconds",
                "Publish to broker confirm",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["exchange"],
        )?;
        registry.register(Box::new(connected.clone()))?;
        registry.register(Box::new(reconnects.clone()))?;
        registry.register(Box::new(publishes.clone()))?;
        registry.register(Box::new(confirm_seconds.clone()))?;
        // Every series exists from the start, at 0: a rate over a series that appears
        // only with its first increment misses that increment, and dashboards would
        // show "no data" instead of zero failures.
        for exchange in PUBLISH_EXCHANGES {
            for outcome in PUBLISH_OUTCOMES {
                publishes.with_label_values(&[exchange, outcome]);
            }
            confirm_seconds.with_label_values(&[exchange]);
        }
        Ok(Self {
            connected,
            reconnects,
            publishes,
            confirm_seconds,
        })
    }

    /// Metrics registered nowhere, for code paths that do not export (tools, tests).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a fresh registry has no clashes")
    }
}

/// `spritz_build_info{process, version} 1`, and the `process_*` metrics
/// ([`register_process_metrics`]): every role registers its identity here, so this is
/// where every process gets both.
///
/// # Errors
/// Already registered.
pub fn register_build_info(registry: &Registry, process: &str) -> prometheus::Result<()> {
    let info = IntGaugeVec::new(
        Opts::new("spritz_build_info", "Which process and version is running"),
        &["process", "version"],
    )?;
    info.with_label_values(&[process, env!("CARGO_PKG_VERSION")])
        .set(1);
    registry.register(Box::new(info))?;
    register_process_metrics(registry)
}

/// The standard process metrics of this process, read from `/proc/self` at every
/// scrape: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
/// `process_threads`, `process_start_time_seconds`. CPU and memory per pod without
/// cAdvisor, and file-descriptor headroom (every broker channel and HTTP connection
/// holds one). Linux only; elsewhere nothing is registered.
///
/// # Errors
/// Already registered.
pub fn register_process_metrics(registry: &Registry) -> prometheus::Result<()> {
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
    Ok(())
}

/// A histogram with [`LATENCY_BUCKETS`].
///
/// # Errors
/// Invalid name.
pub fn latency_histogram(name: &str, help: &str) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    #[cfg(target_os = "linux")]
    #[test]
    fn build_info_comes_with_the_process_metrics() {
        let registry = Registry::new();
        register_build_info(&registry, "worker").expect("register");
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|family| family.name().to_owned())
            .collect();
        for name in [
            "spritz_build_info",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "missing {name} in {names:?}"
            );
        }
    }

    #[test]
    fn every_publish_series_is_exported_at_zero_before_the_first_publish() {
        let registry = Registry::new();
        BrokerMetrics::register(&registry).expect("register");
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .expect("encode");
        let text = String::from_utf8(text).expect("utf-8");
        for exchange in PUBLISH_EXCHANGES {
            for outcome in PUBLISH_OUTCOMES {
                let series = format!(
                    "spritz_publish_total{{exchange=\"{exchange}\",outcome=\"{outcome}\"}} 0"
                );
                assert!(text.contains(&series), "missing {series}");
            }
            let count =
                format!("spritz_publish_confirm_seconds_count{{exchange=\"{exchange}\"}} 0");
            assert!(text.contains(&count), "missing {count}");
        }
    }
}
