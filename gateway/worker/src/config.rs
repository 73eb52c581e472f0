//! The worker's configuration (SPEC §7), parsed once at start from the environment.
//!
//! Only what the worker needs: no OAuth secrets, no signing secret. A missing or
//! malformed variable is a [`ConfigError`] naming it; `worker_main` prints it and
//! exits with code 2.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use spritz_service::AmqpAddresses;

use crate::ledger::{RedisTarget, TargetError};
use spritz_service::ListenAddr;
use spritz_service::Trust;
use spritz_service::config::{
    AMQP_URL_VARIABLE, ConfigError, DEFAULT_SLACK_API_BASE_URL, Env, METRICS_ADDR_VARIABLE,
    Variable,
};

pub use spritz_service::config::{
    AMQP_URL, BACKEND_BASE_URL, BACKEND_INTERNAL_TOKEN as BACKEND_TOKEN, HTTP_TIMEOUT,
    METRICS_ADDR, PRINCIPAL_ID, SLACK_API_BASE_URL,
};
pub const REDIS_URL: &str = "SPRITZ_REDIS_URL";
pub const REDIS_KEY_PREFIX: &str = "SPRITZ_REDIS_KEY_PREFIX";
pub const REDIS_SENTINEL_MASTER: &str = "SPRITZ_REDIS_SENTINEL_MASTER";
pub const REDIS_SENTINEL_PASSWORD: &str = "SPRITZ_REDIS_SENTINEL_PASSWORD";
pub const PREFETCH: &str = "SPRITZ_WORKER_PREFETCH";
pub const SHUTDOWN_GRACE: &str = "SPRITZ_WORKER_SHUTDOWN_GRACE";
pub const CLAIM_LEASE: &str = "SPRITZ_WORKER_CLAIM_LEASE";
pub const MAX_ATTEMPTS: &str = "SPRITZ_WORKER_MAX_ATTEMPTS";
pub const SPRITZ_BASE_URL: &str = "SPRITZ_SLACK_SPRITZ_BASE_URL";
pub const SPRITZ_SERVICE_TOKEN: &str = "SPRITZ_SLACK_SPRITZ_SERVICE_TOKEN";
pub const DEDUPE_TTL: &str = "SPRITZ_SLACK_DEDUPE_TTL";
pub const PROCESSING_TIMEOUT: &str = "SPRITZ_SLACK_PROCESSING_TIMEOUT";
pub const SESSION_RETRY_INTERVAL: &str = "SPRITZ_SLACK_SESSION_RETRY_INTERVAL";
pub const STATUS_MESSAGE_DELAY: &str = "SPRITZ_SLACK_STATUS_MESSAGE_DELAY";
pub const LIFECYCLE_NOTIFY_URL: &str = "SPRITZ_LIFECYCLE_NOTIFY_URL";
pub const LIFECYCLE_NOTIFY_TOKEN: &str = "SPRITZ_LIFECYCLE_NOTIFY_AUTH_TOKEN";
pub const LIFECYCLE_NOTIFY_TIMEOUT: &str = "SPRITZ_LIFECYCLE_NOTIFY_TIMEOUT";

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Deliveries one worker holds at once. A waiting prompt costs about 18 KB (README,
/// *Performance*), so the default is sized for slow agents: 1,000 prompts of 60 s are
/// about 17 replies/s per worker in ~65 MB; 10,000 fit in about 220 MB.
const DEFAULT_PREFETCH: u16 = 1000;
const DEFAULT_MAX_ATTEMPTS: u32 = 300;

/// Every variable the worker reads, for `spritz-gateway worker --help`.
pub const VARIABLES: &[Variable] = &[
    AMQP_URL_VARIABLE,
    Variable {
        name: REDIS_URL,
        default: Some(DEFAULT_REDIS_URL),
        help: "Redis URL of the delivery ledger",
    },
    Variable {
        name: REDIS_SENTINEL_MASTER,
        default: None,
        help: "Sentinel master name; SPRITZ_REDIS_URL then lists the sentinels",
    },
    Variable {
        name: REDIS_SENTINEL_PASSWORD,
        default: None,
        help: "password of the sentinels themselves (when they require one)",
    },
    Variable {
        name: REDIS_KEY_PREFIX,
        default: Some("spritz:"),
        help: "prefix of every ledger key",
    },
    METRICS_ADDR_VARIABLE,
    Variable {
        name: PREFETCH,
        default: Some("1000"),
        help: "deliveries processed at once",
    },
    Variable {
        name: SHUTDOWN_GRACE,
        default: Some("25s"),
        help: "time to finish in-flight deliveries on SIGTERM",
    },
    Variable {
        name: CLAIM_LEASE,
        default: Some("30s"),
        help: "ledger claim lease (renewed while processing)",
    },
    Variable {
        name: MAX_ATTEMPTS,
        default: Some("300"),
        help: "re-queues before a message is parked",
    },
    Variable {
        name: BACKEND_BASE_URL,
        default: None,
        help: "backend internal API base URL",
    },
    Variable {
        name: BACKEND_TOKEN,
        default: None,
        help: "backend internal API bearer token",
    },
    Variable {
        name: SPRITZ_BASE_URL,
        default: None,
        help: "Spritz API base URL",
    },
    Variable {
        name: SPRITZ_SERVICE_TOKEN,
        default: None,
        help: "Spritz API service token",
    },
    Variable {
        name: PRINCIPAL_ID,
        default: None,
        help: "principal id of this gateway at the backend",
    },
    Variable {
        name: SLACK_API_BASE_URL,
        default: Some(DEFAULT_SLACK_API_BASE_URL),
        help: "Slack Web API base URL",
    },
    Variable {
        name: HTTP_TIMEOUT,
        default: Some("15s"),
        help: "timeout of every outbound HTTP call",
    },
    Variable {
        name: DEDUPE_TTL,
        default: Some("10m"),
        help: "how long the ledger remembers a message",
    },
    Variable {
        name: PROCESSING_TIMEOUT,
        default: Some("60s"),
        help: "receivedAt to the terminal failure reply",
    },
    Variable {
        name: SESSION_RETRY_INTERVAL,
        default: Some("1s"),
        help: "wait between session recovery attempts",
    },
    Variable {
        name: STATUS_MESSAGE_DELAY,
        default: Some("3s"),
        help: "receivedAt to the \"still waking up\" message",
    },
    Variable {
        name: LIFECYCLE_NOTIFY_URL,
        default: None,
        help: "backend lifecycle webhook (enables backend sync)",
    },
    Variable {
        name: LIFECYCLE_NOTIFY_TOKEN,
        default: None,
        help: "bearer token of the lifecycle webhook",
    },
    Variable {
        name: LIFECYCLE_NOTIFY_TIMEOUT,
        default: Some("3s"),
        help: "lifecycle webhook timeout",
    },
    spritz_service::tls::CA_FILE_VARIABLE,
    spritz_service::telemetry::OTLP_ENDPOINT_VARIABLE,
    spritz_service::telemetry::SERVICE_NAME_VARIABLE,
];

/// Timing of the delivery pipeline (SPEC §5 clock).
#[derive(Clone, Debug)]
pub struct Timing {
    /// `receivedAt` + this: the status message threshold.
    pub status_message_delay: Duration,
    /// `receivedAt` + this: the delivery deadline.
    pub processing_timeout: Duration,
    /// Wait between recovery attempts (a delay tier).
    pub session_retry_interval: Duration,
    /// Timeout of each outbound HTTP call.
    pub http_timeout: Duration,
    /// How long the ledger remembers a message.
    pub dedupe_ttl: Duration,
    /// Claim and conversation-lock lease; renewed every third of it while processing.
    pub claim_lease: Duration,
    /// Re-queues before a message is parked.
    pub max_attempts: u32,
}

/// Where the external services are.
#[derive(Clone, Debug)]
pub struct Services {
    pub backend_base_url: url::Url,
    pub backend_token: SecretString,
    pub spritz_base_url: url::Url,
    pub spritz_service_token: SecretString,
    pub principal_id: String,
    pub slack_api_base_url: url::Url,
}

/// The optional lifecycle webhook the backend-sync consumer forwards to.
#[derive(Clone, Debug)]
pub struct LifecycleNotify {
    pub url: url::Url,
    pub token: Option<SecretString>,
    pub timeout: Duration,
}

/// Redis Sentinel settings: the master name the sentinels know the primary by, and
/// the sentinels' own password.
#[derive(Clone, Debug)]
pub struct RedisSentinel {
    pub master: String,
    pub password: Option<SecretString>,
}

/// Everything `spritz-gateway worker` needs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The broker's nodes; each URL holds a password and is shown only as host:port.
    pub amqp_url: AmqpAddresses,
    /// The Redis server, or with [`WorkerConfig::redis_sentinel`] the sentinels; may
    /// hold a password: never logged.
    pub redis_url: String,
    /// Find the primary through Redis Sentinel.
    pub redis_sentinel: Option<RedisSentinel>,
    pub redis_key_prefix: String,
    pub metrics_addr: SocketAddr,
    pub prefetch: u16,
    pub shutdown_grace: Duration,
    pub services: Services,
    pub timing: Timing,
    pub lifecycle_notify: Option<LifecycleNotify>,
    /// Whom HTTPS, `wss://`, `amqps://` and `rediss://` servers must prove themselves
    /// to (`SPRITZ_TLS_CA_FILE`).
    pub trust: Trust,
}

