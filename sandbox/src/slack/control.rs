//! The `/_sandbox` control API of the fake Slack, for the dev stack where the fake
//! runs in its own process, and a small client for it (`spritz-sandbox send-message`).
//!
//! Routes (JSON): `GET /_sandbox/posts`, `GET /_sandbox/posts/wait?count=N&timeout_ms=T` (count defaults to the next one; timeout to 10 s)
//! (408 on timeout), `POST /_sandbox/faults` (`{"kind":"error","count":1,"error":"…"}`,
//! `{"kind":"rate_limit","count":1,"retry_after_secs":2}`,
//! `{"kind":"status","count":1,"status":500}`), `POST /_sandbox/oauth/codes`
//! (`{"code":"…","grant":{…}}`), `GET /_sandbox/oauth/exchanges`,
//! `PUT /_sandbox/oauth/approval` (a grant, or `null` to deny installs),
//! `PUT /_sandbox/oauth/client` (`{"client_id":"…","client_secret":"…"}`, the app
//! `oauth.v2.access` accepts), `PUT /_sandbox/workspaces`
//! (`{"team_id":"…","bot_token":"…","channels":["C…"]}`),
//! `POST /_sandbox/workspaces/{team}/channels` (`["C…"]`), `POST /_sandbox/reset`
//! (recordings and faults only; workspaces and the app stay).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use reqwest::Method;
use serde::Deserialize;
use tokio::sync::watch;

use crate::control::{self, ControlHttp, WaitQuery};

use super::state::{PostFault, SlackState};
use super::{OAuthGrant, SlackPost};

type Shared = Arc<watch::Sender<SlackState>>;

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/_sandbox/posts", get(posts))
        .route("/_sandbox/posts/wait", get(wait_for_posts))
        .route("/_sandbox/faults", post(add_faults))
        .route("/_sandbox/oauth/codes", post(register_code))
        .route("/_sandbox/oauth/exchanges", get(exchanges))
        .route("/_sandbox/oauth/approval", put(set_approval))
        .route("/_sandbox/oauth/client", put(set_client))
        .route("/_sandbox/workspaces", put(add_workspace))
        .route("/_sandbox/workspaces/{team}/channels", post(add_channels))
        .route("/_sandbox/reset", post(reset))
        .with_state(state)
}

async fn posts(State(state): State<Shared>) -> Json<Vec<SlackPost>> {
    Json(state.borrow().posts.clone())
}

async fn wait_for_posts(State(state): State<Shared>, Query(query): Query<WaitQuery>) -> Response {
    control::wait_for_records(&state, query, |s| &s.posts).await
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum FaultRequest {
    Error { count: usize, error: String },
    RateLimit { count: usize, retry_after_secs: u64 },
    Status { count: usize, status: u16 },
}

async fn add_faults(State(state): State<Shared>, Json(request): Json<FaultRequest>) -> StatusCode {
    let (count, fault) = match request {
        FaultRequest::Error { count, error } => (count, PostFault::SlackError(error)),
        FaultRequest::RateLimit {
            count,
            retry_after_secs,
        } => (count, PostFault::RateLimited { retry_after_secs }),
        FaultRequest::Status { count, status } => (count, PostFault::Status(status)),
    };
    state.send_modify(|s| s.post_faults.extend(std::iter::repeat_n(fault, count)));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct CodeRequest {
    code: String,
    grant: OAuthGrant,
}

async fn register_code(
    State(state): State<Shared>,
    Json(request): Json<CodeRequest>,
) -> StatusCode {
    state.send_modify(|s| {
        s.register_code(&request.code, request.grant);
    });
    StatusCode::NO_CONTENT
}

async fn exchanges(State(state): State<Shared>) -> Response {
    Json(state.borrow().oauth_exchanges.clone()).into_response()
}

async fn set_approval(
    State(state): State<Shared>,
    Json(grant): Json<Option<OAuthGrant>>,
) -> StatusCode {
    state.send_modify(|s| s.approval = grant);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct ClientRequest {
    client_id: String,
    client_secret: String,
}

async fn set_client(State(state): State<Shared>, Json(client): Json<ClientRequest>) -> StatusCode {
    state.send_modify(|s| s.expected_client = Some((client.client_id, client.client_secret)));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct WorkspaceRequest {
    team_id: String,
    bot_token: String,
    #[serde(default)]
    channels: Vec<String>,
}

async fn add_workspace(
    State(state): State<Shared>,
    Json(workspace): Json<WorkspaceRequest>,
) -> StatusCode {
    let channels: Vec<&str> = workspace.channels.iter().map(String::as_str).collect();
    state.send_modify(|s| s.add_workspace(&workspace.team_id, &workspace.bot_token, &channels));
    StatusCode::NO_CONTENT
}

async fn add_channels(
    State(state): State<Shared>,
    Path(team_id): Path<String>,
    Json(channels): Json<Vec<String>>,
) -> StatusCode {
    let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
    state.send_modify(|s| s.add_channels(&team_id, &channels));
    StatusCode::NO_CONTENT
}

async fn reset(State(state): State<Shared>) -> StatusCode {
    state.send_modify(SlackState::reset);
    StatusCode::NO_CONTENT
}

/// Client for a fake Slack running in another process (the dev stack).
#[derive(Clone, Debug)]
pub struct ControlClient {
    http: ControlHttp,
}

impl ControlClient {
    /// `origin` is the fake's `http://host:port` (a trailing `/api` is tolerated).
    pub fn new(origin: &str) -> ControlClient {
        ControlClient {
            http: ControlHttp::new(origin, "/api"),
        }
    }

    /// Every message the fake accepted so far.
    ///
    /// # Errors
    /// When the fake cannot be reached or answers an error.
    pub async fn posts(&self) -> anyhow::Result<Vec<SlackPost>> {
        self.http.get_json("/_sandbox/posts").await
    }

    /// Makes the conversation `channel` exist in workspace `team_id`, so the bot may
    /// post there (what a user creating a channel and inviting the bot does).
    ///
    /// # Errors
    /// When the fake cannot be reached or refuses.
    pub async fn add_channel(&self, team_id: &str, channel: &str) -> anyhow::Result<()> {
        let path = format!("/_sandbox/workspaces/{team_id}/channels");
        self.http.send_json(Method::POST, &path, &[channel]).await
    }

    /// Waits until the fake accepted at least `count` messages; returns all of them.
    ///
    /// # Errors
    /// When fewer arrived within `timeout`, or the fake cannot be reached.
    pub async fn wait_for_posts(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<SlackPost>> {
        let response = self
            .http
            .send(Method::GET, "/_sandbox/posts/wait", |request| {
                request
                    .query(&[
                        ("count", count.to_string()),
                        ("timeout_ms", timeout.as_millis().to_string()),
                    ])
                    .timeout(timeout + Duration::from_secs(5))
            })
            .await?;
        if response.status() == StatusCode::REQUEST_TIMEOUT {
            anyhow::bail!("no slack post #{count} within {timeout:?}");
        }
        Ok(response.error_for_status()?.json().await?)
    }
}
