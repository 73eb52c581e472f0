//! What the two Spritz services the fakes stand in for — the backend's internal API
//! and the Spritz API — share on the wire: bearer tokens in `Authorization`, and
//! failures answered as `{"status":"error","error":"…"}` with the HTTP status.
//! (The backend is not public; SPEC §2 only promises "a body that may hold a
//! reason", and its clients read the body as text.)

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A failure as the Spritz services answer it.
pub(crate) fn backend_error(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({"status": "error", "error": reason}))).into_response()
}

/// The answer to a call a test made fail with `status` (500 when it is no HTTP status).
pub(crate) fn injected_backend_failure(status: u16) -> Response {
    backend_error(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        "injected failure",
    )
}

/// The `Authorization: Bearer …` token, when there is a non-empty one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_owned())
}
