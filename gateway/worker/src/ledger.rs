//! The delivery ledger in Redis, shared by every worker (SPEC §5.1): who is working on
//! a message now (claims with a lease), what is finished (done marks), whether the
//! prompt reached the agent, which status messages were posted, and which
//! conversation is being prompted (conversation locks).
//!
//! Keys (all under the configured prefix, all expiring):
//! - `claim:event:<event_id>`, `claim:msg:<team:channel:ts>`: the owner token of the
//!   worker processing the message; lease renewed while it works, so a crashed
//!   worker's claim runs out by itself.
//! - `done:event:<event_id>`, `done:msg:<team:channel:ts>`: the message is finished
//!   (replied, answered with a failure, dropped); later copies are duplicates. TTL:
//!   `SPRITZ_SLACK_DEDUPE_TTL`.
//! - `prompt:<team:channel:ts>`: the prompt was delivered (the value: the Spritz
//!   conversation's name); it is never sent again.
//! - `status:<team:channel:ts>:<purpose>`: a status message was posted (its `ts`), or
//!   is being posted (`pending:<owner>`), so there is at most one per purpose.
//! - `wake:<event_id>`: the lowest attempt number still current; copies below it were
//!   superseded by a lifecycle wake-up and are dropped.
//! - `conv:<team>:<external conversation id>`: one prompt at a time per conversation.
//!
//! Every check-and-set is one Lua script, so concurrent workers cannot interleave.
//! Multi-key scripts assume a single Redis (not Redis Cluster).

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use spritz_service::Trust;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Purposes of the messages the worker posts besides the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusPurpose {
    /// "Still waking up. I will continue here shortly."
    RuntimeRecovery,
    /// "I could not recover the channel runtime. Please try again."
    TerminalFailure,
    /// "I hit an internal error while processing that request."
    InternalError,
}

impl StatusPurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            StatusPurpose::RuntimeRecovery => "runtime-recovery",
            StatusPurpose::TerminalFailure => "terminal-failure",
            StatusPurpose::InternalError => "internal-error",
        }
    }
}

/// What a claim attempt found.
#[derive(Debug)]
pub enum ClaimResult {
    Claimed(Claim),
    /// The message (by key or event id) is already finished.
    Duplicate,
    /// A newer copy of this message exists (a wake-up re-published it).
    Superseded,
    /// Another worker holds the claim right now.
    Busy,
}

/// This worker's hold on one message. Released or finished explicitly; if the worker
/// dies, the lease runs out.
#[derive(Debug, Clone)]
pub struct Claim {
    owner: String,
    keys: Vec<String>,
    done_keys: Vec<String>,
}

impl Claim {
    /// The token that identifies this hold (also used for conversation locks).
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

/// A prompt that reached the agent, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The Spritz conversation it was sent in (absent in records of older workers).
    pub conversation: Option<String>,
}

/// A held conversation lock.
#[derive(Debug, Clone)]
pub struct ConversationLock {
    key: String,
}

const CLAIM: &str = r"
for i = 1, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 'duplicate' end
end
local gen = tonumber(redis.call('GET', KEYS[5]) or '0')
if tonumber(ARGV[3]) < gen then return 'superseded' end
for i = 3, 4 do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= ARGV[1] then return 'busy' end
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
return 'claimed'
";

/// KEYS: the keys to delete when held by ARGV[1].
const RELEASE: &str = r"
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then n = n + redis.call('DEL', KEYS[i]) end
end
return n
";

/// KEYS: keys to extend to ARGV[2] ms when held by ARGV[1]. Returns how many were.
const RENEW: &str = r"
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then n = n + redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
end
return n
";

/// KEYS[1..n] done marks, then claim keys; ARGV: owner, ttl ms, number of done marks.
const FINISH: &str = r"
local marks = tonumber(ARGV[3])
for i = 1, marks do redis.call('SET', KEYS[i], '1', 'PX', ARGV[2]) end
for i = marks + 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 1
";

/// Raise the wake generation to ARGV[1] unless it is already there.
const WAKE: &str = r"
local gen = tonumber(redis.call('GET', KEYS[1]) or '0')
if gen >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Confirm a status record we reserved: ARGV owner-pending value, ts, ttl.
const CONFIRM_STATUS: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// The longest a ledger call waits for Redis's answer.
const MAX_RESPONSE_WAIT: Duration = Duration::from_secs(2);

struct Scripts {
    claim: Script,
    release: Script,
    renew: Script,
    finish: Script,
    wake: Script,
    confirm_status: Script,
}

/// A handle on the ledger; cheap to clone. The Redis connection is made in the
/// background and re-made by [`ConnectionManager`] when it drops; until it exists
/// every call fails with [`Error::RedisUnavailable`] (deliveries are then retried,
/// never processed without a claim).
#[derive(Clone)]
pub struct Ledger {
    connection: Arc<OnceCell<ConnectionManager>>,
    prefix: Arc<str>,
    ttl: Duration,
    scripts: Arc<Scripts>,
}

