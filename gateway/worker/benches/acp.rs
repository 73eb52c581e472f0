//! ACP prompt throughput: the worker's `AcpClient` against the sandbox's Echo agent,
//! both in this process. Each prompt is what a delivery does: a new websocket,
//! `initialize`, `session/load`, `session/prompt`, close.
//!
//! Baseline in the same run: the bootstrap REST call to the same fake through the
//! worker's `SpritzClient`, so the figure reads as "one prompt costs N REST calls" on
//! whatever machine runs it. `BENCH_PROMPTS` (default 5000) prompts,
//! `BENCH_CONCURRENCY` (default 64) at a time.
//!
//! Run with `cargo bench -p spritz-worker --bench acp`.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt as _;
use secrecy::SecretString;
use spritz_sandbox::backend::TeamInstall;
use spritz_sandbox::spritz_api::FakeSpritz;
use spritz_service::Trust;
use spritz_worker::clients::acp::AcpClient;
use spritz_worker::clients::backend::{ChannelSession, ProviderAuth};
use spritz_worker::clients::http::build_client;
use spritz_worker::clients::spritz::{ConversationUpsert, SpritzClient};
use tokio::sync::oneshot;
use url::Url;

const SERVICE: &str = "bench-service-token";
const NAMESPACE: &str = "team-bench";
const SESSION_TOKEN: &str = "bench-session-token";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let total = env_usize("BENCH_PROMPTS", 5_000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let spritz = FakeSpritz::start(SERVICE).await?;
    let team = team();
    spritz.add_runtime(&team);
    let base = Url::parse(&spritz.base_url())?;
    let trust = Trust::default();
    let rest = SpritzClient::new(
        build_client(&trust, Duration::from_secs(10))?,
        base.clone(),
        SecretString::from(SERVICE),
    );
    let conversation = rest
        .upsert_conversation(&session(&team), &upsert(&team))
        .await
        .map_err(|e| anyhow::anyhow!("upsert: {e:?}"))?;
    let bootstrap = rest
        .bootstrap(&conversation.id, NAMESPACE)
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap: {e:?}"))?;
    let acp = AcpClient::new(
        base,
        SecretString::from(SERVICE),
        Duration::from_secs(10),
        &trust,
    );

    let rest_rate = rate(total, concurrency, |_| async {
        rest.bootstrap(&conversation.id, NAMESPACE)
            .await
            .expect("bootstrap");
    })
    .await;
    let prompt_rate = rate(total, concurrency, |i| {
        let (acp, conversation, bootstrap) = (&acp, &conversation, &bootstrap);
        async move {
            let (delivered, _fired) = oneshot::channel();
            let text = format!("m{i}");
            let reply = acp
                .prompt(
                    &conversation.id,
                    NAMESPACE,
                    &bootstrap.session_id,
                    &bootstrap.cwd,
                    &text,
                    tokio::time::Instant::now() + Duration::from_secs(60),
                    delivered,
                )
                .await
                .expect("reply");
            assert_eq!(reply, format!("echo: {text}"));
        }
    })
    .await;
    println!("{total} requests, {concurrency} at a time");
    println!("  baseline: bootstrap (REST)  {rest_rate:>8.0} calls/s");
    println!("  ACP prompt (whole session)  {prompt_rate:>8.0} prompts/s");
    println!(
        "  one prompt costs {:.1} REST calls",
        rest_rate / prompt_rate
    );
    anyhow::ensure!(
        spritz.prompts().len() == total,
        "every prompt reached the agent"
    );
    Ok(())
}

/// Runs `call(i)` for `0..total`, `concurrency` at a time; calls per second.
async fn rate<F, Fut>(total: usize, concurrency: usize, call: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    futures::stream::iter(0..total)
        .for_each_concurrent(concurrency, call)
        .await;
    total as f64 / started.elapsed().as_secs_f64()
}

fn team() -> TeamInstall {
    TeamInstall {
        namespace: NAMESPACE.into(),
        access_token: SESSION_TOKEN.into(),
        ..TeamInstall::demo("TBENCH")
    }
}

fn session(team: &TeamInstall) -> ChannelSession {
    ChannelSession {
        access_token: SecretString::from(team.access_token.clone()),
        expires_at: Utc::now(),
        owner_auth_id: team.owner_auth_id(),
        namespace: team.namespace.clone(),
        instance_id: team.instance_id.clone(),
        provider_auth: ProviderAuth::default(),
    }
}

fn upsert(team: &TeamInstall) -> ConversationUpsert {
    ConversationUpsert {
        namespace: team.namespace.clone(),
        conversation_id: String::new(),
        principal_id: "spritz-slack-gateway".to_owned(),
        instance_id: team.instance_id.clone(),
        owner_id: team.owner_auth_id(),
        provider: "slack".to_owned(),
        external_scope_type: "workspace".to_owned(),
        external_tenant_id: team.team_id.clone(),
        external_channel_id: "CBENCH".to_owned(),
        external_conversation_id: "1.1".to_owned(),
        title: "Slack CBENCH".to_owned(),
        cwd: "/home/dev".to_owned(),
    }
}
