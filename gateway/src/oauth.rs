//! `GET /slack/install` (redirect to Slack's authorize page with a signed `state`) and
//! `GET /slack/oauth/callback` (verify the state, exchange the code, upsert the
//! installation at the backend, show a success page).

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::metrics::Route;
use crate::routes::AppState;

const SUCCESS_PAGE: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Spritz installed</title></head>\
<body><h1>Spritz is installed</h1><p>Your Slack workspace is connected. Mention the app in a channel or send it a \
direct message. You can close this window.</p></body></html>\n";

pub(crate) async fn install(State(state): State<AppState>) -> Response {
    let oauth_state = state.state_signer().issue(Utc::now().timestamp());
    let location = state.installer().authorize_redirect(&oauth_state);
    state.metrics().request(Route::Install, "redirect");
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// The parameters Slack sends back; all optional so a malformed callback gets our own
/// message instead of a generic rejection.
#[derive(Deserialize)]
pub(crate) struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub(crate) async fn callback(
    State(state): State<AppState>,
    Query(params): Query<CallbackParams>,
) -> Response {
    match complete_install(&state, params).await {
        Ok(page) => {
            state.metrics().request(Route::OAuthCallback, "installed");
            page.into_response()
        }
        Err(error) => {
            state
                .metrics()
                .request(Route::OAuthCallback, error.outcome());
            error.into_response()
        }
    }
}

async fn complete_install(state: &AppState, params: CallbackParams) -> Result<Html<&'static str>> {
    state
        .state_signer()
        .verify(params.state.as_deref(), Utc::now().timestamp())?;
    if let Some(error) = params.error.filter(|e| !e.is_empty()) {
        return Err(Error::InstallDenied(error));
    }
    let code = params
        .code
        .filter(|c| !c.trim().is_empty())
        .ok_or(Error::MissingCode)?;
    let installation = state.installer().exchange_code(code.trim()).await?;
    state.installer().upsert(&installation).await?;
    tracing::info!(team_id = %installation.team_id, "slack workspace installed");
    Ok(Html(SUCCESS_PAGE))
}
