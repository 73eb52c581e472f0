//! The broker component against the real RabbitMQ: confirmed publishing, failures
//! that must not look like success, and recovery after the connection is cut.

use std::time::Duration;

use lapin::options::BasicGetOptions;
use spritz_proto::MessageType;
use spritz_proto::properties::Envelope;
use spritz_proto::topology::{self, WORK_EXCHANGE, WORK_QUEUE, WORK_ROUTING_KEY};
use spritz_proto::traceparent::TraceParent;
use spritz_sandbox::isolation::{BrokerAdmin, TestVhost};
use spritz_service::metrics::BrokerMetrics;
use spritz_service::{Broker, BrokerSettings, PublishError};

const READY: Duration = Duration::from_secs(20);

async fn broker_on(vhost: &TestVhost) -> Broker {
    let settings = BrokerSettings::new(vhost.amqp_url(), "spritz-service-test");
    let (broker, _task) = Broker::start(settings, BrokerMetrics::unregistered());
    broker
}

fn envelope(id: &str) -> Envelope {
    Envelope::new(id, MessageType::SlackEvent, TraceParent::new_root())
}

#[tokio::test]
async fn a_confirmed_publish_is_in_the_work_queue_with_its_properties() -> anyhow::Result<()> {
    let vhost = BrokerAdmin::from_env().create_vhost().await?;
    let broker = broker_on(&vhost).await;
    let link = broker.wait_ready(READY).await.expect("broker ready");

    broker
        .publish(
            WORK_EXCHANGE,
            WORK_ROUTING_KEY,
            br#"{"v":1}"#,
            &envelope("Ev1"),
        )
        .await?;

    let channel = link.create_channel().await?;
    let message = channel
        .basic_get(WORK_QUEUE.into(), BasicGetOptions { no_ack: true })
        .await?
        .expect("the confirmed message is in the queue");
    assert_eq!(message.delivery.data, br#"{"v":1}"#);
    let properties = &message.delivery.properties;
    assert_eq!(
        spritz_proto::properties::message_id(properties).as_deref(),
        Some("Ev1")
    );
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert!(spritz_proto::properties::traceparent(properties).is_some());
    broker.close().await;
    vhost.delete().await
}

#[tokio::test]
async fn an_unroutable_publish_fails_even_though_the_broker_acked_it() -> anyhow::Result<()> {
    let vhost = BrokerAdmin::from_env().create_vhost().await?;
    let broker = broker_on(&vhost).await;
    broker.wait_ready(READY).await.expect("broker ready");

    let result = broker
        .publish(WORK_EXCHANGE, "no.such.binding", b"{}", &envelope("Ev2"))
        .await;

    assert!(
        matches!(result, Err(PublishError::Returned(_))),
        "{result:?}"
    );
    broker.close().await;
    vhost.delete().await
}

#[tokio::test]
async fn without_a_broker_a_publish_fails_fast_as_unavailable() -> anyhow::Result<()> {
    let settings = BrokerSettings::new(
        "amqp://guest:guest@127.0.0.1:5672/spritz-test-absent-vhost",
        "absent",
    );
    let (broker, _task) = Broker::start(settings, BrokerMetrics::unregistered());

    let started = std::time::Instant::now();
    let result = broker
        .publish(WORK_EXCHANGE, WORK_ROUTING_KEY, b"{}", &envelope("Ev3"))
        .await;

    assert!(
        matches!(result, Err(PublishError::Unavailable)),
        "{result:?}"
    );
    assert!(!broker.is_ready());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fails fast, does not wait for a confirm"
    );
    broker.close().await;
    Ok(())
}

#[tokio::test]
async fn a_cut_connection_is_reestablished_with_the_topology_and_publishing_resumes()
-> anyhow::Result<()> {
    let vhost = BrokerAdmin::from_env().create_vhost().await?;
    let broker = broker_on(&vhost).await;
    let first = broker.wait_ready(READY).await.expect("broker ready");
    let mut links = broker.links();

    // The management API lists a new connection only after its next stats tick.
    spritz_sandbox::isolation::eventually(Duration::from_secs(15), || async {
        vhost
            .close_connections()
            .await
            .ok()
            .filter(|closed| *closed >= 1)
    })
    .await?;
    first.closed().await;
    let second = tokio::time::timeout(READY, async {
        loop {
            links.changed().await.expect("supervisor alive");
            if let Some(link) = links.borrow().clone().filter(|l| !l.is_broken()) {
                return link;
            }
        }
    })
    .await?;

    assert!(second.generation() > first.generation());
    assert_eq!(broker.metrics().reconnects.get(), 1);
    broker
        .publish(WORK_EXCHANGE, WORK_ROUTING_KEY, b"{}", &envelope("Ev4"))
        .await?;
    assert_eq!(vhost_depth(&vhost).await?, 1);
    broker.close().await;
    vhost.delete().await
}

#[tokio::test]
async fn declaring_the_topology_twice_is_harmless() -> anyhow::Result<()> {
    let vhost = BrokerAdmin::from_env().create_vhost().await?;
    let one = broker_on(&vhost).await;
    let two = broker_on(&vhost).await;
    let link = one.wait_ready(READY).await.expect("first ready");
    two.wait_ready(READY).await.expect("second ready");
    let channel = link.create_channel().await?;
    topology::declare(&channel, &Default::default()).await?;
    one.close().await;
    two.close().await;
    vhost.delete().await
}

async fn vhost_depth(vhost: &TestVhost) -> anyhow::Result<u64> {
    spritz_sandbox::isolation::eventually(Duration::from_secs(10), || async {
        vhost
            .queue_depth(WORK_QUEUE)
            .await
            .ok()
            .filter(|depth| *depth > 0)
    })
    .await
}

#[tokio::test]
async fn a_dead_node_first_in_the_list_is_skipped_for_the_next_one() -> anyhow::Result<()> {
    let vhost = BrokerAdmin::from_env().create_vhost().await?;
    // Nothing listens on port 1: the connection is refused at once.
    let addresses = format!("amqp://guest:guest@127.0.0.1:1/%2f,{}", vhost.amqp_url());
    let settings = BrokerSettings::new(addresses, "spritz-service-test");
    let (broker, _task) = Broker::start(settings, BrokerMetrics::unregistered());
    let link = broker
        .wait_ready(READY)
        .await
        .expect("ready on the second node");
    let admin_host = std::env::var("SPRITZ_TEST_RABBITMQ_AMQP_HOST")
        .unwrap_or_else(|_| "127.0.0.1:5672".to_owned());
    assert_eq!(link.endpoint(), admin_host);
    broker.close().await;
    vhost.delete().await
}
