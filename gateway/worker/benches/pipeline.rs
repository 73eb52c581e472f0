//! End-to-end benchmark: signed Slack events → `spritz-gateway serve` → RabbitMQ →
//! `spritz-gateway worker` → sandbox fakes (backend, Spritz API with an instant Echo
//! agent, Slack), with gateway and worker as separate release processes.
//!
//! Reports throughput (replies/s for a burst of `BENCH_MESSAGES`, default 5000),
//! receive-to-reply latency (HTTP request sent → post recorded by the fake Slack) at a
//! steady `BENCH_RATE` (default 200 msg/s for `BENCH_SECONDS`, default 10), and worker
//! CPU per message (utime+stime of the worker process over the burst).
//!
//! Run with `scripts/bench-worker` (builds the release binary first). Needs RabbitMQ
//! with the management plugin and Redis, like the tests. `SPRITZ_GATEWAY_BIN` points at
//! the binary (default `$CARGO_TARGET_DIR/release/spritz-gateway`).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use spritz_proto::Phase;
use spritz_sandbox::backend::{ExchangeMode, FakeBackend, TeamInstall};
use spritz_sandbox::isolation::{self, BrokerAdmin};
use spritz_sandbox::slack::FakeSlack;
use spritz_sandbox::slack::events::{UserMessage, events_url, send_signed};
use spritz_sandbox::spritz_api::{AgentBehaviour, FakeSpritz};
use spritz_service::metrics::BrokerMetrics;
use spritz_service::{Broker, BrokerSettings};
use tokio::sync::Mutex;

const BACKEND_TOKEN: &str = "bench-backend-token";
const SERVICE_TOKEN: &str = "bench-service-token";
const TEAM: &str = "TBENCH";

