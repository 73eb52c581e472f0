//! What the two Spritz services the fakes stand in for — the backend's internal API
//! and the Spritz API — share on the wire: bearer tokens in `Authorization`, each
//! service's shape of a failure, and the W3C `traceparent` each request carried,
//! recorded for tests.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

/// A backend failure: `{"status":"error","error":"…"}` with the HTTP status. The
/// backend is not public; SPEC §2 only promises "a body that may hold a reason", and
/// its clients read the body as text.
pub(crate) fn backend_error(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({"status": "error", "error": reason}))).into_response()
}

/// The backend's answer to a call a test made fail with `status` (500 when it is no
/// HTTP status).
pub(crate) fn injected_backend_failure(status: u16) -> Response {
    backend_error(to_status(status), "injected failure")
}

/// A Spritz API failure, shaped as its `writeError` writes it (JSend; textcortex/spritz
/// `api/jsend.go`): below 500 `{"status":"fail","data":{"message":"…"}}`, from 500 on
/// `{"status":"error","message":"…","code":<status>}`.
pub(crate) fn api_error(status: StatusCode, message: &str) -> Response {
    let body = if status.is_server_error() {
        json!({"status": "error", "message": message, "code": status.as_u16()})
    } else {
        json!({"status": "fail", "data": {"message": message}})
    };
    (status, Json(body)).into_response()
}

/// The Spritz API's answer to a call a test made fail with `status`.
pub(crate) fn injected_api_failure(status: u16) -> Response {
    api_error(to_status(status), "injected failure")
}

fn to_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The `Authorization: Bearer …` token, when there is a non-empty one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// One request a fake's API received and the `traceparent` header it carried, so
/// tests can check that callers carry a message's trace on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracedRequest {
    /// The route below the fake's base path (`/internal/v1/spritz/…`, `/api/…`).
    pub path: String,
    pub traceparent: Option<String>,
}

/// A fake's state that keeps [`TracedRequest`]s.
pub(crate) trait RecordsTraceparents {
    fn traced_requests(&mut self) -> &mut Vec<TracedRequest>;
}

/// Middleware recording the `traceparent` of every request before it is handled.
pub(crate) async fn record_traceparent<S: RecordsTraceparents + Send + Sync + 'static>(
    State(state): State<Arc<watch::Sender<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let traced = TracedRequest {
        path: request.uri().path().to_owned(),
        traceparent: request
            .headers()
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    };
    state.send_modify(|s| s.traced_requests().push(traced));
    next.run(request).await
}
