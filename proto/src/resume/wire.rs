//! The JSON shape of [`Resume`], exactly as every release wrote it: one `stage` string
//! that names the retry stage or, on a copy whose failure message is still to be
//! posted, that message (`terminal-failure`, `internal-error`), and the agent's reply
//! in `replyText`. Kept apart so the typed state can change without the wire changing,
//! and so copies written by older and newer workers keep decoding.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Pending, Resume, RetryStage};

/// `stage` of a copy whose terminal failure message is still to be posted.
const TERMINAL_FAILURE: &str = "terminal-failure";
/// `stage` of a copy whose internal-error message is still to be posted.
const INTERNAL_ERROR: &str = "internal-error";

/// Worker retry state carried on a re-queued copy, so the next attempt continues
/// instead of starting over: how many times the message went round, whether it waited
/// for a runtime, and the agent's reply when only posting it is left (the agent is
/// never prompted twice). The ledger in Redis stays the authority on what happened;
/// this only saves work and carries what the ledger does not hold.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResumeWire {
    /// Re-queues so far (1 on the first copy).
    attempt: u32,
    /// The stage that asked for the retry (`session`, `conversation_busy`, `reply`,
    /// `disconnect`, `ledger`), or the failure message still to be posted
    /// (`terminal-failure`, `internal-error`). A name a reader does not know is read as
    /// no stage.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    stage: String,
    /// The delivery waited for a runtime at least once (counted `recovered` on reply).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    recovering: bool,
    /// A status message is visible in the conversation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    status_posted: bool,
    /// The agent's reply, when the prompt is done and only the post is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_text: Option<String>,
    /// Reply posts tried so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    reply_attempts: u32,
    /// The Spritz conversation's name once the API gave it, so a reply posted by a
    /// later attempt can still add its alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation: Option<String>,
    /// `attempt` when the message was last replayed from the parking lot: the attempt
    /// limit counts from here, while `attempt` itself only grows (a wake-up's
    /// supersede generation compares against it).
    #[serde(default, skip_serializing_if = "is_zero")]
    attempt_base: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

impl From<ResumeWire> for Resume {
    fn from(wire: ResumeWire) -> Self {
        // A pending failure message wins over a reply text, as the worker has always
        // read it (no release writes both).
        let (stage, pending) = match wire.stage.as_str() {
            TERMINAL_FAILURE => (None, Some(Pending::TerminalFailure)),
            INTERNAL_ERROR => (None, Some(Pending::InternalError)),
            other => (
                RetryStage::parse(other),
                wire.reply_text.map(Pending::Reply),
            ),
        };
        Resume {
            attempt: wire.attempt,
            attempt_base: wire.attempt_base,
            stage,
            pending,
            recovering: wire.recovering,
            status_posted: wire.status_posted,
            reply_attempts: wire.reply_attempts,
            conversation: wire.conversation,
        }
    }
}

impl From<Resume> for ResumeWire {
    fn from(resume: Resume) -> Self {
        let stage = resume.stage.map(RetryStage::as_str).unwrap_or_default();
        let (stage, reply_text) = match resume.pending {
            Some(Pending::TerminalFailure) => (TERMINAL_FAILURE, None),
            Some(Pending::InternalError) => (INTERNAL_ERROR, None),
            Some(Pending::Reply(text)) => (stage, Some(text)),
            None => (stage, None),
        };
        ResumeWire {
            attempt: resume.attempt,
            stage: stage.to_owned(),
            recovering: resume.recovering,
            status_posted: resume.status_posted,
            reply_text,
            reply_attempts: resume.reply_attempts,
            conversation: resume.conversation,
            attempt_base: resume.attempt_base,
        }
    }
}
