//! The fake Kubernetes API server, driven by the real kube-rs client and kube-runtime's
//! watcher: what the notifier will rely on has to behave like a real API server.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spritz_sandbox::kubernetes::{FakeKubernetes, ResourceKind};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
const NOTIFIED: &str = "spritz.sh/lifecycle-notified-phase";

#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize)]
#[kube(
    group = "spritz.sh",
    version = "v1",
    kind = "Spritz",
    plural = "spritzes",
    namespaced,
    status = "SpritzStatus",
    schema = "disabled"
)]
struct SpritzSpec {}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct SpritzStatus {
    phase: Option<String>,
}

fn phase(spritz: &Spritz) -> Option<&str> {
    spritz
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
}

/// Runs kube-runtime's watcher (with its default backoff, as the notifier would) and
/// hands every item to the test.
fn spawn_watcher(
    api: Api<Spritz>,
) -> mpsc::UnboundedReceiver<Result<watcher::Event<Spritz>, String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(item) = stream.next().await {
            if tx.send(item.map_err(|err| err.to_string())).is_err() {
                return;
            }
        }
    });
    rx
}

/// Receives watcher items until one satisfies `wanted`, or fails after [`WAIT`].
async fn next_matching<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    what: &str,
    wanted: impl FnMut(&T) -> bool,
) {
    take_matching(rx, what, wanted).await;
}

/// Like [`next_matching`], returning the item.
async fn take_matching<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    what: &str,
    mut wanted: impl FnMut(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) if wanted(&item) => return item,
            Ok(Some(_)) => {}
            Ok(None) => panic!("watcher ended while waiting for {what}"),
            Err(_) => panic!("no {what} within {WAIT:?}"),
        }
    }
}

fn is_apply(item: &Result<watcher::Event<Spritz>, String>, name: &str, want: Option<&str>) -> bool {
    match item {
        Ok(watcher::Event::Apply(spritz) | watcher::Event::InitApply(spritz)) => {
            spritz.name_any() == name && phase(spritz) == want
        }
        _ => false,
    }
}

fn is_init_done(item: &Result<watcher::Event<Spritz>, String>) -> bool {
    matches!(item, Ok(watcher::Event::InitDone))
}

