//! What the fake Spritz API remembers: the runtimes it serves and who owns them, the
//! session tokens it accepts, conversations and their aliases, vanished runtimes,
//! recorded calls, and how many prompts run at once per conversation.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use agent_client_protocol_schema::v1::{CancelNotification, InitializeRequest};
use serde_json::{Value, json};

use super::{AgentBehaviour, PromptRecord, SpritzCall};
use crate::spritz_http::{RecordsTraceparents, TracedRequest};

/// The working directory every conversation gets.
pub(super) const CWD: &str = "/home/dev";

/// One channel conversation bound to a runtime.
#[derive(Clone, Debug)]
pub(super) struct Conversation {
    pub name: String,
    pub namespace: String,
    pub instance_id: String,
    /// Who and where the conversation is for; an upsert naming the conversation must
    /// carry the same identity (409 otherwise), as the real API checks.
    pub identity: Identity,
    /// The external id it was created for, then every alias added to it.
    pub external_ids: Vec<String>,
    pub session_id: String,
    /// Earlier `(prompt text, reply)` turns, kept only while history replay is on.
    pub turns: Vec<(String, String)>,
}

impl Conversation {
    pub fn to_json(&self) -> Value {
        json!({
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "sessionId": self.session_id,
                "cwd": CWD,
                "instanceId": self.instance_id,
            },
            "status": {"phase": "Ready"},
        })
    }
}

/// Why a conversation cannot be used right now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unusable {
    NotFound,
    Vanished,
    /// The named conversation belongs to another identity or runtime (409).
    Ambiguous,
    /// The caller is not the owner the upsert names, or not the runtime's (403).
    Forbidden,
    /// A failure injected with `FakeSpritz::fail_next`.
    Injected(u16),
}

/// The route identity of a channel conversation minus its external conversation id
/// (the real API's "base identity": principal, provider, scope, tenant, channel, owner).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Identity {
    pub principal_id: String,
    pub provider: String,
    pub external_scope_type: String,
    pub external_tenant_id: String,
    pub external_channel_id: String,
    pub owner_id: String,
}

/// The parts of an upsert body the fake acts on.
#[derive(Clone, Debug)]
pub(super) struct UpsertRequest {
    pub namespace: String,
    pub instance_id: String,
    /// Empty: find the conversation by identity and external id, or create it. Set:
    /// the server's name of an existing conversation, to which the external id is
    /// added as an alias.
    pub conversation_id: String,
    pub identity: Identity,
    pub external_conversation_id: String,
}

pub(crate) struct SpritzState {
    pub service_token: String,
    pub agent: AgentBehaviour,
    pub replay_history: bool,
    pub held: bool,
    pub vanished: HashSet<(String, String)>,
    /// `(namespace, instance id)` → the runtime's owner id.
    pub runtimes: HashMap<(String, String), String>,
    /// Session access tokens the API accepts → the principal each stands for.
    pub session_tokens: HashMap<String, String>,
    pub conversations: HashMap<String, Conversation>,
    /// External conversation id (or alias) → names of the conversations that hold it,
    /// so an upsert finds its conversation without scanning them all (benchmarks hold
    /// tens of thousands).
    by_external_id: HashMap<String, Vec<String>>,
    pub prompts: Vec<PromptRecord>,
    pub upserts: Vec<Value>,
    pub upsert_tokens: Vec<String>,
    pub bootstraps: Vec<(String, String)>,
    pub permission_answers: Vec<Value>,
    /// `initialize` params, one per connection that got that far.
    pub initializations: Vec<InitializeRequest>,
    /// `session/cancel` notifications, in arrival order.
    pub cancels: Vec<CancelNotification>,
    pub faults: HashMap<SpritzCall, VecDeque<u16>>,
    /// How long calls of a kind take before they answer.
    pub delays: HashMap<SpritzCall, std::time::Duration>,
    pub in_progress: HashMap<String, usize>,
    pub max_in_progress: HashMap<String, usize>,
    /// Bumped by `restore`, so recreated runtimes hand out fresh session ids.
    generations: HashMap<(String, String), u32>,
    /// Every API request's `traceparent`.
    pub traced_requests: Vec<TracedRequest>,
}

