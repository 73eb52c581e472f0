//! Building and running the ingress: [`Application::build`] starts the process shell
//! (broker, metrics, ops listener) and binds the Slack listener;
//! [`Application::run_until_stopped`] serves until the shutdown token fires, lets
//! in-flight requests (and so their publishes) finish, then stops the shell.

use std::net::SocketAddr;

use axum::serve::ListenerExt as _;
use spritz_service::process::{BoundShell, ProcessShell};
use spritz_service::{Broker, BrokerSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app_state::AppState;
use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::install::Installer;
use crate::metrics::GatewayMetrics;
use crate::oauth_state::StateSigner;
use crate::routes::router;

/// A gateway with its listeners bound, ready to run.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    router: axum::Router,
    shell: BoundShell,
}

impl Application {
    /// Binds `SPRITZ_SLACK_GATEWAY_ADDR` and `SPRITZ_METRICS_ADDR` (port 0 picks a free
    /// one) and starts connecting to the broker in the background: until it is up,
    /// events are answered 503 and `/readyz` fails.
    ///
    /// # Errors
    /// A listener cannot be bound, or the HTTP client cannot be built.
    pub async fn build(config: ServeConfig) -> Result<Self> {
        let mut settings = BrokerSettings::new(config.amqp_url.clone(), "spritz-gateway serve");
        settings.confirm_timeout = config.publish_timeout;
        settings.publisher_channels = config.publisher_channels;
        settings.trust = config.trust.clone();
        let shell = ProcessShell::start("gateway", settings, config.metrics_addr.0).await?;
        let metrics = GatewayMetrics::register(shell.registry())?;
        let shell = shell.build()?;

        let installer = Installer::new(&config)?;
        let state = AppState::new(
            shell.broker().clone(),
            metrics,
            config.signing_secret.clone(),
            config.publish_timeout,
            installer,
            StateSigner::new(config.oauth_state_secret.clone()),
        );
        let router = router(state, config.route_prefix());
        let listener = TcpListener::bind(config.listen_addr.0)
            .await
            .map_err(|e| Error::Bind(e, config.listen_addr.0))?;
        let addr = listener.local_addr().map_err(Error::Serve)?;
        Ok(Self {
            listener,
            addr,
            router,
            shell,
        })
    }

    /// The bound Slack listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound `/metrics` listener.
    pub fn ops_addr(&self) -> SocketAddr {
        self.shell.ops_addr()
    }

    pub fn broker(&self) -> &Broker {
        self.shell.broker()
    }

    /// Serves until `shutdown` is cancelled: stops accepting, waits for in-flight
    /// requests, closes the broker connection, stops the operations listener.
    ///
    /// # Errors
    /// The main listener failed.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<()> {
        let shell = self.shell.serve();
        // Answers are small: send them at once instead of waiting on Nagle's algorithm.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY not set");
            }
        });
        let served = axum::serve(listener, self.router)
            .with_graceful_shutdown({
                let shutdown = shutdown.clone();
                async move { shutdown.cancelled().await }
            })
            .await;
        tracing::info!("stopped accepting; in-flight requests done, closing the broker connection");
        shell.stop().await;
        served.map_err(Error::Serve)
    }
}
