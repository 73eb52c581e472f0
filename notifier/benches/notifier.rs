//! Benchmark of `spritz-notifier` against the fake Kubernetes API server and a real
//! RabbitMQ (a fresh vhost): the release binary runs as its own process, pointed at the
//! fake through a kubeconfig file, so its memory is its own.
//!
//! Measures:
//! 1. latency: phase change in the API → event on a queue bound to `spritz.lifecycle`
//!    (p50/p99 over sequential changes of one object);
//! 2. throughput: 10,000 objects created (each announced), then all 10,000 changing
//!    phase at once → events/s with broker confirms, and until every annotation is
//!    recorded;
//! 3. memory: the notifier's RSS with 10,000 objects watched (and its peak).
//!
//! Run: `cargo bench -p spritz-notifier --bench notifier`
//! (`SPRITZ_BENCH_OBJECTS`, `SPRITZ_BENCH_LATENCY_SAMPLES` override the sizes).

#[path = "../tests/notifier/kubeconfig.rs"]
mod kubeconfig;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties};
use spritz_proto::topology::{self, LIFECYCLE_ALL, LIFECYCLE_EXCHANGE, TopologyOptions};
use spritz_proto::{LifecycleEvent, Phase};
use spritz_sandbox::isolation::{BrokerAdmin, TestVhost};
use spritz_sandbox::kubernetes::FakeKubernetes;
use tokio::sync::mpsc;

use kubeconfig::KubeconfigFile;

const QUEUE: &str = "bench.lifecycle";
const IDENTITY: &str = "bench-notifier";
const LEASE_NS: &str = "spritz-system";
const WAIT: Duration = Duration::from_secs(120);

/// An event as the bench consumer saw it.
struct Arrival {
    instance_id: String,
    phase: Phase,
    at: Instant,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let objects: usize = env_number("SPRITZ_BENCH_OBJECTS", 10_000);
    let samples: usize = env_number("SPRITZ_BENCH_LATENCY_SAMPLES", 300);

    let fake = FakeKubernetes::start().await?;
    let vhost = BrokerAdmin::from_env().create_vhost().await?;
    let result = run(&fake, &vhost, objects, samples).await;
    let _ = vhost.delete().await;
    result
}

async fn run(
    fake: &FakeKubernetes,
    vhost: &TestVhost,
    objects: usize,
    samples: usize,
) -> anyhow::Result<()> {
    let mut arrivals = consume(vhost).await?;
    let kubeconfig = KubeconfigFile::write(&fake.base_url())?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_spritz-notifier"))
        .env_clear()
        .env("KUBECONFIG", kubeconfig.path())
        .env("SPRITZ_AMQP_URL", vhost.amqp_url())
        .env("SPRITZ_METRICS_ADDR", "127.0.0.1:0")
        .env("SPRITZ_NOTIFIER_LEASE_NAMESPACE", LEASE_NS)
        .env("POD_NAME", IDENTITY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting spritz-notifier")?;
    let pid = child.id().context("notifier pid")?;
    fake.wait_until(WAIT, |fake| {
        fake.lease_holder(LEASE_NS, "spritz-notifier").as_deref() == Some(IDENTITY)
    })
    .await?;
    fake.wait_for_watch_connections(1, WAIT).await?;
    println!(
        "spritz-notifier (pid {pid}) leads and watches; RSS idle: {}",
        memory(pid)
    );

    // 1. Latency, one change at a time.
    fake.create_spritz("bench-latency", "latency", Some("Provisioning"));
    wait_for(&mut arrivals, "latency", Phase::Provisioning).await?;
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let phase = if i % 2 == 0 {
            Phase::Ready
        } else {
            Phase::Expiring
        };
        let started = Instant::now();
        fake.set_phase("bench-latency", "latency", phase.as_str());
        let arrived = wait_for(&mut arrivals, "latency", phase).await?;
        latencies.push(arrived - started);
    }
    latencies.sort();
    println!(
        "latency, phase change -> event on the queue ({samples} samples): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );

    // 2. Throughput: creation of `objects` objects, then all of them changing phase.
    let created = burst(fake, &mut arrivals, objects, Phase::Provisioning, |i| {
        fake.create_spritz(&namespace(i), &format!("spritz-{i}"), Some("Provisioning"));
    })
    .await?;
    created.print(objects, "new objects announced", "", "objects created");
    println!("memory with {objects} objects watched: {}", memory(pid));

    let changed = burst(fake, &mut arrivals, objects, Phase::Ready, |i| {
        fake.set_phase(&namespace(i), &format!("spritz-{i}"), "Ready");
    })
    .await?;
    changed.print(
        objects,
        "objects changing phase",
        " with confirms",
        "changes made",
    );
    println!("memory after the burst: {}", memory(pid));

    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("could not signal the notifier");
    }
    let exit = tokio::time::timeout(WAIT, child.wait()).await??;
    println!(
        "notifier exited with {exit} after SIGTERM; lease holder now {:?}",
        fake.lease_holder(LEASE_NS, "spritz-notifier")
    );
    Ok(())
}

