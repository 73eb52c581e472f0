//! The worker against real RabbitMQ and Redis (own vhost and key prefix per test) and
//! the sandbox fakes of Slack, the backend and the Spritz API. One module per area of
//! SPEC §5; test names say the behaviour.

mod support;

mod backend_sync;
mod concurrency;
mod direct;
mod happy_path;
mod lifecycle;
mod parking_lot;
mod process;
mod prompt;
mod recovery;
mod reply;
mod sentinel;
mod tls;
mod traces;
