//! The backend routes the gateway, worker and notifier call, mounted under the base
//! path: `POST /internal/v1/spritz/channel-sessions/exchange`,
//! `…/channel-installations/upsert`, `…/channel-installations/disconnect` (bearer: the
//! internal token) and `POST /lifecycle` (bearer: the lifecycle token, when set).
//! Order of checks, as in the Spritz services' internal routes: the token (401), the
//! body (400 naming the field), then the installation (404 when unknown).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::spritz_http::{
    backend_error as error, bearer, injected_backend_failure as injected_failure,
    record_traceparent,
};

use super::request;
use super::state::{BackendState, ExchangeAnswer, WriteAnswer};

type Shared = Arc<watch::Sender<BackendState>>;

/// Long enough to outlast any client timeout under test, short enough not to pile up.
const HANG: Duration = Duration::from_secs(600);

pub(super) fn router(state: Shared) -> Router {
    let internal = Router::new()
        .route("/channel-sessions/exchange", post(exchange))
        .route("/channel-installations/upsert", post(upsert_installation))
        .route("/channel-installations/disconnect", post(disconnect))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_internal_token,
        ));
    Router::new()
        .nest("/internal/v1/spritz", internal)
        .route("/lifecycle", post(lifecycle))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_traceparent,
        ))
        .with_state(state)
}

async fn require_internal_token(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let authorized =
        bearer(request.headers()).is_some_and(|token| token == state.borrow().internal_token);
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    next.run(request).await
}

async fn exchange(
    State(state): State<Shared>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "invalid json");
    };
    let team_id = match request::routing_identity(&body) {
        Ok(team_id) => team_id,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let mut answer = None;
    state.send_modify(|s| answer = Some(s.exchange(&team_id, body)));
    match answer {
        Some(ExchangeAnswer::Resolved(body)) => Json(body).into_response(),
        Some(ExchangeAnswer::Unavailable(body)) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Some(ExchangeAnswer::Transient(503)) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Some(ExchangeAnswer::Transient(status)) => error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "transient backend failure",
        ),
        Some(ExchangeAnswer::NotInstalled) => {
            error(StatusCode::NOT_FOUND, "channel installation not found")
        }
        Some(ExchangeAnswer::Hang) => {
            tokio::time::sleep(HANG).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn upsert_installation(
    State(state): State<Shared>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    write(&state, body, BackendState::upsert_installation)
}

async fn disconnect(
    State(state): State<Shared>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    write(&state, body, BackendState::disconnect)
}

/// An installation write (upsert or disconnect): the state decides, this answers.
fn write(
    state: &Shared,
    body: Result<Json<Value>, JsonRejection>,
    apply: fn(&mut BackendState, Value) -> WriteAnswer,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "invalid json");
    };
    let mut answer = None;
    state.send_modify(|s| answer = Some(apply(s, body)));
    match answer {
        Some(WriteAnswer::Ok(body)) => Json(body).into_response(),
        Some(WriteAnswer::Fault(status)) => injected_failure(status),
        Some(WriteAnswer::BadRequest(reason)) => error(StatusCode::BAD_REQUEST, reason),
        Some(WriteAnswer::NotFound) => {
            error(StatusCode::NOT_FOUND, "channel installation not found")
        }
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn lifecycle(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let token = bearer(&headers);
    let mut answer = Ok(());
    state.send_modify(|s| {
        s.lifecycle_attempts += 1;
        let authorized = match &s.lifecycle_token {
            Some(expected) => token.as_deref() == Some(expected.as_str()),
            None => true,
        };
        answer = if !authorized {
            Err((StatusCode::UNAUTHORIZED, "unauthorized"))
        } else if let Some(fault) = s.lifecycle_faults.pop_front() {
            Err((
                StatusCode::from_u16(fault).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "injected failure",
            ))
        } else {
            match &body {
                Ok(Json(body)) => request::lifecycle(body)
                    .map(|()| s.lifecycle_webhooks.push(body.clone()))
                    .map_err(|reason| (StatusCode::BAD_REQUEST, reason)),
                Err(_) => Err((StatusCode::BAD_REQUEST, "invalid json")),
            }
        };
    });
    match answer {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err((status, reason)) => error(status, reason),
    }
}
