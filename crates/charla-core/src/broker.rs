//! The broker abstraction. A backend crate implements [`Broker`] (one connection to a broker),
//! which hands out [`Publisher`]s and [`Subscriber`]s for a mode and a room.
//!
//! Contract, checked by the conformance suite in `charla-testkit` for every backend:
//! - `publish` returns only once the broker has the message (for durable modes, durably as far
//!   as the broker is configured to be);
//! - queue: each message goes to one consumer; a message that is received and not acked (the
//!   consumer nacked it, closed, or died) is delivered again, with `redelivered` set where the
//!   backend can know; a message that keeps failing goes to the dead letters;
//! - broadcast / routing: every subscriber online at publish time gets the message;
//! - stream: every subscriber gets every message from its start point; a group shares them
//!   and resumes where it acked;
//! - a payload that is not a chat message never reaches the caller: it is dead-lettered (in
//!   durable modes) or dropped with a warning (in broadcast modes), and receiving goes on;
//!   except that a subscription asking for events ([`Subscription::events`]) receives any JSON
//!   object that is not a chat message as an event ([`Message::event`]): then only what is
//!   not a JSON object, or is too large, is poison.

use async_trait::async_trait;

use crate::dead::{DeadLetter, DeadSelect, Failure};
use crate::error::Result;
use crate::message::Message;
use crate::mode::{Capabilities, Mode};

/// What `charla check` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Product name as the broker reports it (`redis`, `valkey`, `charla`, `RabbitMQ`, …).
    pub product: String,
    /// Version string as the broker reports it.
    pub version: String,
    /// Redacted address or URL.
    pub address: String,
    /// More lines worth showing (Kafka: its topics), one per entry.
    pub details: Vec<String>,
}

/// Where a stream subscription starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// Only messages published from now on (a group that already exists resumes instead).
    #[default]
    Latest,
    /// Everything the broker still keeps.
    Beginning,
    /// After (not including) the given backend offset, as printed in `Delivery::offset`;
    /// or, written `@<unix seconds>`, from the first message stored at or after that time.
    After(String),
}

impl StartFrom {
    /// The time of an `After("@<unix seconds>")` start (`time:<secs>` is accepted too), as
    /// seconds since 1970-01-01 UTC: `None` for every other start.
    pub fn time(&self) -> Option<Result<u64>> {
        let StartFrom::After(text) = self else {
            return None;
        };
        let text = text.trim();
        let secs = text
            .strip_prefix('@')
            .or_else(|| text.strip_prefix("time:"))?;
        Some(secs.parse().map_err(|_| {
            crate::BrokerError::InvalidArgument(format!(
                "stream start '{text}': a time is @<seconds since 1970-01-01 UTC>"
            ))
        }))
    }
}

/// What to subscribe to.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub mode: Mode,
    /// Room name; in routing mode a pattern (`room.*`, `app.error.#`).
    pub room: String,
    /// Consumer group (stream mode): members share the messages and resume where acked.
    pub group: Option<String>,
    /// Stream start point.
    pub start: StartFrom,
    /// How many unacknowledged messages this consumer may hold at once (queue and stream).
    pub prefetch: usize,
    /// Consumer name inside a group; generated when absent.
    pub consumer: Option<String>,
    /// Deliver other applications' JSON objects as events instead of treating them as poison
    /// (`charla listen` shows whatever a room carries; the chats and the archive keep chat
    /// messages only, so it is off by default).
    pub events: bool,
}

impl Subscription {
    pub fn new(mode: Mode, room: impl Into<String>) -> Self {
        Subscription {
            mode,
            room: room.into(),
            group: None,
            start: StartFrom::Latest,
            prefetch: DEFAULT_PREFETCH,
            consumer: None,
            events: false,
        }
    }

    /// Receive JSON objects that are not chat messages as events ([`Message::event`]).
    pub fn events(mut self, events: bool) -> Self {
        self.events = events;
        self
    }

    /// How this subscription's payloads are decoded: what a backend's subscriber calls for
    /// each payload, so that every backend draws the line between message and poison alike.
    pub fn decoder(&self) -> crate::message::Decoder {
        if self.events {
            Message::decode_any
        } else {
            Message::decode
        }
    }

    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    pub fn start(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    pub fn prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = Some(name.into());
        self
    }
}

/// Default number of unacknowledged messages a consumer holds. 100 amortises round trips
/// (one fetch moves up to 100 messages) while keeping the work a dead consumer leaves small.
pub const DEFAULT_PREFETCH: usize = 100;

/// Identifies one delivery to its subscriber for ack/nack. Opaque to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckTag(pub u64);

/// One received message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Message,
    /// Delivered before to some consumer that did not ack it (where the backend knows).
    pub redelivered: bool,
    /// Backend position (stream id, offset) where the mode has one; usable with
    /// [`StartFrom::After`].
    pub offset: Option<String>,
    /// Pass to [`Subscriber::ack`] / [`Subscriber::nack`].
    pub tag: AckTag,
}

