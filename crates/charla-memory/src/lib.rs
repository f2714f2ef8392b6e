//! `memory://name`: a broker inside the process. Every mode with the same guarantees as the
//! networked backends, minus surviving the process. Brokers opened with the same name share
//! state, so a test (or a single-process demo) can connect a producer and a consumer to it.
//!
//! "A consumer dies" here means its [`Subscriber`] is dropped without acking: what it held
//! goes back to the queue (or becomes claimable in its stream group), marked redelivered.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use async_trait::async_trait;
use charla_core::{
    topic, AckTag, Broker, BrokerError, BrokerInfo, BrokerUrl, Capabilities, DeadLetter,
    DeadReason, DeadSelect, Delivery, Failure, Message, Mode, Publisher, Result, StartFrom,
    Subscriber, Subscription,
};
use tokio::sync::{mpsc, Notify};

const CAPABILITIES: Capabilities = Capabilities {
    queue: true,
    broadcast: true,
    stream: true,
    routing: true,
    stream_groups: true,
    group_shares_room: true,
    replay: true,
    redelivered_flag: true,
    dead_letters: true,
    dead_letter_actions: true,
    survives_restart: false,
    acks_survive_restart: true,
    publisher_resends: false,
    queue_order: true,
    counts_crashed_deliveries: true,
    history: true,
    list_rooms: true,
};

type Payload = Arc<[u8]>;

/// Poisoned locks cannot happen here in practice (no code panics while holding one); if one
/// did, carrying on with the data is better than propagating the panic to every client.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shared state of one named in-process broker.
#[derive(Default)]
struct Hub {
    queues: Mutex<HashMap<String, Arc<MemQueue>>>,
    streams: Mutex<HashMap<String, Arc<MemStream>>>,
    subscribers: Mutex<Vec<PubSubEntry>>,
    dead: Mutex<HashMap<String, Vec<DeadLetter>>>,
}

impl Hub {
    fn queue(&self, room: &str) -> Arc<MemQueue> {
        lock(&self.queues)
            .entry(room.to_owned())
            .or_default()
            .clone()
    }

    fn stream(&self, room: &str) -> Arc<MemStream> {
        lock(&self.streams)
            .entry(room.to_owned())
            .or_default()
            .clone()
    }

    fn dead_letter(&self, room: &str, mode: Mode, payload: &[u8], failure: &Failure) {
        tracing::warn!(room, reason = %failure.reason, error = %failure.error, "message moved to the dead letters");
        let dead = DeadLetter::new(payload.to_vec(), room, mode, failure);
        lock(&self.dead)
            .entry(room.to_owned())
            .or_default()
            .push(dead);
    }

    /// Takes the selected dead letters of `room` out (under the lock, so two operators never
    /// take the same one).
    fn take_dead(&self, room: &str, select: &DeadSelect) -> Vec<DeadLetter> {
        let mut dead = lock(&self.dead);
        let Some(list) = dead.get_mut(room) else {
            return Vec::new();
        };
        let (taken, kept) = std::mem::take(list)
            .into_iter()
            .partition(|d| select.matches(d));
        *list = kept;
        taken
    }
}

fn registry() -> &'static Mutex<HashMap<String, Arc<Hub>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<Hub>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// A connection to the in-process broker named by the URL's host (`memory://` is `default`).
pub struct MemoryBroker {
    hub: Arc<Hub>,
    name: String,
    max_message_bytes: usize,
    /// A message handed out this many times without an ack is dead-lettered instead of
    /// looping (`?max_deliveries=`).
    max_deliveries: u32,
}

