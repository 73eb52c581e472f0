//! One ACP websocket session with the fake agent: JSON-RPC 2.0 over text frames,
//! every message a type of the `agent-client-protocol-schema` crate (the one exception
//! is the update of an unknown kind, which no schema can express). `initialize` →
//! capabilities, `session/load` → `{}` (after an optional history replay),
//! `session/prompt` → `session/update` notifications then a `stopReason`, shaped by
//! the configured [`AgentBehaviour`].
//!
//! As strict as a real agent: a request whose params do not match the schema is
//! refused (-32602), `session/load` and `session/prompt` before `initialize` are
//! refused (-32600), loading an unknown session or prompting a session that is not
//! loaded on this connection is refused (-32002), and unknown methods get -32601.
//! `initialize` params and `session/cancel` notifications are recorded.
//!
//! The socket is served inline, one message at a time: while a prompt runs, the only
//! inbound messages that matter are the answer to a permission request, `session/cancel`
//! (the prompt ends `cancelled`) and the close of the socket (a client that crashed
//! mid-prompt).

use std::sync::Arc;
use std::time::Duration;

use agent_client_protocol_schema::MethodDispatchError;
use agent_client_protocol_schema::ProtocolVersion;
use agent_client_protocol_schema::v1::{
    AgentCapabilities, CLIENT_METHOD_NAMES, ClientNotification, ClientRequest, ContentBlock,
    ContentChunk, EmbeddedResource, EmbeddedResourceResource, Error as RpcError, Implementation,
    InitializeRequest, InitializeResponse, JsonRpcMessage, LoadSessionRequest, LoadSessionResponse,
    Notification, PermissionOption, PermissionOptionKind, PromptCapabilities, PromptRequest,
    PromptResponse, Request, RequestId, RequestPermissionRequest, Response, SessionId,
    SessionNotification, SessionUpdate, StopReason, TextContent, TextResourceContents,
    ToolCallStatus, ToolCallUpdate, ToolCallUpdateFields, ToolKind,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::state::{Conversation, SpritzState};
use super::{AgentBehaviour, PromptRecord};

type Shared = Arc<watch::Sender<SpritzState>>;

/// How every echoed reply starts; also the first chunk sent.
const ECHO_PREFIX: &str = "echo: ";
const CONTEXT_OPEN: &str = "<spritz-channel-context>";
const CONTEXT_CLOSE: &str = "</spritz-channel-context>";
/// The kind of the update [`AgentBehaviour::UnknownUpdate`] sends: one no ACP schema
/// version defines, as a newer agent might send.
pub(super) const UNKNOWN_UPDATE_KIND: &str = "sandbox_future_update";

/// Whether the session goes on after a message was handled.
enum Flow {
    Continue,
    Close,
}

/// A JSON-RPC message from the client, in the schema's envelopes.
#[derive(Deserialize)]
#[serde(untagged)]
enum ClientMessage {
    Request(Request<Value>),
    Response(Response<Value>),
    Notification(Notification<Value>),
}

/// Serves one connection until the client closes it or a behaviour drops it.
pub(super) async fn serve(mut socket: WebSocket, state: Shared, conversation: Conversation) {
    let mut session = Session {
        state,
        conversation,
        initialized: false,
        loaded_session: None,
        next_request: 0,
    };
    while let Some(Ok(message)) = socket.recv().await {
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let flow = match parse(text.as_str()) {
            Ok((_, message)) => session.handle(&mut socket, message).await,
            Err(error) => {
                send(
                    &mut socket,
                    Response::<(), _>::new(RequestId::Null, Err(error)),
                )
                .await
            }
        };
        if matches!(flow, Flow::Close) {
            break;
        }
    }
}

/// A client message as JSON and as a JSON-RPC message; the error to answer when it is
/// not JSON (-32700) or not JSON-RPC 2.0 (-32600).
fn parse(text: &str) -> Result<(Value, ClientMessage), RpcError> {
    let value: Value = serde_json::from_str(text).map_err(|_| RpcError::parse_error())?;
    let message = serde_json::from_value::<JsonRpcMessage<ClientMessage>>(value.clone())
        .map_err(|_| RpcError::invalid_request())?;
    Ok((value, message.into_inner()))
}

struct Session {
    state: Shared,
    conversation: Conversation,
    initialized: bool,
    loaded_session: Option<SessionId>,
    next_request: u64,
}

impl Session {
    async fn handle(&mut self, socket: &mut WebSocket, message: ClientMessage) -> Flow {
        let request = match message {
            ClientMessage::Request(request) => request,
            ClientMessage::Notification(notification) => {
                // `session/cancel` outside a prompt has nothing to stop; still recorded.
                record_cancel(&self.state, &notification);
                return Flow::Continue;
            }
            // Stray responses need no answer.
            ClientMessage::Response(_) => return Flow::Continue,
        };
        let id = request.id;
        let params = request.params.unwrap_or(Value::Null);
        let request = match ClientRequest::from_method_and_params(&request.method, &params) {
            Ok(request) => request,
            Err(MethodDispatchError::InvalidPayload { .. }) => {
                return send_error(socket, id, RpcError::invalid_params()).await;
            }
            Err(_) => return send_error(socket, id, RpcError::method_not_found()).await,
        };
        match request {
            ClientRequest::InitializeRequest(request) => self.initialize(socket, id, request).await,
            ClientRequest::LoadSessionRequest(_) | ClientRequest::PromptRequest(_)
                if !self.initialized =>
            {
                let error = RpcError::invalid_request().data(json!("initialize first"));
                send_error(socket, id, error).await
            }
            ClientRequest::LoadSessionRequest(request) => self.load(socket, id, request).await,
            ClientRequest::PromptRequest(request) => self.prompt(socket, id, request).await,
            // Methods this agent does not implement.
            _ => send_error(socket, id, RpcError::method_not_found()).await,
        }
    }

    async fn initialize(
        &mut self,
        socket: &mut WebSocket,
        id: RequestId,
        request: InitializeRequest,
    ) -> Flow {
        self.state.send_modify(|s| s.initializations.push(request));
        self.initialized = true;
        let response = InitializeResponse::new(ProtocolVersion::V1)
            .agent_capabilities(
                AgentCapabilities::new()
                    .load_session(true)
                    .prompt_capabilities(PromptCapabilities::new().embedded_context(true)),
            )
            .agent_info(Implementation::new("spritz-sandbox-agent", "0.1.0"));
        send_result(socket, id, response).await
    }

    async fn load(
        &mut self,
        socket: &mut WebSocket,
        id: RequestId,
        request: LoadSessionRequest,
    ) -> Flow {
        let current = self
            .state
            .borrow()
            .conversations
            .get(&self.conversation.name)
            .map(|c| (SessionId::new(c.session_id.as_str()), c.turns.clone()));
        let Some((session_id, turns)) = current.filter(|(s, _)| *s == request.session_id) else {
            return send_error(socket, id, RpcError::session_not_found(request.session_id)).await;
        };
        for (prompt, reply) in turns {
            for update in [
                SessionUpdate::UserMessageChunk(ContentChunk::new(text_block(&prompt))),
                SessionUpdate::AgentMessageChunk(ContentChunk::new(text_block(&reply))),
            ] {
                if let Flow::Close = send(socket, notification(&session_id, update)).await {
                    return Flow::Close;
                }
            }
        }
        self.loaded_session = Some(session_id);
        send_result(socket, id, LoadSessionResponse::new()).await
    }

    async fn prompt(
        &mut self,
        socket: &mut WebSocket,
        id: RequestId,
        request: PromptRequest,
    ) -> Flow {
        let Some(session_id) = self
            .loaded_session
            .clone()
            .filter(|s| *s == request.session_id)
        else {
            return send_error(socket, id, RpcError::session_not_found(request.session_id)).await;
        };
        let text = prompt_text(&request);
        let (behaviour, held) = {
            let state = self.state.borrow();
            (state.agent.clone(), state.held)
        };
        let record = PromptRecord {
            conversation_id: self.conversation.name.clone(),
            namespace: self.conversation.namespace.clone(),
            session_id: session_id.to_string(),
            text: text.clone(),
        };
        self.state.send_modify(|s| s.begin_prompt(record));
        let _running = InProgress {
            state: self.state.clone(),
            conversation_id: self.conversation.name.clone(),
        };
        let reply = format!("{ECHO_PREFIX}{}", user_text(&text));
        let state = self.state.clone();
        let turn = Turn {
            id: &id,
            session_id: &session_id,
            reply: &reply,
            state: &state,
        };
        let flow = if held {
            self.held_echo(socket, &turn).await
        } else {
            match behaviour {
                AgentBehaviour::Echo => turn.echo(socket, None).await,
                AgentBehaviour::Slow(delay) => turn.echo(socket, Some(delay)).await,
                AgentBehaviour::AskPermission => self.ask_permission(socket, &turn).await,
                AgentBehaviour::EmptyReply => turn.finish(socket, StopReason::EndTurn).await,
                AgentBehaviour::Disconnect => close(socket).await,
                AgentBehaviour::DisconnectAfterChunk => {
                    if let Flow::Continue = turn.first_chunk(socket).await {
                        close(socket).await;
                    }
                    Flow::Close
                }
                AgentBehaviour::Stop(reason) => match turn.first_chunk(socket).await {
                    Flow::Continue => turn.finish(socket, reason).await,
                    Flow::Close => Flow::Close,
                },
                AgentBehaviour::UnknownUpdate => turn.echo_with_unknown_update(socket).await,
                AgentBehaviour::IgnoreCancel => turn.ignore_cancel(socket).await,
            }
        };
        let replaying = self.state.borrow().replay_history;
        if replaying && matches!(flow, Flow::Continue) {
            self.state
                .send_modify(|s| s.remember_turn(&self.conversation.name, &text, &reply));
        }
        flow
    }

    /// One chunk now, the rest once `release_prompts` was called (or the client left).
    async fn held_echo(&self, socket: &mut WebSocket, turn: &Turn<'_>) -> Flow {
        if let Flow::Close = turn.first_chunk(socket).await {
            return Flow::Close;
        }
        let mut rx = self.state.subscribe();
        let interruption = tokio::select! {
            _ = async { rx.wait_for(|s| !s.held).await.is_ok() } => None,
            interruption = interrupted(socket, &self.state) => Some(interruption),
        };
        if let Some(interruption) = interruption {
            return turn.interrupted(socket, interruption).await;
        }
        turn.rest(socket).await
    }

    async fn ask_permission(&mut self, socket: &mut WebSocket, turn: &Turn<'_>) -> Flow {
        self.next_request += 1;
        let request_id = RequestId::Str(format!("perm-{}", self.next_request));
        let tool_call = ToolCallUpdate::new(
            format!("call-{}", self.next_request),
            ToolCallUpdateFields::new()
                .title("Run `ls /home/dev`".to_owned())
                .kind(ToolKind::Execute)
                .status(ToolCallStatus::Pending),
        );
        let options = vec![
            PermissionOption::new("allow-once", "Allow once", PermissionOptionKind::AllowOnce),
            PermissionOption::new("reject-once", "Reject", PermissionOptionKind::RejectOnce),
        ];
        let request = Request {
            id: request_id.clone(),
            method: CLIENT_METHOD_NAMES.session_request_permission.into(),
            params: Some(RequestPermissionRequest::new(
                turn.session_id.clone(),
                tool_call,
                options,
            )),
        };
        if let Flow::Close = send(socket, request).await {
            return Flow::Close;
        }
        loop {
            let Some(Ok(message)) = socket.recv().await else {
                return Flow::Close;
            };
            let Message::Text(text) = message else {
                if matches!(message, Message::Close(_)) {
                    return Flow::Close;
                }
                continue;
            };
            let Ok((answer, message)) = parse(text.as_str()) else {
                continue;
            };
            let answered = match &message {
                ClientMessage::Response(
                    Response::Result { id, .. } | Response::Error { id, .. },
                ) => *id == request_id,
                ClientMessage::Notification(notification) => {
                    record_cancel(&self.state, notification);
                    false
                }
                ClientMessage::Request(_) => false,
            };
            if answered {
                self.state
                    .send_modify(|s| s.permission_answers.push(answer));
                break;
            }
        }
        turn.echo(socket, None).await
    }
}

/// The prompt being answered.
struct Turn<'a> {
    id: &'a RequestId,
    session_id: &'a SessionId,
    reply: &'a str,
    state: &'a Shared,
}

