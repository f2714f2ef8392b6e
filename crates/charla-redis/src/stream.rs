//! Stream mode over a Redis stream named after the room.
//!
//! Producers `XADD room MAXLEN ~ N * payload <json>`. A subscriber without a group reads with
//! `XREAD` from its start point and keeps its position itself. A subscriber in a group uses
//! `XREADGROUP` (so the group's members share the entries and the group resumes where it
//! acked), acks with `XACK`, and takes over entries that a dead member left pending with
//! `XAUTOCLAIM` once they have been idle for `consumer_ttl`. Entries delivered
//! `max_deliveries` times, and entries that are not chat messages, go to the dead letters.
//!
//! Retention (`stream_maxlen`, `stream_max_age`) trims the stream's head, also entries a
//! reader has not reached yet. Such losses are counted, never silent (`take_missed`): every
//! read is a MULTI with `XINFO STREAM`, whose `entries-added` minus `length` is how many
//! entries were ever removed from the head. A plain reader knows the sequence number of its
//! position (how many entries were ever added up to it); when its position is older than the
//! first entry left, the difference is what it missed. A group's position and sequence come
//! from `XINFO GROUPS` (`last-delivered-id`, `entries-read`, Redis 7); servers keep
//! `entries-read` differently after a gap (Redis counts only entries delivered, charla serve
//! resyncs at the stream's end), so the read asks before and after and keeps the difference to
//! the true sequence in `charla:{R}:missed:{G}`. Pending entries that were trimmed (XAUTOCLAIM's deleted ids) are counted
//! too. The counts are exact while entries leave the stream only through retention (charla
//! never XDELs) and, for a group, unless two members' reads interleave between one's read and
//! its update of that key right after a gap; when the plain reader starts after an id that is already gone, it warns that
//! it cannot say how many it missed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use charla_core::{
    AckTag, BrokerError, DeadLetter, DeadReason, Delivery, Failure, Message, Mode, Result,
    StartFrom, Subscriber, Subscription,
};
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamRangeReply, StreamReadReply,
};
use redis::Value;

use crate::ids::{id_before, id_key};
use crate::queue::{default_consumer_name, unknown_tag};
use crate::{keys, map_err, Options, RedisBroker};

/// The stream entry field that holds the JSON message.
pub const PAYLOAD_FIELD: &str = "payload";

const BLOCK_MS: u64 = 1000;

struct Entry {
    id: String,
    payload: Option<Vec<u8>>,
    deliveries: u32,
    /// False for a pending entry the stream no longer has (read back as `[id, nil]`).
    exists: bool,
}

pub struct StreamSubscriber {
    /// A group member's own connection (its waits block on it); a plain reader's is the
    /// broker's shared one, and it waits through `wakers`.
    conn: MultiplexedConnection,
    /// Without a group: the broker's shared waits (see [`crate::wake`]).
    wakers: Option<std::sync::Arc<crate::wake::Wakers>>,
    room: String,
    dead: String,
    group: Option<String>,
    consumer: String,
    prefetch: usize,
    opts: Options,
    /// Chat messages only, or other JSON objects too (`Subscription::events`).
    decode: charla_core::Decoder,
    /// Without a group: the last id read.
    position: String,
    fetched: VecDeque<Entry>,
    /// tag → entry id (group mode).
    inflight: HashMap<u64, String>,
    acked: Vec<String>,
    next_tag: u64,
    last_claim: Instant,
    /// Our own pending entries from an earlier life are read once, at start.
    read_own_pending: bool,
    /// Without a group: how many entries were ever added up to `position` (None: unknown).
    seq: Option<u64>,
    /// The stream's last id at the last read: a blocking wait starts after it.
    wait_after: String,
    /// The last read took all there was as of `wait_after` (fewer than `prefetch`): the next
    /// one waits first. A wait after `wait_after` returns at once when anything came since, so
    /// a non-blocking read before it would be a round trip that finds nothing.
    drained: bool,
    /// Entries lost to retention since the last `take_missed`.
    missed: u64,
    /// Group mode: gaps already reported for the group (see the module doc).
    missed_key: String,
}

