//! Waking deliveries that wait for a runtime when a lifecycle `Ready` arrives.
//!
//! A delivery in recovery waits in a delay queue, and a message cannot be pulled out
//! of a queue early. So the worker that re-queued it also keeps a note here (the copy
//! it published, until that copy's delay is over). On `Ready` for a runtime, every
//! worker publishes a fresh copy of each noted delivery of the teams bound to that
//! runtime straight to the work queue (one attempt further,
//! [`spritz_proto::Resume::next`]), then raises the message's wake generation in the
//! ledger to that attempt: the delayed copy, when it comes back, is below the
//! generation and is dropped as superseded. Publishing first means a failed
//! wake loses nothing (the delayed copy still comes).
//!
//! A `Ready` that arrives while a delivery is being processed would find no note yet;
//! the time of the last `Ready` per team is kept too, so such a delivery is re-queued
//! with no delay instead.
//!
//! A team whose binding to a runtime this worker never saw (its exchange has always
//! been `unavailable`) is woken by any `Ready` no known team is bound to: a spurious
//! wake costs one exchange call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lapin::BasicProperties;
use spritz_proto::{RetryStage, SlackEvent};
use tokio::time::Instant;

use crate::ledger::Ledger;
use crate::requeue::Requeue;
use crate::sessions::SessionCache;

/// Any-team key in `last_ready`.
const ANY_TEAM: &str = "*";

struct Waiting {
    team_id: String,
    event: SlackEvent,
    properties: BasicProperties,
    until: Instant,
}

#[derive(Default)]
struct State {
    /// By event id.
    waiting: HashMap<String, Waiting>,
    last_ready: HashMap<String, Instant>,
}

/// Shared by the settle step (notes) and the lifecycle consumer (wakes).
#[derive(Clone, Default)]
pub struct Waker {
    state: Arc<Mutex<State>>,
}

impl Waker {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a `Ready` that concerns the team arrived after `since`.
    pub fn ready_since(&self, team_id: &str, since: Instant) -> bool {
        let state = self.lock();
        [team_id, ANY_TEAM]
            .iter()
            .filter_map(|key| state.last_ready.get(*key))
            .any(|at| *at >= since)
    }

    /// Notes a copy just published to a delay tier. Returns `true` when a `Ready` for
    /// the team arrived since `started` (the caller should wake it at once).
    pub fn note(
        &self,
        event: &SlackEvent,
        properties: &BasicProperties,
        delay: Duration,
        started: Instant,
    ) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        state.waiting.retain(|_, w| w.until > now);
        state.waiting.insert(
            event.event_id.clone(),
            Waiting {
                team_id: event.team_id.clone(),
                event: event.clone(),
                properties: properties.clone(),
                until: now + delay,
            },
        );
        drop(state);
        self.ready_since(&event.team_id, started)
    }

    /// Wakes one noted delivery now (see [`Waker::note`]).
    pub async fn wake_event(&self, event_id: &str, requeue: &Requeue, ledger: &Ledger) -> bool {
        let waiting = self.lock().waiting.remove(event_id);
        match waiting {
            Some(waiting) => republish(waiting, requeue, ledger).await,
            None => false,
        }
    }

    /// A runtime became ready: wakes the noted deliveries of the teams bound to it.
    /// Returns how many were re-published.
    pub async fn wake_runtime(
        &self,
        namespace: &str,
        instance_id: &str,
        sessions: &SessionCache,
        requeue: &Requeue,
        ledger: &Ledger,
    ) -> usize {
        let teams = sessions.teams_bound_to(namespace, instance_id);
        let now = Instant::now();
        let due: Vec<Waiting> = {
            let mut state = self.lock();
            if teams.is_empty() {
                state.last_ready.insert(ANY_TEAM.to_owned(), now);
            }
            for team in &teams {
                state.last_ready.insert(team.clone(), now);
            }
            state.waiting.retain(|_, w| w.until > now);
            let ids: Vec<String> = state
                .waiting
                .iter()
                .filter(|(_, w)| teams.is_empty() || teams.contains(&w.team_id))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter()
                .filter_map(|id| state.waiting.remove(id))
                .collect()
        };
        let mut woken = 0;
        for waiting in due {
            if republish(waiting, requeue, ledger).await {
                woken += 1;
            }
        }
        woken
    }
}

async fn republish(waiting: Waiting, requeue: &Requeue, ledger: &Ledger) -> bool {
    let mut event = waiting.event;
    let resume = event
        .resume
        .take()
        .unwrap_or_default()
        .next(RetryStage::Session);
    let attempt = resume.attempt();
    event.resume = Some(resume);
    if let Err(error) = requeue
        .retry(&event, &waiting.properties, Duration::ZERO)
        .await
    {
        tracing::warn!(event_id = %event.event_id, error = %error, "waking a delivery failed; it keeps its delay");
        return false;
    }
    let key = event.user_message().map(|m| m.message_key(&event.team_id));
    match ledger
        .supersede(&event.event_id, key.as_deref(), attempt)
        .await
    {
        Ok(_) => {}
        // Both copies then run; the ledger claim and done marks keep it to one reply.
        Err(error) => {
            tracing::warn!(event_id = %event.event_id, error = %error, "could not supersede the delayed copy")
        }
    }
    tracing::debug!(event_id = %event.event_id, attempt, "woke a delivery waiting for its runtime");
    true
}
