//! Waiting for a runtime (SPEC §5.2): re-queue through a delay tier, post exactly one
//! "still waking up" message once the status threshold has passed, and at the deadline
//! tell the user once that it failed (or park the message when nobody can be told).

use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;

use super::message::STAGE_TERMINAL;
use super::reply::{MAX_REPLY_ATTEMPTS, Posted};
use super::{Held, Pipeline, Turn, until};
use crate::ledger::StatusPurpose;
use crate::outcome::{Outcome, RetryStage};

pub(super) const STATUS_TEXT: &str = "Still waking up. I will continue here shortly.";
pub(super) const TERMINAL_TEXT: &str = "I could not recover the channel runtime. Please try again.";

impl Pipeline {
    /// No runtime now: post the status message when due, then wait in a delay tier.
    pub(super) async fn recover(&self, turn: &Turn<'_>, held: &Held) -> Outcome {
        let now = Utc::now();
        if now >= turn.deadline {
            return self.fail_terminal(turn, held).await;
        }
        let mut status_posted = turn.resume.status_posted;
        if now >= turn.threshold
            && !status_posted
            && let Some(token) = self.bot_token(turn).await
        {
            status_posted = self.ensure_status(turn, held, &token).await;
        }
        let mut after = self.timing.session_retry_interval;
        if !status_posted && turn.threshold > now {
            // Come back when the status message is due, not a whole interval later.
            after = after.min(until(now, turn.threshold));
        }
        after = after
            .min(until(now, turn.deadline))
            .max(Duration::from_millis(1));
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
        let past_threshold = Utc::now() >= turn.threshold;
        let token = if past_threshold || visible {
            self.bot_token(turn).await
        } else {
            None
        };
        let Some(token) = token else {
            tracing::warn!("deadline passed and the user cannot be told; parking");
            return Outcome::ParkingLot {
                reason: "recovery_deadline",
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
            Posted::Failed(after) => {
                let attempts = turn.resume.reply_attempts + 1;
                if attempts >= MAX_REPLY_ATTEMPTS {
                    tracing::error!(attempts, "terminal failure message could not be posted; parking");
                    return Outcome::ParkingLot {
                        reason: "reply_exhausted",
                    };
                }
                turn.retry(RetryStage::Reply, after, |resume| {
                    resume.stage = STAGE_TERMINAL.to_owned();
                    resume.reply_attempts = attempts;
                })
            }
            Posted::LedgerDown => turn.retry(
                RetryStage::Ledger,
                self.timing.session_retry_interval,
                |resume| {
                    resume.stage = STAGE_TERMINAL.to_owned();
                },
            ),
        }
    }
}