impl WorkerConfig {
    /// Parses every variable.
    ///
    /// # Errors
    /// The first missing or malformed variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let prefetch = env
            .parse::<u16>(PREFETCH, "a number from 1 to 65535")?
            .unwrap_or(DEFAULT_PREFETCH);
        if prefetch == 0 {
            return Err(ConfigError::new(
                PREFETCH,
                "expected a number from 1 to 65535, got \"0\"",
            ));
        }
        let max_attempts = env
            .parse::<u32>(MAX_ATTEMPTS, "a positive number")?
            .unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if max_attempts == 0 {
            return Err(ConfigError::new(
                MAX_ATTEMPTS,
                "expected a positive number, got \"0\"",
            ));
        }
        let services = Services {
            backend_base_url: env.url(BACKEND_BASE_URL, None)?,
            backend_token: env.required_secret(BACKEND_TOKEN)?,
            spritz_base_url: env.url(SPRITZ_BASE_URL, None)?,
            spritz_service_token: env.required_secret(SPRITZ_SERVICE_TOKEN)?,
            principal_id: env.required(PRINCIPAL_ID)?,
            slack_api_base_url: env.slack_api_base_url()?,
        };
        let timing = Timing {
            status_message_delay: env
                .duration(STATUS_MESSAGE_DELAY, Some(Duration::from_secs(3)))?,
            processing_timeout: env.duration(PROCESSING_TIMEOUT, Some(Duration::from_secs(60)))?,
            session_retry_interval: env
                .duration(SESSION_RETRY_INTERVAL, Some(Duration::from_secs(1)))?,
            http_timeout: env.http_timeout()?,
            dedupe_ttl: env.duration(DEDUPE_TTL, Some(Duration::from_secs(600)))?,
            claim_lease: env.duration(CLAIM_LEASE, Some(Duration::from_secs(30)))?,
            max_attempts,
        };
        let lifecycle_notify = match env.optional_url(LIFECYCLE_NOTIFY_URL)? {
            None => None,
            Some(url) => Some(LifecycleNotify {
                url,
                token: env.optional_secret(LIFECYCLE_NOTIFY_TOKEN),
                timeout: env.duration(LIFECYCLE_NOTIFY_TIMEOUT, Some(Duration::from_secs(3)))?,
            }),
        };
        let redis_url = env
            .get(REDIS_URL)
            .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned());
        let redis_sentinel = env.get(REDIS_SENTINEL_MASTER).map(|master| RedisSentinel {
            master,
            password: env.optional_secret(REDIS_SENTINEL_PASSWORD),
        });
        let trust = Trust::from_env(env)?;
        if let Err(error) = redis_target(&redis_url, redis_sentinel.as_ref(), &trust) {
            return Err(ConfigError::new(REDIS_URL, error.to_string()));
        }
        let amqp_url = env.amqp_url()?;
        Ok(Self {
            amqp_url,
            redis_url,
            redis_sentinel,
            redis_key_prefix: env
                .get(REDIS_KEY_PREFIX)
                .unwrap_or_else(|| "spritz:".to_owned()),
            metrics_addr: env.metrics_addr()?.0,
            prefetch,
            shutdown_grace: env.duration(SHUTDOWN_GRACE, Some(Duration::from_secs(25)))?,
            services,
            timing,
            lifecycle_notify,
            trust,
        })
    }

    /// The Redis the ledger uses (validated at start by [`WorkerConfig::from_env`]).
    ///
    /// # Errors
    /// The URL (or, with Sentinel, the sentinel list) is malformed.
    pub fn redis_target(&self) -> Result<RedisTarget, TargetError> {
        redis_target(&self.redis_url, self.redis_sentinel.as_ref(), &self.trust)
    }

    /// The address parsed as the listener type, for callers that want it.
    pub fn metrics_listen_addr(&self) -> ListenAddr {
        ListenAddr(self.metrics_addr)
    }
}

