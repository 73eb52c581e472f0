//! What the fake backend remembers and the answer each internal call gets, kept apart
//! from HTTP so the routes stay thin.

use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};

use super::{ExchangeMode, TeamInstall, request};
use crate::spritz_http::{RecordsTraceparents, TracedRequest};

/// Scopes reported in `providerAuth.scopeSet` (the gateway's default bot scopes).
const SCOPES: [&str; 5] = [
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "im:history",
    "mpim:history",
];

/// One team as the backend sees it.
#[derive(Debug)]
pub(crate) struct TeamState {
    pub install: Option<TeamInstall>,
    pub mode: ExchangeMode,
    pub script: VecDeque<ExchangeMode>,
    pub exchange_calls: usize,
    /// The backend's own name of the installation, assigned by the first upsert and
    /// kept by later ones (the backend names installations, not the gateway).
    pub install_ref: Option<String>,
}

impl TeamState {
    fn new() -> Self {
        TeamState {
            install: None,
            mode: ExchangeMode::NotInstalled,
            script: VecDeque::new(),
            exchange_calls: 0,
            install_ref: None,
        }
    }
}

/// How one exchange call is answered.
#[derive(Debug)]
pub(super) enum ExchangeAnswer {
    Resolved(Value),
    Unavailable(Value),
    Transient(u16),
    NotInstalled,
    Hang,
}

/// How one upsert or disconnect is answered.
#[derive(Debug)]
pub(super) enum WriteAnswer {
    Ok(Value),
    Fault(u16),
    BadRequest(&'static str),
    /// The workspace was never installed.
    NotFound,
}

pub(crate) struct BackendState {
    pub internal_token: String,
    pub teams: HashMap<String, TeamState>,
    pub exchange_requests: Vec<Value>,
    pub installations: Vec<Value>,
    pub upsert_faults: VecDeque<u16>,
    pub disconnects: Vec<Value>,
    pub disconnect_faults: VecDeque<u16>,
    pub lifecycle_token: Option<String>,
    pub lifecycle_faults: VecDeque<u16>,
    pub lifecycle_webhooks: Vec<Value>,
    pub lifecycle_attempts: usize,
    /// Installation refs handed out so far (they are numbered).
    pub assigned_refs: usize,
    /// Every API request's `traceparent`.
    pub traced_requests: Vec<TracedRequest>,
}

impl RecordsTraceparents for BackendState {
    fn traced_requests(&mut self) -> &mut Vec<TracedRequest> {
        &mut self.traced_requests
    }
}

impl BackendState {
    pub fn new(internal_token: &str) -> Self {
        BackendState {
            internal_token: internal_token.to_owned(),
            teams: HashMap::new(),
            exchange_requests: Vec::new(),
            installations: Vec::new(),
            upsert_faults: VecDeque::new(),
            disconnects: Vec::new(),
            disconnect_faults: VecDeque::new(),
            lifecycle_token: None,
            lifecycle_faults: VecDeque::new(),
            lifecycle_webhooks: Vec::new(),
            lifecycle_attempts: 0,
            assigned_refs: 0,
            traced_requests: Vec::new(),
        }
    }

    pub fn team_mut(&mut self, team_id: &str) -> &mut TeamState {
        self.teams
            .entry(team_id.to_owned())
            .or_insert_with(TeamState::new)
    }

    pub fn install_team(&mut self, install: TeamInstall) {
        let team = self.team_mut(&install.team_id.clone());
        team.install = Some(install);
        team.mode = ExchangeMode::Resolved;
    }

    /// Counts the call, takes the next scripted answer (or the steady mode) and
    /// builds the body. `Resolved`/`Unavailable` without an install answer 404.
    pub fn exchange(&mut self, team_id: &str, body: Value) -> ExchangeAnswer {
        self.exchange_requests.push(body);
        let team = self.team_mut(team_id);
        team.exchange_calls += 1;
        let mode = team.script.pop_front().unwrap_or_else(|| team.mode.clone());
        match (mode, &team.install) {
            (ExchangeMode::Resolved, Some(install)) => ExchangeAnswer::Resolved(json!({
                "status": "resolved",
                "session": session(install, team.install_ref.as_deref()),
            })),
            (ExchangeMode::Unavailable, Some(install)) => ExchangeAnswer::Unavailable(json!({
                "status": "unavailable",
                "providerAuth": provider_auth(install, team.install_ref.as_deref()),
            })),
            (ExchangeMode::Resolved | ExchangeMode::Unavailable, None)
            | (ExchangeMode::NotInstalled, _) => ExchangeAnswer::NotInstalled,
            (ExchangeMode::Transient(status), _) => ExchangeAnswer::Transient(status),
            (ExchangeMode::Hang, _) => ExchangeAnswer::Hang,
        }
    }

