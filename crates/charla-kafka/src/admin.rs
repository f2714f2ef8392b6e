//! Names and housekeeping: which topic and group a room maps to, creating and deleting
//! topics, the cluster overview `charla check` prints, and reading a topic whole (dead
//! letters).

use std::time::Duration;

use charla_core::{BrokerError, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::client::{blocking, describe, Settings, Tracing};

/// Topics and groups charla makes for its own bookkeeping start with this; a routing pattern
/// never matches them.
pub const RESERVED_PREFIX: &str = "charla-";

/// Kafka's longest topic name.
const MAX_TOPIC_LEN: usize = 249;

/// librdkafka wants a group id even to read assigned partitions; consumers that only
/// `assign` (never subscribe, never commit) use this one, which never joins or stores anything.
pub const READER_GROUP: &str = "charla-reader";

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The topic of a room, or a clear error when Kafka would refuse the name.
pub fn topic_name(room: &str) -> Result<&str> {
    let legal = room
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if room.is_empty() || room == "." || room == ".." || !legal || room.len() > MAX_TOPIC_LEN {
        return Err(BrokerError::InvalidArgument(format!(
            "'{}' cannot be a Kafka topic: use 1 to {MAX_TOPIC_LEN} letters, digits, '.', '_' \
             or '-' (not '.' or '..' alone)",
            room.escape_debug()
        )));
    }
    Ok(room)
}

/// Where a room's poison messages go.
pub fn dead_letter_topic(room: &str) -> Result<String> {
    topic_name(&format!("{RESERVED_PREFIX}dead.{}", topic_name(room)?)).map(str::to_owned)
}

/// The consumer group every queue-mode consumer of a room joins.
pub fn queue_group(room: &str) -> String {
    format!("{RESERVED_PREFIX}queue.{room}")
}

/// What `charla check` shows of a cluster.
pub struct Overview {
    pub brokers: usize,
    /// `topic (N partitions)`, charla's own topics last.
    pub topics: Vec<String>,
}

/// The admin client of a connection.
pub struct Admin {
    /// Shared with the blocking calls that read metadata through it.
    client: std::sync::Arc<AdminClient<Tracing>>,
    address: String,
}

impl Admin {
    pub fn new(settings: &Settings) -> Result<Admin> {
        let client = settings
            .base()
            .create_with_context(settings.context())
            .map_err(|e| settings.error(e))?;
        Ok(Admin {
            client: std::sync::Arc::new(client),
            address: settings.address.clone(),
        })
    }

    fn options() -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(ADMIN_TIMEOUT))
            .operation_timeout(Some(ADMIN_TIMEOUT))
    }

    /// Create a topic with the configured partitions; one that exists already is fine.
    pub async fn create_topic(&self, settings: &Settings, topic: &str) -> Result<()> {
        let new = NewTopic::new(
            topic,
            settings.partitions,
            TopicReplication::Fixed(settings.replication),
        );
        let results = self
            .client
            .create_topics([&new], &Self::options())
            .await
            .map_err(|e| settings.error(e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(match code {
                        RDKafkaErrorCode::InvalidTopic => BrokerError::InvalidArgument(format!(
                            "the Kafka broker at {} refused the topic name '{name}' ({code})",
                            self.address
                        )),
                        RDKafkaErrorCode::InvalidReplicationFactor
                        | RDKafkaErrorCode::InvalidPartitions => {
                            BrokerError::InvalidArgument(format!(
                                "cannot create topic '{name}' with {} partitions and \
                                 replication {}: {code} (see ?partitions= and ?replication=)",
                                settings.partitions, settings.replication
                            ))
                        }
                        code => crate::client::map_error(
                            &self.address,
                            rdkafka::error::KafkaError::AdminOp(code),
                        ),
                    })
                }
            }
        }
        Ok(())
    }

    /// Delete topics; ones that do not exist are fine.
    pub async fn delete_topics(&self, topics: &[String]) -> Result<()> {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let results = self
            .client
            .delete_topics(&names, &Self::options())
            .await
            .map_err(|e| crate::client::map_error(&self.address, e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => {
                    return Err(BrokerError::backend(
                        crate::client::BACKEND,
                        format!("cannot delete topic '{name}': {code}"),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Forget a consumer group and its committed offsets (best effort: housekeeping only).
    pub async fn delete_group(&self, group: &str) {
        if let Err(e) = self.client.delete_groups(&[group], &Self::options()).await {
            tracing::debug!("deleting Kafka group {group}: {}", describe(&e));
        }
    }

    /// Broker count and topics.
    pub async fn overview(&self, settings: &Settings) -> Result<Overview> {
        let client = self.client.clone();
        let settings2 = settings.clone();
        let (brokers, mut topics) = blocking(move || {
            let md = client
                .inner()
                .fetch_metadata(None, ADMIN_TIMEOUT)
                .map_err(|e| settings2.error(e))?;
            let topics: Vec<(String, usize)> = md
                .topics()
                .iter()
                .filter(|t| !t.name().starts_with("__"))
                .map(|t| (t.name().to_owned(), t.partitions().len()))
                .collect();
            Ok::<_, BrokerError>((md.brokers().len(), topics))
        })
        .await??;
        topics.sort_by_key(|(name, _)| (name.starts_with(RESERVED_PREFIX), name.clone()));
        Ok(Overview {
            brokers,
            topics: topics
                .into_iter()
                .map(|(name, n)| format!("{name} ({n} partition{})", if n == 1 { "" } else { "s" }))
                .collect(),
        })
    }

    /// The names of every topic of the cluster, as the metadata lists them.
    pub async fn topic_names(&self, settings: &Settings) -> Result<Vec<String>> {
        let client = self.client.clone();
        let settings = settings.clone();
        blocking(move || {
            let md = client
                .inner()
                .fetch_metadata(None, ADMIN_TIMEOUT)
                .map_err(|e| settings.error(e))?;
            Ok::<_, BrokerError>(md.topics().iter().map(|t| t.name().to_owned()).collect())
        })
        .await?
    }

    /// Up to `limit` records of a topic, oldest first per partition (partitions in order),
    /// from the first one stored at or after `since_ms` when given; an absent topic has none.
    pub async fn read_records(
        &self,
        settings: &Settings,
        topic: &str,
        limit: usize,
        since_ms: Option<i64>,
    ) -> Result<Vec<Stored>> {
        let consumer = plain_consumer(settings)?;
        let topic = topic.to_owned();
        let settings = settings.clone();
        blocking(move || {
            let err = |e| settings.error(e);
            let ends = match partition_ends(&consumer, &topic) {
                Ok(ends) => ends,
                Err(e) if is_unknown_topic(&e) => return Ok(Vec::new()),
                Err(e) => return Err(err(e)),
            };
            let mut out = Vec::new();
            for (partition, low, high) in ends {
                let start = match since_ms {
                    Some(t) => first_at(&consumer, &topic, partition, t).map_err(err)?,
                    None => Some(low),
                };
                let Some(start) = start.filter(|s| *s < high && out.len() < limit) else {
                    continue;
                };
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&topic, partition, Offset::Offset(start))
                    .map_err(err)?;
                consumer.assign(&tpl).map_err(err)?;
                let mut next = start;
                while next < high && out.len() < limit {
                    match consumer.poll(ADMIN_TIMEOUT) {
                        Some(Ok(m)) => {
                            next = m.offset() + 1;
                            out.push(Stored::of(&m));
                        }
                        Some(Err(e)) => return Err(err(e)),
                        None => {
                            return Err(BrokerError::Unavailable {
                                address: settings.address.clone(),
                                reason: format!("reading {topic} timed out"),
                            })
                        }
                    }
                }
            }
            Ok(out)
        })
        .await?
    }
}

/// The offset of the first record of a partition stored at or after `time_ms` (`None`: none
/// is). Blocking.
fn first_at<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    time_ms: i64,
) -> rdkafka::error::KafkaResult<Option<i64>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(time_ms))?;
    let found = consumer.offsets_for_times(tpl, ADMIN_TIMEOUT)?;
    Ok(found
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
}

/// A record as read back: where it is, its key, payload and text headers.
#[derive(Debug, Clone)]
pub struct Stored {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Stored {
    fn of(m: &rdkafka::message::BorrowedMessage<'_>) -> Stored {
        Stored {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers: text_headers(m),
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Prefix of the record headers on a dead letter saying why it died
/// (`x-charla-dead-reason`, …: `DeadLetter::fields`).
pub const DEAD_HEADER_PREFIX: &str = "x-charla-dead-";

/// A dead letter's fields as record headers.
pub(crate) fn dead_headers(letter: &charla_core::DeadLetter) -> rdkafka::message::OwnedHeaders {
    letter.fields().into_iter().fold(
        rdkafka::message::OwnedHeaders::new(),
        |headers, (name, value)| {
            headers.insert(rdkafka::message::Header {
                key: &format!("{DEAD_HEADER_PREFIX}{name}"),
                value: Some(value.as_bytes()),
            })
        },
    )
}

/// A record's headers whose values are text.
fn text_headers(m: &rdkafka::message::BorrowedMessage<'_>) -> Vec<(String, String)> {
    use rdkafka::message::{Headers, Message as _};
    m.headers().map_or_else(Vec::new, |h| {
        h.iter()
            .filter_map(|h| Some((h.key.to_owned(), String::from_utf8(h.value?.to_vec()).ok()?)))
            .collect()
    })
}

pub(crate) fn is_unknown_topic(e: &rdkafka::error::KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
        || e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopic)
}

/// A consumer in no group, for metadata and reading from fixed offsets.
pub fn plain_consumer(settings: &Settings) -> Result<BaseConsumer<Tracing>> {
    settings
        .base()
        .set("group.id", READER_GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(settings.context())
        .map_err(|e| settings.error(e))
}

/// `(partition, low, high)` watermarks of every partition of a topic. Blocking.
pub fn partition_ends<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
) -> rdkafka::error::KafkaResult<Vec<(i32, i64, i64)>> {
    let md = consumer.fetch_metadata(Some(topic), ADMIN_TIMEOUT)?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(rdkafka::error::KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    };
    if let Some(e) = t.error() {
        return Err(rdkafka::error::KafkaError::MetadataFetch(e.into()));
    }
    let mut out = Vec::new();
    for p in t.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), ADMIN_TIMEOUT)?;
        out.push((p.id(), low, high));
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_s_rules() {
        assert!(topic_name("chat_cola").is_ok());
        assert!(topic_name("app.error-1").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "con espacio",
            "ñandú",
            "a/b",
            &"x".repeat(250),
        ] {
            let e = topic_name(bad).expect_err(bad);
            assert!(e.to_string().contains("cannot be a Kafka topic"), "{e}");
        }
        assert_eq!(
            dead_letter_topic("r").ok().as_deref(),
            Some("charla-dead.r")
        );
        assert_eq!(queue_group("r"), "charla-queue.r");
    }
}
