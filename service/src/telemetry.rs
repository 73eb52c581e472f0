//! JSON logs through `tracing`. [`get_subscriber`] is separate from [`init_subscriber`]
//! so tests can send logs to a sink of their choice (silent unless `TEST_LOG` is set).

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

/// A JSON subscriber; `RUST_LOG` overrides `default_filter`.
pub fn get_subscriber<Sink>(default_filter: &str, sink: Sink) -> impl Subscriber + Send + Sync
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
    Registry::default().with(filter).with(json)
}

/// Installs `subscriber` as the global default. Call once, at start.
pub fn init_subscriber(subscriber: impl Subscriber + Send + Sync) {
    // A second call (tests that spawn several apps) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Logs to stdout when `TEST_LOG` is set, else nowhere: for test binaries.
pub fn init_test_subscriber() {
    if std::env::var_os("TEST_LOG").is_some() {
        init_subscriber(get_subscriber("debug", std::io::stdout));
    } else {
        init_subscriber(get_subscriber("off", std::io::sink));
    }
}
