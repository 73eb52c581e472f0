//! `spritz-sandbox`: the fakes of Slack, the Spritz backend, the Spritz API (with its
//! ACP agent) and the Kubernetes API as one process for the dev stack, plus the two
//! commands that drive a running stack: `send-message` (a signed Slack event to the
//! gateway, then the reply from the fake Slack) and `runtime` (expire or restore the
//! demo team's runtime).
//!
//! Everything here is wiring; the fakes and their control clients live in the library.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use spritz_sandbox::backend::{self, ExchangeMode, FakeBackend, TeamInstall};
use spritz_sandbox::kubernetes::FakeKubernetes;
use spritz_sandbox::slack::{self, FakeSlack, OAuthGrant, events};
use spritz_sandbox::spritz_api::{self, FakeSpritz, InstanceRef};

/// The demo workspace's channel and DM, where `send-message` writes by default.
const DEMO_CHANNEL: &str = "C0DEMO";
const DEMO_DM: &str = "D0DEMO";

/// The status text the worker posts while a runtime wakes up (SPEC §5).
const STATUS_PREFIX: &str = "Still waking up";

#[derive(Parser)]
#[command(
    name = "spritz-sandbox",
    about = "Fake Slack, backend, Spritz API and Kubernetes API for the Spritz gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run all fakes until SIGTERM / Ctrl-C, with a demo team installed.
    Serve(Box<ServeArgs>),
    /// Sign a Slack event like Slack does, post it to the gateway, print the reply.
    SendMessage(SendArgs),
    /// Expire or restore the demo team's runtime on a running sandbox.
    Runtime(RuntimeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(
        long,
        env = "SPRITZ_SANDBOX_SLACK_ADDR",
        default_value = "127.0.0.1:9101"
    )]
    slack_addr: SocketAddr,
    #[arg(
        long,
        env = "SPRITZ_SANDBOX_BACKEND_ADDR",
        default_value = "127.0.0.1:9102"
    )]
    backend_addr: SocketAddr,
    #[arg(
        long,
        env = "SPRITZ_SANDBOX_SPRITZ_ADDR",
        default_value = "127.0.0.1:9103"
    )]
    spritz_addr: SocketAddr,
    /// The fake Kubernetes API (for the notifier); not started when absent.
    #[arg(long, env = "SPRITZ_SANDBOX_KUBE_ADDR")]
    kube_addr: Option<SocketAddr>,
    /// Bearer the fake backend requires.
    #[arg(
        long,
        env = "SPRITZ_SLACK_BACKEND_INTERNAL_TOKEN",
        default_value = "dev-backend-internal-token",
        hide_env_values = true
    )]
    internal_token: String,
    /// Bearer the fake Spritz API requires for bootstrap and ACP.
    #[arg(
        long,
        env = "SPRITZ_SLACK_SPRITZ_SERVICE_TOKEN",
        default_value = "dev-spritz-service-token",
        hide_env_values = true
    )]
    service_token: String,
    /// Bearer the fake Kubernetes API requires.
    #[arg(
        long,
        env = "SPRITZ_SANDBOX_KUBE_TOKEN",
        default_value = spritz_sandbox::kubernetes::DEFAULT_TOKEN,
        hide_env_values = true
    )]
    kube_token: String,
    /// The Slack app whose credentials `oauth.v2.access` accepts.
    #[arg(long, env = "SPRITZ_SLACK_CLIENT_ID", default_value = "dev-client-id")]
    client_id: String,
    #[arg(
        long,
        env = "SPRITZ_SLACK_CLIENT_SECRET",
        default_value = "dev-client-secret",
        hide_env_values = true
    )]
    client_secret: String,
    /// Bearer the lifecycle webhook receiver requires (any request when unset).
    #[arg(long, env = "SPRITZ_SANDBOX_LIFECYCLE_TOKEN", hide_env_values = true)]
    lifecycle_token: Option<String>,
    #[command(flatten)]
    team: DemoTeam,
}

/// The demo workspace installed at start.
#[derive(clap::Args)]
struct DemoTeam {
    #[arg(
        long = "team-id",
        env = "SPRITZ_SANDBOX_TEAM_ID",
        default_value = "T0DEMO"
    )]
    team_id: String,
    #[arg(long, env = "SPRITZ_SANDBOX_TEAM_NAME", default_value = "Spritz Demo")]
    team_name: String,
    #[arg(long, env = "SPRITZ_SANDBOX_API_APP_ID", default_value = "A0DEMO")]
    api_app_id: String,
    #[arg(long, env = "SPRITZ_SANDBOX_BOT_USER_ID", default_value = "U0DEMOBOT")]
    bot_user_id: String,
    #[arg(
        long,
        env = "SPRITZ_SANDBOX_BOT_TOKEN",
        default_value = "xoxb-demo-sandbox",
        hide_env_values = true
    )]
    bot_token: String,
    #[arg(long, env = "SPRITZ_SANDBOX_NAMESPACE", default_value = "spritz-demo")]
    namespace: String,
    #[arg(
        long,
        env = "SPRITZ_SANDBOX_INSTANCE_ID",
        default_value = "concierge-demo"
    )]
    instance_id: String,
    #[arg(
        long,
        env = "SPRITZ_SANDBOX_SESSION_TOKEN",
        default_value = "demo-session-token",
        hide_env_values = true
    )]
    session_token: String,
    #[arg(long, env = "SPRITZ_SANDBOX_SESSION_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    session_ttl: Duration,
}

