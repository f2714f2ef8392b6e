//! Stream mode over a Redis stream named after the room.
//!
//! Producers `XADD room MAXLEN ~ N * payload <json>`. A subscriber without a group reads with
//! `XREAD` from its start point and keeps its position itself. A subscriber in a group uses
//! `XREADGROUP` (so the group's members share the entries and the group resumes where it
//! acked), acks with `XACK`, and takes over entries that a dead member left pending with
//! `XAUTOCLAIM` once they have been idle for `consumer_ttl`. Entries delivered
//! `max_deliveries` times, and entries that are not chat messages, go to the dead letters.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use charla_core::{
    AckTag, BrokerError, Delivery, Message, Result, StartFrom, Subscriber, Subscription,
};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::Value;

use crate::queue::{default_consumer_name, unknown_tag};
use crate::{keys, map_err, Options, RedisBroker};

/// The stream entry field that holds the JSON message.
pub const PAYLOAD_FIELD: &str = "payload";

const BLOCK_MS: u64 = 1000;

struct Entry {
    id: String,
    payload: Option<Vec<u8>>,
    deliveries: u32,
}

pub struct StreamSubscriber {
    conn: MultiplexedConnection,
    room: String,
    dead: String,
    group: Option<String>,
    consumer: String,
    prefetch: usize,
    opts: Options,
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
}

impl StreamSubscriber {
    pub async fn start(broker: &RedisBroker, sub: Subscription) -> Result<Self> {
        let mut conn = broker.blocking_connection().await?;
        let opts = broker.opts.clone();
        let room = sub.room.clone();
        let err = |e| map_err(e, &opts.address);
        let mut position = String::new();
        if let Some(group) = &sub.group {
            let start = match &sub.start {
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
            position = match &sub.start {
                StartFrom::Beginning => "0-0".to_owned(),
                StartFrom::After(id) => id.clone(),
                // "$" cannot be used across successive XREADs without losing what arrives in
                // between: resolve "now" to the current last id once.
                StartFrom::Latest => {
                    let last: Vec<(String, Value)> = redis::cmd("XREVRANGE")
                        .arg(&room)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query_async(&mut conn)
                        .await
                        .map_err(err)?;
                    last.into_iter()
                        .next()
                        .map(|(id, _)| id)
                        .unwrap_or_else(|| "0-0".into())
                }
            };
        }
        Ok(StreamSubscriber {
            conn,
            dead: keys::dead(&room),
            room,
            consumer: sub.consumer.clone().unwrap_or_else(default_consumer_name),
            group: sub.group,
            prefetch: sub.prefetch.max(1),
            opts,
            position,
            fetched: VecDeque::new(),
            inflight: HashMap::new(),
            acked: Vec::new(),
            next_tag: 0,
            last_claim: Instant::now() - Duration::from_secs(3600),
            read_own_pending: true,
        })
    }

    fn err(&self, e: redis::RedisError) -> BrokerError {
        map_err(e, &self.opts.address)
    }

    async fn fetch(&mut self, block: bool) -> Result<()> {
        let Some(group) = self.group.clone() else {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT").arg(self.prefetch);
            if block {
                cmd.arg("BLOCK").arg(BLOCK_MS);
            }
            cmd.arg("STREAMS").arg(&self.room).arg(&self.position);
            let reply: Option<StreamReadReply> = cmd
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.err(e))?;
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                self.position = entry.id.clone();
                self.fetched.push_back(to_entry(entry, 0));
            }
            return Ok(());
        };
        self.flush_acks().await?;
        let (start, redelivered) = if self.read_own_pending {
            ("0", 1)
        } else {
            (">", 0)
        };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.prefetch);
        if block && !self.read_own_pending {
            cmd.arg("BLOCK").arg(BLOCK_MS);
        }
        cmd.arg("STREAMS").arg(&self.room).arg(start);
        let reply: Option<StreamReadReply> = cmd
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        let before = self.fetched.len();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            self.fetched.push_back(to_entry(entry, redelivered));
        }
        if self.read_own_pending && self.fetched.len() == before {
            self.read_own_pending = false; // nothing (more) left from an earlier life
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
                self.dead_letter(&p.id, payload).await?;
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
        // Entries deleted from the stream while pending: nothing to deliver, settle them.
        if !claimed.deleted_ids.is_empty() {
            self.acked.extend(claimed.deleted_ids);
            self.flush_acks().await?;
        }
        Ok(())
    }

    /// The next fetched entry as a delivery; bad entries are dead-lettered (group) or skipped.
    async fn next_fetched(&mut self) -> Result<Option<Delivery>> {
        while let Some(entry) = self.fetched.pop_front() {
            let decoded = match &entry.payload {
                Some(p) => Message::decode(p, &self.room, self.opts.max_message_bytes)
                    .map_err(|e| e.to_string()),
                None => Err(format!("entry has no '{PAYLOAD_FIELD}' field")),
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
                Err(reason) if self.group.is_some() => {
                    tracing::warn!(room = %self.room, id = %entry.id, "moved a bad entry to {}: {reason}", self.dead);
                    self.dead_letter(&entry.id, entry.payload).await?;
                }
                Err(reason) => {
                    tracing::warn!(room = %self.room, id = %entry.id, "skipped a bad entry: {reason}")
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

    /// Copy to the dead letters and settle in the group, in one transaction.
    async fn dead_letter(&mut self, id: &str, payload: Option<Vec<u8>>) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(p) = payload {
            pipe.cmd("RPUSH").arg(&self.dead).arg(p).ignore();
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

fn to_entry(mut entry: StreamId, deliveries: u32) -> Entry {
    let payload = match entry.map.remove(PAYLOAD_FIELD) {
        Some(Value::BulkString(b)) => Some(b),
        Some(Value::SimpleString(s)) => Some(s.into_bytes()),
        _ => None,
    };
    Entry {
        id: entry.id,
        payload,
        deliveries,
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
            if self.fetched.is_empty() {
                self.fetch(false).await?;
            }
            if self.fetched.is_empty() {
                self.fetch(true).await?;
            }
        }
    }

    async fn try_recv(&mut self) -> Result<Option<Delivery>> {
        self.next_fetched().await
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
            return self.dead_letter(&id, payload).await;
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
            return self.dead_letter(&id, payload).await;
        }
        self.fetched.push_front(Entry {
            id,
            payload,
            deliveries: times.saturating_sub(1).max(1),
        });
        Ok(())
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.flush_acks().await?;
        let mut held: Vec<String> = self.fetched.drain(..).map(|e| e.id).collect();
        held.extend(self.inflight.drain().map(|(_, id)| id));
        self.release(held).await
    }
}
