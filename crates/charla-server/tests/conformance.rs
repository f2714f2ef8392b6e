//! The universal broker suite with `charla serve` as the broker: charla's own `redis://`
//! backend (RedisBroker, on the redis crate) against this server, in-process on port 0, one
//! fresh server per case as the real-Redis suite does.

mod common;

use std::time::Duration;

use async_trait::async_trait;
use charla_core::{Broker, BrokerUrl};
use charla_redis::RedisBroker;
use charla_server::ServerConfig;
use charla_testkit::conformance::Target;

/// A short consumer TTL so that the "killed consumer" cases recover within seconds.
const TTL_MS: u64 = 1500;

struct Serve {
    server: common::TestServer,
}

#[async_trait]
impl Target for Serve {
    async fn connect(&self) -> Box<dyn Broker> {
        let url = format!("{}?consumer_ttl_ms={TTL_MS}", self.server.url());
        let url = BrokerUrl::parse(&url).expect("url");
        Box::new(
            RedisBroker::connect(&url)
                .await
                .expect("connect to charla serve"),
        )
    }

    fn recovery_time(&self) -> Duration {
        Duration::from_millis(TTL_MS * 2)
    }
}

async fn setup() -> Option<Box<dyn Target>> {
    let server = common::TestServer::start(ServerConfig::default());
    Some(Box::new(Serve { server }))
}

charla_testkit::conformance_suite!(setup());
