//! Client of the backend's internal API (SPEC §2): the channel-session exchange that
//! tells the worker which runtime serves a Slack workspace, and the disconnect of an
//! installation after `app_uninstalled` / `tokens_revoked`.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use super::http::{is_transient_status, join, transport_reason};
use crate::message_trace;

const PROVIDER: &str = "slack";
const SCOPE_TYPE: &str = "workspace";

/// How long a session whose `expiresAt` is missing or unreadable is used: the session
/// itself is good (the original gateway ignores the field), but without a known
/// expiry it is exchanged again soon rather than trusted indefinitely.
pub const UNKNOWN_EXPIRY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Calls the backend with the internal token. Cheap to clone (the HTTP pool is shared).
/// Within a message's handling every call carries a `traceparent` of its trace
/// ([`message_trace::carry`]).
///
/// Timeouts come from the `reqwest::Client` it is built with
/// ([`super::http::build_client`] with `SPRITZ_SLACK_HTTP_TIMEOUT`).
#[derive(Clone)]
pub struct BackendClient {
    http: reqwest::Client,
    exchange_url: Url,
    disconnect_url: Url,
    token: SecretString,
    principal_id: String,
}

/// What the exchange said about a team.
#[derive(Clone, Debug)]
pub enum Exchange {
    /// 200: a live runtime and the session to reach it.
    Resolved(ChannelSession),
    /// 503 `{"status":"unavailable"}`: installed, the runtime is being created or
    /// recovered. `provider_auth` (when sent) carries a bot token for status messages.
    Unavailable { provider_auth: Option<ProviderAuth> },
    /// Another 4xx: not installed or disconnected; retrying will not help.
    NotInstalled { status: u16 },
}

/// A resolved channel session: who owns the runtime and how to reach it.
#[derive(Clone, Debug)]
pub struct ChannelSession {
    /// Bearer for the Spritz API conversation upsert.
    pub access_token: SecretString,
    /// The session is not used after this instant.
    pub expires_at: DateTime<Utc>,
    pub owner_auth_id: String,
    pub namespace: String,
    pub instance_id: String,
    pub provider_auth: ProviderAuth,
}

/// The Slack installation as the backend stores it.
#[derive(Clone, Debug, Default)]
pub struct ProviderAuth {
    pub provider_install_ref: String,
    pub api_app_id: String,
    pub team_id: String,
    pub enterprise_id: Option<String>,
    pub installing_user_id: String,
    pub bot_user_id: String,
    pub scope_set: Vec<String>,
    pub bot_access_token: Option<SecretString>,
}

/// Why a backend call did not give an answer the worker can act on.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// 5xx (or 408/429), a 503 without the `unavailable` body, a timeout, a connection
    /// error or a 2xx answer that cannot be read. Worth retrying.
    #[error("backend call failed transiently: {0}")]
    Transient(String),
    /// A 4xx on disconnect (other than 408/429): retrying will not help.
    #[error("backend rejected the call with status {status}")]
    Rejected { status: u16 },
}

impl BackendError {
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Transient(_))
    }
}

/// The routing identity of an installation, the body of both calls.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoutingIdentity<'a> {
    principal_id: &'a str,
    provider: &'static str,
    external_scope_type: &'static str,
    external_tenant_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_app_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enterprise_id: Option<&'a str>,
}

impl BackendClient {
    pub fn new(
        http: reqwest::Client,
        base_url: Url,
        token: SecretString,
        principal_id: String,
    ) -> Self {
        let internal = |route: &[&str]| {
            let mut segments = vec!["internal", "v1", "spritz"];
            segments.extend_from_slice(route);
            join(&base_url, &segments)
        };
        Self {
            exchange_url: internal(&["channel-sessions", "exchange"]),
            disconnect_url: internal(&["channel-installations", "disconnect"]),
            http,
            token,
            principal_id,
        }
    }

