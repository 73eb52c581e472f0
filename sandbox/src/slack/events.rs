//! Slack's side of the Events API: builds `event_callback` payloads and signs them
//! exactly as Slack does (`v0=hex(hmac_sha256(secret, "v0:"+ts+":"+body))` in
//! `X-Slack-Signature`, the timestamp in `X-Slack-Request-Timestamp`), so tests and
//! `spritz-sandbox send-message` drive the gateway the way production traffic does.
//! The signature itself comes from `spritz_proto::slack_signature`, the one scheme the
//! gateway verifies against (checked there against Slack's documented example).

use anyhow::Context as _;
use serde_json::{Value, json};

/// A user message to the bot, as Slack would deliver it.
#[derive(Clone, Debug)]
pub struct UserMessage {
    pub team_id: String,
    pub api_app_id: String,
    pub bot_user_id: String,
    pub user_id: String,
    pub channel: String,
    pub text: String,
    /// The message's own `ts`; also the event id's seed.
    pub ts: String,
    pub thread_ts: Option<String>,
    /// A DM: a `message` event with `channel_type: "im"`; otherwise an `app_mention`
    /// whose text starts with the bot mention.
    pub direct_message: bool,
}

impl UserMessage {
    /// The full `event_callback` body Slack would POST.
    pub fn event_callback(&self) -> Value {
        let (event_type, channel_type, text) = if self.direct_message {
            ("message", "im", self.text.clone())
        } else {
            (
                "app_mention",
                "channel",
                format!("<@{}> {}", self.bot_user_id, self.text),
            )
        };
        let mut event = json!({
            "type": event_type,
            "user": self.user_id,
            "text": text,
            "ts": self.ts,
            "channel": self.channel,
            "channel_type": channel_type,
            "event_ts": self.ts,
            "team": self.team_id,
        });
        if let Some(thread_ts) = &self.thread_ts {
            event["thread_ts"] = json!(thread_ts);
        }
        let event_time = self
            .ts
            .split('.')
            .next()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or_default();
        json!({
            "token": "sandbox-verification-token",
            "team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": format!("Ev{}", self.ts.replace('.', "")),
            "event_time": event_time,
            "authorizations": [{
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "is_bot": true,
                "is_enterprise_install": false,
            }],
            "is_ext_shared_channel": false,
        })
    }
}

/// A Slack-like `ts` for a message sent now (`seconds.micros`).
pub fn now_ts() -> String {
    let now = chrono::Utc::now();
    format!("{}.{:06}", now.timestamp(), now.timestamp_subsec_micros())
}

/// `v0=hex(hmac_sha256(secret, "v0:{timestamp}:{body}"))`.
pub fn signature(signing_secret: &str, timestamp: i64, body: &[u8]) -> String {
    spritz_proto::slack_signature::sign(signing_secret.as_bytes(), &timestamp.to_string(), body)
}

/// The gateway's events endpoint: `gateway_url` itself when it already ends in
/// `/slack/events`, else `gateway_url + "/slack/events"`.
pub fn events_url(gateway_url: &str) -> String {
    let base = gateway_url.trim_end_matches('/');
    if base.ends_with("/slack/events") {
        base.to_owned()
    } else {
        format!("{base}/slack/events")
    }
}

/// POSTs `body` to `url` signed with `signing_secret` and the current time; returns the
/// gateway's status and body.
///
/// # Errors
/// When the gateway cannot be reached.
pub async fn send_signed(
    http: &reqwest::Client,
    url: &str,
    signing_secret: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let timestamp = chrono::Utc::now().timestamp();
    let response = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Slack-Request-Timestamp", timestamp.to_string())
        .header(
            "X-Slack-Signature",
            signature(signing_secret, timestamp, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .with_context(|| format!("posting the event to {url}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    Ok((status, text))
}
