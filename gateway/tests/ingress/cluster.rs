//! The whole system on a three-node RabbitMQ cluster (`scripts/rabbitmq-cluster`) while
//! nodes die: the gateway and two workers, in-process, get the node list in
//! `SPRITZ_AMQP_URL` form; signed events arrive at a steady rate; one node is stopped
//! and started again, then the node holding the work queue's quorum leader is stopped.
//!
//! Ignored in the normal run (it needs the cluster); `scripts/test-serial` starts the
//! cluster, runs it with `SPRITZ_TEST_CLUSTER_AMQP_URLS` set, and always removes the
//! cluster afterwards.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use spritz_gateway::config::DEFAULT_PUBLISH_TIMEOUT;
use spritz_gateway::{Application, ServeConfig};
use spritz_proto::topology::WORK_QUEUE;
use spritz_sandbox::backend::{FakeBackend, TeamInstall};
use spritz_sandbox::isolation;
use spritz_sandbox::slack::FakeSlack;
use spritz_sandbox::slack::events::{self, UserMessage};
use spritz_sandbox::spritz_api::FakeSpritz;
use spritz_service::Trust;
use spritz_service::config::ListenAddr;
use spritz_worker::WorkerConfig;
use spritz_worker::config::{Services, Timing};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    BACKEND_TOKEN, CLIENT_ID, CLIENT_SECRET, PRINCIPAL_ID, PUBLIC_ORIGIN, SIGNING_SECRET,
    STATE_SECRET,
};

const TEAM: &str = "T1";
const SERVICE_TOKEN: &str = "cluster-spritz-service-token";
/// Events per second; the load runs until the disturbances are over and settled plus
/// [`QUIET_TAIL`], and never longer than [`MAX_LOAD`] (so never more than
/// `RATE × MAX_LOAD` events).
const RATE: u64 = 200;
const MAX_LOAD: Duration = Duration::from_secs(75);
/// When the first node stops. It is started again once the gateway is ready on another
/// node; [`PAUSE`] later the node of the work queue's leader stops (and stays down:
/// two of three nodes keep every quorum queue available).
const FIRST_STOP_AT: Duration = Duration::from_secs(5);
const PAUSE: Duration = Duration::from_secs(3);
/// A stop disturbs the answers from the moment the command starts until the clients
/// have moved and the queue leaders are re-elected; this is the allowance after the
/// command returned.
const SETTLE: Duration = Duration::from_secs(8);
/// The last stretch of load, after every disturbance settled, must be all 200s.
const QUIET_TAIL: Duration = Duration::from_secs(5);
/// How long the teardown waits for each process to stop.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);

