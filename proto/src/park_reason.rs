//! Why a message was parked: the value of the `x-spritz-park-reason` header that the
//! worker and backend sync write and `spritz-gateway dlq list` shows. One enum, so the
//! names an operator greps for (and docs/worker.md lists) cannot drift between the
//! places that park.

use crate::DecodeError;

/// Why a message went to the parking lot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParkReason {
    /// The body is not JSON of the expected shape.
    Malformed,
    /// The body names a version this build does not read.
    UnknownVersion,
    /// The body has no `v`.
    MissingVersion,
    /// The AMQP `type` is not the one the queue carries.
    UnexpectedType,
    /// The copy went round `SPRITZ_WORKER_MAX_ATTEMPTS` times since its last replay.
    AttemptsExhausted,
    /// The recovery deadline passed and nobody can be told (no bot token).
    RecoveryDeadline,
    /// The reply (or a failure message) could not be posted in its attempts.
    ReplyExhausted,
    /// A delivered prompt failed and nobody can be told.
    InternalErrorUntold,
    /// Backend sync: the lifecycle webhook refused the event on every try.
    LifecycleWebhookFailed,
}

impl ParkReason {
    /// Every reason, for label sets and documentation checks.
    pub const ALL: [ParkReason; 9] = [
        ParkReason::Malformed,
        ParkReason::UnknownVersion,
        ParkReason::MissingVersion,
        ParkReason::UnexpectedType,
        ParkReason::AttemptsExhausted,
        ParkReason::RecoveryDeadline,
        ParkReason::ReplyExhausted,
        ParkReason::InternalErrorUntold,
        ParkReason::LifecycleWebhookFailed,
    ];

    /// The header value, as every release wrote it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParkReason::Malformed => "malformed",
            ParkReason::UnknownVersion => "unknown_version",
            ParkReason::MissingVersion => "missing_version",
            ParkReason::UnexpectedType => "unexpected_type",
            ParkReason::AttemptsExhausted => "attempts_exhausted",
            ParkReason::RecoveryDeadline => "recovery_deadline",
            ParkReason::ReplyExhausted => "reply_exhausted",
            ParkReason::InternalErrorUntold => "internal_error_untold",
            ParkReason::LifecycleWebhookFailed => "lifecycle_webhook_failed",
        }
    }

    /// The reason named `name`; `None` for one this build did not write (the broker's
    /// own `delivery_limit`, a newer release's).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == name)
    }
}

impl std::fmt::Display for ParkReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&DecodeError> for ParkReason {
    fn from(error: &DecodeError) -> Self {
        match error {
            DecodeError::Malformed(_) => ParkReason::Malformed,
            DecodeError::UnknownVersion(_) => ParkReason::UnknownVersion,
            DecodeError::MissingVersion => ParkReason::MissingVersion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_parses_back_from_its_header_value() {
        for reason in ParkReason::ALL {
            assert_eq!(ParkReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(ParkReason::parse("delivery_limit"), None);
    }

    #[test]
    fn a_decode_error_parks_under_the_reason_it_reports() {
        let error = crate::decode::<crate::SlackEvent>(b"garbage").expect_err("garbage");
        assert_eq!(ParkReason::from(&error).as_str(), error.reason());
    }
}
