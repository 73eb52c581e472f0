//! The fake backend's internal API is as strict as its contract (SPEC §2): the
//! internal token is required, bodies must name a complete routing identity (and an
//! upsert a complete installation), unknown workspaces are refused, and answers come
//! in the shapes the worker and gateway read.

use std::time::Duration;

use serde_json::{Value, json};
use spritz_sandbox::backend::{ExchangeMode, FakeBackend, TeamInstall};

const WAIT: Duration = Duration::from_secs(5);
const INTERNAL_TOKEN: &str = "internal-token";

fn http() -> reqwest::Client {
    spritz_sandbox::tls::http_client_builder()
        .timeout(WAIT)
        .build()
        .expect("client")
}

/// `POST` to an internal backend route (`channel-sessions/exchange`, …) with `token`.
fn internal(backend: &FakeBackend, route: &str, token: &str) -> reqwest::RequestBuilder {
    http()
        .post(format!("{}/internal/v1/spritz/{route}", backend.base_url()))
        .bearer_auth(token)
}

/// The routing identity of workspace `team_id`, as the worker sends it.
fn identity(team_id: &str) -> Value {
    json!({
        "principalId": "spritz-slack-gateway",
        "provider": "slack",
        "externalScopeType": "workspace",
        "externalTenantId": team_id,
    })
}

/// An installation upsert for `team_id` as the gateway's OAuth callback sends it.
fn installation(team_id: &str) -> Value {
    json!({
        "principalId": "p", "provider": "slack", "externalScopeType": "workspace",
        "externalTenantId": team_id, "presetId": "zeno",
        "ownerRef": {"type": "external", "provider": "slack", "subject": "U1", "tenant": team_id},
        "providerAuth": {"apiAppId": "A2", "teamId": team_id, "enterpriseId": "",
                         "installingUserId": "U1", "botUserId": "U2BOT",
                         "botAccessToken": "xoxb-2", "scopeSet": ["chat:write"]},
    })
}

/// The status and JSON body of an answer.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn exchange(backend: &FakeBackend, token: &str, team_id: &str) -> reqwest::Response {
    internal(backend, "channel-sessions/exchange", token)
        .json(&identity(team_id))
        .send()
        .await
        .expect("exchange")
}

#[tokio::test]
async fn scripted_exchange_answers_come_in_order_then_the_steady_mode() {
    let backend = FakeBackend::start(INTERNAL_TOKEN).await.expect("backend");
    let team = TeamInstall::demo("T1");
    backend.install_team(team.clone());
    backend.script_exchange(
        "T1",
        vec![
            ExchangeMode::Transient(503),
            ExchangeMode::Unavailable,
            ExchangeMode::Transient(500),
        ],
    );

    let bare = exchange(&backend, INTERNAL_TOKEN, "T1").await;
    assert_eq!(bare.status(), 503);
    assert_eq!(bare.text().await.expect("body"), "");
    let unavailable = exchange(&backend, INTERNAL_TOKEN, "T1").await;
    assert_eq!(unavailable.status(), 503);
    let body: Value = unavailable.json().await.expect("json");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(
        body["providerAuth"]["botAccessToken"],
        json!(team.bot_access_token)
    );
    assert_eq!(exchange(&backend, INTERNAL_TOKEN, "T1").await.status(), 500);
    let resolved = exchange(&backend, INTERNAL_TOKEN, "T1").await;
    assert_eq!(resolved.status(), 200);
    let body: Value = resolved.json().await.expect("json");
    let session = &body["session"];
    assert_eq!(session["accessToken"], json!(team.access_token));
    assert_eq!(session["namespace"], json!(team.namespace));
    assert_eq!(session["instanceId"], json!(team.instance_id));
    assert_eq!(session["providerAuth"]["apiAppId"], json!(team.api_app_id));
    let expires_at = session["expiresAt"].as_str().expect("expiresAt");
    assert!(chrono::DateTime::parse_from_rfc3339(expires_at).is_ok());

    assert_eq!(exchange(&backend, "wrong", "T1").await.status(), 401);
    assert_eq!(exchange(&backend, INTERNAL_TOKEN, "T9").await.status(), 404);
    backend
        .wait_for_exchange_calls("T1", 4, WAIT)
        .await
        .expect("four calls");
    assert_eq!(backend.exchange_calls("T1"), 4);
}

#[tokio::test]
async fn a_hanging_exchange_outlasts_the_client_timeout() {
    let backend = FakeBackend::start(INTERNAL_TOKEN).await.expect("backend");
    backend.set_exchange_mode("T1", ExchangeMode::Hang);
    let outcome = internal(&backend, "channel-sessions/exchange", INTERNAL_TOKEN)
        .timeout(Duration::from_millis(200))
        .json(&json!({"principalId": "p", "provider": "slack", "externalScopeType": "workspace", "externalTenantId": "T1"}))
        .send()
        .await;
    assert!(outcome.expect_err("timed out").is_timeout());
    assert_eq!(backend.exchange_calls("T1"), 1);
}

