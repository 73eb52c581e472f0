//! Removing the bot mention from a user's text, so the agent sees what the user wrote
//! to it rather than Slack's `<@U…>` markup. The gateway uses it to drop a mention with
//! nothing else in it; the worker to build the prompt, when it may know the bot from
//! the installation where the event did not say.

/// Removes every mention of `bot_user_id` (`<@UBOT>` or `<@UBOT|name>`), or, when the
/// bot is unknown, every user mention, leaving a space where each was (`a<@UBOT>b`
/// reads `a b`, as the original gateway's token replacement does); then trims. An
/// empty result means the user sent nothing but the mention.
pub fn remove_bot_mention(text: &str, bot_user_id: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let token = &rest[start + 2..start + len];
        let mentioned = token.split('|').next().unwrap_or_default();
        out.push_str(&rest[..start]);
        let is_bot = bot_user_id.is_none_or(|bot| bot == mentioned);
        if is_bot {
            out.push(' ');
        } else {
            out.push_str(&rest[start..=start + len]);
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_bot_mention_is_removed_and_other_mentions_kept() {
        assert_eq!(
            remove_bot_mention("<@UBOT> hello <@U2>", Some("UBOT")),
            "hello <@U2>"
        );
        assert_eq!(
            remove_bot_mention("hi <@UBOT|spritz>, how?", Some("UBOT")),
            "hi  , how?"
        );
        assert_eq!(
            remove_bot_mention("<@UBOT> a <@UBOT> b", Some("UBOT")),
            "a   b"
        );
    }

    #[test]
    fn a_removed_mention_leaves_a_space() {
        assert_eq!(remove_bot_mention("a<@U1>b", Some("U1")), "a b");
        assert_eq!(remove_bot_mention("a<@U1>b", None), "a b");
    }

    #[test]
    fn every_mention_is_removed_when_the_bot_is_unknown() {
        assert_eq!(remove_bot_mention("<@UBOT> hello <@U2>", None), "hello");
    }

    #[test]
    fn a_message_of_only_the_mention_is_empty() {
        assert_eq!(remove_bot_mention("  <@UBOT>  ", Some("UBOT")), "");
        assert_eq!(remove_bot_mention("<@U1><@U2>", None), "");
    }

    #[test]
    fn unclosed_markup_and_plain_text_pass_through() {
        assert_eq!(remove_bot_mention("a <@UBOT", Some("UBOT")), "a <@UBOT");
        assert_eq!(remove_bot_mention(" plain ", None), "plain");
        assert_eq!(
            remove_bot_mention("déjà <@UBOT> vu", Some("UBOT")),
            "déjà   vu"
        );
    }
}
