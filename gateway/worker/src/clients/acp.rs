//! Client of the agent's ACP websocket (SPEC §2): one connection per prompt, JSON-RPC
//! 2.0 `initialize` → `session/load` → `session/prompt`, the reply gathered from
//! `agent_message_chunk` notifications, and every permission request denied.
//!
//! Every message sent and read is a type of the `agent-client-protocol-schema` crate
//! (envelopes included), so this client and the sandbox's fake agent, which uses the
//! same types, cannot drift together away from the real protocol. Updates are read by
//! their `sessionUpdate` kind first: a kind this client does not read (a newer agent's)
//! is skipped, not an error.
//!
//! The connect and the two set-up calls share one handshake timeout
//! (`SPRITZ_SLACK_HTTP_TIMEOUT`); the prompt runs until the agent ends the turn or the
//! caller's deadline, whichever comes first. At the deadline the client sends
//! `session/cancel` and waits a short, bounded time for the agent to end the turn.
//! Only `stopReason: end_turn` is a reply; every other stop reason is
//! [`AcpError::Stopped`], which carries the text the user is told instead.
//!
//! Whether the prompt reached the agent matters more than anything else here: once any
//! message about it came back it must never be sent again, so the caller hears about
//! that the moment it happens, through a oneshot, not only when the call ends.

use std::sync::Arc;
use std::time::Duration;

use agent_client_protocol_schema::ProtocolVersion;
use agent_client_protocol_schema::v1::{
    AGENT_METHOD_NAMES, CLIENT_METHOD_NAMES, CancelNotification, ContentBlock,
    EmbeddedResourceResource, Error as RpcError, Implementation, InitializeRequest,
    InitializeResponse, JsonRpcMessage, LoadSessionRequest, LoadSessionResponse, Notification,
    PromptRequest, PromptResponse, Request, RequestId, RequestPermissionRequest, Response,
    SessionId, SessionNotification, SessionUpdate, TextContent,
};
use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spritz_proto::properties::TRACEPARENT;
use spritz_service::Trust;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

pub use agent_client_protocol_schema::v1::StopReason;

use super::http::{join, says_spritz_not_found};
use crate::config::WorkerConfig;

/// How long a prompt cancelled at the deadline may take to end with
/// `stopReason: cancelled` before the client gives up on it.
pub const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// JSON-RPC error code the permission denial is answered with (SPEC §2).
const PERMISSION_DENIED: i32 = -32000;
const CLIENT_NAME: &str = "spritz-slack-gateway";
const CLIENT_TITLE: &str = "Spritz Slack gateway";
/// The `sessionUpdate` kind that carries reply text (checked against the schema in the
/// tests).
const AGENT_MESSAGE_CHUNK: &str = "agent_message_chunk";
/// Per-connection read buffer, held (and zeroed, so resident) for the whole prompt. The
/// default (128 KiB) costs more than the whole exchange of a short prompt, and with
/// thousands of prompts waiting every KiB here is MiBs of worker memory; ACP messages
/// are small, and a larger frame grows the buffer as far as it needs.
const READ_BUFFER: usize = 2 * 1024;

/// What the user is told when the agent ended the turn with `refusal`.
pub const REFUSAL_REPLY: &str = "The agent declined to answer that request.";
/// … with `max_tokens`.
pub const MAX_TOKENS_REPLY: &str =
    "The agent's answer was too long and was cut off. Please ask for a shorter answer.";
/// … with `max_turn_requests`.
pub const MAX_TURN_REQUESTS_REPLY: &str = "The agent needed more steps than it may take for one request and stopped. Please try a smaller request.";
/// … with `cancelled` (the agent's own cancellation, not the delivery deadline).
pub const CANCELLED_REPLY: &str = "The request was cancelled before the agent finished.";
/// … with a stop reason newer than this client.
pub const OTHER_STOP_REPLY: &str = "The agent stopped before it finished its answer.";

