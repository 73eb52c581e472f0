//! The broker connection every process holds, and publishing as SPEC §4 defines it.
//!
//! A supervisor task connects, declares the whole topology, opens confirm-mode
//! publisher channels and publishes the live [`Link`]; when the connection or one of
//! its channels breaks it drops the link (readiness goes false, publishes fail fast
//! with [`PublishError::Unavailable`]), backs off, and starts again. lapin's own
//! recovery is not used: it neither redeclares our topology nor restarts our consumers.
//! Consumers follow [`Broker::links`] and start over on every new link.
//!
//! The broker may be a cluster: [`BrokerSettings::addresses`] lists its nodes, and each
//! attempt walks them in order, starting after the node of the last link (lapin
//! connects to one URI and has no failover). A client whose node dies therefore
//! reconnects to the next live node, redeclares the topology there (the quorum queues
//! are replicated, so they are all still there) and its consumers resume.
//!
//! A publish is done only when the broker confirmed it: persistent, `mandatory`, and
//! an ack without a returned message. A nack, a return, a broken channel or no confirm
//! within the timeout is an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::runtime::default_runtime;
use lapin::tcp::OwnedTLSConfig;
use lapin::types::ShortString;
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, Event};
use spritz_proto::properties::Envelope;
use spritz_proto::topology::{self, TopologyOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::amqp_addresses::{AmqpAddress, AmqpAddresses};
use crate::metrics::BrokerMetrics;
use crate::tls::Trust;

/// How a process connects.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// The broker's nodes, tried in order; never logged but by `host:port` (the URLs
    /// hold a password).
    pub addresses: AmqpAddresses,
    /// Shown in the broker's management UI.
    pub connection_name: String,
    pub topology: TopologyOptions,
    /// How long a publish waits for the broker's confirm.
    pub confirm_timeout: Duration,
    /// Confirm-mode channels publishes are spread over.
    pub publisher_channels: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// One node's budget for connecting, declaring the topology and opening the
    /// publisher channels; past it the next node is tried.
    pub connect_timeout: Duration,
    /// Whom an `amqps://` node must prove itself to: the platform's roots plus
    /// `SPRITZ_TLS_CA_FILE`.
    pub trust: Trust,
}

impl BrokerSettings {
    /// `addresses`: one URL, a comma-separated list, or an [`AmqpAddresses`] parsed
    /// from configuration.
    pub fn new(addresses: impl Into<AmqpAddresses>, connection_name: impl Into<String>) -> Self {
        Self {
            addresses: addresses.into(),
            connection_name: connection_name.into(),
            topology: TopologyOptions::default(),
            confirm_timeout: Duration::from_secs(2),
            publisher_channels: 4,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(15),
            trust: Trust::default(),
        }
    }
}

/// Why a publish did not succeed. Every variant means "not durably queued".
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker is not connected")]
    Unavailable,
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the message was unroutable and returned ({0})")]
    Returned(String),
    #[error("no broker confirm within {0:?}")]
    Timeout(Duration),
    #[error("broker error")]
    Broker(#[source] lapin::Error),
}

impl PublishError {
    /// A fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Unavailable => "unavailable",
            PublishError::Nacked => "nacked",
            PublishError::Returned(_) => "returned",
            PublishError::Timeout(_) => "timeout",
            PublishError::Broker(_) => "error",
        }
    }
}

/// One live connection with its topology declared.
pub struct Link {
    generation: u64,
    endpoint: String,
    connection: Connection,
    publishers: Vec<Channel>,
    next_publisher: AtomicUsize,
    broken: CancellationToken,
}

impl Link {
    /// Increases by one with every new connection.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `host:port` of the node this link is connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// A new channel on this connection, for a consumer.
    ///
    /// # Errors
    /// The connection is gone.
    pub async fn create_channel(&self) -> Result<Channel, lapin::Error> {
        self.connection.create_channel().await
    }

    /// Marks this link as broken (a consumer saw its channel die); the supervisor
    /// reconnects. Harmless on a link that is already replaced.
    pub fn report_broken(&self) {
        self.broken.cancel();
    }

    /// Resolves when this link is broken or being replaced.
    pub async fn closed(&self) {
        self.broken.cancelled().await;
    }

    pub fn is_broken(&self) -> bool {
        self.broken.is_cancelled()
    }

    fn publisher(&self) -> &Channel {
        let index = self.next_publisher.fetch_add(1, Ordering::Relaxed) % self.publishers.len();
        &self.publishers[index]
    }
}

/// A cheap, cloneable handle on the process's broker connection.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    settings: BrokerSettings,
    link: watch::Sender<Option<Arc<Link>>>,
    metrics: BrokerMetrics,
    stop: CancellationToken,
    generation: AtomicU64,
}

