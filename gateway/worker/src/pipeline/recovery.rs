//! Waiting for a runtime (SPEC §5.2): re-queue through a delay tier, post exactly one
//! "still waking up" message once the status threshold has passed, and at the deadline
//! tell the user once that it failed (or park the message when nobody can be told).
//! When each of these is due is [`super::deadlines`]'s to say.

use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use spritz_proto::{ParkReason, Pending};

use super::reply::Posted;
use super::{Held, Pipeline, Turn};
use crate::ledger::StatusPurpose;
use crate::outcome::{Outcome, RetryStage};

pub(super) const STATUS_TEXT: &str = "Still waking up. I will continue here shortly.";
pub(super) const TERMINAL_TEXT: &str = "I could not recover the channel runtime. Please try again.";

impl Pipeline {
    /// No runtime now: post the status message when due, then wait in a delay tier.
    pub(super) async fn recover(&self, turn: &Turn<'_>, held: &Held) -> Outcome {
        let now = Utc::now();
        if turn.deadlines.expired(now) {
            return self.fail_terminal(turn, held).await;
        }
        let mut status_posted = turn.resume.status_posted;
        if turn.deadlines.status_due(now)
            && !status_posted
            && let Some(token) = self.bot_token(turn).await
        {
            status_posted = self.ensure_status(turn, held, &token).await;
        }
        let mut after =
            turn.deadlines
                .recovery_wait(now, status_posted, self.timing.session_retry_interval);
        if self.waker.ready_since(&turn.event.team_id, turn.started) {
            // A runtime became ready while this attempt ran: try again at once.
            after = Duration::ZERO;
        }
        turn.retry(RetryStage::Session, after, |resume| {
            resume.recovering = true;
            resume.status_posted = status_posted;
        })
    }

    /// Makes sure the one "still waking up" message exists; `true` when it does.
    pub(super) async fn ensure_status(
        &self,
        turn: &Turn<'_>,
        held: &Held,
        token: &SecretString,
    ) -> bool {
        match self
            .post_once(
                turn,
                held,
                StatusPurpose::RuntimeRecovery,
                token,
                STATUS_TEXT,
            )
            .await
        {
            Posted::Now(_) => {
                let since = (Utc::now() - turn.event.received_at)
                    .to_std()
                    .unwrap_or_default();
                self.metrics
                    .time_to_first_status
                    .observe(since.as_secs_f64());
                true
            }
            Posted::Before => true,
            Posted::Failed(_) | Posted::LedgerDown => false,
        }
    }

    /// The deadline passed without a runtime: tell the user once, or park the message
    /// when no bot token is known (or the status threshold was never reached).
    pub(super) async fn fail_terminal(&self, turn: &Turn<'_>, held: &Held) -> Outcome {
        let visible = turn.resume.status_posted
            || self
                .ledger
                .status_exists(&turn.key, StatusPurpose::RuntimeRecovery)
                .await
                .unwrap_or(false);
        let token = if turn.deadlines.status_due(Utc::now()) || visible {
            self.bot_token(turn).await
        } else {
            None
        };
        let Some(token) = token else {
            tracing::warn!("deadline passed and the user cannot be told; parking");
            return Outcome::ParkingLot {
                reason: ParkReason::RecoveryDeadline,
            };
        };
        match self
            .post_once(
                turn,
                held,
                StatusPurpose::TerminalFailure,
                &token,
                TERMINAL_TEXT,
            )
            .await
        {
            Posted::Now(_) | Posted::Before => Outcome::FailedTerminal,
            Posted::Failed(after) => turn.post_failed(Pending::TerminalFailure, after),
            Posted::LedgerDown => turn.post_later(
                RetryStage::Ledger,
                self.timing.session_retry_interval,
                Pending::TerminalFailure,
            ),
        }
    }
}
