//! Feeding the archive from the broker.
//!
//! Stream mode: each room is read in the consumer group [`ARCHIVE_GROUP`] (a new group starts
//! from the oldest message the broker keeps, so a room's history is archived too); a batch
//! is stored, then acknowledged. Several archivers (standalone `charla archive` processes
//! and gateways with `--archive`) in the same group share a room's messages. A batch that
//! cannot be stored is held and retried — never acknowledged unstored — so an outage of
//! PostgreSQL costs a delay and nothing else: the broker keeps what follows, and a crashed
//! archiver's unacknowledged batch goes to another member (stored again harmlessly: the id
//! is the key).
//!
//! Broadcast mode keeps nothing on the broker (and RabbitMQ has no stream groups over AMQP
//! 0.9.1): there the archiver stores what a live feed hears, holding at most [`MAX_HELD`] messages in memory while the database is away and
//! saying how many it had to drop beyond that.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use charla_chat::{Link, RoomFeed};
use charla_core::{Message, Mode, StartFrom, Subscription};

use crate::store::Archive;
use crate::ArchiveError;

/// The consumer group every archiver joins.
pub const ARCHIVE_GROUP: &str = "charla-archive";

/// Broadcast mode: most messages held in memory while the database is away.
pub const MAX_HELD: usize = 100_000;

/// Messages read from the broker per batch.
const BATCH: usize = 500;

/// Archives rooms, one task per room, until dropped.
pub struct Archiver {
    link: Arc<Link>,
    archive: Archive,
    mode: Mode,
    /// Stream mode in a consumer group; false: follow the live feed (broadcast mode, or a
    /// backend without stream groups).
    grouped: bool,
    group: String,
    rooms: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

impl Drop for Archiver {
    fn drop(&mut self) {
        for task in self
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            task.abort();
        }
    }
}

impl Archiver {
    /// `stream_groups`: whether the backend has stream consumer groups
    /// (`Capabilities::stream_groups`); without them a stream room is archived from the live
    /// feed like a broadcast room (RabbitMQ over AMQP 0.9.1).
    pub fn new(
        link: Arc<Link>,
        archive: Archive,
        mode: Mode,
        group: &str,
        stream_groups: bool,
    ) -> Arc<Archiver> {
        let grouped = mode == Mode::Stream && stream_groups;
        if mode == Mode::Stream && !grouped {
            tracing::warn!(
                "this broker has no stream consumer groups: the archive follows the live \
                 feed, so what is sent while the archiver is down or PostgreSQL is away for \
                 longer than it can hold in memory is not archived"
            );
        }
        Arc::new(Archiver {
            link,
            archive,
            mode,
            grouped,
            group: group.to_owned(),
            rooms: Mutex::new(HashMap::new()),
        })
    }

    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// Start archiving `room` (nothing when it is archived already).
    pub fn room(&self, room: &str) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if rooms.contains_key(room) {
            return;
        }
        let task = match self.grouped {
            false => tokio::spawn(follow_live(
                self.link.clone(),
                self.archive.clone(),
                room.to_owned(),
                self.mode,
            )),
            true => tokio::spawn(follow_group(
                self.link.clone(),
                self.archive.clone(),
                room.to_owned(),
                self.group.clone(),
            )),
        };
        tracing::info!(%room, "archiving");
        rooms.insert(room.to_owned(), task.abort_handle());
    }

    /// The rooms being archived.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

/// Store `messages`, retrying until the database takes them (a bad row is not retried
/// forever: it is reported and skipped, since retrying cannot fix it).
async fn store_until_done(archive: &Archive, room: &str, messages: &[Message]) {
    let mut delay = Duration::from_millis(200);
    let mut warned = false;
    loop {
        match archive.store(messages).await {
            Ok(new) => {
                if warned {
                    tracing::warn!(%room, "the archive is back; catching up");
                }
                tracing::debug!(%room, stored = new, of = messages.len(), "archived");
                return;
            }
            Err(ArchiveError::Unreachable(e)) => {
                if !warned {
                    tracing::warn!(%room, "the archive is unreachable ({e}); live chat goes on, \
                        the messages wait on the broker until it is back");
                    warned = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(%room, "the archive refused {} message(s): {e}", messages.len());
                return;
            }
        }
    }
}

async fn follow_group(link: Arc<Link>, archive: Archive, room: String, group: String) {
    let subscription = Subscription::new(Mode::Stream, room.as_str())
        .group(group.as_str())
        .start(StartFrom::Beginning)
        .prefetch(BATCH);
    let what = format!("archive room '{room}'");
    loop {
        let (generation, mut sub) = link.subscribe(&subscription, &what, || {}).await;
        loop {
            let received = sub.recv_batch(BATCH).await;
            let Some(batch) = link.received(generation, received, &what).await else {
                break;
            };
            let missed = sub.take_missed();
            if missed > 0 {
                tracing::warn!(%room, missed, "the broker's retention removed messages before the archive read them");
            }
            let tags: Vec<_> = batch.iter().map(|d| d.tag).collect();
            let messages: Vec<Message> = batch.into_iter().map(|d| d.message).collect();
            store_until_done(&archive, &room, &messages).await;
            if let Err(e) = sub.ack_many(&tags).await {
                // Stored already: a redelivery is stored again harmlessly.
                tracing::debug!(%room, "acknowledging archived messages: {e}");
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), sub.close()).await;
    }
}

async fn follow_live(link: Arc<Link>, archive: Archive, room: String, mode: Mode) {
    // A stream read without a group starts from the oldest message kept: nothing sent before
    // this feed's subscription was in place is missed (stored again harmlessly if it was).
    let feed = RoomFeed::start_from(link, mode, &room, StartFrom::Beginning);
    let mut live = feed.subscribe();
    let mut held: VecDeque<Message> = VecDeque::new();
    let mut dropped: u64 = 0;
    // While the database is away, try again at most once a second (not on every message).
    let mut next_try = tokio::time::Instant::now();
    loop {
        // Take what arrived, then store it all (or keep holding it).
        match live.recv().await {
            Ok(m) => held.push_back((*m).clone()),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => dropped += n,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
        while let Ok(m) = live.try_recv() {
            held.push_back((*m).clone());
        }
        while held.len() > MAX_HELD {
            held.pop_front();
            dropped += 1;
        }
        if dropped > 0 {
            tracing::warn!(%room, dropped, "broadcast mode: messages heard while the archive was away and over the limit held were not archived");
            dropped = 0;
        }
        if tokio::time::Instant::now() < next_try {
            continue;
        }
        let batch: Vec<Message> = held.iter().cloned().collect();
        match archive.store(&batch).await {
            Ok(_) => held.clear(),
            Err(ArchiveError::Unreachable(e)) => {
                tracing::debug!(%room, "archive unreachable ({e}); holding {}", held.len());
                next_try = tokio::time::Instant::now() + Duration::from_secs(1);
            }
            Err(e) => {
                tracing::error!(%room, "the archive refused {} message(s): {e}", held.len());
                held.clear();
            }
        }
    }
}