impl Broker {
    /// Starts the supervisor; the first connection is made in the background, so a
    /// process can serve `/healthz` (and answer 503) while the broker is away.
    pub fn start(settings: BrokerSettings, metrics: BrokerMetrics) -> (Broker, JoinHandle<()>) {
        let (link, _) = watch::channel(None);
        let broker = Broker {
            inner: Arc::new(Inner {
                settings,
                link,
                metrics,
                stop: CancellationToken::new(),
                generation: AtomicU64::new(0),
            }),
        };
        let task = tokio::spawn(broker.clone().supervise());
        (broker, task)
    }

    /// Connected, topology declared.
    pub fn is_ready(&self) -> bool {
        self.inner
            .link
            .borrow()
            .as_ref()
            .is_some_and(|link| !link.is_broken())
    }

    /// The live link, if any.
    pub fn link(&self) -> Option<Arc<Link>> {
        self.inner
            .link
            .borrow()
            .clone()
            .filter(|link| !link.is_broken())
    }

    /// Every link as it comes; consumers restart on each new one.
    pub fn links(&self) -> watch::Receiver<Option<Arc<Link>>> {
        self.inner.link.subscribe()
    }

    /// Waits for a live link, up to `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Option<Arc<Link>> {
        let mut links = self.links();
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(link) = self.link() {
                    return Some(link);
                }
                if links.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    pub fn settings(&self) -> &BrokerSettings {
        &self.inner.settings
    }

    pub fn metrics(&self) -> &BrokerMetrics {
        &self.inner.metrics
    }

    /// Publishes and waits for the broker's confirm, with the configured timeout.
    ///
    /// # Errors
    /// [`PublishError`]: the message is not durably queued.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        envelope: &Envelope,
    ) -> Result<(), PublishError> {
        self.publish_within(
            exchange,
            routing_key,
            body,
            envelope,
            self.inner.settings.confirm_timeout,
        )
        .await
    }

    /// [`Broker::publish`] with an explicit confirm timeout.
    ///
    /// # Errors
    /// [`PublishError`]: the message is not durably queued.
    pub async fn publish_within(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        envelope: &Envelope,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        let started = Instant::now();
        let result = match self.link() {
            None => Err(PublishError::Unavailable),
            Some(link) => publish_on(&link, exchange, routing_key, body, envelope, timeout).await,
        };
        let label = if exchange.is_empty() {
            crate::metrics::DEFAULT_EXCHANGE_LABEL
        } else {
            exchange
        };
        let metrics = &self.inner.metrics;
        match &result {
            Ok(()) => {
                metrics
                    .publishes
                    .with_label_values(&[label, "confirmed"])
                    .inc();
                metrics
                    .confirm_seconds
                    .with_label_values(&[label])
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(error) => {
                metrics
                    .publishes
                    .with_label_values(&[label, error.reason()])
                    .inc();
            }
        }
        result
    }

    /// Closes the connection cleanly and stops reconnecting. Call after in-flight
    /// publishes and acks are done.
    pub async fn close(&self) {
        self.inner.stop.cancel();
        let link = self.inner.link.send_replace(None);
        if let Some(link) = link {
            link.broken.cancel();
            if let Err(error) = link
                .connection
                .close(200, ShortString::from("shutdown"))
                .await
            {
                tracing::debug!(%error, "closing the broker connection");
            }
        }
        self.inner.metrics.connected.set(0);
    }

    async fn supervise(self) {
        let settings = &self.inner.settings;
        let mut backoff = new_backoff(settings);
        let mut connected_before = false;
        // The node the next attempt starts with.
        let mut next = 0;
        while !self.inner.stop.is_cancelled() {
            let attempt = tokio::select! {
                attempt = self.connect_any(next) => attempt,
                () = self.inner.stop.cancelled() => break,
            };
            let Some((index, link)) = attempt else {
                self.pause(&mut backoff).await;
                continue;
            };
            // A reconnect starts after this node: when it is the one that died, the
            // next live node is tried first.
            next = index + 1;
            backoff = new_backoff(settings);
            if connected_before {
                self.inner.metrics.reconnects.inc();
            }
            connected_before = true;
            tracing::info!(
                generation = link.generation,
                node = %link.endpoint,
                "broker connected, topology declared"
            );
            let events = link.connection.events_listener();
            self.inner.metrics.connected.set(1);
            self.inner.link.send_replace(Some(link.clone()));
            watch_link(&link, events, &self.inner.stop).await;
            link.broken.cancel();
            self.inner.metrics.connected.set(0);
            if self.inner.stop.is_cancelled() {
                break;
            }
            self.inner.link.send_if_modified(|current| {
                let same = current
                    .as_ref()
                    .is_some_and(|c| c.generation == link.generation);
                if same {
                    *current = None;
                }
                same
            });
            tracing::warn!(
                generation = link.generation,
                node = %link.endpoint,
                "broker connection lost; reconnecting"
            );
            let _ = link
                .connection
                .close(320, ShortString::from("reconnecting"))
                .await;
            self.pause(&mut backoff).await;
        }
    }

    /// One walk over the nodes, starting with `start` (modulo their number): the first
    /// that connects and takes the topology wins, with its index. `None` when none did.
    async fn connect_any(&self, start: usize) -> Option<(usize, Arc<Link>)> {
        let settings = &self.inner.settings;
        let addresses = settings.addresses.as_slice();
        if addresses.is_empty() {
            tracing::warn!("no broker address configured");
            return None;
        }
        for offset in 0..addresses.len() {
            let index = (start + offset) % addresses.len();
            let address = &addresses[index];
            match tokio::time::timeout(settings.connect_timeout, self.connect(address)).await {
                Ok(Ok(link)) => return Some((index, link)),
                Ok(Err(error)) => {
                    tracing::warn!(node = %address.endpoint(), error = %error, "broker connection failed");
                }
                Err(_) => {
                    tracing::warn!(node = %address.endpoint(), "broker connection timed out");
                }
            }
        }
        None
    }

    async fn connect(&self, address: &AmqpAddress) -> Result<Arc<Link>, lapin::Error> {
        let settings = &self.inner.settings;
        let properties = ConnectionProperties::default()
            .with_connection_name(settings.connection_name.clone().into());
        // lapin adds the extra bundle to the platform roots it loads itself.
        let tls = OwnedTLSConfig {
            identity: None,
            cert_chain: settings.trust.extra_ca_pem().map(str::to_owned),
        };
        let connection =
            Connection::connect_with_config(address.url(), properties, tls, default_runtime()?)
                .await?;
        if let Err(error) = topology::declare(&connection, &settings.topology).await {
            let _ = connection
                .close(200, ShortString::from("topology refused"))
                .await;
            return Err(error);
        }
        let mut publishers = Vec::with_capacity(settings.publisher_channels.max(1));
        for _ in 0..settings.publisher_channels.max(1) {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            publishers.push(channel);
        }
        Ok(Arc::new(Link {
            generation: self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1,
            endpoint: address.endpoint().to_owned(),
            connection,
            publishers,
            next_publisher: AtomicUsize::new(0),
            broken: CancellationToken::new(),
        }))
    }

    async fn pause(&self, backoff: &mut impl Iterator<Item = Duration>) {
        let delay = backoff.next().unwrap_or(self.inner.settings.max_backoff);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.inner.stop.cancelled() => {}
        }
    }
}

