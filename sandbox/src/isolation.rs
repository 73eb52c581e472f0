//! Per-test isolation on the shared RabbitMQ and Redis: every test gets its own vhost
//! (so the fixed topology names of SPEC §4 never collide between parallel tests) and
//! its own Redis key prefix.
//!
//! Vhosts are created through the RabbitMQ management API (`rabbitmq_management`,
//! enabled by `scripts/test`). They are named `spritz-test-<uuid>`; the test script
//! deletes leftovers before and after a run, so a crashed test leaks nothing for long.

use std::time::Duration;

/// Where the management API and AMQP listener of the test broker are.
#[derive(Clone, Debug)]
pub struct BrokerAdmin {
    http: reqwest::Client,
    management_url: String,
    amqp_host: String,
    user: String,
    password: String,
}

impl BrokerAdmin {
    /// The local broker: `SPRITZ_TEST_RABBITMQ_MANAGEMENT_URL` (default
    /// `http://127.0.0.1:15672`) and AMQP on `SPRITZ_TEST_RABBITMQ_AMQP_HOST`
    /// (default `127.0.0.1:5672`), user guest/guest.
    pub fn from_env() -> Self {
        let management_url = std::env::var("SPRITZ_TEST_RABBITMQ_MANAGEMENT_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned());
        let amqp_host = std::env::var("SPRITZ_TEST_RABBITMQ_AMQP_HOST")
            .unwrap_or_else(|_| "127.0.0.1:5672".to_owned());
        Self {
            http: crate::tls::http_client_builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client"),
            management_url,
            amqp_host,
            user: "guest".to_owned(),
            password: "guest".to_owned(),
        }
    }

    /// A request to the management API at `/api/<path>`, as the admin user.
    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/{path}", self.management_url))
            .basic_auth(&self.user, Some(&self.password))
    }

    /// Creates a fresh vhost with full permissions for the test user.
    pub async fn create_vhost(&self) -> anyhow::Result<TestVhost> {
        let name = format!("spritz-test-{}", uuid::Uuid::new_v4().simple());
        self.api(reqwest::Method::PUT, &format!("vhosts/{name}"))
            .json(&serde_json::json!({"default_queue_type": "classic"}))
            .send()
            .await?
            .error_for_status()?;
        self.api(
            reqwest::Method::PUT,
            &format!("permissions/{name}/{}", self.user),
        )
        .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .send()
        .await?
        .error_for_status()?;
        Ok(TestVhost {
            inner: std::sync::Arc::new(VhostInner {
                admin: self.clone(),
                name,
                deleted: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }
}

/// A vhost that belongs to one test. It is deleted by [`TestVhost::delete`] (call it
/// after the processes using it have stopped) or, best effort, when the last clone is
/// dropped without that (a failed assertion).
#[derive(Clone, Debug)]
pub struct TestVhost {
    inner: std::sync::Arc<VhostInner>,
}

#[derive(Debug)]
struct VhostInner {
    admin: BrokerAdmin,
    name: String,
    deleted: std::sync::atomic::AtomicBool,
}

impl Drop for VhostInner {
    fn drop(&mut self) {
        if self.deleted.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        // Best effort, and never waited for: the broker closes the vhost's connections
        // before deleting it, and a connection owned by the runtime this drop blocks
        // could not answer the close. A vhost the process exits too early to delete is
        // removed by `scripts/test`.
        let admin = self.admin.clone();
        let name = self.name.clone();
        std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(delete_vhost(&admin, &name));
            }
        });
    }
}

async fn delete_vhost(admin: &BrokerAdmin, name: &str) {
    let _ = admin
        .api(reqwest::Method::DELETE, &format!("vhosts/{name}"))
        .send()
        .await;
}

impl TestVhost {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// An AMQP URL that points at this vhost.
    pub fn amqp_url(&self) -> String {
        format!(
            "amqp://{}:{}@{}/{}",
            self.inner.admin.user,
            self.inner.admin.password,
            self.inner.admin.amqp_host,
            self.inner.name
        )
    }

    /// Messages ready in `queue` (0 when the queue does not exist yet).
    pub async fn queue_depth(&self, queue: &str) -> anyhow::Result<u64> {
        let path = format!("queues/{}/{queue}", self.inner.name);
        let response = self
            .inner
            .admin
            .api(reqwest::Method::GET, &path)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(0);
        }
        let body: serde_json::Value = response.error_for_status()?.json().await?;
        Ok(body["messages"].as_u64().unwrap_or(0))
    }

    /// Force-closes every client connection to this vhost, as a broker restart or a
    /// network cut would, without disturbing tests in other vhosts.
    pub async fn close_connections(&self) -> anyhow::Result<usize> {
        let path = format!("vhosts/{}/connections", self.inner.name);
        let connections: Vec<serde_json::Value> = self
            .inner
            .admin
            .api(reqwest::Method::GET, &path)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut closed = 0;
        for connection in connections {
            let Some(name) = connection["name"].as_str() else {
                continue;
            };
            let path = format!(
                "connections/{}",
                // Form encoding writes spaces as `+`, which a path keeps literally.
                url::form_urlencoded::byte_serialize(name.as_bytes())
                    .collect::<String>()
                    .replace('+', "%20")
            );
            let status = self
                .inner
                .admin
                .api(reqwest::Method::DELETE, &path)
                .header("X-Reason", "spritz test: forced close")
                .send()
                .await?
                .status();
            if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
                closed += 1;
            }
        }
        Ok(closed)
    }

    /// Deletes the vhost and everything in it.
    pub async fn delete(self) -> anyhow::Result<()> {
        self.inner
            .deleted
            .store(true, std::sync::atomic::Ordering::SeqCst);
        delete_vhost(&self.inner.admin, &self.inner.name).await;
        Ok(())
    }
}

/// A Redis key prefix no other test uses.
pub fn redis_prefix() -> String {
    format!("spritz-test:{}:", uuid::Uuid::new_v4().simple())
}

/// The Redis URL tests use (`SPRITZ_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`).
pub fn redis_url() -> String {
    std::env::var("SPRITZ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Polls `probe` until it yields `Some`, or fails after `timeout`. For conditions
/// that have no push signal (a queue depth seen through the management API); fakes
/// with their own notifications should be awaited directly instead.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn vhost_exists(admin: &BrokerAdmin, name: &str) -> bool {
        let response = admin
            .api(reqwest::Method::GET, &format!("vhosts/{name}"))
            .send()
            .await
            .expect("management API");
        response.status().is_success()
    }

    #[tokio::test]
    async fn a_test_vhost_exists_until_deleted_and_reports_empty_queues_and_connections() {
        let admin = BrokerAdmin::from_env();
        let vhost = admin.create_vhost().await.expect("vhost");
        let name = vhost.name().to_owned();
        assert!(vhost_exists(&admin, &name).await);
        assert_eq!(vhost.queue_depth("no-such-queue").await.expect("depth"), 0);
        assert_eq!(vhost.close_connections().await.expect("closed"), 0);

        vhost.delete().await.expect("deleted");

        assert!(!vhost_exists(&admin, &name).await);
    }
}
