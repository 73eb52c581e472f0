//! The Slack OAuth v2 install: the authorize redirect, the code exchange at
//! `oauth.v2.access`, and the installation upsert at the backend (SPEC §2).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use spritz_proto::properties::TRACEPARENT;
use spritz_proto::traceparent::TraceParent;
use spritz_service::trace;
use url::Url;

use crate::config::ServeConfig;
use crate::error::{Error, Result};

const PROVIDER: &str = "slack";
const SCOPE_TYPE: &str = "workspace";

/// One workspace that installed the app, as Slack reported it.
#[derive(Clone, Debug)]
pub struct Installation {
    pub team_id: String,
    pub enterprise_id: Option<String>,
    pub api_app_id: String,
    pub bot_user_id: String,
    pub installing_user_id: String,
    pub scope_set: Vec<String>,
    pub bot_access_token: SecretString,
}

/// Talks to Slack and the backend for installs.
#[derive(Clone, Debug)]
pub struct Installer {
    http: reqwest::Client,
    authorize_url: Url,
    access_url: String,
    upsert_url: String,
    client_id: String,
    client_secret: SecretString,
    scopes: String,
    redirect_uri: String,
    backend_token: SecretString,
    principal_id: String,
    preset_id: String,
}

impl Installer {
    /// # Errors
    /// The HTTP client cannot be built (TLS set-up).
    pub fn new(config: &ServeConfig) -> Result<Self> {
        let http = config
            .trust
            .http_client_builder()
            .timeout(config.http_timeout)
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self {
            http,
            authorize_url: authorize_url(&config.slack_api_base_url),
            access_url: join(&config.slack_api_base_url, "/oauth.v2.access"),
            upsert_url: join(
                &config.backend_base_url,
                "/internal/v1/spritz/channel-installations/upsert",
            ),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            scopes: config.bot_scopes.join(","),
            redirect_uri: config.redirect_uri(),
            backend_token: config.backend_internal_token.clone(),
            principal_id: config.principal_id.clone(),
            preset_id: config.preset_id.clone(),
        })
    }

    /// Where to send the installing user, carrying `state`.
    pub fn authorize_redirect(&self, state: &str) -> String {
        let mut target = self.authorize_url.clone();
        target
            .query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", &self.scopes)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", state);
        target.into()
    }

    /// Exchanges the callback's `code` for the bot token and workspace identity.
    ///
    /// # Errors
    /// [`Error::SlackRefused`] when Slack answers `ok:false`; [`Error::Upstream`] for
    /// transport failures and unreadable answers.
    pub async fn exchange_code(&self, code: &str) -> Result<Installation> {
        let response = self
            .http
            .post(&self.access_url)
            .form(&[
                ("code", code),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.expose_secret()),
                ("redirect_uri", self.redirect_uri.as_str()),
            ])
            .send()
            .await
            .map_err(|e| Error::Upstream("slack oauth.v2.access", e))?
            .error_for_status()
            .map_err(|e| Error::Upstream("slack oauth.v2.access", e))?;
        let answer: AccessAnswer = response
            .json()
            .await
            .map_err(|e| Error::Upstream("slack oauth.v2.access", e))?;
        answer.into_installation()
    }

    /// Records the installation at the backend, which creates the workspace's runtime,
    /// and returns the backend's name of it (`installation.providerInstallRef`). An
    /// answer without one falls back to the ref we proposed, `slack-install:<team>`,
    /// as the original service did. The call carries a `traceparent` of `trace`.
    ///
    /// # Errors
    /// [`Error::Upstream`] for transport failures; [`Error::Backend`] when the backend
    /// answers non-2xx or does not resolve the installation.
    pub async fn upsert(&self, installation: &Installation, trace: &TraceParent) -> Result<String> {
        let proposed_ref = format!("slack-install:{}", installation.team_id);
        let body = json!({
            "principalId": self.principal_id,
            "provider": PROVIDER,
            "externalScopeType": SCOPE_TYPE,
            "externalTenantId": installation.team_id,
            "presetId": self.preset_id,
            "ownerRef": {
                "type": "external",
                "provider": PROVIDER,
                "subject": installation.installing_user_id,
                "tenant": installation.team_id,
            },
            "providerAuth": {
                "providerInstallRef": proposed_ref,
                "apiAppId": installation.api_app_id,
                "teamId": installation.team_id,
                "enterpriseId": installation.enterprise_id,
                "installingUserId": installation.installing_user_id,
                "botUserId": installation.bot_user_id,
                "scopeSet": installation.scope_set,
                "botAccessToken": installation.bot_access_token.expose_secret(),
            },
        });
        let response = self
            .http
            .post(&self.upsert_url)
            .bearer_auth(self.backend_token.expose_secret())
            .header(
                TRACEPARENT,
                trace::outbound(&tracing::Span::current(), trace).to_string(),
            )
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::Upstream("backend installation upsert", e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Backend(format!(
                "installation upsert answered {status}"
            )));
        }
        let answer: UpsertAnswer = response
            .json()
            .await
            .map_err(|e| Error::Upstream("backend installation upsert", e))?;
        answer.into_install_ref(proposed_ref)
    }
}

