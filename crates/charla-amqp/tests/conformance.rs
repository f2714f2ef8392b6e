//! The universal broker suite against a real RabbitMQ (`CHARLA_TEST_AMQP`, default
//! amqp://guest:guest@127.0.0.1:5672/%2f). Every case uses fresh random names.

mod common;

use async_trait::async_trait;
use charla_amqp::AmqpBroker;
use charla_core::{Broker, BrokerUrl};
use charla_testkit::conformance::Target;

struct RabbitMq {
    url: BrokerUrl,
    /// Held for the test's duration: no restart test runs meanwhile.
    _lock: common::RabbitMqLock,
}

#[async_trait]
impl Target for RabbitMq {
    async fn connect(&self) -> Box<dyn Broker> {
        Box::new(
            AmqpBroker::connect(&self.url)
                .await
                .expect("connect to RabbitMQ"),
        )
    }
}

async fn setup() -> Option<Box<dyn Target>> {
    let lock = common::rabbitmq_available().await?;
    Some(Box::new(RabbitMq {
        url: common::url(),
        _lock: lock,
    }))
}

charla_testkit::conformance_suite!(setup());
