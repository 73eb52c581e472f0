//! The fakes over real HTTP and websockets, as the gateway and worker will see them.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use spritz_sandbox::backend::{FakeBackend, TeamInstall};
use spritz_sandbox::slack::FakeSlack;
use spritz_sandbox::spritz_api::{AgentBehaviour, FakeSpritz, SpritzCall};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const WAIT: Duration = Duration::from_secs(5);
const SERVICE_TOKEN: &str = "service-token";
const INTERNAL_TOKEN: &str = "internal-token";

fn http() -> reqwest::Client {
    spritz_sandbox::tls::http_client_builder()
        .timeout(WAIT)
        .build()
        .expect("client")
}

/// `POST /api/channel-conversations/upsert` with the team's session token.
fn upsert(spritz: &FakeSpritz, team: &TeamInstall) -> reqwest::RequestBuilder {
    http()
        .post(format!(
            "{}/api/channel-conversations/upsert",
            spritz.base_url()
        ))
        .bearer_auth(&team.access_token)
}

/// Sending a request and reading its answer's JSON body in one step.
trait JsonAnswer {
    /// The answer as JSON; it must be a success.
    async fn success(self) -> Value;
}

impl JsonAnswer for reqwest::RequestBuilder {
    async fn success(self) -> Value {
        let response = self.send().await.expect("request sent");
        let response = response.error_for_status().expect("a success");
        response.json().await.expect("a JSON answer")
    }
}

/// `POST …/bootstrap` of conversation `id` in `namespace`, as the worker sends it.
fn bootstrap(base_url: &str, id: &str, namespace: &str, token: &str) -> reqwest::RequestBuilder {
    http()
        .post(format!("{base_url}/api/acp/conversations/{id}/bootstrap"))
        .query(&[("namespace", namespace)])
        .bearer_auth(token)
}

/// `POST` to an internal backend route (`channel-sessions/exchange`, …) with `token`.
fn internal(backend: &FakeBackend, route: &str, token: &str) -> reqwest::RequestBuilder {
    http()
        .post(format!("{}/internal/v1/spritz/{route}", backend.base_url()))
        .bearer_auth(token)
}

/// A conversation upserted and bootstrapped the way the worker does it.
#[derive(Clone)]
struct Conversation {
    id: String,
    namespace: String,
    session_id: String,
}

async fn open_conversation(
    spritz: &FakeSpritz,
    team: &TeamInstall,
    external_id: &str,
) -> Conversation {
    spritz.add_runtime(team);
    let upsert: Value = upsert(spritz, team)
        .json(&json!({
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
        }))
        .success()
        .await;
    assert_eq!(upsert["status"], "success");
    let id = upsert["data"]["conversation"]["metadata"]["name"]
        .as_str()
        .expect("conversation name")
        .to_owned();
    let bootstrap: Value = bootstrap(&spritz.base_url(), &id, &team.namespace, SERVICE_TOKEN)
        .success()
        .await;
    assert_eq!(
        bootstrap["data"]["conversation"]["spec"]["cwd"],
        "/home/dev"
    );
    Conversation {
        id,
        namespace: team.namespace.clone(),
        session_id: bootstrap["data"]["effectiveSessionId"]
            .as_str()
            .expect("session id")
            .to_owned(),
    }
}

/// `POST …/bootstrap` of an open conversation with the service token.
fn bootstrap_as_the_worker(
    spritz: &FakeSpritz,
    conversation: &Conversation,
) -> reqwest::RequestBuilder {
    bootstrap(
        &spritz.base_url(),
        &conversation.id,
        &conversation.namespace,
        SERVICE_TOKEN,
    )
}

/// A fresh fake Spritz API with one conversation of team T1 open on it.
async fn spritz_with_conversation() -> (FakeSpritz, Conversation) {
    let spritz = FakeSpritz::start(SERVICE_TOKEN).await.expect("spritz");
    let team = TeamInstall::demo("T1");
    let conversation = open_conversation(&spritz, &team, "1.1").await;
    (spritz, conversation)
}

