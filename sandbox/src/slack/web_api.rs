//! The routes real Slack serves: `chat.postMessage`, `oauth.v2.access` and the
//! `/oauth/v2/authorize` install page. Answers follow Slack's shapes: errors are 200
//! with `ok:false`, except rate limits (429 + `Retry-After`) and injected 5xx.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::state::{OAuthOutcome, PostFault, PostOutcome, PostRequest, SlackState};
use super::{AuthorizeRequest, OAuthExchange, OAuthGrant};

type Shared = Arc<watch::Sender<SlackState>>;

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/chat.postMessage", post(post_message))
        .route("/api/oauth.v2.access", post(oauth_access))
        .route("/oauth/v2/authorize", get(authorize))
        .with_state(state)
}

async fn post_message(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(mut request) = parse_post_request(&headers, &body) else {
        return slack_error("invalid_json");
    };
    if let Some(bearer) = bearer(&headers) {
        request.token = Some(bearer);
    }
    let mut outcome = None;
    state.send_modify(|s| outcome = Some(s.post_message(request)));
    match outcome {
        Some(PostOutcome::Posted(post)) => {
            let mut message = json!({
                "type": "message",
                "subtype": "bot_message",
                "bot_id": "B0SANDBOX",
                "text": post.text,
                "ts": post.ts,
            });
            if let Some(thread_ts) = &post.thread_ts {
                message["thread_ts"] = json!(thread_ts);
            }
            Json(json!({"ok": true, "channel": post.channel, "ts": post.ts, "message": message}))
                .into_response()
        }
        Some(PostOutcome::Fault(PostFault::SlackError(error))) => slack_error(&error),
        Some(PostOutcome::Fault(PostFault::RateLimited { retry_after_secs })) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response(),
        Some(PostOutcome::Fault(PostFault::Status(status))) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!("fake slack: injected status {status}"),
        )
            .into_response(),
        Some(PostOutcome::Rejected(error)) => slack_error(error),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Slack takes JSON (with a bearer) or a form (token in the body or a bearer).
fn parse_post_request(headers: &HeaderMap, body: &[u8]) -> Option<PostRequest> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let fields: HashMap<String, Value> = if is_form {
        url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect()
    } else {
        serde_json::from_slice(body).ok()?
    };
    let text_field = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    Some(PostRequest {
        token: is_form.then(|| text_field("token")).flatten(),
        channel: text_field("channel"),
        text: text_field("text"),
        thread_ts: text_field("thread_ts"),
    })
}

async fn oauth_access(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let (mut client_id, mut client_secret) = (field("client_id"), field("client_secret"));
    if client_id.is_empty()
        && let Some((id, secret)) = basic_auth(&headers)
    {
        (client_id, client_secret) = (id, secret);
    }
    let exchange = OAuthExchange {
        code: field("code"),
        client_id,
        client_secret,
        redirect_uri: field("redirect_uri"),
    };
    let mut outcome = None;
    state.send_modify(|s| outcome = Some(s.exchange_code(exchange)));
    match outcome {
        Some(OAuthOutcome::Granted(grant)) => Json(grant_body(&grant)).into_response(),
        Some(OAuthOutcome::Rejected(error)) => slack_error(error),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn grant_body(grant: &OAuthGrant) -> Value {
    json!({
        "ok": true,
        "access_token": grant.bot_access_token,
        "token_type": "bot",
        "scope": grant.scope,
        "bot_user_id": grant.bot_user_id,
        "app_id": grant.app_id,
        "team": {"id": grant.team_id, "name": grant.team_name},
        "enterprise": grant.enterprise_id.as_ref().map(|id| json!({"id": id, "name": id})),
        "is_enterprise_install": false,
        "authed_user": {"id": grant.installing_user_id},
    })
}

async fn authorize(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| query.get(name).cloned().unwrap_or_default();
    let request = AuthorizeRequest {
        client_id: field("client_id"),
        scope: field("scope"),
        redirect_uri: field("redirect_uri"),
        state: field("state"),
    };
    let Ok(mut target) = url::Url::parse(&request.redirect_uri) else {
        return (StatusCode::BAD_REQUEST, "bad_redirect_uri").into_response();
    };
    let oauth_state = request.state.clone();
    let mut code = None;
    state.send_modify(|s| code = s.authorize(request));
    {
        let mut pairs = target.query_pairs_mut();
        match &code {
            Some(code) => pairs.append_pair("code", code),
            None => pairs.append_pair("error", "access_denied"),
        };
        pairs.append_pair("state", &oauth_state);
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

fn slack_error(error: &str) -> Response {
    Json(json!({"ok": false, "error": error})).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}
