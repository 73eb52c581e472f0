//! The operations listener on `SPRITZ_METRICS_ADDR`: `/metrics` (Prometheus text),
//! `/healthz` (the process is alive) and `/readyz` (every readiness check passes, e.g.
//! the broker is connected and the topology declared).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One named readiness condition.
type Check = (&'static str, Arc<dyn Fn() -> bool + Send + Sync>);

/// Readiness checks; `/readyz` is 200 only when all pass.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<Check>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_check(
        mut self,
        name: &'static str,
        check: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        self.checks.push((name, Arc::new(check)));
        self
    }

    /// The names of the checks that fail now.
    pub fn failing(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|(_, check)| !check())
            .map(|(name, _)| *name)
            .collect()
    }
}

#[derive(Clone)]
struct OpsState {
    registry: Registry,
    readiness: Readiness,
}

/// A bound operations listener.
pub struct OpsServer {
    listener: TcpListener,
    router: Router,
}

impl OpsServer {
    /// Binds now, so a port clash fails at start.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(
        addr: SocketAddr,
        registry: Registry,
        readiness: Readiness,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::on(listener, registry, readiness))
    }

    /// On a listener bound earlier (the process shell binds before it connects).
    pub fn on(listener: TcpListener, registry: Registry, readiness: Readiness) -> Self {
        let router = router(registry, readiness);
        Self { listener, router }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    ///
    /// # Errors
    /// The listener failed.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}

/// The three routes, for embedding in another router as well.
pub fn router(registry: Registry, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(OpsState {
            registry,
            readiness,
        })
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "metrics encoding failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Alive: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    let failing = state.readiness.failing();
    if failing.is_empty() {
        (StatusCode::OK, "ready".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}", failing.join(", ")),
        )
    }
}
