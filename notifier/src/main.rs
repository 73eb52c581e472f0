//! `spritz-notifier`: parse the environment, start logging, connect to Kubernetes,
//! run until SIGTERM or SIGINT. Everything else lives in the library. Exits through
//! the same path as every role: one line on failure, 2 for configuration.

use std::process::ExitCode;

use anyhow::Context;
use spritz_notifier::Notifier;
use spritz_notifier::config::{NotifierConfig, VARIABLES};
use spritz_service::config::{ConfigError, Env, exit_on_error, variables_help};
use spritz_service::{entry_point, shutdown};

const PROGRAM: &str = "spritz-notifier";

#[tokio::main]
async fn main() -> ExitCode {
    clap::Command::new(PROGRAM)
        .version(env!("CARGO_PKG_VERSION"))
        .about("Announces Spritz lifecycle changes (phase changes, deletion) on RabbitMQ")
        .after_help(variables_help(VARIABLES))
        .get_matches();
    let config = entry_point::start(PROGRAM, NotifierConfig::from_env(&Env::process()));
    let kube_config = exit_on_error(
        PROGRAM,
        kube::Config::infer().await.map_err(|error| {
            ConfigError::new(
                "KUBECONFIG",
                format!("no usable kubeconfig or in-cluster config: {error}"),
            )
        }),
    );
    let result = async {
        let client =
            kube::Client::try_from(kube_config).context("building the Kubernetes client")?;
        let notifier = Notifier::build(config, client)
            .await
            .context("starting the notifier")?;
        tracing::info!(ops = %notifier.ops_addr(), "spritz-notifier started");
        notifier
            .run_until_stopped(shutdown::on_signal())
            .await
            .context("running the notifier")
    }
    .await;
    entry_point::exit_code(PROGRAM, result)
}
