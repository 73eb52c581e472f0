//! The fake API server's etcd: objects, the global resource version counter, the event
//! history watches resume from, and the open watch subscriptions.
//!
//! Every write happens under one lock, bumps the counter, appends to the history and
//! fans the event out to matching subscribers before the lock is released, so a watch
//! that replays the history and then subscribes never misses or reorders an event.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::names;
use super::patch::{self, PatchKind};
use super::resource::ResourceKind;
use super::selector::Selector;
use super::status::ApiError;

/// How many events a watch can resume across before the oldest ones are "compacted".
const HISTORY_LIMIT: usize = 10_000;

/// Identity of a stored object; the map order is the list order (namespace, name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: ResourceKind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: ResourceKind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as a watch reports it.
#[derive(Debug)]
pub struct StoredEvent {
    pub kind: ResourceKind,
    pub event_type: EventType,
    pub resource_version: u64,
    pub object: Value,
}

/// What a watch or list is about.
#[derive(Clone, Debug)]
pub struct Scope {
    pub kind: ResourceKind,
    /// `None` for the all-namespaces path.
    pub namespace: Option<String>,
    pub selector: Selector,
}

impl Scope {
    fn matches(&self, kind: ResourceKind, object: &Value) -> bool {
        kind == self.kind
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns))
            && self.selector.matches(object)
    }
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchStart {
    /// `resourceVersion` unset or `"0"`: synthetic `ADDED` events for what exists now.
    Now,
    /// Resume: every event after this version.
    After(u64),
}

/// A new watch: the events to send first, then the live feed.
pub struct Subscription {
    pub initial: Vec<Arc<StoredEvent>>,
    pub live: mpsc::UnboundedReceiver<Arc<StoredEvent>>,
    pub resource_version: u64,
}

struct Subscriber {
    scope: Scope,
    events: mpsc::UnboundedSender<Arc<StoredEvent>>,
}

/// One page of a list answer.
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// Request counters, for tests that assert a client re-listed or was told 410.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    /// List calls answered (each page counts).
    pub lists: usize,
    /// Watch calls started, including those answered with a 410 `ERROR` event.
    pub watches: usize,
    /// Watch or list calls answered 410 Expired.
    pub expired: usize,
    /// PATCH calls received (including injected failures).
    pub patches: usize,
}

/// Which part of an object a write targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Main,
    Status,
}

/// The state behind the lock.
pub struct Store {
    objects: BTreeMap<ObjectKey, Value>,
    resource_version: u64,
    history: VecDeque<Arc<StoredEvent>>,
    /// The oldest version a watch may resume from; older ones get 410 Expired.
    oldest_valid: u64,
    subscribers: Vec<Subscriber>,
    failures: Failures,
    counts: RequestCounts,
}

/// Calls on Spritzes that are still to fail with 500 (`FakeKubernetes::fail_next_*`).
#[derive(Clone, Copy, Debug, Default)]
struct Failures {
    patches: usize,
    lists: usize,
    watches: usize,
}

impl Failures {
    fn slot(&mut self, call: Call) -> &mut usize {
        match call {
            Call::Patch => &mut self.patches,
            Call::List => &mut self.lists,
            Call::Watch => &mut self.watches,
        }
    }
}

/// The calls failures can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Patch,
    List,
    Watch,
}

