//! What the notifier knows about each watched object: the phase last announced, the
//! changes still to announce (oldest first), and whether the annotation records the
//! announced phase. Pure state, no I/O: the [`crate::pipeline`] feeds it watch
//! observations and work results, and asks it what to do next for an object.
//!
//! Rules:
//! - An object's first sighting takes the recorded phase from the annotation, so a
//!   restart does not announce again what was announced before it.
//! - A change is queued when the observed phase differs from the last queued (or
//!   announced) phase; its `previousPhase` is that phase, so an object's events form a
//!   chain in order. Empty phases and phases outside the enum are ignored.
//! - A change stays queued until the broker confirmed it: a failed publish is retried
//!   with backoff and nothing behind it overtakes it.
//! - Deletion (a `DELETED` event, or absence from a re-list) queues `Deleted`; the
//!   object is forgotten once that is published.
//! - A failed annotation patch is retried on its own (publishing nothing) a few times,
//!   and again whenever the object is seen.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use spritz_proto::Phase;
use tokio::time::Instant;

use crate::spritz::{Key, Snapshot};

/// Annotation-only retries before waiting for the object to be seen again.
const MAX_RECORD_ATTEMPTS: u32 = 5;

/// One phase change to announce.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The object incarnation it belongs to (a re-created object has another uid).
    pub uid: String,
    pub phase: Phase,
    pub previous: Option<Phase>,
    pub resource_version: String,
    pub observed_at: DateTime<Utc>,
    /// For `spritz_notifier_publish_seconds`.
    pub observed: Instant,
}

/// What to do next for one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Work {
    /// Publish `change`; then, when `record`, write its phase into the annotation.
    Announce { change: Change, record: bool },
    /// Only write the announced phase into the annotation (an earlier patch failed).
    Record { phase: Phase },
}

/// How a piece of [`Work`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkResult {
    /// Published (and recorded, when asked).
    Done,
    /// Published, but the annotation patch failed (or, for [`Work::Record`], failed).
    NotRecorded,
    /// Not published.
    PublishFailed,
}

/// What the pipeline should do with an object after [`Tracker::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// It has more work now.
    Run,
    /// Try again after this long.
    RetryAfter(Duration),
    /// Nothing to do until it changes.
    Idle,
}

#[derive(Debug)]
struct Tracked {
    uid: String,
    resource_version: String,
    /// Last phase published for this uid, or found in its annotation.
    announced: Option<Phase>,
    /// Phase of the newest queued change, else `announced`.
    wanted: Option<Phase>,
    /// The annotation holds `announced`.
    recorded: bool,
    record_attempts: u32,
    gone: bool,
    pending: VecDeque<Change>,
    /// Work in flight.
    busy: bool,
    /// Waiting for a retry timer.
    waiting: bool,
    /// Failed attempts in a row, for backoff.
    failures: u32,
}

impl Tracked {
    fn first_seen(snapshot: &Snapshot) -> Self {
        let announced = snapshot.notified_phase();
        Self {
            uid: snapshot.uid.clone(),
            resource_version: snapshot.resource_version.clone(),
            announced,
            wanted: announced,
            recorded: true,
            record_attempts: 0,
            gone: false,
            pending: VecDeque::new(),
            busy: false,
            waiting: false,
            failures: 0,
        }
    }

    fn has_work(&self) -> bool {
        !self.pending.is_empty()
            || (!self.recorded
                && !self.gone
                && self.announced.is_some()
                && self.record_attempts < MAX_RECORD_ATTEMPTS)
    }

    fn runnable(&self) -> bool {
        !self.busy && !self.waiting && self.has_work()
    }

    fn queue(&mut self, phase: Phase, uid: String, resource_version: String) {
        let change = Change {
            uid,
            phase,
            previous: self.wanted,
            resource_version,
            observed_at: Utc::now(),
            observed: Instant::now(),
        };
        self.wanted = Some(phase);
        self.pending.push_back(change);
    }

    fn queue_deleted(&mut self) {
        self.gone = true;
        self.queue(
            Phase::Deleted,
            self.uid.clone(),
            self.resource_version.clone(),
        );
    }
}

/// Every watched object and its pending announcements.
#[derive(Debug, Default)]
pub struct Tracker {
    objects: HashMap<Key, Tracked>,
}

