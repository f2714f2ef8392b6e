//! Consuming: one librdkafka consumer per subscription, and the bookkeeping that turns
//! per-message acks into offset commits.
//!
//! Kafka remembers one position per partition (the committed offset), not which messages
//! were handled. So a partition's commit point is its lowest delivered-but-unacked offset, or
//! one past the last delivered when all are acked; a consumer that dies leaves its group at
//! that point and the partition's next owner reads from there: every unacked message again,
//! none of the acked ones before the point.
//!
//! Rebalances move partitions between a group's members. The rebalance callback commits what
//! was acked on the partitions being taken away, and starts a new *epoch* for them: an ack of
//! a delivery from an older epoch commits nothing (the new owner has the message now).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use charla_core::{
    topic, AckTag, BrokerError, DeadLetter, DeadReason, Delivery, Failure, Message, Mode, Result,
    StartFrom, Subscriber, Subscription,
};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::admin::{partition_ends, queue_group, topic_name, RESERVED_PREFIX};
use crate::client::{blocking, is_rebalance, is_transient, Tracing};
use crate::feed::{self, Feed, Item, Record};
use crate::Shared;

type Partition = (String, i32);

/// Per-partition bookkeeping, shared with the rebalance callbacks.
#[derive(Default)]
struct Book {
    parts: HashMap<Partition, Part>,
}

#[derive(Default)]
struct Part {
    epoch: u64,
    /// Delivered to the caller and not acked yet.
    unacked: BTreeSet<i64>,
    /// One past the highest offset delivered in this epoch.
    next: Option<i64>,
    /// The last commit point sent to the broker in this epoch.
    committed: Option<i64>,
    /// The first offset delivered in this epoch: where the group stood already.
    base: Option<i64>,
    /// The delivery count of the partition's first record was read and raised (groups).
    counted: bool,
}

impl Part {
    /// Where the group should resume this partition, if that is further than committed.
    fn advance(&self) -> Option<i64> {
        let point = self.unacked.first().copied().or(self.next)?;
        (Some(point) > self.committed.or(self.base)).then_some(point)
    }
}

impl Book {
    fn delivered(&mut self, p: &Partition, offset: i64) -> u64 {
        let part = self.parts.entry(p.clone()).or_default();
        part.base.get_or_insert(offset);
        part.unacked.insert(offset);
        part.next = Some(part.next.map_or(offset + 1, |n| n.max(offset + 1)));
        part.epoch
    }

    /// Settle deliveries; returns the partitions whose commit point moved.
    fn settle(&mut self, done: &[(Partition, i64, u64)]) -> Vec<(Partition, i64)> {
        let mut moved = Vec::new();
        for (p, offset, epoch) in done {
            let Some(part) = self.parts.get_mut(p) else {
                continue;
            };
            if part.epoch != *epoch {
                continue; // the partition moved on: its new owner reads this one again
            }
            part.unacked.remove(offset);
            if let Some(point) = part.advance() {
                moved.retain(|(q, _)| q != p);
                moved.push((p.clone(), point));
            }
        }
        moved
    }

    fn committed(&mut self, points: &[(Partition, i64)], epochs: &HashMap<Partition, u64>) {
        for (p, point) in points {
            if let Some(part) = self.parts.get_mut(p) {
                if epochs.get(p) == Some(&part.epoch) {
                    part.committed = Some(part.committed.map_or(*point, |c| c.max(*point)));
                }
            }
        }
    }

    /// Partitions leave this member: what was acked is committed by the caller, then a new
    /// epoch starts (deliveries still held from the old one commit nothing).
    fn revoke(&mut self, tpl: &TopicPartitionList) -> Vec<(Partition, i64)> {
        let mut points = Vec::new();
        for e in tpl.elements() {
            let p = (e.topic().to_owned(), e.partition());
            let part = self.parts.entry(p.clone()).or_default();
            if let Some(point) = part.advance() {
                points.push((p, point));
            }
            let epoch = part.epoch + 1;
            *part = Part {
                epoch,
                ..Part::default()
            };
        }
        points
    }

    /// Whether the next record of `p` is the first of this epoch, whose earlier deliveries
    /// are counted in the group's commit metadata.
    fn needs_count(&self, p: &Partition) -> bool {
        self.parts.get(p).is_none_or(|part| !part.counted)
    }

    fn set_counted(&mut self, p: &Partition, epoch: u64) {
        let part = self.parts.entry(p.clone()).or_default();
        if part.epoch == epoch {
            part.counted = true;
        }
    }

