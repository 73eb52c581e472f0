//! The ledger's one Redis connection, kept alive in the background: a multiplexed
//! connection to the current primary, replaced when a call shows it is broken (the
//! socket dropped, the server answered `READONLY` because a failover demoted it, or
//! nothing at all came back for [`STALE_AFTER`]). Each replacement asks the
//! [`RedisTarget`] again, so with Sentinel the next connection goes to the primary the
//! sentinels name now.
//!
//! The redis crate's `ConnectionManager` reconnects too, but always to the address it
//! was built with, which after a Sentinel failover is a replica.
//!
//! The connection's driver (the task that writes requests and reads answers) and the
//! lease renewals ([`crate::leases`]) run on a runtime of their own, one thread named
//! `spritz-ledger`: with thousands of deliveries runnable at once (a burst at a high
//! prefetch) the main runtime can take seconds to come round to any one task, and a
//! driver queued behind them let answers sit unread until calls timed out (measured:
//! 10,000 deliveries arriving in 5 s). Callers on the main runtime only hand requests
//! over and wait for answers.
//!
//! While no connection exists every call fails at once with
//! [`Error::RedisUnavailable`]: deliveries are then retried, never processed without a
//! claim.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind,
    Value,
};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::target::RedisTarget;
use crate::error::{Error, Result};

/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A connection that timed out and answered nothing for this long is replaced (a
/// primary that vanished without closing its sockets). A single timeout under load is
/// not a reason: the answers still come, and a reconnect would fail every call made
/// meanwhile.
const STALE_AFTER: Duration = Duration::from_secs(5);
/// How often the background task checks whether every ledger handle is gone.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

/// Shared state of the link; the background task owns the [`RedisTarget`].
pub(crate) struct RedisLink {
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    broken: Arc<Notify>,
    connected_once: AtomicBool,
    /// Milliseconds since `epoch` of the last answer Redis gave on any connection.
    last_answer: AtomicU64,
    epoch: Instant,
    runtime: Handle,
}

impl RedisLink {
    /// Starts the `spritz-ledger` thread, which connects and keeps a connection until
    /// `stop` or until every handle on the link is dropped.
    ///
    /// # Errors
    /// The thread or its runtime could not be made.
    pub(crate) fn start(
        target: RedisTarget,
        connect_timeout: Duration,
        response_timeout: Duration,
        stop: CancellationToken,
    ) -> Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("spritz-ledger")
            .build()
            .map_err(Error::LedgerThread)?;
        let link = Arc::new(Self {
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            broken: Arc::new(Notify::new()),
            connected_once: AtomicBool::new(false),
            last_answer: AtomicU64::new(0),
            epoch: Instant::now(),
            runtime: runtime.handle().clone(),
        });
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        let weak = Arc::downgrade(&link);
        let broken = link.broken.clone();
        std::thread::Builder::new()
            .name("spritz-ledger".into())
            .spawn(move || runtime.block_on(keep_connected(weak, broken, target, config, stop)))
            .map_err(Error::LedgerThread)?;
        Ok(link)
    }

    /// Runs `task` on the ledger's runtime (the lease renewals).
    pub(crate) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(task)
    }

    /// A connection has existed at least once (readiness).
    pub(crate) fn connected_once(&self) -> bool {
        self.connected_once.load(Ordering::Relaxed)
    }

    /// The current connection, or [`Error::RedisUnavailable`] while there is none.
    pub(crate) fn connection(self: &Arc<Self>) -> Result<LedgerConnection> {
        let slot = self.slot();
        let (generation, connection) = slot.as_ref().ok_or(Error::RedisUnavailable)?;
        Ok(LedgerConnection {
            inner: connection.clone(),
            generation: *generation,
            link: self.clone(),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn millis_since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn answered(&self) {
        self.last_answer
            .store(self.millis_since_epoch(), Ordering::Relaxed);
    }

    /// A call on connection `generation` failed with `error`; replace the connection
    /// when the error says it is unusable (once per generation).
    fn report(&self, generation: u64, error: &RedisError) {
        if !self.needs_new_connection(error) {
            return;
        }
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            *slot = None;
            drop(slot);
            tracing::warn!(kind = ?error.kind(), "redis connection unusable; reconnecting");
            self.broken.notify_one();
        }
    }

    /// A broken socket or a demoted primary: a new connection (to the primary the
    /// target names now) is the cure; so is silence, once it has lasted
    /// [`STALE_AFTER`]. Script and argument errors are not.
    fn needs_new_connection(&self, error: &RedisError) -> bool {
        if error.is_timeout() {
            let silent_for = self
                .millis_since_epoch()
                .saturating_sub(self.last_answer.load(Ordering::Relaxed));
            return Duration::from_millis(silent_for) >= STALE_AFTER;
        }
        error.is_unrecoverable_error()
            || error.is_io_error()
            || error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
            || error.kind() == ErrorKind::Server(ServerErrorKind::MasterDown)
    }
}

async fn keep_connected(
    link: Weak<RedisLink>,
    broken: Arc<Notify>,
    mut target: RedisTarget,
    config: AsyncConnectionConfig,
    stop: CancellationToken,
) {
    let what = target.describe();
    let mut delay = Duration::from_millis(50);
    loop {
        if link.strong_count() == 0 {
            return;
        }
        let attempt = async {
            let client = target.primary_client().await?;
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
        };
        let attempt = tokio::select! {
            attempt = attempt => attempt,
            () = stop.cancelled() => return,
        };
        match attempt {
            Ok(connection) => {
                let Some(shared) = link.upgrade() else { return };
                let generation = shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *shared.slot() = Some((generation, connection));
                shared.answered();
                shared.connected_once.store(true, Ordering::Relaxed);
                tracing::info!(target_kind = %what, generation, "redis connected");
                drop(shared);
                delay = Duration::from_millis(50);
                if !wait_until_broken(&link, &broken, &stop).await {
                    return;
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(target_kind = %what, kind = ?error.kind(), error = %error, "redis connection failed")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// Waits until a call reports the connection broken (`true`), or until `stop` or the
/// last handle on the link is gone (`false`).
async fn wait_until_broken(
    link: &Weak<RedisLink>,
    broken: &Notify,
    stop: &CancellationToken,
) -> bool {
    loop {
        if link.strong_count() == 0 {
            return false;
        }
        tokio::select! {
            () = broken.notified() => return true,
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(LIVENESS_CHECK) => {}
        }
    }
}

/// A connection handed to one ledger call: reports its own failures to the link.
pub(crate) struct LedgerConnection {
    inner: MultiplexedConnection,
    generation: u64,
    link: Arc<RedisLink>,
}

impl LedgerConnection {
    /// Reports an error that came back inside a pipeline's answers (a pipeline run
    /// with `ignore_errors` succeeds as a whole even when a primary answered
    /// `READONLY` to each command).
    pub(crate) fn report(&self, error: &RedisError) {
        self.link.report(self.generation, error);
    }

    fn settle<T>(&self, result: &Result<T, RedisError>) {
        match result {
            Ok(_) => self.link.answered(),
            Err(error) => self.link.report(self.generation, error),
        }
    }
}

impl ConnectionLike for LedgerConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.inner.req_packed_command(cmd).await;
            self.settle(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.settle(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
