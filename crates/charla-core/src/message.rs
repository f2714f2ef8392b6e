//! The chat message and its JSON wire format.
//!
//! The seed (`broker.py` of the workshop) sends `{"usuario","mensaje","hora"}` and reads
//! `mensaje['usuario']`, `mensaje['mensaje']`, `mensaje['hora']`. charla keeps those three
//! fields first and adds its own; a reader that knows only the seed's fields ignores ours, and
//! a seed message (three fields only) decodes here with the rest filled in on arrival.
//!
//! A room may also carry other applications' JSON events (`{"type":"user_created",…}` written
//! by a kafkajs producer to the same topic). [`Message::decode`] refuses them (the chats show
//! and archive chat messages only), [`Message::decode_any`] keeps them as an *event*: a
//! message with empty seed fields and the object in [`Message::event`], which `charla listen`
//! shows and counts. Only what is not a JSON object, or is too large, is poison for both.

use chrono::Timelike;
use serde::{Deserialize, Serialize};

/// Default upper bound on one encoded message. Larger ones are refused on send and
/// dead-lettered on receive, so one huge payload cannot exhaust a consumer's memory.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// One chat message. Field names are the JSON keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who sent it (seed field).
    pub usuario: String,
    /// The text (seed field).
    pub mensaje: String,
    /// Sender's local wall-clock time, `HH:MM:SS` (seed field).
    #[serde(default)]
    pub hora: String,
    /// Unique, time-sortable id (a ULID). Lets consumers drop redelivered duplicates.
    /// Seed messages have none; one is assigned when they are decoded.
    #[serde(default)]
    pub id: String,
    /// The room (queue, channel, stream or topic name) it was sent to.
    #[serde(default)]
    pub room: String,
    /// Send time in microseconds since the Unix epoch (UTC); 0 when unknown (seed messages).
    #[serde(default)]
    pub ts_us: i64,
    /// How many times a broker handed this message out again after a consumer died or
    /// refused it. Only written when non-zero, so fresh messages stay small.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deliveries: u32,
    /// How many times an operator put this message back from the dead letters (`charla dead
    /// --replay`): kept through re-encoding so that a second death shows as one. Only
    /// written when non-zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replays: u32,
    /// A reply's correlation: the id of the message it answers (`charla work --notify`
    /// answers each task). Only written when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// How the task this message answers ended (`charla work --notify`). Only written when
    /// set; boxed so that chat messages stay small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Box<crate::task::TaskOutcome>>,
    /// A file this message is about: in a task, the path of the file to work on (an upload
    /// through `charla web --uploads`, given to `charla work`'s command as `CHARLA_FILE`); in
    /// a chat message, the name of an uploaded file or its thumbnail, which the gateway
    /// serves under `/uploads/`. Only written when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The gateway that took this message had authenticated its sender (`charla web --auth
    /// jwt|proxy`): `usuario` is who they proved to be, and the chats show a mark beside it.
    /// Only written when true, so other messages keep the seed-compatible format unchanged.
    /// It is as trustworthy as the broker's own access control: whoever may write to the broker
    /// directly may write it too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub verificado: bool,
    /// Set when the payload was another application's JSON object, not a chat message (only
    /// from [`Message::decode_any`]): the object as it was sent, every field kept. `usuario`,
    /// `mensaje` and `hora` are then empty, and [`Message::encode`] gives the object back.
    /// Boxed so that chat messages, the common case, stay one pointer larger only.
    #[serde(skip)]
    pub event: Option<Box<Event>>,
}

/// Another application's JSON event, as its fields.
pub type Event = serde_json::Map<String, serde_json::Value>;

/// How a subscriber turns a payload into a message: [`Message::decode`] (chat messages only)
/// or [`Message::decode_any`] (other JSON objects too, as events).
pub type Decoder = fn(&[u8], &str, usize) -> Result<Message, DecodeError>;

