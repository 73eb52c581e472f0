//! What the fake Slack remembers and the decisions it makes on each call, kept apart
//! from HTTP so the routes stay thin: the workspaces it knows (bot token → team, team →
//! channels), the registered OAuth app, and what it recorded.

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
    /// Bot tokens Slack issued, and the workspace each one belongs to.
    pub bot_tokens: HashMap<String, String>,
    /// The conversations (channels, DMs) of each workspace.
    pub channels: HashMap<String, HashSet<String>>,
    pub posts: Vec<SlackPost>,
    pub post_attempts: usize,
    pub post_faults: VecDeque<PostFault>,
    pub revoked_tokens: HashSet<String>,
    pub oauth_codes: HashMap<String, IssuedCode>,
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
            bot_tokens: HashMap::new(),
            channels: HashMap::new(),
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

    /// A workspace with its bot token and conversations (added to what it had).
    pub fn add_workspace(&mut self, team_id: &str, bot_token: &str, channels: &[&str]) {
        self.bot_tokens
            .insert(bot_token.to_owned(), team_id.to_owned());
        self.add_channels(team_id, channels);
    }

    pub fn add_channels(&mut self, team_id: &str, channels: &[&str]) {
        self.channels
            .entry(team_id.to_owned())
            .or_default()
            .extend(channels.iter().map(|c| (*c).to_owned()));
    }

    /// Makes `oauth.v2.access` answer `grant` for `code`, with any redirect URI.
    pub fn register_code(&mut self, code: &str, grant: OAuthGrant) {
        self.oauth_codes.insert(
            code.to_owned(),
            IssuedCode {
                grant,
                redirect_uri: None,
            },
        );
    }

    /// Decides the answer to one `chat.postMessage` call and records it when accepted.
    /// Checked in Slack's order: the token (`not_authed`, `invalid_auth`,
    /// `token_revoked`), then injected faults, then the arguments (`channel_not_found`
    /// for a channel the token's workspace does not have, `no_text`).
    pub fn post_message(&mut self, request: PostRequest) -> PostOutcome {
        self.post_attempts += 1;
        let Some(token) = request.token.filter(|t| !t.is_empty()) else {
            return PostOutcome::Rejected("not_authed");
        };
        if self.revoked_tokens.contains(&token) {
            return PostOutcome::Rejected("token_revoked");
        }
        let Some(team_id) = self.bot_tokens.get(&token).cloned() else {
            return PostOutcome::Rejected("invalid_auth");
        };
        if let Some(fault) = self.post_faults.pop_front() {
            return PostOutcome::Fault(fault);
        }
        let Some(channel) = request.channel.filter(|c| {
            self.channels
                .get(&team_id)
                .is_some_and(|channels| channels.contains(c))
        }) else {
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

    /// Decides the answer to one `oauth.v2.access` call: the app's credentials first
    /// (`invalid_client_id`, `bad_client_secret`; no app registered means no client id
    /// is valid), then the code (single-use, `invalid_code`), then the redirect URI the
    /// code was issued for (`bad_redirect_uri`). A granted install makes its bot token
    /// valid for its workspace.
    pub fn exchange_code(&mut self, exchange: OAuthExchange) -> OAuthOutcome {
        self.oauth_exchanges.push(exchange.clone());
        let Some((client_id, client_secret)) = &self.expected_client else {
            return OAuthOutcome::Rejected("invalid_client_id");
        };
        if *client_id != exchange.client_id {
            return OAuthOutcome::Rejected("invalid_client_id");
        }
        if *client_secret != exchange.client_secret {
            return OAuthOutcome::Rejected("bad_client_secret");
        }
        let Some(issued) = self.oauth_codes.remove(&exchange.code) else {
            return OAuthOutcome::Rejected("invalid_code");
        };
        if issued
            .redirect_uri
            .as_ref()
            .is_some_and(|uri| *uri != exchange.redirect_uri)
        {
            return OAuthOutcome::Rejected("bad_redirect_uri");
        }
        let grant = issued.grant;
        self.add_workspace(&grant.team_id, &grant.bot_access_token, &[]);
        OAuthOutcome::Granted(grant)
    }

    /// Records an install visit and, when installs are approved, mints a code for it,
    /// bound to the visit's `redirect_uri` as Slack binds it.
    pub fn authorize(&mut self, request: AuthorizeRequest) -> Option<String> {
        let redirect_uri = request.redirect_uri.clone();
        self.authorize_requests.push(request);
        let grant = self.approval.clone()?;
        self.minted_codes += 1;
        let code = format!("sandbox-code-{}-{}", grant.team_id, self.minted_codes);
        self.oauth_codes.insert(
            code.clone(),
            IssuedCode {
                grant,
                redirect_uri: Some(redirect_uri),
            },
        );
        Some(code)
    }
}

/// An OAuth code waiting to be exchanged.
#[derive(Clone, Debug)]
pub(crate) struct IssuedCode {
    pub grant: OAuthGrant,
    /// The `redirect_uri` of the authorize visit that minted it; `None` for a code a
    /// test registered directly, which any redirect URI may exchange.
    pub redirect_uri: Option<String>,
}
