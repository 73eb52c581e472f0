//! Whom outbound TLS trusts: the platform's roots plus an optional extra CA bundle
//! (`SPRITZ_TLS_CA_FILE`), the same for every client of a process: HTTP (Slack, the
//! backend, the Spritz API), the ACP websocket, `amqps://` and `rediss://`.
//!
//! Platform roots are what the image's `ca-certificates` installs (read through
//! `rustls-native-certs`, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`). The
//! extra bundle adds a private CA (a cluster-internal Spritz API, a broker with a
//! company CA) without replacing the public roots Slack needs. Crypto is rustls with
//! `ring`, for every client.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::config::{ConfigError, Env, Variable};

/// A PEM file of CA certificates trusted in addition to the platform's roots.
pub const CA_FILE: &str = "SPRITZ_TLS_CA_FILE";

/// [`CA_FILE`] as `--help` lists it.
pub const CA_FILE_VARIABLE: Variable = Variable {
    name: CA_FILE,
    default: None,
    help: "PEM CA bundle trusted for outbound TLS, besides the platform's roots",
};

/// Why a trust configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a PEM file of certificates: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{path} holds no usable CA certificate")]
    Empty { path: PathBuf },
    #[error("TLS set-up failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The roots every outbound TLS connection of this process is verified against.
///
/// Cheap to clone; built once at start (loading the platform's roots reads a few
/// hundred certificates from disk).
#[derive(Clone)]
pub struct Trust {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<rustls::ClientConfig>,
    /// The extra bundle as read, for clients that take PEM (lapin adds it to the
    /// platform roots it loads itself).
    extra_pem: Option<String>,
    /// Every root as PEM, for the Redis client, which replaces its roots with what it
    /// is given; only built when there is an extra bundle.
    all_roots_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("extra_ca_bundle", &self.inner.extra_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Trust {
    /// The platform's roots only, loaded once per process.
    fn default() -> Self {
        static PLATFORM: OnceLock<Trust> = OnceLock::new();
        PLATFORM
            .get_or_init(|| {
                Self::build(platform_certificates(), None)
                    .expect("the ring provider supports TLS 1.2 and 1.3")
            })
            .clone()
    }
}

impl Trust {
    /// The platform's roots, plus the certificates of `extra_ca_file` when given.
    ///
    /// # Errors
    /// The file cannot be read, is not PEM, or holds no certificate.
    pub fn load(extra_ca_file: Option<&Path>) -> Result<Self, TlsError> {
        let Some(path) = extra_ca_file else {
            return Ok(Self::default());
        };
        let pem = std::fs::read_to_string(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let extra = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TlsError::Pem {
                path: path.to_owned(),
                reason: error.to_string(),
            })?;
        if extra.is_empty() {
            return Err(TlsError::Empty {
                path: path.to_owned(),
            });
        }
        let mut certificates = platform_certificates();
        certificates.extend(extra);
        Self::build(certificates, Some(pem))
    }

    /// [`CA_FILE`] from the environment: unset means the platform's roots only.
    ///
    /// # Errors
    /// The file named cannot be used; the error names the variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let path = env.get(CA_FILE).map(PathBuf::from);
        Self::load(path.as_deref()).map_err(|error| ConfigError::new(CA_FILE, error.to_string()))
    }

    fn build(
        certificates: Vec<CertificateDer<'static>>,
        extra_pem: Option<String>,
    ) -> Result<Self, TlsError> {
        install_ring_as_default();
        let all_roots_pem = extra_pem.as_ref().map(|_| to_pem(&certificates));
        let mut roots = RootCertStore::empty();
        let (_added, ignored) = roots.add_parsable_certificates(certificates);
        if ignored > 0 {
            tracing::debug!(ignored, "CA certificates rustls cannot use were skipped");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                extra_pem,
                all_roots_pem,
            }),
        })
    }

    /// The rustls client configuration (no ALPN: HTTP/1.1 and websockets both use it).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.inner.config.clone()
    }

    /// A `reqwest` builder that verifies servers against these roots; callers add
    /// their timeouts and pool settings.
    #[allow(clippy::disallowed_methods)] // this is the builder every other client uses
    pub fn http_client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().tls_backend_preconfigured((*self.inner.config).clone())
    }

    /// The extra CA bundle as PEM, for clients that add it to roots of their own.
    pub fn extra_ca_pem(&self) -> Option<&str> {
        self.inner.extra_pem.as_deref()
    }

    /// Every trusted root as PEM when an extra bundle is configured (`None`: the
    /// client's own platform roots are the same set).
    pub fn all_roots_pem(&self) -> Option<&[u8]> {
        self.inner.all_roots_pem.as_deref()
    }
}

/// rustls clients built without an explicit provider (the Redis client's) use the
/// process default: make it `ring`, the one every other client here uses.
fn install_ring_as_default() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The platform's CA certificates, read once per process.
fn platform_certificates() -> Vec<CertificateDer<'static>> {
    static PLATFORM: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    PLATFORM
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            for error in &loaded.errors {
                tracing::warn!(%error, "a platform CA certificate could not be read");
            }
            loaded.certs
        })
        .clone()
}

fn to_pem(certificates: &[CertificateDer<'_>]) -> Vec<u8> {
    let mut pem = String::new();
    for certificate in certificates {
        let encoded = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}
