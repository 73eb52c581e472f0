//! What every handler shares: the broker, the metrics, the signing secret, the
//! installer and the OAuth `state` signer. Its own module so the handlers and the
//! router both depend on it, and not on each other.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use spritz_service::Broker;

use crate::install::Installer;
use crate::metrics::GatewayMetrics;
use crate::oauth_state::StateSigner;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    broker: Broker,
    metrics: GatewayMetrics,
    signing_secret: SecretString,
    publish_timeout: Duration,
    installer: Installer,
    state_signer: StateSigner,
}

impl AppState {
    pub fn new(
        broker: Broker,
        metrics: GatewayMetrics,
        signing_secret: SecretString,
        publish_timeout: Duration,
        installer: Installer,
        state_signer: StateSigner,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                broker,
                metrics,
                signing_secret,
                publish_timeout,
                installer,
                state_signer,
            }),
        }
    }

    pub(crate) fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    pub(crate) fn metrics(&self) -> &GatewayMetrics {
        &self.inner.metrics
    }

    pub(crate) fn signing_secret(&self) -> &SecretString {
        &self.inner.signing_secret
    }

    pub(crate) fn publish_timeout(&self) -> Duration {
        self.inner.publish_timeout
    }

    pub(crate) fn installer(&self) -> &Installer {
        &self.inner.installer
    }

    pub(crate) fn state_signer(&self) -> &StateSigner {
        &self.inner.state_signer
    }
}
