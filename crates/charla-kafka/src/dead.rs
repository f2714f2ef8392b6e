//! A room's dead letters on Kafka, and the operator's replay and purge of them.
//!
//! The dead letters are the records of `charla-dead.<room>`, each the payload untouched with
//! why in its headers. A Kafka log cannot lose one record, so what was done to each is
//! written beside it, in `charla-dead-settled.<room>`: a record per step, keyed by the dead
//! record's `partition:offset` (so one dead record's steps share a partition and keep their
//! order): `replaying <ms>`, `replayed`, `purged`. A dead letter is listed until it is
//! replayed or purged.
//!
//! A replay writes `replaying` with the time, publishes the message back to the room, then
//! writes `replayed`. One that died between the two left `replaying`: the next replay looks
//! in the room's topic from that time for the message (its id, replayed once more) and
//! publishes it only if it is not there. So a replay that crashed half way never doubles a
//! message and never loses one, as on Redis (where each moves in one transaction).

use std::collections::HashMap;
use std::sync::Arc;

use charla_core::{DeadLetter, DeadSelect, Message, Mode, Publisher, Result};
use rdkafka::producer::FutureRecord;

use crate::admin::{dead_letter_topic, topic_name, Stored, DEAD_HEADER_PREFIX, RESERVED_PREFIX};
use crate::publisher::KafkaPublisher;
use crate::Shared;

/// Where the steps taken on a room's dead letters are written.
pub(crate) fn settled_topic(room: &str) -> Result<String> {
    topic_name(&format!(
        "{RESERVED_PREFIX}dead-settled.{}",
        topic_name(room)?
    ))
    .map(str::to_owned)
}

/// Where a dead record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A replay published it, or was about to, at this time (ms since the epoch).
    Replaying(i64),
    /// Replayed or purged: no longer a dead letter.
    Settled,
}

impl State {
    fn parse(text: &str) -> State {
        match text.split_once(' ') {
            Some(("replaying", ms)) => ms.parse().map_or(State::Open, State::Replaying),
            _ if text == "replayed" || text == "purged" => State::Settled,
            _ => State::Open,
        }
    }
}

/// A dead record not settled yet: where it is, and the dead letter it holds.
struct Open {
    identity: String,
    state: State,
    letter: DeadLetter,
}

/// The room's dead letters not settled yet, oldest first per partition.
async fn open_letters(shared: &Shared, room: &str, limit: usize) -> Result<Vec<Open>> {
    let admin = &shared.admin;
    let settings = &shared.settings;
    let steps = admin
        .read_records(settings, &settled_topic(room)?, usize::MAX, None)
        .await?;
    let mut states: HashMap<String, State> = HashMap::new();
    for step in steps {
        if let Some(identity) = step.key {
            states.insert(
                identity,
                State::parse(&String::from_utf8_lossy(&step.payload)),
            );
        }
    }
    let dead = admin
        .read_records(settings, &dead_letter_topic(room)?, usize::MAX, None)
        .await?;
    Ok(dead
        .into_iter()
        .filter_map(|record| {
            let identity = format!("{}:{}", record.partition, record.offset);
            let state = states.get(&identity).copied().unwrap_or(State::Open);
            (state != State::Settled).then(|| Open {
                letter: letter(record, room),
                identity,
                state,
            })
        })
        .take(limit)
        .collect())
}

/// The dead letter a record of the dead-letter topic holds.
fn letter(record: Stored, room: &str) -> DeadLetter {
    DeadLetter::from_fields(record.payload.clone(), room, |name| {
        record
            .header(&format!("{DEAD_HEADER_PREFIX}{name}"))
            .map(str::to_owned)
    })
}

pub(crate) async fn list(shared: &Shared, room: &str, limit: usize) -> Result<Vec<DeadLetter>> {
    Ok(open_letters(shared, room, limit)
        .await?
        .into_iter()
        .map(|o| o.letter)
        .collect())
}

pub(crate) async fn purge(shared: &Arc<Shared>, room: &str, select: &DeadSelect) -> Result<usize> {
    let mut purged = 0;
    for open in open_letters(shared, room, usize::MAX).await? {
        if select.matches(&open.letter) {
            step(shared, room, &open.identity, "purged").await?;
            purged += 1;
        }
    }
    Ok(purged)
}

pub(crate) async fn replay(shared: &Arc<Shared>, room: &str, select: &DeadSelect) -> Result<usize> {
    let topic = topic_name(room)?;
    shared.ensure_topic(topic).await?;
    let mut replayed = 0;
    for open in open_letters(shared, room, usize::MAX).await? {
        if !select.matches(&open.letter) {
            continue;
        }
        let back = match open.state {
            State::Replaying(since) => already_back(shared, topic, &open.letter, since).await?,
            _ => false,
        };
        if !back {
            let now = chrono_ms();
            step(shared, room, &open.identity, &format!("replaying {now}")).await?;
            let mode = open.letter.mode.unwrap_or(Mode::Queue);
            let mut publisher = KafkaPublisher::new(shared.clone(), mode, topic);
            publisher.publish_raw(&open.letter.replay_payload()).await?;
        }
        step(shared, room, &open.identity, "replayed").await?;
        replayed += 1;
    }
    Ok(replayed)
}

/// Whether the room's topic got the replay of `letter` since `since_ms` (a replay that died
/// after publishing it and before saying so). A margin before that time covers the clocks of
/// the producer and the broker.
async fn already_back(
    shared: &Shared,
    topic: &str,
    letter: &DeadLetter,
    since_ms: i64,
) -> Result<bool> {
    const CLOCK_MARGIN_MS: i64 = 60_000;
    let records = shared
        .admin
        .read_records(
            &shared.settings,
            topic,
            usize::MAX,
            Some(since_ms - CLOCK_MARGIN_MS),
        )
        .await?;
    let (id, replays) = (letter.id(), letter.replays() + 1);
    Ok(records.iter().any(|r| {
        Message::decode_any(&r.payload, topic, usize::MAX)
            .is_ok_and(|m| m.id == id && m.replays == replays)
    }))
}

/// Writes one step of dead record `identity`, confirmed by the broker.
async fn step(shared: &Shared, room: &str, identity: &str, what: &str) -> Result<()> {
    let topic = settled_topic(room)?;
    shared.ensure_topic(&topic).await?;
    let record = FutureRecord::to(&topic).key(identity).payload(what);
    shared
        .producer
        .send(record, rdkafka::util::Timeout::Never)
        .await
        .map(drop)
        .map_err(|(e, _)| shared.settings.error(e))
}

fn chrono_ms() -> i64 {
    charla_core::dead::now_us() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_back() {
        assert_eq!(
            State::parse("replaying 1700000000000"),
            State::Replaying(1_700_000_000_000)
        );
        assert_eq!(State::parse("replayed"), State::Settled);
        assert_eq!(State::parse("purged"), State::Settled);
        assert_eq!(State::parse("garbage"), State::Open);
        assert_eq!(
            settled_topic("fotos").ok().as_deref(),
            Some("charla-dead-settled.fotos")
        );
    }
}