fn new_backoff(settings: &BrokerSettings) -> impl Iterator<Item = Duration> + use<> {
    ExponentialBuilder::default()
        .with_min_delay(settings.min_backoff)
        .with_max_delay(settings.max_backoff)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Returns when the link breaks: a connection error event, a closed connection or
/// publisher channel (checked every second), a consumer's report, or shutdown.
async fn watch_link(
    link: &Link,
    events: impl futures::Stream<Item = Event> + Send,
    stop: &CancellationToken,
) {
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::Error(error)) => {
                    tracing::warn!(error = %error, "broker connection error");
                    return;
                }
                Some(_) => {}
                None => return,
            },
            _ = tick.tick() => {
                let channels_up = link.publishers.iter().all(|c| c.status().connected());
                if !link.connection.status().connected() || !channels_up {
                    return;
                }
            }
            () = link.broken.cancelled() => return,
            () = stop.cancelled() => return,
        }
    }
}

async fn publish_on(
    link: &Link,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    envelope: &Envelope,
    timeout: Duration,
) -> Result<(), PublishError> {
    let channel = link.publisher();
    let publish = async {
        let confirm = channel
            .basic_publish(
                ShortString::from(exchange),
                ShortString::from(routing_key),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                envelope.properties(),
            )
            .await?;
        confirm.await
    };
    match tokio::time::timeout(timeout, publish).await {
        Err(_) => Err(PublishError::Timeout(timeout)),
        Ok(Err(error)) => {
            if !channel.status().connected() {
                link.report_broken();
            }
            Err(PublishError::Broker(error))
        }
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(Confirmation::Ack(Some(returned)))) => Err(PublishError::Returned(
            returned.reply_text.as_str().to_owned(),
        )),
        Ok(Ok(Confirmation::Nack(_))) => Err(PublishError::Nacked),
        Ok(Ok(Confirmation::NotRequested)) => {
            // Publisher channels are always in confirm mode; this would be a bug.
            link.report_broken();
            Err(PublishError::Unavailable)
        }
    }
}
