//! The trace of the message a task is handling (its W3C `traceparent`), so the calls
//! made for it carry the trace on to the backend and the Spritz API.
//!
//! A task-local rather than a parameter: the calls sit several layers below the
//! consumer (behind the session cache's single-flight exchange, inside the reply
//! stage's alias upsert), and threading a trace argument through every stage would
//! change every stage's signature for the sake of one header. The task that handles a
//! message sets it once ([`within`]); a client adds the header with [`carry`]. Work
//! moved to another task does not inherit it, and a call outside any message (none
//! today) simply goes without the header.

use lapin::BasicProperties;
use spritz_proto::properties::{self, TRACEPARENT};
use spritz_proto::traceparent::TraceParent;
use spritz_service::trace;

tokio::task_local! {
    static MESSAGE_TRACE: TraceParent;
}

/// The trace a delivery belongs to: its `traceparent` header, or a new root when the
/// header is missing or garbled (not an error: such a message is handled as usual).
pub fn of_delivery(properties: &BasicProperties) -> TraceParent {
    properties::traceparent(properties).unwrap_or_else(|| {
        tracing::debug!("delivery without a usable traceparent; starting a new trace");
        TraceParent::new_root()
    })
}

/// `properties` with the trace of [`of_delivery`] set as their header, so the retry
/// and parking-lot copies of a delivery that came without one continue the trace it
/// was logged under instead of each starting another.
pub fn ensure_header(properties: BasicProperties) -> BasicProperties {
    if properties::traceparent(&properties).is_some() {
        return properties;
    }
    let trace = of_delivery(&properties);
    properties::with_traceparent(properties, &trace)
}

/// Runs `work` as the handling of a message of `trace`.
pub async fn within<F: Future>(trace: TraceParent, work: F) -> F::Output {
    MESSAGE_TRACE.scope(trace, work).await
}

/// The trace of the message this task is handling, if any.
pub fn current() -> Option<TraceParent> {
    MESSAGE_TRACE.try_with(Clone::clone).ok()
}

/// The `traceparent` of a call made now for the current message: a child of its trace
/// (naming the current span when spans are exported). `None` outside a message.
pub fn outbound() -> Option<TraceParent> {
    current().map(|message| trace::outbound(&tracing::Span::current(), &message))
}

/// Adds [`outbound`] to an HTTP call; unchanged outside a message.
pub fn carry(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match outbound() {
        Some(call) => request.header(TRACEPARENT, call.to_string()),
        None => request,
    }
}

#[cfg(test)]
mod tests {
    use spritz_proto::MessageType;
    use spritz_proto::properties::Envelope;

    use super::*;

    #[test]
    fn a_delivery_without_a_usable_traceparent_gets_a_root_its_copies_continue() {
        let mut headers = lapin::types::FieldTable::default();
        headers.insert(
            TRACEPARENT.into(),
            lapin::types::AMQPValue::LongString("00-nonsense-01".into()),
        );
        let garbled = BasicProperties::default().with_headers(headers);
        for properties in [BasicProperties::default(), garbled] {
            let ensured = ensure_header(properties);
            let trace = properties::traceparent(&ensured).expect("a root");
            assert_eq!(of_delivery(&ensured), trace);
            let copy = Envelope::derived_from(&ensured, MessageType::SlackEvent);
            assert_eq!(copy.traceparent.trace_id(), trace.trace_id());
        }
    }

    #[test]
    fn a_delivery_with_a_traceparent_keeps_it() {
        let trace = TraceParent::new_root();
        let props = Envelope::new("Ev1", MessageType::SlackEvent, trace.clone()).properties();
        assert_eq!(properties::traceparent(&ensure_header(props)), Some(trace));
    }

    #[tokio::test]
    async fn calls_within_a_message_carry_a_child_of_its_trace_and_others_none() {
        let trace = TraceParent::new_root();
        let http = spritz_sandbox::tls::http_client();
        let header = |request: reqwest::RequestBuilder| {
            request
                .build()
                .expect("request")
                .headers()
                .get(TRACEPARENT)
                .map(|v| v.to_str().expect("ascii").to_owned())
        };
        assert_eq!(header(carry(http.get("http://127.0.0.1:9/"))), None);
        let inside = within(trace.clone(), async {
            header(carry(http.get("http://127.0.0.1:9/")))
        })
        .await
        .expect("a traceparent");
        let inside = TraceParent::parse(&inside).expect("well formed");
        assert_eq!(inside.trace_id(), trace.trace_id());
        assert_ne!(inside, trace);
    }
}
