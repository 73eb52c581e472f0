//! The listener: serves the router on every accepted connection and keeps each
//! connection's task, so a simulated API server restart can cut them all (open watches
//! included) while the listening port stays the same.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Which connection a request came on (a request extension), so the control API can
/// restart the server without cutting the connection that asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionId(u64);

/// The open connections' tasks.
#[derive(Clone, Default)]
pub struct Connections(Arc<Mutex<ConnectionSet>>);

#[derive(Default)]
struct ConnectionSet {
    next_id: u64,
    open: Vec<(ConnectionId, JoinHandle<()>)>,
}

impl Connections {
    fn next_id(&self) -> ConnectionId {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        set.next_id += 1;
        ConnectionId(set.next_id)
    }

    fn add(&self, id: ConnectionId, task: JoinHandle<()>) {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        set.open.retain(|(_, task)| !task.is_finished());
        set.open.push((id, task));
    }

    /// Cuts every open connection but `spare` (no graceful close, like a process that
    /// went away) and returns once their tasks are gone.
    pub async fn cut(&self, spare: Option<ConnectionId>) {
        let cut: Vec<JoinHandle<()>> = {
            let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let (kept, cut) = std::mem::take(&mut set.open)
                .into_iter()
                .partition(|(id, _)| Some(*id) == spare);
            set.open = kept;
            cut.into_iter().map(|(_, task)| task).collect()
        };
        for task in &cut {
            task.abort();
        }
        for task in cut {
            // The task was aborted; its outcome carries no information.
            let _ = task.await;
        }
    }

    fn abort_all(&self) {
        let set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, task) in &set.open {
            task.abort();
        }
    }
}

/// Owns the accept loop; dropping it stops accepting and cuts every connection.
pub struct ServerGuard {
    accept: JoinHandle<()>,
    connections: Connections,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.accept.abort();
        self.connections.abort_all();
    }
}

/// Serves `router` on `listener` until the returned guard is dropped.
pub fn serve(listener: TcpListener, router: Router, connections: Connections) -> ServerGuard {
    let accept = tokio::spawn(accept_loop(listener, router, connections.clone()));
    ServerGuard {
        accept,
        connections,
    }
}

async fn accept_loop(listener: TcpListener, router: Router, connections: Connections) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %err, "fake kubernetes: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = connections.next_id();
        let service = TowerToHyperService::new(router.clone().layer(Extension(id)));
        let task = tokio::spawn(async move {
            let served = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(error = %err, "fake kubernetes: connection ended with an error");
            }
        });
        connections.add(id, task);
    }
}
