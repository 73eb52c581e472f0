//! Client of the agent's ACP websocket (SPEC §2): one connection per prompt, JSON-RPC
//! 2.0 `initialize` → `session/load` → `session/prompt`, the reply gathered from
//! `agent_message_chunk` notifications, and every permission request denied.
//!
//! The connect and the two set-up calls share one handshake timeout; the prompt itself
//! runs as long as the agent needs, bounded only by the caller (the delivery deadline).
//! Whether the prompt reached the agent matters more than anything else here: once any
//! message about it came back it must never be sent again, so the caller hears about
//! that the moment it happens, through a oneshot, not only when the call ends.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use super::http::{join, says_spritz_not_found};

/// Connect plus `initialize` plus `session/load`, unless set otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// JSON-RPC error code the permission denial is answered with.
const PERMISSION_DENIED: i64 = -32000;
const METHOD_NOT_FOUND: i64 = -32601;
const PROTOCOL_VERSION: u64 = 1;
const CLIENT_NAME: &str = "spritz-slack-gateway";
/// Per-connection read buffer. The default (128 KiB, zeroed on every connect) costs
/// more than the whole exchange of a short prompt; larger messages take more reads.
const READ_BUFFER: usize = 8 * 1024;

/// Prompts agents over ACP. Cheap to clone; the TLS configuration (and with it the
/// TLS session cache, so reconnects resume instead of doing a full handshake) is
/// built once and shared.
#[derive(Clone)]
pub struct AcpClient {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    base_url: Url,
    authorization: Option<HeaderValue>,
    connector: Option<Connector>,
    handshake_timeout: Duration,
}

/// Why a prompt gave no reply.
#[derive(Debug, thiserror::Error)]
pub enum AcpError {
    /// The connect answered 404 "spritz not found": the runtime is gone and the prompt
    /// was not delivered.
    #[error("the spritz runtime no longer exists")]
    RuntimeVanished,
    /// The agent finished the prompt without any reply text.
    #[error("the agent finished without a reply")]
    EmptyReply,
    /// Anything else. `delivered` tells whether the agent had already answered
    /// something about the prompt (then it must not be sent again).
    #[error("ACP prompt failed (delivered: {delivered}): {reason}")]
    Failed { delivered: bool, reason: String },
}

impl AcpError {
    /// Whether the prompt reached the agent.
    pub fn delivered(&self) -> bool {
        match self {
            AcpError::RuntimeVanished => false,
            AcpError::EmptyReply => true,
            AcpError::Failed { delivered, .. } => *delivered,
        }
    }

    fn before_delivery(reason: impl Into<String>) -> Self {
        AcpError::Failed {
            delivered: false,
            reason: reason.into(),
        }
    }
}

impl AcpClient {
    /// `spritz_base_url` is `SPRITZ_SLACK_SPRITZ_BASE_URL`; `http` becomes `ws` and
    /// `https` becomes `wss`, the base path is kept.
    pub fn new(spritz_base_url: Url, service_token: SecretString) -> Self {
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", service_token.expose_secret())).ok();
        if let Some(value) = authorization.as_mut() {
            value.set_sensitive(true);
        }
        let connector = (matches!(spritz_base_url.scheme(), "https" | "wss"))
            .then(tls_connector)
            .flatten();
        Self {
            inner: Arc::new(Inner {
                base_url: spritz_base_url,
                authorization,
                connector,
                handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            }),
        }
    }

