//! The broker refusing or losing our messages, within this test's own vhost: a returned
//! (unroutable) message, a nack, and a connection that is cut and cannot come back for a
//! while. Each is answered 503 so Slack retries, and the gateway recovers by itself.

use std::time::Duration;

use lapin::options::QueueDeleteOptions;
use lapin::types::ShortString;
use serde_json::json;
use spritz_proto::topology::WORK_QUEUE;
use spritz_sandbox::isolation::eventually;

use crate::helpers::{TestApp, app_mention, callback, event_id, spawn_app};

/// The RabbitMQ management API, as `spritz_sandbox::isolation` finds it.
async fn management(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) {
    let mut request = app
        .http
        .request(method, format!("{}/api{path}", management_base()))
        .basic_auth("guest", Some("guest"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request
        .send()
        .await
        .expect("management API")
        .error_for_status()
        .expect("management API status");
}

fn permissions_path(app: &TestApp) -> String {
    format!("/permissions/{}/guest", app.vhost.name())
}

#[tokio::test]
async fn an_unroutable_event_is_answered_503_not_200() {
    let app = spawn_app().await;
    let channel = app.channel().await;
    channel
        .queue_delete(ShortString::from(WORK_QUEUE), QueueDeleteOptions::default())
        .await
        .expect("delete queue");

    let response = app
        .post_event(&callback(&event_id(), app_mention("<@UBOT> hi")))
        .await;

    assert_eq!(response.status(), 503);
    app.assert_metric(
        r#"spritz_gateway_publish_failures_total{reason="returned"}"#,
        1.0,
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn a_nacked_event_is_answered_503_not_200() {
    let app = spawn_app().await;
    let policy = format!("/policies/{}/full", app.vhost.name());
    let definition = json!({"max-length": 1});
    management(
        &app,
        reqwest::Method::PUT,
        &policy,
        Some(json!({"pattern": "^spritz\\.slack\\.events$", "definition": definition, "apply-to": "queues"})),
    )
    .await;
    let queue = format!(
        "{}/api/queues/{}/{WORK_QUEUE}",
        management_base(),
        app.vhost.name()
    );
    eventually(Duration::from_secs(10), || async {
        let info: serde_json::Value = app
            .http
            .get(&queue)
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (info["effective_policy_definition"]["max-length"] == 1).then_some(())
    })
    .await
    .expect("the policy applies to the work queue");

    // A quorum queue applies reject-publish once it is over the limit, which its
    // leader notices a message or so late: send until the broker nacks one.
    let mut answers = Vec::new();
    while answers.len() < 10 && !answers.contains(&503) {
        let response = app
            .post_event(&callback(&event_id(), app_mention("<@UBOT> fill")))
            .await;
        answers.push(response.status().as_u16());
    }

    assert_eq!(
        answers.last(),
        Some(&503),
        "the full queue refuses a message: {answers:?}"
    );
    app.assert_metric(
        r#"spritz_gateway_publish_failures_total{reason="nacked"}"#,
        1.0,
    )
    .await;
    let acknowledged = answers.iter().filter(|status| **status == 200).count();
    assert_eq!(
        app.drain_work_queue().await.len(),
        acknowledged,
        "every 200 is queued, the 503 is not"
    );
    app.finish().await;
}

fn management_base() -> String {
    std::env::var("SPRITZ_TEST_RABBITMQ_MANAGEMENT_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned())
}

#[tokio::test]
async fn a_cut_connection_gives_503_until_the_broker_is_back_then_events_are_queued_again() {
    let app = spawn_app().await;
    let mut links = app.broker.links();
    // Refuse reconnects for a while, as a broker that is down would, then cut the link.
    management(&app, reqwest::Method::DELETE, &permissions_path(&app), None).await;
    // The management API lists a new connection only after its next stats emission.
    eventually(Duration::from_secs(15), || async {
        (app.vhost.close_connections().await.ok()? > 0).then_some(())
    })
    .await
    .expect("the gateway's connection is listed and closed");
    app.wait_until_unlinked(
        &mut links,
        Duration::from_secs(10),
        "the gateway notices the cut",
    )
    .await;
    app.assert_unavailable_without_broker().await;

    management(
        &app,
        reqwest::Method::PUT,
        &permissions_path(&app),
        Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
    )
    .await;
    app.broker
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("the gateway reconnects by itself");

    app.assert_queues_again().await;
    app.assert_metric(
        r#"spritz_gateway_publish_failures_total{reason="unavailable"}"#,
        1.0,
    )
    .await;
    app.assert_metric("spritz_broker_reconnects_total", 1.0)
        .await;
    app.finish().await;
}