impl Tracker {
    /// Objects known (including deleted ones whose `Deleted` is not yet published).
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// An object as the watch (or a re-list) reports it. Returns whether it became
    /// runnable.
    pub fn seen(&mut self, snapshot: &Snapshot) -> bool {
        let tracked = match self.objects.get_mut(&snapshot.key) {
            None => self
                .objects
                .entry(snapshot.key.clone())
                .or_insert_with(|| Tracked::first_seen(snapshot)),
            Some(tracked) if tracked.uid != snapshot.uid => {
                // Deleted and re-created under the same name while we looked away.
                if !tracked.gone {
                    tracked.queue_deleted();
                }
                let fresh = Tracked::first_seen(snapshot);
                tracked.uid = fresh.uid;
                tracked.announced = fresh.announced;
                tracked.wanted = fresh.announced;
                tracked.recorded = true;
                tracked.record_attempts = 0;
                tracked.gone = false;
                tracked
            }
            Some(tracked) => tracked,
        };
        tracked
            .resource_version
            .clone_from(&snapshot.resource_version);
        if !tracked.recorded {
            if snapshot.notified_phase().is_some() && snapshot.notified_phase() == tracked.announced
            {
                // The patch landed after all (its answer was lost) or someone else wrote it.
                tracked.recorded = true;
            }
            tracked.record_attempts = 0;
        }
        match snapshot.phase() {
            Some(phase) if Some(phase) != tracked.wanted => {
                tracked.queue(
                    phase,
                    snapshot.uid.clone(),
                    snapshot.resource_version.clone(),
                );
            }
            Some(_) => {}
            None => {
                tracing::debug!(object = %snapshot.key, phase = ?snapshot.phase, "no known phase; ignored");
            }
        }
        tracked.runnable()
    }

    /// The object was deleted: `Deleted` is announced with the last known phase as
    /// the previous one. Returns whether it became runnable.
    pub fn gone(&mut self, snapshot: &Snapshot) -> bool {
        let tracked = self
            .objects
            .entry(snapshot.key.clone())
            .or_insert_with(|| Tracked::first_seen(snapshot));
        if tracked.gone || tracked.uid != snapshot.uid {
            return false;
        }
        tracked
            .resource_version
            .clone_from(&snapshot.resource_version);
        tracked.queue_deleted();
        tracked.runnable()
    }

    /// A (re-)list of one watch scope ended: objects of that scope (`None`: every
    /// namespace) that were known but not listed were deleted meanwhile. Returns the
    /// objects that became runnable.
    pub fn relisted(&mut self, namespace: Option<&str>, present: &HashSet<Key>) -> Vec<Key> {
        let mut runnable = Vec::new();
        for (key, tracked) in &mut self.objects {
            let in_scope = namespace.is_none_or(|ns| key.namespace == ns);
            if in_scope && !tracked.gone && !present.contains(key) {
                tracked.queue_deleted();
                if tracked.runnable() {
                    runnable.push(key.clone());
                }
            }
        }
        runnable
    }

    /// Whether the object can run now (used after a retry timer fired).
    pub fn retry_due(&mut self, key: &Key) -> bool {
        self.objects.get_mut(key).is_some_and(|tracked| {
            tracked.waiting = false;
            tracked.runnable()
        })
    }

    /// Takes the next piece of work for an object and marks it busy.
    pub fn start(&mut self, key: &Key) -> Option<Work> {
        let tracked = self.objects.get_mut(key)?;
        if !tracked.runnable() {
            return None;
        }
        let work = if let Some(change) = tracked.pending.front() {
            let record =
                change.phase != Phase::Deleted && change.uid == tracked.uid && !tracked.gone;
            Work::Announce {
                change: change.clone(),
                record,
            }
        } else {
            Work::Record {
                phase: tracked.announced?,
            }
        };
        tracked.busy = true;
        Some(work)
    }

    /// The work in flight for an object vanished (its task panicked): it will be
    /// retried after a timer.
    pub fn fail_busy(&mut self, key: &Key) {
        if let Some(tracked) = self.objects.get_mut(key) {
            tracked.busy = false;
            tracked.waiting = true;
            tracked.failures += 1;
        }
    }

