//! One ACP websocket session with the fake agent: JSON-RPC 2.0 over text frames.
//! `initialize` → capabilities, `session/load` → `null` (after an optional history
//! replay), `session/prompt` → `session/update` notifications then
//! `{stopReason:"end_turn"}`, shaped by the configured [`AgentBehaviour`].
//!
//! The socket is served inline, one message at a time: while a prompt runs, the only
//! inbound messages that matter are the answer to a permission request, `session/cancel`
//! (the prompt ends `cancelled`) and the close of the socket (a client that crashed
//! mid-prompt).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::state::{Conversation, SpritzState};
use super::{AgentBehaviour, PromptRecord};

type Shared = Arc<watch::Sender<SpritzState>>;

/// How every echoed reply starts; also the first chunk sent.
const ECHO_PREFIX: &str = "echo: ";
const CONTEXT_OPEN: &str = "<spritz-channel-context>";
const CONTEXT_CLOSE: &str = "</spritz-channel-context>";

/// Whether the session goes on after a message was handled.
enum Flow {
    Continue,
    Close,
}

/// Serves one connection until the client closes it or a behaviour drops it.
pub(super) async fn serve(mut socket: WebSocket, state: Shared, conversation: Conversation) {
    let mut session = Session {
        state,
        conversation,
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
        let flow = match serde_json::from_str::<Value>(text.as_str()) {
            Ok(value) => session.handle(&mut socket, value).await,
            Err(_) => send(&mut socket, rpc_error(&Value::Null, -32700, "parse error")).await,
        };
        if matches!(flow, Flow::Close) {
            break;
        }
    }
}

struct Session {
    state: Shared,
    conversation: Conversation,
    loaded_session: Option<String>,
    next_request: u64,
}

impl Session {
    async fn handle(&mut self, socket: &mut WebSocket, message: Value) -> Flow {
        let id = message.get("id").cloned();
        let method = message.get("method").and_then(Value::as_str);
        let (Some(id), Some(method)) = (id, method) else {
            // Notifications (`session/cancel`) and stray responses need no answer.
            return Flow::Continue;
        };
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        match method {
            "initialize" => {
                let result = json!({
                    "protocolVersion": 1,
                    "agentCapabilities": {
                        "loadSession": true,
                        "promptCapabilities": {"image": false, "audio": false, "embeddedContext": true},
                    },
                    "authMethods": [],
                    "agentInfo": {"name": "spritz-sandbox-agent", "version": "0.1.0"},
                });
                send(socket, rpc_result(&id, result)).await
            }
            "session/load" => self.load(socket, &id, &params).await,
            "session/prompt" => self.prompt(socket, &id, &params).await,
            _ => send(socket, rpc_error(&id, -32601, "method not found")).await,
        }
    }