    fn epoch_of(&self, p: &Partition) -> u64 {
        self.parts.get(p).map_or(0, |part| part.epoch)
    }
}

/// The bookkeeping, whoever holds it (a panic elsewhere leaves it usable).
fn lock(book: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(|p| p.into_inner())
}

fn to_tpl(points: &[(Partition, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((t, p), offset) in points {
        // Only fails for an invalid offset, which commit points never are.
        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*offset));
    }
    tpl
}

/// The consumer's context: librdkafka's log as [`Tracing`], plus commits on revocation.
pub struct Tracking {
    inner: Tracing,
    book: Arc<Mutex<Book>>,
    /// Set once the group gave this member its partitions (the first rebalance is over).
    assigned: tokio::sync::watch::Sender<bool>,
}

impl Tracking {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        lock(&self.book)
    }
}

impl ClientContext for Tracking {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason)
    }
}

impl ConsumerContext for Tracking {
    fn pre_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let points = self.book().revoke(tpl);
            if !points.is_empty() {
                if let Err(e) = base.commit(&to_tpl(&points), CommitMode::Sync) {
                    tracing::debug!("commit on revocation: {e}");
                }
            }
        }
    }

    fn post_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // A partition paused by the poll loop (`feed`), taken away and given back later
            // can come back still paused, and the loop resumes only what it paused itself:
            // start every new assignment flowing (the loop pauses it again if its channel is
            // still full).
            if let Err(e) = base.resume(tpl) {
                tracing::debug!("resuming assigned partitions: {e}");
            }
            self.assigned.send_replace(true);
        }
    }
}

type KConsumer = StreamConsumer<Tracking>;

/// What the commit metadata of a partition says: `charla-deliveries:<offset>:<count>`, the
/// times the record at the committed offset was handed out without being acked.
const DELIVERIES_TAG: &str = "charla-deliveries";

fn deliveries_of(metadata: &str, offset: i64) -> u32 {
    let mut parts = metadata.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(DELIVERIES_TAG), Some(o), Some(n)) if o.parse() == Ok(offset) => {
            n.parse().unwrap_or(0)
        }
        _ => 0,
    }
}

/// How long `subscribe` waits for a group to give the new member its partitions.
const JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A delivery the caller holds.
struct Held {
    partition: Partition,
    offset: i64,
    epoch: u64,
    message: Message,
    redelivered: bool,
}

/// A payload on its way to the dead-letter topic (with why, as record headers); settled
/// once it is there.
struct Poison {
    room: String,
    payload: Vec<u8>,
    failure: Failure,
    settles: Option<(Partition, i64, u64)>,
}

pub struct KafkaSubscriber {
    shared: Arc<Shared>,
    consumer: Option<Arc<KConsumer>>,
    /// The poll loop's records (see [`feed`]).
    feed: Option<Feed>,
    book: Arc<Mutex<Book>>,
    /// Acks become commits (queue, stream in a group); otherwise nothing is committed.
    commits: bool,
    /// The subscription's mode: recorded with a dead letter (where a replay puts it back).
    mode: Mode,
    /// Only these topics are delivered (routing: the exact pattern).
    pattern: Option<String>,
    /// A group of this subscriber's own, deleted on close (routing).
    own_group: Option<String>,
    /// Chat messages only, or other JSON objects too (`Subscription::events`).
    decode: charla_core::Decoder,
    held: HashMap<u64, Held>,
    /// The first record of a partition while its delivery count is read and raised; kept
    /// here so that a cancelled `recv` finds it again.
    staged: Option<Record>,
    /// Nacked with requeue: handed out again, in order.
    retry: VecDeque<u64>,
    poison: VecDeque<Poison>,
    next_tag: u64,
    /// A broker outage was reported and no record has arrived since.
    outage: bool,
}

