//! Outbound TLS trust (`SPRITZ_TLS_CA_FILE`): an HTTPS server and an `amqps://`
//! broker whose certificates a test CA signed are reached only by clients that were
//! given that CA. The broker is the real RabbitMQ behind a TLS front.

use std::time::Duration;

use spritz_sandbox::isolation::BrokerAdmin;
use spritz_sandbox::slack::FakeSlack;
use spritz_sandbox::tls::{TestCa, TlsFront};
use spritz_service::config::Env;
use spritz_service::metrics::BrokerMetrics;
use spritz_service::tls::{CA_FILE, Trust};
use spritz_service::{Broker, BrokerSettings};

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn an_https_server_of_a_private_ca_is_reached_only_with_that_ca_configured()
-> anyhow::Result<()> {
    let ca = TestCa::new()?;
    let slack = FakeSlack::start().await?;
    let front = TlsFront::before(&ca, &slack.base_url()).await?;
    let url = format!("https://127.0.0.1:{}/_sandbox/posts", front.addr().port());

    let platform_only = Trust::default().http_client_builder().build()?;
    let refused = platform_only.get(&url).send().await;
    assert!(
        refused.is_err(),
        "the platform roots do not hold the test CA"
    );
    assert_eq!(front.refused(WITHIN).await?.completed, 0);

    let trust = Trust::from_env(&Env::from_map([(
        CA_FILE,
        ca.pem_file().to_str().expect("utf-8"),
    )]))?;
    let with_ca = trust.http_client_builder().build()?;
    let answer = with_ca.get(&url).send().await?;
    assert_eq!(answer.status(), 200);
    assert!(front.handshakes().completed >= 1);
    Ok(())
}

#[tokio::test]
async fn an_amqps_broker_of_a_private_ca_is_reached_only_with_that_ca_configured()
-> anyhow::Result<()> {
    let ca = TestCa::new()?;
    let vhost = BrokerAdmin::from_env().create_vhost().await?;
    let front = TlsFront::before(&ca, &vhost.amqp_url()).await?;
    let url = front.url(&vhost.amqp_url(), "amqps");

    let (untrusting, _task) = Broker::start(
        BrokerSettings::new(url.to_string(), "spritz-tls-test"),
        BrokerMetrics::unregistered(),
    );
    front.refused(WITHIN).await?;
    assert!(
        !untrusting.is_ready(),
        "a broker it cannot verify is not used"
    );
    untrusting.close().await;

    let mut settings = BrokerSettings::new(url.to_string(), "spritz-tls-test");
    settings.trust = Trust::load(Some(ca.pem_file()))?;
    let (trusting, _task) = Broker::start(settings, BrokerMetrics::unregistered());
    assert!(
        trusting.wait_ready(WITHIN).await.is_some(),
        "connected through TLS"
    );
    assert!(front.handshakes().completed >= 1);
    trusting.close().await;
    vhost.delete().await
}

#[test]
fn a_ca_file_that_is_missing_or_not_pem_is_a_configuration_error_naming_the_variable() {
    let missing = Trust::from_env(&Env::from_map([(CA_FILE, "/nonexistent/ca.pem")]))
        .expect_err("a missing file is refused");
    assert_eq!(missing.variable, CA_FILE);

    let not_pem = std::env::temp_dir().join(format!("spritz-not-pem-{}", std::process::id()));
    std::fs::write(&not_pem, "not a certificate").expect("write");
    let empty = Trust::from_env(&Env::from_map([(
        CA_FILE,
        not_pem.to_str().expect("utf-8"),
    )]))
    .expect_err("a file without certificates is refused");
    assert_eq!(empty.variable, CA_FILE);
    let _ = std::fs::remove_file(not_pem);
}
