//! The one error type of the gateway, and the one place errors become HTTP answers:
//! the status and an opaque message go to the client, the cause chain to the log.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use spritz_proto::slack_signature::SignatureError;
use spritz_service::PublishError;

use crate::oauth_state::StateError;
use crate::slack_payload::PayloadError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the request signature was rejected")]
    Unauthorized(#[from] SignatureError),
    #[error("the request body is larger than the limit")]
    TooLarge,
    #[error("the request body could not be read")]
    Body(#[source] axum::extract::rejection::BytesRejection),
    #[error("the request body is not a Slack payload")]
    Payload(#[from] PayloadError),
    #[error("the event was not durably queued")]
    NotQueued(#[from] PublishError),
    #[error("the message could not be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("the OAuth state was rejected")]
    State(#[from] StateError),
    #[error("the install was not authorised in Slack ({0})")]
    InstallDenied(String),
    #[error("the OAuth callback has no code")]
    MissingCode,
    #[error("Slack refused the code exchange ({0})")]
    SlackRefused(String),
    #[error("calling {0} failed")]
    Upstream(&'static str, #[source] reqwest::Error),
    #[error("the backend refused the installation: {0}")]
    Backend(String),
    #[error("the HTTP client could not be built")]
    HttpClient(#[source] reqwest::Error),
    #[error("cannot listen on {1}")]
    Bind(#[source] std::io::Error, SocketAddr),
    #[error("metrics could not be registered")]
    Metrics(#[from] prometheus::Error),
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    #[error("the process shell could not start")]
    Shell(#[from] spritz_service::process::ShellError),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Body(_)
            | Error::Payload(_)
            | Error::State(_)
            | Error::InstallDenied(_)
            | Error::MissingCode => StatusCode::BAD_REQUEST,
            Error::NotQueued(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::SlackRefused(_) | Error::Upstream(..) | Error::Backend(_) => {
                StatusCode::BAD_GATEWAY
            }
            Error::Encode(_)
            | Error::HttpClient(_)
            | Error::Bind(..)
            | Error::Metrics(_)
            | Error::Serve(_)
            | Error::Shell(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `outcome` label of `spritz_gateway_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "error",
        }
    }

    /// What the client is told: enough to act on, nothing about our internals.
    fn public_message(&self) -> &'static str {
        match self {
            Error::Unauthorized(_) => "invalid request signature",
            Error::TooLarge => "request body too large",
            Error::Body(_) | Error::Payload(_) => "request body is not a Slack event payload",
            Error::NotQueued(_) => "event not queued, retry later",
            Error::State(StateError::Expired) => {
                "This install link has expired. Please start the installation again."
            }
            Error::State(_) => {
                "This install link is not valid. Please start the installation again."
            }
            Error::InstallDenied(_) => "The installation was cancelled in Slack.",
            Error::MissingCode => {
                "The install callback is missing its code. Please start the installation again."
            }
            Error::SlackRefused(_) | Error::Upstream(..) | Error::Backend(_) => {
                "The installation could not be completed. Please try again."
            }
            _ => "internal error",
        }
    }

    fn cause_chain(&self) -> String {
        let mut chain = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        chain
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self.cause_chain(), "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self.cause_chain(), "request refused");
        }
        (status, self.public_message()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_outcomes_follow_spec() {
        assert_eq!(
            Error::Unauthorized(SignatureError::Stale).outcome(),
            "unauthorized"
        );
        assert_eq!(Error::TooLarge.status(), StatusCode::PAYLOAD_TOO_LARGE);
        for not_queued in [
            PublishError::Unavailable,
            PublishError::Nacked,
            PublishError::Returned("NO_ROUTE".into()),
            PublishError::Timeout(std::time::Duration::from_secs(2)),
        ] {
            let error = Error::NotQueued(not_queued);
            assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE, "{error:?}");
            assert_eq!(error.outcome(), "unavailable");
        }
        assert_eq!(Error::State(StateError::Expired).outcome(), "bad_request");
        assert_eq!(Error::Backend("x".into()).outcome(), "error");
    }

    #[test]
    fn the_cause_chain_includes_sources() {
        let error = Error::Payload(PayloadError::NoEventId);
        assert_eq!(
            error.cause_chain(),
            "the request body is not a Slack payload: event_callback without an event_id"
        );
    }
}
