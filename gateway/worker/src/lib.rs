//! The worker of `spritz-gateway worker`: consumes Slack events and carries each one
//! to exactly one reply (SPEC §5), and the parking-lot tool `spritz-gateway dlq`.

pub mod cli;
pub mod backend_sync;
pub mod clients;