/// What `XINFO STREAM` says about retention.
struct StreamState {
    /// Entries ever added minus entries left: how many were removed from the head.
    removed: u64,
    added: u64,
    first: Option<String>,
    last_generated: String,
}

/// The fields of an XINFO reply (a RESP3 map, or RESP2 name/value pairs).
fn info_fields(v: Value) -> HashMap<String, Value> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(m) => m,
        Value::Array(items) => {
            let mut out = Vec::new();
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((redis::from_redis_value::<String>(k).ok()?, v)))
        .collect()
}

fn field_u64(f: &HashMap<String, Value>, name: &str) -> Option<u64> {
    f.get(name)
        .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
}

fn field_string(f: &HashMap<String, Value>, name: &str) -> Option<String> {
    f.get(name)
        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
}

/// Our group's `last-delivered-id` and `entries-read` (None when the server does not know it)
/// from an `XINFO GROUPS` reply.
fn group_info(v: Value, group: &str) -> Option<(String, Option<u64>)> {
    let Value::Array(groups) = v else { return None };
    let g = groups
        .into_iter()
        .map(info_fields)
        .find(|f| field_string(f, "name").as_deref() == Some(group))?;
    Some((
        field_string(&g, "last-delivered-id").unwrap_or_else(|| "0-0".into()),
        field_u64(&g, "entries-read"),
    ))
}

fn stream_state(v: Value) -> Option<StreamState> {
    let f = info_fields(v);
    let added = field_u64(&f, "entries-added")?;
    let length = field_u64(&f, "length")?;
    let first = match f.get("first-entry") {
        Some(Value::Array(e)) => e
            .first()
            .and_then(|id| redis::from_redis_value_ref::<String>(id).ok()),
        _ => None,
    };
    Some(StreamState {
        removed: added.saturating_sub(length),
        added,
        first,
        last_generated: field_string(&f, "last-generated-id").unwrap_or_else(|| "0-0".into()),
    })
}

