//! Entry points the `spritz-gateway` binary dispatches to: `worker` and `dlq`. Only
//! wiring: parse config (exit 2 naming the variable), init telemetry, run.

use std::process::ExitCode;

use spritz_service::config::{Env, Variable};
use spritz_service::metrics::BrokerMetrics;
use spritz_service::{Broker, BrokerSettings, entry_point, shutdown, telemetry};

use crate::app::Application;
use crate::config::{self, WorkerConfig};
use crate::dlq::{self, Selection};

/// Variables the worker reads, for `--help`.
pub const WORKER_VARIABLES: &[Variable] = config::VARIABLES;

/// `spritz-gateway dlq …`.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List parked messages: id, reason, attempts, age, team, channel (never text).
    List,
    /// Publish parked messages back where they came from (confirmed), then remove them.
    Replay {
        /// Replay every parked message.
        #[arg(long, conflicts_with = "message_ids")]
        all: bool,
        /// The message ids to replay (as `dlq list` shows them).
        #[arg(required_unless_present = "all")]
        message_ids: Vec<String>,
    },
}

/// `spritz-gateway worker`: parse config (exit 2 on error), run until SIGTERM.
pub async fn worker_main() -> ExitCode {
    const PROGRAM: &str = "spritz-gateway worker";
    let config = entry_point::start(PROGRAM, WorkerConfig::from_env(&Env::process()));
    let result = async {
        let app = Application::build(config).await?;
        tracing::info!(ops = %app.ops_addr(), "spritz-gateway worker starting");
        app.run_until_stopped(shutdown::on_signal()).await
    }
    .await;
    entry_point::exit_code(PROGRAM, result)
}

/// `spritz-gateway dlq …`: reads `SPRITZ_AMQP_URL` only.
pub async fn dlq_main(command: DlqCommand) -> ExitCode {
    let env = Env::process();
    let addresses = match env.amqp_url() {
        Ok(addresses) => addresses,
        Err(error) => {
            eprintln!("spritz-gateway dlq: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_subscriber(telemetry::get_subscriber("warn", std::io::stderr));
    let (broker, task) = Broker::start(
        BrokerSettings::new(addresses, "spritz-dlq"),
        BrokerMetrics::unregistered(),
    );
    let result = match command {
        DlqCommand::List => dlq::list(&broker)
            .await
            .map(|parked| print!("{}", dlq::render_table(&parked))),
        DlqCommand::Replay { all, message_ids } => {
            let selection = if all {
                Selection::All
            } else {
                Selection::Ids(message_ids)
            };
            dlq::replay(&broker, &selection).await.map(|report| {
                for id in &report.replayed {
                    println!("replayed {id}");
                }
                for id in &report.missing {
                    eprintln!("not parked: {id}");
                }
                println!("{} message(s) replayed", report.replayed.len());
            })
        }
    };
    broker.close().await;
    let _ = task.await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("spritz-gateway dlq: {:#}", anyhow::Error::from(error));
            ExitCode::FAILURE
        }
    }
}
