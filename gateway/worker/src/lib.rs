//! The worker of `spritz-gateway worker`: consumes Slack events and carries each one
//! to exactly one reply (SPEC §5), and the parking-lot tool `spritz-gateway dlq`.
//!
//! Layout: [`app`] assembles the process; [`consumer`] takes deliveries off the work
//! queue and settles each [`outcome::Outcome`] with the broker; [`pipeline`] turns one
//! delivery into an outcome, using the [`ledger`] (Redis: claims, done marks, prompt
//! and status records, conversation locks; [`leases`] renews the claims of every
//! delivery in flight at once), the [`sessions`] cache and the
//! [`clients`] of the external services; [`requeue`] publishes retry and parking-lot
//! copies; [`lifecycle`] consumes this worker's broadcast queue and [`wake`] wakes
//! deliveries waiting for a runtime; [`backend_sync`] forwards lifecycle events to the
//! backend; [`dlq`] lists and replays the parking lot; [`message_trace`] carries the
//! trace of the message being handled onto outbound calls; [`config`], [`metrics`] and
//! [`cli`] are the process edges. docs/worker.md explains the design.

pub mod app;
pub mod backend_sync;
pub mod cli;
pub mod clients;
pub mod config;
pub mod consumer;
pub mod dlq;
pub mod error;
pub mod leases;
pub mod ledger;
pub mod lifecycle;
pub mod message_trace;
pub mod metrics;
pub mod outcome;
pub mod pipeline;
pub mod prompt_text;
pub mod requeue;
pub mod sessions;
pub mod wake;

pub use app::Application;
pub use config::WorkerConfig;
pub use error::{Error, Result};
pub use outcome::{Incoming, Outcome, RetryStage};
pub use pipeline::Pipeline;