impl KafkaSubscriber {
    pub(crate) async fn open(shared: Arc<Shared>, sub: Subscription) -> Result<Self> {
        let book = Arc::new(Mutex::new(Book::default()));
        let settings = &shared.settings;
        let mut config = settings.base();
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "false")
            // A fetch waits at most this long for new records: the latency floor when idle.
            .set("fetch.wait.max.ms", "50")
            .set(
                "session.timeout.ms",
                settings.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (settings.session_timeout.as_millis() / 6)
                    .max(100)
                    .to_string(),
            );
        let (group, commits, pattern) = match sub.mode {
            Mode::Queue => {
                let t = topic_name(&sub.room)?;
                shared.ensure_topic(t).await?;
                (Some(queue_group(&sub.room)), true, None)
            }
            Mode::Stream => {
                let t = topic_name(&sub.room)?;
                shared.ensure_topic(t).await?;
                (sub.group.clone(), sub.group.is_some(), None)
            }
            Mode::Broadcast => {
                let t = topic_name(&sub.room)?;
                shared.ensure_topic(t).await?;
                (None, false, None)
            }
            Mode::Routing => {
                check_pattern(&sub.room)?;
                let own = format!("{RESERVED_PREFIX}routing.{}", ulid::Ulid::new());
                // New topics are found by metadata refreshes: look often.
                config.set("topic.metadata.refresh.interval.ms", "500");
                (Some(own), false, Some(sub.room.clone()))
            }
        };
        match &group {
            Some(g) => config
                .set("group.id", g)
                .set("auto.offset.reset", "earliest"),
            None => config.set("group.id", crate::admin::READER_GROUP),
        };
        let (assigned, mut assigned_rx) = tokio::sync::watch::channel(false);
        let consumer: KConsumer = config
            .create_with_context(Tracking {
                inner: settings.context(),
                book: book.clone(),
                assigned,
            })
            .map_err(|e| settings.error(e))?;
        let consumer = Arc::new(consumer);
        let c = consumer.clone();
        let s = settings.clone();
        let room = sub.room.clone();
        let mode = sub.mode;
        let start = sub.start.clone();
        let in_group = group.is_some() && sub.mode != Mode::Routing;
        blocking(move || -> Result<()> {
            let err = |e: KafkaError| s.error(e);
            match mode {
                Mode::Queue => c.subscribe(&[&room]).map_err(err),
                Mode::Stream if in_group => {
                    start_new_group(&c, std::slice::from_ref(&room), &start)?;
                    c.subscribe(&[&room]).map_err(err)
                }
                Mode::Stream | Mode::Broadcast => {
                    let start = if mode == Mode::Broadcast {
                        StartFrom::Latest
                    } else {
                        start
                    };
                    let mut tpl = TopicPartitionList::new();
                    for (partition, offset) in start_offsets(&c, &room, &start)? {
                        tpl.add_partition_offset(&room, partition, offset)
                            .map_err(err)?;
                    }
                    c.assign(&tpl).map_err(err)
                }
                Mode::Routing => {
                    // Topics that exist now are read from their end (committed as the new
                    // group's start); topics created later from their beginning.
                    let md = c.fetch_metadata(None, s.session_timeout).map_err(err)?;
                    let matching: Vec<String> = md
                        .topics()
                        .iter()
                        .map(|t| t.name().to_owned())
                        .filter(|t| routable(&room, t))
                        .collect();
                    start_new_group(&c, &matching, &StartFrom::Latest)?;
                    c.subscribe(&[&topic::to_regex(&room)]).map_err(err)
                }
            }
        })
        .await??;
        let epochs = book.clone();
        let feed = feed::start(consumer.clone(), sub.prefetch, move |p| {
            lock(&epochs).epoch_of(p)
        });
        if in_group {
            // Join the group now, so that members subscribed one after the other share the
            // partitions from the first record on (instead of a rebalance taking records
            // from a member that already holds them). Bounded: a group that cannot settle
            // (another member not polling) does not hold `subscribe` up for long.
            let joined =
                tokio::time::timeout(JOIN_WAIT, assigned_rx.wait_for(|assigned| *assigned)).await;
            if joined.is_err() {
                tracing::debug!("the group did not assign partitions within {JOIN_WAIT:?}");
            }
        }
        Ok(KafkaSubscriber {
            shared,
            consumer: Some(consumer),
            feed: Some(feed),
            book,
            commits,
            mode: sub.mode,
            pattern,
            own_group: (sub.mode == Mode::Routing).then_some(group).flatten(),
            decode: sub.decoder(),
            held: HashMap::new(),
            staged: None,
            retry: VecDeque::new(),
            poison: VecDeque::new(),
            next_tag: 0,
            outage: false,
        })
    }

    fn consumer(&self) -> Result<&Arc<KConsumer>> {
        self.consumer.as_ref().ok_or(BrokerError::Closed)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        lock(&self.book)
    }

    /// Take one record from the consumer: a delivery for the caller, or `None` when it was
    /// not for the caller (poison, another pattern's topic) and has been dealt with.
    fn accept(&mut self, record: Record, deliveries: u32) -> Option<Delivery> {
        let Record {
            partition: p,
            offset,
            payload,
        } = record;
        let epoch = self.book().delivered(&p, offset);
        let settles = (p.clone(), offset, epoch);
        if let Some(pattern) = &self.pattern {
            if !routable(pattern, &p.0) {
                self.book().settle(&[settles]);
                return None;
            }
        }
        match (self.decode)(&payload, &p.0, self.shared.settings.max_bytes) {
            Ok(mut message) => {
                message.deliveries = deliveries;
                let tag = self.next_tag;
                self.next_tag += 1;
                let delivery = Delivery {
                    message: message.clone(),
                    redelivered: deliveries > 0,
                    offset: Some(format!("{}:{offset}", p.1)),
                    tag: AckTag(tag),
                };
                self.held.insert(
                    tag,
                    Held {
                        partition: p,
                        offset,
                        epoch,
                        message,
                        redelivered: deliveries > 0,
                    },
                );
                Some(delivery)
            }
            Err(e) if self.commits => {
                tracing::warn!(
                    "{}[{}] offset {offset} is not a chat message ({e}): moved to the dead letters",
                    p.0,
                    p.1
                );
                let failure = Failure::new(DeadReason::of_decode_error(&e)).error(&e.to_string());
                self.poison.push_back(Poison {
                    room: p.0.clone(),
                    payload,
                    failure,
                    settles: Some(settles),
                });
                None
            }
            Err(e) => {
                tracing::warn!(
                    "{}[{}] offset {offset} is not a chat message ({e}): skipped",
                    p.0,
                    p.1
                );
                self.book().settle(&[settles]);
                None
            }
        }
    }

    /// The first record of a partition in a group, before it is handed out: read how many
    /// times it was delivered already (the group's commit metadata), dead-letter it if that
    /// reaches the limit, otherwise record one more delivery (a commit at its own offset with
    /// the new count) so that a consumer that dies holding it — killed by it, say — is
    /// counted. Kafka keeps no per-message delivery count: this counts the record a consumer
    /// is stuck on, the one that matters for a message that crashes its consumers.
    async fn first_of_partition(&mut self) -> Result<Option<Delivery>> {
        let Some(record) = self.staged.clone() else {
            return Ok(None);
        };
        let consumer = self.consumer()?.clone();
        let (topic, partition) = record.partition.clone();
        let offset = record.offset;
        let epoch = self.book().epoch_of(&record.partition);
        let max = self.shared.settings.max_deliveries;
        let outcome = blocking(move || -> Result<u32, KafkaError> {
            let mut probe = TopicPartitionList::new();
            probe.add_partition(&topic, partition);
            let committed =
                consumer.committed_offsets(probe, std::time::Duration::from_secs(10))?;
            let before = committed
                .find_partition(&topic, partition)
                .map_or(0, |e| deliveries_of(e.metadata(), offset));
            if before < max {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
                if let Some(mut e) = tpl.find_partition(&topic, partition) {
                    e.set_metadata(format!("{DELIVERIES_TAG}:{offset}:{}", before + 1));
                }
                consumer.commit(&tpl, CommitMode::Sync)?;
            }
            Ok(before)
        })
        .await?;
        let before = match outcome {
            Ok(n) => n,
            // The partition is moving to another member: it counts there.
            Err(e) if e.rdkafka_error_code().is_some_and(is_rebalance) => 0,
            Err(e) => return Err(self.shared.settings.error(e)),
        };
        self.staged = None;
        self.book().set_counted(&record.partition, epoch);
        if before >= max {
            tracing::warn!(
                "{}[{}] offset {offset} was delivered {before} times without an ack: moved to \
                 the dead letters",
                record.partition.0,
                record.partition.1
            );
            let epoch = self.book().delivered(&record.partition, offset);
            self.poison.push_back(Poison {
                room: record.partition.0.clone(),
                payload: record.payload,
                failure: Failure::new(DeadReason::MaxDeliveries).attempts(before),
                settles: Some((record.partition, offset, epoch)),
            });
            return Ok(None);
        }
        Ok(self.accept(record, before))
    }

    /// Whether a record fetched at `epoch` belongs to a partition revoked since: it was never
    /// delivered, and the partition's new owner reads it.
    fn stale(&self, record: &Record, epoch: u64) -> bool {
        self.book().epoch_of(&record.partition) != epoch
    }

    /// Hand a record on, or stage it first when its delivery count must be read.
    async fn take(&mut self, record: Record, epoch: u64) -> Result<Option<Delivery>> {
        if std::mem::take(&mut self.outage) {
            tracing::info!("the Kafka broker is back");
        }
        if self.stale(&record, epoch) {
            return Ok(None);
        }
        if self.commits && self.book().needs_count(&record.partition) {
            self.staged = Some(record);
            return self.first_of_partition().await;
        }
        Ok(self.accept(record, 0))
    }

    /// A nacked message handed out again, if any is still ours.
    fn take_retry(&mut self) -> Option<Delivery> {
        while let Some(tag) = self.retry.pop_front() {
            let Some(h) = self.held.get(&tag) else {
                continue;
            };
            if self.book().epoch_of(&h.partition) != h.epoch {
                self.held.remove(&tag); // the partition moved: its new owner has it
                continue;
            }
            return Some(Delivery {
                message: h.message.clone(),
                redelivered: h.redelivered,
                offset: Some(format!("{}:{}", h.partition.1, h.offset)),
                tag: AckTag(tag),
            });
        }
        None
    }

    /// Put waiting poison messages in the dead-letter topic, then settle them. A poison stays
    /// queued until it is there, so a cancelled call loses none.
    async fn flush_poison(&mut self) -> Result<()> {
        while let Some(poison) = self.poison.front() {
            let dead = crate::admin::dead_letter_topic(&poison.room)?;
            self.shared.ensure_topic(&dead).await?;
            let letter = DeadLetter::new(Vec::new(), &poison.room, self.mode, &poison.failure);
            let headers = crate::admin::dead_headers(&letter);
            let record = rdkafka::producer::FutureRecord::to(&dead)
                .key(&poison.room)
                .payload(&poison.payload)
                .headers(headers);
            self.shared
                .producer
                .send(record, rdkafka::util::Timeout::Never)
                .await
                .map_err(|(e, _)| self.shared.settings.error(e))?;
            if let Some(Some(settles)) = self.poison.pop_front().map(|p| p.settles) {
                let moved = self.book().settle(&[settles]);
                // Refused by a rebalance: the new owner reads the poison again and moves it.
                let _committed = self.commit(moved).await?;
            }
        }
        Ok(())
    }

    /// Commit moved points (a no-op outside groups): `Ok(false)` when the group was
    /// rebalancing and refused the commit (the partition's next owner reads those records
    /// again), `Ok(true)` when committed or there was nothing to commit.
    async fn commit(&self, points: Vec<(Partition, i64)>) -> Result<bool> {
        if !self.commits || points.is_empty() {
            return Ok(true);
        }
        let consumer = self.consumer()?.clone();
        let epochs: HashMap<Partition, u64> = {
            let book = self.book();
            points
                .iter()
                .map(|(p, _)| (p.clone(), book.epoch_of(p)))
                .collect()
        };
        let tpl = to_tpl(&points);
        match blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await? {
            Ok(()) => {
                self.book().committed(&points, &epochs);
                Ok(true)
            }
            Err(e) => match e.rdkafka_error_code() {
                Some(code) if is_rebalance(code) => {
                    tracing::debug!("commit refused during a rebalance: {code}");
                    Ok(false)
                }
                _ => Err(self.shared.settings.error(e)),
            },
        }
    }

    /// Settle deliveries in the bookkeeping: the commit points that moved, and how many of
    /// the deliveries came from a partition this member no longer owns (a rebalance moved
    /// it: their ack commits nothing, and the new owner reads them again).
    fn settle_tags(&mut self, tags: &[AckTag]) -> Result<(Vec<(Partition, i64)>, usize)> {
        let mut done = Vec::with_capacity(tags.len());
        for tag in tags {
            let h = self.held.remove(&tag.0).ok_or_else(|| {
                BrokerError::InvalidArgument(format!(
                    "unknown or already settled ack tag {}",
                    tag.0
                ))
            })?;
            done.push((h.partition, h.offset, h.epoch));
        }
        let mut book = self.book();
        // Readers without a group commit nothing and own no partitions to lose.
        let stale = if self.commits {
            done.iter()
                .filter(|(p, _, epoch)| book.parts.get(p).is_none_or(|part| part.epoch != *epoch))
                .count()
        } else {
            0
        };
        Ok((book.settle(&done), stale))
    }

    /// Settle and commit: `Ok` only when Kafka stored the commit, so that an acked message
    /// is never read again by anyone (the contract of `Subscriber::ack`). When a rebalance
    /// refused the commit, or moved a partition away, the messages are read again by their
    /// partition's owner: the caller is told, and counts them as unsettled.
    async fn ack_tags(&mut self, tags: &[AckTag]) -> Result<()> {
        let (points, stale) = self.settle_tags(tags)?;
        let committed = self.commit(points).await?;
        let not_settled = |why: String| BrokerError::Unavailable {
            address: self.shared.settings.address.clone(),
            reason: format!("{why}: those messages are read again by the partition's owner"),
        };
        if !committed {
            return Err(not_settled(
                "the consumer group was rebalancing and refused the offset commit".into(),
            ));
        }
        if stale > 0 {
            return Err(not_settled(format!(
                "{stale} acknowledged message(s) came from a partition a rebalance moved away"
            )));
        }
        Ok(())
    }

    /// A consumer error while waiting: a broker that went away is waited for (librdkafka
    /// reconnects by itself); anything else is the caller's.
    fn on_error(&mut self, e: KafkaError) -> Result<()> {
        match e.rdkafka_error_code() {
            // A pattern's topics come and go.
            Some(rdkafka::error::RDKafkaErrorCode::UnknownTopicOrPartition)
                if self.pattern.is_some() =>
            {
                Ok(())
            }
            Some(code) if is_rebalance(code) => {
                tracing::debug!("Kafka consumer: {code}");
                Ok(())
            }
            // Said once per outage; librdkafka reconnects by itself.
            Some(code) if is_transient(code) => {
                if !self.outage {
                    self.outage = true;
                    tracing::warn!(
                        "the Kafka broker at {} is unavailable ({code}); waiting for it",
                        self.shared.settings.address
                    );
                }
                Ok(())
            }
            _ => Err(self.shared.settings.error(e)),
        }
    }
}

