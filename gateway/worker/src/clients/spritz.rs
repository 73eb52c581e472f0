//! Client of the Spritz API (SPEC §2): the channel conversation upsert (bearer: the
//! session's access token) and the ACP conversation bootstrap (bearer: the service
//! token) that yields the agent session to prompt.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::backend::ChannelSession;
use super::http::{is_transient_status, join, says_spritz_not_found, transport_reason};
use crate::message_trace;

/// The working directory a conversation gets when the API names none.
pub const DEFAULT_CWD: &str = "/home/dev";

/// Calls the Spritz API. Cheap to clone (the HTTP pool is shared).
///
/// Timeouts come from the `reqwest::Client` it is built with
/// ([`super::http::build_client`] with `SPRITZ_SLACK_HTTP_TIMEOUT`).
#[derive(Clone)]
pub struct SpritzClient {
    http: reqwest::Client,
    base_url: Url,
    upsert_url: Url,
    service_token: SecretString,
}

/// The body of `POST /api/channel-conversations/upsert`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationUpsert {
    pub namespace: String,
    pub conversation_id: String,
    pub principal_id: String,
    pub instance_id: String,
    pub owner_id: String,
    /// `"slack"`.
    pub provider: String,
    /// `"workspace"`.
    pub external_scope_type: String,
    pub external_tenant_id: String,
    pub external_channel_id: String,
    pub external_conversation_id: String,
    /// `"Slack <channel>"`.
    pub title: String,
    /// `"/home/dev"`.
    pub cwd: String,
}

/// The conversation the upsert created or found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// `metadata.name`: the id the ACP routes take.
    pub id: String,
    /// `spec.sessionId`; may be empty before the first bootstrap.
    pub session_id: String,
    pub cwd: String,
}

/// The agent session a bootstrap settled on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    pub session_id: String,
    pub cwd: String,
}

/// Why a Spritz API call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SpritzError {
    /// 404 "spritz not found": the runtime behind the session is gone; exchange again.
    #[error("the spritz runtime no longer exists")]
    RuntimeVanished,
    /// 5xx (or 408/429), timeout, connection error, unreadable 2xx answer.
    #[error("spritz API call failed transiently: {0}")]
    Transient(String),
    /// Another 4xx: retrying the same call will not help.
    #[error("spritz API rejected the call with status {status}")]
    Rejected { status: u16 },
}

impl SpritzError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SpritzError::Transient(_))
    }
}

impl SpritzClient {
    pub fn new(http: reqwest::Client, base_url: Url, service_token: SecretString) -> Self {
        Self {
            upsert_url: join(&base_url, &["api", "channel-conversations", "upsert"]),
            http,
            base_url,
            service_token,
        }
    }

    /// Creates or finds the conversation for a Slack conversation, authenticated as
    /// the session's owner.
    ///
    /// # Errors
    /// [`SpritzError`]; `RuntimeVanished` when the runtime is gone.
    pub async fn upsert_conversation(
        &self,
        session: &ChannelSession,
        request: &ConversationUpsert,
    ) -> Result<Conversation, SpritzError> {
        let call = self
            .http
            .post(self.upsert_url.clone())
            .bearer_auth(session.access_token.expose_secret())
            .json(request);
        let body: UpsertBody = send("upsert", call).await?;
        let conversation = body.data.conversation;
        let id = non_empty(conversation.metadata.name).ok_or_else(|| {
            SpritzError::Transient("upsert answered without a conversation name".to_owned())
        })?;
        let cwd = non_empty(conversation.spec.cwd).unwrap_or_else(|| request.cwd.clone());
        let session_id = non_empty(conversation.spec.session_id).unwrap_or_default();
        Ok(Conversation {
            id,
            session_id,
            cwd,
        })
    }

