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
    topic, AckTag, BrokerError, Delivery, Message, Mode, Result, StartFrom, Subscriber,
    Subscription,
};
use futures::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::admin::{partition_ends, queue_group, topic_name, RESERVED_PREFIX};
use crate::client::{blocking, is_rebalance, is_transient, Tracing};
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

    fn epoch_of(&self, p: &Partition) -> u64 {
        self.parts.get(p).map_or(0, |part| part.epoch)
    }
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
}

impl Tracking {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
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
}

type KConsumer = StreamConsumer<Tracking>;

/// A delivery the caller holds.
struct Held {
    partition: Partition,
    offset: i64,
    epoch: u64,
    message: Message,
    redelivered: bool,
}

/// A payload on its way to the dead-letter topic; settled once it is there.
struct Poison {
    room: String,
    payload: Vec<u8>,
    settles: Option<(Partition, i64, u64)>,
}

pub struct KafkaSubscriber {
    shared: Arc<Shared>,
    consumer: Option<Arc<KConsumer>>,
    book: Arc<Mutex<Book>>,
    /// Acks become commits (queue, stream in a group); otherwise nothing is committed.
    commits: bool,
    /// Only these topics are delivered (routing: the exact pattern).
    pattern: Option<String>,
    /// A group of this subscriber's own, deleted on close (routing).
    own_group: Option<String>,
    held: HashMap<u64, Held>,
    /// Nacked with requeue: handed out again, in order.
    retry: VecDeque<u64>,
    poison: VecDeque<Poison>,
    next_tag: u64,
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
        if let Some(g) = &group {
            config
                .set("group.id", g)
                .set("auto.offset.reset", "earliest");
        }
        let consumer: KConsumer = config
            .create_with_context(Tracking {
                inner: settings.context(),
                book: book.clone(),
            })
            .map_err(|e| settings.error(e))?;
        let consumer = Arc::new(consumer);
        let c = consumer.clone();
        let s = settings.clone();
        let room = sub.room.clone();
        let mode = sub.mode;
        let start = sub.start.clone();
        let in_group = group.is_some();
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
        Ok(KafkaSubscriber {
            shared,
            consumer: Some(consumer),
            book,
            commits,
            pattern,
            own_group: (sub.mode == Mode::Routing).then_some(group).flatten(),
            held: HashMap::new(),
            retry: VecDeque::new(),
            poison: VecDeque::new(),
            next_tag: 0,
        })
    }

    fn consumer(&self) -> Result<&Arc<KConsumer>> {
        self.consumer.as_ref().ok_or(BrokerError::Closed)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take one record from the consumer: a delivery for the caller, or `None` when it was
    /// not for the caller (poison, another pattern's topic) and has been dealt with.
    fn accept(&mut self, m: &BorrowedMessage<'_>) -> Option<Delivery> {
        let p: Partition = (m.topic().to_owned(), m.partition());
        let offset = m.offset();
        let epoch = self.book().delivered(&p, offset);
        let settles = (p.clone(), offset, epoch);
        if let Some(pattern) = &self.pattern {
            if !routable(pattern, &p.0) {
                self.book().settle(&[settles]);
                return None;
            }
        }
        let payload = m.payload().unwrap_or_default();
        match Message::decode(payload, &p.0, self.shared.settings.max_bytes) {
            Ok(message) => {
                let tag = self.next_tag;
                self.next_tag += 1;
                let delivery = Delivery {
                    message: message.clone(),
                    redelivered: false,
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
                        redelivered: false,
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
                self.poison.push_back(Poison {
                    room: p.0.clone(),
                    payload: payload.to_vec(),
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
            let record = rdkafka::producer::FutureRecord::to(&dead)
                .key(&poison.room)
                .payload(&poison.payload);
            self.shared
                .producer
                .send(record, rdkafka::util::Timeout::Never)
                .await
                .map_err(|(e, _)| self.shared.settings.error(e))?;
            if let Some(Some(settles)) = self.poison.pop_front().map(|p| p.settles) {
                let moved = self.book().settle(&[settles]);
                self.commit(moved).await?;
            }
        }
        Ok(())
    }

    /// Commit moved points (a no-op outside groups). A commit refused because the group is
    /// rebalancing is not an error: the partition's next owner reads those records again.
    async fn commit(&self, points: Vec<(Partition, i64)>) -> Result<()> {
        if !self.commits || points.is_empty() {
            return Ok(());
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
                Ok(())
            }
            Err(e) => match e.rdkafka_error_code() {
                Some(code) if is_rebalance(code) => {
                    tracing::debug!("commit refused during a rebalance: {code}");
                    Ok(())
                }
                _ => Err(self.shared.settings.error(e)),
            },
        }
    }

    fn settle_tags(&mut self, tags: &[AckTag]) -> Result<Vec<(Partition, i64)>> {
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
        Ok(self.book().settle(&done))
    }

    /// A consumer error while waiting: a broker that went away is waited for (librdkafka
    /// reconnects by itself); anything else is the caller's.
    fn on_error(&self, e: KafkaError) -> Result<()> {
        match e.rdkafka_error_code() {
            Some(code) if is_transient(code) || is_rebalance(code) => {
                tracing::debug!("Kafka consumer: {code}; waiting for the broker");
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
fn parse_offset(text: &str) -> Result<(i32, i64)> {
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
            let consumer = self.consumer()?.clone();
            // `recv` returns a record in the same poll that takes it from librdkafka's queue,
            // so cancelling this await loses nothing.
            match consumer.recv().await {
                Ok(m) => {
                    if let Some(d) = self.accept(&m) {
                        return Ok(d);
                    }
                }
                Err(e) => self.on_error(e)?,
            }
        }
    }

    async fn try_recv(&mut self) -> Result<Option<Delivery>> {
        if let Some(d) = self.take_retry() {
            return Ok(Some(d));
        }
        let consumer = self.consumer()?.clone();
        loop {
            match consumer.recv().now_or_never() {
                None => return Ok(None),
                Some(Ok(m)) => {
                    if let Some(d) = self.accept(&m) {
                        return Ok(Some(d));
                    }
                }
                Some(Err(e)) => {
                    self.on_error(e)?;
                    return Ok(None);
                }
            }
        }
    }

    async fn ack(&mut self, tag: AckTag) -> Result<()> {
        let moved = self.settle_tags(&[tag])?;
        self.commit(moved).await
    }

    async fn ack_many(&mut self, tags: &[AckTag]) -> Result<()> {
        let moved = self.settle_tags(tags)?;
        self.commit(moved).await
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
            settles: Some((h.partition, h.offset, h.epoch)),
        });
        self.flush_poison().await
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        let flushed = self.flush_poison().await;
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
