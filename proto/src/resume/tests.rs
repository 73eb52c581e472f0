use serde_json::json;

use super::*;

fn decode(value: serde_json::Value) -> Resume {
    serde_json::from_value(value).expect("resume")
}

#[test]
fn next_is_one_attempt_further_at_the_stage_that_asked() {
    let first = Resume::default().next(RetryStage::Session);
    assert_eq!(first.attempt(), 1);
    assert_eq!(first.stage, Some(RetryStage::Session));
    let second = first.next(RetryStage::Reply);
    assert_eq!(second.attempt(), 2);
    assert_eq!(second.stage, Some(RetryStage::Reply));
    assert_eq!(second.attempts_counted(), 2);
}

#[test]
fn a_replay_counts_attempts_afresh_but_keeps_the_generation() {
    let mut resume = decode(json!({"attempt": 300, "replyAttempts": 9, "replyText": "hi"}));
    assert_eq!(resume.attempts_counted(), 300);
    resume = resume.replayed();
    assert_eq!(resume.attempt(), 300);
    assert_eq!(resume.attempts_counted(), 0);
    assert_eq!(resume.reply_attempts, 0);
    assert_eq!(resume.reply_text(), Some("hi"));
    let again = resume.next(RetryStage::Reply);
    assert_eq!((again.attempt(), again.attempts_counted()), (301, 1));
}

#[test]
fn the_wire_shape_is_the_one_every_release_wrote() {
    let mut resume = Resume::default().next(RetryStage::Reply);
    resume.pending = Some(Pending::Reply("hi".into()));
    resume.reply_attempts = 2;
    resume.recovering = true;
    assert_eq!(
        serde_json::to_value(&resume).expect("json"),
        json!({"attempt": 1, "stage": "reply", "recovering": true, "replyText": "hi", "replyAttempts": 2})
    );
    for (pending, stage) in [
        (Pending::TerminalFailure, "terminal-failure"),
        (Pending::InternalError, "internal-error"),
    ] {
        let mut resume = Resume::default().next(RetryStage::Ledger);
        resume.pending = Some(pending.clone());
        let value = serde_json::to_value(&resume).expect("json");
        assert_eq!(value, json!({"attempt": 1, "stage": stage}));
        let back = decode(value);
        assert_eq!(back.pending, Some(pending));
        assert_eq!(back.stage, None, "the wire's stage names the message");
    }
    assert_eq!(
        serde_json::to_value(Resume::default()).expect("json"),
        json!({"attempt": 0})
    );
}

#[test]
fn every_stage_name_round_trips_and_is_the_metric_label() {
    for stage in RetryStage::ALL {
        let resume = Resume::default().next(stage);
        let value = serde_json::to_value(&resume).expect("json");
        assert_eq!(value["stage"], stage.as_str());
        assert_eq!(decode(value), resume);
    }
    let names: Vec<&str> = RetryStage::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "session",
            "conversation_busy",
            "reply",
            "disconnect",
            "ledger"
        ]
    );
}

#[test]
fn a_stage_this_build_does_not_know_decodes_as_no_stage_and_keeps_the_rest() {
    // A newer worker's stage: the copy is still used; what is left to do comes from
    // the reply text and the ledger (which says whether the prompt was delivered).
    let resume = decode(json!({
        "attempt": 7,
        "stage": "some_future_stage",
        "recovering": true,
        "statusPosted": true,
        "replyText": "hi",
        "conversation": "conv-1",
        "attemptBase": 2,
    }));
    assert_eq!(resume.stage, None);
    assert_eq!(resume.pending, Some(Pending::Reply("hi".into())));
    assert_eq!((resume.attempt(), resume.attempts_counted()), (7, 5));
    assert!(resume.recovering && resume.status_posted);
    assert_eq!(resume.conversation.as_deref(), Some("conv-1"));
}
