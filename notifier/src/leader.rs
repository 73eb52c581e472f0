//! Leader election on a `coordination.k8s.io/v1` Lease, so two notifier replicas never
//! both publish.
//!
//! The protocol is client-go's: every replica reads the Lease; the holder renews it
//! (`renewTime`) every renew interval with a `replace` that carries the Lease's
//! `resourceVersion`, so of two replicas racing for it exactly one wins and the other
//! gets 409 Conflict. A candidate takes the Lease when it is free (no holder: released
//! on shutdown) or expired: `renewTime + leaseDurationSeconds` has passed by this
//! replica's clock, or the record has not changed for a lease duration since this
//! replica first saw it (which needs no clock agreement). A candidate wakes up right
//! when the holder's claim runs out, so a dead leader is replaced within the lease
//! duration of its last renewal.
//!
//! A leader that cannot renew for `duration - renew_interval` steps down by itself,
//! before anyone else may take over. If clocks disagree by more than that margin two
//! replicas may overlap for at most one renew interval (the old holder's next renewal
//! fails and it steps down); the cost is a duplicate event, which consumers tolerate.
//!
//! No crate is used: `kube-leader-election` (the well-kept one) targets kube 4, and the
//! protocol is small.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use prometheus::IntGauge;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Who competes for which Lease, and how fast.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's `holderIdentity`; unique per replica.
    pub identity: String,
    /// `leaseDurationSeconds`: how long a claim lasts without renewal (whole seconds).
    pub duration: Duration,
    /// How often the leader renews and a candidate retries.
    pub renew_interval: Duration,
}

impl LeaseSettings {
    /// A leader that has not renewed for this long steps down: one renew interval
    /// before its claim runs out for the others.
    pub fn renew_deadline(&self) -> Duration {
        self.duration
            .saturating_sub(self.renew_interval)
            .max(self.renew_interval / 2)
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// The result of one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// The Lease is ours (just acquired or renewed).
    Leading,
    /// Someone else holds it; their claim runs out in (at most) this long.
    Following { expires_in: Duration },
}

/// The Lease record as last seen, and when it last changed by our clock.
#[derive(Default)]
struct Observed {
    spec: Option<LeaseSpec>,
    changed_at: Option<Instant>,
}

impl Observed {
    fn see(&mut self, spec: &LeaseSpec) {
        if self.spec.as_ref() != Some(spec) {
            self.spec = Some(spec.clone());
            self.changed_at = Some(Instant::now());
        }
    }
}

/// Competes for the Lease until stopped, and reports leadership.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    is_leader: IntGauge,
}