    /// Records the upsert and installs (or refreshes) the team from its `providerAuth`
    /// with a live runtime, as the real backend does after an OAuth install. The answer
    /// names the installation by the backend's own ref (`sandbox-install-<n>`, one per
    /// team, kept across re-installs), never by the ref the caller proposed, so a test
    /// sees whether the caller passes on what the backend said.
    pub fn upsert_installation(&mut self, body: Value) -> WriteAnswer {
        self.installations.push(body.clone());
        if let Some(status) = self.upsert_faults.pop_front() {
            return WriteAnswer::Fault(status);
        }
        let team_id = match request::routing_identity(&body) {
            Ok(team_id) => team_id,
            Err(reason) => return WriteAnswer::BadRequest(reason),
        };
        if let Err(reason) = request::installation(&body, &team_id) {
            return WriteAnswer::BadRequest(reason);
        }
        let auth = &body["providerAuth"];
        let text = |v: &Value| v.as_str().unwrap_or_default().trim().to_owned();
        let mut install = self
            .teams
            .get(&team_id)
            .and_then(|t| t.install.clone())
            .unwrap_or_else(|| TeamInstall::demo(&team_id));
        install.api_app_id = text(&auth["apiAppId"]);
        install.bot_user_id = text(&auth["botUserId"]);
        install.bot_access_token = text(&auth["botAccessToken"]);
        let install_ref = match self.teams.get(&team_id).and_then(|t| t.install_ref.clone()) {
            Some(existing) => existing,
            None => {
                self.assigned_refs += 1;
                let assigned = format!("sandbox-install-{}", self.assigned_refs);
                self.team_mut(&team_id).install_ref = Some(assigned.clone());
                assigned
            }
        };
        self.install_team(install);
        WriteAnswer::Ok(json!({
            "status": "resolved",
            "installation": {"providerInstallRef": install_ref},
        }))
    }

    /// Records the disconnect; the team's exchange answers 404 from now on (its
    /// install is kept, so `set_exchange_mode(Resolved)` brings it back). Disconnecting
    /// again is a no-op success; a workspace that was never installed is a 404.
    pub fn disconnect(&mut self, body: Value) -> WriteAnswer {
        if let Some(status) = self.disconnect_faults.pop_front() {
            return WriteAnswer::Fault(status);
        }
        let team_id = match request::routing_identity(&body) {
            Ok(team_id) => team_id,
            Err(reason) => return WriteAnswer::BadRequest(reason),
        };
        let Some(team) = self.teams.get_mut(&team_id).filter(|t| t.install.is_some()) else {
            return WriteAnswer::NotFound;
        };
        team.mode = ExchangeMode::NotInstalled;
        team.script.clear();
        self.disconnects.push(body);
        WriteAnswer::Ok(json!({"status": "disconnected"}))
    }
}

fn session(install: &TeamInstall, install_ref: Option<&str>) -> Value {
    let expires_at = chrono::Utc::now()
        + chrono::Duration::from_std(install.expires_in).unwrap_or(chrono::Duration::hours(1));
    json!({
        "accessToken": install.access_token,
        "expiresAt": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "ownerAuthId": install.owner_auth_id(),
        "namespace": install.namespace,
        "instanceId": install.instance_id,
        "providerAuth": provider_auth(install, install_ref),
    })
}

/// `install_ref` is the upsert's ref; a team installed through the control API (no
/// upsert) gets the gateway's conventional `slack-install:<team>`.
fn provider_auth(install: &TeamInstall, install_ref: Option<&str>) -> Value {
    let install_ref = install_ref.map_or_else(
        || format!("slack-install:{}", install.team_id),
        str::to_owned,
    );
    json!({
        "providerInstallRef": install_ref,
        "apiAppId": install.api_app_id,
        "teamId": install.team_id,
        "enterpriseId": "",
        "installingUserId": "U0SANDBOXINSTALLER",
        "botUserId": install.bot_user_id,
        "scopeSet": SCOPES,
        "botAccessToken": install.bot_access_token,
    })
}
