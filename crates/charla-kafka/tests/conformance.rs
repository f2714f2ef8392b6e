//! The universal broker suite, fault cases included, against a real Kafka-protocol broker:
//! a `tansu` process per case (see `charla_testkit::KafkaServer`), killed with SIGKILL and
//! started again on the same port and data for the restart cases. A Kafka client connects to
//! the address the broker *advertises* after the first request, so a fault proxy placed in
//! front of the broker later would be bypassed: each broker starts behind its own proxy and
//! advertises it, and the fault cases get that proxy (which therefore carries every client,
//! so the cases that fail one client's network alone are skipped by name).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use charla_core::{Broker, BrokerUrl};
use charla_kafka::KafkaBroker;
use charla_testkit::conformance::{BoxFuture, Suite, Target};
use charla_testkit::proxy::FaultProxy;
use charla_testkit::KafkaServer;

struct Kafka {
    server: Mutex<KafkaServer>,
    proxy: Arc<FaultProxy>,
    url: String,
}

#[async_trait]
impl Target for Kafka {
    async fn connect(&self) -> Box<dyn Broker> {
        open(self.url.clone()).await.expect("connect to Kafka")
    }

    fn recovery_time(&self) -> Duration {
        // The session timeout, then the group's rebalance.
        Duration::from_secs(12)
    }

    fn url(&self) -> Option<String> {
        Some(self.url.clone())
    }

    async fn fault_proxy(&self) -> Option<(Arc<FaultProxy>, String)> {
        Some((self.proxy.clone(), self.url.clone()))
    }

    fn proxy_isolates(&self) -> bool {
        false
    }

    /// tansu 0.6's group coordinator notices an expired session inside the heartbeat of
    /// another member: it drops the dead member and answers REBALANCE_IN_PROGRESS, but the
    /// group's own state check then finds no member missing and keeps the group formed with
    /// the old assignment (coordinator/group/administrator.rs, `Wrapper::missed_heartbeat`
    /// after `Inner<Formed>::heartbeat`). The waiting member rejoins the same generation and
    /// gets nothing; seen in the broker log as one "missed heartbeat" and no new generation.
    /// Apache Kafka starts a rebalance on session expiry.
    fn rebalances_on_expiry(&self) -> bool {
        false
    }

    fn can_restart(&self) -> bool {
        true
    }

    async fn restart(&self) {
        self.server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .restart();
    }
}

fn setup() -> BoxFuture<'static, Option<Box<dyn Target>>> {
    Box::pin(async {
        let port = charla_testkit::free_port();
        let proxy = FaultProxy::start(([127, 0, 0, 1], port).into()).await;
        let advertised = proxy.addr().port();
        let server = tokio::task::spawn_blocking(move || {
            KafkaServer::start_on(Some(port), Some(advertised))
        })
        .await
        .expect("start task")?;
        Some(Box::new(Kafka {
            server: Mutex::new(server),
            // tansu 0.6 deletes every topic of the cluster when one is deleted (its
            // sql/topic_delete_by.sql filters on the cluster only), and then fails reads of
            // them: the suite's clean-up keeps topics (each case has a broker of its own).
            url: format!("kafka://127.0.0.1:{advertised}?delete_topics=false"),
            proxy: Arc::new(proxy),
        }) as Box<dyn Target>)
    })
}

fn open(url: String) -> BoxFuture<'static, charla_core::Result<Box<dyn Broker>>> {
    Box::pin(async move {
        let url = BrokerUrl::parse(&url)?;
        Ok(Box::new(KafkaBroker::connect(&url).await?) as Box<dyn Broker>)
    })
}

fn main() -> ExitCode {
    charla_testkit::conformance::run(Suite {
        backend: "kafka",
        setup,
        open,
    })
}
