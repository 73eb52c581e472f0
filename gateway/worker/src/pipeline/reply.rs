//! Posting to Slack (SPEC §5.4): the agent's reply, retried through the delay tiers
//! with the reply text on the copy (the agent is not prompted again), 429 honouring
//! `Retry-After`; the reply alias for a top-level channel message; and the one-off
//! status and failure messages, at most one per purpose.

use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;

use spritz_proto::{ParkReason, Pending};

use super::{Held, Pipeline, Turn};
use crate::clients::backend::ChannelSession;
use crate::clients::slack::SlackError;
use crate::ledger::StatusPurpose;
use crate::metrics::Call;
use crate::outcome::{Outcome, RetryStage};

pub(super) const INTERNAL_ERROR_TEXT: &str =
    "I hit an internal error while processing that request.";

/// Posts of the reply (or a failure message) tried before the message is parked
/// (with the reply on it).
const MAX_REPLY_ATTEMPTS: u32 = 10;

/// What [`Pipeline::post_once`] did.
pub(super) enum Posted {
    /// Posted by this call, as the message with this `ts`.
    Now(String),
    /// Posted (or being posted) by an earlier attempt.
    Before,
    /// The post failed; try again after this long.
    Failed(Duration),
    /// The ledger could not be asked.
    LedgerDown,
}

impl Turn<'_> {
    /// A post of `pending` was tried and failed: a copy that tries it again after
    /// `after`, or the parking lot (`reply_exhausted`, with what is pending on the
    /// message) once [`MAX_REPLY_ATTEMPTS`] posts failed. The one place posts are
    /// counted against their limit, for the reply and both failure messages alike.
    pub(super) fn post_failed(&self, pending: Pending, after: Duration) -> Outcome {
        let attempts = self.resume.reply_attempts + 1;
        if attempts >= MAX_REPLY_ATTEMPTS {
            tracing::error!(attempts, "could not post what is pending; parking");
            return Outcome::ParkingLot {
                reason: ParkReason::ReplyExhausted,
            };
        }
        tracing::info!(attempts, "post failed; retrying it later");
        self.retry(RetryStage::Reply, after, |resume| {
            resume.pending = Some(pending);
            resume.reply_attempts = attempts;
        })
    }

    /// `pending` could not be tried now (no bot token, the ledger down): a copy that
    /// tries after `after`, without counting a post.
    pub(super) fn post_later(
        &self,
        stage: RetryStage,
        after: Duration,
        pending: Pending,
    ) -> Outcome {
        self.retry(stage, after, |resume| resume.pending = Some(pending))
    }
}

impl Pipeline {
    /// Posts the agent's reply in the message's conversation.
    pub(super) async fn post_reply(
        &self,
        turn: &Turn<'_>,
        _held: &Held,
        session: Option<&ChannelSession>,
        text: &str,
    ) -> Outcome {
        let message = turn.message;
        let token = match session.and_then(|s| s.provider_auth.bot_access_token.clone()) {
            Some(token) => Some(token),
            None => self.bot_token(turn).await,
        };
        let pending = || Pending::Reply(text.to_owned());
        let Some(token) = token else {
            tracing::warn!("no bot token to post the reply with; retrying later");
            return turn.post_later(
                RetryStage::Reply,
                self.timing.session_retry_interval,
                pending(),
            );
        };
        let timer = self.metrics.stage(Call::Reply);
        let posted = self
            .clients
            .slack
            .post_message(&token, &message.channel, text, message.thread_ts.as_deref())
            .await;
        timer.observe_duration();
        match posted {
            Ok(ts) => {
                let since = (Utc::now() - turn.event.received_at)
                    .to_std()
                    .unwrap_or_default();
                self.metrics.receive_to_reply.observe(since.as_secs_f64());
                self.upsert_alias(turn, session, &ts).await;
                Outcome::Replied {
                    recovered: turn.resume.recovering,
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "reply post failed");
                turn.post_failed(pending(), self.post_retry_after(&error))
            }
        }
    }

