//! What the pages of one gateway share.
//!
//! A room read by any page here has one [`RoomFeed`] (one subscription to the broker) and a
//! task that turns each message into its WebSocket frame once, whatever the number of pages:
//! a thousand pages in a room cost one JSON encoding per message, not a thousand. Everything
//! else a page is told goes down the same channel, encoded once too: presence changes in the
//! room, the gateway's broker status, the goodbye at shutdown. A page's writer so waits on one
//! channel (and its own reader's replies), and a presence change in one room wakes only that
//! room's pages. A room nobody here reads any more is let go after a grace period.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use charla_chat::{Change, Link, Outbox, Presence, RoomFeed, Status};
use charla_core::{Capabilities, Message};
use charla_i18n::Said;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::WebConfig;

/// What every page of a room receives, encoded once.
#[derive(Debug)]
pub struct Frame {
    pub kind: FrameKind,
    /// The whole WebSocket frame, as written to each page's socket ([`crate::wire`]).
    pub wire: Bytes,
}

impl Frame {
    /// A frame carrying the JSON `text`.
    pub fn new(kind: FrameKind, text: &str) -> Frame {
        Frame {
            kind,
            wire: crate::wire::text_frame(text),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A chat message: pages skip ids their joining history showed.
    Message { id: String },
    /// Someone came or went: a page skips news of its own name.
    Presence { name: String },
    /// For every page (the broker status).
    Notice,
    /// The gateway is closing: each page gets a close frame with this reason, in its own
    /// language (and no `wire`).
    Close { reason: Said },
}

/// How many frames a page may fall behind before it is disconnected, by default.
pub const PAGE_BACKLOG: usize = 1024;

/// One room as this gateway serves it.
pub struct Room {
    pub feed: RoomFeed,
    frames: broadcast::Sender<Arc<Frame>>,
    encoder: tokio::task::AbortHandle,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.encoder.abort();
    }
}

impl Room {
    /// A receiver of this room's frames from now on.
    pub fn frames(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.frames.subscribe()
    }
}

/// The gateway's shared state.
pub struct Hub {
    pub link: Arc<Link>,
    pub config: WebConfig,
    pub presence: Presence,
    pub outbox: Outbox,
    pub archiver: Option<Arc<charla_archive::Archiver>>,
    /// What the broker can do, read once at start: a page or a request never waits for the
    /// broker to learn it (it may be away).
    pub capabilities: Capabilities,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    /// The broker's list of rooms as last read, and when (`/api/rooms` reuses it a while).
    pub room_list: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<String>>)>>,
    /// Posts per client (all its pages and its API posts), and `GET /api/…` per client.
    pub posts: crate::client::RateTable,
    pub reads: crate::client::RateTable,
    /// Which client holds each name in each room (when names are not proved).
    pub names: Arc<crate::auth::Names>,
    /// Uploads waiting for their worker's notice (`--uploads`).
    pub waiting_uploads: crate::files::WaitingUploads,
    /// Uploads being received now: at most [`crate::UPLOADS_AT_ONCE`] (see `body::bounded`).
    pub upload_slots: Arc<tokio::sync::Semaphore>,
    closing: std::sync::atomic::AtomicBool,
    /// Pages connected now (the shutdown waits for their goodbyes).
    pages: watch::Sender<usize>,
}

/// Counts a page as connected while it lives.
pub struct PageGuard(Arc<Hub>);

