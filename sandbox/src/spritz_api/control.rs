//! The `/_sandbox` control API of the fake Spritz API, for the dev stack where the
//! fake runs in its own process, and a small client for it (`spritz-sandbox runtime`).
//!
//! Routes (JSON): `PUT /_sandbox/agent` (`{"kind":"echo"}`, `{"kind":"slow","delay_ms":500}`,
//! `ask_permission`, `empty_reply`, `disconnect`, `disconnect_after_chunk`),
//! `POST /_sandbox/instances/vanish` and `POST /_sandbox/instances/restore`
//! (`{"namespace":"…","instanceId":"…"}`), `GET /_sandbox/prompts`,
//! `GET /_sandbox/prompts/wait?count=N&timeout_ms=T` (count defaults to the next one; timeout to 10 s) (408 on timeout),
//! `GET /_sandbox/upserts`, `GET /_sandbox/permission-answers`,
//! `GET /_sandbox/conversations/{id}/max-concurrent`,
//! `POST /_sandbox/faults` (`{"call":"upsert"|"bootstrap"|"connect","count":1,"status":503}`),
//! `POST /_sandbox/runtimes` (a backend `TeamInstall`: its runtime and session token),
//! `POST /_sandbox/hold`,
//! `POST /_sandbox/release`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::backend::TeamInstall;
use crate::control::{self, ControlHttp, WaitQuery};

use super::state::SpritzState;
use super::{AgentBehaviour, PromptRecord, SpritzCall};

type Shared = Arc<watch::Sender<SpritzState>>;

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/_sandbox/agent", put(set_agent))
        .route("/_sandbox/instances/vanish", post(vanish))
        .route("/_sandbox/instances/restore", post(restore))
        .route("/_sandbox/prompts", get(prompts))
        .route("/_sandbox/prompts/wait", get(wait_for_prompts))
        .route("/_sandbox/upserts", get(upserts))
        .route("/_sandbox/permission-answers", get(permission_answers))
        .route(
            "/_sandbox/conversations/{id}/max-concurrent",
            get(max_concurrent),
        )
        .route("/_sandbox/faults", post(add_faults))
        .route("/_sandbox/runtimes", post(add_runtime))
        .route("/_sandbox/hold", post(hold))
        .route("/_sandbox/release", post(release))
        .with_state(state)
}

/// [`AgentBehaviour`] as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentSpec {
    Echo,
    Slow { delay_ms: u64 },
    AskPermission,
    EmptyReply,
    Disconnect,
    DisconnectAfterChunk,
}

impl From<AgentSpec> for AgentBehaviour {
    fn from(spec: AgentSpec) -> Self {
        match spec {
            AgentSpec::Echo => AgentBehaviour::Echo,
            AgentSpec::Slow { delay_ms } => AgentBehaviour::Slow(Duration::from_millis(delay_ms)),
            AgentSpec::AskPermission => AgentBehaviour::AskPermission,
            AgentSpec::EmptyReply => AgentBehaviour::EmptyReply,
            AgentSpec::Disconnect => AgentBehaviour::Disconnect,
            AgentSpec::DisconnectAfterChunk => AgentBehaviour::DisconnectAfterChunk,
        }
    }
}

async fn set_agent(State(state): State<Shared>, Json(spec): Json<AgentSpec>) -> StatusCode {
    state.send_modify(|s| s.agent = spec.into());
    StatusCode::NO_CONTENT
}

/// A runtime, as the control API names it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRef {
    pub namespace: String,
    pub instance_id: String,
}

async fn vanish(State(state): State<Shared>, Json(instance): Json<InstanceRef>) -> StatusCode {
    state.send_modify(|s| s.vanish(&instance.namespace, &instance.instance_id));
    StatusCode::NO_CONTENT
}

async fn restore(State(state): State<Shared>, Json(instance): Json<InstanceRef>) -> StatusCode {
    state.send_modify(|s| s.restore(&instance.namespace, &instance.instance_id));
    StatusCode::NO_CONTENT
}

async fn prompts(State(state): State<Shared>) -> Json<Vec<PromptRecord>> {
    Json(state.borrow().prompts.clone())
}

async fn wait_for_prompts(State(state): State<Shared>, Query(query): Query<WaitQuery>) -> Response {
    control::wait_for_records(&state, query, |s| &s.prompts).await
}

async fn upserts(State(state): State<Shared>) -> Json<Vec<Value>> {
    Json(state.borrow().upserts.clone())
}

async fn permission_answers(State(state): State<Shared>) -> Json<Vec<Value>> {
    Json(state.borrow().permission_answers.clone())
}

async fn max_concurrent(State(state): State<Shared>, Path(id): Path<String>) -> Json<Value> {
    let high = state
        .borrow()
        .max_in_progress
        .get(&id)
        .copied()
        .unwrap_or(0);
    Json(json!({"conversationId": id, "maxConcurrentPrompts": high}))
}

#[derive(Deserialize)]
struct FaultRequest {
    call: SpritzCall,
    count: usize,
    status: u16,
}

async fn add_faults(State(state): State<Shared>, Json(request): Json<FaultRequest>) -> StatusCode {
    state.send_modify(|s| {
        s.faults
            .entry(request.call)
            .or_default()
            .extend(std::iter::repeat_n(request.status, request.count));
    });
    StatusCode::NO_CONTENT
}

async fn add_runtime(State(state): State<Shared>, Json(team): Json<TeamInstall>) -> StatusCode {
    state.send_modify(|s| {
        s.add_runtime(
            &team.namespace,
            &team.instance_id,
            &team.owner_auth_id(),
            &team.access_token,
        );
    });
    StatusCode::NO_CONTENT
}

async fn hold(State(state): State<Shared>) -> StatusCode {
    state.send_modify(|s| s.held = true);
    StatusCode::NO_CONTENT
}

async fn release(State(state): State<Shared>) -> StatusCode {
    state.send_modify(|s| s.held = false);
    StatusCode::NO_CONTENT
}

/// Client for a fake Spritz API running in another process (the dev stack).
#[derive(Clone, Debug)]
pub struct ControlClient {
    http: ControlHttp,
}

impl ControlClient {
    /// `url` is the fake's origin or base URL (`http://host:port[/spritz]`).
    pub fn new(url: &str) -> ControlClient {
        ControlClient {
            http: ControlHttp::new(url, super::BASE_PATH),
        }
    }

    /// Makes the runtime vanish (`restore == false`) or come back recreated.
    ///
    /// # Errors
    /// When the fake cannot be reached or refuses.
    pub async fn set_instance(&self, instance: &InstanceRef, restore: bool) -> anyhow::Result<()> {
        let action = if restore { "restore" } else { "vanish" };
        let path = format!("/_sandbox/instances/{action}");
        self.http.send_json(Method::POST, &path, instance).await
    }

    /// Sets the agent's behaviour.
    ///
    /// # Errors
    /// When the fake cannot be reached or refuses.
    pub async fn set_agent(&self, spec: &AgentSpec) -> anyhow::Result<()> {
        self.http
            .send_json(Method::PUT, "/_sandbox/agent", spec)
            .await
    }
}