#[tokio::test]
async fn installs_and_disconnects_are_recorded_and_change_what_the_exchange_answers() {
    let backend = FakeBackend::start(INTERNAL_TOKEN).await.expect("backend");
    let (_, upsert) = answer(
        internal(&backend, "channel-installations/upsert", INTERNAL_TOKEN)
            .json(&installation("T2")),
    )
    .await;
    assert_eq!(
        upsert,
        json!({"status": "resolved", "installation": {"providerInstallRef": "sandbox-install-1"}})
    );
    assert_eq!(backend.installations().len(), 1);
    assert_eq!(exchange(&backend, INTERNAL_TOKEN, "T2").await.status(), 200);
    assert_eq!(
        backend.team("T2").expect("installed").bot_access_token,
        "xoxb-2"
    );

    internal(&backend, "channel-installations/disconnect", INTERNAL_TOKEN)
        .json(&identity("T2"))
        .send()
        .await
        .expect("disconnect")
        .error_for_status()
        .expect("disconnected");
    let disconnects = backend
        .wait_for_disconnects(1, WAIT)
        .await
        .expect("disconnect recorded");
    assert_eq!(disconnects[0]["externalTenantId"], "T2");
    assert_eq!(exchange(&backend, INTERNAL_TOKEN, "T2").await.status(), 404);
}

async fn upsert_installation(backend: &FakeBackend, team_id: &str) -> Value {
    answer(
        internal(backend, "channel-installations/upsert", INTERNAL_TOKEN)
            .json(&installation(team_id)),
    )
    .await
    .1
}

#[tokio::test]
async fn the_backend_names_each_installation_itself_and_keeps_the_name_across_reinstalls() {
    let backend = FakeBackend::start(INTERNAL_TOKEN).await.expect("backend");
    let ref_of = |answer: Value| answer["installation"]["providerInstallRef"].clone();

    assert_eq!(
        ref_of(upsert_installation(&backend, "T2").await),
        "sandbox-install-1"
    );
    assert_eq!(
        ref_of(upsert_installation(&backend, "T3").await),
        "sandbox-install-2"
    );
    assert_eq!(
        ref_of(upsert_installation(&backend, "T2").await),
        "sandbox-install-1"
    );

    assert_eq!(
        backend.install_ref("T2").as_deref(),
        Some("sandbox-install-1")
    );
    assert_eq!(backend.install_ref("T4"), None);
    let session: Value = exchange(&backend, INTERNAL_TOKEN, "T3")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        session["session"]["providerAuth"]["providerInstallRef"],
        "sandbox-install-2"
    );
}

#[tokio::test]
async fn the_lifecycle_receiver_checks_its_token_and_fails_on_demand() {
    let backend = FakeBackend::start(INTERNAL_TOKEN).await.expect("backend");
    backend.set_lifecycle_token("lifecycle-token");
    backend.fail_next_lifecycle_webhooks(1, 502);
    let notify = |token: &'static str| {
        http()
            .post(backend.lifecycle_url())
            .bearer_auth(token)
            .json(&json!({"namespace": "ns", "instanceId": "i", "phase": "Expired"}))
            .send()
    };
    assert_eq!(notify("wrong").await.expect("notify").status(), 401);
    assert_eq!(
        notify("lifecycle-token").await.expect("notify").status(),
        502
    );
    assert!(
        notify("lifecycle-token")
            .await
            .expect("notify")
            .status()
            .is_success()
    );
    let webhooks = backend
        .wait_for_lifecycle_webhooks(1, WAIT)
        .await
        .expect("webhook");
    assert_eq!(
        webhooks,
        vec![json!({"namespace": "ns", "instanceId": "i", "phase": "Expired"})]
    );
    assert_eq!(backend.lifecycle_attempts(), 3);
}

#[tokio::test]
async fn every_internal_route_refuses_a_missing_or_wrong_token_with_401() {
    let backend = FakeBackend::start(INTERNAL_TOKEN).await.expect("backend");
    backend.install_team(TeamInstall::demo("T1"));
    for route in [
        "channel-sessions/exchange",
        "channel-installations/upsert",
        "channel-installations/disconnect",
    ] {
        let (wrong, body) =
            answer(internal(&backend, route, "wrong").json(&installation("T1"))).await;
        assert_eq!(wrong, 401, "{route}");
        assert_eq!(
            body,
            json!({"status": "error", "error": "unauthorized"}),
            "{route}"
        );
        let missing = http()
            .post(format!("{}/internal/v1/spritz/{route}", backend.base_url()))
            .json(&installation("T1"))
            .send()
            .await
            .expect("sent");
        assert_eq!(missing.status(), 401, "{route}");
    }
    assert_eq!(backend.exchange_calls("T1"), 0);
    assert!(backend.installations().is_empty());
    assert!(backend.disconnects().is_empty());
}

