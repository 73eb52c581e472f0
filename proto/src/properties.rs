//! AMQP properties of every message: persistent, JSON, `message_id` (the dedupe key),
//! `type`, `timestamp`, a `traceparent` header, and the `x-spritz-*` headers that retry
//! and parking-lot copies carry.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::message::MessageType;
use crate::traceparent::TraceParent;

/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// Slack's retry counter and reason, copied from the HTTP request.
pub const SLACK_RETRY_NUM: &str = "x-slack-retry-num";
pub const SLACK_RETRY_REASON: &str = "x-slack-retry-reason";
/// How many times the worker re-queued this message through a delay tier.
pub const ATTEMPT: &str = "x-spritz-attempt";
/// Why a message was parked (fixed, short reason; never message text).
pub const PARK_REASON: &str = "x-spritz-park-reason";
/// Where a parked message came from, so `dlq replay` can send it back.
pub const ORIGIN_EXCHANGE: &str = "x-spritz-origin-exchange";
pub const ORIGIN_ROUTING_KEY: &str = "x-spritz-origin-routing-key";
/// Unix seconds when a message was parked.
pub const PARKED_AT: &str = "x-spritz-parked-at";

const PERSISTENT: u8 = 2;

/// The properties a message is published with. Build with [`Envelope::new`], add
/// headers, then [`Envelope::properties`].
#[derive(Clone, Debug)]
pub struct Envelope {
    pub message_id: String,
    pub message_type: MessageType,
    pub traceparent: TraceParent,
    pub headers: FieldTable,
    /// Unix seconds; defaults to now.
    pub timestamp: u64,
}

impl Envelope {
    pub fn new(
        message_id: impl Into<String>,
        message_type: MessageType,
        traceparent: TraceParent,
    ) -> Self {
        Self {
            message_id: message_id.into(),
            message_type,
            traceparent,
            headers: FieldTable::default(),
            timestamp: now_unix(),
        }
    }

    /// Adds a string header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(
            ShortString::from(name),
            AMQPValue::LongString(LongString::from(value.into())),
        );
        self
    }

    /// Adds an integer header.
    pub fn with_number(mut self, name: &str, value: i64) -> Self {
        self.headers
            .insert(ShortString::from(name), AMQPValue::LongLongInt(value));
        self
    }

    pub fn properties(&self) -> BasicProperties {
        let mut headers = self.headers.clone();
        headers.insert(
            ShortString::from(TRACEPARENT),
            AMQPValue::LongString(LongString::from(self.traceparent.to_string())),
        );
        BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(self.message_id.as_str()))
            .with_type(ShortString::from(self.message_type.as_str()))
            .with_timestamp(self.timestamp)
            .with_headers(headers)
    }

    /// A copy of a received message's envelope: same id, type and headers, the trace
    /// continued. Used for retry and parking-lot copies.
    pub fn derived_from(properties: &BasicProperties, fallback_type: MessageType) -> Self {
        let traceparent = traceparent(properties)
            .map(|t| t.child())
            .unwrap_or_else(TraceParent::new_root);
        let message_type = properties
            .kind()
            .as_ref()
            .and_then(|t| MessageType::parse(t.as_str()))
            .unwrap_or(fallback_type);
        let mut headers = properties.headers().clone().unwrap_or_default();
        let mut kept = FieldTable::default();
        for (key, value) in headers.inner() {
            if key.as_str() != TRACEPARENT {
                kept.insert(key.clone(), value.clone());
            }
        }
        headers = kept;
        Self {
            message_id: message_id(properties).unwrap_or_default(),
            message_type,
            traceparent,
            headers,
            timestamp: properties.timestamp().unwrap_or_else(now_unix),
        }
    }
}

/// The `message_id` property.
pub fn message_id(properties: &BasicProperties) -> Option<String> {
    properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
}

/// A string header (long or short string).
pub fn header_str(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(value) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

/// An integer header, whatever integer width the publisher chose.
pub fn header_i64(properties: &BasicProperties, name: &str) -> Option<i64> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// The `traceparent` header, when present and well formed.
pub fn traceparent(properties: &BasicProperties) -> Option<TraceParent> {
    header_str(properties, TRACEPARENT).and_then(|h| TraceParent::parse(&h))
}

/// `properties` with `trace` as their `traceparent` header, replacing any: for a
/// delivery that came without a usable one, so that the copies derived from it
/// ([`Envelope::derived_from`]) continue the trace it was handled under.
pub fn with_traceparent(properties: BasicProperties, trace: &TraceParent) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        ShortString::from(TRACEPARENT),
        AMQPValue::LongString(LongString::from(trace.to_string())),
    );
    properties.with_headers(headers)
}

/// How many times the broker redelivered this message after a consumer died or
/// rejected it (quorum queues count this in `x-delivery-count`).
pub fn delivery_count(properties: &BasicProperties) -> i64 {
    header_i64(properties, "x-delivery-count").unwrap_or(0)
}

fn now_unix() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_persistent_json_with_id_type_timestamp_and_trace() {
        let trace = TraceParent::new_root();
        let envelope = Envelope::new("Ev1", MessageType::SlackEvent, trace.clone())
            .with_header(SLACK_RETRY_REASON, "http_timeout")
            .with_number(ATTEMPT, 3);
        let props = envelope.properties();
        assert_eq!(*props.delivery_mode(), Some(2));
        assert_eq!(message_id(&props).as_deref(), Some("Ev1"));
        assert_eq!(
            props.kind().as_ref().map(|k| k.as_str()),
            Some("slack.event.v1")
        );
        assert!(props.timestamp().is_some());
        assert_eq!(traceparent(&props), Some(trace.clone()));
        assert_eq!(
            header_str(&props, SLACK_RETRY_REASON).as_deref(),
            Some("http_timeout")
        );
        assert_eq!(header_i64(&props, ATTEMPT), Some(3));

        let copy = Envelope::derived_from(&props, MessageType::Lifecycle);
        assert_eq!(copy.message_id, "Ev1");
        assert_eq!(copy.message_type, MessageType::SlackEvent);
        assert_eq!(copy.traceparent.trace_id(), trace.trace_id());
        assert_ne!(copy.traceparent, trace);
        assert_eq!(header_i64(&copy.properties(), ATTEMPT), Some(3));
    }

    #[test]
    fn a_delivery_given_a_traceparent_keeps_its_headers_and_its_copies_continue_it() {
        let mut headers = FieldTable::default();
        headers.insert(ShortString::from(ATTEMPT), AMQPValue::LongLongInt(2));
        let bare = BasicProperties::default().with_headers(headers);
        assert_eq!(traceparent(&bare), None);

        let root = TraceParent::new_root();
        let props = with_traceparent(bare, &root);
        assert_eq!(traceparent(&props), Some(root.clone()));
        assert_eq!(header_i64(&props, ATTEMPT), Some(2));
        let copy = Envelope::derived_from(&props, MessageType::SlackEvent);
        assert_eq!(copy.traceparent.trace_id(), root.trace_id());
    }
}
