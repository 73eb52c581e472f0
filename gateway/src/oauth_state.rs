//! The OAuth `state` parameter: an HMAC-signed token carrying a random nonce and an
//! expiry, so a callback is accepted only when it comes back from an install this
//! gateway started in the last few minutes.
//!
//! Format: `base64url(json{"n":nonce,"exp":unix}) "." base64url(hmac_sha256(secret, payload))`.
//! It is stateless (any replica verifies any other's state). A state can be presented
//! more than once within its lifetime; Slack's single-use code is what makes a second
//! callback fail.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How long an install link stays valid.
pub const STATE_TTL_SECS: i64 = 10 * 60;

/// Why a `state` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the state parameter is missing")]
    Missing,
    #[error("the state parameter is malformed or its signature does not match")]
    Invalid,
    #[error("the state parameter has expired")]
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    n: String,
    exp: i64,
}

/// Issues and checks states with one secret.
#[derive(Clone, Debug)]
pub struct StateSigner {
    secret: SecretString,
}

impl StateSigner {
    pub fn new(secret: SecretString) -> Self {
        Self { secret }
    }

    /// A fresh state valid until `now + STATE_TTL_SECS`.
    pub fn issue(&self, now: i64) -> String {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            n: hex::encode(nonce),
            exp: now + STATE_TTL_SECS,
        };
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let encoded = URL_SAFE_NO_PAD.encode(json);
        let signature = URL_SAFE_NO_PAD.encode(self.mac(encoded.as_bytes()));
        format!("{encoded}.{signature}")
    }

    /// Checks the signature (constant time), then the expiry.
    ///
    /// # Errors
    /// [`StateError`]: missing, tampered with, or expired.
    pub fn verify(&self, state: Option<&str>, now: i64) -> Result<(), StateError> {
        let state = state
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(StateError::Missing)?;
        let (encoded, signature) = state.split_once('.').ok_or(StateError::Invalid)?;
        let given = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| StateError::Invalid)?;
        if !bool::from(self.mac(encoded.as_bytes()).as_slice().ct_eq(&given)) {
            return Err(StateError::Invalid);
        }
        let json = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| StateError::Invalid)?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| StateError::Invalid)?;
        if payload.exp < now {
            return Err(StateError::Expired);
        }
        Ok(())
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        let Ok(mut mac) =
            <Hmac<Sha256> as Mac>::new_from_slice(self.secret.expose_secret().as_bytes())
        else {
            return Vec::new();
        };
        mac.update(b"spritz-oauth-state:");
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(secret: &str) -> StateSigner {
        StateSigner::new(SecretString::from(secret.to_owned()))
    }

    #[test]
    fn a_fresh_state_verifies_until_it_expires() {
        let signer = signer("s3cret");
        let state = signer.issue(1_000);
        assert_eq!(signer.verify(Some(&state), 1_000), Ok(()));
        assert_eq!(signer.verify(Some(&state), 1_000 + STATE_TTL_SECS), Ok(()));
        assert_eq!(
            signer.verify(Some(&state), 1_001 + STATE_TTL_SECS),
            Err(StateError::Expired)
        );
        assert_ne!(signer.issue(1_000), state, "every state has its own nonce");
    }

    #[test]
    fn tampered_or_foreign_states_are_invalid() {
        let signer = signer("s3cret");
        let state = signer.issue(1_000);
        let (payload, signature) = state.split_once('.').expect("two parts");
        let longer = URL_SAFE_NO_PAD.encode(br#"{"n":"00","exp":99999999999}"#);
        for bad in [
            format!("{longer}.{signature}"),
            format!("{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 32])),
            format!("{payload}.!!"),
            payload.to_owned(),
        ] {
            assert_eq!(
                signer.verify(Some(&bad), 1_000),
                Err(StateError::Invalid),
                "{bad}"
            );
        }
        assert_eq!(
            self::signer("other").verify(Some(&state), 1_000),
            Err(StateError::Invalid)
        );
        assert_eq!(signer.verify(None, 1_000), Err(StateError::Missing));
        assert_eq!(signer.verify(Some(" "), 1_000), Err(StateError::Missing));
    }
}
