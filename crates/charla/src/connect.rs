//! From a URL to a connected [`Broker`]: the one place that knows every backend crate.

use anyhow::Result;
use charla_core::{BackendKind, Broker, BrokerError, BrokerUrl};

/// Connect to the broker the URL names.
pub async fn connect(url: &str) -> Result<Box<dyn Broker>, BrokerError> {
    let url = BrokerUrl::parse(url)?;
    match url.kind() {
        BackendKind::Memory => Ok(Box::new(charla_memory::MemoryBroker::connect(&url)?)),
        BackendKind::Redis => Ok(Box::new(charla_redis::RedisBroker::connect(&url).await?)),
        BackendKind::Amqp => Ok(Box::new(charla_amqp::AmqpBroker::connect(&url).await?)),
        BackendKind::Kafka => Ok(Box::new(charla_kafka::KafkaBroker::connect(&url).await?)),
    }
}

/// Connect, retrying transient failures (broker restarting) with exponential backoff, up to
/// `attempts` tries; errors that will not go away (bad URL, wrong password) fail at once.
pub async fn connect_with_retry(
    url: &str,
    attempts: u32,
    on_retry: impl Fn(&BrokerError, std::time::Duration),
) -> Result<Box<dyn Broker>, BrokerError> {
    let mut delay = std::time::Duration::from_millis(200);
    let mut tries = 0;
    loop {
        match connect(url).await {
            Ok(b) => return Ok(b),
            Err(e) if e.is_transient() && tries + 1 < attempts => {
                on_retry(&e, delay);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
