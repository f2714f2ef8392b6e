//! Queue mode over a Redis list, compatible with the seed and reliable.
//!
//! Producers `LPUSH` onto the list named after the room, exactly like the seed's
//! `enviar_mensaje`, so the seed's `BRPOP` consumer can read charla's messages and charla reads
//! the seed's. A charla consumer does not pop, though: it moves each message with
//! `LMOVE room processing RIGHT LEFT` into its own processing list, and removes it from there
//! only when the message is acknowledged (`LREM processing -1 payload`: by its exact bytes,
//! which the message id makes unique, so an ack removes exactly the acknowledged messages
//! whatever else the list holds). A consumer that dies between receiving and acking leaves its
//! messages in its processing list; its heartbeat key expires, and the next consumer that looks
//! moves them back to the queue, counting the delivery in the message's `deliveries` field. A
//! message handed out `max_deliveries` times, or one that is not a chat message at all, goes to
//! the dead-letter list.
//!
//! Faults this survives:
//! - a cancelled `recv` (or one whose reply timed out): the server may have moved a message
//!   into our processing list without us seeing the reply. The subscriber remembers that it is
//!   unsure and, before it goes on, compares the list with what it knows (`LRANGE`): messages
//!   it did not know about are delivered, messages it thought it held but that are gone (taken
//!   over) are forgotten.
//! - a heartbeat that cannot be written: the heartbeat refreshes the key only while it exists
//!   (`SET … XX`), and `recv` refuses to hand out anything once the last successful beat is
//!   older than 3/4 of the TTL, or the key was found gone: the consumer stops with an error
//!   before (or as soon as) the others may take its list over, instead of working on messages
//!   that are being handed to someone else.
//! - a live consumer whose list was taken over: acks remove by payload, so they never touch
//!   another consumer's messages, and requeueing is a WATCH/MULTI transaction that moves a
//!   message only if it is still in our list.
//!
//! Throughput: up to `prefetch` LMOVEs travel in one pipeline, and `recv_batch` + `ack_many`
//! settle a whole batch with one pipeline of LREMs (sent beside the next fetch when more is
//! waiting), so a busy consumer pays a couple of round trips per batch, not per message.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use charla_core::{
    AckTag, BrokerError, DeadLetter, DeadReason, Delivery, Failure, Mode, Result, Subscriber,
    Subscription,
};
use redis::aio::MultiplexedConnection;
use redis::Value;

use crate::{keys, map_err, Options, RedisBroker};

/// How long one BLMOVE waits before the consumer looks for dead consumers' messages.
pub(crate) const BLOCK: Duration = Duration::from_secs(1);

/// LMOVEs in a new consumer's first fetch (see `QueueSubscriber::fetch_size`).
const FIRST_FETCH: usize = 16;

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
    /// Chat messages only, or other JSON objects too (`Subscription::events`).
    decode: charla_core::Decoder,
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
    /// LMOVEs in the next fetch (LMOVE moves one element; Redis has no batch move): doubles
    /// while fetches come back full, up to `prefetch`, and falls to about what the last one
    /// found when they do not. A consumer of a quiet queue so sends a few commands per
    /// message instead of `prefetch` of them (500 LMOVEs per message cost redis-server ~47 µs
    /// of CPU per message at 10 000 msg/s); a busy one is back to full batches within a few
    /// round trips.
    fetch_size: usize,
    /// The LMOVE pipeline for the last fetch size, reused while the size stays the same.
    moves: Option<(usize, redis::Pipeline)>,
    /// Likewise the trim + fetch pipeline of a busy consumer, for (trimmed, fetched).
    trim_and_moves: Option<((usize, usize), redis::Pipeline)>,
    /// A command that changes our processing list was sent and its reply not recorded (the
    /// future was dropped, or the reply timed out): the list may hold what we do not know
    /// about, or lack what we think we hold. Cleared by [`QueueSubscriber::reconcile`].
    unsure: bool,
    /// The last fetch ended with `WATCH alive` + `EXISTS alive` and the key existed: see
    /// [`QueueSubscriber::trim_acked`]. Any EXEC or UNWATCH on the connection ends the watch.
    watching: bool,
    /// The processing list holds, from its tail, the in-flight messages in tag order and then
    /// the fetched ones in order. False after a reconcile found messages we did not know,
    /// until the list is empty again.
    order_known: bool,
    /// Set once the heartbeat is lost: every later `recv` fails with it.
    stopped: Option<BrokerError>,
    heartbeat: Arc<Mutex<Beat>>,
    _heartbeat: AbortOnDrop,
}

