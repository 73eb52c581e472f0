//! The main listener's router: the Slack routes and `/healthz`, each served both at the
//! root and under the public URL's path prefix (a gateway published at
//! `https://host/gw` behind a proxy that keeps the path still matches).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::app_state::AppState;
use crate::events::{BODY_LIMIT, slack_events};
use crate::metrics::Route;
use crate::oauth::{callback, install};

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
