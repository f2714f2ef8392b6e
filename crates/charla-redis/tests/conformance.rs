//! The universal broker suite against a real `redis-server` started for each test.

use std::time::Duration;

use async_trait::async_trait;
use charla_core::{Broker, BrokerUrl};
use charla_redis::RedisBroker;
use charla_testkit::conformance::Target;
use charla_testkit::RedisServer;

/// A short consumer TTL so that the "killed consumer" cases recover within seconds.
const TTL_MS: u64 = 1500;

struct Redis {
    server: RedisServer,
}

#[async_trait]
impl Target for Redis {
    async fn connect(&self) -> Box<dyn Broker> {
        let url = format!("{}?consumer_ttl_ms={TTL_MS}", self.server.url());
        let url = BrokerUrl::parse(&url).expect("url");
        Box::new(
            RedisBroker::connect(&url)
                .await
                .expect("connect to redis-server"),
        )
    }

    fn recovery_time(&self) -> Duration {
        Duration::from_millis(TTL_MS * 2)
    }
}

async fn setup() -> Option<Box<dyn Target>> {
    let server = RedisServer::start()?;
    Some(Box::new(Redis { server }))
}

charla_testkit::conformance_suite!(setup());
