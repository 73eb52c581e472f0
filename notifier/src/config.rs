//! The notifier's configuration: parsed once at start from the environment, with an
//! error naming the variable for anything missing or malformed (the binary exits 2).

use std::net::SocketAddr;
use std::time::Duration;

use spritz_service::config::{ConfigError, Env, Variable};
use spritz_service::{AmqpAddresses, Trust};

use crate::leader::LeaseSettings;
use crate::pipeline::PipelineSettings;
use crate::watch::WatchSettings;

pub const AMQP_URL: &str = "SPRITZ_AMQP_URL";
pub const METRICS_ADDR: &str = "SPRITZ_METRICS_ADDR";
pub const NAMESPACES: &str = "SPRITZ_NOTIFIER_NAMESPACES";
pub const LEASE_NAME: &str = "SPRITZ_NOTIFIER_LEASE_NAME";
pub const LEASE_NAMESPACE: &str = "SPRITZ_NOTIFIER_LEASE_NAMESPACE";
pub const LEASE_DURATION: &str = "SPRITZ_NOTIFIER_LEASE_DURATION";
pub const LEASE_RENEW_INTERVAL: &str = "SPRITZ_NOTIFIER_LEASE_RENEW_INTERVAL";
pub const POD_NAME: &str = "POD_NAME";
pub const CONCURRENCY: &str = "SPRITZ_NOTIFIER_CONCURRENCY";

const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DEFAULT_METRICS_ADDR: &str = ":9464";
const DEFAULT_LEASE_NAME: &str = "spritz-notifier";
const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
const DEFAULT_RENEW_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_CONCURRENCY: usize = 64;
/// Where a pod finds its own namespace.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Every variable the notifier reads, for `--help`.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: AMQP_URL,
        default: Some(DEFAULT_AMQP_URL),
        help: "RabbitMQ URL (with vhost), or a comma-separated list of cluster nodes",
    },
    Variable {
        name: METRICS_ADDR,
        default: Some(DEFAULT_METRICS_ADDR),
        help: "/metrics, /healthz, /readyz listener",
    },
    Variable {
        name: NAMESPACES,
        default: Some("all namespaces"),
        help: "comma-separated namespaces whose Spritz objects are watched",
    },
    Variable {
        name: LEASE_NAME,
        default: Some(DEFAULT_LEASE_NAME),
        help: "coordination.k8s.io/v1 Lease for leader election",
    },
    Variable {
        name: LEASE_NAMESPACE,
        default: Some("the pod's namespace, else default"),
        help: "namespace of the Lease",
    },
    Variable {
        name: LEASE_DURATION,
        default: Some("15s"),
        help: "how long a leader's claim lasts without renewal (whole seconds)",
    },
    Variable {
        name: LEASE_RENEW_INTERVAL,
        default: Some("5s"),
        help: "how often the leader renews (and candidates retry)",
    },
    Variable {
        name: POD_NAME,
        default: Some("<hostname>-<uuid>"),
        help: "this replica's identity in the Lease",
    },
    Variable {
        name: CONCURRENCY,
        default: Some("64"),
        help: "objects announced at the same time",
    },
    Variable {
        name: "KUBECONFIG",
        default: Some("in-cluster config"),
        help: "kubeconfig file when run outside a cluster",
    },
    spritz_service::tls::CA_FILE_VARIABLE,
    spritz_service::telemetry::OTLP_ENDPOINT_VARIABLE,
    spritz_service::telemetry::SERVICE_NAME_VARIABLE,
];

/// Everything the notifier needs to run.
#[derive(Clone, Debug)]
pub struct NotifierConfig {
    /// Holds a password: never logged.
    /// The broker's nodes; each URL holds a password and is shown only as host:port.
    pub amqp_url: AmqpAddresses,
    pub metrics_addr: SocketAddr,
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
    pub lease: LeaseSettings,
    pub pipeline: PipelineSettings,
    pub watch: WatchSettings,
    /// Longest wait between broker reconnection attempts.
    pub broker_max_backoff: Duration,
    /// Whom an `amqps://` broker must prove itself to (`SPRITZ_TLS_CA_FILE`); the
    /// Kubernetes API is trusted through the kubeconfig's own CA.
    pub trust: Trust,
}