/// What the heartbeat task tells the consumer.
struct Beat {
    /// When the last successful beat was sent (the key lives `consumer_ttl` from a bit later).
    last_ok: Instant,
    /// The last failure, for the error message.
    error: Option<(String, bool)>,
    /// The key was gone when we refreshed it: others may already be taking our list over.
    expired: bool,
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
        let decode = sub.decoder();
        let room = sub.room;
        let opts = broker.opts.clone();
        let alive = keys::alive(&room, &consumer);
        let mut conn = broker.blocking_connection().await?;
        // The heartbeat exists before the processing list does, so a recovering consumer
        // never mistakes a starting one for a dead one.
        let started = Instant::now();
        beat(&mut conn, &alive, opts.consumer_ttl, false, &opts.address).await?;
        let state = Arc::new(Mutex::new(Beat {
            last_ok: started,
            error: None,
            expired: false,
        }));
        let heartbeat = {
            let mut conn = broker.conn.clone();
            let (alive, ttl, address) = (alive.clone(), opts.consumer_ttl, opts.address.clone());
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 5).await;
                    let sent = Instant::now();
                    // XX: refresh only. Once the key has expired, others may be moving our list
                    // away; recreating it would hide that from them and from us.
                    let outcome = beat(&mut conn, &alive, ttl, true, &address).await;
                    let Ok(mut s) = state.lock() else { return };
                    match outcome {
                        Ok(true) => s.last_ok = sent,
                        Ok(false) => {
                            s.expired = true;
                            return;
                        }
                        Err(e) => {
                            tracing::debug!("heartbeat failed: {e}");
                            s.error = Some((e.to_string(), e.is_transient()));
                        }
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
            decode,
            fetched: VecDeque::new(),
            inflight: HashMap::new(),
            acked: Vec::new(),
            next_tag: 0,
            last_recovery: Instant::now(),
            backlog: false,
            fetch_size: FIRST_FETCH.min(sub.prefetch.max(1)),
            moves: None,
            trim_and_moves: None,
            unsure: false,
            watching: false,
            order_known: true,
            stopped: None,
            heartbeat: state,
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

    /// How long without a successful beat before the heartbeat counts as lost: 3/4 of the TTL,
    /// so the consumer stops before the key can expire and others take its list over.
    fn stale_after(&self) -> Duration {
        self.opts.consumer_ttl * 3 / 4
    }

    /// Time left before the heartbeat counts as lost (zero when it is, or the key expired).
    fn beat_left(&self) -> Duration {
        match self.heartbeat.lock() {
            Ok(s) if !s.expired => self.stale_after().saturating_sub(s.last_ok.elapsed()),
            _ => Duration::ZERO,
        }
    }

    /// Fails once the heartbeat is lost: the key expired (others may be taking our list), or
    /// no beat succeeded for 3/4 of the TTL (it may expire any moment). Sticky: a consumer
    /// that may have been taken over must be closed and started again, not carry on.
    fn check_heartbeat(&mut self) -> Result<()> {
        if let Some(e) = &self.stopped {
            return Err(e.clone());
        }
        let stale_after = self.stale_after();
        let lost = match self.heartbeat.lock() {
            Ok(s) if s.expired => Some((
                "its heartbeat key had expired (the consumer was presumed dead and its messages are being handed to others)".to_owned(),
                true,
            )),
            Ok(s) if s.last_ok.elapsed() > stale_after => {
                let (why, transient) = s
                    .error
                    .clone()
                    .unwrap_or_else(|| ("no reply".to_owned(), true));
                Some((
                    format!(
                        "its heartbeat could not be written for {} ms ({why})",
                        s.last_ok.elapsed().as_millis()
                    ),
                    transient,
                ))
            }
            Ok(_) => None,
            Err(_) => Some(("its heartbeat task failed".to_owned(), false)),
        };
        let Some((why, transient)) = lost else {
            return Ok(());
        };
        let reason = format!(
            "queue consumer '{}' of room '{}' stopped: {why}; its unacknowledged messages go to the other consumers",
            self.consumer, self.room
        );
        let e = if transient {
            BrokerError::Unreachable {
                address: self.opts.address.clone(),
                reason,
            }
        } else {
            BrokerError::backend(crate::BACKEND, reason)
        };
        self.stopped = Some(e.clone());
        Err(e)
    }

    /// After a command on our processing list lost its reply, make our books match the list:
    /// messages in it that we do not know (a BLMOVE whose reply was dropped) are delivered,
    /// fetched messages no longer in it (taken over) are forgotten. In-flight messages that
    /// are gone stay in flight: acking them is a no-op, and their taker redelivers them.
    async fn reconcile(&mut self) -> Result<()> {
        if !self.unsure {
            return Ok(());
        }
        // Earlier commands on this connection (even a BLMOVE still blocked on the server) are
        // answered in order, so this sees their effect.
        self.flush_acks().await?;
        let list: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&self.processing)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        let mut present: HashMap<&[u8], usize> = HashMap::new();
        for p in &list {
            *present.entry(p.as_slice()).or_default() += 1;
        }
        for p in self.inflight.values() {
            if let Some(n) = present.get_mut(p.as_slice()) {
                *n = n.saturating_sub(1);
            }
        }
        let mut kept = VecDeque::with_capacity(self.fetched.len());
        for p in self.fetched.drain(..) {
            match present.get_mut(p.as_slice()) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    kept.push_back(p);
                }
                _ => {}
            }
        }
        self.fetched = kept;
        // What is left is ours and unknown; oldest (the list's tail) first.
        for p in list.iter().rev() {
            if let Some(n) = present.get_mut(p.as_slice()) {
                if *n > 0 {
                    *n -= 1;
                    self.fetched.push_back(p.clone());
                    self.order_known = false;
                }
            }
        }
        self.unsure = false;
        Ok(())
    }

    /// Up to `prefetch` non-blocking moves in one pipeline, then `WATCH alive` + `EXISTS
    /// alive` for the next ack's fast path. `acks` (see `ack_many`) go first in the same
    /// pipeline, so acking a batch and fetching the next cost one round trip, and a trim's
    /// EXEC (which ends every watch) comes before the new WATCH. LMOVE adds at the head, the
    /// acks remove from the tail or by payload, so the two do not disturb each other.
    /// Returns whether `acks` took effect (an aborted trim did not).
    async fn fetch_batch(&mut self, acks: Option<Ack>) -> Result<bool> {
        let want = self
            .prefetch
            .saturating_sub(self.inflight.len())
            .min(self.fetch_size)
            .max(1);
        // The LMOVE pipeline is the same every time for a given size: build it once.
        if self.moves.as_ref().map(|(n, _)| *n) != Some(want) {
            let mut pipe = redis::pipe();
            self.append_moves(&mut pipe, want);
            self.moves = Some((want, pipe));
        }
        self.unsure = true;
        self.watching = false;
        let mut conn = self.conn.clone();
        let (settled, mut replies) = match acks {
            Some(acks) => {
                let mut built = None;
                let pipe = match acks {
                    // The steady state of a busy consumer: the same pipeline every time.
                    Ack::Trim(k) => {
                        if self.trim_and_moves.as_ref().map(|(key, _)| *key) != Some((k, want)) {
                            let mut pipe = redis::pipe();
                            self.append_ack(&mut pipe, &acks);
                            self.append_moves(&mut pipe, want);
                            self.trim_and_moves = Some(((k, want), pipe));
                        }
                        &self.trim_and_moves.as_ref().ok_or(BrokerError::Closed)?.1
                    }
                    Ack::Remove => {
                        let mut pipe = redis::pipe();
                        self.append_ack(&mut pipe, &acks);
                        self.append_moves(&mut pipe, want);
                        &*built.insert(pipe)
                    }
                };
                let n = match acks {
                    Ack::Trim(_) => 3,
                    Ack::Remove => self.acked.len(),
                };
                let mut replies: Vec<Value> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| map_err(e, &self.opts.address))?;
                let settled = acks.took_effect(replies.get(..n).unwrap_or_default());
                replies.drain(..n.min(replies.len()));
                (settled, replies)
            }
            None => {
                let Some((_, moves)) = &self.moves else {
                    return Ok(false);
                };
                let replies: Vec<Value> = moves
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| map_err(e, &self.opts.address))?;
                (false, replies)
            }
        };
        let exists = replies.pop();
        replies.pop(); // WATCH's OK
        let before = self.fetched.len();
        for v in replies {
            match v {
                Value::BulkString(p) => self.fetched.push_back(p),
                Value::Nil => {}
                other => {
                    return Err(BrokerError::backend(
                        crate::BACKEND,
                        format!("unexpected LMOVE reply {other:?}"),
                    ))
                }
            }
        }
        let got = self.fetched.len() - before;
        self.backlog = got == want;
        self.fetch_size = if self.backlog {
            (self.fetch_size * 2).min(self.prefetch)
        } else {
            got.max(1).next_power_of_two().min(self.prefetch)
        };
        self.watching = matches!(exists, Some(Value::Int(1)));
        self.unsure = false;
        Ok(settled)
    }

    /// `want` LMOVEs, then WATCH and EXISTS of our heartbeat key (nothing ignored: the
    /// replies are read by position).
    fn append_moves(&self, pipe: &mut redis::Pipeline, want: usize) {
        for _ in 0..want {
            pipe.cmd("LMOVE")
                .arg(&self.room)
                .arg(&self.processing)
                .arg("RIGHT")
                .arg("LEFT");
        }
        pipe.cmd("WATCH").arg(&self.alive);
        pipe.cmd("EXISTS").arg(&self.alive);
    }

    /// Append the commands of an ack; returns how many replies they produce.
    fn append_ack(&self, pipe: &mut redis::Pipeline, ack: &Ack) -> usize {
        match ack {
            Ack::Trim(n) => {
                pipe.cmd("MULTI");
                pipe.cmd("LTRIM")
                    .arg(&self.processing)
                    .arg(0)
                    .arg(-(*n as i64) - 1);
                pipe.cmd("EXEC");
                3
            }
            Ack::Remove => {
                for payload in &self.acked {
                    pipe.cmd("LREM").arg(&self.processing).arg(-1).arg(payload);
                }
                self.acked.len()
            }
        }
    }

    /// Send an ack on its own; returns whether it took effect.
    async fn send_ack(&mut self, ack: Ack) -> Result<bool> {
        let mut pipe = redis::pipe();
        let n = self.append_ack(&mut pipe, &ack);
        if n == 0 {
            return Ok(true);
        }
        let replies: Vec<Value> = pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(ack.took_effect(&replies))
    }

    /// The fast ack: when the acked messages are exactly the oldest in flight and our books
    /// are exact, they are the tail of our processing list, and one `LTRIM` drops them all
    /// instead of one LREM (with the whole payload) each. That is only safe while no one else
    /// touches our list, i.e. while nobody can have seen our heartbeat key missing: the key
    /// existed when the last fetch WATCHed it, and our heartbeat never recreates it (`XX`), so
    /// it existed all along; the EXEC aborts if the key changed since (a beat, an expiry, a
    /// delete), and the last successful beat is recent enough that it has not expired yet.
    /// `None` when these do not hold: the caller sends LREMs.
    fn trim_acked(&self, tags: &[AckTag]) -> Option<Ack> {
        let oldest_left = self.inflight.keys().min().copied().unwrap_or(u64::MAX);
        let in_order = !tags.is_empty() && tags.iter().all(|t| t.0 < oldest_left);
        let fresh = !self.beat_left().is_zero();
        if !(in_order
            && self.acked.len() == tags.len()
            && self.watching
            && !self.unsure
            && self.order_known
            && fresh)
        {
            return None;
        }
        Some(Ack::Trim(tags.len()))
    }

    async fn flush_acks(&mut self) -> Result<()> {
        if self.acked.is_empty() {
            return Ok(());
        }
        self.send_ack(Ack::Remove).await?;
        self.acked.clear();
        Ok(())
    }

    /// The next fetched message as a delivery; bad payloads on the way go to the dead letters.
    async fn next_fetched(&mut self) -> Result<Option<Delivery>> {
        while let Some(payload) = self.fetched.pop_front() {
            match (self.decode)(&payload, &self.room, self.opts.max_message_bytes) {
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
                    let failure =
                        Failure::new(DeadReason::of_decode_error(&e)).error(&e.to_string());
                    self.dead_letter(&payload, &failure).await?;
                }
            }
        }
        Ok(None)
    }

    /// Wait up to [`BLOCK`] for one message, and never past the moment the heartbeat would
    /// count as lost: the check after it must come in time.
    async fn fetch_blocking(&mut self) -> Result<()> {
        // 0 would mean "forever" to BLMOVE.
        let block = BLOCK.min(self.beat_left()).max(Duration::from_millis(10));
        self.unsure = true;
        let moved: Option<Vec<u8>> = redis::cmd("BLMOVE")
            .arg(&self.room)
            .arg(&self.processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(block.as_secs_f64())
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        // Something arrived while we waited: more is likely on its way, so the ack of this one
        // carries the next fetch (one round trip per message instead of two when messages
        // come one at a time).
        self.backlog = moved.is_some();
        self.fetched.extend(moved);
        self.unsure = false;
        Ok(())
    }

    /// Atomically take `payload` out of our processing list and put `replacement` at the head
    /// of the line (`RPUSH` onto the consumers' end) or onto the dead-letter list — only if it
    /// is still in our list: a consumer that took our list over owns it now, and pushing it
    /// anyway would duplicate it. WATCH/MULTI rather than a script, so it also works where
    /// scripting is off. Returns whether it was moved.
    async fn move_out(
        &mut self,
        payload: &[u8],
        replacement: &[u8],
        to_dead: bool,
    ) -> Result<bool> {
        let target = if to_dead {
            self.dead.clone()
        } else {
            self.room.clone()
        };
        loop {
            // A dropped future may leave the WATCH set: harmless, the next EXEC may only abort
            // once more and is retried; the MULTI…EXEC block is sent as one write.
            self.unsure = true;
            self.watching = false; // the EXEC or UNWATCH below ends the fetch's watch
            let (position,): (Option<i64>,) = redis::pipe()
                .cmd("WATCH")
                .arg(&self.processing)
                .ignore()
                .cmd("LPOS")
                .arg(&self.processing)
                .arg(payload)
                .arg("RANK")
                .arg(-1)
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.err(e))?;
            if position.is_none() {
                redis::cmd("UNWATCH")
                    .query_async::<()>(&mut self.conn)
                    .await
                    .map_err(|e| self.err(e))?;
                self.unsure = false;
                return Ok(false);
            }
            let done: Option<(i64, i64)> = redis::pipe()
                .atomic()
                .cmd("RPUSH")
                .arg(&target)
                .arg(replacement)
                .cmd("LREM")
                .arg(&self.processing)
                .arg(-1)
                .arg(payload)
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.err(e))?;
            if done.is_some() {
                self.unsure = false;
                return Ok(true);
            }
            // Our list changed in between (a fetch of ours cannot run now; a taker's LMOVE
            // can): look again.
        }
    }

    /// Moves a message of our processing list to the dead letters with why.
    async fn dead_letter(&mut self, payload: &[u8], failure: &Failure) -> Result<bool> {
        let dead = DeadLetter::new(payload.to_vec(), &self.room, Mode::Queue, failure);
        self.move_out(payload, &dead.encode(), true).await
    }

    /// Give a message back for another delivery, or dead-letter it once it has had enough.
    async fn requeue(&mut self, payload: &[u8]) -> Result<bool> {
        match crate::bump_deliveries(payload) {
            Some((bumped, n)) if n < self.opts.max_deliveries => {
                self.move_out(payload, &bumped, false).await
            }
            Some((_, n)) => {
                tracing::warn!(room = %self.room, "message delivered {} times without an ack: moved to {}", self.opts.max_deliveries, self.dead);
                let failure = Failure::new(DeadReason::MaxDeliveries).attempts(n);
                self.dead_letter(payload, &failure).await
            }
            None => {
                let failure = Failure::new(DeadReason::NotJson);
                self.dead_letter(payload, &failure).await
            }
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
        // Unsure while an LMOVE's reply or the requeue after it is outstanding (a cancel there
        // leaves a message in our list we do not know of); once the list came back empty
        // and everything was requeued, we are what we were before.
        let was_unsure = self.unsure;
        loop {
            let cmd = if own {
                let mut c = redis::cmd("LINDEX");
                c.arg(list).arg(-1);
                c
            } else {
                // Claim one at a time into our own list (atomic), then requeue from there: a
                // crash in between leaves the message in our list, recoverable in turn.
                self.unsure = true;
                let mut c = redis::cmd("LMOVE");
                c.arg(list).arg(&self.processing).arg("RIGHT").arg("LEFT");
                c
            };
            let payload: Option<Vec<u8>> = cmd
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.err(e))?;
            let Some(payload) = payload else {
                // Nothing moved, and every earlier message was requeued in full.
                if !own {
                    self.unsure = was_unsure;
                }
                break;
            };
            if self.requeue(&payload).await? {
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Hand back everything we hold: fetched-but-unreturned messages unchanged (they were never
    /// seen), returned-but-unacked ones as redeliveries.
    async fn give_back(&mut self) -> Result<()> {
        self.reconcile().await?;
        // Newest first to the consumers' end, so the oldest ends up first in line.
        while let Some(payload) = self.fetched.pop_back() {
            self.move_out(&payload, &payload, false).await?;
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
            self.check_heartbeat()?;
            self.reconcile().await?;
            if let Some(d) = self.next_fetched().await? {
                return Ok(d);
            }
            self.flush_acks().await?; // only left over when an earlier flush failed
            self.fetch_batch(None).await?;
            if self.fetched.is_empty() {
                if self.last_recovery.elapsed() >= self.opts.consumer_ttl / 2 {
                    self.recover_dead_consumers().await?;
                }
                self.fetch_blocking().await?;
            }
        }
    }

    async fn try_recv(&mut self) -> Result<Option<Delivery>> {
        self.check_heartbeat()?;
        self.reconcile().await?;
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
        let trim = self.trim_acked(tags);
        if self.inflight.is_empty() && self.fetched.is_empty() {
            self.order_known = true; // our list is empty by our books: its order is trivial
        }
        if self.backlog && self.fetched.is_empty() && self.inflight.is_empty() && !self.unsure {
            // More is waiting: fetch the next batch in the same round trip as the ack.
            let acks = trim.unwrap_or(Ack::Remove);
            if self.fetch_batch(Some(acks)).await? {
                self.acked.clear();
            }
            // An aborted trim left `acked` as it was: remove them one by one.
            return self.flush_acks().await;
        }
        if let Some(trim) = trim {
            self.watching = false; // the EXEC ends it
            if self.send_ack(trim).await? {
                self.acked.clear();
            }
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
            self.requeue(&payload).await.map(drop)
        } else {
            tracing::warn!(room = %self.room, "message rejected by the consumer: moved to {}", self.dead);
            let failure = Failure::new(DeadReason::Nacked).attempts(attempts_of(&payload));
            self.dead_letter(&payload, &failure).await.map(drop)
        }
    }

    async fn reject(&mut self, tag: AckTag, failure: Failure) -> Result<()> {
        let payload = self
            .inflight
            .remove(&tag.0)
            .ok_or_else(|| unknown_tag(tag))?;
        self.flush_acks().await?;
        tracing::warn!(room = %self.room, reason = %failure.reason, "message rejected by the consumer: moved to {}", self.dead);
        self.dead_letter(&payload, &failure).await.map(drop)
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

/// How an ack is sent: MULTI/LTRIM/EXEC dropping this many messages from the tail of the
/// processing list (see [`QueueSubscriber::trim_acked`]), or one LREM per acked payload.
enum Ack {
    Trim(usize),
    Remove,
}

impl Ack {
    /// From its replies: did it take effect? A trim whose EXEC aborted (nil) did not.
    fn took_effect(&self, replies: &[Value]) -> bool {
        match self {
            Ack::Trim(_) => matches!(replies.get(2), Some(Value::Array(_))),
            Ack::Remove => true,
        }
    }
}

pub(crate) fn unknown_tag(tag: AckTag) -> BrokerError {
    BrokerError::InvalidArgument(format!(
        "unknown or already acknowledged delivery {}",
        tag.0
    ))
}

/// The same error again (BrokerError is not Clone: its variants are plain data, rebuilt here).
/// Write the heartbeat key; with `refresh`, only if it still exists (`XX`). Returns whether
/// the key was written.
async fn beat(
    conn: &mut MultiplexedConnection,
    key: &str,
    ttl: Duration,
    refresh: bool,
    address: &str,
) -> Result<bool> {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(1).arg("PX").arg(ttl.as_millis() as u64);
    if refresh {
        cmd.arg("XX");
    }
    cmd.query_async::<Value>(conn)
        .await
        .map(|v| v != Value::Nil)
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

/// Deliveries of a payload so far, counting this one: its `deliveries` field (raised on each
/// redelivery) plus one.
fn attempts_of(payload: &[u8]) -> u32 {
    charla_core::Message::decode_any(payload, "", usize::MAX)
        .map_or(1, |m| m.deliveries.saturating_add(1))
}