/// `HH:MM:SS`, as the seed's `time.strftime("%H:%M:%S")`. Hand-written because chrono's
/// strftime machinery showed up in send-path profiles.
fn hhmmss(h: u32, m: u32, s: u32) -> String {
    let digits = [h / 10, h % 10, m / 10, m % 10, s / 10, s % 10].map(|d| b'0' + (d % 10) as u8);
    let bytes = [
        digits[0], digits[1], b':', digits[2], digits[3], b':', digits[4], digits[5],
    ];
    String::from_utf8_lossy(&bytes).into_owned()
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a payload is not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a chat message: {0}")]
    NotJson(String),
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

impl Message {
    /// A new message stamped now: fresh id, local `hora`, precise `ts_us`.
    pub fn new(
        usuario: impl Into<String>,
        mensaje: impl Into<String>,
        room: impl Into<String>,
    ) -> Self {
        let now = chrono::Local::now();
        Message {
            usuario: usuario.into(),
            mensaje: mensaje.into(),
            hora: hhmmss(now.hour(), now.minute(), now.second()),
            id: ulid::Ulid::new().to_string(),
            room: room.into(),
            ts_us: now.timestamp_micros(),
            deliveries: 0,
            replays: 0,
            correlation_id: None,
            task: None,
            file: None,
            verificado: false,
            event: None,
        }
    }

    /// A message carrying another application's JSON object, read from `room`: a fresh id (so
    /// every delivery has one, as for seed messages), no send time. A `deliveries` count in the
    /// object is charla's own (the Redis queue counts redeliveries in the payload) and is read
    /// as such; the object keeps it.
    pub fn event(object: Event, room: impl Into<String>) -> Self {
        let deliveries = object
            .get("deliveries")
            .and_then(serde_json::Value::as_u64)
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        Message {
            usuario: String::new(),
            mensaje: String::new(),
            hora: String::new(),
            id: ulid::Ulid::new().to_string(),
            room: room.into(),
            ts_us: 0,
            deliveries,
            replays: 0,
            correlation_id: None,
            task: None,
            file: None,
            verificado: false,
            event: Some(Box::new(object)),
        }
    }

    /// True when this is another application's event rather than a chat message.
    pub fn is_event(&self) -> bool {
        self.event.is_some()
    }

    /// The JSON bytes sent to the broker. Non-ASCII stays UTF-8, like the seed's
    /// `json.dumps(..., ensure_ascii=False)`. An event gives back its object, so a backend
    /// that re-sends a message (a dead letter, a requeue) keeps the other application's data.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing strings, integers and JSON values into a Vec cannot fail.
        match &self.event {
            Some(object) => serde_json::to_vec(object).unwrap_or_default(),
            None => serde_json::to_vec(self).unwrap_or_default(),
        }
    }

    /// Encode and check the size limit.
    pub fn encode_checked(&self, limit: usize) -> Result<Vec<u8>, crate::BrokerError> {
        let bytes = self.encode();
        if bytes.len() > limit {
            return Err(crate::BrokerError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        Ok(bytes)
    }

    /// Decode a payload: a charla message or a seed message. `room` fills in a missing room
    /// (the name it was read from); a missing id gets a fresh one so that every delivered
    /// message has an id.
    pub fn decode(payload: &[u8], room: &str, limit: usize) -> Result<Message, DecodeError> {
        if payload.len() > limit {
            return Err(DecodeError::TooLarge {
                size: payload.len(),
                limit,
            });
        }
        let mut msg: Message = serde_json::from_slice(payload)
            .map_err(|e| DecodeError::NotJson(describe(payload, &e)))?;
        if msg.id.is_empty() {
            msg.id = ulid::Ulid::new().to_string();
        }
        if msg.room.is_empty() {
            msg.room = room.to_owned();
        }
        Ok(msg)
    }

    /// Like [`Message::decode`], and a JSON object that is not a chat message is an event
    /// ([`Message::event`]) instead of an error: for readers that show whatever a room
    /// carries (`charla listen`). A JSON array, a string, a number, text that is not JSON and
    /// an oversized payload are still errors (poison), as for `decode`.
    pub fn decode_any(payload: &[u8], room: &str, limit: usize) -> Result<Message, DecodeError> {
        match Message::decode(payload, room, limit) {
            Err(DecodeError::NotJson(why)) => match serde_json::from_slice::<Event>(payload) {
                Ok(object) => Ok(Message::event(object, room)),
                Err(_) => Err(DecodeError::NotJson(why)),
            },
            other => other,
        }
    }

    /// Latency from the send stamp to now, if the message has one.
    pub fn age_us(&self) -> Option<i64> {
        (self.ts_us > 0).then(|| chrono::Utc::now().timestamp_micros() - self.ts_us)
    }
}

/// A short description of a bad payload for logs: the parser's reason and the first bytes.
fn describe(payload: &[u8], err: &serde_json::Error) -> String {
    const SHOWN: usize = 60;
    let head = String::from_utf8_lossy(&payload[..payload.len().min(SHOWN)]);
    let more = if payload.len() > SHOWN { "…" } else { "" };
    format!("{err} (payload starts {head:?}{more})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_message_decodes_with_fields_filled() {
        let seed = r#"{"usuario": "Juan", "mensaje": "Hola María!", "hora": "14:30:25"}"#;
        let m = Message::decode(seed.as_bytes(), "chat_cola", MAX_MESSAGE_BYTES).unwrap();
        assert_eq!(m.usuario, "Juan");
        assert_eq!(m.mensaje, "Hola María!");
        assert_eq!(m.hora, "14:30:25");
        assert_eq!(m.room, "chat_cola");
        assert_eq!(m.id.len(), 26, "a ULID is assigned");
        assert_eq!(m.ts_us, 0);
    }

    #[test]
    fn encoding_keeps_seed_fields_first_and_utf8_raw() {
        let m = Message::new("María", "¡Hola! 👋", "sala");
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            text.starts_with(r#"{"usuario":"María","mensaje":"¡Hola! 👋","hora":""#),
            "{text}"
        );
        assert!(!text.contains("deliveries"));
        assert!(!text.contains("verificado"), "absent unless true: {text}");
        let back = Message::decode(text.as_bytes(), "other", MAX_MESSAGE_BYTES).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn the_verified_mark_round_trips_and_defaults_to_absent() {
        let mut m = Message::new("Vic", "hola", "sala");
        m.verificado = true;
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains(r#""verificado":true"#), "{text}");
        assert_eq!(
            Message::decode(text.as_bytes(), "x", MAX_MESSAGE_BYTES).unwrap(),
            m
        );
        let seed = r#"{"usuario": "Juan", "mensaje": "hola", "hora": "14:30:25"}"#;
        assert!(
            !Message::decode(seed.as_bytes(), "x", MAX_MESSAGE_BYTES)
                .unwrap()
                .verificado
        );
    }

    #[test]
    fn bad_payloads_are_errors_not_panics() {
        for bad in [
            &b"not json"[..],
            b"",
            b"{\"usuario\":1}",
            b"[1,2]",
            b"\xff\xfe",
        ] {
            assert!(matches!(
                Message::decode(bad, "r", MAX_MESSAGE_BYTES),
                Err(DecodeError::NotJson(_))
            ));
        }
        let big = vec![b' '; 11];
        assert!(matches!(
            Message::decode(&big, "r", 10),
            Err(DecodeError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
    }

    #[test]
    fn another_applications_object_is_an_event_only_for_decode_any() {
        let ev = br#"{"type":"user_created","userId":1,"name":"Ana","timestamp":"2026-01-01T00:00:00Z"}"#;
        assert!(matches!(
            Message::decode(ev, "user-events", MAX_MESSAGE_BYTES),
            Err(DecodeError::NotJson(_))
        ));
        let m = Message::decode_any(ev, "user-events", MAX_MESSAGE_BYTES).unwrap();
        assert!(m.is_event());
        assert_eq!((m.usuario.as_str(), m.mensaje.as_str()), ("", ""));
        assert_eq!(m.room, "user-events");
        assert_eq!(m.id.len(), 26, "an id for de-duplication");
        let object = m.event.as_deref().unwrap();
        assert_eq!(object["type"], "user_created");
        assert_eq!(object["userId"], 1);
        // Encoding gives the object back, field for field.
        let back: serde_json::Value = serde_json::from_slice(&m.encode()).unwrap();
        assert_eq!(
            back,
            serde_json::from_slice::<serde_json::Value>(ev).unwrap()
        );
        // A field of the wrong type makes an event too, not a half-read chat message.
        assert!(
            Message::decode_any(br#"{"usuario":1}"#, "r", MAX_MESSAGE_BYTES)
                .unwrap()
                .is_event()
        );
        // A redelivery count the Redis queue wrote into the object is charla's own.
        let counted = Message::decode_any(br#"{"type":"x","deliveries":2}"#, "r", 1 << 10);
        assert_eq!(counted.unwrap().deliveries, 2);
    }

    #[test]
    fn decode_any_reads_chat_messages_as_decode_does_and_keeps_poison_poison() {
        let seed = r#"{"usuario": "Juan", "mensaje": "Hola María!", "hora": "14:30:25"}"#;
        let m = Message::decode_any(seed.as_bytes(), "chat_cola", MAX_MESSAGE_BYTES).unwrap();
        assert!(!m.is_event());
        assert_eq!(
            (m.usuario.as_str(), m.mensaje.as_str()),
            ("Juan", "Hola María!")
        );
        let sent = Message::new("María", "¡Hola!", "sala");
        assert_eq!(
            Message::decode_any(&sent.encode(), "x", MAX_MESSAGE_BYTES).unwrap(),
            sent
        );
        for bad in [
            &b"{this is not json"[..],
            b"[1, 2, 3]",
            b"plain text, not a chat message",
            b"\"a string\"",
            b"42",
            b"",
            b"\xff\xfe not even UTF-8",
        ] {
            assert!(
                matches!(
                    Message::decode_any(bad, "r", MAX_MESSAGE_BYTES),
                    Err(DecodeError::NotJson(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            Message::decode_any(br#"{"type":"big"}"#, "r", 5),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn hora_is_zero_padded() {
        assert_eq!(hhmmss(4, 5, 9), "04:05:09");
        assert_eq!(hhmmss(23, 59, 58), "23:59:58");
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let a = Message::new("a", "1", "r");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Message::new("a", "2", "r");
        assert!(a.id < b.id);
    }
}
