//! The ledger behind Redis Sentinel while the primary fails over under load
//! (`scripts/redis-sentinel`: a primary, a replica, three sentinels on ports of their
//! own). Two workers find the primary through the sentinels; a steady stream of
//! messages, each in its own thread, flows while the primary is first failed over
//! gracefully (`SENTINEL FAILOVER`) and then killed (SIGKILL). Counted from the fake
//! Slack's posts and the fake agent's prompts: double answers, prompts sent twice,
//! messages that got the internal-error reply instead, messages never answered.
//!
//! Ignored in the normal run (it needs the sentinels and moves the primary);
//! `scripts/test-serial` starts them, runs it with `SPRITZ_TEST_SENTINEL_URL` set and
//! always stops them afterwards.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use spritz_sandbox::isolation;
use spritz_sandbox::spritz_api::AgentBehaviour;
use spritz_worker::config::{RedisSentinel, Timing};

use crate::support::{INTERNAL, World};

/// Messages per second, for [`LOAD`]; the failovers happen at [`FAILOVER_AT`] and
/// [`KILL_AT`] into it.
const RATE: u64 = 40;
const LOAD: Duration = Duration::from_secs(40);
const FAILOVER_AT: Duration = Duration::from_secs(8);
const KILL_AT: Duration = Duration::from_secs(24);
/// Each prompt is in flight this long (the agent's first chunk comes at once, the
/// rest after it), so every failover meets deliveries mid-prompt.
const AGENT_TIME: Duration = Duration::from_millis(400);

fn sentinel(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/redis-sentinel");
    let output = Command::new(script)
        .args(args)
        .output()
        .expect("run scripts/redis-sentinel");
    assert!(
        output.status.success(),
        "scripts/redis-sentinel {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/redis-sentinel; run by scripts/test-serial"]
async fn sentinel_failovers_under_load_answer_every_message_exactly_once() {
    let url = std::env::var("SPRITZ_TEST_SENTINEL_URL")
        .expect("SPRITZ_TEST_SENTINEL_URL: the sentinels (scripts/test-serial sets it)");
    let master = sentinel(&["master"]);
    let mut world = World::new().await;
    world.spritz.set_agent(AgentBehaviour::Slow(AGENT_TIME));
    let mut config = world.config();
    config.redis_url = url;
    config.redis_sentinel = Some(RedisSentinel {
        master,
        password: None,
    });
    config.prefetch = 64;
    // Production timings, with a short claim lease so renewals run through both
    // failovers many times.
    config.timing = Timing {
        status_message_delay: Duration::from_secs(3),
        processing_timeout: Duration::from_secs(60),
        session_retry_interval: Duration::from_secs(1),
        http_timeout: Duration::from_secs(5),
        dedupe_ttl: Duration::from_secs(600),
        claim_lease: Duration::from_secs(5),
        max_attempts: 300,
    };
    let ops = [
        world.spawn_worker_with(config.clone()).await,
        world.spawn_worker_with(config).await,
    ];

    let started = Instant::now();
    // The disturbances, at fixed offsets into the load; each window is from the
    // command's start until the sentinels agree on the new primary.
    let disturbances = tokio::spawn(async move {
        let mut windows = Vec::new();
        for (at, what, args) in [
            (FAILOVER_AT, "SENTINEL FAILOVER", &["failover"][..]),
            (KILL_AT, "kill -9 the primary", &["kill-primary"][..]),
        ] {
            tokio::time::sleep_until((started + at).into()).await;
            let from = started.elapsed();
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                sentinel(&args)
            })
            .await
            .expect("sentinel command");
            windows.push(format!(
                "{what} {:.1}s-{:.1}s",
                from.as_secs_f64(),
                started.elapsed().as_secs_f64()
            ));
        }
        windows
    });
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut threads = Vec::new();
    while started.elapsed() < LOAD {
        tick.tick().await;
        let n = threads.len();
        let thread = format!("1690000000.{n:06}");
        let event = world.thread_message(&thread, &format!("sentinel-{n}"));
        world.publish(&event).await;
        threads.push(thread);
    }
    let windows = disturbances.await.expect("disturbances");
    let sent = threads.len();

    // Every message gets one post: its reply, or the internal-error reply.
    let posts_by_thread = |posts: &[spritz_sandbox::slack::SlackPost]| {
        let mut by: HashMap<String, Vec<String>> = HashMap::new();
        for post in posts {
            if let Some(thread) = &post.thread_ts {
                by.entry(thread.clone())
                    .or_default()
                    .push(post.text.clone());
            }
        }
        by
    };
    let answered = isolation::eventually(Duration::from_secs(120), || {
        let by = posts_by_thread(&world.slack.posts());
        let all = threads.iter().all(|t| by.contains_key(t));
        async move { all.then_some(()) }
    })
    .await;
    world.settled().await;
    let by = posts_by_thread(&world.slack.posts());
    let mut prompts: HashMap<String, usize> = HashMap::new();
    for prompt in world.spritz.prompts() {
        if let Some((_, n)) = prompt.text.rsplit_once("sentinel-") {
            *prompts.entry(n.trim().to_owned()).or_default() += 1;
        }
    }
    let double_answers = by.values().filter(|p| p.len() > 1).count();
    let internal_errors = by
        .values()
        .filter(|p| p.iter().any(|t| t == INTERNAL))
        .count();
    let unanswered = threads.iter().filter(|t| !by.contains_key(*t)).count();
    let double_prompts = prompts.values().filter(|c| **c > 1).count();
    let mut claims_lost = 0.0;
    let mut ledger_retries = 0.0;
    let mut renewal_failures = 0.0;
    for ops in ops {
        claims_lost += world.metric(ops, "spritz_worker_claims_lost_total").await;
        ledger_retries += world
            .metric(ops, "spritz_worker_retries_total{stage=\"ledger\"}")
            .await;
        renewal_failures += world
            .metric(ops, "spritz_worker_lease_renewal_failures_total")
            .await;
    }
    println!(
        "sentinel failover under load: {sent} messages at {RATE}/s over {:.0}s; {}; \
         double answers {double_answers}, prompts sent twice {double_prompts}, \
         internal-error replies {internal_errors}, unanswered {unanswered}; \
         claims lost {claims_lost}, ledger retries {ledger_retries}, renewal ticks failed {renewal_failures}",
        LOAD.as_secs_f64(),
        windows.join(", ")
    );
    assert!(answered.is_ok(), "{unanswered} messages never answered");
    assert_eq!(double_answers, 0, "a message was answered twice");
    assert_eq!(double_prompts, 0, "a prompt was sent twice");
    world.finish().await;
}
