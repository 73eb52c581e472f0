//! The `/_sandbox` control API of the fake backend, for the dev stack where the fake
//! runs in its own process, and a small client for it (`spritz-sandbox runtime`).
//!
//! Routes (JSON): `PUT /_sandbox/teams` (a `TeamInstall`, `expires_in_secs`),
//! `GET /_sandbox/teams/{team}`, `PUT /_sandbox/teams/{team}/mode`
//! (`{"mode":"resolved"}`, `{"mode":"transient","status":500}`, …),
//! `POST /_sandbox/teams/{team}/script` (a list of modes),
//! `GET /_sandbox/teams/{team}/exchange-calls`, `GET /_sandbox/installations`,
//! `GET /_sandbox/disconnects`, `GET /_sandbox/lifecycle`,
//! `PUT /_sandbox/lifecycle/token` (`{"token":"…"}`),
//! `POST /_sandbox/lifecycle/faults` (`{"count":1,"status":500}`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::control::ControlHttp;

use super::state::BackendState;
use super::{ExchangeMode, TeamInstall};

type Shared = Arc<watch::Sender<BackendState>>;

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/_sandbox/teams", put(install_team))
        .route("/_sandbox/teams/{team}", get(team))
        .route("/_sandbox/teams/{team}/mode", put(set_mode))
        .route("/_sandbox/teams/{team}/script", post(script))
        .route("/_sandbox/teams/{team}/exchange-calls", get(exchange_calls))
        .route("/_sandbox/installations", get(installations))
        .route("/_sandbox/disconnects", get(disconnects))
        .route("/_sandbox/lifecycle", get(lifecycle_webhooks))
        .route("/_sandbox/lifecycle/token", put(set_lifecycle_token))
        .route("/_sandbox/lifecycle/faults", post(lifecycle_faults))
        .with_state(state)
}

async fn install_team(State(state): State<Shared>, Json(team): Json<TeamInstall>) -> StatusCode {
    state.send_modify(|s| s.install_team(team));
    StatusCode::NO_CONTENT
}

async fn team(State(state): State<Shared>, Path(team_id): Path<String>) -> Response {
    let state = state.borrow();
    match state.teams.get(&team_id) {
        Some(team) => Json(json!({
            "install": team.install,
            "mode": team.mode,
            "script": team.script,
            "exchangeCalls": team.exchange_calls,
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn set_mode(
    State(state): State<Shared>,
    Path(team_id): Path<String>,
    Json(mode): Json<ExchangeMode>,
) -> StatusCode {
    state.send_modify(|s| s.team_mut(&team_id).mode = mode);
    StatusCode::NO_CONTENT
}

async fn script(
    State(state): State<Shared>,
    Path(team_id): Path<String>,
    Json(modes): Json<Vec<ExchangeMode>>,
) -> StatusCode {
    state.send_modify(|s| s.team_mut(&team_id).script.extend(modes));
    StatusCode::NO_CONTENT
}

async fn exchange_calls(State(state): State<Shared>, Path(team_id): Path<String>) -> Json<usize> {
    Json(
        state
            .borrow()
            .teams
            .get(&team_id)
            .map_or(0, |t| t.exchange_calls),
    )
}

async fn installations(State(state): State<Shared>) -> Json<Vec<Value>> {
    Json(state.borrow().installations.clone())
}

async fn disconnects(State(state): State<Shared>) -> Json<Vec<Value>> {
    Json(state.borrow().disconnects.clone())
}

async fn lifecycle_webhooks(State(state): State<Shared>) -> Json<Vec<Value>> {
    Json(state.borrow().lifecycle_webhooks.clone())
}

#[derive(Deserialize)]
struct TokenRequest {
    token: String,
}

async fn set_lifecycle_token(
    State(state): State<Shared>,
    Json(request): Json<TokenRequest>,
) -> StatusCode {
    state.send_modify(|s| s.lifecycle_token = Some(request.token));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct FaultRequest {
    count: usize,
    status: u16,
}

async fn lifecycle_faults(
    State(state): State<Shared>,
    Json(request): Json<FaultRequest>,
) -> StatusCode {
    state.send_modify(|s| {
        s.lifecycle_faults
            .extend(std::iter::repeat_n(request.status, request.count));
    });
    StatusCode::NO_CONTENT
}

/// Client for a fake backend running in another process (the dev stack).
#[derive(Clone, Debug)]
pub struct ControlClient {
    http: ControlHttp,
}

impl ControlClient {
    /// `url` is the fake's origin or base URL (`http://host:port[/backend]`).
    pub fn new(url: &str) -> ControlClient {
        ControlClient {
            http: ControlHttp::new(url, super::BASE_PATH),
        }
    }

    /// Installs (or replaces) a team with a live runtime.
    ///
    /// # Errors
    /// When the fake cannot be reached or refuses.
    pub async fn install_team(&self, team: &TeamInstall) -> anyhow::Result<()> {
        self.http
            .send_json(Method::PUT, "/_sandbox/teams", team)
            .await
    }

    /// The team's install, if the fake knows one.
    ///
    /// # Errors
    /// When the fake cannot be reached or answers an error.
    pub async fn team(&self, team_id: &str) -> anyhow::Result<Option<TeamInstall>> {
        let path = format!("/_sandbox/teams/{team_id}");
        let response = self.http.send(Method::GET, &path, |r| r).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: Value = response.error_for_status()?.json().await?;
        Ok(serde_json::from_value(body["install"].clone()).ok())
    }

    /// Sets the team's steady exchange answer.
    ///
    /// # Errors
    /// When the fake cannot be reached or refuses.
    pub async fn set_exchange_mode(
        &self,
        team_id: &str,
        mode: &ExchangeMode,
    ) -> anyhow::Result<()> {
        let path = format!("/_sandbox/teams/{team_id}/mode");
        self.http.send_json(Method::PUT, &path, mode).await
    }
}