impl Turn<'_> {
    /// A thought the client must ignore, then the reply in varied chunk shapes; with
    /// a delay, the first chunk goes out before it.
    async fn echo(&self, socket: &mut WebSocket, delay: Option<Duration>) -> Flow {
        if let Flow::Close = self.thought(socket).await {
            return Flow::Close;
        }
        if let Flow::Close = self.first_chunk(socket).await {
            return Flow::Close;
        }
        if let Some(delay) = delay {
            let interruption = tokio::select! {
                () = tokio::time::sleep(delay) => None,
                interruption = interrupted(socket, self.state) => Some(interruption),
            };
            if let Some(interruption) = interruption {
                return self.interrupted(socket, interruption).await;
            }
        }
        self.rest(socket).await
    }

    /// As `echo`, with an update of an unknown kind after the first chunk.
    async fn echo_with_unknown_update(&self, socket: &mut WebSocket) -> Flow {
        if let Flow::Close = self.first_chunk(socket).await {
            return Flow::Close;
        }
        let unknown = Notification {
            method: CLIENT_METHOD_NAMES.session_update.into(),
            params: Some(json!({
                "sessionId": self.session_id,
                "update": {
                    "sessionUpdate": UNKNOWN_UPDATE_KIND,
                    "content": {"type": "text", "text": "not part of the reply"},
                },
            })),
        };
        if let Flow::Close = send(socket, unknown).await {
            return Flow::Close;
        }
        self.rest(socket).await
    }

    /// The first chunk, then nothing: `session/cancel` is recorded but not honoured,
    /// until the client leaves.
    async fn ignore_cancel(&self, socket: &mut WebSocket) -> Flow {
        if let Flow::Close = self.first_chunk(socket).await {
            return Flow::Close;
        }
        while let Interruption::Cancelled = interrupted(socket, self.state).await {}
        Flow::Close
    }

    async fn thought(&self, socket: &mut WebSocket) -> Flow {
        let thought = ContentChunk::new(text_block("Thinking about the request."));
        let update = SessionUpdate::AgentThoughtChunk(thought);
        send(socket, notification(self.session_id, update)).await
    }

    async fn first_chunk(&self, socket: &mut WebSocket) -> Flow {
        self.chunk(socket, text_block(ECHO_PREFIX)).await
    }

    /// The reply after the first chunk, then `end_turn`.
    async fn rest(&self, socket: &mut WebSocket) -> Flow {
        let rest = self.reply.strip_prefix(ECHO_PREFIX).unwrap_or(self.reply);
        for content in varied_contents(rest) {
            if let Flow::Close = self.chunk(socket, content).await {
                return Flow::Close;
            }
        }
        self.finish(socket, StopReason::EndTurn).await
    }

    async fn chunk(&self, socket: &mut WebSocket, content: ContentBlock) -> Flow {
        let update = SessionUpdate::AgentMessageChunk(ContentChunk::new(content));
        send(socket, notification(self.session_id, update)).await
    }

    /// A cancelled prompt ends with `stopReason: "cancelled"`, as ACP prescribes.
    async fn interrupted(&self, socket: &mut WebSocket, interruption: Interruption) -> Flow {
        match interruption {
            Interruption::Gone => Flow::Close,
            Interruption::Cancelled => self.finish(socket, StopReason::Cancelled).await,
        }
    }

    async fn finish(&self, socket: &mut WebSocket, reason: StopReason) -> Flow {
        send_result(socket, self.id.clone(), PromptResponse::new(reason)).await
    }
}

