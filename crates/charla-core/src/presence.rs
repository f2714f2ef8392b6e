//! Who is online, kept through the broker itself and so the same on every backend.
//!
//! Every chat client (a terminal chat, or a web gateway on behalf of each of its pages)
//! publishes a *beat* for each room it is in, every [`BEAT_INTERVAL`], in broadcast mode on the
//! one room [`PRESENCE_ROOM`]; and it subscribes to that room to hear everyone's beats. A
//! member whose beats stop for [`EXPIRY`] is gone: a killed client drops out within seconds,
//! without having said goodbye. A clean exit says `leave` at once.
//!
//! A beat is an ordinary chat [`Message`] so that every backend carries it as it carries chat
//! (and the broadcast readers' checks apply to it): `usuario` is the member's name, `room` the
//! chat room, `mensaje` the event (`join`, `here`, `leave`) and `id` the *session* — one
//! client's stay in one room, the same on all its beats — so two tabs of the same name are two
//! sessions, and the name stays online until both have left.
//!
//! [`Roster`] is the bookkeeping (no I/O, no clock of its own: callers pass `now`), so it is
//! tested here and shared by both chats.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::message::Message;

/// The broadcast room every presence beat travels on. A dot keeps it a legal name on every
/// backend (Kafka topic, RabbitMQ exchange, Redis channel) and out of the way of chat rooms
/// people name.
pub const PRESENCE_ROOM: &str = "charla.presence";

/// How often a member says it is still here.
pub const BEAT_INTERVAL: Duration = Duration::from_secs(2);

/// How long without a beat until a member is gone: two missed beats and some slack.
pub const EXPIRY: Duration = Duration::from_millis(5_500);

/// What a beat says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Just arrived (shown as a join notice).
    Join,
    /// Still here (refreshes; also introduces members who were here before we came).
    Here,
    /// Left cleanly.
    Leave,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::Join => "join",
            Event::Here => "here",
            Event::Leave => "leave",
        }
    }
}

/// One presence beat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub name: String,
    pub room: String,
    /// One client's stay in one room.
    pub session: String,
    pub event: Event,
    /// The member's name was proved to its gateway (`charla web --auth jwt|proxy`); travels as
    /// the beat message's `verificado`.
    pub verified: bool,
}

impl Beat {
    /// The beat as the message published on [`PRESENCE_ROOM`].
    pub fn to_message(&self) -> Message {
        let mut m = Message::new(self.name.as_str(), self.event.as_str(), self.room.as_str());
        m.id.clone_from(&self.session);
        m.verificado = self.verified;
        m
    }

    /// A message read from [`PRESENCE_ROOM`] as a beat; `None` for anything else (a chat
    /// message someone sent there by hand, an unknown event).
    pub fn from_message(m: &Message) -> Option<Beat> {
        let event = match m.mensaje.as_str() {
            "join" => Event::Join,
            "here" => Event::Here,
            "leave" => Event::Leave,
            _ => return None,
        };
        if m.usuario.is_empty() || m.room.is_empty() || m.room == PRESENCE_ROOM {
            return None;
        }
        Some(Beat {
            name: m.usuario.clone(),
            room: m.room.clone(),
            session: m.id.clone(),
            event,
            verified: m.verificado,
        })
    }
}

/// A change in who is in a room, for join / leave notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Joined { room: String, name: String },
    Left { room: String, name: String },
}

/// Upper bound on tracked sessions, so a flood of fake beats cannot grow memory without end;
/// beats of new sessions past it are ignored until old ones expire.
pub const MAX_SESSIONS: usize = 100_000;

/// Who is where, from the beats heard.
#[derive(Debug, Default)]
pub struct Roster {
    /// session → (room, name, last beat, name proved).
    sessions: HashMap<String, (String, String, Instant, bool)>,
    /// room → name → live sessions with that name, and how many of them are not proved.
    rooms: BTreeMap<String, BTreeMap<String, (usize, usize)>>,
}

impl Roster {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take a beat in; the changes it makes to the rooms' member lists (none, one, or a
    /// leave and a join for a session that changed its name).
    pub fn observe(&mut self, beat: &Beat, now: Instant) -> Vec<Change> {
        match beat.event {
            Event::Leave => self.remove(&beat.session).into_iter().collect(),
            Event::Join | Event::Here => {
                if let Some(entry) = self.sessions.get_mut(&beat.session) {
                    entry.2 = now;
                    if entry.0 == beat.room && entry.1 == beat.name {
                        return Vec::new();
                    }
                    // A session that changed name or room: leave the old place first.
                    let left = self.remove(&beat.session);
                    let joined = self.add(beat, now);
                    return left.into_iter().chain(joined).collect();
                }
                if self.sessions.len() >= MAX_SESSIONS {
                    return Vec::new();
                }
                self.add(beat, now).into_iter().collect()
            }
        }
    }

    fn add(&mut self, beat: &Beat, now: Instant) -> Option<Change> {
        self.sessions.insert(
            beat.session.clone(),
            (beat.room.clone(), beat.name.clone(), now, beat.verified),
        );
        let (count, unproved) = self
            .rooms
            .entry(beat.room.clone())
            .or_default()
            .entry(beat.name.clone())
            .or_insert((0, 0));
        *count += 1;
        if !beat.verified {
            *unproved += 1;
        }
        (*count == 1).then(|| Change::Joined {
            room: beat.room.clone(),
            name: beat.name.clone(),
        })
    }

