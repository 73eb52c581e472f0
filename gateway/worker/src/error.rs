//! The worker crate's one error type.

/// What can stop the worker or one of its tools.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis")]
    Redis(#[from] redis::RedisError),
    #[error("redis is not connected yet")]
    RedisUnavailable,
    #[error("broker")]
    Broker(#[from] lapin::Error),
    #[error("publish")]
    Publish(#[from] spritz_service::PublishError),
    #[error("the broker is not connected")]
    BrokerUnavailable,
    #[error("metrics registration")]
    Metrics(#[from] prometheus::Error),
    #[error("http client")]
    Http(#[from] reqwest::Error),
    #[error("io")]
    Io(#[from] std::io::Error),
    #[error("encoding a message")]
    Encode(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