impl RecordsTraceparents for SpritzState {
    fn traced_requests(&mut self) -> &mut Vec<TracedRequest> {
        &mut self.traced_requests
    }
}

impl SpritzState {
    pub fn new(service_token: &str) -> Self {
        SpritzState {
            service_token: service_token.to_owned(),
            agent: AgentBehaviour::Echo,
            replay_history: false,
            held: false,
            vanished: HashSet::new(),
            runtimes: HashMap::new(),
            session_tokens: HashMap::new(),
            conversations: HashMap::new(),
            by_external_id: HashMap::new(),
            prompts: Vec::new(),
            upserts: Vec::new(),
            upsert_tokens: Vec::new(),
            bootstraps: Vec::new(),
            permission_answers: Vec::new(),
            initializations: Vec::new(),
            cancels: Vec::new(),
            faults: HashMap::new(),
            delays: HashMap::new(),
            in_progress: HashMap::new(),
            max_in_progress: HashMap::new(),
            generations: HashMap::new(),
            traced_requests: Vec::new(),
        }
    }

    pub fn vanish(&mut self, namespace: &str, instance_id: &str) {
        self.vanished
            .insert((namespace.to_owned(), instance_id.to_owned()));
    }

    pub fn restore(&mut self, namespace: &str, instance_id: &str) {
        let key = (namespace.to_owned(), instance_id.to_owned());
        self.vanished.remove(&key);
        let generation = self.generations.entry(key).or_default();
        *generation += 1;
        let generation = *generation;
        for conversation in self.conversations.values_mut() {
            if conversation.namespace == namespace && conversation.instance_id == instance_id {
                conversation.session_id = session_id(&conversation.name, generation);
            }
        }
    }

    fn is_vanished(&self, namespace: &str, instance_id: &str) -> bool {
        self.vanished
            .contains(&(namespace.to_owned(), instance_id.to_owned()))
    }

    /// A ready runtime owned by `owner_id`, and a session token standing for its owner.
    pub fn add_runtime(&mut self, namespace: &str, instance_id: &str, owner_id: &str, token: &str) {
        self.runtimes.insert(
            (namespace.to_owned(), instance_id.to_owned()),
            owner_id.to_owned(),
        );
        self.session_tokens
            .insert(token.to_owned(), owner_id.to_owned());
    }

    /// The principal a session token stands for.
    pub fn principal(&self, token: &str) -> Option<String> {
        self.session_tokens.get(token).cloned()
    }

    /// The real `POST /api/channel-conversations/upsert` by `principal`: the owner the
    /// upsert names must be the caller (403), the runtime must exist and be up (404
    /// `spritz not found`) and be the caller's (403); a named conversation must
    /// exist (404 `spritz not found`), match the identity and runtime, and not clash
    /// with another conversation holding the external id (409), and gains the
    /// external id as an alias; an unnamed upsert finds the conversation by identity
    /// and external id (primary or alias) or creates one under a name the server
    /// chooses. `Ok((conversation, created))`.
    pub fn upsert(
        &mut self,
        principal: &str,
        request: UpsertRequest,
    ) -> Result<(Conversation, bool), Unusable> {
        if request.identity.owner_id != principal {
            return Err(Unusable::Forbidden);
        }
        let runtime = (request.namespace.clone(), request.instance_id.clone());
        let owner = self.runtimes.get(&runtime).ok_or(Unusable::Vanished)?;
        if self.is_vanished(&request.namespace, &request.instance_id) {
            return Err(Unusable::Vanished);
        }
        if owner != principal {
            return Err(Unusable::Forbidden);
        }
        let holder = self
            .by_external_id
            .get(&request.external_conversation_id)
            .into_iter()
            .flatten()
            .filter_map(|name| self.conversations.get(name))
            .find(|c| {
                c.namespace == request.namespace
                    && c.instance_id == request.instance_id
                    && c.identity == request.identity
            })
            .map(|c| c.name.clone());
        if !request.conversation_id.is_empty() {
            let conversation = self
                .conversations
                .get_mut(&request.conversation_id)
                .filter(|c| c.namespace == request.namespace)
                .ok_or(Unusable::Vanished)?;
            if conversation.identity != request.identity
                || conversation.instance_id != request.instance_id
                || holder.is_some_and(|name| name != conversation.name)
            {
                return Err(Unusable::Ambiguous);
            }
            if !conversation
                .external_ids
                .contains(&request.external_conversation_id)
            {
                conversation
                    .external_ids
                    .push(request.external_conversation_id.clone());
                self.by_external_id
                    .entry(request.external_conversation_id.clone())
                    .or_default()
                    .push(conversation.name.clone());
            }
            return Ok((conversation.clone(), false));
        }
        if let Some(found) = holder.and_then(|name| self.conversations.get(&name)) {
            return Ok((found.clone(), false));
        }
        let name = conversation_name(&request);
        let generation = self
            .generations
            .get(&(request.namespace.clone(), request.instance_id.clone()))
            .copied()
            .unwrap_or_default();
        let conversation = Conversation {
            session_id: session_id(&name, generation),
            name: name.clone(),
            namespace: request.namespace,
            instance_id: request.instance_id,
            identity: request.identity,
            external_ids: vec![request.external_conversation_id],
            turns: Vec::new(),
        };
        self.by_external_id
            .entry(conversation.external_ids[0].clone())
            .or_default()
            .push(name.clone());
        self.conversations.insert(name, conversation.clone());
        Ok((conversation, true))
    }

