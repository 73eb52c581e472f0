//! Fake Spritz API with an ACP agent behind its websocket: conversation upsert,
//! bootstrap, and `…/connect` speaking JSON-RPC 2.0 ACP (`initialize`, `session/load`,
//! `session/prompt`, `session/update` chunks, `session/request_permission`,
//! `session/cancel`) in the types of the `agent-client-protocol-schema` crate, as
//! strictly as a real agent, with scriptable agent behaviours (every stop reason, an
//! unknown update kind) and runtimes that can vanish and come back.
//!
//! Layout: this file holds the handle and public types; `state` the conversations,
//! recordings and concurrency bookkeeping; `rest` the upsert and bootstrap routes;
//! `acp` one websocket session with the agent; `control` the `/_sandbox` control API
//! and its client. Everything is served under the base path `/spritz`, so clients
//! prove they keep the base URL's path (the websocket included).
//!
//! The REST part is as strict as the real API (textcortex/spritz at 6af2b76):
//! - failures are JSend as `writeError` writes them (`api/jsend.go`): 4xx
//!   `{"status":"fail","data":{"message":"…"}}`, 5xx
//!   `{"status":"error","message":"…","code":…}`; success is
//!   `{"status":"success","data":…}`;
//! - no bearer, or a session token the API does not know, is 401 `unauthenticated`
//!   (`api/auth.go` `writeAuthError`); session tokens are known once the team's
//!   runtime was added with its token ([`FakeSpritz::add_runtime`]), as the real API
//!   accepts the sessions the backend hands out;
//! - `POST /api/channel-conversations/upsert` (`api/channel_conversations.go`,
//!   `api/channel_conversation_service.go`): unknown body fields are 400
//!   `json: unknown field "…"` (`decodeACPBody`); `provider is invalid`,
//!   `externalScopeType is invalid`, then `externalTenantId`, `instanceId`, `ownerId`,
//!   `principalId`, `externalChannelId`, `externalConversationId` `is required` (400,
//!   in that order); the namespace defaults to `default`; an `ownerId` that is not
//!   the caller, or a runtime of another owner, is 403 `forbidden`; an unknown or gone
//!   runtime is 404 `spritz not found`; a non-empty `conversationId` must name an
//!   existing conversation (404 `spritz not found`) of the same identity and runtime
//!   whose external id no other conversation holds (409 `channel conversation is
//!   ambiguous`) and gets the `externalConversationId` as an alias (200,
//!   `created:false`); an empty one finds the conversation by principal, provider,
//!   scope, tenant, channel, owner, runtime and external id or alias (200,
//!   `created:false`) or creates it under a server-assigned `<spritz>-channel-<hash>`
//!   name (`channelConversationName`; 201, `created:true`);
//! - bootstrap and connect need the service token (401 `unauthenticated`); an unknown
//!   conversation is 404 `conversation not found`, a gone runtime 404 `spritz not
//!   found` (`api/acp_bootstrap.go`, `api/acp_gateway.go`); the namespace defaults to
//!   `default`.
//!
//! Not modelled: runtimes that exist but are not ready (the real API answers 409
//! `acp unavailable`), admin principals, the service principal's scope check, and the
//! 63-character cut of long conversation names.

mod acp;
mod control;
mod rest;
mod state;
mod upsert;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent_client_protocol_schema::v1::{CancelNotification, InitializeRequest, StopReason};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::backend::TeamInstall;
use crate::recording;
use crate::server::{self, FakeServer};

pub use control::{AgentSpec, ControlClient, InstanceRef};
use state::SpritzState;

/// The path prefix every Spritz API route sits under.
pub const BASE_PATH: &str = "/spritz";

/// One `session/prompt` the agent received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptRecord {
    pub conversation_id: String,
    pub namespace: String,
    pub session_id: String,
    /// The whole prompt text, context block included.
    pub text: String,
}