/// A connection to one broker.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Backend name (`redis`, `memory`, …).
    fn backend(&self) -> &'static str;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Round trip to the broker and what it says it is.
    async fn info(&self) -> Result<BrokerInfo>;

    /// A producer for `room` in `mode`. Fails at once when the mode is unsupported.
    async fn publisher(&self, mode: Mode, room: &str) -> Result<Box<dyn Publisher>>;

    /// A consumer. Fails at once when the mode (or group/replay) is unsupported.
    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>>;

    /// Dead letters of a room (poison, too many deliveries, rejected), oldest first, at most
    /// `limit`, each with why it died.
    async fn dead_letters(&self, room: &str, limit: usize) -> Result<Vec<DeadLetter>>;

    /// Puts the selected dead letters of `room` back where they came from (the room's queue,
    /// or its stream), each marked as replayed ([`DeadLetter::replay_payload`]), and removes
    /// them from the dead letters. Returns how many. Safe to run twice: a dead letter leaves
    /// only once its message is back, and is never put back twice.
    async fn replay_dead(&self, room: &str, select: &DeadSelect) -> Result<usize> {
        let _ = (room, select);
        Err(self.dead_letters_unsupported("replay"))
    }

    /// Removes the selected dead letters of `room` for good. Returns how many.
    async fn purge_dead(&self, room: &str, select: &DeadSelect) -> Result<usize> {
        let _ = (room, select);
        Err(self.dead_letters_unsupported("purge"))
    }

    /// The refusal of a dead-letter action a backend does not offer.
    fn dead_letters_unsupported(&self, action: &str) -> crate::BrokerError {
        crate::BrokerError::Unsupported {
            backend: self.backend(),
            mode: Mode::Queue,
            reason: format!("this broker cannot {action} dead letters"),
        }
    }

    /// Remove a room's messages and bookkeeping (tests and `charla` housekeeping).
    async fn purge(&self, mode: Mode, room: &str) -> Result<()>;

    /// A stream room's most recent messages, oldest first: at most `limit` of them, all
    /// stored before the position `before` (a [`Delivery::offset`] of an earlier page) when
    /// given. Each delivery carries its offset, so the next older page starts from the first
    /// one's. Reading history takes nothing from anyone: no group, no ack. An unknown room
    /// has no history (an empty page). Payloads that are not chat messages are left out and
    /// do not count: a page holds `limit` messages while the room has that many before
    /// `before`, so a shorter page is the oldest one. Backends with `Capabilities::history`
    /// false refuse.
    async fn history(
        &self,
        room: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<Delivery>> {
        let _ = (room, limit, before);
        Err(crate::BrokerError::Unsupported {
            backend: self.backend(),
            mode: Mode::Stream,
            reason: "this broker cannot read a room's history back".into(),
        })
    }

    /// The rooms this broker keeps stream messages for, sorted by name (charla's own
    /// bookkeeping and dead letters left out). Backends with `Capabilities::list_rooms`
    /// false refuse.
    async fn rooms(&self) -> Result<Vec<String>> {
        Err(crate::BrokerError::Unsupported {
            backend: self.backend(),
            mode: Mode::Stream,
            reason: "this broker cannot list its rooms".into(),
        })
    }
}

/// Sends messages to one room.
#[async_trait]
pub trait Publisher: Send {
    /// Send one message; returns once the broker has it.
    async fn publish(&mut self, message: &Message) -> Result<()>;

    /// Send several in order, in as few round trips as the backend allows.
    async fn publish_batch(&mut self, messages: &[Message]) -> Result<()> {
        for m in messages {
            self.publish(m).await?;
        }
        Ok(())
    }

    /// Send a payload exactly as given (interop tests, forwarding, dead-letter replays).
    async fn publish_raw(&mut self, payload: &[u8]) -> Result<()>;
}

/// Receives messages from one subscription.
#[async_trait]
pub trait Subscriber: Send {
    /// The next message, waiting as long as it takes. Cancel-safe: a message fetched from the
    /// broker but not yet returned stays owned by this consumer and is given back on
    /// [`close`](Subscriber::close) (or recovered from it if the process dies).
    async fn recv(&mut self) -> Result<Delivery>;

    /// Up to `max` messages: waits for the first, then takes what has already arrived without
    /// waiting more. With [`ack_many`](Subscriber::ack_many) this is the high-throughput path:
    /// one round trip per batch instead of per message.
    async fn recv_batch(&mut self, max: usize) -> Result<Vec<Delivery>> {
        let mut batch = vec![self.recv().await?];
        while batch.len() < max {
            match self.try_recv().await? {
                Some(d) => batch.push(d),
                None => break,
            }
        }
        Ok(batch)
    }

    /// A message this subscriber already holds (fetched from the broker in an earlier batch),
    /// without waiting for the network; `None` when it holds none. Backends that fetch in
    /// batches implement it, which makes [`recv_batch`](Subscriber::recv_batch) return whole
    /// batches.
    async fn try_recv(&mut self) -> Result<Option<Delivery>> {
        Ok(None)
    }

    /// The message was processed: the broker may forget it. Settled when this returns.
    async fn ack(&mut self, tag: AckTag) -> Result<()>;

    /// Acknowledge several deliveries, in as few round trips as the backend allows.
    async fn ack_many(&mut self, tags: &[AckTag]) -> Result<()> {
        for tag in tags {
            self.ack(*tag).await?;
        }
        Ok(())
    }

    /// The message was not processed. `requeue` gives it to a consumer again (up to the
    /// backend's delivery limit, after which it is dead-lettered with the reason
    /// `max-deliveries`); otherwise it is dead-lettered with the reason `nacked`.
    async fn nack(&mut self, tag: AckTag, requeue: bool) -> Result<()>;

    /// The message cannot be processed: dead-letter it now, keeping `failure` (the reason,
    /// the attempts, the last error) with it. Settled when this returns.
    async fn reject(&mut self, tag: AckTag, failure: Failure) -> Result<()>;

    /// How many messages this subscriber missed since the last call because the broker's
    /// retention removed them before they were read (a stream trimmed past entries no one had
    /// read yet, an unacknowledged entry trimmed while pending). Losses are never silent:
    /// backends whose retention can drop unread messages count them here; others never do.
    fn take_missed(&mut self) -> u64 {
        0
    }

    /// Send held acks, give unacked messages back, and leave.
    async fn close(self: Box<Self>) -> Result<()>;
}