#[tokio::test]
async fn an_incomplete_routing_identity_is_a_400_naming_the_field() {
    let backend = FakeBackend::start(INTERNAL_TOKEN).await.expect("backend");
    backend.install_team(TeamInstall::demo("T1"));
    let without = |field: &str, value: Value| {
        let mut body = identity("T1");
        body[field] = value;
        body
    };
    let cases = [
        (without("principalId", json!("")), "principalId is required"),
        (without("provider", json!("discord")), "provider is invalid"),
        (
            without("externalScopeType", json!("enterprise")),
            "externalScopeType is invalid",
        ),
        (
            without("externalTenantId", json!(" ")),
            "externalTenantId is required",
        ),
        (json!([]), "the request body must be a JSON object"),
    ];
    for route in [
        "channel-sessions/exchange",
        "channel-installations/disconnect",
    ] {
        for (body, reason) in &cases {
            let (status, answer) =
                answer(internal(&backend, route, INTERNAL_TOKEN).json(body)).await;
            assert_eq!(status, 400, "{route} {body}");
            assert_eq!(answer["error"], *reason, "{route} {body}");
        }
        let (status, _) = answer(
            internal(&backend, route, INTERNAL_TOKEN)
                .header("Content-Type", "application/json")
                .body("{"),
        )
        .await;
        assert_eq!(status, 400, "{route}: not JSON");
    }
    assert_eq!(backend.exchange_calls("T1"), 0);
}

#[tokio::test]
async fn an_installation_upsert_needs_a_preset_an_owner_of_the_workspace_and_its_credentials() {
    let backend = FakeBackend::start(INTERNAL_TOKEN).await.expect("backend");
    let with = |pointer: &str, value: Value| {
        let mut body = installation("T2");
        *body.pointer_mut(pointer).expect("field") = value;
        body
    };
    let cases = [
        (with("/presetId", json!("")), "presetId is required"),
        (
            with("/ownerRef/tenant", json!("T3")),
            "ownerRef must be an external slack owner of the same workspace",
        ),
        (
            with("/ownerRef/subject", json!("")),
            "ownerRef must be an external slack owner of the same workspace",
        ),
        (
            with("/providerAuth", json!(null)),
            "providerAuth is required",
        ),
        (
            with("/providerAuth/teamId", json!("T3")),
            "providerAuth.teamId must match externalTenantId",
        ),
        (
            with("/providerAuth/botAccessToken", json!("")),
            "providerAuth.botAccessToken is required",
        ),
        (
            with("/providerAuth/apiAppId", json!("")),
            "providerAuth.apiAppId is required",
        ),
    ];
    for (body, reason) in &cases {
        let (status, answer) =
            answer(internal(&backend, "channel-installations/upsert", INTERNAL_TOKEN).json(body))
                .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error"], *reason, "{body}");
    }
    assert!(backend.team("T2").is_none(), "nothing was installed");
    assert_eq!(
        backend.installations().len(),
        cases.len(),
        "every attempt is recorded"
    );
}

#[tokio::test]
async fn an_unknown_workspace_is_404_and_disconnecting_twice_is_a_success() {
    let backend = FakeBackend::start(INTERNAL_TOKEN).await.expect("backend");
    let (exchanged, body) = answer(
        internal(&backend, "channel-sessions/exchange", INTERNAL_TOKEN).json(&identity("T404")),
    )
    .await;
    assert_eq!(exchanged, 404);
    assert_eq!(
        body,
        json!({"status": "error", "error": "channel installation not found"})
    );
    let (disconnected, _) = answer(
        internal(&backend, "channel-installations/disconnect", INTERNAL_TOKEN)
            .json(&identity("T404")),
    )
    .await;
    assert_eq!(disconnected, 404);

    backend.install_team(TeamInstall::demo("T1"));
    for _ in 0..2 {
        let (status, body) = answer(
            internal(&backend, "channel-installations/disconnect", INTERNAL_TOKEN)
                .json(&identity("T1")),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"status": "disconnected"}));
    }
    assert_eq!(backend.disconnects().len(), 2);
}

#[tokio::test]
async fn the_lifecycle_receiver_needs_namespace_instance_and_phase() {
    let backend = FakeBackend::start(INTERNAL_TOKEN).await.expect("backend");
    for (body, reason) in [
        (
            json!({"instanceId": "i", "phase": "Ready"}),
            "namespace is required",
        ),
        (
            json!({"namespace": "ns", "phase": "Ready"}),
            "instanceId is required",
        ),
        (
            json!({"namespace": "ns", "instanceId": "i"}),
            "phase is required",
        ),
    ] {
        let (status, answer) = answer(http().post(backend.lifecycle_url()).json(&body)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error"], reason, "{body}");
    }
    assert!(backend.lifecycle_webhooks().is_empty());
    assert_eq!(backend.lifecycle_attempts(), 3);
}
