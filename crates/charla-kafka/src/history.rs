//! Reading a room back (`Broker::history`) and listing the rooms (`Broker::rooms`).
//!
//! A stream room's records are keyed by the room, so they sit in one partition; queue mode
//! (the same topic) spreads its records over every partition, so every partition is read.
//! Each partition is read backwards in windows from its end (the high watermark) until it
//! gave `limit` chat messages or its low watermark was reached. The partitions' messages are
//! merged by send time (`ts_us`, then partition and offset) and the last `limit` are the page.
//!
//! `before` (`PARTITION:OFFSET`, as deliveries print it) is a position in that order: on every
//! partition only messages that sort before the record there count, so pages neither overlap
//! nor leave gaps. (When that record is gone — retention — only its own partition below it is
//! read.)
//!
//! The consumer only `assign`s partitions at fixed offsets in the no-op reader group: it never
//! joins a group and never commits, so it takes nothing from any group or subscriber.

use std::time::Duration;

use charla_core::{AckTag, BrokerError, Delivery, Message, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::admin::{
    is_unknown_topic, partition_ends, topic_name, Admin, READER_GROUP, RESERVED_PREFIX,
};
use crate::client::{blocking, Settings, Tracing};
use crate::subscriber::parse_offset;

/// The longest one poll for a record of a window waits: the records are stored already, so
/// only a broker that stopped answering takes this long.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

/// Windows are at least this long, so that a room with many payloads that are not chat
/// messages is not read back one record at a time.
const MIN_WINDOW: i64 = 64;

/// Where messages sort in a page: send time, then partition and offset. Ties of time are
/// broken by where the records are stored, never by id: ids made in the same millisecond
/// differ in random bits, and ordering by them put messages out of their offset order, which
/// made page boundaries (cut by the key) disagree with the partition's order.
type Key = (i64, i32, i64);

struct Found {
    key: Key,
    partition: i32,
    offset: i64,
    message: Message,
}

/// A room's most recent chat messages before `before`, oldest first.
pub(crate) async fn history(
    settings: &Settings,
    room: &str,
    limit: usize,
    before: Option<&str>,
) -> Result<Vec<Delivery>> {
    let topic = topic_name(room)?.to_owned();
    let before = before.map(parse_offset).transpose()?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let consumer = reader(settings)?;
    let settings = settings.clone();
    blocking(move || read_history(&consumer, &settings, &topic, limit, before)).await?
}

/// The topics that are rooms: everything but charla's own (`charla-…`) and Kafka's internal
/// ones (`__consumer_offsets`, …), sorted.
pub(crate) async fn rooms(admin: &Admin, settings: &Settings) -> Result<Vec<String>> {
    let mut rooms: Vec<String> = admin
        .topic_names(settings)
        .await?
        .into_iter()
        .filter(|name| is_room(name))
        .collect();
    rooms.sort_unstable();
    rooms.dedup();
    Ok(rooms)
}

fn is_room(topic: &str) -> bool {
    !topic.starts_with(RESERVED_PREFIX) && !topic.starts_with("__") && topic_name(topic).is_ok()
}

/// A consumer that reads assigned partitions at fixed offsets and reports the end of a
/// partition (so a window that ends at the high watermark is known to be complete).
fn reader(settings: &Settings) -> Result<BaseConsumer<Tracing>> {
    settings
        .base()
        .set("group.id", READER_GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // Retention that removed a window's start meanwhile: read from what is left.
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .create_with_context(settings.context())
        .map_err(|e| settings.error(e))
}

/// Reads one topic back. Blocking, like every call of its consumer.
struct Reader<'a> {
    c: &'a BaseConsumer<Tracing>,
    settings: &'a Settings,
    topic: &'a str,
}

/// Blocking.
fn read_history(
    c: &BaseConsumer<Tracing>,
    settings: &Settings,
    topic: &str,
    limit: usize,
    before: Option<(i32, i64)>,
) -> Result<Vec<Delivery>> {
    let r = Reader { c, settings, topic };
    let ends = match partition_ends(c, topic) {
        Ok(ends) => ends,
        Err(e) if is_unknown_topic(&e) => return Ok(Vec::new()),
        Err(e) => return Err(settings.error(e)),
    };
    let mut found: Vec<Found> = Vec::new();
    // Where the record at `before` sorts: the cut for the other partitions.
    let mut cut: Option<Key> = None;
    if let Some((bp, bo)) = before {
        let Some(&(_, low, high)) = ends.iter().find(|(p, _, _)| *p == bp) else {
            return Err(BrokerError::InvalidArgument(format!(
                "topic {topic} has no partition {bp} (history positions are \
                 PARTITION:OFFSET as deliveries print them)"
            )));
        };
        if bo >= low && bo < high {
            cut = r
                .window(bp, bo, bo + 1, high)?
                .into_iter()
                .find(|f| f.offset == bo)
                .map(|f| f.key);
        }
        if cut.is_none() {
            // The record is gone (retention): its own partition below it is all there is.
            found.extend(r.back(bp, low, bo.clamp(low, high), high, limit, None)?);
        }
    }
    for &(partition, low, high) in &ends {
        match before {
            Some(_) if cut.is_none() => continue, // read above, by offset
            _ => {}
        }
        // Every partition, `before`'s own included, is cut by the page order, not by offset:
        // a partition's offsets need not follow send time (a producer's retry can store a
        // later message first), and a cut by offset on one partition and by time on the
        // others gave pages that overlapped or left a gap (seen on tansu).
        found.extend(r.back(partition, low, high, high, limit, cut.as_ref())?);
    }
    found.sort_by_key(|f| f.key);
    let skip = found.len().saturating_sub(limit);
    Ok(found
        .into_iter()
        .skip(skip)
        .map(|f| Delivery {
            message: f.message,
            redelivered: false,
            offset: Some(format!("{}:{}", f.partition, f.offset)),
            tag: AckTag(0),
        })
        .collect())
}

impl Reader<'_> {
    fn err(&self, e: KafkaError) -> BrokerError {
        self.settings.error(e)
    }

    /// Up to about `limit` chat messages of one partition below offset `end` (sorting
    /// before `cut` when given), reading windows backwards from `end` to `low`.
    fn back(
        &self,
        partition: i32,
        low: i64,
        mut end: i64,
        high: i64,
        limit: usize,
        cut: Option<&Key>,
    ) -> Result<Vec<Found>> {
        let mut found: Vec<Found> = Vec::new();
        while found.len() < limit && end > low {
            let want = i64::try_from(limit - found.len())
                .unwrap_or(i64::MAX)
                .max(MIN_WINDOW);
            let start = end.saturating_sub(want).max(low);
            let window = self.window(partition, start, end, high)?;
            found.extend(
                window
                    .into_iter()
                    .filter(|f| cut.is_none_or(|cut| f.key < *cut)),
            );
            end = start;
        }
        Ok(found)
    }

    /// The chat messages at offsets `start..end` of one partition whose high watermark was
    /// `high` (other payloads skipped).
    fn window(&self, partition: i32, start: i64, end: i64, high: i64) -> Result<Vec<Found>> {
        let topic = self.topic;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|e| self.err(e))?;
        // An assignment of its own per window: nothing fetched for an earlier one is left.
        self.c.unassign().map_err(|e| self.err(e))?;
        self.c.assign(&tpl).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        loop {
            match self.c.poll(POLL_TIMEOUT) {
                Some(Ok(m)) => {
                    let offset = m.offset();
                    if m.partition() != partition || offset < start {
                        continue;
                    }
                    if offset >= end {
                        break;
                    }
                    let payload = m.payload().unwrap_or_default();
                    match Message::decode(payload, topic, self.settings.max_bytes) {
                        Ok(message) => out.push(Found {
                            key: (message.ts_us, partition, offset),
                            partition,
                            offset,
                            message,
                        }),
                        Err(e) => tracing::debug!(
                            "{topic}[{partition}] offset {offset}: history skips it ({e})"
                        ),
                    }
                    if offset + 1 >= end {
                        break;
                    }
                }
                // The partition's end, which is this window's end only when the window
                // reaches the high watermark (below it, the records up to `end` exist).
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition && end >= high => break,
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(self.err(e)),
                None => {
                    return Err(BrokerError::Unavailable {
                        address: self.settings.address.clone(),
                        reason: format!(
                            "reading {topic}[{partition}] back from offset {start} timed out"
                        ),
                    })
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charla_s_own_and_kafka_s_internal_topics_are_not_rooms() {
        assert!(is_room("chat_cola"));
        assert!(is_room("app.error-1"));
        assert!(!is_room("charla-dead.chat_cola"));
        assert!(!is_room("__consumer_offsets"));
        assert!(!is_room("__transaction_state"));
    }
}
