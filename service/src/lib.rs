//! What every Spritz process shares at run time: the broker connection and its
//! confirmed publisher ([`broker`]) over one or several broker nodes
//! ([`amqp_addresses`]), environment configuration that fails fast with exit code 2
//! ([`config`]), what every entry point does around its role ([`entry_point`]), the
//! shell every role starts and stops in ([`process`]), JSON logs and optional OTLP
//! span export ([`telemetry`]), one trace per message across processes ([`trace`]),
//! whom outbound TLS trusts ([`tls`]), the `/metrics`, `/healthz` and `/readyz`
//! listener ([`ops`]), the metrics every process exports ([`metrics`]), the shutdown
//! signal ([`shutdown`]), and consumers that restart on every broker link
//! ([`link_consumer`]).

pub mod amqp_addresses;
pub mod broker;
pub mod config;
pub mod entry_point;
pub mod link_consumer;
pub mod metrics;
pub mod ops;
pub mod process;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod trace;

pub use amqp_addresses::{AmqpAddress, AmqpAddresses};
pub use broker::{Broker, BrokerSettings, Link, PublishError};
pub use config::{ConfigError, Env, ListenAddr};
pub use ops::{OpsServer, Readiness};
pub use tls::Trust;
