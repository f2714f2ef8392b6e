//! The universal broker suite against `memory://`.

use async_trait::async_trait;
use charla_core::{Broker, BrokerUrl};
use charla_memory::MemoryBroker;
use charla_testkit::conformance::Target;

/// Each test gets its own named in-process broker, shared by all its connections.
struct Memory {
    url: BrokerUrl,
}

#[async_trait]
impl Target for Memory {
    async fn connect(&self) -> Box<dyn Broker> {
        Box::new(MemoryBroker::connect(&self.url).expect("memory broker"))
    }
}

async fn setup() -> Option<Box<dyn Target>> {
    let url = format!("memory://{}", charla_testkit::unique_name("t"));
    Some(Box::new(Memory {
        url: BrokerUrl::parse(&url).expect("url"),
    }))
}

charla_testkit::conformance_suite!(setup());
