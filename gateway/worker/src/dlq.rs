//! The parking lot tool (`spritz-gateway dlq list | replay`): what is parked and why,
//! and sending parked messages back where they came from.
//!
//! Reading: one consumer with manual acks takes every message that was in the parking
//! lot when the command started (the count from a passive declare), without acking.
//! `list` then closes its channel, so the broker puts all of them back in their
//! original order (nothing is consumed, nothing reordered by a publish). `replay`
//! publishes each selected message to its origin exchange and routing key, waits for
//! the confirm, then acks the parked copy; the others go back when the channel closes.
//! A message is therefore never lost: at worst (a crash between confirm and ack) it
//! is both replayed and still parked, and the worker's ledger drops the duplicate.
//! Message text is never printed.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use lapin::Acker;
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use spritz_proto::copies::replayed_copy;
use spritz_proto::properties::{self, Envelope};
use spritz_proto::topology;
use spritz_proto::{MessageType, SlackEvent};
use spritz_service::Broker;

use crate::error::{Error, Result};

/// How long to wait for a parked message the queue said it holds.
const IDLE: Duration = Duration::from_secs(2);
/// How long the queue must stay quiet once that many were taken.
const QUIET: Duration = Duration::from_millis(300);

/// One parked message, as `dlq list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parked {
    pub message_id: String,
    pub reason: String,
    pub attempts: i64,
    /// Seconds since it was parked (or published, when the broker parked it).
    pub age_secs: i64,
    pub team_id: Option<String>,
    pub channel_id: Option<String>,
    pub origin_exchange: String,
    pub origin_routing_key: String,
}

/// Which parked messages `replay` sends back.
#[derive(Clone, Debug)]
pub enum Selection {
    All,
    Ids(Vec<String>),
}

/// What `replay` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: Vec<String>,
    /// Requested ids that were not in the parking lot.
    pub missing: Vec<String>,
}

struct Held {
    parked: Parked,
    body: Vec<u8>,
    properties: BasicProperties,
    acker: Acker,
}

/// Lists the parking lot without consuming it.
///
/// # Errors
/// The broker is unreachable or refused a call.
pub async fn list(broker: &Broker) -> Result<Vec<Parked>> {
    let (channel, held) = take_parked(broker).await?;
    let _ = channel.close(200, ShortString::from("dlq list done")).await;
    Ok(held.into_iter().map(|h| h.parked).collect())
}

/// Sends the selected parked messages back to their origin, each confirmed before its
/// parked copy is acked.
///
/// # Errors
/// The broker is unreachable, or a publish was not confirmed (the messages not yet
/// replayed stay parked).
pub async fn replay(broker: &Broker, selection: &Selection) -> Result<ReplayReport> {
    let (channel, held) = take_parked(broker).await?;
    let wanted: Option<HashSet<&str>> = match selection {
        Selection::All => None,
        Selection::Ids(ids) => Some(ids.iter().map(String::as_str).collect()),
    };
    let mut report = ReplayReport::default();
    let mut result = Ok(());
    for message in &held {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.contains(message.parked.message_id.as_str()))
        {
            continue;
        }
        let envelope = replay_envelope(&message.properties);
        let body = replay_body(&message.body);
        if let Err(error) = broker
            .publish(
                &message.parked.origin_exchange,
                &message.parked.origin_routing_key,
                &body,
                &envelope,
            )
            .await
        {
            result = Err(error.into());
            break;
        }
        message.acker.ack(BasicAckOptions::default()).await?;
        report.replayed.push(message.parked.message_id.clone());
    }
    if let Selection::Ids(ids) = selection {
        let present: HashSet<&str> = held.iter().map(|h| h.parked.message_id.as_str()).collect();
        report.missing = ids
            .iter()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
    }
    let _ = channel
        .close(200, ShortString::from("dlq replay done"))
        .await;
    result.map(|()| report)
}

