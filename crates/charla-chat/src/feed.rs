//! One room's live messages, read once per process and shared by every local reader.
//!
//! A feed subscribes group-less (nothing is taken from anyone: every reader of a room sees
//! everything) from the latest message, and keeps the offset of the last message it passed
//! on: when the connection breaks it subscribes again *after* that offset, so a broker restart
//! costs a pause, not a gap (stream mode; broadcast mode keeps nothing, and a gap is its
//! nature). Messages seen before (a redelivery after resuming) are dropped by id.
//!
//! [`RoomFeed::join`] is how a reader enters: it listens to the feed first, then reads the
//! room's recent history, and drops live messages that the history already had, so the
//! reader sees history then live without a hole or a repeat between them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use charla_core::{IdWindow, Message, Mode, StartFrom, Subscription};
use tokio::sync::{broadcast, watch};

use crate::link::Link;
use crate::ChatError;

/// How many recent messages a reader gets on joining a room.
pub const DEFAULT_HISTORY: usize = 50;

/// How many messages a feed holds for a reader that has not taken them yet. A reader that
/// falls further behind than this is told it lagged (the web gateway drops it with a reason)
/// instead of holding memory for it without bound.
const FEED_BUFFER: usize = 1024;

/// Ids remembered to drop duplicates after a resume.
const DEDUPE_WINDOW: usize = 10_000;

/// A room's shared live feed. Dropping the last handle stops its task.
pub struct RoomFeed {
    room: String,
    mode: Mode,
    link: Arc<Link>,
    tx: broadcast::Sender<Arc<Message>>,
    /// Becomes true once the first subscription is in place (live messages from then on are
    /// caught), so a join can read history after it and miss nothing.
    ready: watch::Receiver<bool>,
    task: tokio::task::AbortHandle,
}

impl Drop for RoomFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a reader gets on joining: recent history, oldest first, then live items (the
/// feed's messages, or what a front end made of them: the web gateway's encoded frames).
pub struct Joined<T = Arc<Message>> {
    pub history: Vec<Message>,
    pub live: broadcast::Receiver<T>,
    /// Ids of `history`: the first live messages may repeat them and are to be skipped
    /// (see [`Joined::is_new`]).
    seen: HashSet<String>,
}

impl<T> Joined<T> {
    /// History from elsewhere (an archive), overlap with live messages dropped the same way.
    pub fn set_history(&mut self, history: Vec<Message>) {
        self.seen = history.iter().map(|m| m.id.clone()).collect();
        self.history = history;
    }

    /// False for a live message the history already showed.
    pub fn is_new(&mut self, id: &str) -> bool {
        // Each history id can repeat once; it is forgotten when it does.
        self.seen.is_empty() || !self.seen.remove(id)
    }
}

impl RoomFeed {
    /// Start reading `room` in `mode` (stream or broadcast), from the latest message.
    pub fn start(link: Arc<Link>, mode: Mode, room: &str) -> RoomFeed {
        Self::start_from(link, mode, room, StartFrom::Latest)
    }

    /// Start reading `room` from `start` (stream mode; broadcast mode is always live).
    pub fn start_from(link: Arc<Link>, mode: Mode, room: &str, start: StartFrom) -> RoomFeed {
        let (tx, _) = broadcast::channel(FEED_BUFFER);
        let (ready_tx, ready) = watch::channel(false);
        let task = tokio::spawn(run(
            link.clone(),
            mode,
            room.to_owned(),
            start,
            tx.clone(),
            ready_tx,
        ));
        RoomFeed {
            room: room.to_owned(),
            mode,
            link,
            tx,
            ready,
            task: task.abort_handle(),
        }
    }

    pub fn room(&self) -> &str {
        &self.room
    }

    /// Live messages only, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.tx.subscribe()
    }

    /// How many local readers listen.
    pub fn readers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Enter the room: the last `history` messages the broker keeps (none in broadcast mode
    /// or on a backend that keeps no readable history), then live messages.
    pub async fn join(&self, history: usize) -> Result<Joined, ChatError> {
        self.join_with(self.tx.subscribe(), history).await
    }

    /// [`join`](Self::join) with live items from another channel fed from this feed; `live`
    /// must have been subscribed before this call (it is, when passed as an argument).
    pub async fn join_with<T>(
        &self,
        live: broadcast::Receiver<T>,
        history: usize,
    ) -> Result<Joined<T>, ChatError> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|r| *r)
            .await
            .map_err(|_| ChatError::Closed)?;
        let history = if self.mode == Mode::Stream && history > 0 {
            self.history(history).await?
        } else {
            Vec::new()
        };
        let seen = history.iter().map(|m| m.id.clone()).collect();
        Ok(Joined {
            history,
            live,
            seen,
        })
    }

    /// The last `limit` messages of the room, oldest first; empty when the backend keeps no
    /// readable history. Retries through a reconnect.
    pub async fn history(&self, limit: usize) -> Result<Vec<Message>, ChatError> {
        loop {
            let (generation, broker) = self.link.broker().await;
            if !broker.capabilities().history {
                return Ok(Vec::new());
            }
            match self
                .link
                .check(generation, broker.history(&self.room, limit, None).await)?
            {
                Some(page) => return Ok(page.into_iter().map(|d| d.message).collect()),
                None => continue,
            }
        }
    }
}

async fn run(
    link: Arc<Link>,
    mode: Mode,
    room: String,
    first_start: StartFrom,
    tx: broadcast::Sender<Arc<Message>>,
    ready: watch::Sender<bool>,
) {
    let mut seen = IdWindow::new(DEDUPE_WINDOW);
    let mut last_offset: Option<String> = None;
    loop {
        let start = match (&last_offset, mode) {
            (Some(offset), Mode::Stream) => StartFrom::After(offset.clone()),
            (None, Mode::Stream) => first_start.clone(),
            _ => StartFrom::Latest,
        };
        let subscription = Subscription::new(mode, room.as_str()).start(start);
        // Refused for good (a bad name, a mode the backend lacks): joiners are not kept
        // waiting; they see no messages meanwhile.
        let what = format!("read room '{room}'");
        let (generation, mut sub) = link
            .subscribe(&subscription, &what, || {
                ready.send_replace(true);
            })
            .await;
        ready.send_replace(true);
        loop {
            let received = sub.recv_batch(256).await;
            let Some(batch) = link.received(generation, received, &what).await else {
                break;
            };
            let tags: Vec<_> = batch.iter().map(|d| d.tag).collect();
            for d in batch {
                if d.offset.is_some() {
                    last_offset.clone_from(&d.offset);
                }
                if seen.first_time(&d.message.id) {
                    // No reader at the moment is fine: the feed keeps going for the next.
                    let _ = tx.send(Arc::new(d.message));
                }
            }
            // Group-less reads hold nothing for anyone; ack keeps the backend's books tidy.
            if let Err(e) = sub.ack_many(&tags).await {
                tracing::debug!("ack on room '{room}': {e}");
            }
        }
        // Best effort: the old connection is gone or going.
        let _ = tokio::time::timeout(Duration::from_secs(1), sub.close()).await;
    }
}