/// The Kafka name rules for a routing pattern's literal words.
fn check_pattern(pattern: &str) -> Result<()> {
    for word in pattern.split('.') {
        if word != "*" && word != "#" && !word.is_empty() {
            topic_name(word)?;
        }
    }
    if pattern.is_empty() {
        return Err(BrokerError::InvalidArgument(
            "an empty routing pattern".into(),
        ));
    }
    Ok(())
}

/// Whether a routing subscription delivers records of `topic`: charla's own topics never.
fn routable(pattern: &str, name: &str) -> bool {
    !name.starts_with(RESERVED_PREFIX) && !name.starts_with("__") && topic::matches(pattern, name)
}

/// Where a reader starts on each partition of `topics` for `start`: `Some(offset)`, or `None`
/// for the partition's beginning. Blocking.
fn positions(
    c: &KConsumer,
    topics: &[String],
    start: &StartFrom,
) -> Result<Vec<(String, i32, Option<i64>)>> {
    let kafka = |e: KafkaError| BrokerError::backend(crate::client::BACKEND, e);
    let after = match (start, start.time()) {
        (StartFrom::After(text), None) => Some(parse_offset(text)?),
        _ => None,
    };
    let mut out = Vec::new();
    for topic in topics {
        let ends = partition_ends(c, topic).map_err(kafka)?;
        let at_time = match start.time() {
            None => None,
            Some(secs) => {
                let ms = i64::try_from(secs?.saturating_mul(1000)).unwrap_or(i64::MAX);
                let mut tpl = TopicPartitionList::new();
                for (p, _, _) in &ends {
                    tpl.add_partition_offset(topic, *p, Offset::Offset(ms))
                        .map_err(kafka)?;
                }
                let found = c
                    .offsets_for_times(tpl, std::time::Duration::from_secs(10))
                    .map_err(kafka)?;
                Some(found)
            }
        };
        for (partition, _, high) in ends {
            let offset = match (start, &at_time, after) {
                (_, Some(found), _) => {
                    match found.find_partition(topic, partition).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => Some(o),
                        _ => Some(high), // nothing stored at or after that time
                    }
                }
                (StartFrom::Latest, _, _) => Some(high),
                (_, _, Some((p, o))) if p == partition => Some(o + 1),
                _ => None,
            };
            out.push((topic.clone(), partition, offset));
        }
    }
    Ok(out)
}