    /// Makes sure the conversation has a live agent session and returns it.
    ///
    /// # Errors
    /// [`SpritzError`]; `RuntimeVanished` when the runtime is gone.
    pub async fn bootstrap(
        &self,
        conversation_id: &str,
        namespace: &str,
    ) -> Result<Bootstrap, SpritzError> {
        let mut url = join(
            &self.base_url,
            &["api", "acp", "conversations", conversation_id, "bootstrap"],
        );
        url.query_pairs_mut().append_pair("namespace", namespace);
        let call = self
            .http
            .post(url)
            .bearer_auth(self.service_token.expose_secret())
            .json(&serde_json::json!({}));
        let body: BootstrapBody = send("bootstrap", call).await?;
        let data = body.data;
        let session_id = non_empty(data.effective_session_id)
            .or_else(|| non_empty(data.conversation.spec.session_id))
            .ok_or_else(|| {
                SpritzError::Transient("bootstrap answered without a session id".to_owned())
            })?;
        let cwd = non_empty(data.effective_cwd)
            .or_else(|| non_empty(data.conversation.status.effective_cwd))
            .or_else(|| non_empty(data.conversation.spec.cwd))
            .unwrap_or_else(|| DEFAULT_CWD.to_owned());
        Ok(Bootstrap { session_id, cwd })
    }
}

/// Sends a call (with the current message's `traceparent`) and reads a 2xx JSON
/// answer, mapping every other outcome.
async fn send<T: serde::de::DeserializeOwned>(
    call_name: &str,
    request: reqwest::RequestBuilder,
) -> Result<T, SpritzError> {
    let response = message_trace::carry(request)
        .send()
        .await
        .map_err(|e| SpritzError::Transient(format!("{call_name} {}", transport_reason(e))))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| SpritzError::Transient(format!("{call_name} {}", transport_reason(e))))?;
    let code = status.as_u16();
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|_| {
            SpritzError::Transient(format!(
                "{call_name} answered {code} with an unreadable body"
            ))
        });
    }
    if says_spritz_not_found(code, &bytes) {
        return Err(SpritzError::RuntimeVanished);
    }
    if is_transient_status(status) || !status.is_client_error() {
        return Err(SpritzError::Transient(format!(
            "{call_name} answered {code}"
        )));
    }
    Err(SpritzError::Rejected { status: code })
}