impl StreamSubscriber {
    pub async fn start(broker: &RedisBroker, sub: Subscription) -> Result<Self> {
        let sub_has_group = sub.group.is_some();
        // A plain reader's commands do not block: they share the broker's connection, and its
        // waits share a few blocking ones (a gateway reads thousands of rooms this way).
        let (mut conn, wakers) = if sub_has_group {
            (broker.blocking_connection().await?, None)
        } else {
            (broker.conn.clone(), Some(broker.wakers.clone()))
        };
        let opts = broker.opts.clone();
        let room = sub.room.clone();
        let err = |e| map_err(e, &opts.address);
        let mut position = String::new();
        let mut seq = None;
        // A time: after the last id any earlier millisecond could have.
        let start_from = match sub.start.time() {
            Some(secs) => StartFrom::After(format!(
                "{}-{}",
                secs?.saturating_mul(1000).saturating_sub(1),
                u64::MAX
            )),
            None => sub.start.clone(),
        };
        if let Some(group) = &sub.group {
            let start = match &start_from {
                StartFrom::Latest => "$".to_owned(),
                StartFrom::Beginning => "0".to_owned(),
                StartFrom::After(id) => id.clone(),
            };
            let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&room)
                .arg(group)
                .arg(&start)
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Ok(_) => {}
                // The group exists: it resumes where its members acked, whatever `start` says.
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(err(e)),
            }
        } else {
            // "$" cannot be used across successive XREADs without losing what arrives in
            // between: resolve "now" to the current last id once, with its sequence number.
            let state = match redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&room)
                .query_async::<Value>(&mut conn)
                .await
            {
                Ok(v) => stream_state(v),
                Err(e) if is_no_such_key(&e) => None,
                Err(e) => return Err(err(e)),
            };
            (position, seq) = match &start_from {
                StartFrom::Beginning => ("0-0".to_owned(), Some(0)),
                StartFrom::Latest => match state {
                    Some(s) => (s.last_generated, Some(s.added)),
                    None => ("0-0".to_owned(), Some(0)),
                },
                StartFrom::After(id) => {
                    // Known only at the end of the stream; elsewhere it would take counting.
                    let seq = match &state {
                        Some(s) if !id_before(id, &s.last_generated) => Some(s.added),
                        None => Some(0),
                        _ => None,
                    };
                    (id.clone(), seq)
                }
            };
        }
        Ok(StreamSubscriber {
            decode: sub.decoder(),
            conn,
            wakers,
            dead: keys::dead(&room),
            missed_key: keys::missed(&room, sub.group.as_deref().unwrap_or("")),
            room,
            consumer: sub.consumer.clone().unwrap_or_else(default_consumer_name),
            group: sub.group,
            prefetch: sub.prefetch.max(1),
            opts,
            // A group's first wait: for anything new.
            wait_after: if position.is_empty() {
                "$".to_owned()
            } else {
                position.clone()
            },
            position,
            fetched: VecDeque::new(),
            inflight: HashMap::new(),
            acked: Vec::new(),
            next_tag: 0,
            last_claim: Instant::now() - Duration::from_secs(3600),
            // A group member first reads back what it held in an earlier life; a plain reader
            // holds nothing (left `true`, its wait returned at once and the idle reader spun,
            // sending non-blocking reads back to back).
            read_own_pending: sub_has_group,
            seq,
            missed: 0,
            drained: false,
        })
    }

    fn err(&self, e: redis::RedisError) -> BrokerError {
        map_err(e, &self.opts.address)
    }

    /// Read what is there (counting what retention removed first), or with `block` only wait
    /// up to [`BLOCK_MS`] for something new: the read that follows takes it, so every read
    /// goes through the counting below.
    async fn fetch(&mut self, block: bool) -> Result<()> {
        if block {
            if self.read_own_pending {
                return Ok(());
            }
            if let Some(wakers) = &self.wakers {
                let limit = Duration::from_millis(BLOCK_MS);
                return wakers.wait(&self.room, &self.wait_after, limit).await;
            }
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.room)
                .arg(&self.wait_after)
                .query_async::<Value>(&mut self.conn)
                .await
                .map_err(|e| self.err(e))?;
            return Ok(());
        }
        let Some(group) = self.group.clone() else {
            // On the shared connection, whose response timeout is long (it carries every
            // call): a read that does not come back as soon as it would on a reader's own
            // blocking connection means the path is dead, and says so as quickly.
            let limit = Duration::from_millis(BLOCK_MS) + crate::BLOCKING_MARGIN;
            return match tokio::time::timeout(limit, self.read_plain()).await {
                Ok(read) => read,
                Err(_) => Err(BrokerError::Unavailable {
                    address: self.opts.address.clone(),
                    reason: format!("no answer to a read in {} s", limit.as_secs()),
                }),
            };
        };
        self.flush_acks().await?;
        if !self.read_own_pending {
            return self.read_group(&group).await;
        }
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.prefetch)
            .arg("STREAMS")
            .arg(&self.room)
            .arg("0")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        let before = self.fetched.len();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            self.fetched.push_back(to_entry(entry, 1));
        }
        if self.fetched.len() == before {
            self.read_own_pending = false; // nothing (more) left from an earlier life
        }
        Ok(())
    }

    fn report_missed(&mut self, lost: u64, why: &str) {
        if lost > 0 {
            tracing::warn!(room = %self.room, lost, "{why}");
            self.missed += lost;
        }
    }

    /// A plain reader's read: XREAD and XINFO STREAM in one transaction, so the count of
    /// entries removed from the head belongs to the same moment as the entries read.
    async fn read_plain(&mut self) -> Result<()> {
        let read: redis::RedisResult<(Option<StreamReadReply>, Value)> = redis::pipe()
            .atomic()
            .cmd("XREAD")
            .arg("COUNT")
            .arg(self.prefetch)
            .arg("STREAMS")
            .arg(&self.room)
            .arg(&self.position)
            .cmd("XINFO")
            .arg("STREAM")
            .arg(&self.room)
            .query_async(&mut self.conn)
            .await;
        let (reply, info) = match read {
            Ok(r) => r,
            Err(e) if is_no_such_key(&e) => return Ok(()), // no stream yet
            Err(e) => return Err(self.err(e)),
        };
        let state = stream_state(info);
        let entries: Vec<StreamId> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        if let Some(st) = &state {
            self.wait_after = st.last_generated.clone();
            self.drained = entries.len() < self.prefetch;
            if !entries.is_empty() {
                let gap = st
                    .first
                    .as_deref()
                    .is_some_and(|first| id_before(&self.position, first));
                let seq_first = if gap {
                    // Everything between our position and the first entry left was removed
                    // before we read it; the first entry left is number `removed + 1`.
                    match self.seq {
                        Some(seq) => self.report_missed(
                            st.removed.saturating_sub(seq),
                            "stream entries were removed by retention before this reader read them",
                        ),
                        None => {
                            tracing::warn!(room = %self.room, after = %self.position, "stream entries after this reader's start were removed by retention before it read them; how many is unknown")
                        }
                    }
                    Some(st.removed + 1)
                } else {
                    self.seq.map(|s| s + 1)
                };
                self.seq = seq_first.map(|s| s + entries.len() as u64 - 1);
            }
        }
        for entry in entries {
            self.position = entry.id.clone();
            self.fetched.push_back(to_entry(entry, 0));
        }
        Ok(())
    }

    /// A group member's read of new entries: the group's position and `entries-read`, the
    /// stream's retention counters, the read and the gaps already reported, in one
    /// transaction. A read that jumps from a position older than the first entry left over
    /// removed entries is the one that reports them (see the module doc).
    async fn read_group(&mut self, group: &str) -> Result<()> {
        type Read = (Value, Value, Option<StreamReadReply>, Value, Option<u64>);
        let (before, info, reply, after, drift): Read = redis::pipe()
            .atomic()
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.room)
            .cmd("XINFO")
            .arg("STREAM")
            .arg(&self.room)
            .cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.prefetch)
            .arg("STREAMS")
            .arg(&self.room)
            .arg(">")
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.room)
            .cmd("GET")
            .arg(&self.missed_key)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        let entries: Vec<StreamId> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        let state = stream_state(info);
        if let Some(st) = &state {
            self.wait_after = st.last_generated.clone();
            self.drained = entries.len() < self.prefetch;
        }
        let (before, after) = (group_info(before, group), group_info(after, group));
        let n = entries.len() as u64;
        if let (Some(st), Some((last, Some(read))), Some((_, Some(read_after))), true) =
            (&state, before, after, n > 0)
        {
            // `drift` = how far the group's entries-read is behind the true sequence number of
            // its position: the gaps it jumped that the server's counter does not include
            // (Redis only counts entries delivered; charla serve resyncs at the stream's end).
            let drift = drift.unwrap_or(0);
            let seq_last = read.saturating_add(drift);
            let gap = st
                .first
                .as_deref()
                .is_some_and(|first| id_before(&last, first));
            let seq_first = if gap {
                // Everything between the group's position and the first entry left was
                // removed unread; the first entry left is number `removed + 1`.
                self.report_missed(
                    st.removed.saturating_sub(seq_last),
                    "stream entries were removed by retention before the group read them",
                );
                st.removed + 1
            } else {
                seq_last + 1
            };
            let new_drift = (seq_first + n - 1).saturating_sub(read_after);
            if new_drift != drift {
                redis::cmd("SET")
                    .arg(&self.missed_key)
                    .arg(new_drift)
                    .query_async::<()>(&mut self.conn)
                    .await
                    .map_err(|e| self.err(e))?;
            }
        }
        for entry in entries {
            self.fetched.push_back(to_entry(entry, 0));
        }
        Ok(())
    }

    /// Dead-letter entries that were delivered too often, then take over entries that members
    /// of the group have left idle for longer than `consumer_ttl`.
    async fn claim_abandoned(&mut self) -> Result<()> {
        let Some(group) = self.group.clone() else {
            return Ok(());
        };
        self.last_claim = Instant::now();
        let idle = self.opts.consumer_ttl.as_millis() as u64;
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.room)
            .arg(&group)
            .arg("IDLE")
            .arg(idle)
            .arg("-")
            .arg("+")
            .arg(self.prefetch)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        for p in pending.ids {
            if p.times_delivered as u32 >= self.opts.max_deliveries {
                let payload = self.payload_of(&p.id).await?;
                tracing::warn!(room = %self.room, id = %p.id, "entry delivered {} times without an ack: moved to {}", p.times_delivered, self.dead);
                let failure = Failure::new(DeadReason::MaxDeliveries)
                    .attempts(u32::try_from(p.times_delivered).unwrap_or(u32::MAX));
                self.dead_letter(&p.id, payload, &failure).await?;
            }
        }
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.room)
            .arg(&group)
            .arg(&self.consumer)
            .arg(idle)
            .arg("0-0")
            .arg("COUNT")
            .arg(self.prefetch)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        if !claimed.claimed.is_empty() {
            tracing::info!(room = %self.room, count = claimed.claimed.len(), "took over entries left pending by another member");
        }
        for entry in claimed.claimed {
            let deliveries = entry.delivered_count.unwrap_or(2).saturating_sub(1) as u32;
            self.fetched.push_back(to_entry(entry, deliveries.max(1)));
        }
        // Entries removed from the stream while pending: lost to retention. Say so (they
        // count as missed), then settle them: there is nothing left to deliver.
        if !claimed.deleted_ids.is_empty() {
            self.report_missed(
                claimed.deleted_ids.len() as u64,
                "pending stream entries were removed by retention before they were acknowledged",
            );
            self.acked.extend(claimed.deleted_ids);
            self.flush_acks().await?;
        }
        Ok(())
    }

    /// The next fetched entry as a delivery; bad entries are dead-lettered (group) or skipped.
    async fn next_fetched(&mut self) -> Result<Option<Delivery>> {
        while let Some(entry) = self.fetched.pop_front() {
            let decoded = match &entry.payload {
                Some(p) => (self.decode)(p, &self.room, self.opts.max_message_bytes).map_err(|e| {
                    Failure::new(DeadReason::of_decode_error(&e)).error(&e.to_string())
                }),
                None => Err(Failure::new(DeadReason::NotJson)
                    .error(&format!("entry has no '{PAYLOAD_FIELD}' field"))),
            };
            match decoded {
                Ok(mut message) => {
                    message.deliveries = message.deliveries.max(entry.deliveries);
                    self.next_tag += 1;
                    if self.group.is_some() {
                        self.inflight.insert(self.next_tag, entry.id.clone());
                    }
                    return Ok(Some(Delivery {
                        redelivered: entry.deliveries > 0,
                        message,
                        offset: Some(entry.id),
                        tag: AckTag(self.next_tag),
                    }));
                }
                // Our own pending entry from an earlier life, removed by retention since.
                Err(_) if !entry.exists && self.group.is_some() => {
                    self.report_missed(
                        1,
                        "a pending stream entry was removed by retention before it was acknowledged",
                    );
                    self.dead_letter(&entry.id, None, &Failure::new(DeadReason::Unknown))
                        .await?;
                }
                Err(failure) if self.group.is_some() => {
                    tracing::warn!(room = %self.room, id = %entry.id, "moved a bad entry to {}: {}", self.dead, failure.error);
                    self.dead_letter(&entry.id, entry.payload, &failure).await?;
                }
                Err(failure) => {
                    tracing::warn!(room = %self.room, id = %entry.id, "skipped a bad entry: {}", failure.error)
                }
            }
        }
        Ok(None)
    }

    async fn payload_of(&mut self, id: &str) -> Result<Option<Vec<u8>>> {
        let entries: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(&self.room)
            .arg(id)
            .arg(id)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(entries
            .into_iter()
            .next()
            .and_then(|(_, mut f)| f.remove(PAYLOAD_FIELD)))
    }

    /// Copy to the dead letters (with why) and settle in the group, in one transaction.
    async fn dead_letter(
        &mut self,
        id: &str,
        payload: Option<Vec<u8>>,
        failure: &Failure,
    ) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(p) = payload {
            let dead = DeadLetter::new(p, &self.room, Mode::Stream, failure);
            pipe.cmd("RPUSH")
                .arg(&self.dead)
                .arg(dead.encode())
                .ignore();
        }
        if let Some(group) = &self.group {
            pipe.cmd("XACK").arg(&self.room).arg(group).arg(id).ignore();
        }
        pipe.query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| self.err(e))
    }

    async fn flush_acks(&mut self) -> Result<()> {
        let Some(group) = &self.group else {
            self.acked.clear();
            return Ok(());
        };
        if self.acked.is_empty() {
            return Ok(());
        }
        redis::cmd("XACK")
            .arg(&self.room)
            .arg(group)
            .arg(&self.acked)
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| map_err(e, &self.opts.address))?;
        self.acked.clear();
        Ok(())
    }

    /// Make entries we hold but did not process claimable by the other members at once:
    /// XCLAIM to ourselves with a large IDLE marks them as long abandoned.
    async fn release(&mut self, ids: Vec<String>) -> Result<()> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        if ids.is_empty() {
            return Ok(());
        }
        let abandoned_for = self.opts.consumer_ttl.as_millis() as u64 * 1000 + 3_600_000;
        redis::cmd("XCLAIM")
            .arg(&self.room)
            .arg(group)
            .arg(&self.consumer)
            .arg(0)
            .arg(&ids)
            .arg("IDLE")
            .arg(abandoned_for)
            .arg("JUSTID")
            .query_async::<Value>(&mut self.conn)
            .await
            .map(drop)
            .map_err(|e| map_err(e, &self.opts.address))
    }
}

