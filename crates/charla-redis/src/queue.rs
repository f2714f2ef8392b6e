//! Queue mode over a Redis list, compatible with the seed and reliable.
//!
//! Producers `LPUSH` onto the list named after the room, exactly like the seed's
//! `enviar_mensaje`, so the seed's `BRPOP` consumer can read charla's messages and charla reads
//! the seed's. A charla consumer does not pop, though: it moves each message with
//! `LMOVE room processing RIGHT LEFT` into its own processing list, and removes it from there
//! only when the message is acknowledged (`LREM processing -1 payload`). A consumer that dies
//! between receiving and acking leaves its messages in its processing list; its heartbeat key
//! expires, and the next consumer that looks moves them back to the queue, counting the
//! delivery in the message's `deliveries` field. A message handed out `max_deliveries` times,
//! or one that is not a chat message at all, goes to the dead-letter list.
//!
//! Throughput: up to `prefetch` LMOVEs travel in one pipeline, and `recv_batch` + `ack_many`
//! settle a whole batch with one pipeline of LREMs, so a busy consumer pays a couple of round
//! trips per batch, not per message.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use charla_core::{AckTag, BrokerError, Delivery, Message, Result, Subscriber, Subscription};
use redis::aio::MultiplexedConnection;
use redis::Value;

use crate::{keys, map_err, Options, RedisBroker};

/// How long one BLMOVE waits before the consumer looks for dead consumers' messages.
const BLOCK: Duration = Duration::from_secs(1);

pub struct QueueSubscriber {
    /// Carries blocking BLMOVE: a connection of this consumer's own.
    conn: MultiplexedConnection,
    room: String,
    processing: String,
    alive: String,
    dead: String,
    consumer: String,
    prefetch: usize,
    opts: Options,
    /// Moved into our processing list, not yet returned by `recv`.
    fetched: VecDeque<Vec<u8>>,
    /// Returned by `recv`, not yet acked: tag → payload (LREM needs the exact bytes).
    inflight: HashMap<u64, Vec<u8>>,
    /// Acked payloads whose LREM is being sent.
    acked: Vec<Vec<u8>>,
    next_tag: u64,
    last_recovery: Instant,
    /// The last fetch filled up completely: the queue likely has more waiting.
    backlog: bool,
    /// The LMOVE pipeline for the last fetch size, reused while the size stays the same.
    moves: Option<(usize, redis::Pipeline)>,
    _heartbeat: AbortOnDrop,
}

