//! Shared by the RabbitMQ tests: where RabbitMQ is and whether it answers.
#![allow(dead_code)]

use charla_core::BrokerUrl;

/// `CHARLA_TEST_AMQP` or the local default (guest account, vhost `/`).
pub fn url_text() -> String {
    charla_testkit::rabbitmq::amqp_url()
}

pub fn url() -> BrokerUrl {
    BrokerUrl::parse(&url_text()).expect("CHARLA_TEST_AMQP is a valid amqp:// URL")
}

/// True when RabbitMQ answers; otherwise reports the missing service (a panic under
/// CI=true, a skip elsewhere).
pub async fn rabbitmq_available() -> bool {
    // The backend's warnings (reconnects, dead letters) show in a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "charla_amqp=info".to_owned()),
        )
        .with_test_writer()
        .try_init();
    charla_testkit::rabbitmq::rabbitmq_available().await
}
