//! What the agent is sent (SPEC §5.3): a trusted context block saying where the
//! message came from, a blank line, then the user's text with the bot mention removed
//! (the gateway already removed it). Also the stable conversation name the worker
//! asks Spritz to use.

use serde::Serialize;
use spritz_proto::UserMessage;

#[derive(Serialize)]
struct ChannelContext<'a> {
    source: &'static str,
    provider: &'static str,
    workspace_id: &'a str,
    actor_user_id: &'a str,
    channel_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_type: Option<&'a str>,
    message_ts: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
    conversation_id: &'a str,
    direct_message: bool,
}

/// The prompt for `message` in `team_id`.
pub fn prompt_text(team_id: &str, message: &UserMessage) -> String {
    let context = ChannelContext {
        source: "spritz-slack-gateway",
        provider: "slack",
        workspace_id: team_id,
        actor_user_id: &message.user,
        channel_id: &message.channel,
        channel_type: non_empty(message.channel_type.as_ref()),
        message_ts: &message.ts,
        thread_ts: non_empty(message.thread_ts.as_ref()),
        conversation_id: message.external_conversation_id(),
        direct_message: message.is_direct_message(),
    };
    // Serialising a struct of strings and a bool cannot fail.
    let json = serde_json::to_string(&context).unwrap_or_default();
    format!(
        "<spritz-channel-context>{json}</spritz-channel-context>\n\n{}",
        message.text.trim()
    )
}

fn non_empty(value: Option<&String>) -> Option<&str> {
    value.map(String::as_str).filter(|v| !v.is_empty())
}

/// A stable, Kubernetes-name-safe conversation id for the message's conversation:
/// `slack-<team>-<channel>-<external id>`, lower case, `[a-z0-9-]`, at most 63 chars.
pub fn conversation_name(team_id: &str, message: &UserMessage) -> String {
    let raw = format!(
        "slack-{team_id}-{}-{}",
        message.channel,
        message.external_conversation_id()
    );
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use spritz_proto::UserMessageKind;

    use super::*;

    fn message(thread_ts: Option<&str>) -> UserMessage {
        UserMessage {
            event_type: UserMessageKind::AppMention,
            user: "U1".into(),
            channel: "C1".into(),
            channel_type: Some("channel".into()),
            ts: "1700000000.000100".into(),
            thread_ts: thread_ts.map(Into::into),
            text: "what is up?".into(),
            bot_user_id: Some("UBOT".into()),
        }
    }

    #[test]
    fn the_prompt_is_a_context_block_a_blank_line_and_the_text() {
        let text = prompt_text("T1", &message(None));
        let (block, rest) = text
            .split_once("</spritz-channel-context>\n\n")
            .expect("block");
        assert_eq!(rest, "what is up?");
        let json: serde_json::Value =
            serde_json::from_str(block.trim_start_matches("<spritz-channel-context>"))
                .expect("json");
        assert_eq!(json["source"], "spritz-slack-gateway");
        assert_eq!(json["workspace_id"], "T1");
        assert_eq!(json["conversation_id"], "1700000000.000100");
        assert_eq!(json["direct_message"], false);
        assert!(
            json.get("thread_ts").is_none(),
            "empty optional fields are omitted"
        );
    }

    #[test]
    fn conversation_names_are_stable_and_kubernetes_safe() {
        let name = conversation_name("T1", &message(Some("1700000000.000001")));
        assert_eq!(name, "slack-t1-c1-1700000000-000001");
        assert_eq!(
            name,
            conversation_name("T1", &message(Some("1700000000.000001")))
        );
    }
}
