//! `spritz-notifier`: announces Spritz runtime lifecycle changes on the broker.
//!
//! It watches `spritzes.spritz.sh/v1` objects and, when `status.phase` differs from
//! the `spritz.sh/lifecycle-notified-phase` annotation, publishes `spritz.lifecycle.v1`
//! with a broker confirm and then records the phase in the annotation; deleted objects
//! yield `Deleted`. Only the replica holding a `coordination.k8s.io/v1` Lease does so.
//! docs/notifier.md explains the design and its limits.
//!
//! Layout: [`config`] (environment), [`app`] (build and run), [`leader`] (the Lease),
//! [`watch`] (kube-runtime watchers → observations), [`tracker`] (per-object state,
//! pure), [`pipeline`] (concurrent, per-object ordered work), [`announce`] (publish
//! then annotate one change), [`spritz`] (the resource type), [`metrics`], [`error`].

pub mod announce;
pub mod app;
pub mod config;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod pipeline;
pub mod spritz;
pub mod tracker;
pub mod watch;

pub use app::{Notifier, Status};
pub use config::NotifierConfig;
pub use error::{Error, Result};
pub use spritz::NOTIFIED_PHASE_ANNOTATION;
