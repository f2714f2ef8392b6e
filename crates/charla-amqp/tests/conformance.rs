//! The universal broker suite, fault cases included, against a real RabbitMQ
//! (`CHARLA_TEST_AMQP`, default amqp://guest:guest@127.0.0.1:5672/%2f). Every case uses fresh
//! random names; the restart cases stop and start the local node (`rabbitmqctl`) while holding
//! the RabbitMQ lock alone, so no other RabbitMQ test runs meanwhile.

mod common;

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use charla_amqp::AmqpBroker;
use charla_core::{Broker, BrokerUrl};
use charla_testkit::conformance::{BoxFuture, Suite, Target};
use charla_testkit::rabbitmq::{self, RabbitMqLock};

/// A short AMQP heartbeat (seconds), so that a stalled connection is noticed by both sides
/// within seconds and RabbitMQ hands its unacked messages to other consumers.
const HEARTBEAT_S: u64 = 2;

struct RabbitMq {
    url: String,
    /// Shared while the case runs; exchanged for the exclusive lock by a restart case.
    lock: Mutex<Option<RabbitMqLock>>,
}

#[async_trait]
impl Target for RabbitMq {
    async fn connect(&self) -> Box<dyn Broker> {
        open(self.url.clone()).await.expect("connect to RabbitMQ")
    }

    fn recovery_time(&self) -> Duration {
        // Two missed heartbeats close the connection; then the node requeues.
        Duration::from_secs(HEARTBEAT_S * 3)
    }

    fn url(&self) -> Option<String> {
        Some(self.url.clone())
    }

    fn can_restart(&self) -> bool {
        rabbitmq::is_local()
    }

    async fn prepare_restart(&self) {
        // Give the shared lock back first: this process's other cases hold theirs until done.
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
        let exclusive = tokio::task::spawn_blocking(rabbitmq::exclusive_use)
            .await
            .expect("lock");
        *self.lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(exclusive);
    }

    async fn restart(&self) {
        tokio::task::spawn_blocking(|| rabbitmq::restart_local(Duration::from_secs(1)))
            .await
            .expect("restart task")
            .expect("restart RabbitMQ");
    }
}

fn setup() -> BoxFuture<'static, Option<Box<dyn Target>>> {
    Box::pin(async {
        let lock = common::rabbitmq_available().await?;
        Some(Box::new(RabbitMq {
            url: charla_testkit::with_option(&common::url_text(), "heartbeat", HEARTBEAT_S),
            lock: Mutex::new(Some(lock)),
        }) as Box<dyn Target>)
    })
}

fn open(url: String) -> BoxFuture<'static, charla_core::Result<Box<dyn Broker>>> {
    Box::pin(async move {
        let url = BrokerUrl::parse(&url)?;
        Ok(Box::new(AmqpBroker::connect(&url).await?) as Box<dyn Broker>)
    })
}

fn main() -> ExitCode {
    charla_testkit::conformance::run(Suite {
        backend: "amqp",
        setup,
        open,
    })
}
