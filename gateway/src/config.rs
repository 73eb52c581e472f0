//! Configuration of `spritz-gateway serve`, parsed once at start from the environment.
//!
//! Required (the process refuses to start without them, exit code 2): everything the
//! two jobs of the ingress cannot do without — `SPRITZ_SLACK_SIGNING_SECRET` (event
//! verification), `SPRITZ_SLACK_GATEWAY_PUBLIC_URL` (OAuth `redirect_uri` and route
//! prefix), `SPRITZ_SLACK_CLIENT_ID`, `SPRITZ_SLACK_CLIENT_SECRET`,
//! `SPRITZ_SLACK_OAUTH_STATE_SECRET` (the install flow),
//! `SPRITZ_SLACK_BACKEND_BASE_URL`, `SPRITZ_SLACK_BACKEND_INTERNAL_TOKEN` and
//! `SPRITZ_SLACK_PRINCIPAL_ID` (the installation upsert). These have no safe default:
//! a guessed one would either leave events unverified or send installs nowhere.
//! Everything else has the default of SPEC §7. The ingress needs no Spritz API, Redis or
//! worker settings and does not read them.

use std::time::Duration;

use secrecy::SecretString;
use spritz_service::config::{
    AMQP_URL_VARIABLE, ConfigError, DEFAULT_SLACK_API_BASE_URL, Env, ListenAddr,
    METRICS_ADDR_VARIABLE, Variable,
};
use spritz_service::{AmqpAddresses, Trust};
use url::Url;

pub const GATEWAY_ADDR: &str = "SPRITZ_SLACK_GATEWAY_ADDR";
pub const PUBLIC_URL: &str = "SPRITZ_SLACK_GATEWAY_PUBLIC_URL";
pub const SIGNING_SECRET: &str = "SPRITZ_SLACK_SIGNING_SECRET";
pub const CLIENT_ID: &str = "SPRITZ_SLACK_CLIENT_ID";
pub const CLIENT_SECRET: &str = "SPRITZ_SLACK_CLIENT_SECRET";
pub const OAUTH_STATE_SECRET: &str = "SPRITZ_SLACK_OAUTH_STATE_SECRET";
pub use spritz_service::config::SLACK_API_BASE_URL as API_BASE_URL;
pub const BOT_SCOPES: &str = "SPRITZ_SLACK_BOT_SCOPES";
pub const PRESET_ID: &str = "SPRITZ_SLACK_PRESET_ID";
pub use spritz_service::config::{
    AMQP_URL, BACKEND_BASE_URL, BACKEND_INTERNAL_TOKEN, HTTP_TIMEOUT, METRICS_ADDR, PRINCIPAL_ID,
};

const DEFAULT_GATEWAY_ADDR: &str = ":8080";
const DEFAULT_BOT_SCOPES: &str =
    "app_mentions:read,channels:history,chat:write,im:history,mpim:history";
const DEFAULT_PRESET_ID: &str = "zeno";

/// How long a publish may wait for the broker's confirm before the request is answered
/// 503. Slack gives up after 3 s; this leaves room for the rest of the request.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Every variable `serve` reads, for `--help`.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: GATEWAY_ADDR,
        default: Some(DEFAULT_GATEWAY_ADDR),
        help: "HTTP listener for Slack",
    },
    Variable {
        name: PUBLIC_URL,
        default: None,
        help: "required; public URL of the gateway (its path is also a route prefix)",
    },
    Variable {
        name: SIGNING_SECRET,
        default: None,
        help: "required; Slack signing secret",
    },
    Variable {
        name: CLIENT_ID,
        default: None,
        help: "required; Slack app client id",
    },
    Variable {
        name: CLIENT_SECRET,
        default: None,
        help: "required; Slack app client secret",
    },
    Variable {
        name: OAUTH_STATE_SECRET,
        default: None,
        help: "required; key that signs the OAuth state",
    },
    Variable {
        name: API_BASE_URL,
        default: Some(DEFAULT_SLACK_API_BASE_URL),
        help: "Slack Web API base URL",
    },
    Variable {
        name: BOT_SCOPES,
        default: Some(DEFAULT_BOT_SCOPES),
        help: "comma-separated bot scopes",
    },
    Variable {
        name: PRESET_ID,
        default: Some(DEFAULT_PRESET_ID),
        help: "preset of new installations",
    },
    Variable {
        name: BACKEND_BASE_URL,
        default: None,
        help: "required; backend base URL",
    },
    Variable {
        name: BACKEND_INTERNAL_TOKEN,
        default: None,
        help: "required; backend internal bearer token",
    },
    Variable {
        name: PRINCIPAL_ID,
        default: None,
        help: "required; principal that owns installations",
    },
    Variable {
        name: HTTP_TIMEOUT,
        default: Some("15s"),
        help: "timeout of calls to Slack and the backend",
    },
    AMQP_URL_VARIABLE,
    METRICS_ADDR_VARIABLE,
    spritz_service::tls::CA_FILE_VARIABLE,
    spritz_service::telemetry::OTLP_ENDPOINT_VARIABLE,
    spritz_service::telemetry::SERVICE_NAME_VARIABLE,
];

