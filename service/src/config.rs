//! Environment configuration shared by every role.
//!
//! Each role parses its variables once at start into a typed struct. A missing or
//! malformed value is a [`ConfigError`] naming the variable; the binary prints it on
//! one line and exits with code 2 ([`exit_on_error`]). Values are never silently
//! replaced by a default: a default applies only when the variable is unset.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// The RabbitMQ URL every role connects to (it holds the broker password).
pub const AMQP_URL: &str = "SPRITZ_AMQP_URL";
/// The broker a role uses when [`AMQP_URL`] is unset: a local RabbitMQ, default vhost.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The listener of `/metrics`, `/healthz` and `/readyz` every role serves.
pub const METRICS_ADDR: &str = "SPRITZ_METRICS_ADDR";
/// [`METRICS_ADDR`] when unset: every interface, port 9464.
pub const DEFAULT_METRICS_ADDR: &str = ":9464";
/// The whole-call budget of every outbound HTTP call (Slack, backend, Spritz API).
pub const HTTP_TIMEOUT: &str = "SPRITZ_SLACK_HTTP_TIMEOUT";
/// [`HTTP_TIMEOUT`] when unset (SPEC §7).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// The backend's internal API, which both the ingress and the worker call.
pub const BACKEND_BASE_URL: &str = "SPRITZ_SLACK_BACKEND_BASE_URL";
/// The bearer token of the backend's internal API.
pub const BACKEND_INTERNAL_TOKEN: &str = "SPRITZ_SLACK_BACKEND_INTERNAL_TOKEN";
/// The principal this gateway acts as at the backend.
pub const PRINCIPAL_ID: &str = "SPRITZ_SLACK_PRINCIPAL_ID";
/// The Slack Web API base URL (a fake's in tests).
pub const SLACK_API_BASE_URL: &str = "SPRITZ_SLACK_API_BASE_URL";
/// [`SLACK_API_BASE_URL`] when unset.
pub const DEFAULT_SLACK_API_BASE_URL: &str = "https://slack.com/api";

/// [`AMQP_URL`] as `--help` lists it.
pub const AMQP_URL_VARIABLE: Variable = Variable {
    name: AMQP_URL,
    default: Some(DEFAULT_AMQP_URL),
    help: "RabbitMQ URL",
};

/// [`METRICS_ADDR`] as `--help` lists it.
pub const METRICS_ADDR_VARIABLE: Variable = Variable {
    name: METRICS_ADDR,
    default: Some(DEFAULT_METRICS_ADDR),
    help: "/metrics, /healthz, /readyz listener",
};

/// A variable that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }
}

/// Where variables come from: the process environment, or a map in tests.
#[derive(Clone, Debug, Default)]
pub struct Env {
    overrides: Option<HashMap<String, String>>,
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Self { overrides: None }
    }

    /// Exactly these variables (tests).
    pub fn from_map<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            overrides: Some(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The raw value; an empty string counts as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        let value = match &self.overrides {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        }?;
        let trimmed = value.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_owned())
    }

    /// # Errors
    /// The variable is unset.
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name)
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    /// # Errors
    /// The variable is unset.
    pub fn required_secret(&self, name: &'static str) -> Result<SecretString, ConfigError> {
        self.required(name).map(SecretString::from)
    }

    pub fn optional_secret(&self, name: &'static str) -> Option<SecretString> {
        self.get(name).map(SecretString::from)
    }

    /// Parses a set variable with `FromStr`, or returns `None` when unset.
    ///
    /// # Errors
    /// The value does not parse; the message says what was expected.
    pub fn parse<T: FromStr>(
        &self,
        name: &'static str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|_| ConfigError::new(name, format!("expected {expected}, got {raw:?}"))),
        }
    }

    /// A duration such as `500ms`, `3s` or `10m`.
    ///
    /// # Errors
    /// Unset without a default, or not a positive duration.
    pub fn duration(
        &self,
        name: &'static str,
        default: Option<Duration>,
    ) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => default.ok_or_else(|| ConfigError::new(name, "is required but not set")),
            Some(raw) => parse_duration(&raw).map_err(|problem| ConfigError::new(name, problem)),
        }
    }

    /// A listen address: `:8080`, `0.0.0.0:8080` or `[::1]:8080`.
    ///
    /// # Errors
    /// Unset without a default, or not an address.
    pub fn listen_addr(
        &self,
        name: &'static str,
        default: Option<&str>,
    ) -> Result<ListenAddr, ConfigError> {
        let raw = match (self.get(name), default) {
            (Some(raw), _) => raw,
            (None, Some(default)) => default.to_owned(),
            (None, None) => return Err(ConfigError::new(name, "is required but not set")),
        };
        raw.parse()
            .map_err(|problem: String| ConfigError::new(name, problem))
    }

    /// An absolute http(s) URL, without a trailing slash in its path.
    ///
    /// # Errors
    /// Unset without a default, or not an absolute http(s) URL.
    pub fn url(&self, name: &'static str, default: Option<&str>) -> Result<url::Url, ConfigError> {
        let raw = match (self.get(name), default) {
            (Some(raw), _) => raw,
            (None, Some(default)) => default.to_owned(),
            (None, None) => return Err(ConfigError::new(name, "is required but not set")),
        };
        parse_http_url(&raw).map_err(|problem| ConfigError::new(name, problem))
    }

    /// An optional absolute http(s) URL.
    ///
    /// # Errors
    /// Set but not an absolute http(s) URL.
    pub fn optional_url(&self, name: &'static str) -> Result<Option<url::Url>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => parse_http_url(&raw)
                .map(Some)
                .map_err(|problem| ConfigError::new(name, problem)),
        }
    }
}

