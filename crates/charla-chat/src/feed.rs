//! One room's live messages, read once per process and shared by every local reader.
//!
//! A feed subscribes group-less (nothing is taken from anyone: every reader of a room sees
//! everything) from the latest message, and keeps the offset of the last message it passed
//! on: when the connection breaks it subscribes again *after* that offset, so a broker restart
//! costs a pause, not a gap (stream mode; broadcast mode keeps nothing, and a gap is its
//! nature). "The latest message" is made a position before the first subscription (the
//! offset of the room's last message, read as a history page of one), so a feed that has
//! passed nothing on yet also resumes from where it began, not from whatever is latest when
//! the broker is back. Messages seen before (a redelivery after resuming) are dropped by id.
//!
//! [`RoomFeed::join`] is how a reader enters: it listens to the feed first, then reads the
//! room's recent history, and drops the live messages up to the history's last one (which
//! the feed numbers as it passes them on), so the reader sees history then live without a
//! hole, a repeat, or an older message after a newer one between them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use charla_core::{Message, Mode, StartFrom, Subscription};
use tokio::sync::{broadcast, watch};

use crate::link::Link;
use crate::ChatError;

/// How many recent messages a reader gets on joining a room.
pub const DEFAULT_HISTORY: usize = 50;

/// How many messages a feed holds for a reader that has not taken them yet. A reader that
/// falls further behind than this is told it lagged (the web gateway drops it with a reason)
/// instead of holding memory for it without bound.
const FEED_BUFFER: usize = 1024;

/// Ids remembered to drop duplicates after a resume, and to place a join's history among
/// the messages passed on (see [`Passed`]).
const DEDUPE_WINDOW: usize = 10_000;

/// Where a feed began reading, as far as a join needs to know it: whether the last message
/// of a history is one the feed will pass on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// Not known (broadcast mode, a start after a caller's offset, a backend that cannot say
    /// where its latest message is): joins drop live messages the history had, by id.
    Unknown,
    /// At the room's beginning: every message of the room is passed on.
    Beginning,
    /// After the message with this id (the room's last one when the feed started).
    After(String),
}

/// What the feed passed on to its readers: the recent ids, numbered in the order sent, and
/// where it began. Shared with the joins, which use it to find where their history ends in
/// the live channel (see [`Joined::is_new`]). Every id is numbered *before* it is sent, so a
/// join that finds an id missing knows it has not been sent yet.
struct Passed {
    start: Start,
    number: HashMap<String, u64>,
    order: VecDeque<String>,
    next: u64,
    /// Messages the broker's retention removed before the feed read them.
    missed: u64,
}

impl Passed {
    fn new() -> Passed {
        Passed {
            start: Start::Unknown,
            number: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            missed: 0,
        }
    }

    /// Number `id`, true the first time it is seen within the window.
    fn first_time(&mut self, id: &str) -> bool {
        if self.number.contains_key(id) {
            return false;
        }
        self.number.insert(id.to_owned(), self.next);
        self.order.push_back(id.to_owned());
        self.next += 1;
        if self.order.len() > DEDUPE_WINDOW {
            if let Some(old) = self.order.pop_front() {
                self.number.remove(&old);
            }
        }
        true
    }
}

fn lock(passed: &Mutex<Passed>) -> MutexGuard<'_, Passed> {
    // Nothing panics while holding it; if something did, the numbers are still usable.
    passed.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a join's history ends among the live messages.
#[derive(Debug)]
enum Cut {
    /// Past it: live messages are new unless the history had them.
    Open,
    /// The history's last message (this id) has not been passed on yet: every live message
    /// up to it is older than it or it, so not shown.
    Until(String),
    /// The history's last message was passed on as this number: live messages numbered up to
    /// it are not shown.
    UpTo(u64),
}

