//! Copies of a received message: a retry through a delay tier, a parking-lot copy, a
//! replay from the parking lot. One rule for which headers a copy keeps, and one for
//! the id of a message that came without one, whichever consumer makes the copy.

use lapin::BasicProperties;
use lapin::types::FieldTable;

use crate::ParkReason;
use crate::message::MessageType;
use crate::properties::{
    ATTEMPT, Envelope, ORIGIN_EXCHANGE, ORIGIN_ROUTING_KEY, PARK_REASON, PARKED_AT,
};

/// The headers a parking sets; a replay, or parking again, leaves them behind.
pub const PARKING_HEADERS: [&str; 4] =
    [PARK_REASON, ORIGIN_EXCHANGE, ORIGIN_ROUTING_KEY, PARKED_AT];

/// Headers the broker sets on a delivery. A copy must not carry them as its own: a
/// stale `x-delivery-count` would look like redeliveries of the copy.
fn is_broker_header(name: &str) -> bool {
    name == "x-death"
        || name == "x-delivery-count"
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// A copy of `original`: its id (a fresh one when it had none, so `dlq replay` can
/// name it), its type (`fallback_type` when it has none we know), timestamp and
/// headers, the trace continued; without the broker's headers and without `dropping`
/// (which the caller sets again, or wants gone).
pub fn copy_of(
    original: &BasicProperties,
    fallback_type: MessageType,
    dropping: &[&str],
) -> Envelope {
    let mut envelope = Envelope::derived_from(original, fallback_type);
    if envelope.message_id.is_empty() {
        envelope.message_id = format!("spritz-{}", uuid::Uuid::new_v4().simple());
    }
    let mut kept = FieldTable::default();
    for (key, value) in envelope.headers.inner() {
        let name = key.as_str();
        if !is_broker_header(name) && !dropping.contains(&name) {
            kept.insert(key.clone(), value.clone());
        }
    }
    envelope.headers = kept;
    envelope
}

/// The parking-lot copy of `original`: why it was parked, where a replay sends it
/// (`origin_exchange` with `origin_routing_key`) and when. An earlier parking's headers
/// and the attempt header are replaced.
pub fn parked_copy(
    original: &BasicProperties,
    fallback_type: MessageType,
    reason: ParkReason,
    origin_exchange: &str,
    origin_routing_key: &str,
) -> Envelope {
    let mut dropping = PARKING_HEADERS.to_vec();
    dropping.push(ATTEMPT);
    copy_of(original, fallback_type, &dropping)
        .with_header(PARK_REASON, reason.as_str())
        .with_header(ORIGIN_EXCHANGE, origin_exchange)
        .with_header(ORIGIN_ROUTING_KEY, origin_routing_key)
        .with_number(PARKED_AT, chrono::Utc::now().timestamp())
}

/// The copy a replay publishes: as parked, without the parking headers and without the
/// attempt header (a replay is the operator's decision to try again, so header-counted
/// retries start afresh).
pub fn replayed_copy(original: &BasicProperties, fallback_type: MessageType) -> Envelope {
    let mut dropping = PARKING_HEADERS.to_vec();
    dropping.push(ATTEMPT);
    copy_of(original, fallback_type, &dropping)
}

#[cfg(test)]
mod tests {
    use lapin::types::{AMQPValue, LongString, ShortString};

    use super::*;
    use crate::properties::header_str;

    fn received(headers: &[(&str, &str)]) -> BasicProperties {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert(
                ShortString::from(*name),
                AMQPValue::LongString(LongString::from(*value)),
            );
        }
        BasicProperties::default().with_headers(table)
    }

    #[test]
    fn a_copy_leaves_the_brokers_headers_and_the_dropped_ones_behind() {
        let original = received(&[
            ("x-death", "d"),
            ("x-delivery-count", "3"),
            ("x-first-death-queue", "q"),
            ("x-last-death-reason", "r"),
            (ATTEMPT, "2"),
            ("x-slack-retry-num", "1"),
        ]);
        let copy = copy_of(&original, MessageType::SlackEvent, &[ATTEMPT]).properties();
        for gone in [
            "x-death",
            "x-delivery-count",
            "x-first-death-queue",
            "x-last-death-reason",
            ATTEMPT,
        ] {
            assert_eq!(header_str(&copy, gone), None, "{gone}");
        }
        assert_eq!(header_str(&copy, "x-slack-retry-num").as_deref(), Some("1"));
    }

    #[test]
    fn a_message_without_an_id_gets_a_fresh_one_that_a_replay_keeps() {
        let parked = parked_copy(
            &received(&[]),
            MessageType::Lifecycle,
            ParkReason::LifecycleWebhookFailed,
            "",
            "q",
        );
        assert!(parked.message_id.starts_with("spritz-"));
        let replayed = replayed_copy(&parked.properties(), MessageType::SlackEvent);
        assert_eq!(replayed.message_id, parked.message_id);
        assert_eq!(
            replayed.message_type,
            MessageType::Lifecycle,
            "the type travels"
        );
    }

    #[test]
    fn parking_again_replaces_the_earlier_parking_and_a_replay_drops_it() {
        let first = parked_copy(
            &received(&[(ATTEMPT, "5")]),
            MessageType::SlackEvent,
            ParkReason::ReplyExhausted,
            "spritz.slack",
            "slack.event",
        );
        let props = first.properties();
        assert_eq!(header_str(&props, ATTEMPT), None);
        assert_eq!(
            header_str(&props, PARK_REASON).as_deref(),
            Some("reply_exhausted")
        );
        let again = parked_copy(
            &props,
            MessageType::SlackEvent,
            ParkReason::RecoveryDeadline,
            "spritz.slack",
            "slack.event",
        )
        .properties();
        assert_eq!(
            header_str(&again, PARK_REASON).as_deref(),
            Some("recovery_deadline")
        );
        let replayed = replayed_copy(&again, MessageType::SlackEvent).properties();
        for gone in PARKING_HEADERS {
            assert_eq!(header_str(&replayed, gone), None, "{gone}");
        }
    }
}
