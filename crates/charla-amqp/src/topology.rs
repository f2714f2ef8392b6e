//! What charla declares on RabbitMQ for each mode, and the names it uses.
//!
//! | mode | declared |
//! |---|---|
//! | queue | classic durable queue `<room>` (`x-dead-letter-exchange: charla.dlx`, `x-dead-letter-routing-key: <room>`), classic durable queue `<room>.dead` bound to `charla.dlx` with key `<room>` |
//! | broadcast | fanout exchange `<room>` (auto-delete); each subscriber an exclusive, auto-delete, server-named queue bound to it |
//! | routing | topic exchange `charla.topic` (durable; `?exchange=` in the URL overrides); each subscriber an exclusive, auto-delete, server-named queue bound with its pattern |
//! | stream | stream queue `<room>` (`x-queue-type: stream`, durable) |

use charla_core::BrokerError;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};

use crate::link::{map_error, reply_code, short};

/// The dead-letter exchange every charla queue points to.
pub const DEAD_LETTER_EXCHANGE: &str = "charla.dlx";
/// The default topic exchange of routing mode.
pub const DEFAULT_TOPIC_EXCHANGE: &str = "charla.topic";
/// A message nacked with requeue more than this many times is dead-lettered instead.
pub const DELIVERY_LIMIT: u64 = 5;
/// Header in which charla counts how often a message was nacked with requeue (charla
/// requeues by publishing the message again with this header raised, then acking it).
pub const DELIVERIES_HEADER: &str = "x-charla-deliveries";
/// Header on a dead letter saying why it was dead-lettered.
pub const DEAD_REASON_HEADER: &str = "x-charla-dead-reason";

/// The dead-letter queue of a room.
pub fn dead_letter_queue(room: &str) -> String {
    format!("{room}.dead")
}

/// How a room's work queue behaves, which depends on who declared it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueKind {
    /// Declared with charla's arguments: messages rejected by any client (also a plain AMQP
    /// one) go to `<room>.dead` through the dead-letter exchange.
    Managed,
    /// Declared before by another client without charla's arguments (a plain durable
    /// queue). charla uses it as it is; its own dead-lettering works the same (it publishes
    /// to `<room>.dead` itself), only other clients' rejects are not kept.
    Plain,
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

pub(crate) fn queue_arguments(room: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange".into(), long(DEAD_LETTER_EXCHANGE));
    args.insert("x-dead-letter-routing-key".into(), long(room));
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
/// when the queue already exists without charla's arguments RabbitMQ closes the channel
/// (PRECONDITION_FAILED), and charla falls back to the existing queue on a new channel.
pub(crate) async fn declare_queue(
    conn: &Connection,
    ch: Channel,
    room: &str,
    address: &str,
) -> Result<(Channel, QueueKind), BrokerError> {
    let map = |e: lapin::Error| map_error(address, &e);
    declare_dead_letters(&ch, room, address).await?;
    match ch
        .queue_declare(short(room)?, durable(), queue_arguments(room))
        .await
    {
        Ok(_) => Ok((ch, QueueKind::Managed)),
        Err(e) if reply_code(&e) == Some(406) => {
            // A plain durable classic queue accepts a declaration without arguments; a
            // stream or a queue of another shape does not.
            let probe = conn.create_channel().await.map_err(map)?;
            match probe
                .queue_declare(short(room)?, durable(), FieldTable::default())
                .await
            {
                Ok(_) => {
                    tracing::warn!(
                        queue = room,
                        "queue '{room}' was declared by another client without charla's \
                         arguments; using it as a plain queue (charla dead-letters poison and \
                         rejected messages to '{}' itself; no delivery limit)",
                        dead_letter_queue(room)
                    );
                    Ok((probe, QueueKind::Plain))
                }
                Err(e) => Err(BrokerError::WrongType {
                    name: room.to_owned(),
                    detail: format!(
                        "RabbitMQ has a queue '{room}' that is neither charla's work queue nor a \
                         plain durable queue ({e}); use another room or delete it (charla purge)"
                    ),
                }),
            }
        }
        Err(e) => Err(map(e)),
    }
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
