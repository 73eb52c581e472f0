//! Fake Spritz backend (its internal API): channel-session exchange with scriptable
//! answers per team, installation upsert and disconnect, and the lifecycle webhook
//! receiver — everything the gateway, worker and notifier call on the backend.
//!
//! The backend itself is not public; the fake follows its contract in SPEC §2, the
//! Go gateway that calls it (textcortex/spritz `integrations/slack-gateway/backend_client.go`,
//! `integrations/slack-gateway/slack_oauth.go`) and the way the Spritz API guards its
//! own internal routes (`api/internal_auth.go`):
//! - every `/internal/v1/spritz/…` route needs `Authorization: Bearer <internal token>`:
//!   none or another one is 401 `unauthorized` (`api/internal_auth.go`);
//! - bodies must carry the routing identity (`principalId`, `provider:"slack"`,
//!   `externalScopeType:"workspace"`, `externalTenantId`), an installation upsert also
//!   `presetId`, an external `ownerRef` of the same workspace and `providerAuth` with
//!   `teamId`, `apiAppId`, `botUserId`, `botAccessToken`: 400 naming the field
//!   (field names and messages as `api/channel_routes.go` validates the same identity);
//! - a workspace that is not installed, or was disconnected, is 404 `channel
//!   installation not found` on exchange (SPEC §2 "other 4xx: not installed /
//!   disconnected"); disconnecting one never installed is 404, disconnecting twice is
//!   a success (Slack sends both `app_uninstalled` and `tokens_revoked`);
//! - exchange answers 200 `resolved` with a session, 503 `unavailable` with
//!   `providerAuth`, or a bare transient status, exactly as SPEC §2 lists them;
//! - the lifecycle receiver requires its token when one is set (401) and a body with
//!   `namespace`, `instanceId` and `phase` (400).
//!
//! Failures are `{"status":"error","error":"<reason>"}`.
//!
//! Layout: this file holds the handle and public types; `state` the recorded calls
//! and the answer each call gets; `internal_api` the routes under the base path
//! (`/backend/internal/v1/spritz/…`, `/backend/lifecycle`); `control` the
//! `/_sandbox` control API and its client.

mod control;
mod internal_api;
mod request;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::recording;
use crate::server::{self, FakeServer};

pub use control::ControlClient;
use state::BackendState;

/// The path prefix every backend route sits under, so clients prove they keep the
/// base URL's path.
pub const BASE_PATH: &str = "/backend";

/// A Slack workspace installed at the backend with a live runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamInstall {
    pub team_id: String,
    pub api_app_id: String,
    pub bot_user_id: String,
    pub bot_access_token: String,
    pub namespace: String,
    pub instance_id: String,
    /// The session `accessToken` the Spritz API expects on conversation upserts.
    pub access_token: String,
    /// How far in the future `expiresAt` is on each resolved exchange.
    #[serde(rename = "expires_in_secs", with = "duration_secs")]
    pub expires_in: Duration,
}

impl TeamInstall {
    /// A complete install for `team_id` with predictable demo values (app `A0<team>`,
    /// bot `U0<team>BOT`, token `xoxb-<team>`, namespace `spritz-<team>`, instance
    /// `concierge`, one hour sessions).
    pub fn demo(team_id: &str) -> TeamInstall {
        let lower = team_id.to_ascii_lowercase();
        TeamInstall {
            team_id: team_id.to_owned(),
            api_app_id: format!("A0{team_id}"),
            bot_user_id: format!("U0{team_id}BOT"),
            bot_access_token: format!("xoxb-{lower}-sandbox"),
            namespace: format!("spritz-{lower}"),
            instance_id: "concierge".to_owned(),
            access_token: format!("session-{lower}-sandbox"),
            expires_in: Duration::from_secs(3600),
        }
    }

    /// The `ownerAuthId` of the team's sessions (`auth-<team>`): the principal the
    /// session `accessToken` stands for at the Spritz API, and the owner of the runtime.
    pub fn owner_auth_id(&self) -> String {
        format!("auth-{}", self.team_id.to_ascii_lowercase())
    }
}

/// How the exchange answers for one team.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", content = "status", rename_all = "snake_case")]
pub enum ExchangeMode {
    /// 200 `{"status":"resolved","session":{…}}` (needs `install_team` first, else 404).
    Resolved,
    /// 503 `{"status":"unavailable","providerAuth":{…botAccessToken}}` (needs an install).
    Unavailable,
    /// This status with no useful body: a bare 503, or 500 with an error body.
    Transient(u16),
    /// 404: not installed or disconnected.
    NotInstalled,
    /// Never answers within any sane timeout, to exercise client timeouts.
    Hang,
}

/// Handle to a running fake backend. Clones share the server and recordings; the
/// server stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakeBackend {
    state: Arc<watch::Sender<BackendState>>,
    server: Arc<FakeServer>,
}

impl FakeBackend {
    /// Starts the fake on `127.0.0.1:0`; internal routes require
    /// `Authorization: Bearer <internal_token>` (401 otherwise).
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(internal_token: &str) -> anyhow::Result<FakeBackend> {
        Self::start_on(server::any_local_port(), internal_token).await
    }

    /// Starts the fake on a fixed address (the dev stack binary).
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start_on(addr: SocketAddr, internal_token: &str) -> anyhow::Result<FakeBackend> {
        let (state, server) = server::spawn_nested(
            "fake backend",
            addr,
            BASE_PATH,
            BackendState::new(internal_token),
            internal_api::router,
            control::router,
        )
        .await?;
        Ok(FakeBackend { state, server })
    }

    /// `http://127.0.0.1:PORT/backend`; routes are `base_url() + "/internal/v1/spritz/…"`.
    pub fn base_url(&self) -> String {
        self.server.url(BASE_PATH)
    }

