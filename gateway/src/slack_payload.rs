//! Reading a Slack Events API payload and deciding what becomes of it (SPEC §3): a
//! `url_verification` challenge, an event to publish (normalised to `slack.event.v1`),
//! or an event to acknowledge and drop.
//!
//! Parsing is lenient about fields we do not use: Slack sends objects where other
//! events send strings (`channel` of `channel_created`), and a signed event of a kind we
//! ignore must still get its 200, not a 400 that makes Slack retry it.

use chrono::{DateTime, Utc};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use spritz_proto::slack_event::is_direct_message;
use spritz_proto::{SlackEvent, SlackEventKind, SlackRetry, UserMessage, UserMessageKind};

/// What to do with one request body.
#[derive(Debug, PartialEq)]
pub enum Classified {
    /// Answer the challenge (Slack checks the URL when the app is configured).
    UrlVerification { challenge: String },
    /// Publish this and answer 200 once the broker confirmed it.
    Publish(Box<SlackEvent>),
    /// Answer 200 `{"ok":true,"ignored":true}` and publish nothing.
    Ignored(IgnoreReason),
}

/// Why an event is not published; logged at debug level, never returned to Slack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// An envelope type other than `url_verification` / `event_callback`.
    EnvelopeType,
    /// An event type the worker does not act on.
    EventType,
    /// A message subtype (edits, joins, bot messages…), other than `file_share`.
    Subtype,
    /// Posted by a bot, possibly ourselves.
    FromBot,
    /// `user`, `channel`, `ts` or `team_id` is missing.
    Incomplete,
    /// `app_mention` in a DM or `message` outside one: Slack sends both for one mention.
    NotAddressedToBot,
    /// Nothing left once the mention is removed.
    EmptyText,
}

impl IgnoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::EnvelopeType => "envelope_type",
            IgnoreReason::EventType => "event_type",
            IgnoreReason::Subtype => "subtype",
            IgnoreReason::FromBot => "from_bot",
            IgnoreReason::Incomplete => "incomplete",
            IgnoreReason::NotAddressedToBot => "not_addressed_to_bot",
            IgnoreReason::EmptyText => "empty_text",
        }
    }
}

/// A body that is not a Slack payload we can read: answered 400.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("the body is not a JSON object")]
    NotObject,
    #[error("the payload has no type")]
    NoType,
    #[error("url_verification without a challenge")]
    NoChallenge,
    #[error("event_callback without an event_id")]
    NoEventId,
    #[error("event_callback without an event")]
    NoEvent,
}

/// What the gateway knew about the request besides its body.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: DateTime<Utc>,
    pub retry: Option<SlackRetry>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default, rename = "type", deserialize_with = "text")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "text")]
    challenge: Option<String>,
    #[serde(default, deserialize_with = "text")]
    event_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    team_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    api_app_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    enterprise_id: Option<String>,
    #[serde(default, deserialize_with = "authorizations")]
    authorizations: Vec<Authorization>,
    #[serde(default)]
    event: Option<Event>,
}

#[derive(Deserialize)]
struct Authorization {
    #[serde(default, deserialize_with = "text")]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default, rename = "type", deserialize_with = "text")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "text")]
    subtype: Option<String>,
    #[serde(default, deserialize_with = "text")]
    bot_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    user: Option<String>,
    #[serde(default, deserialize_with = "text")]
    channel: Option<String>,
    #[serde(default, deserialize_with = "text")]
    channel_type: Option<String>,
    #[serde(default, deserialize_with = "text")]
    ts: Option<String>,
    #[serde(default, deserialize_with = "text")]
    thread_ts: Option<String>,
    #[serde(default, deserialize_with = "text")]
    text: Option<String>,
    #[serde(default, deserialize_with = "text")]
    team: Option<String>,
}