    /// Records how `work` ended and says what comes next for the object.
    pub fn finish(
        &mut self,
        key: &Key,
        work: &Work,
        outcome: WorkResult,
        backoff: &Backoff,
    ) -> Next {
        let Some(tracked) = self.objects.get_mut(key) else {
            return Next::Idle;
        };
        tracked.busy = false;
        match (work, outcome) {
            (_, WorkResult::PublishFailed) => {
                tracked.failures += 1;
                tracked.waiting = true;
                return Next::RetryAfter(backoff.delay(tracked.failures));
            }
            (Work::Announce { change, record }, outcome) => {
                tracked.pending.pop_front();
                if change.uid == tracked.uid {
                    tracked.announced = Some(change.phase);
                    tracked.recorded = !*record || outcome == WorkResult::Done;
                    if !tracked.recorded {
                        tracked.record_attempts = 1;
                    }
                }
                if outcome == WorkResult::Done {
                    tracked.failures = 0;
                } else {
                    tracked.failures += 1;
                }
            }
            (Work::Record { phase }, WorkResult::Done) => {
                if tracked.announced == Some(*phase) {
                    tracked.recorded = true;
                }
                tracked.failures = 0;
            }
            (Work::Record { .. }, WorkResult::NotRecorded) => {
                tracked.record_attempts += 1;
                tracked.failures += 1;
            }
        }
        if tracked.gone && tracked.pending.is_empty() {
            self.objects.remove(key);
            return Next::Idle;
        }
        if !tracked.has_work() {
            Next::Idle
        } else if tracked.pending.is_empty() {
            // Only the annotation is left to write: it failed just now, so wait.
            tracked.waiting = true;
            Next::RetryAfter(backoff.delay(tracked.failures.max(1)))
        } else {
            Next::Run
        }
    }
}