/// Where a group-less reader starts on each partition. Blocking.
fn start_offsets(c: &KConsumer, topic: &str, start: &StartFrom) -> Result<Vec<(i32, Offset)>> {
    Ok(positions(c, &[topic.to_owned()], start)?
        .into_iter()
        .map(|(_, p, o)| (p, o.map_or(Offset::Beginning, Offset::Offset)))
        .collect())
}

/// `PARTITION:OFFSET`, as deliveries print it (a bare number is partition 0).
pub(crate) fn parse_offset(text: &str) -> Result<(i32, i64)> {
    let bad = || {
        BrokerError::InvalidArgument(format!(
            "'{text}' is not a Kafka position: expected PARTITION:OFFSET as listen prints it \
             (for example 0:41)"
        ))
    };
    match text.split_once(':') {
        Some((p, o)) => Ok((p.parse().map_err(|_| bad())?, o.parse().map_err(|_| bad())?)),
        None => Ok((0, text.parse().map_err(|_| bad())?)),
    }
}

/// A group that has committed nothing on these topics yet starts where `start` says, by
/// committing that position before joining (so a group starting at the end misses nothing
/// published after `subscribe` returned). An existing group resumes instead. Blocking.
fn start_new_group(c: &KConsumer, topics: &[String], start: &StartFrom) -> Result<()> {
    if matches!(start, StartFrom::Beginning) || topics.is_empty() {
        return Ok(()); // auto.offset.reset=earliest does it
    }
    let kafka = |e: KafkaError| BrokerError::backend(crate::client::BACKEND, e);
    let starts = positions(c, topics, start)?;
    let mut probe = TopicPartitionList::new();
    for (t, p, _) in &starts {
        probe.add_partition(t, *p);
    }
    let committed = c
        .committed_offsets(probe, std::time::Duration::from_secs(10))
        .map_err(kafka)?;
    let fresh = committed
        .elements()
        .iter()
        .all(|e| !matches!(e.offset(), Offset::Offset(_)));
    if !fresh {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p, offset) in starts {
        if let Some(o) = offset {
            tpl.add_partition_offset(&t, p, Offset::Offset(o))
                .map_err(kafka)?;
        }
    }
    if tpl.count() > 0 {
        c.commit(&tpl, CommitMode::Sync).map_err(kafka)?;
    }
    Ok(())
}

