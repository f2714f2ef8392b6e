//! The sorted set type: a member → score hash map plus an ordered index of (score, member),
//! ties ordered by member bytes as in Redis. Score ranges are found in the index in O(log n);
//! ranks and lex ranges are linear scans of the index (see `cmd::zsets`, the commands).

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;

/// A score in the ordered index. Never NaN (every path that could make one refuses it, as
/// Redis does), so `partial_cmp` is a total order, in which -0 and 0 are equal as in C.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Score(pub(crate) f64);

impl PartialEq for Score {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Score {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.partial_cmp(&o.0).unwrap_or(Ordering::Equal)
    }
}

/// A sorted set: each member once, with a score; ordered by (score, member).
#[derive(Debug, Clone, Default)]
pub struct ZSet {
    pub(crate) scores: HashMap<Bytes, f64>,
    /// The same members, ordered. A member's bytes are shared with its `scores` key.
    pub(crate) order: BTreeSet<(Score, Bytes)>,
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Set `member`'s score (never NaN); true if it was not there. -0 is stored as 0, as
    /// Redis's listpack stores it.
    pub fn insert(&mut self, member: Bytes, score: f64) -> bool {
        let score = if score == 0.0 { 0.0 } else { score };
        match self.scores.get_mut(&member) {
            Some(old) => {
                if *old != score {
                    self.order.remove(&(Score(*old), member.clone()));
                    self.order.insert((Score(score), member));
                    *old = score;
                }
                false
            }
            None => {
                self.order.insert((Score(score), member.clone()));
                self.scores.insert(member, score);
                true
            }
        }
    }

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let (m, s) = self.scores.remove_entry(member)?;
        self.order.remove(&(Score(s), m));
        Some(s)
    }

    /// Members and scores from the lowest to the highest.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> {
        self.order.iter().map(|(s, m)| (m, s.0))
    }

    /// Rough size in bytes, for `INFO memory`.
    pub fn approx_size(&self) -> usize {
        self.scores.keys().map(|m| m.len() + 96).sum::<usize>() + 64
    }

    /// 0-based rank from the lowest (or, `rev`, the highest) score, and the score: a scan.
    pub(crate) fn rank(&self, member: &[u8], rev: bool) -> Option<(usize, f64)> {
        let (m, &s) = self.scores.get_key_value(member)?;
        let below = self.order.range(..(Score(s), m.clone())).count();
        Some((if rev { self.len() - 1 - below } else { below }, s))
    }

    pub(crate) fn pop(&mut self, max: bool) -> Option<(Bytes, f64)> {
        let (s, m) = if max {
            self.order.pop_last()?
        } else {
            self.order.pop_first()?
        };
        self.scores.remove(&m);
        Some((m, s.0))
    }
}
