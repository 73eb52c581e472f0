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
    topology::declare(link.connection(), &Default::default()).await?;
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

/// The queue's arguments as the management API reports them.
async fn queue_arguments(vhost: &TestVhost, queue: &str) -> anyhow::Result<serde_json::Value> {
    let management = std::env::var("SPRITZ_TEST_RABBITMQ_MANAGEMENT_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned());
    let body: serde_json::Value = spritz_sandbox::tls::http_client()
        .get(format!("{management}/api/queues/{}/{queue}", vhost.name()))
        .basic_auth("guest", Some("guest"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["arguments"].clone())
}

#[tokio::test]
async fn every_durable_queue_is_a_quorum_queue_asking_for_three_replicas_even_on_one_node()
-> anyhow::Result<()> {
    let vhost = BrokerAdmin::from_env().create_vhost().await?;
    let broker = broker_on(&vhost).await;
    broker
        .wait_ready(READY)
        .await
        .expect("ready on a single node");
    let delay_queue = topology::work_retry_queue(Duration::from_secs(1));
    for queue in [
        WORK_QUEUE,
        topology::PARKING_LOT_QUEUE,
        topology::BACKEND_SYNC_QUEUE,
        delay_queue.as_str(),
    ] {
        let arguments = queue_arguments(&vhost, queue).await?;
        assert_eq!(arguments["x-queue-type"], "quorum", "{queue}: {arguments}");
        assert_eq!(
            arguments["x-quorum-initial-group-size"], 3,
            "{queue}: {arguments}"
        );
    }
    assert_eq!(
        queue_arguments(&vhost, WORK_QUEUE).await?["x-delivery-limit"],
        20
    );
    assert_eq!(
        queue_arguments(&vhost, &delay_queue).await?["x-message-ttl"],
        1000
    );
    broker.close().await;
    vhost.delete().await
}

/// Declares `queue` durable with `arguments`, as an earlier release or an operator did.
async fn predeclare(
    vhost: &TestVhost,
    queue: &str,
    arguments: &[(&str, lapin::types::AMQPValue)],
) -> anyhow::Result<()> {
    let connection =
        lapin::Connection::connect(&vhost.amqp_url(), lapin::ConnectionProperties::default())
            .await?;
    let channel = connection.create_channel().await?;
    let mut table = lapin::types::FieldTable::default();
    for (key, value) in arguments {
        table.insert((*key).into(), value.clone());
    }
    channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            table,
        )
        .await?;
    connection.close(200, "done".into()).await?;
    Ok(())
}

fn text(value: &str) -> lapin::types::AMQPValue {
    lapin::types::AMQPValue::LongString(value.into())
}

fn number(value: i64) -> lapin::types::AMQPValue {
    lapin::types::AMQPValue::LongLongInt(value)
}

#[tokio::test]
async fn queues_an_earlier_release_declared_are_kept_and_the_process_becomes_ready()
-> anyhow::Result<()> {
    let vhost = BrokerAdmin::from_env().create_vhost().await?;
    // The work queue without x-quorum-initial-group-size, a delay tier as a classic
    // queue: what the releases before the cluster settings declared.
    predeclare(
        &vhost,
        WORK_QUEUE,
        &[
            ("x-queue-type", text("quorum")),
            (
                "x-dead-letter-exchange",
                text(topology::DEAD_LETTER_EXCHANGE),
            ),
            ("x-delivery-limit", number(20)),
            ("x-dead-letter-strategy", text("at-least-once")),
            ("x-overflow", text("reject-publish")),
        ],
    )
    .await?;
    let delay_queue = topology::work_retry_queue(Duration::from_secs(1));
    predeclare(
        &vhost,
        &delay_queue,
        &[
            ("x-message-ttl", number(1000)),
            ("x-dead-letter-exchange", text(WORK_EXCHANGE)),
            ("x-dead-letter-routing-key", text(WORK_ROUTING_KEY)),
        ],
    )
    .await?;
    let broker = broker_on(&vhost).await;
    broker
        .wait_ready(READY)
        .await
        .expect("ready with the earlier queues");
    assert!(
        queue_arguments(&vhost, WORK_QUEUE).await?["x-quorum-initial-group-size"].is_null(),
        "the existing work queue is left as it was"
    );
    assert!(queue_arguments(&vhost, &delay_queue).await?["x-queue-type"].is_null());
    assert_eq!(
        queue_arguments(&vhost, topology::PARKING_LOT_QUEUE).await?["x-quorum-initial-group-size"],
        3,
        "a queue that did not exist is created in the current form"
    );
    broker.close().await;
    vhost.delete().await
}

#[tokio::test]
async fn a_work_queue_with_another_delivery_limit_still_keeps_the_process_unready()
-> anyhow::Result<()> {
    let vhost = BrokerAdmin::from_env().create_vhost().await?;
    predeclare(
        &vhost,
        WORK_QUEUE,
        &[
            ("x-queue-type", text("quorum")),
            (
                "x-dead-letter-exchange",
                text(topology::DEAD_LETTER_EXCHANGE),
            ),
            ("x-delivery-limit", number(5)),
            ("x-dead-letter-strategy", text("at-least-once")),
            ("x-overflow", text("reject-publish")),
        ],
    )
    .await?;
    let broker = broker_on(&vhost).await;
    assert!(
        broker.wait_ready(Duration::from_secs(3)).await.is_none(),
        "a topology it did not declare never makes the process ready"
    );
    broker.close().await;
    vhost.delete().await
}
