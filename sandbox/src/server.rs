//! A fake's HTTP server: binds the listener (port 0 in tests, a fixed address in the
//! dev stack), serves the fake's router on it and stops when the last handle goes.
//!
//! The fake Kubernetes API keeps its own listener (`kubernetes::server`), because a
//! simulated API server restart must cut every open connection on the same port.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use tokio::sync::watch;

/// `127.0.0.1:0`: loopback on a free port, what every fake starts on in tests.
pub(crate) fn any_local_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Builds one of a fake's routers over its shared state.
pub(crate) type RouterFor<S> = fn(Arc<watch::Sender<S>>) -> axum::Router;

/// Starts a fake that serves `api` under `base_path` and its `/_sandbox` `control`
/// routes at the root, both over one shared `state` (the backend and Spritz API
/// fakes); returns the shared state and the running server for the fake's handle.
///
/// # Errors
/// When the listener cannot be bound.
pub(crate) async fn spawn_nested<S: Send + Sync + 'static>(
    name: &'static str,
    addr: SocketAddr,
    base_path: &str,
    state: S,
    api: RouterFor<S>,
    control: RouterFor<S>,
) -> anyhow::Result<(Arc<watch::Sender<S>>, Arc<FakeServer>)> {
    let state = Arc::new(watch::Sender::new(state));
    let app = axum::Router::new()
        .nest(base_path, api(state.clone()))
        .merge(control(state.clone()));
    let server = FakeServer::spawn(name, addr, app).await?;
    Ok((state, Arc::new(server)))
}

/// The server task of one fake; aborted when dropped, so the fake's handle (which
/// holds it in an `Arc`) stops the server when its last clone goes away.
pub(crate) struct FakeServer {
    addr: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl FakeServer {
    /// Binds `addr` and serves `app` on it; `name` ("fake slack", …) goes into the
    /// bind error and the log line when the server stops on an error.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub(crate) async fn spawn(
        name: &'static str,
        addr: SocketAddr,
        app: axum::Router,
    ) -> anyhow::Result<FakeServer> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {name} on {addr}"))?;
        let addr = listener.local_addr()?;
        // Small JSON frames go out at once instead of waiting on delayed ACKs.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "{name} server stopped");
            }
        });
        Ok(FakeServer {
            addr,
            task: task.abort_handle(),
        })
    }

    /// The bound address (the real port when started on port 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, where the fake's `/_sandbox` control API lives.
    pub(crate) fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://<addr><base_path>`, where a fake nests its API.
    pub(crate) fn url(&self, base_path: &str) -> String {
        format!("{}{base_path}", self.origin())
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