#[async_trait]
impl Subscriber for KafkaSubscriber {
    async fn recv(&mut self) -> Result<Delivery> {
        loop {
            self.flush_poison().await?;
            if let Some(d) = self.take_retry() {
                return Ok(d);
            }
            if self.staged.is_some() {
                if let Some(d) = self.first_of_partition().await? {
                    return Ok(d);
                }
                continue;
            }
            let feed = self.feed.as_mut().ok_or(BrokerError::Closed)?;
            // A channel receive is cancel-safe, and a record is kept (`staged`) across any
            // later await, so cancelling `recv` loses nothing.
            match feed.items.recv().await {
                Some(Item::Record(record, epoch)) => {
                    if let Some(d) = self.take(record, epoch).await? {
                        return Ok(d);
                    }
                }
                Some(Item::Error(e)) => self.on_error(e)?,
                None => return Err(BrokerError::Closed),
            }
        }
    }

    async fn try_recv(&mut self) -> Result<Option<Delivery>> {
        if let Some(d) = self.take_retry() {
            return Ok(Some(d));
        }
        if self.staged.is_some() {
            return Ok(None); // `recv` finishes it
        }
        loop {
            let feed = self.feed.as_mut().ok_or(BrokerError::Closed)?;
            match feed.items.try_recv() {
                Err(_) => return Ok(None),
                Ok(Item::Record(record, epoch)) => {
                    if self.stale(&record, epoch) {
                        continue;
                    }
                    if self.commits && self.book().needs_count(&record.partition) {
                        self.staged = Some(record);
                        return Ok(None);
                    }
                    if let Some(d) = self.accept(record, 0) {
                        return Ok(Some(d));
                    }
                }
                Ok(Item::Error(e)) => {
                    self.on_error(e)?;
                    return Ok(None);
                }
            }
        }
    }