/// Everything `serve` needs, typed.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen_addr: ListenAddr,
    /// Absolute, without a trailing slash.
    pub public_url: Url,
    pub signing_secret: SecretString,
    pub client_id: String,
    pub client_secret: SecretString,
    pub oauth_state_secret: SecretString,
    pub slack_api_base_url: Url,
    /// Normalised: trimmed, no empty entries.
    pub bot_scopes: Vec<String>,
    pub preset_id: String,
    pub backend_base_url: Url,
    pub backend_internal_token: SecretString,
    pub principal_id: String,
    pub http_timeout: Duration,
    /// The broker's nodes; each URL holds the password and is shown only as host:port.
    pub amqp_url: AmqpAddresses,
    pub metrics_addr: ListenAddr,
    /// Not an environment variable: [`DEFAULT_PUBLISH_TIMEOUT`] unless a test or the
    /// benchmark sets another.
    pub publish_timeout: Duration,
    /// Confirm-mode channels the publisher spreads requests over.
    pub publisher_channels: usize,
    /// Whom Slack, the backend and an `amqps://` broker must prove themselves to
    /// (`SPRITZ_TLS_CA_FILE`).
    pub trust: Trust,
}

impl ServeConfig {
    /// # Errors
    /// The first missing or malformed variable, named.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let listen_addr = env.listen_addr(GATEWAY_ADDR, Some(DEFAULT_GATEWAY_ADDR))?;
        let public_url = env.url(PUBLIC_URL, None)?;
        let signing_secret = env.required_secret(SIGNING_SECRET)?;
        let client_id = env.required(CLIENT_ID)?;
        let client_secret = env.required_secret(CLIENT_SECRET)?;
        let oauth_state_secret = env.required_secret(OAUTH_STATE_SECRET)?;
        let slack_api_base_url = env.slack_api_base_url()?;
        let bot_scopes = parse_scopes(
            &env.get(BOT_SCOPES)
                .unwrap_or_else(|| DEFAULT_BOT_SCOPES.to_owned()),
        )
        .map_err(|problem| ConfigError::new(BOT_SCOPES, problem))?;
        let preset_id = env
            .get(PRESET_ID)
            .unwrap_or_else(|| DEFAULT_PRESET_ID.to_owned());
        let backend_base_url = env.url(BACKEND_BASE_URL, None)?;
        let backend_internal_token = env.required_secret(BACKEND_INTERNAL_TOKEN)?;
        let principal_id = env.required(PRINCIPAL_ID)?;
        let http_timeout = env.http_timeout()?;
        let amqp_url = env.amqp_url()?;
        let metrics_addr = env.metrics_addr()?;
        Ok(Self {
            listen_addr,
            public_url,
            signing_secret,
            client_id,
            client_secret,
            oauth_state_secret,
            slack_api_base_url,
            bot_scopes,
            preset_id,
            backend_base_url,
            backend_internal_token,
            principal_id,
            http_timeout,
            amqp_url,
            metrics_addr,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            publisher_channels: 4,
            trust: Trust::from_env(env)?,
        })
    }

    /// The path of the public URL (`/gw` for `https://x/gw`), empty for none: every
    /// route is also served under it.
    pub fn route_prefix(&self) -> &str {
        self.public_url.path().trim_end_matches('/')
    }

    /// Where Slack sends the installing user back.
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}/slack/oauth/callback",
            self.public_url.as_str().trim_end_matches('/')
        )
    }
}

