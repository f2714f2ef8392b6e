//! The keyspace: sixteen numbered databases of typed values with millisecond expiry, plus the
//! things that must change atomically with them (blocked-client wakeups and the append-only
//! buffer). All of it lives behind one mutex in [`crate::shared::Shared`]: commands hold it
//! for a few hundred nanoseconds, while parsing, syscalls and reply encoding run on both cores
//! in parallel. One lock also keeps MULTI/EXEC, multi-key commands and AOF order trivially
//! atomic, which sharding would not.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::stream::Stream;

pub const NUM_DBS: usize = 16;

/// Milliseconds since the Unix epoch (what expiry and stream ids are measured in): the time
/// the running batch of commands started, when a connection set one ([`with_batch_time`]),
/// else the clock's.
#[inline]
pub fn now_ms() -> u64 {
    match BATCH_NOW.with(Cell::get) {
        0 => clock_ms(),
        t => t,
    }
}

/// The clock, read now.
pub fn clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

thread_local! {
    static BATCH_NOW: Cell<u64> = const { Cell::new(0) };
}

/// Run `f` with [`now_ms`] answering `now` on this thread: the commands of one pipelined
/// batch see one time, as Redis's cached time per event-loop turn, and the clock is read
/// once per batch instead of once or twice per command. Set only around synchronous code, so
/// no other task on the thread can see it.
#[inline]
pub fn with_batch_time<R>(now: u64, f: impl FnOnce() -> R) -> R {
    BATCH_NOW.with(|c| c.set(now));
    let r = f();
    BATCH_NOW.with(|c| c.set(0));
    r
}