impl MemoryBroker {
    pub fn connect(url: &BrokerUrl) -> Result<Self> {
        let name = url.url().host_str().unwrap_or("").to_owned();
        let name = if name.is_empty() {
            "default".to_owned()
        } else {
            name
        };
        let hub = lock(registry()).entry(name.clone()).or_default().clone();
        Ok(MemoryBroker {
            hub,
            name,
            max_message_bytes: url.max_message_bytes()?,
            max_deliveries: url.max_deliveries()?,
        })
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn info(&self) -> Result<BrokerInfo> {
        Ok(BrokerInfo {
            product: "charla in-process broker".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            address: format!("memory://{}", self.name),
            details: Vec::new(),
        })
    }

    async fn publisher(&self, mode: Mode, room: &str) -> Result<Box<dyn Publisher>> {
        check_room(room)?;
        Ok(Box::new(MemPublisher {
            hub: self.hub.clone(),
            mode,
            room: room.to_owned(),
            limit: self.max_message_bytes,
        }))
    }

    async fn subscribe(&self, sub: Subscription) -> Result<Box<dyn Subscriber>> {
        check_room(&sub.room)?;
        let limit = self.max_message_bytes;
        let decode = sub.decoder();
        Ok(match sub.mode {
            Mode::Queue => Box::new(QueueSubscriber {
                hub: self.hub.clone(),
                queue: self.hub.queue(&sub.room),
                room: sub.room,
                inflight: HashMap::new(),
                next_tag: 0,
                limit,
                decode,
                max_deliveries: self.max_deliveries,
            }),
            Mode::Broadcast | Mode::Routing => {
                let (tx, rx) = mpsc::unbounded_channel();
                let filter = if sub.mode == Mode::Routing {
                    Filter::Pattern(sub.room.clone())
                } else {
                    Filter::Exact(sub.room.clone())
                };
                lock(&self.hub.subscribers).push(PubSubEntry { filter, tx });
                Box::new(PubSubSubscriber {
                    rx,
                    room: sub.room,
                    next_tag: 0,
                    limit,
                    decode,
                })
            }
            Mode::Stream => {
                let stream = self.hub.stream(&sub.room);
                let consumer = sub
                    .consumer
                    .clone()
                    .unwrap_or_else(|| format!("consumer-{}", next_consumer_id()));
                let position = {
                    let mut st = lock(&stream.state);
                    let start = start_seq(&sub.start, st.last_seq)?;
                    if let Some(group) = &sub.group {
                        // An existing group resumes where it was; a new one starts at `start`.
                        st.groups.entry(group.clone()).or_insert_with(|| Group {
                            last_delivered: start,
                            pending: BTreeMap::new(),
                        });
                    }
                    start
                };
                Box::new(StreamSubscriber {
                    hub: self.hub.clone(),
                    stream,
                    room: sub.room,
                    group: sub.group,
                    consumer,
                    position,
                    inflight: HashMap::new(),
                    next_tag: 0,
                    limit,
                    decode,
                    max_deliveries: self.max_deliveries,
                })
            }
        })
    }

    async fn dead_letters(&self, room: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        Ok(lock(&self.hub.dead)
            .get(room)
            .map(|v| v.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn replay_dead(&self, room: &str, select: &DeadSelect) -> Result<usize> {
        // Taken out and put back in one step of this process: nothing between them can fail.
        let taken = self.hub.take_dead(room, select);
        for dead in &taken {
            let mode = dead.mode.unwrap_or(Mode::Queue);
            self.hub.deliver(mode, room, dead.replay_payload().into());
        }
        Ok(taken.len())
    }

    async fn purge_dead(&self, room: &str, select: &DeadSelect) -> Result<usize> {
        Ok(self.hub.take_dead(room, select).len())
    }

    async fn history(
        &self,
        room: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<Delivery>> {
        let before = before.map(parse_offset).transpose()?;
        let Some(stream) = lock(&self.hub.streams).get(room).cloned() else {
            return Ok(Vec::new()); // never published to nor subscribed: no history
        };
        // The payloads are shared (`Arc`): copied out under the lock, decoded after it.
        let candidates: Vec<(u64, Payload)> = {
            let st = lock(&stream.state);
            st.entries
                .iter()
                .rev()
                .filter(|(seq, _)| before.is_none_or(|b| *seq < b))
                .map(|(seq, p)| (*seq, p.clone()))
                .collect()
        };
        let mut page = Vec::with_capacity(limit.min(candidates.len()));
        for (seq, payload) in candidates {
            if page.len() >= limit {
                break;
            }
            match Message::decode(&payload, room, self.max_message_bytes) {
                Ok(message) => page.push(Delivery {
                    message,
                    redelivered: false,
                    offset: Some(seq.to_string()),
                    tag: AckTag(0),
                }),
                Err(e) => tracing::debug!(room, seq, "history skips an entry: {e}"),
            }
        }
        page.reverse();
        Ok(page)
    }

    async fn rooms(&self) -> Result<Vec<String>> {
        // Streams that were only subscribed to (created empty) hold no messages yet; dead
        // letters live apart, so nothing of charla's own is in this map.
        let mut rooms: Vec<String> = lock(&self.hub.streams)
            .iter()
            .filter(|(_, s)| lock(&s.state).last_seq > 0)
            .map(|(name, _)| name.clone())
            .collect();
        rooms.sort_unstable();
        Ok(rooms)
    }

    async fn purge(&self, mode: Mode, room: &str) -> Result<()> {
        match mode {
            Mode::Queue => {
                lock(&self.hub.queues).remove(room);
            }
            Mode::Stream => {
                lock(&self.hub.streams).remove(room);
            }
            Mode::Broadcast | Mode::Routing => {}
        }
        lock(&self.hub.dead).remove(room);
        Ok(())
    }
}

fn check_room(room: &str) -> Result<()> {
    if room.is_empty() {
        return Err(BrokerError::InvalidArgument(
            "the room name is empty".into(),
        ));
    }
    Ok(())
}

fn next_consumer_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn start_seq(start: &StartFrom, last_seq: u64) -> Result<u64> {
    Ok(match start {
        StartFrom::Latest => last_seq,
        StartFrom::Beginning => 0,
        StartFrom::After(offset) => parse_offset(offset)?,
    })
}

fn parse_offset(offset: &str) -> Result<u64> {
    offset.parse().map_err(|_| {
        BrokerError::InvalidArgument(format!(
            "'{offset}' is not a memory:// stream offset (a whole number)"
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// Publishing

struct MemPublisher {
    hub: Arc<Hub>,
    mode: Mode,
    room: String,
    limit: usize,
}

impl MemPublisher {
    fn deliver(&self, payload: Payload) {
        self.hub.deliver(self.mode, &self.room, payload);
    }
}

impl Hub {
    /// Puts a payload in a room: what a publisher and a dead-letter replay do.
    fn deliver(&self, mode: Mode, room: &str, payload: Payload) {
        match mode {
            Mode::Queue => {
                let q = self.queue(room);
                lock(&q.items).push_back(Item {
                    payload,
                    deliveries: 0,
                });
                q.notify.notify_waiters();
            }
            Mode::Broadcast | Mode::Routing => {
                let mut subs = lock(&self.subscribers);
                subs.retain(|s| !s.tx.is_closed());
                for s in subs.iter().filter(|s| s.filter.accepts(room)) {
                    let _ = s.tx.send(payload.clone());
                }
            }
            Mode::Stream => {
                let s = self.stream(room);
                let mut st = lock(&s.state);
                st.last_seq += 1;
                let seq = st.last_seq;
                st.entries.push_back((seq, payload));
                drop(st);
                s.notify.notify_waiters();
            }
        }
    }
}

#[async_trait]
impl Publisher for MemPublisher {
    async fn publish(&mut self, message: &Message) -> Result<()> {
        let bytes = message.encode_checked(self.limit)?;
        self.deliver(bytes.into());
        Ok(())
    }

    async fn publish_raw(&mut self, payload: &[u8]) -> Result<()> {
        if payload.len() > self.limit {
            return Err(BrokerError::TooLarge {
                size: payload.len(),
                limit: self.limit,
            });
        }
        self.deliver(payload.into());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Queue mode

#[derive(Default)]
struct MemQueue {
    items: Mutex<VecDeque<Item>>,
    notify: Notify,
}

struct Item {
    payload: Payload,
    deliveries: u32,
}

struct QueueSubscriber {
    hub: Arc<Hub>,
    queue: Arc<MemQueue>,
    room: String,
    inflight: HashMap<u64, Item>,
    next_tag: u64,
    limit: usize,
    /// Chat messages only, or other JSON objects too (`Subscription::events`).
    decode: charla_core::Decoder,
    max_deliveries: u32,
}

impl QueueSubscriber {
    fn give_back(&mut self, mut item: Item) {
        item.deliveries += 1;
        if item.deliveries >= self.max_deliveries {
            let failure = Failure::new(DeadReason::MaxDeliveries).attempts(item.deliveries);
            self.hub
                .dead_letter(&self.room, Mode::Queue, &item.payload, &failure);
        } else {
            lock(&self.queue.items).push_front(item);
            self.queue.notify.notify_waiters();
        }
    }
}

#[async_trait]
impl Subscriber for QueueSubscriber {
    async fn recv(&mut self) -> Result<Delivery> {
        loop {
            let queue = self.queue.clone();
            let notified = queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let popped = lock(&queue.items).pop_front();
            let Some(item) = popped else {
                notified.await;
                continue;
            };
            match (self.decode)(&item.payload, &self.room, self.limit) {
                Err(e) => self
                    .hub
                    .dead_letter(&self.room, Mode::Queue, &item.payload, &poison(&e)),
                Ok(mut message) => {
                    message.deliveries = item.deliveries;
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    let redelivered = item.deliveries > 0;
                    self.inflight.insert(tag, item);
                    return Ok(Delivery {
                        message,
                        redelivered,
                        offset: None,
                        tag: AckTag(tag),
                    });
                }
            }
        }
    }

    async fn ack(&mut self, tag: AckTag) -> Result<()> {
        self.inflight
            .remove(&tag.0)
            .map(drop)
            .ok_or_else(|| unknown_tag(tag))
    }

    async fn nack(&mut self, tag: AckTag, requeue: bool) -> Result<()> {
        let item = self
            .inflight
            .remove(&tag.0)
            .ok_or_else(|| unknown_tag(tag))?;
        if requeue {
            self.give_back(item);
        } else {
            let failure = Failure::new(DeadReason::Nacked).attempts(item.deliveries + 1);
            self.hub
                .dead_letter(&self.room, Mode::Queue, &item.payload, &failure);
        }
        Ok(())
    }

    async fn reject(&mut self, tag: AckTag, failure: Failure) -> Result<()> {
        let item = self
            .inflight
            .remove(&tag.0)
            .ok_or_else(|| unknown_tag(tag))?;
        self.hub
            .dead_letter(&self.room, Mode::Queue, &item.payload, &failure);
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        Ok(()) // Drop gives back what is in flight.
    }
}

impl Drop for QueueSubscriber {
    fn drop(&mut self) {
        // Oldest first back to the front, so the queue keeps its order.
        let mut items: Vec<(u64, Item)> = self.inflight.drain().collect();
        items.sort_by_key(|(tag, _)| std::cmp::Reverse(*tag));
        for (_, item) in items {
            self.give_back(item);
        }
    }
}

/// The failure of a payload the decoder refused.
fn poison(e: &charla_core::DecodeError) -> Failure {
    Failure::new(DeadReason::of_decode_error(e)).error(&e.to_string())
}

fn unknown_tag(tag: AckTag) -> BrokerError {
    BrokerError::InvalidArgument(format!(
        "unknown or already acknowledged delivery {}",
        tag.0
    ))
}

// ---------------------------------------------------------------------------------------------
// Broadcast and routing

enum Filter {
    Exact(String),
    Pattern(String),
}

impl Filter {
    fn accepts(&self, room: &str) -> bool {
        match self {
            Filter::Exact(r) => r == room,
            Filter::Pattern(p) => topic::matches(p, room),
        }
    }
}

struct PubSubEntry {
    filter: Filter,
    tx: mpsc::UnboundedSender<Payload>,
}

struct PubSubSubscriber {
    rx: mpsc::UnboundedReceiver<Payload>,
    room: String,
    next_tag: u64,
    limit: usize,
    /// Chat messages only, or other JSON objects too (`Subscription::events`).
    decode: charla_core::Decoder,
}

#[async_trait]
impl Subscriber for PubSubSubscriber {
    async fn recv(&mut self) -> Result<Delivery> {
        loop {
            let payload = self.rx.recv().await.ok_or(BrokerError::Closed)?;
            match (self.decode)(&payload, &self.room, self.limit) {
                Err(e) => tracing::warn!(room = %self.room, "dropped a broadcast payload: {e}"),
                Ok(message) => {
                    self.next_tag += 1;
                    return Ok(Delivery {
                        message,
                        redelivered: false,
                        offset: None,
                        tag: AckTag(self.next_tag),
                    });
                }
            }
        }
    }

    // Broadcast has no acknowledgements: nothing is kept to give back.
    async fn ack(&mut self, _tag: AckTag) -> Result<()> {
        Ok(())
    }

    async fn nack(&mut self, _tag: AckTag, _requeue: bool) -> Result<()> {
        Ok(())
    }

    async fn reject(&mut self, _tag: AckTag, _failure: Failure) -> Result<()> {
        Ok(()) // nothing is kept in broadcast: there is nothing to dead-letter
    }

    async fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Stream mode

#[derive(Default)]
struct MemStream {
    state: Mutex<StreamState>,
    notify: Notify,
}

#[derive(Default)]
struct StreamState {
    /// (sequence, payload), sequences from 1 upward.
    entries: VecDeque<(u64, Payload)>,
    last_seq: u64,
    groups: HashMap<String, Group>,
}

/// The first entry after sequence `seq` (sequences are consecutive, so no scan is needed).
fn entry_after(entries: &VecDeque<(u64, Payload)>, seq: u64) -> Option<&(u64, Payload)> {
    let first = entries.front()?.0;
    let idx = (seq + 1).saturating_sub(first);
    entries.get(usize::try_from(idx).ok()?)
}

/// The entry with sequence `seq`: sequences are consecutive, so it is an index computation.
fn entry_at(entries: &VecDeque<(u64, Payload)>, seq: u64) -> Option<&Payload> {
    let first = entries.front()?.0;
    let idx = seq.checked_sub(first)?;
    entries.get(usize::try_from(idx).ok()?).map(|(_, p)| p)
}

struct Group {
    last_delivered: u64,
    /// seq → (owner, deliveries). An empty owner means the owner left: anyone may claim it.
    pending: BTreeMap<u64, (String, u32)>,
}

struct StreamSubscriber {
    hub: Arc<Hub>,
    stream: Arc<MemStream>,
    room: String,
    group: Option<String>,
    consumer: String,
    /// Last sequence read, for subscribers without a group.
    position: u64,
    /// tag → sequence
    inflight: HashMap<u64, u64>,
    next_tag: u64,
    limit: usize,
    /// Chat messages only, or other JSON objects too (`Subscription::events`).
    decode: charla_core::Decoder,
    max_deliveries: u32,
}

enum Take {
    Entry {
        seq: u64,
        payload: Payload,
        deliveries: u32,
    },
    /// Delivered this many times without an ack.
    Dead(Payload, u32),
    Nothing,
}

impl StreamSubscriber {
    fn take(&mut self) -> Take {
        let mut st = lock(&self.stream.state);
        let Some(group_name) = &self.group else {
            let next = entry_after(&st.entries, self.position).cloned();
            return match next {
                Some((seq, payload)) => {
                    self.position = seq;
                    Take::Entry {
                        seq,
                        payload,
                        deliveries: 0,
                    }
                }
                None => Take::Nothing,
            };
        };
        let StreamState {
            entries, groups, ..
        } = &mut *st;
        let Some(group) = groups.get_mut(group_name) else {
            return Take::Nothing;
        };
        // Orphaned pending entries first: a consumer of the group left without acking.
        let orphan = group
            .pending
            .iter()
            .find(|(_, (owner, _))| owner.is_empty())
            .map(|(seq, (_, d))| (*seq, *d));
        if let Some((seq, deliveries)) = orphan {
            let deliveries = deliveries + 1;
            let Some(payload) = entry_at(entries, seq).cloned() else {
                group.pending.remove(&seq); // trimmed away meanwhile
                return Take::Nothing;
            };
            if deliveries >= self.max_deliveries {
                group.pending.remove(&seq);
                return Take::Dead(payload, deliveries);
            }
            group
                .pending
                .insert(seq, (self.consumer.clone(), deliveries));
            return Take::Entry {
                seq,
                payload,
                deliveries,
            };
        }
        match entry_after(entries, group.last_delivered) {
            Some((seq, payload)) => {
                group.last_delivered = *seq;
                group.pending.insert(*seq, (self.consumer.clone(), 0));
                Take::Entry {
                    seq: *seq,
                    payload: payload.clone(),
                    deliveries: 0,
                }
            }
            None => Take::Nothing,
        }
    }

    /// Settles a group's pending entry by moving a copy to the dead letters.
    fn dead_letter_entry(&mut self, seq: u64, failure: &Failure) {
        let deliveries = self.with_group(|g| g.pending.remove(&seq)).flatten();
        let payload = entry_at(&lock(&self.stream.state).entries, seq).cloned();
        if let Some(payload) = payload {
            let mut failure = failure.clone();
            if failure.attempts == 0 {
                failure.attempts = deliveries.map_or(1, |(_, d)| d + 1);
            }
            self.hub
                .dead_letter(&self.room, Mode::Stream, &payload, &failure);
        }
    }

    fn settle(&mut self, tag: AckTag) -> Result<u64> {
        self.inflight.remove(&tag.0).ok_or_else(|| unknown_tag(tag))
    }

    fn with_group<R>(&self, f: impl FnOnce(&mut Group) -> R) -> Option<R> {
        let group = self.group.as_ref()?;
        let mut st = lock(&self.stream.state);
        st.groups.get_mut(group).map(f)
    }
}

#[async_trait]
impl Subscriber for StreamSubscriber {
    async fn recv(&mut self) -> Result<Delivery> {
        loop {
            let stream = self.stream.clone();
            let notified = stream.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.take() {
                Take::Nothing => notified.await,
                Take::Dead(payload, deliveries) => {
                    let failure = Failure::new(DeadReason::MaxDeliveries).attempts(deliveries);
                    self.hub
                        .dead_letter(&self.room, Mode::Stream, &payload, &failure)
                }
                Take::Entry {
                    seq,
                    payload,
                    deliveries,
                } => match (self.decode)(&payload, &self.room, self.limit) {
                    Err(e) => {
                        if self.group.is_some() {
                            // Settle it in the group so it is not handed out again.
                            self.with_group(|g| g.pending.remove(&seq));
                            self.hub
                                .dead_letter(&self.room, Mode::Stream, &payload, &poison(&e));
                        } else {
                            tracing::warn!(room = %self.room, seq, "skipped a stream entry: {e}");
                        }
                    }
                    Ok(mut message) => {
                        message.deliveries = deliveries;
                        self.next_tag += 1;
                        if self.group.is_some() {
                            self.inflight.insert(self.next_tag, seq);
                        }
                        return Ok(Delivery {
                            message,
                            redelivered: deliveries > 0,
                            offset: Some(seq.to_string()),
                            tag: AckTag(self.next_tag),
                        });
                    }
                },
            }
        }
    }

    async fn ack(&mut self, tag: AckTag) -> Result<()> {
        if self.group.is_none() {
            return Ok(()); // a plain reader keeps no state on the broker
        }
        let seq = self.settle(tag)?;
        self.with_group(|g| g.pending.remove(&seq));
        Ok(())
    }

    async fn nack(&mut self, tag: AckTag, requeue: bool) -> Result<()> {
        if self.group.is_none() {
            return Ok(());
        }
        let seq = self.settle(tag)?;
        if requeue {
            self.with_group(|g| {
                if let Some(p) = g.pending.get_mut(&seq) {
                    p.0.clear();
                }
            });
            self.stream.notify.notify_waiters();
        } else {
            self.dead_letter_entry(seq, &Failure::new(DeadReason::Nacked));
        }
        Ok(())
    }

    async fn reject(&mut self, tag: AckTag, failure: Failure) -> Result<()> {
        if self.group.is_none() {
            return Ok(()); // a plain reader settles nothing: the entry stays in the stream
        }
        let seq = self.settle(tag)?;
        self.dead_letter_entry(seq, &failure);
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

impl Drop for StreamSubscriber {
    fn drop(&mut self) {
        let me = self.consumer.clone();
        let released = self.with_group(|g| {
            for (owner, _) in g.pending.values_mut() {
                if *owner == me {
                    owner.clear();
                }
            }
        });
        if released.is_some() {
            self.stream.notify.notify_waiters();
        }
    }
}