fn parse_scopes(raw: &str) -> Result<Vec<String>, String> {
    let scopes: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return Err(format!("expected comma-separated scopes, got {raw:?}"));
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> Vec<(&'static str, &'static str)> {
        vec![
            (PUBLIC_URL, "https://gw.example.com/slack-gw/"),
            (SIGNING_SECRET, "sign"),
            (CLIENT_ID, "123.456"),
            (CLIENT_SECRET, "client-secret"),
            (OAUTH_STATE_SECRET, "state-secret"),
            (BACKEND_BASE_URL, "https://backend.example.com/spritz"),
            (BACKEND_INTERNAL_TOKEN, "internal"),
            (PRINCIPAL_ID, "principal"),
        ]
    }

    #[test]
    fn a_complete_environment_parses_with_spec_defaults() {
        let config = ServeConfig::from_env(&Env::from_map(complete())).expect("config");
        assert_eq!(config.listen_addr.0.port(), 8080);
        assert_eq!(config.metrics_addr.0.port(), 9464);
        assert_eq!(config.route_prefix(), "/slack-gw");
        assert_eq!(
            config.redirect_uri(),
            "https://gw.example.com/slack-gw/slack/oauth/callback"
        );
        assert_eq!(config.slack_api_base_url.as_str(), "https://slack.com/api");
        assert_eq!(config.bot_scopes.len(), 5);
        assert_eq!(config.preset_id, "zeno");
        assert_eq!(config.http_timeout, Duration::from_secs(15));
        assert_eq!(config.publish_timeout, DEFAULT_PUBLISH_TIMEOUT);
    }

    #[test]
    fn each_required_variable_is_named_when_missing() {
        for (missing, _) in complete() {
            let vars = complete().into_iter().filter(|(name, _)| *name != missing);
            let error = ServeConfig::from_env(&Env::from_map(vars)).expect_err(missing);
            assert_eq!(error.variable, missing);
        }
    }

    #[test]
    fn malformed_values_are_refused_not_defaulted() {
        for (name, value) in [
            (HTTP_TIMEOUT, "soon"),
            (HTTP_TIMEOUT, "3"),
            (HTTP_TIMEOUT, "0"),
            (HTTP_TIMEOUT, "-1s"),
            (GATEWAY_ADDR, "8080"),
            (GATEWAY_ADDR, "nosuch.invalid:8080"),
            (AMQP_URL, "http://rabbit"),
            (BOT_SCOPES, " , "),
            (API_BASE_URL, "slack.com/api"),
        ] {
            let mut vars = complete();
            vars.push((name, value));
            let error = ServeConfig::from_env(&Env::from_map(vars)).expect_err(name);
            assert_eq!(error.variable, name);
        }
    }

    #[test]
    fn go_durations_and_hostname_addresses_are_taken() {
        let mut vars = complete();
        vars.push((HTTP_TIMEOUT, "1m0.5s"));
        vars.push((GATEWAY_ADDR, "localhost:8081"));
        vars.push((METRICS_ADDR, "[::1]:9465"));
        let config = ServeConfig::from_env(&Env::from_map(vars)).expect("config");
        assert_eq!(config.http_timeout, Duration::from_millis(60_500));
        assert!(config.listen_addr.0.ip().is_loopback());
        assert_eq!(config.listen_addr.0.port(), 8081);
        assert_eq!(config.metrics_addr.0.to_string(), "[::1]:9465");
    }

    #[test]
    fn a_public_url_without_a_path_means_no_prefix() {
        let mut vars = complete();
        vars[0] = (PUBLIC_URL, "https://gw.example.com");
        let config = ServeConfig::from_env(&Env::from_map(vars)).expect("config");
        assert_eq!(config.route_prefix(), "");
        assert_eq!(
            config.redirect_uri(),
            "https://gw.example.com/slack/oauth/callback"
        );
    }
}
