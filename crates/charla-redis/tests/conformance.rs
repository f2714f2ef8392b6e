//! The universal broker suite, fault cases included, against a real `redis-server` started for
//! each case with `appendonly yes` and `appendfsync always` (so that a SIGKILL of the server
//! loses nothing it acknowledged, and the restart cases apply).

use std::process::ExitCode;

use charla_core::{Broker, BrokerUrl};
use charla_redis::RedisBroker;
use charla_testkit::conformance::{BoxFuture, ServerTarget, Suite, Target};
use charla_testkit::RedisServer;

fn setup() -> BoxFuture<'static, Option<Box<dyn Target>>> {
    Box::pin(async {
        let server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])?;
        Some(Box::new(ServerTarget::new(server, open)) as Box<dyn Target>)
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
