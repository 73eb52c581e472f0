//! Versioned message bodies: every body carries `"v"`, and a consumer refuses a version
//! it does not know (the message goes to the parking lot) instead of guessing.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The one body version this build reads and writes.
pub const VERSION: u32 = 1;

/// The AMQP `type` property of each message kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageType {
    #[serde(rename = "slack.event.v1")]
    SlackEvent,
    #[serde(rename = "spritz.lifecycle.v1")]
    Lifecycle,
}

impl MessageType {
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::SlackEvent => "slack.event.v1",
            MessageType::Lifecycle => "spritz.lifecycle.v1",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "slack.event.v1" => Some(MessageType::SlackEvent),
            "spritz.lifecycle.v1" => Some(MessageType::Lifecycle),
            _ => None,
        }
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a body could not be used. Both variants send the message to the parking lot.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not a valid message: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("unknown message version {0} (this build reads version {VERSION})")]
    UnknownVersion(u64),
    #[error("message has no version field")]
    MissingVersion,
}

impl DecodeError {
    /// A short, fixed reason for headers and metric labels.
    pub fn reason(&self) -> &'static str {
        crate::ParkReason::from(self).as_str()
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    v: Option<serde_json::Value>,
}

/// Decodes a versioned body, checking the version before the shape so that a future
/// version with a different shape is reported as such, not as garbage.
///
/// # Errors
/// [`DecodeError`] when the body is not JSON, has no or an unknown `v`, or does not fit `T`.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let probe: VersionProbe = serde_json::from_slice(body).map_err(DecodeError::Malformed)?;
    match probe.v {
        None => Err(DecodeError::MissingVersion),
        Some(v) => match v.as_u64() {
            Some(n) if n == u64::from(VERSION) => {
                serde_json::from_slice(body).map_err(DecodeError::Malformed)
            }
            Some(n) => Err(DecodeError::UnknownVersion(n)),
            None => Err(DecodeError::MissingVersion),
        },
    }
}

/// Serde helper: the `v` field always serialises as [`VERSION`].
pub(crate) fn version() -> u32 {
    VERSION
}
