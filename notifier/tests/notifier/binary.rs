//! The `spritz-notifier` binary: `--help`, exit code 2 on bad configuration, and
//! SIGTERM releasing the Lease before a clean exit.

use std::process::{Command, Stdio};

use crate::kubeconfig::KubeconfigFile;
use crate::support::{LEASE_NS, WAIT, World};

const BINARY: &str = env!("CARGO_BIN_EXE_spritz-notifier");

#[test]
fn help_lists_every_variable() {
    let output = Command::new(BINARY).arg("--help").output().expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in spritz_notifier::config::VARIABLES {
        assert!(
            help.contains(variable.name),
            "{} missing from --help",
            variable.name
        );
    }
}

#[test]
fn a_malformed_variable_stops_the_process_with_exit_code_2_naming_it() {
    let output = Command::new(BINARY)
        .env("SPRITZ_NOTIFIER_NAMESPACES", "Team_A")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("SPRITZ_NOTIFIER_NAMESPACES"), "{stderr}");
}

#[tokio::test]
async fn sigterm_releases_the_lease_and_exits_zero() {
    let world = World::start().await;
    let kubeconfig = KubeconfigFile::write(&world.fake.base_url()).expect("kubeconfig");
    let mut child = tokio::process::Command::new(BINARY)
        .env_clear()
        .env("KUBECONFIG", kubeconfig.path())
        .env("SPRITZ_AMQP_URL", world.vhost.amqp_url())
        .env("SPRITZ_METRICS_ADDR", "127.0.0.1:0")
        .env("SPRITZ_NOTIFIER_LEASE_NAMESPACE", LEASE_NS)
        .env("SPRITZ_NOTIFIER_LEASE_DURATION", "2s")
        .env("SPRITZ_NOTIFIER_LEASE_RENEW_INTERVAL", "500ms")
        .env("POD_NAME", "notifier-0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    world
        .fake
        .wait_until(WAIT, |fake| {
            fake.lease_holder(LEASE_NS, "spritz-notifier").as_deref() == Some("notifier-0")
        })
        .await
        .expect("the binary leads");
    world
        .fake
        .wait_for_watch_connections(1, WAIT)
        .await
        .expect("and watches");

    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits in time")
        .expect("exit status");
    assert_eq!(exit.code(), Some(0));
    assert_eq!(
        world.fake.lease_holder(LEASE_NS, "spritz-notifier"),
        None,
        "released"
    );
}

#[tokio::test]
async fn a_failure_to_start_is_one_line_on_stderr_and_exit_code_1() {
    let world = World::start().await;
    let kubeconfig = KubeconfigFile::write(&world.fake.base_url()).expect("kubeconfig");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let output = tokio::process::Command::new(BINARY)
        .env_clear()
        .env("KUBECONFIG", kubeconfig.path())
        .env("SPRITZ_AMQP_URL", world.vhost.amqp_url())
        .env(
            "SPRITZ_METRICS_ADDR",
            taken.local_addr().expect("addr").to_string(),
        )
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("spritz-notifier: starting the notifier"),
        "{stderr}"
    );
}
