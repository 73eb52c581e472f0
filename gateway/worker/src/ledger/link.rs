//! The ledger's one Redis connection, kept alive in the background: a multiplexed
//! connection to the current primary, replaced when a call shows it is broken (the
//! socket dropped, the server answered `READONLY` because a failover demoted it, or no
//! answer came in time). Each replacement asks the [`RedisTarget`] again, so with
//! Sentinel the next connection goes to the primary the sentinels name now.
//!
//! The redis crate's `ConnectionManager` reconnects too, but always to the address it
//! was built with, which after a Sentinel failover is a replica.
//!
//! While no connection exists every call fails at once with
//! [`Error::RedisUnavailable`]: deliveries are then retried, never processed without a
//! claim.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind,
    Value,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::target::RedisTarget;
use crate::error::{Error, Result};

/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Shared state of the link; the background task owns the [`RedisTarget`].
pub(crate) struct RedisLink {
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    broken: Notify,
    connected_once: AtomicBool,
}

impl RedisLink {
    /// Starts connecting in the background, and keeps a connection until `stop`.
    pub(crate) fn start(
        target: RedisTarget,
        connect_timeout: Duration,
        response_timeout: Duration,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let link = Arc::new(Self {
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            broken: Notify::new(),
            connected_once: AtomicBool::new(false),
        });
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        tokio::spawn(keep_connected(link.clone(), target, config, stop));
        link
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

    /// A call on connection `generation` failed with `error`; replace the connection
    /// when the error says it is unusable (once per generation).
    fn report(&self, generation: u64, error: &RedisError) {
        if !needs_new_connection(error) {
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
}

/// A broken socket, a demoted primary, or silence: a new connection (to the primary
/// the target names now) is the cure. Script and argument errors are not.
fn needs_new_connection(error: &RedisError) -> bool {
    error.is_unrecoverable_error()
        || error.is_timeout()
        || error.is_io_error()
        || error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || error.kind() == ErrorKind::Server(ServerErrorKind::MasterDown)
}

async fn keep_connected(
    link: Arc<RedisLink>,
    mut target: RedisTarget,
    config: AsyncConnectionConfig,
    stop: CancellationToken,
) {
    let what = target.describe();
    let mut delay = Duration::from_millis(50);
    loop {
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
                let generation = link.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *link.slot() = Some((generation, connection));
                link.connected_once.store(true, Ordering::Relaxed);
                tracing::info!(target_kind = %what, generation, "redis connected");
                delay = Duration::from_millis(50);
                tokio::select! {
                    () = link.broken.notified() => continue,
                    () = stop.cancelled() => return,
                }
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
}

impl ConnectionLike for LedgerConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.inner.req_packed_command(cmd).await;
            if let Err(error) = &result {
                self.link.report(self.generation, error);
            }
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
            if let Err(error) = &result {
                self.link.report(self.generation, error);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
