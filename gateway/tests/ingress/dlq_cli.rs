//! `spritz-gateway dlq replay` run as an operator runs it: the replayed copy starts its
//! attempts afresh, in the header and in the body the worker counts from.

use std::process::Command;

use chrono::Utc;
use spritz_proto::properties::{self, Envelope};
use spritz_proto::traceparent::TraceParent;
use spritz_proto::{
    MessageType, Resume, SlackEvent, SlackEventKind, UserMessage, UserMessageKind, topology,
};
use spritz_service::config::AMQP_URL;

use crate::helpers::spawn_app;

const BINARY: &str = env!("CARGO_BIN_EXE_spritz-gateway");

#[tokio::test]
async fn a_replayed_message_starts_its_attempts_afresh_in_header_and_body() {
    let app = spawn_app().await;
    let mut event = SlackEvent::new(
        Utc::now(),
        "EvReplay1".into(),
        "T1".into(),
        SlackEventKind::Message(UserMessage {
            event_type: UserMessageKind::AppMention,
            user: "U1".into(),
            channel: "C1".into(),
            channel_type: Some("channel".into()),
            ts: "1700000000.000100".into(),
            thread_ts: None,
            text: "<@UBOT> again".into(),
            bot_user_id: Some("UBOT".into()),
        }),
    );
    // As a worker of the previous release parked it: the attempt in body and header.
    event.resume = Some(
        serde_json::from_value::<Resume>(serde_json::json!({"attempt": 300, "replyAttempts": 4}))
            .expect("resume"),
    );
    let envelope = Envelope::new(
        &event.event_id,
        MessageType::SlackEvent,
        TraceParent::new_root(),
    )
    .with_header(properties::PARK_REASON, "attempts_exhausted")
    .with_header(properties::ORIGIN_EXCHANGE, topology::WORK_EXCHANGE)
    .with_header(properties::ORIGIN_ROUTING_KEY, topology::WORK_ROUTING_KEY)
    .with_number(properties::ATTEMPT, 300);
    let body = serde_json::to_vec(&event).expect("json");
    app.broker
        .publish(topology::DEAD_LETTER_EXCHANGE, "", &body, &envelope)
        .await
        .expect("parked");

    let output = Command::new(BINARY)
        .args(["dlq", "replay", "--all"])
        .env_clear()
        .env(AMQP_URL, app.vhost.amqp_url())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("1 message(s) replayed"), "{stdout}");

    let replayed = app.drain_work_queue().await;
    assert_eq!(replayed.len(), 1);
    let (props, body) = &replayed[0];
    assert_eq!(properties::header_i64(props, properties::ATTEMPT), None);
    let copy: SlackEvent = serde_json::from_value(body.clone()).expect("a slack event");
    let resume = copy.resume.expect("resume state kept");
    assert_eq!(resume.attempts_counted(), 0, "the limit counts afresh");
    assert_eq!(resume.reply_attempts, 0);
    assert_eq!(
        resume.attempt(),
        300,
        "the generation a wake-up compares against still only grows"
    );
    app.finish().await;
}
