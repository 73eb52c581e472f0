//! The whole broker stopped and started again (`rabbitmqctl stop_app` / `start_app`).
//! Ignored in the normal run because it disturbs every other test; `scripts/test-serial`
//! runs it alone and makes sure the broker is running again whatever happens.

use std::process::Command;
use std::time::Duration;

use crate::helpers::{app_mention, callback, event_id, spawn_app};

fn rabbitmqctl(args: &[&str]) {
    let status = Command::new("rabbitmqctl")
        .args(args)
        .status()
        .expect("run rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

/// Starts the broker again when the test ends, pass or fail.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
        let _ = Command::new("rabbitmqctl")
            .args(["await_startup", "--timeout", "120"])
            .status();
    }
}

#[tokio::test]
#[ignore = "stops the whole broker; run by scripts/test-serial"]
async fn broker_stop_gives_503_and_the_gateway_recovers_when_the_broker_is_back() {
    let app = spawn_app().await;
    let mut links = app.broker.links();
    let restart = RestartOnDrop;

    tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
        .await
        .expect("stop_app");
    tokio::time::timeout(
        Duration::from_secs(15),
        links.wait_for(|link| link.is_none()),
    )
    .await
    .expect("the gateway notices the broker is gone")
    .expect("broker handle alive");
    let during = app
        .post_event(&callback(&event_id(), app_mention("<@UBOT> during")))
        .await;
    assert_eq!(during.status(), 503);
    let ready = app
        .http
        .get(app.ops_url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);

    tokio::task::spawn_blocking(move || drop(restart))
        .await
        .expect("start_app");
    app.broker
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("the gateway reconnects by itself");

    let id = event_id();
    let after = app
        .post_event(&callback(&id, app_mention("<@UBOT> after")))
        .await;
    assert_eq!(after.status(), 200);
    let queued = app.drain_work_queue().await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].1["eventId"], id.as_str());
    app.finish().await;
}
