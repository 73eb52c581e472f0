//! Watch answers: newline-delimited JSON events on a chunked HTTP body, as real API
//! servers stream them. A too-old `resourceVersion` gets HTTP 200 and one `ERROR` event
//! carrying a 410 `Status` (what kube-runtime's watcher turns into a re-list); bookmarks
//! go out on a timer when the client allows them; the stream ends at `timeoutSeconds`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval};

use super::resource::ResourceKind;
use super::store::{Scope, Shared, StoredEvent, WatchStart};

/// The parameters of one watch call.
pub struct WatchRequest {
    pub scope: Scope,
    pub start: WatchStart,
    pub timeout: Duration,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: initial `ADDED` events end with a bookmark annotated
    /// `k8s.io/initial-events-end` (the streaming-list protocol).
    pub send_initial_events: bool,
}

/// Answers a watch call with a streaming body.
pub fn respond(shared: Arc<Shared>, request: WatchRequest) -> Response {
    let kind = request.scope.kind;
    let subscription = shared.write(|store| {
        store.count_watch();
        store.subscribe(request.scope, request.start)
    });
    let mut pending = VecDeque::new();
    let live = match subscription {
        Err(expired) => {
            pending.push_back(line(
                &json!({"type": "ERROR", "object": expired.to_status()}),
            ));
            None
        }
        Ok(subscription) => {
            pending.extend(subscription.initial.iter().map(|event| event_line(event)));
            if request.send_initial_events {
                pending.push_back(bookmark_line(kind, subscription.resource_version, true));
            }
            Some(subscription.live)
        }
    };
    let bookmarks = shared
        .bookmark_interval()
        .filter(|_| request.bookmarks)
        .map(|period| tokio::time::interval_at(Instant::now() + period, period));
    let stream = WatchStream {
        kind,
        pending,
        live,
        deadline: Instant::now() + request.timeout,
        bookmarks,
        open: OpenWatch::new(shared),
    };
    let body = Body::from_stream(futures::stream::unfold(stream, WatchStream::next_chunk));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Counts the stream as an open watch for as long as the response body lives, which
/// ends when the stream completes or the connection is dropped.
struct OpenWatch(Arc<Shared>);

impl OpenWatch {
    fn new(shared: Arc<Shared>) -> Self {
        shared.watch_opened();
        Self(shared)
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.watch_closed();
    }
}

struct WatchStream {
    kind: ResourceKind,
    pending: VecDeque<Bytes>,
    /// `None` once nothing more will come (after a 410); the stream ends when drained.
    live: Option<mpsc::UnboundedReceiver<Arc<StoredEvent>>>,
    deadline: Instant,
    bookmarks: Option<Interval>,
    open: OpenWatch,
}

impl WatchStream {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some((Ok(chunk), self));
            }
            let live = self.live.as_mut()?;
            tokio::select! {
                () = tokio::time::sleep_until(self.deadline) => return None,
                event = live.recv() => match event {
                    Some(event) => self.pending.push_back(event_line(&event)),
                    None => return None,
                },
                () = tick(self.bookmarks.as_mut()) => self.bookmark(),
            }
        }
    }

    /// Queues everything already sent to this watch, then a bookmark at the current
    /// version: read under the store lock, so the bookmark never claims a version whose
    /// event this client has not been given.
    fn bookmark(&mut self) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let pending = &mut self.pending;
        let version = self.open.0.read(|store| {
            while let Ok(event) = live.try_recv() {
                pending.push_back(event_line(&event));
            }
            store.resource_version()
        });
        self.pending
            .push_back(bookmark_line(self.kind, version, false));
    }
}

async fn tick(interval: Option<&mut Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn event_line(event: &StoredEvent) -> Bytes {
    line(&json!({"type": event.event_type.as_str(), "object": event.object}))
}

fn bookmark_line(kind: ResourceKind, version: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": version.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(&json!({
        "type": "BOOKMARK",
        "object": {"kind": kind.kind(), "apiVersion": kind.api_version(), "metadata": metadata},
    }))
}
