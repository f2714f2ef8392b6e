//! Reading a stream room back (`Broker::history`) over AMQP 0.9.1.
//!
//! A stream queue is read without being consumed: a consumer on a channel of its own, with
//! `x-stream-offset` and manual acks that only give credit back (a stream keeps no ack state
//! that other consumers share), cancelled and closed afterwards. RabbitMQ says nothing about
//! a stream's length over AMQP 0.9.1 (its `queue.declare-ok` counts 0 messages), so the
//! newest offset is found by reading from `last` (the last chunk the stream wrote) until the
//! deliveries pause. Offsets count messages one by one from 0, so the window of a page is
//! known from there: `[end - limit, end)`, read again further back while payloads that are
//! not chat messages left the page short, until the stream's first offset.
//!
//! A room with no queue has no history; its absence is seen with a passive declare on a
//! channel of its own (the failed declare closes it, so nothing else shares it). A queue that is not a stream is the
//! wrong type: declaring it as charla declares streams is refused (PRECONDITION_FAILED) on
//! the same channel, and never consumed (a work queue would hand its messages out). A stream
//! deleted between the two declares is declared again, empty: it has no history either.

use std::collections::BTreeMap;
use std::time::Duration;

use charla_core::{AckTag, BrokerError, Delivery, Message, Result};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, Consumer};

use crate::link::{map_error, reply_code, short, Link};
use crate::subscriber::{close_in_background, header_u64};
use crate::topology::declare_stream;

/// How long the newest chunk may take to start arriving from `last`: a stream that sends
/// nothing within this is empty.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// A pause this long after a delivery from `last` ends the newest chunk.
const CHUNK_PAUSE: Duration = Duration::from_millis(150);
/// The longest a stored message of a window may take to arrive before the read fails.
const WINDOW_WAIT: Duration = Duration::from_secs(5);
/// Windows are at least this long, so that many payloads that are not chat messages are not
/// read back one window each.
const MIN_WINDOW: u64 = 64;
/// Credit of a reading consumer.
const PREFETCH: u16 = 500;

/// A stream room's most recent chat messages before offset `before`, oldest first.
pub(crate) async fn history(
    link: &Link,
    room: &str,
    limit: usize,
    before: Option<&str>,
    max_bytes: usize,
) -> Result<Vec<Delivery>> {
    let before = before.map(parse_offset).transpose()?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let conn = link.connection().await?;
    let address = link.address.as_str();
    let map = |e: lapin::Error| map_error(address, &e);
    let probe = Reading(Some(conn.create_channel().await.map_err(map)?));
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match probe
        .channel()
        .queue_declare(short(room)?, passive, FieldTable::default())
        .await
    {
        Ok(_) => {}
        Err(e) if reply_code(&e) == Some(404) => return Ok(Vec::new()),
        Err(e) => return Err(map(e)),
    }
    declare_stream(probe.channel(), room, address).await?;
    probe.close().await;

    let Some(last) = last_offset(&conn, room, address).await? else {
        return Ok(Vec::new()); // a stream with nothing in it
    };
    let mut end = before.map_or(last + 1, |b| b.min(last + 1));
    let mut page: BTreeMap<u64, Message> = BTreeMap::new();
    while page.len() < limit && end > 0 {
        let want = u64::try_from(limit - page.len())
            .unwrap_or(u64::MAX)
            .max(MIN_WINDOW);
        let start = end.saturating_sub(want);
        let window = read_window(&conn, room, address, start, end, max_bytes).await?;
        page.extend(window.messages);
        if window.first.is_none_or(|first| first > start) {
            break; // the stream begins after `start`: retention removed the rest
        }
        end = start;
    }
    let skip = page.len().saturating_sub(limit);
    Ok(page
        .into_iter()
        .skip(skip)
        .map(|(offset, message)| Delivery {
            message,
            redelivered: false,
            offset: Some(offset.to_string()),
            tag: AckTag(0),
        })
        .collect())
}

fn parse_offset(text: &str) -> Result<u64> {
    text.trim().parse().map_err(|_| {
        BrokerError::InvalidArgument(format!(
            "'{text}' is not a RabbitMQ stream offset: offsets are whole numbers, as printed \
             with each message"
        ))
    })
}

/// A channel that reads, closed when done with — in the background when the future reading
/// it was dropped, so nothing stays attached to the stream.
struct Reading(Option<Channel>);

impl Reading {
    fn channel(&self) -> &Channel {
        // Only `close` takes it, consuming the `Reading`.
        self.0.as_ref().expect("an open reading channel")
    }