impl Drop for PageGuard {
    fn drop(&mut self) {
        self.0.pages.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Hub {
    /// `capabilities`: the broker's (how rooms are archived, whether it keeps history).
    pub fn new(link: Arc<Link>, config: WebConfig, capabilities: Capabilities) -> Arc<Hub> {
        let archiver = config.archive.clone().map(|archive| {
            charla_archive::Archiver::new(
                link.clone(),
                archive,
                config.mode,
                charla_archive::ARCHIVE_GROUP,
                capabilities.stream_groups,
            )
        });
        let limits = &config.limits;
        let posts = crate::client::RateTable::new(
            limits.posts_per_sec,
            limits.burst,
            crate::client::MAX_CLIENTS,
        );
        let reads = crate::client::RateTable::new(
            limits.reads_per_sec,
            limits.read_burst,
            crate::client::MAX_CLIENTS,
        );
        let hub = Arc::new(Hub {
            archiver,
            presence: Presence::start(link.clone()),
            outbox: Outbox::start(link.clone(), config.mode),
            link,
            config,
            capabilities,
            rooms: Mutex::new(HashMap::new()),
            room_list: tokio::sync::Mutex::new(None),
            posts,
            reads,
            names: Arc::default(),
            waiting_uploads: Default::default(),
            upload_slots: Arc::new(tokio::sync::Semaphore::new(crate::UPLOADS_AT_ONCE)),
            closing: std::sync::atomic::AtomicBool::new(false),
            pages: watch::channel(0).0,
        });
        tokio::spawn(sweep(Arc::downgrade(&hub)));
        tokio::spawn(notices(Arc::downgrade(&hub)));
        hub
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<String, Arc<Room>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room, started if nobody here reads it yet (and archived from then on); refused
    /// when the gateway already reads its most rooms (`max_rooms`): each room read is a
    /// subscription on the broker and a task here, so their number is bounded whatever the
    /// pages ask for.
    pub fn room(&self, name: &str) -> Result<Arc<Room>, Said> {
        let mut rooms = self.rooms();
        if let Some(room) = rooms.get(name) {
            return Ok(room.clone());
        }
        if rooms.len() >= self.config.max_rooms {
            return Err(Said::new("gw-max-rooms").arg("max", self.config.max_rooms));
        }
        self.archive_room(name);
        let feed = RoomFeed::start(self.link.clone(), self.config.mode, name);
        let (frames, _) = broadcast::channel(self.config.page_backlog.max(1));
        let encoder = tokio::spawn(encode(feed.subscribe(), frames.clone(), self.config.linger))
            .abort_handle();
        let room = Arc::new(Room {
            feed,
            frames,
            encoder,
        });
        rooms.insert(name.to_owned(), room.clone());
        Ok(room)
    }

    /// Whether the broker keeps the rooms' history (stream mode on a backend that reads it
    /// back).
    pub fn broker_keeps_history(&self) -> bool {
        self.capabilities.history && self.config.mode == charla_core::Mode::Stream
    }

    /// Archive `room` (when the gateway keeps an archive).
    pub fn archive_room(&self, room: &str) {
        if let Some(archiver) = &self.archiver {
            archiver.room(room);
        }
    }

    /// The archive, if any.
    pub fn archive(&self) -> Option<&charla_archive::Archive> {
        self.archiver.as_ref().map(|a| a.archive())
    }

    /// Rooms this gateway reads now.
    pub fn open_rooms(&self) -> Vec<String> {
        self.rooms().keys().cloned().collect()
    }

    /// A page connected; it counts until the guard is dropped.
    pub fn page(self: &Arc<Self>) -> PageGuard {
        self.pages.send_modify(|n| *n += 1);
        PageGuard(self.clone())
    }

    /// Wait (at most `limit`) until every page has been told goodbye.
    pub async fn pages_gone(&self, limit: Duration) {
        let mut pages = self.pages.subscribe();
        let _ = tokio::time::timeout(limit, async {
            let _ = pages.wait_for(|n| *n == 0).await.is_ok();
        })
        .await;
    }

    /// Tell every page the gateway is closing.
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.to_every_room(|| Frame {
            kind: FrameKind::Close {
                reason: Said::new("gw-closing"),
            },
            wire: Bytes::new(),
        });
    }

    fn to_every_room(&self, frame: impl Fn() -> Frame) {
        for room in self.rooms().values() {
            let _ = room.frames.send(Arc::new(frame()));
        }
    }

    /// Whether the gateway is closing.
    pub fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The `status` frame of the broker connection.
pub fn status_frame(status: &Status) -> String {
    let value = match status {
        Status::Connected { broker } => {
            json!({"type": "status", "connected": true, "detail": broker})
        }
        Status::Reconnecting { reason } => {
            json!({"type": "status", "connected": false, "detail": reason})
        }
    };
    value.to_string()
}

/// Presence changes to the room they happened in, broker status changes to every room: each
/// encoded once, into the rooms' frame channels.
async fn notices(hub: std::sync::Weak<Hub>) {
    let Some(strong) = hub.upgrade() else { return };
    let mut changes = strong.presence.changes();
    let mut status = strong.link.status();
    drop(strong);
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(hub) = hub.upgrade() else { return };
                let (room, name, event) = match change {
                    Ok(Change::Joined { room, name }) => (room, name, "join"),
                    Ok(Change::Left { room, name }) => (room, name, "leave"),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "presence changes went by too fast to pass on");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let verified = event == "join" && hub.presence.is_verified(&room, &name);
                let text = json!({"type": "presence", "event": event, "name": name,
                    "verified": verified}).to_string();
                let target = hub.rooms().get(&room).cloned();
                if let Some(r) = target {
                    let _ = r.frames.send(Arc::new(Frame::new(FrameKind::Presence { name }, &text)));
                }
            }
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
                let Some(hub) = hub.upgrade() else { return };
                let text = status_frame(&status.borrow_and_update());
                hub.to_every_room(|| Frame::new(FrameKind::Notice, &text));
            }
        }
    }
}

