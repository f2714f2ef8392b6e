//! Who is online: this process's members beat through the broker, everyone's beats are
//! heard back into a [`Roster`] (the rules are in `charla_core::presence`).
//!
//! One [`Presence`] per process serves all its members: a web gateway with a thousand pages
//! sends their beats in one batch every interval and reads the presence room once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use charla_core::presence::{Beat, Change, Event, Roster, BEAT_INTERVAL, PRESENCE_ROOM};
use charla_core::{Message, Mode, Publisher, Subscription};
use tokio::sync::{broadcast, mpsc};

use crate::link::Link;

struct Shared {
    roster: Roster,
    /// This process's sessions: session → (name, room, name proved).
    local: HashMap<String, (String, String, bool)>,
}

/// Presence for one process.
pub struct Presence {
    shared: Arc<Mutex<Shared>>,
    changes: broadcast::Sender<Change>,
    /// Beats to send at once (joins and leaves), beside the periodic ones.
    urgent: mpsc::UnboundedSender<Beat>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Presence {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One member's stay in one room. Dropping it says `leave`.
pub struct Session {
    id: String,
    name: String,
    room: String,
    presence: Arc<Mutex<Shared>>,
    urgent: mpsc::UnboundedSender<Beat>,
}

impl Session {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn room(&self) -> &str {
        &self.room
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        lock(&self.presence).local.remove(&self.id);
        let _ = self.urgent.send(Beat {
            name: self.name.clone(),
            room: self.room.clone(),
            session: self.id.clone(),
            event: Event::Leave,
            verified: false,
        });
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves a roster that is still consistent enough to show.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Presence {
    pub fn start(link: Arc<Link>) -> Presence {
        let shared = Arc::new(Mutex::new(Shared {
            roster: Roster::new(),
            local: HashMap::new(),
        }));
        let (changes, _) = broadcast::channel(1024);
        let (urgent, urgent_rx) = mpsc::unbounded_channel();
        let listen = tokio::spawn(listen(link.clone(), shared.clone(), changes.clone()));
        let beat = tokio::spawn(beat(link, shared.clone(), urgent_rx));
        Presence {
            shared,
            changes,
            urgent,
            tasks: vec![listen.abort_handle(), beat.abort_handle()],
        }
    }

    /// `name` enters `room`: said at once, then kept alive until the session is dropped.
    pub fn enter(&self, name: &str, room: &str) -> Session {
        self.enter_as(name, room, false)
    }

    /// [`Presence::enter`] for a name that was proved (`verified`: its beats say so, and
    /// [`Presence::verified`] lists it).
    pub fn enter_as(&self, name: &str, room: &str, verified: bool) -> Session {
        let id = Message::new("", "", "").id;
        let beat = Beat {
            name: name.to_owned(),
            room: room.to_owned(),
            session: id.clone(),
            event: Event::Join,
            verified,
        };
        {
            let mut shared = lock(&self.shared);
            shared
                .local
                .insert(id.clone(), (name.to_owned(), room.to_owned(), verified));
            // Shown at once here; the beat coming back changes nothing.
            for change in shared.roster.observe(&beat, Instant::now()) {
                let _ = self.changes.send(change);
            }
        }
        let _ = self.urgent.send(beat);
        Session {
            id,
            name: name.to_owned(),
            room: room.to_owned(),
            presence: self.shared.clone(),
            urgent: self.urgent.clone(),
        }
    }

    /// Names online in `room`, sorted.
    pub fn online(&self, room: &str) -> Vec<String> {
        lock(&self.shared).roster.online(room)
    }

    /// Whether `name` is online in `room` (a lookup: no copy of the room's names).
    pub fn is_online(&self, room: &str, name: &str) -> bool {
        lock(&self.shared).roster.is_online(room, name)
    }

    /// Names online in `room` that were proved (every session of theirs), sorted.
    pub fn verified(&self, room: &str) -> Vec<String> {
        lock(&self.shared).roster.verified(room)
    }

    /// Whether `name` is online in `room` with every session proved.
    pub fn is_verified(&self, room: &str, name: &str) -> bool {
        lock(&self.shared).roster.is_verified(room, name)
    }

    /// Rooms with someone in them, and how many names.
    pub fn rooms(&self) -> Vec<(String, usize)> {
        lock(&self.shared).roster.rooms()
    }

    /// Joins and leaves as they happen.
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

/// Hear everyone's beats; expire the silent.
async fn listen(link: Arc<Link>, shared: Arc<Mutex<Shared>>, changes: broadcast::Sender<Change>) {
    let mut expiry = tokio::time::interval(Duration::from_secs(1));
    let subscription = Subscription::new(Mode::Broadcast, PRESENCE_ROOM);
    loop {
        let (generation, mut sub) = link.subscribe(&subscription, "hear presence", || {}).await;
        loop {
            tokio::select! {
                batch = sub.recv_batch(256) => {
                    let Some(batch) = link.received(generation, batch, "hearing presence").await else {
                        break;
                    };
                    let now = Instant::now();
                    let mut guard = lock(&shared);
                    for d in &batch {
                        if let Some(beat) = Beat::from_message(&d.message) {
                            for change in guard.roster.observe(&beat, now) {
                                let _ = changes.send(change);
                            }
                        }
                    }
                }
                _ = expiry.tick() => {
                    let mut guard = lock(&shared);
                    let now = Instant::now();
                    // Our own sessions never expire here, whatever the broker carried.
                    let local: Vec<Beat> = guard.local.iter().map(|(id, (name, room, verified))| Beat {
                        name: name.clone(), room: room.clone(), session: id.clone(), event: Event::Here,
                        verified: *verified,
                    }).collect();
                    for beat in &local {
                        guard.roster.observe(beat, now);
                    }
                    for change in guard.roster.expire(now) {
                        let _ = changes.send(change);
                    }
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), sub.close()).await;
    }
}

/// Say that our members are here every [`BEAT_INTERVAL`], and joins and leaves at once.
async fn beat(
    link: Arc<Link>,
    shared: Arc<Mutex<Shared>>,
    mut urgent: mpsc::UnboundedReceiver<Beat>,
) {
    let mut publisher: Option<(u64, Box<dyn Publisher>)> = None;
    let mut tick = tokio::time::interval(BEAT_INTERVAL);
    let mut pending: Vec<Beat> = Vec::new();
    loop {
        tokio::select! {
            beat = urgent.recv() => match beat {
                Some(beat) => pending.push(beat),
                None => return,
            },
            _ = tick.tick() => {
                let guard = lock(&shared);
                pending.extend(guard.local.iter().map(|(id, (name, room, verified))| Beat {
                    name: name.clone(),
                    room: room.clone(),
                    session: id.clone(),
                    event: Event::Here,
                    verified: *verified,
                }));
            }
        }
        while let Ok(beat) = urgent.try_recv() {
            pending.push(beat);
        }
        if pending.is_empty() {
            continue;
        }
        let (generation, broker) = link.broker().await;
        if publisher.as_ref().is_none_or(|(g, _)| *g != generation) {
            match link.check(
                generation,
                broker.publisher(Mode::Broadcast, PRESENCE_ROOM).await,
            ) {
                Ok(Some(p)) => publisher = Some((generation, p)),
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!("cannot send presence: {e}");
                    pending.clear();
                    continue;
                }
            }
        }
        let Some((_, p)) = publisher.as_mut() else {
            continue;
        };
        let messages: Vec<Message> = pending.iter().map(Beat::to_message).collect();
        match link.check(generation, p.publish_batch(&messages).await) {
            Ok(Some(())) => pending.clear(),
            // Beats are refreshed every interval: what failed now is said again next time,
            // except leaves, kept until they go out.
            Ok(None) => pending.retain(|b| b.event == Event::Leave),
            Err(e) => {
                tracing::warn!("sending presence: {e}");
                pending.clear();
            }
        }
    }
}
