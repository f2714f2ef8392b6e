//! The universal broker suite against `memory://`. The broker lives inside the test process,
//! so the cases that need another process, a proxy or a restart are reported as skipped.

use std::process::ExitCode;

use async_trait::async_trait;
use charla_core::{Broker, BrokerUrl};
use charla_memory::MemoryBroker;
use charla_testkit::conformance::{BoxFuture, Suite, Target};

/// Each case gets its own named in-process broker, shared by all its connections.
struct Memory {
    url: BrokerUrl,
}

#[async_trait]
impl Target for Memory {
    async fn connect(&self) -> Box<dyn Broker> {
        Box::new(MemoryBroker::connect(&self.url).expect("memory broker"))
    }
}

fn setup() -> BoxFuture<'static, Option<Box<dyn Target>>> {
    Box::pin(async {
        let url = format!("memory://{}", charla_testkit::unique_name("t"));
        Some(Box::new(Memory {
            url: BrokerUrl::parse(&url).expect("url"),
        }) as Box<dyn Target>)
    })
}

fn open(url: String) -> BoxFuture<'static, charla_core::Result<Box<dyn Broker>>> {
    Box::pin(async move {
        let url = BrokerUrl::parse(&url)?;
        Ok(Box::new(MemoryBroker::connect(&url)?) as Box<dyn Broker>)
    })
}

fn main() -> ExitCode {
    charla_testkit::conformance::run(Suite {
        backend: "memory",
        setup,
        open,
    })
}
