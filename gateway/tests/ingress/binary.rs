//! The built `spritz-gateway` binary: configuration errors exit 2 naming the variable,
//! Go-spelled durations and hostname listen addresses are taken, `--help` lists the
//! variables, and SIGTERM shuts down cleanly with exit 0.

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

/// A `serve` process whose JSON log lines are read as they come.
struct RunningServe {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl RunningServe {
    /// Starts `serve` with `vars`, logging at info on stdout.
    fn spawn(vars: &[(&str, String)]) -> RunningServe {
        let mut vars = vars.to_vec();
        vars.push(("RUST_LOG", "info".into()));
        let mut child = serve(&vars)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        // The reader keeps draining stdout so the process never writes into a closed pipe.
        let (lines_tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        RunningServe { child, lines }
    }

    /// Waits until it listens and its broker link is up (two log lines, in either
    /// order); returns the `listening` line.
    async fn wait_listening_and_connected(&mut self) -> serde_json::Value {
        let (mut listening, mut connected) = (None, false);
        tokio::time::timeout(Duration::from_secs(30), async {
            while listening.is_none() || !connected {
                let line = self.lines.recv().await.expect("the process exited early");
                if line.contains("listening") {
                    listening = Some(serde_json::from_str(&line).expect("a JSON log line"));
                }
                connected |= line.contains("topology declared");
            }
        })
        .await
        .expect("listening and connected in time");
        listening.expect("listening")
    }

    /// Sends SIGTERM and returns the exit code.
    async fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = tokio::task::spawn_blocking(move || self.child.wait())
            .await
            .expect("join")
            .expect("wait");
        status.code()
    }
}

#[tokio::test]
async fn sigterm_stops_serve_cleanly_with_exit_0() {
    let vhost = BrokerAdmin::from_env().create_vhost().await.expect("vhost");
    let mut vars = required();
    vars.push((config::AMQP_URL, vhost.amqp_url()));
    vars.push((config::GATEWAY_ADDR, "127.0.0.1:0".into()));
    vars.push((config::METRICS_ADDR, "127.0.0.1:0".into()));
    let mut serve = RunningServe::spawn(&vars);
    serve.wait_listening_and_connected().await;

    assert_eq!(serve.terminate().await, Some(0));
    let _ = vhost.delete().await;
}

#[test]
fn a_duration_without_a_unit_stops_serve_with_exit_2_naming_the_variable() {
    let mut vars = required();
    vars.push((config::HTTP_TIMEOUT, "3".into()));
    let output = serve(&vars).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(config::HTTP_TIMEOUT), "{stderr}");
}

#[test]
fn an_unresolvable_listen_host_stops_serve_with_exit_2_naming_the_variable() {
    for name in [config::GATEWAY_ADDR, config::METRICS_ADDR] {
        let mut vars = required();
        vars.push((name, "nosuch.invalid:8080".into()));
        let output = serve(&vars).output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
}

#[tokio::test]
async fn serve_takes_a_fractional_go_duration_and_a_hostname_listen_address_and_serves() {
    let vhost = BrokerAdmin::from_env().create_vhost().await.expect("vhost");
    let mut vars = required();
    vars.push((config::AMQP_URL, vhost.amqp_url()));
    vars.push((config::HTTP_TIMEOUT, "1.5s".into()));
    vars.push((config::GATEWAY_ADDR, "localhost:0".into()));
    vars.push((config::METRICS_ADDR, "localhost:0".into()));
    let mut serve = RunningServe::spawn(&vars);
    let listening = serve.wait_listening_and_connected().await;

    let http = spritz_sandbox::tls::http_client();
    for field in ["addr", "ops"] {
        let addr: std::net::SocketAddr = listening["fields"][field]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{field} in {listening}"));
        assert!(addr.ip().is_loopback(), "{field}: {addr}");
        let health = http
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200, "{field}");
    }

    assert_eq!(serve.terminate().await, Some(0));
    let _ = vhost.delete().await;
}