fn non_empty(value: Option<String>) -> Option<String> {
    let value = value?;
    let trimmed = value.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[derive(Deserialize)]
struct UpsertBody {
    data: UpsertData,
}

#[derive(Deserialize)]
struct UpsertData {
    conversation: ConversationBody,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ConversationBody {
    metadata: MetadataBody,
    spec: SpecBody,
    status: StatusBody,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct MetadataBody {
    name: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SpecBody {
    session_id: Option<String>,
    cwd: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct StatusBody {
    effective_cwd: Option<String>,
}

#[derive(Deserialize)]
struct BootstrapBody {
    data: BootstrapData,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct BootstrapData {
    effective_session_id: Option<String>,
    effective_cwd: Option<String>,
    conversation: ConversationBody,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use spritz_sandbox::spritz_api::{FakeSpritz, SpritzCall};

    use super::*;
    use crate::clients::backend::ProviderAuth;
    use crate::clients::http::build_client;
    use crate::clients::silent_endpoint::silent_endpoint;

    const SERVICE: &str = "service-token";

    fn session() -> ChannelSession {
        ChannelSession {
            access_token: SecretString::from("session-token"),
            expires_at: Utc::now(),
            owner_auth_id: "auth-1".to_owned(),
            namespace: "team-a".to_owned(),
            instance_id: "concierge".to_owned(),
            provider_auth: ProviderAuth::default(),
        }
    }

    fn upsert(external_conversation_id: &str) -> ConversationUpsert {
        ConversationUpsert {
            namespace: "team-a".to_owned(),
            conversation_id: String::new(),
            principal_id: "principal-1".to_owned(),
            instance_id: "concierge".to_owned(),
            owner_id: "auth-1".to_owned(),
            provider: "slack".to_owned(),
            external_scope_type: "workspace".to_owned(),
            external_tenant_id: "T1".to_owned(),
            external_channel_id: "C1".to_owned(),
            external_conversation_id: external_conversation_id.to_owned(),
            title: "Slack C1".to_owned(),
            cwd: DEFAULT_CWD.to_owned(),
        }
    }

    async fn start() -> (FakeSpritz, SpritzClient) {
        let spritz = FakeSpritz::start(SERVICE).await.expect("fake spritz");
        spritz.add_runtime(&spritz_sandbox::backend::TeamInstall {
            team_id: "1".into(),
            namespace: "team-a".into(),
            instance_id: "concierge".into(),
            access_token: "session-token".into(),
            ..spritz_sandbox::backend::TeamInstall::demo("1")
        });
        let base = Url::parse(&spritz.base_url()).expect("base url");
        let client = SpritzClient::new(
            build_client(&spritz_service::Trust::default(), Duration::from_secs(5))
                .expect("client"),
            base,
            SecretString::from(SERVICE),
        );
        (spritz, client)
    }

    #[tokio::test]
    async fn upsert_then_bootstrap_yields_the_conversation_and_its_session() {
        let (spritz, client) = start().await;
        let conversation = client
            .upsert_conversation(&session(), &upsert("1700000000.000100"))
            .await
            .expect("upsert");
        assert!(!conversation.id.is_empty());
        assert_eq!(conversation.cwd, DEFAULT_CWD);

        let body = &spritz.upserts()[0];
        assert_eq!(body["externalConversationId"], "1700000000.000100");
        assert_eq!(body["ownerId"], "auth-1");
        assert_eq!(body["externalScopeType"], "workspace");
        assert_eq!(body["title"], "Slack C1");
        assert_eq!(spritz.upsert_tokens(), ["session-token"]);

        let bootstrap = client
            .bootstrap(&conversation.id, "team-a")
            .await
            .expect("bootstrap");
        assert_eq!(bootstrap.session_id, conversation.session_id);
        assert_eq!(bootstrap.cwd, DEFAULT_CWD);
        assert_eq!(
            spritz.bootstraps(),
            [(conversation.id.clone(), "team-a".to_owned())]
        );
    }

    #[tokio::test]
    async fn a_vanished_runtime_is_reported_as_such_and_other_404s_are_rejections() {
        let (spritz, client) = start().await;
        let conversation = client
            .upsert_conversation(&session(), &upsert("1.1"))
            .await
            .expect("upsert");

        spritz.fail_next(SpritzCall::Bootstrap, 1, 404);
        let error = client
            .bootstrap(&conversation.id, "team-a")
            .await
            .expect_err("404");
        assert!(
            matches!(error, SpritzError::Rejected { status: 404 }),
            "a 404 without `spritz not found` is a plain rejection"
        );
        assert!(
            matches!(
                client.bootstrap("no-such-conversation", "team-a").await,
                Err(SpritzError::Rejected { status: 404 })
            ),
            "an unknown conversation is `conversation not found`, not a vanished runtime"
        );

        spritz.vanish_instance("team-a", "concierge");
        assert!(matches!(
            client.bootstrap(&conversation.id, "team-a").await,
            Err(SpritzError::RuntimeVanished)
        ));
        assert!(matches!(
            client.upsert_conversation(&session(), &upsert("1.2")).await,
            Err(SpritzError::RuntimeVanished)
        ));
    }

    #[tokio::test]
    async fn a_wrong_service_token_is_a_rejection_and_an_unreachable_api_is_transient() {
        let (spritz, _) = start().await;
        let base = Url::parse(&spritz.base_url()).expect("base url");
        let wrong = SpritzClient::new(
            spritz_sandbox::tls::http_client(),
            base,
            SecretString::from("wrong"),
        );
        assert!(matches!(
            wrong.bootstrap("c", "n").await,
            Err(SpritzError::Rejected { status: 401 })
        ));

        let (listener, base) = silent_endpoint("spritz").await;
        drop(listener);
        let unreachable = SpritzClient::new(
            spritz_sandbox::tls::http_client(),
            base,
            SecretString::from(SERVICE),
        );
        assert!(
            unreachable
                .bootstrap("c", "n")
                .await
                .expect_err("refused")
                .is_transient()
        );
    }
}
