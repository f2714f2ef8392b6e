//! Shared by the RabbitMQ tests: where RabbitMQ is and whether it answers.
#![allow(dead_code)]

use charla_core::BrokerUrl;
pub use charla_testkit::rabbitmq::RabbitMqLock;

/// `CHARLA_TEST_AMQP` or the local default (guest account, vhost `/`).
pub fn url_text() -> String {
    charla_testkit::rabbitmq::amqp_url()
}

pub fn url() -> BrokerUrl {
    BrokerUrl::parse(&url_text()).expect("CHARLA_TEST_AMQP is a valid amqp:// URL")
}

/// When RabbitMQ answers: a lock to hold while using it (no restart test runs meanwhile,
/// also from another test process). Otherwise reports the missing service (a panic under
/// CI=true, a skip elsewhere) and returns None.
pub async fn rabbitmq_available() -> Option<RabbitMqLock> {
    let lock = tokio::task::spawn_blocking(charla_testkit::rabbitmq::shared_use)
        .await
        .ok()?;
    available().await.then_some(lock)
}

/// As [`rabbitmq_available`], with the lock held alone (for a test that restarts RabbitMQ).
pub async fn rabbitmq_exclusive() -> Option<RabbitMqLock> {
    let lock = tokio::task::spawn_blocking(charla_testkit::rabbitmq::exclusive_use)
        .await
        .ok()?;
    available().await.then_some(lock)
}

async fn available() -> bool {
    // The backend's warnings (reconnects, dead letters) show in a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "charla_amqp=info".to_owned()),
        )
        .with_test_writer()
        .try_init();
    charla_testkit::rabbitmq::rabbitmq_available().await
}
