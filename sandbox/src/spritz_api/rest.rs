//! The Spritz API routes under the base path: `POST /api/channel-conversations/upsert`
//! (bearer: a session token the fake knows), `POST /api/acp/conversations/{id}/bootstrap`
//! and the websocket `GET /api/acp/conversations/{id}/connect` (bearer: the service
//! token). Failures are JSend as the real `writeError` writes them; an unknown
//! conversation is 404 `conversation not found` (`writeACPConversationError` in
//! `api/acp_conversations.go`), a gone runtime 404 `spritz not found`
//! (`writeACPResourceError` in `api/acp_helpers.go`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::spritz_http::{
    api_error as error, bearer, injected_api_failure as injected_failure, record_traceparent,
};

use super::state::{SpritzState, Unusable};
use super::{SpritzCall, acp, upsert};

type Shared = Arc<watch::Sender<SpritzState>>;

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/channel-conversations/upsert", post(upsert))
        .route("/api/acp/conversations/{id}/bootstrap", post(bootstrap))
        .route("/api/acp/conversations/{id}/connect", get(connect))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            record_traceparent,
        ))
        .with_state(state)
}

async fn upsert(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = bearer(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthenticated");
    };
    slow_down(&state, SpritzCall::Upsert).await;
    let parsed = upsert::parse(&body);
    let mut outcome = Err(Unusable::NotFound);
    let mut principal = None;
    state.send_modify(|s| {
        s.upserts
            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        s.upsert_tokens.push(token.clone());
        principal = s.principal(&token);
        if let (Some(principal), Ok(request)) = (&principal, &parsed) {
            outcome = s
                .take_fault(SpritzCall::Upsert)
                .and_then(|()| s.upsert(principal, request.clone()));
        }
    });
    if principal.is_none() {
        return error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    if let Err(message) = parsed {
        return error(StatusCode::BAD_REQUEST, &message);
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
        // A named conversation that does not exist: the real upsert's `Get` answers
        // through `writeACPResourceError`, hence `spritz not found`.
        Err(Unusable::NotFound) => error(StatusCode::NOT_FOUND, "spritz not found"),
        Err(reason) => unusable(reason),
    }
}

async fn bootstrap(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !has_service_token(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    slow_down(&state, SpritzCall::Bootstrap).await;
    let namespace = namespace(&query);
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
                "bindingState": "active",
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
        return error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let namespace = namespace(&query);
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

/// The `namespace` query parameter, `"default"` when absent (`requestNamespace`).
fn namespace(query: &HashMap<String, String>) -> String {
    match query.get("namespace").map(|n| n.trim()) {
        Some(namespace) if !namespace.is_empty() => namespace.to_owned(),
        _ => "default".to_owned(),
    }
}

fn has_service_token(state: &Shared, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|token| token == state.borrow().service_token)
}

fn unusable(reason: Unusable) -> Response {
    match reason {
        Unusable::Vanished => error(StatusCode::NOT_FOUND, "spritz not found"),
        Unusable::NotFound => error(StatusCode::NOT_FOUND, "conversation not found"),
        Unusable::Forbidden => error(StatusCode::FORBIDDEN, "forbidden"),
        Unusable::Ambiguous => error(StatusCode::CONFLICT, "channel conversation is ambiguous"),
        Unusable::Injected(status) => injected_failure(status),
    }
}
