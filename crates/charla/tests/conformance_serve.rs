//! The universal broker suite, fault cases included, with `charla serve` as the broker: the
//! built `charla` binary run as a real process per case (`--appendonly yes --appendfsync
//! always`, so a SIGKILL loses nothing it acknowledged and the restart cases apply), reached
//! through charla's own `redis://` backend.

use std::path::Path;
use std::process::ExitCode;

use charla_core::{Broker, BrokerUrl};
use charla_redis::RedisBroker;
use charla_testkit::conformance::{BoxFuture, ServerTarget, Suite, Target};
use charla_testkit::RedisServer;

fn setup() -> BoxFuture<'static, Option<Box<dyn Target>>> {
    Box::pin(async {
        let server = RedisServer::start_charla(
            Path::new(env!("CARGO_BIN_EXE_charla")),
            &["--appendonly", "yes", "--appendfsync", "always"],
        );
        Some(Box::new(ServerTarget::new(server, open)) as Box<dyn Target>)
    })
}

/// charla's own `redis://` backend, as `charla send` / `listen` use it.
fn open(url: String) -> BoxFuture<'static, charla_core::Result<Box<dyn Broker>>> {
    Box::pin(async move {
        let url = BrokerUrl::parse(&url)?;
        Ok(Box::new(RedisBroker::connect(&url).await?) as Box<dyn Broker>)
    })
}

fn main() -> ExitCode {
    charla_testkit::conformance::run(Suite {
        backend: "serve",
        setup,
        open,
    })
}
