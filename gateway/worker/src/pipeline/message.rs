//! A user message (SPEC §5.2–5.3): session, one prompt at a time per conversation,
//! conversation upsert, bootstrap, and the ACP prompt, which is never sent twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use spritz_proto::{Pending, SlackEvent, UserMessage};
use tokio::sync::oneshot;

use super::deadlines::Deadlines;
use super::{Held, Pipeline, Turn};
use crate::clients::acp::AcpError;
use crate::clients::backend::{BackendError, ChannelSession, Exchange, ProviderAuth};
use crate::clients::spritz::{ConversationUpsert, SpritzError};
use crate::metrics::Call;
use crate::outcome::{DropReason, Outcome, RetryStage};
use crate::prompt_text::prompt_text;

/// The longest wait for a busy conversation (the shortest default delay tier).
const BUSY_WAIT: Duration = Duration::from_millis(250);

/// Where getting a session ended.
pub(super) enum SessionStep {
    Ready(Arc<ChannelSession>),
    /// No runtime now: wait and try again.
    Recover,
    Done(Outcome),
}

/// Why an exchange gave no session (shared by the deliveries that waited for it).
enum NoSession {
    Unavailable(Option<ProviderAuth>),
    NotInstalled(u16),
    Failed(BackendError),
}

/// Why one turn's calls stopped short of a reply.
enum TurnFailed {
    Spritz(&'static str, SpritzError),
    /// The ACP prompt failed; its deadline passing is one way (`DeadlineExceeded`).
    Acp(AcpError),
}

/// Where the prompt ended.
enum Converse {
    Reply(String),
    /// The runtime is gone and the prompt was not delivered.
    Vanished,
    /// The prompt was not delivered (transient failure): try again later.
    NotDelivered,
    /// The prompt was delivered and then failed: never send it again.
    DeliveredFailed,
}

impl Pipeline {
    pub(super) async fn user_message(
        &self,
        event: &SlackEvent,
        message: &UserMessage,
        held: &Held,
    ) -> Outcome {
        let received_at = event.received_at;
        let turn = Turn {
            event,
            message,
            key: message.message_key(&event.team_id),
            resume: event.resume.clone().unwrap_or_default(),
            deadlines: Deadlines::new(
                received_at,
                self.timing.status_message_delay,
                self.timing.processing_timeout,
            ),
            started: tokio::time::Instant::now(),
            conversation: Mutex::new(event.resume.as_ref().and_then(|r| r.conversation.clone())),
        };
        match &turn.resume.pending {
            Some(Pending::TerminalFailure) => {
                return Box::pin(self.fail_terminal(&turn, held)).await;
            }
            Some(Pending::InternalError) => return Box::pin(self.fail_internal(&turn, held)).await,
            Some(Pending::Reply(text)) => {
                return Box::pin(self.post_reply(&turn, held, None, text)).await;
            }
            None => {}
        }
        match Box::pin(self.ledger.prompt_delivered(&turn.key)).await {
            Ok(None) => {}
            Ok(Some(delivered)) => {
                tracing::warn!(
                    "prompt was delivered by an earlier attempt that did not finish; not sending it again"
                );
                if let Some(name) = delivered.conversation {
                    turn.set_conversation(name);
                }
                return Box::pin(self.fail_internal(&turn, held)).await;
            }
            Err(error) => return self.ledger_unavailable(event, &error),
        }
        if turn.resume.recovering && turn.deadlines.expired(Utc::now()) {
            return Box::pin(self.fail_terminal(&turn, held)).await;
        }
        let session = match Box::pin(self.session(&turn)).await {
            SessionStep::Ready(session) => session,
            SessionStep::Recover => return Box::pin(self.recover(&turn, held)).await,
            SessionStep::Done(outcome) => return outcome,
        };
        let conversation = message.external_conversation_id();
        match Box::pin(self.ledger.lock_conversation(
            &event.team_id,
            conversation,
            &held.claim,
            self.lease(),
        ))
        .await
        {
            Ok(Some(lock)) => *held.lock_slot() = Some(lock),
            Ok(None) => {
                tracing::debug!("conversation busy; waiting");
                // A prompt usually ends within seconds: look again soon.
                let after = self.timing.session_retry_interval.min(BUSY_WAIT);
                return turn.retry(RetryStage::ConversationBusy, after, |_| {});
            }
            Err(error) => return self.ledger_unavailable(event, &error),
        }
        let converse = Box::pin(self.converse(&turn, held, &session)).await;
        let lock = held.lock_slot().take();
        if let Some(lock) = lock
            && let Err(error) = Box::pin(self.ledger.unlock_conversation(&lock, &held.claim)).await
        {
            tracing::warn!(error = %error, "could not release the conversation lock; its lease will");
        }
        match converse {
            Converse::Reply(text) => {
                Box::pin(self.post_reply(&turn, held, Some(&session), &text)).await
            }
            Converse::Vanished => {
                tracing::info!("runtime vanished before the prompt was delivered; recovering");
                Box::pin(self.sessions.invalidate_team(&event.team_id)).await;
                Box::pin(self.recover(&turn, held)).await
            }
            Converse::NotDelivered => Box::pin(self.recover(&turn, held)).await,
            Converse::DeliveredFailed => Box::pin(self.fail_internal(&turn, held)).await,
        }
    }

