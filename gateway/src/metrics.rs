//! Gateway metrics (docs/metrics.md, "Gateway"): requests by route and outcome, the
//! ack latency of `/slack/events`, and events answered 503 by publish failure reason.
//! Broker and build metrics come from `spritz_service::metrics` into the same registry.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use spritz_service::metrics::LATENCY_BUCKETS;

/// The `route` label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Events,
    Install,
    OAuthCallback,
    Other,
}

impl Route {
    fn as_str(self) -> &'static str {
        match self {
            Route::Events => "events",
            Route::Install => "install",
            Route::OAuthCallback => "oauth_callback",
            Route::Other => "other",
        }
    }
}

/// The outcomes of `/slack/events` (request counter and ack latency).
pub const EVENT_OUTCOMES: [&str; 8] = [
    "queued",
    "ignored",
    "challenge",
    "unauthorized",
    "bad_request",
    "too_large",
    "unavailable",
    "error",
];

/// The outcomes each route can end with.
const ROUTE_OUTCOMES: [(Route, &[&str]); 4] = [
    (Route::Events, &EVENT_OUTCOMES),
    (Route::Install, &["redirect", "error"]),
    (Route::OAuthCallback, &["installed", "bad_request", "error"]),
    (Route::Other, &["bad_request"]),
];

#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    requests: IntCounterVec,
    ack_seconds: HistogramVec,
    publish_failures: IntCounterVec,
}

impl GatewayMetrics {
    /// # Errors
    /// Already registered in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "spritz_gateway_requests_total",
                "HTTP requests by route and outcome",
            ),
            &["route", "outcome"],
        )?;
        let ack_seconds = HistogramVec::new(
            HistogramOpts::new(
                "spritz_gateway_ack_seconds",
                "Slack event received to response sent",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )?;
        let publish_failures = IntCounterVec::new(
            Opts::new(
                "spritz_gateway_publish_failures_total",
                "Events answered 503 by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(ack_seconds.clone()))?;
        registry.register(Box::new(publish_failures.clone()))?;
        // Every fixed label combination exists from the start at 0, so dashboards and
        // alerts see "no failures" rather than "no data", and a rate catches the first
        // increment.
        for (route, outcomes) in ROUTE_OUTCOMES {
            for outcome in outcomes.iter() {
                requests.with_label_values(&[route.as_str(), outcome]);
            }
        }
        for outcome in EVENT_OUTCOMES {
            ack_seconds.with_label_values(&[outcome]);
        }
        for reason in spritz_service::metrics::PUBLISH_FAILURE_REASONS {
            publish_failures.with_label_values(&[reason]);
        }
        Ok(Self {
            requests,
            ack_seconds,
            publish_failures,
        })
    }

    pub fn request(&self, route: Route, outcome: &str) {
        self.requests
            .with_label_values(&[route.as_str(), outcome])
            .inc();
    }

    /// One answered `/slack/events` request.
    pub fn event_answered(&self, outcome: &str, elapsed: Duration) {
        self.request(Route::Events, outcome);
        self.ack_seconds
            .with_label_values(&[outcome])
            .observe(elapsed.as_secs_f64());
    }

    /// `reason` is [`spritz_service::PublishError::reason`].
    pub fn publish_failed(&self, reason: &str) {
        self.publish_failures.with_label_values(&[reason]).inc();
    }
}