    /// Bounds the connect, `initialize` and `session/load` together (use
    /// `SPRITZ_SLACK_HTTP_TIMEOUT`).
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.inner).handshake_timeout = timeout;
        self
    }

    /// `{base}/api/acp/conversations/<id>/connect?namespace=<ns>` with a ws(s) scheme.
    ///
    /// # Errors
    /// A base URL whose scheme is not http(s) or ws(s).
    pub fn connect_url(&self, conversation_id: &str, namespace: &str) -> Result<Url, AcpError> {
        let mut url = join(
            &self.inner.base_url,
            &["api", "acp", "conversations", conversation_id, "connect"],
        );
        let scheme = match url.scheme() {
            "http" | "ws" => "ws",
            "https" | "wss" => "wss",
            _ => {
                return Err(AcpError::before_delivery(
                    "the Spritz base URL is not http(s)",
                ));
            }
        };
        url.set_scheme(scheme).map_err(|()| {
            AcpError::before_delivery("the Spritz base URL cannot take a ws scheme")
        })?;
        url.query_pairs_mut().append_pair("namespace", namespace);
        Ok(url)
    }

    /// Sends `text` to the agent session and returns its reply.
    ///
    /// `delivered` fires once, as soon as any message about the prompt came back
    /// (a notification, a permission request or the response). There is no overall
    /// timeout: drop the future to give up.
    ///
    /// # Errors
    /// [`AcpError`]; `RuntimeVanished` and `Failed { delivered: false, .. }` mean the
    /// agent never saw the prompt.
    pub async fn prompt(
        &self,
        conversation_id: &str,
        namespace: &str,
        session_id: &str,
        cwd: &str,
        text: &str,
        delivered: oneshot::Sender<()>,
    ) -> Result<String, AcpError> {
        let url = self.connect_url(conversation_id, namespace)?;
        let handshake = async {
            let mut rpc = self.connect(&url).await?;
            rpc.call(
                "initialize",
                json!({
                    "protocolVersion": PROTOCOL_VERSION,
                    "clientCapabilities": {},
                    "clientInfo": {"name": CLIENT_NAME, "version": env!("CARGO_PKG_VERSION")},
                }),
            )
            .await?;
            rpc.call(
                "session/load",
                json!({"sessionId": session_id, "cwd": cwd, "mcpServers": []}),
            )
            .await?;
            Ok::<_, AcpError>(rpc)
        };
        let mut rpc = tokio::time::timeout(self.inner.handshake_timeout, handshake)
            .await
            .map_err(|_| AcpError::before_delivery("ACP handshake timed out"))??;
        let params = json!({"sessionId": session_id, "prompt": [{"type": "text", "text": text}]});
        let outcome = rpc.prompt(params, delivered).await;
        rpc.close().await;
        let reply = outcome?;
        if reply.trim().is_empty() {
            return Err(AcpError::EmptyReply);
        }
        Ok(reply)
    }

    async fn connect(&self, url: &Url) -> Result<Rpc, AcpError> {
        let authorization = self.inner.authorization.clone().ok_or_else(|| {
            AcpError::before_delivery("the service token is not a valid header value")
        })?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|_| AcpError::before_delivery("the ACP URL is not a valid request"))?;
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, authorization);
        let connected = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(WebSocketConfig::default().read_buffer_size(READ_BUFFER)),
            true,
            self.inner.connector.clone(),
        )
        .await;
        match connected {
            Ok((socket, _)) => Ok(Rpc { socket, next_id: 0 }),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response.body().as_deref().unwrap_or_default();
                if says_spritz_not_found(status, body) {
                    Err(AcpError::RuntimeVanished)
                } else {
                    Err(AcpError::before_delivery(format!(
                        "ACP connect answered {status}"
                    )))
                }
            }
            Err(error) => Err(AcpError::before_delivery(format!(
                "ACP connect failed: {error}"
            ))),
        }
    }
}

/// A TLS configuration with the webpki roots, built once per client.
fn tls_connector() -> Option<Connector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(Connector::Rustls(Arc::new(config)))
}

/// One JSON-RPC conversation over the websocket.
struct Rpc {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

/// A JSON-RPC message as it arrives: a response, a notification or a request.
#[derive(Deserialize)]
struct Incoming {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct RpcError {
    #[serde(default)]
    code: i64,
}

/// What one incoming message meant to the call waiting on it.
enum Step {
    /// Our request's response: `Err(code)` for a JSON-RPC error.
    Response(Result<(), i64>),
    /// An `agent_message_chunk` notification's text.
    Chunk(String),
    /// Anything else (other notifications, requests we answered, foreign responses).
    Other,
}

impl Rpc {
    /// A request whose answer is all that matters (the set-up calls). Messages about
    /// other things, such as history replayed by `session/load`, are skipped.
    async fn call(&mut self, method: &str, params: Value) -> Result<(), AcpError> {
        let id = self
            .send_request(method, params)
            .await
            .map_err(AcpError::before_delivery)?;
        loop {
            let message = self
                .receive()
                .await
                .map_err(|reason| AcpError::before_delivery(format!("{method}: {reason}")))?;
            match self
                .handle(&message, id)
                .await
                .map_err(|reason| AcpError::before_delivery(format!("{method}: {reason}")))?
            {
                Step::Response(Ok(())) => return Ok(()),
                Step::Response(Err(code)) => {
                    return Err(AcpError::before_delivery(format!(
                        "{method} answered JSON-RPC error {code}"
                    )));
                }
                Step::Chunk(_) | Step::Other => {}
            }
        }
    }

