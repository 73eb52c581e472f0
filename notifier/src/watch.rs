//! Watching Spritz objects: one kube-runtime watcher per scope (every namespace, or
//! each configured namespace), merged into one stream of [`Observation`]s.
//!
//! The watcher resumes from its last resource version after a dropped connection and
//! re-lists after `410 Gone`; every error it yields is counted as a watch restart and
//! followed by a backoff. A re-list is reported as [`Observation::Relisted`] with the
//! keys it contained, so objects deleted while the watch was down are noticed: a
//! re-list sends no `DELETED` events.

use std::collections::HashSet;
use std::time::Duration;

use backon::ExponentialBuilder;
use futures::{Stream, StreamExt, future};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::{self, ExponentialBackoff};

use crate::metrics::NotifierMetrics;
use crate::spritz::{Key, Snapshot, Spritz};

/// Backoff after a watch error.
#[derive(Clone, Copy, Debug)]
pub struct WatchSettings {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for WatchSettings {
    /// kube-runtime's defaults for the ceiling; a quicker first retry, since an API
    /// server restart (the common cause) is over in a moment.
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// One thing the watch saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// Created, changed, or listed.
    Seen(Snapshot),
    /// Deleted (a `DELETED` event).
    Gone(Snapshot),
    /// A list of `namespace` (`None`: every namespace) completed with exactly these
    /// objects.
    Relisted {
        namespace: Option<String>,
        present: HashSet<Key>,
    },
}

/// The merged watch over `namespaces` (empty: every namespace). It never ends.
pub fn observe(
    client: &kube::Client,
    namespaces: &[String],
    settings: WatchSettings,
    metrics: &NotifierMetrics,
) -> impl Stream<Item = Observation> + Send + Unpin + use<> {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    let streams = scopes.into_iter().map(|namespace| {
        let api: Api<Spritz> = match &namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        scope_stream(api, namespace, settings, metrics.clone()).boxed()
    });
    futures::stream::select_all(streams)
}

fn scope_stream(
    api: Api<Spritz>,
    namespace: Option<String>,
    settings: WatchSettings,
    metrics: NotifierMetrics,
) -> impl Stream<Item = Observation> + Send {
    let backoff = ResetTimerBackoff::new(
        ExponentialBackoff::from(
            ExponentialBuilder::default()
                .with_min_delay(settings.min_backoff)
                .with_max_delay(settings.max_backoff)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times(),
        ),
        Duration::from_secs(120),
    );
    let mut listing: Option<HashSet<Key>> = None;
    watcher::watcher(api, watcher::Config::default())
        .backoff(backoff)
        .map(move |event| match event {
            Ok(event) => translate(event, &namespace, &mut listing),
            Err(error) => {
                metrics.watch_restarts.inc();
                tracing::warn!(namespace = ?namespace, error = %error, "watch failed; restarting with backoff");
                None
            }
        })
        .filter_map(future::ready)
}

fn translate(
    event: watcher::Event<Spritz>,
    namespace: &Option<String>,
    listing: &mut Option<HashSet<Key>>,
) -> Option<Observation> {
    match event {
        watcher::Event::Init => {
            tracing::debug!(namespace = ?namespace, "listing");
            *listing = Some(HashSet::new());
            None
        }
        watcher::Event::InitApply(spritz) => {
            let snapshot = Snapshot::of(&spritz)?;
            if let Some(listing) = listing.as_mut() {
                listing.insert(snapshot.key.clone());
            }
            Some(Observation::Seen(snapshot))
        }
        watcher::Event::InitDone => {
            let present = listing.take().unwrap_or_default();
            tracing::info!(namespace = ?namespace, objects = present.len(), "watch synced");
            Some(Observation::Relisted {
                namespace: namespace.clone(),
                present,
            })
        }
        watcher::Event::Apply(spritz) => Snapshot::of(&spritz).map(Observation::Seen),
        watcher::Event::Delete(spritz) => Snapshot::of(&spritz).map(Observation::Gone),
    }
}