    /// Exchanges a channel session for the team's runtime.
    ///
    /// Besides SPEC §2's cases, 408 and 429 count as transient (the backend is busy,
    /// not telling us the team is gone).
    ///
    /// # Errors
    /// [`BackendError::Transient`] for anything worth retrying; every definite answer
    /// (resolved, unavailable, not installed) is an [`Exchange`].
    pub async fn exchange(&self, team_id: &str) -> Result<Exchange, BackendError> {
        let body = self.identity(team_id, None, None);
        let request = self
            .http
            .post(self.exchange_url.clone())
            .bearer_auth(self.token.expose_secret())
            .json(&body);
        let response = message_trace::carry(request)
            .send()
            .await
            .map_err(|e| BackendError::Transient(format!("exchange {}", transport_reason(e))))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| BackendError::Transient(format!("exchange {}", transport_reason(e))))?;
        interpret_exchange(status, &bytes)
    }

    /// Disconnects the team's installation (the app was uninstalled or its tokens
    /// revoked). `api_app_id` and `enterprise_id` narrow the identity when known.
    ///
    /// # Errors
    /// [`BackendError::Transient`] (retry) or [`BackendError::Rejected`] (give up).
    pub async fn disconnect(
        &self,
        team_id: &str,
        api_app_id: Option<&str>,
        enterprise_id: Option<&str>,
    ) -> Result<(), BackendError> {
        let api_app_id = api_app_id.filter(|v| !v.is_empty());
        let enterprise_id = enterprise_id.filter(|v| !v.is_empty());
        let body = self.identity(team_id, api_app_id, enterprise_id);
        let request = self
            .http
            .post(self.disconnect_url.clone())
            .bearer_auth(self.token.expose_secret())
            .json(&body);
        let response = message_trace::carry(request)
            .send()
            .await
            .map_err(|e| BackendError::Transient(format!("disconnect {}", transport_reason(e))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if is_transient_status(status) || !status.is_client_error() {
            return Err(BackendError::Transient(format!(
                "disconnect answered {}",
                status.as_u16()
            )));
        }
        Err(BackendError::Rejected {
            status: status.as_u16(),
        })
    }

    fn identity<'a>(
        &'a self,
        team_id: &'a str,
        api_app_id: Option<&'a str>,
        enterprise_id: Option<&'a str>,
    ) -> RoutingIdentity<'a> {
        RoutingIdentity {
            principal_id: &self.principal_id,
            provider: PROVIDER,
            external_scope_type: SCOPE_TYPE,
            external_tenant_id: team_id,
            api_app_id,
            enterprise_id,
        }
    }
}

