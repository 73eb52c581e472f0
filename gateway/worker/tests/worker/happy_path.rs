//! SPEC §5 happy path: exchange, upsert, bootstrap, prompt, reply, in a channel, a
//! thread and a DM.

use crate::support::{WAIT, World};

#[tokio::test]
async fn a_channel_mention_gets_the_agents_reply_at_top_level_and_an_alias() {
    let mut world = World::new().await;
    let ops = world.spawn_worker().await;
    let event = world.channel_message("hello there");
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, "echo: hello there");
    assert_eq!(posts[0].channel, "C1");
    assert_eq!(posts[0].thread_ts, None);
    assert_eq!(posts[0].token, world.install.bot_access_token);

    let prompts = world.spritz.prompts();
    assert_eq!(prompts.len(), 1);
    assert!(prompts[0].text.starts_with("<spritz-channel-context>"));
    assert!(prompts[0].text.ends_with("\n\nhello there"));
    world.settled().await;
    let upserts = world.spritz.upserts();
    assert_eq!(upserts.len(), 2, "the conversation, then the reply alias");
    let message = event.user_message().expect("message");
    assert_eq!(upserts[0]["externalConversationId"], message.ts.as_str());
    assert_eq!(
        upserts[0]["conversationId"], "",
        "the first upsert names no conversation: names are the server's"
    );
    assert_eq!(upserts[1]["externalConversationId"], posts[0].ts.as_str());
    assert_eq!(
        upserts[1]["conversationId"],
        prompts[0].conversation_id.as_str(),
        "the alias names the conversation the server created"
    );
    assert_eq!(
        world
            .metric(ops, "spritz_worker_deliveries_total{outcome=\"replied\"}")
            .await,
        1.0
    );
    world.finish().await;
}

#[tokio::test]
async fn a_thread_reply_under_the_bots_reply_continues_the_same_conversation() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    let first = world.channel_message("hello there");
    world.publish(&first).await;
    let reply = world.posts(1).await.remove(0);
    world.settled().await;

    let follow_up = world.thread_message(&reply.ts, "and then?");
    world.publish(&follow_up).await;
    let posts = world.posts(2).await;
    assert_eq!(posts[1].text, "echo: and then?");
    assert_eq!(posts[1].thread_ts.as_deref(), Some(reply.ts.as_str()));

    let prompts = world.spritz.prompts();
    assert_eq!(prompts.len(), 2);
    assert_eq!(
        prompts[1].conversation_id, prompts[0].conversation_id,
        "the thread under the reply is found through the reply's alias"
    );
    world.settled().await;
    let upserts = world.spritz.upserts();
    assert_eq!(upserts.len(), 3, "conversation, alias, thread lookup");
    assert_eq!(upserts[2]["conversationId"], "");
    assert_eq!(upserts[2]["externalConversationId"], reply.ts.as_str());
    world.finish().await;
}

#[tokio::test]
async fn a_thread_mention_is_answered_in_the_thread_without_an_alias() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    let event = world.thread_message("1690000000.000001", "in a thread");
    world.publish(&event).await;

    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, "echo: in a thread");
    assert_eq!(posts[0].thread_ts.as_deref(), Some("1690000000.000001"));
    world.settled().await;
    let upserts = world.spritz.upserts();
    assert_eq!(upserts.len(), 1);
    assert_eq!(upserts[0]["externalConversationId"], "1690000000.000001");
    world.finish().await;
}

#[tokio::test]
async fn a_direct_message_is_answered_in_the_dm_as_one_conversation() {
    let mut world = World::new().await;
    world.spawn_worker().await;
    let first = world.direct_message("first");
    let second = world.direct_message("second");
    world.publish(&first).await;
    world.posts(1).await;
    world.publish(&second).await;

    let posts = world.posts(2).await;
    assert_eq!(posts[0].text, "echo: first");
    assert_eq!(posts[1].text, "echo: second");
    assert!(
        posts
            .iter()
            .all(|p| p.channel == "D1" && p.thread_ts.is_none())
    );
    world.settled().await;
    let upserts = world.spritz.upserts();
    assert_eq!(upserts.len(), 2, "no alias in a DM");
    assert!(upserts.iter().all(|u| u["externalConversationId"] == "D1"));
    assert!(upserts.iter().all(|u| u["conversationId"] == ""));
    let prompts = world.spritz.prompts();
    assert_eq!(
        prompts[0].conversation_id, prompts[1].conversation_id,
        "one conversation per DM"
    );
    assert_eq!(
        world.backend.exchange_calls("T1"),
        1,
        "the session is cached per team"
    );
    let _ = WAIT;
    world.finish().await;
}
