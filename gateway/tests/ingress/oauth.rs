//! The OAuth install: redirect with a signed state, the callback's checks, and the
//! installation upsert at the (fake) backend.

use std::collections::HashMap;

use secrecy::SecretString;
use spritz_gateway::oauth_state::{STATE_TTL_SECS, StateSigner};
use spritz_sandbox::slack::OAuthGrant;

use crate::helpers::{
    CLIENT_ID, CLIENT_SECRET, PREFIX, PRINCIPAL_ID, PUBLIC_ORIGIN, STATE_SECRET, TestApp, spawn_app,
};

fn grant() -> OAuthGrant {
    OAuthGrant {
        team_id: "T42".into(),
        team_name: "Acme".into(),
        enterprise_id: Some("E42".into()),
        app_id: "A42".into(),
        bot_user_id: "UBOT42".into(),
        bot_access_token: "xoxb-test-token".into(),
        installing_user_id: "U42".into(),
        scope: "app_mentions:read,chat:write".into(),
    }
}

fn location(response: &reqwest::Response) -> url::Url {
    let location = response.headers()["location"].to_str().expect("ascii");
    url::Url::parse(location).expect("absolute location")
}

fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// A URL the gateway handed out for its public address, pointed at the test listener.
fn to_listener(app: &TestApp, public: &url::Url) -> String {
    let public = public.as_str();
    let path = public.strip_prefix(PUBLIC_ORIGIN).expect("a gateway URL");
    app.url(path)
}

async fn callback_with(app: &TestApp, state: &str, code: &str) -> reqwest::Response {
    let url = url::Url::parse_with_params(
        &app.url("/slack/oauth/callback"),
        [("state", state), ("code", code)],
    )
    .expect("url");
    app.get(url, "callback").await
}

/// What a browser sends as `Accept` on a page load.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// The browser's round trip: our install page at `install_path` → Slack's authorize
/// page → back to our callback, which is asked for with `accept` (reqwest's `*/*`
/// when `None`). Returns the authorize page's status and the callback.
async fn through_slack(
    app: &TestApp,
    install_path: &str,
    accept: Option<&str>,
) -> (reqwest::StatusCode, reqwest::Response) {
    let install = app.get(app.url(install_path), "install").await;
    let authorize = app.get(location(&install), "authorize").await;
    let mut callback = app.http.get(to_listener(app, &location(&authorize)));
    if let Some(accept) = accept {
        callback = callback.header(reqwest::header::ACCEPT, accept);
    }
    let callback = callback.send().await.expect("callback");
    (authorize.status(), callback)
}

/// The backend's ref of the team's installation, which must differ from the one the
/// gateway proposes so that passing it on is seen.
fn backends_ref(app: &TestApp, team_id: &str) -> String {
    let install_ref = app
        .backend
        .install_ref(team_id)
        .expect("the backend named it");
    assert_ne!(install_ref, format!("slack-install:{team_id}"));
    install_ref
}

async fn issued_state(app: &TestApp) -> String {
    let response = app.get(app.url("/slack/install"), "install").await;
    query(&location(&response))["state"].clone()
}

#[tokio::test]
async fn install_redirects_to_slacks_authorize_page_with_a_signed_state() {
    let app = spawn_app().await;
    let response = app.get(app.url("/slack/install"), "install").await;
    assert_eq!(response.status(), 302);
    let target = location(&response);
    assert_eq!(
        format!(
            "{}://{}{}",
            target.scheme(),
            target.authority(),
            target.path()
        ),
        format!("{}/oauth/v2/authorize", app.slack.origin())
    );
    let params = query(&target);
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["scope"], "app_mentions:read,chat:write");
    assert_eq!(
        params["redirect_uri"],
        format!("{PUBLIC_ORIGIN}{PREFIX}/slack/oauth/callback")
    );
    let signer = StateSigner::new(SecretString::from(STATE_SECRET.to_owned()));
    assert_eq!(
        signer.verify(Some(&params["state"]), chrono::Utc::now().timestamp()),
        Ok(())
    );
    app.finish().await;
}