impl DemoTeam {
    fn install(&self) -> TeamInstall {
        TeamInstall {
            team_id: self.team_id.clone(),
            api_app_id: self.api_app_id.clone(),
            bot_user_id: self.bot_user_id.clone(),
            bot_access_token: self.bot_token.clone(),
            namespace: self.namespace.clone(),
            instance_id: self.instance_id.clone(),
            access_token: self.session_token.clone(),
            expires_in: self.session_ttl,
        }
    }

    /// What the install page grants, so the OAuth flow works end to end.
    fn grant(&self) -> OAuthGrant {
        OAuthGrant {
            team_id: self.team_id.clone(),
            team_name: self.team_name.clone(),
            enterprise_id: None,
            app_id: self.api_app_id.clone(),
            bot_user_id: self.bot_user_id.clone(),
            bot_access_token: self.bot_token.clone(),
            installing_user_id: "U0DEMOADMIN".to_owned(),
            scope: "app_mentions:read,channels:history,chat:write,im:history,mpim:history"
                .to_owned(),
        }
    }
}

#[derive(clap::Args)]
struct SendArgs {
    /// The gateway (its `/slack/events` route is appended unless already there).
    #[arg(
        long,
        env = "SPRITZ_SANDBOX_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    gateway_url: String,
    #[arg(long, env = "SPRITZ_SLACK_SIGNING_SECRET", hide_env_values = true)]
    signing_secret: String,
    /// The fake Slack, where the reply is read (its origin or `/api` base).
    #[arg(
        long,
        env = "SPRITZ_SANDBOX_SLACK_URL",
        default_value = "http://127.0.0.1:9101"
    )]
    slack_url: String,
    #[arg(long, env = "SPRITZ_SANDBOX_TEAM_ID", default_value = "T0DEMO")]
    team: String,
    #[arg(long, env = "SPRITZ_SANDBOX_API_APP_ID", default_value = "A0DEMO")]
    api_app_id: String,
    #[arg(long, env = "SPRITZ_SANDBOX_BOT_USER_ID", default_value = "U0DEMOBOT")]
    bot_user_id: String,
    #[arg(long, default_value = "U0DEMOUSER")]
    user: String,
    /// Defaults to `C0DEMO`, or `D0DEMO` with `--dm`; created in the fake Slack
    /// workspace when it does not exist yet.
    #[arg(long)]
    channel: Option<String>,
    #[arg(long)]
    text: String,
    /// Reply in this thread.
    #[arg(long)]
    thread_ts: Option<String>,
    /// Send a direct message (`message` in an IM) instead of an `app_mention`.
    #[arg(long)]
    dm: bool,
    /// How long to wait for the reply.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Only send; do not wait for the reply.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum RuntimeAction {
    /// Phase Expiring then Expired, exchange `unavailable`, runtime gone.
    Expire,
    /// Runtime back (fresh sessions), exchange `resolved`, phase Ready.
    Ready,
}

#[derive(Clone, Copy, ValueEnum)]
enum RuntimeMode {
    /// Exchange answers 503 `unavailable` (runtime being recreated).
    Unavailable,
    /// Exchange answers `resolved` and the runtime is up.
    Resolved,
    /// The runtime is gone but the backend still resolves it (a stale session).
    Vanished,
}

