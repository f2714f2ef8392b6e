//! What charla declares on RabbitMQ for each mode, and the names it uses.
//!
//! | mode | declared |
//! |---|---|
//! | queue | quorum queue `<room>` (`x-queue-type: quorum`, `x-delivery-limit: max_deliveries - 1`, `x-dead-letter-exchange: charla.dlx`, `x-dead-letter-routing-key: <room>`, `x-dead-letter-strategy: at-least-once`, `x-overflow: reject-publish`), classic durable queue `<room>.dead` bound to `charla.dlx` with key `<room>` |
//! | broadcast | fanout exchange `<room>` (auto-delete); each subscriber an exclusive, auto-delete, server-named queue bound to it |
//! | routing | topic exchange `charla.topic` (durable; `?exchange=` in the URL overrides); each subscriber an exclusive, auto-delete, server-named queue bound with its pattern |
//! | stream | stream queue `<room>` (`x-queue-type: stream`, durable) |
//!
//! Why a quorum queue: a message that crashes its consumer (killed, out of memory, a panic)
//! is never acked nor nacked; only the broker sees it come back, so only the broker can count
//! those deliveries. Quorum queues do (`x-delivery-count`, dead-lettered past
//! `x-delivery-limit`); classic queues do not count at all. Counting on the client instead
//! (republishing each redelivered message with a raised count before handing it out) would
//! move every redelivered message to the back of the queue and cost a confirmed publish per
//! redelivery, and x-death counting through a retry exchange only counts rejects, not
//! crashes. The price is throughput (quorum queues replicate and fsync through a Raft log;
//! see docs/rabbitmq.md for the measured figures).
//!
//! A room whose queue already exists as a classic queue (declared by charla before it used
//! quorum queues, or by a plain client) cannot be turned into a quorum queue in place:
//! RabbitMQ refuses the redeclaration (PRECONDITION_FAILED). charla keeps working with it,
//! counting nacks itself as before, and warns that crashes are not counted there and how to
//! migrate; refusing it would strand the messages it holds.

use charla_core::BrokerError;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};

use crate::link::{map_error, reply_code, short};

/// The dead-letter exchange every charla queue points to.
pub const DEAD_LETTER_EXCHANGE: &str = "charla.dlx";
/// The default topic exchange of routing mode.
pub const DEFAULT_TOPIC_EXCHANGE: &str = "charla.topic";
/// Classic queues only: header in which charla counts how often a message was nacked with
/// requeue (charla requeues there by publishing the message again with this header raised,
/// then acking it). Quorum queues count on the broker instead.
pub const DELIVERIES_HEADER: &str = "x-charla-deliveries";
/// Quorum queues: how many times RabbitMQ gave the message back before this delivery.
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// Prefix of the headers on a dead letter saying why it was dead-lettered
/// (`x-charla-dead-reason`, `x-charla-dead-attempts`, …: `DeadLetter::fields`).
pub const DEAD_HEADER_PREFIX: &str = "x-charla-dead-";

/// The dead-letter queue of a room.
pub fn dead_letter_queue(room: &str) -> String {
    format!("{room}.dead")
}

/// How a room's work queue behaves, which depends on who declared it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueKind {
    /// charla's quorum queue: RabbitMQ counts every delivery that was not acked (nacks and
    /// consumers that died) and dead-letters past the limit; messages rejected by any client
    /// go to `<room>.dead` through the dead-letter exchange.
    Quorum,
    /// A classic queue with charla's dead-letter arguments, declared by charla before it
    /// used quorum queues. charla counts nacks itself; crashes are not counted.
    Classic,
    /// Declared before by another client without charla's arguments (a plain durable
    /// queue). charla uses it as it is; its own dead-lettering works the same (it publishes
    /// to `<room>.dead` itself), only other clients' rejects are not kept. Crashes are not
    /// counted.
    Plain,
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// The arguments of charla's classic work queue before it used quorum queues.
fn classic_arguments(room: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange".into(), long(DEAD_LETTER_EXCHANGE));
    args.insert("x-dead-letter-routing-key".into(), long(room));
    args
}