/// Prompts agents over ACP. Cheap to clone; the TLS configuration (and with it the
/// TLS session cache, so reconnects resume instead of doing a full handshake) is
/// built once and shared.
#[derive(Clone)]
pub struct AcpClient {
    inner: Arc<Inner>,
}

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
    /// The agent ended the turn (`end_turn`) without any reply text.
    #[error("the agent finished without a reply")]
    EmptyReply,
    /// The agent ended the turn with another stop reason than `end_turn` (refusal,
    /// `max_tokens`, `max_turn_requests`, its own cancellation). Delivered; the user is
    /// told [`AcpError::stopped_reply`] instead of a partial answer.
    #[error("the agent stopped the turn: {}", stop_reason_name(*reason))]
    Stopped { reason: StopReason },
    /// The deadline came before the turn ended. If the prompt had been sent,
    /// `session/cancel` was sent too. `delivered` tells whether the agent had already
    /// answered something about the prompt.
    #[error("the deadline ended the prompt (delivered: {delivered})")]
    DeadlineExceeded { delivered: bool },
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
            AcpError::EmptyReply | AcpError::Stopped { .. } => true,
            AcpError::DeadlineExceeded { delivered } | AcpError::Failed { delivered, .. } => {
                *delivered
            }
        }
    }

    /// For [`AcpError::Stopped`], the reply to post in the conversation: the turn is
    /// over and the agent will not say more, so the user is told why there is no
    /// answer. `None` for every other error.
    pub fn stopped_reply(&self) -> Option<&'static str> {
        let AcpError::Stopped { reason } = self else {
            return None;
        };
        Some(match reason {
            StopReason::Refusal => REFUSAL_REPLY,
            StopReason::MaxTokens => MAX_TOKENS_REPLY,
            StopReason::MaxTurnRequests => MAX_TURN_REQUESTS_REPLY,
            StopReason::Cancelled => CANCELLED_REPLY,
            // `end_turn` is never `Stopped`; later schema versions may add reasons.
            _ => OTHER_STOP_REPLY,
        })
    }

    fn before_delivery(reason: impl Into<String>) -> Self {
        AcpError::Failed {
            delivered: false,
            reason: reason.into(),
        }
    }
}

/// The wire name of a stop reason, for error messages and logs.
fn stop_reason_name(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::MaxTurnRequests => "max_turn_requests",
        StopReason::Refusal => "refusal",
        StopReason::Cancelled => "cancelled",
        _ => "unknown",
    }
}

impl AcpClient {
    /// `spritz_base_url` is `SPRITZ_SLACK_SPRITZ_BASE_URL`; `http` becomes `ws` and
    /// `https` becomes `wss`, the base path is kept. `handshake_timeout` bounds the
    /// connect, `initialize` and `session/load` together (`SPRITZ_SLACK_HTTP_TIMEOUT`).
    pub fn new(
        spritz_base_url: Url,
        service_token: SecretString,
        handshake_timeout: Duration,
        trust: &Trust,
    ) -> Self {
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", service_token.expose_secret())).ok();
        if let Some(value) = authorization.as_mut() {
            value.set_sensitive(true);
        }
        let connector = matches!(spritz_base_url.scheme(), "https" | "wss")
            .then(|| Connector::Rustls(trust.client_config()));
        Self {
            inner: Arc::new(Inner {
                base_url: spritz_base_url,
                authorization,
                connector,
                handshake_timeout,
            }),
        }
    }