/// How the agent answers prompts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentBehaviour {
    /// Replies `echo: <user text without the context block>` as several
    /// `agent_message_chunk`s of varied content shapes (plain text, nested content,
    /// resource text), after an `agent_thought_chunk` the client must ignore, then
    /// `{stopReason:"end_turn"}`.
    Echo,
    /// Sends the first chunk at once, waits this long, then the rest (as `Echo`).
    Slow(Duration),
    /// Sends `session/request_permission` first, waits for the client's answer,
    /// records it, then echoes.
    AskPermission,
    /// `end_turn` with no chunks at all.
    EmptyReply,
    /// Closes the socket after receiving the prompt, before any message about it.
    Disconnect,
    /// Sends one chunk, then closes the socket.
    DisconnectAfterChunk,
    /// Sends one chunk (`echo: `), then ends the turn with this stop reason (`refusal`,
    /// `max_tokens`, `max_turn_requests`, `cancelled`; `end_turn` makes the one chunk
    /// the whole reply).
    Stop(StopReason),
    /// As `Echo`, with a `session/update` of a kind no ACP schema defines
    /// (`sandbox_future_update`) after the first chunk, as a newer agent may send.
    UnknownUpdate,
    /// Sends one chunk, then never ends the turn: `session/cancel` is recorded but not
    /// honoured. A stuck agent, for clients that must not wait for it forever.
    IgnoreCancel,
}

/// A Spritz API call that can be made to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpritzCall {
    Upsert,
    Bootstrap,
    /// The websocket upgrade of `…/connect`.
    Connect,
}

/// Handle to a running fake Spritz API. Clones share the server and recordings; the
/// server stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakeSpritz {
    state: Arc<watch::Sender<SpritzState>>,
    server: Arc<FakeServer>,
}

impl FakeSpritz {
    /// Starts the fake on `127.0.0.1:0`; bootstrap and the ACP websocket require
    /// `Authorization: Bearer <service_token>` (401 otherwise).
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(service_token: &str) -> anyhow::Result<FakeSpritz> {
        Self::start_on(server::any_local_port(), service_token).await
    }

    /// Starts the fake on a fixed address (the dev stack binary).
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start_on(addr: SocketAddr, service_token: &str) -> anyhow::Result<FakeSpritz> {
        let (state, server) = server::spawn_nested(
            "fake spritz",
            addr,
            BASE_PATH,
            SpritzState::new(service_token),
            rest::router,
            control::router,
        )
        .await?;
        Ok(FakeSpritz { state, server })
    }

    /// `http://127.0.0.1:PORT/spritz`, what `SPRITZ_SLACK_SPRITZ_BASE_URL` gets.
    pub fn base_url(&self) -> String {
        self.server.url(BASE_PATH)
    }

    /// `http://127.0.0.1:PORT`, where the `/_sandbox` control API lives.
    pub fn origin(&self) -> String {
        self.server.origin()
    }

    /// Serves the team's runtime (`namespace`/`instance_id`, owned by its
    /// `owner_auth_id()`, ready) and accepts its session `access_token` as that owner,
    /// as the real API accepts the sessions the backend hands out. Without it every
    /// upsert for the team is refused (401 for the token, 404 for the runtime).
    pub fn add_runtime(&self, team: &TeamInstall) {
        self.state.send_modify(|s| {
            s.add_runtime(
                &team.namespace,
                &team.instance_id,
                &team.owner_auth_id(),
                &team.access_token,
            );
        });
    }

    /// Sets how the agent answers prompts from now on (default `Echo`).
    pub fn set_agent(&self, behaviour: AgentBehaviour) {
        self.state.send_modify(|s| s.agent = behaviour);
    }

    /// Makes `session/load` first replay earlier turns of the conversation as
    /// `user_message_chunk`/`agent_message_chunk` updates, as real agents do; a client
    /// must not mistake them for the reply. Off by default.
    pub fn replay_history_on_load(&self, enabled: bool) {
        self.state.send_modify(|s| s.replay_history = enabled);
    }

    /// The runtime is gone: upsert, bootstrap and connect for conversations on it
    /// answer 404 with a body containing `spritz not found`.
    pub fn vanish_instance(&self, namespace: &str, instance_id: &str) {
        self.state.send_modify(|s| s.vanish(namespace, instance_id));
    }

    /// The runtime is back, recreated: conversations on it get fresh session ids
    /// (an old id fails `session/load`), as after a real runtime recreation.
    pub fn restore_instance(&self, namespace: &str, instance_id: &str) {
        self.state
            .send_modify(|s| s.restore(namespace, instance_id));
    }

    /// The next `n` calls of this kind answer a bare `status` (e.g. 500, 503) before
    /// anything else is checked.
    pub fn fail_next(&self, call: SpritzCall, n: usize, status: u16) {
        self.state.send_modify(|s| {
            s.faults
                .entry(call)
                .or_default()
                .extend(std::iter::repeat_n(status, n));
        });
    }