/// Maps an exchange answer to SPEC §2's cases.
fn interpret_exchange(status: reqwest::StatusCode, body: &[u8]) -> Result<Exchange, BackendError> {
    let code = status.as_u16();
    if status.is_success() {
        let answer: ExchangeBody = serde_json::from_slice(body).map_err(|_| {
            BackendError::Transient(format!("exchange answered {code} with an unreadable body"))
        })?;
        return match (answer.status.as_str(), answer.session) {
            ("resolved", Some(session)) => Ok(Exchange::Resolved(session.into())),
            ("unavailable", _) => Ok(Exchange::Unavailable {
                provider_auth: answer.provider_auth.map(Into::into),
            }),
            _ => Err(BackendError::Transient(format!(
                "exchange answered {code} without a session"
            ))),
        };
    }
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return match serde_json::from_slice::<ExchangeBody>(body) {
            Ok(answer) if answer.status == "unavailable" => Ok(Exchange::Unavailable {
                provider_auth: answer.provider_auth.map(Into::into),
            }),
            _ => Err(BackendError::Transient("exchange answered 503".to_owned())),
        };
    }
    if is_transient_status(status) || !status.is_client_error() {
        return Err(BackendError::Transient(format!("exchange answered {code}")));
    }
    Ok(Exchange::NotInstalled { status: code })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExchangeBody {
    #[serde(default)]
    status: String,
    #[serde(default)]
    session: Option<SessionBody>,
    #[serde(default)]
    provider_auth: Option<ProviderAuthBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionBody {
    access_token: String,
    #[serde(default, deserialize_with = "lenient_instant")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    owner_auth_id: String,
    namespace: String,
    instance_id: String,
    #[serde(default)]
    provider_auth: ProviderAuthBody,
}

impl From<SessionBody> for ChannelSession {
    fn from(body: SessionBody) -> Self {
        ChannelSession {
            access_token: SecretString::from(body.access_token),
            expires_at: body.expires_at.unwrap_or_else(|| {
                Utc::now() + chrono::Duration::from_std(UNKNOWN_EXPIRY_LIFETIME).unwrap_or_default()
            }),
            owner_auth_id: body.owner_auth_id,
            namespace: body.namespace,
            instance_id: body.instance_id,
            provider_auth: body.provider_auth.into(),
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ProviderAuthBody {
    #[serde(deserialize_with = "null_as_empty")]
    provider_install_ref: String,
    #[serde(deserialize_with = "null_as_empty")]
    api_app_id: String,
    #[serde(deserialize_with = "null_as_empty")]
    team_id: String,
    #[serde(deserialize_with = "null_as_empty")]
    enterprise_id: String,
    #[serde(deserialize_with = "null_as_empty")]
    installing_user_id: String,
    #[serde(deserialize_with = "null_as_empty")]
    bot_user_id: String,
    #[serde(deserialize_with = "scope_set")]
    scope_set: Vec<String>,
    #[serde(deserialize_with = "null_as_empty")]
    bot_access_token: String,
}

impl From<ProviderAuthBody> for ProviderAuth {
    fn from(body: ProviderAuthBody) -> Self {
        let present = |value: String| (!value.trim().is_empty()).then_some(value);
        ProviderAuth {
            provider_install_ref: body.provider_install_ref,
            api_app_id: body.api_app_id,
            team_id: body.team_id,
            enterprise_id: present(body.enterprise_id),
            installing_user_id: body.installing_user_id,
            bot_user_id: body.bot_user_id,
            scope_set: body.scope_set,
            bot_access_token: present(body.bot_access_token).map(SecretString::from),
        }
    }
}

/// An RFC 3339 instant; anything else (absent, null, another shape) reads as unknown.
fn lenient_instant<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
        .map(|instant| instant.with_timezone(&Utc)))
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

/// `scopeSet` as a list, or as Slack's comma-separated string.
fn scope_set<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scopes {
        List(Vec<String>),
        Text(String),
        Missing(()),
    }
    Ok(match Scopes::deserialize(deserializer)? {
        Scopes::List(list) => list,
        Scopes::Text(text) => text
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Scopes::Missing(()) => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::ExposeSecret;
    use serde_json::json;
    use spritz_sandbox::backend::{ExchangeMode, FakeBackend, TeamInstall};

    use super::*;
    use crate::clients::http::build_client;
    use crate::clients::silent_endpoint::silent_endpoint;

    const TOKEN: &str = "internal-token";

    async fn client_for(backend: &FakeBackend, timeout: Duration) -> BackendClient {
        let base = Url::parse(&backend.base_url()).expect("base url");
        BackendClient::new(
            build_client(&spritz_service::Trust::default(), timeout).expect("client"),
            base,
            SecretString::from(TOKEN),
            "principal-1".to_owned(),
        )
    }

    #[test]
    fn a_resolved_session_without_a_readable_expiry_is_used_for_a_short_while() {
        for expires_at in [json!("next tuesday"), json!(null), json!(1_700_000_000)] {
            let body = json!({"status": "resolved", "session": {
                "accessToken": "tok", "expiresAt": expires_at, "ownerAuthId": "owner",
                "namespace": "ns", "instanceId": "inst", "providerAuth": {"teamId": "T1"}}});
            let before = Utc::now();
            let answer = interpret_exchange(
                reqwest::StatusCode::OK,
                &serde_json::to_vec(&body).expect("json"),
            )
            .expect("a session, not a transient error");
            let Exchange::Resolved(session) = answer else {
                panic!("expected a resolved session for expiresAt {expires_at}");
            };
            let lifetime = (session.expires_at - before)
                .to_std()
                .expect("in the future");
            assert!(
                lifetime <= UNKNOWN_EXPIRY_LIFETIME + Duration::from_secs(1)
                    && lifetime > UNKNOWN_EXPIRY_LIFETIME / 2,
                "{lifetime:?}"
            );
            assert_eq!(session.instance_id, "inst");
        }
    }

    #[tokio::test]
    async fn a_resolved_exchange_yields_the_session_and_sends_the_routing_identity() {
        let backend = FakeBackend::start(TOKEN).await.expect("backend");
        let install = TeamInstall::demo("T1");
        backend.install_team(install.clone());
        let client = client_for(&backend, Duration::from_secs(5)).await;

        let Exchange::Resolved(session) = client.exchange("T1").await.expect("exchange") else {
            panic!("expected a resolved session");
        };
        assert_eq!(session.access_token.expose_secret(), install.access_token);
        assert_eq!(session.namespace, install.namespace);
        assert_eq!(session.instance_id, install.instance_id);
        assert!(session.expires_at > Utc::now());
        assert_eq!(session.provider_auth.team_id, "T1");
        assert_eq!(session.provider_auth.api_app_id, install.api_app_id);
        assert_eq!(session.provider_auth.bot_user_id, install.bot_user_id);
        assert_eq!(session.provider_auth.enterprise_id, None);
        assert!(
            session
                .provider_auth
                .scope_set
                .contains(&"chat:write".to_owned())
        );
        let bot = session
            .provider_auth
            .bot_access_token
            .as_ref()
            .expect("bot token");
        assert_eq!(bot.expose_secret(), install.bot_access_token);
        let debug = format!("{session:?}");
        assert!(
            !debug.contains(&install.access_token) && !debug.contains(&install.bot_access_token)
        );

        assert_eq!(
            backend.exchange_requests(),
            vec![json!({
                "principalId": "principal-1",
                "provider": "slack",
                "externalScopeType": "workspace",
                "externalTenantId": "T1",
            })]
        );
    }

    #[tokio::test]
    async fn an_unavailable_runtime_still_yields_the_bot_token() {
        let backend = FakeBackend::start(TOKEN).await.expect("backend");
        backend.install_team(TeamInstall::demo("T1"));
        backend.set_exchange_mode("T1", ExchangeMode::Unavailable);
        let client = client_for(&backend, Duration::from_secs(5)).await;

        let Exchange::Unavailable {
            provider_auth: Some(auth),
        } = client.exchange("T1").await.expect("exchange")
        else {
            panic!("expected unavailable with provider auth");
        };
        assert_eq!(
            auth.bot_access_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned())
                .as_deref(),
            Some("xoxb-t1-sandbox")
        );
    }

    #[tokio::test]
    async fn bare_503s_server_errors_and_timeouts_are_transient() {
        let backend = FakeBackend::start(TOKEN).await.expect("backend");
        backend.install_team(TeamInstall::demo("T1"));
        let client = client_for(&backend, Duration::from_millis(300)).await;

        for mode in [
            ExchangeMode::Transient(503),
            ExchangeMode::Transient(500),
            ExchangeMode::Hang,
        ] {
            backend.set_exchange_mode("T1", mode.clone());
            let error = client.exchange("T1").await.expect_err("transient");
            assert!(error.is_transient(), "{mode:?} gave {error}");
            assert!(!error.to_string().contains(TOKEN));
        }
    }

    #[tokio::test]
    async fn other_4xx_answers_mean_not_installed() {
        let backend = FakeBackend::start(TOKEN).await.expect("backend");
        let client = client_for(&backend, Duration::from_secs(5)).await;
        assert!(matches!(
            client.exchange("T404").await,
            Ok(Exchange::NotInstalled { status: 404 })
        ));

        let base = Url::parse(&backend.base_url()).expect("base url");
        let wrong = BackendClient::new(
            spritz_sandbox::tls::http_client(),
            base,
            SecretString::from("wrong"),
            "p".to_owned(),
        );
        assert!(matches!(
            wrong.exchange("T1").await,
            Ok(Exchange::NotInstalled { status: 401 })
        ));
    }

    #[tokio::test]
    async fn a_connection_refused_is_transient() {
        let (listener, base) = silent_endpoint("backend").await;
        drop(listener);
        let client = BackendClient::new(
            spritz_sandbox::tls::http_client(),
            base,
            SecretString::from(TOKEN),
            "p".to_owned(),
        );
        assert!(
            client
                .exchange("T1")
                .await
                .expect_err("refused")
                .is_transient()
        );
    }

    #[tokio::test]
    async fn disconnect_sends_the_identity_and_sorts_failures() {
        let backend = FakeBackend::start(TOKEN).await.expect("backend");
        backend.install_team(TeamInstall::demo("T1"));
        let client = client_for(&backend, Duration::from_secs(5)).await;

        backend.fail_next_disconnects(1, 502);
        let error = client
            .disconnect("T1", Some("A0T1"), None)
            .await
            .expect_err("502");
        assert!(error.is_transient());

        client
            .disconnect("T1", Some("A0T1"), Some(""))
            .await
            .expect("disconnect");
        assert_eq!(
            backend.disconnects(),
            vec![json!({
                "principalId": "principal-1",
                "provider": "slack",
                "externalScopeType": "workspace",
                "externalTenantId": "T1",
                "apiAppId": "A0T1",
            })]
        );
        assert!(matches!(
            client.exchange("T1").await,
            Ok(Exchange::NotInstalled { status: 404 })
        ));

        let error = client.disconnect("", None, None).await.expect_err("400");
        assert!(matches!(error, BackendError::Rejected { status: 400 }));
    }

    #[test]
    fn answers_map_to_the_spec_cases() {
        use reqwest::StatusCode;
        let unavailable = br#"{"status":"unavailable","providerAuth":{"teamId":"T1","scopeSet":"chat:write,im:history","enterpriseId":null}}"#;
        let Ok(Exchange::Unavailable {
            provider_auth: Some(auth),
        }) = interpret_exchange(StatusCode::SERVICE_UNAVAILABLE, unavailable)
        else {
            panic!("unavailable");
        };
        assert_eq!(auth.scope_set, ["chat:write", "im:history"]);
        assert_eq!(auth.bot_access_token.map(|_| ()), None);
        assert!(
            interpret_exchange(StatusCode::OK, b"<html>")
                .expect_err("garbage")
                .is_transient()
        );
        assert!(interpret_exchange(StatusCode::OK, br#"{"status":"resolved"}"#).is_err());
        assert!(
            interpret_exchange(StatusCode::TOO_MANY_REQUESTS, b"")
                .expect_err("429")
                .is_transient()
        );
        assert!(matches!(
            interpret_exchange(StatusCode::FORBIDDEN, b""),
            Ok(Exchange::NotInstalled { status: 403 })
        ));
    }
}
