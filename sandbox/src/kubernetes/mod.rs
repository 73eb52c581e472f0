//! A fake Kubernetes API server, good enough for kube-rs (`kube::Client`,
//! `kube::runtime::watcher`) and for leader election on `coordination.k8s.io/v1`
//! Leases, so the notifier can be tested without a cluster.
//!
//! Layout: [`store`] holds objects, the global resource version and the watch history;
//! [`watch`] streams watch events; [`routes`] is the HTTP surface; [`server`] owns the
//! listener and its connections (so a restart can cut them); [`patch`] and
//! [`selector`] implement patch formats and selectors; [`names`] the name rules;
//! [`status`] maps failures to `Status` answers; [`resource`] lists the served types.
//!
//! It is as strict as a real API server, following the Kubernetes API conventions
//! (<https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md>)
//! and the API reference (<https://kubernetes.io/docs/reference/using-api/api-concepts/>):
//! - every failure is a `v1` `Status` object (`kind`, `status:"Failure"`, `message`,
//!   `reason`, `code`, `details`) whose `code` is the HTTP status;
//! - without `Authorization: Bearer <token>` of this server every API call is 401
//!   `Unauthorized` (an API server without anonymous access); `/healthz`, `/livez`,
//!   `/readyz` and `/version` stay public as `system:public-info-viewer` makes them;
//! - an unknown object is 404 `NotFound` naming `<plural>.<group> "<name>"`; an unknown
//!   path is 404, a wrong method 405 `MethodNotAllowed`;
//! - names are the server's to check and to complete: a name that is no DNS subdomain is
//!   422 `Invalid`, neither `name` nor `generateName` is 422, `generateName` gets five
//!   random characters from the API server's alphabet;
//! - identity and bookkeeping are the server's: `uid`, `creationTimestamp`,
//!   `generation` and `resourceVersion` are set by it and a client's values are
//!   ignored; a create that carries a `resourceVersion` is refused (500, as etcd3's
//!   store answers); `apiVersion`, `kind` or `namespace` in the body that differ from
//!   the request are 400; a PUT or patch with a stale `resourceVersion` is 409
//!   `Conflict`, and a PUT on a custom resource without one is 422;
//! - a CRD with a status subresource: writes to the object ignore `status`, writes to
//!   `/status` ignore everything else; strategic merge patches are 415 for custom
//!   resources; server-side apply needs a `fieldManager`;
//! - watches stream newline-delimited events, resume after a `resourceVersion`, answer
//!   a compacted one with an `ERROR` event carrying 410 `Expired`, send bookmarks when
//!   allowed and end at `timeoutSeconds`; lists page with `limit`/`continue` at one
//!   resource version;
//! - deleting an object with finalizers only marks it (`deletionTimestamp`) until the
//!   last finalizer is removed.
//!
//! Tests drive it through [`FakeKubernetes`]: create Spritzes and change their phase,
//! read annotations the notifier wrote, compact history or restart the server to force
//! 410 Gone on watch resume, and inject patch failures.

mod control;
mod names;
mod patch;
mod resource;
mod routes;
mod selector;
mod server;
mod status;
mod store;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

pub use resource::ResourceKind;
pub use status::ApiError;
pub use store::RequestCounts;
use store::{Call, ObjectKey, Shared};

/// The bearer token [`FakeKubernetes::start`] requires, also the dev stack's default
/// (`deploy/local/kubeconfig.yaml.in`).
pub const DEFAULT_TOKEN: &str = "dev-kube-token";

/// A Spritz the test created, with the identity the notifier will report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpritzRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

impl SpritzRef {
    fn from_object(object: &Value) -> Self {
        let field = |name: &str| {
            object["metadata"][name]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            namespace: field("namespace"),
            name: field("name"),
            uid: field("uid"),
            resource_version: field("resourceVersion"),
        }
    }
}

