//! The worker process assembled: [`Application::build`] connects (in the background)
//! to the broker and Redis, builds the clients and the pipeline and binds the ops
//! listener; [`Application::run_until_stopped`] consumes until the shutdown token is
//! cancelled, drains, closes the broker and returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::Registry;
use spritz_proto::topology::{RetryTiers, TopologyOptions};
use spritz_service::metrics::{BrokerMetrics, register_build_info};
use spritz_service::{Broker, BrokerSettings, OpsServer, Readiness};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend_sync::{self, BackendSyncMetrics, BackendSyncSettings};
use crate::clients::http::build_client;
use crate::clients::{AcpClient, BackendClient, SlackClient, SpritzClient};
use crate::config::WorkerConfig;
use crate::consumer::{self, ConsumerSettings, Settler};
use crate::error::Result;
use crate::leases::Leases;
use crate::ledger::Ledger;
use crate::lifecycle::{self, LifecycleHandler};
use crate::metrics::WorkerMetrics;
use crate::pipeline::{Clients, Pipeline};
use crate::requeue::Requeue;
use crate::sessions::SessionCache;
use crate::wake::Waker;

/// A built worker, not yet consuming.
pub struct Application {
    config: WorkerConfig,
    broker: Broker,
    broker_task: JoinHandle<()>,
    ops: OpsServer,
    ops_addr: SocketAddr,
    pipeline: Arc<Pipeline>,
    settler: Settler,
    lifecycle: LifecycleHandler,
    backend_sync_metrics: BackendSyncMetrics,
    /// Stops background work (Redis connect) that outlives the consume loop.
    background: CancellationToken,
    consuming: Arc<AtomicBool>,
}

impl Application {
    /// Builds everything and binds the ops listener; the broker and Redis connect in
    /// the background (readiness says when).
    ///
    /// # Errors
    /// The ops address cannot be bound, a metric clashes, or the HTTP client cannot be
    /// built.
    pub async fn build(config: WorkerConfig) -> Result<Self> {
        let registry = Registry::new();
        register_build_info(&registry, "worker")?;
        let broker_metrics = BrokerMetrics::register(&registry)?;
        let metrics = WorkerMetrics::register(&registry)?;
        let backend_sync_metrics = BackendSyncMetrics::register(&registry)?;

        let tiers = RetryTiers::with_defaults_and([config.timing.session_retry_interval]);
        let mut settings = BrokerSettings::new(config.amqp_url.clone(), "spritz-worker");
        settings.topology = TopologyOptions {
            work_retry_tiers: tiers.clone(),
            ..TopologyOptions::default()
        };
        settings.trust = config.trust.clone();
        let (broker, broker_task) = Broker::start(settings, broker_metrics);

        let background = CancellationToken::new();
        let target = config.redis_target()?;
        let ledger = Ledger::connect(
            target,
            &config.redis_key_prefix,
            config.timing.dedupe_ttl,
            config.timing.http_timeout,
            background.clone(),
        )?;
        let leases = Leases::default();
        leases.spawn_renewer(
            ledger.clone(),
            config.timing.claim_lease,
            metrics.clone(),
            background.clone(),
        );

        let http = build_client(&config.trust, config.timing.http_timeout)?;
        let services = &config.services;
        let clients = Clients {
            backend: BackendClient::new(
                http.clone(),
                services.backend_base_url.clone(),
                services.backend_token.clone(),
                services.principal_id.clone(),
            ),
            spritz: SpritzClient::new(
                http.clone(),
                services.spritz_base_url.clone(),
                services.spritz_service_token.clone(),
            ),
            acp: AcpClient::from_config(&config),
            slack: SlackClient::new(http, services.slack_api_base_url.clone()),
        };
        let sessions = SessionCache::new(metrics.clone());
        let waker = Waker::new();
        let requeue = Requeue::new(broker.clone(), tiers);
        let pipeline = Arc::new(Pipeline::new(
            clients,
            ledger.clone(),
            leases,
            sessions.clone(),
            waker.clone(),
            metrics.clone(),
            config.timing.clone(),
            services.principal_id.clone(),
        ));
        let settler = Settler {
            requeue: requeue.clone(),
            waker: waker.clone(),
            ledger: ledger.clone(),
            metrics: metrics.clone(),
        };
        let lifecycle = LifecycleHandler {
            sessions,
            waker,
            requeue,
            ledger: ledger.clone(),
            metrics,
            subscribed: Arc::default(),
        };
        let consuming: Arc<AtomicBool> = Arc::default();

        let ready_broker = broker.clone();
        let (work, broadcast) = (consuming.clone(), lifecycle.subscribed.clone());
        let readiness = Readiness::new()
            .with_check("broker", move || ready_broker.is_ready())
            .with_check("redis", move || ledger.is_connected())
            .with_check("work consumer", move || work.load(Ordering::Relaxed))
            .with_check("lifecycle consumer", move || {
                broadcast.load(Ordering::Relaxed)
            });
        let ops = OpsServer::bind(config.metrics_addr, registry, readiness).await?;
        let ops_addr = ops.local_addr()?;
        Ok(Self {
            config,
            broker,
            broker_task,
            ops,
            ops_addr,
            pipeline,
            settler,
            lifecycle,
            backend_sync_metrics,
            background,
            consuming,
        })
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// The pipeline, for callers that process deliveries directly (tests, benches).
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.clone()
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Consumes until `shutdown`, then stops taking work, finishes or hands back
    /// in-flight deliveries within the grace period, and closes the broker.
    ///
    /// # Errors
    /// Never at present; kept for symmetry with the other roles.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<()> {
        let ops_stop = CancellationToken::new();
        let ops = tokio::spawn(self.ops.run(ops_stop.clone()));
        let consumers_stop = shutdown.child_token();
        let lifecycle = tokio::spawn(lifecycle::run(
            self.broker.clone(),
            self.lifecycle,
            consumers_stop.clone(),
        ));
        let sync_broker = self.broker.clone();
        let sync_stop = consumers_stop.clone();
        let sync = match &self.config.lifecycle_notify {
            Some(notify) => {
                let mut settings = BackendSyncSettings::new(notify.url.clone());
                settings.token = notify.token.clone();
                settings.timeout = notify.timeout;
                settings.trust = self.config.trust.clone();
                tokio::spawn(backend_sync::run(
                    sync_broker,
                    settings,
                    self.backend_sync_metrics,
                    sync_stop,
                ))
            }
            None => tokio::spawn(backend_sync::run_without_webhook(
                sync_broker,
                self.backend_sync_metrics,
                sync_stop,
            )),
        };
        let settings = ConsumerSettings {
            prefetch: self.config.prefetch,
            shutdown_grace: self.config.shutdown_grace,
            consuming: self.consuming,
        };
        consumer::run(
            self.broker.clone(),
            self.pipeline,
            self.settler,
            settings,
            shutdown,
        )
        .await;
        let _ = lifecycle.await;
        let _ = sync.await;
        self.broker.close().await;
        let _ = self.broker_task.await;
        self.background.cancel();
        ops_stop.cancel();
        let _ = ops.await;
        tracing::info!("worker stopped");
        Ok(())
    }
}