/// The `…/connect` websocket request for `conversation`, with the service token.
fn connect_request(
    spritz: &FakeSpritz,
    conversation: &Conversation,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = format!(
        "{}/api/acp/conversations/{}/connect?namespace={}",
        spritz.base_url().replacen("http", "ws", 1),
        conversation.id,
        conversation.namespace
    );
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {SERVICE_TOKEN}").parse().expect("header"),
    );
    request
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal ACP client: sends requests, collects notifications until the response,
/// and refuses permission requests with -32000 as the gateway must.
struct Acp {
    socket: Socket,
    next_id: u64,
}

/// What one call got back.
struct Answer {
    response: Value,
    updates: Vec<Value>,
    permission_requests: usize,
}

impl Acp {
    async fn connect(spritz: &FakeSpritz, conversation: &Conversation) -> Acp {
        let request = connect_request(spritz, conversation);
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .expect("connect");
        Acp { socket, next_id: 0 }
    }

    async fn open(spritz: &FakeSpritz, conversation: &Conversation) -> Acp {
        let mut acp = Acp::connect(spritz, conversation).await;
        let init = acp
            .call(
                "initialize",
                json!({"protocolVersion": 1, "clientInfo": {"name": "test", "version": "0"}}),
            )
            .await
            .expect("initialize");
        assert_eq!(init.response["result"]["protocolVersion"], 1);
        let load = acp.load(&conversation.session_id).await.expect("load");
        // `LoadSessionResponse` with nothing set: an empty object.
        assert_eq!(load.response["result"], json!({}));
        acp
    }

    async fn load(&mut self, session_id: &str) -> Option<Answer> {
        self.call(
            "session/load",
            json!({"sessionId": session_id, "cwd": "/home/dev", "mcpServers": []}),
        )
        .await
    }

    async fn prompt(&mut self, conversation: &Conversation, text: &str) -> Option<Answer> {
        self.call(
            "session/prompt",
            json!({"sessionId": conversation.session_id, "prompt": [{"type": "text", "text": text}]}),
        )
        .await
    }

    /// Sends a `session/prompt` with request id `id` without waiting for anything.
    async fn send_prompt(&mut self, conversation: &Conversation, id: &str, text: &str) {
        self.send_raw(json!({"jsonrpc": "2.0", "id": id, "method": "session/prompt",
            "params": {"sessionId": conversation.session_id, "prompt": [{"type": "text", "text": text}]}}))
            .await;
    }

    async fn send_raw(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    async fn next_message(&mut self) -> Option<Value> {
        while let Some(Ok(message)) = self.socket.next().await {
            if let Message::Text(text) = message {
                return Some(serde_json::from_str(text.as_str()).expect("json"));
            }
        }
        None
    }

    /// `None` when the socket closed before the response.
    async fn call(&mut self, method: &str, params: Value) -> Option<Answer> {
        self.next_id += 1;
        let id = format!("rpc-{}", self.next_id);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.socket
            .send(Message::Text(request.to_string().into()))
            .await
            .expect("send");
        let mut answer = Answer {
            response: Value::Null,
            updates: Vec::new(),
            permission_requests: 0,
        };
        while let Some(Ok(message)) = self.socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let message: Value = serde_json::from_str(text.as_str()).expect("json");
            match (
                message.get("method").and_then(Value::as_str),
                message.get("id"),
            ) {
                (Some("session/request_permission"), Some(request_id)) => {
                    answer.permission_requests += 1;
                    let refusal = json!({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32000, "message": "no interactive approvals"}});
                    self.socket
                        .send(Message::Text(refusal.to_string().into()))
                        .await
                        .expect("send refusal");
                }
                (Some("session/update"), None) => {
                    answer.updates.push(message["params"]["update"].clone())
                }
                (None, Some(response_id)) if *response_id == json!(id) => {
                    answer.response = message;
                    return Some(answer);
                }
                _ => {}
            }
        }
        None
    }
}

