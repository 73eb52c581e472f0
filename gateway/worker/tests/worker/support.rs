//! `spawn_app()`-style helpers: a fresh vhost, Redis prefix and set of fakes per test,
//! workers started from the real process code, events published straight onto the
//! work exchange.

use std::sync::Once;
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use spritz_proto::properties::Envelope;
use spritz_proto::topology;
use spritz_proto::traceparent::TraceParent;
use spritz_proto::{
    LifecycleEvent, MessageType, Phase, SlackEvent, SlackEventKind, UserMessage, UserMessageKind,
};
use spritz_sandbox::backend::{FakeBackend, TeamInstall};
use spritz_sandbox::isolation::{self, BrokerAdmin, TestVhost};
use spritz_sandbox::slack::{FakeSlack, SlackPost};
use spritz_sandbox::spritz_api::FakeSpritz;
use spritz_service::metrics::BrokerMetrics;
use spritz_service::{Broker, BrokerSettings, Trust};
use spritz_worker::config::{Services, Timing};
use spritz_worker::{Application, WorkerConfig};
use tokio_util::sync::CancellationToken;

pub const TEAM: &str = "T1";
pub const BACKEND_TOKEN: &str = "backend-internal-token";
pub const SERVICE_TOKEN: &str = "spritz-service-token";
/// Long enough for a slow CI box, short enough that a missing signal fails fast.
pub const WAIT: Duration = Duration::from_secs(10);

static TELEMETRY: Once = Once::new();

/// One test's world: its own vhost, Redis prefix and fakes.
pub struct World {
    pub vhost: TestVhost,
    pub redis_prefix: String,
    pub slack: FakeSlack,
    pub backend: FakeBackend,
    pub spritz: FakeSpritz,
    pub install: TeamInstall,
    pub publisher: Broker,
    workers: Vec<RunningWorker>,
    ops: Vec<std::net::SocketAddr>,
    next_ts: u64,
}

