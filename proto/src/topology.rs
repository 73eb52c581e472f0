//! The queue topology of SPEC §4: names, and one function that declares all of it.
//!
//! Every process declares the whole topology at start and after every reconnect;
//! declarations are idempotent as long as the arguments do not change. Delay queues are
//! named by their delay (`spritz.slack.retry.1s`), so a changed interval declares a new
//! queue instead of failing on an existing one with another TTL. Changing the delivery
//! limit of an existing work queue needs a policy, not a redeclaration (RabbitMQ refuses
//! a declaration whose arguments differ).

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// Direct exchange and quorum work queue for Slack events.
pub const WORK_EXCHANGE: &str = "spritz.slack.events";
pub const WORK_QUEUE: &str = "spritz.slack.events";
/// Binding key between the work exchange and the work queue.
pub const WORK_ROUTING_KEY: &str = "spritz.slack.events";
/// Direct exchange of the work delay tiers; the routing key is the tier label (`1s`).
pub const RETRY_EXCHANGE: &str = "spritz.slack.retry";
/// Fanout exchange every queue dead-letters to, and the parking lot behind it.
pub const DEAD_LETTER_EXCHANGE: &str = "spritz.slack.dlx";
pub const PARKING_LOT_QUEUE: &str = "spritz.slack.dead";
/// Topic exchange of lifecycle events, routing key `lifecycle.<phase>`.
pub const LIFECYCLE_EXCHANGE: &str = "spritz.lifecycle";
/// Binding pattern for every lifecycle event.
pub const LIFECYCLE_ALL: &str = "lifecycle.#";
/// Quorum queue of the one consumer group that forwards lifecycle events to the backend.
pub const BACKEND_SYNC_QUEUE: &str = "spritz.lifecycle.backend-sync";
/// Direct exchange of the backend-sync delay tiers.
pub const BACKEND_SYNC_RETRY_EXCHANGE: &str = "spritz.lifecycle.retry";

/// Redeliveries (consumer crash, nack) before the broker parks a message by itself.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 20;

/// Delay tiers every process declares. The worker adds its configured session retry
/// interval; a wait of another length takes the nearest tier at or above it.
pub const DEFAULT_RETRY_TIERS: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

/// A set of delay tiers, sorted and without duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryTiers(Vec<Duration>);

impl RetryTiers {
    /// # Panics
    /// Never: an empty list falls back to [`DEFAULT_RETRY_TIERS`].
    pub fn new(tiers: impl IntoIterator<Item = Duration>) -> Self {
        let mut tiers: Vec<Duration> = tiers.into_iter().filter(|d| !d.is_zero()).collect();
        if tiers.is_empty() {
            tiers.extend(DEFAULT_RETRY_TIERS);
        }
        tiers.sort();
        tiers.dedup();
        Self(tiers)
    }

    /// The default tiers plus `extra` (e.g. the configured session retry interval).
    pub fn with_defaults_and(extra: impl IntoIterator<Item = Duration>) -> Self {
        Self::new(DEFAULT_RETRY_TIERS.into_iter().chain(extra))
    }

    pub fn as_slice(&self) -> &[Duration] {
        &self.0
    }

    /// The nearest tier at or above `wait`; the longest tier for longer waits (the
    /// message then waits again when it comes back).
    pub fn at_or_above(&self, wait: Duration) -> Duration {
        self.0
            .iter()
            .copied()
            .find(|tier| *tier >= wait)
            .unwrap_or_else(|| self.0[self.0.len() - 1])
    }
}

impl Default for RetryTiers {
    fn default() -> Self {
        Self::new(DEFAULT_RETRY_TIERS)
    }
}

/// `1s`, `250ms`, `1m`: the label a delay queue is named and routed by.
pub fn tier_label(delay: Duration) -> String {
    let millis = delay.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let secs = delay.as_secs();
    if secs != 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs != 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// The work delay queue for `delay` (`spritz.slack.retry.1s`).
pub fn work_retry_queue(delay: Duration) -> String {
    format!("{RETRY_EXCHANGE}.{}", tier_label(delay))
}

/// The backend-sync delay queue for `delay`.
pub fn backend_sync_retry_queue(delay: Duration) -> String {
    format!("{BACKEND_SYNC_QUEUE}.retry.{}", tier_label(delay))
}

/// What may vary between deployments.
#[derive(Clone, Debug)]
pub struct TopologyOptions {
    pub delivery_limit: u32,
    pub work_retry_tiers: RetryTiers,
    pub backend_sync_retry_tiers: RetryTiers,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        Self {
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            work_retry_tiers: RetryTiers::default(),
            backend_sync_retry_tiers: RetryTiers::default(),
        }
    }
}

