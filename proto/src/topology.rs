//! The queue topology of SPEC §4: names, and one function that declares all of it.
//!
//! Every process declares the whole topology at start and after every reconnect;
//! declarations are idempotent as long as the arguments do not change. Delay queues are
//! named by their delay (`spritz.slack.retry.1s`), so a changed interval declares a new
//! queue instead of failing on an existing one with another TTL. Changing the delivery
//! limit of an existing work queue needs a policy, not a redeclaration (RabbitMQ refuses
//! a declaration whose arguments differ).
//!
//! Every durable queue is a quorum queue, replicated over up to
//! [`DEFAULT_QUORUM_INITIAL_GROUP_SIZE`] nodes of a cluster, so losing one node loses
//! neither a queue nor its messages, and a process that reconnects to another node can
//! redeclare everything there (a classic queue whose node is down answers a
//! redeclaration with `NOT_FOUND`, which would keep every process unready).
//!
//! Queues declared by an earlier release (before the cluster settings) have other
//! arguments, and RabbitMQ refuses a redeclaration with different ones
//! (`PRECONDITION_FAILED`) — `x-quorum-initial-group-size` included. Each queue
//! therefore has its current form and the forms earlier releases declared; an existing
//! queue that matches an earlier form exactly is accepted as it is. Anything else
//! (a changed delivery limit, say) still fails, so a process never runs silently with a
//! topology it did not declare.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ExchangeKind};

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

/// Replicas a new quorum queue starts with (`x-quorum-initial-group-size`). RabbitMQ
/// caps it at the number of cluster nodes, so one node takes it too; three tolerate
/// the loss of one node. A larger cluster keeps three replicas per queue unless an
/// operator grows them (`rabbitmq-queues grow`).
pub const DEFAULT_QUORUM_INITIAL_GROUP_SIZE: u32 = 3;

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
    /// `x-quorum-initial-group-size` of every quorum queue this process creates.
    pub quorum_initial_group_size: u32,
    pub work_retry_tiers: RetryTiers,
    pub backend_sync_retry_tiers: RetryTiers,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        Self {
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            quorum_initial_group_size: DEFAULT_QUORUM_INITIAL_GROUP_SIZE,
            work_retry_tiers: RetryTiers::default(),
            backend_sync_retry_tiers: RetryTiers::default(),
        }
    }
}

/// Declares every exchange, queue and binding of SPEC §4. Idempotent.
///
/// Takes the connection, not a channel: a queue whose existing arguments are those of
/// an earlier release is retried in that form, and every refusal closes its channel.
///
/// # Errors
/// The broker's error; a queue whose arguments match neither the current nor an
/// earlier form is refused with `PRECONDITION_FAILED` naming the argument.
pub async fn declare(
    connection: &Connection,
    options: &TopologyOptions,
) -> Result<(), lapin::Error> {
    let mut declarer = Declarer::open(connection).await?;
    let group = options.quorum_initial_group_size;
    let channel = declarer.channel.clone();
    // Parking lot first: every other queue dead-letters into it.
    exchange(&channel, DEAD_LETTER_EXCHANGE, ExchangeKind::Fanout).await?;
    declarer
        .queue(PARKING_LOT_QUEUE, quorum_forms(None, group))
        .await?;
    let channel = declarer.channel.clone();
    bind(&channel, PARKING_LOT_QUEUE, DEAD_LETTER_EXCHANGE, "").await?;

    exchange(&channel, WORK_EXCHANGE, ExchangeKind::Direct).await?;
    declarer
        .queue(
            WORK_QUEUE,
            quorum_forms(Some(options.delivery_limit), group),
        )
        .await?;
    let channel = declarer.channel.clone();
    bind(&channel, WORK_QUEUE, WORK_EXCHANGE, WORK_ROUTING_KEY).await?;

    exchange(&channel, RETRY_EXCHANGE, ExchangeKind::Direct).await?;
    for delay in options.work_retry_tiers.as_slice() {
        let name = work_retry_queue(*delay);
        declarer
            .queue(
                &name,
                delay_queue_forms(*delay, WORK_EXCHANGE, WORK_ROUTING_KEY, group),
            )
            .await?;
        bind(
            &declarer.channel,
            &name,
            RETRY_EXCHANGE,
            &tier_label(*delay),
        )
        .await?;
    }

    let channel = declarer.channel.clone();
    exchange(&channel, LIFECYCLE_EXCHANGE, ExchangeKind::Topic).await?;
    declarer
        .queue(
            BACKEND_SYNC_QUEUE,
            quorum_forms(Some(options.delivery_limit), group),
        )
        .await?;
    let channel = declarer.channel.clone();
    bind(
        &channel,
        BACKEND_SYNC_QUEUE,
        LIFECYCLE_EXCHANGE,
        LIFECYCLE_ALL,
    )
    .await?;

    exchange(&channel, BACKEND_SYNC_RETRY_EXCHANGE, ExchangeKind::Direct).await?;
    for delay in options.backend_sync_retry_tiers.as_slice() {
        let name = backend_sync_retry_queue(*delay);
        // The default exchange ("") routes by queue name straight back to the sync queue.
        declarer
            .queue(
                &name,
                delay_queue_forms(*delay, "", BACKEND_SYNC_QUEUE, group),
            )
            .await?;
        bind(
            &declarer.channel,
            &name,
            BACKEND_SYNC_RETRY_EXCHANGE,
            &tier_label(*delay),
        )
        .await?;
    }
    declarer.close().await;
    Ok(())
}

