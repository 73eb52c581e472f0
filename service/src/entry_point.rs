//! What every role's entry point does around its work: parse the configuration (exit
//! code 2 naming the variable), start JSON logs on stdout, and turn the run's result
//! into the process exit code.

use std::process::ExitCode;

use crate::config::{ConfigError, exit_on_error};
use crate::telemetry;

/// The parsed configuration of `program`, with logging started; a configuration
/// error is reported on one line and ends the process with exit code 2.
pub fn start<C>(program: &str, config: Result<C, ConfigError>) -> C {
    let config = exit_on_error(program, config);
    telemetry::init_subscriber(telemetry::get_subscriber("info", std::io::stdout));
    config
}

/// The exit code of a finished run: success, or failure after logging the error with
/// its causes (one `"{program} failed"` event and one line on stderr).
pub fn exit_code<E: Into<anyhow::Error>>(program: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let error: anyhow::Error = error.into();
            tracing::error!(error = format!("{error:#}"), "{program} failed");
            eprintln!("{program}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