    async fn load(&mut self, socket: &mut WebSocket, id: &Value, params: &Value) -> Flow {
        let requested = params
            .get("sessionId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let current = self
            .state
            .borrow()
            .conversations
            .get(&self.conversation.name)
            .map(|c| (c.session_id.clone(), c.turns.clone()));
        let Some((session_id, turns)) = current.filter(|(s, _)| s == requested) else {
            return send(socket, rpc_error(id, -32002, "Resource not found: session")).await;
        };
        for (prompt, reply) in turns {
            for (kind, text) in [
                ("user_message_chunk", prompt),
                ("agent_message_chunk", reply),
            ] {
                let update =
                    json!({"sessionUpdate": kind, "content": {"type": "text", "text": text}});
                if let Flow::Close = send(socket, notification(&session_id, update)).await {
                    return Flow::Close;
                }
            }
        }
        self.loaded_session = Some(session_id);
        send(socket, rpc_result(id, Value::Null)).await
    }

    async fn prompt(&mut self, socket: &mut WebSocket, id: &Value, params: &Value) -> Flow {
        let requested = params
            .get("sessionId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(session_id) = self.loaded_session.clone().filter(|s| s == requested) else {
            return send(socket, rpc_error(id, -32602, "session not loaded")).await;
        };
        let text = prompt_text(params);
        let (behaviour, held) = {
            let state = self.state.borrow();
            (state.agent.clone(), state.held)
        };
        let record = PromptRecord {
            conversation_id: self.conversation.name.clone(),
            namespace: self.conversation.namespace.clone(),
            session_id: session_id.clone(),
            text: text.clone(),
        };
        self.state.send_modify(|s| s.begin_prompt(record));
        let _running = InProgress {
            state: self.state.clone(),
            conversation_id: self.conversation.name.clone(),
        };
        let reply = format!("{ECHO_PREFIX}{}", user_text(&text));
        let turn = Turn {
            id,
            session_id: &session_id,
            reply: &reply,
        };
        let flow = if held {
            self.held_echo(socket, &turn).await
        } else {
            match behaviour {
                AgentBehaviour::Echo => turn.echo(socket, None).await,
                AgentBehaviour::Slow(delay) => turn.echo(socket, Some(delay)).await,
                AgentBehaviour::AskPermission => self.ask_permission(socket, &turn).await,
                AgentBehaviour::EmptyReply => turn.finish(socket).await,
                AgentBehaviour::Disconnect => close(socket).await,
                AgentBehaviour::DisconnectAfterChunk => {
                    if let Flow::Continue = turn.chunk(socket, text_content(ECHO_PREFIX)).await {
                        close(socket).await;
                    }
                    Flow::Close
                }
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
        if let Flow::Close = turn.chunk(socket, text_content(ECHO_PREFIX)).await {
            return Flow::Close;
        }
        let mut rx = self.state.subscribe();
        let interruption = tokio::select! {
            _ = async { rx.wait_for(|s| !s.held).await.is_ok() } => None,
            interruption = interrupted(socket) => Some(interruption),
        };
        if let Some(interruption) = interruption {
            return turn.interrupted(socket, interruption).await;
        }
        let rest = turn.reply.strip_prefix(ECHO_PREFIX).unwrap_or(turn.reply);
        for content in varied_contents(rest) {
            if let Flow::Close = turn.chunk(socket, content).await {
                return Flow::Close;
            }
        }
        turn.finish(socket).await
    }

    async fn ask_permission(&mut self, socket: &mut WebSocket, turn: &Turn<'_>) -> Flow {
        self.next_request += 1;
        let request_id = json!(format!("perm-{}", self.next_request));
        let request = json!({
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "session/request_permission",
            "params": {
                "sessionId": turn.session_id,
                "toolCall": {
                    "toolCallId": format!("call-{}", self.next_request),
                    "title": "Run `ls /home/dev`",
                    "kind": "execute",
                    "status": "pending",
                },
                "options": [
                    {"optionId": "allow-once", "name": "Allow once", "kind": "allow_once"},
                    {"optionId": "reject-once", "name": "Reject", "kind": "reject_once"},
                ],
            },
        });
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
            let Ok(answer) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if answer.get("method").is_none() && answer.get("id") == Some(&request_id) {
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
    id: &'a Value,
    session_id: &'a str,
    reply: &'a str,
}

impl Turn<'_> {
    /// A thought the client must ignore, then the reply in varied chunk shapes; with
    /// a delay, the first chunk goes out before it.
    async fn echo(&self, socket: &mut WebSocket, delay: Option<Duration>) -> Flow {
        let thought = json!({
            "sessionUpdate": "agent_thought_chunk",
            "content": {"type": "text", "text": "Thinking about the request."},
        });
        if let Flow::Close = send(socket, notification(self.session_id, thought)).await {
            return Flow::Close;
        }
        let rest = self.reply.strip_prefix(ECHO_PREFIX).unwrap_or(self.reply);
        if let Flow::Close = self.chunk(socket, text_content(ECHO_PREFIX)).await {
            return Flow::Close;
        }
        if let Some(delay) = delay {
            let interruption = tokio::select! {
                () = tokio::time::sleep(delay) => None,
                interruption = interrupted(socket) => Some(interruption),
            };
            if let Some(interruption) = interruption {
                return self.interrupted(socket, interruption).await;
            }
        }
        for content in varied_contents(rest) {
            if let Flow::Close = self.chunk(socket, content).await {
                return Flow::Close;
            }
        }
        self.finish(socket).await
    }

    async fn chunk(&self, socket: &mut WebSocket, content: Value) -> Flow {
        let update = json!({"sessionUpdate": "agent_message_chunk", "content": content});
        send(socket, notification(self.session_id, update)).await
    }

    /// A cancelled prompt ends with `stopReason: "cancelled"`, as ACP prescribes.
    async fn interrupted(&self, socket: &mut WebSocket, interruption: Interruption) -> Flow {
        match interruption {
            Interruption::Gone => Flow::Close,
            Interruption::Cancelled => {
                send(
                    socket,
                    rpc_result(self.id, json!({"stopReason": "cancelled"})),
                )
                .await
            }
        }
    }

    async fn finish(&self, socket: &mut WebSocket) -> Flow {
        send(
            socket,
            rpc_result(self.id, json!({"stopReason": "end_turn"})),
        )
        .await
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

/// Resolves when the client leaves or cancels; other messages meanwhile are dropped.
async fn interrupted(socket: &mut WebSocket) -> Interruption {
    loop {
        match socket.recv().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Interruption::Gone,
            Some(Ok(Message::Text(text))) => {
                let cancel = serde_json::from_str::<Value>(text.as_str()).is_ok_and(|m| {
                    m.get("method").and_then(Value::as_str) == Some("session/cancel")
                });
                if cancel {
                    return Interruption::Cancelled;
                }
            }
            Some(Ok(_)) => {}
        }
    }
}

/// `text` split in two, the first half as nested content, the second as resource text,
/// so clients parse every shape the spec allows. Empty parts are left out.
fn varied_contents(text: &str) -> Vec<Value> {
    let middle = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(text.len(), |(i, _)| i);
    let (first, second) = text.split_at(middle);
    let mut contents = Vec::with_capacity(2);
    if !first.is_empty() {
        contents.push(json!({"type": "content", "content": text_content(first)}));
    }
    if !second.is_empty() {
        contents.push(json!({
            "type": "resource",
            "resource": {"uri": "sandbox://reply.txt", "mimeType": "text/plain", "text": second},
        }));
    }
    contents
}

fn text_content(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// All text blocks of the prompt, concatenated.
fn prompt_text(params: &Value) -> String {
    params
        .get("prompt")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The user's words: the prompt without the leading channel context block.
fn user_text(prompt: &str) -> &str {
    match (prompt.find(CONTEXT_OPEN), prompt.find(CONTEXT_CLOSE)) {
        (Some(_), Some(end)) => prompt[end + CONTEXT_CLOSE.len()..].trim(),
        _ => prompt.trim(),
    }
}

fn notification(session_id: &str, update: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "session/update",
        "params": {"sessionId": session_id, "update": update},
    })
}

fn rpc_result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

async fn send(socket: &mut WebSocket, message: Value) -> Flow {
    match socket.send(Message::Text(message.to_string().into())).await {
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
            .map(|c| {
                c.pointer("/content/text")
                    .or_else(|| c.pointer("/resource/text"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(joined, "héllo wörld ✓");
        assert_eq!(varied_contents("x").len(), 1);
    }
}
