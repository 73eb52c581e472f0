//! What every HTTP client of the worker shares: the pooled `reqwest::Client` they are
//! built with, joining a route onto a base URL that may carry a path, and turning a
//! transport error into a short reason that names no token and no message text.

use std::time::Duration;

use spritz_service::Trust;
use url::Url;

/// The client the worker's HTTP clients are meant to share.
///
/// `timeout` is the whole-call budget (`SPRITZ_SLACK_HTTP_TIMEOUT`, SPEC §2): the
/// clients in this module set no timeout of their own and rely on the client they are
/// given. Connections are pooled per host and kept open, so a busy worker reuses them
/// instead of paying a TCP (and TLS) handshake per call. HTTPS servers are verified
/// against `trust`.
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn build_client(trust: &Trust, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    trust
        .http_client_builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .user_agent(concat!("spritz-worker/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `base` + `segments`, keeping the base URL's path (`https://host/spritz` + `api`,
/// `acp` → `https://host/spritz/api/acp`). Each segment is percent-encoded as one path
/// segment, so an id can never add a `/` or a query of its own.
pub fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A transport error as a short reason: its kind and cause chain, without the URL.
pub(crate) fn transport_reason(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "could not read the answer"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut reason = kind.to_owned();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// Statuses worth trying again: server errors, request timeout and rate limiting.
pub(crate) fn is_transient_status(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// The Spritz API's "the runtime is gone" answer: a 404 whose body says so (SPEC §2).
pub(crate) fn says_spritz_not_found(status: u16, body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"spritz not found";
    status == 404
        && body
            .windows(NEEDLE.len())
            .any(|window| window.eq_ignore_ascii_case(NEEDLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joining_keeps_the_base_path_with_or_without_a_trailing_slash() {
        for base in ["https://host/spritz", "https://host/spritz/"] {
            let base = Url::parse(base).expect("url");
            assert_eq!(
                join(&base, &["api", "channel-conversations", "upsert"]).as_str(),
                "https://host/spritz/api/channel-conversations/upsert"
            );
        }
        let root = Url::parse("http://127.0.0.1:8080").expect("url");
        assert_eq!(
            join(&root, &["chat.postMessage"]).as_str(),
            "http://127.0.0.1:8080/chat.postMessage"
        );
    }

    #[test]
    fn an_id_stays_one_path_segment() {
        let base = Url::parse("https://host/spritz").expect("url");
        let url = join(
            &base,
            &["api", "acp", "conversations", "a/b?c", "bootstrap"],
        );
        assert_eq!(
            url.path(),
            "/spritz/api/acp/conversations/a%2Fb%3Fc/bootstrap"
        );
        assert_eq!(url.query(), None);
    }

    #[test]
    fn only_a_404_saying_spritz_not_found_means_the_runtime_vanished() {
        assert!(says_spritz_not_found(
            404,
            br#"{"error":"Spritz Not Found"}"#
        ));
        assert!(!says_spritz_not_found(
            404,
            br#"{"error":"conversation not found"}"#
        ));
        assert!(!says_spritz_not_found(500, b"spritz not found"));
    }
}