impl Ledger {
    /// Starts connecting to `redis_url` in the background (retrying until `stop`); a
    /// `rediss://` server is verified against `trust`.
    ///
    /// # Errors
    /// The URL is not a Redis URL.
    pub fn connect(
        redis_url: &str,
        trust: &Trust,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
        stop: CancellationToken,
    ) -> Result<Self> {
        let client = redis_client(redis_url, trust)?;
        let ledger = Self {
            connection: Arc::new(OnceCell::new()),
            prefix: Arc::from(prefix),
            ttl,
            scripts: Arc::new(Scripts {
                claim: Script::new(CLAIM),
                release: Script::new(RELEASE),
                renew: Script::new(RENEW),
                finish: Script::new(FINISH),
                wake: Script::new(WAKE),
                confirm_status: Script::new(CONFIRM_STATUS),
            }),
        };
        let cell = ledger.connection.clone();
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                // A ledger call is a few microseconds of Redis work; waiting long on a
                // stuck Redis only holds the delivery up.
                .set_response_timeout(Some(timeout.min(MAX_RESPONSE_WAIT)))
                .set_max_delay(Duration::from_secs(2));
            let mut delay = Duration::from_millis(100);
            loop {
                let attempt = tokio::select! {
                    attempt = ConnectionManager::new_with_config(client.clone(), config.clone()) => attempt,
                    () = stop.cancelled() => return,
                };
                match attempt {
                    Ok(manager) => {
                        let _ = cell.set(manager);
                        tracing::info!("redis connected");
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "redis connection failed"),
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
        Ok(ledger)
    }

    /// Connected at least once (the manager reconnects by itself afterwards).
    pub fn is_connected(&self) -> bool {
        self.connection.initialized()
    }

    fn conn(&self) -> Result<ConnectionManager> {
        self.connection
            .get()
            .cloned()
            .ok_or(Error::RedisUnavailable)
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = String::with_capacity(64);
        key.push_str(&self.prefix);
        key.push_str(&parts.join(":"));
        key
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Claims a message by event id and (for user messages) message key.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn claim(
        &self,
        event_id: &str,
        message_key: Option<&str>,
        attempt: u32,
        lease: Duration,
    ) -> Result<ClaimResult> {
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let done_event = self.key(&["done", "event", event_id]);
        let claim_event = self.key(&["claim", "event", event_id]);
        let (done_msg, claim_msg) = match message_key {
            Some(key) => (
                self.key(&["done", "msg", key]),
                self.key(&["claim", "msg", key]),
            ),
            None => (done_event.clone(), claim_event.clone()),
        };
        let wake = self.key(&["wake", event_id]);
        let mut conn = self.conn()?;
        let answer: String = self
            .scripts
            .claim
            .key(&done_event)
            .key(&done_msg)
            .key(&claim_event)
            .key(&claim_msg)
            .key(&wake)
            .arg(&owner)
            .arg(millis(lease))
            .arg(attempt)
            .invoke_async(&mut conn)
            .await?;
        Ok(match answer.as_str() {
            "duplicate" => ClaimResult::Duplicate,
            "superseded" => ClaimResult::Superseded,
            "busy" => ClaimResult::Busy,
            _ => {
                let mut keys = vec![claim_event];
                let mut done_keys = vec![done_event];
                if message_key.is_some() {
                    keys.push(claim_msg);
                    done_keys.push(done_msg);
                }
                ClaimResult::Claimed(Claim {
                    owner,
                    keys,
                    done_keys,
                })
            }
        })
    }

    /// Extends the claim (and a conversation lock, when held) by `lease`; `false` when
    /// any of them is no longer this claim's (the lease ran out and another worker may
    /// hold the message now).
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn renew(
        &self,
        claim: &Claim,
        lock: Option<&ConversationLock>,
        lease: Duration,
    ) -> Result<bool> {
        let mut conn = self.conn()?;
        let mut invocation = self.scripts.renew.prepare_invoke();
        let mut keys = 0;
        for key in claim.keys.iter().chain(lock.map(|l| &l.key)) {
            invocation.key(key);
            keys += 1;
        }
        invocation.arg(&claim.owner).arg(millis(lease));
        let renewed: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(renewed == keys)
    }

    /// Lets go of a message that is not finished (it was re-queued or parked).
    ///
    /// # Errors
    /// Redis is unreachable (the lease then runs out by itself).
    pub async fn release(&self, claim: &Claim) -> Result<()> {
        let mut conn = self.conn()?;
        let mut invocation = self.scripts.release.prepare_invoke();
        for key in &claim.keys {
            invocation.key(key);
        }
        invocation.arg(&claim.owner);
        let _: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(())
    }

    /// Marks a message finished: every later copy is a duplicate.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn finish(&self, claim: &Claim) -> Result<()> {
        let mut conn = self.conn()?;
        let mut invocation = self.scripts.finish.prepare_invoke();
        for key in claim.done_keys.iter().chain(&claim.keys) {
            invocation.key(key);
        }
        invocation
            .arg(&claim.owner)
            .arg(self.ttl_ms())
            .arg(claim.done_keys.len());
        let _: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(())
    }

    /// Whether the prompt of this message reached the agent.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn prompt_delivered(&self, message_key: &str) -> Result<Option<Delivered>> {
        let mut conn = self.conn()?;
        let record: Option<String> = redis::cmd("GET")
            .arg(self.key(&["prompt", message_key]))
            .query_async(&mut conn)
            .await?;
        Ok(record.map(|conversation| Delivered {
            conversation: Some(conversation).filter(|c| !c.is_empty()),
        }))
    }

    /// Records that the prompt reached the agent in `conversation` (the Spritz
    /// conversation's name), so an attempt after a crash can still alias its answer.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn record_prompt_delivered(
        &self,
        message_key: &str,
        conversation: &str,
    ) -> Result<()> {
        let mut conn = self.conn()?;
        let _: () = redis::cmd("SET")
            .arg(self.key(&["prompt", message_key]))
            .arg(conversation)
            .arg("PX")
            .arg(self.ttl_ms())
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Reserves the one status message of this purpose; `false` when one was posted
    /// or is being posted.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn reserve_status(
        &self,
        message_key: &str,
        purpose: StatusPurpose,
        owner: &str,
    ) -> Result<bool> {
        let mut conn = self.conn()?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&["status", message_key, purpose.as_str()]))
            .arg(format!("pending:{owner}"))
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms())
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// Records the posted status message's `ts` on a reservation.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn confirm_status(
        &self,
        message_key: &str,
        purpose: StatusPurpose,
        owner: &str,
        ts: &str,
    ) -> Result<()> {
        let mut conn = self.conn()?;
        let _: i64 = self
            .scripts
            .confirm_status
            .key(self.key(&["status", message_key, purpose.as_str()]))
            .arg(format!("pending:{owner}"))
            .arg(ts)
            .arg(self.ttl_ms())
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Gives a reservation back after the post failed, so a later attempt may post.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn release_status(
        &self,
        message_key: &str,
        purpose: StatusPurpose,
        owner: &str,
    ) -> Result<()> {
        let mut conn = self.conn()?;
        let _: i64 = self
            .scripts
            .release
            .key(self.key(&["status", message_key, purpose.as_str()]))
            .arg(format!("pending:{owner}"))
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Whether a status message of this purpose was posted (or is being posted).
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn status_exists(&self, message_key: &str, purpose: StatusPurpose) -> Result<bool> {
        let mut conn = self.conn()?;
        let exists: bool = redis::cmd("EXISTS")
            .arg(self.key(&["status", message_key, purpose.as_str()]))
            .query_async(&mut conn)
            .await?;
        Ok(exists)
    }

    /// Takes the conversation lock; `None` when another delivery is prompting it.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn lock_conversation(
        &self,
        team_id: &str,
        conversation: &str,
        claim: &Claim,
        lease: Duration,
    ) -> Result<Option<ConversationLock>> {
        let key = self.key(&["conv", team_id, conversation]);
        let mut conn = self.conn()?;
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&claim.owner)
            .arg("NX")
            .arg("PX")
            .arg(millis(lease))
            .query_async(&mut conn)
            .await?;
        Ok(set.map(|_| ConversationLock { key }))
    }

    /// Releases a conversation lock this claim holds.
    ///
    /// # Errors
    /// Redis is unreachable (the lease then runs out by itself).
    pub async fn unlock_conversation(&self, lock: &ConversationLock, claim: &Claim) -> Result<()> {
        let mut conn = self.conn()?;
        let _: i64 = self
            .scripts
            .release
            .key(&lock.key)
            .arg(&claim.owner)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Supersedes every copy of `event_id` below `attempt`; `false` when a newer copy
    /// already superseded it (someone else woke it).
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn supersede(&self, event_id: &str, attempt: u32) -> Result<bool> {
        let mut conn = self.conn()?;
        let raised: i64 = self
            .scripts
            .wake
            .key(self.key(&["wake", event_id]))
            .arg(attempt)
            .arg(self.ttl_ms())
            .invoke_async(&mut conn)
            .await?;
        Ok(raised == 1)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A client for `redis_url`. With an extra CA bundle configured, a `rediss://` client
/// is given every trusted root (the Redis client replaces its platform roots with the
/// ones it is handed); otherwise it loads the platform's roots itself.
fn redis_client(redis_url: &str, trust: &Trust) -> redis::RedisResult<redis::Client> {
    match trust.all_roots_pem() {
        Some(roots) if redis_url.starts_with("rediss://") => redis::Client::build_with_tls(
            redis_url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(roots.to_vec()),
            },
        ),
        _ => redis::Client::open(redis_url),
    }
}
