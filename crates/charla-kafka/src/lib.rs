//! charla-kafka: the Kafka backend (`kafka://host:port`), on librdkafka through `rdkafka`.
//!
//! Every delivery mode maps to Kafka's own objects (topics are created where missing, with
//! `?partitions=` partitions, default 3):
//! - **stream**: a topic named as the room, every record keyed by the room so that a room
//!   keeps its order (one key → one partition). Without a group a subscriber reads every
//!   partition from where `StartFrom` says (`--from-beginning`, after `PARTITION:OFFSET`, or
//!   the end). With a group (`--group`, a Kafka consumer group under that exact name, so
//!   kafkajs's `user-service` and charla's can be the same group) the members share the
//!   partitions and the group resumes from its committed offsets; a new group starting at
//!   the end first commits the current end, so nothing published after `subscribe` returned
//!   can be missed.
//! - **queue**: the same topic, one shared consumer group `charla-queue.<room>` starting from
//!   the oldest message, records keyed by message id so that they spread over the partitions
//!   and the group's members share the work. Kafka orders a partition, not a topic: queue mode
//!   does not keep publish order (`queue_order: false`); stream mode does.
//! - **broadcast**: the topic read from its end by every subscriber on its own (no group, no
//!   commits: the offsets are fixed when `subscribe` returns).
//! - **routing**: a regex subscription (`charla_core::topic::to_regex`) in a group of the
//!   subscriber's own; topics that appear later are read from their beginning, topics that
//!   existed are read from their end.
//!
//! Acknowledgements are offset commits made after the message is handled: a partition's
//! committed offset is its lowest unacknowledged delivery, so a consumer killed mid-batch
//! leaves its group exactly where it stopped (at-least-once). A nack with requeue hands the
//! message out again from this subscriber (Kafka has no per-message redelivery); after
//! `?max_deliveries=` attempts (default 5), or a payload that is not a chat message, it goes
//! to the dead-letter topic `charla-dead.<room>` and is committed past.
//!
//! The producer is idempotent with `acks=all`: `publish` returns once the broker has the
//! record; librdkafka retries through broker restarts up to `?delivery_timeout_ms=` (60 000).

mod admin;
mod client;
mod dead;
mod feed;
mod history;
mod publisher;
mod subscriber;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use charla_core::{
    Broker, BrokerError, BrokerInfo, BrokerUrl, Capabilities, DeadLetter, DeadSelect, Delivery,
    Mode, Publisher, Result, Subscriber, Subscription,
};
use rdkafka::producer::{FutureProducer, Producer};

pub use admin::{dead_letter_topic, queue_group, topic_name, DEAD_HEADER_PREFIX, RESERVED_PREFIX};
use client::{blocking, Settings, Tracing};

/// What Kafka can do through charla.
pub const CAPABILITIES: Capabilities = Capabilities {
    queue: true,
    broadcast: true,
    stream: true,
    routing: true,
    stream_groups: true,
    // A stream room is one key, hence one partition, hence one reader per group.
    group_shares_room: false,
    replay: true,
    // A record handed to a consumer that died is read again by whoever takes its partition,
    // and nothing on the record says so: only nacked ones come back flagged.
    redelivered_flag: false,
    dead_letters: true,
    dead_letter_actions: true,
    survives_restart: true,
    // An ack is a synchronous offset commit the group coordinator stored.
    acks_survive_restart: true,
    // librdkafka sends unacknowledged produce requests again after a lost connection.
    publisher_resends: true,
    queue_order: false,
    // Kafka keeps no per-message delivery count. charla keeps one for the record a group is
    // stuck on in the group's commit metadata (see `subscriber::first_of_partition`), but
    // the test broker (tansu 0.6) does not return commit metadata, so it is not claimed.
    counts_crashed_deliveries: false,
    history: true,
    list_rooms: true,
};

/// The longest `charla` waits for the broker to answer when connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a Kafka cluster: one idempotent producer shared by every publisher of this
/// connection, an admin client, and the settings subscribers build their consumers from.
pub struct KafkaBroker {
    url: BrokerUrl,
    shared: Arc<Shared>,
}