    /// `session/prompt`: gathers the reply until the response arrives.
    async fn prompt(
        &mut self,
        params: Value,
        delivered: oneshot::Sender<()>,
    ) -> Result<String, AcpError> {
        let id = self
            .send_request("session/prompt", params)
            .await
            .map_err(AcpError::before_delivery)?;
        let mut delivered = Some(delivered);
        let mut reply = String::new();
        loop {
            let failed =
                |reason: String, delivered: &Option<oneshot::Sender<()>>| AcpError::Failed {
                    delivered: delivered.is_none(),
                    reason: format!("session/prompt: {reason}"),
                };
            let message = match self.receive().await {
                Ok(message) => message,
                Err(reason) => return Err(failed(reason, &delivered)),
            };
            // Something came back about the prompt, even if it cannot be read.
            if let Some(sender) = delivered.take() {
                let _ = sender.send(());
            }
            match self
                .handle(&message, id)
                .await
                .map_err(|reason| failed(reason, &delivered))?
            {
                Step::Response(Ok(())) => return Ok(reply),
                Step::Response(Err(code)) => {
                    return Err(failed(
                        format!("answered JSON-RPC error {code}"),
                        &delivered,
                    ));
                }
                Step::Chunk(text) => reply.push_str(&text),
                Step::Other => {}
            }
        }
    }

    async fn send_request(&mut self, method: &str, params: Value) -> Result<u64, String> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send(&request).await?;
        Ok(id)
    }

    async fn send(&mut self, message: &Value) -> Result<(), String> {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|error| format!("could not send: {error}"))
    }

    /// The next data message; pings are answered by the websocket layer.
    async fn receive(&mut self) -> Result<Incoming, String> {
        loop {
            let frame = match self.socket.next().await {
                None => return Err("the connection closed".to_owned()),
                Some(Err(error)) => return Err(format!("the connection failed: {error}")),
                Some(Ok(frame)) => frame,
            };
            let parsed = match &frame {
                Message::Text(text) => serde_json::from_str::<Incoming>(text.as_str()),
                Message::Binary(bytes) => serde_json::from_slice::<Incoming>(bytes),
                Message::Close(_) => return Err("the agent closed the connection".to_owned()),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            return parsed.map_err(|_| "the agent sent a message that is not JSON-RPC".to_owned());
        }
    }

    /// Classifies a message and answers the agent's requests.
    async fn handle(&mut self, message: &Incoming, waiting_for: u64) -> Result<Step, String> {
        match (&message.method, &message.id) {
            (Some(method), Some(id)) => {
                // A request from the agent. No interactive approvals; no other client
                // capability was offered.
                let (code, text) = if method == "session/request_permission" {
                    (
                        PERMISSION_DENIED,
                        "Permission denied: interactive approvals are unavailable in the Slack gateway.",
                    )
                } else {
                    (METHOD_NOT_FOUND, "Method not found")
                };
                let answer =
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": text}});
                self.send(&answer).await?;
                Ok(Step::Other)
            }
            (Some(method), None) => {
                Ok(chunk_text(method, message.params.as_ref()).map_or(Step::Other, Step::Chunk))
            }
            (None, Some(id)) if is_id(id, waiting_for) => {
                Ok(Step::Response(match &message.error {
                    Some(error) => Err(error.code),
                    None => Ok(()),
                }))
            }
            (None, _) => Ok(Step::Other),
        }
    }

    /// Says goodbye without waiting for the agent's close frame.
    async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(250), self.socket.close(None)).await;
    }
}

