//! The whole broker stopped and started again (`rabbitmqctl stop_app` / `start_app`).
//! Ignored in the normal run because it disturbs every other test; `scripts/test-serial`
//! runs it alone and makes sure the broker is running again whatever happens.

use std::process::Command;
use std::time::Duration;

use crate::helpers::spawn_app;

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
    app.wait_until_unlinked(
        &mut links,
        Duration::from_secs(15),
        "the gateway notices the broker is gone",
    )
    .await;
    app.assert_unavailable_without_broker().await;

    tokio::task::spawn_blocking(move || drop(restart))
        .await
        .expect("start_app");
    app.broker
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("the gateway reconnects by itself");

    app.assert_queues_again().await;
    app.finish().await;
}
