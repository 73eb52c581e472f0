//! The contracts every Spritz gateway process agrees on: message bodies and their
//! versions, AMQP message properties, the queue topology and how it is declared, and
//! the Slack request signature.
//!
//! Layout: [`message`] decodes versioned bodies; [`slack_event`] and [`lifecycle`] are
//! the two message kinds, and [`resume`] the typed retry state a re-queued
//! `slack.event.v1` copy carries; [`properties`] builds and reads AMQP properties
//! (message id, type, timestamp, `traceparent`, retry headers) and [`park_reason`]
//! names why a message was parked; [`topology`] names every exchange and queue and
//! declares them; [`slack_signature`] signs and verifies Slack requests; [`mention`]
//! removes the bot mention from a user's text; [`schema`] generates the JSON Schemas
//! of the two message kinds.

pub mod copies;
pub mod lifecycle;
pub mod mention;
pub mod message;
pub mod park_reason;
pub mod properties;
pub mod resume;
pub mod schema;
pub mod slack_event;
pub mod slack_signature;
pub mod topology;
pub mod traceparent;

pub use lifecycle::{LifecycleEvent, Phase};
pub use message::{DecodeError, MessageType, decode};
pub use park_reason::ParkReason;
pub use resume::{Pending, Resume, RetryStage};
pub use slack_event::{SlackEvent, SlackEventKind, SlackRetry, UserMessage, UserMessageKind};
