//! Dead letters that say why: a message that could not be processed is kept with the reason,
//! the attempts, when it failed first and last, the room and mode it came from and the last
//! error, so an operator (`charla dead`) can see why a job failed, replay it, and see that a
//! replayed message died a second time.
//!
//! The bar is what job systems people already run keep with a failure: Sidekiq/Faktory (error
//! class, message, time, retry count), RabbitMQ's `x-death` (reason, count, original queue),
//! Watermill's poison queue (the reason travels with the message).
//!
//! Each backend stores these fields its own way (AMQP and Kafka as headers beside the payload
//! untouched, a Redis list as one [`DeadLetter::encode`]d entry, memory as the value), and
//! they all read back into a [`DeadLetter`]. A payload stored before reasons were kept (a bare
//! payload) reads back with the reason [`DeadReason::Unknown`].
//!
//! How many times a message was replayed travels inside the message (`replays`, like the
//! Redis queue's `deliveries`): a replay raises it, so a second death shows as one.

use std::fmt;

use crate::message::Message;
use crate::mode::Mode;

/// The last error text kept with a dead letter is cut to this many bytes (stderr can be
/// megabytes; the dead letter is not a log).
pub const MAX_ERROR_BYTES: usize = 2048;

/// Why a message was dead-lettered. Written and read as its text ([`fmt::Display`] /
/// [`DeadReason::parse`]): `not-json`, `too-large`, `max-deliveries`, `command-failed: exit
/// 3`, `timeout`, `nacked`, `unknown`, or any other text a backend or a tool wrote.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeadReason {
    /// The payload is not a message the consumer could read.
    NotJson,
    /// The payload is over the consumer's size limit.
    TooLarge,
    /// Delivered the room's limit of times without an ack (consumers died holding it, or gave
    /// it back).
    MaxDeliveries,
    /// `charla work`'s command failed on the last attempt: `exit 3`, `signal 9`.
    CommandFailed(String),
    /// `charla work`'s command ran past its timeout and was killed.
    Timeout,
    /// A consumer refused it (`nack` without requeue).
    Nacked,
    /// Stored without a reason (before reasons were kept, or by another tool).
    Unknown,
    /// Any other reason, as written.
    Other(String),
}

impl DeadReason {
    /// The reason's kind without its detail (`command-failed` for `command-failed: exit 3`):
    /// what `charla dead --stats` groups by and `--reason` matches.
    pub fn kind(&self) -> &str {
        match self {
            DeadReason::NotJson => "not-json",
            DeadReason::TooLarge => "too-large",
            DeadReason::MaxDeliveries => "max-deliveries",
            DeadReason::CommandFailed(_) => "command-failed",
            DeadReason::Timeout => "timeout",
            DeadReason::Nacked => "nacked",
            DeadReason::Unknown => "unknown",
            DeadReason::Other(text) => text.split(':').next().unwrap_or(text).trim(),
        }
    }

    /// Reads a reason back from its text; anything unrecognised is kept as [`Other`].
    ///
    /// [`Other`]: DeadReason::Other
    pub fn parse(text: &str) -> DeadReason {
        let text = text.trim();
        match text {
            "not-json" => DeadReason::NotJson,
            "too-large" => DeadReason::TooLarge,
            "max-deliveries" => DeadReason::MaxDeliveries,
            "timeout" => DeadReason::Timeout,
            "nacked" => DeadReason::Nacked,
            "unknown" | "" => DeadReason::Unknown,
            _ => match text.strip_prefix("command-failed:") {
                Some(detail) => DeadReason::CommandFailed(detail.trim().to_owned()),
                None => DeadReason::Other(text.to_owned()),
            },
        }
    }

    /// The reason for a payload a decoder refused.
    pub fn of_decode_error(e: &crate::message::DecodeError) -> DeadReason {
        match e {
            crate::message::DecodeError::NotJson(_) => DeadReason::NotJson,
            crate::message::DecodeError::TooLarge { .. } => DeadReason::TooLarge,
        }
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadReason::CommandFailed(detail) => write!(f, "command-failed: {detail}"),
            DeadReason::Other(text) => f.write_str(text),
            other => f.write_str(other.kind()),
        }
    }
}

