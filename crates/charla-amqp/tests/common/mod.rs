//! Shared by the RabbitMQ tests: where RabbitMQ is and whether it answers.
#![allow(dead_code)]

use charla_core::BrokerUrl;

pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// `CHARLA_TEST_AMQP` or the local default.
pub fn url_text() -> String {
    std::env::var("CHARLA_TEST_AMQP").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

pub fn url() -> BrokerUrl {
    BrokerUrl::parse(&url_text()).expect("CHARLA_TEST_AMQP is a valid amqp:// URL")
}

/// True when something accepts TCP connections at the test URL's address; otherwise
/// reports the missing service (a panic under CI=true, a skip elsewhere).
pub async fn rabbitmq_available() -> bool {
    // The backend's warnings (reconnects, dead letters) show in a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "charla_amqp=info".to_owned()),
        )
        .with_test_writer()
        .try_init();
    let address = url().address();
    let ok = matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::net::TcpStream::connect(&address)
        )
        .await,
        Ok(Ok(_))
    );
    if !ok {
        charla_testkit::service_missing(&format!("RabbitMQ on {address}"));
    }
    ok
}