/// Handle on a running fake API server; clones share it, and it stops (cutting every
/// connection) when the last clone is dropped.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use std::time::Duration;
/// use spritz_sandbox::kubernetes::FakeKubernetes;
///
/// let fake = FakeKubernetes::start().await?;
/// let client = fake.client()?; // hand this (or `fake.client_config()`) to the notifier
/// fake.create_spritz("team-a", "concierge", Some("Provisioning"));
/// fake.set_phase("team-a", "concierge", "Ready");
/// fake.wait_for_annotation(
///     "team-a",
///     "concierge",
///     "spritz.sh/lifecycle-notified-phase",
///     "Ready",
///     Duration::from_secs(10),
/// )
/// .await?;
/// fake.restart().await; // watches break; resuming gets 410 Gone, so clients re-list
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FakeKubernetes {
    shared: Arc<Shared>,
    connections: server::Connections,
    addr: SocketAddr,
    /// Keeps the server running; `None` in the handle the control API holds, which
    /// must not keep its own server alive.
    guard: Option<Arc<server::ServerGuard>>,
}

impl FakeKubernetes {
    /// Starts on `127.0.0.1` on a free port.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(crate::server::any_local_port(), DEFAULT_TOKEN).await
    }

    /// Starts on `addr` (the dev stack uses a fixed one); API calls must carry
    /// `Authorization: Bearer <token>`.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn start_on(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mut fake = Self {
            shared: Shared::new(token),
            connections: server::Connections::default(),
            addr: listener.local_addr()?,
            guard: None,
        };
        let router = routes::router(fake.shared.clone()).merge(control::router(fake.clone()));
        let guard = server::serve(listener, router, fake.connections.clone());
        fake.guard = Some(Arc::new(guard));
        tracing::debug!(addr = %fake.addr, "fake kubernetes listening");
        Ok(fake)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr())
    }

    /// The bearer token API calls must carry.
    pub fn token(&self) -> &str {
        self.shared.token()
    }

    /// A kube-rs config for this server: plain HTTP, its bearer token, default
    /// namespace `default`.
    pub fn client_config(&self) -> kube::Config {
        // `http://<socket address>` always parses; the default is never used.
        let mut config = kube::Config::new(self.base_url().parse().unwrap_or_default());
        config.auth_info.token = Some(secrecy::SecretString::from(self.token().to_owned()));
        config
    }

    /// A kubeconfig naming this server (context `spritz-sandbox`, namespace `default`,
    /// its bearer token), for a process that reads `KUBECONFIG`, or for kubectl.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: spritz-sandbox\n  cluster:\n    server: {}\n\
             users:\n\
             - name: spritz-sandbox\n  user:\n    token: {}\n\
             contexts:\n\
             - name: spritz-sandbox\n  context:\n    cluster: spritz-sandbox\n    user: spritz-sandbox\n    namespace: default\n\
             current-context: spritz-sandbox\n",
            self.base_url(),
            self.token()
        )
    }

    /// A kube-rs client for this server.
    ///
    /// # Errors
    /// When kube-rs cannot build a client from [`Self::client_config`].
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        Ok(kube::Client::try_from(self.client_config())?)
    }

    /// Creates a Spritz as the operator would, with `status.phase` when given.
    ///
    /// # Panics
    /// When it already exists (a test bug); see [`Self::try_create_spritz`].
    pub fn create_spritz(&self, namespace: &str, name: &str, phase: Option<&str>) -> SpritzRef {
        self.try_create_spritz(namespace, name, phase)
            .unwrap_or_else(|err| {
                panic!("fake kubernetes: create spritz {namespace}/{name}: {err}")
            })
    }

    /// # Errors
    /// 409 AlreadyExists when it exists.
    pub fn try_create_spritz(
        &self,
        namespace: &str,
        name: &str,
        phase: Option<&str>,
    ) -> Result<SpritzRef, ApiError> {
        let mut object = json!({
            "apiVersion": ResourceKind::Spritz.api_version(),
            "kind": ResourceKind::Spritz.kind(),
            "metadata": {"name": name, "namespace": namespace},
            "spec": {},
        });
        if let Some(phase) = phase {
            object["status"] = json!({"phase": phase});
        }
        let created = self
            .shared
            .write(|store| store.create(ResourceKind::Spritz, namespace, object, true))?;
        Ok(SpritzRef::from_object(&created))
    }

    /// Sets `status.phase` (a `MODIFIED` event unless the phase is already that).
    ///
    /// # Panics
    /// When the Spritz does not exist; see [`Self::try_set_phase`].
    pub fn set_phase(&self, namespace: &str, name: &str, phase: &str) {
        if let Err(err) = self.try_set_phase(namespace, name, phase) {
            panic!("fake kubernetes: set phase of spritz {namespace}/{name}: {err}");
        }
    }

    /// # Errors
    /// 404 when the Spritz does not exist.
    pub fn try_set_phase(
        &self,
        namespace: &str,
        name: &str,
        phase: &str,
    ) -> Result<SpritzRef, ApiError> {
        let key = ObjectKey::new(ResourceKind::Spritz, namespace, name);
        self.shared
            .write(|store| {
                store.modify(&key, |object| {
                    if !object["status"].is_object() {
                        object["status"] = json!({});
                    }
                    object["status"]["phase"] = json!(phase);
                })
            })
            .map(|object| SpritzRef::from_object(&object))
            .ok_or_else(|| ApiError::not_found(ResourceKind::Spritz, name))
    }

    /// Deletes the Spritz as `kubectl delete` would: a `DELETED` event, or, while it has
    /// finalizers, a `MODIFIED` event setting `deletionTimestamp` (the `DELETED` event
    /// follows when the last finalizer is removed). Deleting a missing one does nothing.
    pub fn delete_spritz(&self, namespace: &str, name: &str) {
        let key = ObjectKey::new(ResourceKind::Spritz, namespace, name);
        // NotFound is the only failure without preconditions, and it means "done".
        let _ = self.shared.write(|store| store.delete(&key, &Value::Null));
    }

    /// The Spritz as the API serves it.
    pub fn spritz(&self, namespace: &str, name: &str) -> Option<Value> {
        self.object(ResourceKind::Spritz, namespace, name)
    }

    /// The Spritz's annotations (empty when it has none or does not exist).
    pub fn annotations(&self, namespace: &str, name: &str) -> BTreeMap<String, String> {
        self.spritz(namespace, name)
            .and_then(|object| {
                serde_json::from_value(object["metadata"]["annotations"].clone()).ok()
            })
            .unwrap_or_default()
    }

    /// Waits until annotation `key` of the Spritz equals `value`.
    ///
    /// # Errors
    /// On timeout, naming what the annotation was instead.
    pub async fn wait_for_annotation(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_until(timeout, |fake| {
            fake.annotations(namespace, name).get(key).map(String::as_str) == Some(value)
        })
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "spritz {namespace}/{name}: annotation {key} is {:?}, not {value:?}, after {timeout:?}",
                self.annotations(namespace, name).get(key)
            )
        })
    }

    /// Waits until at least `count` watch streams are open.
    ///
    /// # Errors
    /// On timeout.
    pub async fn wait_for_watch_connections(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_until(timeout, |fake| fake.watch_connections() >= count)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{} watch connections open, not {count}, after {timeout:?}",
                    self.watch_connections()
                )
            })
    }

    /// Waits until `condition` holds, re-checking on every change to the fake (object
    /// writes, request counters, watches opening or closing) rather than by polling.
    ///
    /// # Errors
    /// When it still does not hold after `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&FakeKubernetes) -> bool,
    ) -> anyhow::Result<()> {
        let mut changes = self.shared.subscribe_changes();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(self) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => anyhow::bail!("condition not met after {timeout:?}"),
            }
        }
    }

    /// Simulates an API server restart on the same port: cuts every connection (so
    /// open watches break mid-stream) and forgets the watch history, so clients that
    /// resume from their last resource version get 410 Gone and must re-list. Objects
    /// survive, as they would in etcd.
    pub async fn restart(&self) {
        // Compact first: a client that reconnects before its connection is cut must
        // already find its version gone. Streams end only by losing their connection.
        self.restart_sparing(None).await;
    }

    /// [`Self::restart`], keeping the connection the control API was asked on.
    async fn restart_sparing(&self, spare: Option<server::ConnectionId>) {
        self.shared.write(|store| store.compact());
        self.connections.cut(spare).await;
    }

    /// Compacts the history: every resource version issued so far becomes too old, so
    /// the next watch resume gets a 410 `ERROR` event (open watches keep streaming).
    pub fn compact(&self) {
        self.shared.write(|store| store.compact());
    }

    /// Ends every open watch stream cleanly, as when `timeoutSeconds` runs out; clients
    /// resume from their last resource version.
    pub fn end_watches(&self) {
        self.shared.write(|store| store.end_watches());
    }

    /// How often open watches that allow bookmarks get a `BOOKMARK` event (default one
    /// minute, like real API servers; `None` stops them).
    pub fn set_bookmark_interval(&self, interval: Option<Duration>) {
        self.shared.set_bookmark_interval(interval);
    }

    /// The Lease as the API serves it.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.object(ResourceKind::Lease, namespace, name)
    }

    /// The Lease's `spec.holderIdentity`, if held.
    pub fn lease_holder(&self, namespace: &str, name: &str) -> Option<String> {
        self.lease(namespace, name)
            .and_then(|lease| lease["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }

    /// Writes a Lease's `spec` as another replica would (creating the Lease when
    /// missing), e.g. to make a notifier find the lease held by someone else.
    pub fn put_lease(&self, namespace: &str, name: &str, spec: Value) -> Value {
        let key = ObjectKey::new(ResourceKind::Lease, namespace, name);
        self.shared.write(|store| {
            if let Some(updated) = store.modify(&key, |lease| lease["spec"] = spec.clone()) {
                return updated;
            }
            let lease = json!({"metadata": {"name": name}, "spec": spec});
            store
                .create(ResourceKind::Lease, namespace, lease, true)
                .unwrap_or_default()
        })
    }

    /// Number of watch streams open right now.
    pub fn watch_connections(&self) -> usize {
        self.shared.open_watches()
    }

    /// Lists, watches, 410 answers and patches served so far.
    pub fn request_counts(&self) -> RequestCounts {
        self.shared.read(|store| store.counts())
    }

    /// The current global resource version.
    pub fn resource_version(&self) -> u64 {
        self.shared.read(|store| store.resource_version())
    }

    /// The next `n` PATCH calls on Spritzes (any patch type, main resource or
    /// `/status`) answer 500 InternalError and change nothing. Leases are not affected.
    pub fn fail_next_patches(&self, n: usize) {
        self.shared.write(|store| store.fail_next(Call::Patch, n));
    }

    /// The next `n` list calls on Spritzes answer 500 (to test watch restarts).
    pub fn fail_next_lists(&self, n: usize) {
        self.shared.write(|store| store.fail_next(Call::List, n));
    }

    /// The next `n` watch calls on Spritzes answer 500 before streaming anything.
    pub fn fail_next_watches(&self, n: usize) {
        self.shared.write(|store| store.fail_next(Call::Watch, n));
    }

    /// Every stored object of `kind`, in list order.
    fn objects(&self, kind: ResourceKind) -> Vec<Value> {
        self.shared.read(|store| store.objects_of(kind))
    }

    fn object(&self, kind: ResourceKind, namespace: &str, name: &str) -> Option<Value> {
        let key = ObjectKey::new(kind, namespace, name);
        self.shared.read(|store| store.get(&key).cloned())
    }
}
