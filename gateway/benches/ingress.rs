//! Ingress benchmark (`cargo bench -p spritz-gateway --bench ingress`): the release
//! `spritz-gateway serve` binary as its own process against a fresh vhost, driven by
//! correctly signed Slack events
//!
//! 1. at a fixed rate (`BENCH_RATE`, default 1,000/s, open loop: latency counts from
//!    the scheduled send time, so a stall is not hidden by sending less), and
//! 2. as fast as possible with `BENCH_CONCURRENCY` (default 64) requests in flight,
//!    `BENCH_ROUNDS` (default 2) times, alternating with the baseline;
//!
//! and, in the same run, the baseline: raw publish-with-confirm of the same bodies with
//! the same properties straight into the same quorum queue, at the same fixed rate and
//! with `BENCH_CONCURRENCY` publishes in flight over as many confirm channels as the
//! gateway uses. Each phase
//! runs `BENCH_SECONDS` (default 10). The gateway's peak RSS is read from
//! `/proc/<pid>/status` (`VmHWM`). Load generator, gateway and broker share this
//! machine's cores, which the figures include.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueuePurgeOptions};
use lapin::types::ShortString;
use lapin::{Confirmation, Connection, ConnectionProperties};
use serde_json::Value;
use spritz_proto::message::MessageType;
use spritz_proto::properties::Envelope;
use spritz_proto::slack_signature;
use spritz_proto::topology::{WORK_EXCHANGE, WORK_QUEUE, WORK_ROUTING_KEY};
use spritz_proto::traceparent::TraceParent;
use spritz_proto::{SlackEvent, SlackEventKind, UserMessage, UserMessageKind};
use spritz_sandbox::isolation::BrokerAdmin;
use tokio::sync::Mutex;

const BINARY: &str = env!("CARGO_BIN_EXE_spritz-gateway");
const SIGNING_SECRET: &str = "bench-signing-secret";
/// The gateway's default number of confirm channels (`ServeConfig::publisher_channels`).
const PUBLISHER_CHANNELS: usize = 4;

struct Settings {
    seconds: u64,
    rate: u64,
    concurrency: usize,
    rounds: u64,
}

impl Settings {
    fn from_env() -> Self {
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Self {
            seconds: number("BENCH_SECONDS", 10),
            rate: number("BENCH_RATE", 1000),
            concurrency: usize::try_from(number("BENCH_CONCURRENCY", 64)).unwrap_or(64),
            rounds: number("BENCH_ROUNDS", 2).max(1),
        }
    }
}

/// One phase's result.
struct Phase {
    name: String,
    sent: u64,
    failed: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        (self.sent - self.failed) as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self) {
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:<34} {:>8} ok {:>5} failed {:>9.0}/s   p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms",
            self.name,
            self.sent - self.failed,
            self.failed,
            self.rate(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            self.latency_us.max() as f64 / 1000.0,
        );
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// A realistic `app_mention` callback, about 1 KiB like Slack's. Built from a template
/// so the load generator spends its CPU on sending, not on JSON.
fn slack_body(n: u64) -> Vec<u8> {
    format!(
        concat!(
            r#"{{"token":"legacy-verification-token","team_id":"T0BENCH01","api_app_id":"A0BENCH01","#,
            r#""event":{{"type":"app_mention","user":"U0BENCHUSER","#,
            r#""text":"<@U0BENCHBOT> please summarise the last release notes and list the open questions","#,
            r#""ts":"1700000000.{n:06}","channel":"C0BENCHCHAN","channel_type":"channel","#,
            r#""event_ts":"1700000000.{n:06}","blocks":[{{"type":"rich_text","block_id":"b1","elements":"#,
            r#"[{{"type":"rich_text_section","elements":[{{"type":"user","user_id":"U0BENCHBOT"}},"#,
            r#"{{"type":"text","text":" please summarise the last release notes"}}]}}]}}]}},"#,
            r#""type":"event_callback","event_id":"Ev0BENCH{n:012}","event_time":1700000000,"#,
            r#""authorizations":[{{"enterprise_id":null,"team_id":"T0BENCH01","user_id":"U0BENCHBOT","#,
            r#""is_bot":true,"is_enterprise_install":false}}],"is_ext_shared_channel":false,"#,
            r#""event_context":"4-eyJldCI6ImFwcF9tZW50aW9uIiwidGlkIjoiVDBCRU5DSDAxIn0"}}"#
        ),
        n = n
    )
    .into_bytes()
}

