//! Outbound TLS (`SPRITZ_TLS_CA_FILE`): Slack, the backend, the Spritz API (HTTPS and
//! the ACP websocket) and Redis (`rediss://`) behind TLS fronts whose certificate a
//! test CA signed. The worker answers only when it was given that CA.

use std::net::SocketAddr;

use spritz_sandbox::isolation;
use spritz_sandbox::tls::{TestCa, TlsFront};
use spritz_service::Trust;
use url::Url;

use crate::support::{WAIT, World};

/// `url` with its scheme made `scheme` and its port the front's, path kept.
fn through(front: &TlsFront, url: &str, scheme: &str) -> Url {
    let mut url = Url::parse(url).expect("url");
    url.set_scheme(scheme)
        .expect("a TLS scheme of the same kind");
    url.set_port(Some(front.addr().port())).expect("port");
    url
}

fn socket_addr(url: &str) -> SocketAddr {
    let url = Url::parse(url).expect("url");
    format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    )
    .parse()
    .expect("a local socket address")
}

#[tokio::test]
async fn a_worker_given_the_ca_reaches_every_service_and_redis_over_tls() {
    let ca = TestCa::new().expect("test CA");
    let mut world = World::new().await;
    let slack = TlsFront::start(&ca, socket_addr(&world.slack.base_url()))
        .await
        .expect("front");
    let backend = TlsFront::start(&ca, socket_addr(&world.backend.base_url()))
        .await
        .expect("front");
    let spritz = TlsFront::start(&ca, socket_addr(&world.spritz.base_url()))
        .await
        .expect("front");
    let redis = TlsFront::start(&ca, socket_addr(&isolation::redis_url()))
        .await
        .expect("front");

    let mut config = world.config();
    config.services.slack_api_base_url = through(&slack, &world.slack.base_url(), "https");
    config.services.backend_base_url = through(&backend, &world.backend.base_url(), "https");
    config.services.spritz_base_url = through(&spritz, &world.spritz.base_url(), "https");
    config.redis_url = through(&redis, &isolation::redis_url(), "rediss").to_string();
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
    let spritz = TlsFront::start(&ca, socket_addr(&world.spritz.base_url()))
        .await
        .expect("front");
    let mut config = world.config();
    config.services.spritz_base_url = through(&spritz, &world.spritz.base_url(), "https");
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
