//! A fake's HTTP server: binds the listener (port 0 in tests, a fixed address in the
//! dev stack), serves the fake's router on it and stops when the last handle goes.
//!
//! The fake Kubernetes API keeps its own listener (`kubernetes::server`), because a
//! simulated API server restart must cut every open connection on the same port.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;

/// `127.0.0.1:0`: loopback on a free port, what every fake starts on in tests.
pub(crate) fn any_local_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
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
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
