//! `POST /slack/events`: verify, classify, publish, and answer 200 only once the broker
//! confirmed the message (SPEC §3). Every failure is answered by [`Error`]'s status.
//!
//! Each request is handled in a `slack_event` span; once the request turns out to be
//! an event to publish, the span gets the event's ids and the `trace_id` of the trace
//! the event starts, which the message carries on as its `traceparent`.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use secrecy::ExposeSecret;
use spritz_proto::message::MessageType;
use spritz_proto::properties::{Envelope, SLACK_RETRY_NUM, SLACK_RETRY_REASON};
use spritz_proto::slack_signature;
use spritz_proto::topology::{WORK_EXCHANGE, WORK_ROUTING_KEY};
use spritz_proto::traceparent::TraceParent;
use spritz_proto::{SlackEvent, SlackRetry};
use spritz_service::trace;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::app_state::AppState;
use crate::error::{Error, Result};
use crate::slack_payload::{Classified, Received, classify};

const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
const SIGNATURE_HEADER: &str = "x-slack-signature";
const RETRY_NUM_HEADER: &str = "x-slack-retry-num";
const RETRY_REASON_HEADER: &str = "x-slack-retry-reason";

/// Slack's request body limit for Events API callbacks is far below this.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What a request that did not fail is answered.
enum Answer {
    Challenge(String),
    Queued,
    Ignored,
}

impl Answer {
    fn outcome(&self) -> &'static str {
        match self {
            Answer::Challenge(_) => "challenge",
            Answer::Queued => "queued",
            Answer::Ignored => "ignored",
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Challenge(challenge) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                challenge,
            )
                .into_response(),
            Answer::Queued => json(r#"{"ok":true}"#),
            Answer::Ignored => json(r#"{"ok":true,"ignored":true}"#),
        }
    }
}

fn json(body: &'static str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

pub(crate) async fn slack_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let span = tracing::info_span!(
        "slack_event",
        trace_id = Empty,
        event_id = Empty,
        team_id = Empty,
        channel_id = Empty,
        message_ts = Empty,
    );
    answer(state, headers, body).instrument(span).await
}

async fn answer(
    state: AppState,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let (outcome, response) = match receive(&state, &headers, body).await {
        Ok(answer) => (answer.outcome(), answer.into_response()),
        Err(error) => {
            if let Error::NotQueued(publish) = &error {
                state.metrics().publish_failed(publish.reason());
            }
            (error.outcome(), error.into_response())
        }
    };
    state.metrics().event_answered(outcome, started.elapsed());
    response
}

async fn receive(
    state: &AppState,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Answer> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge
        } else {
            Error::Body(rejection)
        }
    })?;
    let received_at = Utc::now();
    slack_signature::verify(
        state.signing_secret().expose_secret().as_bytes(),
        header_str(headers, TIMESTAMP_HEADER),
        header_str(headers, SIGNATURE_HEADER),
        &body,
        received_at.timestamp(),
    )?;
    let received = Received {
        at: received_at,
        retry: slack_retry(headers),
    };
    match classify(&body, received)? {
        Classified::UrlVerification { challenge } => Ok(Answer::Challenge(challenge)),
        Classified::Ignored(reason) => {
            tracing::debug!(reason = reason.as_str(), "slack event ignored");
            Ok(Answer::Ignored)
        }
        Classified::Publish(event) => {
            let span = tracing::Span::current();
            span.record("event_id", event.event_id.as_str());
            span.record("team_id", event.team_id.as_str());
            if let Some(message) = event.user_message() {
                span.record("channel_id", message.channel.as_str());
                span.record("message_ts", message.ts.as_str());
            }
            let trace = trace::start(&span);
            span.record("trace_id", trace.trace_id());
            publish(state, &event, trace, state.publish_timeout()).await?;
            Ok(Answer::Queued)
        }
    }
}

/// Publishes one accepted event to the work exchange, confirmed, carrying `trace`.
async fn publish(
    state: &AppState,
    event: &SlackEvent,
    trace: TraceParent,
    timeout: Duration,
) -> Result<()> {
    let body = serde_json::to_vec(event).map_err(Error::Encode)?;
    let mut envelope = Envelope::new(event.event_id.as_str(), MessageType::SlackEvent, trace);
    if let Some(retry) = &event.slack_retry {
        envelope = envelope.with_number(SLACK_RETRY_NUM, i64::from(retry.num));
        if let Some(reason) = &retry.reason {
            envelope = envelope.with_header(SLACK_RETRY_REASON, reason.as_str());
        }
    }
    state
        .broker()
        .publish_within(WORK_EXCHANGE, WORK_ROUTING_KEY, &body, &envelope, timeout)
        .await?;
    tracing::info!("slack event queued");
    Ok(())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Slack's retry headers, when the number parses (a garbled header is not a retry).
fn slack_retry(headers: &HeaderMap) -> Option<SlackRetry> {
    let num = header_str(headers, RETRY_NUM_HEADER)?.trim().parse().ok()?;
    let reason = header_str(headers, RETRY_REASON_HEADER)
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    Some(SlackRetry { num, reason })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn retry_headers_are_read_when_the_number_parses() {
        let mut headers = HeaderMap::new();
        assert_eq!(slack_retry(&headers), None);
        headers.insert(RETRY_NUM_HEADER, HeaderValue::from_static("2"));
        headers.insert(
            RETRY_REASON_HEADER,
            HeaderValue::from_static("http_timeout"),
        );
        assert_eq!(
            slack_retry(&headers),
            Some(SlackRetry {
                num: 2,
                reason: Some("http_timeout".into())
            })
        );
        headers.insert(RETRY_NUM_HEADER, HeaderValue::from_static("two"));
        assert_eq!(slack_retry(&headers), None);
    }
}