/// The reply text carried by `agent_message_chunk` updates, as the spec reads them.
fn reply_text(updates: &[Value]) -> String {
    fn extract(value: &Value) -> String {
        match value {
            Value::String(text) => text.clone(),
            Value::Object(map) => match map.get("text").and_then(Value::as_str) {
                Some(text) if !text.is_empty() => text.to_owned(),
                _ => map
                    .get("content")
                    .or_else(|| map.get("resource"))
                    .map(extract)
                    .or_else(|| map.get("uri").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default(),
            },
            _ => String::new(),
        }
    }
    updates
        .iter()
        .filter(|u| u["sessionUpdate"] == "agent_message_chunk")
        .map(|u| extract(&u["content"]))
        .collect()
}

fn with_context(text: &str) -> String {
    format!(
        "<spritz-channel-context>{{\"source\":\"spritz-slack-gateway\",\"provider\":\"slack\"}}</spritz-channel-context>\n\n{text}"
    )
}

#[tokio::test]
async fn acp_echo_round_trip_replies_in_varied_chunks_and_records_the_prompt() {
    let spritz = FakeSpritz::start(SERVICE_TOKEN).await.expect("spritz");
    let team = TeamInstall::demo("T1");
    let conversation = open_conversation(&spritz, &team, "1700000000.000100").await;
    let mut acp = Acp::open(&spritz, &conversation).await;

    let answer = acp
        .prompt(&conversation, &with_context("hello wörld"))
        .await
        .expect("prompt answered");

    assert_eq!(answer.response["result"]["stopReason"], "end_turn");
    assert_eq!(reply_text(&answer.updates), "echo: hello wörld");
    let chunks = answer
        .updates
        .iter()
        .filter(|u| u["sessionUpdate"] == "agent_message_chunk")
        .count();
    assert!(chunks >= 2, "expected several chunks, got {chunks}");
    let prompts = spritz
        .wait_for_prompts(1, WAIT)
        .await
        .expect("prompt recorded");
    assert_eq!(prompts[0].conversation_id, conversation.id);
    assert_eq!(prompts[0].namespace, team.namespace);
    assert_eq!(prompts[0].session_id, conversation.session_id);
    assert!(prompts[0].text.ends_with("hello wörld"));
    assert_eq!(spritz.max_concurrent_prompts(&conversation.id), 1);
    assert_eq!(spritz.upsert_tokens(), vec![team.access_token.clone()]);
}

#[tokio::test]
async fn a_permission_request_is_answered_recorded_and_then_the_agent_echoes() {
    let (spritz, conversation) = spritz_with_conversation().await;
    spritz.set_agent(AgentBehaviour::AskPermission);
    let mut acp = Acp::open(&spritz, &conversation).await;

    let answer = acp
        .prompt(&conversation, "list files")
        .await
        .expect("answered");

    assert_eq!(answer.permission_requests, 1);
    assert_eq!(reply_text(&answer.updates), "echo: list files");
    let answers = spritz.permission_answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["error"]["code"], -32000);
}

#[tokio::test]
async fn disconnecting_agents_close_before_or_after_the_first_chunk() {
    let (spritz, conversation) = spritz_with_conversation().await;

    spritz.set_agent(AgentBehaviour::Disconnect);
    let mut acp = Acp::open(&spritz, &conversation).await;
    assert!(acp.prompt(&conversation, "hi").await.is_none());

    spritz.set_agent(AgentBehaviour::DisconnectAfterChunk);
    let mut acp = Acp::open(&spritz, &conversation).await;
    assert!(acp.prompt(&conversation, "hi").await.is_none());

    spritz.set_agent(AgentBehaviour::EmptyReply);
    let mut acp = Acp::open(&spritz, &conversation).await;
    let answer = acp.prompt(&conversation, "hi").await.expect("answered");
    assert_eq!(answer.response["result"]["stopReason"], "end_turn");
    assert_eq!(reply_text(&answer.updates), "");
    assert_eq!(spritz.prompts().len(), 3);
}

