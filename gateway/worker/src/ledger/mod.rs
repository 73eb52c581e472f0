//! The delivery ledger in Redis, shared by every worker (SPEC §5.1): who is working on
//! a message now (claims with a lease), what is finished (done marks), whether the
//! prompt reached the agent, which status messages were posted, and which
//! conversation is being prompted (conversation locks).
//!
//! Keys (all under the configured prefix, all expiring; the layout is [`keys`]):
//! - `claim:event:{<tag>}:<event_id>`, `claim:msg:{<tag>}`: the owner token of the
//!   worker processing the message; lease renewed while it works (for every delivery
//!   of the process at once, [`crate::leases`]), so a crashed worker's claim runs out
//!   by itself.
//! - `done:event:{<tag>}:<event_id>`, `done:msg:{<tag>}`: the message is finished
//!   (replied, answered with a failure, dropped); later copies are duplicates. TTL:
//!   `SPRITZ_SLACK_DEDUPE_TTL`.
//! - `wake:{<tag>}:<event_id>`: the lowest attempt number still current; copies below
//!   it were superseded by a lifecycle wake-up and are dropped.
//! - `prompt:<team:channel:ts>`: the prompt was delivered (the value: the Spritz
//!   conversation's name); it is never sent again.
//! - `status:<team:channel:ts>:<purpose>`: a status message was posted (its `ts`), or
//!   is being posted (`pending:<owner>`), so there is at most one per purpose.
//! - `conv:<team>:<external conversation id>`: one prompt at a time per conversation.
//!
//! `<tag>` is the message key `team:channel:ts` (the event id for events without
//! one): every script touches the keys of one message, all in one hash slot, so the
//! ledger works on Redis Cluster as well as on one server or behind Sentinel
//! ([`target`], [`link`]).

pub mod keys;
mod link;
mod scripts;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use redis::{RedisError, Value};
use tokio_util::sync::CancellationToken;

use self::keys::{LegacyKeys, MessageKeys};
use self::link::{LedgerConnection, RedisLink};
use self::scripts::{Scripts, evalsha};
pub use self::target::{RedisTarget, TargetError};
use crate::error::Result;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationLock {
    key: String,
}

/// The longest a ledger call waits for Redis's answer.
const MAX_RESPONSE_WAIT: Duration = Duration::from_secs(2);

/// Renewals sent in one pipeline: a tick renews every claim of the process in
/// pipelines of at most this many messages, so one huge request does not hold every
/// other ledger call behind it on the shared connection.
const RENEWALS_PER_PIPELINE: usize = 1000;

/// One delivery's holds, renewed together.
#[derive(Debug, Clone)]
pub struct Renewal {
    pub claim: Arc<Claim>,
    pub lock: Option<ConversationLock>,
}

/// What one renewal found: for the claim and for the lock (when one was sent),
/// `Some(true)` still held, `Some(false)` lost (no longer this claim's: its lease ran
/// out and another worker may hold it), `None` unknown (Redis answered that call with
/// an error; the next tick tries again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewed {
    pub claim: Option<bool>,
    pub lock: Option<bool>,
}

/// A handle on the ledger; cheap to clone. The Redis connection is made in the
/// background and re-made when it breaks ([`link`]); until it exists every call fails
/// with [`Error::RedisUnavailable`] (deliveries are then retried, never processed
/// without a claim).
#[derive(Clone)]
pub struct Ledger {
    link: Arc<RedisLink>,
    prefix: Arc<str>,
    ttl: Duration,
    scripts: Arc<Scripts>,
}

impl Ledger {
    /// Starts connecting to `target` in the background, on the ledger's own thread
    /// ([`link`]), retrying until `stop`.
    ///
    /// # Errors
    /// The ledger's thread could not be started.
    pub fn connect(
        target: RedisTarget,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
        stop: CancellationToken,
    ) -> Result<Self> {
        // A ledger call is a few microseconds of Redis work; waiting long on a stuck
        // Redis only holds the delivery up (and, for renewals, eats the lease).
        let link = RedisLink::start(target, timeout, timeout.min(MAX_RESPONSE_WAIT), stop)?;
        Ok(Self {
            link,
            prefix: Arc::from(prefix),
            ttl,
            scripts: Arc::new(Scripts::new()),
        })
    }