#[derive(Deserialize)]
struct AccessAnswer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    bot_user_id: Option<String>,
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    team: Option<Identity>,
    #[serde(default)]
    enterprise: Option<Identity>,
    #[serde(default)]
    authed_user: Option<Identity>,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct UpsertAnswer {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    installation: Option<UpsertedInstallation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertedInstallation {
    #[serde(default)]
    provider_install_ref: Option<String>,
}

impl UpsertAnswer {
    /// The backend's ref of a resolved installation, else `proposed`.
    fn into_install_ref(self, proposed: String) -> Result<String> {
        if self.status.as_deref() != Some("resolved") {
            return Err(Error::Backend(
                "installation upsert was not resolved".to_owned(),
            ));
        }
        Ok(self
            .installation
            .and_then(|i| i.provider_install_ref)
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .unwrap_or(proposed))
    }
}

impl AccessAnswer {
    fn into_installation(self) -> Result<Installation> {
        if !self.ok {
            return Err(Error::SlackRefused(
                self.error.unwrap_or_else(|| "unknown_error".to_owned()),
            ));
        }
        let id =
            |identity: Option<Identity>| identity.and_then(|i| i.id).filter(|id| !id.is_empty());
        let (Some(team_id), Some(token)) =
            (id(self.team), self.access_token.filter(|t| !t.is_empty()))
        else {
            return Err(Error::SlackRefused(
                "answer_without_team_or_token".to_owned(),
            ));
        };
        Ok(Installation {
            team_id,
            enterprise_id: id(self.enterprise),
            api_app_id: self.app_id.unwrap_or_default(),
            bot_user_id: self.bot_user_id.unwrap_or_default(),
            installing_user_id: id(self.authed_user).unwrap_or_default(),
            scope_set: self
                .scope
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            bot_access_token: SecretString::from(token),
        })
    }
}

/// `https://slack.com/api` → `https://slack.com/oauth/v2/authorize`: the install page
/// is on the Web API's host, beside its `/api` path (any prefix before it is kept).
fn authorize_url(api_base: &Url) -> Url {
    let mut url = api_base.clone();
    let path = api_base.path().trim_end_matches('/');
    let prefix = path.strip_suffix("/api").unwrap_or(path);
    url.set_path(&format!("{prefix}/oauth/v2/authorize"));
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Base URL + route, keeping the base's path (SPEC §2).
fn join(base: &Url, route: &str) -> String {
    format!("{}{route}", base.as_str().trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(raw: &str) -> Url {
        Url::parse(raw).expect("url")
    }

    #[test]
    fn the_authorize_page_is_on_the_api_host() {
        assert_eq!(
            authorize_url(&url("https://slack.com/api")).as_str(),
            "https://slack.com/oauth/v2/authorize"
        );
        assert_eq!(
            authorize_url(&url("http://127.0.0.1:9/proxy/api/")).as_str(),
            "http://127.0.0.1:9/proxy/oauth/v2/authorize"
        );
        assert_eq!(
            authorize_url(&url("https://slack.test")).as_str(),
            "https://slack.test/oauth/v2/authorize"
        );
    }

    #[test]
    fn routes_keep_the_base_path() {
        assert_eq!(
            join(&url("https://b.test/spritz"), "/x"),
            "https://b.test/spritz/x"
        );
        assert_eq!(join(&url("https://b.test"), "/x"), "https://b.test/x");
    }

    #[test]
    fn the_install_ref_is_the_backends_and_falls_back_to_ours_only_when_it_names_none() {
        let answer = |body: &str| serde_json::from_str::<UpsertAnswer>(body).expect("json");
        let ours = || "slack-install:T1".to_owned();
        assert_eq!(
            answer(r#"{"status":"resolved","installation":{"providerInstallRef":"inst-9"}}"#)
                .into_install_ref(ours())
                .expect("resolved"),
            "inst-9"
        );
        for nameless in [
            r#"{"status":"resolved"}"#,
            r#"{"status":"resolved","installation":{}}"#,
            r#"{"status":"resolved","installation":{"providerInstallRef":" "}}"#,
        ] {
            assert_eq!(
                answer(nameless).into_install_ref(ours()).expect(nameless),
                ours()
            );
        }
        assert!(matches!(
            answer(r#"{"status":"pending","installation":{"providerInstallRef":"inst-9"}}"#)
                .into_install_ref(ours()),
            Err(Error::Backend(_))
        ));
    }

    #[test]
    fn a_refused_code_is_slacks_error() {
        let answer: AccessAnswer =
            serde_json::from_str(r#"{"ok":false,"error":"invalid_code"}"#).expect("json");
        assert!(
            matches!(answer.into_installation(), Err(Error::SlackRefused(code)) if code == "invalid_code")
        );
    }
}