    async fn close(mut self) {
        if let Some(ch) = self.0.take() {
            let _ = ch.close(200, "history read".into()).await;
        }
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        if let Some(ch) = self.0.take() {
            close_in_background(ch, "history read abandoned");
        }
    }
}

/// A consumer of `room` from `offset` (an `x-stream-offset` value) on a channel of its own.
async fn consume(
    conn: &Connection,
    room: &str,
    address: &str,
    offset: AMQPValue,
) -> Result<(Reading, Consumer)> {
    let map = |e: lapin::Error| map_error(address, &e);
    let ch = Reading(Some(conn.create_channel().await.map_err(map)?));
    ch.channel()
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .map_err(map)?;
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), offset);
    let consumer = ch
        .channel()
        .basic_consume(
            short(room)?,
            short(&format!("charla-history-{}", ulid::Ulid::new()))?,
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .map_err(map)?;
    Ok((ch, consumer))
}

/// Cancel the consumer, then close its channel.
async fn finish(ch: Reading, consumer: &Consumer) {
    let _ = ch
        .channel()
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await;
    ch.close().await;
}

/// The next delivery's stream offset (its credit given back), `None` after `wait`.
async fn next_offset(
    consumer: &mut Consumer,
    wait: Duration,
    address: &str,
) -> Result<Option<(u64, Vec<u8>)>> {
    loop {
        let d = match tokio::time::timeout(wait, consumer.next()).await {
            Err(_) => return Ok(None),
            Ok(Some(Ok(d))) => d,
            Ok(Some(Err(e))) => return Err(map_error(address, &e)),
            Ok(None) => {
                return Err(BrokerError::Unreachable {
                    address: address.to_owned(),
                    reason: "RabbitMQ cancelled the history reader (stream deleted or node \
                             restarting)"
                        .into(),
                })
            }
        };
        d.ack(BasicAckOptions::default())
            .await
            .map_err(|e| map_error(address, &e))?;
        match header_u64(&d.properties, "x-stream-offset") {
            Some(offset) => return Ok(Some((offset, d.data))),
            None => tracing::debug!("a stream delivery without x-stream-offset: skipped"),
        }
    }
}

/// The newest offset of the stream, `None` when it holds nothing.
async fn last_offset(conn: &Connection, room: &str, address: &str) -> Result<Option<u64>> {
    let last = AMQPValue::LongString(LongString::from(b"last".to_vec()));
    let (ch, mut consumer) = consume(conn, room, address, last).await?;
    let mut newest = None;
    let mut wait = FIRST_WAIT;
    while let Some((offset, _)) = next_offset(&mut consumer, wait, address).await? {
        newest = newest.max(Some(offset));
        wait = CHUNK_PAUSE;
    }
    finish(ch, &consumer).await;
    Ok(newest)
}

struct Window {
    /// The chat messages, by offset.
    messages: BTreeMap<u64, Message>,
    /// The first offset delivered (RabbitMQ starts at the stream's first when asked for one
    /// before it).
    first: Option<u64>,
}

/// The messages at offsets `start..end` (all stored already).
async fn read_window(
    conn: &Connection,
    room: &str,
    address: &str,
    start: u64,
    end: u64,
    max_bytes: usize,
) -> Result<Window> {
    let from = AMQPValue::LongLongInt(i64::try_from(start).unwrap_or(i64::MAX));
    let (ch, mut consumer) = consume(conn, room, address, from).await?;
    let mut window = Window {
        messages: BTreeMap::new(),
        first: None,
    };
    let result = loop {
        let (offset, payload) = match next_offset(&mut consumer, WINDOW_WAIT, address).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                break Err(BrokerError::Unavailable {
                    address: address.to_owned(),
                    reason: format!(
                        "reading stream {room} back from offset {start}: no message within {}s",
                        WINDOW_WAIT.as_secs()
                    ),
                })
            }
            Err(e) => break Err(e),
        };
        // RabbitMQ starts at the beginning of the chunk that holds `start`.
        if offset < start {
            continue;
        }
        window.first.get_or_insert(offset);
        if offset >= end {
            break Ok(());
        }
        match Message::decode(&payload, room, max_bytes) {
            Ok(m) => {
                window.messages.insert(offset, m);
            }
            Err(e) => tracing::debug!(room, offset, "history skips a stream message: {e}"),
        }
        if offset + 1 >= end {
            break Ok(());
        }
    };
    finish(ch, &consumer).await;
    result.map(|()| window)
}
