//! Graceful shutdown: requests already being answered finish (a 200 still means
//! queued), then the listener is gone and the broker connection closed.

use std::collections::HashSet;

use futures::future::join_all;

use crate::helpers::{app_mention, callback, event_id, spawn_app};

#[tokio::test]
async fn shutdown_lets_in_flight_events_finish_and_every_200_is_queued() {
    let mut app = spawn_app().await;
    let ids: Vec<String> = (0..40).map(|_| event_id()).collect();
    let sends = ids.iter().map(|id| {
        let body = callback(id, app_mention("<@UBOT> during shutdown"))
            .to_string()
            .into_bytes();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature =
            spritz_proto::slack_signature::sign(b"test-signing-secret", &timestamp, &body);
        app.http
            .post(app.url("/slack/events"))
            .header("x-slack-request-timestamp", timestamp)
            .header("x-slack-signature", signature)
            .body(body)
            .send()
    });
    let sending = tokio::spawn(join_all(
        sends
            .map(|f| async move { f.await.map(|r| r.status().as_u16()) })
            .collect::<Vec<_>>(),
    ));
    tokio::task::yield_now().await;

    let stopped = app.stop().await;

    assert!(
        stopped.is_ok(),
        "run_until_stopped ends cleanly: {stopped:?}"
    );
    assert!(!app.broker.is_ready(), "the broker connection is closed");
    let answers = sending.await.expect("senders");
    let acknowledged: HashSet<&str> = ids
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| matches!(answer, Ok(200)))
        .map(|(id, _)| id.as_str())
        .collect();
    let queued: HashSet<String> = app
        .drain_work_queue()
        .await
        .into_iter()
        .map(|(_, body)| body["eventId"].as_str().unwrap_or_default().to_owned())
        .collect();
    for id in &acknowledged {
        assert!(
            queued.contains(*id),
            "{id} was answered 200 but is not queued"
        );
    }
    assert!(
        reqwest::get(app.url("/healthz")).await.is_err(),
        "the listener is closed"
    );
    app.finish().await;
}