/// Stops the heartbeat when the subscriber goes away, so a dropped consumer looks dead.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl QueueSubscriber {
    pub async fn start(broker: &RedisBroker, sub: Subscription) -> Result<Self> {
        let consumer = sub.consumer.clone().unwrap_or_else(default_consumer_name);
        let room = sub.room;
        let opts = broker.opts.clone();
        let alive = keys::alive(&room, &consumer);
        let mut conn = broker.blocking_connection().await?;
        // The heartbeat exists before the processing list does, so a recovering consumer
        // never mistakes a starting one for a dead one.
        beat(&mut conn, &alive, opts.consumer_ttl, &opts.address).await?;
        let heartbeat = {
            let mut conn = broker.conn.clone();
            let (alive, ttl, address) = (alive.clone(), opts.consumer_ttl, opts.address.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    if let Err(e) = beat(&mut conn, &alive, ttl, &address).await {
                        tracing::debug!("heartbeat failed: {e}");
                    }
                }
            })
        };
        let mut me = QueueSubscriber {
            conn,
            processing: keys::processing(&room, &consumer),
            dead: keys::dead(&room),
            alive,
            room,
            consumer,
            prefetch: sub.prefetch.max(1),
            opts,
            fetched: VecDeque::new(),
            inflight: HashMap::new(),
            acked: Vec::new(),
            next_tag: 0,
            last_recovery: Instant::now(),
            backlog: false,
            moves: None,
            _heartbeat: AbortOnDrop(heartbeat),
        };
        // A consumer restarted under the same name finds its earlier life's messages in its
        // processing list: give them back first, so the list holds only what this life fetched.
        let own = me.processing.clone();
        me.requeue_list(&own, true).await?;
        me.recover_dead_consumers().await?;
        Ok(me)
    }

    fn err(&self, e: redis::RedisError) -> BrokerError {
        map_err(e, &self.opts.address)
    }

    /// Up to `prefetch` non-blocking moves in one pipeline, preceded by an LTRIM of `trim`
    /// acked messages from the tail of the processing list (see `ack_many`), so acking a
    /// batch and fetching the next cost one round trip.
    async fn fetch_batch(&mut self, trim: usize) -> Result<()> {
        let want = self.prefetch.saturating_sub(self.inflight.len()).max(1);
        // The LMOVE pipeline is the same every time for a given size: build it once.
        if self.moves.as_ref().map(|(n, _)| *n) != Some(want) {
            let mut pipe = redis::pipe();
            for _ in 0..want {
                pipe.cmd("LMOVE")
                    .arg(&self.room)
                    .arg(&self.processing)
                    .arg("RIGHT")
                    .arg("LEFT");
            }
            self.moves = Some((want, pipe));
        }
        let Some((_, moves)) = &self.moves else {
            return Ok(());
        };
        let mut conn = self.conn.clone();
        let fetch = moves.query_async::<Vec<Option<Vec<u8>>>>(&mut conn);
        let moved = if trim > 0 {
            // Concurrently on the same connection: LTRIM drops acked messages from the tail
            // while LMOVE adds at the head, so their order does not matter.
            let mut trim_conn = self.conn.clone();
            let mut ltrim = redis::cmd("LTRIM");
            ltrim.arg(&self.processing).arg(0).arg(-(trim as i64) - 1);
            let trimmed = ltrim.query_async::<()>(&mut trim_conn);
            let (trimmed, moved) = futures::join!(trimmed, fetch);
            trimmed.map_err(|e| map_err(e, &self.opts.address))?;
            moved
        } else {
            fetch.await
        }
        .map_err(|e| map_err(e, &self.opts.address))?;
        let before = self.fetched.len();
        self.fetched.extend(moved.into_iter().flatten());
        self.backlog = self.fetched.len() - before == want;
        Ok(())
    }

    async fn flush_acks(&mut self) -> Result<()> {
        if self.acked.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for payload in &self.acked {
            pipe.cmd("LREM")
                .arg(&self.processing)
                .arg(-1)
                .arg(payload)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        self.acked.clear();
        Ok(())
    }

    /// The next fetched message as a delivery; bad payloads on the way go to the dead letters.
    async fn next_fetched(&mut self) -> Result<Option<Delivery>> {
        while let Some(payload) = self.fetched.pop_front() {
            match Message::decode(&payload, &self.room, self.opts.max_message_bytes) {
                Ok(message) => {
                    self.next_tag += 1;
                    let redelivered = message.deliveries > 0;
                    self.inflight.insert(self.next_tag, payload);
                    return Ok(Some(Delivery {
                        message,
                        redelivered,
                        offset: None,
                        tag: AckTag(self.next_tag),
                    }));
                }
                Err(e) => {
                    tracing::warn!(room = %self.room, "moved a bad message to {}: {e}", self.dead);
                    self.move_out(&payload, &payload, true).await?;
                }
            }
        }
        Ok(None)
    }

    /// Wait up to [`BLOCK`] for one message.
    async fn fetch_blocking(&mut self) -> Result<()> {
        let moved: Option<Vec<u8>> = redis::cmd("BLMOVE")
            .arg(&self.room)
            .arg(&self.processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(BLOCK.as_secs_f64())
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        self.fetched.extend(moved);
        Ok(())
    }

    /// Atomically take `payload` out of our processing list and put `replacement` at the head
    /// of the line (`RPUSH` onto the consumers' end) or onto the dead-letter list.
    async fn move_out(&mut self, payload: &[u8], replacement: &[u8], to_dead: bool) -> Result<()> {
        let target = if to_dead { &self.dead } else { &self.room };
        redis::pipe()
            .atomic()
            .cmd("RPUSH")
            .arg(target)
            .arg(replacement)
            .ignore()
            .cmd("LREM")
            .arg(&self.processing)
            .arg(-1)
            .arg(payload)
            .ignore()
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| self.err(e))
    }

    /// Give a message back for another delivery, or dead-letter it once it has had enough.
    async fn requeue(&mut self, payload: &[u8]) -> Result<()> {
        match crate::bump_deliveries(payload) {
            Some((bumped, n)) if n < self.opts.max_deliveries => {
                self.move_out(payload, &bumped, false).await
            }
            Some(_) => {
                tracing::warn!(room = %self.room, "message delivered {} times without an ack: moved to {}", self.opts.max_deliveries, self.dead);
                self.move_out(payload, payload, true).await
            }
            None => self.move_out(payload, payload, true).await,
        }
    }

    /// Move what dead consumers of this room left in their processing lists back to the queue.
    async fn recover_dead_consumers(&mut self) -> Result<()> {
        self.last_recovery = Instant::now();
        let lists = keys::scan(
            &mut self.conn,
            &keys::all_processing(&self.room),
            &self.opts.address,
        )
        .await?;
        for list in lists {
            let Some(owner) = keys::consumer_of(&list) else {
                continue;
            };
            if owner == self.consumer {
                continue;
            }
            let alive: bool = redis::cmd("EXISTS")
                .arg(keys::alive(&self.room, owner))
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.err(e))?;
            if alive {
                continue;
            }
            let recovered = self.requeue_list(&list, false).await?;
            if recovered > 0 {
                tracing::info!(room = %self.room, dead_consumer = owner, recovered, "requeued unacknowledged messages of a dead consumer");
            }
        }
        Ok(())
    }

    /// Requeue every message of `list` (another consumer's processing list, or our own with
    /// `own`), counting a delivery for each. Returns how many were moved.
    async fn requeue_list(&mut self, list: &str, own: bool) -> Result<usize> {
        let mut moved = 0usize;
        loop {
            let cmd = if own {
                let mut c = redis::cmd("LINDEX");
                c.arg(list).arg(-1);
                c
            } else {
                // Claim one at a time into our own list (atomic), then requeue from there: a
                // crash in between leaves the message in our list, recoverable in turn.
                let mut c = redis::cmd("LMOVE");
                c.arg(list).arg(&self.processing).arg("RIGHT").arg("LEFT");
                c
            };
            let payload: Option<Vec<u8>> = cmd
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.err(e))?;
            let Some(payload) = payload else { break };
            self.requeue(&payload).await?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Hand back everything we hold: fetched-but-unreturned messages unchanged (they were never
    /// seen), returned-but-unacked ones as redeliveries.
    async fn give_back(&mut self) -> Result<()> {
        let unseen = self.fetched.len();
        self.fetched.clear();
        for _ in 0..unseen {
            // Newest first to the consumers' end, so the oldest ends up first in line.
            redis::cmd("LMOVE")
                .arg(&self.processing)
                .arg(&self.room)
                .arg("LEFT")
                .arg("RIGHT")
                .query_async::<Option<Vec<u8>>>(&mut self.conn)
                .await
                .map_err(|e| self.err(e))?;
        }
        let mut unacked: Vec<(u64, Vec<u8>)> = self.inflight.drain().collect();
        unacked.sort_by_key(|(tag, _)| std::cmp::Reverse(*tag));
        for (_, payload) in unacked {
            self.requeue(&payload).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Subscriber for QueueSubscriber {
    async fn recv(&mut self) -> Result<Delivery> {
        loop {
            if let Some(d) = self.next_fetched().await? {
                return Ok(d);
            }
            self.flush_acks().await?; // only left over when an earlier flush failed
            self.fetch_batch(0).await?;
            if self.fetched.is_empty() {
                if self.last_recovery.elapsed() >= self.opts.consumer_ttl / 2 {
                    self.recover_dead_consumers().await?;
                }
                self.fetch_blocking().await?;
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
        for tag in tags {
            let payload = self
                .inflight
                .remove(&tag.0)
                .ok_or_else(|| unknown_tag(*tag))?;
            self.acked.push(payload);
        }
        // The processing list holds, from its tail, the in-flight messages oldest first and
        // then the fetched ones. When the acked messages are exactly the oldest in flight
        // (the usual case: a batch acked in order), one LTRIM drops them all from the tail
        // instead of one LREM each.
        let oldest_left = self.inflight.keys().min().copied().unwrap_or(u64::MAX);
        let in_order = !tags.is_empty() && tags.iter().all(|t| t.0 < oldest_left);
        if in_order && self.acked.len() == tags.len() {
            let trim = self.acked.len();
            self.acked.clear();
            if self.backlog && self.fetched.is_empty() && self.inflight.is_empty() {
                // More is waiting: fetch the next batch in the same round trip as the ack.
                return self.fetch_batch(trim).await;
            }
            return redis::cmd("LTRIM")
                .arg(&self.processing)
                .arg(0)
                .arg(-(trim as i64) - 1)
                .query_async::<()>(&mut self.conn)
                .await
                .map_err(|e| self.err(e));
        }
        self.flush_acks().await
    }

    async fn nack(&mut self, tag: AckTag, requeue: bool) -> Result<()> {
        let payload = self
            .inflight
            .remove(&tag.0)
            .ok_or_else(|| unknown_tag(tag))?;
        self.flush_acks().await?;
        if requeue {
            self.requeue(&payload).await
        } else {
            tracing::warn!(room = %self.room, "message rejected by the consumer: moved to {}", self.dead);
            self.move_out(&payload, &payload, true).await
        }
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.flush_acks().await?;
        self.give_back().await?;
        redis::cmd("DEL")
            .arg(&self.alive)
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| self.err(e))
    }
}

pub(crate) fn unknown_tag(tag: AckTag) -> BrokerError {
    BrokerError::InvalidArgument(format!(
        "unknown or already acknowledged delivery {}",
        tag.0
    ))
}

async fn beat(
    conn: &mut MultiplexedConnection,
    key: &str,
    ttl: Duration,
    address: &str,
) -> Result<()> {
    redis::cmd("SET")
        .arg(key)
        .arg(1)
        .arg("PX")
        .arg(ttl.as_millis() as u64)
        .query_async::<Value>(conn)
        .await
        .map(drop)
        .map_err(|e| map_err(e, address))
}

/// `host-pid-random`: readable in `KEYS charla:*` and unique across restarts.
pub(crate) fn default_consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let rand = ulid::Ulid::new().to_string();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &rand[rand.len() - 6..].to_ascii_lowercase()
    )
}
