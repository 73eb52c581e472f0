//! What every role's entry point does around its work: parse the configuration (exit
//! code 2 naming the variable), start JSON logs on stdout (and span export when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set), and turn the run's result into the process
//! exit code, flushing exported spans first.

use std::process::ExitCode;

use crate::config::{ConfigError, Env, exit_on_error};
use crate::telemetry::{self, SpanExport};

/// The parsed configuration of `program`, with logging started; a configuration
/// error (the role's, or a malformed `OTEL_EXPORTER_OTLP_ENDPOINT`) is reported on one
/// line and ends the process with exit code 2.
pub fn start<C>(program: &str, config: Result<C, ConfigError>) -> C {
    let config = exit_on_error(program, config);
    let export = exit_on_error(
        program,
        SpanExport::from_env(&Env::process(), &service_name(program)),
    );
    telemetry::init_subscriber(telemetry::get_subscriber_exporting(
        "info",
        std::io::stdout,
        export,
    ));
    config
}

/// The default `service.name` of a role's exported spans: `spritz-gateway worker` →
/// `spritz-gateway-worker`.
fn service_name(program: &str) -> String {
    program.split_whitespace().collect::<Vec<_>>().join("-")
}

/// The exit code of a finished run: success, or failure after logging the error with
/// its causes (one `"{program} failed"` event and one line on stderr). Spans still
/// waiting for export are sent first (blocking, bounded by the exporter's timeout).
pub fn exit_code<E: Into<anyhow::Error>>(program: &str, result: Result<(), E>) -> ExitCode {
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let error: anyhow::Error = error.into();
            tracing::error!(error = format!("{error:#}"), "{program} failed");
            eprintln!("{program}: {error:#}");
            ExitCode::FAILURE
        }
    };
    telemetry::shutdown();
    code
}