    /// `http://127.0.0.1:PORT`, where the `/_sandbox` control API lives.
    pub fn origin(&self) -> String {
        self.server.origin()
    }

    /// The lifecycle webhook receiver, what `SPRITZ_LIFECYCLE_NOTIFY_URL` gets.
    pub fn lifecycle_url(&self) -> String {
        format!("{}/lifecycle", self.base_url())
    }

    /// Installs `team` and makes its exchange answer 200 resolved.
    pub fn install_team(&self, team: TeamInstall) {
        self.state.send_modify(|s| s.install_team(team));
    }

    /// The team's install as the fake currently holds it (upserts may create or update it).
    pub fn team(&self, team_id: &str) -> Option<TeamInstall> {
        self.state
            .borrow()
            .teams
            .get(team_id)
            .and_then(|t| t.install.clone())
    }

    /// The ref the backend gave the team's installation in its upsert answer (`None`
    /// before the first upsert).
    pub fn install_ref(&self, team_id: &str) -> Option<String> {
        self.state
            .borrow()
            .teams
            .get(team_id)
            .and_then(|t| t.install_ref.clone())
    }

    /// Sets the steady answer for the team's exchange (after any scripted answers).
    pub fn set_exchange_mode(&self, team_id: &str, mode: ExchangeMode) {
        self.state.send_modify(|s| s.team_mut(team_id).mode = mode);
    }

    /// Queues answers consumed one per exchange call, before the steady mode applies.
    pub fn script_exchange(&self, team_id: &str, answers: Vec<ExchangeMode>) {
        self.state
            .send_modify(|s| s.team_mut(team_id).script.extend(answers));
    }

    /// Exchange calls (with a valid internal token) received for the team.
    pub fn exchange_calls(&self, team_id: &str) -> usize {
        self.state
            .borrow()
            .teams
            .get(team_id)
            .map_or(0, |t| t.exchange_calls)
    }

    /// Every request to the backend API, in order, with its `traceparent` header.
    pub fn traced_requests(&self) -> Vec<crate::TracedRequest> {
        self.state.borrow().traced_requests.clone()
    }

    /// Exchange request bodies received, all teams, in order.
    pub fn exchange_requests(&self) -> Vec<Value> {
        self.state.borrow().exchange_requests.clone()
    }

    /// Waits until the team's exchange was called at least `n` times.
    ///
    /// # Errors
    /// When fewer calls arrived within `timeout`.
    pub async fn wait_for_exchange_calls(
        &self,
        team_id: &str,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let calls = |s: &BackendState| s.teams.get(team_id).map_or(0, |t| t.exchange_calls);
        recording::wait_for(&self.state, timeout, |s| calls(s) >= n, |_| ())
            .await
            .map_err(|error| {
                error.describe("fake backend", || {
                    format!(
                        "expected {n} exchange calls for {team_id}, got {}",
                        calls(&self.state.borrow())
                    )
                })
            })
    }

    /// Installation upsert bodies received, in order, failed (injected) ones included.
    pub fn installations(&self) -> Vec<Value> {
        self.state.borrow().installations.clone()
    }

    /// The next `n` installation upserts answer a bare `status`.
    pub fn fail_next_installation_upserts(&self, n: usize, status: u16) {
        self.state
            .send_modify(|s| s.upsert_faults.extend(std::iter::repeat_n(status, n)));
    }

    /// Disconnect bodies accepted, in order (injected failures are not recorded, so
    /// one entry per disconnect that took effect).
    pub fn disconnects(&self) -> Vec<Value> {
        self.state.borrow().disconnects.clone()
    }

    /// The next `n` disconnects answer a bare `status` (the worker must retry them).
    pub fn fail_next_disconnects(&self, n: usize, status: u16) {
        self.state
            .send_modify(|s| s.disconnect_faults.extend(std::iter::repeat_n(status, n)));
    }

    /// Waits until at least `n` disconnects were accepted; returns all of them.
    ///
    /// # Errors
    /// When fewer arrived within `timeout`.
    pub async fn wait_for_disconnects(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        recording::wait_for_records(&self.state, n, timeout, |s| &s.disconnects)
            .await
            .map_err(|error| {
                error.describe("fake backend", || {
                    format!("expected {n} disconnects within {timeout:?}")
                })
            })
    }

    /// Bodies accepted by the lifecycle webhook receiver, in order.
    pub fn lifecycle_webhooks(&self) -> Vec<Value> {
        self.state.borrow().lifecycle_webhooks.clone()
    }

    /// The bearer the lifecycle receiver requires (401 otherwise). Unset: any request.
    pub fn set_lifecycle_token(&self, token: &str) {
        self.state
            .send_modify(|s| s.lifecycle_token = Some(token.to_owned()));
    }

    /// The next `n` lifecycle webhooks answer `status` and are not recorded.
    pub fn fail_next_lifecycle_webhooks(&self, n: usize, status: u16) {
        self.state
            .send_modify(|s| s.lifecycle_faults.extend(std::iter::repeat_n(status, n)));
    }

    /// Lifecycle webhook calls that reached the fake, accepted or not.
    pub fn lifecycle_attempts(&self) -> usize {
        self.state.borrow().lifecycle_attempts
    }

    /// Waits until at least `n` lifecycle webhooks were accepted; returns all of them.
    ///
    /// # Errors
    /// When fewer arrived within `timeout`.
    pub async fn wait_for_lifecycle_webhooks(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        recording::wait_for_records(&self.state, n, timeout, |s| &s.lifecycle_webhooks)
            .await
            .map_err(|error| {
                error.describe("fake backend", || {
                    format!("expected {n} lifecycle webhooks within {timeout:?}")
                })
            })
    }
}

/// Serialises a `Duration` as whole seconds.
mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}
