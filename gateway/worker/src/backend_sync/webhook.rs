//! The lifecycle webhook (`SPRITZ_LIFECYCLE_NOTIFY_URL`, SPEC §2): `POST
//! {namespace, instanceId, phase}` with an optional bearer; any 2xx is success.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use spritz_proto::{LifecycleEvent, Phase};
use url::Url;

use crate::clients::http::transport_reason;
use crate::message_trace;

/// Posts lifecycle events to the backend. Its client carries the webhook timeout.
pub(super) struct Webhook {
    http: reqwest::Client,
    url: Url,
    token: Option<SecretString>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    namespace: &'a str,
    instance_id: &'a str,
    phase: Phase,
}

impl Webhook {
    pub(super) fn new(http: reqwest::Client, url: Url, token: Option<SecretString>) -> Self {
        Self { http, url, token }
    }

    /// Carries the `traceparent` of the lifecycle message being forwarded.
    ///
    /// # Errors
    /// A short reason (status or transport failure) when the backend did not take it.
    pub(super) async fn send(&self, event: &LifecycleEvent) -> Result<(), String> {
        let body = Body {
            namespace: &event.namespace,
            instance_id: &event.instance_id,
            phase: event.phase,
        };
        let mut request = self.http.post(self.url.clone()).json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose_secret());
        }
        let response = message_trace::carry(request)
            .send()
            .await
            .map_err(transport_reason)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("webhook answered {}", status.as_u16()))
        }
    }
}
