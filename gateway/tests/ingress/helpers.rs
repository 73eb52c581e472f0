//! `spawn_app()`: the real ingress on port 0 against its own RabbitMQ vhost, with a fake
//! Slack and a fake backend, plus helpers to send signed events and read the work queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lapin::options::BasicGetOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use secrecy::SecretString;
use serde_json::{Value, json};
use spritz_gateway::config::DEFAULT_PUBLISH_TIMEOUT;
use spritz_gateway::{Application, ServeConfig};
use spritz_proto::slack_signature;
use spritz_proto::topology::WORK_QUEUE;
use spritz_sandbox::backend::FakeBackend;
use spritz_sandbox::isolation::{BrokerAdmin, TestVhost};
use spritz_sandbox::slack::FakeSlack;
use spritz_service::Broker;
use spritz_service::Link;
use spritz_service::config::ListenAddr;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SIGNING_SECRET: &str = "test-signing-secret";
pub const STATE_SECRET: &str = "test-state-secret";
pub const CLIENT_ID: &str = "111.222";
pub const CLIENT_SECRET: &str = "test-client-secret";
pub const BACKEND_TOKEN: &str = "test-backend-token";
pub const PRINCIPAL_ID: &str = "spritz-slack-principal";
/// Where the gateway believes it is published: the path is a route prefix.
pub const PUBLIC_ORIGIN: &str = "http://gateway.test";
pub const PREFIX: &str = "/gw";

pub struct TestApp {
    pub addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub vhost: TestVhost,
    pub slack: FakeSlack,
    pub backend: FakeBackend,
    pub broker: Broker,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<JoinHandle<spritz_gateway::Result<()>>>,
}

/// Starts the gateway and waits until its broker link is up.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with the configuration adjusted first (the broker may be unreachable).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let app = spawn_app_unready(adjust).await;
    app.broker
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("the gateway connects to its vhost");
    app
}

/// Starts the gateway without waiting for the broker.
pub async fn spawn_app_unready(adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    spritz_service::telemetry::init_test_subscriber();
    let vhost = BrokerAdmin::from_env()
        .create_vhost()
        .await
        .expect("create vhost");
    let slack = FakeSlack::start().await.expect("fake slack");
    slack.expect_oauth_client(CLIENT_ID, CLIENT_SECRET);
    let backend = FakeBackend::start(BACKEND_TOKEN)
        .await
        .expect("fake backend");
    let mut config = ServeConfig {
        listen_addr: ListenAddr(SocketAddr::from(([127, 0, 0, 1], 0))),
        public_url: url::Url::parse(&format!("{PUBLIC_ORIGIN}{PREFIX}")).expect("url"),
        signing_secret: secret(SIGNING_SECRET),
        client_id: CLIENT_ID.to_owned(),
        client_secret: secret(CLIENT_SECRET),
        oauth_state_secret: secret(STATE_SECRET),
        slack_api_base_url: url::Url::parse(&slack.base_url()).expect("url"),
        bot_scopes: vec!["app_mentions:read".to_owned(), "chat:write".to_owned()],
        preset_id: "zeno".to_owned(),
        backend_base_url: url::Url::parse(&backend.base_url()).expect("url"),
        backend_internal_token: secret(BACKEND_TOKEN),
        principal_id: PRINCIPAL_ID.to_owned(),
        http_timeout: Duration::from_secs(5),
        amqp_url: vhost.amqp_url().into(),
        metrics_addr: ListenAddr(SocketAddr::from(([127, 0, 0, 1], 0))),
        publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
        publisher_channels: 2,
        trust: spritz_service::Trust::default(),
    };
    adjust(&mut config);
    let app = Application::build(config).await.expect("build the gateway");
    let (addr, ops_addr, broker) = (app.addr(), app.ops_addr(), app.broker().clone());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let http = spritz_sandbox::tls::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    TestApp {
        addr,
        ops_addr,
        vhost,
        slack,
        backend,
        broker,
        http,
        shutdown,
        task: Some(task),
    }
}