#[tokio::test]
async fn held_prompts_deliver_one_chunk_and_finish_after_release() {
    let (spritz, conversation) = spritz_with_conversation().await;
    spritz.hold_prompts();

    let mut tasks = Vec::new();
    for text in ["one", "two"] {
        let spritz = spritz.clone();
        let conversation = conversation.clone();
        tasks.push(tokio::spawn(async move {
            let mut acp = Acp::open(&spritz, &conversation).await;
            acp.prompt(&conversation, text)
                .await
                .map(|a| reply_text(&a.updates))
        }));
    }
    spritz
        .wait_for_prompts(2, WAIT)
        .await
        .expect("both prompts arrived");
    assert_eq!(spritz.max_concurrent_prompts(&conversation.id), 2);
    spritz.release_prompts();

    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("task").expect("answered"));
    }
    replies.sort();
    assert_eq!(replies, ["echo: one", "echo: two"]);
    assert_eq!(spritz.prompts_in_progress(), 0);
}

#[tokio::test]
async fn a_vanished_runtime_answers_spritz_not_found_until_restored_with_a_fresh_session() {
    let spritz = FakeSpritz::start(SERVICE_TOKEN).await.expect("spritz");
    let team = TeamInstall::demo("T1");
    let before = open_conversation(&spritz, &team, "1.1").await;
    spritz.vanish_instance(&team.namespace, &team.instance_id);

    let bootstrap = bootstrap_as_the_worker(&spritz, &before)
        .send()
        .await
        .expect("bootstrap");
    assert_eq!(bootstrap.status(), 404);
    assert!(
        bootstrap
            .text()
            .await
            .expect("body")
            .contains("spritz not found")
    );

    spritz.restore_instance(&team.namespace, &team.instance_id);
    let after = open_conversation(&spritz, &team, "1.1").await;
    assert_eq!(after.id, before.id);
    assert_ne!(after.session_id, before.session_id);
    let mut stale = Acp::connect(&spritz, &before).await;
    let load = stale.load(&before.session_id).await.expect("answered");
    assert!(load.response["error"].is_object());
}

#[tokio::test]
async fn the_spritz_api_keeps_its_base_path_and_checks_the_service_token() {
    let (spritz, conversation) = spritz_with_conversation().await;
    let bootstrap = |base_url: &str, token: &str| {
        bootstrap(base_url, &conversation.id, &conversation.namespace, token).send()
    };
    let without_prefix = bootstrap(&spritz.origin(), SERVICE_TOKEN)
        .await
        .expect("bootstrap");
    assert_eq!(without_prefix.status(), 404);
    let wrong_token = bootstrap(&spritz.base_url(), "nope")
        .await
        .expect("bootstrap");
    assert_eq!(wrong_token.status(), 401);
}

/// `POST …/channel-sessions/exchange` for `team_id` at the fake backend.
async fn exchange(backend: &FakeBackend, token: &str, team_id: &str) -> reqwest::Response {
    internal(backend, "channel-sessions/exchange", token)
        .json(&json!({
            "principalId": "spritz-slack-gateway",
            "provider": "slack",
            "externalScopeType": "workspace",
            "externalTenantId": team_id,
        }))
        .send()
        .await
        .expect("exchange")
}

/// A stand-in gateway for the CLI test: verifies Slack's signature, answers 200, then
/// posts a status message and the reply to the fake Slack as a worker would.
async fn spawn_signature_checking_gateway(
    slack: &FakeSlack,
    secret: &'static str,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use axum::http::HeaderMap;
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let slack_api = slack.base_url();
    let app = axum::Router::new().route(
        "/slack/events",
        axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
            let events_tx = events_tx.clone();
            let slack_api = slack_api.clone();
            async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                let verified = signature_is_valid(
                    secret,
                    header("x-slack-request-timestamp"),
                    header("x-slack-signature"),
                    &body,
                );
                if !verified {
                    return axum::http::StatusCode::UNAUTHORIZED;
                }
                let event: Value = serde_json::from_slice(&body).expect("event json");
                let channel = event["event"]["channel"]
                    .as_str()
                    .expect("channel")
                    .to_owned();
                let text = event["event"]["text"].as_str().expect("text").to_owned();
                events_tx.send(event).expect("record event");
                tokio::spawn(async move {
                    for reply in [
                        "Still waking up. I will continue here shortly.",
                        &format!("echo: {text}"),
                    ] {
                        http()
                            .post(format!("{slack_api}/chat.postMessage"))
                            .bearer_auth("xoxb-demo")
                            .json(&json!({"channel": channel, "text": reply}))
                            .send()
                            .await
                            .expect("post reply");
                    }
                });
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, events_rx)
}