impl Store {
    fn new() -> Self {
        Self {
            objects: BTreeMap::new(),
            resource_version: 1,
            history: VecDeque::new(),
            oldest_valid: 1,
            subscribers: Vec::new(),
            failures: Failures::default(),
            counts: RequestCounts::default(),
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn counts(&self) -> RequestCounts {
        self.counts
    }

    pub fn count_watch(&mut self) {
        self.counts.watches += 1;
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    pub fn objects_of(&self, kind: ResourceKind) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(key, _)| key.kind == kind)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// Makes every version issued so far too old to resume from.
    pub fn compact(&mut self) {
        self.history.clear();
        self.resource_version += 1;
        self.oldest_valid = self.resource_version;
    }

    /// Ends every open watch stream (their receivers see the channel close).
    pub fn end_watches(&mut self) {
        self.subscribers.clear();
    }

    /// Makes the next `n` calls of this kind on Spritzes answer 500.
    pub fn fail_next(&mut self, call: Call, n: usize) {
        *self.failures.slot(call) = n;
    }

    /// # Errors
    /// 500 when a failure was injected for this call.
    pub fn take_failure(&mut self, kind: ResourceKind, call: Call) -> Result<(), ApiError> {
        let remaining = self.failures.slot(call);
        if kind != ResourceKind::Spritz || *remaining == 0 {
            return Ok(());
        }
        *remaining -= 1;
        Err(ApiError::internal(format!(
            "injected failure: the fake API server failed this {call:?}"
        )))
    }

    /// # Errors
    /// 410 when resuming from a version older than the retained history.
    pub fn subscribe(&mut self, scope: Scope, start: WatchStart) -> Result<Subscription, ApiError> {
        let initial = match start {
            WatchStart::After(version) if version < self.oldest_valid => {
                self.counts.expired += 1;
                return Err(ApiError::expired(version, self.oldest_valid));
            }
            WatchStart::After(version) => self
                .history
                .iter()
                .filter(|event| event.resource_version > version)
                .filter(|event| scope.matches(event.kind, &event.object))
                .cloned()
                .collect(),
            WatchStart::Now => self
                .objects
                .iter()
                .filter(|(key, object)| scope.matches(key.kind, object))
                .map(|(key, object)| {
                    Arc::new(StoredEvent {
                        kind: key.kind,
                        event_type: EventType::Added,
                        resource_version: version_of(object),
                        object: object.clone(),
                    })
                })
                .collect(),
        };
        let (events, live) = mpsc::unbounded_channel();
        self.subscribers.push(Subscriber { scope, events });
        Ok(Subscription {
            initial,
            live,
            resource_version: self.resource_version,
        })
    }

    /// # Errors
    /// 410 for a continue token whose version was compacted away.
    pub fn list(
        &mut self,
        scope: &Scope,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let (resource_version, after) = match continue_token {
            Some(token) => {
                let (version, after) = decode_continue(token)?;
                if version < self.oldest_valid {
                    self.counts.expired += 1;
                    return Err(ApiError::expired(version, self.oldest_valid));
                }
                (version, Some(after))
            }
            None => (self.resource_version, None),
        };
        self.counts.lists += 1;
        let mut matching = self
            .objects
            .iter()
            .filter(|(key, object)| scope.matches(key.kind, object))
            .filter(|(key, _)| {
                after
                    .as_ref()
                    .is_none_or(|(ns, name)| (&key.namespace, &key.name) > (ns, name))
            })
            .map(|(_, object)| object);
        let limit = limit.filter(|limit| *limit > 0).unwrap_or(usize::MAX);
        let items: Vec<Value> = matching.by_ref().take(limit).cloned().collect();
        let remaining = matching.count();
        let continue_token = (remaining > 0)
            .then(|| items.last())
            .flatten()
            .map(|last| encode_continue(resource_version, last));
        Ok(ListPage {
            items,
            resource_version,
            continue_token,
            remaining: (remaining > 0).then_some(remaining),
        })
    }

    /// Creates an object; `keep_status` is for the test-side API, which may create a
    /// Spritz with a phase (the HTTP API drops `status` like a CRD with a status
    /// subresource does).
    ///
    /// # Errors
    /// 400 for a namespace, `apiVersion` or `kind` that is not the request's, 422
    /// without a name or with one that is no DNS subdomain, 500 with a
    /// `resourceVersion` (the server's), 409 if it exists.
    pub fn create(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        mut object: Value,
        keep_status: bool,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        for (field, expected) in [
            ("apiVersion", kind.api_version()),
            ("kind", kind.kind().to_owned()),
        ] {
            if let Some(sent) = object.get(field).and_then(Value::as_str)
                && !sent.is_empty()
                && sent != expected
            {
                return Err(ApiError::bad_request(format!(
                    "the {field} of the provided object ({sent}) does not match the {field} of the request ({expected})"
                )));
            }
        }
        let metadata = object
            .as_object_mut()
            .map(|map| map.entry("metadata").or_insert_with(|| json!({})))
            .filter(|metadata| metadata.is_object())
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        if let Some(body_namespace) = metadata["namespace"].as_str()
            && !body_namespace.is_empty()
            && body_namespace != namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let name = match (metadata["name"].as_str(), metadata["generateName"].as_str()) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(prefix)) if !prefix.is_empty() => generate_name(prefix),
            _ => {
                return Err(ApiError::invalid(
                    kind,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        if let Some(problem) = names::subdomain_problem(&name) {
            return Err(ApiError::invalid(
                kind,
                &name,
                format!("metadata.name: Invalid value: {name:?}: {problem}"),
            ));
        }
        if metadata["resourceVersion"]
            .as_str()
            .is_some_and(|version| !version.is_empty())
        {
            // What etcd3's store answers (as a 500), e.g. for a create from a copy of a
            // read object.
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let key = ObjectKey::new(kind, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(kind, &name));
        }
        metadata["name"] = json!(name);
        metadata["namespace"] = json!(namespace);
        metadata["uid"] = json!(uuid::Uuid::new_v4().to_string());
        metadata["creationTimestamp"] = json!(now());
        metadata["generation"] = json!(1);
        if let Some(map) = metadata.as_object_mut() {
            map.remove("deletionTimestamp");
            map.remove("managedFields");
        }
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(kind.kind());
        if kind.has_status_subresource()
            && !keep_status
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        Ok(self.commit(key, object, EventType::Added))
    }

    /// PUT: replace with optimistic concurrency on `metadata.resourceVersion`.
    ///
    /// # Errors
    /// 404, 400 on a name mismatch, 409 on a stale version, 422 without a version for
    /// kinds that do not allow unconditional updates.
    pub fn replace(
        &mut self,
        key: &ObjectKey,
        body: Value,
        target: Target,
    ) -> Result<Value, ApiError> {
        let kind = key.kind;
        let old = self
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, &key.name))?;
        if !body.is_object() || !body["metadata"].is_object() {
            return Err(ApiError::bad_request(
                "the request body must be an object with metadata",
            ));
        }
        if let Some(body_name) = body["metadata"]["name"].as_str()
            && body_name != key.name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({})",
                key.name
            )));
        }
        match body["metadata"]["resourceVersion"].as_str() {
            None | Some("") if !kind.allows_unconditional_update() => {
                return Err(ApiError::invalid(
                    kind,
                    &key.name,
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                ));
            }
            Some(version)
                if !version.is_empty() && version != old["metadata"]["resourceVersion"] =>
            {
                return Err(ApiError::conflict(kind, &key.name));
            }
            _ => {}
        }
        let new = scoped(kind, &old, body, target);
        Ok(self.update(key, old, new))
    }

    /// PATCH; server-side apply creates the object when it does not exist.
    ///
    /// # Errors
    /// 500 when failures were injected, 415 for an unsupported patch type, 400 for a
    /// body that is not JSON, 404, 409 when the patch carries a stale
    /// `resourceVersion`, 422 when a JSON patch does not apply.
    pub fn patch(
        &mut self,
        key: &ObjectKey,
        patch_kind: PatchKind,
        body: &Value,
        target: Target,
        field_manager: Option<&str>,
    ) -> Result<(Value, bool), ApiError> {
        let kind = key.kind;
        self.counts.patches += 1;
        self.take_failure(kind, Call::Patch)?;
        if patch_kind == PatchKind::Strategic && !kind.supports_strategic_merge() {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json",
            ));
        }
        if patch_kind == PatchKind::Apply && field_manager.is_none_or(str::is_empty) {
            return Err(ApiError::invalid(
                kind,
                &key.name,
                "fieldManager: Required value: is required for apply patch",
            ));
        }
        let Some(old) = self.objects.get(key).cloned() else {
            if patch_kind == PatchKind::Apply && target == Target::Main {
                let mut object = body.clone();
                if let Some(map) = object.as_object_mut()
                    && let Some(metadata) = map
                        .entry("metadata")
                        .or_insert_with(|| json!({}))
                        .as_object_mut()
                {
                    metadata.insert("name".to_owned(), json!(key.name));
                }
                return self
                    .create(kind, &key.namespace, object, false)
                    .map(|created| (created, true));
            }
            return Err(ApiError::not_found(kind, &key.name));
        };
        let mut patched = old.clone();
        match patch_kind {
            PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
                patch::merge(&mut patched, body);
            }
            PatchKind::Json => patch::json_patch(&mut patched, body)
                .map_err(|message| ApiError::invalid(kind, &key.name, message))?,
        }
        if !patched.is_object() || !patched["metadata"].is_object() {
            return Err(ApiError::invalid(
                kind,
                &key.name,
                "the patched object must be an object with metadata",
            ));
        }
        if let Some(version) = patched["metadata"]["resourceVersion"].as_str()
            && !version.is_empty()
            && version != old["metadata"]["resourceVersion"]
        {
            return Err(ApiError::conflict(kind, &key.name));
        }
        let new = scoped(kind, &old, patched, target);
        Ok((self.update(key, old, new), false))
    }

    /// # Errors
    /// 404, or 409 when a precondition (`uid`, `resourceVersion`) does not hold.
    pub fn delete(&mut self, key: &ObjectKey, preconditions: &Value) -> Result<Value, ApiError> {
        let old = self
            .objects
            .get(key)
            .ok_or_else(|| ApiError::not_found(key.kind, &key.name))?;
        for field in ["uid", "resourceVersion"] {
            if let Some(expected) = preconditions[field].as_str()
                && old["metadata"][field].as_str() != Some(expected)
            {
                return Err(ApiError::conflict(key.kind, &key.name));
            }
        }
        if has_finalizers(old) {
            // Deletion waits for the finalizers to be removed; only the first call marks it.
            if old["metadata"]["deletionTimestamp"].is_string() {
                return Ok(old.clone());
            }
            let mut marked = old.clone();
            let generation = old["metadata"]["generation"].as_u64().unwrap_or(1);
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            marked["metadata"]["generation"] = json!(generation + 1);
            return Ok(self.commit(key.clone(), marked, EventType::Modified));
        }
        Ok(self.remove(key))
    }

    fn remove(&mut self, key: &ObjectKey) -> Value {
        let mut object = self.objects.remove(key).unwrap_or_default();
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.record(key.kind, EventType::Deleted, object.clone());
        object
    }

    /// Test-side write: changes an object through `change` and records a `MODIFIED`
    /// event unless nothing changed.
    pub fn modify(&mut self, key: &ObjectKey, change: impl FnOnce(&mut Value)) -> Option<Value> {
        let old = self.objects.get(key)?.clone();
        let mut new = old.clone();
        change(&mut new);
        Some(self.update(key, old, new))
    }

    fn update(&mut self, key: &ObjectKey, old: Value, mut new: Value) -> Value {
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == old {
            return old;
        }
        if new.get("spec") != old.get("spec") {
            let generation = old["metadata"]["generation"].as_u64().unwrap_or(1);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        let committed = self.commit(key.clone(), new, EventType::Modified);
        if committed["metadata"]["deletionTimestamp"].is_string() && !has_finalizers(&committed) {
            // The last finalizer is gone: the pending deletion completes.
            return self.remove(key);
        }
        committed
    }

    fn commit(&mut self, key: ObjectKey, mut object: Value, event_type: EventType) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.objects.insert(key.clone(), object.clone());
        self.record(key.kind, event_type, object.clone());
        object
    }

    fn record(&mut self, kind: ResourceKind, event_type: EventType, object: Value) {
        let event = Arc::new(StoredEvent {
            kind,
            event_type,
            resource_version: self.resource_version,
            object,
        });
        self.subscribers.retain(|subscriber| {
            !subscriber.scope.matches(kind, &event.object)
                || subscriber.events.send(event.clone()).is_ok()
        });
        self.history.push_back(event);
        while self.history.len() > HISTORY_LIMIT {
            if let Some(dropped) = self.history.pop_front() {
                self.oldest_valid = dropped.resource_version;
            }
        }
    }
}