#[tokio::test]
async fn a_watcher_sees_a_spritz_created_changed_and_deleted() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    let existing = fake.create_spritz("team-a", "old", Some("Ready"));
    let api: Api<Spritz> = Api::all(fake.client().expect("client"));
    let mut events = spawn_watcher(api.clone());

    next_matching(&mut events, "initial Ready", |item| {
        is_apply(item, "old", Some("Ready"))
    })
    .await;
    next_matching(&mut events, "init done", is_init_done).await;

    let created = fake.create_spritz("team-b", "new", None);
    next_matching(&mut events, "new without phase", |item| {
        is_apply(item, "new", None)
    })
    .await;
    fake.set_phase("team-b", "new", "Provisioning");
    next_matching(&mut events, "Provisioning", |item| {
        is_apply(item, "new", Some("Provisioning"))
    })
    .await;
    fake.delete_spritz("team-b", "new");
    let deleted = take_matching(
        &mut events,
        "delete",
        |item| matches!(item, Ok(watcher::Event::Delete(spritz)) if spritz.name_any() == "new"),
    )
    .await;
    if let Ok(watcher::Event::Delete(spritz)) = deleted {
        assert_eq!(spritz.uid().as_deref(), Some(created.uid.as_str()));
        assert_eq!(spritz.namespace().as_deref(), Some("team-b"));
    }

    let listed = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].uid().as_deref(),
        Some(existing.uid.as_str())
    );
    assert_eq!(
        listed.metadata.resource_version,
        Some(fake.resource_version().to_string())
    );
    let namespaced: Api<Spritz> = Api::namespaced(fake.client().expect("client"), "team-b");
    assert!(
        namespaced
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn a_merge_patch_of_an_annotation_is_visible_and_emits_modified() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    let spritz = fake.create_spritz("team-a", "concierge", Some("Ready"));
    let api: Api<Spritz> = Api::namespaced(fake.client().expect("client"), "team-a");
    let mut stream = api
        .watch(&WatchParams::default(), &spritz.resource_version)
        .await
        .expect("watch starts")
        .boxed();

    let patch = json!({"metadata": {"annotations": {NOTIFIED: "Ready"}}});
    let patched = api
        .patch("concierge", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    assert_eq!(
        patched.annotations().get(NOTIFIED).map(String::as_str),
        Some("Ready")
    );
    assert_ne!(
        patched.resource_version(),
        Some(spritz.resource_version.clone())
    );

    let event = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("an event in time")
        .expect("a good event")
        .expect("the stream is open");
    let WatchEvent::Modified(modified) = event else {
        panic!("expected MODIFIED, got {event:?}");
    };
    assert_eq!(
        modified.annotations().get(NOTIFIED).map(String::as_str),
        Some("Ready")
    );
    assert_eq!(phase(&modified), Some("Ready"));
    fake.wait_for_annotation("team-a", "concierge", NOTIFIED, "Ready", WAIT)
        .await
        .expect("annotation recorded");

    let again = api
        .patch("concierge", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("no-op patch");
    assert_eq!(again.resource_version(), patched.resource_version());
}

#[tokio::test]
async fn injected_patch_failures_answer_500_and_change_nothing() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    fake.create_spritz("team-a", "concierge", Some("Expired"));
    let api: Api<Spritz> = Api::namespaced(fake.client().expect("client"), "team-a");
    let patch = Patch::Merge(json!({"metadata": {"annotations": {NOTIFIED: "Expired"}}}));
    fake.fail_next_patches(1);

    let err = api
        .patch("concierge", &PatchParams::default(), &patch)
        .await
        .expect_err("injected failure");
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(status.code, 500);
    assert!(fake.annotations("team-a", "concierge").is_empty());

    api.patch("concierge", &PatchParams::default(), &patch)
        .await
        .expect("the next patch succeeds");
    assert_eq!(
        fake.annotations("team-a", "concierge")
            .get(NOTIFIED)
            .map(String::as_str),
        Some("Expired")
    );
    assert_eq!(fake.request_counts().patches, 2);
}

#[tokio::test]
async fn resuming_from_a_compacted_version_gets_410_and_the_watcher_relists() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    let spritz = fake.create_spritz("team-a", "concierge", Some("Ready"));
    let api: Api<Spritz> = Api::all(fake.client().expect("client"));
    fake.compact();

    let mut stream = api
        .watch(&WatchParams::default(), &spritz.resource_version)
        .await
        .expect("a too-old watch still answers 200")
        .boxed();
    let event = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("an event in time")
        .expect("a good event")
        .expect("the stream is open");
    let WatchEvent::Error(status) = event else {
        panic!("expected ERROR, got {event:?}");
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));

    let mut events = spawn_watcher(api);
    next_matching(&mut events, "init done", is_init_done).await;
    fake.wait_for_watch_connections(1, WAIT)
        .await
        .expect("watching");
    let lists_before = fake.request_counts().lists;
    fake.set_phase("team-a", "concierge", "Expiring");
    next_matching(&mut events, "Expiring", |item| {
        is_apply(item, "concierge", Some("Expiring"))
    })
    .await;

    fake.compact();
    fake.end_watches();
    next_matching(&mut events, "the 410 error", |item| {
        matches!(item, Err(message) if message.contains("410") || message.to_lowercase().contains("expired"))
    })
    .await;
    next_matching(&mut events, "init done after re-list", is_init_done).await;
    assert!(fake.request_counts().lists > lists_before);

    fake.set_phase("team-a", "concierge", "Expired");
    next_matching(&mut events, "Expired after recovery", |item| {
        is_apply(item, "concierge", Some("Expired"))
    })
    .await;
}