#[derive(clap::Args)]
struct RuntimeArgs {
    /// A whole lifecycle step (also moves the Spritz phase on the fake Kubernetes API).
    #[arg(value_enum, required_unless_present = "mode", conflicts_with = "mode")]
    action: Option<RuntimeAction>,
    /// Only change what the backend and the Spritz API answer.
    #[arg(long, value_enum)]
    mode: Option<RuntimeMode>,
    #[arg(long, env = "SPRITZ_SANDBOX_TEAM_ID", default_value = "T0DEMO")]
    team: String,
    #[arg(
        long,
        env = "SPRITZ_SLACK_BACKEND_BASE_URL",
        default_value = "http://127.0.0.1:9102/backend"
    )]
    backend_url: String,
    #[arg(
        long,
        env = "SPRITZ_SLACK_SPRITZ_BASE_URL",
        default_value = "http://127.0.0.1:9103/spritz"
    )]
    spritz_url: String,
    #[arg(
        long,
        env = "SPRITZ_SANDBOX_KUBE_URL",
        default_value = "http://127.0.0.1:9104"
    )]
    kube_url: String,
    #[arg(
        long,
        env = "SPRITZ_SANDBOX_KUBE_TOKEN",
        default_value = spritz_sandbox::kubernetes::DEFAULT_TOKEN,
        hide_env_values = true
    )]
    kube_token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(*args).await,
        Command::SendMessage(args) => send_message(args).await,
        Command::Runtime(args) => runtime(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let slack = FakeSlack::start_on(args.slack_addr).await?;
    let backend = FakeBackend::start_on(args.backend_addr, &args.internal_token).await?;
    let spritz = FakeSpritz::start_on(args.spritz_addr, &args.service_token).await?;
    let kube = match args.kube_addr {
        Some(addr) => Some(FakeKubernetes::start_on(addr, &args.kube_token).await?),
        None => None,
    };

    let install = args.team.install();
    backend.install_team(install.clone());
    spritz.add_runtime(&install);
    slack.expect_oauth_client(&args.client_id, &args.client_secret);
    slack.add_workspace(
        &install.team_id,
        &install.bot_access_token,
        // The demo channels, and those scripts/check-dashboards writes in as the demo
        // team (its other teams it registers itself).
        &[DEMO_CHANNEL, DEMO_DM, "C0CHECK", "C0RECOVER", "C0REPLY"],
    );
    if let Some(token) = &args.lifecycle_token {
        backend.set_lifecycle_token(token);
    }
    slack.approve_installs(Some(args.team.grant()));
    if let Some(kube) = &kube
        && let Err(error) =
            kube.try_create_spritz(&args.team.namespace, &args.team.instance_id, Some("Ready"))
    {
        tracing::warn!(%error, "could not create the demo Spritz");
    }

    let slack_api = advertised(slack.base_url());
    let backend_api = advertised(backend.base_url());
    let spritz_api = advertised(spritz.base_url());
    println!(
        "fake Slack       {slack_api}  (control: {}/_sandbox)",
        advertised(slack.origin())
    );
    println!(
        "fake backend     {backend_api}  (control: {}/_sandbox)",
        advertised(backend.origin())
    );
    println!(
        "fake Spritz API  {spritz_api}  (control: {}/_sandbox)",
        advertised(spritz.origin())
    );
    match &kube {
        Some(kube) => println!(
            "fake Kubernetes  {}  (Spritz {}/{} Ready)",
            advertised(kube.base_url()),
            args.team.namespace,
            args.team.instance_id
        ),
        None => println!("fake Kubernetes  not started (--kube-addr)"),
    }
    println!(
        "demo team        {} (app {}, bot {})",
        args.team.team_id, args.team.api_app_id, args.team.bot_user_id
    );
    println!();
    println!("# environment for the gateway and workers (dev-only values)");
    println!("SPRITZ_SLACK_API_BASE_URL={slack_api}");
    println!("SPRITZ_SLACK_BACKEND_BASE_URL={backend_api}");
    println!(
        "SPRITZ_SLACK_BACKEND_INTERNAL_TOKEN={}",
        args.internal_token
    );
    println!("SPRITZ_SLACK_SPRITZ_BASE_URL={spritz_api}");
    println!("SPRITZ_SLACK_SPRITZ_SERVICE_TOKEN={}", args.service_token);
    println!(
        "SPRITZ_LIFECYCLE_NOTIFY_URL={}",
        advertised(backend.lifecycle_url())
    );
    if let Some(token) = &args.lifecycle_token {
        println!("SPRITZ_LIFECYCLE_NOTIFY_AUTH_TOKEN={token}");
    }
    if let Some(kube) = &kube {
        println!(
            "# notifier: a kubeconfig whose server is {}",
            advertised(kube.base_url())
        );
    }

    shutdown_signal().await;
    tracing::info!("sandbox stopping");
    Ok(())
}