fn redis_target(
    url: &str,
    sentinel: Option<&RedisSentinel>,
    trust: &Trust,
) -> Result<RedisTarget, TargetError> {
    RedisTarget::parse(
        url,
        sentinel.map(|s| s.master.as_str()),
        sentinel
            .and_then(|s| s.password.as_ref())
            .map(ExposeSecret::expose_secret),
        trust,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Vec<(&'static str, &'static str)> {
        vec![
            (BACKEND_BASE_URL, "http://backend/base/"),
            (BACKEND_TOKEN, "b"),
            (SPRITZ_BASE_URL, "http://spritz"),
            (SPRITZ_SERVICE_TOKEN, "s"),
            (PRINCIPAL_ID, "p"),
        ]
    }

    #[test]
    fn the_worker_starts_without_oauth_secrets_and_with_spec_defaults() {
        let config = WorkerConfig::from_env(&Env::from_map(minimal())).expect("config");
        assert_eq!(config.timing.processing_timeout, Duration::from_secs(60));
        assert_eq!(config.timing.session_retry_interval, Duration::from_secs(1));
        assert_eq!(config.timing.status_message_delay, Duration::from_secs(3));
        assert_eq!(config.timing.dedupe_ttl, Duration::from_secs(600));
        assert_eq!(
            config.services.backend_base_url.as_str(),
            "http://backend/base"
        );
        assert_eq!(config.metrics_addr.port(), 9464);
        assert_eq!(config.prefetch, 1000);
        assert!(config.lifecycle_notify.is_none());
    }

    #[test]
    fn a_missing_or_malformed_variable_is_named() {
        for (name, bad) in [
            (PREFETCH, "lots"),
            (PREFETCH, "0"),
            (DEDUPE_TTL, "forever"),
            (REDIS_URL, "http://x"),
        ] {
            let mut vars = minimal();
            vars.push((name, bad));
            let error = WorkerConfig::from_env(&Env::from_map(vars)).expect_err(name);
            assert_eq!(error.variable, name);
        }
        let vars: Vec<_> = minimal()
            .into_iter()
            .filter(|(k, _)| *k != PRINCIPAL_ID)
            .collect();
        assert_eq!(
            WorkerConfig::from_env(&Env::from_map(vars))
                .expect_err("missing")
                .variable,
            PRINCIPAL_ID
        );
    }

    #[test]
    fn a_sentinel_master_makes_the_redis_url_a_list_of_sentinels() {
        let mut vars = minimal();
        vars.push((REDIS_URL, "redis://:pw@s1:26379,s2:26379/0"));
        vars.push((REDIS_SENTINEL_MASTER, "spritz"));
        let config = WorkerConfig::from_env(&Env::from_map(vars)).expect("config");
        assert_eq!(
            config.redis_sentinel.as_ref().map(|s| s.master.as_str()),
            Some("spritz")
        );
        assert!(matches!(
            config.redis_target(),
            Ok(RedisTarget::Sentinel { .. })
        ));
        let mut vars = minimal();
        vars.push((REDIS_URL, "redis://"));
        vars.push((REDIS_SENTINEL_MASTER, "spritz"));
        let error = WorkerConfig::from_env(&Env::from_map(vars)).expect_err("no sentinel");
        assert_eq!(error.variable, REDIS_URL);
    }
}