/// The most entries one XREVRANGE of `history` asks for.
const HISTORY_BATCH: usize = 1000;

/// A stream room's most recent chat messages before `before` (a stream id), oldest first
/// (`Broker::history`): `XREVRANGE room (before|+ - COUNT n`, reversed. Entries that are not
/// chat messages are skipped, and the read goes on further back until the page is full or
/// the stream's first entry was read. Nothing is written: no group, no ack. A missing key is
/// an empty page; a key of another type is the WRONGTYPE error. The exclusive `(id` bound
/// needs Redis 6.2, like the XAUTOCLAIM and LMOVE charla relies on anyway.
pub(crate) async fn history(
    conn: &mut MultiplexedConnection,
    opts: &Options,
    room: &str,
    limit: usize,
    before: Option<&str>,
) -> Result<Vec<Delivery>> {
    let mut end = match before {
        Some(id) if id_key(id).is_some() => format!("({id}"),
        Some(id) => {
            return Err(BrokerError::InvalidArgument(format!(
                "'{id}' is not a Redis stream id (<milliseconds>-<sequence>, as history and \
                 listen print them)"
            )))
        }
        None => "+".to_owned(),
    };
    let mut page = Vec::new();
    while page.len() < limit {
        // Bounded, so a huge limit is several replies rather than one without end.
        let want = (limit - page.len()).min(HISTORY_BATCH);
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(room)
            .arg(&end)
            .arg("-")
            .arg("COUNT")
            .arg(want)
            .query_async(conn)
            .await
            .map_err(|e| map_err(e, &opts.address))?;
        let read = reply.ids.len();
        for entry in reply.ids {
            end = format!("({}", entry.id);
            let entry = to_entry(entry, 0);
            let decoded = match &entry.payload {
                Some(p) => {
                    Message::decode(p, room, opts.max_message_bytes).map_err(|e| e.to_string())
                }
                None => Err(format!("entry has no '{PAYLOAD_FIELD}' field")),
            };
            match decoded {
                Ok(message) => page.push(Delivery {
                    message,
                    redelivered: false,
                    offset: Some(entry.id),
                    tag: AckTag(0),
                }),
                Err(reason) => {
                    tracing::debug!(room, id = %entry.id, "history skips an entry: {reason}")
                }
            }
        }
        if read < want {
            break; // the stream's first entry was read
        }
    }
    page.reverse();
    Ok(page)
}

