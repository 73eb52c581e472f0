//! TLS for tests: a certificate authority made on the spot, and a TLS front that
//! serves its certificate in front of any plain TCP server (a fake's HTTP or
//! websocket listener, the real RabbitMQ, the real Redis).
//!
//! A front is a real TLS endpoint: the client under test does the whole handshake and
//! verifies the chain and the name (`127.0.0.1` and `localhost`), then talks to the
//! server behind it byte for byte. So a test shows a client reaches a private-CA
//! server only when it trusts that CA, without reconfiguring the shared broker or
//! Redis with TLS listeners.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A CA no platform trusts, with one server certificate for `127.0.0.1` and
/// `localhost`, and its certificate written to a PEM file (`SPRITZ_TLS_CA_FILE`).
pub struct TestCa {
    pem_file: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// # Errors
    /// Key generation, signing or writing the PEM file failed.
    pub fn new() -> anyhow::Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Spritz sandbox test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let server_key = KeyPair::generate()?;
        let server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        let server_cert = server_params.signed_by(&server_key, &ca)?;
        let chain = vec![
            server_cert.der().clone(),
            CertificateDer::from(ca.der().to_vec()),
        ];
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;

        let pem_file =
            std::env::temp_dir().join(format!("spritz-test-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&pem_file, ca.pem()).context("write the test CA's PEM file")?;
        Ok(Self {
            pem_file,
            server: Arc::new(server),
        })
    }

    /// The CA certificate as a PEM file, removed when this CA is dropped.
    pub fn pem_file(&self) -> &Path {
        &self.pem_file
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pem_file);
    }
}

/// A TLS listener on a free local port that forwards every connection to `upstream`;
/// it stops when dropped.
pub struct TlsFront {
    addr: SocketAddr,
    handshakes: watch::Receiver<Handshakes>,
    task: JoinHandle<()>,
}

/// What the front's clients did with its certificate so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handshakes {
    /// Handshakes completed: the client accepted the chain and the name.
    pub completed: u64,
    /// Handshakes the client ended (it did not trust the certificate) or that failed.
    pub refused: u64,
}

impl TlsFront {
    /// # Errors
    /// No local port could be bound.
    pub async fn start(ca: &TestCa, upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(crate::server::any_local_port()).await?;
        let addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(ca.server.clone());
        let (record, handshakes) = watch::channel(Handshakes::default());
        let record = Arc::new(record);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(acceptor.clone(), client, upstream, record.clone()));
            }
        });
        Ok(Self {
            addr,
            handshakes,
            task,
        })
    }

    /// A front for the server of `url` (`http://127.0.0.1:port/...`, `redis://…`).
    ///
    /// # Errors
    /// `url` names no local address and port, or no port could be bound.
    pub async fn before(ca: &TestCa, url: &str) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url)?;
        let host = parsed.host_str().context("a host")?;
        let port = parsed.port_or_known_default().context("a port")?;
        Self::start(ca, format!("{host}:{port}").parse()?).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` reached through this front: `scheme` (`https`, `amqps`, `rediss`), the
    /// front's port, the rest kept.
    ///
    /// # Panics
    /// `url` is not a URL whose scheme can become `scheme`.
    pub fn url(&self, url: &str, scheme: &str) -> url::Url {
        let mut url = url::Url::parse(url).expect("a URL");
        url.set_scheme(scheme)
            .expect("a TLS scheme of the same kind");
        url.set_port(Some(self.addr.port())).expect("a port");
        url
    }

    /// The handshakes so far.
    pub fn handshakes(&self) -> Handshakes {
        *self.handshakes.borrow()
    }

    /// Waits until some client has refused the certificate (at most `within`), and
    /// returns the counts then.
    ///
    /// # Errors
    /// No refusal within `within`.
    pub async fn refused(&self, within: Duration) -> anyhow::Result<Handshakes> {
        let mut handshakes = self.handshakes.clone();
        let seen = tokio::time::timeout(within, handshakes.wait_for(|h| h.refused > 0))
            .await
            .context("no client refused the certificate")??;
        Ok(*seen)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: the handshake (a client that does not trust the CA ends it here),
/// then bytes both ways until either side closes.
async fn forward(
    acceptor: TlsAcceptor,
    client: TcpStream,
    upstream: SocketAddr,
    record: Arc<watch::Sender<Handshakes>>,
) {
    let Ok(mut tls) = acceptor.accept(client).await else {
        record.send_modify(|h| h.refused += 1);
        return;
    };
    record.send_modify(|h| h.completed += 1);
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
}

/// A `reqwest` builder for the sandbox's and the tests' own calls (control APIs,
/// management API, fakes' webhooks). The workspace builds reqwest's rustls without a
/// built-in crypto provider (the services hand it a configured one), so this installs
/// `ring`, the provider every client here uses, as the process default first.
#[allow(clippy::disallowed_methods)] // the one place tests build a bare client
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// [`http_client_builder`] with reqwest's defaults.
///
/// # Panics
/// Never in practice: a default builder with a crypto provider installed builds.
pub fn http_client() -> reqwest::Client {
    http_client_builder()
        .build()
        .expect("a default HTTP client builds")
}
