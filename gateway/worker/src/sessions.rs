//! The per-worker session cache (SPEC §5.2): one channel session per team, used
//! until shortly before its `expiresAt`, dropped when its runtime is reported gone
//! (lifecycle) or vanishes under a call.
//!
//! A miss is single-flight: concurrent deliveries for a team whose session is not
//! cached (a cold start, or right after an invalidation) wait for one exchange instead
//! of each calling the backend — without it a worker sends up to its prefetch count of
//! exchanges for one team at once. The cache is bounded ([`MAX_TEAMS`]).
//!
//! It also remembers, per team, the last bot token the backend handed out (from a
//! resolved session or an `unavailable` answer), so a delivery waiting for a runtime
//! can still post its status message; and which runtime a team was last bound to, so
//! a lifecycle `Ready` can wake just that team's waiting deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use moka::Expiry;
use moka::future::Cache;
use secrecy::SecretString;

use crate::clients::backend::ChannelSession;
use crate::metrics::WorkerMetrics;

/// A session is not used within this margin of its expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// Teams whose sessions one worker keeps; the least recently used go first.
pub const MAX_TEAMS: u64 = 10_000;

/// A runtime: `(namespace, instanceId)`.
pub type Binding = (String, String);

#[derive(Default)]
struct State {
    bot_tokens: HashMap<String, SecretString>,
    bindings: HashMap<String, Binding>,
}

/// Shared by every delivery of one worker process; cheap to clone.
#[derive(Clone)]
pub struct SessionCache {
    sessions: Cache<String, Arc<ChannelSession>>,
    state: Arc<Mutex<State>>,
    metrics: WorkerMetrics,
}

/// Each session lives until [`EXPIRY_MARGIN`] before its own `expiresAt`.
struct UntilExpiry;

impl Expiry<String, Arc<ChannelSession>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _team: &String,
        session: &Arc<ChannelSession>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(time_to_live(session))
    }
}

