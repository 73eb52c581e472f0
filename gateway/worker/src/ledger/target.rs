//! Which Redis the ledger talks to: one server named by `SPRITZ_REDIS_URL`, or the
//! primary that Redis Sentinel names (`SPRITZ_REDIS_SENTINEL_MASTER`), looked up again
//! on every reconnect so the ledger follows a failover.
//!
//! [`RedisTarget::parse`] and [`RedisTarget::primary_client`] are the only places a
//! [`redis::Client`] is built: a `rediss://` server is verified against the process's
//! [`Trust`] (`SPRITZ_TLS_CA_FILE`). The sentinels and the primary they name are reached
//! over plain `redis://` (Sentinel over TLS is not supported yet).

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, IntoConnectionInfo, RedisResult};
use spritz_service::Trust;

/// Where the primary is found. Holds credentials: never log it.
pub enum RedisTarget {
    /// `SPRITZ_REDIS_URL` is the server.
    Direct(Box<Client>),
    /// `SPRITZ_REDIS_URL` lists the sentinels; they name the primary of `master`.
    Sentinel {
        sentinels: Box<SentinelClient>,
        master: String,
    },
}

/// Why a Redis address was refused (the text names no secret).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(String);

impl RedisTarget {
    /// Reads `url` (and, with Sentinel, the master name and the sentinels' own
    /// password).
    ///
    /// Without `sentinel_master`, `url` is the server: `redis://[user:password@]host:port[/db]`.
    /// With it, the hosts of `url` are the sentinels,
    /// `redis://[user:password@]sentinel-1:26379,sentinel-2:26379[/db]`, and the user,
    /// password and database are the primary's; `sentinel_password` authenticates to
    /// the sentinels (which often have none).
    ///
    /// # Errors
    /// The URL is not a Redis URL, or (Sentinel) names no host.
    pub fn parse(
        url: &str,
        sentinel_master: Option<&str>,
        sentinel_password: Option<&str>,
        trust: &Trust,
    ) -> Result<Self, TargetError> {
        let Some(master) = sentinel_master else {
            return redis_client(url, trust)
                .map(|client| RedisTarget::Direct(Box::new(client)))
                .map_err(|_| {
                    TargetError("expected a redis://, rediss:// or redis+unix:// URL".into())
                });
        };
        let (hosts, primary) = split_hosts(url)?;
        let primary = primary
            .into_connection_info()
            .map_err(|_| TargetError("expected redis://[user:password@]host:port,…[/db]".into()))?;
        let mut sentinel_urls = Vec::with_capacity(hosts.len());
        for host in hosts {
            let auth = sentinel_password
                .map(|p| format!(":{}@", percent_encode(p)))
                .unwrap_or_default();
            let info = format!("redis://{auth}{host}")
                .into_connection_info()
                .map_err(|_| TargetError(format!("not a host:port: {host}")))?;
            sentinel_urls.push(info);
        }
        let node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(primary.redis_settings().clone());
        let sentinels = SentinelClient::build(
            sentinel_urls,
            master,
            Some(node),
            SentinelServerType::Master,
        )
        .map_err(|_| TargetError("the sentinel list is not usable".into()))?;
        Ok(RedisTarget::Sentinel {
            sentinels: Box::new(sentinels),
            master: master.to_owned(),
        })
    }

    /// A client for the current primary: the server itself, or the one the sentinels
    /// name now (checked with `ROLE` to be a primary).
    ///
    /// # Errors
    /// No sentinel answered, or none knows a primary of the master name.
    pub async fn primary_client(&mut self) -> RedisResult<Client> {
        match self {
            RedisTarget::Direct(client) => Ok(Client::clone(client)),
            RedisTarget::Sentinel { sentinels, .. } => sentinels.async_get_client().await,
        }
    }

    /// What a log line may say about the target (no host list, no secret).
    pub fn describe(&self) -> String {
        match self {
            RedisTarget::Direct(_) => "redis".to_owned(),
            RedisTarget::Sentinel { master, .. } => format!("redis sentinel master {master}"),
        }
    }
}

/// A client for `redis_url`. With an extra CA bundle configured, a `rediss://` client
/// is given every trusted root (the Redis client replaces its platform roots with the
/// ones it is handed); otherwise it loads the platform's roots itself.
fn redis_client(redis_url: &str, trust: &Trust) -> RedisResult<Client> {
    match trust.all_roots_pem() {
        Some(roots) if redis_url.starts_with("rediss://") => Client::build_with_tls(
            redis_url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(roots.to_vec()),
            },
        ),
        _ => Client::open(redis_url),
    }
}

/// `redis://auth@h1:p1,h2:p2/db` → (`[h1:p1, h2:p2]`, `redis://auth@h1:p1/db`).
fn split_hosts(url: &str) -> Result<(Vec<String>, String), TargetError> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| TargetError("expected redis://sentinel-1:26379,sentinel-2:26379".into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (auth, hosts) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    let hosts: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    let first = hosts
        .first()
        .ok_or_else(|| TargetError("expected at least one sentinel host:port".into()))?;
    Ok((hosts.clone(), format!("redis://{auth}{first}{path}")))
}

/// Percent-encodes a password for the userinfo of a URL.
fn percent_encode(secret: &str) -> String {
    url::form_urlencoded::byte_serialize(secret.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_url_is_the_server_and_anything_else_is_refused() {
        assert!(matches!(
            RedisTarget::parse("redis://127.0.0.1:6379", None, None, &Trust::default()),
            Ok(RedisTarget::Direct(_))
        ));
        assert!(RedisTarget::parse("http://x", None, None, &Trust::default()).is_err());
    }

    #[test]
    fn with_a_master_name_the_hosts_are_sentinels_and_the_credentials_the_primarys() {
        let (hosts, primary) = split_hosts("redis://:pw@s1:26379,s2:26380/3").expect("split");
        assert_eq!(hosts, ["s1:26379", "s2:26380"]);
        assert_eq!(primary, "redis://:pw@s1:26379/3");
        let target = RedisTarget::parse(
            "redis://:pw@s1:26379,s2:26380/3",
            Some("main"),
            None,
            &Trust::default(),
        )
        .expect("sentinel target");
        assert_eq!(target.describe(), "redis sentinel master main");
        for bad in ["redis:///0", "http://s1:26379", "redis://,"] {
            assert!(
                RedisTarget::parse(bad, Some("main"), None, &Trust::default()).is_err(),
                "{bad}"
            );
        }
    }
}
