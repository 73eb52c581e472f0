//! The worker crate's one error type. Each variant says which step failed; the source
//! (shown by `{:#}`) says why.

/// What can stop the worker or one of its tools.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a Redis command failed")]
    Redis(#[from] redis::RedisError),
    #[error("Redis is not connected yet")]
    RedisUnavailable,
    #[error("the Redis address is not usable")]
    RedisTarget(#[from] crate::ledger::TargetError),
    #[error("starting the ledger's thread failed")]
    LedgerThread(#[source] std::io::Error),
    #[error("a broker operation failed")]
    Broker(#[from] lapin::Error),
    #[error("publishing to the broker failed")]
    Publish(#[from] spritz_service::PublishError),
    #[error("the broker is not connected")]
    BrokerUnavailable,
    #[error("registering the worker's metrics failed")]
    Metrics(#[from] prometheus::Error),
    #[error("building the HTTP client failed")]
    Http(#[from] reqwest::Error),
    #[error("binding the ops listener failed")]
    Io(#[from] std::io::Error),
    #[error("encoding a message failed")]
    Encode(#[from] serde_json::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
