//! The HTTP surface: discovery, health, and list/watch/get/create/replace/patch/delete
//! for every [`ResourceKind`] under its real path. Handlers only parse the request and
//! call the store; failures become `Status` answers through [`ApiError`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::patch::PatchKind;
use super::resource::ResourceKind;
use super::selector::Selector;
use super::status::ApiError;
use super::store::{Call, ObjectKey, Scope, Shared, Target, WatchStart};
use super::watch::{self, WatchRequest};

type ApiResult = Result<Response, ApiError>;

/// Real API servers pick 30–60 minutes when a watch names no timeout.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

pub fn router(shared: Arc<Shared>) -> Router {
    // Health and version are public on real API servers (`system:public-info-viewer`);
    // everything else needs the bearer token.
    let public = Router::new()
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/version", get(version));
    let api = Router::new()
        .route("/api", get(core_versions))
        .route("/apis", get(groups))
        .route("/apis/{group}/{version}", get(resources))
        .route("/apis/{group}/{version}/{plural}", get(list_all))
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
            get(list_namespaced).post(create),
        )
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
            get(get_object).put(replace).patch(patch).delete(delete),
        )
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/{subresource}",
            get(get_subresource)
                .put(replace_subresource)
                .patch(patch_subresource),
        )
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    public
        .merge(api)
        .layer(axum::middleware::from_fn(log_request))
        .with_state(shared)
}

/// 401 `Unauthorized` without `Authorization: Bearer <token>` of this server, as an API
/// server without anonymous access answers.
async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = crate::spritz_http::bearer(request.headers());
    if token.as_deref() != Some(shared.token()) {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

/// One debug line per call (method, path, status): enough to follow a test's traffic
/// with `RUST_LOG=spritz_sandbox=debug`, without bodies.
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = next.run(request).await;
    tracing::debug!(%method, %uri, status = response.status().as_u16(), "fake kubernetes call");
    response
}

async fn ok() -> &'static str {
    "ok"
}

async fn version() -> Response {
    axum::Json(json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-spritz-sandbox",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }))
    .into_response()
}

async fn core_versions() -> Response {
    axum::Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }))
    .into_response()
}

async fn groups() -> Response {
    let groups: Vec<Value> = ResourceKind::ALL
        .into_iter()
        .map(|kind| {
            let version = json!({"groupVersion": kind.api_version(), "version": kind.version()});
            json!({"name": kind.group(), "versions": [version], "preferredVersion": version})
        })
        .collect();
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        .into_response()
}

async fn resources(Path((group, version)): Path<(String, String)>) -> ApiResult {
    let kinds: Vec<ResourceKind> = ResourceKind::ALL
        .into_iter()
        .filter(|kind| kind.group() == group && kind.version() == version)
        .collect();
    if kinds.is_empty() {
        return Err(ApiError::no_route());
    }
    let mut resources = Vec::new();
    for kind in kinds {
        resources.push(json!({
            "name": kind.plural(),
            "singularName": kind.singular(),
            "namespaced": true,
            "kind": kind.kind(),
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        }));
        if kind.has_status_subresource() {
            resources.push(json!({
                "name": format!("{}/status", kind.plural()),
                "singularName": "",
                "namespaced": true,
                "kind": kind.kind(),
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    Ok(axum::Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"),
        "resources": resources,
    }))
    .into_response())
}

/// Query parameters, parsed leniently (kube-rs sends `?&watch=true…`).
struct Params(HashMap<String, String>);

impl Params {
    fn parse(raw: Option<String>) -> Self {
        Self(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("true") || self.get(key) == Some("1")
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        self.get(key)
            .filter(|value| !value.is_empty())
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid {key}: {value:?}")))
            })
            .transpose()
    }
}

fn kind_of(group: &str, version: &str, plural: &str) -> Result<ResourceKind, ApiError> {
    ResourceKind::from_path(group, version, plural).ok_or_else(ApiError::no_route)
}

async fn list_all(
    State(shared): State<Arc<Shared>>,
    Path((group, version, plural)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let kind = kind_of(&group, &version, &plural)?;
    list_or_watch(shared, kind, None, Params::parse(query))
}

async fn list_namespaced(
    State(shared): State<Arc<Shared>>,
    Path((group, version, namespace, plural)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let kind = kind_of(&group, &version, &plural)?;
    list_or_watch(shared, kind, Some(namespace), Params::parse(query))
}

fn list_or_watch(
    shared: Arc<Shared>,
    kind: ResourceKind,
    namespace: Option<String>,
    params: Params,
) -> ApiResult {
    let scope = Scope {
        kind,
        namespace,
        selector: Selector::parse(params.get("labelSelector"), params.get("fieldSelector"))?,
    };
    if params.flag("watch") {
        shared.write(|store| store.take_failure(kind, Call::Watch))?;
        let start = match params.get("resourceVersion").unwrap_or("") {
            "" | "0" => WatchStart::Now,
            version => WatchStart::After(version.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {version:?}"))
            })?),
        };
        let timeout = params
            .number::<u64>("timeoutSeconds")?
            .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
        return Ok(watch::respond(
            shared,
            WatchRequest {
                scope,
                start,
                timeout,
                bookmarks: params.flag("allowWatchBookmarks"),
                send_initial_events: params.flag("sendInitialEvents"),
            },
        ));
    }
    let limit = params.number::<usize>("limit")?;
    shared.write(|store| store.take_failure(kind, Call::List))?;
    let page = shared.write(|store| store.list(&scope, limit, params.get("continue")))?;
    let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(token) = page.continue_token {
        metadata["continue"] = json!(token);
    }
    if let Some(remaining) = page.remaining {
        metadata["remainingItemCount"] = json!(remaining);
    }
    Ok(axum::Json(json!({
        "kind": kind.list_kind(),
        "apiVersion": kind.api_version(),
        "metadata": metadata,
        "items": page.items,
    }))
    .into_response())
}

type ObjectPath = (String, String, String, String, String);
type SubresourcePath = (String, String, String, String, String, String);

fn object_key(path: ObjectPath) -> Result<ObjectKey, ApiError> {
    let (group, version, namespace, plural, name) = path;
    Ok(ObjectKey::new(
        kind_of(&group, &version, &plural)?,
        &namespace,
        &name,
    ))
}

/// Only `status`, and only for kinds that have it.
fn subresource_key(path: SubresourcePath) -> Result<ObjectKey, ApiError> {
    let (group, version, namespace, plural, name, subresource) = path;
    let key = object_key((group, version, namespace, plural, name))?;
    if subresource != "status" || !key.kind.has_status_subresource() {
        return Err(ApiError::no_route());
    }
    Ok(key)
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("the request body is not valid JSON: {err}")))
}

