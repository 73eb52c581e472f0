//! What every fake's `/_sandbox` control API shares: the "wait for n records" route
//! (`…/wait?count=N&timeout_ms=T`, 408 on timeout) and the HTTP plumbing of the small
//! control clients the `spritz-sandbox` commands use against a fake in another
//! process. Each fake's own routes and client live in its `control` module.

use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::recording;

/// The query of a `…/wait` route.
#[derive(Deserialize)]
pub(crate) struct WaitQuery {
    /// Defaults to one more than recorded now: "the next one".
    count: Option<usize>,
    #[serde(default = "default_wait_ms")]
    timeout_ms: u64,
}

/// How long a `…/wait` route waits when the query does not say: ten seconds.
pub(crate) fn default_wait_ms() -> u64 {
    10_000
}

/// Answers a `…/wait` route: 200 with every record once there are `count` of them,
/// else 408 with the records there are when the timeout runs out.
pub(crate) async fn wait_for_records<S, T: Clone + Serialize>(
    state: &watch::Sender<S>,
    query: WaitQuery,
    records: impl Fn(&S) -> &Vec<T>,
) -> Response {
    let count = query
        .count
        .unwrap_or_else(|| records(&state.borrow()).len() + 1);
    let timeout = Duration::from_millis(query.timeout_ms);
    match recording::wait_for_records(state, count, timeout, &records).await {
        Ok(all) => Json(all).into_response(),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            Json(records(&state.borrow()).clone()),
        )
            .into_response(),
    }
}

/// The HTTP side of a control client: the fake's origin and a client to call it with.
#[derive(Clone, Debug)]
pub(crate) struct ControlHttp {
    http: reqwest::Client,
    origin: String,
}

impl ControlHttp {
    /// `url` is the fake's origin, or its base URL ending in `base_path` (`/api`,
    /// `/backend`, `/spritz`), which is cut off.
    pub(crate) fn new(url: &str, base_path: &str) -> ControlHttp {
        let origin = url
            .trim_end_matches('/')
            .trim_end_matches(base_path)
            .to_owned();
        ControlHttp {
            http: crate::tls::http_client(),
            origin,
        }
    }

    /// Sends one request to `path` on the fake (`build` adds body, query, timeout) and
    /// returns the answer whatever its status.
    ///
    /// # Errors
    /// When the fake cannot be reached (the error names the URL).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.origin);
        build(self.http.request(method, &url))
            .send()
            .await
            .with_context(|| url.clone())
    }

    /// `GET path`, the answer read as JSON.
    ///
    /// # Errors
    /// When the fake cannot be reached or answers an error.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(reqwest::Method::GET, path, |r| r).await?;
        Ok(response.error_for_status()?.json().await?)
    }

    /// `method path` with `body` as JSON; only success matters.
    ///
    /// # Errors
    /// When the fake cannot be reached or refuses.
    pub(crate) async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<()> {
        let response = self.send(method, path, |r| r.json(body)).await?;
        response.error_for_status()?;
        Ok(())
    }
}
