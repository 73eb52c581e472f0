//! Traces that can be followed across processes: `spritz-gateway serve` and
//! `spritz-gateway worker` run as the built binary (JSON logs on stdout at `info`),
//! the sandbox fakes in this test; one signed Slack event goes through both, and the
//! `trace_id` of the gateway's span, the worker's span and the message's `traceparent`
//! header are one and the same.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;
use spritz_proto::properties;
use spritz_proto::topology::{WORK_EXCHANGE, WORK_ROUTING_KEY};
use spritz_proto::traceparent::TraceParent;
use spritz_sandbox::backend::{FakeBackend, TeamInstall};
use spritz_sandbox::isolation::{self, BrokerAdmin};
use spritz_sandbox::slack::FakeSlack;
use spritz_sandbox::slack::events::{UserMessage, events_url, now_ts, send_signed};
use spritz_sandbox::spritz_api::{AgentBehaviour, FakeSpritz};

use crate::helpers::{BACKEND_TOKEN, PRINCIPAL_ID, SIGNING_SECRET};

const BINARY: &str = env!("CARGO_BIN_EXE_spritz-gateway");
const SERVICE_TOKEN: &str = "test-service-token";
const WAIT: Duration = Duration::from_secs(30);
/// The user's text: it must reach the agent and never a log line.
const TEXT: &str = "follow this secret text";

