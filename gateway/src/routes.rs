//! The main listener's router: the Slack routes and `/healthz`, each served both at the
//! root and under the public URL's path prefix (a gateway published at
//! `https://host/gw` behind a proxy that keeps the path still matches).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use secrecy::SecretString;
use spritz_service::Broker;

use crate::events::{BODY_LIMIT, slack_events};
use crate::install::Installer;
use crate::metrics::{GatewayMetrics, Route};
use crate::oauth::{callback, install};
use crate::oauth_state::StateSigner;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    broker: Broker,
    metrics: GatewayMetrics,
    signing_secret: SecretString,
    publish_timeout: Duration,
    installer: Installer,
    state_signer: StateSigner,
}

impl AppState {
    pub fn new(
        broker: Broker,
        metrics: GatewayMetrics,
        signing_secret: SecretString,
        publish_timeout: Duration,
        installer: Installer,
        state_signer: StateSigner,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                broker,
                metrics,
                signing_secret,
                publish_timeout,
                installer,
                state_signer,
            }),
        }
    }

    pub(crate) fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    pub(crate) fn metrics(&self) -> &GatewayMetrics {
        &self.inner.metrics
    }

    pub(crate) fn signing_secret(&self) -> &SecretString {
        &self.inner.signing_secret
    }

    pub(crate) fn publish_timeout(&self) -> Duration {
        self.inner.publish_timeout
    }

    pub(crate) fn installer(&self) -> &Installer {
        &self.inner.installer
    }

    pub(crate) fn state_signer(&self) -> &StateSigner {
        &self.inner.state_signer
    }
}

/// The routes, at the root and under `prefix` (`""` for none, else `/path` without a
/// trailing slash).
pub fn router(state: AppState, prefix: &str) -> Router {
    let routes: Router<AppState> = Router::new()
        .route(
            "/slack/events",
            post(slack_events).layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
        .route("/slack/install", get(install))
        .route("/slack/oauth/callback", get(callback))
        .route("/healthz", get(spritz_service::ops::healthz));
    let routes = if prefix.is_empty() || prefix == "/" {
        routes
    } else {
        Router::new().merge(routes.clone()).nest(prefix, routes)
    };
    routes.fallback(not_found).with_state(state)
}

async fn not_found(axum::extract::State(state): axum::extract::State<AppState>) -> StatusCode {
    state.metrics().request(Route::Other, "bad_request");
    StatusCode::NOT_FOUND
}