fn is_no_such_key(e: &redis::RedisError) -> bool {
    e.to_string().contains("no such key")
}

fn to_entry(mut entry: StreamId, deliveries: u32) -> Entry {
    let exists = !entry.map.is_empty();
    let payload = match entry.map.remove(PAYLOAD_FIELD) {
        Some(Value::BulkString(b)) => Some(b),
        Some(Value::SimpleString(s)) => Some(s.into_bytes()),
        _ => None,
    };
    Entry {
        id: entry.id,
        payload,
        deliveries,
        exists,
    }
}

#[async_trait]
impl Subscriber for StreamSubscriber {
    async fn recv(&mut self) -> Result<Delivery> {
        loop {
            if let Some(d) = self.next_fetched().await? {
                return Ok(d);
            }
            if self.group.is_some() && self.last_claim.elapsed() >= self.opts.consumer_ttl / 2 {
                self.claim_abandoned().await?;
            }
            if self.fetched.is_empty() && (!self.drained || self.read_own_pending) {
                self.fetch(false).await?;
            }
            if self.fetched.is_empty() {
                // After the wait (something came, or it timed out), or if this future is
                // dropped during it, the next step is a read.
                self.drained = false;
                self.fetch(true).await?;
            }
        }
    }

    async fn try_recv(&mut self) -> Result<Option<Delivery>> {
        self.next_fetched().await
    }

