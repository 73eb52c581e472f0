//! `slack.event.v1`: a Slack event the gateway accepted, as the worker needs it.
//!
//! The gateway does the filtering of SPEC §3 and publishes only what the worker acts
//! on: user messages to the bot (their text as the user wrote it; the worker removes
//! the bot mention, since it may know the bot from the installation where the event
//! did not say) and the two uninstall events. The raw Slack payload is not forwarded.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::message::version;
use crate::resume::Resume;

/// One accepted Slack event. `message_id` of the AMQP message is the Slack `event_id`,
/// so Slack's own retries of one event share a dedupe key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackEvent {
    #[serde(default = "version")]
    pub v: u32,
    /// When the gateway received the HTTP request; the worker's deadlines count from it.
    pub received_at: DateTime<Utc>,
    pub event_id: String,
    pub team_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise_id: Option<String>,
    /// Slack's `X-Slack-Retry-Num` / `X-Slack-Retry-Reason`, when this was a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_retry: Option<SlackRetry>,
    pub event: SlackEventKind,
    /// Where the worker left off, on a copy it re-queued through a delay tier. Absent
    /// on what the gateway publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

impl SlackEvent {
    pub fn new(
        received_at: DateTime<Utc>,
        event_id: String,
        team_id: String,
        event: SlackEventKind,
    ) -> Self {
        Self {
            v: version(),
            received_at,
            event_id,
            team_id,
            api_app_id: None,
            enterprise_id: None,
            slack_retry: None,
            event,
            resume: None,
        }
    }