    /// The worker's client: `SPRITZ_SLACK_SPRITZ_BASE_URL`, the service token, and
    /// `SPRITZ_SLACK_HTTP_TIMEOUT` as the handshake timeout (SPEC §2: every call has it).
    pub fn from_config(config: &WorkerConfig) -> Self {
        Self::new(
            config.services.spritz_base_url.clone(),
            config.services.spritz_service_token.clone(),
            config.timing.http_timeout,
            &config.trust,
        )
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

    /// Sends `text` to the agent session and returns its reply: the text of the
    /// `agent_message_chunk`s of a turn that ended with `end_turn`.
    ///
    /// `delivered` fires once, as soon as any message about the prompt came back
    /// (a notification, a permission request or the response). `deadline` bounds the
    /// whole call: the handshake ends at it (or at the handshake timeout, if sooner);
    /// a prompt still running at it is cancelled with `session/cancel` and given
    /// [`CANCEL_GRACE`] to end. A turn that still ends with `end_turn` in that grace is
    /// a reply; otherwise the call ends with [`AcpError::DeadlineExceeded`].
    ///
    /// # Errors
    /// [`AcpError`]; `RuntimeVanished`, `Failed { delivered: false, .. }` and
    /// `DeadlineExceeded { delivered: false }` mean the agent never answered anything
    /// about the prompt. `Stopped` carries the text to reply instead.
    #[expect(
        clippy::too_many_arguments,
        reason = "the session's coordinates, the text, the deadline and the delivered signal are independent inputs; kept flat so the pipeline's call stays as it was"
    )]
    pub async fn prompt(
        &self,
        conversation_id: &str,
        namespace: &str,
        session_id: &str,
        cwd: &str,
        text: &str,
        deadline: Instant,
        delivered: oneshot::Sender<()>,
    ) -> Result<String, AcpError> {
        let url = self.connect_url(conversation_id, namespace)?;
        let session_id = SessionId::new(session_id);
        // Boxed: the handshake's state (the websocket upgrade) is large and over before
        // the prompt waits, so it must not take room in the future that waits.
        let handshake = Box::pin(async {
            let mut rpc = self.connect(&url, session_id.clone()).await?;
            let initialized: InitializeResponse = rpc
                .call(AGENT_METHOD_NAMES.initialize, initialize_request())
                .await?;
            if initialized.protocol_version != ProtocolVersion::V1 {
                return Err(AcpError::before_delivery(format!(
                    "the agent answered ACP protocol version {}",
                    initialized.protocol_version
                )));
            }
            let load = LoadSessionRequest::new(session_id.clone(), cwd);
            let _: LoadSessionResponse = rpc.call(AGENT_METHOD_NAMES.session_load, load).await?;
            Ok::<_, AcpError>(rpc)
        });
        let handshake_end = (Instant::now() + self.inner.handshake_timeout).min(deadline);
        let mut rpc = match tokio::time::timeout_at(handshake_end, handshake).await {
            Ok(connected) => connected?,
            Err(_) if handshake_end == deadline => {
                return Err(AcpError::DeadlineExceeded { delivered: false });
            }
            Err(_) => return Err(AcpError::before_delivery("ACP handshake timed out")),
        };
        let request =
            PromptRequest::new(session_id, vec![ContentBlock::Text(TextContent::new(text))]);
        let outcome = rpc.prompt(request, deadline, delivered).await;
        Box::pin(rpc.close()).await;
        match outcome? {
            (StopReason::EndTurn, reply) if reply.trim().is_empty() => Err(AcpError::EmptyReply),
            (StopReason::EndTurn, reply) => Ok(reply),
            (reason, _) => Err(AcpError::Stopped { reason }),
        }
    }

    async fn connect(&self, url: &Url, session_id: SessionId) -> Result<Rpc, AcpError> {
        let authorization = self.inner.authorization.clone().ok_or_else(|| {
            AcpError::before_delivery("the service token is not a valid header value")
        })?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|_| AcpError::before_delivery("the ACP URL is not a valid request"))?;
        let headers = request.headers_mut();
        headers.insert(header::AUTHORIZATION, authorization);
        if let Some(call) = crate::message_trace::outbound()
            && let Ok(value) = HeaderValue::from_str(&call.to_string())
        {
            headers.insert(TRACEPARENT, value);
        }
        let connected = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(WebSocketConfig::default().read_buffer_size(READ_BUFFER)),
            true,
            self.inner.connector.clone(),
        )
        .await;
        match connected {
            Ok((socket, _)) => Ok(Rpc {
                socket,
                next_id: 0,
                session_id,
            }),
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

/// `initialize` with protocol version 1, no client capabilities (no file system, no
/// terminal: the Slack gateway runs nothing for the agent) and who we are.
fn initialize_request() -> InitializeRequest {
    InitializeRequest::new(ProtocolVersion::V1).client_info(
        Implementation::new(CLIENT_NAME, env!("CARGO_PKG_VERSION")).title(CLIENT_TITLE.to_owned()),
    )
}

/// One JSON-RPC conversation over the websocket, about one agent session.
struct Rpc {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: i64,
    session_id: SessionId,
}

/// A JSON-RPC message from the agent, in the schema's envelopes; the payload is read
/// once the method (or, for a response, the request) says which type it is.
#[derive(Deserialize)]
#[serde(untagged)]
enum AgentMessage {
    Request(Request<Value>),
    Response(Response<Value>),
    Notification(Notification<Value>),
}

/// What one incoming message meant to the call waiting on it.
enum Step {
    /// Our request's response: its result, or the JSON-RPC error.
    Response(Result<Value, RpcError>),
    /// An `agent_message_chunk` notification's text.
    Chunk(String),
    /// Anything else (other updates, requests we answered, foreign responses).
    Other,
}

impl Rpc {
    /// A request whose answer is all that matters (the set-up calls). Messages about
    /// other things, such as history replayed by `session/load`, are skipped.
    async fn call<P: Serialize, R: DeserializeOwned>(
        &mut self,
        method: &'static str,
        params: P,
    ) -> Result<R, AcpError> {
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
                .handle(message, &id)
                .await
                .map_err(|reason| AcpError::before_delivery(format!("{method}: {reason}")))?
            {
                Step::Response(Ok(result)) => {
                    return serde_json::from_value(result).map_err(|_| {
                        AcpError::before_delivery(format!(
                            "{method} answered a result that does not match the ACP schema"
                        ))
                    });
                }
                Step::Response(Err(error)) => {
                    return Err(AcpError::before_delivery(format!(
                        "{method} answered JSON-RPC error {}",
                        i32::from(error.code)
                    )));
                }
                Step::Chunk(_) | Step::Other => {}
            }
        }
    }

    /// `session/prompt`: gathers the reply until the response arrives, and returns the
    /// turn's stop reason with it; at `deadline` sends `session/cancel` and waits at
    /// most [`CANCEL_GRACE`] more.
    async fn prompt(
        &mut self,
        request: PromptRequest,
        deadline: Instant,
        delivered: oneshot::Sender<()>,
    ) -> Result<(StopReason, String), AcpError> {
        let id = self
            .send_request(AGENT_METHOD_NAMES.session_prompt, request)
            .await
            .map_err(AcpError::before_delivery)?;
        let mut delivered = Some(delivered);
        let mut reply = String::new();
        // Set once `session/cancel` went out: the end of the grace.
        let mut cancelled: Option<Instant> = None;
        loop {
            let failed =
                |reason: String, delivered: &Option<oneshot::Sender<()>>| AcpError::Failed {
                    delivered: delivered.is_none(),
                    reason: format!("session/prompt: {reason}"),
                };
            let timed_out = |delivered: &Option<oneshot::Sender<()>>| AcpError::DeadlineExceeded {
                delivered: delivered.is_none(),
            };
            let message = match tokio::time::timeout_at(
                cancelled.unwrap_or(deadline),
                self.receive(),
            )
            .await
            {
                Ok(Ok(message)) => message,
                Ok(Err(_)) if cancelled.is_some() => return Err(timed_out(&delivered)),
                Ok(Err(reason)) => return Err(failed(reason, &delivered)),
                Err(_) if cancelled.is_some() => return Err(timed_out(&delivered)),
                Err(_) => {
                    // The deadline: ask the agent to stop, then give it a moment to end
                    // the turn (`cancelled`) so it is not left working for nobody.
                    let cancel = Notification {
                        method: AGENT_METHOD_NAMES.session_cancel.into(),
                        params: Some(CancelNotification::new(self.session_id.clone())),
                    };
                    if self.send(cancel).await.is_err() {
                        return Err(timed_out(&delivered));
                    }
                    cancelled = Some(Instant::now() + CANCEL_GRACE);
                    continue;
                }
            };
            // Something came back about the prompt, even if it cannot be read.
            if let Some(sender) = delivered.take() {
                let _ = sender.send(());
            }
            let step = match self.handle(message, &id).await {
                Ok(step) => step,
                Err(_) if cancelled.is_some() => return Err(timed_out(&delivered)),
                Err(reason) => return Err(failed(reason, &delivered)),
            };
            match step {
                Step::Response(Ok(result)) => {
                    let response: PromptResponse = match serde_json::from_value(result) {
                        Ok(response) => response,
                        Err(_) if cancelled.is_some() => return Err(timed_out(&delivered)),
                        Err(_) => {
                            return Err(failed(
                                "a result that does not match the ACP schema".to_owned(),
                                &delivered,
                            ));
                        }
                    };
                    return match response.stop_reason {
                        // The agent finished just as it was cancelled: the reply is whole.
                        StopReason::EndTurn => Ok((StopReason::EndTurn, reply)),
                        _ if cancelled.is_some() => Err(timed_out(&delivered)),
                        reason => Ok((reason, reply)),
                    };
                }
                Step::Response(Err(_)) if cancelled.is_some() => {
                    return Err(timed_out(&delivered));
                }
                Step::Response(Err(error)) => {
                    return Err(failed(
                        format!("answered JSON-RPC error {}", i32::from(error.code)),
                        &delivered,
                    ));
                }
                Step::Chunk(text) => reply.push_str(&text),
                Step::Other => {}
            }
        }
    }

    async fn send_request<P: Serialize>(
        &mut self,
        method: &'static str,
        params: P,
    ) -> Result<RequestId, String> {
        self.next_id += 1;
        let id = RequestId::Number(self.next_id);
        let request = Request {
            id: id.clone(),
            method: method.into(),
            params: Some(params),
        };
        self.send(request).await?;
        Ok(id)
    }

    async fn send<M: Serialize>(&mut self, message: M) -> Result<(), String> {
        let text = serde_json::to_string(&JsonRpcMessage::wrap(message))
            .map_err(|_| "could not encode a JSON-RPC message".to_owned())?;
        self.socket
            .send(Message::text(text))
            .await
            .map_err(|error| format!("could not send: {error}"))
    }

    /// The next data message; pings are answered by the websocket layer. Cancel-safe:
    /// dropping it at a deadline loses no message.
    async fn receive(&mut self) -> Result<AgentMessage, String> {
        loop {
            let frame = match self.socket.next().await {
                None => return Err("the connection closed".to_owned()),
                Some(Err(error)) => return Err(format!("the connection failed: {error}")),
                Some(Ok(frame)) => frame,
            };
            let parsed = match &frame {
                Message::Text(text) => {
                    serde_json::from_str::<JsonRpcMessage<AgentMessage>>(text.as_str())
                }
                Message::Binary(bytes) => {
                    serde_json::from_slice::<JsonRpcMessage<AgentMessage>>(bytes)
                }
                Message::Close(_) => return Err("the agent closed the connection".to_owned()),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            return parsed
                .map(JsonRpcMessage::into_inner)
                .map_err(|_| "the agent sent a message that is not JSON-RPC 2.0".to_owned());
        }
    }

    /// Classifies a message and answers the agent's requests.
    async fn handle(
        &mut self,
        message: AgentMessage,
        waiting_for: &RequestId,
    ) -> Result<Step, String> {
        match message {
            AgentMessage::Request(request) => {
                // No interactive approvals; no other client capability was offered.
                let error = if &*request.method == CLIENT_METHOD_NAMES.session_request_permission {
                    let params = request.params.unwrap_or(Value::Null);
                    match serde_json::from_value::<RequestPermissionRequest>(params) {
                        Ok(_) => RpcError::new(
                            PERMISSION_DENIED,
                            "Permission denied: interactive approvals are unavailable in the Slack gateway.",
                        ),
                        Err(_) => RpcError::invalid_params(),
                    }
                } else {
                    RpcError::method_not_found()
                };
                self.send(Response::<(), _>::new(request.id, Err(error)))
                    .await?;
                Ok(Step::Other)
            }
            AgentMessage::Notification(notification) => {
                if &*notification.method != CLIENT_METHOD_NAMES.session_update {
                    return Ok(Step::Other);
                }
                let params = notification.params.unwrap_or(Value::Null);
                Ok(chunk_text(params, &self.session_id)?.map_or(Step::Other, Step::Chunk))
            }
            AgentMessage::Response(Response::Result { id, result }) if id == *waiting_for => {
                Ok(Step::Response(Ok(result)))
            }
            AgentMessage::Response(Response::Error { id, error }) if id == *waiting_for => {
                Ok(Step::Response(Err(error)))
            }
            AgentMessage::Response(_) => Ok(Step::Other),
        }
    }

    /// Says goodbye without waiting for the agent's close frame.
    async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(250), self.socket.close(None)).await;
    }
}