    fn remove(&mut self, session: &str) -> Option<Change> {
        let (room, name, _, verified) = self.sessions.remove(session)?;
        let members = self.rooms.get_mut(&room)?;
        let (count, unproved) = members.get_mut(&name)?;
        *count -= 1;
        if !verified {
            *unproved = unproved.saturating_sub(1);
        }
        if *count > 0 {
            return None;
        }
        members.remove(&name);
        if members.is_empty() {
            self.rooms.remove(&room);
        }
        Some(Change::Left { room, name })
    }

    /// Drop the sessions silent for longer than [`EXPIRY`]; the changes that makes.
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        let stale: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, (_, _, seen, _))| now.saturating_duration_since(*seen) > EXPIRY)
            .map(|(s, _)| s.clone())
            .collect();
        stale.iter().filter_map(|s| self.remove(s)).collect()
    }

    /// The names online in `room`, sorted.
    pub fn online(&self, room: &str) -> Vec<String> {
        self.rooms
            .get(room)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every room with someone in it and how many names are there, sorted by room.
    pub fn rooms(&self) -> Vec<(String, usize)> {
        self.rooms
            .iter()
            .map(|(room, m)| (room.clone(), m.len()))
            .collect()
    }

    /// The names online in `room` whose every session was proved (a name also online
    /// unproved, say through a gateway without authentication, is not), sorted.
    pub fn verified(&self, room: &str) -> Vec<String> {
        self.rooms
            .get(room)
            .map(|m| {
                m.iter()
                    .filter(|(_, (_, unproved))| *unproved == 0)
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `name` is online in `room`.
    pub fn is_online(&self, room: &str, name: &str) -> bool {
        self.rooms.get(room).is_some_and(|m| m.contains_key(name))
    }

    /// Whether `name` is online in `room` with every session proved.
    pub fn is_verified(&self, room: &str, name: &str) -> bool {
        self.rooms
            .get(room)
            .and_then(|m| m.get(name))
            .is_some_and(|(_, unproved)| *unproved == 0)
    }

    /// The room names with someone in them.
    pub fn room_names(&self) -> BTreeSet<String> {
        self.rooms.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(name: &str, room: &str, session: &str, event: Event) -> Beat {
        Beat {
            name: name.into(),
            room: room.into(),
            session: session.into(),
            event,
            verified: false,
        }
    }

    #[test]
    fn a_name_is_verified_while_all_its_sessions_are() {
        let now = Instant::now();
        let mut r = Roster::new();
        let proved = |session: &str| Beat {
            verified: true,
            ..beat("Vic", "sala", session, Event::Join)
        };
        r.observe(&proved("s1"), now);
        r.observe(&proved("s2"), now);
        r.observe(&beat("Ana", "sala", "s3", Event::Join), now);
        assert_eq!(r.verified("sala"), ["Vic"]);
        assert!(r.is_verified("sala", "Vic") && !r.is_verified("sala", "Ana"));
        assert!(r.verified("otra").is_empty());
        // The mark travels with the beat.
        assert!(Beat::from_message(&proved("s1").to_message()).is_some_and(|b| b.verified));
        // Someone unproved under the same name: no mark.
        r.observe(&beat("Vic", "sala", "s4", Event::Join), now);
        assert!(r.verified("sala").is_empty());
        // Gone again: proved again.
        r.observe(&beat("Vic", "sala", "s4", Event::Leave), now);
        assert_eq!(r.verified("sala"), ["Vic"]);
    }

    #[test]
    fn a_beat_travels_as_a_message_and_back() {
        let b = beat("María", "sala", "s1", Event::Join);
        let m = b.to_message();
        assert_eq!((m.usuario.as_str(), m.mensaje.as_str()), ("María", "join"));
        let back = Message::decode(&m.encode(), PRESENCE_ROOM, 1 << 20).expect("decodes");
        assert_eq!(Beat::from_message(&back), Some(b));
        let chat = Message::new("x", "hola", "sala");
        assert_eq!(Beat::from_message(&chat), None);
    }

    #[test]
    fn joins_leaves_and_expiry() {
        let t0 = Instant::now();
        let mut r = Roster::new();
        let joined = r.observe(&beat("Ana", "sala", "a", Event::Join), t0);
        assert_eq!(
            joined,
            vec![Change::Joined {
                room: "sala".into(),
                name: "Ana".into()
            }]
        );
        // A second tab of the same name is no new join, and its leave is no leave.
        assert_eq!(
            r.observe(&beat("Ana", "sala", "a2", Event::Here), t0),
            vec![]
        );
        assert_eq!(
            r.observe(&beat("Ana", "sala", "a2", Event::Leave), t0),
            vec![]
        );
        assert_eq!(r.online("sala"), vec!["Ana".to_string()]);
        r.observe(&beat("Beto", "sala", "b", Event::Here), t0);
        assert_eq!(r.rooms(), vec![("sala".to_string(), 2)]);
        // Ana keeps beating, Beto goes silent.
        let later = t0 + EXPIRY + Duration::from_millis(10);
        r.observe(
            &beat("Ana", "sala", "a", Event::Here),
            later - Duration::from_secs(1),
        );
        let gone = r.expire(later);
        assert_eq!(
            gone,
            vec![Change::Left {
                room: "sala".into(),
                name: "Beto".into()
            }]
        );
        assert_eq!(r.online("sala"), vec!["Ana".to_string()]);
        // Moving rooms is a leave there and a join here.
        let moved = r.observe(&beat("Ana", "otra", "a", Event::Here), later);
        assert_eq!(
            moved,
            vec![
                Change::Left {
                    room: "sala".into(),
                    name: "Ana".into()
                },
                Change::Joined {
                    room: "otra".into(),
                    name: "Ana".into()
                }
            ]
        );
        assert!(r.online("sala").is_empty());
        assert_eq!(r.room_names().into_iter().collect::<Vec<_>>(), vec!["otra"]);
    }
}