    /// The team's session from the cache, else from one backend exchange shared by
    /// every delivery of the team that misses at the same time.
    pub(super) async fn session(&self, turn: &Turn<'_>) -> SessionStep {
        let team_id = &turn.event.team_id;
        let exchange = async {
            let timer = self.metrics.stage(Call::Exchange);
            let answer = self.clients.backend.exchange(team_id).await;
            timer.observe_duration();
            match answer {
                Ok(Exchange::Resolved(session)) => Ok(session),
                Ok(Exchange::Unavailable { provider_auth }) => {
                    Err(NoSession::Unavailable(provider_auth))
                }
                Ok(Exchange::NotInstalled { status }) => Err(NoSession::NotInstalled(status)),
                Err(error) => Err(NoSession::Failed(error)),
            }
        };
        let missed = match self.sessions.get_or_exchange(team_id, exchange).await {
            Ok(session) => {
                return self
                    .check_app(turn, &session.provider_auth.api_app_id)
                    .map_or(SessionStep::Ready(session), SessionStep::Done);
            }
            Err(missed) => missed,
        };
        match &*missed {
            NoSession::Unavailable(provider_auth) => {
                tracing::info!("runtime unavailable; recovering");
                if let Some(auth) = provider_auth {
                    if let Some(outcome) = self.check_app(turn, &auth.api_app_id) {
                        return SessionStep::Done(outcome);
                    }
                    if let Some(token) = &auth.bot_access_token {
                        self.sessions.remember_bot_token(team_id, token.clone());
                    }
                }
                SessionStep::Recover
            }
            NoSession::NotInstalled(status) if self.recovery_visible(turn) => {
                // As the original: once a recovery is under way and the user may have
                // been told to wait, a refusal ends at the deadline with the terminal
                // failure reply, never in silence after "Still waking up".
                tracing::warn!(
                    status,
                    "exchange refused during a recovery; waiting for the deadline"
                );
                SessionStep::Recover
            }
            NoSession::NotInstalled(status) => {
                tracing::info!(status, "team not installed; dropping");
                SessionStep::Done(Outcome::Dropped(DropReason::NotInstalled))
            }
            NoSession::Failed(error) => {
                tracing::warn!(error = %error, "session exchange failed; recovering");
                SessionStep::Recover
            }
        }
    }

