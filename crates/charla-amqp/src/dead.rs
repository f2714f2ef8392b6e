//! A room's dead letters on RabbitMQ: the queue `<room>.dead`, each message the original
//! payload untouched with why in headers (`x-charla-dead-reason`, `-attempts`, `-error`, …,
//! written by the subscriber), or, where RabbitMQ dead-lettered it itself (a quorum queue's
//! delivery limit), with RabbitMQ's `x-first-death-reason`.
//!
//! Listing, replaying and purging all read the queue with `basic.get` without acking: what is
//! only looked at, or not selected, is given back in order at the end (one `nack` with
//! `multiple` and `requeue`); a selected one is acked only after its replay was confirmed. A
//! run that dies half way so leaves nothing lost: unacked messages go back to the dead queue.
//! The one window is between a replay's confirm and its ack: a crash there leaves the message
//! both replayed and still dead, and a second replay sends it again with the same id (at
//! least once, as everything on RabbitMQ; consumers drop it by id).

use charla_core::{DeadLetter, DeadReason, DeadSelect, Result};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

use crate::link::{map_error, publish_to_queue, reply_code, short};
use crate::topology::{dead_letter_queue, DEAD_HEADER_PREFIX, DELIVERY_COUNT_HEADER};

/// Dead letters looked through per run: each is held unacked by the channel until the end.
const MAX_PER_RUN: u32 = 100_000;

/// What to do with each dead letter read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Look only: everything is given back.
    List,
    Replay,
    Purge,
}

/// Reads up to `limit` dead letters of `room` and does `action` to the selected ones.
/// Returns the ones read (for `List`) or acted on, oldest first.
pub(crate) async fn visit(
    ch: &Channel,
    address: &str,
    room: &str,
    limit: usize,
    select: &DeadSelect,
    action: Action,
) -> Result<Vec<DeadLetter>> {
    let map = |e: lapin::Error| map_error(address, &e);
    let dead = short(&dead_letter_queue(room))?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let count = match ch
        .queue_declare(dead.clone(), passive, FieldTable::default())
        .await
    {
        Ok(q) => q.message_count(),
        Err(e) if reply_code(&e) == Some(404) => return Ok(Vec::new()),
        Err(e) => return Err(map(e)),
    };
    if action == Action::Replay {
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(map)?;
    }
    let (mut out, mut held) = (Vec::new(), None);
    for _ in 0..count.min(MAX_PER_RUN) {
        if out.len() >= limit {
            break;
        }
        let Some(m) = ch
            .basic_get(dead.clone(), BasicGetOptions { no_ack: false })
            .await
            .map_err(map)?
        else {
            break;
        };
        let tag = m.delivery.delivery_tag;
        let letter = read(m.delivery.data, &m.delivery.properties, room);
        if action == Action::List || !select.matches(&letter) {
            held = Some(tag);
            if action == Action::List {
                out.push(letter);
            }
            continue;
        }
        if action == Action::Replay {
            replay(ch, address, room, &letter, &m.delivery.properties).await?;
        }
        ch.basic_ack(tag, BasicAckOptions { multiple: false })
            .await
            .map_err(map)?;
        out.push(letter);
    }
    if let Some(tag) = held {
        let give_back = BasicNackOptions {
            multiple: true,
            requeue: true,
        };
        ch.basic_nack(tag, give_back).await.map_err(map)?;
    }
    Ok(out)
}

/// Publishes a dead letter's message to the room's queue again, marked as replayed, without
/// the dead-letter headers, and waits for RabbitMQ's confirm.
async fn replay(
    ch: &Channel,
    address: &str,
    room: &str,
    letter: &DeadLetter,
    properties: &BasicProperties,
) -> Result<()> {
    let mut headers = FieldTable::default();
    if let Some(old) = properties.headers() {
        for (k, v) in old.inner() {
            // `x-` headers are the broker's and charla's bookkeeping (the dead-letter fields,
            // the delivery counts, `x-death`): a replay starts without them.
            if !k.as_str().starts_with("x-") {
                headers.insert(k.clone(), v.clone());
            }
        }
    }
    let properties = properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    let refused = "is the room's queue gone? The dead letter stays";
    publish_to_queue(
        ch,
        address,
        room,
        &letter.replay_payload(),
        properties,
        refused,
    )
    .await
}

/// A dead letter from its message: charla's headers, else RabbitMQ's own.
fn read(payload: Vec<u8>, properties: &BasicProperties, room: &str) -> DeadLetter {
    let headers = properties.headers().clone().unwrap_or_default();
    let text = |key: &str| match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    };
    let mut letter = DeadLetter::from_fields(payload, room, |name| {
        text(&format!("{DEAD_HEADER_PREFIX}{name}"))
    });
    if letter.reason == DeadReason::Unknown {
        // Dead-lettered by RabbitMQ (a quorum queue's delivery limit, a TTL, a length limit).
        if let Some(why) = text("x-first-death-reason") {
            letter.reason = match why.as_str() {
                "delivery_limit" => DeadReason::MaxDeliveries,
                "rejected" => DeadReason::Nacked,
                other => DeadReason::Other(other.to_owned()),
            };
        }
        if letter.attempts == 0 {
            letter.attempts = crate::subscriber::header_u64(properties, DELIVERY_COUNT_HEADER)
                .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        }
    }
    letter
}
