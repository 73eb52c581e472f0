//! `POST /slack/events`: what is queued, with which properties, and what is refused.

use lapin::types::AMQPValue;
use serde_json::json;
use spritz_proto::properties::{self, SLACK_RETRY_NUM, SLACK_RETRY_REASON};

use crate::helpers::{PREFIX, app_mention, callback, direct_message, event_id, spawn_app};

#[tokio::test]
async fn a_signed_app_mention_is_on_the_work_queue_when_the_response_arrives() {
    let app = spawn_app().await;
    let id = event_id();
    let before = chrono::Utc::now().timestamp();

    let response = app
        .post_event(&callback(&id, app_mention("<@UBOT> summarise this thread")))
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.expect("json"),
        json!({"ok": true})
    );
    let messages = app.drain_work_queue().await;
    assert_eq!(messages.len(), 1, "exactly one message is queued");
    let (props, body) = &messages[0];
    assert_eq!(properties::message_id(props).as_deref(), Some(id.as_str()));
    assert_eq!(
        props.kind().as_ref().map(|k| k.as_str()),
        Some("slack.event.v1")
    );
    assert_eq!(*props.delivery_mode(), Some(2), "persistent");
    let timestamp = props.timestamp().expect("timestamp") as i64;
    assert!(timestamp >= before && timestamp <= chrono::Utc::now().timestamp());
    assert!(
        properties::traceparent(props).is_some(),
        "traceparent header"
    );
    assert_eq!(body["v"], 1);
    assert_eq!(body["eventId"], id.as_str());
    assert_eq!(body["teamId"], "T1");
    assert_eq!(body["apiAppId"], "A1");
    assert_eq!(body["enterpriseId"], "E1");
    assert!(body.get("slackRetry").is_none());
    let event = &body["event"];
    assert_eq!(event["kind"], "message");
    assert_eq!(event["eventType"], "app_mention");
    assert_eq!(
        event["text"], "<@UBOT> summarise this thread",
        "the text as written; the worker removes the mention"
    );
    assert_eq!(event["botUserId"], "UBOT");
    assert_eq!(event["user"], "U1");
    assert_eq!(event["channel"], "C1");
    assert_eq!(event["ts"], "1700000000.000100");
    let decoded: spritz_proto::SlackEvent =
        spritz_proto::decode(&serde_json::to_vec(body).expect("bytes")).expect("v1");
    assert!(
        !decoded
            .user_message()
            .expect("user message")
            .is_direct_message()
    );
    app.assert_metric(
        r#"spritz_gateway_requests_total{outcome="queued",route="events"}"#,
        1.0,
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn a_direct_message_is_queued_and_slack_retry_headers_travel_with_it() {
    let app = spawn_app().await;
    let id = event_id();
    let body = callback(&id, direct_message("hello bot"))
        .to_string()
        .into_bytes();

    let response = app
        .post_event_at(
            "/slack/events",
            body,
            &[
                ("x-slack-retry-num", "1"),
                ("x-slack-retry-reason", "http_timeout"),
            ],
        )
        .await;

    assert_eq!(response.status(), 200);
    let messages = app.drain_work_queue().await;
    assert_eq!(messages.len(), 1);
    let (props, body) = &messages[0];
    assert_eq!(properties::message_id(props).as_deref(), Some(id.as_str()));
    assert_eq!(body["event"]["eventType"], "message");
    assert_eq!(body["event"]["text"], "hello bot");
    assert_eq!(body["event"]["channelType"], "im");
    assert_eq!(
        body["slackRetry"],
        json!({"num": 1, "reason": "http_timeout"})
    );
    assert_eq!(properties::header_i64(props, SLACK_RETRY_NUM), Some(1));
    assert_eq!(
        properties::header_str(props, SLACK_RETRY_REASON).as_deref(),
        Some("http_timeout")
    );
    let headers = props.headers().as_ref().expect("headers");
    assert!(matches!(
        headers.inner().get(SLACK_RETRY_NUM),
        Some(AMQPValue::LongLongInt(1))
    ));
    app.finish().await;
}

#[tokio::test]
async fn uninstall_events_are_queued() {
    let app = spawn_app().await;
    for kind in ["app_uninstalled", "tokens_revoked"] {
        let response = app
            .post_event(&callback(&event_id(), json!({"type": kind})))
            .await;
        assert_eq!(response.status(), 200, "{kind}");
    }
    let kinds: Vec<_> = app
        .drain_work_queue()
        .await
        .into_iter()
        .map(|(_, b)| b["event"]["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("app_uninstalled"), json!("tokens_revoked")]);
    app.finish().await;
}

#[tokio::test]
async fn each_filtered_kind_is_answered_200_ignored_and_nothing_is_queued() {
    let app = spawn_app().await;
    let mut edited = app_mention("<@UBOT> hi");
    edited["subtype"] = json!("message_changed");
    let mut from_bot = app_mention("<@UBOT> hi");
    from_bot["bot_id"] = json!("B1");
    let mut no_user = app_mention("<@UBOT> hi");
    no_user["user"] = json!("");
    let mention_in_dm = {
        let mut event = direct_message("<@UBOT> hi");
        event["type"] = json!("app_mention");
        event
    };
    let mut channel_message = app_mention("hello all");
    channel_message["type"] = json!("message");
    let cases = [
        ("edited message", callback(&event_id(), edited)),
        ("bot message", callback(&event_id(), from_bot)),
        ("no user", callback(&event_id(), no_user)),
        ("app_mention in a DM", callback(&event_id(), mention_in_dm)),
        (
            "message in a channel",
            callback(&event_id(), channel_message),
        ),
        (
            "only the mention",
            callback(&event_id(), app_mention("  <@UBOT> ")),
        ),
        (
            "reaction",
            callback(&event_id(), json!({"type": "reaction_added", "user": "U1"})),
        ),
        (
            "channel_created",
            callback(
                &event_id(),
                json!({"type": "channel_created", "channel": {"id": "C2"}}),
            ),
        ),
        (
            "rate limited envelope",
            json!({"type": "app_rate_limited", "team_id": "T1"}),
        ),
    ];
    for (name, body) in cases {
        let response = app.post_event(&body).await;
        assert_eq!(response.status(), 200, "{name}");
        let answer: serde_json::Value = response.json().await.expect("json");
        assert_eq!(answer, json!({"ok": true, "ignored": true}), "{name}");
    }
    assert!(
        app.drain_work_queue().await.is_empty(),
        "nothing may be queued"
    );
    app.finish().await;
}

#[tokio::test]
async fn url_verification_is_answered_with_the_challenge_as_text() {
    let app = spawn_app().await;
    let response = app
        .post_event(&json!({"type": "url_verification", "token": "t", "challenge": "3eZbrw1aB"}))
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    assert_eq!(response.text().await.expect("text"), "3eZbrw1aB");
    assert!(app.drain_work_queue().await.is_empty());
    app.finish().await;
}

#[tokio::test]
async fn bad_signatures_stale_timestamps_missing_headers_bad_json_and_huge_bodies_are_refused() {
    let app = spawn_app().await;
    let body = callback(&event_id(), app_mention("<@UBOT> hi")).to_string();
    let now = chrono::Utc::now().timestamp();
    let send = |timestamp: Option<String>, signature: Option<String>, body: String| {
        let mut request = app.http.post(app.url("/slack/events")).body(body);
        if let Some(timestamp) = timestamp {
            request = request.header("x-slack-request-timestamp", timestamp);
        }
        if let Some(signature) = signature {
            request = request.header("x-slack-signature", signature);
        }
        request.send()
    };
    let sign = |ts: i64, body: &str| {
        spritz_proto::slack_signature::sign(
            b"test-signing-secret",
            &ts.to_string(),
            body.as_bytes(),
        )
    };

    let wrong_secret =
        spritz_proto::slack_signature::sign(b"another-secret", &now.to_string(), body.as_bytes());
    let bad = send(Some(now.to_string()), Some(wrong_secret), body.clone())
        .await
        .expect("send");
    assert_eq!(bad.status(), 401, "bad signature");

    let stale_ts = now - 6 * 60;
    let stale = send(
        Some(stale_ts.to_string()),
        Some(sign(stale_ts, &body)),
        body.clone(),
    )
    .await
    .expect("send");
    assert_eq!(stale.status(), 401, "stale timestamp");

    let missing = send(None, None, body.clone()).await.expect("send");
    assert_eq!(missing.status(), 401, "missing headers");

    let garbage = "{\"type\": \"event_callback\", ".to_owned();
    let bad_json = send(Some(now.to_string()), Some(sign(now, &garbage)), garbage)
        .await
        .expect("send");
    assert_eq!(bad_json.status(), 400, "bad JSON");

    let mut huge = callback(&event_id(), app_mention("<@UBOT> hi"));
    huge["padding"] = json!("x".repeat(1024 * 1024));
    let huge = huge.to_string();
    let too_large = send(Some(now.to_string()), Some(sign(now, &huge)), huge)
        .await
        .expect("send");
    assert_eq!(too_large.status(), 413, "over 1 MiB");

    assert!(
        app.drain_work_queue().await.is_empty(),
        "nothing may be queued"
    );
    app.assert_metric(
        r#"spritz_gateway_requests_total{outcome="unauthorized",route="events"}"#,
        3.0,
    )
    .await;
    app.finish().await;
}

#[tokio::test]
async fn every_route_is_also_served_under_the_public_url_prefix() {
    let app = spawn_app().await;
    let id = event_id();
    let body = callback(&id, app_mention("<@UBOT> via the prefix"))
        .to_string()
        .into_bytes();
    let response = app
        .post_event_at(&format!("{PREFIX}/slack/events"), body, &[])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.drain_work_queue().await.len(), 1);

    for path in ["/healthz".to_owned(), format!("{PREFIX}/healthz")] {
        let response = app.get(app.url(&path), "healthz").await;
        assert_eq!(response.status(), 200, "{path}");
    }
    let install = app
        .get(app.url(&format!("{PREFIX}/slack/install")), "install")
        .await;
    assert_eq!(install.status(), 302);
    let unknown = app.get(app.url("/nope"), "unknown").await;
    assert_eq!(unknown.status(), 404);
    app.finish().await;
}

#[tokio::test]
async fn the_ops_listener_serves_metrics_health_and_readiness() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app.get(app.ops_url(path), "ops").await;
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = app
        .get(app.ops_url("/metrics"), "metrics")
        .await
        .text()
        .await
        .expect("text");
    for name in ["spritz_build_info", "spritz_broker_connected 1"] {
        assert!(metrics.contains(name), "{name} missing");
    }
    app.finish().await;
}