    /// From now on calls of this kind take `delay` before they answer (a slow API
    /// server), for status-message timing tests. `Duration::ZERO` undoes it.
    pub fn delay(&self, call: SpritzCall, delay: Duration) {
        self.state.send_modify(|s| {
            s.delays.insert(call, delay);
        });
    }

    /// How many prompts arrived so far, without copying them (for benchmarks that poll).
    pub fn prompt_count(&self) -> usize {
        self.state.borrow().prompts.len()
    }

    /// Every prompt received, in arrival order.
    pub fn prompts(&self) -> Vec<PromptRecord> {
        self.state.borrow().prompts.clone()
    }

    /// Waits until at least `n` prompts arrived; returns all of them.
    ///
    /// # Errors
    /// When fewer arrived within `timeout`.
    pub async fn wait_for_prompts(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<PromptRecord>> {
        recording::wait_for_records(&self.state, n, timeout, |s| &s.prompts)
            .await
            .map_err(|error| {
                error.describe("fake spritz", || {
                    format!(
                        "expected {n} prompts within {timeout:?}, got {}",
                        self.state.borrow().prompts.len()
                    )
                })
            })
    }

    /// Conversation upsert bodies received (the reply-alias upserts included).
    pub fn upserts(&self) -> Vec<Value> {
        self.state.borrow().upserts.clone()
    }

    /// The bearer tokens the upserts came with, in the same order as `upserts()`.
    pub fn upsert_tokens(&self) -> Vec<String> {
        self.state.borrow().upsert_tokens.clone()
    }

    /// Every request to the Spritz API (the ACP websocket upgrade included), in order,
    /// with its `traceparent` header.
    pub fn traced_requests(&self) -> Vec<crate::TracedRequest> {
        self.state.borrow().traced_requests.clone()
    }

    /// Bootstrap calls received as `(conversation id, namespace)`.
    pub fn bootstraps(&self) -> Vec<(String, String)> {
        self.state.borrow().bootstraps.clone()
    }

    /// The JSON-RPC responses the client sent to `session/request_permission`.
    pub fn permission_answers(&self) -> Vec<Value> {
        self.state.borrow().permission_answers.clone()
    }

    /// The `initialize` params of every connection, in arrival order.
    pub fn initializations(&self) -> Vec<InitializeRequest> {
        self.state.borrow().initializations.clone()
    }

    /// Every `session/cancel` received, in arrival order.
    pub fn cancels(&self) -> Vec<CancelNotification> {
        self.state.borrow().cancels.clone()
    }

    /// Waits until at least `n` `session/cancel` notifications arrived; returns all.
    ///
    /// # Errors
    /// When fewer arrived within `timeout`.
    pub async fn wait_for_cancels(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<CancelNotification>> {
        recording::wait_for_records(&self.state, n, timeout, |s| &s.cancels)
            .await
            .map_err(|error| {
                error.describe("fake spritz", || {
                    format!(
                        "expected {n} cancels within {timeout:?}, got {}",
                        self.state.borrow().cancels.len()
                    )
                })
            })
    }

    /// High-water mark of prompts in progress at once on one conversation.
    pub fn max_concurrent_prompts(&self, conversation_id: &str) -> usize {
        self.state
            .borrow()
            .max_in_progress
            .get(conversation_id)
            .copied()
            .unwrap_or(0)
    }

    /// Prompts in progress right now, all conversations.
    pub fn prompts_in_progress(&self) -> usize {
        self.state.borrow().in_progress.values().sum()
    }

    /// Waits until no prompt is in progress (a client that left mid-prompt is noticed
    /// once the agent next reads or writes its socket).
    ///
    /// # Errors
    /// When prompts are still running after `timeout`.
    pub async fn wait_until_idle(&self, timeout: Duration) -> anyhow::Result<()> {
        recording::wait_for(&self.state, timeout, |s| s.in_progress.is_empty(), |_| ())
            .await
            .map_err(|error| {
                error.describe("fake spritz", || {
                    format!(
                        "{} prompts still in progress after {timeout:?}",
                        self.prompts_in_progress()
                    )
                })
            })
    }

    /// From now on each prompt is recorded, gets one `agent_message_chunk` (so it
    /// counts as delivered) and then waits for `release_prompts` before it finishes
    /// as `Echo` would. For crashes mid-prompt and one-prompt-per-conversation tests.
    pub fn hold_prompts(&self) {
        self.state.send_modify(|s| s.held = true);
    }

    /// Lets held prompts (and later ones) finish.
    pub fn release_prompts(&self) {
        self.state.send_modify(|s| s.held = false);
    }
}