/// The body the gateway publishes for `slack_body(n)`, for the raw baseline.
fn queued_body(n: u64) -> Vec<u8> {
    let mut event = SlackEvent::new(
        chrono::Utc::now(),
        format!("Ev0BENCH{n:012}"),
        "T0BENCH01".into(),
        SlackEventKind::Message(UserMessage {
            event_type: UserMessageKind::AppMention,
            user: "U0BENCHUSER".into(),
            channel: "C0BENCHCHAN".into(),
            channel_type: Some("channel".into()),
            ts: format!("1700000000.{n:06}"),
            thread_ts: None,
            text: "please summarise the last release notes and list the open questions".into(),
            bot_user_id: Some("U0BENCHBOT".into()),
        }),
    );
    event.api_app_id = Some("A0BENCH01".into());
    serde_json::to_vec(&event).expect("serialise")
}

struct Gateway {
    child: Child,
    url: String,
}

impl Gateway {
    fn start(amqp_url: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(BINARY)
            .arg("serve")
            .env_clear()
            .envs([
                ("SPRITZ_SLACK_GATEWAY_ADDR", "127.0.0.1:0"),
                ("SPRITZ_METRICS_ADDR", "127.0.0.1:0"),
                ("SPRITZ_SLACK_GATEWAY_PUBLIC_URL", "http://gateway.bench"),
                ("SPRITZ_SLACK_SIGNING_SECRET", SIGNING_SECRET),
                ("SPRITZ_SLACK_CLIENT_ID", "1.2"),
                ("SPRITZ_SLACK_CLIENT_SECRET", "bench"),
                ("SPRITZ_SLACK_OAUTH_STATE_SECRET", "bench"),
                (
                    "SPRITZ_SLACK_BACKEND_BASE_URL",
                    "http://127.0.0.1:9/backend",
                ),
                ("SPRITZ_SLACK_BACKEND_INTERNAL_TOKEN", "bench"),
                ("SPRITZ_SLACK_PRINCIPAL_ID", "bench"),
                ("SPRITZ_AMQP_URL", amqp_url),
                ("RUST_LOG", "info"),
            ])
            // Passed through for experiments with the gateway's runtime size.
            .envs(std::env::var("TOKIO_WORKER_THREADS").map(|v| ("TOKIO_WORKER_THREADS", v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn spritz-gateway serve")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        // Keep draining the log so the gateway never blocks on a full pipe.
        std::thread::spawn(move || {
            let (mut addr, mut connected) = (None, false);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(log) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(listening) = log["fields"]["addr"].as_str() {
                    addr = Some(listening.to_owned());
                }
                connected |= log["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("topology declared"));
                if connected && let Some(addr) = addr.take() {
                    let _ = addr_tx.send(addr);
                }
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(60))
            .context("gateway did not start")?;
        Ok(Self {
            child,
            url: format!("http://{addr}/slack/events"),
        })
    }

    /// Peak and current resident set size in MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// CPU seconds (user + system) the gateway process used so far.
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }

    fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("gateway exited with {status}");
        }
        Ok(())
    }
}

/// utime + stime of a `/proc/.../stat` file, in seconds (USER_HZ is 100 on Linux).
fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A bare HTTP/1.1 keep-alive connection for the closed-loop phase: the load
/// generator shares the machine's cores with the gateway and the broker, so it should
/// spend as little of them as it can (a pooled general-purpose client costs about as
/// much CPU per request as the gateway itself).
struct RawConnection {
    stream: tokio::io::BufStream<tokio::net::TcpStream>,
    head: String,
}

impl RawConnection {
    async fn open(url: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(url)?;
        let authority = format!(
            "{}:{}",
            url.host_str().context("host")?,
            url.port().context("port")?
        );
        let tcp = tokio::net::TcpStream::connect(&authority).await?;
        tcp.set_nodelay(true)?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n",
            url.path()
        );
        Ok(Self {
            stream: tokio::io::BufStream::new(tcp),
            head,
        })
    }

    /// Posts one signed event and returns the status.
    async fn post(&mut self, body: &[u8]) -> std::io::Result<u16> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = slack_signature::sign(SIGNING_SECRET.as_bytes(), &timestamp, body);
        let request = format!(
            "{}X-Slack-Request-Timestamp: {timestamp}\r\nX-Slack-Signature: {signature}\r\nContent-Length: {}\r\n\r\n",
            self.head,
            body.len()
        );
        self.stream.write_all(request.as_bytes()).await?;
        self.stream.write_all(body).await?;
        self.stream.flush().await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut answer = vec![0u8; length];
        self.stream.read_exact(&mut answer).await?;
        Ok(status)
    }
}