/// Exponential backoff with jitter, per object.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait before attempt `failures + 1`: `min · 2^(failures-1)`, at most `max`,
    /// minus up to 20% jitter so a broker outage does not end in a thundering herd.
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let base = self.min.saturating_mul(1 << exponent).min(self.max);
        base.mul_f64(1.0 - rand::random::<f64>() * 0.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(5),
    };

    fn snapshot(name: &str, uid: &str, phase: Option<&str>, notified: Option<&str>) -> Snapshot {
        Snapshot {
            key: Key::new("team-a", name),
            uid: uid.into(),
            resource_version: "1".into(),
            phase: phase.map(str::to_owned),
            notified: notified.map(str::to_owned),
        }
    }

    fn announce(tracker: &mut Tracker, key: &Key) -> Change {
        match tracker.start(key) {
            Some(Work::Announce { change, .. }) => change,
            other => panic!("expected an announcement, got {other:?}"),
        }
    }

    #[test]
    fn a_recorded_phase_is_not_announced_again() {
        let mut tracker = Tracker::default();
        assert!(!tracker.seen(&snapshot("a", "u", Some("Ready"), Some("Ready"))));
        assert_eq!(tracker.start(&Key::new("team-a", "a")), None);
    }

    #[test]
    fn changes_are_announced_in_order_with_the_previous_phase_chained() {
        let mut tracker = Tracker::default();
        let key = Key::new("team-a", "a");
        assert!(tracker.seen(&snapshot("a", "u", Some("Ready"), Some("Provisioning"))));
        let first = announce(&mut tracker, &key);
        // A second change while the first is in flight waits behind it.
        assert!(!tracker.seen(&snapshot("a", "u", Some("Expiring"), Some("Provisioning"))));
        assert_eq!(
            (first.phase, first.previous),
            (Phase::Ready, Some(Phase::Provisioning))
        );
        let work = Work::Announce {
            change: first,
            record: true,
        };
        assert_eq!(
            tracker.finish(&key, &work, WorkResult::Done, &BACKOFF),
            Next::Run
        );
        let second = announce(&mut tracker, &key);
        assert_eq!(
            (second.phase, second.previous),
            (Phase::Expiring, Some(Phase::Ready))
        );
        let work = Work::Announce {
            change: second,
            record: true,
        };
        assert_eq!(
            tracker.finish(&key, &work, WorkResult::Done, &BACKOFF),
            Next::Idle
        );
        // Our own annotation patch comes back through the watch: nothing to do.
        assert!(!tracker.seen(&snapshot("a", "u", Some("Expiring"), Some("Expiring"))));
    }

    #[test]
    fn a_failed_publish_keeps_the_change_and_retries_it() {
        let mut tracker = Tracker::default();
        let key = Key::new("team-a", "a");
        tracker.seen(&snapshot("a", "u", Some("Ready"), None));
        let change = announce(&mut tracker, &key);
        let work = Work::Announce {
            change: change.clone(),
            record: true,
        };
        let Next::RetryAfter(delay) =
            tracker.finish(&key, &work, WorkResult::PublishFailed, &BACKOFF)
        else {
            panic!("expected a retry");
        };
        assert!(delay <= BACKOFF.min);
        assert_eq!(tracker.start(&key), None, "waits for its timer");
        assert!(tracker.retry_due(&key));
        assert_eq!(announce(&mut tracker, &key), change);
    }

    #[test]
    fn a_failed_annotation_is_retried_without_publishing_again() {
        let mut tracker = Tracker::default();
        let key = Key::new("team-a", "a");
        tracker.seen(&snapshot("a", "u", Some("Ready"), None));
        let work = Work::Announce {
            change: announce(&mut tracker, &key),
            record: true,
        };
        assert!(matches!(
            tracker.finish(&key, &work, WorkResult::NotRecorded, &BACKOFF),
            Next::RetryAfter(_)
        ));
        assert!(tracker.retry_due(&key));
        assert_eq!(
            tracker.start(&key),
            Some(Work::Record {
                phase: Phase::Ready
            })
        );
        assert_eq!(
            tracker.finish(
                &key,
                &Work::Record {
                    phase: Phase::Ready
                },
                WorkResult::Done,
                &BACKOFF
            ),
            Next::Idle
        );
    }

    #[test]
    fn deletion_announces_deleted_after_the_last_phase_then_forgets_the_object() {
        let mut tracker = Tracker::default();
        let key = Key::new("team-a", "a");
        tracker.seen(&snapshot("a", "u", Some("Ready"), Some("Ready")));
        assert!(tracker.gone(&snapshot("a", "u", Some("Ready"), Some("Ready"))));
        let Some(Work::Announce { change, record }) = tracker.start(&key) else {
            panic!("no work")
        };
        assert_eq!(
            (change.phase, change.previous, record),
            (Phase::Deleted, Some(Phase::Ready), false)
        );
        let work = Work::Announce { change, record };
        assert_eq!(
            tracker.finish(&key, &work, WorkResult::Done, &BACKOFF),
            Next::Idle
        );
        assert!(tracker.is_empty());
    }

    #[test]
    fn objects_missing_from_a_relist_of_their_scope_are_deleted() {
        let mut tracker = Tracker::default();
        tracker.seen(&snapshot("a", "u1", Some("Ready"), Some("Ready")));
        tracker.seen(&snapshot("b", "u2", Some("Ready"), Some("Ready")));
        let present: HashSet<Key> = [Key::new("team-a", "a")].into();
        assert!(
            tracker.relisted(Some("team-b"), &present).is_empty(),
            "other scope"
        );
        assert_eq!(
            tracker.relisted(Some("team-a"), &present),
            [Key::new("team-a", "b")]
        );
        assert!(
            tracker.relisted(None, &present).is_empty(),
            "already deleted"
        );
    }

    #[test]
    fn a_recreated_object_announces_the_old_ones_deletion_first() {
        let mut tracker = Tracker::default();
        let key = Key::new("team-a", "a");
        tracker.seen(&snapshot("a", "old", Some("Ready"), Some("Ready")));
        tracker.seen(&snapshot("a", "new", Some("Provisioning"), None));
        let first = announce(&mut tracker, &key);
        assert_eq!((first.uid.as_str(), first.phase), ("old", Phase::Deleted));
        let work = Work::Announce {
            change: first,
            record: false,
        };
        assert_eq!(
            tracker.finish(&key, &work, WorkResult::Done, &BACKOFF),
            Next::Run
        );
        let Some(Work::Announce {
            change,
            record: true,
        }) = tracker.start(&key)
        else {
            panic!("no work")
        };
        assert_eq!(
            (change.uid.as_str(), change.phase, change.previous),
            ("new", Phase::Provisioning, None)
        );
    }

    #[test]
    fn unknown_and_empty_phases_are_ignored() {
        let mut tracker = Tracker::default();
        assert!(!tracker.seen(&snapshot("a", "u", Some("Hibernating"), None)));
        assert!(!tracker.seen(&snapshot("a", "u", Some(""), None)));
        assert!(!tracker.seen(&snapshot("a", "u", None, None)));
        assert_eq!(
            tracker.len(),
            1,
            "still tracked, so its deletion is announced"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        assert!(BACKOFF.delay(1) <= Duration::from_millis(100));
        assert!(BACKOFF.delay(3) > Duration::from_millis(300));
        assert!(BACKOFF.delay(30) <= Duration::from_secs(5));
        assert!(BACKOFF.delay(30) >= Duration::from_secs(4));
    }
}
