//! One delivery in ([`Incoming`]) and what became of it ([`Outcome`]). The pipeline
//! decides the outcome; the consume loop only settles it with the broker (ack, nack,
//! or a confirmed retry / parking-lot copy, then ack).

use std::time::Duration;

use lapin::BasicProperties;
pub use spritz_proto::RetryStage;
use spritz_proto::{ParkReason, SlackEvent};

/// A message taken off the work queue.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    /// The broker delivered it before (a consumer died or handed it back).
    pub redelivered: bool,
}

impl Incoming {
    pub fn new(body: Vec<u8>, properties: BasicProperties) -> Self {
        Self {
            body,
            properties,
            redelivered: false,
        }
    }
}

/// Why a message was dropped without an answer (SPEC §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The backend says the team is not installed (a 4xx on exchange).
    NotInstalled,
    /// The event's `api_app_id` is not the installation's.
    AppMismatch,
}

/// What became of one delivery.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The agent's reply was posted; `recovered` when it first waited for a runtime.
    Replied { recovered: bool },
    /// Already finished, or superseded by a newer copy.
    Duplicate,
    /// Nothing to do for this message.
    Ignored,
    /// The installation was disconnected at the backend (uninstall events).
    Disconnected,
    /// The user got a failure message instead of a reply (deadline or internal error).
    FailedTerminal,
    /// Dropped on purpose, counted.
    Dropped(DropReason),
    /// Publish `event` (carrying its resume state) to the delay tier at or above
    /// `after` (straight back to the work queue when zero), then ack.
    RetryLater {
        stage: RetryStage,
        after: Duration,
        event: Box<SlackEvent>,
    },
    /// Publish the message to the parking lot with `reason`, then ack.
    ParkingLot { reason: ParkReason },
    /// Give the message back to the broker unchanged (nack with requeue): shutdown.
    HandBack,
}

impl Outcome {
    /// The `outcome` label of `spritz_worker_deliveries_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Replied { recovered: false } => "replied",
            Outcome::Replied { recovered: true } => "recovered",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored | Outcome::HandBack => "ignored",
            Outcome::Disconnected => "disconnected",
            Outcome::FailedTerminal => "failed_terminal",
            Outcome::Dropped(DropReason::NotInstalled) => "dropped_not_installed",
            Outcome::Dropped(DropReason::AppMismatch) => "dropped_app_mismatch",
            Outcome::RetryLater { .. } => "retry",
            Outcome::ParkingLot { .. } => "dead_lettered",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_label_is_a_documented_metric_label() {
        let event = Box::new(SlackEvent::new(
            chrono::Utc::now(),
            "Ev".into(),
            "T".into(),
            spritz_proto::SlackEventKind::AppUninstalled,
        ));
        let outcomes = [
            Outcome::Replied { recovered: false },
            Outcome::Replied { recovered: true },
            Outcome::Duplicate,
            Outcome::Ignored,
            Outcome::Disconnected,
            Outcome::FailedTerminal,
            Outcome::Dropped(DropReason::NotInstalled),
            Outcome::Dropped(DropReason::AppMismatch),
            Outcome::RetryLater {
                stage: RetryStage::Session,
                after: Duration::ZERO,
                event,
            },
            Outcome::ParkingLot {
                reason: ParkReason::Malformed,
            },
        ];
        for outcome in outcomes {
            assert!(
                crate::metrics::OUTCOMES.contains(&outcome.label()),
                "{}",
                outcome.label()
            );
        }
    }
}