/// A readable table: message id, reason, attempts, age, team, channel.
pub fn render_table(parked: &[Parked]) -> String {
    let header = ["MESSAGE ID", "REASON", "ATTEMPTS", "AGE", "TEAM", "CHANNEL"];
    let rows: Vec<[String; 6]> = parked
        .iter()
        .map(|p| {
            [
                p.message_id.clone(),
                p.reason.clone(),
                p.attempts.to_string(),
                format_age(p.age_secs),
                p.team_id.clone().unwrap_or_else(|| "-".into()),
                p.channel_id.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&header.map(String::from));
    for row in &rows {
        out.push_str(&line(row));
    }
    out.push_str(&format!("{} parked message(s)\n", parked.len()));
    out
}

fn format_age(secs: i64) -> String {
    match secs {
        s if s < 0 => "-".into(),
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A channel on the broker's link once it is up, and every message parked on it when
/// called, unacked.
async fn take_parked(broker: &Broker) -> Result<(lapin::Channel, Vec<Held>)> {
    let link = broker
        .wait_ready(Duration::from_secs(10))
        .await
        .ok_or(Error::BrokerUnavailable)?;
    let channel = link.create_channel().await?;
    let held = take_all(&channel).await?;
    Ok((channel, held))
}

/// Takes every message parked when called, unacked.
async fn take_all(channel: &lapin::Channel) -> Result<Vec<Held>> {
    let declared = channel
        .queue_declare(
            ShortString::from(topology::PARKING_LOT_QUEUE),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    // The count is a lower bound: messages another client just gave back may still
    // be on their way into the queue. Take at least that many, then keep taking until
    // the queue stays quiet for a moment.
    let count = usize::try_from(declared.message_count()).unwrap_or(usize::MAX);
    // Prefetch 0 is "unlimited": every parked message can be held unacked at once.
    channel.basic_qos(0, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            ShortString::from(topology::PARKING_LOT_QUEUE),
            ShortString::from("spritz-dlq"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut held = Vec::with_capacity(count.min(10_000));
    loop {
        let wait = if held.len() < count { IDLE } else { QUIET };
        match tokio::time::timeout(wait, consumer.next()).await {
            Ok(Some(Ok(delivery))) => held.push(to_held(delivery)),
            Ok(Some(Err(error))) => return Err(error.into()),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(held)
}

fn to_held(delivery: lapin::message::Delivery) -> Held {
    let props = &delivery.properties;
    let death = first_death(props);
    let reason = properties::header_str(props, properties::PARK_REASON)
        .or_else(|| death.as_ref().map(|d| d.reason.clone()))
        .unwrap_or_else(|| "unknown".into());
    let origin_exchange = properties::header_str(props, properties::ORIGIN_EXCHANGE)
        .or_else(|| death.as_ref().map(|d| d.exchange.clone()))
        .unwrap_or_else(|| topology::WORK_EXCHANGE.into());
    let origin_routing_key = properties::header_str(props, properties::ORIGIN_ROUTING_KEY)
        .or_else(|| death.as_ref().and_then(|d| d.routing_key.clone()))
        .unwrap_or_else(|| topology::WORK_ROUTING_KEY.into());
    let event: Option<SlackEvent> = spritz_proto::decode(&delivery.data).ok();
    let attempts = attempts_shown(
        event.as_ref(),
        properties::header_i64(props, properties::ATTEMPT),
        death.as_ref().map_or(0, |d| d.count),
    );
    let parked_at = properties::header_i64(props, properties::PARKED_AT)
        .or_else(|| props.timestamp().and_then(|t| i64::try_from(t).ok()));
    let age_secs = parked_at.map_or(-1, |at| chrono::Utc::now().timestamp() - at);
    let parked = Parked {
        message_id: properties::message_id(props).unwrap_or_default(),
        reason,
        attempts,
        age_secs,
        team_id: event.as_ref().map(|e| e.team_id.clone()),
        channel_id: event
            .as_ref()
            .and_then(|e| e.user_message())
            .map(|m| m.channel.clone()),
        origin_exchange,
        origin_routing_key,
    };
    Held {
        parked,
        body: delivery.data,
        properties: delivery.properties,
        acker: delivery.acker,
    }
}

/// The attempts `dlq list` shows: a Slack event's own count since its last replay
/// ([`spritz_proto::Resume::attempts_counted`], the one the worker's limit reads), else
/// the header of a header-counted message (backend sync); at least the broker's own
/// dead-letter count. The `x-spritz-attempt` header of a Slack event parked by an
/// older release is not read: it held the attempt without the replay base.
fn attempts_shown(event: Option<&SlackEvent>, header: Option<i64>, death_count: i64) -> i64 {
    let counted = match event {
        Some(event) => event
            .resume
            .as_ref()
            .map_or(0, |r| i64::from(r.attempts_counted())),
        None => header.unwrap_or(0),
    };
    counted.max(death_count)
}

struct Death {
    reason: String,
    exchange: String,
    routing_key: Option<String>,
    count: i64,
}

/// The broker's own dead-letter record (`x-death`), for messages the broker parked
/// (delivery limit) rather than the worker.
fn first_death(props: &BasicProperties) -> Option<Death> {
    let headers = props.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    let text = |name: &str| match first.inner().get(name) {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_owned()),
        _ => None,
    };
    let routing_key = match first.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => keys.as_slice().first().and_then(|k| match k {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
            _ => None,
        }),
        _ => None,
    };
    let count = match first.inner().get("count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        _ => 0,
    };
    Some(Death {
        reason: text("reason").unwrap_or_else(|| "dead_lettered".into()),
        exchange: text("exchange").unwrap_or_default(),
        routing_key,
        count,
    })
}

/// The body of a replayed copy: a Slack event's resume state counts its attempts
/// afresh (the worker's attempt limit reads the body, not the header); any other body
/// goes back byte for byte.
fn replay_body(original: &[u8]) -> Vec<u8> {
    let Ok(mut event) = spritz_proto::decode::<SlackEvent>(original) else {
        return original.to_vec();
    };
    let Some(resume) = event.resume.take() else {
        return original.to_vec();
    };
    event.resume = Some(resume.replayed());
    serde_json::to_vec(&event).unwrap_or_else(|_| original.to_vec())
}

/// The envelope of a replayed copy ([`replayed_copy`]); a message without a type is
/// taken for a Slack event.
fn replay_envelope(original: &BasicProperties) -> Envelope {
    replayed_copy(original, MessageType::SlackEvent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slack_event_shows_the_attempts_its_limit_counts_not_a_header_copy() {
        let mut event = SlackEvent::new(
            chrono::Utc::now(),
            "Ev1".into(),
            "T1".into(),
            spritz_proto::SlackEventKind::AppUninstalled,
        );
        let mut resume = spritz_proto::Resume::default();
        for _ in 0..300 {
            resume = resume.next(spritz_proto::RetryStage::Session);
        }
        resume = resume.replayed();
        for _ in 0..4 {
            resume = resume.next(spritz_proto::RetryStage::Session);
        }
        event.resume = Some(resume);
        assert_eq!(
            attempts_shown(Some(&event), Some(304), 0),
            4,
            "an older release's header held the generation, not the count"
        );
        event.resume = None;
        assert_eq!(attempts_shown(Some(&event), Some(3), 0), 0);
        assert_eq!(
            attempts_shown(None, Some(3), 0),
            3,
            "backend sync counts in the header"
        );
        assert_eq!(
            attempts_shown(None, None, 20),
            20,
            "the broker's delivery limit"
        );
    }

    #[test]
    fn the_table_shows_ids_reasons_attempts_age_team_and_channel_only() {
        let table = render_table(&[Parked {
            message_id: "Ev1".into(),
            reason: "malformed".into(),
            attempts: 3,
            age_secs: 75,
            team_id: Some("T1".into()),
            channel_id: None,
            origin_exchange: "x".into(),
            origin_routing_key: "y".into(),
        }]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("MESSAGE ID"));
        assert!(
            lines[1].contains("Ev1") && lines[1].contains("malformed") && lines[1].contains("75s")
        );
        assert!(lines[1].trim_end().ends_with('-'));
        assert_eq!(lines[2], "1 parked message(s)");
    }
}