    /// A recovery is under way that the user was or can be told about: the delivery
    /// waited for a runtime before and a status message is visible or a bot token is
    /// known to post the outcome with.
    fn recovery_visible(&self, turn: &Turn<'_>) -> bool {
        turn.resume.recovering
            && (turn.resume.status_posted || self.sessions.bot_token(&turn.event.team_id).is_some())
    }

    /// `Some(drop)` when the event came from another Slack app than the installation's.
    fn check_app(&self, turn: &Turn<'_>, installed: &str) -> Option<Outcome> {
        let event_app = turn.event.api_app_id.as_deref().filter(|a| !a.is_empty())?;
        if installed.is_empty() || installed == event_app {
            return None;
        }
        tracing::warn!(
            event_app,
            installed_app = installed,
            "api_app_id mismatch; dropping"
        );
        Some(Outcome::Dropped(DropReason::AppMismatch))
    }

    /// Upsert, bootstrap and prompt, with the one status message due at the threshold
    /// covering all three, and the delivered prompt recorded the moment the agent
    /// answers anything about it.
    async fn converse(&self, turn: &Turn<'_>, held: &Held, session: &ChannelSession) -> Converse {
        let (delivered_tx, delivered_rx) = oneshot::channel();
        let work = Box::pin(self.prompt_conversation(turn, held, session, delivered_tx));
        let record = async {
            if delivered_rx.await.is_ok() {
                let conversation = turn.conversation().unwrap_or_default();
                if let Err(error) = Box::pin(
                    self.ledger
                        .record_prompt_delivered(&turn.key, &conversation),
                )
                .await
                {
                    tracing::error!(error = %error, "could not record the delivered prompt");
                }
                return true;
            }
            false
        };
        let bot_token = session.provider_auth.bot_access_token.clone();
        let status = async {
            tokio::time::sleep(turn.deadlines.prompt_status_wait(Utc::now())).await;
            if let Some(token) = &bot_token {
                Box::pin(self.ensure_status(turn, held, token)).await;
            }
        };
        tokio::pin!(work, record, status);
        let (mut recorded, mut status_done) = (false, turn.resume.status_posted);
        let mut delivered = false;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                was = &mut record, if !recorded => { recorded = true; delivered |= was; }
                () = &mut status, if !status_done => status_done = true,
            }
        };
        if !recorded {
            // The prompt ended before the delivered signal was polled: record it now.
            delivered |= record.await;
        }
        Box::pin(self.converse_ended(&turn.event.team_id, result, delivered)).await
    }

    /// The three calls of one turn; the conversation's name goes on `turn` as soon as
    /// the API gives it.
    async fn prompt_conversation(
        &self,
        turn: &Turn<'_>,
        held: &Held,
        session: &ChannelSession,
        delivered: oneshot::Sender<()>,
    ) -> Result<String, TurnFailed> {
        let message = turn.message;
        // The first upsert of a turn names no conversation: the API finds it by the
        // external id (or an alias) or creates it, and its name is the server's.
        let request = self.upsert_request(turn, session, "", message.external_conversation_id());
        let timer = self.metrics.stage(Call::Upsert);
        let upserted = Box::pin(self.clients.spritz.upsert_conversation(session, &request)).await;
        timer.observe_duration();
        let conversation = upserted.map_err(|error| TurnFailed::Spritz("upsert", error))?;
        turn.set_conversation(conversation.id.clone());
        let timer = self.metrics.stage(Call::Bootstrap);
        let booted = Box::pin(
            self.clients
                .spritz
                .bootstrap(&conversation.id, &session.namespace),
        )
        .await;
        timer.observe_duration();
        let bootstrap = booted.map_err(|error| TurnFailed::Spritz("bootstrap", error))?;
        // The HTTP calls are done; the websocket and the wait on the agent do not count
        // against the start-up limit.
        held.started();
        let installed_bot = Some(session.provider_auth.bot_user_id.as_str());
        let text = prompt_text(&turn.event.team_id, message, installed_bot);
        let timer = self.metrics.stage(Call::Prompt);
        let prompt = self
            .clients
            .acp
            .prompt(
                &conversation.id,
                &session.namespace,
                &bootstrap.session_id,
                &bootstrap.cwd,
                &text,
                tokio::time::Instant::now() + self.timing.processing_timeout,
                delivered,
            )
            .await;
        timer.observe_duration();
        prompt.map_err(TurnFailed::Acp)
    }

    async fn converse_ended(
        &self,
        team_id: &str,
        result: Result<String, TurnFailed>,
        delivered: bool,
    ) -> Converse {
        match result {
            Ok(reply) => Converse::Reply(reply),
            Err(TurnFailed::Spritz(call, error)) => self.spritz_failed(call, team_id, &error).await,
            Err(TurnFailed::Acp(error @ AcpError::Stopped { .. })) => {
                tracing::info!(error = %error, "the agent stopped without a reply");
                Converse::Reply(error.stopped_reply().unwrap_or_default().to_owned())
            }
            Err(TurnFailed::Acp(AcpError::RuntimeVanished)) if !delivered => {
                self.sessions.invalidate_team(team_id).await;
                Converse::Vanished
            }
            Err(TurnFailed::Acp(error)) if error.delivered() || delivered => {
                tracing::warn!(error = %error, "delivered prompt failed");
                Converse::DeliveredFailed
            }
            Err(TurnFailed::Acp(error)) => {
                tracing::warn!(error = %error, "prompt not delivered");
                Converse::NotDelivered
            }
        }
    }

    async fn spritz_failed(
        &self,
        call: &'static str,
        team_id: &str,
        error: &SpritzError,
    ) -> Converse {
        match error {
            SpritzError::RuntimeVanished => {
                self.sessions.invalidate_team(team_id).await;
                Converse::Vanished
            }
            SpritzError::Rejected { status } => {
                // A refused session token: exchange a fresh one next time.
                tracing::warn!(call, status, "spritz API refused the call");
                self.sessions.invalidate_team(team_id).await;
                Converse::NotDelivered
            }
            SpritzError::Transient(_) => {
                tracing::warn!(call, error = %error, "spritz API call failed");
                Converse::NotDelivered
            }
        }
    }

    /// The upsert body: `conversation_id` empty to find or create the conversation
    /// by `external_id`, or the server's name to add `external_id` as an alias.
    pub(super) fn upsert_request(
        &self,
        turn: &Turn<'_>,
        session: &ChannelSession,
        conversation_id: &str,
        external_id: &str,
    ) -> ConversationUpsert {
        let message = turn.message;
        ConversationUpsert {
            namespace: session.namespace.clone(),
            conversation_id: conversation_id.to_owned(),
            principal_id: self.principal_id.clone(),
            instance_id: session.instance_id.clone(),
            owner_id: session.owner_auth_id.clone(),
            provider: "slack".to_owned(),
            external_scope_type: "workspace".to_owned(),
            external_tenant_id: turn.event.team_id.clone(),
            external_channel_id: message.channel.clone(),
            external_conversation_id: external_id.to_owned(),
            title: format!("Slack {}", message.channel),
            cwd: crate::clients::spritz::DEFAULT_CWD.to_owned(),
        }
    }

    /// The bot token to post with: the session's, else the last one seen for the team,
    /// else one from a fresh exchange.
    pub(super) async fn bot_token(&self, turn: &Turn<'_>) -> Option<secrecy::SecretString> {
        let team_id = &turn.event.team_id;
        if let Some(token) = self
            .sessions
            .get(team_id)
            .await
            .and_then(|s| s.provider_auth.bot_access_token.clone())
        {
            return Some(token);
        }
        if let Some(token) = self.sessions.bot_token(team_id) {
            return Some(token);
        }
        let _ = self.session(turn).await;
        self.sessions.bot_token(team_id)
    }
}