/// Applies the status subresource rule to the result of a write.
fn scoped(kind: ResourceKind, old: &Value, mut new: Value, target: Target) -> Value {
    if kind.has_status_subresource() {
        match target {
            Target::Main => match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            },
            Target::Status => {
                let status = new.get("status").cloned();
                new = old.clone();
                match status {
                    Some(status) => new["status"] = status,
                    None => {
                        if let Some(map) = new.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
        }
    }
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = old["kind"].clone();
    // Identity and lifecycle fields are the server's, whatever the client sent.
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match (old["metadata"].get(field), new["metadata"].as_object_mut()) {
            (Some(value), Some(metadata)) => {
                metadata.insert(field.to_owned(), value.clone());
            }
            (None, Some(metadata)) => {
                metadata.remove(field);
            }
            _ => {}
        }
    }
    new
}

fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|finalizers| !finalizers.is_empty())
}

pub fn version_of(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|version| version.parse().ok())
        .unwrap_or_default()
}

/// `generateName` as the API server completes it: the prefix (cut to leave room)
/// and five random characters from the alphabet of `k8s.io/apimachinery/pkg/util/rand`,
/// which has no vowels (no accidental words) and no look-alikes.
fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    const MAX_PREFIX: usize = 63 - 5;
    let prefix = &prefix[..prefix.len().min(MAX_PREFIX)];
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]))
        .collect();
    format!("{prefix}{suffix}")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn encode_continue(resource_version: u64, last: &Value) -> String {
    let raw = format!(
        "{resource_version}/{}/{}",
        last["metadata"]["namespace"].as_str().unwrap_or_default(),
        last["metadata"]["name"].as_str().unwrap_or_default()
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    let invalid = || ApiError::bad_request("continue key is not valid");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)?;
    let mut parts = raw.splitn(3, '/');
    let version = parts
        .next()
        .and_then(|version| version.parse().ok())
        .ok_or_else(invalid)?;
    let namespace = parts.next().ok_or_else(invalid)?.to_owned();
    let name = parts.next().ok_or_else(invalid)?.to_owned();
    Ok((version, (namespace, name)))
}

