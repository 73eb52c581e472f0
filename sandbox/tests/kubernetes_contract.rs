//! The fake Kubernetes API server over plain HTTP is as strict as a real one: calls
//! need its bearer token, failures are `Status` objects, names and bookkeeping fields
//! are the server's, and a write must name the type it is sent to.

use serde_json::{Value, json};
use spritz_sandbox::kubernetes::FakeKubernetes;

const SPRITZES: &str = "apis/spritz.sh/v1/namespaces/team-a/spritzes";

/// A request to `path` on the fake, with its token.
fn call(kube: &FakeKubernetes, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    spritz_sandbox::tls::http_client()
        .request(method, format!("{}/{path}", kube.base_url()))
        .bearer_auth(kube.token())
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create(kube: &FakeKubernetes, body: &Value) -> (u16, Value) {
    answer(call(kube, reqwest::Method::POST, SPRITZES).json(body)).await
}

/// Asserts a `v1` `Status` failure with this code and reason.
fn assert_status(body: &Value, code: u16, reason: &str) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn api_calls_without_the_token_are_401_unauthorized_but_health_is_public() {
    let kube = FakeKubernetes::start().await.expect("kube");
    kube.create_spritz("team-a", "concierge", Some("Ready"));
    let anonymous = spritz_sandbox::tls::http_client();
    for path in [
        "apis",
        SPRITZES,
        "apis/spritz.sh/v1/namespaces/team-a/spritzes/concierge",
        "apis/no.such/v1/things",
    ] {
        for request in [
            anonymous.get(format!("{}/{path}", kube.base_url())),
            anonymous
                .get(format!("{}/{path}", kube.base_url()))
                .bearer_auth("wrong"),
        ] {
            let (status, body) = answer(request).await;
            assert_eq!(status, 401, "{path}");
            assert_status(&body, 401, "Unauthorized");
        }
    }
    for path in ["healthz", "readyz", "livez", "version"] {
        let response = anonymous
            .get(format!("{}/{path}", kube.base_url()))
            .send()
            .await
            .expect("sent");
        assert!(response.status().is_success(), "{path}");
    }
    let (status, _) = answer(call(&kube, reqwest::Method::GET, SPRITZES)).await;
    assert_eq!(status, 200, "with the token");
}

#[tokio::test]
async fn an_unknown_object_is_a_404_not_found_status_naming_it() {
    let kube = FakeKubernetes::start().await.expect("kube");
    let (status, body) = answer(call(
        &kube,
        reqwest::Method::GET,
        &format!("{SPRITZES}/missing"),
    ))
    .await;
    assert_eq!(status, 404);
    assert_status(&body, 404, "NotFound");
    assert_eq!(body["message"], "spritzes.spritz.sh \"missing\" not found");
    assert_eq!(
        body["details"],
        json!({"name": "missing", "group": "spritz.sh", "kind": "spritzes"})
    );

    for (method, path) in [
        (reqwest::Method::DELETE, format!("{SPRITZES}/missing")),
        (
            reqwest::Method::GET,
            "apis/no.such/v1/namespaces/a/things".to_owned(),
        ),
        (reqwest::Method::GET, "api/v1/namespaces/a/pods".to_owned()),
    ] {
        let (status, body) = answer(call(&kube, method, &path)).await;
        assert_eq!(status, 404, "{path}");
        assert_status(&body, 404, "NotFound");
    }
}

#[tokio::test]
async fn a_method_the_resource_does_not_serve_is_a_405_status() {
    let kube = FakeKubernetes::start().await.expect("kube");
    let (status, body) = answer(call(&kube, reqwest::Method::DELETE, SPRITZES)).await;
    assert_eq!(status, 405);
    assert_status(&body, 405, "MethodNotAllowed");
}

#[tokio::test]
async fn generate_name_gets_five_server_chosen_characters_and_names_must_be_dns_subdomains() {
    let kube = FakeKubernetes::start().await.expect("kube");
    let (status, created) =
        create(&kube, &json!({"metadata": {"generateName": "concierge-"}})).await;
    assert_eq!(status, 201);
    let name = created["metadata"]["name"].as_str().expect("name");
    let suffix = name.strip_prefix("concierge-").expect("prefix kept");
    assert_eq!(suffix.len(), 5, "{name}");
    assert!(
        suffix
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{name}"
    );
    let (_, other) = create(&kube, &json!({"metadata": {"generateName": "concierge-"}})).await;
    assert_ne!(other["metadata"]["name"], created["metadata"]["name"]);

    for bad in ["Concierge", "under_score", "-dash", ""] {
        let (status, body) = create(&kube, &json!({"metadata": {"name": bad}})).await;
        assert_eq!(status, 422, "{bad:?}");
        assert_status(&body, 422, "Invalid");
    }
}

#[tokio::test]
async fn uid_generation_and_resource_version_are_the_servers() {
    let kube = FakeKubernetes::start().await.expect("kube");
    let (status, created) = create(
        &kube,
        &json!({"metadata": {"name": "concierge", "uid": "mine", "generation": 7,
                             "creationTimestamp": "2000-01-01T00:00:00Z"},
                "status": {"phase": "Ready"}}),
    )
    .await;
    assert_eq!(status, 201);
    assert_ne!(created["metadata"]["uid"], "mine");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_ne!(
        created["metadata"]["creationTimestamp"],
        "2000-01-01T00:00:00Z"
    );
    assert!(
        created["status"].is_null(),
        "status is the status subresource's"
    );
    let version: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .parse()
        .expect("numeric");

    let (status, body) = create(
        &kube,
        &json!({"metadata": {"name": "copy", "resourceVersion": "1"}}),
    )
    .await;
    assert_eq!(status, 500, "a create must not carry a resourceVersion");
    assert_eq!(
        body["message"],
        "resourceVersion should not be set on objects to be created"
    );

    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = json!((version - 1).to_string());
    stale["spec"] = json!({"x": 1});
    let (status, body) = answer(
        call(
            &kube,
            reqwest::Method::PUT,
            &format!("{SPRITZES}/concierge"),
        )
        .json(&stale),
    )
    .await;
    assert_eq!(status, 409);
    assert_status(&body, 409, "Conflict");

    let mut unconditional = created.clone();
    unconditional["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    let (status, body) = answer(
        call(
            &kube,
            reqwest::Method::PUT,
            &format!("{SPRITZES}/concierge"),
        )
        .json(&unconditional),
    )
    .await;
    assert_eq!(
        status, 422,
        "custom resources need a resourceVersion on update"
    );
    assert_status(&body, 422, "Invalid");

    let mut current = created.clone();
    current["spec"] = json!({"x": 1});
    current["metadata"]["uid"] = json!("changed");
    let (status, replaced) = answer(
        call(
            &kube,
            reqwest::Method::PUT,
            &format!("{SPRITZES}/concierge"),
        )
        .json(&current),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(replaced["metadata"]["generation"], 2);
    assert!(
        replaced["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v > version)
    );
}

#[tokio::test]
async fn a_body_of_another_type_or_namespace_is_a_400() {
    let kube = FakeKubernetes::start().await.expect("kube");
    for body in [
        json!({"apiVersion": "coordination.k8s.io/v1", "metadata": {"name": "a"}}),
        json!({"kind": "Lease", "metadata": {"name": "a"}}),
        json!({"metadata": {"name": "a", "namespace": "team-b"}}),
        json!(["not", "an", "object"]),
    ] {
        let (status, refused) = create(&kube, &body).await;
        assert_eq!(status, 400, "{body}");
        assert_status(&refused, 400, "BadRequest");
    }
    let (status, refused) = answer(
        call(&kube, reqwest::Method::POST, SPRITZES)
            .header("Content-Type", "application/json")
            .body("{"),
    )
    .await;
    assert_eq!(status, 400);
    assert_status(&refused, 400, "BadRequest");
}

#[tokio::test]
async fn creating_an_existing_name_is_a_409_already_exists() {
    let kube = FakeKubernetes::start().await.expect("kube");
    kube.create_spritz("team-a", "concierge", None);
    let (status, body) = create(&kube, &json!({"metadata": {"name": "concierge"}})).await;
    assert_eq!(status, 409);
    assert_status(&body, 409, "AlreadyExists");
}