/// Decides what to do with a verified request body.
///
/// # Errors
/// [`PayloadError`] when the body is not a Slack payload (answered 400).
pub fn classify(body: &[u8], received: Received) -> Result<Classified, PayloadError> {
    // serde reads a struct from a JSON array too; Slack only sends objects.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(PayloadError::NotObject);
    }
    let envelope: Envelope = serde_json::from_slice(body).map_err(PayloadError::NotJson)?;
    match envelope.kind.as_deref() {
        None => Err(PayloadError::NoType),
        Some("url_verification") => match envelope.challenge {
            Some(challenge) => Ok(Classified::UrlVerification { challenge }),
            None => Err(PayloadError::NoChallenge),
        },
        Some("event_callback") => classify_callback(envelope, received),
        Some(_) => Ok(Classified::Ignored(IgnoreReason::EnvelopeType)),
    }
}

fn classify_callback(envelope: Envelope, received: Received) -> Result<Classified, PayloadError> {
    let event_id = non_empty(envelope.event_id).ok_or(PayloadError::NoEventId)?;
    let event = envelope.event.ok_or(PayloadError::NoEvent)?;
    let team_id = non_empty(envelope.team_id).or_else(|| non_empty(event.team.clone()));
    let bot_user_id = envelope
        .authorizations
        .into_iter()
        .next()
        .and_then(|a| non_empty(a.user_id));
    let kind = match event.kind.as_deref() {
        Some("app_uninstalled") => SlackEventKind::AppUninstalled,
        Some("tokens_revoked") => SlackEventKind::TokensRevoked,
        Some("message") => match user_message(event, UserMessageKind::Message, bot_user_id) {
            Ok(message) => SlackEventKind::Message(message),
            Err(reason) => return Ok(Classified::Ignored(reason)),
        },
        Some("app_mention") => {
            match user_message(event, UserMessageKind::AppMention, bot_user_id) {
                Ok(message) => SlackEventKind::Message(message),
                Err(reason) => return Ok(Classified::Ignored(reason)),
            }
        }
        _ => return Ok(Classified::Ignored(IgnoreReason::EventType)),
    };
    let Some(team_id) = team_id else {
        return Ok(Classified::Ignored(IgnoreReason::Incomplete));
    };
    let mut event = SlackEvent::new(received.at, event_id, team_id, kind);
    event.api_app_id = non_empty(envelope.api_app_id);
    event.enterprise_id = non_empty(envelope.enterprise_id);
    event.slack_retry = received.retry;
    Ok(Classified::Publish(Box::new(event)))
}

