//! The built `spritz-gateway` binary: configuration errors exit 2 naming the variable,
//! `--help` lists the variables, and SIGTERM shuts down cleanly with exit 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use spritz_gateway::config;
use spritz_sandbox::isolation::BrokerAdmin;

const BINARY: &str = env!("CARGO_BIN_EXE_spritz-gateway");

fn required() -> Vec<(&'static str, String)> {
    vec![
        (config::PUBLIC_URL, "https://gateway.test/gw".into()),
        (config::SIGNING_SECRET, "sign".into()),
        (config::CLIENT_ID, "1.2".into()),
        (config::CLIENT_SECRET, "client".into()),
        (config::OAUTH_STATE_SECRET, "state".into()),
        (
            config::BACKEND_BASE_URL,
            "http://127.0.0.1:9/backend".into(),
        ),
        (config::BACKEND_INTERNAL_TOKEN, "internal".into()),
        (config::PRINCIPAL_ID, "principal".into()),
    ]
}

fn serve(vars: &[(&str, String)]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg("serve")
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

#[test]
fn each_missing_required_variable_stops_serve_with_exit_2_naming_it() {
    for (missing, _) in required() {
        let vars: Vec<_> = required()
            .into_iter()
            .filter(|(name, _)| *name != missing)
            .collect();
        let output = serve(&vars).output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{missing}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(missing),
            "{missing} not named in {stderr:?}"
        );
    }
}

#[test]
fn a_malformed_value_stops_serve_with_exit_2_naming_it() {
    for (name, value) in [
        (config::HTTP_TIMEOUT, "fast"),
        (config::METRICS_ADDR, "9464"),
        (config::PUBLIC_URL, "gw"),
    ] {
        let mut vars = required();
        vars.push((name, value.to_owned()));
        let output = serve(&vars).output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{name}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(name),
            "{name}"
        );
    }
}

#[test]
fn serve_help_lists_every_variable() {
    let output = Command::new(BINARY)
        .args(["serve", "--help"])
        .output()
        .expect("run");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in config::VARIABLES {
        assert!(
            help.contains(variable.name),
            "{} missing from --help",
            variable.name
        );
    }
}

#[tokio::test]
async fn sigterm_stops_serve_cleanly_with_exit_0() {
    let vhost = BrokerAdmin::from_env().create_vhost().await.expect("vhost");
    let mut vars = required();
    vars.push((config::AMQP_URL, vhost.amqp_url()));
    vars.push((config::GATEWAY_ADDR, "127.0.0.1:0".into()));
    vars.push((config::METRICS_ADDR, "127.0.0.1:0".into()));
    vars.push(("RUST_LOG", "info".into()));
    let mut child = serve(&vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");

    // Wait until it listens and its broker link is up (two log lines, in either order).
    // The reader keeps draining stdout so the process never writes into a closed pipe.
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut listening, mut connected) = (false, false);
    tokio::time::timeout(Duration::from_secs(30), async {
        while !(listening && connected) {
            let line = lines_rx.recv().await.expect("the process exited early");
            listening |= line.contains("listening");
            connected |= line.contains("topology declared");
        }
    })
    .await
    .expect("listening and connected in time");

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    let _ = vhost.delete().await;
}
