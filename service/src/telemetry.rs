//! JSON logs through `tracing`, and optionally the same spans exported over OTLP/HTTP.
//! [`get_subscriber`] is separate from [`init_subscriber`] so tests can send logs to a
//! sink of their choice (silent unless `TEST_LOG` is set).
//!
//! Export is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`SpanExport::from_env`]):
//! then a `tracing-opentelemetry` layer sends every span the filter lets through to
//! the collector in batches, from a background thread. Unset, no exporter exists and
//! the subscriber is the JSON one alone. Which trace a span belongs to is decided by
//! [`crate::trace`] from the W3C `traceparent` a message carries.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::config::{ConfigError, Env, Variable};
use crate::tls::Trust;

/// The OTLP collector's base URL (`http://collector:4318`); spans go to
/// `<endpoint>/v1/traces`. Unset: no export.
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The `service.name` of exported spans; defaults to the process's role.
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// How long one export request may take, in milliseconds.
const OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";

/// [`OTLP_ENDPOINT`] as `--help` lists it.
pub const OTLP_ENDPOINT_VARIABLE: Variable = Variable {
    name: OTLP_ENDPOINT,
    default: None,
    help: "OTLP/HTTP collector for span export (unset: no export)",
};

/// [`SERVICE_NAME`] as `--help` lists it.
pub const SERVICE_NAME_VARIABLE: Variable = Variable {
    name: SERVICE_NAME,
    default: None,
    help: "service.name of exported spans (default: the role, e.g. spritz-gateway-worker)",
};

/// True once a subscriber with an OTLP layer was built: [`crate::trace`] only asks
/// spans for their OpenTelemetry context then, so a process without export pays
/// nothing for it.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The provider of the installed subscriber, kept for [`shutdown`] to flush.
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// Whether spans are exported (an OTLP layer is installed).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// An OTLP/HTTP (protobuf) span exporter with its batch processor.
pub struct SpanExport {
    provider: SdkTracerProvider,
}

impl SpanExport {
    /// The exporter `OTEL_EXPORTER_OTLP_ENDPOINT` asks for, or `None` when it is unset.
    /// `OTEL_EXPORTER_OTLP_HEADERS` is read by the exporter itself,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` here for the export client, which trusts
    /// `SPRITZ_TLS_CA_FILE` like every other client; the endpoint given here wins over
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`. `default_service_name`
    /// applies when `OTEL_SERVICE_NAME` is unset.
    ///
    /// # Errors
    /// The endpoint is not an absolute http(s) URL (the exporter would otherwise fall
    /// back to `localhost:4318` without a word), or the exporter cannot be built.
    pub fn from_env(env: &Env, default_service_name: &str) -> Result<Option<Self>, ConfigError> {
        let Some(endpoint) = env.optional_url(OTLP_ENDPOINT)? else {
            return Ok(None);
        };
        let traces = format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/'));
        let client = export_client(&Trust::from_env(env)?, export_timeout(env)?);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(traces)
            .build()
            .map_err(|error| ConfigError::new(OTLP_ENDPOINT, error.to_string()))?;
        let service_name = env
            .get(SERVICE_NAME)
            .unwrap_or_else(|| default_service_name.to_owned());
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service_name).build())
            .build();
        Ok(Some(Self { provider }))
    }
}

/// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds, as the OpenTelemetry spec has it), or
/// its default of 10 s.
fn export_timeout(env: &Env) -> Result<Duration, ConfigError> {
    Ok(env
        .parse::<u64>(OTLP_TIMEOUT, "milliseconds")?
        .map_or(Duration::from_secs(10), Duration::from_millis))
}

/// The exporter's own blocking client (it sends from its batch thread), trusting what
/// every other client of the process trusts. Built on a thread of its own: a blocking
/// client cannot be built inside the async runtime.
fn export_client(trust: &Trust, timeout: Duration) -> reqwest::blocking::Client {
    let tls = (*trust.client_config()).clone();
    std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .build()
    })
    .join()
    .expect("building the export client does not panic")
    .expect("a preconfigured TLS client always builds")
}

/// A JSON subscriber; `RUST_LOG` overrides `default_filter`.
pub fn get_subscriber<Sink>(default_filter: &str, sink: Sink) -> impl Subscriber + Send + Sync
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    get_subscriber_exporting(default_filter, sink, None)
}

/// [`get_subscriber`], plus span export through `export` when given. The filter
/// applies to both: a span the logs leave out is not exported either.
pub fn get_subscriber_exporting<Sink>(
    default_filter: &str,
    sink: Sink,
    export: Option<SpanExport>,
) -> impl Subscriber + Send + Sync
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_writer(sink);
    let otlp = export.map(|export| {
        let tracer = export.provider.tracer("spritz");
        *PROVIDER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(export.provider);
        EXPORTING.store(true, Ordering::Relaxed);
        tracing_opentelemetry::layer().with_tracer(tracer)
    });
    Registry::default().with(filter).with(json).with(otlp)
}

/// Installs `subscriber` as the global default. Call once, at start.
pub fn init_subscriber(subscriber: impl Subscriber + Send + Sync) {
    // A second call (tests that spawn several apps) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Exports the spans still batched and stops the exporter; a no-op without export.
/// Call once, at exit: a span that ends later is not exported.
pub fn shutdown() {
    let provider = PROVIDER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(provider) = provider
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "span export did not shut down cleanly");
    }
}

/// Logs to stdout when `TEST_LOG` is set, else nowhere: for test binaries.
pub fn init_test_subscriber() {
    if std::env::var_os("TEST_LOG").is_some() {
        init_subscriber(get_subscriber("debug", std::io::stdout));
    } else {
        init_subscriber(get_subscriber("off", std::io::sink));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_endpoint_means_no_exporter() {
        let export = SpanExport::from_env(&Env::from_map([(SERVICE_NAME, "x")]), "spritz-test")
            .expect("no error");
        assert!(export.is_none());
    }

    #[test]
    fn a_malformed_endpoint_is_a_configuration_error_naming_the_variable() {
        let error = SpanExport::from_env(
            &Env::from_map([(OTLP_ENDPOINT, "collector:4318")]),
            "spritz-test",
        )
        .err()
        .expect("malformed");
        assert_eq!(error.variable, OTLP_ENDPOINT);
    }
}
