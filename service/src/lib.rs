//! What every Spritz process shares at run time: the broker connection and its
//! confirmed publisher ([`broker`]), environment configuration that fails fast with
//! exit code 2 ([`config`]), JSON logs ([`telemetry`]), the `/metrics`, `/healthz` and
//! `/readyz` listener ([`ops`]), the metrics every process exports ([`metrics`]), and
//! the shutdown signal ([`shutdown`]).

pub mod broker;
pub mod config;
pub mod metrics;
pub mod ops;
pub mod shutdown;
pub mod telemetry;

pub use broker::{Broker, BrokerSettings, Link, PublishError};
pub use config::{ConfigError, Env, ListenAddr};
pub use ops::{OpsServer, Readiness};
