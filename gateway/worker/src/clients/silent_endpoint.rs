//! Test support: a base URL on a local port that accepts connections but never answers
//! (while its listener lives) and refuses them once the listener is dropped.

use tokio::net::TcpListener;
use url::Url;

/// A listener on a free local port and `http://<it>/<path>`; keep the listener to get a
/// server that never answers, drop it to get a refused connection.
pub async fn silent_endpoint(path: &str) -> (TcpListener, Url) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = Url::parse(&format!(
        "http://{}/{path}",
        listener.local_addr().expect("addr")
    ))
    .expect("url");
    (listener, base)
}
