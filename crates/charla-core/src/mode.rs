//! Delivery modes and the capability flags with which a backend declares which it can do.

use std::fmt;
use std::str::FromStr;

/// How a message travels from producers to consumers. The guarantees are the brief's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Each message to exactly one consumer, at-least-once, acknowledged.
    Queue,
    /// Every online subscriber gets every message; nothing is kept.
    Broadcast,
    /// Every subscriber gets every message; durable, replayable, consumer groups to scale.
    Stream,
    /// Subscribe by pattern (`room.*`, `app.error.#`); publishing is by exact topic.
    Routing,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Queue, Mode::Broadcast, Mode::Stream, Mode::Routing];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Queue => "queue",
            Mode::Broadcast => "broadcast",
            Mode::Stream => "stream",
            Mode::Routing => "routing",
        }
    }

    /// Whether the mode keeps messages for consumers that are not connected yet.
    pub fn is_durable(self) -> bool {
        matches!(self, Mode::Queue | Mode::Stream)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "queue" | "cola" => Ok(Mode::Queue),
            "broadcast" | "pubsub" | "fanout" => Ok(Mode::Broadcast),
            "stream" => Ok(Mode::Stream),
            "routing" | "topic" => Ok(Mode::Routing),
            other => Err(format!(
                "unknown mode '{other}': expected queue, broadcast, stream or routing"
            )),
        }
    }
}

/// What a backend can do, declared up front so that an unsupported request fails at connect
/// time with a clear reason instead of misbehaving later. The conformance suite reads these
/// flags to decide which cases apply to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub queue: bool,
    pub broadcast: bool,
    pub stream: bool,
    pub routing: bool,
    /// Stream mode supports named consumer groups that share the work and resume.
    pub stream_groups: bool,
    /// The members of a stream group share one room's messages between them. Kafka keeps a
    /// room's order by giving it one partition (one key), and a partition has one reader per
    /// group: there one member reads the room and the others stand by to take over.
    pub group_shares_room: bool,
    /// Stream mode can start from the beginning or from a given offset.
    pub replay: bool,
    /// Deliveries say whether they were delivered before (`Delivery::redelivered`).
    pub redelivered_flag: bool,
    /// Poison messages are kept somewhere readable (`Broker::dead_letters`).
    pub dead_letters: bool,
    /// Dead letters can be replayed and purged one by one (`Broker::replay_dead`,
    /// `Broker::purge_dead`).
    pub dead_letter_actions: bool,
    /// Messages survive the broker process restarting (given the broker's own persistence).
    pub survives_restart: bool,
    /// An acknowledgement that returned Ok also survives the broker restarting at once: the
    /// message is never handed out again. RabbitMQ applies a quorum queue's settles
    /// asynchronously (an AMQP 0.9.1 ack has no reply, and the channel holds back settles
    /// past 32 in flight), so a broker stopped just after an ack may deliver that message
    /// once more, flagged redelivered; listeners drop it by id. A connection lost after an
    /// ack returned never does that on any backend.
    pub acks_survive_restart: bool,
    /// After a lost connection the publisher itself sends its unconfirmed messages again
    /// (publisher confirms that never came), so a message can arrive twice with the same id
    /// and without the `redelivered` flag; listeners de-duplicate by id.
    pub publisher_resends: bool,
    /// With one consumer, queue mode hands messages out in the order they were published.
    /// Kafka orders a partition, not a topic, and a queue spreads over partitions so that a
    /// group can share it: there only stream mode keeps a room's order.
    pub queue_order: bool,
    /// A queue message whose consumer dies holding it (killed, crashed) counts as delivered,
    /// so a message that crashes every consumer is dead-lettered after the delivery limit.
    pub counts_crashed_deliveries: bool,
    /// A stream room's recent messages can be read back, newest page first
    /// (`Broker::history`): what a chat shows on joining a room.
    pub history: bool,
    /// The broker can list the rooms it keeps messages for (`Broker::rooms`).
    pub list_rooms: bool,
}

impl Capabilities {
    pub fn supports(&self, mode: Mode) -> bool {
        match mode {
            Mode::Queue => self.queue,
            Mode::Broadcast => self.broadcast,
            Mode::Stream => self.stream,
            Mode::Routing => self.routing,
        }
    }
}