    async fn ack(&mut self, tag: AckTag) -> Result<()> {
        self.ack_tags(&[tag]).await
    }

    async fn ack_many(&mut self, tags: &[AckTag]) -> Result<()> {
        self.ack_tags(tags).await
    }

    async fn nack(&mut self, tag: AckTag, requeue: bool) -> Result<()> {
        let max = self.shared.settings.max_deliveries;
        let h = self.held.get_mut(&tag.0).ok_or_else(|| {
            BrokerError::InvalidArgument(format!("unknown or already settled ack tag {}", tag.0))
        })?;
        h.message.deliveries += 1;
        if requeue && h.message.deliveries < max && self.commits {
            h.redelivered = true;
            self.retry.push_back(tag.0);
            return Ok(());
        }
        let failure = if requeue {
            Failure::new(DeadReason::MaxDeliveries)
        } else {
            Failure::new(DeadReason::Nacked)
        };
        let attempts = h.message.deliveries;
        self.reject(tag, failure.attempts(attempts)).await
    }

    async fn reject(&mut self, tag: AckTag, failure: Failure) -> Result<()> {
        if !self.held.contains_key(&tag.0) {
            return Err(BrokerError::InvalidArgument(format!(
                "unknown or already settled ack tag {}",
                tag.0
            )));
        }
        if !self.commits {
            // Nothing is kept for group-less readers: a nack just lets the message go.
            self.held.remove(&tag.0);
            return Ok(());
        }
        let Some(h) = self.held.remove(&tag.0) else {
            return Ok(());
        };
        self.poison.push_back(Poison {
            room: h.partition.0.clone(),
            payload: h.message.encode(),
            failure,
            settles: Some((h.partition, h.offset, h.epoch)),
        });
        self.flush_poison().await
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        let flushed = self.flush_poison().await;
        self.feed = None; // stops the poll loop
        let Some(consumer) = self.consumer.take() else {
            return flushed;
        };
        let own_group = self.own_group.take();
        // Unacked deliveries are simply not committed: the group reads them again. Leaving
        // the group (inside the consumer's close) lets the others take its partitions now
        // instead of after the session timeout.
        blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await?;
        if let Some(g) = own_group {
            self.shared.admin.delete_group(&g).await;
        }
        flushed
    }
}

