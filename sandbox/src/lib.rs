//! Fakes of the services the gateway talks to but does not own — Slack, the Spritz
//! backend, the Spritz API with its ACP agent, and the Kubernetes API — plus the
//! isolation helpers that give each test its own RabbitMQ vhost and Redis key prefix,
//! and a test CA with TLS fronts for the clients' trust tests (`tls`).
//!
//! Tests start the fakes in-process on port 0 and drive them through their methods;
//! the dev stack runs them as one process (`spritz-sandbox`) and drives them through
//! the same operations exposed as a small HTTP control API.
//!
//! What the fakes share lives in one place each: `server` starts a fake's HTTP
//! server, `recording` waits on what a fake recorded, `control` holds the
//! `/_sandbox/…/wait` route and the control clients' HTTP core, and `spritz_http`
//! the bearer and error conventions of the two Spritz services.

pub mod backend;
mod control;
pub mod isolation;
pub mod kubernetes;
mod recording;
mod server;
pub mod slack;
pub mod spritz_api;
mod spritz_http;
pub mod tls;

pub use spritz_http::TracedRequest;
