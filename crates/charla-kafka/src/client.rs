//! What every librdkafka client of a connection shares: the settings read from the URL, the
//! client context (librdkafka's log through `tracing`), the one place Kafka errors become [`BrokerError`]s, and running librdkafka's
//! blocking calls off the async runtime.

use std::time::Duration;

use charla_core::{BrokerError, BrokerUrl, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;

pub const BACKEND: &str = "kafka";

/// URL query options this backend reads.
const OPTIONS: &[&str] = &[
    "partitions",
    "replication",
    "max_deliveries",
    "session_timeout_ms",
    "delivery_timeout_ms",
    "linger_ms",
    "delete_topics",
];

/// Settings of one connection, from the URL.
#[derive(Clone)]
pub struct Settings {
    /// `host:port` of the bootstrap broker.
    pub address: String,
    /// Partitions of a topic charla creates.
    pub partitions: i32,
    /// Replication factor of a topic charla creates.
    pub replication: i32,
    pub max_bytes: usize,
    pub max_deliveries: u32,
    pub session_timeout: Duration,
    pub delivery_timeout: Duration,
    pub linger_ms: u32,
    /// `purge` deletes the room's topics (`?delete_topics=false` keeps them and only forgets
    /// charla's groups: for brokers whose topic deletion is unsafe, such as tansu 0.6, which
    /// deletes every topic of the cluster whatever topic was named).
    pub delete_topics: bool,
}

impl Settings {
    pub fn from_url(url: &BrokerUrl) -> Result<Settings> {
        let invalid = |reason: String| BrokerError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        if url.url().password().is_some() || !url.url().username().is_empty() {
            return Err(invalid(
                "kafka:// takes no user or password (SASL is not supported yet)".into(),
            ));
        }
        if let Some((k, _)) = url
            .url()
            .query_pairs()
            .find(|(k, _)| !OPTIONS.contains(&k.as_ref()) && k != "max_message_bytes")
        {
            return Err(invalid(format!(
                "unknown option {k}= (kafka:// knows {} and max_message_bytes)",
                OPTIONS.join(", ")
            )));
        }
        let partitions = url.option_num::<i32>("partitions")?.unwrap_or(3);
        if !(1..=10_000).contains(&partitions) {
            return Err(invalid("partitions= must be between 1 and 10000".into()));
        }
        let replication = url.option_num::<i32>("replication")?.unwrap_or(1);
        if replication < 1 {
            return Err(invalid("replication= must be at least 1".into()));
        }
        let max_deliveries = url.max_deliveries()?;
        // Kafka's brokers refuse session timeouts under group.min.session.timeout.ms (6 s by
        // default): the default is the shortest they take, so a killed consumer's partitions
        // move to the others quickly.
        let session_ms = url.option_num::<u64>("session_timeout_ms")?.unwrap_or(6000);
        let delivery_ms = url
            .option_num::<u64>("delivery_timeout_ms")?
            .unwrap_or(60_000);
        let delete_topics = match url.option("delete_topics").as_deref() {
            None | Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            Some(other) => {
                return Err(invalid(format!(
                    "delete_topics={other}: expected true or false"
                )))
            }
        };
        Ok(Settings {
            address: url.address(),
            partitions,
            replication,
            max_bytes: url.max_message_bytes()?,
            max_deliveries,
            session_timeout: Duration::from_millis(session_ms),
            delivery_timeout: Duration::from_millis(delivery_ms),
            linger_ms: url.option_num::<u32>("linger_ms")?.unwrap_or(2),
            delete_topics,
        })
    }

    /// What every client of this connection is configured with.
    pub fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.address)
            .set("client.id", "charla")
            .set("socket.keepalive.enable", "true")
            // Our own size check runs first; the client must not refuse what the limit allows
            // (a record carries ~100 bytes of framing around the payload).
            .set(
                "message.max.bytes",
                (self.max_bytes + 64 * 1024).to_string(),
            )
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "2000")
            .set_log_level(RDKafkaLogLevel::Warning);
        c
    }

    /// The idempotent producer: acks=all, in order, retried through broker restarts until
    /// the delivery timeout.
    pub fn producer(&self) -> Result<FutureProducer<Tracing>> {
        self.base()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger_ms.to_string())
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            )
            .create_with_context(self.context())
            .map_err(|e| self.error(e))
    }

    pub fn context(&self) -> Tracing {
        Tracing
    }

    /// A Kafka error as a [`BrokerError`] naming this broker.
    pub fn error(&self, e: KafkaError) -> BrokerError {
        map_error(&self.address, e)
    }
}

/// librdkafka's client context: its log lines go to `tracing` (errors are reported to the
/// caller through results, so its own messages are details).
#[derive(Clone)]
pub struct Tracing;

impl ClientContext for Tracing {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::debug!(target: "librdkafka", "{fac}: {log_message}")
            }
            _ => tracing::trace!(target: "librdkafka", "{fac}: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
    }
}

/// Metadata and fixed-offset reads only: no group, so no rebalances to handle.
impl rdkafka::consumer::ConsumerContext for Tracing {}

/// Short text of a Kafka error: the code's description, not the enum's debug form.
pub fn describe(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{code}"),
        None => e.to_string(),
    }
}

/// Errors that mean "the broker is not there right now": worth retrying after a reconnect.
pub fn is_transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::MessageTimedOut
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::CoordinatorLoadInProgress
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::BrokerNotAvailable
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::KafkaStorageError
    )
}

/// Errors that say a group moved on (a rebalance): a commit refused for one of these leaves
/// the records to the partition's new owner, which reads them again — nothing is lost.
pub fn is_rebalance(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::RebalanceInProgress
            | C::IllegalGeneration
            | C::UnknownMemberId
            | C::State
            | C::NoOffset
            | C::FencedInstanceId
            | C::StaleMemberEpoch
            | C::AssignmentLost
    )
}

pub fn map_error(address: &str, e: KafkaError) -> BrokerError {
    use RDKafkaErrorCode as C;
    let Some(code) = e.rdkafka_error_code() else {
        return BrokerError::backend(BACKEND, e);
    };
    match code {
        C::MessageSizeTooLarge | C::InvalidMessageSize => BrokerError::InvalidArgument(format!(
            "the Kafka broker at {address} refused the message as too large \
             ({code}; see its message.max.bytes)"
        )),
        C::InvalidTopic => BrokerError::InvalidArgument(format!(
            "the Kafka broker at {address} refused the topic name ({code})"
        )),
        C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication => BrokerError::Auth {
            address: address.to_owned(),
            reason: code.to_string(),
        },
        code if is_transient(code) => BrokerError::Unavailable {
            address: address.to_owned(),
            reason: code.to_string(),
        },
        _ => BrokerError::backend(BACKEND, format!("{code}")),
    }
}

/// Run one of librdkafka's blocking calls (metadata, commits, watermarks) on the blocking
/// pool, so the async runtime's threads never wait on the network.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::backend(BACKEND, format!("a Kafka client call failed: {e}")))
}
