//! Test harness: the fake API server and a fresh RabbitMQ vhost per test, notifier
//! replicas started in-process on port 0 with short lease timings, and a queue bound
//! to `spritz.lifecycle` that the test reads events from.

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use spritz_notifier::NOTIFIED_PHASE_ANNOTATION;
use spritz_notifier::config::{
    AMQP_URL, LEASE_DURATION, LEASE_NAMESPACE, LEASE_RENEW_INTERVAL, METRICS_ADDR, NAMESPACES,
    POD_NAME,
};
use spritz_notifier::metrics::NotifierMetrics;
use spritz_notifier::tracker::Backoff;
use spritz_notifier::{Notifier, NotifierConfig, Status};
use spritz_proto::topology::{self, LIFECYCLE_ALL, LIFECYCLE_EXCHANGE, TopologyOptions};
use spritz_proto::{LifecycleEvent, Phase};
use spritz_sandbox::isolation::{BrokerAdmin, TestVhost};
use spritz_sandbox::kubernetes::FakeKubernetes;
use spritz_service::config::Env;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any single expected thing may take.
pub const WAIT: Duration = Duration::from_secs(15);
/// Lease timings of test replicas.
pub const LEASE: Duration = Duration::from_secs(2);
pub const RENEW: Duration = Duration::from_millis(500);
pub const LEASE_NS: &str = "spritz-system";
/// The queue each test binds to the lifecycle exchange.
pub const TEST_QUEUE: &str = "test.lifecycle";

/// One test's world: a fake API server and an empty vhost with the topology and the
/// test queue declared.
pub struct World {
    pub fake: FakeKubernetes,
    pub vhost: TestVhost,
}

impl World {
    pub async fn start() -> Self {
        spritz_service::telemetry::init_test_subscriber();
        let fake = FakeKubernetes::start()
            .await
            .expect("fake kubernetes starts");
        let vhost = BrokerAdmin::from_env()
            .create_vhost()
            .await
            .expect("test vhost");
        declare_test_queue(&vhost).await.expect("test queue");
        Self { fake, vhost }
    }

    /// Configuration of a replica named `identity` (watching `namespaces`, all when
    /// empty) with short timings.
    pub fn config(&self, identity: &str, namespaces: &[&str]) -> NotifierConfig {
        let mut vars = vec![
            (AMQP_URL, self.vhost.amqp_url()),
            (METRICS_ADDR, "127.0.0.1:0".to_owned()),
            (LEASE_NAMESPACE, LEASE_NS.to_owned()),
            (LEASE_DURATION, "2s".to_owned()),
            (LEASE_RENEW_INTERVAL, "500ms".to_owned()),
            (POD_NAME, identity.to_owned()),
        ];
        if !namespaces.is_empty() {
            vars.push((NAMESPACES, namespaces.join(",")));
        }
        let mut config = NotifierConfig::from_env(&Env::from_map(vars)).expect("valid test config");
        config.pipeline.retry = Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(500),
        };
        config.watch.min_backoff = Duration::from_millis(50);
        config.watch.max_backoff = Duration::from_millis(500);
        config.broker_max_backoff = Duration::from_millis(500);
        config
    }

    /// Starts a replica watching every namespace.
    pub async fn replica(&self, identity: &str) -> Replica {
        Replica::spawn(self.config(identity, &[]), &self.fake).await
    }

    /// Starts a replica and waits until it leads with its watch synced.
    pub async fn leader(&self, identity: &str) -> Replica {
        let replica = self.replica(identity).await;
        replica.wait_until_leading_and_synced().await;
        replica
    }

    /// Reads events from the test queue.
    pub async fn events(&self) -> Events {
        Events::consume(&self.vhost)
            .await
            .expect("consume the test queue")
    }

    /// Whose name the Lease holds.
    pub fn lease_holder(&self) -> Option<String> {
        self.fake.lease_holder(LEASE_NS, "spritz-notifier")
    }

    /// Waits until the object's last-announced-phase annotation says `phase`; panics
    /// with `what` when it does not within [`WAIT`].
    pub async fn wait_until_recorded(&self, namespace: &str, name: &str, phase: &str, what: &str) {
        self.fake
            .wait_for_annotation(namespace, name, NOTIFIED_PHASE_ANNOTATION, phase, WAIT)
            .await
            .expect(what);
    }
}

