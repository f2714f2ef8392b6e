//! `redis://` / `rediss://`: charla over Redis, Valkey or `charla serve`.
//!
//! | mode | Redis structure (room `R`) |
//! |---|---|
//! | queue | list `R` — `LPUSH` by producers (the seed's `enviar_mensaje`), taken with `LMOVE`/`BLMOVE` into a per-consumer processing list, removed from it on ack ([`queue`]) |
//! | broadcast | channel `R` — `PUBLISH` / `SUBSCRIBE`, one pub/sub connection per broker for all its rooms ([`pubsub`], [`channels`]) |
//! | routing | channel per topic — `PUBLISH` / `PSUBSCRIBE`, filtered to AMQP topic semantics ([`pubsub`]) |
//! | stream | stream `R` — `XADD MAXLEN ~`, `XREAD` or `XREADGROUP`/`XACK`/`XAUTOCLAIM` ([`stream`]) |
//!
//! charla's own bookkeeping keys live under `charla:{R}:…`; the braces are a Redis Cluster
//! hash tag, so they hash to the same slot as `R` itself and transactions over both work on a
//! cluster too.
//!
//! URL options (query string): `max_message_bytes`, `consumer_ttl_ms` (how long a silent
//! consumer is considered alive; default 10 000), `max_deliveries` (default 5), and the
//! stream retention: `stream_maxlen` (keep about this many entries, `XADD MAXLEN ~`; default
//! 100 000, `0` = no limit) and `stream_max_age` (drop entries older than this, `XADD MINID ~`,
//! e.g. `7d`, `12h`, `30m`, `90s`, `500ms`; a bare number is seconds; off by default). Entries
//! removed by retention before a subscriber read them are counted and reported to it
//! (`Subscriber::take_missed`), never dropped silently. Anything else is passed to the redis
//! crate (`protocol=resp3`).

mod channels;
mod dead;
mod ids;
mod keys;
mod pubsub;
mod queue;
mod stream;
mod wake;

use std::time::Duration;

use async_trait::async_trait;
use charla_core::{
    Broker, BrokerError, BrokerInfo, BrokerUrl, Capabilities, DeadLetter, DeadSelect, Delivery,
    Message, Mode, Publisher, Result, Subscriber, Subscription,
};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

pub(crate) const BACKEND: &str = "redis";

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
    // Decided per server at connect: see `RedisBroker::survives_restart`.
    survives_restart: false,
    // An ack is a command Redis answers after applying it (and logging it, with the AOF).
    acks_survive_restart: true,
    // A failed publish is reported to the caller, never sent again behind its back.
    publisher_resends: false,
    queue_order: true,
    counts_crashed_deliveries: true,
    history: true,
    list_rooms: true,
};

const CHARLA_OPTIONS: &[&str] = &[
    "consumer_ttl_ms",
    "max_deliveries",
    "stream_maxlen",
    "stream_max_age",
];

/// Settings read from the URL, shared by the publishers and subscribers of one broker.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub max_message_bytes: usize,
    /// A consumer that has not refreshed its heartbeat (queue) or touched its pending entries
    /// (stream) for this long is dead: others take over its unacknowledged messages.
    pub consumer_ttl: Duration,
    /// Deliveries after which a message is dead-lettered instead of handed out again.
    pub max_deliveries: u32,
    /// Approximate cap on stream length (`XADD MAXLEN ~`); 0 = none.
    pub stream_maxlen: usize,
    /// Entries older than this are trimmed (`MINID ~`, from this client's clock).
    pub stream_max_age: Option<Duration>,
    pub address: String,
}

/// A connection to a Redis-protocol server.
pub struct RedisBroker {
    client: redis::Client,
    conn: MultiplexedConnection,
    opts: Options,
    /// The broadcast subscribers' one pub/sub connection (see [`channels`]).
    channels: channels::Channels,
    /// The blocking waits of plain stream readers, shared (see [`wake`]).
    wakers: std::sync::Arc<wake::Wakers>,
    /// The server keeps an append-only file (`CONFIG GET appendonly` says yes), so what it
    /// acknowledged is still there after it restarts. Without it (the Redis default, RDB
    /// snapshots at best) a restart loses messages, and a server that does not answer
    /// CONFIG GET (managed services often disable it) is not assumed to keep them.
    survives_restart: bool,
}