/// Sends one signed event; `Ok(true)` when answered 200.
async fn send(client: &reqwest::Client, url: &str, body: Vec<u8>) -> bool {
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = slack_signature::sign(SIGNING_SECRET.as_bytes(), &timestamp, &body);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", timestamp)
        .header("x-slack-signature", signature)
        .body(body)
        .send()
        .await;
    matches!(response, Ok(r) if r.status() == 200)
}

/// Open loop: one send every `1/rate` seconds, latency from its scheduled time.
async fn fixed_rate<F, Fut>(name: String, settings: &Settings, first: u64, make: F) -> Phase
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let total = settings.rate * settings.seconds;
    let period = Duration::from_secs_f64(1.0 / settings.rate as f64);
    let latency = Arc::new(Mutex::new(histogram()));
    let failed = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        let due = start + period * u32::try_from(i).unwrap_or(u32::MAX);
        let request = make(first + i);
        tokio::time::sleep_until(due).await;
        let (latency, failed) = (latency.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let ok = request.await;
            let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
            if ok {
                let _ = latency.lock().await.record(micros.max(1));
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = start.elapsed();
    let latency_us = latency.lock().await.clone();
    Phase {
        name,
        sent: total,
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        latency_us,
    }
}

/// `concurrency` loops each sending (or publishing) back to back until the deadline.
async fn closed_loop<F, Fut>(name: String, settings: &Settings, first: u64, make: F) -> Phase
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicU64::new(first));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut loops = Vec::new();
    for _ in 0..settings.concurrency {
        let (make, next, stop, failed) = (make.clone(), next.clone(), stop.clone(), failed.clone());
        loops.push(tokio::spawn(async move {
            let mut latency = histogram();
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                if make(n).await {
                    let _ = latency.record(
                        u64::try_from(sent.elapsed().as_micros())
                            .unwrap_or(u64::MAX)
                            .max(1),
                    );
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            latency
        }));
    }
    tokio::time::sleep(Duration::from_secs(settings.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency_us = histogram();
    for handle in loops {
        if let Ok(h) = handle.await {
            let _ = latency_us.add(h);
        }
    }
    let elapsed = start.elapsed();
    Phase {
        name,
        sent: next.load(Ordering::Relaxed) - first,
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        latency_us,
    }
}

async fn purge(connection: &Connection) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    channel
        .queue_purge(ShortString::from(WORK_QUEUE), QueuePurgeOptions::default())
        .await?;
    let _ = channel.close(200, ShortString::from("purged")).await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    let vhost = BrokerAdmin::from_env().create_vhost().await?;
    let gateway = Gateway::start(&vhost.amqp_url())?;
    let connection =
        Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await?;
    let client = spritz_sandbox::tls::http_client_builder()
        .pool_max_idle_per_host(settings.concurrency * 2)
        .timeout(Duration::from_secs(10))
        .build()?;
    println!(
        "spritz-gateway ingress benchmark: {} s per phase, fixed rate {}/s, concurrency {}, {} cores",
        settings.seconds,
        settings.rate,
        settings.concurrency,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    serde_json::from_slice::<Value>(&slack_body(7)).context("the event template is JSON")?;
    // Warm up connections and the gateway's publisher channels.
    for n in 0..1000 {
        send(&client, &gateway.url, slack_body(9_000_000_000 + n)).await;
    }
    purge(&connection).await?;

    let paced = fixed_rate(
        format!("gateway, fixed {}/s", settings.rate),
        &settings,
        0,
        |n| {
            let (client, url) = (client.clone(), gateway.url.clone());
            async move { send(&client, &url, slack_body(n)).await }
        },
    )
    .await;
    paced.print();
    let (paced_peak, _) = gateway.rss_mib();
    purge(&connection).await?;

    let mut channels = Vec::new();
    for _ in 0..PUBLISHER_CHANNELS {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channels.push(channel);
    }
    let channels = Arc::new(channels);
    let raw_publish = move |n: u64| {
        let channels = channels.clone();
        async move {
            let channel = &channels[usize::try_from(n).unwrap_or(0) % channels.len()];
            let envelope = Envelope::new(
                format!("Ev0BENCH{n:012}"),
                MessageType::SlackEvent,
                TraceParent::new_root(),
            );
            let published = channel
                .basic_publish(
                    ShortString::from(WORK_EXCHANGE),
                    ShortString::from(WORK_ROUTING_KEY),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &queued_body(n),
                    envelope.properties(),
                )
                .await;
            match published {
                Ok(confirm) => matches!(confirm.await, Ok(Confirmation::Ack(None))),
                Err(_) => false,
            }
        }
    };
    let raw_paced = fixed_rate(
        format!("raw publish+confirm, fixed {}/s", settings.rate),
        &settings,
        3_000_000_000,
        raw_publish.clone(),
    )
    .await;
    raw_paced.print();
    purge(&connection).await?;

    let mut pool = Vec::with_capacity(settings.concurrency);
    for _ in 0..settings.concurrency {
        pool.push(RawConnection::open(&gateway.url).await?);
    }
    let pool = Arc::new(Mutex::new(pool));
    let gateway_post = move |n: u64| {
        let pool = pool.clone();
        async move {
            let Some(mut connection) = pool.lock().await.pop() else {
                return false;
            };
            let ok = matches!(connection.post(&slack_body(n)).await, Ok(200));
            pool.lock().await.push(connection);
            ok
        }
    };

    // Closed-loop phases alternate, so a neighbour's burst on this shared machine does
    // not land on one side only; the best round of each side is compared.
    let (mut best_gateway, mut best_raw): (Option<Phase>, Option<Phase>) = (None, None);
    for round in 0..settings.rounds {
        let first = 1_000_000_000 * (round + 1);
        let (gateway_cpu, own_cpu) = (gateway.cpu_seconds(), cpu_seconds("/proc/self/stat"));
        let max = closed_loop(
            format!("gateway, max (concurrency {})", settings.concurrency),
            &settings,
            first,
            gateway_post.clone(),
        )
        .await;
        max.print();
        let ok = (max.sent - max.failed).max(1) as f64;
        println!(
            "{:<34} gateway {:.0} µs, load generator {:.0} µs",
            "  CPU per event",
            (gateway.cpu_seconds() - gateway_cpu) / ok * 1e6,
            (cpu_seconds("/proc/self/stat") - own_cpu) / ok * 1e6,
        );
        purge(&connection).await?;

        let own_cpu = cpu_seconds("/proc/self/stat");
        let raw = closed_loop(
            format!("raw publish+confirm (concurrency {})", settings.concurrency),
            &settings,
            first + 500_000_000,
            raw_publish.clone(),
        )
        .await;
        raw.print();
        println!(
            "{:<34} publisher {:.0} µs",
            "  CPU per message",
            (cpu_seconds("/proc/self/stat") - own_cpu) / (raw.sent - raw.failed).max(1) as f64
                * 1e6,
        );
        purge(&connection).await?;
        if best_gateway
            .as_ref()
            .is_none_or(|best| max.rate() > best.rate())
        {
            best_gateway = Some(max);
        }
        if best_raw
            .as_ref()
            .is_none_or(|best| raw.rate() > best.rate())
        {
            best_raw = Some(raw);
        }
    }
    let (peak_rss, current_rss) = gateway.rss_mib();

    println!();
    if let (Some(max), Some(raw)) = (&best_gateway, &best_raw) {
        println!(
            "gateway max / raw broker rate (best of {} rounds each): {:.0}/s / {:.0}/s = {:.0}%",
            settings.rounds,
            max.rate(),
            raw.rate(),
            100.0 * max.rate() / raw.rate()
        );
    }
    println!(
        "p99 at {}/s: gateway ack {:.2} ms, raw broker confirm {:.2} ms",
        settings.rate,
        paced.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
        raw_paced.latency_us.value_at_quantile(0.99) as f64 / 1000.0
    );
    println!(
        "gateway RSS: peak {peak_rss:.1} MiB (after fixed-rate phase {paced_peak:.1} MiB), now {current_rss:.1} MiB"
    );

    let _ = connection.close(200, ShortString::from("bench done")).await;
    gateway.stop()?;
    vhost.delete().await?;
    Ok(())
}