/// RabbitMQ's `x-delivery-limit` for "at most `max_deliveries` deliveries": a quorum queue
/// dead-letters a message when it comes back with its count *above* the limit, so a limit
/// of 4 allows 5 deliveries.
pub(crate) fn delivery_limit(max_deliveries: u32) -> i64 {
    i64::from(max_deliveries.max(1)) - 1
}

pub(crate) fn queue_arguments(room: &str, max_deliveries: u32) -> FieldTable {
    let mut args = classic_arguments(room);
    args.insert("x-queue-type".into(), long("quorum"));
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(delivery_limit(max_deliveries)),
    );
    // RabbitMQ's default for quorum queues is at-most-once dead-lettering (a message may be
    // dropped on the way to the dead-letter exchange). At-least-once keeps it in the queue
    // until `<room>.dead` confirmed it; RabbitMQ requires reject-publish overflow for it
    // (which only matters with a length limit, and charla sets none).
    args.insert("x-dead-letter-strategy".into(), long("at-least-once"));
    args.insert("x-overflow".into(), long("reject-publish"));
    args
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares the dead-letter exchange and `<room>.dead`, bound to it with key `room`.
pub(crate) async fn declare_dead_letters(
    ch: &Channel,
    room: &str,
    address: &str,
) -> Result<(), BrokerError> {
    let map = |e: lapin::Error| map_error(address, &e);
    ch.exchange_declare(
        DEAD_LETTER_EXCHANGE.into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .map_err(map)?;
    let dead = short(&dead_letter_queue(room))?;
    ch.queue_declare(dead.clone(), durable(), FieldTable::default())
        .await
        .map_err(map)?;
    ch.queue_bind(
        dead,
        DEAD_LETTER_EXCHANGE.into(),
        short(room)?,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(map)?;
    Ok(())
}

/// Declares a room's work queue (and its dead letters). Returns the channel to go on with:
/// when the queue already exists as something else RabbitMQ closes the channel
/// (PRECONDITION_FAILED), and charla looks at what it is on new channels.
pub(crate) async fn declare_queue(
    conn: &Connection,
    ch: Channel,
    room: &str,
    max_deliveries: u32,
    address: &str,
) -> Result<(Channel, QueueKind), BrokerError> {
    let map = |e: lapin::Error| map_error(address, &e);
    declare_dead_letters(&ch, room, address).await?;
    let refused = match ch
        .queue_declare(
            short(room)?,
            durable(),
            queue_arguments(room, max_deliveries),
        )
        .await
    {
        Ok(_) => return Ok((ch, QueueKind::Quorum)),
        Err(e) if reply_code(&e) == Some(406) => e,
        Err(e) => return Err(map(e)),
    };
    if refused.to_string().contains("x-delivery-limit") {
        // A quorum queue declared with another `?max_deliveries=`: the limit is the queue's.
        return Err(BrokerError::InvalidArgument(format!(
            "queue '{room}' exists with another delivery limit than max_deliveries={max_deliveries} \
             asks for ({refused}); use the same ?max_deliveries= as the client that declared \
             it (RabbitMQ's x-delivery-limit is max_deliveries - 1), or delete the queue \
             (charla purge) to declare it again"
        )));
    }
    // Refused although there is no such queue: this RabbitMQ cannot make charla's quorum
    // queue (too old, or the feature is off). Said so, rather than creating a classic queue
    // by probing below.
    let exists = conn.create_channel().await.map_err(map)?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match exists
        .queue_declare(short(room)?, passive, FieldTable::default())
        .await
    {
        Ok(_) => {
            let _ = exists.close(200, "OK".into()).await;
        }
        Err(e) if reply_code(&e) == Some(404) => {
            return Err(BrokerError::backend(
                crate::link::BACKEND,
                format!(
                    "RabbitMQ refused to declare queue '{room}' as a quorum queue with a \
                     delivery limit ({refused}); charla needs RabbitMQ 3.10 or later with the \
                     quorum_queue feature flag enabled"
                ),
            ));
        }
        Err(e) => return Err(map(e)),
    }
    // An existing classic queue: charla's own from before quorum queues, or a plain
    // client's. Each probe that does not match closes its channel, hence one each.
    for (args, kind) in [
        (classic_arguments(room), QueueKind::Classic),
        (FieldTable::default(), QueueKind::Plain),
    ] {
        let probe = conn.create_channel().await.map_err(map)?;
        match probe.queue_declare(short(room)?, durable(), args).await {
            Ok(_) => {
                tracing::warn!(
                    queue = room,
                    "queue '{room}' is a classic queue ({}), not charla's quorum queue: a \
                     message whose consumer dies holding it is not counted there and can come \
                     back forever (nacks are still counted, poison and rejected messages still \
                     go to '{}'). To migrate: stop the producers, let the consumers drain it, \
                     delete it (`rabbitmqctl delete_queue {room}`), and charla declares the \
                     quorum queue on its next start",
                    if kind == QueueKind::Classic {
                        "declared by an older charla"
                    } else {
                        "declared by another client without charla's arguments"
                    },
                    dead_letter_queue(room)
                );
                return Ok((probe, kind));
            }
            Err(e) if reply_code(&e) == Some(406) => continue,
            Err(e) => return Err(map(e)),
        }
    }
    Err(BrokerError::WrongType {
        name: room.to_owned(),
        detail: format!(
            "RabbitMQ has a queue '{room}' that is neither charla's work queue nor a plain \
             durable queue ({refused}); use another room or delete it (charla purge)"
        ),
    })
}

/// Declares a room's stream queue.
pub(crate) async fn declare_stream(
    ch: &Channel,
    room: &str,
    address: &str,
) -> Result<(), BrokerError> {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long("stream"));
    match ch.queue_declare(short(room)?, durable(), args).await {
        Ok(_) => Ok(()),
        Err(e) if reply_code(&e) == Some(406) => Err(BrokerError::WrongType {
            name: room.to_owned(),
            detail: format!(
                "RabbitMQ already has a queue '{room}' that is not a stream (a stream needs \
                 x-queue-type=stream); use another room for stream mode or delete it"
            ),
        }),
        Err(e) => Err(map_error(address, &e)),
    }
}

/// Declares a room's fanout exchange (broadcast mode). Auto-delete: it goes away with its
/// last subscriber, and publishers declare it again.
pub(crate) async fn declare_fanout(
    ch: &Channel,
    room: &str,
    address: &str,
) -> Result<(), BrokerError> {
    declare_exchange(ch, room, ExchangeKind::Fanout, false, address).await
}

/// Declares the topic exchange of routing mode (durable, shared by every room).
pub(crate) async fn declare_topic(
    ch: &Channel,
    exchange: &str,
    address: &str,
) -> Result<(), BrokerError> {
    declare_exchange(ch, exchange, ExchangeKind::Topic, true, address).await
}

async fn declare_exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    durable: bool,
    address: &str,
) -> Result<(), BrokerError> {
    let kind_name = format!("{kind:?}").to_lowercase();
    let options = ExchangeDeclareOptions {
        durable,
        auto_delete: !durable,
        ..ExchangeDeclareOptions::default()
    };
    match ch
        .exchange_declare(short(name)?, kind, options, FieldTable::default())
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if reply_code(&e) == Some(406) => Err(BrokerError::WrongType {
            name: name.to_owned(),
            detail: format!(
                "RabbitMQ already has an exchange '{name}' of another type or durability \
                 (charla needs a {kind_name} exchange here); use another name or delete it"
            ),
        }),
        Err(e) if reply_code(&e) == Some(403) => Err(BrokerError::InvalidArgument(format!(
            "RabbitMQ refused to declare exchange '{name}' ({e}); names starting with 'amq.' are reserved"
        ))),
        Err(e) => Err(map_error(address, &e)),
    }
}

/// An exclusive, auto-delete, server-named queue bound to `exchange` with `key`.
pub(crate) async fn declare_private_queue(
    ch: &Channel,
    exchange: &str,
    key: &str,
    address: &str,
) -> Result<String, BrokerError> {
    let map = |e: lapin::Error| map_error(address, &e);
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(map)?;
    let name = q.name().clone();
    ch.queue_bind(
        name.clone(),
        short(exchange)?,
        short(key)?,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(map)?;
    Ok(name.to_string())
}
