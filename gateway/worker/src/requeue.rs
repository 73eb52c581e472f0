//! Copies a delivery hands to the broker before it is acked: the retry copy for a delay
//! tier (or straight back to the work queue), and the parking-lot copy. Both are
//! confirmed publishes; the original is acked only after the copy is confirmed.
//!
//! A copy's attempts live in its body ([`spritz_proto::Resume`]) and nowhere else: the
//! `x-spritz-attempt` header that releases before wrote beside it is dropped from
//! every copy, so no second counter can drift from the one the limit, the wake-up
//! generation and `dlq list` read.

use std::time::Duration;

use lapin::BasicProperties;
use spritz_proto::copies::{copy_of, parked_copy};
use spritz_proto::properties;
use spritz_proto::topology::{self, RetryTiers};
use spritz_proto::{MessageType, ParkReason, SlackEvent};
use spritz_service::Broker;

use crate::error::Result;

/// Publishes retry and parking-lot copies.
#[derive(Clone)]
pub struct Requeue {
    broker: Broker,
    tiers: RetryTiers,
}

impl Requeue {
    pub fn new(broker: Broker, tiers: RetryTiers) -> Self {
        Self { broker, tiers }
    }

    /// The delay tiers this worker declared.
    pub fn tiers(&self) -> &RetryTiers {
        &self.tiers
    }

    /// Publishes `event` (with its resume state) to the delay tier at or above
    /// `after`, or to the work exchange when `after` is zero. Returns the delay used.
    ///
    /// # Errors
    /// The copy was not confirmed; the original must not be acked.
    pub async fn retry(
        &self,
        event: &SlackEvent,
        original: &BasicProperties,
        after: Duration,
    ) -> Result<Duration> {
        let body = serde_json::to_vec(event)?;
        let envelope = copy_of(original, MessageType::SlackEvent, &[properties::ATTEMPT]);
        if after.is_zero() {
            self.broker
                .publish(
                    topology::WORK_EXCHANGE,
                    topology::WORK_ROUTING_KEY,
                    &body,
                    &envelope,
                )
                .await?;
            return Ok(Duration::ZERO);
        }
        let tier = self.tiers.at_or_above(after);
        self.broker
            .publish(
                topology::RETRY_EXCHANGE,
                &topology::tier_label(tier),
                &body,
                &envelope,
            )
            .await?;
        Ok(tier)
    }

    /// Publishes the message as received to the parking lot with `reason` and where
    /// it came from, so `spritz-gateway dlq replay` can send it back.
    ///
    /// # Errors
    /// The copy was not confirmed; the original must not be acked.
    pub async fn park(
        &self,
        body: &[u8],
        original: &BasicProperties,
        reason: ParkReason,
    ) -> Result<()> {
        let envelope = parked_copy(
            original,
            MessageType::SlackEvent,
            reason,
            topology::WORK_EXCHANGE,
            topology::WORK_ROUTING_KEY,
        );
        self.broker
            .publish(topology::DEAD_LETTER_EXCHANGE, "", body, &envelope)
            .await?;
        Ok(())
    }
}