/// A URL a client on this host can use: a wildcard listen address becomes loopback.
fn advertised(url: String) -> String {
    url.replacen("//0.0.0.0:", "//127.0.0.1:", 1)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn send_message(args: SendArgs) -> anyhow::Result<()> {
    let channel = args
        .channel
        .clone()
        .unwrap_or_else(|| if args.dm { DEMO_DM } else { DEMO_CHANNEL }.to_owned());
    let message = events::UserMessage {
        team_id: args.team.clone(),
        api_app_id: args.api_app_id.clone(),
        bot_user_id: args.bot_user_id.clone(),
        user_id: args.user.clone(),
        channel: channel.clone(),
        text: args.text.clone(),
        ts: events::now_ts(),
        thread_ts: args.thread_ts.clone(),
        direct_message: args.dm,
    };
    let control = slack::ControlClient::new(&args.slack_url);
    // Slack only accepts posts to conversations that exist: the one the user "writes
    // in" is created, as a user creating a channel and inviting the bot would.
    control.add_channel(&args.team, &channel).await?;
    let seen = if args.no_wait {
        0
    } else {
        control.posts().await?.len()
    };

    let body = serde_json::to_vec(&message.event_callback())?;
    let url = events::events_url(&args.gateway_url);
    let http = spritz_sandbox::tls::http_client_builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let (status, answer) = events::send_signed(&http, &url, &args.signing_secret, &body).await?;
    println!(
        "gateway answered {status} {answer}  (event ts {})",
        message.ts
    );
    if !(200..300).contains(&status) {
        anyhow::bail!("the gateway refused the event");
    }
    if args.no_wait {
        return Ok(());
    }

    // The reply goes to the thread when one was given, else to the channel itself.
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut next = seen + 1;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let posts = control
            .wait_for_posts(next, left)
            .await
            .context("no reply from the worker in time")?;
        for post in &posts[next - 1..] {
            if post.channel != channel || post.thread_ts != args.thread_ts {
                continue;
            }
            println!(
                "slack post in {} (ts {}): {}",
                post.channel, post.ts, post.text
            );
            if !post.text.starts_with(STATUS_PREFIX) {
                return Ok(());
            }
        }
        next = posts.len() + 1;
    }
}

async fn runtime(args: RuntimeArgs) -> anyhow::Result<()> {
    let backend = backend::ControlClient::new(&args.backend_url);
    let spritz = spritz_api::ControlClient::new(&args.spritz_url);
    let team = backend
        .team(&args.team)
        .await?
        .with_context(|| format!("team {} is not installed at the fake backend", args.team))?;
    let instance = InstanceRef {
        namespace: team.namespace.clone(),
        instance_id: team.instance_id.clone(),
    };
    let kube = KubePhases {
        http: spritz_sandbox::tls::http_client(),
        base_url: args.kube_url.trim_end_matches('/').to_owned(),
        token: args.kube_token.clone(),
        namespace: team.namespace.clone(),
        name: team.instance_id.clone(),
    };
    match (args.action, args.mode) {
        (Some(RuntimeAction::Expire), _) => {
            kube.set("Expiring").await;
            backend
                .set_exchange_mode(&args.team, &ExchangeMode::Unavailable)
                .await?;
            spritz.set_instance(&instance, false).await?;
            kube.set("Expired").await;
        }
        (Some(RuntimeAction::Ready), _) => {
            spritz.set_instance(&instance, true).await?;
            backend
                .set_exchange_mode(&args.team, &ExchangeMode::Resolved)
                .await?;
            kube.set("Ready").await;
        }
        (None, Some(RuntimeMode::Unavailable)) => {
            backend
                .set_exchange_mode(&args.team, &ExchangeMode::Unavailable)
                .await?;
        }
        (None, Some(RuntimeMode::Resolved)) => {
            spritz.set_instance(&instance, true).await?;
            backend
                .set_exchange_mode(&args.team, &ExchangeMode::Resolved)
                .await?;
        }
        (None, Some(RuntimeMode::Vanished)) => {
            spritz.set_instance(&instance, false).await?;
        }
        (None, None) => anyhow::bail!("give an action (expire, ready) or --mode"),
    }
    println!(
        "runtime {}/{} of team {} updated",
        team.namespace, team.instance_id, args.team
    );
    Ok(())
}

/// Moves the demo Spritz's phase on the fake Kubernetes API, as the operator would.
struct KubePhases {
    http: reqwest::Client,
    base_url: String,
    token: String,
    namespace: String,
    name: String,
}

impl KubePhases {
    /// Best effort: a stack without the fake Kubernetes API still gets the rest.
    async fn set(&self, phase: &str) {
        let url = format!(
            "{}/apis/spritz.sh/v1/namespaces/{}/spritzes/{}/status",
            self.base_url, self.namespace, self.name
        );
        let outcome = self
            .http
            .patch(&url)
            .bearer_auth(&self.token)
            .header("Content-Type", "application/merge-patch+json")
            .body(serde_json::json!({"status": {"phase": phase}}).to_string())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match outcome {
            Ok(_) => println!("spritz {}/{} phase {phase}", self.namespace, self.name),
            Err(error) => eprintln!("could not set the Spritz phase to {phase}: {error}"),
        }
    }
}
