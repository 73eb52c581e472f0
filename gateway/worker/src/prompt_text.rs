//! What the agent is sent (SPEC §5.3): a trusted context block saying where the
//! message came from, a blank line, then the user's text with the bot mention removed
//! (see [`UserMessage::prompt_text`]).

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

/// The prompt for `message` in `team_id`; `installed_bot` is the installation's bot
/// user, for a mention event that did not say which bot it named.
pub fn prompt_text(team_id: &str, message: &UserMessage, installed_bot: Option<&str>) -> String {
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
        message.prompt_text(installed_bot)
    )
}

fn non_empty(value: Option<&String>) -> Option<&str> {
    value.map(String::as_str).filter(|v| !v.is_empty())
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
            text: "<@UBOT> what is up?".into(),
            bot_user_id: Some("UBOT".into()),
        }
    }

    #[test]
    fn the_prompt_is_a_context_block_a_blank_line_and_the_text() {
        let text = prompt_text("T1", &message(None), None);
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
}