    /// The conversation `name` in `namespace`, if it exists and its runtime is up.
    pub fn usable(&self, name: &str, namespace: &str) -> Result<Conversation, Unusable> {
        let conversation = self
            .conversations
            .get(name)
            .filter(|c| c.namespace == namespace)
            .ok_or(Unusable::NotFound)?;
        if self.is_vanished(&conversation.namespace, &conversation.instance_id) {
            return Err(Unusable::Vanished);
        }
        Ok(conversation.clone())
    }

    /// The next injected failure for `call`, if any.
    pub fn take_fault(&mut self, call: SpritzCall) -> Result<(), Unusable> {
        match self.faults.get_mut(&call).and_then(VecDeque::pop_front) {
            Some(status) => Err(Unusable::Injected(status)),
            None => Ok(()),
        }
    }

    /// Records a prompt and counts it in progress on its conversation.
    pub fn begin_prompt(&mut self, record: PromptRecord) {
        let running = self
            .in_progress
            .entry(record.conversation_id.clone())
            .or_default();
        *running += 1;
        let running = *running;
        let high = self
            .max_in_progress
            .entry(record.conversation_id.clone())
            .or_default();
        *high = (*high).max(running);
        self.prompts.push(record);
    }

    pub fn end_prompt(&mut self, conversation_id: &str) {
        if let Some(running) = self.in_progress.get_mut(conversation_id) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                self.in_progress.remove(conversation_id);
            }
        }
    }

    /// Keeps a finished turn for history replay (only while replay is on).
    pub fn remember_turn(&mut self, conversation_id: &str, prompt: &str, reply: &str) {
        if !self.replay_history {
            return;
        }
        if let Some(conversation) = self.conversations.get_mut(conversation_id) {
            conversation
                .turns
                .push((prompt.to_owned(), reply.to_owned()));
        }
    }
}

/// `<instance>-channel-<16 hex>`, the shape of the real API's names (a hash of the
/// whole route identity), so clients cannot guess it and must use what they are given.
fn conversation_name(request: &UpsertRequest) -> String {
    let mut hasher = DefaultHasher::new();
    (
        &request.namespace,
        &request.instance_id,
        &request.identity,
        &request.external_conversation_id,
    )
        .hash(&mut hasher);
    format!("{}-channel-{:016x}", request.instance_id, hasher.finish())
}

fn session_id(conversation_name: &str, generation: u32) -> String {
    let suffix = conversation_name
        .rsplit_once("-channel-")
        .map_or(conversation_name, |(_, hash)| hash);
    format!("sess-{suffix}-{generation}")
}
