//! The per-worker session cache (SPEC §5.2): one channel session per team, used
//! until shortly before its `expiresAt`, dropped when its runtime is reported gone
//! (lifecycle) or vanishes under a call.
//!
//! It also remembers, per team, the last bot token the backend handed out (from a
//! resolved session or an `unavailable` answer), so a delivery waiting for a runtime
//! can still post its status message; and which runtime a team was last bound to, so
//! a lifecycle `Ready` can wake just that team's waiting deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;

use crate::clients::backend::ChannelSession;
use crate::metrics::WorkerMetrics;

/// A session is not used within this margin of its expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// A runtime: `(namespace, instanceId)`.
pub type Binding = (String, String);

#[derive(Default)]
struct State {
    sessions: HashMap<String, Arc<ChannelSession>>,
    bot_tokens: HashMap<String, SecretString>,
    bindings: HashMap<String, Binding>,
}

/// Shared by every delivery of one worker process; cheap to clone.
#[derive(Clone)]
pub struct SessionCache {
    state: Arc<Mutex<State>>,
    metrics: WorkerMetrics,
}

impl SessionCache {
    pub fn new(metrics: WorkerMetrics) -> Self {
        Self {
            state: Arc::default(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps inconsistent (single
        // inserts and removes), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The team's live session, counting a hit or a miss.
    pub fn get(&self, team_id: &str) -> Option<Arc<ChannelSession>> {
        let mut state = self.lock();
        let live = state.sessions.get(team_id).filter(|s| is_live(s)).cloned();
        if live.is_none() {
            state.sessions.remove(team_id);
        }
        drop(state);
        let result = if live.is_some() { "hit" } else { "miss" };
        self.metrics
            .session_cache
            .with_label_values(&[result])
            .inc();
        live
    }

    /// Caches a freshly exchanged session.
    pub fn insert(&self, team_id: &str, session: ChannelSession) -> Arc<ChannelSession> {
        let session = Arc::new(session);
        let mut state = self.lock();
        if let Some(token) = &session.provider_auth.bot_access_token {
            state.bot_tokens.insert(team_id.to_owned(), token.clone());
        }
        state.bindings.insert(
            team_id.to_owned(),
            (session.namespace.clone(), session.instance_id.clone()),
        );
        if is_live(&session) {
            state.sessions.insert(team_id.to_owned(), session.clone());
        }
        session
    }

    /// Remembers a bot token from an `unavailable` answer.
    pub fn remember_bot_token(&self, team_id: &str, token: SecretString) {
        self.lock().bot_tokens.insert(team_id.to_owned(), token);
    }

    /// The last bot token seen for the team, if any.
    pub fn bot_token(&self, team_id: &str) -> Option<SecretString> {
        self.lock().bot_tokens.get(team_id).cloned()
    }

    /// Drops the team's session (its runtime vanished, or the app was uninstalled).
    pub fn invalidate_team(&self, team_id: &str) {
        if self.lock().sessions.remove(team_id).is_some() {
            self.metrics
                .session_cache
                .with_label_values(&["invalidated"])
                .inc();
        }
    }

    /// Drops the team's session and bot token (uninstalled).
    pub fn forget_team(&self, team_id: &str) {
        self.invalidate_team(team_id);
        let mut state = self.lock();
        state.bot_tokens.remove(team_id);
        state.bindings.remove(team_id);
    }

    /// Drops every session bound to the runtime; returns how many.
    pub fn invalidate_runtime(&self, namespace: &str, instance_id: &str) -> usize {
        let mut state = self.lock();
        let before = state.sessions.len();
        state
            .sessions
            .retain(|_, s| !(s.namespace == namespace && s.instance_id == instance_id));
        let dropped = before - state.sessions.len();
        drop(state);
        if dropped > 0 {
            self.metrics
                .session_cache
                .with_label_values(&["invalidated"])
                .inc_by(u64::try_from(dropped).unwrap_or(0));
        }
        dropped
    }

    /// Teams last seen bound to the runtime.
    pub fn teams_bound_to(&self, namespace: &str, instance_id: &str) -> Vec<String> {
        self.lock()
            .bindings
            .iter()
            .filter(|(_, (ns, id))| ns == namespace && id == instance_id)
            .map(|(team, _)| team.clone())
            .collect()
    }
}

fn is_live(session: &ChannelSession) -> bool {
    let margin = chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default();
    session.expires_at - margin > Utc::now()
}