mod support;
use support::{
    Children, SIGNING_SECRET, clock_ticks_per_second, cpu_ticks, env_usize, free_port,
    gateway_binary, percentile, publish_lifecycle, spawn_serve, worker_metric,
};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let burst = env_usize("BENCH_MESSAGES", 5000);
    let rate = env_usize("BENCH_RATE", 200);
    let seconds = env_usize("BENCH_SECONDS", 10);
    let senders = env_usize("BENCH_SENDERS", 64);
    let binary = gateway_binary();

    let slack = FakeSlack::start().await?;
    let backend = FakeBackend::start(BACKEND_TOKEN).await?;
    let spritz = FakeSpritz::start(SERVICE_TOKEN).await?;
    spritz.set_agent(AgentBehaviour::Echo);
    let install = TeamInstall::demo(TEAM);
    backend.install_team(install.clone());
    for team in [install.clone(), TeamInstall::demo(WAKE_TEAM)] {
        spritz.add_runtime(&team);
        slack.add_workspace(&team.team_id, &team.bot_access_token, &["CBENCH"]);
    }
    let vhost = BrokerAdmin::from_env().create_vhost().await?;

    let gateway_port = free_port()?;
    let gateway_ops = free_port()?;
    let worker_ops = free_port()?;
    let gateway_url = format!("http://127.0.0.1:{gateway_port}");
    let common: Vec<(&str, String)> = vec![
        ("SPRITZ_AMQP_URL", vhost.amqp_url()),
        ("SPRITZ_SLACK_BACKEND_BASE_URL", backend.base_url()),
        ("SPRITZ_SLACK_BACKEND_INTERNAL_TOKEN", BACKEND_TOKEN.into()),
        ("SPRITZ_SLACK_PRINCIPAL_ID", "spritz-slack-gateway".into()),
        ("SPRITZ_SLACK_API_BASE_URL", slack.base_url()),
        (
            "RUST_LOG",
            std::env::var("BENCH_LOG").unwrap_or_else(|_| "info".into()),
        ),
    ];
    let gateway = spawn_serve(
        &binary,
        &common,
        gateway_port,
        gateway_ops,
        &gateway_url,
        "scripts/bench-worker",
    )?;
    let worker = Command::new(&binary)
        .arg("worker")
        .envs(common.iter().map(|(k, v)| (*k, v.as_str())))
        .env("SPRITZ_SLACK_SPRITZ_BASE_URL", spritz.base_url())
        .env("SPRITZ_SLACK_SPRITZ_SERVICE_TOKEN", SERVICE_TOKEN)
        .env("SPRITZ_REDIS_URL", isolation::redis_url())
        .env("SPRITZ_REDIS_KEY_PREFIX", isolation::redis_prefix())
        .env(
            "SPRITZ_WORKER_PREFETCH",
            std::env::var("BENCH_PREFETCH").unwrap_or_else(|_| "256".into()),
        )
        .env("SPRITZ_METRICS_ADDR", format!("127.0.0.1:{worker_ops}"))
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {binary} worker"))?;
    let worker_pid = worker.id();
    let children = Children(vec![gateway, worker]);

    let http = spritz_sandbox::tls::http_client_builder()
        .pool_max_idle_per_host(senders)
        .build()?;
    for url in [
        format!("http://127.0.0.1:{gateway_ops}/readyz"),
        format!("http://127.0.0.1:{worker_ops}/readyz"),
    ] {
        let http = &http;
        let url = &url;
        isolation::eventually(Duration::from_secs(30), || async move {
            http.get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await
        .with_context(|| format!("{url} never ready"))?;
    }
    let events = events_url(&gateway_url);
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    record_arrivals(slack.clone(), arrivals.clone());
    let driver = Driver {
        http,
        events,
        install,
        slack: slack.clone(),
        next: Arc::new(AtomicUsize::new(0)),
        arrivals,
    };

    // Warm-up: connections, session cache, JIT-free but cold caches.
    driver.burst(200, senders).await?;
    driver.wait_posts(200).await?;

    // Throughput: a burst as fast as the gateway accepts it.
    let cpu_before = cpu_ticks(worker_pid)?;
    let started = Instant::now();
    let posts_before = slack.post_attempts();
    let sends = driver.burst(burst, senders).await?;
    driver.wait_posts(posts_before + burst).await?;
    let elapsed = started.elapsed();
    let cpu = cpu_ticks(worker_pid)? - cpu_before;
    let ticks_per_sec = clock_ticks_per_second();
    let throughput = burst as f64 / elapsed.as_secs_f64();
    let cpu_per_message_ms = cpu as f64 / ticks_per_sec * 1000.0 / burst as f64;
    let burst_latency = driver.latencies(&sends, posts_before).await;

    // Latency at a steady rate.
    let posts_before = slack.post_attempts();
    let total = rate * seconds;
    let sends = driver.paced(total, rate).await?;
    driver.wait_posts(posts_before + total).await?;
    let steady = driver.latencies(&sends, posts_before).await;

    // Wake-up: a delivery waits for its runtime (default 1s retry interval); the
    // runtime becomes Ready; time from the lifecycle event to the reply.
    let wakes = env_usize("BENCH_WAKES", 30);
    let wake = wake_latencies(&driver, &backend, &vhost.amqp_url(), worker_ops, wakes).await?;

    println!(
        "spritz worker pipeline benchmark (gateway + worker release processes, sandbox fakes, Echo agent)"
    );
    println!(
        "burst: {burst} messages in {:.2}s = {throughput:.0} replies/s",
        elapsed.as_secs_f64()
    );
    println!(
        "burst receive-to-reply: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&burst_latency, 0.50),
        percentile(&burst_latency, 0.99)
    );
    println!("worker CPU: {cpu_per_message_ms:.3} ms per message ({cpu} ticks over the burst)");
    println!(
        "steady {rate} msg/s for {seconds}s: receive-to-reply p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&steady, 0.50),
        percentile(&steady, 0.99),
        percentile(&steady, 1.0)
    );
    println!(
        "lifecycle Ready -> reply ({wakes} waits at the default 1s retry interval): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&wake, 0.50),
        percentile(&wake, 0.99)
    );
    drop(children);
    let _ = vhost.delete().await;
    Ok(())
}

/// Runs `rounds` wake-ups of team `TWAKE` and returns Ready → reply times in ms,
/// sorted. Each round: the runtime is Expired (the worker drops the session) and the
/// backend answers `unavailable`; a message arrives and goes to recovery; the backend
/// resolves again and the notifier's `Ready` is published.
async fn wake_latencies(
    driver: &Driver,
    backend: &FakeBackend,
    amqp_url: &str,
    worker_ops: u16,
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
    let install = TeamInstall::demo(WAKE_TEAM);
    backend.install_team(install.clone());
    let (broker, _) = Broker::start(
        BrokerSettings::new(amqp_url, "bench-notifier"),
        BrokerMetrics::unregistered(),
    );
    broker
        .wait_ready(Duration::from_secs(10))
        .await
        .context("bench broker")?;
    let mut latencies = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let expired_before = worker_metric(&driver.http, worker_ops, EXPIRED_SAMPLE).await;
        publish_lifecycle(&broker, &install, Phase::Expired).await?;
        let http = &driver.http;
        isolation::eventually(Duration::from_secs(10), || async move {
            (worker_metric(http, worker_ops, EXPIRED_SAMPLE).await > expired_before).then_some(())
        })
        .await
        .context("the worker never saw Expired")?;
        backend.set_exchange_mode(WAKE_TEAM, ExchangeMode::Unavailable);
        let calls = backend.exchange_calls(WAKE_TEAM);
        let posts = driver.slack.post_attempts();
        let n = driver.next.fetch_add(1, Ordering::Relaxed);
        driver.send_for(n, &install).await?;
        backend
            .wait_for_exchange_calls(WAKE_TEAM, calls + 1, Duration::from_secs(10))
            .await?;
        backend.set_exchange_mode(WAKE_TEAM, ExchangeMode::Resolved);
        let ready_at = Instant::now();
        publish_lifecycle(&broker, &install, Phase::Ready).await?;
        driver.wait_posts(posts + 1).await?;
        latencies.push(ready_at.elapsed().as_secs_f64() * 1000.0);
        let _ = round;
    }
    broker.close().await;
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(latencies)
}

