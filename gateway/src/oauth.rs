//! `GET /slack/install` (redirect to Slack's authorize page with a signed `state`) and
//! `GET /slack/oauth/callback` (verify the state, exchange the code, upsert the
//! installation at the backend, answer what the original service answers:
//! `{"status":"installed","teamId","providerInstallRef"}`, or a small page saying so
//! when the browser asks for HTML).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use spritz_proto::traceparent::TraceParent;
use tracing::Instrument as _;

use crate::accept::prefers_html;
use crate::app_state::AppState;
use crate::error::{Error, Result};
use crate::metrics::Route;

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

/// A workspace the backend now knows, as the callback reports it: the team and the
/// backend's name of the installation, nothing from the Slack profile.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Installed {
    /// Always `"installed"`.
    pub status: &'static str,
    pub team_id: String,
    pub provider_install_ref: String,
}

impl Installed {
    /// The answer in the representation the client prefers; `Vary: Accept` tells
    /// caches that it depends on that header.
    fn into_response(self, html: bool) -> Response {
        let vary = [(header::VARY, "accept")];
        if html {
            (vary, Html(self.page())).into_response()
        } else {
            (vary, Json(self)).into_response()
        }
    }

    fn page(&self) -> String {
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Spritz installed</title></head>\n<body><h1>Spritz is installed</h1>\
             <p>Slack workspace <code>{team}</code> is connected. Mention the app in a \
             channel or send it a direct message. You can close this window.</p>\
             <p>Installation: <code>{install_ref}</code></p></body></html>\n",
            team = escape_html(&self.team_id),
            install_ref = escape_html(&self.provider_install_ref),
        )
    }
}

pub(crate) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    let span = tracing::info_span!("slack_install", trace_id = tracing::field::Empty);
    let trace = spritz_service::trace::start(&span);
    span.record("trace_id", trace.trace_id());
    async move {
        match complete_install(&state, params, &trace).await {
            Ok(installed) => {
                state.metrics().request(Route::OAuthCallback, "installed");
                let accept = headers
                    .get(header::ACCEPT)
                    .and_then(|value| value.to_str().ok());
                installed.into_response(prefers_html(accept))
            }
            Err(error) => {
                state
                    .metrics()
                    .request(Route::OAuthCallback, error.outcome());
                error.into_response()
            }
        }
    }
    .instrument(span)
    .await
}

/// Verifies the callback, exchanges the code and records the installation; the
/// backend call carries `trace`, the trace of this callback.
async fn complete_install(
    state: &AppState,
    params: CallbackParams,
    trace: &TraceParent,
) -> Result<Installed> {
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
    let provider_install_ref = state.installer().upsert(&installation, trace).await?;
    tracing::info!(team_id = %installation.team_id, "slack workspace installed");
    Ok(Installed {
        status: "installed",
        team_id: installation.team_id,
        provider_install_ref,
    })
}

/// Text made safe for HTML element content and attribute values.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(team_id: &str, provider_install_ref: &str) -> Installed {
        Installed {
            status: "installed",
            team_id: team_id.to_owned(),
            provider_install_ref: provider_install_ref.to_owned(),
        }
    }

    #[test]
    fn the_json_answer_has_the_original_services_shape() {
        assert_eq!(
            serde_json::to_value(installed("T1", "inst-1")).expect("json"),
            serde_json::json!({"status": "installed", "teamId": "T1", "providerInstallRef": "inst-1"})
        );
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        let page = installed("T1", "<b>&\"'").page();
        assert!(page.contains("<code>T1</code>"), "{page}");
        assert!(page.contains("&lt;b&gt;&amp;&quot;&#39;"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
    }
}
