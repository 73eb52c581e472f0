//! The published JSON Schemas (`proto/schemas/`) are what the types generate: a change
//! to a message type that is not carried into its schema fails here. Regenerate with
//! `SPRITZ_UPDATE_SCHEMAS=1 cargo test -p spritz-proto --test schemas`.

use std::path::PathBuf;

use spritz_proto::schema::{self, CONTRACTS};

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

#[test]
fn the_published_schemas_match_the_message_types() {
    let update = std::env::var_os("SPRITZ_UPDATE_SCHEMAS").is_some();
    for message_type in CONTRACTS {
        let path = schema_dir().join(schema::file_name(message_type));
        let generated = schema::of(message_type);
        if update {
            let text = serde_json::to_string_pretty(&sorted(generated)).expect("json");
            std::fs::write(&path, text + "\n").expect("write the schema");
            continue;
        }
        let published: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display())),
        )
        .expect("the published schema is JSON");
        // Compared as JSON values: key order depends on serde_json's features in the
        // build at hand, not on the schema.
        assert!(
            published == generated,
            "{} is out of date with the {message_type} types; regenerate it with \
             SPRITZ_UPDATE_SCHEMAS=1 cargo test -p spritz-proto --test schemas",
            path.display()
        );
    }
}

/// `value` with every object's keys in order, so the file is the same whichever
/// serde_json features the build has.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

#[test]
fn a_published_schema_names_the_fields_a_consumer_must_read() {
    let slack = schema::of(spritz_proto::MessageType::SlackEvent);
    let required: Vec<&str> = slack["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for field in ["receivedAt", "eventId", "teamId", "event"] {
        assert!(required.contains(&field), "{field} in {required:?}");
    }
    assert!(!required.contains(&"v"), "v has a default");
    let lifecycle = schema::of(spritz_proto::MessageType::Lifecycle);
    assert_eq!(lifecycle["title"], "spritz.lifecycle.v1");
    assert!(
        lifecycle["required"]
            .as_array()
            .expect("required")
            .iter()
            .any(|f| f == "phase")
    );
}