    fn take_missed(&mut self) -> u64 {
        std::mem::take(&mut self.missed)
    }

    async fn ack(&mut self, tag: AckTag) -> Result<()> {
        self.ack_many(&[tag]).await
    }

    async fn ack_many(&mut self, tags: &[AckTag]) -> Result<()> {
        if self.group.is_none() {
            return Ok(()); // a plain reader keeps no state on the server
        }
        for tag in tags {
            let id = self
                .inflight
                .remove(&tag.0)
                .ok_or_else(|| unknown_tag(*tag))?;
            self.acked.push(id);
        }
        self.flush_acks().await
    }

    async fn nack(&mut self, tag: AckTag, requeue: bool) -> Result<()> {
        let Some(group) = self.group.clone() else {
            return Ok(());
        };
        let id = self
            .inflight
            .remove(&tag.0)
            .ok_or_else(|| unknown_tag(tag))?;
        self.flush_acks().await?;
        if !requeue {
            tracing::warn!(room = %self.room, %id, "entry rejected by the consumer: moved to {}", self.dead);
            let payload = self.payload_of(&id).await?;
            return self
                .dead_letter(&id, payload, &Failure::new(DeadReason::Nacked))
                .await;
        }
        // Claiming it again counts a delivery on the server; hand it out again unless it has
        // had enough.
        let claimed: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XCLAIM")
            .arg(&self.room)
            .arg(&group)
            .arg(&self.consumer)
            .arg(0)
            .arg(&id)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        let Some((_, mut fields)) = claimed.into_iter().next() else {
            return Ok(()); // trimmed away meanwhile
        };
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.room)
            .arg(&group)
            .arg(&id)
            .arg(&id)
            .arg(1)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        let times = pending
            .ids
            .first()
            .map(|p| p.times_delivered as u32)
            .unwrap_or(1);
        let payload = fields.remove(PAYLOAD_FIELD);
        if times >= self.opts.max_deliveries {
            tracing::warn!(room = %self.room, %id, "entry delivered {times} times without an ack: moved to {}", self.dead);
            let failure = Failure::new(DeadReason::MaxDeliveries).attempts(times);
            return self.dead_letter(&id, payload, &failure).await;
        }
        self.fetched.push_front(Entry {
            exists: true,
            id,
            payload,
            deliveries: times.saturating_sub(1).max(1),
        });
        Ok(())
    }

    async fn reject(&mut self, tag: AckTag, failure: Failure) -> Result<()> {
        if self.group.is_none() {
            return Ok(()); // a plain reader settles nothing: the entry stays in the stream
        }
        let id = self
            .inflight
            .remove(&tag.0)
            .ok_or_else(|| unknown_tag(tag))?;
        self.flush_acks().await?;
        tracing::warn!(room = %self.room, %id, reason = %failure.reason, "entry rejected by the consumer: moved to {}", self.dead);
        let payload = self.payload_of(&id).await?;
        self.dead_letter(&id, payload, &failure).await
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.flush_acks().await?;
        let mut held: Vec<String> = self.fetched.drain(..).map(|e| e.id).collect();
        held.extend(self.inflight.drain().map(|(_, id)| id));
        self.release(held).await
    }
}
