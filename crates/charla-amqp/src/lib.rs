//! charla-amqp: the RabbitMQ backend (`amqp://`, `amqps://`), on lapin and tokio.
//!
//! Every delivery mode maps to RabbitMQ's own objects (see [`topology`]):
//! - **queue**: a durable quorum queue named exactly as the room (default `chat_cola`, the
//!   seed's name), persistent messages, publisher confirms, manual ack/nack, prefetch
//!   (`basic.qos`), competing consumers. Dead letters go to `<room>.dead` (bound to the
//!   dead-letter exchange `charla.dlx` the queue is declared with): poison payloads, nacks
//!   without requeue, and messages delivered `?max_deliveries=` times (default 5) without an
//!   ack, which RabbitMQ counts (`x-delivery-limit`), also when the consumer died holding
//!   them. Why quorum, and what happens to an existing classic queue: see [`topology`].
//! - **broadcast**: a fanout exchange named as the room; each subscriber an exclusive
//!   auto-delete queue bound to it.
//! - **routing**: the topic exchange `charla.topic` (URL option `?exchange=` overrides);
//!   publish with routing key = topic, subscribe with binding key = pattern.
//! - **stream**: a stream queue (`x-queue-type: stream`) named as the room, read with
//!   `x-stream-offset`. AMQP 0.9.1 cannot keep a consumer's offset on the server, so stream
//!   consumer groups are not offered (`stream_groups: false`).
//!
//! The AMQP heartbeat is on (`?heartbeat=` seconds, default 10), so a dead peer or a stalled
//! network is noticed within two heartbeats and reported as a transient error.
//!
//! Connections are re-established with backoff (100 ms doubling to 5 s, for up to
//! `?recovery_timeout_ms=`, default 60 000) and the topology is declared again;
//! `publish` returns Ok only once RabbitMQ confirmed the message.

mod dead;
mod history;
mod link;
mod publisher;
mod subscriber;
pub mod topology;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use charla_core::{
    Broker, BrokerError, BrokerInfo, BrokerUrl, Capabilities, DeadLetter, DeadSelect, Delivery,
    Mode, Publisher, Result, Subscriber, Subscription,
};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::types::AMQPValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use link::{map_error, reply_code, short, Link, BACKEND};
pub use topology::{dead_letter_queue, DEAD_LETTER_EXCHANGE, DEFAULT_TOPIC_EXCHANGE};

/// URL query options this backend reads (and does not pass to the AMQP client).
const OPTIONS: &[&str] = &["exchange", "recovery_timeout_ms", "max_deliveries"];
const DEFAULT_RECOVERY: Duration = Duration::from_secs(60);
/// AMQP heartbeat (seconds) when the URL names none. lapin would otherwise take the server's
/// (RabbitMQ: 60 s), noticing a dead peer only after two minutes; RabbitMQ's guide finds
/// 5 to 20 s right for most networks. A stalled connection fails after two heartbeats.
const DEFAULT_HEARTBEAT_SECS: u16 = 10;

/// What RabbitMQ can do through charla.
pub const CAPABILITIES: Capabilities = Capabilities {
    queue: true,
    broadcast: true,
    stream: true,
    routing: true,
    // AMQP 0.9.1 cannot store a stream consumer's offset on the server.
    stream_groups: false,
    // No stream groups at all (above).
    group_shares_room: false,
    replay: true,
    redelivered_flag: true,
    dead_letters: true,
    dead_letter_actions: true,
    survives_restart: true,
    // Quorum queues apply settles asynchronously (see Capabilities::acks_survive_restart).
    acks_survive_restart: false,
    // lapin loses the confirms of a dropped channel: `publisher.rs` sends those again.
    publisher_resends: true,
    queue_order: true,
    counts_crashed_deliveries: true,
    history: true,
    // AMQP 0.9.1 has no method that lists queues (only the management plugin's HTTP API
    // does, which charla does not assume), so `rooms` keeps the default refusal.
    list_rooms: false,
};

/// A connection to RabbitMQ.
pub struct AmqpBroker {
    url: BrokerUrl,
    link: Arc<Link>,
    topic_exchange: String,
    max_bytes: usize,
    max_deliveries: u32,
}

