//! The Spritz API routes under the base path: `POST /api/channel-conversations/upsert`
//! (bearer: any session token, recorded), `POST /api/acp/conversations/{id}/bootstrap`
//! and the websocket `GET /api/acp/conversations/{id}/connect` (bearer: the service
//! token). A vanished runtime answers 404 `spritz not found`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::spritz_http::{
    backend_error as error, bearer, injected_backend_failure as injected_failure,
};

use super::state::{CWD, Identity, SpritzState, Unusable, UpsertRequest};
use super::{SpritzCall, acp};

type Shared = Arc<watch::Sender<SpritzState>>;

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/channel-conversations/upsert", post(upsert))
        .route("/api/acp/conversations/{id}/bootstrap", post(bootstrap))
        .route("/api/acp/conversations/{id}/connect", get(connect))
        .with_state(state)
}

async fn upsert(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Some(token) = bearer(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    };
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "invalid json");
    };
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let request = UpsertRequest {
        namespace: text("namespace"),
        instance_id: text("instanceId"),
        conversation_id: text("conversationId"),
        identity: Identity {
            principal_id: text("principalId"),
            provider: text("provider"),
            external_scope_type: text("externalScopeType"),
            external_tenant_id: text("externalTenantId"),
            external_channel_id: text("externalChannelId"),
            owner_id: text("ownerId"),
        },
        external_conversation_id: text("externalConversationId"),
    };
    slow_down(&state, SpritzCall::Upsert).await;
    let missing = missing_field(&request);
    let mut outcome = Err(Unusable::NotFound);
    state.send_modify(|s| {
        s.upserts.push(body.clone());
        s.upsert_tokens.push(token);
        if missing.is_none() {
            outcome = s
                .take_fault(SpritzCall::Upsert)
                .and_then(|()| s.upsert(request));
        }
    });
    if let Some(message) = missing {
        return error(StatusCode::BAD_REQUEST, message);
    }
    match outcome {
        Ok((conversation, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let body = json!({
                "status": "success",
                "data": {"created": created, "conversation": conversation.to_json()},
            });
            (status, Json(body)).into_response()
        }
        Err(reason) => unusable(reason),
    }
}

/// The first required field an upsert lacks, with the message the real API writes
/// (`normalizeChannelConversationUpsertRequest` in `api/channel_conversation_service.go`).
fn missing_field(request: &UpsertRequest) -> Option<&'static str> {
    let identity = &request.identity;
    [
        (&identity.provider, "provider is required"),
        (
            &identity.external_scope_type,
            "externalScopeType is required",
        ),
        (&identity.external_tenant_id, "externalTenantId is required"),
        (&request.instance_id, "instanceId is required"),
        (&identity.owner_id, "ownerId is required"),
        (&identity.principal_id, "principalId is required"),
        (
            &identity.external_channel_id,
            "externalChannelId is required",
        ),
        (
            &request.external_conversation_id,
            "externalConversationId is required",
        ),
        (&request.namespace, "namespace is required"),
    ]
    .into_iter()
    .find_map(|(value, message)| value.is_empty().then_some(message))
}

async fn bootstrap(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !has_service_token(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    slow_down(&state, SpritzCall::Bootstrap).await;
    let namespace = query.get("namespace").cloned().unwrap_or_default();
    let mut outcome = Err(Unusable::NotFound);
    state.send_modify(|s| {
        s.bootstraps.push((id.clone(), namespace.clone()));
        outcome = s
            .take_fault(SpritzCall::Bootstrap)
            .and_then(|()| s.usable(&id, &namespace));
    });
    match outcome {
        Ok(conversation) => Json(json!({
            "status": "success",
            "data": {
                "effectiveSessionId": conversation.session_id,
                "effectiveCwd": CWD,
                "conversation": conversation.to_json(),
            },
        }))
        .into_response(),
        Err(reason) => unusable(reason),
    }
}

async fn connect(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !has_service_token(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let namespace = query.get("namespace").cloned().unwrap_or_default();
    let mut usable = Err(Unusable::NotFound);
    state.send_modify(|s| {
        usable = s
            .take_fault(SpritzCall::Connect)
            .and_then(|()| s.usable(&id, &namespace));
    });
    let conversation = match usable {
        Ok(conversation) => conversation,
        Err(reason) => return unusable(reason),
    };
    upgrade.on_upgrade(move |socket| acp::serve(socket, state, conversation))
}

/// Waits as long as a test asked calls of this kind to take.
async fn slow_down(state: &Shared, call: SpritzCall) {
    let delay = state.borrow().delays.get(&call).copied();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
}

fn has_service_token(state: &Shared, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|token| token == state.borrow().service_token)
}

fn unusable(reason: Unusable) -> Response {
    match reason {
        Unusable::Vanished => error(StatusCode::NOT_FOUND, "spritz not found"),
        Unusable::NotFound => error(StatusCode::NOT_FOUND, "spritz not found"),
        Unusable::Ambiguous => error(StatusCode::CONFLICT, "channel conversation is ambiguous"),
        Unusable::Injected(status) => injected_failure(status),
    }
}
