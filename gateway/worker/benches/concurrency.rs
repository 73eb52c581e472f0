//! Concurrency benchmark: how many slow prompts one worker holds at once, and what
//! each waiting delivery costs. `spritz-gateway serve` and `spritz-gateway worker` run
//! as separate release processes against their own RabbitMQ vhost and the Redis of
//! `SPRITZ_TEST_REDIS_URL` (scripts/bench-concurrency starts a private one, so its
//! command counts are the worker's alone); the sandbox fakes run in this process, the
//! agent answering every prompt `BENCH_AGENT_DELAY` (60s) after it arrived.
//!
//! Per round (`BENCH_ROUNDS`, 2: the second shows whether memory per delivery grows
//! over time), `BENCH_IN_FLIGHT` (10,000) messages in distinct conversations go in
//! through the gateway; the bench prints the in-flight count reached, the worker's RSS
//! at 1k and at the full count, bytes per waiting delivery, Redis commands, socket
//! reads and CPU per second while all of them wait, renewal-tick lateness, a lifecycle
//! event's time to reach the worker while all wait, broker reconnects (missed
//! heartbeats), and the reply p99 once the agents answer (prompt answered → reply at
//! Slack). Every message must be answered exactly once.
//!
//! Baseline, measured in the same run on the same Redis: the renewal pattern of the
//! previous release — one timer and one `EVALSHA` round trip per delivery every third
//! of the lease — for the same number of claims, from this process.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use spritz_proto::Phase;
use spritz_sandbox::backend::{FakeBackend, TeamInstall};
use spritz_sandbox::isolation::{self, BrokerAdmin};
use spritz_sandbox::slack::FakeSlack;
use spritz_sandbox::slack::events::{UserMessage, events_url, send_signed};
use spritz_sandbox::spritz_api::{AgentBehaviour, FakeSpritz};
use spritz_service::metrics::BrokerMetrics;
use spritz_service::{Broker, BrokerSettings};

mod support;
use support::{
    Children, SIGNING_SECRET, clock_ticks_per_second, cpu_ticks, env_usize, free_port,
    gateway_binary, percentile, publish_lifecycle, rss_bytes, spawn_serve, worker_metric,
};

const BACKEND_TOKEN: &str = "bench-backend-token";
const SERVICE_TOKEN: &str = "bench-service-token";
const TEAM: &str = "TCONC";
const CHANNEL: &str = "CCONC";
/// The worker's claim lease (its default) and so the renewal period, lease / 3.
const CLAIM_LEASE: Duration = Duration::from_secs(30);

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

/// What Redis's `INFO` says, at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct RedisStats {
    commands: f64,
    evalsha: f64,
    reads: f64,
    cpu: f64,
    at: Option<Instant>,
}

impl RedisStats {
    async fn read(redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<Self> {
        let info: String = redis::cmd("INFO")
            .arg("everything")
            .query_async(redis)
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let evalsha = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Ok(Self {
            commands: field("total_commands_processed"),
            evalsha,
            reads: field("total_reads_processed"),
            cpu: field("used_cpu_sys") + field("used_cpu_user"),
            at: Some(Instant::now()),
        })
    }

    /// Per-second rates from `self` to `later`: (commands, EVALSHA, reads, CPU %).
    fn rates(&self, later: &Self) -> (f64, f64, f64, f64) {
        let secs = match (self.at, later.at) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64().max(1e-9),
            _ => 1.0,
        };
        (
            (later.commands - self.commands) / secs,
            (later.evalsha - self.evalsha) / secs,
            (later.reads - self.reads) / secs,
            (later.cpu - self.cpu) / secs * 100.0,
        )
    }
}

