//! What the two Spritz services the fakes stand in for — the backend's internal API
//! and the Spritz API — share on the wire: bearer tokens in `Authorization`, and each
//! service's shape of a failure.

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