impl LeaderElector {
    pub fn new(client: kube::Client, settings: LeaseSettings, is_leader: IntGauge) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        Self {
            api,
            settings,
            is_leader,
        }
    }

    /// Runs rounds until `stop`, publishing leadership on `leading` (true only while
    /// the Lease is ours and fresh). On `stop` it reports `false` first, then releases
    /// the Lease if it holds it, so another replica takes over at once.
    pub async fn run(self, stop: CancellationToken, leading: watch::Sender<bool>) {
        let settings = &self.settings;
        let mut observed = Observed::default();
        let mut renewed_at: Option<Instant> = None;
        tracing::info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "competing for leadership");
        while !stop.is_cancelled() {
            let started = Instant::now();
            let round =
                tokio::time::timeout(settings.renew_interval, self.round(&mut observed)).await;
            let mut wait = settings.renew_interval;
            match round {
                Ok(Ok(Round::Leading)) => {
                    renewed_at = Some(started);
                    self.set_leading(&leading, true);
                }
                Ok(Ok(Round::Following { expires_in })) => {
                    renewed_at = None;
                    self.set_leading(&leading, false);
                    wait = wait.min(expires_in + Duration::from_millis(10));
                }
                Ok(Err(error)) => tracing::warn!(error = %error, "lease round failed"),
                Err(_) => {
                    tracing::warn!(timeout = ?settings.renew_interval, "lease round timed out")
                }
            }
            if let Some(at) = renewed_at {
                let deadline = at + settings.renew_deadline();
                if Instant::now() >= deadline {
                    tracing::warn!("could not renew the lease in time; stepping down");
                    renewed_at = None;
                    self.set_leading(&leading, false);
                } else {
                    wait = wait.min(deadline - Instant::now());
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => {}
            }
        }
        let was_leading = *leading.borrow();
        self.set_leading(&leading, false);
        if was_leading {
            match tokio::time::timeout(settings.renew_interval, self.release()).await {
                Ok(Ok(true)) => tracing::info!("lease released"),
                Ok(Ok(false)) => tracing::info!("lease already held by another replica"),
                Ok(Err(error)) => tracing::warn!(error = %error, "could not release the lease"),
                Err(_) => tracing::warn!("releasing the lease timed out"),
            }
        }
    }

    fn set_leading(&self, leading: &watch::Sender<bool>, value: bool) {
        let changed =
            leading.send_if_modified(|current| std::mem::replace(current, value) != value);
        self.is_leader.set(i64::from(value));
        if changed {
            if value {
                tracing::info!(identity = %self.settings.identity, "became leader");
            } else {
                tracing::info!(identity = %self.settings.identity, "not leader");
            }
        }
    }

    /// One round: create the Lease, renew it, take it over, or find it held.
    async fn round(&self, observed: &mut Observed) -> Result<Round, kube::Error> {
        let settings = &self.settings;
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    namespace: Some(settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.claim(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Round::Leading),
                Err(kube::Error::Api(status)) if status.is_already_exists() => {
                    Ok(Round::Following {
                        expires_in: Duration::ZERO,
                    })
                }
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        observed.see(&spec);
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        if holder.is_some_and(|h| h != settings.identity) {
            let expires_in = self.expires_in(&spec, observed, now);
            if !expires_in.is_zero() {
                return Ok(Round::Following { expires_in });
            }
            tracing::info!(previous = ?holder, "lease expired; taking over");
        }
        lease.spec = Some(self.claim(Some(&spec), now));
        match self
            .api
            .replace(&settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(replaced) => {
                if let Some(spec) = replaced.spec.as_ref() {
                    observed.see(spec);
                }
                Ok(Round::Leading)
            }
            // Another replica wrote first; look again next round.
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(Round::Following {
                expires_in: Duration::ZERO,
            }),
            Err(error) => Err(error),
        }
    }

    /// The spec that makes (or keeps) us the holder.
    fn claim(&self, current: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let ours = current
            .is_some_and(|s| s.holder_identity.as_deref() == Some(self.settings.identity.as_str()));
        let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.duration_seconds()),
            acquire_time: if ours {
                current.and_then(|s| s.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours || current.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..current.cloned().unwrap_or_default()
        }
    }

    /// How long until the holder's claim runs out: by the record's `renewTime`, or by
    /// how long we have seen the record unchanged, whichever comes first.
    fn expires_in(&self, spec: &LeaseSpec, observed: &Observed, now: Timestamp) -> Duration {
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.settings.duration, Duration::from_secs);
        let by_record = match &spec.renew_time {
            Some(MicroTime(renewed)) => {
                let age =
                    Duration::try_from(now.duration_since(*renewed)).unwrap_or(Duration::ZERO);
                duration.saturating_sub(age)
            }
            None => Duration::ZERO,
        };
        let by_observation = observed
            .changed_at
            .map_or(duration, |at| duration.saturating_sub(at.elapsed()));
        by_record.min(by_observation)
    }

    /// Gives the Lease up if we hold it: no holder and a one-second duration, so any
    /// candidate takes it on its next round. Returns whether it was ours.
    async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(false);
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(false),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(duration: u64, renew_ms: u64) -> LeaseSettings {
        LeaseSettings {
            name: "l".into(),
            namespace: "n".into(),
            identity: "me".into(),
            duration: Duration::from_secs(duration),
            renew_interval: Duration::from_millis(renew_ms),
        }
    }

    #[test]
    fn a_leader_steps_down_one_renew_interval_before_its_claim_runs_out() {
        assert_eq!(settings(15, 5000).renew_deadline(), Duration::from_secs(10));
        assert_eq!(
            settings(2, 500).renew_deadline(),
            Duration::from_millis(1500)
        );
    }
}