/// The channel topology is declared on, replaced whenever the broker closes it for a
/// refused declaration.
struct Declarer<'a> {
    connection: &'a Connection,
    channel: Channel,
}

impl<'a> Declarer<'a> {
    async fn open(connection: &'a Connection) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        Ok(Self {
            connection,
            channel,
        })
    }

    /// Declares `name` in its current form; when the broker refuses that because the
    /// queue exists with other arguments, tries the `earlier` forms in turn. The error of
    /// the current form is the one returned when none fits.
    async fn queue(
        &mut self,
        name: &str,
        (current, earlier): (FieldTable, FieldTable),
    ) -> Result<(), lapin::Error> {
        let refused = match queue(&self.channel, name, current).await {
            Err(error) if is_precondition_failed(&error) => error,
            other => return other,
        };
        self.channel = self.connection.create_channel().await?;
        match queue(&self.channel, name, earlier).await {
            Ok(()) => {
                tracing::info!(
                    queue = name,
                    "queue kept with the arguments an earlier release declared"
                );
                Ok(())
            }
            Err(error) if is_precondition_failed(&error) => {
                self.channel = self.connection.create_channel().await?;
                Err(refused)
            }
            Err(error) => Err(error),
        }
    }

    async fn close(self) {
        let _ = self
            .channel
            .close(200, ShortString::from("topology declared"))
            .await;
    }
}

fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if amqp.kind() == &lapin::protocol::AMQPErrorKind::Soft(lapin::protocol::AMQPSoftError::PRECONDITIONFAILED)
    )
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
/// a message until the parking lot confirmed it), starting with `group_size` replicas;
/// then the form the releases before the cluster settings declared (no group size).
fn quorum_forms(delivery_limit: Option<u32>, group_size: u32) -> (FieldTable, FieldTable) {
    let earlier = quorum(delivery_limit);
    let mut current = earlier.clone();
    current.insert(
        "x-quorum-initial-group-size".into(),
        AMQPValue::LongLongInt(i64::from(group_size)),
    );
    (current, earlier)
}

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

/// A quorum queue whose messages expire after `delay` and then go back to
/// `target_exchange` with `target_routing_key`, dead-lettered at least once. Every
/// message in it waits the same time, so expiry at the head never holds back a shorter
/// wait. Then the form of earlier releases: the same as a durable classic queue, which
/// lives on one node only (an existing one is kept; see the module docs).
fn delay_queue_forms(
    delay: Duration,
    target_exchange: &str,
    target_routing_key: &str,
    group_size: u32,
) -> (FieldTable, FieldTable) {
    let earlier = classic_delay_queue(delay, target_exchange, target_routing_key);
    let mut current = earlier.clone();
    current.insert("x-queue-type".into(), text("quorum"));
    current.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    current.insert("x-overflow".into(), text("reject-publish"));
    current.insert(
        "x-quorum-initial-group-size".into(),
        AMQPValue::LongLongInt(i64::from(group_size)),
    );
    (current, earlier)
}

fn classic_delay_queue(
    delay: Duration,
    target_exchange: &str,
    target_routing_key: &str,
) -> FieldTable {
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