fn signature_is_valid(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> bool {
    let now = chrono::Utc::now().timestamp();
    spritz_proto::slack_signature::verify(secret.as_bytes(), timestamp, signature, body, now)
        .is_ok()
}

#[tokio::test]
async fn send_message_signs_like_slack_and_prints_the_reply_after_the_status() {
    let slack = FakeSlack::start().await.expect("slack");
    slack.add_workspace("T0DEMO", "xoxb-demo", &[]);
    let (gateway_url, mut events) = spawn_signature_checking_gateway(&slack, "cli-secret").await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_spritz-sandbox"))
        .args([
            "send-message",
            "--gateway-url",
            &gateway_url,
            "--signing-secret",
            "cli-secret",
        ])
        .args([
            "--slack-url",
            &slack.origin(),
            "--channel",
            "C1",
            "--text",
            "hello there",
            "--timeout",
            "10s",
        ])
        .env_remove("SPRITZ_SLACK_SIGNING_SECRET")
        .output()
        .await
        .expect("run spritz-sandbox");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("gateway answered 200"), "{stdout}");
    assert!(stdout.contains("Still waking up"), "{stdout}");
    assert!(
        stdout.contains("echo: <@U0DEMOBOT> hello there"),
        "{stdout}"
    );
    let event = events.recv().await.expect("event delivered");
    assert_eq!(event["type"], "event_callback");
    assert_eq!(event["team_id"], "T0DEMO");
    assert_eq!(event["event"]["type"], "app_mention");
    assert_eq!(event["event"]["channel"], "C1");

    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_spritz-sandbox"))
        .args([
            "send-message",
            "--gateway-url",
            &gateway_url,
            "--signing-secret",
            "wrong",
        ])
        .args(["--slack-url", &slack.origin(), "--text", "hi", "--no-wait"])
        .env_remove("SPRITZ_SLACK_SIGNING_SECRET")
        .output()
        .await
        .expect("run spritz-sandbox");
    assert!(!refused.status.success());
}

#[tokio::test]
async fn the_runtime_command_expires_and_restores_the_team_runtime_everywhere() {
    use spritz_sandbox::kubernetes::FakeKubernetes;
    let backend = FakeBackend::start(INTERNAL_TOKEN).await.expect("backend");
    let spritz = FakeSpritz::start(SERVICE_TOKEN).await.expect("spritz");
    let kube = FakeKubernetes::start().await.expect("kube");
    let team = TeamInstall::demo("T1");
    backend.install_team(team.clone());
    kube.create_spritz(&team.namespace, &team.instance_id, Some("Ready"));
    let conversation = open_conversation(&spritz, &team, "1.1").await;
    let run = |action: &'static str| {
        let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_spritz-sandbox"))
            .args(["runtime", action, "--team", "T1"])
            .args([
                "--backend-url",
                &backend.base_url(),
                "--spritz-url",
                &spritz.base_url(),
            ])
            .args(["--kube-url", &kube.base_url()])
            .output();
        async move {
            let output = command.await.expect("run spritz-sandbox");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    let bootstrap_status = || async {
        bootstrap_as_the_worker(&spritz, &conversation)
            .send()
            .await
            .expect("bootstrap")
            .status()
    };

    run("expire").await;
    assert_eq!(exchange(&backend, INTERNAL_TOKEN, "T1").await.status(), 503);
    assert_eq!(bootstrap_status().await, 404);
    let phase = |kube: &FakeKubernetes| {
        kube.spritz(&team.namespace, &team.instance_id)
            .expect("spritz")["status"]["phase"]
            .clone()
    };
    assert_eq!(phase(&kube), "Expired");

    run("ready").await;
    assert_eq!(exchange(&backend, INTERNAL_TOKEN, "T1").await.status(), 200);
    assert_eq!(bootstrap_status().await, 200);
    assert_eq!(phase(&kube), "Ready");
}

#[tokio::test]
async fn a_slow_prompt_ends_cancelled_when_the_client_cancels() {
    let (spritz, conversation) = spritz_with_conversation().await;
    spritz.set_agent(AgentBehaviour::Slow(Duration::from_secs(60)));
    let mut acp = Acp::open(&spritz, &conversation).await;
    acp.send_prompt(&conversation, "p1", "hi").await;
    while let Some(message) = acp.next_message().await {
        if message["params"]["update"]["sessionUpdate"] == "agent_message_chunk" {
            break;
        }
    }

    acp.send_raw(json!({"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": conversation.session_id}}))
        .await;

    let response = tokio::time::timeout(WAIT, acp.next_message())
        .await
        .expect("answered before the delay")
        .expect("socket open");
    assert_eq!(response["id"], "p1");
    assert_eq!(response["result"]["stopReason"], "cancelled");
}

