//! The notifier as one value: [`Notifier::build`] wires the broker, the ops listener
//! and the metrics; [`Notifier::run_until_stopped`] competes for the Lease and, while
//! leading, watches and announces. Every task it starts is owned by the run future, so
//! dropping that future (a test "killing" a replica) stops them all at once.

use std::net::SocketAddr;
use std::time::Duration;

use spritz_service::process::{BoundShell, ProcessShell};
use spritz_service::{Broker, BrokerSettings};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::announce::Announcer;
use crate::config::NotifierConfig;
use crate::error::Result;
use crate::leader::LeaderElector;
use crate::metrics::NotifierMetrics;
use crate::pipeline::Pipeline;
use crate::watch::observe;

/// Leadership and watch state, for `/readyz` and for tests that wait on them.
#[derive(Clone)]
pub struct Status {
    leading: watch::Sender<bool>,
    synced: watch::Sender<bool>,
}

impl Status {
    fn new() -> Self {
        Self {
            leading: watch::channel(false).0,
            synced: watch::channel(false).0,
        }
    }

    /// Holds the Lease now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Leading, and every watch scope has listed at least once.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until [`Status::is_leader`] equals `leading`; false on timeout.
    pub async fn wait_for_leadership(&self, leading: bool, timeout: Duration) -> bool {
        let mut rx = self.leading.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|l| *l == leading))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until the leader's watch has synced; false on timeout.
    pub async fn wait_until_synced(&self, timeout: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// A built notifier, ready to run.
pub struct Notifier {
    config: NotifierConfig,
    client: kube::Client,
    shell: BoundShell,
    metrics: NotifierMetrics,
    status: Status,
}

impl Notifier {
    /// Registers metrics, starts connecting to the broker (in the background: the
    /// process serves `/healthz` while the broker is away) and binds the ops listener.
    ///
    /// # Errors
    /// The ops address cannot be bound, or a metric clashes.
    pub async fn build(config: NotifierConfig, client: kube::Client) -> Result<Self> {
        let mut settings = BrokerSettings::new(
            config.amqp_url.clone(),
            format!("spritz-notifier {}", config.lease.identity),
        );
        settings.max_backoff = config.broker_max_backoff;
        settings.trust = config.trust.clone();
        let shell = ProcessShell::start("notifier", settings, config.metrics_addr).await?;
        let metrics = NotifierMetrics::register(shell.registry())?;
        let status = Status::new();
        let shell = shell
            .ready_when("watch", {
                let status = status.clone();
                move || !status.is_leader() || status.is_synced()
            })
            .build()?;
        Ok(Self {
            config,
            client,
            shell,
            metrics,
            status,
        })
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.shell.ops_addr()
    }

    pub fn status(&self) -> Status {
        self.status.clone()
    }

    pub fn metrics(&self) -> NotifierMetrics {
        self.metrics.clone()
    }

    pub fn broker(&self) -> Broker {
        self.shell.broker().clone()
    }

    /// Runs until `shutdown`: then in-flight announcements finish (within a grace
    /// period), the Lease is released so another replica takes over at once, and the
    /// broker connection is closed.
    ///
    /// # Errors
    /// The ops listener failed, or a task panicked.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<()> {
        let Notifier {
            config,
            client,
            shell,
            metrics,
            status,
        } = self;
        // Dropped with the run future (a test killing a replica), the shell stops the
        // broker supervisor and the ops listener with it.
        let shell = shell.serve();
        let broker = shell.broker().clone();

        let elector_stop = CancellationToken::new();
        let mut elector_task = JoinSet::new();
        let elector = LeaderElector::new(
            client.clone(),
            config.lease.clone(),
            metrics.is_leader.clone(),
        );
        elector_task.spawn(elector.run(elector_stop.clone(), status.leading.clone()));

        let pipeline = Pipeline {
            announcer: Announcer::new(broker.clone(), client.clone(), metrics.clone()),
            broker: broker.clone(),
            metrics: metrics.clone(),
            settings: config.pipeline,
            scopes: config.namespaces.len().max(1),
            synced: status.synced.clone(),
        };
        let mut leading = status.leading.subscribe();
        while !shutdown.is_cancelled() {
            tokio::select! {
                () = shutdown.cancelled() => break,
                became = leading.wait_for(|l| *l) => if became.is_err() { break },
            }
            tracing::info!(namespaces = ?config.namespaces, "leading: watching Spritz objects");
            let observations = observe(&client, &config.namespaces, config.watch, &metrics);
            tokio::select! {
                () = pipeline.run(observations, shutdown.clone()) => {}
                _ = leading.wait_for(|l| !*l) => tracing::warn!("leadership lost: stopped publishing"),
            }
            metrics.watched_objects.set(0);
        }

        elector_stop.cancel();
        while let Some(joined) = elector_task.join_next().await {
            joined?;
        }
        shell.stop().await;
        tracing::info!("notifier stopped");
        Ok(())
    }
}
