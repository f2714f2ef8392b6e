//! The chat message and its JSON wire format.
//!
//! The seed (`broker.py` of the workshop) sends `{"usuario","mensaje","hora"}` and reads
//! `mensaje['usuario']`, `mensaje['mensaje']`, `mensaje['hora']`. charla keeps those three
//! fields first and adds its own; a reader that knows only the seed's fields ignores ours, and
//! a seed message (three fields only) decodes here with the rest filled in on arrival.

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
}

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
        }
    }

    /// The JSON bytes sent to the broker. Non-ASCII stays UTF-8, like the seed's
    /// `json.dumps(..., ensure_ascii=False)`.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing a struct of strings and integers into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
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
        let back = Message::decode(text.as_bytes(), "other", MAX_MESSAGE_BYTES).unwrap();
        assert_eq!(back, m);
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