/// Declares every exchange, queue and binding of SPEC §4. Idempotent.
///
/// # Errors
/// The broker's error; a declaration with arguments that differ from an existing
/// queue's closes the channel with `PRECONDITION_FAILED`.
pub async fn declare(channel: &Channel, options: &TopologyOptions) -> Result<(), lapin::Error> {
    // Parking lot first: every other queue dead-letters into it.
    exchange(channel, DEAD_LETTER_EXCHANGE, ExchangeKind::Fanout).await?;
    queue(channel, PARKING_LOT_QUEUE, quorum(None)).await?;
    bind(channel, PARKING_LOT_QUEUE, DEAD_LETTER_EXCHANGE, "").await?;

    exchange(channel, WORK_EXCHANGE, ExchangeKind::Direct).await?;
    queue(channel, WORK_QUEUE, quorum(Some(options.delivery_limit))).await?;
    bind(channel, WORK_QUEUE, WORK_EXCHANGE, WORK_ROUTING_KEY).await?;

    exchange(channel, RETRY_EXCHANGE, ExchangeKind::Direct).await?;
    for delay in options.work_retry_tiers.as_slice() {
        let name = work_retry_queue(*delay);
        queue(
            channel,
            &name,
            delay_queue(*delay, WORK_EXCHANGE, WORK_ROUTING_KEY),
        )
        .await?;
        bind(channel, &name, RETRY_EXCHANGE, &tier_label(*delay)).await?;
    }

    exchange(channel, LIFECYCLE_EXCHANGE, ExchangeKind::Topic).await?;
    queue(
        channel,
        BACKEND_SYNC_QUEUE,
        quorum(Some(options.delivery_limit)),
    )
    .await?;
    bind(
        channel,
        BACKEND_SYNC_QUEUE,
        LIFECYCLE_EXCHANGE,
        LIFECYCLE_ALL,
    )
    .await?;

    exchange(channel, BACKEND_SYNC_RETRY_EXCHANGE, ExchangeKind::Direct).await?;
    for delay in options.backend_sync_retry_tiers.as_slice() {
        let name = backend_sync_retry_queue(*delay);
        // The default exchange ("") routes by queue name straight back to the sync queue.
        queue(channel, &name, delay_queue(*delay, "", BACKEND_SYNC_QUEUE)).await?;
        bind(
            channel,
            &name,
            BACKEND_SYNC_RETRY_EXCHANGE,
            &tier_label(*delay),
        )
        .await?;
    }
    Ok(())
}

/// Declares this process's own broadcast queue on the lifecycle exchange: server-named,
/// exclusive and auto-deleted, so every worker sees every event and nothing piles up
/// for a worker that is gone.
///
/// # Errors
/// The broker's error.
pub async fn declare_lifecycle_broadcast_queue(channel: &Channel) -> Result<String, lapin::Error> {
    let declared = channel
        .queue_declare(
            ShortString::from(""),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let name = declared.name().as_str().to_owned();
    bind(channel, &name, LIFECYCLE_EXCHANGE, LIFECYCLE_ALL).await?;
    Ok(name)
}

async fn exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            ShortString::from(name),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

async fn queue(channel: &Channel, name: &str, arguments: FieldTable) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            ShortString::from(name),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .map(|_| ())
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), lapin::Error> {
    channel
        .queue_bind(
            ShortString::from(queue),
            ShortString::from(exchange),
            ShortString::from(key),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// A quorum queue that dead-letters to the parking lot, at least once (the broker keeps
/// a message until the parking lot confirmed it).
fn quorum(delivery_limit: Option<u32>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args.insert("x-dead-letter-exchange".into(), text(DEAD_LETTER_EXCHANGE));
    if let Some(limit) = delivery_limit {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(limit)),
        );
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
    }
    args
}

/// A durable classic queue whose messages expire after `delay` and then go back to
/// `target_exchange` with `target_routing_key`. Every message in it waits the same time,
/// so expiry at the head never holds back a shorter wait.
fn delay_queue(delay: Duration, target_exchange: &str, target_routing_key: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
    );
    args.insert("x-dead-letter-exchange".into(), text(target_exchange));
    args.insert("x-dead-letter-routing-key".into(), text(target_routing_key));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_are_named_by_their_delay() {
        assert_eq!(
            work_retry_queue(Duration::from_secs(1)),
            "spritz.slack.retry.1s"
        );
        assert_eq!(tier_label(Duration::from_millis(250)), "250ms");
        assert_eq!(tier_label(Duration::from_millis(1500)), "1500ms");
        assert_eq!(tier_label(Duration::from_secs(60)), "1m");
        assert_eq!(tier_label(Duration::from_secs(90)), "90s");
        assert_eq!(
            backend_sync_retry_queue(Duration::from_secs(5)),
            "spritz.lifecycle.backend-sync.retry.5s"
        );
    }

    #[test]
    fn a_wait_takes_the_nearest_tier_at_or_above_it() {
        let tiers = RetryTiers::new([
            Duration::from_secs(5),
            Duration::from_secs(1),
            Duration::from_secs(30),
        ]);
        assert_eq!(
            tiers.at_or_above(Duration::from_millis(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            tiers.at_or_above(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            tiers.at_or_above(Duration::from_secs(2)),
            Duration::from_secs(5)
        );
        assert_eq!(
            tiers.at_or_above(Duration::from_secs(120)),
            Duration::from_secs(30)
        );
        assert_eq!(RetryTiers::new([]), RetryTiers::default());
    }
}