/// A room's shared live feed. Dropping the last handle stops its task.
pub struct RoomFeed {
    room: String,
    mode: Mode,
    link: Arc<Link>,
    tx: broadcast::Sender<Arc<Message>>,
    /// Becomes true once the first subscription is in place (live messages from then on are
    /// caught), so a join can read history after it and miss nothing.
    ready: watch::Receiver<bool>,
    passed: Arc<Mutex<Passed>>,
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
    cut: Cut,
    passed: Arc<Mutex<Passed>>,
    /// The feed's count of messages lost to retention when the history was read.
    missed_at_join: u64,
}

impl<T> Joined<T> {
    /// History from elsewhere (an archive), overlap with live messages dropped the same way.
    pub fn set_history(&mut self, history: Vec<Message>) {
        self.seen = history.iter().map(|m| m.id.clone()).collect();
        self.history = history;
        // Not the feed's room history: it cannot be placed among the feed's numbers.
        self.cut = Cut::Open;
    }

    /// False for a live message the history already showed, or one older than the
    /// history's last message (shown after the history it would be out of order; the feed
    /// can carry such messages when more were sent while the join read the history than the
    /// history holds, or when the feed was behind the broker by more than that).
    pub fn is_new(&mut self, id: &str) -> bool {
        match &self.cut {
            Cut::Open => {}
            Cut::Until(last) => {
                if last == id {
                    self.cut = Cut::Open;
                    return false;
                }
                let passed = lock(&self.passed);
                if passed.missed == self.missed_at_join {
                    return false;
                }
                // The broker's retention removed messages the feed had not read: the
                // history's last one may be among them and never come. Show from here.
                drop(passed);
                self.cut = Cut::Open;
            }
            Cut::UpTo(last) => {
                let number = lock(&self.passed).number.get(id).copied();
                match number {
                    Some(n) if n < *last => return false,
                    Some(n) if n == *last => {
                        self.cut = Cut::Open;
                        return false;
                    }
                    // Passed on after the history's last message: the first new one.
                    _ => self.cut = Cut::Open,
                }
            }
        }
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
        let passed = Arc::new(Mutex::new(Passed::new()));
        let task = tokio::spawn(run(
            link.clone(),
            mode,
            room.to_owned(),
            start,
            tx.clone(),
            ready_tx,
            passed.clone(),
        ));
        RoomFeed {
            room: room.to_owned(),
            mode,
            link,
            tx,
            ready,
            passed,
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
        let (history, end) = if self.mode == Mode::Stream && history > 0 {
            self.history_page(history).await?
        } else {
            (Vec::new(), None)
        };
        let seen = history.iter().map(|m| m.id.clone()).collect();
        // Where the history ends among the live messages. `live` was subscribed before the
        // history was read, so it may carry messages the history has, and, when more arrived
        // meanwhile than the history holds (or the feed was that far behind the broker),
        // messages older than the history's first: both are dropped up to the history's last.
        // (Dropping by id only showed those older ones after the history, out of order:
        // found by charla-chat's tests, join.rs: race_a_burst_longer_than_the_history_keeps_order
        // and joins_under_continuous_traffic_see_the_end_of_the_room.)
        let passed = lock(&self.passed);
        let cut = match end {
            None => Cut::Open,
            Some(last) => match passed.number.get(&last) {
                Some(n) => Cut::UpTo(*n),
                None => match &passed.start {
                    // The history ends before the feed began: everything live is newer.
                    Start::After(first) if *first == last => Cut::Open,
                    Start::Unknown => Cut::Open,
                    // Not passed on yet (the history is read after the feed began, so its
                    // last message is one the feed will pass on).
                    Start::After(_) | Start::Beginning => Cut::Until(last),
                },
            },
        };
        let missed_at_join = passed.missed;
        drop(passed);
        Ok(Joined {
            history,
            live,
            seen,
            cut,
            passed: self.passed.clone(),
            missed_at_join,
        })
    }

    /// The last `limit` messages of the room, oldest first, each once; empty when the
    /// backend keeps no readable history. Retries through a reconnect.
    pub async fn history(&self, limit: usize) -> Result<Vec<Message>, ChatError> {
        Ok(self.history_page(limit).await?.0)
    }

    /// [`history`](Self::history), and the id of the room's last message as read (the page's
    /// last before a repeat was dropped: where the room ended, which a join places among the
    /// live messages).
    async fn history_page(
        &self,
        limit: usize,
    ) -> Result<(Vec<Message>, Option<String>), ChatError> {
        loop {
            let (generation, broker) = self.link.broker().await;
            if !broker.capabilities().history {
                return Ok((Vec::new(), None));
            }
            match self
                .link
                .check(generation, broker.history(&self.room, limit, None).await)?
            {
                Some(page) => {
                    let end = page.last().map(|d| d.message.id.clone());
                    // A publish retried after its reply was lost (the outbox retries with the
                    // same id) is in the room twice: shown once, where it first was, as the
                    // live feed drops the repeat. Found by charla-chat's tests
                    // (join.rs: a_retried_publish_shows_once).
                    let mut ids = HashSet::with_capacity(page.len());
                    let messages = page
                        .into_iter()
                        .map(|d| d.message)
                        .filter(|m| ids.insert(m.id.clone()))
                        .collect();
                    return Ok((messages, end));
                }
                None => continue,
            }
        }
    }
}

/// Where "the latest message" of a stream room is, as a start the feed can resume from:
/// after the room's last message (its offset, read as a history page of one), or the
/// beginning of an empty room. `None` where the backend cannot say (the feed then starts
/// at the latest message, and a resume before it passed anything on starts there again).
async fn latest_position(link: &Arc<Link>, room: &str) -> Option<(StartFrom, Start)> {
    loop {
        let (generation, broker) = link.broker().await;
        let can = broker.capabilities();
        if !(can.history && can.replay) {
            return None;
        }
        match link.check(generation, broker.history(room, 1, None).await) {
            Ok(Some(page)) => {
                return match page.into_iter().last() {
                    None => Some((StartFrom::Beginning, Start::Beginning)),
                    Some(d) => {
                        let offset = d.offset?;
                        Some((StartFrom::After(offset), Start::After(d.message.id)))
                    }
                };
            }
            Ok(None) => continue, // reconnecting; asked again on the new connection
            Err(e) => {
                tracing::debug!("where room '{room}' ends: {e}");
                return None;
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
    passed: Arc<Mutex<Passed>>,
) {
    let mut last_offset: Option<String> = None;
    // A stream feed "from the latest message" starts from an explicit position: resuming
    // after a reconnect with `Latest` before anything was passed on (a quiet room) would
    // skip what was sent while the broker was away, and what was sent between the broker
    // coming back and the new subscription, to every reader already joined. Found by
    // charla-chat's tests (reconnect.rs: outage_right_after_joining_loses_nothing).
    let first_start = match (mode, first_start) {
        (Mode::Stream, StartFrom::Latest) => match latest_position(&link, &room).await {
            Some((start, known)) => {
                lock(&passed).start = known;
                start
            }
            None => StartFrom::Latest,
        },
        (Mode::Stream, StartFrom::Beginning) => {
            lock(&passed).start = Start::Beginning;
            StartFrom::Beginning
        }
        (_, start) => start,
    };
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
            let missed = sub.take_missed();
            if missed > 0 {
                tracing::warn!(%room, missed, "the broker's retention removed messages before this chat read them");
            }
            let tags: Vec<_> = batch.iter().map(|d| d.tag).collect();
            let mut fresh = Vec::with_capacity(batch.len());
            {
                let mut passed = lock(&passed);
                passed.missed += missed;
                for d in batch {
                    if d.offset.is_some() {
                        last_offset.clone_from(&d.offset);
                    }
                    // Numbered before it is sent (see `Passed`).
                    if passed.first_time(&d.message.id) {
                        fresh.push(d.message);
                    }
                }
            }
            for message in fresh {
                // No reader at the moment is fine: the feed keeps going for the next.
                let _ = tx.send(Arc::new(message));
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
