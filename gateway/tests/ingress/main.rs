//! Integration tests of `spritz-gateway serve` against the real RabbitMQ (one vhost per
//! test), a fake Slack and a fake backend. `broker_stop` tests stop the whole broker and
//! are `#[ignore]`d: `scripts/test-serial` runs them one at a time. So is `cluster`,
//! which needs the three-node cluster that `scripts/test-serial` starts for it.

mod binary;
mod broker_outage;
mod broker_stop;
mod cluster;
mod dlq_cli;
mod events;
mod helpers;
mod oauth;
mod shutdown;
mod traces;