fn object(code: StatusCode, object: Value) -> Response {
    (code, axum::Json(object)).into_response()
}

async fn get_object(State(shared): State<Arc<Shared>>, Path(path): Path<ObjectPath>) -> ApiResult {
    read_one(&shared, &object_key(path)?)
}

async fn get_subresource(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<SubresourcePath>,
) -> ApiResult {
    read_one(&shared, &subresource_key(path)?)
}

fn read_one(shared: &Shared, key: &ObjectKey) -> ApiResult {
    shared
        .read(|store| store.get(key).cloned())
        .map(|found| object(StatusCode::OK, found))
        .ok_or_else(|| ApiError::not_found(key.kind, &key.name))
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path((group, version, namespace, plural)): Path<(String, String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let kind = kind_of(&group, &version, &plural)?;
    let body = json_body(&body)?;
    let created = shared.write(|store| store.create(kind, &namespace, body, false))?;
    Ok(object(StatusCode::CREATED, created))
}

async fn replace(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<ObjectPath>,
    body: Bytes,
) -> ApiResult {
    write_replace(&shared, &object_key(path)?, &body, Target::Main)
}

async fn replace_subresource(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<SubresourcePath>,
    body: Bytes,
) -> ApiResult {
    write_replace(&shared, &subresource_key(path)?, &body, Target::Status)
}

fn write_replace(shared: &Shared, key: &ObjectKey, body: &Bytes, target: Target) -> ApiResult {
    let body = json_body(body)?;
    let replaced = shared.write(|store| store.replace(key, body, target))?;
    Ok(object(StatusCode::OK, replaced))
}

async fn patch(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<ObjectPath>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let key = object_key(path)?;
    write_patch(
        &shared,
        &key,
        &Params::parse(query),
        &headers,
        &body,
        Target::Main,
    )
}

async fn patch_subresource(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<SubresourcePath>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let key = subresource_key(path)?;
    write_patch(
        &shared,
        &key,
        &Params::parse(query),
        &headers,
        &body,
        Target::Status,
    )
}

fn write_patch(
    shared: &Shared,
    key: &ObjectKey,
    params: &Params,
    headers: &HeaderMap,
    body: &Bytes,
    target: Target,
) -> ApiResult {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let patch_kind = PatchKind::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
    // Apply bodies are YAML; kube-rs sends JSON, which is YAML too.
    let body = json_body(body)?;
    let (patched, created) = shared
        .write(|store| store.patch(key, patch_kind, &body, target, params.get("fieldManager")))?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(object(code, patched))
}

async fn delete(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<ObjectPath>,
    body: Bytes,
) -> ApiResult {
    let key = object_key(path)?;
    let options = if body.is_empty() {
        Value::Null
    } else {
        json_body(&body)?
    };
    let deleted = shared.write(|store| store.delete(&key, &options["preconditions"]))?;
    Ok(object(StatusCode::OK, deleted))
}
