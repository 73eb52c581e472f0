//! `app_uninstalled` / `tokens_revoked` (SPEC §5): disconnect the installation at the
//! backend, retried like any delivery, and forget the team's session and bot token.

use spritz_proto::SlackEvent;

use super::{Pipeline, retry};
use crate::clients::backend::BackendError;
use crate::outcome::{Outcome, RetryStage};

impl Pipeline {
    pub(super) async fn uninstall(&self, event: &SlackEvent) -> Outcome {
        let team_id = &event.team_id;
        // Whatever the backend says, this team's session must not be used again.
        self.sessions.forget_team(team_id).await;
        let result = self
            .clients
            .backend
            .disconnect(
                team_id,
                event.api_app_id.as_deref(),
                event.enterprise_id.as_deref(),
            )
            .await;
        match result {
            Ok(()) => {
                tracing::info!("installation disconnected");
                Outcome::Disconnected
            }
            Err(error @ BackendError::Transient(_)) => {
                tracing::warn!(error = %error, "disconnect failed; retrying later");
                retry(
                    event,
                    RetryStage::Disconnect,
                    self.timing.session_retry_interval,
                    |_| {},
                )
            }
            Err(error) => {
                // Already gone (or refused for good): nothing left to retry.
                tracing::warn!(error = %error, "backend refused the disconnect; treating as disconnected");
                Outcome::Disconnected
            }
        }
    }
}