async fn run() -> anyhow::Result<()> {
    let in_flight = env_usize("BENCH_IN_FLIGHT", 10_000);
    let rounds = env_usize("BENCH_ROUNDS", 2);
    let senders = env_usize("BENCH_SENDERS", 64);
    let delay = Duration::from_secs(env_usize("BENCH_AGENT_DELAY", 60) as u64);
    let window = Duration::from_secs(env_usize("BENCH_WINDOW", 30) as u64);
    let prefetch = env_usize("BENCH_PREFETCH", in_flight);
    let binary = gateway_binary();
    anyhow::ensure!(
        delay > window + Duration::from_secs(15),
        "BENCH_AGENT_DELAY must leave room for the {window:?} measuring window"
    );

    let redis_url = isolation::redis_url();
    let mut redis = redis::Client::open(redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await
        .context("redis")?;

    // The baseline first, while nothing else uses this Redis.
    let baseline = per_delivery_renewals(&mut redis, in_flight, window).await?;

    let slack = FakeSlack::start().await?;
    let backend = FakeBackend::start(BACKEND_TOKEN).await?;
    let spritz = FakeSpritz::start(SERVICE_TOKEN).await?;
    spritz.set_agent(AgentBehaviour::Slow(delay));
    let install = TeamInstall::demo(TEAM);
    backend.install_team(install.clone());
    spritz.add_runtime(&install);
    slack.add_workspace(&install.team_id, &install.bot_access_token, &[CHANNEL]);
    let vhost = BrokerAdmin::from_env().create_vhost().await?;

    let gateway_port = free_port()?;
    let gateway_ops = free_port()?;
    let worker_ops = free_port()?;
    let gateway_url = format!("http://127.0.0.1:{gateway_port}");
    let log = std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let common: Vec<(&str, String)> = vec![
        ("SPRITZ_AMQP_URL", vhost.amqp_url()),
        ("SPRITZ_SLACK_BACKEND_BASE_URL", backend.base_url()),
        ("SPRITZ_SLACK_BACKEND_INTERNAL_TOKEN", BACKEND_TOKEN.into()),
        ("SPRITZ_SLACK_PRINCIPAL_ID", "spritz-slack-gateway".into()),
        ("SPRITZ_SLACK_API_BASE_URL", slack.base_url()),
        ("RUST_LOG", log),
    ];
    let gateway = spawn_serve(
        &binary,
        &common,
        gateway_port,
        gateway_ops,
        &gateway_url,
        "scripts/bench-concurrency",
    )?;
    let worker = Command::new(&binary)
        .arg("worker")
        .envs(common.iter().map(|(k, v)| (*k, v.as_str())))
        .env("SPRITZ_SLACK_SPRITZ_BASE_URL", spritz.base_url())
        .env("SPRITZ_SLACK_SPRITZ_SERVICE_TOKEN", SERVICE_TOKEN)
        .env("SPRITZ_REDIS_URL", &redis_url)
        .env("SPRITZ_REDIS_KEY_PREFIX", isolation::redis_prefix())
        .env("SPRITZ_WORKER_PREFETCH", prefetch.to_string())
        .env("SPRITZ_WORKER_CLAIM_LEASE", "30s")
        // The agent's answer time plus room: the deadline must not cut the prompts.
        .env(
            "SPRITZ_SLACK_PROCESSING_TIMEOUT",
            format!("{}s", delay.as_secs() + 120),
        )
        .env("SPRITZ_METRICS_ADDR", format!("127.0.0.1:{worker_ops}"))
        .stdout(match std::env::var_os("BENCH_WORKER_LOG_FILE") {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::null(),
        })
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
        let (http, url) = (&http, &url);
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
    let (lifecycle, _) = Broker::start(
        BrokerSettings::new(vhost.amqp_url(), "bench-notifier"),
        BrokerMetrics::unregistered(),
    );
    lifecycle
        .wait_ready(Duration::from_secs(10))
        .await
        .context("bench broker")?;

    let arrivals = Arrivals::record(slack.clone(), spritz.clone());
    let events = events_url(&gateway_url);
    let ticks = clock_ticks_per_second();
    println!(
        "spritz worker concurrency benchmark: {in_flight} messages per round, agent answers after {}s, prefetch {prefetch}, claim lease {}s",
        delay.as_secs(),
        CLAIM_LEASE.as_secs()
    );
    println!(
        "baseline (previous release's pattern, {in_flight} claims, one timer + one EVALSHA round trip each per {}s): redis {:.0} commands/s ({:.0} EVALSHA/s), {:.0} socket reads/s, redis CPU {:.1}%",
        (CLAIM_LEASE / 3).as_secs(),
        baseline.0,
        baseline.1,
        baseline.2,
        baseline.3
    );
    for round in 0..rounds {
        let first = round * in_flight;
        let sent_at = Instant::now();
        let sending = tokio::spawn({
            let (http, events, install) = (http.clone(), events.clone(), install.clone());
            async move { send_all(&http, &events, &install, first, in_flight, senders).await }
        });
        let rss_1k = waiting_at_agent(&spritz, first, 1000.min(in_flight), worker_pid).await?;
        let (reached, _) =
            wait_in_flight_or_stall(&http, worker_ops, worker_pid, in_flight).await?;
        let rss_full = waiting_at_agent(&spritz, first, in_flight, worker_pid).await?;
        sending.await??;
        let sent_in = sent_at.elapsed();
        let threads = threads_of(worker_pid);
        // Everything waits on the agent now: measure the quiet cost.
        let reconnects_before =
            worker_metric(&http, worker_ops, "spritz_broker_reconnects_total").await;
        let lateness_before = histogram(
            &http,
            worker_ops,
            "spritz_worker_lease_renewal_lateness_seconds",
        )
        .await;
        let tick_before = histogram(&http, worker_ops, "spritz_worker_lease_renewal_seconds").await;
        let cpu_before = cpu_ticks(worker_pid)?;
        let stats_before = RedisStats::read(&mut redis).await?;
        let lifecycle_ms = lifecycle_latency(&http, worker_ops, &lifecycle, &install).await?;
        let window_left =
            window.saturating_sub(stats_before.at.map_or(Duration::ZERO, |t| t.elapsed()));
        tokio::time::sleep(window_left).await;
        let stats_after = RedisStats::read(&mut redis).await?;
        let cpu = (cpu_ticks(worker_pid)? - cpu_before) as f64 / ticks / window.as_secs_f64();
        let rss_end = rss_bytes(worker_pid)?;
        let lateness = histogram(
            &http,
            worker_ops,
            "spritz_worker_lease_renewal_lateness_seconds",
        )
        .await
        .since(&lateness_before);
        let tick = histogram(&http, worker_ops, "spritz_worker_lease_renewal_seconds")
            .await
            .since(&tick_before);
        let reconnects = worker_metric(&http, worker_ops, "spritz_broker_reconnects_total").await
            - reconnects_before;
        let renewal_failures = worker_metric(
            &http,
            worker_ops,
            "spritz_worker_lease_renewal_failures_total",
        )
        .await;
        let (commands, evalsha, reads, redis_cpu) = stats_before.rates(&stats_after);

        // The agents answer; every message must be answered once. (Each prompt also
        // runs past the status threshold, so each message gets a status post first.)
        wait_replies(&slack, first, in_flight, delay + Duration::from_secs(120)).await?;
        let replies = reply_latencies(&slack, &spritz, &arrivals, first, in_flight, delay);
        let answers = answer_counts(&slack, first, in_flight);

        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!("round {}:", round + 1);
        println!(
            "  sent {in_flight} through the gateway in {:.1}s; in flight reached {reached:.0}",
            sent_in.as_secs_f64()
        );
        println!(
            "  worker RSS: {:.1} MiB with 1,000 prompts waiting at the agent, {:.1} MiB with {in_flight}, {:.1} MiB after {}s more waiting ({threads} threads)",
            mib(rss_1k),
            mib(rss_full),
            mib(rss_end),
            window.as_secs()
        );
        if in_flight > 1000 {
            println!(
                "  bytes per waiting delivery: {:.0} ((RSS with {in_flight} - RSS with 1,000) / {})",
                (rss_full as f64 - rss_1k as f64) / (in_flight as f64 - 1000.0),
                in_flight - 1000
            );
        }
        println!(
            "  while all wait ({}s): redis {commands:.0} commands/s ({evalsha:.0} EVALSHA/s), {reads:.0} socket reads/s, redis CPU {redis_cpu:.1}%; worker CPU {:.1}%",
            window.as_secs(),
            cpu * 100.0
        );
        println!(
            "  vs baseline: socket reads {:.0}x fewer, redis CPU {:.1}x lower, same EVALSHA rate ({:.0} vs {:.0}/s)",
            baseline.2 / reads.max(1e-9),
            baseline.3 / redis_cpu.max(1e-9),
            evalsha,
            baseline.1
        );
        println!(
            "  renewal ticks: {:.0} ({renewal_failures:.0} failed since start), lateness mean {:.2} ms, max <= {} ; tick duration mean {:.1} ms, max <= {}",
            lateness.count,
            lateness.mean_ms(),
            lateness.max_bucket(),
            tick.mean_ms(),
            tick.max_bucket()
        );
        println!(
            "  lifecycle event published -> counted by the worker while all wait: {lifecycle_ms:.1} ms; broker reconnects: {reconnects:.0}"
        );
        println!(
            "  reply once the agent answered (agent's last chunk due -> reply at Slack): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} matched)",
            percentile(&replies, 0.50),
            percentile(&replies, 0.99),
            percentile(&replies, 1.0),
            replies.len()
        );
        println!(
            "  answers: {} messages answered once, {} twice or more, {} not at all",
            answers.0, answers.1, answers.2
        );
    }
    lifecycle.close().await;
    drop(children);
    let _ = vhost.delete().await;
    Ok(())
}

/// Messages `first..first + count`, each in its own conversation (a top-level channel
/// message is its own thread), from `senders` concurrent senders.
async fn send_all(
    http: &reqwest::Client,
    events: &str,
    install: &TeamInstall,
    first: usize,
    count: usize,
    senders: usize,
) -> anyhow::Result<()> {
    let cursor = Arc::new(std::sync::atomic::AtomicUsize::new(first));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (cursor, http, events, install) = (
            cursor.clone(),
            http.clone(),
            events.to_owned(),
            install.clone(),
        );
        tasks.spawn(async move {
            loop {
                let n = cursor.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= first + count {
                    return Ok::<_, anyhow::Error>(());
                }
                let message = UserMessage {
                    team_id: install.team_id.clone(),
                    api_app_id: install.api_app_id.clone(),
                    bot_user_id: install.bot_user_id.clone(),
                    user_id: "UCONC".into(),
                    channel: CHANNEL.into(),
                    text: format!("conc {n}"),
                    ts: format!("{}.{:06}", 1_700_000_000 + n / 1_000_000, n % 1_000_000),
                    thread_ts: None,
                    direct_message: false,
                };
                let body = serde_json::to_vec(&message.event_callback())?;
                let (status, _) = send_signed(&http, &events, SIGNING_SECRET, &body).await?;
                anyhow::ensure!(status == 200, "gateway answered {status}");
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(())
}

/// Threads of a process (`Threads:` of its status), 0 when unreadable.
fn threads_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Waits until `count` prompts of this round (which started at prompt number
/// `first`) are at the agent, every one of them waiting for its answer; the worker's
/// RSS then.
async fn waiting_at_agent(
    spritz: &FakeSpritz,
    first: usize,
    count: usize,
    pid: u32,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while spritz.prompt_count() < first + count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {count} prompts reached the agent",
            spritz.prompt_count().saturating_sub(first)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rss_bytes(pid)
}

/// Waits until `target` are in flight, or the count stopped rising for 5 s; the
/// count reached and the RSS then.
async fn wait_in_flight_or_stall(
    http: &reqwest::Client,
    ops: u16,
    pid: u32,
    target: usize,
) -> anyhow::Result<(f64, u64)> {
    let mut best = 0.0;
    let mut since = Instant::now();
    loop {
        let now = worker_metric(http, ops, "spritz_worker_in_flight").await;
        if now >= target as f64 {
            return Ok((now, rss_bytes(pid)?));
        }
        if now > best {
            best = now;
            since = Instant::now();
        } else if since.elapsed() > Duration::from_secs(5) {
            return Ok((best, rss_bytes(pid)?));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes a `Ready` of the bench's runtime and times until the worker counted it.
async fn lifecycle_latency(
    http: &reqwest::Client,
    ops: u16,
    broker: &Broker,
    install: &TeamInstall,
) -> anyhow::Result<f64> {
    const SAMPLE: &str = "spritz_worker_lifecycle_events_total{action=\"woke\",phase=\"Ready\"}";
    let before = worker_metric(http, ops, SAMPLE).await;
    let started = Instant::now();
    publish_lifecycle(broker, install, Phase::Ready).await?;
    while worker_metric(http, ops, SAMPLE).await <= before {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the lifecycle event never reached the worker"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Waits until every message of the round got its reply (status posts aside).
async fn wait_replies(
    slack: &FakeSlack,
    first: usize,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let (once, more, _) = answer_counts(slack, first, count);
        if once + more == count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {count} replies",
            once + more
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// When each prompt reached the agent and each post reached Slack (index i: the i-th
/// one), noted by polling the fakes' counters every millisecond (they record no times).
#[derive(Clone)]
struct Arrivals {
    prompts: Arc<Mutex<Vec<Instant>>>,
    posts: Arc<Mutex<Vec<Instant>>>,
}

impl Arrivals {
    fn record(slack: FakeSlack, spritz: FakeSpritz) -> Self {
        let arrivals = Self {
            prompts: Arc::default(),
            posts: Arc::default(),
        };
        let recorder = arrivals.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            loop {
                tick.tick().await;
                let now = Instant::now();
                for (list, count) in [
                    (&recorder.prompts, spritz.prompt_count()),
                    (&recorder.posts, slack.post_attempts()),
                ] {
                    let mut list = list
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    while list.len() < count {
                        list.push(now);
                    }
                }
            }
        });
        arrivals
    }
}

/// The message number in a prompt or reply text that ends with `conc <n>`.
fn number(text: &str) -> Option<usize> {
    text.rsplit_once("conc ")?.1.trim().parse().ok()
}

/// Reply latency per message of the round, ms, sorted: the post's arrival minus the
/// moment the agent's answer was due (prompt arrival + `delay`).
fn reply_latencies(
    slack: &FakeSlack,
    spritz: &FakeSpritz,
    arrivals: &Arrivals,
    first: usize,
    count: usize,
    delay: Duration,
) -> Vec<f64> {
    let range = first..first + count;
    let prompt_times = arrivals
        .prompts
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let post_times = arrivals.posts.lock().map(|l| l.clone()).unwrap_or_default();
    let mut answered_due: HashMap<usize, Instant> = HashMap::new();
    for (i, prompt) in spritz.prompts().iter().enumerate() {
        if let (Some(n), Some(at)) = (number(&prompt.text), prompt_times.get(i))
            && range.contains(&n)
        {
            answered_due.insert(n, *at + delay);
        }
    }
    let mut latencies: Vec<f64> = slack
        .posts()
        .iter()
        .enumerate()
        .filter_map(|(i, post)| {
            let n = number(post.text.strip_prefix("echo: ")?)?;
            let due = answered_due.get(&n)?;
            let arrived = post_times.get(i)?;
            Some(arrived.saturating_duration_since(*due).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}

/// (answered once, answered more than once, not answered) for the round's messages.
fn answer_counts(slack: &FakeSlack, first: usize, count: usize) -> (usize, usize, usize) {
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for post in slack.posts() {
        if let Some(n) = post.text.strip_prefix("echo: ").and_then(number) {
            *counts.entry(n).or_default() += 1;
        }
    }
    let range = first..first + count;
    let once = range.clone().filter(|n| counts.get(n) == Some(&1)).count();
    let more = range
        .clone()
        .filter(|n| counts.get(n).is_some_and(|c| *c > 1))
        .count();
    (once, more, count - once - more)
}

/// A Prometheus histogram's buckets, sum and count.
#[derive(Clone, Debug, Default)]
struct HistogramSample {
    buckets: Vec<(String, f64)>,
    sum: f64,
    count: f64,
}

impl HistogramSample {
    fn since(&self, before: &Self) -> Self {
        Self {
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| {
                    let old = before
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |(_, n)| *n);
                    (le.clone(), n - old)
                })
                .collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    fn mean_ms(&self) -> f64 {
        if self.count == 0.0 {
            return 0.0;
        }
        self.sum / self.count * 1000.0
    }

    /// The smallest bucket bound holding every observation.
    fn max_bucket(&self) -> String {
        self.buckets
            .iter()
            .find(|(_, n)| *n >= self.count)
            .map_or_else(|| "?".into(), |(le, _)| format!("{le} s"))
    }
}

async fn histogram(http: &reqwest::Client, ops: u16, name: &str) -> HistogramSample {
    let body = match http
        .get(format!("http://127.0.0.1:{ops}/metrics"))
        .send()
        .await
    {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut sample = HistogramSample::default();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{le=\"")) {
            if let Some((le, value)) = rest.split_once("\"} ") {
                sample
                    .buckets
                    .push((le.to_owned(), value.trim().parse().unwrap_or(0.0)));
            }
        } else if let Some(value) = line.strip_prefix(&format!("{name}_sum ")) {
            sample.sum = value.trim().parse().unwrap_or(0.0);
        } else if let Some(value) = line.strip_prefix(&format!("{name}_count ")) {
            sample.count = value.trim().parse().unwrap_or(0.0);
        }
    }
    sample
}

/// The previous release's renewal pattern for `claims` deliveries: each its own timer
/// and its own `EVALSHA` round trip every lease / 3, on one multiplexed connection.
/// Measured over `window`: (Redis commands/s, EVALSHA/s, socket reads/s, Redis CPU %).
async fn per_delivery_renewals(
    redis: &mut redis::aio::MultiplexedConnection,
    claims: usize,
    window: Duration,
) -> anyhow::Result<(f64, f64, f64, f64)> {
    const RENEW: &str = r"
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then n = n + redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
end
return n
";
    let prefix = isolation::redis_prefix();
    let lease_ms = CLAIM_LEASE.as_millis() as u64;
    let mut pipe = redis::pipe();
    for n in 0..claims {
        for kind in ["event", "msg"] {
            pipe.cmd("SET")
                .arg(format!("{prefix}baseline:{kind}:{n}"))
                .arg("owner")
                .arg("PX")
                .arg(lease_ms)
                .ignore();
        }
    }
    let _: () = pipe.query_async(redis).await?;
    let script = Arc::new(redis::Script::new(RENEW));
    let stop = tokio_util::sync::CancellationToken::new();
    let period = CLAIM_LEASE / 3;
    for n in 0..claims {
        let (mut conn, script, stop, prefix) =
            (redis.clone(), script.clone(), stop.clone(), prefix.clone());
        tokio::spawn(async move {
            // Spread like deliveries that arrived over a few seconds.
            let offset = period.mul_f64((n % 1000) as f64 / 1000.0);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                let _: Result<i64, _> = script
                    .key(format!("{prefix}baseline:event:{n}"))
                    .key(format!("{prefix}baseline:msg:{n}"))
                    .arg("owner")
                    .arg(lease_ms)
                    .invoke_async(&mut conn)
                    .await;
            }
        });
    }
    // One whole period to settle, then the window.
    tokio::time::sleep(period).await;
    let before = RedisStats::read(redis).await?;
    tokio::time::sleep(window).await;
    let after = RedisStats::read(redis).await?;
    stop.cancel();
    Ok(before.rates(&after))
}