#[tokio::test]
async fn a_client_that_dies_mid_prompt_leaves_the_conversation_idle() {
    let (spritz, conversation) = spritz_with_conversation().await;
    spritz.hold_prompts();
    let mut acp = Acp::open(&spritz, &conversation).await;
    acp.send_prompt(&conversation, "p1", "hi").await;
    let first = acp.next_message().await.expect("delivered");
    assert_eq!(
        first["params"]["update"]["sessionUpdate"],
        "agent_message_chunk"
    );
    assert_eq!(spritz.prompts_in_progress(), 1);

    drop(acp);

    spritz.wait_until_idle(WAIT).await.expect("prompt given up");
    assert_eq!(spritz.prompts().len(), 1);
}

#[tokio::test]
async fn injected_spritz_failures_come_before_everything_else_and_run_out() {
    let spritz = FakeSpritz::start(SERVICE_TOKEN).await.expect("spritz");
    let team = TeamInstall::demo("T1");
    let conversation = open_conversation(&spritz, &team, "1.1").await;
    spritz.fail_next(SpritzCall::Bootstrap, 1, 503);
    spritz.fail_next(SpritzCall::Connect, 1, 500);
    let bootstrap = || bootstrap_as_the_worker(&spritz, &conversation).send();
    assert_eq!(bootstrap().await.expect("bootstrap").status(), 503);
    assert_eq!(bootstrap().await.expect("bootstrap").status(), 200);
    let refused = tokio_tungstenite::connect_async(connect_request(&spritz, &conversation)).await;
    assert!(refused.is_err(), "the first connect is refused");
    let mut acp = Acp::open(&spritz, &conversation).await;
    assert!(acp.prompt(&conversation, "hi").await.is_some());
}

#[tokio::test]
async fn the_prompts_wait_route_answers_408_with_what_there_is_then_the_prompts() {
    let (spritz, conversation) = spritz_with_conversation().await;
    let wait = |query: &'static [(&'static str, &'static str)]| {
        http()
            .get(format!("{}/_sandbox/prompts/wait", spritz.origin()))
            .query(query)
            .send()
    };
    let timed_out = wait(&[("timeout_ms", "50")]).await.expect("wait");
    assert_eq!(timed_out.status(), 408);
    assert_eq!(timed_out.json::<Value>().await.expect("json"), json!([]));

    let waiter = tokio::spawn(wait(&[("count", "1"), ("timeout_ms", "5000")]));
    let mut acp = Acp::open(&spritz, &conversation).await;
    acp.prompt(&conversation, "hi").await.expect("answered");
    let answered = waiter.await.expect("task").expect("wait");
    assert_eq!(answered.status(), 200);
    let prompts: Value = answered.json().await.expect("json");
    assert_eq!(prompts[0]["conversation_id"], json!(conversation.id));
}
