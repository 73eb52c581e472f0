//! Environment configuration shared by every role.
//!
//! Each role parses its variables once at start into a typed struct. A missing or
//! malformed value is a [`ConfigError`] naming the variable; the binary prints it on
//! one line and exits with code 2 ([`exit_on_error`]). Values are never silently
//! replaced by a default: a default applies only when the variable is unset.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use crate::amqp_addresses::AmqpAddresses;

/// The RabbitMQ URL every role connects to (it holds the broker password), or a
/// comma-separated list of a cluster's nodes, tried in order ([`AmqpAddresses`]).
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
    help: "RabbitMQ URL, or a comma-separated list of cluster nodes",
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

    /// A listen address: `:8080`, `0.0.0.0:8080`, `[::1]:8080` or `localhost:8080`,
    /// resolved now ([`ListenAddr::resolve`]).
    ///
    /// # Errors
    /// Unset without a default, not an address, or a hostname that does not resolve.
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
        ListenAddr::resolve(&raw).map_err(|problem| ConfigError::new(name, problem))
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
    /// [`AMQP_URL`], or [`DEFAULT_AMQP_URL`] when unset: one node or a
    /// comma-separated list of a cluster's nodes.
    ///
    /// # Errors
    /// An entry that is not an `amqp://` or `amqps://` URL with a host, or an empty
    /// entry; the message names its position, never its text (it holds a password).
    pub fn amqp_url(&self) -> Result<AmqpAddresses, ConfigError> {
        let raw = self
            .get(AMQP_URL)
            .unwrap_or_else(|| DEFAULT_AMQP_URL.to_owned());
        AmqpAddresses::parse(&raw).map_err(|problem| ConfigError::new(AMQP_URL, problem))
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

/// A positive duration in Go's `time.ParseDuration` syntax (`300ms`, `1.5s`, `1h30m`,
/// `2us`/`2µs`): the spelling the original service and its deployments use. Zero and
/// negative durations parse in Go but are refused here: every duration setting is a
/// timeout, interval or lifetime that must be positive.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    match go_duration::parse(raw) {
        Ok(nanos) if nanos > 0 => Ok(Duration::from_nanos(nanos.unsigned_abs())),
        Ok(_) => Err(format!("expected a positive duration, got {raw:?}")),
        Err(problem) => Err(format!(
            "expected a duration such as 500ms, 1.5s or 1h30m, got {raw:?} ({problem})"
        )),
    }
}

/// Go's `time.ParseDuration`, ported to the nanosecond (fractions go through `f64` as
/// in Go, so `1.1s` and friends round the same way). Written here rather than taken
/// from a crate: see docs/design-notes.md, "Configuration".
mod go_duration {
    /// 2^63: the magnitude bound of Go's `int64` nanoseconds.
    const LIMIT: u64 = 1 << 63;

