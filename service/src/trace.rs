//! Joins the spans of one Slack event to one trace: the W3C `traceparent` a message
//! carries (SPEC §4) names the trace, every process logs its id as the `trace_id`
//! field of the span that handles the message, and — with OTLP export on
//! ([`crate::telemetry`]) — the exported spans take it as their trace, so the
//! gateway's and the worker's spans of one event show up as one trace.
//!
//! Without export these functions do no OpenTelemetry work at all: the `trace_id`
//! field is all there is, and derived traceparents get fresh parent ids.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use spritz_proto::traceparent::TraceParent;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::telemetry;

/// The trace `span` starts, for a span that handles something with no trace yet (an
/// inbound Slack event). With export on, the traceparent names `span` itself, so what
/// carries it (the queued message) hangs under the span in the tracing backend;
/// without export (or when the filter disabled `span`), a new random root.
pub fn start(span: &Span) -> TraceParent {
    exported_traceparent(span).unwrap_or_else(TraceParent::new_root)
}

/// Makes `span` part of `trace`: with export on, the exported span is a child of the
/// span `trace` names. Call before `span` is first entered; a no-op without export.
pub fn continue_trace(span: &Span, trace: &TraceParent) {
    if !telemetry::exporting() {
        return;
    }
    let Some(parent) = span_context(trace) else {
        return;
    };
    let context = opentelemetry::Context::new().with_remote_span_context(parent);
    if let Err(error) = span.set_parent(context) {
        tracing::debug!(%error, "span not joined to the message's trace");
    }
}

/// The traceparent of a call made within `span`, which handles a message of `trace`:
/// with export on, it names `span` (the callee's spans hang under it); otherwise a
/// child of `trace` (same trace id, new parent id).
pub fn outbound(span: &Span, trace: &TraceParent) -> TraceParent {
    exported_traceparent(span)
        .filter(|exported| exported.trace_id_bytes() == trace.trace_id_bytes())
        .unwrap_or_else(|| trace.child())
}

/// `span`'s exported trace and span id, when export is on and `span` is enabled.
fn exported_traceparent(span: &Span) -> Option<TraceParent> {
    if !telemetry::exporting() || span.is_disabled() {
        return None;
    }
    let context = span.context();
    let exported = context.span().span_context().clone();
    if !exported.is_valid() {
        return None;
    }
    TraceParent::from_ids(
        exported.trace_id().to_bytes(),
        exported.span_id().to_bytes(),
    )
}

fn span_context(trace: &TraceParent) -> Option<SpanContext> {
    let context = SpanContext::new(
        TraceId::from_bytes(trace.trace_id_bytes()),
        SpanId::from_bytes(trace.parent_id_bytes()),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_export_a_call_gets_a_child_of_the_message_trace() {
        let trace = TraceParent::new_root();
        let span = tracing::info_span!("delivery");
        continue_trace(&span, &trace);
        let call = outbound(&span, &trace);
        assert_eq!(call.trace_id(), trace.trace_id());
        assert_ne!(call, trace);
        assert_ne!(start(&span).trace_id(), trace.trace_id());
    }

    #[test]
    fn with_export_the_spans_of_one_message_share_its_trace_and_calls_name_their_span() {
        let env = crate::config::Env::from_map([(telemetry::OTLP_ENDPOINT, "http://127.0.0.1:9")]);
        let export = telemetry::SpanExport::from_env(&env, "spritz-test")
            .expect("valid endpoint")
            .expect("export on");
        let subscriber = telemetry::get_subscriber_exporting("info", std::io::sink, Some(export));
        tracing::subscriber::with_default(subscriber, || {
            let exported = |span: &Span| span.context().span().span_context().clone();

            let gateway = tracing::info_span!("slack_event");
            let trace = start(&gateway);
            assert_eq!(
                exported(&gateway).trace_id().to_bytes(),
                trace.trace_id_bytes()
            );
            assert_eq!(
                exported(&gateway).span_id().to_bytes(),
                trace.parent_id_bytes()
            );

            let delivery = tracing::info_span!("delivery");
            continue_trace(&delivery, &trace);
            let worker = exported(&delivery);
            assert_eq!(worker.trace_id().to_bytes(), trace.trace_id_bytes());
            assert_ne!(worker.span_id().to_bytes(), trace.parent_id_bytes());

            let call = outbound(&delivery, &trace);
            assert_eq!(call.trace_id(), trace.trace_id());
            assert_eq!(call.parent_id_bytes(), worker.span_id().to_bytes());
        });
    }
}