impl Drop for KafkaSubscriber {
    fn drop(&mut self) {
        // Closing a consumer waits for the broker (leaving the group): not on the runtime.
        self.feed = None;
        if let Some(consumer) = self.consumer.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn_blocking(move || drop(consumer));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("room".to_owned(), n)
    }

    #[test]
    fn the_commit_point_is_the_lowest_unacked_delivery() {
        let mut book = Book::default();
        let e = (0..5).map(|o| book.delivered(&p(0), o)).last().unwrap_or(0);
        // Acking 1 and 2 while 0 is held moves nothing: a crash now must replay 0.
        assert!(book.settle(&[(p(0), 1, e), (p(0), 2, e)]).is_empty());
        // Acking 0 moves the point past 2, to the first still held (3).
        assert_eq!(book.settle(&[(p(0), 0, e)]), vec![(p(0), 3)]);
        book.committed(&[(p(0), 3)], &HashMap::from([(p(0), e)]));
        // Everything acked: one past the last delivered.
        assert_eq!(book.settle(&[(p(0), 4, e), (p(0), 3, e)]), vec![(p(0), 5)]);
    }

    #[test]
    fn a_revoked_partition_commits_nothing_for_its_old_deliveries() {
        let mut book = Book::default();
        let e = book.delivered(&p(1), 10);
        book.delivered(&p(1), 11);
        assert!(book.settle(&[(p(1), 11, e)]).is_empty());
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("room", 1);
        // Nothing contiguous was acked (10 is held): nothing to commit on revocation.
        assert!(book.revoke(&tpl).is_empty());
        // A late ack of the old epoch is ignored: the new owner reads 10 again.
        assert!(book.settle(&[(p(1), 10, e)]).is_empty());
        assert_ne!(book.epoch_of(&p(1)), e);
    }

    #[test]
    fn delivery_counts_belong_to_the_committed_offset() {
        assert_eq!(deliveries_of("charla-deliveries:41:3", 41), 3);
        assert_eq!(
            deliveries_of("charla-deliveries:41:3", 42),
            0,
            "another record"
        );
        assert_eq!(deliveries_of("", 41), 0);
        assert_eq!(deliveries_of("someone else's metadata", 41), 0);
    }

    #[test]
    fn offsets_parse_as_partition_and_offset() {
        assert_eq!(parse_offset("2:15").ok(), Some((2, 15)));
        assert_eq!(parse_offset("41").ok(), Some((0, 41)));
        assert!(parse_offset("1-0").is_err());
        assert!(parse_offset("a:b").is_err());
    }

    #[test]
    fn routing_never_delivers_charla_s_own_topics() {
        assert!(routable("#", "app.error"));
        assert!(!routable("#", "charla-dead.app"));
        assert!(!routable("#", "__consumer_offsets"));
        assert!(!routable("room.*", "room.a.b"));
    }
}