/// What a consumer says when it dead-letters a delivery ([`crate::Subscriber::reject`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: DeadReason,
    /// The last error text (a command's stderr, a decoder's complaint), cut to
    /// [`MAX_ERROR_BYTES`].
    pub error: String,
    /// How many times processing was attempted (0 when nobody tried: poison).
    pub attempts: u32,
    /// When the first attempt failed, microseconds since the epoch; 0: now.
    pub first_failure_us: i64,
}

impl Failure {
    pub fn new(reason: DeadReason) -> Self {
        Failure {
            reason,
            error: String::new(),
            attempts: 0,
            first_failure_us: 0,
        }
    }

    /// The error text, cut to [`MAX_ERROR_BYTES`] at a character boundary.
    pub fn error(mut self, text: &str) -> Self {
        self.error = bounded(text);
        self
    }

    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    pub fn first_failure_us(mut self, at: i64) -> Self {
        self.first_failure_us = at;
        self
    }
}

/// A message that could not be processed, kept for an operator with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The payload exactly as it was on the broker.
    pub payload: Vec<u8>,
    pub reason: DeadReason,
    /// The last error text, at most [`MAX_ERROR_BYTES`].
    pub error: String,
    /// Processing attempts (deliveries, or a worker's runs of its command).
    pub attempts: u32,
    /// First and last failure, microseconds since the epoch (0 when unknown).
    pub first_failure_us: i64,
    pub last_failure_us: i64,
    /// The room it was dead-lettered from.
    pub room: String,
    /// The mode it was consumed in (queue or stream): where a replay puts it back. `None`
    /// when not recorded (then a replay puts it in the room's queue).
    pub mode: Option<Mode>,
}

/// Magic that starts an [`DeadLetter::encode`]d entry: a version, so a later format can be
/// told apart.
const ENVELOPE_MAGIC: &[u8] = b"charla-dead/1 ";

impl DeadLetter {
    /// A dead letter of `payload` failed now in `room` / `mode`.
    pub fn new(payload: Vec<u8>, room: &str, mode: Mode, failure: &Failure) -> Self {
        let now = now_us();
        DeadLetter {
            payload,
            reason: failure.reason.clone(),
            error: bounded(&failure.error),
            attempts: failure.attempts,
            first_failure_us: if failure.first_failure_us > 0 {
                failure.first_failure_us
            } else {
                now
            },
            last_failure_us: now,
            room: room.to_owned(),
            mode: Some(mode),
        }
    }

    /// A payload stored without anything else (by an older charla or another tool).
    pub fn bare(payload: Vec<u8>, room: &str) -> Self {
        DeadLetter {
            payload,
            reason: DeadReason::Unknown,
            error: String::new(),
            attempts: 0,
            first_failure_us: 0,
            last_failure_us: 0,
            room: room.to_owned(),
            mode: None,
        }
    }

