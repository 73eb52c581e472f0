//! What the fake Slack remembers and the decisions it makes on each call, kept apart
//! from HTTP so the routes stay thin.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{AuthorizeRequest, OAuthExchange, OAuthGrant, SlackPost};

/// A failure injected into the next `chat.postMessage` call.
#[derive(Clone, Debug)]
pub(super) enum PostFault {
    SlackError(String),
    RateLimited { retry_after_secs: u64 },
    Status(u16),
}

/// How one `chat.postMessage` call is answered.
#[derive(Debug)]
pub(super) enum PostOutcome {
    Posted(SlackPost),
    Fault(PostFault),
    /// 200 `{"ok":false,"error":…}` because the request itself was wrong.
    Rejected(&'static str),
}

/// How one `oauth.v2.access` call is answered.
#[derive(Debug)]
pub(super) enum OAuthOutcome {
    Granted(OAuthGrant),
    Rejected(&'static str),
}

/// A `chat.postMessage` request as the routes parsed it.
#[derive(Debug, Default)]
pub(super) struct PostRequest {
    pub token: Option<String>,
    pub channel: Option<String>,
    pub text: Option<String>,
    pub thread_ts: Option<String>,
}

pub(crate) struct SlackState {
    pub posts: Vec<SlackPost>,
    pub post_attempts: usize,
    pub post_faults: VecDeque<PostFault>,
    pub revoked_tokens: HashSet<String>,
    pub oauth_codes: HashMap<String, OAuthGrant>,
    pub oauth_exchanges: Vec<OAuthExchange>,
    pub expected_client: Option<(String, String)>,
    pub approval: Option<OAuthGrant>,
    pub authorize_requests: Vec<AuthorizeRequest>,
    ts_seconds: u64,
    ts_sequence: u64,
    minted_codes: u64,
}

impl SlackState {
    pub fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1_700_000_000, |d| d.as_secs());
        SlackState {
            posts: Vec::new(),
            post_attempts: 0,
            post_faults: VecDeque::new(),
            revoked_tokens: HashSet::new(),
            oauth_codes: HashMap::new(),
            oauth_exchanges: Vec::new(),
            expected_client: None,
            approval: None,
            authorize_requests: Vec::new(),
            ts_seconds: now,
            ts_sequence: 0,
            minted_codes: 0,
        }
    }

    pub fn reset(&mut self) {
        self.posts.clear();
        self.post_attempts = 0;
        self.post_faults.clear();
        self.oauth_exchanges.clear();
        self.authorize_requests.clear();
    }

    /// Decides the answer to one `chat.postMessage` call and records it when accepted.
    pub fn post_message(&mut self, request: PostRequest) -> PostOutcome {
        self.post_attempts += 1;
        let Some(token) = request.token.filter(|t| !t.is_empty()) else {
            return PostOutcome::Rejected("not_authed");
        };
        if self.revoked_tokens.contains(&token) {
            return PostOutcome::Rejected("token_revoked");
        }
        if let Some(fault) = self.post_faults.pop_front() {
            return PostOutcome::Fault(fault);
        }
        let Some(channel) = request.channel.filter(|c| !c.is_empty()) else {
            return PostOutcome::Rejected("channel_not_found");
        };
        let Some(text) = request.text.filter(|t| !t.trim().is_empty()) else {
            return PostOutcome::Rejected("no_text");
        };
        let post = SlackPost {
            channel,
            text,
            thread_ts: request.thread_ts.filter(|t| !t.is_empty()),
            ts: self.next_ts(),
            token,
        };
        self.posts.push(post.clone());
        PostOutcome::Posted(post)
    }

    /// A fresh Slack-like timestamp: seconds, a dot, six digits; unique and increasing.
    fn next_ts(&mut self) -> String {
        self.ts_sequence += 1;
        let seconds = self.ts_seconds + self.ts_sequence / 1_000_000;
        format!("{seconds}.{:06}", self.ts_sequence % 1_000_000)
    }

    /// Decides the answer to one `oauth.v2.access` call; codes are single-use.
    pub fn exchange_code(&mut self, exchange: OAuthExchange) -> OAuthOutcome {
        self.oauth_exchanges.push(exchange.clone());
        if let Some((client_id, client_secret)) = &self.expected_client {
            if *client_id != exchange.client_id {
                return OAuthOutcome::Rejected("invalid_client_id");
            }
            if *client_secret != exchange.client_secret {
                return OAuthOutcome::Rejected("bad_client_secret");
            }
        }
        if exchange.code.is_empty() {
            return OAuthOutcome::Rejected("invalid_code");
        }
        match self.oauth_codes.remove(&exchange.code) {
            Some(grant) => OAuthOutcome::Granted(grant),
            None => OAuthOutcome::Rejected("invalid_code"),
        }
    }

    /// Records an install visit and, when installs are approved, mints a code for it.
    pub fn authorize(&mut self, request: AuthorizeRequest) -> Option<String> {
        self.authorize_requests.push(request);
        let grant = self.approval.clone()?;
        self.minted_codes += 1;
        let code = format!("sandbox-code-{}-{}", grant.team_id, self.minted_codes);
        self.oauth_codes.insert(code.clone(), grant);
        Some(code)
    }
}