impl Drop for World {
    /// Deletes the vhost, best effort and without waiting (deleting quorum queues can
    /// take the broker many seconds); `scripts/test` removes whatever is left.
    fn drop(&mut self) {
        let vhost = self.vhost.clone();
        std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = runtime.block_on(vhost.delete());
            }
        });
    }
}

/// A notifier running in-process.
pub struct Replica {
    pub identity: String,
    pub status: Status,
    pub metrics: NotifierMetrics,
    pub ops_addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<spritz_notifier::Result<()>>,
}

impl Replica {
    pub async fn spawn(config: NotifierConfig, fake: &FakeKubernetes) -> Self {
        let identity = config.lease.identity.clone();
        let client = fake.client().expect("kube client");
        let notifier = Notifier::build(config, client)
            .await
            .expect("notifier builds");
        let status = notifier.status();
        let metrics = notifier.metrics();
        let ops_addr = notifier.ops_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(notifier.run_until_stopped(shutdown.clone()));
        Self {
            identity,
            status,
            metrics,
            ops_addr,
            shutdown,
            task,
        }
    }

    pub async fn wait_until_leading_and_synced(&self) {
        assert!(
            self.status.wait_for_leadership(true, WAIT).await,
            "{} never became leader",
            self.identity
        );
        assert!(
            self.status.wait_until_synced(WAIT).await,
            "{}'s watch never synced",
            self.identity
        );
    }

    /// SIGTERM, in effect: drains, releases the lease, exits.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("stops in time")
            .expect("task did not panic")
            .expect("clean stop");
    }

    /// A crash: every task stops at once; the lease is not released.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn declare_test_queue(vhost: &TestVhost) -> anyhow::Result<()> {
    let connection =
        Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    topology::declare(&connection, &TopologyOptions::default()).await?;
    channel
        .queue_declare(
            ShortString::from(TEST_QUEUE),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            ShortString::from(TEST_QUEUE),
            ShortString::from(LIFECYCLE_EXCHANGE),
            ShortString::from(LIFECYCLE_ALL),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    connection.close(200, ShortString::from("declared")).await?;
    Ok(())
}

/// One event as it arrived.
#[derive(Debug)]
pub struct Received {
    pub event: LifecycleEvent,
    pub routing_key: String,
    pub message_id: Option<String>,
    pub message_type: Option<String>,
    pub persistent: bool,
}

/// A consumer on the test queue.
pub struct Events {
    _connection: Connection,
    _channel: Channel,
    consumer: Consumer,
}

impl Events {
    async fn consume(vhost: &TestVhost) -> anyhow::Result<Self> {
        let connection =
            Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let consumer = channel
            .basic_consume(
                ShortString::from(TEST_QUEUE),
                ShortString::from("test"),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            _connection: connection,
            _channel: channel,
            consumer,
        })
    }

    /// The next event; panics after [`WAIT`].
    pub async fn next(&mut self) -> Received {
        let delivery = tokio::time::timeout(WAIT, self.consumer.next())
            .await
            .expect("an event within the wait")
            .expect("consumer open")
            .expect("delivery");
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
        let event: LifecycleEvent =
            spritz_proto::decode(&delivery.data).expect("a valid lifecycle event");
        Received {
            event,
            routing_key: delivery.routing_key.as_str().to_owned(),
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned()),
            message_type: delivery
                .properties
                .kind()
                .as_ref()
                .map(|t| t.as_str().to_owned()),
            persistent: *delivery.properties.delivery_mode() == Some(2),
        }
    }

    /// Creates a marker object and returns every event that arrives before its
    /// `Ready`: proof that nothing else was published up to that point.
    pub async fn until_marker(&mut self, fake: &FakeKubernetes, namespace: &str) -> Vec<Received> {
        let name = format!("marker-{}", uuid::Uuid::new_v4().simple());
        fake.create_spritz(namespace, &name, Some("Ready"));
        let mut before = Vec::new();
        loop {
            let received = self.next().await;
            if received.event.instance_id == name && received.event.phase == Phase::Ready {
                return before;
            }
            before.push(received);
        }
    }
}

/// Polls a condition with no push signal (a counter) until it holds.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    spritz_sandbox::isolation::eventually(WAIT, || {
        let holds = condition();
        async move { holds.then_some(()) }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within {WAIT:?}"));
}