impl RedisBroker {
    /// Connect and authenticate; fails with one clear error when the server is unreachable,
    /// refuses the password, or the URL is wrong.
    pub async fn connect(url: &BrokerUrl) -> Result<Self> {
        let opts = Options {
            max_message_bytes: url.max_message_bytes()?,
            consumer_ttl: Duration::from_millis(
                url.option_num("consumer_ttl_ms")?
                    .unwrap_or(10_000u64)
                    .max(100),
            ),
            max_deliveries: url.max_deliveries()?,
            stream_maxlen: url.option_num("stream_maxlen")?.unwrap_or(100_000usize),
            stream_max_age: match url.option("stream_max_age") {
                None => None,
                Some(v) => Some(charla_core::parse_age(&v).ok_or_else(|| BrokerError::InvalidUrl {
                    url: url.to_string(),
                    reason: format!(
                        "option stream_max_age={v} is not a duration such as 7d, 12h, 30m, 90s or 500ms"
                    ),
                })?),
            },
            address: url.address(),
        };
        let invalid = |e: redis::RedisError| BrokerError::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        };
        let info = redis::IntoConnectionInfo::into_connection_info(
            url.without_options(CHARLA_OPTIONS).as_str(),
        )
        .map_err(invalid)?
        .set_tcp_settings(tcp_settings());
        let client = redis::Client::open(info).map_err(invalid)?;
        let mut conn = open(&client, &opts, Some(Duration::from_secs(30))).await?;
        let appendonly: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async(&mut conn)
            .await;
        let survives_restart = matches!(appendonly.as_deref(), Ok([_, v]) if v == "yes");
        Ok(RedisBroker {
            channels: channels::Channels::new(client.clone(), opts.clone()),
            wakers: std::sync::Arc::new(wake::Wakers::new(
                client.clone(),
                conn.clone(),
                opts.clone(),
            )),
            conn,
            client,
            opts,
            survives_restart,
        })
    }

    /// A new connection of its own for blocking commands (BLMOVE, XREAD BLOCK). They block for
    /// at most [`queue::BLOCK`] on the server, so a reply later than that plus
    /// [`BLOCKING_MARGIN`] means the server or the path to it is gone: the command fails with
    /// a transient error (the caller reconnects) instead of waiting forever on a dead socket.
    pub(crate) async fn blocking_connection(&self) -> Result<MultiplexedConnection> {
        open(
            &self.client,
            &self.opts,
            Some(queue::BLOCK + BLOCKING_MARGIN),
        )
        .await
    }
}

/// How much later than its block time a blocking command's reply may come before the
/// connection is given up (a busy server, an fsync, a long pipeline ahead of it).
pub(crate) const BLOCKING_MARGIN: Duration = Duration::from_secs(5);

/// TCP settings of every connection: no Nagle delay (requests are whole pipelines), and
/// keepalive probes so a peer that vanished (cable pulled, machine off, NAT entry dropped) is
/// noticed by the kernel even on a connection that is idle, e.g. a pub/sub subscriber.
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    use redis::io::tcp::socket2::TcpKeepalive;
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos"))]
    let keepalive = keepalive.with_retries(3);
    redis::io::tcp::TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
}

pub(crate) async fn open(
    client: &redis::Client,
    opts: &Options,
    response_timeout: Option<Duration>,
) -> Result<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(response_timeout);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| map_err(e, &opts.address))?;
    // The handshake may be lazy about AUTH errors on some servers: make sure now.
    redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| map_err(e, &opts.address))?;
    Ok(conn)
}

/// One clear error per cause: unreachable, authentication, wrong key type, other.
pub(crate) fn map_err(e: redis::RedisError, address: &str) -> BrokerError {
    let code = e.code().unwrap_or("");
    if e.kind() == redis::ErrorKind::AuthenticationFailed || matches!(code, "NOAUTH" | "WRONGPASS")
    {
        return BrokerError::Auth {
            address: address.to_owned(),
            reason: e.detail().unwrap_or(&e.to_string()).to_owned(),
        };
    }
    if code == "WRONGTYPE" {
        return BrokerError::WrongType {
            name: "a key of this room".into(),
            detail: "it holds another kind of value; use another --room for this mode".into(),
        };
    }
    // Replies a server gives while it cannot serve for a moment: still loading its AOF after a
    // restart (LOADING), a disk that fails (MISCONF), a cluster failing over. A client that
    // gave up on them would stop on every broker restart.
    if matches!(
        code,
        "LOADING" | "MISCONF" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN"
    ) {
        return BrokerError::Unavailable {
            address: address.to_owned(),
            reason: e.detail().unwrap_or(&e.to_string()).to_owned(),
        };
    }
    if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
        return BrokerError::Unreachable {
            address: address.to_owned(),
            reason: e.to_string(),
        };
    }
    BrokerError::backend(BACKEND, e)
}

