//! The `/_sandbox` control API of the fake Kubernetes API server, for the dev stack
//! where it runs in its own process: the same operations as [`FakeKubernetes`]'s
//! methods, over HTTP on the API server's own port.
//!
//! Routes (JSON): `GET /_sandbox/spritzes`, `POST /_sandbox/spritzes`
//! (`{"namespace","name","phase"?}`, 201 with `{namespace,name,uid,resourceVersion}`),
//! `GET|DELETE /_sandbox/spritzes/{ns}/{name}`, `PUT /_sandbox/spritzes/{ns}/{name}/phase`
//! (`{"phase"}`), `GET /_sandbox/spritzes/{ns}/{name}/annotations`,
//! `GET /_sandbox/spritzes/{ns}/{name}/annotations/wait?key=K&value=V&timeout_ms=T`
//! (408 on timeout), `GET /_sandbox/leases/{ns}/{name}`, `POST /_sandbox/restart`,
//! `POST /_sandbox/compact`, `POST /_sandbox/end-watches`, `POST /_sandbox/faults`
//! (`{"kind":"patch"|"list"|"watch","count":N}`), `GET /_sandbox/stats`.
//! Failures answer a Kubernetes `Status` object.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::FakeKubernetes;
use super::resource::ResourceKind;
use super::server::ConnectionId;
use super::status::ApiError;
use super::store::Call;

/// `fake` must be a handle that does not keep the server alive (see `guard`).
pub(super) fn router(fake: FakeKubernetes) -> Router {
    Router::new()
        .route("/_sandbox/spritzes", get(list_spritzes).post(create_spritz))
        .route(
            "/_sandbox/spritzes/{namespace}/{name}",
            get(get_spritz).delete(delete_spritz),
        )
        .route(
            "/_sandbox/spritzes/{namespace}/{name}/phase",
            put(set_phase),
        )
        .route(
            "/_sandbox/spritzes/{namespace}/{name}/annotations",
            get(annotations),
        )
        .route(
            "/_sandbox/spritzes/{namespace}/{name}/annotations/wait",
            get(wait_for_annotation),
        )
        .route("/_sandbox/leases/{namespace}/{name}", get(get_lease))
        .route("/_sandbox/restart", post(restart))
        .route("/_sandbox/compact", post(compact))
        .route("/_sandbox/end-watches", post(end_watches))
        .route("/_sandbox/faults", post(add_faults))
        .route("/_sandbox/stats", get(stats))
        .with_state(fake)
}

type Fake = State<FakeKubernetes>;
type ObjectPath = Path<(String, String)>;

async fn list_spritzes(State(fake): Fake) -> Json<Vec<Value>> {
    Json(fake.objects(ResourceKind::Spritz))
}

#[derive(Deserialize)]
struct NewSpritz {
    namespace: String,
    name: String,
    phase: Option<String>,
}

async fn create_spritz(State(fake): Fake, Json(new): Json<NewSpritz>) -> Response {
    match fake.try_create_spritz(&new.namespace, &new.name, new.phase.as_deref()) {
        Ok(created) => (StatusCode::CREATED, Json(created)).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn get_spritz(State(fake): Fake, Path((namespace, name)): ObjectPath) -> Response {
    match fake.spritz(&namespace, &name) {
        Some(spritz) => Json(spritz).into_response(),
        None => ApiError::not_found(ResourceKind::Spritz, &name).into_response(),
    }
}

async fn delete_spritz(State(fake): Fake, Path((namespace, name)): ObjectPath) -> StatusCode {
    fake.delete_spritz(&namespace, &name);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Phase {
    phase: String,
}

async fn set_phase(
    State(fake): Fake,
    Path((namespace, name)): ObjectPath,
    Json(phase): Json<Phase>,
) -> Response {
    match fake.try_set_phase(&namespace, &name, &phase.phase) {
        Ok(updated) => Json(updated).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn annotations(State(fake): Fake, Path((namespace, name)): ObjectPath) -> Response {
    Json(fake.annotations(&namespace, &name)).into_response()
}

#[derive(Deserialize)]
struct WaitQuery {
    key: String,
    value: String,
    #[serde(default = "crate::control::default_wait_ms")]
    timeout_ms: u64,
}

async fn wait_for_annotation(
    State(fake): Fake,
    Path((namespace, name)): ObjectPath,
    Query(query): Query<WaitQuery>,
) -> Response {
    let timeout = Duration::from_millis(query.timeout_ms);
    match fake
        .wait_for_annotation(&namespace, &name, &query.key, &query.value, timeout)
        .await
    {
        Ok(()) => Json(fake.annotations(&namespace, &name)).into_response(),
        Err(err) => (
            StatusCode::REQUEST_TIMEOUT,
            Json(json!({"error": err.to_string()})),
        )
            .into_response(),
    }
}

async fn get_lease(State(fake): Fake, Path((namespace, name)): ObjectPath) -> Response {
    match fake.lease(&namespace, &name) {
        Some(lease) => Json(lease).into_response(),
        None => ApiError::not_found(ResourceKind::Lease, &name).into_response(),
    }
}

async fn restart(State(fake): Fake, Extension(connection): Extension<ConnectionId>) -> StatusCode {
    fake.restart_sparing(Some(connection)).await;
    StatusCode::NO_CONTENT
}

async fn compact(State(fake): Fake) -> StatusCode {
    fake.compact();
    StatusCode::NO_CONTENT
}

async fn end_watches(State(fake): Fake) -> StatusCode {
    fake.end_watches();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum FaultKind {
    Patch,
    List,
    Watch,
}

#[derive(Deserialize)]
struct Fault {
    kind: FaultKind,
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

async fn add_faults(State(fake): Fake, Json(fault): Json<Fault>) -> StatusCode {
    let call = match fault.kind {
        FaultKind::Patch => Call::Patch,
        FaultKind::List => Call::List,
        FaultKind::Watch => Call::Watch,
    };
    fake.shared
        .write(|store| store.fail_next(call, fault.count));
    StatusCode::NO_CONTENT
}

async fn stats(State(fake): Fake) -> Json<Value> {
    Json(json!({
        "watchConnections": fake.watch_connections(),
        "resourceVersion": fake.resource_version(),
        "requests": fake.request_counts(),
    }))
}