fn user_message(
    event: Event,
    event_type: UserMessageKind,
    bot_user_id: Option<String>,
) -> Result<UserMessage, IgnoreReason> {
    if let Some(subtype) = event.subtype.as_deref()
        && !subtype.is_empty()
        && subtype != "file_share"
    {
        return Err(IgnoreReason::Subtype);
    }
    if non_empty(event.bot_id).is_some() {
        return Err(IgnoreReason::FromBot);
    }
    let (Some(user), Some(channel), Some(ts)) = (
        non_empty(event.user),
        non_empty(event.channel),
        non_empty(event.ts),
    ) else {
        return Err(IgnoreReason::Incomplete);
    };
    let channel_type = non_empty(event.channel_type);
    let direct = is_direct_message(channel_type.as_deref(), &channel);
    let expected = if direct {
        UserMessageKind::Message
    } else {
        UserMessageKind::AppMention
    };
    if event_type != expected {
        return Err(IgnoreReason::NotAddressedToBot);
    }
    let message = UserMessage {
        event_type,
        user,
        channel,
        channel_type,
        ts,
        thread_ts: non_empty(event.thread_ts),
        text: event.text.unwrap_or_default(),
        bot_user_id,
    };
    // The worker removes the mention again, possibly knowing the bot better (from the
    // installation); here the text only has to be more than the mention.
    if message.prompt_text(None).is_empty() {
        return Err(IgnoreReason::EmptyText);
    }
    Ok(message)
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// A string field; any other JSON value (object, number, null) reads as absent.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_any(TextVisitor)
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Some(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(Some(value))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// `authorizations`, or nothing when Slack sent something other than a list.
fn authorizations<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Authorization>, D::Error> {
    struct AuthorizationsVisitor;

    impl<'de> Visitor<'de> for AuthorizationsVisitor {
        type Value = Vec<Authorization>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of authorizations")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<Option<Authorization>>()? {
                out.extend(item);
            }
            Ok(out)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Vec::new())
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }

    deserializer.deserialize_any(AuthorizationsVisitor)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn received() -> Received {
        Received {
            at: Utc::now(),
            retry: None,
        }
    }

    fn callback(event: Value) -> Value {
        json!({
            "type": "event_callback",
            "event_id": "Ev1",
            "team_id": "T1",
            "api_app_id": "A1",
            "authorizations": [{"user_id": "UBOT", "is_bot": true}],
            "event": event,
        })
    }

    fn classify_json(value: &Value) -> Classified {
        classify(value.to_string().as_bytes(), received()).expect("classify")
    }

    fn mention() -> Value {
        json!({"type": "app_mention", "user": "U1", "channel": "C1", "channel_type": "channel",
               "ts": "1.000100", "text": "<@UBOT> hello there"})
    }

    fn published(classified: Classified) -> SlackEvent {
        match classified {
            Classified::Publish(event) => *event,
            other => panic!("expected a publish, got {other:?}"),
        }
    }

    #[test]
    fn a_channel_mention_is_published_as_written_with_the_bot_it_named() {
        let event = published(classify_json(&callback(mention())));
        assert_eq!(event.event_id, "Ev1");
        assert_eq!(event.team_id, "T1");
        assert_eq!(event.api_app_id.as_deref(), Some("A1"));
        let message = event.user_message().expect("message");
        assert_eq!(message.text, "<@UBOT> hello there");
        assert_eq!(message.prompt_text(None), "hello there");
        assert_eq!(message.event_type, UserMessageKind::AppMention);
        assert_eq!(message.bot_user_id.as_deref(), Some("UBOT"));
    }

    #[test]
    fn a_direct_message_keeps_a_mention_as_written() {
        let dm = json!({"type": "message", "user": "U1", "channel": "D1", "channel_type": "im",
                        "ts": "1.1", "text": "<@UBOT> hi"});
        let event = published(classify_json(&callback(dm)));
        let message = event.user_message().expect("message");
        assert_eq!(message.text, "<@UBOT> hi");
        assert_eq!(message.prompt_text(Some("UBOT")), "<@UBOT> hi");
    }

    #[test]
    fn a_direct_message_is_published_and_its_app_mention_twin_ignored() {
        let dm = json!({"type": "message", "user": "U1", "channel": "D1", "channel_type": "im",
                        "ts": "1.1", "text": "hi"});
        let message = published(classify_json(&callback(dm.clone())));
        assert!(message.user_message().expect("message").is_direct_message());
        let mut twin = dm;
        twin["type"] = json!("app_mention");
        assert_eq!(
            classify_json(&callback(twin)),
            Classified::Ignored(IgnoreReason::NotAddressedToBot)
        );
    }

    #[test]
    fn filtered_kinds_are_ignored_with_their_reason() {
        let cases = [
            (json!({"subtype": "message_changed"}), IgnoreReason::Subtype),
            (json!({"bot_id": "B1"}), IgnoreReason::FromBot),
            (json!({"user": ""}), IgnoreReason::Incomplete),
            (json!({"ts": null}), IgnoreReason::Incomplete),
            (json!({"text": "<@UBOT>  "}), IgnoreReason::EmptyText),
            (json!({"type": "message"}), IgnoreReason::NotAddressedToBot),
            (json!({"type": "reaction_added"}), IgnoreReason::EventType),
            (
                json!({"type": "channel_created", "channel": {"id": "C9"}}),
                IgnoreReason::EventType,
            ),
        ];
        for (patch, reason) in cases {
            let mut event = mention();
            for (key, value) in patch.as_object().expect("object") {
                event[key] = value.clone();
            }
            assert_eq!(
                classify_json(&callback(event)),
                Classified::Ignored(reason),
                "{patch}"
            );
        }
        let mut no_team = callback(mention());
        no_team["team_id"] = Value::Null;
        assert_eq!(
            classify_json(&no_team),
            Classified::Ignored(IgnoreReason::Incomplete)
        );
        assert_eq!(
            classify_json(&json!({"type": "app_rate_limited"})),
            Classified::Ignored(IgnoreReason::EnvelopeType)
        );
    }

    #[test]
    fn file_shares_count_as_user_messages() {
        let mut event = mention();
        event["subtype"] = json!("file_share");
        assert!(matches!(
            classify_json(&callback(event)),
            Classified::Publish(_)
        ));
    }

    #[test]
    fn uninstall_events_are_published() {
        for kind in ["app_uninstalled", "tokens_revoked"] {
            let event = published(classify_json(&callback(json!({"type": kind}))));
            assert!(event.user_message().is_none());
        }
    }

    #[test]
    fn odd_shapes_of_unused_fields_do_not_make_a_payload_unreadable() {
        let mut body = callback(mention());
        body["authorizations"] = json!({"user_id": "UBOT"});
        body["enterprise_id"] = Value::Null;
        body["event"]["team"] = json!({"id": "T1"});
        body["event"]["thread_ts"] = json!(12);
        let event = published(classify_json(&body));
        assert_eq!(event.enterprise_id, None);
        assert_eq!(event.user_message().expect("message").thread_ts, None);
        body["authorizations"] = json!([null, {"user_id": 7}]);
        assert!(matches!(classify_json(&body), Classified::Publish(_)));
    }

    #[test]
    fn without_authorizations_the_bot_is_left_for_the_worker_to_learn() {
        let mut body = callback(mention());
        body.as_object_mut()
            .expect("object")
            .remove("authorizations");
        body["event"]["text"] = json!("<@UOTHER> <@UBOT> hi");
        let event = published(classify_json(&body));
        let message = event.user_message().expect("message");
        assert_eq!(message.text, "<@UOTHER> <@UBOT> hi");
        assert_eq!(message.bot_user_id, None);
        assert_eq!(message.prompt_text(Some("UBOT")), "<@UOTHER>   hi");
        assert_eq!(message.prompt_text(None), "hi");

        body["event"]["text"] = json!("<@UOTHER> <@UBOT>");
        assert_eq!(
            classify_json(&body),
            Classified::Ignored(IgnoreReason::EmptyText),
            "nothing but mentions is empty when the bot is unknown"
        );
    }

    #[test]
    fn url_verification_returns_the_challenge_and_malformed_payloads_are_errors() {
        assert_eq!(
            classify_json(&json!({"type": "url_verification", "challenge": "abc"})),
            Classified::UrlVerification {
                challenge: "abc".into()
            }
        );
        assert!(matches!(
            classify(b"{not json", received()),
            Err(PayloadError::NotJson(_))
        ));
        assert!(matches!(
            classify(b"[]", received()),
            Err(PayloadError::NotObject)
        ));
        assert!(matches!(
            classify(b"{}", received()),
            Err(PayloadError::NoType)
        ));
        let mut no_id = callback(mention());
        no_id["event_id"] = json!("");
        assert!(matches!(
            classify(no_id.to_string().as_bytes(), received()),
            Err(PayloadError::NoEventId)
        ));
    }

    #[test]
    fn retry_information_and_enterprise_are_carried() {
        let mut body = callback(mention());
        body["enterprise_id"] = json!("E1");
        let retry = SlackRetry {
            num: 2,
            reason: Some("http_timeout".into()),
        };
        let received = Received {
            at: Utc::now(),
            retry: Some(retry.clone()),
        };
        let event = published(classify(body.to_string().as_bytes(), received).expect("classify"));
        assert_eq!(event.slack_retry, Some(retry));
        assert_eq!(event.enterprise_id.as_deref(), Some("E1"));
    }
}