// The settings every broker-connected, HTTP-calling role reads the same way.
impl Env {
    /// [`AMQP_URL`], or [`DEFAULT_AMQP_URL`] when unset.
    ///
    /// # Errors
    /// Set to something other than an `amqp://` or `amqps://` URL.
    pub fn amqp_url(&self) -> Result<String, ConfigError> {
        let amqp_url = self
            .get(AMQP_URL)
            .unwrap_or_else(|| DEFAULT_AMQP_URL.to_owned());
        if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
            return Err(ConfigError::new(
                AMQP_URL,
                "expected an amqp:// or amqps:// URL",
            ));
        }
        Ok(amqp_url)
    }

    /// [`METRICS_ADDR`], or [`DEFAULT_METRICS_ADDR`] when unset.
    ///
    /// # Errors
    /// Not a listen address.
    pub fn metrics_addr(&self) -> Result<ListenAddr, ConfigError> {
        self.listen_addr(METRICS_ADDR, Some(DEFAULT_METRICS_ADDR))
    }

    /// [`HTTP_TIMEOUT`], or [`DEFAULT_HTTP_TIMEOUT`] when unset.
    ///
    /// # Errors
    /// Not a positive duration.
    pub fn http_timeout(&self) -> Result<Duration, ConfigError> {
        self.duration(HTTP_TIMEOUT, Some(DEFAULT_HTTP_TIMEOUT))
    }

    /// [`SLACK_API_BASE_URL`], or [`DEFAULT_SLACK_API_BASE_URL`] when unset.
    ///
    /// # Errors
    /// Not an absolute http(s) URL.
    pub fn slack_api_base_url(&self) -> Result<url::Url, ConfigError> {
        self.url(SLACK_API_BASE_URL, Some(DEFAULT_SLACK_API_BASE_URL))
    }
}

/// A duration in Go's spelling (`500ms`, `3s`, `10m`, `1h30m`); zero is refused.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(raw)
        .map_err(|_| format!("expected a duration such as 500ms, 3s or 10m, got {raw:?}"))?;
    if parsed.is_zero() {
        return Err(format!("expected a positive duration, got {raw:?}"));
    }
    Ok(parsed)
}

fn parse_http_url(raw: &str) -> Result<url::Url, String> {
    let mut url =
        url::Url::parse(raw).map_err(|_| format!("expected an absolute URL, got {raw:?}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("expected an http(s) URL with a host, got {raw:?}"));
    }
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

/// A socket address to listen on. Go's `:8080` means every interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if let Some(port) = raw.strip_prefix(':') {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("expected :PORT or HOST:PORT, got {raw:?}"))?;
            return Ok(ListenAddr(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))));
        }
        raw.parse()
            .map(ListenAddr)
            .map_err(|_| format!("expected :PORT or HOST:PORT, got {raw:?}"))
    }
}

/// The one-line report of a configuration error, then exit code 2.
pub fn exit_on_error<T>(program: &str, result: Result<T, ConfigError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => {
            eprintln!("{program}: configuration error: {error}");
            std::process::exit(2)
        }
    }
}

/// One documented variable, for `--help`.
#[derive(Clone, Copy, Debug)]
pub struct Variable {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

/// Renders variables as an aligned list for `--help`.
pub fn describe(variables: &[Variable]) -> String {
    let width = variables.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut out = String::from("Environment:\n");
    for variable in variables {
        let default = variable
            .default
            .map(|d| format!(" [default: {d}]"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:width$}  {}{}\n",
            variable.name, variable.help, default
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations_and_addresses_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(":8080".parse::<ListenAddr>().map(|a| a.0.port()), Ok(8080));
        assert_eq!(
            "127.0.0.1:9".parse::<ListenAddr>().map(|a| a.0.to_string()),
            Ok("127.0.0.1:9".into())
        );
        assert!("8080".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn shared_settings_default_when_unset_and_refuse_a_wrong_broker_scheme() {
        let unset = Env::from_map(Vec::<(String, String)>::new());
        assert_eq!(unset.amqp_url(), Ok(DEFAULT_AMQP_URL.to_owned()));
        assert_eq!(unset.metrics_addr().map(|a| a.0.port()), Ok(9464));
        assert_eq!(unset.http_timeout(), Ok(DEFAULT_HTTP_TIMEOUT));
        assert_eq!(
            unset.slack_api_base_url().map(|u| u.to_string()),
            Ok("https://slack.com/api".into())
        );
        let wrong = Env::from_map([(AMQP_URL, "http://rabbit")]);
        assert_eq!(wrong.amqp_url().unwrap_err().variable, AMQP_URL);
    }

    #[test]
    fn errors_name_the_variable_and_defaults_apply_only_when_unset() {
        let env = Env::from_map([("SPRITZ_SLACK_HTTP_TIMEOUT", "fast"), ("EMPTY", " ")]);
        let error = env
            .duration("SPRITZ_SLACK_HTTP_TIMEOUT", Some(Duration::from_secs(15)))
            .unwrap_err();
        assert_eq!(error.variable, "SPRITZ_SLACK_HTTP_TIMEOUT");
        assert!(error.to_string().starts_with("SPRITZ_SLACK_HTTP_TIMEOUT: "));
        assert_eq!(
            env.duration("UNSET", Some(Duration::from_secs(15))),
            Ok(Duration::from_secs(15))
        );
        assert_eq!(env.required("EMPTY").unwrap_err().variable, "EMPTY");
        assert!(env.url("URL", Some("ftp://x")).is_err());
        assert_eq!(
            env.url("URL", Some("https://host/spritz/"))
                .map(|u| u.to_string()),
            Ok("https://host/spritz".into())
        );
    }
}