/// The reply text of a `session/update` notification about `session_id`; `None` for
/// other updates. The kind is read first, so an update kind this client does not
/// know (or does not read) is skipped without being parsed; a chunk that does not
/// match the schema is an error, because part of the reply would be lost.
fn chunk_text(params: Value, session_id: &SessionId) -> Result<Option<String>, String> {
    let kind = params
        .get("update")
        .and_then(|update| update.get("sessionUpdate"))
        .and_then(Value::as_str);
    if kind != Some(AGENT_MESSAGE_CHUNK) {
        return Ok(None);
    }
    let notification: SessionNotification = serde_json::from_value(params)
        .map_err(|_| "an agent_message_chunk that does not match the ACP schema".to_owned())?;
    if notification.session_id != *session_id {
        return Ok(None);
    }
    match notification.update {
        SessionUpdate::AgentMessageChunk(chunk) => Ok(Some(content_text(chunk.content))),
        _ => Ok(None),
    }
}

/// The readable text of a content block: its text, an embedded resource's text (else
/// its uri), or a link's uri. Whitespace is kept as sent: chunks split words anywhere.
fn content_text(content: ContentBlock) -> String {
    match content {
        ContentBlock::Text(text) => text.text,
        ContentBlock::Resource(resource) => match resource.resource {
            EmbeddedResourceResource::TextResourceContents(contents) => contents.text,
            EmbeddedResourceResource::BlobResourceContents(contents) => contents.uri,
            _ => String::new(),
        },
        ContentBlock::ResourceLink(link) => link.uri,
        ContentBlock::Image(image) => image.uri.unwrap_or_default(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod text_tests {
    use agent_client_protocol_schema::v1::{
        BlobResourceContents, ContentChunk, EmbeddedResource, ResourceLink, TextResourceContents,
    };
    use serde_json::json;

    use super::*;

    const SESSION: &str = "sess-1";

    /// A `session/update` notification's params, as the schema writes them.
    fn update_params(update: SessionUpdate) -> Value {
        serde_json::to_value(SessionNotification::new(SESSION, update)).expect("json")
    }

    fn text_of(content: ContentBlock) -> Option<String> {
        let update = SessionUpdate::AgentMessageChunk(ContentChunk::new(content));
        chunk_text(update_params(update), &SessionId::new(SESSION)).expect("a chunk")
    }

    #[test]
    fn the_chunk_kind_read_first_is_the_schemas_name_for_agent_message_chunks() {
        let update = SessionUpdate::AgentMessageChunk(ContentChunk::new(ContentBlock::Text(
            TextContent::new("x"),
        )));
        assert_eq!(
            update_params(update)["update"]["sessionUpdate"],
            AGENT_MESSAGE_CHUNK
        );
    }

    #[test]
    fn chunk_text_comes_from_text_resource_text_blob_uri_or_link_uri() {
        assert_eq!(
            text_of(ContentBlock::Text(TextContent::new("Hel"))).as_deref(),
            Some("Hel")
        );
        let text = TextResourceContents::new("body", "file:///a");
        assert_eq!(
            text_of(ContentBlock::Resource(EmbeddedResource::new(
                EmbeddedResourceResource::TextResourceContents(text)
            )))
            .as_deref(),
            Some("body")
        );
        let blob = BlobResourceContents::new("AAAA", "file:///blob");
        assert_eq!(
            text_of(ContentBlock::Resource(EmbeddedResource::new(
                EmbeddedResourceResource::BlobResourceContents(blob)
            )))
            .as_deref(),
            Some("file:///blob")
        );
        assert_eq!(
            text_of(ContentBlock::ResourceLink(ResourceLink::new(
                "b",
                "file:///b"
            )))
            .as_deref(),
            Some("file:///b")
        );
    }

    #[test]
    fn only_agent_message_chunks_of_this_session_count() {
        let session = SessionId::new(SESSION);
        let thought = SessionUpdate::AgentThoughtChunk(ContentChunk::new(ContentBlock::Text(
            TextContent::new("hmm"),
        )));
        assert_eq!(chunk_text(update_params(thought), &session), Ok(None));
        let chunk = SessionUpdate::AgentMessageChunk(ContentChunk::new(ContentBlock::Text(
            TextContent::new("x"),
        )));
        let other = SessionId::new("another-session");
        assert_eq!(chunk_text(update_params(chunk), &other), Ok(None));
    }

    #[test]
    fn an_unknown_update_kind_is_skipped_and_a_malformed_chunk_is_an_error() {
        let session = SessionId::new(SESSION);
        let unknown =
            json!({"sessionId": SESSION, "update": {"sessionUpdate": "from_the_future", "x": 1}});
        assert_eq!(chunk_text(unknown, &session), Ok(None));
        let malformed = json!({"sessionId": SESSION, "update": {"sessionUpdate": AGENT_MESSAGE_CHUNK, "content": "bare"}});
        assert!(chunk_text(malformed, &session).is_err());
    }

    #[test]
    fn every_stop_reason_but_end_turn_has_a_reply_and_counts_as_delivered() {
        for (reason, text) in [
            (StopReason::Refusal, REFUSAL_REPLY),
            (StopReason::MaxTokens, MAX_TOKENS_REPLY),
            (StopReason::MaxTurnRequests, MAX_TURN_REQUESTS_REPLY),
            (StopReason::Cancelled, CANCELLED_REPLY),
        ] {
            let error = AcpError::Stopped { reason };
            assert_eq!(error.stopped_reply(), Some(text), "{reason:?}");
            assert!(error.delivered());
        }
        assert_eq!(AcpError::EmptyReply.stopped_reply(), None);
        assert!(AcpError::DeadlineExceeded { delivered: true }.delivered());
        assert!(!AcpError::DeadlineExceeded { delivered: false }.delivered());
    }

    #[test]
    fn client_info_names_the_gateway_with_a_title_and_the_crate_version() {
        let request = serde_json::to_value(initialize_request()).expect("json");
        assert_eq!(request["protocolVersion"], 1);
        assert_eq!(
            request["clientInfo"],
            json!({"name": "spritz-slack-gateway", "title": "Spritz Slack gateway", "version": env!("CARGO_PKG_VERSION")})
        );
    }

    #[test]
    fn the_connect_url_has_a_ws_scheme_the_base_path_and_the_namespace() {
        let client = AcpClient::new(
            Url::parse("https://host/spritz/").expect("url"),
            SecretString::from("t"),
            Duration::from_secs(1),
            &Trust::default(),
        );
        let url = client.connect_url("conv 1", "team-a").expect("url");
        assert_eq!(
            url.as_str(),
            "wss://host/spritz/api/acp/conversations/conv%201/connect?namespace=team-a"
        );
        let client = AcpClient::new(
            Url::parse("http://127.0.0.1:9/").expect("url"),
            SecretString::from("t"),
            Duration::from_secs(1),
            &Trust::default(),
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

    use agent_client_protocol_schema::ProtocolVersion;
    use spritz_service::config::Env;

    use super::*;
    use crate::clients::backend::{ChannelSession, ProviderAuth};
    use crate::clients::http::build_client;
    use crate::clients::silent_endpoint::silent_endpoint;
    use crate::clients::spritz::{ConversationUpsert, SpritzClient};

    const SERVICE: &str = "service-token";
    /// A deadline no test reaches.
    const FAR: Duration = Duration::from_secs(60);
    /// How long a test waits for something that should happen at once.
    const WAIT: Duration = Duration::from_secs(10);

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
            spritz.add_runtime(&spritz_sandbox::backend::TeamInstall {
                team_id: "1".into(),
                namespace: "team-a".into(),
                instance_id: "concierge".into(),
                access_token: "session-token".into(),
                ..spritz_sandbox::backend::TeamInstall::demo("1")
            });
            let base = Url::parse(&spritz.base_url()).expect("base url");
            let rest = SpritzClient::new(
                build_client(&Trust::default(), Duration::from_secs(5)).expect("client"),
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
            let acp = AcpClient::new(
                base,
                SecretString::from(SERVICE),
                Duration::from_secs(5),
                &Trust::default(),
            );
            Ready {
                spritz,
                acp,
                conversation_id: conversation.id,
                session_id: bootstrap.session_id,
                cwd: bootstrap.cwd,
            }
        }

        /// Prompts with a deadline far away and reports whether `delivered` fired.
        async fn prompt(&self, text: &str) -> (Result<String, AcpError>, bool) {
            self.prompt_until(text, Instant::now() + FAR).await
        }

        /// Prompts and reports whether `delivered` fired.
        async fn prompt_until(
            &self,
            text: &str,
            deadline: Instant,
        ) -> (Result<String, AcpError>, bool) {
            let (delivered, fired) = oneshot::channel();
            let result = self
                .acp
                .prompt(
                    &self.conversation_id,
                    "team-a",
                    &self.session_id,
                    &self.cwd,
                    text,
                    deadline,
                    delivered,
                )
                .await;
            (result, fired.await.is_ok())
        }

        /// The agent ends the turn with `reason` after one chunk: the prompt is
        /// `Stopped`, delivered, with `reply` for the user and not the partial text.
        async fn assert_stops_with(&self, reason: StopReason, reply: &str) {
            self.spritz.set_agent(AgentBehaviour::Stop(reason));
            let (result, delivered) = self.prompt("tell me").await;
            let error = result.expect_err("not a reply");
            assert!(
                matches!(error, AcpError::Stopped { reason: r } if r == reason),
                "{error:?}"
            );
            assert!(error.delivered() && delivered);
            assert_eq!(error.stopped_reply(), Some(reply));
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
            Instant::now() + FAR,
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
                Instant::now() + FAR,
                delivered,
            )
            .await;
        assert_undelivered(&result);
        assert!(fired.await.is_err());
    }

    #[tokio::test]
    async fn a_connect_that_never_upgrades_times_out_as_undelivered() {
        let (listener, base) = silent_endpoint("spritz").await;
        let acp = AcpClient::new(
            base,
            SecretString::from(SERVICE),
            Duration::from_millis(200),
            &Trust::default(),
        );
        let (delivered, _fired) = oneshot::channel();
        let result = acp
            .prompt(
                "c",
                "n",
                "s",
                "/home/dev",
                "x",
                Instant::now() + FAR,
                delivered,
            )
            .await;
        assert_undelivered(&result);
        drop(listener);
    }

    #[tokio::test]
    async fn the_handshake_timeout_is_the_configured_http_timeout() {
        let (listener, base) = silent_endpoint("spritz").await;
        let env = Env::from_map(vec![
            ("SPRITZ_SLACK_BACKEND_BASE_URL", "http://backend"),
            ("SPRITZ_SLACK_BACKEND_INTERNAL_TOKEN", "b"),
            ("SPRITZ_SLACK_SPRITZ_BASE_URL", base.as_str()),
            ("SPRITZ_SLACK_SPRITZ_SERVICE_TOKEN", SERVICE),
            ("SPRITZ_SLACK_PRINCIPAL_ID", "p"),
            ("SPRITZ_SLACK_HTTP_TIMEOUT", "200ms"),
        ]);
        let config = WorkerConfig::from_env(&env).expect("config");
        let acp = AcpClient::from_config(&config);
        let (delivered, _fired) = oneshot::channel();
        // Far below the 15s default: only the configured 200ms ends it in time.
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            acp.prompt(
                "c",
                "n",
                "s",
                "/home/dev",
                "x",
                Instant::now() + FAR,
                delivered,
            ),
        )
        .await
        .expect("the handshake ended at the configured timeout");
        assert!(
            matches!(&result, Err(AcpError::Failed { delivered: false, reason }) if reason.contains("handshake timed out")),
            "{result:?}"
        );
        drop(listener);
    }

    #[tokio::test]
    async fn a_deadline_before_the_handshake_ends_is_undelivered() {
        let (listener, base) = silent_endpoint("spritz").await;
        let acp = AcpClient::new(base, SecretString::from(SERVICE), FAR, &Trust::default());
        let (delivered, _fired) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_millis(200);
        let result = tokio::time::timeout(
            WAIT,
            acp.prompt("c", "n", "s", "/home/dev", "x", deadline, delivered),
        )
        .await
        .expect("ended at the deadline");
        assert!(
            matches!(result, Err(AcpError::DeadlineExceeded { delivered: false })),
            "{result:?}"
        );
        drop(listener);
    }

    #[tokio::test]
    async fn the_initialize_params_carry_client_info_with_name_title_and_version() {
        let ready = Ready::start().await;
        ready.prompt("hi").await.0.expect("reply");
        let initializations = ready.spritz.initializations();
        assert_eq!(initializations.len(), 1);
        let init = &initializations[0];
        assert_eq!(init.protocol_version, ProtocolVersion::V1);
        let info = init.client_info.as_ref().expect("clientInfo");
        assert_eq!(info.name, "spritz-slack-gateway");
        assert_eq!(info.title.as_deref(), Some("Spritz Slack gateway"));
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    }

    #[tokio::test]
    async fn a_refusal_is_not_a_reply_but_stopped_with_the_refusal_text() {
        let ready = Ready::start().await;
        ready
            .assert_stops_with(StopReason::Refusal, REFUSAL_REPLY)
            .await;
    }

    #[tokio::test]
    async fn a_turn_cut_at_max_tokens_is_not_a_reply_but_stopped_with_its_text() {
        let ready = Ready::start().await;
        ready
            .assert_stops_with(StopReason::MaxTokens, MAX_TOKENS_REPLY)
            .await;
    }

    #[tokio::test]
    async fn a_turn_ended_at_max_turn_requests_is_not_a_reply_but_stopped_with_its_text() {
        let ready = Ready::start().await;
        ready
            .assert_stops_with(StopReason::MaxTurnRequests, MAX_TURN_REQUESTS_REPLY)
            .await;
    }

    #[tokio::test]
    async fn a_turn_the_agent_cancelled_itself_is_not_a_reply_but_stopped_with_its_text() {
        let ready = Ready::start().await;
        ready
            .assert_stops_with(StopReason::Cancelled, CANCELLED_REPLY)
            .await;
        assert!(
            ready.spritz.cancels().is_empty(),
            "the client cancelled nothing"
        );
    }

    #[tokio::test]
    async fn an_unknown_update_kind_mid_reply_is_skipped_and_the_reply_still_arrives() {
        let ready = Ready::start().await;
        ready.spritz.set_agent(AgentBehaviour::UnknownUpdate);
        let (reply, delivered) = ready.prompt("still there?").await;
        assert_eq!(reply.expect("reply"), "echo: still there?");
        assert!(delivered);
    }

    #[tokio::test]
    async fn at_the_deadline_the_prompt_is_cancelled_with_its_session_id() {
        let ready = Ready::start().await;
        ready
            .spritz
            .set_agent(AgentBehaviour::Slow(Duration::from_secs(60)));
        let deadline = Instant::now() + Duration::from_millis(300);
        let (result, delivered) = tokio::time::timeout(WAIT, ready.prompt_until("wait", deadline))
            .await
            .expect("ended soon after the deadline");
        assert!(
            matches!(result, Err(AcpError::DeadlineExceeded { delivered: true })),
            "{result:?}"
        );
        assert!(delivered);
        let cancels = ready
            .spritz
            .wait_for_cancels(1, WAIT)
            .await
            .expect("session/cancel");
        assert_eq!(cancels.len(), 1);
        assert_eq!(cancels[0].session_id.to_string(), ready.session_id);
    }

    #[tokio::test]
    async fn an_agent_that_ignores_the_cancel_is_given_up_on_after_the_grace() {
        let ready = Ready::start().await;
        ready.spritz.set_agent(AgentBehaviour::IgnoreCancel);
        let deadline = Instant::now() + Duration::from_millis(200);
        let (result, delivered) = tokio::time::timeout(WAIT, ready.prompt_until("wait", deadline))
            .await
            .expect("did not wait for the stuck agent");
        assert!(
            Instant::now() >= deadline + CANCEL_GRACE,
            "waited the grace"
        );
        assert!(
            matches!(result, Err(AcpError::DeadlineExceeded { delivered: true })),
            "{result:?}"
        );
        assert!(delivered);
        assert_eq!(ready.spritz.cancels().len(), 1);
    }
}
