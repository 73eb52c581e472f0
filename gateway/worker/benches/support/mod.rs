//! What the worker benchmarks share: child processes that die with the bench, free
//! ports, process CPU and memory from `/proc`, percentiles, worker metrics, and
//! lifecycle events published like the notifier does.
//!
//! Each bench target is its own crate and uses only part of this.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;
use spritz_proto::properties::Envelope;
use spritz_proto::topology;
use spritz_proto::traceparent::TraceParent;
use spritz_proto::{LifecycleEvent, MessageType, Phase};
use spritz_sandbox::backend::TeamInstall;
use spritz_service::Broker;

/// The signing secret the benches' gateway verifies and their events carry.
pub const SIGNING_SECRET: &str = "bench-signing-secret";

/// Starts `binary serve` with the shared `common` variables, listening on
/// `gateway_port` (Slack) and `ops_port` (metrics). `script` is named in the error
/// when the binary is missing.
pub fn spawn_serve(
    binary: &str,
    common: &[(&str, String)],
    gateway_port: u16,
    ops_port: u16,
    public_url: &str,
    script: &str,
) -> anyhow::Result<Child> {
    Command::new(binary)
        .arg("serve")
        .envs(common.iter().map(|(k, v)| (*k, v.as_str())))
        .env(
            "SPRITZ_SLACK_GATEWAY_ADDR",
            format!("127.0.0.1:{gateway_port}"),
        )
        .env("SPRITZ_SLACK_GATEWAY_PUBLIC_URL", public_url)
        .env("SPRITZ_SLACK_SIGNING_SECRET", SIGNING_SECRET)
        .env("SPRITZ_SLACK_CLIENT_ID", "bench-client")
        .env("SPRITZ_SLACK_CLIENT_SECRET", "bench-client-secret")
        .env("SPRITZ_SLACK_OAUTH_STATE_SECRET", "bench-state-secret")
        .env("SPRITZ_METRICS_ADDR", format!("127.0.0.1:{ops_port}"))
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {binary} serve (build it with {script})"))
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `spritz-gateway` binary: `SPRITZ_GATEWAY_BIN`, else the release build.
pub fn gateway_binary() -> String {
    std::env::var("SPRITZ_GATEWAY_BIN").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        format!("{target}/release/spritz-gateway")
    })
}

/// A free local port (bound, read, released) for the child processes.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Kills the child processes when the bench ends, however it ends.
pub struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("stat format")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime is 14, stime 15.
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Resident set size of a process in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmRSS")?
        .parse()?;
    Ok(kib * 1024)
}

/// One sample of the worker's `/metrics` (first line starting with `sample`), 0 when
/// absent or unreachable.
pub async fn worker_metric(http: &reqwest::Client, ops: u16, sample: &str) -> f64 {
    let Ok(response) = http
        .get(format!("http://127.0.0.1:{ops}/metrics"))
        .send()
        .await
    else {
        return 0.0;
    };
    let body = response.text().await.unwrap_or_default();
    body.lines()
        .find_map(|line| {
            line.strip_prefix(sample)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Publishes a lifecycle event of `install`'s runtime, as the notifier does.
pub async fn publish_lifecycle(
    broker: &Broker,
    install: &TeamInstall,
    phase: Phase,
) -> anyhow::Result<()> {
    let event = LifecycleEvent::new(
        install.namespace.clone(),
        install.instance_id.clone(),
        "uid-wake".into(),
        phase,
        None,
        chrono::Utc::now().timestamp_micros().to_string(),
        chrono::Utc::now(),
    );
    let body = serde_json::to_vec(&event)?;
    let envelope = Envelope::new(
        event.message_id(),
        MessageType::Lifecycle,
        TraceParent::new_root(),
    );
    broker
        .publish(
            topology::LIFECYCLE_EXCHANGE,
            &event.routing_key(),
            &body,
            &envelope,
        )
        .await?;
    Ok(())
}
