//! Recorded requests you can wait on. Each fake keeps what it received in one state
//! behind a `tokio::sync::watch` channel and changes it with `send_modify`, so every
//! change wakes whoever waits for "at least n records" — a test through the fake's
//! handle, or the dev stack through a `/_sandbox/…/wait` route — without polling.

use std::time::Duration;

use tokio::sync::watch;

/// Why a wait ended without its condition holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitError {
    /// The condition still did not hold when the timeout ran out.
    TimedOut,
    /// The fake's state went away (cannot happen while a handle is alive).
    Stopped,
}

impl WaitError {
    /// The error a fake's handle reports: `"<fake> stopped"`, or what `timed_out`
    /// says (typically what was expected and what arrived instead).
    pub(crate) fn describe(self, fake: &str, timed_out: impl FnOnce() -> String) -> anyhow::Error {
        match self {
            WaitError::Stopped => anyhow::anyhow!("{fake} stopped"),
            WaitError::TimedOut => anyhow::anyhow!(timed_out()),
        }
    }
}

/// Waits until `ready` holds for the fake's state (checked at once, then on every
/// change) and returns what `read` takes from the state at that moment.
///
/// # Errors
/// [`WaitError::TimedOut`] after `timeout`; [`WaitError::Stopped`] when the state is
/// dropped.
pub(crate) async fn wait_for<S, T>(
    state: &watch::Sender<S>,
    timeout: Duration,
    mut ready: impl FnMut(&S) -> bool,
    read: impl FnOnce(&S) -> T,
) -> Result<T, WaitError> {
    let mut rx = state.subscribe();
    let waited = tokio::time::timeout(timeout, async move {
        rx.wait_for(|s| ready(s)).await.map(|s| read(&s))
    })
    .await;
    match waited {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(WaitError::Stopped),
        Err(_) => Err(WaitError::TimedOut),
    }
}

/// Waits until `records` of the fake's state holds at least `n` entries and returns
/// all of them (a clone).
///
/// # Errors
/// As [`wait_for`].
pub(crate) async fn wait_for_records<S, T: Clone>(
    state: &watch::Sender<S>,
    n: usize,
    timeout: Duration,
    records: impl Fn(&S) -> &Vec<T>,
) -> Result<Vec<T>, WaitError> {
    wait_for(
        state,
        timeout,
        |s| records(s).len() >= n,
        |s| records(s).clone(),
    )
    .await
}
