//! The Slack ingress of `spritz-gateway serve` (SPEC §3): an axum service that verifies
//! Slack's signature, filters events, publishes the accepted ones to RabbitMQ and
//! answers 200 only after the broker confirmed them; plus the OAuth install flow.
//!
//! Layout: [`config`] reads the environment; [`startup`] builds and runs the
//! [`Application`]; [`routes`] wires the router over the handlers' shared
//! [`app_state`]; [`events`] is the events endpoint,
//! deciding with [`slack_payload`] what to publish; [`oauth`] is the install flow,
//! talking to Slack and the backend through [`install`], signing its `state` with
//! [`oauth_state`] and answering JSON or HTML by [`accept`]; [`error`] maps every
//! failure to a status; [`metrics`]
//! holds the gateway's instruments.

pub mod accept;
pub mod app_state;
pub mod config;
pub mod error;
pub mod events;
pub mod install;
pub mod metrics;
pub mod oauth;
pub mod oauth_state;
pub mod routes;
pub mod slack_payload;
pub mod startup;

pub use config::ServeConfig;
pub use error::{Error, Result};
pub use startup::Application;
