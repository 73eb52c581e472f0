//! What the fake Spritz API remembers: conversations and their aliases, vanished
//! runtimes, recorded calls, and how many prompts run at once per conversation.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};

use super::{AgentBehaviour, PromptRecord, SpritzCall};

/// The working directory every conversation gets.
pub(super) const CWD: &str = "/home/dev";

/// One channel conversation bound to a runtime.
#[derive(Clone, Debug)]
pub(super) struct Conversation {
    pub name: String,
    pub namespace: String,
    pub instance_id: String,
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
    /// A failure injected with `FakeSpritz::fail_next`.
    Injected(u16),
}

/// The parts of an upsert body the fake acts on.
#[derive(Debug)]
pub(super) struct UpsertRequest {
    pub namespace: String,
    pub instance_id: String,
    pub conversation_id: String,
    pub external_conversation_id: String,
    pub lookup_ids: Vec<String>,
}

pub(crate) struct SpritzState {
    pub service_token: String,
    pub agent: AgentBehaviour,
    pub replay_history: bool,
    pub held: bool,
    pub vanished: HashSet<(String, String)>,
    pub conversations: HashMap<String, Conversation>,
    /// `(namespace, external conversation id)` → conversation name.
    pub aliases: HashMap<(String, String), String>,
    pub prompts: Vec<PromptRecord>,
    pub upserts: Vec<Value>,
    pub upsert_tokens: Vec<String>,
    pub bootstraps: Vec<(String, String)>,
    pub permission_answers: Vec<Value>,
    pub faults: HashMap<SpritzCall, VecDeque<u16>>,
    pub in_progress: HashMap<String, usize>,
    pub max_in_progress: HashMap<String, usize>,
    /// Bumped by `restore`, so recreated runtimes hand out fresh session ids.
    generations: HashMap<(String, String), u32>,
}

impl SpritzState {
    pub fn new(service_token: &str) -> Self {
        SpritzState {
            service_token: service_token.to_owned(),
            agent: AgentBehaviour::Echo,
            replay_history: false,
            held: false,
            vanished: HashSet::new(),
            conversations: HashMap::new(),
            aliases: HashMap::new(),
            prompts: Vec::new(),
            upserts: Vec::new(),
            upsert_tokens: Vec::new(),
            bootstraps: Vec::new(),
            permission_answers: Vec::new(),
            faults: HashMap::new(),
            in_progress: HashMap::new(),
            max_in_progress: HashMap::new(),
            generations: HashMap::new(),
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

    /// Finds or creates the conversation for an upsert and binds the external id to
    /// it (an alias upsert names the conversation and adds another external id).
    pub fn upsert(&mut self, request: UpsertRequest) -> Result<Conversation, Unusable> {
        if self.is_vanished(&request.namespace, &request.instance_id) {
            return Err(Unusable::Vanished);
        }
        let alias_key = |id: &str| (request.namespace.clone(), id.to_owned());
        let existing = Some(request.conversation_id.clone())
            .filter(|id| {
                self.conversations
                    .get(id)
                    .is_some_and(|c| c.namespace == request.namespace)
            })
            .or_else(|| {
                std::iter::once(&request.external_conversation_id)
                    .chain(&request.lookup_ids)
                    .find_map(|id| self.aliases.get(&alias_key(id)).cloned())
            });
        let name = existing.unwrap_or_else(|| {
            if request.conversation_id.is_empty() {
                conversation_name(&request.namespace, &request.external_conversation_id)
            } else {
                request.conversation_id.clone()
            }
        });
        let generation = self
            .generations
            .get(&(request.namespace.clone(), request.instance_id.clone()))
            .copied()
            .unwrap_or_default();
        let conversation = self
            .conversations
            .entry(name.clone())
            .or_insert_with(|| Conversation {
                name: name.clone(),
                namespace: request.namespace.clone(),
                instance_id: request.instance_id.clone(),
                session_id: session_id(&name, generation),
                turns: Vec::new(),
            });
        if conversation.instance_id != request.instance_id {
            conversation.instance_id = request.instance_id.clone();
            conversation.session_id = session_id(&name, generation);
        }
        let conversation = conversation.clone();
        self.aliases
            .insert(alias_key(&request.external_conversation_id), name);
        Ok(conversation)
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

/// `conv-<16 hex>`, stable for one `(namespace, external conversation id)`.
fn conversation_name(namespace: &str, external_id: &str) -> String {
    let mut hasher = DefaultHasher::new();
    (namespace, external_id).hash(&mut hasher);
    format!("conv-{:016x}", hasher.finish())
}

fn session_id(conversation_name: &str, generation: u32) -> String {
    let suffix = conversation_name.trim_start_matches("conv-");
    format!("sess-{suffix}-{generation}")
}
