//! The leader's loop: turns watch observations into announcements, many objects at a
//! time, one piece of work per object at a time.
//!
//! One task owns the [`Tracker`] (no locks): it takes observations from the watch,
//! queues objects that have work, starts up to `concurrency` announcements as tasks,
//! and handles their results. Concurrency across objects keeps throughput up (each
//! announcement waits for a broker confirm and an API round trip); one-at-a-time per
//! object keeps an object's events in order. A failed publish parks the object on a
//! retry timer with backoff; when the broker connection comes back every parked object
//! is retried at once.
//!
//! Dropping the future (leadership lost) aborts in-flight work immediately; `shutdown`
//! instead stops taking new work and waits for in-flight work up to a grace period.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures::{Stream, StreamExt};
use spritz_service::Broker;
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};

use crate::announce::Announcer;
use crate::metrics::NotifierMetrics;
use crate::spritz::Key;
use crate::tracker::{Backoff, Next, Tracker, Work, WorkResult};
use crate::watch::Observation;

/// How hard the pipeline pushes.
#[derive(Clone, Copy, Debug)]
pub struct PipelineSettings {
    /// Announcements in flight at once (over all objects).
    pub concurrency: usize,
    /// Backoff of a failed publish or annotation, per object.
    pub retry: Backoff,
    /// How long shutdown waits for in-flight announcements.
    pub shutdown_grace: Duration,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            concurrency: 64,
            retry: Backoff {
                min: Duration::from_millis(200),
                max: Duration::from_secs(10),
            },
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The pipeline's inputs and outputs other than the watch.
pub struct Pipeline {
    pub announcer: Announcer,
    pub broker: Broker,
    pub metrics: NotifierMetrics,
    pub settings: PipelineSettings,
    /// How many watch scopes must list once before the watch counts as synced.
    pub scopes: usize,
    /// Set once every scope has listed; cleared when the pipeline stops.
    pub synced: watch::Sender<bool>,
}

struct Loop<'a> {
    pipeline: &'a Pipeline,
    tracker: Tracker,
    ready: VecDeque<Key>,
    queued: HashSet<Key>,
    jobs: JoinSet<(Key, Work, WorkResult)>,
    running: HashMap<Id, Key>,
    retries: DelayQueue<Key>,
    timers: HashMap<Key, delay_queue::Key>,
    listed: HashSet<Option<String>>,
}

impl Pipeline {
    /// Runs until `shutdown` (then drains) or until the future is dropped.
    pub async fn run(
        &self,
        observations: impl Stream<Item = Observation> + Unpin,
        shutdown: CancellationToken,
    ) {
        let mut state = Loop {
            pipeline: self,
            tracker: Tracker::default(),
            ready: VecDeque::new(),
            queued: HashSet::new(),
            jobs: JoinSet::new(),
            running: HashMap::new(),
            retries: DelayQueue::new(),
            timers: HashMap::new(),
            listed: HashSet::new(),
        };
        let _synced = ClearOnDrop(&self.synced);
        state.run(observations, shutdown).await;
    }
}

/// Clears the synced flag however the pipeline ends (including being dropped).
struct ClearOnDrop<'a>(&'a watch::Sender<bool>);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