/// What publishers and subscribers of one connection share.
pub(crate) struct Shared {
    pub settings: Settings,
    pub producer: FutureProducer<Tracing>,
    pub admin: admin::Admin,
    /// Topics known to exist, so that each is created (or checked) once per connection.
    pub known_topics: Mutex<HashSet<String>>,
}

impl KafkaBroker {
    /// Connects: builds the clients and asks the cluster for its metadata, so an unreachable
    /// broker is reported now ([`BrokerError::Unreachable`]) and not at the first send.
    pub async fn connect(url: &BrokerUrl) -> Result<Self> {
        let settings = Settings::from_url(url)?;
        let producer = settings.producer()?;
        let admin = admin::Admin::new(&settings)?;
        let probe = producer.clone();
        let address = settings.address.clone();
        blocking(move || {
            probe
                .client()
                .fetch_metadata(None, CONNECT_TIMEOUT)
                .map(|_| ())
        })
        .await?
        .map_err(|e| BrokerError::Unreachable {
            address: address.clone(),
            reason: format!(
                "{} (is a Kafka broker listening there? it advertises the addresses clients \
                 connect to next)",
                client::describe(&e)
            ),
        })?;
        Ok(KafkaBroker {
            url: url.clone(),
            shared: Arc::new(Shared {
                settings,
                producer,
                admin,
                known_topics: Mutex::new(HashSet::new()),
            }),
        })
    }
}

impl Shared {
    /// Create `topic` if it does not exist yet (once per connection).
    pub async fn ensure_topic(&self, topic: &str) -> Result<()> {
        if self.known_topics().contains(topic) {
            return Ok(());
        }
        self.admin.create_topic(&self.settings, topic).await?;
        self.known_topics().insert(topic.to_owned());
        Ok(())
    }

    fn known_topics(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known_topics.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Broker for KafkaBroker {
    fn backend(&self) -> &'static str {
        client::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn info(&self) -> Result<BrokerInfo> {
        let overview = self.shared.admin.overview(&self.shared.settings).await?;
        Ok(BrokerInfo {
            product: "Kafka".into(),
            version: format!(
                "protocol, {} broker{}",
                overview.brokers,
                if overview.brokers == 1 { "" } else { "s" }
            ),
            address: self.url.to_string(),
            details: overview.topics,
        })
    }

    async fn publisher(&self, mode: Mode, room: &str) -> Result<Box<dyn Publisher>> {
        let topic = topic_name(room)?;
        self.shared.ensure_topic(topic).await?;
        Ok(Box::new(publisher::KafkaPublisher::new(
            self.shared.clone(),
            mode,
            topic,
        )))
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        Ok(Box::new(
            subscriber::KafkaSubscriber::open(self.shared.clone(), subscription).await?,
        ))
    }

    async fn dead_letters(&self, room: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        dead::list(&self.shared, room, limit).await
    }

    async fn replay_dead(&self, room: &str, select: &DeadSelect) -> Result<usize> {
        dead::replay(&self.shared, room, select).await
    }

    async fn purge_dead(&self, room: &str, select: &DeadSelect) -> Result<usize> {
        dead::purge(&self.shared, room, select).await
    }

    async fn history(
        &self,
        room: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<Delivery>> {
        history::history(&self.shared.settings, room, limit, before).await
    }

    /// The topics, less charla's own and Kafka's internal ones. Queue mode uses a room's
    /// topic too, so a room used only as a queue is listed as well.
    async fn rooms(&self) -> Result<Vec<String>> {
        history::rooms(&self.shared.admin, &self.shared.settings).await
    }

    async fn purge(&self, mode: Mode, room: &str) -> Result<()> {
        let mut topics = vec![topic_name(room)?.to_owned()];
        if mode.is_durable() {
            topics.push(dead_letter_topic(room)?);
            topics.push(dead::settled_topic(room)?);
        }
        {
            let mut known = self.shared.known_topics();
            for t in &topics {
                known.remove(t);
            }
        }
        if self.shared.settings.delete_topics {
            self.shared.admin.delete_topics(&topics).await?;
        }
        if mode == Mode::Queue {
            self.shared.admin.delete_group(&queue_group(room)).await;
        }
        Ok(())
    }
}