impl NotifierConfig {
    /// # Errors
    /// The first variable that is malformed.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let amqp_url = env.amqp_url()?;
        let metrics_addr = env.listen_addr(METRICS_ADDR, Some(DEFAULT_METRICS_ADDR))?.0;
        let namespaces = match env.get(NAMESPACES) {
            None => Vec::new(),
            Some(raw) => {
                parse_namespaces(&raw).map_err(|problem| ConfigError::new(NAMESPACES, problem))?
            }
        };
        let lease_name = env
            .get(LEASE_NAME)
            .unwrap_or_else(|| DEFAULT_LEASE_NAME.to_owned());
        if !is_dns_subdomain(&lease_name) {
            return Err(ConfigError::new(
                LEASE_NAME,
                format!("expected a DNS subdomain name, got {lease_name:?}"),
            ));
        }
        let lease_namespace = match env.get(LEASE_NAMESPACE) {
            Some(namespace) if is_dns_label(&namespace) => namespace,
            Some(namespace) => {
                return Err(ConfigError::new(
                    LEASE_NAMESPACE,
                    format!("expected a namespace name, got {namespace:?}"),
                ));
            }
            None => pod_namespace().unwrap_or_else(|| "default".to_owned()),
        };
        let duration = env.duration(LEASE_DURATION, Some(DEFAULT_LEASE_DURATION))?;
        if duration.subsec_nanos() != 0 {
            return Err(ConfigError::new(
                LEASE_DURATION,
                format!("expected whole seconds, got {duration:?}"),
            ));
        }
        let renew_interval = env.duration(LEASE_RENEW_INTERVAL, Some(DEFAULT_RENEW_INTERVAL))?;
        if renew_interval >= duration {
            return Err(ConfigError::new(
                LEASE_RENEW_INTERVAL,
                format!(
                    "must be shorter than {LEASE_DURATION} ({duration:?}), got {renew_interval:?}"
                ),
            ));
        }
        let identity = env.get(POD_NAME).unwrap_or_else(default_identity);
        let concurrency = env
            .parse::<usize>(CONCURRENCY, "a positive integer")?
            .unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(ConfigError::new(
                CONCURRENCY,
                "expected a positive integer, got 0",
            ));
        }
        Ok(Self {
            amqp_url,
            metrics_addr,
            namespaces,
            lease: LeaseSettings {
                name: lease_name,
                namespace: lease_namespace,
                identity,
                duration,
                renew_interval,
            },
            pipeline: PipelineSettings {
                concurrency,
                ..PipelineSettings::default()
            },
            watch: WatchSettings::default(),
            broker_max_backoff: Duration::from_secs(5),
            trust: Trust::from_env(env)?,
        })
    }
}

fn parse_namespaces(raw: &str) -> Result<Vec<String>, String> {
    let mut namespaces = Vec::new();
    for namespace in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !is_dns_label(namespace) {
            return Err(format!(
                "expected comma-separated namespace names, got {namespace:?}"
            ));
        }
        if !namespaces.iter().any(|n| n == namespace) {
            namespaces.push(namespace.to_owned());
        }
    }
    if namespaces.is_empty() {
        return Err(format!(
            "expected comma-separated namespace names, got {raw:?}"
        ));
    }
    Ok(namespaces)
}

/// RFC 1123 label: what a namespace name may be.
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// RFC 1123 subdomain: what most object names may be.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn pod_namespace() -> Option<String> {
    let namespace = std::fs::read_to_string(POD_NAMESPACE_FILE).ok()?;
    let namespace = namespace.trim();
    is_dns_label(namespace).then(|| namespace.to_owned())
}

/// `<hostname>-<uuid>`: unique even for two replicas on one host.
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "spritz-notifier".to_owned());
    format!("{host}-{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset() {
        let config =
            NotifierConfig::from_env(&Env::from_map([(LEASE_NAMESPACE, "spritz")])).expect("valid");
        assert!(config.namespaces.is_empty());
        assert_eq!(config.metrics_addr.port(), 9464);
        assert_eq!(config.lease.name, "spritz-notifier");
        assert_eq!(config.lease.namespace, "spritz");
        assert_eq!(config.lease.duration, Duration::from_secs(15));
        assert_eq!(config.lease.renew_interval, Duration::from_secs(5));
        assert!(!config.lease.identity.is_empty());
        assert_eq!(config.pipeline.concurrency, 64);
    }

    #[test]
    fn namespaces_and_lease_settings_parse() {
        let config = NotifierConfig::from_env(&Env::from_map([
            (NAMESPACES, " team-a, team-b ,team-a"),
            (LEASE_DURATION, "2s"),
            (LEASE_RENEW_INTERVAL, "500ms"),
            (POD_NAME, "notifier-0"),
        ]))
        .expect("valid");
        assert_eq!(config.namespaces, ["team-a", "team-b"]);
        assert_eq!(config.lease.duration, Duration::from_secs(2));
        assert_eq!(config.lease.renew_interval, Duration::from_millis(500));
        assert_eq!(config.lease.identity, "notifier-0");
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (variable, value) in [
            (NAMESPACES, "Team_A"),
            (NAMESPACES, " , "),
            (LEASE_NAME, "Not A Name"),
            (LEASE_NAMESPACE, "-x"),
            (LEASE_DURATION, "1500ms"),
            (LEASE_DURATION, "soon"),
            (LEASE_RENEW_INTERVAL, "15s"),
            (CONCURRENCY, "0"),
            (CONCURRENCY, "many"),
            (METRICS_ADDR, "9464"),
        ] {
            let error =
                NotifierConfig::from_env(&Env::from_map([(variable, value)])).expect_err(value);
            assert_eq!(error.variable, variable, "{value}");
        }
    }
}
