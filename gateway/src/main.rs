//! `spritz-gateway`: `serve` (Slack ingress), `worker` and `dlq`. Only wiring here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spritz_gateway::{Application, ServeConfig, config};
use spritz_service::config::{Env, variables_help};
use spritz_service::{entry_point, shutdown};
use spritz_worker::cli::{DlqCommand, WORKER_VARIABLES};

#[derive(Parser)]
#[command(
    name = "spritz-gateway",
    version,
    about = "Spritz Slack channel gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Slack events endpoint and the OAuth install flow.
    #[command(after_help = variables_help(config::VARIABLES))]
    Serve,
    /// Consume Slack events and answer them through the agent runtimes.
    #[command(after_help = variables_help(WORKER_VARIABLES))]
    Worker,
    /// Inspect and replay the parking lot.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve => serve().await,
        Command::Worker => spritz_worker::cli::worker_main().await,
        Command::Dlq(command) => spritz_worker::cli::dlq_main(command).await,
    }
}

async fn serve() -> ExitCode {
    const PROGRAM: &str = "spritz-gateway serve";
    let config = entry_point::start(PROGRAM, ServeConfig::from_env(&Env::process()));
    let result = async {
        let app = Application::build(config).await?;
        tracing::info!(addr = %app.addr(), ops = %app.ops_addr(), "spritz-gateway serve listening");
        app.run_until_stopped(shutdown::on_signal()).await
    }
    .await;
    entry_point::exit_code(PROGRAM, result)
}