#[tokio::test]
async fn a_restart_drops_watches_and_the_watcher_recovers() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    let addr = fake.local_addr();
    fake.create_spritz("team-a", "concierge", Some("Ready"));
    let mut events = spawn_watcher(Api::all(fake.client().expect("client")));
    next_matching(&mut events, "init done", is_init_done).await;
    fake.wait_for_watch_connections(1, WAIT)
        .await
        .expect("watching");
    let before = fake.request_counts();

    fake.restart().await;
    assert_eq!(fake.local_addr(), addr);
    fake.wait_until(WAIT, |fake| fake.request_counts().expired > before.expired)
        .await
        .expect("the resumed watch was told 410");
    next_matching(&mut events, "init done after restart", is_init_done).await;
    assert!(fake.request_counts().lists > before.lists);

    fake.set_phase("team-a", "concierge", "Terminating");
    next_matching(&mut events, "Terminating after restart", |item| {
        is_apply(item, "concierge", Some("Terminating"))
    })
    .await;
    fake.wait_for_watch_connections(1, WAIT)
        .await
        .expect("watching again");
}

#[tokio::test]
async fn watches_get_bookmarks_when_they_allow_them() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    fake.set_bookmark_interval(Some(Duration::from_millis(20)));
    let spritz = fake.create_spritz("team-a", "concierge", None);
    let api: Api<Spritz> = Api::all(fake.client().expect("client"));
    let mut stream = api
        .watch(&WatchParams::default(), &spritz.resource_version)
        .await
        .expect("watch starts")
        .boxed();
    fake.set_phase("team-a", "concierge", "Ready");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(WAIT, stream.try_next())
            .await
            .expect("an event in time")
            .expect("a good event")
            .expect("the stream is open");
        seen.push(event);
    }
    assert!(matches!(seen[0], WatchEvent::Modified(_)), "{seen:?}");
    let WatchEvent::Bookmark(bookmark) = &seen[1] else {
        panic!("expected a bookmark, got {seen:?}");
    };
    assert_eq!(
        bookmark.metadata.resource_version,
        fake.resource_version().to_string()
    );
}

#[tokio::test]
async fn a_watch_ends_at_its_timeout() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    let api: Api<Spritz> = Api::all(fake.client().expect("client"));
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .expect("watch starts")
        .boxed();
    let end = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("the stream ends in time")
        .expect("it ends cleanly");
    assert!(end.is_none());
    fake.wait_until(WAIT, |fake| fake.watch_connections() == 0)
        .await
        .expect("the watch is closed");
}

#[tokio::test]
async fn lists_page_at_one_resource_version() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    for name in ["a", "b", "c"] {
        fake.create_spritz("team-a", name, Some("Ready"));
    }
    let api: Api<Spritz> = Api::all(fake.client().expect("client"));
    let first = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("a continue token");
    fake.create_spritz("team-a", "d", None);
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let names: Vec<String> = second.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["c", "d"]);
    assert!(second.metadata.continue_.is_none());
}

#[tokio::test]
async fn a_streaming_list_watcher_gets_initial_events_and_then_changes() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    fake.create_spritz("team-a", "concierge", Some("Provisioning"));
    let api: Api<Spritz> = Api::all(fake.client().expect("client"));
    let (tx, mut events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default().streaming_lists())
            .default_backoff()
            .boxed();
        while let Some(item) = stream.next().await {
            if tx.send(item.map_err(|err| err.to_string())).is_err() {
                return;
            }
        }
    });
    next_matching(&mut events, "initial Provisioning", |item| {
        is_apply(item, "concierge", Some("Provisioning"))
    })
    .await;
    next_matching(&mut events, "init done", is_init_done).await;
    fake.set_phase("team-a", "concierge", "Ready");
    next_matching(&mut events, "Ready", |item| {
        is_apply(item, "concierge", Some("Ready"))
    })
    .await;
}

#[tokio::test]
async fn a_watcher_recovers_from_failed_lists_and_watches() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    fake.create_spritz("team-a", "concierge", Some("Ready"));
    fake.fail_next_lists(1);
    fake.fail_next_watches(1);
    let mut events = spawn_watcher(Api::all(fake.client().expect("client")));
    next_matching(&mut events, "the list failure", |item| item.is_err()).await;
    next_matching(&mut events, "init done", is_init_done).await;
    next_matching(&mut events, "the watch failure", |item| item.is_err()).await;
    fake.wait_for_watch_connections(1, WAIT)
        .await
        .expect("watching");
    fake.set_phase("team-a", "concierge", "Error");
    next_matching(&mut events, "Error", |item| {
        is_apply(item, "concierge", Some("Error"))
    })
    .await;
}

