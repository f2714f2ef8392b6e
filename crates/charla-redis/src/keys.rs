//! Names of charla's bookkeeping keys for a room, and SCAN over them.
//!
//! All live under `charla:{room}:…`: the `{room}` hash tag puts them in the same Redis
//! Cluster slot as the room's own key, so MULTI/EXEC over the pair is allowed there too.

use charla_core::{BrokerError, Result};
use redis::aio::MultiplexedConnection;

pub fn check_room(room: &str) -> Result<()> {
    if room.is_empty() {
        return Err(BrokerError::InvalidArgument(
            "the room name is empty".into(),
        ));
    }
    if room.contains(['{', '}']) {
        // Braces would break the hash tag that keeps a room's keys in one cluster slot.
        return Err(BrokerError::InvalidArgument(format!(
            "room name '{room}' may not contain '{{' or '}}'"
        )));
    }
    Ok(())
}

/// Unacknowledged messages held by one queue consumer.
pub fn processing(room: &str, consumer: &str) -> String {
    format!("charla:{{{room}}}:processing:{consumer}")
}

/// Glob matching every queue consumer's processing list of a room.
pub fn all_processing(room: &str) -> String {
    format!("charla:{{{}}}:processing:*", escape_glob(room))
}

/// Heartbeat of a queue consumer: exists while the consumer lives.
pub fn alive(room: &str, consumer: &str) -> String {
    format!("charla:{{{room}}}:alive:{consumer}")
}

/// Poison messages of a room (a list, oldest first).
pub fn dead(room: &str) -> String {
    format!("charla:{{{room}}}:dead")
}

/// Stream entries a consumer group has been told it missed (retention), for the next count.
pub fn missed(room: &str, group: &str) -> String {
    format!("charla:{{{room}}}:missed:{group}")
}

/// Glob matching every bookkeeping key of a room.
pub fn all_bookkeeping(room: &str) -> String {
    format!("charla:{{{}}}:*", escape_glob(room))
}

/// The consumer name at the end of a processing key.
pub fn consumer_of(processing_key: &str) -> Option<&str> {
    processing_key.rsplit_once(":processing:").map(|(_, c)| c)
}

fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Every key matching `pattern` (SCAN, so a large keyspace is not blocked).
pub async fn scan(
    conn: &mut MultiplexedConnection,
    pattern: &str,
    address: &str,
) -> Result<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut found = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(|e| crate::map_err(e, address))?;
        found.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// The rooms with a stream: `SCAN … TYPE stream` (Redis 6.0). Keys that cannot be room
/// names are left out: charla's own all have braces (`charla:{room}:…`), and a key that is
/// not UTF-8 was not made by charla.
pub async fn stream_rooms(conn: &mut MultiplexedConnection, address: &str) -> Result<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut found = Vec::new();
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg("stream")
            .query_async(conn)
            .await
            .map_err(|e| crate::map_err(e, address))?;
        found.extend(
            batch
                .into_iter()
                .filter_map(|k| String::from_utf8(k).ok())
                .filter(|k| is_room_name(k)),
        );
        if next == 0 {
            break;
        }
        cursor = next;
    }
    found.sort();
    found.dedup(); // SCAN may return a key twice
    Ok(found)
}

/// Whether a key can be a room's own (not one of charla's bookkeeping keys).
pub fn is_room_name(key: &str) -> bool {
    check_room(key).is_ok() && !key.starts_with("charla:{")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_the_rooms_hash_tag() {
        assert_eq!(
            processing("chat_cola", "c1"),
            "charla:{chat_cola}:processing:c1"
        );
        assert_eq!(consumer_of(&processing("a:processing:b", "c1")), Some("c1"));
        assert_eq!(all_processing("a*b"), "charla:{a\\*b}:processing:*");
        assert!(check_room("x{y}").is_err());
        assert!(check_room("").is_err());
    }

    #[test]
    fn bookkeeping_keys_are_not_rooms() {
        assert!(is_room_name("chat_cola"));
        assert!(is_room_name("charla:plain"));
        for own in [
            dead("r"),
            missed("r", "g"),
            processing("r", "c"),
            alive("r", "c"),
        ] {
            assert!(!is_room_name(&own), "{own}");
        }
        assert!(!is_room_name(""));
    }
}
