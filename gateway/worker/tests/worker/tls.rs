//! Outbound TLS (`SPRITZ_TLS_CA_FILE`): Slack, the backend, the Spritz API (HTTPS and
//! the ACP websocket) and Redis (`rediss://`) behind TLS fronts whose certificate a
//! test CA signed. The worker answers only when it was given that CA.

use spritz_sandbox::isolation;
use spritz_sandbox::tls::{TestCa, TlsFront};
use spritz_service::Trust;

use crate::support::{WAIT, World};

#[tokio::test]
async fn a_worker_given_the_ca_reaches_every_service_and_redis_over_tls() {
    let ca = TestCa::new().expect("test CA");
    let mut world = World::new().await;
    let slack = TlsFront::before(&ca, &world.slack.base_url())
        .await
        .expect("front");
    let backend = TlsFront::before(&ca, &world.backend.base_url())
        .await
        .expect("front");
    let spritz = TlsFront::before(&ca, &world.spritz.base_url())
        .await
        .expect("front");
    let redis = TlsFront::before(&ca, &isolation::redis_url())
        .await
        .expect("front");

    let mut config = world.config();
    config.services.slack_api_base_url = slack.url(&world.slack.base_url(), "https");
    config.services.backend_base_url = backend.url(&world.backend.base_url(), "https");
    config.services.spritz_base_url = spritz.url(&world.spritz.base_url(), "https");
    config.redis_url = redis.url(&isolation::redis_url(), "rediss").to_string();
    config.trust = Trust::load(Some(ca.pem_file())).expect("the test CA loads");
    world.spawn_worker_with(config).await;

    let event = world.channel_message("over tls");
    world.publish(&event).await;
    let posts = world.posts(1).await;
    assert_eq!(posts[0].text, "echo: over tls");
    assert_eq!(world.spritz.prompts().len(), 1, "the prompt went over wss");
    for (name, front) in [
        ("slack", &slack),
        ("backend", &backend),
        ("spritz", &spritz),
        ("redis", &redis),
    ] {
        let handshakes = front.handshakes();
        assert!(handshakes.completed >= 1, "{name}: {handshakes:?}");
        assert_eq!(handshakes.refused, 0, "{name}: {handshakes:?}");
    }
    world.finish().await;
}

#[tokio::test]
async fn a_worker_without_the_ca_does_not_talk_to_a_private_ca_spritz_api() {
    let ca = TestCa::new().expect("test CA");
    let mut world = World::new().await;
    let spritz = TlsFront::before(&ca, &world.spritz.base_url())
        .await
        .expect("front");
    let mut config = world.config();
    config.services.spritz_base_url = spritz.url(&world.spritz.base_url(), "https");
    world.spawn_worker_with(config).await;

    let event = world.channel_message("not over an untrusted link");
    world.publish(&event).await;
    let seen = spritz
        .refused(WAIT)
        .await
        .expect("the worker refuses the certificate");
    assert_eq!(seen.completed, 0);
    assert!(
        world.spritz.upserts().is_empty(),
        "nothing reached the Spritz API"
    );
    world.finish().await;
}
