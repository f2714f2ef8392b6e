//! The keyspace: sixteen numbered databases of typed values with millisecond expiry, plus the
//! things that must change atomically with them (blocked-client wakeups and the append-only
//! buffer). All of it lives behind one mutex in [`crate::server::Shared`]: commands hold it
//! for a few hundred nanoseconds, while parsing, syscalls and reply encoding run on both cores
//! in parallel. One lock also keeps MULTI/EXEC, multi-key commands and AOF order trivially
//! atomic, which sharding would not.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::stream::Stream;

pub const NUM_DBS: usize = 16;

/// Milliseconds since the Unix epoch (what expiry and stream ids are measured in).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A stored value. Types as Redis names them in `TYPE`.
#[derive(Debug, Clone)]
pub enum Value {
    Str(Bytes),
    List(VecDeque<Bytes>),
    Hash(HashMap<Bytes, Bytes>),
    Stream(Box<Stream>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Stream(_) => "stream",
        }
    }

    /// Rough size in bytes, for `INFO memory`.
    pub fn approx_size(&self) -> usize {
        match self {
            Value::Str(b) => b.len() + 16,
            Value::List(l) => l.iter().map(|b| b.len() + 24).sum::<usize>() + 32,
            Value::Hash(h) => h.iter().map(|(k, v)| k.len() + v.len() + 48).sum::<usize>() + 48,
            Value::Stream(s) => s.approx_size(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    /// Absolute expiry in ms since the epoch; 0 = persistent.
    pub expire_at: u64,
}

/// One numbered database.
#[derive(Debug, Default)]
pub struct Keyspace {
    pub map: HashMap<Bytes, Entry>,
    /// (deadline, key) for every volatile key, so the active expirer finds due keys in order
    /// instead of scanning: keeps memory bounded when clients set heartbeats and vanish.
    expires: BTreeSet<(u64, Bytes)>,
}

impl Keyspace {
    fn is_expired(e: &Entry, now: u64) -> bool {
        e.expire_at != 0 && e.expire_at <= now
    }

    /// Drop `key` if its time has come (lazy expiry, as Redis does on access).
    fn expire_if_due(&mut self, key: &[u8], now: u64) {
        let due = matches!(self.map.get(key), Some(e) if Self::is_expired(e, now));
        if due {
            self.remove(key);
        }
    }

    pub fn get(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
        self.expire_if_due(key, now);
        self.map.get(key)
    }

    pub fn get_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        self.expire_if_due(key, now);
        self.map.get_mut(key)
    }

    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.get(key, now).is_some()
    }

    /// Store `value` under `key`, dropping any previous value and its expiry (SET semantics).
    pub fn insert(&mut self, key: Bytes, value: Value) {
        if let Some(old) = self.map.insert(
            key.clone(),
            Entry {
                value,
                expire_at: 0,
            },
        ) {
            if old.expire_at != 0 {
                self.expires.remove(&(old.expire_at, key));
            }
        }
    }

    /// Store `value` keeping the key's current expiry (SET ... KEEPTTL, list/hash creation).
    pub fn insert_keep_ttl(&mut self, key: Bytes, value: Value) {
        match self.map.get_mut(&key) {
            Some(e) => e.value = value,
            None => self.insert(key, value),
        }
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (k, e) = self.map.remove_entry(key)?;
        if e.expire_at != 0 {
            self.expires.remove(&(e.expire_at, k));
        }
        Some(e)
    }

    /// Set (at > 0) or clear (at == 0) the expiry of an existing key. False if no such key.
    pub fn set_expire(&mut self, key: &[u8], at: u64) -> bool {
        let Some((k, e)) = self.map.get_key_value(key) else {
            return false;
        };
        let k = k.clone();
        let old = e.expire_at;
        if old != 0 {
            self.expires.remove(&(old, k.clone()));
        }
        if at != 0 {
            self.expires.insert((at, k.clone()));
        }
        if let Some(e) = self.map.get_mut(&k) {
            e.expire_at = at;
        }
        true
    }

    /// Remove up to `budget` keys whose deadline passed. Returns how many were removed.
    pub fn expire_due(&mut self, now: u64, budget: usize) -> usize {
        let mut n = 0;
        while n < budget {
            let Some((at, key)) = self.expires.first().cloned() else {
                break;
            };
            if at > now {
                break;
            }
            self.expires.remove(&(at, key.clone()));
            if let Some(e) = self.map.get(&key) {
                if e.expire_at == at {
                    self.map.remove(&key);
                }
            }
            n += 1;
        }
        n
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn volatile_len(&self) -> usize {
        self.expires.len()
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.expires.clear();
    }
}

/// Everything behind the keyspace lock.
#[derive(Debug)]
pub struct Db {
    pub dbs: Vec<Keyspace>,
    /// Clients blocked on a key (BLPOP, BLMOVE, XREAD BLOCK...), woken when it may be served.
    waiters: HashMap<(usize, Bytes), Vec<Arc<Notify>>>,
    /// Commands not yet handed to the AOF writer, RESP-encoded, and their count.
    pub aof_buf: Vec<u8>,
    pub aof_seq: u64,
    pub aof_on: bool,
    /// Database the AOF stream last SELECTed, so replay applies commands to the right one.
    pub aof_db: usize,
    /// Count of dataset changes (WATCH compares it).
    pub writes: u64,
}

impl Default for Db {
    fn default() -> Self {
        Db::new()
    }
}

impl Db {
    pub fn new() -> Self {
        Db {
            dbs: (0..NUM_DBS).map(|_| Keyspace::default()).collect(),
            waiters: HashMap::new(),
            aof_buf: Vec::new(),
            aof_seq: 0,
            aof_on: false,
            aof_db: usize::MAX,
            writes: 0,
        }
    }

    /// Register `n` to be woken when `key` in `db` may have something for it.
    pub fn add_waiter(&mut self, db: usize, key: Bytes, n: Arc<Notify>) {
        self.waiters.entry((db, key)).or_default().push(n);
    }

    /// Drop a client's registrations (after it was served or timed out).
    pub fn remove_waiter(&mut self, db: usize, key: &Bytes, n: &Arc<Notify>) {
        let k = (db, key.clone());
        if let Some(v) = self.waiters.get_mut(&k) {
            v.retain(|x| !Arc::ptr_eq(x, n));
            if v.is_empty() {
                self.waiters.remove(&k);
            }
        }
    }

    /// Something was pushed to / added under `key`: wake the clients blocked on it. They
    /// re-run their command under the lock, so a spurious wake is harmless; the first to get
    /// the lock is served and the others block again.
    #[inline]
    pub fn signal(&mut self, db: usize, key: &Bytes) {
        if self.waiters.is_empty() {
            return;
        }
        if let Some(v) = self.waiters.get(&(db, key.clone())) {
            for n in v {
                n.notify_one();
            }
        }
    }

    /// Append one command to the AOF stream (no-op when persistence is off).
    pub fn propagate<A: AsRef<[u8]>>(&mut self, db: usize, args: &[A]) {
        if !self.aof_on {
            return;
        }
        if self.aof_db != db {
            let n = db.to_string();
            crate::frame::encode_command(&mut self.aof_buf, &[b"SELECT".as_slice(), n.as_bytes()]);
            self.aof_db = db;
        }
        crate::frame::encode_command(&mut self.aof_buf, args);
        self.aof_seq += 1;
    }

    pub fn approx_memory(&self) -> usize {
        self.dbs
            .iter()
            .flat_map(|ks| ks.map.iter())
            .map(|(k, e)| k.len() + e.value.approx_size() + 64)
            .sum()
    }
}

/// Redis's glob matching (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`), used by KEYS, SCAN
/// MATCH and PSUBSCRIBE. Iterative with backtracking to the last `*` only, so a pattern full
/// of stars costs O(pattern × text), never exponential time (a client-supplied pattern must
/// not be able to stall the server).
pub fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            while pi < p.len() && p[pi] == b'*' {
                pi += 1;
            }
            if pi == p.len() {
                return true;
            }
            star = Some((pi, si));
            continue;
        }
        if pi < p.len() {
            if let Some(len) = match_one(&p[pi..], s[si]) {
                pi += len;
                si += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Does the single pattern element at the start of `p` match byte `c`? Returns the element's
/// length in the pattern.
fn match_one(p: &[u8], c: u8) -> Option<usize> {
    match p[0] {
        b'?' => Some(1),
        b'\\' if p.len() > 1 => (p[1] == c).then_some(2),
        b'[' => {
            let mut i = 1;
            let not = i < p.len() && p[i] == b'^';
            if not {
                i += 1;
            }
            let mut matched = false;
            while i < p.len() && p[i] != b']' {
                if p[i] == b'\\' && i + 1 < p.len() {
                    i += 1;
                    if p[i] == c {
                        matched = true;
                    }
                } else if i + 2 < p.len() && p[i + 1] == b'-' {
                    let (mut a, mut b) = (p[i], p[i + 2]);
                    if a > b {
                        std::mem::swap(&mut a, &mut b);
                    }
                    if c >= a && c <= b {
                        matched = true;
                    }
                    i += 2;
                } else if p[i] == c {
                    matched = true;
                }
                i += 1;
            }
            // An unterminated class ends at the end of the pattern, as in Redis.
            let len = (i + 1).min(p.len());
            (matched != not).then_some(len)
        }
        x => (x == c).then_some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b"abc"));
        assert!(glob_match(b"h?llo", b"hello"));
        assert!(glob_match(b"h[ae]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(glob_match(b"room.*", b"room.1"));
        assert!(!glob_match(b"room.*", b"roo"));
        assert!(glob_match(b"a\\*", b"a*"));
        assert!(glob_match(b"*a*b", b"xxaxxb"));
        assert!(!glob_match(b"*a*b", b"xxaxxc"));
        assert!(glob_match(b"", b""));
        assert!(!glob_match(b"[", b"a"));
        // Many stars on a long miss finishes quickly (no exponential backtracking).
        let p = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let t = vec![b'a'; 5000];
        assert!(!glob_match(p, &t));
    }
}