impl Loop<'_> {
    async fn run(
        &mut self,
        mut observations: impl Stream<Item = Observation> + Unpin,
        shutdown: CancellationToken,
    ) {
        let mut links = self.pipeline.broker.links();
        loop {
            self.start_ready();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(joined) = self.jobs.join_next_with_id(), if !self.jobs.is_empty() => self.finished(joined),
                Some(expired) = self.retries.next(), if !self.retries.is_empty() => {
                    let key = expired.into_inner();
                    self.timers.remove(&key);
                    if self.tracker.retry_due(&key) {
                        self.enqueue(key);
                    }
                }
                changed = links.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let connected = links.borrow_and_update().is_some();
                    if connected {
                        self.retry_now();
                    }
                }
                observation = observations.next() => match observation {
                    Some(observation) => self.observe(observation),
                    None => {
                        tracing::error!("the watch ended");
                        break;
                    }
                },
            }
        }
        self.drain().await;
    }

    fn observe(&mut self, observation: Observation) {
        match observation {
            Observation::Seen(snapshot) => {
                if self.tracker.seen(&snapshot) {
                    self.enqueue(snapshot.key);
                }
            }
            Observation::Gone(snapshot) => {
                if self.tracker.gone(&snapshot) {
                    self.enqueue(snapshot.key);
                }
            }
            Observation::Relisted { namespace, present } => {
                for key in self.tracker.relisted(namespace.as_deref(), &present) {
                    tracing::info!(object = %key, "deleted while the watch was down");
                    self.enqueue(key);
                }
                self.listed.insert(namespace);
                if self.listed.len() >= self.pipeline.scopes {
                    self.pipeline
                        .synced
                        .send_if_modified(|synced| !std::mem::replace(synced, true));
                }
            }
        }
        self.pipeline
            .metrics
            .watched_objects
            .set(i64::try_from(self.tracker.len()).unwrap_or(i64::MAX));
    }

    fn enqueue(&mut self, key: Key) {
        if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
        }
    }

    fn start_ready(&mut self) {
        while self.jobs.len() < self.pipeline.settings.concurrency {
            let Some(key) = self.ready.pop_front() else {
                return;
            };
            self.queued.remove(&key);
            let Some(work) = self.tracker.start(&key) else {
                continue;
            };
            let announcer = self.pipeline.announcer.clone();
            let task_key = key.clone();
            let handle = self.jobs.spawn(async move {
                let outcome = announcer.run(&task_key, &work).await;
                (task_key, work, outcome)
            });
            self.running.insert(handle.id(), key);
        }
    }

    fn finished(&mut self, joined: Result<(Id, (Key, Work, WorkResult)), tokio::task::JoinError>) {
        let (key, work, outcome) = match joined {
            Ok((id, result)) => {
                self.running.remove(&id);
                result
            }
            Err(error) => {
                // A panic in an announcement (a bug): retry the object later.
                let key = self.running.remove(&error.id());
                tracing::error!(object = ?key, error = %error, "announcement task failed");
                if let Some(key) = key {
                    self.tracker.fail_busy(&key);
                    self.retry_later(key, self.pipeline.settings.retry.max);
                }
                return;
            }
        };
        match self
            .tracker
            .finish(&key, &work, outcome, &self.pipeline.settings.retry)
        {
            Next::Run => self.enqueue(key),
            Next::RetryAfter(delay) => self.retry_later(key, delay),
            Next::Idle => {}
        }
        self.pipeline
            .metrics
            .watched_objects
            .set(i64::try_from(self.tracker.len()).unwrap_or(i64::MAX));
    }

    fn retry_later(&mut self, key: Key, delay: Duration) {
        if let Some(timer) = self.timers.get(&key) {
            self.retries.reset(timer, delay);
        } else {
            let timer = self.retries.insert(key.clone(), delay);
            self.timers.insert(key, timer);
        }
    }

    /// The broker is back: everything waiting for a retry goes now.
    fn retry_now(&mut self) {
        if self.timers.is_empty() {
            return;
        }
        tracing::info!(
            objects = self.timers.len(),
            "broker connected; retrying parked announcements"
        );
        for timer in self.timers.values() {
            self.retries.reset(timer, Duration::ZERO);
        }
    }

    async fn drain(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        let grace = self.pipeline.settings.shutdown_grace;
        tracing::info!(
            in_flight = self.jobs.len(),
            "waiting for in-flight announcements"
        );
        let drained = tokio::time::timeout(grace, async {
            while let Some(joined) = self.jobs.join_next_with_id().await {
                self.finished(joined);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = self.jobs.len(),
                "shutdown grace over; abandoning in-flight announcements"
            );
            self.jobs.abort_all();
        }
    }
}