    /// What identifies this dead letter to `charla dead --id`: the message's `id` where the
    /// payload has one, otherwise `x` and a hash of the payload (the same in every process).
    pub fn id(&self) -> String {
        self.json_field("id")
            .and_then(|v| v.as_str().map(str::to_owned))
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("x{:016x}", fnv1a(&self.payload)))
    }

    /// How many times this message was replayed before it died (again).
    pub fn replays(&self) -> u32 {
        self.json_field("replays")
            .and_then(|v| v.as_u64())
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The message, where the payload is one (a chat message or another JSON object).
    pub fn message(&self) -> Option<Message> {
        Message::decode_any(&self.payload, &self.room, usize::MAX).ok()
    }

    /// The payload a replay publishes: the same message with `replays` raised and the
    /// delivery count cleared, so it gets a full set of attempts again and a second death
    /// shows as such. A payload that is not a JSON object goes back unchanged.
    pub fn replay_payload(&self) -> Vec<u8> {
        let Ok(serde_json::Value::Object(mut object)) =
            serde_json::from_slice::<serde_json::Value>(&self.payload)
        else {
            return self.payload.clone();
        };
        object.remove("deliveries");
        object.insert("replays".into(), (self.replays() + 1).into());
        serde_json::to_vec(&object).unwrap_or_else(|_| self.payload.clone())
    }

    /// The fields beside the payload, as (name, text) pairs: what AMQP and Kafka carry as
    /// headers (prefixed by the backend), and what [`encode`](DeadLetter::encode) writes.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("reason", self.reason.to_string()),
            ("attempts", self.attempts.to_string()),
            ("first-failure-us", self.first_failure_us.to_string()),
            ("last-failure-us", self.last_failure_us.to_string()),
            ("room", self.room.clone()),
        ];
        if let Some(mode) = self.mode {
            fields.push(("mode", mode.as_str().to_owned()));
        }
        if !self.error.is_empty() {
            fields.push(("error", self.error.clone()));
        }
        fields
    }

    /// Reads the fields written by [`fields`](DeadLetter::fields) back; `field(name)` looks
    /// one up. Missing or unreadable fields take the [`bare`](DeadLetter::bare) values.
    pub fn from_fields(
        payload: Vec<u8>,
        room: &str,
        field: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let number = |name: &str| field(name).and_then(|v| v.trim().parse::<i64>().ok());
        DeadLetter {
            payload,
            reason: field("reason").map_or(DeadReason::Unknown, |r| DeadReason::parse(&r)),
            error: field("error").map(|e| bounded(&e)).unwrap_or_default(),
            attempts: number("attempts").map_or(0, |n| u32::try_from(n).unwrap_or(0)),
            first_failure_us: number("first-failure-us").unwrap_or(0),
            last_failure_us: number("last-failure-us").unwrap_or(0),
            room: field("room")
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| room.to_owned()),
            mode: field("mode").and_then(|m| m.parse().ok()),
        }
    }

    /// One byte string holding the fields and the payload, for stores that keep one value per
    /// dead letter (a Redis list): `charla-dead/1 {fields as JSON}\n` then the payload's bytes
    /// untouched (JSON escapes every newline, so the first one ends the fields).
    pub fn encode(&self) -> Vec<u8> {
        let fields: serde_json::Map<String, serde_json::Value> = self
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
            .collect();
        let mut out = ENVELOPE_MAGIC.to_vec();
        out.extend(serde_json::to_vec(&fields).unwrap_or_default());
        out.push(b'\n');
        out.extend_from_slice(&self.payload);
        out
    }

    /// Reads an [`encode`](DeadLetter::encode)d entry; anything else is a bare payload.
    pub fn decode(stored: &[u8], room: &str) -> Self {
        let Some(rest) = stored.strip_prefix(ENVELOPE_MAGIC) else {
            return DeadLetter::bare(stored.to_vec(), room);
        };
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            return DeadLetter::bare(stored.to_vec(), room);
        };
        let Ok(fields) =
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&rest[..end])
        else {
            return DeadLetter::bare(stored.to_vec(), room);
        };
        DeadLetter::from_fields(rest[end + 1..].to_vec(), room, |name| {
            fields.get(name).and_then(|v| v.as_str()).map(str::to_owned)
        })
    }

    fn json_field(&self, name: &str) -> Option<serde_json::Value> {
        // Only objects have fields; parsing the whole payload is fine at operator speed.
        match serde_json::from_slice::<serde_json::Value>(&self.payload).ok()? {
            serde_json::Value::Object(mut o) => o.remove(name),
            _ => None,
        }
    }
}

/// Which dead letters an operator's action (`charla dead --replay` / `--purge`) touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadSelect {
    /// Only these ids ([`DeadLetter::id`]); empty: any.
    pub ids: Vec<String>,
    /// Only this reason kind ([`DeadReason::kind`]) or exact reason text.
    pub reason: Option<String>,
    /// Only those whose last failure is before this time (microseconds since the epoch).
    pub failed_before_us: Option<i64>,
}

impl DeadSelect {
    /// Every dead letter.
    pub fn all() -> Self {
        DeadSelect::default()
    }

    pub fn matches(&self, dead: &DeadLetter) -> bool {
        (self.ids.is_empty() || self.ids.contains(&dead.id()))
            && self
                .reason
                .as_ref()
                .is_none_or(|r| r == dead.reason.kind() || *r == dead.reason.to_string())
            && self
                .failed_before_us
                .is_none_or(|t| dead.last_failure_us < t)
    }
}