/// The WebSocket frame of a message: `{"type":"message","message":{…}}`.
pub fn message_frame(message: &Message) -> String {
    // Serialized straight from the message (no intermediate JSON tree): once per message.
    #[derive(serde::Serialize)]
    struct MessageFrame<'a> {
        r#type: &'static str,
        message: &'a Message,
    }
    let frame = MessageFrame {
        r#type: "message",
        message,
    };
    serde_json::to_string(&frame).unwrap_or_default()
}

async fn encode(
    mut live: broadcast::Receiver<Arc<Message>>,
    frames: broadcast::Sender<Arc<Frame>>,
    linger: Duration,
) {
    let mut burst: Vec<Arc<Message>> = Vec::with_capacity(MAX_BURST);
    loop {
        let mut closed = false;
        match live.recv().await {
            Ok(message) => burst.push(message),
            // This task only encodes; it cannot fall far behind, but if it ever does the
            // pages have missed messages too, and are told so by their own lag.
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "the frame encoder fell behind its room");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
        // Coalesce: what arrives within `linger` goes out as one burst, so each page wakes
        // once and writes once for the lot (at 1 000 messages/s and 1 000 pages, waking and
        // writing per message is a million of each per second).
        let until = tokio::time::Instant::now() + linger;
        while !burst.is_empty() && burst.len() < MAX_BURST && !linger.is_zero() {
            match tokio::time::timeout_at(until, live.recv()).await {
                Ok(Ok(message)) => burst.push(message),
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                    tracing::warn!(missed = n, "the frame encoder fell behind its room");
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        for message in burst.drain(..) {
            let frame = Frame::new(
                FrameKind::Message {
                    id: message.id.clone(),
                },
                &message_frame(&message),
            );
            let _ = frames.send(Arc::new(frame));
        }
        if closed {
            return;
        }
    }
}

/// Most messages sent to the pages as one burst.
const MAX_BURST: usize = 256;

/// Let go of rooms that no page here has read for a while (one sweep every 30 s: a page that
/// reloads keeps its room's feed, and its place in it).
async fn sweep(hub: std::sync::Weak<Hub>) {
    let mut idle: HashMap<String, u32> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let Some(hub) = hub.upgrade() else { return };
        let mut rooms = hub.rooms();
        rooms.retain(|name, room| {
            // The hub's own Arc is the only one left, and no page reads frames.
            let unused = Arc::strong_count(room) == 1 && room.frames.receiver_count() == 0;
            if !unused {
                idle.remove(name);
                return true;
            }
            let sweeps = idle.entry(name.clone()).or_insert(0);
            *sweeps += 1;
            if *sweeps >= 2 {
                idle.remove(name);
                tracing::info!(room = %name, "no page reads the room any more; stopped reading it");
                false
            } else {
                true
            }
        });
    }
}
