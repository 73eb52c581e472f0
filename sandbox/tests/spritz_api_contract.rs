//! The fake Spritz API's REST part is as strict as the real API: it knows which session
//! tokens and runtimes exist, names conversations itself, treats a `conversationId` as
//! "this existing conversation", and answers failures in JSend as `writeError` does.

use std::time::Duration;

use serde_json::{Value, json};
use spritz_sandbox::backend::TeamInstall;
use spritz_sandbox::spritz_api::{FakeSpritz, SpritzCall};

const WAIT: Duration = Duration::from_secs(5);
const SERVICE_TOKEN: &str = "service-token";

fn http() -> reqwest::Client {
    spritz_sandbox::tls::http_client_builder()
        .timeout(WAIT)
        .build()
        .expect("client")
}

/// A fake Spritz API serving team T1's runtime, and the team.
async fn spritz() -> (FakeSpritz, TeamInstall) {
    let spritz = FakeSpritz::start(SERVICE_TOKEN).await.expect("spritz");
    let team = TeamInstall::demo("T1");
    spritz.add_runtime(&team);
    (spritz, team)
}

/// The first upsert of a Slack thread, as the worker sends it (`conversationId: ""`).
fn first_upsert(team: &TeamInstall, external_id: &str) -> Value {
    json!({
        "namespace": team.namespace,
        "conversationId": "",
        "principalId": "spritz-slack-gateway",
        "instanceId": team.instance_id,
        "ownerId": team.owner_auth_id(),
        "provider": "slack",
        "externalScopeType": "workspace",
        "externalTenantId": team.team_id,
        "externalChannelId": "C1",
        "externalConversationId": external_id,
        "title": "Slack C1",
        "cwd": "/home/dev",
    })
}

