//! The notifier's one error type. Only start-up and the run loop's own plumbing return
//! it: failures of a single publish or patch are outcomes of that object's work
//! ([`crate::tracker::WorkResult`]), counted and retried, never errors that stop the process.

/// Why the notifier could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API call failed")]
    Kube(#[from] kube::Error),
    #[error("metric registration failed")]
    Metrics(#[from] prometheus::Error),
    #[error("the process shell could not start")]
    Shell(#[from] spritz_service::process::ShellError),
    #[error("a notifier task failed")]
    Task(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
