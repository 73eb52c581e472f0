//! The delivery pipeline of SPEC §5: one delivery in, one [`Outcome`] out.
//!
//! [`Pipeline::process`] decodes, claims the message in the ledger, keeps the claim's
//! lease alive while it works, and releases or finishes the claim by outcome. The
//! stages live in submodules: [`message`] (a user message: session, conversation
//! lock, upsert, bootstrap, prompt), [`recovery`] (waiting for a runtime, the status
//! message, the deadline), [`deadlines`] (when each of those is due, a pure function
//! of the clock), [`reply`] (posting the reply and the failure messages),
//! [`uninstall`] (`app_uninstalled` / `tokens_revoked`).
//!
//! Nothing here sleeps while holding a message: every wait is a [`Outcome::RetryLater`]
//! through a delay tier.

mod deadlines;
mod message;
mod recovery;
mod reply;
mod uninstall;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use spritz_proto::{ParkReason, Resume, SlackEvent, SlackEventKind, UserMessage};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::clients::acp::AcpClient;
use crate::clients::backend::BackendClient;
use crate::clients::slack::SlackClient;
use crate::clients::spritz::SpritzClient;
use crate::config::Timing;
use crate::leases::{Leases, LockSlot};
use crate::ledger::{Claim, ClaimResult, ConversationLock, Ledger};
use crate::metrics::WorkerMetrics;
use crate::outcome::{Incoming, Outcome, RetryStage};
use crate::sessions::SessionCache;
use crate::wake::Waker;

/// The external services a delivery calls.
#[derive(Clone)]
pub struct Clients {
    pub backend: BackendClient,
    pub spritz: SpritzClient,
    pub acp: AcpClient,
    pub slack: SlackClient,
}

/// Processes deliveries; one per worker process, shared by every delivery task.
pub struct Pipeline {
    clients: Clients,
    ledger: Ledger,
    leases: Leases,
    sessions: SessionCache,
    waker: Waker,
    metrics: WorkerMetrics,
    timing: Timing,
    principal_id: String,
    /// Deliveries between being taken and their prompt stage (or their end): see
    /// [`STARTUP_CONCURRENCY`].
    startup: Arc<Semaphore>,
}

/// How many deliveries of one worker may be starting at once: claiming, exchanging,
/// upserting, bootstrapping. A delivery talking to the agent holds no permit, so this does not limit the prompts in flight (`SPRITZ_WORKER_PREFETCH`
/// does); it keeps a backlog taken all at once (a high prefetch after an outage)
/// from starting thousands of handshakes together, which would hit the backend and the
/// Spritz API as one stampede and leave the worker's memory at the high-water mark of
/// all their buffers.
pub const STARTUP_CONCURRENCY: usize = 256;

/// The claim a delivery holds, and the conversation lock once taken; both are
/// renewed together while the delivery works (by [`Leases`], which shares them).
struct Held {
    claim: Arc<Claim>,
    lock: LockSlot,
    startup: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Held {
    /// The delivery's HTTP calls are done (it talks to the agent now): let the next
    /// one start.
    fn started(&self) {
        self.startup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    fn lock_slot(&self) -> std::sync::MutexGuard<'_, Option<ConversationLock>> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One user message on its way through the pipeline.
struct Turn<'a> {
    event: &'a SlackEvent,
    message: &'a UserMessage,
    /// `team:channel:ts`.
    key: String,
    resume: Resume,
    /// When the status message is due and recovery gives up.
    deadlines: deadlines::Deadlines,
    started: tokio::time::Instant,
    /// The Spritz conversation's name, once the API gave it (this attempt or an
    /// earlier one); every retry copy carries it on.
    conversation: Mutex<Option<String>>,
}

impl Turn<'_> {
    /// A retry copy of the event that keeps the conversation name learnt so far.
    fn retry(
        &self,
        stage: RetryStage,
        after: Duration,
        change: impl FnOnce(&mut Resume),
    ) -> Outcome {
        let conversation = self.conversation();
        retry(self.event, stage, after, |resume| {
            if conversation.is_some() {
                resume.conversation = conversation;
            }
            change(resume);
        })
    }

    /// The Spritz conversation's name, when known.
    fn conversation(&self) -> Option<String> {
        self.conversation_slot().clone()
    }

    /// Remembers the name the Spritz API gave the conversation.
    fn set_conversation(&self, name: String) {
        *self.conversation_slot() = Some(name);
    }

    fn conversation_slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.conversation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Pipeline {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        clients: Clients,
        ledger: Ledger,
        leases: Leases,
        sessions: SessionCache,
        waker: Waker,
        metrics: WorkerMetrics,
        timing: Timing,
        principal_id: String,
    ) -> Self {
        Self {
            clients,
            ledger,
            leases,
            sessions,
            waker,
            metrics,
            timing,
            principal_id,
            startup: Arc::new(Semaphore::new(STARTUP_CONCURRENCY)),
        }
    }

    pub fn sessions(&self) -> &SessionCache {
        &self.sessions
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Carries one delivery as far as it can go now and says what became of it. The
    /// caller settles the outcome with the broker; nothing here acks.
    pub async fn process(&self, delivery: &Incoming) -> Outcome {
        if let Some(kind) = delivery.properties.kind().as_ref()
            && kind.as_str() != spritz_proto::MessageType::SlackEvent.as_str()
        {
            tracing::warn!(
                message_type = kind.as_str(),
                "unexpected message type on the work queue"
            );
            return Outcome::ParkingLot {
                reason: ParkReason::UnexpectedType,
            };
        }
        let event: SlackEvent = match spritz_proto::decode(&delivery.body) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(reason = error.reason(), error = %error, "undecodable delivery");
                return Outcome::ParkingLot {
                    reason: ParkReason::from(&error),
                };
            }
        };
        let message = event.user_message();
        let trace = crate::message_trace::of_delivery(&delivery.properties);
        let span = tracing::info_span!(
            "delivery",
            trace_id = %trace.trace_id(),
            event_id = %event.event_id,
            team_id = %event.team_id,
            channel_id = message.map_or("", |m| m.channel.as_str()),
            message_ts = message.map_or("", |m| m.ts.as_str()),
            attempt = event.resume.as_ref().map_or(0, Resume::attempt),
        );
        spritz_service::trace::continue_trace(&span, &trace);
        let outcome = crate::message_trace::within(trace, self.process_event(&event))
            .instrument(span.clone())
            .await;
        span.in_scope(|| tracing::info!(outcome = outcome.label(), "delivery processed"));
        outcome
    }