/// `POST /api/channel-conversations/upsert` with `token`; status and JSON body.
async fn upsert_with(spritz: &FakeSpritz, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = http()
        .post(format!(
            "{}/api/channel-conversations/upsert",
            spritz.base_url()
        ))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("upsert sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// An upsert with the team's session token.
async fn upsert(spritz: &FakeSpritz, team: &TeamInstall, body: &Value) -> (u16, Value) {
    upsert_with(spritz, Some(&team.access_token), body).await
}

/// The conversation name an upsert answered.
fn name(answer: &Value) -> String {
    answer["data"]["conversation"]["metadata"]["name"]
        .as_str()
        .expect("conversation name")
        .to_owned()
}

/// A 4xx as `writeError` writes it.
fn fail(message: &str) -> Value {
    json!({"status": "fail", "data": {"message": message}})
}

async fn bootstrap(spritz: &FakeSpritz, id: &str, namespace: &str, token: &str) -> (u16, Value) {
    let response = http()
        .post(format!(
            "{}/api/acp/conversations/{id}/bootstrap",
            spritz.base_url()
        ))
        .query(&[("namespace", namespace)])
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .expect("bootstrap sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

#[tokio::test]
async fn a_first_upsert_creates_a_server_named_conversation_and_the_same_one_is_found_again() {
    let (spritz, team) = spritz().await;

    let (created_status, created) = upsert(&spritz, &team, &first_upsert(&team, "1.1")).await;
    let (again_status, again) = upsert(&spritz, &team, &first_upsert(&team, "1.1")).await;
    let (_, other) = upsert(&spritz, &team, &first_upsert(&team, "1.2")).await;

    assert_eq!(created_status, 201);
    assert_eq!(created["status"], "success");
    assert_eq!(created["data"]["created"], true);
    let id = name(&created);
    let hash = id
        .strip_prefix(&format!("{}-channel-", team.instance_id))
        .expect("<spritz>-channel-<hash>");
    assert!(!hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit()));
    let conversation = &created["data"]["conversation"];
    assert_eq!(conversation["spec"]["cwd"], "/home/dev");
    assert!(conversation["spec"]["sessionId"].is_string());
    assert_eq!(again_status, 200);
    assert_eq!(again["data"]["created"], false);
    assert_eq!(name(&again), id);
    assert_ne!(name(&other), id);
}

#[tokio::test]
async fn a_named_upsert_adds_the_external_id_as_an_alias_that_finds_the_conversation() {
    let (spritz, team) = spritz().await;
    let (_, created) = upsert(&spritz, &team, &first_upsert(&team, "1.1")).await;
    let id = name(&created);
    let mut alias = first_upsert(&team, "1.9");
    alias["conversationId"] = json!(id);

    let (status, aliased) = upsert(&spritz, &team, &alias).await;
    let (found_status, found) = upsert(&spritz, &team, &first_upsert(&team, "1.9")).await;

    assert_eq!(status, 200);
    assert_eq!(aliased["data"]["created"], false);
    assert_eq!(name(&aliased), id);
    assert_eq!(found_status, 200);
    assert_eq!(name(&found), id, "the alias finds the conversation");
}

#[tokio::test]
async fn a_named_upsert_of_an_unknown_conversation_is_404_spritz_not_found() {
    let (spritz, team) = spritz().await;
    let mut made_up = first_upsert(&team, "1.1");
    made_up["conversationId"] = json!("slack-t1-c1-1-1");

    let (status, body) = upsert(&spritz, &team, &made_up).await;

    assert_eq!(status, 404);
    assert_eq!(body, fail("spritz not found"));
}

#[tokio::test]
async fn a_named_upsert_of_another_channels_conversation_is_409_ambiguous() {
    let (spritz, team) = spritz().await;
    let (_, created) = upsert(&spritz, &team, &first_upsert(&team, "1.1")).await;
    let (_, second) = upsert(&spritz, &team, &first_upsert(&team, "1.2")).await;
    let mut other_channel = first_upsert(&team, "1.3");
    other_channel["conversationId"] = json!(name(&created));
    other_channel["externalChannelId"] = json!("C2");
    let mut taken_alias = first_upsert(&team, "1.2");
    taken_alias["conversationId"] = json!(name(&created));

    let (status, body) = upsert(&spritz, &team, &other_channel).await;
    let (taken_status, taken) = upsert(&spritz, &team, &taken_alias).await;

    assert_eq!(status, 409);
    assert_eq!(body, fail("channel conversation is ambiguous"));
    assert_eq!(taken_status, 409, "1.2 already names {}", name(&second));
    assert_eq!(taken, fail("channel conversation is ambiguous"));
}

#[tokio::test]
async fn required_fields_are_checked_in_order_with_the_real_messages() {
    let (spritz, team) = spritz().await;
    let without = |field: &str| {
        let mut body = first_upsert(&team, "1.1");
        body[field] = json!("");
        body
    };
    for (body, message) in [
        (without("provider"), "provider is invalid"),
        (without("externalScopeType"), "externalScopeType is invalid"),
        (without("externalTenantId"), "externalTenantId is required"),
        (without("instanceId"), "instanceId is required"),
        (without("ownerId"), "ownerId is required"),
        (without("principalId"), "principalId is required"),
        (
            without("externalChannelId"),
            "externalChannelId is required",
        ),
        (
            without("externalConversationId"),
            "externalConversationId is required",
        ),
        (json!({}), "provider is invalid"),
    ] {
        let (status, answer) = upsert(&spritz, &team, &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer, fail(message), "{body}");
    }
    let mut extra = first_upsert(&team, "1.1");
    extra["lookupExternalConversationIds"] = json!(["1.0"]);
    let (status, answer) = upsert(&spritz, &team, &extra).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        fail("json: unknown field \"lookupExternalConversationIds\"")
    );
}

#[tokio::test]
async fn an_unknown_runtime_is_404_spritz_not_found_and_so_is_a_vanished_one() {
    let (spritz, team) = spritz().await;
    let mut elsewhere = first_upsert(&team, "1.1");
    elsewhere["instanceId"] = json!("no-such-runtime");
    let mut other_namespace = first_upsert(&team, "1.1");
    other_namespace["namespace"] = json!("spritz-other");

    for body in [elsewhere, other_namespace] {
        let (status, answer) = upsert(&spritz, &team, &body).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(answer, fail("spritz not found"), "{body}");
    }
    spritz.vanish_instance(&team.namespace, &team.instance_id);
    let (status, answer) = upsert(&spritz, &team, &first_upsert(&team, "1.1")).await;
    assert_eq!(status, 404);
    assert_eq!(answer, fail("spritz not found"));
}

#[tokio::test]
async fn tokens_the_api_does_not_know_are_401_and_another_owner_is_403() {
    let (spritz, team) = spritz().await;
    let other = TeamInstall::demo("T2");
    spritz.add_runtime(&other);
    let body = first_upsert(&team, "1.1");

    let (missing, missing_body) = upsert_with(&spritz, None, &body).await;
    let (forged, _) = upsert_with(&spritz, Some("session-forged"), &body).await;
    let (service, _) = upsert_with(&spritz, Some(SERVICE_TOKEN), &body).await;
    let (not_the_caller, not_the_caller_body) =
        upsert_with(&spritz, Some(&other.access_token), &body).await;
    let mut their_runtime = first_upsert(&team, "1.1");
    their_runtime["namespace"] = json!(other.namespace);
    let (not_theirs, _) = upsert(&spritz, &team, &their_runtime).await;

    assert_eq!(missing, 401);
    assert_eq!(missing_body, fail("unauthenticated"));
    assert_eq!(forged, 401);
    assert_eq!(service, 401, "the service token is no session");
    assert_eq!(not_the_caller, 403, "ownerId must be the caller");
    assert_eq!(not_the_caller_body, fail("forbidden"));
    assert_eq!(not_theirs, 403, "the runtime belongs to another owner");
}

#[tokio::test]
async fn bootstrap_of_an_unknown_conversation_is_404_and_needs_the_service_token() {
    let (spritz, team) = spritz().await;
    let (_, created) = upsert(&spritz, &team, &first_upsert(&team, "1.1")).await;
    let id = name(&created);

    let (unknown, unknown_body) =
        bootstrap(&spritz, "conv-made-up", &team.namespace, SERVICE_TOKEN).await;
    let (wrong_namespace, _) = bootstrap(&spritz, &id, "spritz-other", SERVICE_TOKEN).await;
    let (session_token, session_body) =
        bootstrap(&spritz, &id, &team.namespace, &team.access_token).await;
    let (ok, ok_body) = bootstrap(&spritz, &id, &team.namespace, SERVICE_TOKEN).await;

    assert_eq!(unknown, 404);
    assert_eq!(unknown_body, fail("conversation not found"));
    assert_eq!(wrong_namespace, 404);
    assert_eq!(session_token, 401);
    assert_eq!(session_body, fail("unauthenticated"));
    assert_eq!(ok, 200);
    assert_eq!(ok_body["status"], "success");
    assert_eq!(
        ok_body["data"]["effectiveSessionId"],
        created["data"]["conversation"]["spec"]["sessionId"]
    );
    assert_eq!(ok_body["data"]["conversation"]["spec"]["cwd"], "/home/dev");

    spritz.vanish_instance(&team.namespace, &team.instance_id);
    let (vanished, vanished_body) = bootstrap(&spritz, &id, &team.namespace, SERVICE_TOKEN).await;
    assert_eq!(vanished, 404);
    assert_eq!(vanished_body, fail("spritz not found"));
}

#[tokio::test]
async fn connect_to_an_unknown_conversation_is_refused_with_404() {
    let (spritz, team) = spritz().await;
    let url = format!(
        "{}/api/acp/conversations/conv-made-up/connect?namespace={}",
        spritz.base_url().replacen("http", "ws", 1),
        team.namespace
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .expect("request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {SERVICE_TOKEN}").parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404);
        }
        other => panic!("expected a 404 refusal, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn server_failures_are_jsend_errors_with_their_code() {
    let (spritz, team) = spritz().await;
    spritz.fail_next(SpritzCall::Upsert, 1, 503);

    let (status, body) = upsert(&spritz, &team, &first_upsert(&team, "1.1")).await;

    assert_eq!(status, 503);
    assert_eq!(
        body,
        json!({"status": "error", "message": "injected failure", "code": 503})
    );
    assert_eq!(spritz.upserts().len(), 1, "the failed call is recorded");
}

#[tokio::test]
async fn the_control_api_adds_a_runtime_with_its_session_token() {
    let spritz = FakeSpritz::start(SERVICE_TOKEN).await.expect("spritz");
    let team = TeamInstall::demo("T1");
    http()
        .post(format!("{}/_sandbox/runtimes", spritz.origin()))
        .json(&team)
        .send()
        .await
        .expect("runtime")
        .error_for_status()
        .expect("accepted");

    let (status, _) = upsert(&spritz, &team, &first_upsert(&team, "1.1")).await;

    assert_eq!(status, 201);
}
