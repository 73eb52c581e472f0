//! The shell every role runs in: a metrics registry with the build, process and broker
//! metrics, the broker connection (connecting in the background), `/readyz` with the
//! broker check plus the role's own, and the ops listener. One start order and one
//! stop order for all three roles:
//!
//! 1. [`ProcessShell::start`]: the ops listener is bound first (a port clash fails the
//!    start before anything connects), then the registry and the broker; the role
//!    registers its metrics and adds its readiness checks;
//! 2. [`ProcessShell::build`]: the ops routes are put together;
//! 3. [`BoundShell::serve`]: ops are served while the role runs;
//! 4. [`RunningShell::stop`], after the role's own work has stopped: the broker
//!    connection is closed, its supervisor awaited, and the ops listener stopped last,
//!    so `/metrics` stays scrapeable until the very end.

use std::net::SocketAddr;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerSettings};
use crate::metrics::{BrokerMetrics, register_build_info};
use crate::ops::{OpsServer, Readiness};

/// Why the shell could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("registering metrics")]
    Metrics(#[from] prometheus::Error),
    #[error("binding the ops listener on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A role's shell before its ops listener is bound.
pub struct ProcessShell {
    listener: TcpListener,
    registry: Registry,
    broker: Broker,
    supervisor: OwnedTask<()>,
    readiness: Readiness,
}

impl ProcessShell {
    /// Binds the ops listener on `ops_addr` (port 0 picks one), registers
    /// `spritz_build_info{process=role}`, the process and broker metrics, and starts
    /// connecting to the broker; `/readyz` will need a live broker link.
    ///
    /// # Errors
    /// The address cannot be bound, or a metric is already registered.
    pub async fn start(
        role: &str,
        settings: BrokerSettings,
        ops_addr: SocketAddr,
    ) -> Result<Self, ShellError> {
        let listener = TcpListener::bind(ops_addr)
            .await
            .map_err(|source| ShellError::Bind {
                addr: ops_addr,
                source,
            })?;
        let registry = Registry::new();
        register_build_info(&registry, role)?;
        let broker_metrics = BrokerMetrics::register(&registry)?;
        let (broker, supervisor) = Broker::start(settings, broker_metrics);
        let readiness = Readiness::new().with_check("broker", {
            let broker = broker.clone();
            move || broker.is_ready()
        });
        Ok(Self {
            listener,
            registry,
            broker,
            supervisor: OwnedTask(supervisor),
            readiness,
        })
    }

    /// Where the role registers its own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// One more condition for `/readyz`.
    #[must_use]
    pub fn ready_when(
        mut self,
        name: &'static str,
        check: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        self.readiness = self.readiness.with_check(name, check);
        self
    }

    /// The ops routes over the role's metrics and readiness checks.
    ///
    /// # Errors
    /// The bound listener has no address (it always has).
    pub fn build(self) -> Result<BoundShell, ShellError> {
        let ops_addr = self
            .listener
            .local_addr()
            .map_err(|source| ShellError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
        Ok(BoundShell {
            broker: self.broker,
            supervisor: self.supervisor,
            ops: OpsServer::on(self.listener, self.registry, self.readiness),
            ops_addr,
        })
    }
}

/// A shell with its ops listener bound, not yet serving.
pub struct BoundShell {
    broker: Broker,
    supervisor: OwnedTask<()>,
    ops: OpsServer,
    ops_addr: SocketAddr,
}

impl BoundShell {
    /// The bound `/metrics`, `/healthz`, `/readyz` listener.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Serves the ops listener in the background while the role runs.
    pub fn serve(self) -> RunningShell {
        let ops_stop = CancellationToken::new();
        let ops = OwnedTask(tokio::spawn(self.ops.run(ops_stop.clone())));
        RunningShell {
            broker: self.broker,
            supervisor: self.supervisor,
            ops_stop,
            ops,
        }
    }
}

/// A shell serving ops; [`RunningShell::stop`] is the one way down.
pub struct RunningShell {
    broker: Broker,
    supervisor: OwnedTask<()>,
    ops_stop: CancellationToken,
    ops: OwnedTask<std::io::Result<()>>,
}

impl RunningShell {
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Closes the broker connection, waits for its supervisor, then stops the ops
    /// listener. Call it once the role has stopped using the broker.
    pub async fn stop(self) {
        self.broker.close().await;
        let _ = self.supervisor.join().await;
        self.ops_stop.cancel();
        match self.ops.join().await {
            Ok(Err(error)) => tracing::warn!(%error, "operations listener failed"),
            Err(error) => tracing::warn!(%error, "operations listener task failed"),
            Ok(Ok(())) => {}
        }
    }
}

/// A task the shell owns, aborted when dropped: a shell dropped without a stop (a
/// failed start, a role's run future dropped by a test killing a replica) leaves no
/// reconnect loop and no ops listener behind.
struct OwnedTask<T>(JoinHandle<T>);

impl<T> OwnedTask<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for OwnedTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