    async fn process_event(&self, event: &SlackEvent) -> Outcome {
        let attempt = event.resume.as_ref().map_or(0, Resume::attempt);
        let counted = event.resume.as_ref().map_or(0, Resume::attempts_counted);
        if counted >= self.timing.max_attempts {
            tracing::warn!(attempt, "attempts exhausted");
            return Outcome::ParkingLot {
                reason: ParkReason::AttemptsExhausted,
            };
        }
        // Never closed; without a permit the delivery simply starts.
        let permit = self.startup.clone().acquire_owned().await.ok();
        let key = event.user_message().map(|m| m.message_key(&event.team_id));
        let lease = self.timing.claim_lease;
        let claim =
            match Box::pin(
                self.ledger
                    .claim(&event.event_id, key.as_deref(), attempt, lease),
            )
            .await
            {
                Ok(ClaimResult::Claimed(claim)) => claim,
                Ok(ClaimResult::Duplicate | ClaimResult::Superseded) => return Outcome::Duplicate,
                Ok(ClaimResult::Busy) => {
                    tracing::debug!("another worker holds this message");
                    return self.retry_ledger(event);
                }
                Err(error) => return self.ledger_unavailable(event, &error),
            };
        let held = Held {
            claim: Arc::new(claim),
            lock: LockSlot::default(),
            startup: Mutex::new(permit),
        };
        let outcome = self.with_lease(&held, self.handle(event, &held)).await;
        Box::pin(self.settle_claim(&held, &outcome)).await;
        outcome
    }

    async fn handle(&self, event: &SlackEvent, held: &Held) -> Outcome {
        match &event.event {
            SlackEventKind::Message(message) => self.user_message(event, message, held).await,
            SlackEventKind::AppUninstalled | SlackEventKind::TokensRevoked => {
                Box::pin(self.uninstall(event)).await
            }
        }
    }

    /// Runs `work` while [`Leases`] renews the claim (and conversation lock), so a
    /// live worker keeps its claim and a dead one loses it. A renewal that finds the
    /// claim gone (its lease ran out, another worker holds it now) stops the work and
    /// hands the delivery back: working on without the claim could answer a message
    /// twice. The hold is dropped before the claim is settled.
    async fn with_lease(&self, held: &Held, work: impl Future<Output = Outcome>) -> Outcome {
        let hold = self.leases.hold(held.claim.clone(), held.lock.clone());
        tokio::select! {
            outcome = work => outcome,
            () = hold.lost() => {
                tracing::warn!("the claim was lost; handing the delivery back");
                self.metrics.claims_lost.inc();
                Outcome::HandBack
            }
        }
    }

    async fn settle_claim(&self, held: &Held, outcome: &Outcome) {
        let lock = held.lock_slot().take();
        if let Some(lock) = lock
            && let Err(error) = self.ledger.unlock_conversation(&lock, &held.claim).await
        {
            tracing::warn!(error = %error, "could not release the conversation lock; its lease will");
        }
        let finished = !matches!(
            outcome,
            Outcome::RetryLater { .. } | Outcome::ParkingLot { .. } | Outcome::HandBack
        );
        if finished {
            for _ in 0..3 {
                match self.ledger.finish(&held.claim).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(error = %error, "could not mark the message finished")
                    }
                }
            }
            tracing::error!(
                "message finished but not marked in the ledger; a late duplicate may be answered again"
            );
        } else if let Err(error) = self.ledger.release(&held.claim).await {
            tracing::warn!(error = %error, "could not release the claim; its lease will");
        }
    }

    fn lease(&self) -> Duration {
        self.timing.claim_lease
    }

    /// The ledger could not be asked: try the delivery again after the session retry
    /// interval, nothing else changed.
    fn ledger_unavailable(&self, event: &SlackEvent, error: &impl std::fmt::Display) -> Outcome {
        tracing::warn!(error = %error, "ledger unavailable; retrying later");
        self.retry_ledger(event)
    }

    /// A retry copy of `event` at the ledger stage, after the session retry interval
    /// (before a claim: there is no turn yet whose state a copy would carry).
    fn retry_ledger(&self, event: &SlackEvent) -> Outcome {
        retry(
            event,
            RetryStage::Ledger,
            self.timing.session_retry_interval,
            |_| {},
        )
    }
}

/// A retry copy of `event` one attempt further ([`Resume::next`]), its resume state
/// changed by `change`.
fn retry(
    event: &SlackEvent,
    stage: RetryStage,
    after: Duration,
    change: impl FnOnce(&mut Resume),
) -> Outcome {
    let mut copy = event.clone();
    let mut resume = copy.resume.take().unwrap_or_default().next(stage);
    change(&mut resume);
    copy.resume = Some(resume);
    Outcome::RetryLater {
        stage,
        after,
        event: Box::new(copy),
    }
}
