//! Client of the Slack Web API's `chat.postMessage` (SPEC §2), the one call the worker
//! makes to Slack: replies, status messages and failure replies.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::http::{join, transport_reason};

/// The wait when a 429 carries no readable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Posts messages as a workspace's bot. Cheap to clone (the HTTP pool is shared).
///
/// Timeouts come from the `reqwest::Client` it is built with
/// ([`super::http::build_client`] with `SPRITZ_SLACK_HTTP_TIMEOUT`).
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    post_message_url: Url,
}

/// Why a post did not land. Every variant means "not posted".
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// 429: try again after `retry_after`.
    #[error("slack rate limited the post; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// Slack answered `ok:false` with this error code (or a 4xx status as `http_<code>`).
    #[error("slack refused the post: {0}")]
    Api(String),
    /// 5xx, timeout, connection error, unreadable answer.
    #[error("slack post failed transiently: {0}")]
    Transient(String),
}

#[derive(Serialize)]
struct PostMessage<'a> {
    channel: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
}

#[derive(Deserialize)]
struct PostAnswer {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl SlackClient {
    /// `api_base_url` is `SPRITZ_SLACK_API_BASE_URL` (`https://slack.com/api`).
    pub fn new(http: reqwest::Client, api_base_url: Url) -> Self {
        Self {
            post_message_url: join(&api_base_url, &["chat.postMessage"]),
            http,
        }
    }

    /// Posts `text` to `channel` (in the thread `thread_ts` when set) and returns the
    /// new message's `ts` (empty in the odd `ok:true` answer without one: the message
    /// was posted, so this is not an error that would post it twice).
    ///
    /// # Errors
    /// [`SlackError`]: the message was not posted.
    pub async fn post_message(
        &self,
        bot_token: &SecretString,
        channel: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> Result<String, SlackError> {
        let thread_ts = thread_ts.filter(|ts| !ts.is_empty());
        let body = serde_json::to_vec(&PostMessage {
            channel,
            text,
            thread_ts,
        })
        .map_err(|_| SlackError::Transient("could not encode the post".to_owned()))?;
        let response = self
            .http
            .post(self.post_message_url.clone())
            .bearer_auth(bot_token.expose_secret())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| SlackError::Transient(transport_reason(e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs);
            return Err(SlackError::RateLimited { retry_after });
        }
        if status.is_server_error() || status == reqwest::StatusCode::REQUEST_TIMEOUT {
            return Err(SlackError::Transient(format!(
                "chat.postMessage answered {}",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(SlackError::Api(format!("http_{}", status.as_u16())));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| SlackError::Transient(transport_reason(e)))?;
        let answer: PostAnswer = serde_json::from_slice(&bytes).map_err(|_| {
            SlackError::Transient("chat.postMessage answered an unreadable body".to_owned())
        })?;
        if !answer.ok {
            let error = answer
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "unknown_error".to_owned());
            return Err(SlackError::Api(error));
        }
        Ok(answer.ts.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use spritz_sandbox::slack::FakeSlack;

    use super::*;
    use crate::clients::http::build_client;

    const BOT: &str = "xoxb-bot-token";

    async fn start() -> (FakeSlack, SlackClient, SecretString) {
        let slack = FakeSlack::start().await.expect("fake slack");
        slack.add_workspace("T1", BOT, &["C1"]);
        let base = Url::parse(&slack.base_url()).expect("base url");
        let client = SlackClient::new(
            build_client(&spritz_service::Trust::default(), Duration::from_secs(5))
                .expect("client"),
            base,
        );
        (slack, client, SecretString::from(BOT))
    }

    #[tokio::test]
    async fn a_post_lands_in_the_thread_as_the_bot_and_returns_its_ts() {
        let (slack, client, bot) = start().await;
        let ts = client
            .post_message(&bot, "C1", "hello there", Some("1700000000.000100"))
            .await
            .expect("post");
        let top = client
            .post_message(&bot, "C1", "top level", None)
            .await
            .expect("post");

        let posts = slack.posts();
        assert_eq!(posts.len(), 2);
        assert_eq!(posts[0].ts, ts);
        assert_eq!(posts[0].channel, "C1");
        assert_eq!(posts[0].text, "hello there");
        assert_eq!(posts[0].thread_ts.as_deref(), Some("1700000000.000100"));
        assert_eq!(posts[0].token, BOT);
        assert_eq!(posts[1].ts, top);
        assert_eq!(posts[1].thread_ts, None);
    }

    #[tokio::test]
    async fn rate_limits_carry_retry_after() {
        let (slack, client, bot) = start().await;
        slack.rate_limit_next_posts(1, 7);
        let error = client
            .post_message(&bot, "C1", "x", None)
            .await
            .expect_err("429");
        assert!(
            matches!(error, SlackError::RateLimited { retry_after } if retry_after == Duration::from_secs(7))
        );
        client
            .post_message(&bot, "C1", "x", None)
            .await
            .expect("second try");
    }

    #[tokio::test]
    async fn ok_false_is_an_api_error_and_5xx_is_transient() {
        let (slack, client, bot) = start().await;
        slack.fail_next_posts(1, "channel_not_found");
        let error = client
            .post_message(&bot, "C1", "secret words", None)
            .await
            .expect_err("ok:false");
        assert!(matches!(&error, SlackError::Api(code) if code == "channel_not_found"));
        let shown = error.to_string();
        assert!(!shown.contains("secret words") && !shown.contains(BOT));

        slack.fail_next_posts_with_status(1, 500);
        let error = client
            .post_message(&bot, "C1", "x", None)
            .await
            .expect_err("500");
        assert!(matches!(error, SlackError::Transient(_)));
        assert!(slack.posts().is_empty());
    }
}