impl AmqpBroker {
    /// Connects (one attempt): refused → [`BrokerError::Unreachable`], bad credentials →
    /// [`BrokerError::Auth`].
    pub async fn connect(url: &BrokerUrl) -> Result<Self> {
        let max_bytes = url.max_message_bytes()?;
        let topic_exchange = url
            .option("exchange")
            .unwrap_or_else(|| DEFAULT_TOPIC_EXCHANGE.to_owned());
        if topic_exchange.is_empty() {
            return Err(BrokerError::InvalidUrl {
                url: url.to_string(),
                reason: "option exchange= needs a name (the default is charla.topic)".into(),
            });
        }
        let recovery = url
            .option_num::<u64>("recovery_timeout_ms")?
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_RECOVERY);
        let max_deliveries = url.max_deliveries()?;
        // The heartbeat is validated here so that a bad value names the option.
        url.option_num::<u16>("heartbeat")?;
        let mut uri = url.without_options(OPTIONS);
        if url.option("heartbeat").is_none() {
            uri.query_pairs_mut()
                .append_pair("heartbeat", &DEFAULT_HEARTBEAT_SECS.to_string());
        }
        let uri = uri.to_string();
        let link = Arc::new(Link::new(uri, url.address(), recovery));
        link.connect_once().await?;
        Ok(AmqpBroker {
            url: url.clone(),
            link,
            topic_exchange,
            max_bytes,
            max_deliveries,
        })
    }

    /// The topic exchange routing mode uses.
    pub fn topic_exchange(&self) -> &str {
        &self.topic_exchange
    }

    async fn channel(&self) -> Result<lapin::Channel> {
        let conn = self.link.connection().await?;
        conn.create_channel()
            .await
            .map_err(|e| map_error(&self.link.address, &e))
    }

    /// Runs one pass over a room's dead letters on a channel of its own (closed after: what
    /// it did not ack goes back).
    async fn dead_visit(
        &self,
        room: &str,
        limit: usize,
        select: &DeadSelect,
        action: dead::Action,
    ) -> Result<Vec<DeadLetter>> {
        Self::check_room(room)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let ch = self.channel().await?;
        let out = dead::visit(&ch, &self.link.address, room, limit, select, action).await;
        let _ = ch.close(200, "OK".into()).await;
        out
    }

    fn check_room(room: &str) -> Result<()> {
        if room.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "the room name is empty".into(),
            ));
        }
        // Room names become queue names, and `<room>.dead` must fit in 255 bytes too.
        if room.len() > 250 {
            return Err(BrokerError::InvalidArgument(format!(
                "room name of {} bytes: RabbitMQ names are at most 255 bytes and charla adds '.dead'",
                room.len()
            )));
        }
        Ok(())
    }

    /// Reads the server's product and version from `connection.start`, which lapin does
    /// not keep: a plain TCP connection, the protocol header, one frame, closed.
    async fn server_properties(&self) -> Result<(String, String)> {
        let unreachable = |reason: String| BrokerError::Unreachable {
            address: self.link.address.clone(),
            reason,
        };
        let address = self.link.address.clone();
        let read = async {
            let mut tcp = tokio::net::TcpStream::connect(&address)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            tcp.write_all(b"AMQP\x00\x00\x09\x01")
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let mut buf = Vec::with_capacity(4096);
            loop {
                let mut chunk = [0u8; 4096];
                let n = tcp
                    .read(&mut chunk)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                if n == 0 {
                    return Err(unreachable(
                        "the server closed the connection before connection.start".into(),
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() >= 7 {
                    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
                    if buf.len() >= size + 8 {
                        break;
                    }
                }
                if buf.len() > 1 << 20 {
                    return Err(unreachable("connection.start is too large".into()));
                }
            }
            Ok::<_, BrokerError>(buf)
        };
        let buf = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .map_err(|_| unreachable("no connection.start within 10 s".into()))??;
        use amq_protocol::frame::AMQPFrame;
        use amq_protocol::protocol::{connection, AMQPClass};
        let (_, frame) = amq_protocol::frame::parse_frame(buf.as_slice()).map_err(|e| {
            BrokerError::backend(BACKEND, format!("unreadable connection.start: {e:?}"))
        })?;
        let AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Start(start))) =
            frame
        else {
            return Err(BrokerError::backend(
                BACKEND,
                "the server did not answer with connection.start",
            ));
        };
        let get = |key: &str| match start.server_properties.inner().get(key) {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            Some(AMQPValue::ShortString(s)) => s.to_string(),
            _ => "unknown".to_owned(),
        };
        Ok((get("product"), get("version")))
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn info(&self) -> Result<BrokerInfo> {
        // A round trip on the real (authenticated) connection first.
        let ch = self.channel().await?;
        let _ = ch.close(200, "OK".into()).await;
        let (product, version) = if self.url.url().scheme() == "amqps" {
            // The version probe speaks plain TCP; over TLS the version is not read.
            ("RabbitMQ".to_owned(), "unknown (amqps)".to_owned())
        } else {
            self.server_properties().await?
        };
        Ok(BrokerInfo {
            product,
            version,
            address: self.url.to_string(),
            details: Vec::new(),
        })
    }

    async fn publisher(&self, mode: Mode, room: &str) -> Result<Box<dyn Publisher>> {
        Self::check_room(room)?;
        let mut p = publisher::AmqpPublisher::new(
            self.link.clone(),
            mode,
            room,
            &self.topic_exchange,
            self.max_bytes,
            self.max_deliveries,
        )?;
        // Declare now, so that a wrong room (a queue of another type) fails here.
        p.channel().await?;
        Ok(Box::new(p))
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        Self::check_room(&subscription.room)?;
        if subscription.mode == Mode::Stream && subscription.group.is_some() {
            return Err(BrokerError::Unsupported {
                backend: BACKEND,
                mode: Mode::Stream,
                reason: "stream consumer groups: RabbitMQ keeps no consumer offsets over \
                         AMQP 0.9.1; share work with queue mode (--mode queue), or use \
                         Redis or Kafka streams for groups"
                    .into(),
            });
        }
        let s = subscriber::AmqpSubscriber::open_new(
            self.link.clone(),
            subscription,
            &self.topic_exchange,
            self.max_bytes,
            self.max_deliveries,
        )
        .await?;
        Ok(Box::new(s))
    }

    async fn dead_letters(&self, room: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        self.dead_visit(room, limit, &DeadSelect::all(), dead::Action::List)
            .await
    }

    async fn replay_dead(&self, room: &str, select: &DeadSelect) -> Result<usize> {
        let done = self
            .dead_visit(room, usize::MAX, select, dead::Action::Replay)
            .await?;
        Ok(done.len())
    }

    async fn purge_dead(&self, room: &str, select: &DeadSelect) -> Result<usize> {
        let done = self
            .dead_visit(room, usize::MAX, select, dead::Action::Purge)
            .await?;
        Ok(done.len())
    }

    async fn history(
        &self,
        room: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<Delivery>> {
        Self::check_room(room)?;
        history::history(&self.link, room, limit, before, self.max_bytes).await
    }

    async fn purge(&self, mode: Mode, room: &str) -> Result<()> {
        Self::check_room(room)?;
        let map = |e: lapin::Error| map_error(&self.link.address, &e);
        let queues: Vec<String> = match mode {
            Mode::Queue => vec![room.to_owned(), dead_letter_queue(room)],
            Mode::Stream => vec![room.to_owned()],
            _ => Vec::new(),
        };
        for q in queues {
            let ch = self.channel().await?;
            match ch
                .queue_delete(short(&q)?, QueueDeleteOptions::default())
                .await
            {
                Ok(_) => {
                    let _ = ch.close(200, "OK".into()).await;
                }
                Err(e) if reply_code(&e) == Some(404) => {}
                Err(e) => return Err(map(e)),
            }
        }
        if mode == Mode::Broadcast {
            let ch = self.channel().await?;
            match ch
                .exchange_delete(short(room)?, ExchangeDeleteOptions::default())
                .await
            {
                Ok(()) => {
                    let _ = ch.close(200, "OK".into()).await;
                }
                Err(e) if reply_code(&e) == Some(404) => {}
                Err(e) => return Err(map(e)),
            }
        }
        // Routing: the topic exchange is shared by every room and subscribers' queues
        // delete themselves; nothing is kept per topic.
        Ok(())
    }
}
