//! JSON Schemas of the message contracts, generated from the types that read and
//! write them, so the published schema cannot drift from the code. The copies in
//! `proto/schemas/` are checked against these by `proto/tests/schemas.rs`; other
//! teams' consumers validate against those files.

use schemars::generate::SchemaSettings;

use crate::{LifecycleEvent, MessageType, SlackEvent};

/// Every message kind with a schema, in a fixed order.
pub const CONTRACTS: [MessageType; 2] = [MessageType::SlackEvent, MessageType::Lifecycle];

/// The JSON Schema (draft 2020-12) of a message kind's body.
pub fn of(message_type: MessageType) -> serde_json::Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = match message_type {
        MessageType::SlackEvent => generator.into_root_schema_for::<SlackEvent>(),
        MessageType::Lifecycle => generator.into_root_schema_for::<LifecycleEvent>(),
    };
    schema.insert("title".to_owned(), message_type.as_str().into());
    schema.to_value()
}

/// `<type>.schema.json`, the file name under `proto/schemas/`.
pub fn file_name(message_type: MessageType) -> String {
    format!("{}.schema.json", message_type.as_str())
}