const WAKE_TEAM: &str = "TWAKE";
const EXPIRED_SAMPLE: &str =
    "spritz_worker_lifecycle_events_total{action=\"invalidated\",phase=\"Expired\"}";

/// Sends signed events and matches the fake Slack's posts to them.
struct Driver {
    http: reqwest::Client,
    events: String,
    install: TeamInstall,
    slack: FakeSlack,
    next: Arc<AtomicUsize>,
    arrivals: Arc<std::sync::Mutex<Vec<Instant>>>,
}

/// Message number → when its request was sent.
type Sends = Arc<Mutex<HashMap<usize, Instant>>>;

impl Driver {
    fn message_for(&self, n: usize, install: &TeamInstall) -> Vec<u8> {
        let message = UserMessage {
            team_id: install.team_id.clone(),
            api_app_id: install.api_app_id.clone(),
            bot_user_id: install.bot_user_id.clone(),
            user_id: "UBENCH".into(),
            channel: "CBENCH".into(),
            text: format!("bench {n}"),
            ts: format!("{}.{:06}", 1_700_000_000 + n / 1_000_000, n % 1_000_000),
            thread_ts: None,
            direct_message: false,
        };
        serde_json::to_vec(&message.event_callback()).unwrap_or_default()
    }

    async fn send(&self, n: usize) -> anyhow::Result<()> {
        self.send_for(n, &self.install.clone()).await
    }

    async fn send_for(&self, n: usize, install: &TeamInstall) -> anyhow::Result<()> {
        let body = self.message_for(n, install);
        let (status, _) = send_signed(&self.http, &self.events, SIGNING_SECRET, &body).await?;
        anyhow::ensure!(status == 200, "gateway answered {status}");
        Ok(())
    }

    /// `count` messages from `senders` concurrent senders.
    async fn burst(&self, count: usize, senders: usize) -> anyhow::Result<Sends> {
        let first = self.next.fetch_add(count, Ordering::Relaxed);
        let cursor = Arc::new(AtomicUsize::new(first));
        let sends: Sends = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..senders {
            let (cursor, sends) = (cursor.clone(), sends.clone());
            let driver = self.clone_light();
            tasks.spawn(async move {
                loop {
                    let n = cursor.fetch_add(1, Ordering::Relaxed);
                    if n >= first + count {
                        return Ok::<_, anyhow::Error>(());
                    }
                    sends.lock().await.insert(n, Instant::now());
                    driver.send(n).await?;
                }
            });
        }
        while let Some(result) = tasks.join_next().await {
            result??;
        }
        Ok(sends)
    }

    /// `count` messages at `rate` per second, each on its own task.
    async fn paced(&self, count: usize, rate: usize) -> anyhow::Result<Sends> {
        let first = self.next.fetch_add(count, Ordering::Relaxed);
        let sends: Sends = Arc::default();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = tokio::task::JoinSet::new();
        for n in first..first + count {
            tick.tick().await;
            let sends = sends.clone();
            let driver = self.clone_light();
            tasks.spawn(async move {
                sends.lock().await.insert(n, Instant::now());
                driver.send(n).await
            });
        }
        while let Some(result) = tasks.join_next().await {
            result??;
        }
        Ok(sends)
    }

    fn clone_light(&self) -> Driver {
        Driver {
            http: self.http.clone(),
            events: self.events.clone(),
            install: self.install.clone(),
            slack: self.slack.clone(),
            next: self.next.clone(),
            arrivals: self.arrivals.clone(),
        }
    }

    /// Waits until the fake Slack recorded `total` posts, noting when each arrived.
    async fn wait_posts(&self, total: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.slack.post_attempts() < total {
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {} of {total} posts",
                self.slack.post_attempts()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Receive-to-reply per message in ms: post arrival (see [`record_arrivals`])
    /// minus the time its request was sent, for the posts from index `posts_before` on.
    async fn latencies(&self, sends: &Sends, posts_before: usize) -> Vec<f64> {
        let posts = self.slack.posts();
        let arrivals = self.arrivals.lock().map(|a| a.clone()).unwrap_or_default();
        let sends = sends.lock().await;
        let mut latencies: Vec<f64> = posts
            .iter()
            .enumerate()
            .skip(posts_before)
            .filter_map(|(index, post)| {
                let n: usize = post.text.strip_prefix("echo: bench ")?.parse().ok()?;
                let sent = sends.get(&n)?;
                let arrived = arrivals.get(index)?;
                Some(arrived.duration_since(*sent).as_secs_f64() * 1000.0)
            })
            .collect();
        latencies.sort_by(|a, b| a.total_cmp(b));
        latencies
    }
}

/// Notes when each post arrived at the fake Slack, polling its counter every
/// millisecond (the fake records no times itself); index i is post i.
fn record_arrivals(slack: FakeSlack, arrivals: Arc<std::sync::Mutex<Vec<Instant>>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        loop {
            tick.tick().await;
            let count = slack.post_attempts();
            let now = Instant::now();
            if let Ok(mut arrivals) = arrivals.lock() {
                while arrivals.len() < count {
                    arrivals.push(now);
                }
            }
        }
    });
}