impl SessionCache {
    pub fn new(metrics: WorkerMetrics) -> Self {
        Self {
            sessions: Cache::builder()
                .max_capacity(MAX_TEAMS)
                .expire_after(UntilExpiry)
                .support_invalidation_closures()
                .build(),
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

    /// The team's live session, if cached, counting a hit or a miss.
    pub async fn get(&self, team_id: &str) -> Option<Arc<ChannelSession>> {
        let live = self.sessions.get(team_id).await.filter(|s| is_live(s));
        self.count(if live.is_some() { "hit" } else { "miss" });
        live
    }

    /// The team's live session from the cache, else from `exchange`, which runs once
    /// for all the deliveries that miss at the same time: they all get its session,
    /// or all get its error. A session that is already past its margin is returned
    /// but not kept.
    ///
    /// # Errors
    /// What `exchange` failed with, shared.
    pub async fn get_or_exchange<E, F>(
        &self,
        team_id: &str,
        exchange: F,
    ) -> Result<Arc<ChannelSession>, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<ChannelSession, E>>,
    {
        if let Some(session) = self.get(team_id).await {
            return Ok(session);
        }
        let session = self
            .sessions
            .try_get_with(team_id.to_owned(), async {
                let session = Arc::new(exchange.await?);
                self.remember(team_id, &session);
                Ok(session)
            })
            .await?;
        if !is_live(&session) {
            self.sessions.invalidate(team_id).await;
        }
        Ok(session)
    }

    fn remember(&self, team_id: &str, session: &ChannelSession) {
        let mut state = self.lock();
        if let Some(token) = &session.provider_auth.bot_access_token {
            state.bot_tokens.insert(team_id.to_owned(), token.clone());
        }
        state.bindings.insert(
            team_id.to_owned(),
            (session.namespace.clone(), session.instance_id.clone()),
        );
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
    pub async fn invalidate_team(&self, team_id: &str) {
        if self.sessions.remove(team_id).await.is_some() {
            self.count("invalidated");
        }
    }

    /// Drops the team's session and bot token (uninstalled).
    pub async fn forget_team(&self, team_id: &str) {
        self.invalidate_team(team_id).await;
        let mut state = self.lock();
        state.bot_tokens.remove(team_id);
        state.bindings.remove(team_id);
    }

    /// Drops every session bound to the runtime; returns how many.
    pub fn invalidate_runtime(&self, namespace: &str, instance_id: &str) -> usize {
        let bound: Vec<Arc<String>> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.namespace == namespace && s.instance_id == instance_id)
            .map(|(team, _)| team)
            .collect();
        let (namespace, instance_id) = (namespace.to_owned(), instance_id.to_owned());
        // Also catches a session of the runtime inserted after the scan above.
        let _ = self.sessions.invalidate_entries_if(move |_, s| {
            s.namespace == namespace && s.instance_id == instance_id
        });
        if !bound.is_empty() {
            self.metrics
                .session_cache
                .with_label_values(&["invalidated"])
                .inc_by(u64::try_from(bound.len()).unwrap_or(0));
        }
        bound.len()
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

    fn count(&self, result: &str) {
        self.metrics
            .session_cache
            .with_label_values(&[result])
            .inc();
    }
}

fn time_to_live(session: &ChannelSession) -> Duration {
    let margin = chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default();
    (session.expires_at - margin - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO)
}

fn is_live(session: &ChannelSession) -> bool {
    !time_to_live(session).is_zero()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::clients::backend::ProviderAuth;

    fn session(lifetime: chrono::Duration) -> ChannelSession {
        ChannelSession {
            access_token: SecretString::from("token"),
            expires_at: Utc::now() + lifetime,
            owner_auth_id: "owner".into(),
            namespace: "ns".into(),
            instance_id: "inst".into(),
            provider_auth: ProviderAuth::default(),
        }
    }

    #[tokio::test]
    async fn fifty_concurrent_misses_for_one_team_make_one_exchange() {
        let cache = SessionCache::new(WorkerMetrics::unregistered());
        let exchanges = AtomicUsize::new(0);
        let (release, released) = tokio::sync::watch::channel(false);
        let lookups = (0..50).map(|_| {
            cache.get_or_exchange::<String, _>("T1", async {
                exchanges.fetch_add(1, Ordering::SeqCst);
                let mut released = released.clone();
                // Hold the exchange open until every lookup has started.
                let _ = released.wait_for(|r| *r).await;
                Ok(session(chrono::Duration::minutes(10)))
            })
        });
        let all = futures::future::join_all(lookups);
        tokio::pin!(all);
        // Let every lookup reach the cache before the exchange answers.
        for _ in 0..10 {
            tokio::select! {
                biased;
                _ = &mut all => panic!("finished before the exchange answered"),
                () = tokio::task::yield_now() => {}
            }
        }
        release.send(true).expect("release");
        let results = all.await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(exchanges.load(Ordering::SeqCst), 1);
        assert!(cache.get("T1").await.is_some(), "the session is kept");
    }

    #[tokio::test]
    async fn a_failed_exchange_is_shared_by_the_waiters_and_not_cached() {
        let cache = SessionCache::new(WorkerMetrics::unregistered());
        let error = cache
            .get_or_exchange("T1", async { Err::<ChannelSession, _>("unavailable") })
            .await
            .expect_err("the error");
        assert_eq!(*error, "unavailable");
        assert!(cache.get("T1").await.is_none());
    }

    #[tokio::test]
    async fn an_expiring_session_is_used_once_but_not_kept() {
        let cache = SessionCache::new(WorkerMetrics::unregistered());
        let used = cache
            .get_or_exchange::<String, _>("T1", async { Ok(session(chrono::Duration::seconds(2))) })
            .await
            .expect("session");
        assert_eq!(used.instance_id, "inst");
        assert!(cache.get("T1").await.is_none());
    }

    #[tokio::test]
    async fn a_runtime_going_away_drops_the_sessions_bound_to_it() {
        let cache = SessionCache::new(WorkerMetrics::unregistered());
        for team in ["T1", "T2"] {
            cache
                .get_or_exchange::<String, _>(team, async {
                    Ok(session(chrono::Duration::minutes(10)))
                })
                .await
                .expect("session");
        }
        cache.sessions.run_pending_tasks().await;
        assert_eq!(cache.invalidate_runtime("ns", "inst"), 2);
        assert!(cache.get("T1").await.is_none());
        assert_eq!(cache.teams_bound_to("ns", "inst").len(), 2);
    }
}
