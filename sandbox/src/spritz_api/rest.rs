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

use crate::spritz_http::{bearer, error, injected_failure};

use super::state::{CWD, SpritzState, Unusable, UpsertRequest};
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
        external_conversation_id: text("externalConversationId"),
        lookup_ids: body
            .get("lookupExternalConversationIds")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let complete = !request.namespace.is_empty()
        && !request.instance_id.is_empty()
        && !request.external_conversation_id.is_empty();
    let mut outcome = Err(Unusable::NotFound);
    state.send_modify(|s| {
        s.upserts.push(body.clone());
        s.upsert_tokens.push(token);
        if complete {
            outcome = s
                .take_fault(SpritzCall::Upsert)
                .and_then(|()| s.upsert(request));
        }
    });
    if !complete {
        return error(
            StatusCode::BAD_REQUEST,
            "namespace, instanceId and externalConversationId are required",
        );
    }
    match outcome {
        Ok(conversation) => Json(json!({
            "status": "success",
            "data": {"conversation": conversation.to_json()},
        }))
        .into_response(),
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
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
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

fn has_service_token(state: &Shared, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|token| token == state.borrow().service_token)
}

fn unusable(reason: Unusable) -> Response {
    match reason {
        Unusable::Vanished => error(StatusCode::NOT_FOUND, "spritz not found"),
        Unusable::NotFound => error(StatusCode::NOT_FOUND, "conversation not found"),
        Unusable::Injected(status) => injected_failure(status),
    }
}