#[async_trait]
impl Broker for RedisBroker {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            survives_restart: self.survives_restart,
            ..CAPABILITIES
        }
    }

    async fn info(&self) -> Result<BrokerInfo> {
        let mut conn = self.conn.clone();
        let text: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(|e| map_err(e, &self.opts.address))?;
        Ok(parse_info(&text, &self.opts.address))
    }

    async fn publisher(&self, mode: Mode, room: &str) -> Result<Box<dyn Publisher>> {
        keys::check_room(room)?;
        Ok(Box::new(RedisPublisher {
            conn: self.conn.clone(),
            mode,
            room: room.to_owned(),
            opts: self.opts.clone(),
        }))
    }

    async fn subscribe(&self, sub: Subscription) -> Result<Box<dyn Subscriber>> {
        keys::check_room(&sub.room)?;
        match sub.mode {
            Mode::Queue => Ok(Box::new(queue::QueueSubscriber::start(self, sub).await?)),
            Mode::Stream => Ok(Box::new(stream::StreamSubscriber::start(self, sub).await?)),
            Mode::Broadcast | Mode::Routing => Ok(Box::new(
                pubsub::PubSubSubscriber::start(&self.client, &self.channels, &self.opts, sub)
                    .await?,
            )),
        }
    }

    async fn dead_letters(&self, room: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut conn = self.conn.clone();
        dead::list(&mut conn, &self.opts, room, limit).await
    }

    async fn replay_dead(&self, room: &str, select: &DeadSelect) -> Result<usize> {
        // WATCH needs a connection of its own: the shared one carries other callers' commands.
        let mut conn = open(&self.client, &self.opts, Some(Duration::from_secs(30))).await?;
        dead::settle(&mut conn, &self.opts, room, select, dead::Action::Replay).await
    }

    async fn purge_dead(&self, room: &str, select: &DeadSelect) -> Result<usize> {
        let mut conn = open(&self.client, &self.opts, Some(Duration::from_secs(30))).await?;
        dead::settle(&mut conn, &self.opts, room, select, dead::Action::Purge).await
    }

    async fn history(
        &self,
        room: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<Delivery>> {
        keys::check_room(room)?;
        let mut conn = self.conn.clone();
        stream::history(&mut conn, &self.opts, room, limit, before).await
    }

    async fn rooms(&self) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        keys::stream_rooms(&mut conn, &self.opts.address).await
    }

    async fn purge(&self, mode: Mode, room: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let mut doomed = vec![keys::dead(room)];
        if mode.is_durable() {
            doomed.push(room.to_owned());
        }
        doomed
            .extend(keys::scan(&mut conn, &keys::all_bookkeeping(room), &self.opts.address).await?);
        redis::cmd("DEL")
            .arg(&doomed)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| map_err(e, &self.opts.address))
    }
}

/// Product and version from `INFO server`: Valkey and `charla serve` identify themselves,
/// everything else is Redis.
fn parse_info(text: &str, address: &str) -> BrokerInfo {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    let (product, version) = if let Some(v) = field("charla_version") {
        ("charla serve".to_owned(), v)
    } else if let Some(v) = field("valkey_version") {
        ("valkey".to_owned(), v)
    } else {
        (
            "redis".to_owned(),
            field("redis_version").unwrap_or_else(|| "unknown".into()),
        )
    };
    BrokerInfo {
        product,
        version,
        address: address.to_owned(),
        details: Vec::new(),
    }
}

struct RedisPublisher {
    conn: MultiplexedConnection,
    mode: Mode,
    room: String,
    opts: Options,
}

impl RedisPublisher {
    fn check(&self, payload: &[u8]) -> Result<()> {
        if payload.len() > self.opts.max_message_bytes {
            return Err(BrokerError::TooLarge {
                size: payload.len(),
                limit: self.opts.max_message_bytes,
            });
        }
        Ok(())
    }

    /// Send encoded payloads: one LPUSH for a queue batch (the list keeps their order for
    /// right-hand consumers), a pipeline of PUBLISH or XADD otherwise.
    async fn send(&mut self, payloads: &[Vec<u8>]) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        add_sends(&mut pipe, self.mode, &self.room, &self.opts, payloads);
        pipe.query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| map_err(e, &self.opts.address))
    }
}