    /// For a top-level channel message, tells Spritz that the reply's `ts` names the
    /// same conversation (a thread under the reply continues it): an upsert naming
    /// the conversation by the server's name with the reply's `ts` as external id.
    /// Failure is logged, not retried.
    async fn upsert_alias(
        &self,
        turn: &Turn<'_>,
        session: Option<&ChannelSession>,
        reply_ts: &str,
    ) {
        let message = turn.message;
        if message.is_direct_message()
            || message.thread_ts.as_deref().is_some_and(|t| !t.is_empty())
        {
            return;
        }
        let cached;
        let session = match session {
            Some(session) => session,
            None => match self.sessions.get(&turn.event.team_id).await {
                Some(found) => {
                    cached = found;
                    &cached
                }
                None => {
                    tracing::info!("no session at hand for the reply alias; skipped");
                    return;
                }
            },
        };
        let Some(conversation) = turn.conversation() else {
            tracing::info!("conversation name unknown; reply alias skipped");
            return;
        };
        let request = self.upsert_request(turn, session, &conversation, reply_ts);
        let timer = self.metrics.stage(Call::Upsert);
        let result = self
            .clients
            .spritz
            .upsert_conversation(session, &request)
            .await;
        timer.observe_duration();
        if let Err(error) = result {
            tracing::warn!(error = %error, "reply alias upsert failed (not retried)");
        }
    }

    /// The prompt was delivered and failed (or an earlier attempt died after
    /// delivering it): answer once with the internal error message.
    pub(super) async fn fail_internal(&self, turn: &Turn<'_>, held: &Held) -> Outcome {
        let Some(token) = self.bot_token(turn).await else {
            if !turn.deadlines.expired(Utc::now()) {
                return turn.post_later(
                    RetryStage::Reply,
                    self.timing.session_retry_interval,
                    Pending::InternalError,
                );
            }
            tracing::warn!("internal error and the user cannot be told; parking");
            return Outcome::ParkingLot {
                reason: ParkReason::InternalErrorUntold,
            };
        };
        match self
            .post_once(
                turn,
                held,
                StatusPurpose::InternalError,
                &token,
                INTERNAL_ERROR_TEXT,
            )
            .await
        {
            Posted::Now(ts) => {
                // The fallback stands where the reply would have: a thread under it
                // continues the same conversation, as under a reply.
                self.upsert_alias(turn, None, &ts).await;
                Outcome::FailedTerminal
            }
            Posted::Before => Outcome::FailedTerminal,
            Posted::Failed(after) => turn.post_failed(Pending::InternalError, after),
            Posted::LedgerDown => turn.post_later(
                RetryStage::Ledger,
                self.timing.session_retry_interval,
                Pending::InternalError,
            ),
        }
    }

    /// Posts `text` unless a message of this purpose exists for the message already.
    /// The ledger record is reserved before the post and given back if it fails, so
    /// concurrent attempts post at most one.
    pub(super) async fn post_once(
        &self,
        turn: &Turn<'_>,
        held: &Held,
        purpose: StatusPurpose,
        token: &SecretString,
        text: &str,
    ) -> Posted {
        let owner = held.claim.owner();
        match self.ledger.reserve_status(&turn.key, purpose, owner).await {
            Ok(true) => {}
            Ok(false) => return Posted::Before,
            Err(error) => {
                tracing::warn!(error = %error, purpose = purpose.as_str(), "ledger unavailable; not posting");
                return Posted::LedgerDown;
            }
        }
        let message = turn.message;
        let posted = self
            .clients
            .slack
            .post_message(token, &message.channel, text, message.thread_ts.as_deref())
            .await;
        match posted {
            Ok(ts) => {
                self.metrics
                    .status_messages
                    .with_label_values(&[purpose.as_str()])
                    .inc();
                if let Err(error) = self
                    .ledger
                    .confirm_status(&turn.key, purpose, owner, &ts)
                    .await
                {
                    tracing::warn!(error = %error, "could not record the posted status message");
                }
                tracing::info!(purpose = purpose.as_str(), "status message posted");
                Posted::Now(ts)
            }
            Err(error) => {
                tracing::warn!(error = %error, purpose = purpose.as_str(), "status message post failed");
                if let Err(error) = self.ledger.release_status(&turn.key, purpose, owner).await {
                    tracing::warn!(error = %error, "could not give the status reservation back");
                }
                Posted::Failed(self.post_retry_after(&error))
            }
        }
    }

    /// How long to wait after a failed post: Slack's `Retry-After`, else the interval.
    fn post_retry_after(&self, error: &SlackError) -> Duration {
        match error {
            SlackError::RateLimited { retry_after } => (*retry_after).max(Duration::from_millis(1)),
            _ => self.timing.session_retry_interval,
        }
    }
}