/// A stored value. Types as Redis names them in `TYPE`.
#[derive(Debug, Clone)]
pub enum Value {
    Str(Bytes),
    List(VecDeque<Bytes>),
    /// Fields in insertion order, as Redis lists a small (listpack) hash: see `cmd::hashes`.
    Hash(indexmap::IndexMap<Bytes, Bytes>),
    Set(std::collections::HashSet<Bytes>),
    Stream(Box<Stream>),
    ZSet(Box<crate::zset::ZSet>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::Stream(_) => "stream",
            Value::ZSet(_) => "zset",
        }
    }

    /// Rough size in bytes, for `INFO memory`.
    pub fn approx_size(&self) -> usize {
        match self {
            Value::Str(b) => b.len() + 16,
            Value::List(l) => l.iter().map(|b| b.len() + 24).sum::<usize>() + 32,
            Value::Hash(h) => h.iter().map(|(k, v)| k.len() + v.len() + 48).sum::<usize>() + 48,
            Value::Set(s) => s.iter().map(|m| m.len() + 40).sum::<usize>() + 48,
            Value::Stream(s) => s.approx_size(),
            Value::ZSet(z) => z.approx_size(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    /// Absolute expiry in ms since the epoch; 0 = persistent.
    pub expire_at: u64,
    /// Position in [`Keyspace::slots`] (SCAN's cursor order); fixed while the key exists.
    slot: u32,
}

/// An AOF rewrite's point-in-time view of one database, kept copy-on-write: the rewriter walks
/// the slots in order in small chunks (taking the lock per chunk), and a write to a key it has
/// not reached yet first saves the key's value as it was when the rewrite started. Together
/// with the commands appended since that moment this gives what a fork would, without a fork
/// and without serialising the dataset under the lock.
#[derive(Debug, Default)]
struct Snapshot {
    /// Slots below this were serialised already.
    cursor: usize,
    /// Keys written since the rewrite started whose slot the rewriter had not passed yet: their
    /// value at the start (None = the key did not exist then).
    saved: HashMap<Bytes, Option<Entry>>,
}

/// Give `key` a free slot (reused if any, else a new one at the end).
fn alloc_slot(slots: &mut Vec<Option<Bytes>>, free: &mut Vec<u32>, key: Bytes) -> u32 {
    while let Some(i) = free.pop() {
        // Entries beyond the end (the tail was dropped) are stale.
        if let Some(s @ None) = slots.get_mut(i as usize) {
            *s = Some(key);
            return i;
        }
    }
    slots.push(Some(key));
    (slots.len() - 1) as u32
}

/// What a closed rewrite snapshot still owes: keys that existed when it started and were
/// deleted before the rewriter reached them, with their values then.
#[derive(Debug)]
pub struct SnapshotRest(Option<Box<Snapshot>>);

impl SnapshotRest {
    pub fn into_entries(self) -> impl Iterator<Item = (Bytes, Entry)> {
        self.0
            .into_iter()
            .flat_map(|s| s.saved.into_iter())
            .filter_map(|(k, e)| e.map(|e| (k, e)))
    }
}

/// One numbered database.
#[derive(Debug, Default)]
pub struct Keyspace {
    map: HashMap<Bytes, Entry>,
    /// (deadline, key) for every volatile key, so the active expirer finds due keys in order
    /// instead of scanning: keeps memory bounded when clients set heartbeats and vanish.
    expires: BTreeSet<(u64, Bytes)>,
    /// SCAN's order: every key has a slot that does not change while it exists, and a SCAN
    /// cursor is a slot index. A key present for a whole scan therefore sits at one index the
    /// cursor passes exactly once, whatever is added or deleted meanwhile (Redis's guarantee),
    /// and a call visits COUNT slots, not the keyspace. (A BTreeMap ordered by key would give the
    /// same guarantee but a key, not an integer, as cursor, and slower GET/SET; Redis's
    /// reverse-binary cursor needs its own hash table.) Freed slots are reused, trailing free
    /// slots are dropped, so the vector is as long as the keyspace was at its largest recently.
    slots: Vec<Option<Bytes>>,
    free: Vec<u32>,
    snap: Option<Box<Snapshot>>,
    /// Bumped by every method that can change a key (see [`Db::changes`]).
    changes: u64,
    /// Keyspace notifications are on: remember what the running command touched.
    record: bool,
    /// While recording: the keys the running command touched, in order.
    pub touches: Vec<Touch>,
    /// While recording: keys found expired (on access, or by the background expirer).
    pub expired: Vec<Bytes>,
    /// While recording: events a command named itself ([`Db::notify`]), in order.
    pub events: Vec<(u32, &'static str, Bytes)>,
}

/// A key a command touched, for keyspace notifications.
#[derive(Debug)]
pub struct Touch {
    pub key: Bytes,
    /// The command created the key.
    pub created: bool,
    /// The command gave the key an expiry.
    pub expire: bool,
}

impl Keyspace {
    fn is_expired(e: &Entry, now: u64) -> bool {
        e.expire_at != 0 && e.expire_at <= now
    }

    /// Called before any change to `key`: while a rewrite snapshot is open, remember the
    /// value the rewrite must see if it has not serialised this key yet.
    #[inline]
    fn before_write(&mut self, key: &[u8]) {
        self.changes = self.changes.wrapping_add(1);
        if let Some(s) = self.snap.as_deref_mut() {
            if s.saved.contains_key(key) {
                return;
            }
            match self.map.get_key_value(key) {
                None => {
                    s.saved.insert(Bytes::copy_from_slice(key), None);
                }
                Some((k, e)) if e.slot as usize >= s.cursor => {
                    s.saved.insert(k.clone(), Some(e.clone()));
                }
                // Already serialised: later changes reach the new file as commands.
                Some(_) => {}
            }
        }
    }

    fn free_slot(&mut self, i: u32) {
        if let Some(s) = self.slots.get_mut(i as usize) {
            *s = None;
        }
        if i as usize + 1 == self.slots.len() {
            while matches!(self.slots.last(), Some(None)) {
                self.slots.pop();
            }
        } else {
            self.free.push(i);
        }
    }

    /// A key chosen at random (RANDOMKEY), expired keys met on the way dropped as Redis does:
    /// random slots first (each key has one, so every live key is as likely), then, if those
    /// hit only free or expired slots, the first live key in slot order.
    pub fn random_key(&mut self, now: u64) -> Option<Bytes> {
        const TRIES: usize = 100;
        for _ in 0..TRIES {
            if self.map.is_empty() || self.slots.is_empty() {
                return None;
            }
            let i = fastrand::usize(..self.slots.len());
            let Some(key) = self.slots.get(i).cloned().flatten() else {
                continue;
            };
            if self.map.get(&key).is_some_and(|e| Self::is_expired(e, now)) {
                self.remove(&key);
                continue;
            }
            return Some(key);
        }
        self.map
            .iter()
            .filter(|(_, e)| !Self::is_expired(e, now))
            .min_by_key(|(_, e)| e.slot)
            .map(|(k, _)| k.clone())
    }

    /// Drop `key` if its time has come (lazy expiry, as Redis does on access).
    fn expire_if_due(&mut self, key: &[u8], now: u64) {
        let due = matches!(self.map.get(key), Some(e) if Self::is_expired(e, now));
        if due {
            self.remove_expired(key);
        }
    }

    /// Remove a key whose deadline passed. Not a change a command made (a write command that
    /// finds its key expired and then does nothing must not count as having changed the
    /// dataset), and notified as `expired`, not as the command's own event.
    fn remove_expired(&mut self, key: &[u8]) {
        let (changes, record) = (self.changes, std::mem::take(&mut self.record));
        if self.remove(key).is_some() && record {
            self.expired.push(Bytes::copy_from_slice(key));
        }
        (self.changes, self.record) = (changes, record);
    }

    /// Remember that the running command touched `key` (only while notifications are on).
    #[inline]
    fn touch(&mut self, key: &[u8], created: bool, expire: bool) {
        if !self.record {
            return;
        }
        match self.touches.iter_mut().rev().find(|t| t.key == key) {
            Some(t) => {
                t.created |= created;
                t.expire |= expire;
            }
            None => self.touches.push(Touch {
                key: Bytes::copy_from_slice(key),
                created,
                expire,
            }),
        }
    }

    pub fn get(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
        self.expire_if_due(key, now);
        self.map.get(key)
    }

    /// Mutable access: only for changing the value in place (expiry goes through
    /// [`Keyspace::set_expire`]).
    /// How many times a key of this database was (or may have been) changed.
    #[inline]
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Counts as a change when the key exists (see [`Db::changes`]).
    pub fn get_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        self.expire_if_due(key, now);
        if !self.tracked() {
            // The common case: one lookup.
            let Keyspace { map, changes, .. } = self;
            let e = map.get_mut(key)?;
            *changes = changes.wrapping_add(1);
            return Some(e);
        }
        if !self.map.contains_key(key) {
            return None;
        }
        self.before_write(key);
        self.touch(key, false, false);
        self.map.get_mut(key)
    }

    /// A rewrite snapshot is open or notifications are on: a change must first be shown to
    /// them (which costs a lookup more); otherwise a change is counted and made in one.
    #[inline]
    fn tracked(&self) -> bool {
        self.snap.is_some() || self.record
    }

    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.get(key, now).is_some()
    }

    /// The entry as stored, without the expiry check (the caller just touched it).
    pub fn peek(&self, key: &[u8]) -> Option<&Entry> {
        self.map.get(key)
    }

    /// Every key and entry, expired ones included (KEYS and RANDOMKEY filter).
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.map.iter()
    }

    /// Store `value` under `key`, dropping any previous value and its expiry (SET semantics).
    pub fn insert(&mut self, key: Bytes, value: Value) {
        if self.tracked() {
            self.before_write(&key);
            let created = !self.map.contains_key(&key);
            self.touch(&key, created, false);
        } else {
            self.changes = self.changes.wrapping_add(1);
        }
        match self.map.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let e = o.get_mut();
                e.value = value;
                let old = std::mem::take(&mut e.expire_at);
                if old != 0 {
                    self.expires.remove(&(old, o.key().clone()));
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                let slot = alloc_slot(&mut self.slots, &mut self.free, v.key().clone());
                v.insert(Entry {
                    value,
                    expire_at: 0,
                    slot,
                });
            }
        }
    }

    /// Store `value` keeping the key's current expiry (SET ... KEEPTTL, list/hash creation).
    pub fn insert_keep_ttl(&mut self, key: Bytes, value: Value) {
        if !self.tracked() {
            let Keyspace { map, changes, .. } = self;
            if let Some(e) = map.get_mut(&key) {
                *changes = changes.wrapping_add(1);
                e.value = value;
                return;
            }
            return self.insert(key, value);
        }
        if !self.map.contains_key(&key) {
            return self.insert(key, value);
        }
        self.before_write(&key);
        self.touch(&key, false, false);
        if let Some(e) = self.map.get_mut(&key) {
            e.value = value;
        }
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        if self.tracked() {
            if !self.map.contains_key(key) {
                return None;
            }
            self.before_write(key);
            self.touch(key, false, false);
        }
        let (k, e) = self.map.remove_entry(key)?;
        if !self.tracked() {
            self.changes = self.changes.wrapping_add(1);
        }
        if e.expire_at != 0 {
            self.expires.remove(&(e.expire_at, k));
        }
        self.free_slot(e.slot);
        Some(e)
    }

    /// Set (at > 0) or clear (at == 0) the expiry of an existing key. False if no such key.
    pub fn set_expire(&mut self, key: &[u8], at: u64) -> bool {
        let tracked = self.tracked();
        if tracked {
            if !self.map.contains_key(key) {
                return false;
            }
            self.before_write(key);
            self.touch(key, false, at != 0);
        }
        let Keyspace { map, changes, .. } = self;
        let Some(e) = map.get_mut(key) else {
            return false;
        };
        if !tracked {
            *changes = changes.wrapping_add(1);
        }
        let old = std::mem::replace(&mut e.expire_at, at);
        if old != 0 || at != 0 {
            let Some((k, _)) = self.map.get_key_value(key) else {
                return false;
            };
            let k = k.clone();
            if old != 0 {
                self.expires.remove(&(old, k.clone()));
            }
            if at != 0 {
                self.expires.insert((at, k));
            }
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
            if self.map.get(&key).is_some_and(|e| e.expire_at == at) {
                self.remove_expired(&key);
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
        self.changes = self.changes.wrapping_add(1);
        if let Some(s) = self.snap.as_deref_mut() {
            // A rewrite in progress still needs every key it has not reached: hand them over
            // (moved, not copied: they are being dropped anyway).
            for (k, e) in self.map.drain() {
                if e.slot as usize >= s.cursor {
                    s.saved.entry(k).or_insert(Some(e));
                }
            }
        }
        self.map.clear();
        self.expires.clear();
        self.slots.clear();
        self.free.clear();
    }

    /// One SCAN step from `cursor`: visits at most `count` keys and `10 × count` empty slots
    /// (as Redis bounds a call's work), calls `f` for each live key, and returns the next
    /// cursor (0 = done).
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        now: u64,
        mut f: impl FnMut(&Bytes, &Entry),
    ) -> u64 {
        let mut i = usize::try_from(cursor).unwrap_or(usize::MAX);
        let (mut keys, mut empty) = (0usize, 0usize);
        let max_empty = count.saturating_mul(10);
        while i < self.slots.len() && keys < count && empty < max_empty {
            match &self.slots[i] {
                Some(k) => {
                    keys += 1;
                    if let Some(e) = self.map.get(k) {
                        if !Self::is_expired(e, now) {
                            f(k, e);
                        }
                    }
                }
                None => empty += 1,
            }
            i += 1;
        }
        if i >= self.slots.len() {
            0
        } else {
            i as u64
        }
    }

    /// Start a rewrite snapshot of this database (see [`Snapshot`]).
    pub fn snapshot_begin(&mut self) {
        self.snap = Some(Box::default());
    }

    /// Serialise the next keys of the snapshot with `f` until it returns false (budget spent)
    /// or `max_slots` slots were passed (empty ones and keys created since the start cost no
    /// serialising, but they cost time under the lock too); returns true once every slot has
    /// been passed.
    pub fn snapshot_step(
        &mut self,
        max_slots: usize,
        mut f: impl FnMut(&Bytes, &Entry) -> bool,
    ) -> bool {
        let Some(s) = self.snap.as_deref_mut() else {
            return true;
        };
        let end = s.cursor.saturating_add(max_slots);
        while s.cursor < self.slots.len() && s.cursor < end {
            let i = s.cursor;
            s.cursor += 1;
            let Some(k) = &self.slots[i] else { continue };
            let more = match s.saved.remove(k) {
                Some(Some(old)) => f(k, &old),
                // Created after the rewrite started.
                Some(None) => true,
                None => match self.map.get(k) {
                    Some(e) => f(k, e),
                    None => true,
                },
            };
            if !more {
                break;
            }
        }
        s.cursor >= self.slots.len()
    }

    /// Close the snapshot; returns what it still owes (O(1) under the lock: the caller walks
    /// or drops it after releasing the lock, as it may hold many saved values).
    pub fn snapshot_end(&mut self) -> SnapshotRest {
        SnapshotRest(self.snap.take())
    }

    /// Is a rewrite snapshot open?
    pub fn snapshot_open(&self) -> bool {
        self.snap.is_some()
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
    /// Set when SWAPDB ran while an AOF rewrite was taking its snapshot (the rewrite restarts).
    pub rewrite_aborted: bool,
    /// SWAPDB's share of [`Db::changes`] (a swap changes no keyspace's own count).
    swaps: u64,
    /// Commands appended to the AOF stream (or that would have been, with persistence off).
    pub logged: u64,
    /// `notify-keyspace-events` in force (see [`crate::events`]).
    pub notify_flags: u32,
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
            rewrite_aborted: false,
            swaps: 0,
            logged: 0,
            notify_flags: 0,
        }
    }

    /// How many times a key was (or may have been) changed, over all databases: the request
    /// path compares it before and after a write command to know whether it changed the
    /// dataset, so no command has to say so (`cmd::apply`). Every keyspace method that can
    /// change a key counts; a read never does.
    #[inline]
    pub fn changes(&self) -> u64 {
        self.dbs
            .iter()
            .fold(self.swaps, |n, ks| n.wrapping_add(ks.changes))
    }

    /// Turn keyspace notifications to `flags` (CONFIG SET notify-keyspace-events): the
    /// keyspaces record what commands touch only while something is to be published.
    pub fn set_notify_flags(&mut self, flags: u32) {
        self.notify_flags = flags;
        let on = crate::events::enabled(flags);
        for ks in &mut self.dbs {
            ks.record = on;
            if !on {
                ks.touches.clear();
                ks.expired.clear();
                ks.events.clear();
            }
        }
    }

    /// Notify `event` of class `class` on `key` in database `db` (for the commands the table
    /// marks [`crate::events::Notify::Custom`], and extra events of the others).
    pub fn notify(&mut self, db: usize, class: u32, event: &'static str, key: &[u8]) {
        let ks = &mut self.dbs[db];
        if ks.record && self.notify_flags & class != 0 {
            ks.events.push((class, event, Bytes::copy_from_slice(key)));
        }
    }

    /// Register `n` to be woken when `key` in `db` is written.
    pub fn add_waiter(&mut self, db: usize, key: Bytes, n: Arc<Notify>) {
        self.waiters.entry((db, key)).or_default().push(n);
    }

    /// Drop a client's registrations (after it was served or timed out).
    pub fn remove_waiter(&mut self, db: usize, key: &Bytes, n: &Arc<Notify>) {
        let k = (db, key.clone());
        if let Some(v) = self.waiters.get_mut(&k) {
            v.retain(|w| !Arc::ptr_eq(w, n));
            if v.is_empty() {
                self.waiters.remove(&k);
            }
        }
    }

    /// `key` was written (filled, emptied, replaced, deleted): wake the clients blocked on
    /// it. They re-run their command under the lock, so a spurious wake is harmless; the
    /// first to get the lock is served and the others block again (or, for XREADGROUP on a
    /// key that went away, get Redis's error).
    #[inline]
    pub fn signal(&self, db: usize, key: &Bytes) {
        if let Some(v) = self.waiters.get(&(db, key.clone())) {
            for w in v {
                w.notify_one();
            }
        }
    }

    /// Whether any client is blocked on a key (the write path asks once per command).
    #[inline]
    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Any key may have changed (FLUSHALL, FLUSHDB, SWAPDB): wake every blocked client.
    pub fn signal_all(&self) {
        for w in self.waiters.values().flatten() {
            w.notify_one();
        }
    }

    /// Give `key` in `db` the absolute deadline `at` (ms), and the AOF what happened in
    /// absolute terms (a replay must not restart the clock): `DEL` if `at` has passed (the key
    /// goes now), else `PEXPIREAT`. EXPIRE and GETEX.
    pub fn expire_at(&mut self, db: usize, key: &Bytes, at: u64, now: u64) {
        if at <= now {
            self.dbs[db].remove(key);
            self.propagate(db, &[b"DEL".as_slice(), key]);
            self.notify(db, crate::events::GENERIC, "del", key);
        } else {
            self.dbs[db].set_expire(key, at);
            let at = at.to_string();
            self.propagate(db, &[b"PEXPIREAT".as_slice(), key, at.as_bytes()]);
            self.notify(db, crate::events::GENERIC, "expire", key);
        }
    }

    /// Append one command to the AOF stream (no-op when persistence is off, except that it is
    /// counted: the request path knows from [`Db::logged`] that a command logged itself).
    pub fn propagate<A: AsRef<[u8]>>(&mut self, db: usize, args: &[A]) {
        self.logged = self.logged.wrapping_add(1);
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

    /// Append the command as sent with argument `at` replaced by `with` (XADD's generated
    /// id); with persistence off only counted, without building anything.
    pub fn propagate_replacing(&mut self, db: usize, args: &[Bytes], at: usize, with: &[u8]) {
        if !self.aof_on {
            self.logged = self.logged.wrapping_add(1);
            return;
        }
        let parts: Vec<&[u8]> = args
            .iter()
            .enumerate()
            .map(|(i, a)| if i == at { with } else { a.as_ref() })
            .collect();
        self.propagate(db, &parts);
    }

    /// SWAPDB moves whole databases, which a rewrite's per-database snapshot cannot follow:
    /// close the snapshots and tell the rewriter to start again.
    pub fn swap_dbs(&mut self, a: usize, b: usize) -> Vec<SnapshotRest> {
        let mut rest = Vec::new();
        if self.dbs.iter().any(Keyspace::snapshot_open) {
            rest = self.dbs.iter_mut().map(Keyspace::snapshot_end).collect();
            self.rewrite_aborted = true;
        }
        self.dbs.swap(a, b);
        self.swaps = self.swaps.wrapping_add(1);
        rest
    }

    pub fn approx_memory(&self) -> usize {
        self.dbs
            .iter()
            .flat_map(|ks| ks.iter())
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
    use super::{glob_match, Keyspace, Value};
    use bytes::Bytes;
    use std::collections::HashMap;

    fn str_of(v: &Value) -> Bytes {
        match v {
            Value::Str(b) => b.clone(),
            _ => unreachable!(),
        }
    }

    /// The rewrite snapshot yields exactly the keyspace as it was when it began, each key once,
    /// whatever is written, deleted, re-created or flushed between its chunks.
    #[test]
    fn snapshot_is_the_state_at_its_start_under_concurrent_writes() {
        for seed in 0..200u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut ks = Keyspace::default();
            let key = |i: u32| Bytes::from(format!("k{i}"));
            for i in 0..rng.u32(0..300) {
                ks.insert(key(i), Value::Str(Bytes::from(format!("v{i}"))));
                if rng.u8(0..4) == 0 {
                    ks.set_expire(&key(i), u64::MAX / 2);
                }
            }
            for _ in 0..rng.u32(0..100) {
                ks.remove(&key(rng.u32(0..300)));
            }
            let at_start: HashMap<Bytes, (Bytes, u64)> = ks
                .iter()
                .map(|(k, e)| (k.clone(), (str_of(&e.value), e.expire_at)))
                .collect();
            ks.snapshot_begin();
            let mut got: Vec<(Bytes, (Bytes, u64))> = Vec::new();
            let mut n = 0;
            loop {
                for _ in 0..rng.usize(0..20) {
                    n += 1;
                    let k = key(rng.u32(0..400));
                    match rng.u8(0..100) {
                        0..=39 => ks.insert(k, Value::Str(Bytes::from(format!("w{n}")))),
                        40..=64 => drop(ks.remove(&k)),
                        65..=79 => {
                            if let Some(e) = ks.get_mut(&k, 0) {
                                e.value = Value::Str(Bytes::from(format!("m{n}")));
                            }
                        }
                        80..=97 => drop(ks.set_expire(&k, rng.u64(0..1000))),
                        98 => ks.clear(),
                        _ => drop(ks.expire_due(500, 10)),
                    }
                }
                let budget = rng.usize(1..8);
                let mut taken = 0;
                let done = ks.snapshot_step(rng.usize(1..50), |k, e| {
                    got.push((k.clone(), (str_of(&e.value), e.expire_at)));
                    taken += 1;
                    taken < budget
                });
                if done {
                    break;
                }
            }
            for (k, e) in ks.snapshot_end().into_entries() {
                got.push((k, (str_of(&e.value), e.expire_at)));
            }
            let mut seen = HashMap::new();
            for (k, v) in got {
                assert!(
                    seen.insert(k.clone(), v).is_none(),
                    "seed {seed}: {k:?} twice"
                );
            }
            assert_eq!(seen, at_start, "seed {seed}");
            assert!(!ks.snapshot_open());
        }
    }

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
