//! A room's dead letters on Redis: the list `charla:{room}:dead`, one
//! [`DeadLetter::encode`]d entry per dead letter (a bare payload, as older charla wrote,
//! reads back with the reason `unknown`), and the operator's replay and purge of them.
//!
//! A replay or purge moves one entry at a time in a WATCH/MULTI transaction (the entry is
//! still there → put its message back and remove the entry, atomically), so a run stopped
//! half way leaves every entry either replayed or still dead, never both, and two operators
//! never replay the same entry twice. WATCH/MULTI rather than a script, so it also works where
//! scripting is off (as `charla serve` before it has it).

use charla_core::{DeadLetter, DeadSelect, Mode, Result};
use redis::aio::MultiplexedConnection;

use crate::{add_sends, keys, map_err, Options};

/// Entries read per LRANGE while looking through a dead-letter list.
const PAGE: usize = 500;

/// What an operator does to the selected dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Back into the room (queue or stream, as it was consumed), marked as replayed.
    Replay,
    /// Gone for good.
    Purge,
}

/// The first `limit` dead letters of `room`, oldest first.
pub(crate) async fn list(
    conn: &mut MultiplexedConnection,
    opts: &Options,
    room: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let stored: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg(keys::dead(room))
        .arg(0)
        .arg(i64::try_from(limit - 1).unwrap_or(i64::MAX))
        .query_async(conn)
        .await
        .map_err(|e| map_err(e, &opts.address))?;
    Ok(stored
        .iter()
        .map(|entry| DeadLetter::decode(entry, room))
        .collect())
}

/// Replays or purges the selected dead letters of `room`; returns how many it moved.
/// `conn` must be a connection of the caller's own (WATCH is per connection).
pub(crate) async fn settle(
    conn: &mut MultiplexedConnection,
    opts: &Options,
    room: &str,
    select: &DeadSelect,
    action: Action,
) -> Result<usize> {
    keys::check_room(room)?;
    let key = keys::dead(room);
    let (mut start, mut moved) = (0usize, 0usize);
    loop {
        let page: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(start)
            .arg(start + PAGE - 1)
            .query_async(conn)
            .await
            .map_err(|e| map_err(e, &opts.address))?;
        if page.is_empty() {
            return Ok(moved);
        }
        for entry in &page {
            let dead = DeadLetter::decode(entry, room);
            if !select.matches(&dead) {
                start += 1; // stays: the next page starts after it
                continue;
            }
            if move_one(conn, opts, &key, entry, &dead, action).await? {
                moved += 1;
            }
        }
    }
}

/// Removes one entry from the dead-letter list (replaying its message first, in the same
/// transaction) if it is still there. Returns whether it was.
async fn move_one(
    conn: &mut MultiplexedConnection,
    opts: &Options,
    key: &str,
    entry: &[u8],
    dead: &DeadLetter,
    action: Action,
) -> Result<bool> {
    let map = |e| map_err(e, &opts.address);
    loop {
        let (position,): (Option<i64>,) = redis::pipe()
            .cmd("WATCH")
            .arg(key)
            .ignore()
            .cmd("LPOS")
            .arg(key)
            .arg(entry)
            .query_async(conn)
            .await
            .map_err(map)?;
        if position.is_none() {
            redis::cmd("UNWATCH")
                .query_async::<()>(conn)
                .await
                .map_err(map)?;
            return Ok(false); // another operator took it
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        if action == Action::Replay {
            let mode = match dead.mode {
                Some(Mode::Stream) => Mode::Stream,
                _ => Mode::Queue,
            };
            add_sends(&mut pipe, mode, &dead.room, opts, &[dead.replay_payload()]);
        }
        pipe.cmd("LREM").arg(key).arg(1).arg(entry);
        let done: Option<(i64,)> = pipe.query_async(conn).await.map_err(map)?;
        if done.is_some() {
            return Ok(true);
        }
        // The list changed between WATCH and EXEC (a consumer dead-lettered another
        // message): look again.
    }
}
