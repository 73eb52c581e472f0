//! `Resume`: the worker's retry state on a re-queued `slack.event.v1` copy, typed.
//!
//! The worker reads three things off a copy: how often it went round (the attempt, the
//! one counter the attempt limit, the wake-up generation and `dlq list` use), which
//! stage asked for the retry ([`RetryStage`]) and what is still to be posted
//! ([`Pending`]). On the wire these keep the shape every release wrote (a `stage`
//! string that also names a pending failure message, and `replyText`), through the
//! private [`wire`] form; the types here are what the code sees.

mod wire;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a delivery waits in a delay tier: the `stage` label of
/// `spritz_worker_retries_total` and the `stage` a copy carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryStage {
    /// No runtime yet (unavailable, transient backend error, vanished runtime).
    Session,
    /// Another delivery is prompting the same conversation.
    ConversationBusy,
    /// The reply (or a failure message) could not be posted.
    Reply,
    /// The backend disconnect of an uninstall failed.
    Disconnect,
    /// Redis was unreachable, or another worker holds the claim.
    Ledger,
}

impl RetryStage {
    /// Every stage, so metric label sets are derived and cannot miss one.
    pub const ALL: [RetryStage; 5] = [
        RetryStage::Session,
        RetryStage::ConversationBusy,
        RetryStage::Reply,
        RetryStage::Disconnect,
        RetryStage::Ledger,
    ];

    /// The wire and metric-label name (dashboards and docs/metrics.md use these).
    pub const fn as_str(self) -> &'static str {
        match self {
            RetryStage::Session => "session",
            RetryStage::ConversationBusy => "conversation_busy",
            RetryStage::Reply => "reply",
            RetryStage::Disconnect => "disconnect",
            RetryStage::Ledger => "ledger",
        }
    }

    /// The stage named `name`, `None` for a name this build does not know.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|stage| stage.as_str() == name)
    }
}

/// What is left to post when the turn itself is over: the agent's reply (the agent is
/// never prompted twice), or one of the two failure messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending {
    /// The agent's reply, not yet posted.
    Reply(String),
    /// "I could not recover the channel runtime": the deadline passed without one.
    TerminalFailure,
    /// "I hit an internal error": the prompt was delivered and failed.
    InternalError,
}

/// Worker retry state carried on a re-queued copy, so the next attempt continues
/// instead of starting over: how many times the message went round, whether it waited
/// for a runtime, and what is left to post. The ledger in Redis stays the authority on
/// what happened; this only saves work and carries what the ledger does not hold.
///
/// The attempt only grows, and only through [`Resume::next`]; a replay from the
/// parking lot moves the base the limit counts from ([`Resume::replayed`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "wire::ResumeWire", into = "wire::ResumeWire")]
pub struct Resume {
    attempt: u32,
    attempt_base: u32,
    /// The stage that asked for the retry; `None` on a copy whose failure message is
    /// pending (the wire's `stage` names that message instead) or whose stage this
    /// build does not know.
    pub stage: Option<RetryStage>,
    /// What is left to post, when only a post is left.
    pub pending: Option<Pending>,
    /// The delivery waited for a runtime at least once (counted `recovered` on reply).
    pub recovering: bool,
    /// A status message is visible in the conversation.
    pub status_posted: bool,
    /// Posts of the pending reply or failure message tried so far.
    pub reply_attempts: u32,
    /// The Spritz conversation's name once the API gave it, so a reply posted by a
    /// later attempt can still add its alias.
    pub conversation: Option<String>,
}

impl Resume {
    /// The state of the next copy, re-queued by `stage`: the one place an attempt
    /// grows (a retry through a delay tier and a lifecycle wake-up both go through it).
    #[must_use]
    pub fn next(&self, stage: RetryStage) -> Self {
        let mut next = self.clone();
        next.attempt = next.attempt.saturating_add(1);
        next.stage = Some(stage);
        next
    }

    /// Re-queues so far (1 on the first copy), never rewound: the ledger's wake-up
    /// generation compares against it.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Re-queues counted against the attempt limit, and shown by `dlq list`: those
    /// since the last replay.
    pub fn attempts_counted(&self) -> u32 {
        self.attempt.saturating_sub(self.attempt_base)
    }

    /// What a replay from the parking lot makes of this state: the attempt limit and
    /// the posts count afresh, everything learnt (a reply, a visible status message,
    /// the conversation) is kept.
    #[must_use]
    pub fn replayed(mut self) -> Self {
        self.attempt_base = self.attempt;
        self.reply_attempts = 0;
        self
    }

    /// The agent's reply, when posting it is what is left.
    pub fn reply_text(&self) -> Option<&str> {
        match &self.pending {
            Some(Pending::Reply(text)) => Some(text),
            _ => None,
        }
    }
}

impl JsonSchema for Resume {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Resume".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        wire::ResumeWire::json_schema(generator)
    }
}

#[cfg(test)]
mod tests;
