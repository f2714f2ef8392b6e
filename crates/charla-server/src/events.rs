//! Keyspace notifications' vocabulary: Redis's event classes, the `notify-keyspace-events`
//! letters that select them, and what the command table says a command's change is called.
//! Recording what a command touched is the keyspace's job ([`crate::db`]); publishing the
//! events is the shared state's ([`crate::shared::Shared::publish_key_events`]).

/// `g`: DEL, EXPIRE, RENAME… (commands that work on any type).
pub const GENERIC: u32 = 1 << 0;
/// `$`: string commands.
pub const STRING: u32 = 1 << 1;
/// `l`: list commands.
pub const LIST: u32 = 1 << 2;
/// `s`: set commands.
pub const SET: u32 = 1 << 3;
/// `h`: hash commands.
pub const HASH: u32 = 1 << 4;
/// `z`: sorted set commands.
pub const ZSET: u32 = 1 << 5;
/// `x`: a key expired (found due on access, or by the background expirer).
pub const EXPIRED: u32 = 1 << 6;
/// `e`: a key evicted for maxmemory (charla serve never evicts, so none is ever sent).
pub const EVICTED: u32 = 1 << 7;
/// `t`: stream commands.
pub const STREAM: u32 = 1 << 8;
/// `m`: a read missed (not served: refused by CONFIG SET).
pub const KEY_MISS: u32 = 1 << 9;
/// `d`: module events (charla serve has no modules, so none is ever sent).
pub const MODULE: u32 = 1 << 10;
/// `n`: a key was created.
pub const NEW: u32 = 1 << 11;
/// `K`: publish to `__keyspace@<db>__:<key>` with the event as the message.
pub const KEYSPACE: u32 = 1 << 12;
/// `E`: publish to `__keyevent@<db>__:<event>` with the key as the message.
pub const KEYEVENT: u32 = 1 << 13;
/// `A`: every class but `m` and `n`, as in Redis.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// What the command table says about a write command's keyspace events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// Nothing (reads, and the writes Redis does not notify: FLUSHALL, SWAPDB…).
    Nothing,
    /// Every key the command changed gets this event (preceded by `new` when it created the
    /// key, followed by `expire` when it set an expiry and by `del` when the change emptied
    /// and removed it): the common case, decided by the request path.
    Event(u32, &'static str),
    /// The command names its events itself (RENAME's `rename_from`/`rename_to`, LMOVE's pop
    /// and push, EXPIRE's `expire` or `del`…); the request path adds only `new`.
    Custom,
}

/// Redis's `keyspaceEventsStringToFlags`: the flags a `notify-keyspace-events` value selects,
/// or None for a character that is not an event class.
pub fn parse(value: &str) -> Option<u32> {
    let mut flags = 0;
    for c in value.chars() {
        flags |= match c {
            'A' => ALL,
            'g' => GENERIC,
            '$' => STRING,
            'l' => LIST,
            's' => SET,
            'h' => HASH,
            'z' => ZSET,
            'x' => EXPIRED,
            'e' => EVICTED,
            'K' => KEYSPACE,
            'E' => KEYEVENT,
            't' => STREAM,
            'm' => KEY_MISS,
            'd' => MODULE,
            'n' => NEW,
            _ => return None,
        };
    }
    Some(flags)
}

/// Redis's `keyspaceEventsFlagsToString`: the canonical letters (what CONFIG GET answers).
pub fn format(flags: u32) -> String {
    let mut s = String::new();
    if flags & ALL == ALL {
        s.push('A');
    } else {
        for (bit, c) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
        ] {
            if flags & bit != 0 {
                s.push(c);
            }
        }
    }
    // Redis 7.0 prints `n` after the classes and before K/E only when A is not set; with A
    // it is dropped from the text (a Redis quirk kept so CONFIG GET answers the same).
    if flags & ALL != ALL && flags & NEW != 0 {
        s.push('n');
    }
    if flags & KEYSPACE != 0 {
        s.push('K');
    }
    if flags & KEYEVENT != 0 {
        s.push('E');
    }
    if flags & KEY_MISS != 0 {
        s.push('m');
    }
    s
}

/// Whether `flags` publish anything at all (a class and at least one of K / E).
pub fn enabled(flags: u32) -> bool {
    flags & (KEYSPACE | KEYEVENT) != 0 && flags & !(KEYSPACE | KEYEVENT) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip_as_redis_prints_them() {
        // Each pair is what redis-server 7.0 answers to CONFIG GET after CONFIG SET.
        for (set, get) in [
            ("KEA", "AKE"),
            ("KEAn", "AKE"),
            ("K", "K"),
            ("g$lshzxetdKEm", "AKEm"),
            ("Elg", "glE"),
            ("Kn$", "$nK"),
            ("", ""),
        ] {
            assert_eq!(format(parse(set).unwrap()), get, "{set}");
        }
        assert_eq!(parse("Kxq"), None);
    }
}
