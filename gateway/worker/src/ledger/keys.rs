//! The ledger's key layout, in one place.
//!
//! Every Lua script touches the keys of one message only, and every such key carries
//! that message's hash tag `{<tag>}` — the message key `team:channel:ts`, or the event
//! id for events that have none (`app_uninstalled`, `tokens_revoked`) — so they all
//! hash to one Redis Cluster slot and a script never crosses slots. A copy of an event
//! always has the same tag (same event id, same message), so the event-id dedupe
//! still finds every copy.
//!
//! Keys used by single commands only (`prompt:`, `status:`, `conv:`) keep the names of
//! earlier releases: their records stay valid across an upgrade, and a single-key
//! command is in one slot by definition.
//!
//! A prefix that itself holds a hash tag (`{spritz}:`) puts every key in one slot,
//! which is also Cluster compatible.

/// The keys of one message that the claim, release, renew and finish scripts touch.
#[derive(Debug, Clone)]
pub struct MessageKeys {
    pub done_event: String,
    pub claim_event: String,
    /// `None` for events without a message key.
    pub done_msg: Option<String>,
    pub claim_msg: Option<String>,
    pub wake: String,
}

/// The hash tag of a message: its message key, else its event id.
pub fn tag<'a>(event_id: &'a str, message_key: Option<&'a str>) -> &'a str {
    message_key.unwrap_or(event_id)
}

impl MessageKeys {
    pub fn new(prefix: &str, event_id: &str, message_key: Option<&str>) -> Self {
        let tag = tag(event_id, message_key);
        Self {
            done_event: format!("{prefix}done:event:{{{tag}}}:{event_id}"),
            claim_event: format!("{prefix}claim:event:{{{tag}}}:{event_id}"),
            done_msg: message_key.map(|_| format!("{prefix}done:msg:{{{tag}}}")),
            claim_msg: message_key.map(|_| format!("{prefix}claim:msg:{{{tag}}}")),
            wake: wake(prefix, event_id, message_key),
        }
    }
}

/// The wake generation of an event (`wake:{<tag>}:<event id>`).
pub fn wake(prefix: &str, event_id: &str, message_key: Option<&str>) -> String {
    let tag = tag(event_id, message_key);
    format!("{prefix}wake:{{{tag}}}:{event_id}")
}

/// `prompt:<team:channel:ts>`: the prompt was delivered.
pub fn prompt(prefix: &str, message_key: &str) -> String {
    format!("{prefix}prompt:{message_key}")
}

/// `status:<team:channel:ts>:<purpose>`: one status message per purpose.
pub fn status(prefix: &str, message_key: &str, purpose: &str) -> String {
    format!("{prefix}status:{message_key}:{purpose}")
}

/// `conv:<team>:<external conversation id>`: one prompt at a time per conversation.
pub fn conversation(prefix: &str, team_id: &str, conversation: &str) -> String {
    format!("{prefix}conv:{team_id}:{conversation}")
}

/// The untagged claim and done keys of the release before hash tags, read (never
/// written) while a rolling upgrade may still have workers of that release running:
/// their claims keep a message busy and their done marks keep it a duplicate, for up
/// to `SPRITZ_SLACK_DEDUPE_TTL` after the last old worker stopped.
#[derive(Debug, Clone)]
pub struct LegacyKeys {
    pub done: Vec<String>,
    pub claims: Vec<String>,
}

impl LegacyKeys {
    pub fn new(prefix: &str, event_id: &str, message_key: Option<&str>) -> Self {
        let mut done = vec![format!("{prefix}done:event:{event_id}")];
        let mut claims = vec![format!("{prefix}claim:event:{event_id}")];
        if let Some(key) = message_key {
            done.push(format!("{prefix}done:msg:{key}"));
            claims.push(format!("{prefix}claim:msg:{key}"));
        }
        Self { done, claims }
    }
}

/// The hash slot Redis Cluster gives `key` (CRC16/XMODEM of the hash tag, mod 16384),
/// for tests that check the layout.
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16_xmodem(hashed) % 16384
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_function_matches_redis_cluster() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_ne!(slot("{}x"), slot("{}y"));
    }

    #[test]
    fn every_scripted_key_of_a_message_is_in_one_slot() {
        for prefix in ["spritz:", "spritz-test:abc:"] {
            let keys = MessageKeys::new(prefix, "Ev1", Some("T1:C1:1700000000.000100"));
            let all = [
                keys.done_event.as_str(),
                keys.claim_event.as_str(),
                keys.done_msg.as_deref().expect("msg"),
                keys.claim_msg.as_deref().expect("msg"),
                keys.wake.as_str(),
            ];
            let first = slot(all[0]);
            assert!(all.iter().all(|k| slot(k) == first), "{all:?}");
            let event_only = MessageKeys::new(prefix, "Ev2", None);
            assert_eq!(slot(&event_only.claim_event), slot(&event_only.done_event));
            assert_eq!(slot(&event_only.claim_event), slot(&event_only.wake));
        }
    }
}