/// A worker started in this test's runtime.
pub struct RunningWorker {
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl World {
    /// Fakes up, team `T1` installed with a live runtime, vhost with the topology.
    pub async fn new() -> World {
        TELEMETRY.call_once(spritz_service::telemetry::init_test_subscriber);
        let vhost = BrokerAdmin::from_env().create_vhost().await.expect("vhost");
        let slack = FakeSlack::start().await.expect("fake slack");
        let backend = FakeBackend::start(BACKEND_TOKEN)
            .await
            .expect("fake backend");
        let spritz = FakeSpritz::start(SERVICE_TOKEN).await.expect("fake spritz");
        let install = TeamInstall::demo(TEAM);
        backend.install_team(install.clone());
        spritz.add_runtime(&install);
        slack.add_workspace(TEAM, &install.bot_access_token, &["C1", "D1"]);
        let mut settings = BrokerSettings::new(vhost.amqp_url(), "worker-test-publisher");
        settings.topology.work_retry_tiers =
            topology::RetryTiers::with_defaults_and([timing().session_retry_interval]);
        let (publisher, _) = Broker::start(settings, BrokerMetrics::unregistered());
        publisher.wait_ready(WAIT).await.expect("broker ready");
        World {
            vhost,
            redis_prefix: isolation::redis_prefix(),
            slack,
            backend,
            spritz,
            install,
            publisher,
            workers: Vec::new(),
            ops: Vec::new(),
            next_ts: 0,
        }
    }

    /// The worker configuration of this world: short timings so the suite is fast.
    pub fn config(&self) -> WorkerConfig {
        WorkerConfig {
            amqp_url: self.vhost.amqp_url().into(),
            redis_url: isolation::redis_url(),
            redis_sentinel: None,
            redis_key_prefix: self.redis_prefix.clone(),
            metrics_addr: "127.0.0.1:0".parse().expect("addr"),
            prefetch: 16,
            shutdown_grace: Duration::from_secs(3),
            services: Services {
                backend_base_url: self.backend.base_url().parse().expect("url"),
                backend_token: SecretString::from(BACKEND_TOKEN),
                spritz_base_url: self.spritz.base_url().parse().expect("url"),
                spritz_service_token: SecretString::from(SERVICE_TOKEN),
                principal_id: "spritz-slack-gateway".into(),
                slack_api_base_url: self.slack.base_url().parse().expect("url"),
            },
            timing: timing(),
            lifecycle_notify: None,
            trust: Trust::default(),
        }
    }

    /// Starts a worker with this world's configuration.
    pub async fn spawn_worker(&mut self) -> std::net::SocketAddr {
        let config = self.config();
        self.spawn_worker_with(config).await
    }

    /// Starts a worker whose status message is due `status_after` and whose deadline is
    /// `deadline` after an event was received.
    pub async fn spawn_worker_timed(
        &mut self,
        status_after: Duration,
        deadline: Duration,
    ) -> std::net::SocketAddr {
        let mut config = self.config();
        config.timing.status_message_delay = status_after;
        config.timing.processing_timeout = deadline;
        self.spawn_worker_with(config).await
    }

    /// Starts a worker and waits until `/readyz` says it consumes both its queues.
    pub async fn spawn_worker_with(&mut self, config: WorkerConfig) -> std::net::SocketAddr {
        let ops_addr = self.spawn_worker_unready(config).await;
        wait_ready(ops_addr).await;
        ops_addr
    }

    /// Starts a worker without waiting for readiness (it may never be ready).
    pub async fn spawn_worker_unready(&mut self, config: WorkerConfig) -> std::net::SocketAddr {
        let app = Application::build(config).await.expect("worker builds");
        let ops_addr = app.ops_addr();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            app.run_until_stopped(token).await.expect("worker runs");
        });
        self.workers.push(RunningWorker { stop, task });
        self.ops.push(ops_addr);
        ops_addr
    }

    /// Starts a worker on its own runtime and thread, so the test can kill it the way
    /// a crash would: every task dropped mid-flight, no clean shutdown.
    pub fn spawn_killable_worker(&self) -> KillableWorker {
        let config = self.config();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.spawn(async move {
                let app = Application::build(config).await.expect("worker builds");
                let _ = ready_tx.send(app.ops_addr());
                let _ = app.run_until_stopped(CancellationToken::new()).await;
            });
            let _ = kill_rx.recv();
            runtime.shutdown_background();
        });
        let ops_addr = ready_rx.recv_timeout(WAIT).expect("killable worker built");
        KillableWorker {
            kill: kill_tx,
            thread,
            ops_addr,
        }
    }

    /// Stops worker `index` the SIGTERM way and waits until it returned.
    pub async fn stop_worker(&mut self, index: usize) -> tokio::task::JoinHandle<()> {
        let worker = self.workers.remove(index);
        self.ops.remove(index);
        worker.stop.cancel();
        worker.task
    }

    /// The ledger key of this world for `parts` (e.g. `prompt:T1:C1:<ts>`).
    pub async fn redis_exists(&self, key: &str) -> bool {
        let client = redis::Client::open(isolation::redis_url()).expect("redis url");
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        redis::cmd("EXISTS")
            .arg(format!("{}{key}", self.redis_prefix))
            .query_async::<bool>(&mut conn)
            .await
            .unwrap_or(false)
    }

    /// A fresh message `ts`, unique within the test.
    pub fn ts(&mut self) -> String {
        self.next_ts += 1;
        format!("{}.{:06}", 1_700_000_000 + self.next_ts, self.next_ts)
    }

    /// A top-level mention in channel `C1`.
    pub fn channel_message(&mut self, text: &str) -> SlackEvent {
        let ts = self.ts();
        self.event(message("C1", Some("channel"), &ts, None, text))
    }

    /// A mention in the thread `thread_ts` of channel `C1`.
    pub fn thread_message(&mut self, thread_ts: &str, text: &str) -> SlackEvent {
        let ts = self.ts();
        self.event(message("C1", Some("channel"), &ts, Some(thread_ts), text))
    }

    /// A direct message in `D1`.
    pub fn direct_message(&mut self, text: &str) -> SlackEvent {
        let ts = self.ts();
        let mut m = message("D1", Some("im"), &ts, None, text);
        m.event_type = UserMessageKind::Message;
        m.text = text.into();
        self.event(m)
    }

    fn event(&self, message: UserMessage) -> SlackEvent {
        let mut event = SlackEvent::new(
            Utc::now(),
            format!("Ev{}", message.ts.replace('.', "")),
            TEAM.into(),
            SlackEventKind::Message(message),
        );
        event.api_app_id = Some(self.install.api_app_id.clone());
        event
    }

    /// Publishes an event onto the work exchange as the gateway would (confirmed).
    pub async fn publish(&self, event: &SlackEvent) {
        let body = serde_json::to_vec(event).expect("json");
        self.publish_raw(&event.event_id, &body).await;
    }

    pub async fn publish_raw(&self, message_id: &str, body: &[u8]) {
        self.publish_traced(message_id, body, TraceParent::new_root())
            .await;
    }

    /// [`World::publish_raw`] with a `traceparent` of the test's choosing.
    pub async fn publish_traced(&self, message_id: &str, body: &[u8], trace: TraceParent) {
        let envelope = Envelope::new(message_id, MessageType::SlackEvent, trace);
        self.publisher
            .publish(
                topology::WORK_EXCHANGE,
                topology::WORK_ROUTING_KEY,
                body,
                &envelope,
            )
            .await
            .expect("publish confirmed");
    }

    /// Publishes a lifecycle event for this world's runtime, as the notifier would.
    pub async fn lifecycle(&self, phase: Phase) {
        let event = LifecycleEvent::new(
            self.install.namespace.clone(),
            self.install.instance_id.clone(),
            "uid-1".into(),
            phase,
            None,
            format!("{}", Utc::now().timestamp_micros()),
            Utc::now(),
        );
        let body = serde_json::to_vec(&event).expect("json");
        let envelope = Envelope::new(
            event.message_id(),
            MessageType::Lifecycle,
            TraceParent::new_root(),
        );
        self.publisher
            .publish(
                topology::LIFECYCLE_EXCHANGE,
                &event.routing_key(),
                &body,
                &envelope,
            )
            .await
            .expect("publish confirmed");
    }

    /// Waits until a worker's metric sample reaches `at_least`.
    pub async fn metric_reaches(
        &self,
        ops: std::net::SocketAddr,
        name_and_labels: &str,
        at_least: f64,
    ) {
        isolation::eventually(WAIT, || async move {
            (self.metric(ops, name_and_labels).await >= at_least).then_some(())
        })
        .await
        .unwrap_or_else(|_| panic!("{name_and_labels} did not reach {at_least}"));
    }

    /// Waits for `n` Slack posts.
    pub async fn posts(&self, n: usize) -> Vec<SlackPost> {
        self.slack
            .wait_for_posts(n, WAIT)
            .await
            .expect("slack posts")
    }

    /// Waits until every delivery was settled: nothing ready in the work queue or its
    /// delay tiers (read through AMQP, which is exact, unlike the management API's
    /// sampled statistics) and nothing in flight in any worker, twice in a row.
    pub async fn settled(&self) {
        isolation::eventually(WAIT, || async move {
            (self.idle().await && self.idle().await).then_some(())
        })
        .await
        .expect("every delivery settled");
    }

    async fn idle(&self) -> bool {
        for ops in &self.ops {
            let in_flight = self.metric(*ops, "spritz_worker_in_flight").await;
            if in_flight != 0.0 {
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("not settled: {in_flight} in flight");
                }
                return false;
            }
        }
        let mut queues = vec![topology::WORK_QUEUE.to_owned()];
        queues.extend(timing_tiers().into_iter().map(topology::work_retry_queue));
        for queue in queues {
            let ready = self.ready(&queue).await;
            if ready != 0 {
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("not settled: {queue} has {ready}");
                }
                return false;
            }
        }
        true
    }

    /// Waits until exactly `n` messages are ready in `queue` (a message a worker
    /// still holds unacked, or has just handed back, is not ready yet).
    pub async fn wait_for_ready(&self, queue: &str, n: u32) -> anyhow::Result<()> {
        spritz_sandbox::isolation::eventually(WAIT, || async move {
            (self.ready(queue).await == n).then_some(())
        })
        .await
    }

    /// Messages ready in `queue`, read with a passive declare.
    pub async fn ready(&self, queue: &str) -> u32 {
        let Some(link) = self.publisher.wait_ready(WAIT).await else {
            return u32::MAX;
        };
        let Ok(channel) = link.create_channel().await else {
            return u32::MAX;
        };
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await;
        let _ = channel.close(200, "done".into()).await;
        declared.map_or(u32::MAX, |d| d.message_count())
    }

    /// Reads one metric sample from a worker's `/metrics` (0 when absent).
    pub async fn metric(&self, ops: std::net::SocketAddr, name_and_labels: &str) -> f64 {
        let body = reqwest::get(format!("http://{ops}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        body.lines()
            .find_map(|line| {
                line.strip_prefix(name_and_labels)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Stops the workers (SIGTERM path) and deletes the vhost.
    pub async fn finish(mut self) {
        for worker in self.workers.drain(..) {
            worker.stop.cancel();
            let _ = tokio::time::timeout(WAIT, worker.task).await;
        }
        self.publisher.close().await;
        let _ = self.vhost.clone().delete().await;
    }
}

/// A worker that can be killed like a crashed process.
pub struct KillableWorker {
    kill: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    pub ops_addr: std::net::SocketAddr,
}

impl KillableWorker {
    /// Drops every task of the worker at once, then cuts the broker connections of the
    /// vhost (lapin's IO thread outlives the runtime), so the broker hands its unacked
    /// deliveries to other workers. Other clients reconnect by themselves.
    pub async fn kill(self, world: &World) {
        let _ = self.kill.send(());
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
        world
            .vhost
            .close_connections()
            .await
            .expect("connections closed");
    }
}

/// Waits until a worker's `/readyz` answers 200.
pub async fn wait_ready(ops: std::net::SocketAddr) {
    isolation::eventually(WAIT, || async move {
        let response = reqwest::get(format!("http://{ops}/readyz")).await.ok()?;
        response.status().is_success().then_some(())
    })
    .await
    .expect("worker ready");
}

/// The status threshold of a test that wants the status message: passed the moment
/// the event is received, so the first wait for a runtime posts it and the test waits
/// for the post, not for a clock. When it falls due is tested in milliseconds, without
/// real time, in `pipeline::deadlines`.
pub const STATUS_AT_ONCE: Duration = Duration::from_millis(1);

/// A deadline no test reaches: recovery then ends only as the test scripts it.
pub const NO_DEADLINE: Duration = Duration::from_secs(600);

/// Short timings: deadline after 3s, retries every 200ms, and a status threshold no
/// test reaches unless it asks for one ([`World::spawn_worker_timed`]), so that no test
/// depends on being faster than it (a slow machine would see a status message).
pub fn timing() -> Timing {
    Timing {
        status_message_delay: Duration::from_secs(600),
        processing_timeout: Duration::from_secs(3),
        session_retry_interval: Duration::from_millis(200),
        http_timeout: Duration::from_secs(2),
        dedupe_ttl: Duration::from_secs(120),
        claim_lease: Duration::from_secs(1),
        max_attempts: 300,
    }
}

fn timing_tiers() -> Vec<Duration> {
    topology::RetryTiers::with_defaults_and([timing().session_retry_interval])
        .as_slice()
        .to_vec()
}

/// The bot user of team `T1` (the fake backend's installation).
pub const BOT: &str = "U0T1BOT";

/// A mention as the gateway publishes it: the text as written, the bot's mention in
/// front (the worker removes it).
fn message(
    channel: &str,
    channel_type: Option<&str>,
    ts: &str,
    thread_ts: Option<&str>,
    text: &str,
) -> UserMessage {
    UserMessage {
        event_type: UserMessageKind::AppMention,
        user: "U1".into(),
        channel: channel.into(),
        channel_type: channel_type.map(Into::into),
        ts: ts.into(),
        thread_ts: thread_ts.map(Into::into),
        text: format!("<@{BOT}> {text}"),
        bot_user_id: Some(BOT.into()),
    }
}

/// Posts whose text is exactly `text`.
pub fn with_text<'a>(posts: &'a [SlackPost], text: &str) -> Vec<&'a SlackPost> {
    posts.iter().filter(|p| p.text == text).collect()
}

pub const STATUS: &str = "Still waking up. I will continue here shortly.";
pub const TERMINAL: &str = "I could not recover the channel runtime. Please try again.";
pub const INTERNAL: &str = "I hit an internal error while processing that request.";
