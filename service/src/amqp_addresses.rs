//! The broker addresses a process may connect to: one AMQP URL, or several nodes of a
//! RabbitMQ cluster as a comma-separated list in `SPRITZ_AMQP_URL`.
//!
//! lapin connects to exactly one URI and has no list or failover of its own, so the
//! broker supervisor walks this list: each connection attempt takes the next address,
//! and a reconnect starts after the node it last used, so a dead node is skipped
//! instead of being retried first every time. Every URL holds a password; only
//! `host:port` ([`AmqpAddress::endpoint`]) is ever shown.

use std::fmt;
use std::str::FromStr;

use lapin::uri::AMQPUri;
use secrecy::{ExposeSecret, SecretString};

/// One broker node: its URL (secret) and its `host:port` for logs.
#[derive(Clone)]
pub struct AmqpAddress {
    url: SecretString,
    endpoint: String,
}

impl AmqpAddress {
    /// The full URL, password included, for `Connection::connect` only.
    pub fn url(&self) -> &str {
        self.url.expose_secret()
    }

    /// `host:port`: what logs and errors show.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn unchecked(raw: &str) -> Self {
        let endpoint = AMQPUri::from_str(raw)
            .map(|uri| endpoint_of(&uri))
            .unwrap_or_else(|_| "<unparseable address>".to_owned());
        Self {
            url: SecretString::from(raw.to_owned()),
            endpoint,
        }
    }
}

impl fmt::Debug for AmqpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpAddress({})", self.endpoint)
    }
}

/// The ordered, non-empty list of broker nodes a process connects to.
#[derive(Clone)]
pub struct AmqpAddresses(Vec<AmqpAddress>);

impl AmqpAddresses {
    /// Parses `amqp://…` or a comma-separated list of them. Each entry must be an
    /// `amqp://` or `amqps://` URL with a host; whitespace around entries is ignored.
    ///
    /// # Errors
    /// An empty list, or the first malformed entry by its position (never its text,
    /// which may hold a password).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let entries: Vec<&str> = raw.split(',').map(str::trim).collect();
        if entries.iter().all(|entry| entry.is_empty()) {
            return Err("expected an amqp:// or amqps:// URL".to_owned());
        }
        let count = entries.len();
        let mut addresses = Vec::with_capacity(count);
        for (index, entry) in entries.into_iter().enumerate() {
            let position = if count == 1 {
                String::new()
            } else {
                format!(" (entry {} of {count})", index + 1)
            };
            if entry.is_empty() {
                return Err(format!("empty entry{position} in the URL list"));
            }
            if !(entry.starts_with("amqp://") || entry.starts_with("amqps://")) {
                return Err(format!("expected an amqp:// or amqps:// URL{position}"));
            }
            let uri = AMQPUri::from_str(entry)
                .map_err(|_| format!("expected an amqp:// or amqps:// URL{position}"))?;
            if uri.authority.host.is_empty() {
                return Err(format!("expected a URL with a host{position}"));
            }
            addresses.push(AmqpAddress {
                url: SecretString::from(entry.to_owned()),
                endpoint: endpoint_of(&uri),
            });
        }
        Ok(Self(addresses))
    }

    pub fn as_slice(&self) -> &[AmqpAddress] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a parsed list; a list built from an empty string is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `host:port` of every node, comma-separated, for logs.
    pub fn endpoints(&self) -> String {
        self.0
            .iter()
            .map(AmqpAddress::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Debug for AmqpAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpAddresses({})", self.endpoints())
    }
}

/// Unchecked: every comma-separated entry as given (lapin reports a bad one when it
/// connects). Tests and tools that build a URL themselves use this; configuration
/// goes through [`AmqpAddresses::parse`].
impl From<&str> for AmqpAddresses {
    fn from(raw: &str) -> Self {
        Self(
            raw.split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(AmqpAddress::unchecked)
                .collect(),
        )
    }
}

impl From<String> for AmqpAddresses {
    fn from(raw: String) -> Self {
        Self::from(raw.as_str())
    }
}

impl From<&String> for AmqpAddresses {
    fn from(raw: &String) -> Self {
        Self::from(raw.as_str())
    }
}

fn endpoint_of(uri: &AMQPUri) -> String {
    let host = &uri.authority.host;
    if host.contains(':') {
        format!("[{host}]:{}", uri.authority.port)
    } else {
        format!("{host}:{}", uri.authority.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_keeps_its_order_and_shows_only_hosts_and_ports() {
        let addresses = AmqpAddresses::parse(
            "amqp://u:secret@127.0.0.1:5682/%2f, amqp://u:secret@rabbit-1.rabbit:5672/spritz,amqps://u:secret@rabbit.example/v",
        )
        .expect("valid list");
        let endpoints: Vec<&str> = addresses.as_slice().iter().map(|a| a.endpoint()).collect();
        assert_eq!(
            endpoints,
            [
                "127.0.0.1:5682",
                "rabbit-1.rabbit:5672",
                "rabbit.example:5671"
            ]
        );
        assert_eq!(
            addresses.as_slice()[1].url(),
            "amqp://u:secret@rabbit-1.rabbit:5672/spritz"
        );
        let shown = format!("{addresses:?} {}", addresses.endpoints());
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn a_malformed_entry_is_named_by_position_without_its_text() {
        let error = AmqpAddresses::parse("amqp://u:secret@a:5672/%2f,http://u:secret@b")
            .expect_err("refused");
        assert_eq!(error, "expected an amqp:// or amqps:// URL (entry 2 of 2)");
        assert!(AmqpAddresses::parse("amqp://a/%2f,,amqp://b/%2f").is_err());
        assert!(AmqpAddresses::parse(" , ").is_err());
        assert!(AmqpAddresses::parse("amqp://a:notaport/%2f").is_err());
        assert_eq!(
            AmqpAddresses::parse("rabbit:5672").err().as_deref(),
            Some("expected an amqp:// or amqps:// URL")
        );
    }
}