#[tokio::test]
async fn deleting_a_spritz_with_a_finalizer_waits_for_its_removal() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    fake.create_spritz("team-a", "concierge", Some("Ready"));
    let api: Api<Spritz> = Api::namespaced(fake.client().expect("client"), "team-a");
    let add = Patch::Merge(json!({"metadata": {"finalizers": ["spritz.sh/notifier"]}}));
    api.patch("concierge", &PatchParams::default(), &add)
        .await
        .expect("finalizer added");
    let mut events = spawn_watcher(Api::all(fake.client().expect("client")));
    next_matching(&mut events, "init done", is_init_done).await;

    fake.delete_spritz("team-a", "concierge");
    next_matching(&mut events, "deletion pending", |item| {
        matches!(item, Ok(watcher::Event::Apply(spritz)) if spritz.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(fake.spritz("team-a", "concierge").is_some());

    let remove = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    api.patch("concierge", &PatchParams::default(), &remove)
        .await
        .expect("finalizer removed");
    next_matching(&mut events, "delete", |item| {
        matches!(item, Ok(watcher::Event::Delete(spritz)) if spritz.name_any() == "concierge")
    })
    .await;
    assert!(fake.spritz("team-a", "concierge").is_none());
}

#[tokio::test]
async fn the_control_api_drives_the_same_operations_over_http() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    let http = spritz_sandbox::tls::http_client();
    let url = |path: &str| format!("{}/_sandbox{path}", fake.base_url());
    let mut events = spawn_watcher(Api::all(fake.client().expect("client")));
    next_matching(&mut events, "init done", is_init_done).await;

    let created = http
        .post(url("/spritzes"))
        .json(&json!({"namespace": "team-a", "name": "concierge", "phase": "Provisioning"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let created: serde_json::Value = created.json().await.expect("created json");
    assert_eq!(created["name"], "concierge");
    let phase = http
        .put(url("/spritzes/team-a/concierge/phase"))
        .json(&json!({"phase": "Ready"}))
        .send()
        .await
        .expect("set phase");
    assert!(phase.status().is_success());
    next_matching(&mut events, "Ready", |item| {
        is_apply(item, "concierge", Some("Ready"))
    })
    .await;

    let before = fake.request_counts();
    let restarted = http.post(url("/restart")).send().await.expect("restart");
    assert_eq!(restarted.status(), reqwest::StatusCode::NO_CONTENT);
    fake.wait_until(WAIT, |fake| fake.request_counts().expired > before.expired)
        .await
        .expect("the resumed watch was told 410");

    let fault = http
        .post(url("/faults"))
        .json(&json!({"kind": "patch", "count": 1}))
        .send()
        .await
        .expect("fault");
    assert!(fault.status().is_success());
    let api: Api<Spritz> = Api::namespaced(fake.client().expect("client"), "team-a");
    let patch = Patch::Merge(json!({"metadata": {"annotations": {NOTIFIED: "Ready"}}}));
    assert!(
        api.patch("concierge", &PatchParams::default(), &patch)
            .await
            .is_err()
    );
    api.patch("concierge", &PatchParams::default(), &patch)
        .await
        .expect("patch after the fault");
    let waited = http
        .get(url("/spritzes/team-a/concierge/annotations/wait"))
        .query(&[
            ("key", NOTIFIED),
            ("value", "Ready"),
            ("timeout_ms", "5000"),
        ])
        .send()
        .await
        .expect("wait");
    assert_eq!(waited.status(), reqwest::StatusCode::OK);

    let stats: serde_json::Value = http
        .get(url("/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    assert_eq!(stats["requests"]["patches"], 2);
    let deleted = http
        .delete(url("/spritzes/team-a/concierge"))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), reqwest::StatusCode::NO_CONTENT);
    assert!(fake.spritz("team-a", "concierge").is_none());
}

#[tokio::test]
async fn the_kubeconfig_points_kube_rs_at_the_fake() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    fake.create_spritz("team-a", "concierge", Some("Ready"));
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&fake.kubeconfig()).expect("parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a config");
    let client = kube::Client::try_from(config).expect("client");
    let version = client.apiserver_version().await.expect("version");
    assert_eq!(version.major, "1");
    let spritzes: Api<Spritz> = Api::default_namespaced(client.clone());
    assert!(
        spritzes
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    let spritzes: Api<Spritz> = Api::namespaced(client, "team-a");
    let found = spritzes.get("concierge").await.expect("get");
    assert_eq!(phase(&found), Some("Ready"));
}

fn lease(holder: &str) -> Lease {
    Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("spritz-notifier".to_owned()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn lease_create_and_replace_follow_optimistic_concurrency() {
    let fake = FakeKubernetes::start().await.expect("fake starts");
    let api: Api<Lease> = Api::namespaced(fake.client().expect("client"), "spritz");
    let name = "spritz-notifier";
    assert!(api.get_opt(name).await.expect("get").is_none());

    let created = api
        .create(&PostParams::default(), &lease("replica-a"))
        .await
        .expect("create");
    let err = api
        .create(&PostParams::default(), &lease("replica-b"))
        .await
        .expect_err("a second create");
    assert!(
        matches!(&err, kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists"),
        "{err:?}"
    );

    let err = api
        .create(&PostParams::default(), &created)
        .await
        .expect_err("a create that carries a resourceVersion");
    assert!(
        matches!(&err, kube::Error::Api(status) if status.code == 500),
        "{err:?}"
    );

    let mut renewed = created.clone();
    if let Some(spec) = renewed.spec.as_mut() {
        spec.lease_transitions = Some(1);
    }
    let renewed = api
        .replace(name, &PostParams::default(), &renewed)
        .await
        .expect("replace with the current version");
    assert_ne!(renewed.resource_version(), created.resource_version());

    let mut stale = created.clone();
    if let Some(spec) = stale.spec.as_mut() {
        spec.holder_identity = Some("replica-b".to_owned());
    }
    let err = api
        .replace(name, &PostParams::default(), &stale)
        .await
        .expect_err("replace with a stale version");
    assert!(
        matches!(&err, kube::Error::Api(status) if status.code == 409 && status.reason == "Conflict"),
        "{err:?}"
    );
    assert_eq!(
        fake.lease_holder("spritz", name).as_deref(),
        Some("replica-a")
    );
    assert_eq!(
        fake.lease("spritz", name).expect("lease")["spec"]["leaseTransitions"],
        1
    );

    let applied = api
        .patch(
            name,
            &PatchParams::apply("replica-b").force(),
            &Patch::Apply(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "spec": {"holderIdentity": "replica-b"},
            })),
        )
        .await
        .expect("server-side apply");
    assert_eq!(
        applied
            .spec
            .and_then(|spec| spec.holder_identity)
            .as_deref(),
        Some("replica-b")
    );

    api.delete(name, &Default::default()).await.expect("delete");
    assert!(fake.lease("spritz", name).is_none());
}

#[test]
fn the_chart_crd_names_what_the_fake_serves_and_the_phases_the_proto_knows() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/spritz-gateway/crds/spritz.sh_spritzes.yaml"
    );
    let crd = std::fs::read_to_string(path).expect("the chart's Spritz CRD");
    let lines: Vec<&str> = crd.lines().map(str::trim).collect();
    let served = ResourceKind::Spritz;
    for expected in [
        format!("name: {}", served.qualified_plural()),
        format!("group: {}", served.group()),
        format!("kind: {}", served.kind()),
        format!("listKind: {}", served.list_kind()),
        format!("plural: {}", served.plural()),
        format!("singular: {}", served.singular()),
        format!("- name: {}", served.version()),
        "scope: Namespaced".to_owned(),
        "status: {}".to_owned(),
        "jsonPath: .status.phase".to_owned(),
    ] {
        assert!(lines.contains(&expected.as_str()), "CRD lacks {expected:?}");
    }
    let enum_start = lines
        .iter()
        .position(|line| *line == "enum:")
        .expect("a phase enum");
    let phases: Vec<&str> = lines[enum_start + 1..]
        .iter()
        .map_while(|line| line.strip_prefix("- "))
        .collect();
    let expected: Vec<&str> = spritz_proto::lifecycle::Phase::ALL
        .into_iter()
        .filter(|phase| *phase != spritz_proto::lifecycle::Phase::Deleted)
        .map(|phase| phase.as_str())
        .collect();
    assert_eq!(phases, expected);
}