#[tokio::test]
async fn a_good_callback_exchanges_the_code_and_upserts_the_installation() {
    let app = spawn_app().await;
    app.slack.approve_installs(Some(grant()));

    let (authorize, callback) = through_slack(&app, &format!("{PREFIX}/slack/install"), None).await;
    assert_eq!(authorize, 302);

    assert_eq!(callback.status(), 200);
    let exchanges = app.slack.oauth_exchanges();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].client_id, CLIENT_ID);
    assert_eq!(exchanges[0].client_secret, CLIENT_SECRET);
    assert_eq!(
        exchanges[0].redirect_uri,
        format!("{PUBLIC_ORIGIN}{PREFIX}/slack/oauth/callback")
    );
    let installations = app.backend.installations();
    assert_eq!(installations.len(), 1);
    let upsert = &installations[0];
    assert_eq!(upsert["principalId"], PRINCIPAL_ID);
    assert_eq!(upsert["provider"], "slack");
    assert_eq!(upsert["externalScopeType"], "workspace");
    assert_eq!(upsert["externalTenantId"], "T42");
    assert_eq!(upsert["presetId"], "zeno");
    assert_eq!(
        upsert["ownerRef"],
        serde_json::json!({"type": "external", "provider": "slack", "subject": "U42", "tenant": "T42"})
    );
    let auth = &upsert["providerAuth"];
    assert_eq!(auth["apiAppId"], "A42");
    assert_eq!(auth["teamId"], "T42");
    assert_eq!(auth["enterpriseId"], "E42");
    assert_eq!(auth["installingUserId"], "U42");
    assert_eq!(auth["botUserId"], "UBOT42");
    assert_eq!(auth["botAccessToken"], "xoxb-test-token");
    assert_eq!(
        auth["scopeSet"],
        serde_json::json!(["app_mentions:read", "chat:write"])
    );
    assert!(
        app.backend.team("T42").is_some(),
        "the backend knows the workspace now"
    );
    let traced = app.backend.traced_requests();
    let upsert_call = traced
        .iter()
        .find(|r| r.path.ends_with("/channel-installations/upsert"))
        .expect("the upsert was received");
    assert!(
        upsert_call
            .traceparent
            .as_deref()
            .and_then(spritz_proto::traceparent::TraceParent::parse)
            .is_some(),
        "the upsert carries a traceparent"
    );
    app.assert_metric(
        r#"spritz_gateway_requests_total{outcome="installed",route="oauth_callback"}"#,
        1.0,
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn the_callback_answers_json_with_the_team_and_the_backends_install_ref() {
    let app = spawn_app().await;
    app.slack.approve_installs(Some(grant()));

    for accept in [
        None,
        Some("application/json"),
        Some("text/html;q=0.5, application/json"),
    ] {
        let (_, callback) = through_slack(&app, "/slack/install", accept).await;

        assert_eq!(callback.status(), 200, "{accept:?}");
        assert_eq!(
            callback.headers()["content-type"],
            "application/json",
            "{accept:?}"
        );
        let answer: serde_json::Value = callback.json().await.expect("json");
        assert_eq!(
            answer,
            serde_json::json!({
                "status": "installed",
                "teamId": "T42",
                "providerInstallRef": backends_ref(&app, "T42"),
            }),
            "{accept:?}"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn a_browser_gets_a_page_with_the_team_and_the_backends_install_ref_and_no_profile_data() {
    let app = spawn_app().await;
    app.slack.approve_installs(Some(grant()));

    let (_, callback) = through_slack(&app, "/slack/install", Some(BROWSER_ACCEPT)).await;

    assert_eq!(callback.status(), 200);
    let content_type = callback.headers()["content-type"].to_str().expect("ascii");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert_eq!(callback.headers()["vary"], "accept");
    let page = callback.text().await.expect("page");
    assert!(page.contains("Spritz is installed"), "{page}");
    assert!(page.contains("T42"), "{page}");
    assert!(page.contains(&backends_ref(&app, "T42")), "{page}");
    let grant = grant();
    for private in [
        grant.team_name,
        grant.installing_user_id,
        grant.bot_user_id,
        grant.bot_access_token,
        grant.enterprise_id.expect("enterprise"),
    ] {
        assert!(!page.contains(&private), "{private} shown in {page}");
    }
    app.assert_metric(
        r#"spritz_gateway_requests_total{outcome="installed",route="oauth_callback"}"#,
        1.0,
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn a_tampered_state_is_rejected_before_any_code_exchange() {
    let app = spawn_app().await;
    app.slack.register_oauth_code("code-1", grant());
    let state = issued_state(&app).await;
    let (payload, signature) = state.split_once('.').expect("signed state");
    let forged_payload = format!("{payload}x");
    // Change the last character to one it is not, so the forgery always differs.
    let last = if signature.ends_with('A') { 'B' } else { 'A' };
    let forged_signature = format!("{}{last}", &signature[..signature.len() - 1]);
    let foreign = StateSigner::new(SecretString::from("someone-else".to_owned()))
        .issue(chrono::Utc::now().timestamp());

    for bad in [
        format!("{forged_payload}.{signature}"),
        format!("{payload}.{forged_signature}"),
        foreign,
        String::new(),
    ] {
        let response = callback_with(&app, &bad, "code-1").await;
        assert_eq!(response.status(), 400, "{bad}");
        assert!(
            response.text().await.expect("text").contains("not valid"),
            "{bad}"
        );
    }
    assert!(
        app.slack.oauth_exchanges().is_empty(),
        "no code exchange for a bad state"
    );
    assert!(app.backend.installations().is_empty());
    app.finish().await;
}

#[tokio::test]
async fn an_expired_state_is_rejected_with_a_clear_message() {
    let app = spawn_app().await;
    app.slack.register_oauth_code("code-1", grant());
    let signer = StateSigner::new(SecretString::from(STATE_SECRET.to_owned()));
    let old = signer.issue(chrono::Utc::now().timestamp() - STATE_TTL_SECS - 5);

    let response = callback_with(&app, &old, "code-1").await;

    assert_eq!(response.status(), 400);
    assert!(response.text().await.expect("text").contains("expired"));
    assert!(app.slack.oauth_exchanges().is_empty());
    assert!(app.backend.installations().is_empty());
    app.finish().await;
}

#[tokio::test]
async fn a_cancelled_install_and_a_refused_code_install_nothing() {
    let app = spawn_app().await;
    app.slack.approve_installs(None);
    let (_, cancelled) = through_slack(&app, "/slack/install", Some(BROWSER_ACCEPT)).await;
    assert_eq!(cancelled.status(), 400);
    assert!(cancelled.text().await.expect("text").contains("cancelled"));

    let state = issued_state(&app).await;
    let refused = callback_with(&app, &state, "never-issued").await;
    assert_eq!(refused.status(), 502);
    assert!(
        !refused.text().await.expect("text").contains("invalid_code"),
        "Slack's error stays in the log"
    );
    assert!(app.backend.installations().is_empty());
    app.finish().await;
}

#[tokio::test]
async fn a_backend_failure_is_reported_and_not_shown_as_success() {
    let app = spawn_app().await;
    app.slack.register_oauth_code("code-1", grant());
    app.backend.fail_next_installation_upserts(1, 500);
    let state = issued_state(&app).await;

    let response = callback_with(&app, &state, "code-1").await;

    assert_eq!(response.status(), 502);
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("could not be completed")
    );
    app.finish().await;
}