/// The commands that put encoded payloads in a room (a publish, a dead-letter replay): one
/// LPUSH for a queue batch (the list keeps their order for right-hand consumers), PUBLISH or
/// XADD (with the configured retention) per payload otherwise.
pub(crate) fn add_sends(
    pipe: &mut redis::Pipeline,
    mode: Mode,
    room: &str,
    opts: &Options,
    payloads: &[Vec<u8>],
) {
    match mode {
        Mode::Queue => {
            pipe.cmd("LPUSH").arg(room).arg(payloads).ignore();
        }
        Mode::Broadcast | Mode::Routing => {
            for p in payloads {
                pipe.cmd("PUBLISH").arg(room).arg(p).ignore();
            }
        }
        Mode::Stream => {
            // Retention, as configured: by count in XADD, by age in XADD when that is the
            // only limit, else in one XTRIM after the batch (XADD takes one strategy).
            let min_id = opts.stream_max_age.map(|age| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                format!("{}-0", now.saturating_sub(age).as_millis())
            });
            for p in payloads {
                let xadd = pipe.cmd("XADD").arg(room);
                if opts.stream_maxlen > 0 {
                    xadd.arg("MAXLEN").arg("~").arg(opts.stream_maxlen);
                } else if let Some(min_id) = &min_id {
                    xadd.arg("MINID").arg("~").arg(min_id);
                }
                xadd.arg("*").arg(stream::PAYLOAD_FIELD).arg(p).ignore();
            }
            if let (true, Some(min_id)) = (opts.stream_maxlen > 0, &min_id) {
                pipe.cmd("XTRIM")
                    .arg(room)
                    .arg("MINID")
                    .arg("~")
                    .arg(min_id)
                    .ignore();
            }
        }
    }
}

#[async_trait]
impl Publisher for RedisPublisher {
    async fn publish(&mut self, message: &Message) -> Result<()> {
        let payload = message.encode_checked(self.opts.max_message_bytes)?;
        self.send(&[payload]).await
    }

    async fn publish_batch(&mut self, messages: &[Message]) -> Result<()> {
        let payloads = messages
            .iter()
            .map(|m| m.encode_checked(self.opts.max_message_bytes))
            .collect::<Result<Vec<_>>>()?;
        self.send(&payloads).await
    }

    async fn publish_raw(&mut self, payload: &[u8]) -> Result<()> {
        self.check(payload)?;
        self.send(&[payload.to_vec()]).await
    }
}

/// Add one to the `deliveries` field of a JSON message, keeping every other field and their
/// order. Returns the new payload and count, or `None` when the payload is not a JSON object.
pub(crate) fn bump_deliveries(payload: &[u8]) -> Option<(Vec<u8>, u32)> {
    let mut value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let obj = value.as_object_mut()?;
    let n = obj.get("deliveries").and_then(|v| v.as_u64()).unwrap_or(0) as u32 + 1;
    obj.insert("deliveries".into(), n.into());
    Some((serde_json::to_vec(&value).ok()?, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_identifies_the_product() {
        let i = parse_info(
            "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n",
            "h:1",
        );
        assert_eq!(
            (i.product.as_str(), i.version.as_str()),
            ("redis", "7.0.15")
        );
        let i = parse_info(
            "redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n",
            "h:1",
        );
        assert_eq!(
            (i.product.as_str(), i.version.as_str()),
            ("valkey", "8.0.1")
        );
        let i = parse_info("redis_version:7.2.0\r\ncharla_version:0.1.0\r\n", "h:1");
        assert_eq!(i.product, "charla serve");
    }

    /// A server restarted with a big AOF answers LOADING for a while (seen in bench/chaos.sh:
    /// `charla send` gave up on it); a failing disk answers MISCONF. Both are retried.
    #[test]
    fn a_server_that_cannot_serve_for_now_is_a_transient_error() {
        for reply in [
            &b"-LOADING Redis is loading the dataset in memory\r\n"[..],
            b"-MISCONF Errors writing to the AOF file: No space left on device\r\n",
            b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
        ] {
            let e = redis::parse_redis_value(reply)
                .and_then(|v| v.extract_error())
                .expect_err("an error reply");
            let mapped = map_err(e, "h:1");
            assert!(mapped.is_transient(), "{mapped}");
        }
        let e = redis::parse_redis_value(b"-ERR unknown command\r\n")
            .and_then(|v| v.extract_error())
            .expect_err("an error reply");
        assert!(!map_err(e, "h:1").is_transient());
    }

    #[test]
    fn bumping_keeps_fields_in_order() {
        let (p, n) = bump_deliveries(br#"{"usuario":"a","mensaje":"b","hora":"c"}"#).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            p,
            br#"{"usuario":"a","mensaje":"b","hora":"c","deliveries":1}"#
        );
        let (_, n) = bump_deliveries(&p).unwrap();
        assert_eq!(n, 2);
        assert!(bump_deliveries(b"nope").is_none());
        assert!(bump_deliveries(b"[1]").is_none());
    }
}
