//! The stream data type (XADD / XREADGROUP ...): entries ordered by id, consumer groups with
//! their pending-entries lists, the bookkeeping `XINFO` reports.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;

/// `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    /// The next id after this one, or `None` at the very end.
    pub fn incr(self) -> Option<StreamId> {
        if self.seq == u64::MAX {
            if self.ms == u64::MAX {
                None
            } else {
                Some(StreamId::new(self.ms + 1, 0))
            }
        } else {
            Some(StreamId::new(self.ms, self.seq + 1))
        }
    }

    pub fn decr(self) -> Option<StreamId> {
        if self.seq == 0 {
            if self.ms == 0 {
                None
            } else {
                Some(StreamId::new(self.ms - 1, u64::MAX))
            }
        } else {
            Some(StreamId::new(self.ms, self.seq - 1))
        }
    }

    pub fn to_bytes(self) -> Bytes {
        Bytes::from(self.to_string())
    }

    /// Parse `ms-seq` or `ms` (then `seq` is `missing_seq`). Strict like Redis: digits only.
    pub fn parse(s: &[u8], missing_seq: u64) -> Option<StreamId> {
        let s = std::str::from_utf8(s).ok()?;
        match s.split_once('-') {
            Some((ms, seq)) => Some(StreamId::new(parse_u64(ms)?, parse_u64(seq)?)),
            None => Some(StreamId::new(parse_u64(s)?, missing_seq)),
        }
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One entry of a group's pending-entries list.
#[derive(Debug, Clone)]
pub struct Pending {
    pub consumer: Bytes,
    pub delivery_time: u64,
    pub delivery_count: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Consumer {
    pub seen_time: u64,
    pub active_time: Option<u64>,
    pub pending: BTreeSet<StreamId>,
}

#[derive(Debug, Clone, Default)]
pub struct Group {
    pub last_id: StreamId,
    pub entries_read: Option<u64>,
    pub pel: BTreeMap<StreamId, Pending>,
    pub consumers: BTreeMap<Bytes, Consumer>,
}

impl Group {
    /// The consumer named `name`, created on first use as XREADGROUP does.
    pub fn consumer(&mut self, name: &Bytes, now: u64) -> &mut Consumer {
        self.consumers
            .entry(name.clone())
            .or_insert_with(|| Consumer {
                seen_time: now,
                active_time: None,
                pending: BTreeSet::new(),
            })
    }

    /// Remove `id` from the PEL (XACK). True when it was pending.
    pub fn ack(&mut self, id: StreamId) -> bool {
        match self.pel.remove(&id) {
            Some(p) => {
                if let Some(c) = self.consumers.get_mut(&p.consumer) {
                    c.pending.remove(&id);
                }
                true
            }
            None => false,
        }
    }

    /// Make `consumer` the owner of pending `id`, recording a delivery at `now`.
    pub fn assign(&mut self, id: StreamId, consumer: &Bytes, now: u64, bump: bool) {
        let count = match self.pel.get(&id) {
            Some(p) => {
                if let Some(c) = self.consumers.get_mut(&p.consumer) {
                    c.pending.remove(&id);
                }
                p.delivery_count + u64::from(bump)
            }
            None => 1,
        };
        self.pel.insert(
            id,
            Pending {
                consumer: consumer.clone(),
                delivery_time: now,
                delivery_count: count,
            },
        );
        self.consumer(consumer, now).pending.insert(id);
    }
}

#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// id -> flat [field, value, field, value...].
    pub entries: BTreeMap<StreamId, Vec<Bytes>>,
    pub last_id: StreamId,
    pub max_deleted_id: StreamId,
    pub entries_added: u64,
    pub groups: BTreeMap<Bytes, Group>,
}

impl Stream {
    pub fn approx_size(&self) -> usize {
        self.entries
            .values()
            .map(|f| f.iter().map(|b| b.len() + 16).sum::<usize>() + 48)
            .sum::<usize>()
            + self
                .groups
                .values()
                .map(|g| g.pel.len() * 64)
                .sum::<usize>()
            + 128
    }

    pub fn first_id(&self) -> Option<StreamId> {
        self.entries.keys().next().copied()
    }

    /// Trim to at most `maxlen` entries; with `approx` Redis may keep a few more (it trims
    /// whole radix-tree nodes). We trim exactly, which Redis's contract allows. Returns how
    /// many were removed; `limit` caps the work as Redis's LIMIT does (0 = none).
    pub fn trim_maxlen(&mut self, maxlen: u64, limit: u64) -> u64 {
        let mut removed = 0;
        while self.entries.len() as u64 > maxlen {
            if limit != 0 && removed >= limit {
                break;
            }
            if let Some((id, _)) = self.entries.pop_first() {
                if id > self.max_deleted_id {
                    self.max_deleted_id = id;
                }
                removed += 1;
            }
        }
        removed
    }

    pub fn trim_minid(&mut self, minid: StreamId, limit: u64) -> u64 {
        let mut removed = 0;
        while let Some((&id, _)) = self.entries.first_key_value() {
            if id >= minid || (limit != 0 && removed >= limit) {
                break;
            }
            self.entries.pop_first();
            if id > self.max_deleted_id {
                self.max_deleted_id = id;
            }
            removed += 1;
        }
        removed
    }

    /// Entries read count for a group whose last delivered id is `last`, when it can be known:
    /// Redis 7.0's `streamEstimateDistanceFromFirstEverEntry`, step for step, so XINFO's
    /// `entries-read` and `lag` are the numbers Redis gives.
    pub fn estimate_entries_read(&self, last: StreamId) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.entries.is_empty() && last <= self.max_deleted_id {
            return Some(self.entries_added);
        }
        if last == self.last_id {
            return Some(self.entries_added);
        }
        if last > self.last_id {
            return None;
        }
        let first = self.first_id().unwrap_or(StreamId::MIN);
        if self.max_deleted_id == StreamId::MIN || self.max_deleted_id < first {
            let len = self.entries.len() as u64;
            if last < first {
                return Some(self.entries_added.saturating_sub(len));
            }
            if last == first {
                return Some(self.entries_added.saturating_sub(len) + 1);
            }
        }
        None
    }

    /// Redis's `streamRangeHasTombstones(s, from, NULL)`: whether an entry at or after `from`
    /// was deleted (a group's read counter cannot simply be advanced past it).
    pub fn has_tombstones_from(&self, from: StreamId) -> bool {
        if self.entries.is_empty() || self.max_deleted_id == StreamId::MIN {
            return false;
        }
        if self.first_id().is_some_and(|f| f > self.max_deleted_id) {
            return false;
        }
        from <= self.max_deleted_id
    }
}