/// Decrements the conversation's in-progress count however the prompt ends.
struct InProgress {
    state: Shared,
    conversation_id: String,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.state
            .send_modify(|s| s.end_prompt(&self.conversation_id));
    }
}

/// How a waiting prompt was interrupted.
enum Interruption {
    /// The client closed the socket (or crashed).
    Gone,
    /// The client sent `session/cancel`.
    Cancelled,
}

/// Resolves when the client leaves or cancels (the cancel is recorded); other
/// messages meanwhile are dropped.
async fn interrupted(socket: &mut WebSocket, state: &Shared) -> Interruption {
    loop {
        match socket.recv().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Interruption::Gone,
            Some(Ok(Message::Text(text))) => {
                if let Ok((_, ClientMessage::Notification(notification))) = parse(text.as_str())
                    && record_cancel(state, &notification)
                {
                    return Interruption::Cancelled;
                }
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Records a `session/cancel` notification; whether it was one.
fn record_cancel(state: &Shared, notification: &Notification<Value>) -> bool {
    let params = notification.params.clone().unwrap_or(Value::Null);
    match ClientNotification::from_method_and_params(&notification.method, &params) {
        Ok(ClientNotification::CancelNotification(cancel)) => {
            state.send_modify(|s| s.cancels.push(cancel));
            true
        }
        _ => false,
    }
}

/// `text` split in two, the first half as a text block, the second as the text of an
/// embedded resource, so clients read every shape a reply chunk takes. Empty parts
/// are left out.
fn varied_contents(text: &str) -> Vec<ContentBlock> {
    let middle = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(text.len(), |(i, _)| i);
    let (first, second) = text.split_at(middle);
    let mut contents = Vec::with_capacity(2);
    if !first.is_empty() {
        contents.push(text_block(first));
    }
    if !second.is_empty() {
        let resource = TextResourceContents::new(second, "sandbox://reply.txt")
            .mime_type("text/plain".to_owned());
        contents.push(ContentBlock::Resource(EmbeddedResource::new(
            EmbeddedResourceResource::TextResourceContents(resource),
        )));
    }
    contents
}

fn text_block(text: &str) -> ContentBlock {
    ContentBlock::Text(TextContent::new(text))
}

/// All text blocks of the prompt, joined by newlines.
fn prompt_text(request: &PromptRequest) -> String {
    request
        .prompt
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(text) => Some(text.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The user's words: the prompt without the leading channel context block.
fn user_text(prompt: &str) -> &str {
    match (prompt.find(CONTEXT_OPEN), prompt.find(CONTEXT_CLOSE)) {
        (Some(_), Some(end)) => prompt[end + CONTEXT_CLOSE.len()..].trim(),
        _ => prompt.trim(),
    }
}

fn notification(
    session_id: &SessionId,
    update: SessionUpdate,
) -> Notification<SessionNotification> {
    Notification {
        method: CLIENT_METHOD_NAMES.session_update.into(),
        params: Some(SessionNotification::new(session_id.clone(), update)),
    }
}

async fn send_result<R: Serialize>(socket: &mut WebSocket, id: RequestId, result: R) -> Flow {
    send(socket, Response::<R, RpcError>::new(id, Ok(result))).await
}

async fn send_error(socket: &mut WebSocket, id: RequestId, error: RpcError) -> Flow {
    send(socket, Response::<(), _>::new(id, Err(error))).await
}

async fn send<M: Serialize>(socket: &mut WebSocket, message: M) -> Flow {
    let Ok(text) = serde_json::to_string(&JsonRpcMessage::wrap(message)) else {
        return Flow::Close;
    };
    match socket.send(Message::Text(text.into())).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Close,
    }
}

/// Drops the connection the way a crashing runtime does: a close frame, nothing else.
async fn close(socket: &mut WebSocket) -> Flow {
    let frame = CloseFrame {
        code: 1011,
        reason: "agent went away".into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
    Flow::Close
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_drops_the_context_block() {
        let prompt = "<spritz-channel-context>{\"a\":1}</spritz-channel-context>\n\nhello there";
        assert_eq!(user_text(prompt), "hello there");
        assert_eq!(user_text("  plain "), "plain");
    }

    #[test]
    fn varied_contents_keep_every_character_of_multibyte_text() {
        let contents = varied_contents("héllo wörld ✓");
        let joined: String = contents
            .iter()
            .map(|content| match content {
                ContentBlock::Text(text) => text.text.clone(),
                ContentBlock::Resource(EmbeddedResource {
                    resource: EmbeddedResourceResource::TextResourceContents(resource),
                    ..
                }) => resource.text.clone(),
                other => panic!("unexpected content {other:?}"),
            })
            .collect();
        assert_eq!(joined, "héllo wörld ✓");
        assert_eq!(varied_contents("x").len(), 1);
    }
}
