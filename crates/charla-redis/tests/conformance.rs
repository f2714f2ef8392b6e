//! The universal broker suite, fault cases included, against a real `redis-server` started for
//! each case with `appendonly yes` and `appendfsync always` (so that a SIGKILL of the server
//! loses nothing it acknowledged, and the restart cases apply).

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use charla_core::{Broker, BrokerUrl};
use charla_redis::RedisBroker;
use charla_testkit::conformance::{BoxFuture, Suite, Target};
use charla_testkit::RedisServer;

/// A short consumer TTL so that the "killed consumer" cases recover within seconds.
const TTL_MS: u64 = 1500;

struct Redis {
    server: Mutex<RedisServer>,
    url: String,
}

#[async_trait]
impl Target for Redis {
    async fn connect(&self) -> Box<dyn Broker> {
        open(self.url.clone())
            .await
            .expect("connect to redis-server")
    }

    fn recovery_time(&self) -> Duration {
        Duration::from_millis(TTL_MS * 2)
    }

    fn url(&self) -> Option<String> {
        Some(self.url.clone())
    }

    fn can_restart(&self) -> bool {
        true
    }

    async fn restart(&self) {
        let mut server = self.server.lock().unwrap_or_else(|p| p.into_inner());
        server.restart(); // SIGKILL, then the same port and directory
    }
}

fn setup() -> BoxFuture<'static, Option<Box<dyn Target>>> {
    Box::pin(async {
        let server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])?;
        let url = format!("{}?consumer_ttl_ms={TTL_MS}", server.url());
        Some(Box::new(Redis {
            server: Mutex::new(server),
            url,
        }) as Box<dyn Target>)
    })
}

fn open(url: String) -> BoxFuture<'static, charla_core::Result<Box<dyn Broker>>> {
    Box::pin(async move {
        let url = BrokerUrl::parse(&url)?;
        Ok(Box::new(RedisBroker::connect(&url).await?) as Box<dyn Broker>)
    })
}

fn main() -> ExitCode {
    charla_testkit::conformance::run(Suite {
        backend: "redis",
        setup,
        open,
    })
}