/// The store plus what lives outside its lock: the change signal tests wait on and
/// the count of open watch streams.
pub struct Shared {
    /// The bearer token every API call must carry.
    token: String,
    store: Mutex<Store>,
    changed: watch::Sender<u64>,
    open_watches: AtomicUsize,
    bookmark_interval: Mutex<Option<Duration>>,
}

impl Shared {
    pub fn new(token: &str) -> Arc<Self> {
        Arc::new(Self {
            token: token.to_owned(),
            store: Mutex::new(Store::new()),
            changed: watch::Sender::new(0),
            open_watches: AtomicUsize::new(0),
            bookmark_interval: Mutex::new(Some(Duration::from_secs(60))),
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Reads under the lock.
    pub fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.store.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Writes under the lock, then wakes everything waiting for a change.
    pub fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let result = f(&mut self.store.lock().unwrap_or_else(PoisonError::into_inner));
        self.notify();
        result
    }

    pub fn notify(&self) {
        self.changed.send_modify(|generation| *generation += 1);
    }

    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn open_watches(&self) -> usize {
        self.open_watches.load(Ordering::SeqCst)
    }

    pub fn watch_opened(&self) {
        self.open_watches.fetch_add(1, Ordering::SeqCst);
        self.notify();
    }

    pub fn watch_closed(&self) {
        self.open_watches.fetch_sub(1, Ordering::SeqCst);
        self.notify();
    }

    pub fn bookmark_interval(&self) -> Option<Duration> {
        *self
            .bookmark_interval
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_bookmark_interval(&self, interval: Option<Duration>) {
        *self
            .bookmark_interval
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = interval;
    }
}