    /// Runs `task` on the ledger's own runtime, where the Redis connection's driver
    /// runs: work that must stay on time however busy the deliveries keep the main
    /// runtime (the lease renewals).
    pub fn spawn_background<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.link.spawn(task)
    }

    /// Connected at least once (the link reconnects by itself afterwards).
    pub fn is_connected(&self) -> bool {
        self.link.connected_once()
    }

    fn conn(&self) -> Result<LedgerConnection> {
        self.link.connection()
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Claims a message by event id and (for user messages) message key.
    ///
    /// The same round trip reads the untagged claim and done keys of the release
    /// before ([`LegacyKeys`]), so during a rolling upgrade a message an old worker
    /// holds stays busy and one it finished stays a duplicate.
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
        let keys = MessageKeys::new(&self.prefix, event_id, message_key);
        let legacy = LegacyKeys::new(&self.prefix, event_id, message_key);
        let done_msg = keys.done_msg.as_deref().unwrap_or(&keys.done_event);
        let claim_msg = keys.claim_msg.as_deref().unwrap_or(&keys.claim_event);
        let lease_ms = millis(lease).to_string();
        let attempt_arg = attempt.to_string();
        let claim_cmd = evalsha(
            &self.scripts.claim,
            &[
                &keys.done_event,
                done_msg,
                &keys.claim_event,
                claim_msg,
                &keys.wake,
            ],
            &[
                owner.as_bytes(),
                lease_ms.as_bytes(),
                attempt_arg.as_bytes(),
            ],
        );
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in &legacy.done {
            pipe.exists(key);
        }
        for key in &legacy.claims {
            pipe.exists(key);
        }
        pipe.add_command(claim_cmd);
        let mut conn = self.conn()?;
        let mut answers: Vec<Value> = pipe.query_async(&mut conn).await?;
        if answers.iter().any(is_noscript_value) {
            self.scripts.claim.load_async(&mut conn).await?;
            answers = pipe.query_async(&mut conn).await?;
        }
        let claim_answer = answers.pop().unwrap_or(Value::Nil);
        let legacy_answers = answers;
        let answer: String = match claim_answer {
            Value::ServerError(error) => {
                let error = RedisError::from(error);
                conn.report(&error);
                return Err(error.into());
            }
            other => redis::from_redis_value(other).map_err(RedisError::from)?,
        };
        let legacy_done = legacy_answers[..legacy.done.len()]
            .iter()
            .any(|v| matches!(v, Value::Int(1)));
        let legacy_busy = legacy_answers[legacy.done.len()..]
            .iter()
            .any(|v| matches!(v, Value::Int(1)));
        let claim = Claim {
            owner,
            keys: std::iter::once(keys.claim_event)
                .chain(keys.claim_msg)
                .collect(),
            done_keys: std::iter::once(keys.done_event)
                .chain(keys.done_msg)
                .collect(),
        };
        if answer == "claimed" && (legacy_done || legacy_busy) {
            self.release(&claim).await?;
        }
        Ok(match answer.as_str() {
            "duplicate" => ClaimResult::Duplicate,
            "superseded" => ClaimResult::Superseded,
            "busy" => ClaimResult::Busy,
            _ if legacy_done => ClaimResult::Duplicate,
            _ if legacy_busy => ClaimResult::Busy,
            _ => ClaimResult::Claimed(claim),
        })
    }

    /// Extends every claim in `renewals` (and each one's conversation lock) by
    /// `lease`, in pipelines of per-message `EVALSHA`s: one round trip per
    /// [`RENEWALS_PER_PIPELINE`] deliveries instead of one per delivery. A script
    /// only ever touches one message's keys (or one lock key), so the calls stay
    /// valid on Redis Cluster, where a pipeline is split by node.
    ///
    /// One [`Renewed`] per renewal, in order.
    ///
    /// # Errors
    /// Redis is unreachable or did not answer in time.
    pub async fn renew_all(&self, renewals: &[Renewal], lease: Duration) -> Result<Vec<Renewed>> {
        let mut conn = self.conn()?;
        let lease_ms = millis(lease).to_string();
        let mut held = Vec::with_capacity(renewals.len());
        for chunk in renewals.chunks(RENEWALS_PER_PIPELINE) {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for renewal in chunk {
                let claim = &renewal.claim;
                let keys: Vec<&str> = claim.keys.iter().map(String::as_str).collect();
                let args: [&[u8]; 2] = [claim.owner.as_bytes(), lease_ms.as_bytes()];
                pipe.add_command(evalsha(&self.scripts.renew, &keys, &args));
                if let Some(lock) = &renewal.lock {
                    pipe.add_command(evalsha(&self.scripts.renew, &[&lock.key], &args));
                }
            }
            let mut answers: Vec<Value> = pipe.query_async(&mut conn).await?;
            if answers.iter().any(is_noscript_value) {
                self.scripts.renew.load_async(&mut conn).await?;
                answers = pipe.query_async(&mut conn).await?;
            }
            let mut answers = answers.into_iter();
            let read = |answer: Option<Value>, expected: usize| match answer
                .map(|a| renewed(&a, expected))
            {
                Some(Ok(held)) => Some(held),
                Some(Err(error)) => {
                    conn.report(&error);
                    None
                }
                None => None,
            };
            for renewal in chunk {
                let claim = read(answers.next(), renewal.claim.keys.len());
                let lock = match &renewal.lock {
                    Some(_) => read(answers.next(), 1),
                    None => None,
                };
                held.push(Renewed { claim, lock });
            }
        }
        Ok(held)
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
            .arg(keys::prompt(&self.prefix, message_key))
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
            .arg(keys::prompt(&self.prefix, message_key))
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
            .arg(keys::status(&self.prefix, message_key, purpose.as_str()))
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
            .key(keys::status(&self.prefix, message_key, purpose.as_str()))
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
            .key(keys::status(&self.prefix, message_key, purpose.as_str()))
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
            .arg(keys::status(&self.prefix, message_key, purpose.as_str()))
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
        let key = keys::conversation(&self.prefix, team_id, conversation);
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
    pub async fn supersede(
        &self,
        event_id: &str,
        message_key: Option<&str>,
        attempt: u32,
    ) -> Result<bool> {
        let mut conn = self.conn()?;
        let raised: i64 = self
            .scripts
            .wake
            .key(keys::wake(&self.prefix, event_id, message_key))
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

/// How many of `expected` keys a `RENEW` answer says were extended, as held or lost.
fn renewed(answer: &Value, expected: usize) -> Result<bool, RedisError> {
    match answer {
        Value::Int(n) => Ok(usize::try_from(*n).is_ok_and(|n| n == expected)),
        Value::ServerError(error) => Err(error.clone().into()),
        _ => Err(RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "unexpected answer to a lease renewal",
        ))),
    }
}

fn is_noscript_value(answer: &Value) -> bool {
    matches!(answer, Value::ServerError(error) if error.kind() == Some(redis::ServerErrorKind::NoScript))
}
