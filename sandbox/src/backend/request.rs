//! What the backend's internal routes require of a request body, checked before any
//! state is touched: every route names a channel installation by its routing identity
//! (`principalId`, `provider:"slack"`, `externalScopeType:"workspace"`,
//! `externalTenantId`, SPEC §2), and an installation upsert also carries the preset,
//! the installing owner and the Slack credentials the Go gateway sends
//! (textcortex/spritz `integrations/slack-gateway/slack_oauth.go`, `upsertInstallation`).
//! A missing or malformed field is a 400 whose reason names it.

use serde_json::Value;

/// The Slack workspace a request is about, once its routing identity is complete.
///
/// # Errors
/// The reason for the 400 answer.
pub(super) fn routing_identity(body: &Value) -> Result<String, &'static str> {
    if !body.is_object() {
        return Err("the request body must be a JSON object");
    }
    if text(body, "principalId").is_empty() {
        return Err("principalId is required");
    }
    if text(body, "provider") != "slack" {
        return Err("provider is invalid");
    }
    if text(body, "externalScopeType") != "workspace" {
        return Err("externalScopeType is invalid");
    }
    match text(body, "externalTenantId") {
        "" => Err("externalTenantId is required"),
        team_id => Ok(team_id.to_owned()),
    }
}

/// The checks of an installation upsert beyond its routing identity: a preset, an
/// external owner in the same workspace, and Slack credentials for that workspace.
///
/// # Errors
/// The reason for the 400 answer.
pub(super) fn installation(body: &Value, team_id: &str) -> Result<(), &'static str> {
    if text(body, "presetId").is_empty() {
        return Err("presetId is required");
    }
    let owner = &body["ownerRef"];
    if text(owner, "type") != "external"
        || text(owner, "provider") != "slack"
        || text(owner, "subject").is_empty()
        || text(owner, "tenant") != team_id
    {
        return Err("ownerRef must be an external slack owner of the same workspace");
    }
    let auth = &body["providerAuth"];
    if !auth.is_object() {
        return Err("providerAuth is required");
    }
    if text(auth, "teamId") != team_id {
        return Err("providerAuth.teamId must match externalTenantId");
    }
    for (field, reason) in [
        ("apiAppId", "providerAuth.apiAppId is required"),
        ("botUserId", "providerAuth.botUserId is required"),
        ("botAccessToken", "providerAuth.botAccessToken is required"),
    ] {
        if text(auth, field).is_empty() {
            return Err(reason);
        }
    }
    Ok(())
}

/// The lifecycle webhook's body: `{namespace, instanceId, phase}` (SPEC §2).
///
/// # Errors
/// The reason for the 400 answer.
pub(super) fn lifecycle(body: &Value) -> Result<(), &'static str> {
    for (field, reason) in [
        ("namespace", "namespace is required"),
        ("instanceId", "instanceId is required"),
        ("phase", "phase is required"),
    ] {
        if text(body, field).is_empty() {
            return Err(reason);
        }
    }
    Ok(())
}

/// A string field, trimmed; empty when absent or not a string.
fn text<'a>(body: &'a Value, name: &str) -> &'a str {
    body.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
}