/// `scripts/rabbitmq-cluster` with `args`; its output (a node number, a name).
fn cluster(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/rabbitmq-cluster");
    let output = Command::new(script)
        .args(args)
        .output()
        .expect("run scripts/rabbitmq-cluster");
    assert!(
        output.status.success(),
        "scripts/rabbitmq-cluster {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

async fn cluster_async(args: &'static [&'static str]) -> String {
    tokio::task::spawn_blocking(move || cluster(args))
        .await
        .expect("cluster command")
}

/// The node list, rotated so that this process tries `first` (0-based) first.
fn rotated(urls: &[String], first: usize) -> String {
    let mut list: Vec<String> = urls.to_vec();
    list.rotate_left(first % urls.len());
    list.join(",")
}

/// A disturbance of the cluster: from the start of a node command to its end.
#[derive(Clone, Debug)]
struct Window {
    what: String,
    from: Duration,
    to: Duration,
}

/// What the gateway answered to one event.
#[derive(Clone, Copy, Debug)]
struct Answer {
    n: u64,
    sent_at: Duration,
    status: Option<u16>,
    latency: Duration,
}

struct Workers {
    stops: Vec<CancellationToken>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn worker_config(
    amqp_url: String,
    redis_prefix: &str,
    slack: &FakeSlack,
    backend: &FakeBackend,
    spritz: &FakeSpritz,
) -> WorkerConfig {
    WorkerConfig {
        amqp_url: amqp_url.into(),
        redis_url: isolation::redis_url(),
        redis_sentinel: None,
        redis_key_prefix: redis_prefix.to_owned(),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        prefetch: 64,
        shutdown_grace: Duration::from_secs(5),
        services: Services {
            backend_base_url: backend.base_url().parse().expect("url"),
            backend_token: SecretString::from(BACKEND_TOKEN),
            spritz_base_url: spritz.base_url().parse().expect("url"),
            spritz_service_token: SecretString::from(SERVICE_TOKEN),
            principal_id: PRINCIPAL_ID.to_owned(),
            slack_api_base_url: slack.base_url().parse().expect("url"),
        },
        // The production defaults, but a 5 s claim lease (renewed every 1.7 s): a
        // renewal that stalls while a node goes away loses claims and shows as missing
        // replies here (it once did, see docs/design-notes.md, "Redis ledger").
        timing: Timing {
            status_message_delay: Duration::from_secs(3),
            processing_timeout: Duration::from_secs(60),
            session_retry_interval: Duration::from_secs(1),
            http_timeout: Duration::from_secs(5),
            dedupe_ttl: Duration::from_secs(600),
            claim_lease: Duration::from_secs(5),
            max_attempts: 300,
        },
        lifecycle_notify: None,
        trust: Trust::default(),
    }
}

fn gateway_config(amqp_url: String, slack: &FakeSlack, backend: &FakeBackend) -> ServeConfig {
    ServeConfig {
        listen_addr: ListenAddr(SocketAddr::from(([127, 0, 0, 1], 0))),
        public_url: url::Url::parse(PUBLIC_ORIGIN).expect("url"),
        signing_secret: SecretString::from(SIGNING_SECRET),
        client_id: CLIENT_ID.to_owned(),
        client_secret: SecretString::from(CLIENT_SECRET),
        oauth_state_secret: SecretString::from(STATE_SECRET),
        slack_api_base_url: url::Url::parse(&slack.base_url()).expect("url"),
        bot_scopes: vec!["app_mentions:read".to_owned(), "chat:write".to_owned()],
        preset_id: "zeno".to_owned(),
        backend_base_url: url::Url::parse(&backend.base_url()).expect("url"),
        backend_internal_token: SecretString::from(BACKEND_TOKEN),
        principal_id: PRINCIPAL_ID.to_owned(),
        http_timeout: Duration::from_secs(5),
        amqp_url: amqp_url.into(),
        metrics_addr: ListenAddr(SocketAddr::from(([127, 0, 0, 1], 0))),
        publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
        publisher_channels: 4,
        trust: Trust::default(),
    }
}

/// The event number in a text that ends with `cluster-<n>` (a prompt or a reply).
fn event_number(text: &str) -> Option<u64> {
    let (_, rest) = text.rsplit_once("cluster-")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

async fn wait_ready(http: &reqwest::Client, ops: SocketAddr, what: &str) {
    isolation::eventually(Duration::from_secs(60), || async {
        let response = http.get(format!("http://{ops}/readyz")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("{what} is ready on the cluster"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/rabbitmq-cluster; run by scripts/test-serial"]
async fn cluster_node_loss_costs_a_few_503s_and_every_accepted_event_gets_exactly_one_reply() {
    spritz_service::telemetry::init_test_subscriber();
    let urls: Vec<String> = std::env::var("SPRITZ_TEST_CLUSTER_AMQP_URLS")
        .expect(
            "SPRITZ_TEST_CLUSTER_AMQP_URLS: the cluster's node list (scripts/test-serial sets it)",
        )
        .split(',')
        .map(str::to_owned)
        .collect();
    assert_eq!(urls.len(), 3, "three nodes");
    let started = Instant::now();

    let slack = FakeSlack::start().await.expect("fake slack");
    let backend = FakeBackend::start(BACKEND_TOKEN)
        .await
        .expect("fake backend");
    let spritz = FakeSpritz::start(SERVICE_TOKEN).await.expect("fake spritz");
    let install = TeamInstall::demo(TEAM);
    backend.install_team(install.clone());
    spritz.add_runtime(&install);
    slack.add_workspace(&install.team_id, &install.bot_access_token, &["C0CLUSTER"]);
    let redis_prefix = isolation::redis_prefix();
    let http = spritz_sandbox::tls::http_client_builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");

    // Gateway and the first worker try node 1 first, the second worker node 2: the
    // first stop moves two processes, the leader stop whichever sit there then.
    let gateway = Application::build(gateway_config(rotated(&urls, 0), &slack, &backend))
        .await
        .expect("gateway builds");
    let (gateway_addr, gateway_ops) = (gateway.addr(), gateway.ops_addr());
    let gateway_stop = CancellationToken::new();
    let gateway_task = tokio::spawn(gateway.run_until_stopped(gateway_stop.clone()));
    let mut workers = Workers {
        stops: Vec::new(),
        tasks: Vec::new(),
    };
    let mut worker_ops = Vec::new();
    for first in [0, 1] {
        let config = worker_config(
            rotated(&urls, first),
            &redis_prefix,
            &slack,
            &backend,
            &spritz,
        );
        let app = spritz_worker::Application::build(config)
            .await
            .expect("worker builds");
        worker_ops.push(app.ops_addr());
        let stop = CancellationToken::new();
        let token = stop.clone();
        workers.tasks.push(tokio::spawn(async move {
            let _ = app.run_until_stopped(token).await;
        }));
        workers.stops.push(stop);
    }
    wait_ready(&http, gateway_ops, "the gateway").await;
    for ops in &worker_ops {
        wait_ready(&http, *ops, "a worker").await;
    }

    // The load: RATE events/s until `load_until` (set once the disturbances are over),
    // each answered or failed within the client's timeout; never more than 400 in
    // flight.
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::new(Mutex::new(Vec::new()));
    let load_started = Instant::now();
    let load_until = Arc::new(AtomicU64::new(MAX_LOAD.as_millis() as u64));
    let limit = RATE * MAX_LOAD.as_secs();
    let base_secs = chrono::Utc::now().timestamp();
    let events_url = events::events_url(&format!("http://{gateway_addr}"));
    let load = {
        let (answers, http) = (answers.clone(), http.clone());
        let (install, load_until) = (install.clone(), load_until.clone());
        tokio::spawn(async move {
            let in_flight = Arc::new(Semaphore::new(400));
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut requests = Vec::new();
            for n in 0..limit {
                tick.tick().await;
                let until = Duration::from_millis(load_until.load(Ordering::Relaxed));
                if load_started.elapsed() >= until.min(MAX_LOAD) {
                    break;
                }
                let permit = in_flight.clone().acquire_owned().await.expect("semaphore");
                let message = UserMessage {
                    team_id: install.team_id.clone(),
                    api_app_id: install.api_app_id.clone(),
                    bot_user_id: install.bot_user_id.clone(),
                    user_id: "U0CLUSTER".to_owned(),
                    channel: "C0CLUSTER".to_owned(),
                    text: format!("cluster-{n}"),
                    ts: format!("{base_secs}.{n:06}"),
                    thread_ts: None,
                    direct_message: false,
                };
                let body = message.event_callback().to_string().into_bytes();
                let (answers, http, url) = (answers.clone(), http.clone(), events_url.clone());
                requests.push(tokio::spawn(async move {
                    let sent_at = load_started.elapsed();
                    let sent = Instant::now();
                    let status = events::send_signed(&http, &url, SIGNING_SECRET, &body)
                        .await
                        .ok()
                        .map(|(status, _)| status);
                    answers.lock().expect("answers").push(Answer {
                        n,
                        sent_at,
                        status,
                        latency: sent.elapsed(),
                    });
                    drop(permit);
                }));
            }
            let sent = requests.len() as u64;
            for request in requests {
                let _ = request.await;
            }
            sent
        })
    };

    // The disturbances, at fixed offsets into the load.
    let mut windows = Vec::new();
    let until = |offset: Duration| tokio::time::sleep_until((load_started + offset).into());
    until(FIRST_STOP_AT).await;
    let from = load_started.elapsed();
    cluster_async(&["stop-node", "1"]).await;
    windows.push(Window {
        what: "stop node 1".into(),
        from,
        to: load_started.elapsed(),
    });
    wait_ready(&http, gateway_ops, "the gateway, moved off node 1,").await;
    let from = load_started.elapsed();
    cluster_async(&["start-node", "1"]).await;
    windows.push(Window {
        what: "start node 1".into(),
        from,
        to: load_started.elapsed(),
    });
    tokio::time::sleep(PAUSE).await;
    let leader = cluster_async(&["leader", WORK_QUEUE]).await;
    let leader_node: &'static str = match leader.as_str() {
        "1" => "1",
        "2" => "2",
        "3" => "3",
        other => panic!("unexpected leader node {other:?}"),
    };
    let from = load_started.elapsed();
    tokio::task::spawn_blocking(move || cluster(&["stop-node", leader_node]))
        .await
        .expect("stop the leader");
    windows.push(Window {
        what: format!("stop node {leader_node} (work queue leader)"),
        from,
        to: load_started.elapsed(),
    });

    let quiet_from = load_started.elapsed() + SETTLE;
    load_until.store(
        (quiet_from + QUIET_TAIL).as_millis() as u64,
        Ordering::Relaxed,
    );
    let total = load.await.expect("load loop");
    let load_time = load_started.elapsed();
    let answers = answers.lock().expect("answers").clone();

    let accepted: Vec<u64> = answers
        .iter()
        .filter(|a| a.status == Some(200))
        .map(|a| a.n)
        .collect();
    // Every accepted event is replied to; wait for the last ones.
    let replies_per_event = |posts: &[spritz_sandbox::slack::SlackPost]| {
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for post in posts.iter().filter(|p| p.text.starts_with("echo: ")) {
            if let Some(n) = event_number(&post.text) {
                *counts.entry(n).or_default() += 1;
            }
        }
        counts
    };
    let replied = isolation::eventually(Duration::from_secs(90), || {
        let posts = slack.posts();
        let accepted = &accepted;
        async move {
            let counts = replies_per_event(&posts);
            accepted
                .iter()
                .all(|n| counts.contains_key(n))
                .then_some(counts)
        }
    })
    .await;
    let posts = slack.posts();
    let counts = replies_per_event(&posts);
    let prompts = spritz.prompts();
    let mut prompts_per_event: HashMap<u64, usize> = HashMap::new();
    for prompt in &prompts {
        if let Some(n) = event_number(&prompt.text) {
            *prompts_per_event.entry(n).or_default() += 1;
        }
    }

    let ok = accepted.len();
    let unavailable: Vec<&Answer> = answers.iter().filter(|a| a.status == Some(503)).collect();
    let other: Vec<&Answer> = answers
        .iter()
        .filter(|a| !matches!(a.status, Some(200 | 503)))
        .collect();
    let duplicate_replies = counts.values().filter(|c| **c > 1).count();
    let duplicate_prompts = prompts_per_event.values().filter(|c| **c > 1).count();
    let replied_after_503 = unavailable
        .iter()
        .filter(|a| counts.contains_key(&a.n))
        .count();
    let mut other_posts: HashMap<&str, usize> = HashMap::new();
    for post in posts.iter().filter(|p| !p.text.starts_with("echo: ")) {
        *other_posts.entry(post.text.as_str()).or_default() += 1;
    }
    let max_latency = answers.iter().map(|a| a.latency).max().unwrap_or_default();
    let windows_text: Vec<String> = windows
        .iter()
        .map(|w| {
            format!(
                "{} {:.1}s-{:.1}s",
                w.what,
                w.from.as_secs_f64(),
                w.to.as_secs_f64()
            )
        })
        .collect();
    let first_503 = unavailable.iter().map(|a| a.sent_at).min();
    let last_503 = unavailable.iter().map(|a| a.sent_at).max();
    // The claim renewals through both stops: a tick later than 2/3 of the lease
    // (3.3 s of 5 s) loses claims.
    let (mut claims_lost, mut renewal_failures, mut ticks, mut lateness_sum, mut late_ticks) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    for ops in &worker_ops {
        let text = metrics_text(&http, *ops).await;
        claims_lost += sample(&text, "spritz_worker_claims_lost_total");
        renewal_failures += sample(&text, "spritz_worker_lease_renewal_failures_total");
        ticks += sample(&text, "spritz_worker_lease_renewal_lateness_seconds_count");
        lateness_sum += sample(&text, "spritz_worker_lease_renewal_lateness_seconds_sum");
        late_ticks += sample(&text, "spritz_worker_lease_renewal_lateness_seconds_count")
            - sample(
                &text,
                "spritz_worker_lease_renewal_lateness_seconds_bucket{le=\"0.1\"}",
            );
    }
    eprintln!(
        "cluster test renewals: {ticks} ticks, mean lateness {:.2} ms, {late_ticks} later than 100 ms, \
         {renewal_failures} failed, claims lost {claims_lost}",
        if ticks > 0.0 {
            lateness_sum / ticks * 1000.0
        } else {
            0.0
        }
    );
    eprintln!(
        "cluster test: sent {} in {:.1}s, 200 {ok}, 503 {} (first {:?}, last {:?}), other {}, \
         replies {} ({} for 503s), duplicate replies {duplicate_replies}, prompts {}, \
         duplicate prompts {duplicate_prompts}, other posts {other_posts:?}, max answer \
         latency {:?}, windows [{}], wall {:.1}s",
        answers.len(),
        load_time.as_secs_f64(),
        unavailable.len(),
        first_503,
        last_503,
        other.len(),
        counts.len(),
        replied_after_503,
        prompts.len(),
        max_latency,
        windows_text.join("; "),
        started.elapsed().as_secs_f64(),
    );

    assert!(
        replied.is_ok(),
        "every event answered 200 gets a reply: {} of {ok} replied",
        accepted.iter().filter(|n| counts.contains_key(n)).count()
    );
    assert_eq!(
        answers.len() as u64,
        total,
        "every event sent was answered or failed"
    );
    assert!(
        other.is_empty(),
        "every event is answered 200 or 503: {:?}",
        &other[..other.len().min(5)]
    );
    assert_eq!(duplicate_replies, 0, "no event is replied to twice");
    assert_eq!(claims_lost, 0.0, "no claim is lost while nodes stop");
    assert_eq!(duplicate_prompts, 0, "no prompt is sent twice");
    assert!(
        unavailable.len() as u64 <= total / 20,
        "503s are few: {} of {total}",
        unavailable.len()
    );
    for answer in &unavailable {
        let answered_at = answer.sent_at + answer.latency;
        assert!(
            windows
                .iter()
                .any(|w| answer.sent_at + Duration::from_secs(1) >= w.from
                    && answered_at <= w.to + SETTLE),
            "a 503 only while a node stop is being absorbed: event {} sent at {:?}, windows {windows_text:?}",
            answer.n,
            answer.sent_at,
        );
    }
    assert!(
        quiet_from + QUIET_TAIL <= MAX_LOAD,
        "the disturbances are over within the load's time bound: {windows_text:?}"
    );
    assert!(
        answers
            .iter()
            .filter(|a| a.sent_at >= quiet_from)
            .all(|a| a.status == Some(200)),
        "after recovery every event is answered 200"
    );

    // Shutdown is bounded here: a worker that does not stop after a node loss is
    // reported, not waited on forever (seen once; see the closing note of issue 11).
    gateway_stop.cancel();
    if tokio::time::timeout(SHUTDOWN_BOUND, gateway_task)
        .await
        .is_err()
    {
        eprintln!("cluster test: the gateway did not stop within {SHUTDOWN_BOUND:?}");
    }
    for stop in &workers.stops {
        stop.cancel();
    }
    for (n, task) in workers.tasks.into_iter().enumerate() {
        if tokio::time::timeout(SHUTDOWN_BOUND, task).await.is_err() {
            eprintln!("cluster test: worker {n} did not stop within {SHUTDOWN_BOUND:?}");
        }
    }
}

async fn metrics_text(http: &reqwest::Client, ops: SocketAddr) -> String {
    match http.get(format!("http://{ops}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of the first sample line that starts with `name` (then a space).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
