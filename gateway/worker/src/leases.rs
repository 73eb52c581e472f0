//! Keeps the ledger claims of every delivery in flight alive: one task per worker
//! renews all of them every third of the lease, in pipelined Redis calls
//! ([`Ledger::renew_all`]), instead of a timer and a Redis call per delivery. With
//! 10,000 slow prompts waiting that is a few round trips per tick rather than 10,000,
//! and a delivery that is busy (or stuck) never delays its own renewal.
//!
//! A delivery registers its claim with [`Leases::hold`] and keeps the returned
//! [`LeaseHold`] while it works; the hold signals [`LeaseHold::lost`] when a renewal
//! finds the claim (or its conversation lock) no longer its own, so the delivery stops
//! and is handed back. Dropping the hold stops the renewals. A tick Redis did not
//! answer is tried again soon ([`RETRY_AFTER`]), not a whole tick later, so one slow
//! answer does not eat a third of the lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::ledger::{Claim, ConversationLock, Ledger, Renewal};
use crate::metrics::WorkerMetrics;

/// Wait before trying a failed renewal tick again.
pub const RETRY_AFTER: Duration = Duration::from_millis(250);

/// The conversation lock slot a delivery shares with its renewals.
pub type LockSlot = Arc<Mutex<Option<ConversationLock>>>;

struct Entry {
    claim: Arc<Claim>,
    lock: LockSlot,
    lost: CancellationToken,
}

#[derive(Default)]
struct Registry {
    held: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
}

impl Registry {
    fn held(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The claims of this worker's deliveries in flight; cheap to clone.
#[derive(Clone, Default)]
pub struct Leases {
    registry: Arc<Registry>,
}

/// A delivery's registration; renewals stop when it is dropped.
pub struct LeaseHold {
    id: u64,
    registry: Arc<Registry>,
    lost: CancellationToken,
}

impl LeaseHold {
    /// Completes when a renewal found the claim (or the conversation lock) gone.
    pub fn lost(&self) -> WaitForCancellationFuture<'_> {
        self.lost.cancelled()
    }
}

impl Drop for LeaseHold {
    fn drop(&mut self) {
        self.registry.held().remove(&self.id);
    }
}

impl Leases {
    /// Renews `claim` (and the lock in `lock`, whenever one is there) until the hold is
    /// dropped.
    pub fn hold(&self, claim: Arc<Claim>, lock: LockSlot) -> LeaseHold {
        let id = self.registry.next_id.fetch_add(1, Ordering::Relaxed);
        let lost = CancellationToken::new();
        self.registry.held().insert(
            id,
            Entry {
                claim,
                lock,
                lost: lost.clone(),
            },
        );
        LeaseHold {
            id,
            registry: self.registry.clone(),
            lost,
        }
    }

    /// Claims held now.
    pub fn len(&self) -> usize {
        self.registry.held().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts the renewal task on the ledger's own runtime (so a main runtime busy
    /// with thousands of deliveries cannot make it late): every `lease / 3` (at least
    /// 10 ms), renew every claim held, until `stop`.
    pub fn spawn_renewer(
        &self,
        ledger: Ledger,
        lease: Duration,
        metrics: WorkerMetrics,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let leases = self.clone();
        let runner = ledger.clone();
        runner.spawn_background(async move {
            let period = (lease / 3).max(Duration::from_millis(10));
            let retry = RETRY_AFTER.min(period);
            let mut due = Instant::now() + period;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = stop.cancelled() => return,
                }
                let started = Instant::now();
                metrics
                    .lease_renewal_lateness
                    .observe(started.saturating_duration_since(due).as_secs_f64());
                let renewed = leases.renew_once(&ledger, lease).await;
                metrics
                    .lease_renewal_seconds
                    .observe(started.elapsed().as_secs_f64());
                due = if renewed {
                    started + period
                } else {
                    metrics.lease_renewal_failures.inc();
                    started + retry
                };
            }
        })
    }

    /// One renewal of everything held. `false` when Redis did not answer (the caller
    /// tries again soon).
    async fn renew_once(&self, ledger: &Ledger, lease: Duration) -> bool {
        let (ids, renewals): (Vec<u64>, Vec<Renewal>) = {
            let held = self.registry.held();
            held.iter()
                .map(|(id, entry)| {
                    let lock = lock_of(&entry.lock);
                    (
                        *id,
                        Renewal {
                            claim: entry.claim.clone(),
                            lock,
                        },
                    )
                })
                .unzip()
        };
        if renewals.is_empty() {
            return true;
        }
        let answers = match ledger.renew_all(&renewals, lease).await {
            Ok(answers) => answers,
            Err(error) => {
                tracing::warn!(error = %error, held = renewals.len(), "could not renew the claims");
                return false;
            }
        };
        let held = self.registry.held();
        for ((id, renewal), answer) in ids.iter().zip(&renewals).zip(answers) {
            let Some(entry) = held.get(id) else {
                continue; // finished meanwhile
            };
            // A lock the delivery let go of while the renewal was on its way is not
            // lost; only a claim, or a lock it still holds, that Redis no longer has.
            let lock_still_held = renewal.lock.is_some() && renewal.lock == lock_of(&entry.lock);
            if answer.claim == Some(false) || (answer.lock == Some(false) && lock_still_held) {
                entry.lost.cancel();
            }
        }
        true
    }
}

fn lock_of(slot: &LockSlot) -> Option<ConversationLock> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).clone()
}
