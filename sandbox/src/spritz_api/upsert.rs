//! How the Spritz API reads a channel conversation upsert body
//! (textcortex/spritz `api/channel_conversation_service.go`,
//! `normalizeChannelConversationUpsertRequest`, decoded by `decodeACPBody` in
//! `api/acp_conversations.go`): unknown fields are refused, values are trimmed,
//! provider and scope type must be tokens, the other fields are required in the real
//! order with the real messages, and the namespace defaults to `default`.

use serde::Deserialize;

use super::state::{Identity, UpsertRequest};

/// The body as `decodeACPBody` decodes it (`DisallowUnknownFields`); an empty body
/// decodes to all fields empty.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Body {
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    conversation_id: String,
    #[serde(default)]
    principal_id: String,
    #[serde(default)]
    instance_id: String,
    #[serde(default)]
    owner_id: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    external_scope_type: String,
    #[serde(default)]
    external_tenant_id: String,
    #[serde(default)]
    external_channel_id: String,
    #[serde(default)]
    external_conversation_id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    cwd: String,
}

/// Decodes and checks an upsert body.
///
/// # Errors
/// The message of the 400 answer, as the real API writes it.
pub(super) fn parse(bytes: &[u8]) -> Result<UpsertRequest, String> {
    let body: Body = if bytes.is_empty() {
        Body::default()
    } else {
        serde_json::from_slice(bytes).map_err(|error| json_message(&error))?
    };
    let provider = body.provider.trim().to_ascii_lowercase();
    if !is_token(&provider) {
        return Err("provider is invalid".to_owned());
    }
    let external_scope_type = body.external_scope_type.trim().to_ascii_lowercase();
    if !is_token(&external_scope_type) {
        return Err("externalScopeType is invalid".to_owned());
    }
    let required = |value: &str, message: &str| match value.trim() {
        "" => Err(message.to_owned()),
        value => Ok(value.to_owned()),
    };
    let external_tenant_id = required(&body.external_tenant_id, "externalTenantId is required")?;
    let instance_id = required(
        &sanitize_name_token(&body.instance_id),
        "instanceId is required",
    )?;
    let owner_id = required(&body.owner_id, "ownerId is required")?;
    let principal_id = required(&body.principal_id, "principalId is required")?;
    let external_channel_id = required(&body.external_channel_id, "externalChannelId is required")?;
    let external_conversation_id = required(
        &body.external_conversation_id,
        "externalConversationId is required",
    )?;
    let _ = (body.request_id, body.title, body.cwd);
    Ok(UpsertRequest {
        namespace: match body.namespace.trim() {
            "" => "default".to_owned(),
            namespace => namespace.to_owned(),
        },
        instance_id,
        conversation_id: body.conversation_id.trim().to_owned(),
        identity: Identity {
            principal_id,
            provider,
            external_scope_type,
            external_tenant_id,
            external_channel_id,
            owner_id,
        },
        external_conversation_id,
    })
}

/// `^[a-z0-9][a-z0-9_-]*$`, what provider and scope type must look like
/// (`externalOwnerProviderTokenPattern`, `channelRouteScopeTypeTokenPattern`).
fn is_token(value: &str) -> bool {
    let mut bytes = value.bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.next().is_some_and(alnum) && bytes.all(|b| alnum(b) || b == b'_' || b == b'-')
}

/// `sanitizeSpritzNameToken` (`api/random_name.go`): lower case, runs of anything but
/// `a-z0-9` become one `-`, no dash at either end.
fn sanitize_name_token(value: &str) -> String {
    let mut out = String::new();
    for c in value.trim().to_ascii_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// A decode error in the words of Go's `encoding/json`, which the real API returns.
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.split_once("unknown field `") {
        Some((_, rest)) => {
            let field = rest.split('`').next().unwrap_or_default();
            format!("json: unknown field \"{field}\"")
        }
        None => format!("invalid request body: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_in_go_words() {
        let refused = parse(br#"{"lookupExternalConversationIds":[]}"#).expect_err("unknown");
        assert_eq!(
            refused,
            "json: unknown field \"lookupExternalConversationIds\""
        );
    }

    #[test]
    fn instance_ids_are_sanitised_and_the_namespace_defaults() {
        let body = serde_json::json!({
            "principalId": "p", "instanceId": " Concierge_One ", "ownerId": "o",
            "provider": "Slack", "externalScopeType": "workspace", "externalTenantId": "T1",
            "externalChannelId": "C1", "externalConversationId": "1.1",
        });
        let request = parse(body.to_string().as_bytes()).expect("valid");
        assert_eq!(request.instance_id, "concierge-one");
        assert_eq!(request.identity.provider, "slack");
        assert_eq!(request.namespace, "default");
    }
}