fn secret(value: &str) -> SecretString {
    SecretString::from(value.to_owned())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops_addr)
    }

    /// `GET url`; `what` names the request if it cannot be sent.
    pub async fn get(&self, url: impl reqwest::IntoUrl, what: &str) -> reqwest::Response {
        self.http.get(url).send().await.expect(what)
    }

    /// Posts `body` signed now, as Slack does.
    pub async fn post_event(&self, body: &Value) -> reqwest::Response {
        self.post_event_at("/slack/events", body.to_string().into_bytes(), &[])
            .await
    }

    /// Posts raw bytes, correctly signed now, to `path`, with extra headers.
    pub async fn post_event_at(
        &self,
        path: &str,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = slack_signature::sign(SIGNING_SECRET.as_bytes(), &timestamp, &body);
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", timestamp)
            .header("x-slack-signature", signature);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.body(body).send().await.expect("request")
    }

    /// An AMQP channel on this test's vhost.
    pub async fn channel(&self) -> Channel {
        let connection =
            Connection::connect(&self.vhost.amqp_url(), ConnectionProperties::default())
                .await
                .expect("connect");
        connection.create_channel().await.expect("channel")
    }

    /// Takes every message now in the work queue.
    pub async fn drain_work_queue(&self) -> Vec<(BasicProperties, Value)> {
        let channel = self.channel().await;
        let mut messages = Vec::new();
        while let Some(message) = channel
            .basic_get(
                ShortString::from(WORK_QUEUE),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get")
        {
            let body = serde_json::from_slice(&message.delivery.data).expect("JSON body");
            messages.push((message.delivery.properties.clone(), body));
        }
        messages
    }

    /// The value of one sample on `/metrics`, e.g.
    /// `spritz_gateway_requests_total{outcome="queued",route="events"}`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self
            .http
            .get(self.ops_url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
    }

    /// Asserts that one sample on `/metrics` has the value `expected`.
    pub async fn assert_metric(&self, sample: &str, expected: f64) {
        assert_eq!(self.metric(sample).await, Some(expected), "{sample}");
    }

    /// Waits up to `within` until the gateway has no broker link; `links` was taken from
    /// `self.broker.links()` before the broker went away.
    pub async fn wait_until_unlinked(
        &self,
        links: &mut watch::Receiver<Option<Arc<Link>>>,
        within: Duration,
        what: &str,
    ) {
        tokio::time::timeout(within, links.wait_for(|link| link.is_none()))
            .await
            .expect(what)
            .expect("broker handle alive");
    }

    /// Asserts what the gateway answers while its broker is gone: 503 to an event and
    /// 503 on `/readyz`.
    pub async fn assert_unavailable_without_broker(&self) {
        let during = self
            .post_event(&callback(&event_id(), app_mention("<@UBOT> during")))
            .await;
        assert_eq!(during.status(), 503);
        let ready = self.get(self.ops_url("/readyz"), "readyz").await;
        assert_eq!(ready.status(), 503);
    }

    /// Sends one event once the broker is back and asserts it is answered 200 and is
    /// the only message on the work queue.
    pub async fn assert_queues_again(&self) {
        let id = event_id();
        let after = self
            .post_event(&callback(&id, app_mention("<@UBOT> after")))
            .await;
        assert_eq!(after.status(), 200);
        let queued = self.drain_work_queue().await;
        assert_eq!(
            queued.len(),
            1,
            "only the event sent after recovery is queued"
        );
        assert_eq!(queued[0].1["eventId"], id.as_str());
    }

    /// Ends the test cleanly: stops the gateway, then deletes the vhost. Deleting it
    /// while the gateway still holds a connection, from a blocked runtime (a `Drop`),
    /// makes the broker wait on a close handshake nobody answers.
    pub async fn finish(mut self) {
        if self.task.is_some() {
            let _ = self.stop().await;
        }
        let _ = self.vhost.clone().delete().await;
    }

    /// Stops the gateway as SIGTERM would and returns how `run_until_stopped` ended.
    pub async fn stop(&mut self) -> spritz_gateway::Result<()> {
        self.shutdown.cancel();
        let task = self
            .task
            .take()
            .context("already stopped")
            .expect("running");
        task.await.expect("gateway task")
    }
}

/// The vhost deletes itself when the last handle goes (`spritz_sandbox::isolation`).
impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A Slack `event_callback` around `event`, addressed to bot `UBOT` of team `T1`.
pub fn callback(event_id: &str, event: Value) -> Value {
    json!({
        "token": "legacy-verification-token",
        "team_id": "T1",
        "api_app_id": "A1",
        "enterprise_id": "E1",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1_700_000_000,
        "authorizations": [{"enterprise_id": "E1", "team_id": "T1", "user_id": "UBOT", "is_bot": true}],
        "event": event,
    })
}

/// `@bot hello` in a public channel.
pub fn app_mention(text: &str) -> Value {
    json!({
        "type": "app_mention",
        "user": "U1",
        "text": text,
        "ts": "1700000000.000100",
        "channel": "C1",
        "channel_type": "channel",
        "event_ts": "1700000000.000100",
    })
}

/// A direct message to the bot.
pub fn direct_message(text: &str) -> Value {
    json!({
        "type": "message",
        "user": "U1",
        "text": text,
        "ts": "1700000000.000200",
        "channel": "D1",
        "channel_type": "im",
        "event_ts": "1700000000.000200",
    })
}

/// Unique per test run, so a stray message from another run cannot pass for ours.
pub fn event_id() -> String {
    format!("Ev{}", uuid::Uuid::new_v4().simple())
}