fn bounded(text: &str) -> String {
    if text.len() <= MAX_ERROR_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_ERROR_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Now, microseconds since the epoch.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// FNV-1a 64: a stable hash (the same in every process and version), for ids of payloads
/// that carry none.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_back_as_written() {
        for r in [
            DeadReason::NotJson,
            DeadReason::TooLarge,
            DeadReason::MaxDeliveries,
            DeadReason::CommandFailed("exit 3".into()),
            DeadReason::Timeout,
            DeadReason::Nacked,
            DeadReason::Unknown,
            DeadReason::Other("x-death: expired".into()),
        ] {
            assert_eq!(DeadReason::parse(&r.to_string()), r);
        }
        assert_eq!(
            DeadReason::CommandFailed("exit 3".into()).kind(),
            "command-failed"
        );
        assert_eq!(DeadReason::Other("expired: ttl".into()).kind(), "expired");
    }

    #[test]
    fn an_envelope_keeps_fields_and_binary_payload() {
        let payload = b"\x00\xffnot\njson".to_vec();
        let failure = Failure::new(DeadReason::CommandFailed("exit 3".into()))
            .error("convert: corrupt image\nline 2")
            .attempts(5)
            .first_failure_us(7);
        let dead = DeadLetter::new(payload.clone(), "fotos", Mode::Queue, &failure);
        let back = DeadLetter::decode(&dead.encode(), "other");
        assert_eq!(back, dead);
        assert_eq!(back.payload, payload);
        assert_eq!(back.first_failure_us, 7);
        assert!(back.last_failure_us >= 7);
        assert_eq!(back.room, "fotos");
        assert_eq!(back.mode, Some(Mode::Queue));
    }

    #[test]
    fn a_bare_payload_reads_as_unknown() {
        let back = DeadLetter::decode(b"{\"usuario\":\"a\"}", "r");
        assert_eq!(back.reason, DeadReason::Unknown);
        assert_eq!(back.room, "r");
        assert_eq!(back.payload, b"{\"usuario\":\"a\"}");
        let broken = DeadLetter::decode(b"charla-dead/1 {broken\nxx", "r");
        assert_eq!(broken.reason, DeadReason::Unknown);
        assert_eq!(broken.payload, b"charla-dead/1 {broken\nxx");
    }

    #[test]
    fn a_replay_counts_and_resets_deliveries() {
        let m = Message::new("ana", "hola", "r");
        let mut payload: serde_json::Value = serde_json::from_slice(&m.encode()).unwrap();
        payload["deliveries"] = 4.into();
        let dead = DeadLetter::bare(serde_json::to_vec(&payload).unwrap(), "r");
        assert_eq!(dead.id(), m.id);
        assert_eq!(dead.replays(), 0);
        let again = DeadLetter::bare(dead.replay_payload(), "r");
        assert_eq!(again.replays(), 1);
        assert_eq!(again.id(), m.id, "a replay keeps the id");
        let twice = DeadLetter::bare(again.replay_payload(), "r");
        assert_eq!(twice.replays(), 2);
        assert!(!String::from_utf8_lossy(&twice.payload).contains("deliveries"));
        let raw = DeadLetter::bare(b"not json".to_vec(), "r");
        assert_eq!(raw.replay_payload(), b"not json");
        assert!(raw.id().starts_with('x'));
        assert_eq!(raw.id(), DeadLetter::bare(b"not json".to_vec(), "q").id());
    }

    #[test]
    fn long_errors_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_BYTES);
        let f = Failure::new(DeadReason::Timeout).error(&long);
        assert!(f.error.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(f.error.ends_with('…'));
    }

    #[test]
    fn a_selection_matches_by_id_reason_and_age() {
        let m = Message::new("ana", "hola", "r");
        let f = Failure::new(DeadReason::CommandFailed("exit 1".into()));
        let dead = DeadLetter::new(m.encode(), "r", Mode::Queue, &f);
        assert!(DeadSelect::all().matches(&dead));
        let by_id = DeadSelect {
            ids: vec![m.id.clone()],
            ..DeadSelect::default()
        };
        assert!(by_id.matches(&dead));
        let other_id = DeadSelect {
            ids: vec!["nope".into()],
            ..DeadSelect::default()
        };
        assert!(!other_id.matches(&dead));
        let by_kind = DeadSelect {
            reason: Some("command-failed".into()),
            ..DeadSelect::default()
        };
        assert!(by_kind.matches(&dead));
        let timeouts = DeadSelect {
            reason: Some("timeout".into()),
            ..DeadSelect::default()
        };
        assert!(!timeouts.matches(&dead));
        let old = DeadSelect {
            failed_before_us: Some(dead.last_failure_us),
            ..DeadSelect::default()
        };
        assert!(!old.matches(&dead));
    }
}