    /// The user message, when this event is one.
    pub fn user_message(&self) -> Option<&UserMessage> {
        match &self.event {
            SlackEventKind::Message(message) => Some(message),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackRetry {
    pub num: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SlackEventKind {
    /// A user wrote to the bot (`message` in a DM, `app_mention` elsewhere).
    Message(UserMessage),
    /// The app was removed from the workspace: disconnect the installation.
    AppUninstalled,
    /// The workspace revoked the app's tokens: disconnect the installation.
    TokensRevoked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserMessageKind {
    Message,
    AppMention,
}

/// A user message addressed to the bot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserMessage {
    pub event_type: UserMessageKind,
    pub user: String,
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_type: Option<String>,
    pub ts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
    /// The user's text as written (with the bot mention); never empty once the
    /// mention is removed. [`UserMessage::prompt_text`] is what the agent gets.
    pub text: String,
    /// The bot user the message was addressed to, when Slack said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_user_id: Option<String>,
}

impl UserMessage {
    /// A direct or group-direct message (`im`/`mpim`, or a `D…` channel id).
    pub fn is_direct_message(&self) -> bool {
        is_direct_message(self.channel_type.as_deref(), &self.channel)
    }

    /// The id the conversation is known by at Spritz: the channel in a DM (one
    /// conversation per DM), else the thread, else the message itself (a new thread).
    pub fn external_conversation_id(&self) -> &str {
        if self.is_direct_message() {
            &self.channel
        } else {
            self.thread_ts.as_deref().unwrap_or(&self.ts)
        }
    }

    /// What the agent is asked: in a DM the text as written; elsewhere with the
    /// mention of the bot removed — the bot the event named, else `installed_bot` (the
    /// installation's `botUserId`), else every mention.
    pub fn prompt_text(&self, installed_bot: Option<&str>) -> String {
        if self.event_type == UserMessageKind::Message {
            return self.text.trim().to_owned();
        }
        let bot = self
            .bot_user_id
            .as_deref()
            .or(installed_bot)
            .filter(|b| !b.is_empty());
        crate::mention::remove_bot_mention(&self.text, bot)
    }

    /// The ledger key of this message: `team:channel:ts`.
    pub fn message_key(&self, team_id: &str) -> String {
        format!("{team_id}:{}:{}", self.channel, self.ts)
    }
}

/// Whether a channel is a direct conversation, from Slack's `channel_type` when given,
/// else from the channel id prefix.
pub fn is_direct_message(channel_type: Option<&str>, channel: &str) -> bool {
    match channel_type {
        Some("im") | Some("mpim") => true,
        Some(other) if !other.is_empty() => false,
        _ => channel.starts_with('D'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(channel: &str, channel_type: Option<&str>, thread_ts: Option<&str>) -> UserMessage {
        UserMessage {
            event_type: UserMessageKind::AppMention,
            user: "U1".into(),
            channel: channel.into(),
            channel_type: channel_type.map(Into::into),
            ts: "1700000000.000100".into(),
            thread_ts: thread_ts.map(Into::into),
            text: "hello".into(),
            bot_user_id: Some("UBOT".into()),
        }
    }

    #[test]
    fn conversation_id_is_the_channel_in_a_dm_the_thread_in_a_thread_else_the_message() {
        assert_eq!(
            message("D123", None, Some("1.2")).external_conversation_id(),
            "D123"
        );
        assert_eq!(
            message("G1", Some("mpim"), None).external_conversation_id(),
            "G1"
        );
        assert_eq!(
            message("C1", Some("channel"), Some("1.2")).external_conversation_id(),
            "1.2"
        );
        assert_eq!(
            message("C1", Some("channel"), None).external_conversation_id(),
            "1700000000.000100"
        );
    }

    #[test]
    fn the_prompt_keeps_a_dm_as_written_and_removes_the_bot_mention_elsewhere() {
        let mut dm = message("D1", Some("im"), None);
        dm.event_type = UserMessageKind::Message;
        dm.text = " <@UBOT> hi ".into();
        assert_eq!(dm.prompt_text(Some("UBOT")), "<@UBOT> hi");

        let mut mention = message("C1", Some("channel"), None);
        mention.text = "<@UBOT> hi <@U2>".into();
        assert_eq!(mention.prompt_text(None), "hi <@U2>");
        mention.bot_user_id = None;
        assert_eq!(
            mention.prompt_text(Some("UBOT")),
            "hi <@U2>",
            "the installation's bot id is used when the event named none"
        );
        assert_eq!(
            mention.prompt_text(None),
            "hi",
            "every mention when no bot is known"
        );
    }

    #[test]
    fn explicit_channel_type_wins_over_the_id_prefix() {
        assert!(!is_direct_message(Some("channel"), "D1"));
        assert!(is_direct_message(Some(""), "D1"));
        assert!(!is_direct_message(None, "C1"));
    }

    #[test]
    fn a_slack_event_round_trips_through_json() {
        let mut event = SlackEvent::new(
            Utc::now(),
            "Ev1".into(),
            "T1".into(),
            SlackEventKind::Message(message("C1", Some("channel"), None)),
        );
        event.slack_retry = Some(SlackRetry {
            num: 1,
            reason: Some("http_timeout".into()),
        });
        let mut resume = crate::Resume::default().next(crate::RetryStage::Reply);
        resume.pending = Some(crate::Pending::Reply("hi".into()));
        event.resume = Some(resume);
        let body = serde_json::to_vec(&event).expect("serialise");
        let back: SlackEvent = crate::decode(&body).expect("decode");
        assert_eq!(back, event);
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["v"], 1);
        assert_eq!(json["event"]["kind"], "message");
        assert_eq!(json["event"]["eventType"], "app_mention");
    }

    #[test]
    fn uninstall_events_round_trip() {
        for kind in [
            SlackEventKind::AppUninstalled,
            SlackEventKind::TokensRevoked,
        ] {
            let event = SlackEvent::new(Utc::now(), "Ev2".into(), "T1".into(), kind);
            let body = serde_json::to_vec(&event).expect("serialise");
            assert_eq!(crate::decode::<SlackEvent>(&body).expect("decode"), event);
        }
    }

    #[test]
    fn an_unknown_version_is_refused_not_guessed() {
        let body = br#"{"v":2,"receivedAt":"2026-01-01T00:00:00Z","eventId":"E","teamId":"T","event":{"kind":"app_uninstalled"}}"#;
        let error = crate::decode::<SlackEvent>(body).expect_err("v2 must be refused");
        assert!(matches!(error, crate::DecodeError::UnknownVersion(2)));
        let error = crate::decode::<SlackEvent>(br#"{"teamId":"T"}"#).expect_err("no version");
        assert!(matches!(error, crate::DecodeError::MissingVersion));
        let error = crate::decode::<SlackEvent>(b"garbage").expect_err("garbage");
        assert_eq!(error.reason(), "malformed");
    }
}
