//! Integration tests of `spritz-notifier` against the fake Kubernetes API server and a
//! real RabbitMQ (one vhost per test). Events are asserted by consuming a queue the
//! test binds to `spritz.lifecycle`.

mod binary;
mod broker;
mod kubeconfig;
mod leader;
mod lifecycle;
mod support;
mod watch;
