//! SPEC §5.3 the prompt: permission denial, delivered-then-failed prompts, prompts
//! that never reached the agent.

use spritz_proto::SlackEventKind;
use spritz_sandbox::spritz_api::AgentBehaviour;
use spritz_worker::clients::acp::{REFUSAL_REPLY, StopReason};

use crate::support::{BOT, INTERNAL, WAIT, World};

#[tokio::test]
async fn a_permission_request_is_denied_and_the_reply_still_arrives() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    world.spritz.set_agent(AgentBehaviour::AskPermission);
    let event = world.channel_message("rm -rf /");
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, "echo: rm -rf /");
    let answers = world.spritz.permission_answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["error"]["code"], -32000);
    assert!(answers[0].get("result").is_none(), "never approved");
    world.finish().await;
}

#[tokio::test]
async fn a_delivered_prompt_that_fails_gets_the_internal_error_reply_and_is_never_resent() {
    let mut world = World::new().await;
    let ops = world.spawn_worker().await;
    world.spritz.set_agent(AgentBehaviour::DisconnectAfterChunk);
    let event = world.channel_message("crash please");
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, INTERNAL);
    world.settled().await;
    assert_eq!(world.slack.posts().len(), 1);
    assert_eq!(world.spritz.prompts().len(), 1);
    assert_eq!(
        world
            .metric(
                ops,
                "spritz_worker_status_messages_total{purpose=\"internal-error\"}"
            )
            .await,
        1.0
    );
    world.finish().await;
}

#[tokio::test]
async fn an_empty_agent_reply_gets_the_internal_error_reply() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    world.spritz.set_agent(AgentBehaviour::EmptyReply);
    let event = world.direct_message("say nothing");
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, INTERNAL);
    world.settled().await;
    assert_eq!(world.spritz.prompts().len(), 1);
    world.finish().await;
}

#[tokio::test]
async fn a_refusal_is_answered_with_the_refusal_text_and_never_resent() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    world
        .spritz
        .set_agent(AgentBehaviour::Stop(StopReason::Refusal));
    let event = world.channel_message("something forbidden");
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, REFUSAL_REPLY);
    world.settled().await;
    assert_eq!(world.slack.posts().len(), 1);
    assert_eq!(world.spritz.prompts().len(), 1);
    world.finish().await;
}

#[tokio::test]
async fn a_prompt_lost_before_delivery_is_sent_again() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    world.spritz.set_agent(AgentBehaviour::Disconnect);
    let event = world.channel_message("second time lucky");
    world.publish(&event).await;

    world
        .spritz
        .wait_for_prompts(1, WAIT)
        .await
        .expect("first prompt");
    world.spritz.set_agent(AgentBehaviour::Echo);
    let posts = world.posts(1).await;
    let reply = posts.iter().find(|p| p.text == "echo: second time lucky");
    let posts = if reply.is_some() {
        posts
    } else {
        world.posts(2).await
    };
    assert!(posts.iter().any(|p| p.text == "echo: second time lucky"));
    world.settled().await;
    assert!(
        world.spritz.prompts().len() >= 2,
        "an undelivered prompt may be sent again"
    );
    assert!(!world.slack.posts().iter().any(|p| p.text == INTERNAL));
    world.finish().await;
}

#[tokio::test]
async fn the_internal_error_reply_is_aliased_like_a_reply() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    world.spritz.set_agent(AgentBehaviour::EmptyReply);
    let event = world.channel_message("say nothing");
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, INTERNAL);
    world.settled().await;
    let upserts = world.spritz.upserts();
    assert_eq!(
        upserts.len(),
        2,
        "the conversation, then the fallback's alias"
    );
    assert_eq!(
        upserts[1]["conversationId"],
        world.spritz.prompts()[0].conversation_id.as_str()
    );
    assert_eq!(upserts[1]["externalConversationId"], posts[0].ts.as_str());
    world.finish().await;
}

#[tokio::test]
async fn a_mention_that_names_no_bot_loses_the_installations_bot_mention_only() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    let mut event = world.channel_message("unused");
    if let SlackEventKind::Message(message) = &mut event.event {
        message.bot_user_id = None;
        message.text = format!("<@{BOT}> ask<@{BOT}>now, <@U2>");
    }
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(
        posts[0].text, "echo: ask now, <@U2>",
        "the bot id comes from the session's providerAuth; a removed mention leaves a space"
    );
    world.finish().await;
}

#[tokio::test]
async fn a_direct_message_reaches_the_agent_as_written() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    let event = world.direct_message(&format!("<@{BOT}> is this you?"));
    world.publish(&event).await;

    world.posts(1).await;
    let prompts = world.spritz.prompts();
    assert!(
        prompts[0]
            .text
            .ends_with(&format!("\n\n<@{BOT}> is this you?")),
        "{}",
        prompts[0].text
    );
    world.finish().await;
}