fn is_id(id: &Value, expected: u64) -> bool {
    match id {
        Value::Number(n) => n.as_u64() == Some(expected),
        Value::String(s) => s.parse::<u64>().ok() == Some(expected),
        _ => false,
    }
}

/// The text of a `session/update` `agent_message_chunk` notification.
fn chunk_text(method: &str, params: Option<&Value>) -> Option<String> {
    if method != "session/update" {
        return None;
    }
    let update = params?.get("update")?;
    if update
        .get("sessionUpdate")
        .and_then(Value::as_str)
        .map(str::trim)
        != Some("agent_message_chunk")
    {
        return None;
    }
    let mut text = String::new();
    extract_text(update.get("content").unwrap_or(&Value::Null), &mut text);
    Some(text)
}

/// Appends the readable text of an ACP content value: a string, a text block, nested
/// `content`, an embedded `resource` (its text, else its uri) or a `uri`; lists are
/// joined by newlines. Whitespace is kept as sent: chunks split words anywhere.
fn extract_text(value: &Value, out: &mut String) {
    match value {
        Value::Null => {}
        Value::String(text) => out.push_str(text),
        Value::Bool(_) | Value::Number(_) => out.push_str(&value.to_string()),
        Value::Array(items) => {
            let mut first = true;
            for item in items {
                let mut part = String::new();
                extract_text(item, &mut part);
                if part.is_empty() {
                    continue;
                }
                if !first {
                    out.push('\n');
                }
                out.push_str(&part);
                first = false;
            }
        }
        Value::Object(fields) => {
            if let Some(Value::String(text)) = fields.get("text")
                && !text.is_empty()
            {
                out.push_str(text);
            } else if let Some(content) = fields.get("content") {
                extract_text(content, out);
            } else if let Some(resource) = fields.get("resource") {
                extract_text(resource, out);
            } else if let Some(Value::String(uri)) = fields.get("uri") {
                out.push_str(uri);
            }
        }
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;

    fn text_of(content: Value) -> String {
        chunk_text(
            "session/update",
            Some(&json!({"update": {"sessionUpdate": "agent_message_chunk", "content": content}})),
        )
        .unwrap_or_default()
    }

    #[test]
    fn chunk_text_comes_from_text_nested_content_resource_text_or_uri() {
        assert_eq!(text_of(json!({"type": "text", "text": "Hel"})), "Hel");
        assert_eq!(
            text_of(json!({"content": {"type": "text", "text": "lo "}})),
            "lo "
        );
        assert_eq!(
            text_of(json!({"type": "resource", "resource": {"uri": "file:///a", "text": "body"}})),
            "body"
        );
        assert_eq!(
            text_of(json!({"type": "resource_link", "uri": "file:///b"})),
            "file:///b"
        );
        assert_eq!(text_of(json!([{"text": "a"}, {"text": ""}, "b"])), "a\nb");
    }

    #[test]
    fn only_agent_message_chunks_count() {
        let thought =
            json!({"update": {"sessionUpdate": "agent_thought_chunk", "content": {"text": "hmm"}}});
        assert_eq!(chunk_text("session/update", Some(&thought)), None);
        let chunk =
            json!({"update": {"sessionUpdate": "agent_message_chunk", "content": {"text": "x"}}});
        assert_eq!(chunk_text("session/other", Some(&chunk)), None);
    }

    #[test]
    fn the_connect_url_has_a_ws_scheme_the_base_path_and_the_namespace() {
        let client = AcpClient::new(
            Url::parse("https://host/spritz/").expect("url"),
            SecretString::from("t"),
        );
        let url = client.connect_url("conv 1", "team-a").expect("url");
        assert_eq!(
            url.as_str(),
            "wss://host/spritz/api/acp/conversations/conv%201/connect?namespace=team-a"
        );
        let client = AcpClient::new(
            Url::parse("http://127.0.0.1:9/").expect("url"),
            SecretString::from("t"),
        );
        assert_eq!(
            client.connect_url("c", "n").expect("url").as_str(),
            "ws://127.0.0.1:9/api/acp/conversations/c/connect?namespace=n"
        );
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use spritz_sandbox::spritz_api::{AgentBehaviour, FakeSpritz};

    use super::*;
    use crate::clients::backend::{ChannelSession, ProviderAuth};
    use crate::clients::http::build_client;
    use crate::clients::silent_endpoint::silent_endpoint;
    use crate::clients::spritz::{ConversationUpsert, SpritzClient};

    const SERVICE: &str = "service-token";

    /// A fake runtime with one conversation, bootstrapped, ready to prompt.
    struct Ready {
        spritz: FakeSpritz,
        acp: AcpClient,
        conversation_id: String,
        session_id: String,
        cwd: String,
    }

    impl Ready {
        async fn start() -> Ready {
            let spritz = FakeSpritz::start(SERVICE).await.expect("fake spritz");
            let base = Url::parse(&spritz.base_url()).expect("base url");
            let rest = SpritzClient::new(
                build_client(Duration::from_secs(5)).expect("client"),
                base.clone(),
                SecretString::from(SERVICE),
            );
            let session = ChannelSession {
                access_token: SecretString::from("session-token"),
                expires_at: Utc::now(),
                owner_auth_id: "auth-1".to_owned(),
                namespace: "team-a".to_owned(),
                instance_id: "concierge".to_owned(),
                provider_auth: ProviderAuth::default(),
            };
            let upsert = ConversationUpsert {
                namespace: "team-a".to_owned(),
                conversation_id: String::new(),
                principal_id: "p".to_owned(),
                instance_id: "concierge".to_owned(),
                owner_id: "auth-1".to_owned(),
                provider: "slack".to_owned(),
                external_scope_type: "workspace".to_owned(),
                external_tenant_id: "T1".to_owned(),
                external_channel_id: "C1".to_owned(),
                external_conversation_id: "1.1".to_owned(),
                title: "Slack C1".to_owned(),
                cwd: "/home/dev".to_owned(),
            };
            let conversation = rest
                .upsert_conversation(&session, &upsert)
                .await
                .expect("upsert");
            let bootstrap = rest
                .bootstrap(&conversation.id, "team-a")
                .await
                .expect("bootstrap");
            let acp = AcpClient::new(base, SecretString::from(SERVICE))
                .with_handshake_timeout(Duration::from_secs(5));
            Ready {
                spritz,
                acp,
                conversation_id: conversation.id,
                session_id: bootstrap.session_id,
                cwd: bootstrap.cwd,
            }
        }

        /// Prompts and reports whether `delivered` fired.
        async fn prompt(&self, text: &str) -> (Result<String, AcpError>, bool) {
            let (delivered, fired) = oneshot::channel();
            let result = self
                .acp
                .prompt(
                    &self.conversation_id,
                    "team-a",
                    &self.session_id,
                    &self.cwd,
                    text,
                    delivered,
                )
                .await;
            (result, fired.await.is_ok())
        }
    }

    /// The prompt failed before the agent could have seen it.
    fn assert_undelivered<T: std::fmt::Debug>(result: &Result<T, AcpError>) {
        assert!(
            matches!(
                result,
                Err(AcpError::Failed {
                    delivered: false,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn the_reply_is_gathered_from_message_chunks_of_every_shape() {
        let ready = Ready::start().await;
        let (reply, delivered) = ready.prompt("hello there").await;
        assert_eq!(reply.expect("reply"), "echo: hello there");
        assert!(delivered);
        let prompts = ready.spritz.prompts();
        assert_eq!(prompts.len(), 1);
        assert_eq!(prompts[0].text, "hello there");
        assert_eq!(prompts[0].session_id, ready.session_id);
    }

    #[tokio::test]
    async fn history_replayed_by_session_load_is_not_part_of_the_reply() {
        let ready = Ready::start().await;
        ready.spritz.replay_history_on_load(true);
        assert_eq!(ready.prompt("first").await.0.expect("reply"), "echo: first");
        assert_eq!(
            ready.prompt("second").await.0.expect("reply"),
            "echo: second"
        );
    }

    #[tokio::test]
    async fn a_permission_request_is_denied_and_the_prompt_still_answers() {
        let ready = Ready::start().await;
        ready.spritz.set_agent(AgentBehaviour::AskPermission);
        let (reply, delivered) = ready.prompt("list files").await;
        assert_eq!(reply.expect("reply"), "echo: list files");
        assert!(delivered);
        let answers = ready.spritz.permission_answers();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0]["error"]["code"], -32000);
        assert!(answers[0].get("result").is_none());
    }

    #[tokio::test]
    async fn delivered_fires_before_a_slow_prompt_ends() {
        let ready = Ready::start().await;
        ready
            .spritz
            .set_agent(AgentBehaviour::Slow(Duration::from_secs(30)));
        let (delivered, fired) = oneshot::channel();
        let prompt = ready.acp.prompt(
            &ready.conversation_id,
            "team-a",
            &ready.session_id,
            &ready.cwd,
            "wait",
            delivered,
        );
        tokio::select! {
            result = prompt => panic!("the slow prompt ended early: {result:?}"),
            fired = tokio::time::timeout(Duration::from_secs(10), fired) => {
                fired.expect("in time").expect("delivered fired");
            }
        }
    }

    #[tokio::test]
    async fn an_empty_reply_is_an_error() {
        let ready = Ready::start().await;
        ready.spritz.set_agent(AgentBehaviour::EmptyReply);
        let (reply, delivered) = ready.prompt("say nothing").await;
        assert!(matches!(reply, Err(AcpError::EmptyReply)));
        assert!(delivered);
    }

    #[tokio::test]
    async fn a_disconnect_before_any_answer_is_undelivered_and_after_a_chunk_delivered() {
        let ready = Ready::start().await;
        ready.spritz.set_agent(AgentBehaviour::Disconnect);
        let (reply, delivered) = ready.prompt("x").await;
        assert_undelivered(&reply);
        assert!(!delivered);

        ready.spritz.set_agent(AgentBehaviour::DisconnectAfterChunk);
        let (reply, delivered) = ready.prompt("y").await;
        assert!(
            matches!(
                reply,
                Err(AcpError::Failed {
                    delivered: true,
                    ..
                })
            ),
            "{reply:?}"
        );
        assert!(delivered);
    }

    #[tokio::test]
    async fn a_vanished_runtime_refuses_the_connect() {
        let ready = Ready::start().await;
        ready.spritz.vanish_instance("team-a", "concierge");
        let (reply, delivered) = ready.prompt("anyone?").await;
        assert!(matches!(reply, Err(AcpError::RuntimeVanished)), "{reply:?}");
        assert!(!delivered);
        assert!(ready.spritz.prompts().is_empty());
    }

    #[tokio::test]
    async fn a_stale_session_fails_the_load_without_delivering() {
        let ready = Ready::start().await;
        let (delivered, fired) = oneshot::channel();
        let result = ready
            .acp
            .prompt(
                &ready.conversation_id,
                "team-a",
                "stale-session",
                &ready.cwd,
                "x",
                delivered,
            )
            .await;
        assert_undelivered(&result);
        assert!(fired.await.is_err());
    }

    /// A throughput figure, not a check: prompts per second through the fake runtime
    /// (both ends in this process). `cargo test -p spritz-worker --release --lib
    /// acp_prompt_throughput -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "throughput figure; run on demand"]
    async fn acp_prompt_throughput() {
        use futures::StreamExt as _;
        let ready = Ready::start().await;
        let total = 5_000;
        let started = std::time::Instant::now();
        futures::stream::iter(0..total)
            .for_each_concurrent(64, |i| {
                let ready = &ready;
                async move {
                    let (reply, _) = ready.prompt(&format!("m{i}")).await;
                    assert_eq!(reply.expect("reply"), format!("echo: m{i}"));
                }
            })
            .await;
        let elapsed = started.elapsed();
        println!(
            "{total} ACP prompts in {elapsed:?}: {:.0} prompts/s",
            f64::from(total) / elapsed.as_secs_f64()
        );
    }

    #[tokio::test]
    async fn a_connect_that_never_upgrades_times_out_as_undelivered() {
        let (listener, base) = silent_endpoint("spritz").await;
        let acp = AcpClient::new(base, SecretString::from(SERVICE))
            .with_handshake_timeout(Duration::from_millis(200));
        let (delivered, _fired) = oneshot::channel();
        let result = acp.prompt("c", "n", "s", "/home/dev", "x", delivered).await;
        assert_undelivered(&result);
        drop(listener);
    }
}
