//! Entry points the `spritz-gateway` binary dispatches to. (Stub: being written.)

use std::process::ExitCode;

/// Variables the worker reads, for `--help`.
pub const WORKER_VARIABLES: &[spritz_service::config::Variable] = &[];

/// `spritz-gateway dlq …`.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List parked messages.
    List,
}

/// `spritz-gateway worker`: parse config (exit 2 on error), run until SIGTERM.
pub async fn worker_main() -> ExitCode {
    eprintln!("spritz-gateway worker: not built yet");
    ExitCode::FAILURE
}

/// `spritz-gateway dlq …`.
pub async fn dlq_main(command: DlqCommand) -> ExitCode {
    let _ = command;
    ExitCode::FAILURE
}
