//! Slack request signing (`v0=hex(hmac_sha256(secret, "v0:" + ts + ":" + body))`).
//!
//! Verification lives here, next to signing, so the gateway, the load generator and
//! the sandbox CLI cannot disagree on the scheme.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a request timestamp may be from now before it is refused as a replay.
pub const MAX_CLOCK_SKEW_SECS: i64 = 5 * 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request carries no signature or timestamp")]
    Missing,
    #[error("the request timestamp is not a number")]
    BadTimestamp,
    #[error("the request timestamp is outside the allowed window")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// The `X-Slack-Signature` value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!("v0={}", hex::encode(mac(secret, timestamp, body)))
}

/// Checks a Slack signature in constant time, and that `timestamp` is within
/// [`MAX_CLOCK_SKEW_SECS`] of `now` (unix seconds).
///
/// # Errors
/// [`SignatureError`] saying which check failed (for metrics; clients only see 401).
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if (now - sent).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    let Some(given) = signature
        .strip_prefix("v0=")
        .and_then(|hex| hex::decode(hex).ok())
    else {
        return Err(SignatureError::Mismatch);
    };
    let expected = mac(secret, timestamp, body);
    if bool::from(expected.as_slice().ct_eq(&given)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";

    #[test]
    fn matches_slacks_documented_example() {
        // https://api.slack.com/authentication/verifying-requests-from-slack
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign(SECRET, "1531420618", body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn verify_accepts_a_fresh_signature_and_rejects_each_failure() {
        let body = b"{}";
        let good = sign(SECRET, "1000", body);
        assert_eq!(
            verify(SECRET, Some("1000"), Some(&good), body, 1010),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, None, Some(&good), body, 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some("x"), Some(&good), body, 1000),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            verify(SECRET, Some("1000"), Some(&good), body, 1000 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, Some("1000"), Some(&good), b"{ }", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, Some("1000"), Some("v0=zz"), body, 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some("1000"), Some(&good), body, 1000),
            Err(SignatureError::Mismatch)
        );
    }
}