/// One child process and the JSON lines it wrote to stdout so far.
struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn spawn(command: &mut Command) -> Process {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn spritz-gateway");
        let stdout = child.stdout.take().expect("stdout");
        let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
        let raw: Arc<Mutex<Vec<String>>> = Arc::default();
        let (parsed, text) = (Arc::clone(&lines), Arc::clone(&raw));
        // Drains stdout for the process's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line) {
                    parsed.lock().expect("lines").push(value);
                }
                text.lock().expect("raw").push(line);
            }
        });
        Process { child, lines, raw }
    }

    /// The first line whose message is `message`, waiting for it.
    async fn line(&self, message: &str) -> Value {
        let lines = &self.lines;
        isolation::eventually(WAIT, || async move {
            lines
                .lock()
                .expect("lines")
                .iter()
                .find(|line| line["fields"]["message"] == message)
                .cloned()
        })
        .await
        .unwrap_or_else(|_| panic!("no {message:?} line"))
    }

    fn raw(&self) -> Vec<String> {
        self.raw.lock().expect("raw").clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(role: &str, common: &[(&str, String)]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg(role)
        .env_clear()
        .envs(common.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info");
    command
}

async fn wait_ready(http: &reqwest::Client, ops: &str) {
    let url = format!("http://{ops}/readyz");
    let url = &url;
    isolation::eventually(WAIT, || async move {
        let response = http.get(url).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("{url} never ready"));
}

#[tokio::test]
async fn one_slack_events_gateway_and_worker_spans_share_the_trace_id_of_its_traceparent() {
    let vhost = BrokerAdmin::from_env().create_vhost().await.expect("vhost");
    let slack = FakeSlack::start().await.expect("fake slack");
    let backend = FakeBackend::start(BACKEND_TOKEN).await.expect("backend");
    let spritz = FakeSpritz::start(SERVICE_TOKEN).await.expect("spritz");
    spritz.set_agent(AgentBehaviour::Echo);
    let install = TeamInstall::demo("TTRACE");
    backend.install_team(install.clone());
    spritz.add_runtime(&install);
    slack.add_workspace(&install.team_id, &install.bot_access_token, &["C1"]);
    let common = vec![
        ("SPRITZ_AMQP_URL", vhost.amqp_url()),
        ("SPRITZ_SLACK_BACKEND_BASE_URL", backend.base_url()),
        ("SPRITZ_SLACK_BACKEND_INTERNAL_TOKEN", BACKEND_TOKEN.into()),
        ("SPRITZ_SLACK_PRINCIPAL_ID", PRINCIPAL_ID.into()),
        ("SPRITZ_SLACK_API_BASE_URL", slack.base_url()),
        ("SPRITZ_METRICS_ADDR", "127.0.0.1:0".into()),
    ];
    let gateway = Process::spawn(
        command("serve", &common)
            .env("SPRITZ_SLACK_GATEWAY_ADDR", "127.0.0.1:0")
            .env("SPRITZ_SLACK_GATEWAY_PUBLIC_URL", "http://gateway.test")
            .env("SPRITZ_SLACK_SIGNING_SECRET", SIGNING_SECRET)
            .env("SPRITZ_SLACK_CLIENT_ID", "1.2")
            .env("SPRITZ_SLACK_CLIENT_SECRET", "client-secret")
            .env("SPRITZ_SLACK_OAUTH_STATE_SECRET", "state-secret"),
    );
    let worker = Process::spawn(
        command("worker", &common)
            .env("SPRITZ_SLACK_SPRITZ_BASE_URL", spritz.base_url())
            .env("SPRITZ_SLACK_SPRITZ_SERVICE_TOKEN", SERVICE_TOKEN)
            .env("SPRITZ_REDIS_URL", isolation::redis_url())
            .env("SPRITZ_REDIS_KEY_PREFIX", isolation::redis_prefix()),
    );
    let listening = gateway.line("spritz-gateway serve listening").await;
    let starting = worker.line("spritz-gateway worker starting").await;
    let addr = listening["fields"]["addr"]
        .as_str()
        .expect("addr")
        .to_owned();
    let http = spritz_sandbox::tls::http_client();
    wait_ready(&http, listening["fields"]["ops"].as_str().expect("ops")).await;
    wait_ready(&http, starting["fields"]["ops"].as_str().expect("ops")).await;

    // A tap on the work exchange (declared by then): a copy of what the gateway
    // publishes, with its AMQP headers, while the worker consumes the work queue.
    let connection = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let tap = channel
        .queue_declare(
            ShortString::from(""),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("tap queue");
    channel
        .queue_bind(
            tap.name().clone(),
            ShortString::from(WORK_EXCHANGE),
            ShortString::from(WORK_ROUTING_KEY),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind the tap");
    let mut tapped = channel
        .basic_consume(
            tap.name().clone(),
            ShortString::from("trace-tap"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume the tap");

    let message = UserMessage {
        team_id: install.team_id.clone(),
        api_app_id: install.api_app_id.clone(),
        bot_user_id: install.bot_user_id.clone(),
        user_id: "U1".into(),
        channel: "C1".into(),
        text: TEXT.into(),
        ts: now_ts(),
        thread_ts: None,
        direct_message: false,
    };
    let body = serde_json::to_vec(&message.event_callback()).expect("json");
    let url = events_url(&format!("http://{addr}"));
    let (status, _) = send_signed(&http, &url, SIGNING_SECRET, &body)
        .await
        .expect("send");
    assert_eq!(status, 200);
    let posts = slack.wait_for_posts(1, WAIT).await.expect("the reply");
    assert_eq!(posts[0].text, format!("echo: {TEXT}"));

    let delivery = tokio::time::timeout(WAIT, tapped.next())
        .await
        .expect("a tapped copy in time")
        .expect("the tap consumer is open")
        .expect("a delivery");
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    let header = properties::traceparent(&delivery.properties).expect("a traceparent header");
    let trace_id = header.trace_id();

    let queued = gateway.line("slack event queued").await;
    let processed = worker.line("delivery processed").await;
    let event_id = message.event_callback()["event_id"].clone();
    assert_eq!(queued["span"]["name"], "slack_event");
    assert_eq!(queued["span"]["trace_id"], trace_id.as_str());
    assert_eq!(queued["span"]["event_id"], event_id);
    assert_eq!(queued["span"]["team_id"], install.team_id.as_str());
    assert_eq!(processed["span"]["name"], "delivery");
    assert_eq!(processed["span"]["trace_id"], trace_id.as_str());
    assert_eq!(processed["span"]["event_id"], event_id);
    assert_eq!(processed["fields"]["outcome"], "replied");

    // The worker's calls continue the same trace.
    let traced = backend
        .traced_requests()
        .into_iter()
        .chain(spritz.traced_requests())
        .filter(|request| !request.path.ends_with("/connect"))
        .collect::<Vec<_>>();
    assert!(traced.len() >= 3, "exchange, upsert, bootstrap: {traced:?}");
    for request in traced {
        let call = request
            .traceparent
            .as_deref()
            .and_then(TraceParent::parse)
            .unwrap_or_else(|| panic!("{} without a traceparent", request.path));
        assert_eq!(call.trace_id(), trace_id, "{}", request.path);
    }

    let logged = [gateway.raw(), worker.raw()].concat();
    for secret in [
        TEXT,
        install.access_token.as_str(),
        install.bot_access_token.as_str(),
    ] {
        assert!(
            !logged.iter().any(|line| line.contains(secret)),
            "a log line holds {secret:?}"
        );
    }
    drop((gateway, worker));
    let _ = connection.close(0, "done".into()).await;
    let _ = vhost.delete().await;
}
