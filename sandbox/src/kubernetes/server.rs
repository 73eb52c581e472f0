//! The listener: serves the router on every accepted connection and keeps each
//! connection's task, so a simulated API server restart can cut them all (open watches
//! included) while the listening port stays the same.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Connections = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// A running listener; dropping it stops accepting and cuts every connection.
pub struct Server {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    connections: Connections,
}

impl Server {
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let connections = Connections::default();
        let accept = tokio::spawn(accept_loop(listener, router, connections.clone()));
        Ok(Self {
            addr,
            accept,
            connections,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every open connection (no graceful close, like a process that went away)
    /// and returns once their tasks are gone.
    pub async fn drop_connections(&self) {
        let handles = std::mem::take(
            &mut *self
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for handle in &handles {
            handle.abort();
        }
        for handle in handles {
            // The task was aborted; its outcome carries no information.
            let _ = handle.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
        for handle in self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            handle.abort();
        }
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
        let service = TowerToHyperService::new(router.clone());
        let connection = tokio::spawn(async move {
            let served = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(error = %err, "fake kubernetes: connection ended with an error");
            }
        });
        let mut open = connections.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|handle| !handle.is_finished());
        open.push(connection);
    }
}