/// How long one burst of `objects` changes took, each measured from its start.
struct Burst {
    /// Until the changes were all made in the API.
    made: Duration,
    /// Until the last event arrived on the queue.
    announced: Duration,
    /// Until every annotation was recorded.
    recorded: Duration,
}

impl Burst {
    /// Prints the burst's line: `what` happened, `note` after the rate, `made` how
    /// the changes were made.
    fn print(&self, objects: usize, what: &str, note: &str, made: &str) {
        println!(
            "throughput, {objects} {what}: {:.0} events/s{note} ({:.2} s; {made} in {:.2} s; all annotations recorded after {:.2} s)",
            objects as f64 / self.announced.as_secs_f64(),
            self.announced.as_secs_f64(),
            self.made.as_secs_f64(),
            self.recorded.as_secs_f64(),
        );
    }
}

/// Makes `change(i)` for every object, then waits for all `objects` events in `phase`
/// and for every annotation to be recorded.
async fn burst(
    fake: &FakeKubernetes,
    arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
    objects: usize,
    phase: Phase,
    change: impl Fn(usize),
) -> anyhow::Result<Burst> {
    let patches_before = fake.request_counts().patches;
    let started = Instant::now();
    for i in 0..objects {
        change(i);
    }
    let made = started.elapsed();
    let last = receive(arrivals, objects, phase).await?;
    let announced = last - started;
    fake.wait_until(WAIT, |fake| {
        fake.request_counts().patches >= patches_before + objects
    })
    .await?;
    Ok(Burst {
        made,
        announced,
        recorded: started.elapsed(),
    })
}

/// Ten namespaces, so the objects are spread as in a real cluster.
fn namespace(i: usize) -> String {
    format!("bench-{}", i % 10)
}

/// A consumer on a queue bound to every lifecycle event; arrivals go to a channel.
async fn consume(vhost: &TestVhost) -> anyhow::Result<mpsc::UnboundedReceiver<Arrival>> {
    let connection =
        Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    topology::declare(&connection, &TopologyOptions::default()).await?;
    channel
        .queue_declare(
            ShortString::from(QUEUE),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            ShortString::from(QUEUE),
            ShortString::from(LIFECYCLE_EXCHANGE),
            ShortString::from(LIFECYCLE_ALL),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel.basic_qos(5_000, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            ShortString::from(QUEUE),
            ShortString::from("bench"),
            // A measuring probe: acknowledged on delivery.
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _connection = connection;
        let _channel = channel;
        while let Some(Ok(delivery)) = consumer.next().await {
            let at = Instant::now();
            if let Ok(event) = spritz_proto::decode::<LifecycleEvent>(&delivery.data) {
                let arrival = Arrival {
                    instance_id: event.instance_id,
                    phase: event.phase,
                    at,
                };
                if tx.send(arrival).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

async fn wait_for(
    arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
    name: &str,
    phase: Phase,
) -> anyhow::Result<Instant> {
    loop {
        let arrival = tokio::time::timeout(WAIT, arrivals.recv())
            .await?
            .context("consumer gone")?;
        if arrival.instance_id == name && arrival.phase == phase {
            return Ok(arrival.at);
        }
    }
}

/// Waits for `count` events of `phase`; returns when the last arrived.
async fn receive(
    arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
    count: usize,
    phase: Phase,
) -> anyhow::Result<Instant> {
    let mut seen = 0;
    let mut last = Instant::now();
    while seen < count {
        let arrival = tokio::time::timeout(WAIT, arrivals.recv())
            .await
            .with_context(|| format!("only {seen} of {count} {phase} events"))?
            .context("consumer gone")?;
        if arrival.phase == phase {
            seen += 1;
            last = arrival.at;
        }
    }
    Ok(last)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `VmRSS` (now) and `VmHWM` (peak) of a process.
fn memory(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or_else(|| "?".to_owned(), |kb| format!("{:.1} MB", kb / 1024.0))
    };
    format!("RSS {} (peak {})", field("VmRSS:"), field("VmHWM:"))
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