    /// Each unit Go knows, in nanoseconds (`µs` is U+00B5, `μs` U+03BC; Go takes both).
    const UNITS: [(&str, u64); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("\u{b5}s", 1_000),
        ("\u{3bc}s", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];

    /// Why a value is not a Go duration.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
    pub(super) enum Invalid {
        #[error("not a duration")]
        Syntax,
        #[error("a number needs a unit: ns, us, ms, s, m or h")]
        MissingUnit,
        #[error("the units are ns, us (\u{b5}s), ms, s, m and h")]
        UnknownUnit,
        #[error("out of range")]
        Overflow,
    }

    /// `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or a bare `0`: signed nanoseconds.
    pub(super) fn parse(raw: &str) -> Result<i64, Invalid> {
        let bytes = raw.as_bytes();
        let (negative, mut rest) = match bytes.first() {
            Some(b'-') => (true, &bytes[1..]),
            Some(b'+') => (false, &bytes[1..]),
            _ => (false, bytes),
        };
        if rest == b"0" {
            return Ok(0);
        }
        if rest.is_empty() {
            return Err(Invalid::Syntax);
        }
        let mut total: u64 = 0;
        while !rest.is_empty() {
            if !(rest[0] == b'.' || rest[0].is_ascii_digit()) {
                return Err(Invalid::Syntax);
            }
            let (whole, after_whole) = leading_int(rest)?;
            let has_whole = after_whole.len() != rest.len();
            rest = after_whole;
            let (mut fraction, mut scale, mut has_fraction) = (0, 1.0, false);
            if let Some(after_dot) = rest.strip_prefix(b".") {
                let after_fraction;
                (fraction, scale, after_fraction) = leading_fraction(after_dot);
                has_fraction = after_fraction.len() != after_dot.len();
                rest = after_fraction;
            }
            if !has_whole && !has_fraction {
                return Err(Invalid::Syntax);
            }
            let unit_len = rest
                .iter()
                .position(|&c| c == b'.' || c.is_ascii_digit())
                .unwrap_or(rest.len());
            if unit_len == 0 {
                return Err(Invalid::MissingUnit);
            }
            let (unit, after_unit) = rest.split_at(unit_len);
            rest = after_unit;
            let nanos = UNITS
                .iter()
                .find(|(name, _)| name.as_bytes() == unit)
                .map(|&(_, nanos)| nanos)
                .ok_or(Invalid::UnknownUnit)?;
            if whole > LIMIT / nanos {
                return Err(Invalid::Overflow);
            }
            let mut value = whole * nanos;
            if fraction > 0 {
                // As in Go: f64 keeps fractions of an hour nanosecond-accurate, and the
                // conversion truncates toward zero.
                value += (fraction as f64 * (nanos as f64 / scale)) as u64;
                if value > LIMIT {
                    return Err(Invalid::Overflow);
                }
            }
            total = total
                .checked_add(value)
                .filter(|&sum| sum <= LIMIT)
                .ok_or(Invalid::Overflow)?;
        }
        if negative {
            // total <= 2^63, so the negation fits (2^63 itself is i64::MIN).
            return Ok(0_i64.wrapping_sub_unsigned(total));
        }
        i64::try_from(total).map_err(|_| Invalid::Overflow)
    }

    /// The leading `[0-9]*`; more than 2^63 is an overflow.
    fn leading_int(s: &[u8]) -> Result<(u64, &[u8]), Invalid> {
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut value: u64 = 0;
        for &c in &s[..digits] {
            if value > LIMIT / 10 {
                return Err(Invalid::Overflow);
            }
            value = value * 10 + u64::from(c - b'0');
            if value > LIMIT {
                return Err(Invalid::Overflow);
            }
        }
        Ok((value, &s[digits..]))
    }

    /// The leading `[0-9]*` after a dot, as `value / scale`; digits beyond what fits
    /// are dropped (precision stops, as in Go), never an error.
    fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (mut value, mut scale) = (0_u64, 1.0_f64);
        for &c in &s[..digits] {
            if value > (LIMIT - 1) / 10 {
                break;
            }
            let next = value * 10 + u64::from(c - b'0');
            if next > LIMIT {
                break;
            }
            value = next;
            scale *= 10.0;
        }
        (value, scale, &s[digits..])
    }
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

/// A socket address to listen on, resolved once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl ListenAddr {
    /// Go's listen-address spelling: `:8080` (every interface), `127.0.0.1:8080`,
    /// `[::1]:8080` or `localhost:8080`. A hostname is resolved now (a blocking lookup,
    /// done once at start) and, as Go's `net.Listen` does, the first IPv4 address it
    /// has is taken, else its first address.
    ///
    /// # Errors
    /// A message saying what was expected: no port, a port that is not a number up to
    /// 65535, an empty or malformed host, or a hostname that does not resolve.
    pub fn resolve(raw: &str) -> Result<Self, String> {
        let expected = || format!("expected :PORT or HOST:PORT, got {raw:?}");
        if let Ok(addr) = raw.parse::<SocketAddr>() {
            return Ok(ListenAddr(addr));
        }
        let (host, port) = raw.rsplit_once(':').ok_or_else(expected)?;
        if port.is_empty() || !port.bytes().all(|c| c.is_ascii_digit()) {
            return Err(expected());
        }
        let port: u16 = port.parse().map_err(|_| expected())?;
        if host.is_empty() {
            return Ok(ListenAddr(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))));
        }
        // Anything with brackets or colons left is an IP literal that did not parse.
        if host.contains([':', '[', ']']) || host.contains(char::is_whitespace) {
            return Err(expected());
        }
        let resolved: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|_| format!("cannot resolve the host of {raw:?}"))?
            .collect();
        resolved
            .iter()
            .find(|addr| addr.is_ipv4())
            .or_else(|| resolved.first())
            .copied()
            .map(ListenAddr)
            .ok_or_else(|| format!("cannot resolve the host of {raw:?}"))
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
pub fn variables_help(variables: &[Variable]) -> String {
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_in_gos_spelling_are_accepted() {
        for (raw, expected) in [
            ("1.5s", ms(1_500)),
            ("1h30m", Duration::from_secs(5_400)),
            ("300ms", ms(300)),
            ("2us", Duration::from_micros(2)),
            ("2\u{b5}s", Duration::from_micros(2)),
            ("2\u{3bc}s", Duration::from_micros(2)),
            ("1m0.5s", ms(60_500)),
            ("500ms", ms(500)),
            ("3s", Duration::from_secs(3)),
            ("10m", Duration::from_secs(600)),
            ("+5s", Duration::from_secs(5)),
            (".5s", ms(500)),
            ("1.s", Duration::from_secs(1)),
            ("1.000000001s", Duration::new(1, 1)),
            ("1h1m1s1ms1us1ns", Duration::new(3_661, 1_001_001)),
        ] {
            assert_eq!(parse_duration(raw), Ok(expected), "{raw}");
        }
    }

    #[test]
    fn zero_and_negative_durations_parse_in_go_but_are_refused_as_not_positive() {
        for raw in ["0", "0s", "-0", "+0", "0.0h", "-1s", "-1.5h"] {
            let problem = parse_duration(raw).expect_err(raw);
            assert!(problem.contains("positive"), "{raw}: {problem}");
        }
    }

    #[test]
    fn durations_go_would_not_parse_are_refused_with_the_reason() {
        for (raw, reason) in [
            ("3 seconds", "units are"),
            ("3", "needs a unit"),
            ("1d", "units are"),
            ("", "not a duration"),
            ("soon", "not a duration"),
            ("1.5", "needs a unit"),
            ("1S", "units are"),
            ("-", "not a duration"),
            (".s", "not a duration"),
            ("1s 2m", "units are"),
            ("9223372036854775808ns", "out of range"),
        ] {
            let problem = parse_duration(raw).expect_err(raw);
            assert!(problem.contains(reason), "{raw}: {problem}");
            assert!(problem.contains(&format!("{raw:?}")), "{raw}: {problem}");
        }
    }

    /// Go's own `time.ParseDuration` table (the edges: range, precision, signs).
    #[test]
    fn the_go_port_matches_gos_answers_at_the_edges() {
        const MAX: i64 = i64::MAX;
        for (raw, nanos) in [
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * 60 * 1_000_000_000),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", MAX),
            ("9223372036854775.807us", MAX),
            ("9223372036s854ms775us807ns", MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("0.100000000000000000000h", 6 * 60 * 1_000_000_000),
            (
                "0.830103483285477580700h",
                (49 * 60 + 48) * 1_000_000_000 + 372_539_827,
            ),
            ("-.5m", -30_000_000_000),
            ("1.004s", 1_004_000_000),
        ] {
            assert_eq!(go_duration::parse(raw), Ok(nanos), "{raw}");
        }
        for raw in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{ff}ff",
            "hello \u{ff}ff world",
            "9223372036854775808ns",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            "-9223372036854775809ns",
        ] {
            assert!(go_duration::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn listen_addresses_take_gos_forms_and_resolve_hostnames() {
        let resolve = |raw: &str| ListenAddr::resolve(raw).map(|a| a.0);
        assert_eq!(
            resolve(":8080"),
            Ok(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8080)))
        );
        assert_eq!(
            resolve("127.0.0.1:9"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9)))
        );
        assert_eq!(
            resolve("0.0.0.0:80"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 80)))
        );
        assert_eq!(
            resolve("[::1]:8080"),
            Ok(SocketAddr::from((Ipv6Addr::LOCALHOST, 8080)))
        );
        let localhost = resolve("localhost:8080").expect("localhost resolves");
        assert!(localhost.ip().is_loopback(), "{localhost}");
        assert_eq!(localhost.port(), 8080);
        assert_eq!(resolve("localhost:0").map(|a| a.port()), Ok(0));
    }

    #[test]
    fn malformed_or_unresolvable_listen_addresses_are_refused() {
        for raw in [
            "8080",
            "localhost",
            "localhost:",
            ":",
            ":99999",
            ":http",
            ":-1",
            "[::1]",
            "::1:8080",
            "[::1:8080",
            "local host:80",
            "nosuch.invalid:8080",
        ] {
            let problem = ListenAddr::resolve(raw).expect_err(raw);
            assert!(problem.contains(&format!("{raw:?}")), "{raw}: {problem}");
        }
        let env = Env::from_map([(METRICS_ADDR, "nosuch.invalid:9464")]);
        let error = env.metrics_addr().expect_err("unresolvable");
        assert_eq!(error.variable, METRICS_ADDR);
        assert!(error.problem.contains("resolve"), "{error}");
    }

    #[test]
    fn shared_settings_default_when_unset_and_refuse_a_wrong_broker_scheme() {
        let unset = Env::from_map(Vec::<(String, String)>::new());
        let default = unset.amqp_url().expect("default broker");
        assert_eq!(default.as_slice()[0].url(), DEFAULT_AMQP_URL);
        assert_eq!(default.len(), 1);
        assert_eq!(unset.metrics_addr().map(|a| a.0.port()), Ok(9464));
        assert_eq!(unset.http_timeout(), Ok(DEFAULT_HTTP_TIMEOUT));
        assert_eq!(
            unset.slack_api_base_url().map(|u| u.to_string()),
            Ok("https://slack.com/api".into())
        );
        let wrong = Env::from_map([(AMQP_URL, "http://rabbit")]);
        assert_eq!(wrong.amqp_url().err().map(|e| e.variable), Some(AMQP_URL));
        let cluster = Env::from_map([(
            AMQP_URL,
            "amqp://g:g@127.0.0.1:5682/%2f,amqp://g:g@127.0.0.1:5683/%2f",
        )]);
        assert_eq!(
            cluster.amqp_url().map(|a| a.endpoints()).ok().as_deref(),
            Some("127.0.0.1:5682,127.0.0.1:5683")
        );
        let one_bad = Env::from_map([(AMQP_URL, "amqp://g:g@127.0.0.1:5682/%2f,rabbit-2")]);
        let error = one_bad.amqp_url().expect_err("refused");
        assert_eq!(error.variable, AMQP_URL);
        assert!(
            error.to_string().starts_with("SPRITZ_AMQP_URL: ")
                && !error.to_string().contains("g:g"),
            "{error}"
        );
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
