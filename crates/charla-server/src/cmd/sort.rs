//! SORT and SORT_RO: the elements of a list or set, sorted by their numeric value (C's
//! `strtod`, as Redis reads them) or, with ALPHA, by their bytes; BY a pattern (`*` replaced
//! by the element, `key->field` reading a hash field; a pattern without `*`, such as
//! `nosort`, sorts nothing), LIMIT offset count, GET patterns (`#` is the element itself),
//! ASC / DESC, and STORE (SORT only: the result becomes a list at the destination, or the
//! destination goes when the result is empty).
//!
//! As in Redis 7.0: numeric ties fall back to comparing the elements' bytes, so the result is
//! fully determined; ALPHA compares C strings (up to a NUL byte) as Redis's `strcoll` does in
//! the C locale, and whole byte strings with STORE; elements that tie under ALPHA BY keep
//! their order (glibc's `qsort` is a stable merge sort). A set's elements come, before
//! sorting, in the order Redis iterates a set it keeps as an intset (ascending integers) —
//! for other sets, whose order in Redis is its hash table's, in byte order — so `BY nosort`
//! on an all-integer set answers as Redis does, and SORT … STORE replays the same from the
//! AOF (where it is logged as sent: it is deterministic).
//!
//! SORT is flagged a write command as in Redis (it may STORE); without STORE it changes
//! nothing, so nothing is logged. A client blocked on the STORE destination is woken.
//!
//! Memory: the reply (or stored list) is never allowed to grow past the larger of
//! `proto-max-bulk-len` and the sorted value's own size (GET patterns could otherwise repeat
//! a big value once per element): such a SORT answers an error instead.

use std::cmp::Ordering;
use std::collections::VecDeque;

use bytes::Bytes;

use super::args::{c_strtod, is, own, parse_i64, SYNTAX, WRONGTYPE};
use super::spec::{Ctx, Res};
use crate::db::{now_ms, Db, Keyspace, Value};
use crate::events::{GENERIC, LIST};

/// Redis's `set-max-intset-entries`.
const INTSET_ENTRIES: usize = 512;

const TOO_BIG: &str =
    "ERR SORT result is longer than proto-max-bulk-len and than the sorted value itself";

/// The value a BY or GET pattern names for `elem` (Redis's `lookupKeyByPattern`).
fn by_pattern(ks: &mut Keyspace, pattern: &[u8], elem: &Bytes, now: u64) -> Option<Bytes> {
    if pattern == b"#" {
        return Some(elem.clone());
    }
    let star = pattern.iter().position(|&c| c == b'*')?;
    // `->field` after the star, with a non-empty field, reads a hash field.
    let arrow = pattern[star + 1..]
        .windows(2)
        .position(|w| w == b"->")
        .map(|i| star + 1 + i)
        .filter(|&i| i + 2 < pattern.len());
    let key_end = arrow.unwrap_or(pattern.len());
    let mut key = Vec::with_capacity(key_end + elem.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(elem);
    key.extend_from_slice(&pattern[star + 1..key_end]);
    let value = &ks.get(&key, now)?.value;
    match (arrow, value) {
        (Some(a), Value::Hash(h)) => h.get(&pattern[a + 2..]).cloned(),
        (None, Value::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The elements of a set in the order Redis would iterate it (see the module doc).
fn set_order(set: &std::collections::HashSet<Bytes>) -> Vec<Bytes> {
    if set.len() <= INTSET_ENTRIES {
        let ints: Option<Vec<(i64, &Bytes)>> =
            set.iter().map(|m| parse_i64(m).map(|n| (n, m))).collect();
        if let Some(mut ints) = ints {
            ints.sort_unstable_by_key(|(n, _)| *n);
            return ints.into_iter().map(|(_, m)| m.clone()).collect();
        }
    }
    let mut v: Vec<Bytes> = set.iter().cloned().collect();
    v.sort_unstable();
    v
}

/// A number as SORT reads it: `strtod` must use the whole string (or stop at a NUL byte, as
/// the C string ends there), and the result must be in range and not NaN.
fn score(s: &[u8]) -> Option<f64> {
    let (v, used, erange) = c_strtod(s);
    let whole = used == s.len() || s[used] == 0;
    (whole && !erange && !v.is_nan()).then_some(v)
}

/// Compare as C's `strcmp` (what `strcoll` is in the C locale): up to the first NUL byte.
fn c_str_cmp(a: &[u8], b: &[u8]) -> Ordering {
    fn cut(s: &[u8]) -> &[u8] {
        &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())]
    }
    cut(a).cmp(cut(b))
}

struct Item {
    elem: Bytes,
    score: f64,
    /// ALPHA BY: the value to compare (None: the key or field is missing, which sorts first).
    by: Option<Bytes>,
}

/// SORT key [BY pattern] [LIMIT offset count] [GET pattern …] [ASC|DESC] [ALPHA]
/// [STORE destination]; SORT_RO without STORE.
pub fn sort(ctx: &mut Ctx, db: &mut Db) -> Res {
    let readonly = is(&ctx.args[0], "SORT_RO");
    let args = ctx.args;
    let (mut desc, mut alpha, mut dontsort) = (false, false, false);
    let (mut limit_start, mut limit_count) = (0i64, -1i64);
    let mut sortby: Option<&Bytes> = None;
    let mut store: Option<&Bytes> = None;
    let mut gets: Vec<&Bytes> = Vec::new();
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = &args[j];
        if is(a, "ASC") {
            desc = false;
        } else if is(a, "DESC") {
            desc = true;
        } else if is(a, "ALPHA") {
            alpha = true;
        } else if is(a, "LIMIT") && left >= 2 {
            let Some(s) = ctx.int_arg(j + 1) else {
                return Res::Ok;
            };
            let Some(c) = ctx.int_arg(j + 2) else {
                return Res::Ok;
            };
            (limit_start, limit_count) = (s, c);
            j += 2;
        } else if !readonly && is(a, "STORE") && left >= 1 {
            store = Some(&args[j + 1]);
            j += 1;
        } else if is(a, "BY") && left >= 1 {
            sortby = Some(&args[j + 1]);
            // A pattern without `*` names no per-element key: nothing to sort by. (A later
            // BY with a star does not undo it, as in Redis.)
            if !args[j + 1].contains(&b'*') {
                dontsort = true;
            }
            j += 1;
        } else if is(a, "GET") && left >= 1 {
            gets.push(&args[j + 1]);
            j += 1;
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
        j += 1;
    }

    let now = now_ms();
    let dbi = ctx.client.db;
    let ks = &mut db.dbs[dbi];
    let (elems, is_set): (Vec<Bytes>, bool) = match ks.get(&args[1], now).map(|e| &e.value) {
        None => (Vec::new(), false),
        Some(Value::List(l)) => (l.iter().cloned().collect(), false),
        Some(Value::Set(s)) => (set_order(s), true),
        // A sorted set in its order (by score).
        Some(Value::ZSet(z)) => (z.iter().map(|(m, _)| m.clone()).collect(), false),
        Some(_) => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
    };
    // A set's order is its table's: sorted anyway when the result is stored (so that it
    // does not depend on the table), as Redis does.
    if dontsort && is_set && store.is_some() {
        dontsort = false;
        alpha = true;
        sortby = None;
    }

    // LIMIT as Redis clamps it: [start, end], empty when end < start.
    let len = elems.len() as i64;
    let mut start = limit_start.clamp(0, len);
    let count = limit_count.clamp(-1, len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }

    let source_bytes: usize = elems.iter().map(Bytes::len).sum();
    let mut items: Vec<Item> = if dontsort && !is_set {
        // A list in its own order (reversed by DESC), only the range LIMIT asks for.
        let mut v: Vec<Item> = Vec::new();
        if end >= start {
            let range = start as usize..=end as usize;
            let pick = |e: &Bytes| Item {
                elem: e.clone(),
                score: 0.0,
                by: None,
            };
            v = if desc {
                elems
                    .iter()
                    .rev()
                    .skip(range.start().to_owned())
                    .take(range.count())
                    .map(pick)
                    .collect()
            } else {
                elems[range].iter().map(pick).collect()
            };
            end -= start;
            start = 0;
        }
        v
    } else {
        elems
            .into_iter()
            .map(|elem| Item {
                elem,
                score: 0.0,
                by: None,
            })
            .collect()
    };

    let mut bad_score = false;
    if !dontsort {
        for it in &mut items {
            let by = match sortby {
                Some(p) => match by_pattern(ks, p, &it.elem, now) {
                    Some(v) => v,
                    None => continue,
                },
                None => it.elem.clone(),
            };
            if alpha {
                if sortby.is_some() {
                    it.by = Some(by);
                }
            } else {
                match score(&by) {
                    Some(s) => it.score = s,
                    None => bad_score = true,
                }
            }
        }
        let stored = store.is_some();
        let by_pattern = sortby.is_some();
        let cmp = |a: &Item, b: &Item| -> Ordering {
            let c = if !alpha {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| a.elem.cmp(&b.elem))
            } else if by_pattern {
                match (&a.by, &b.by) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (Some(x), Some(y)) if stored => x.cmp(y),
                    (Some(x), Some(y)) => c_str_cmp(x, y),
                }
            } else if stored {
                a.elem.cmp(&b.elem)
            } else {
                c_str_cmp(&a.elem, &b.elem)
            };
            if desc {
                c.reverse()
            } else {
                c
            }
        };
        items.sort_by(cmp);
    }

    if bad_score {
        ctx.out
            .err("ERR One or more scores can't be converted into double");
        return Res::Ok;
    }
    let range: &[Item] = if end >= start {
        &items[start as usize..=end as usize]
    } else {
        &[]
    };
    let max_bulk = ctx
        .shared
        .net
        .proto_max_bulk_len
        .load(std::sync::atomic::Ordering::Relaxed);
    let limit = max_bulk.max(source_bytes);

    match store {
        None => {
            let mark = ctx.out.buf.len();
            let per = gets.len().max(1);
            ctx.out.array(range.len() * per);
            for it in range {
                if gets.is_empty() {
                    ctx.out.bulk(&it.elem);
                }
                for p in &gets {
                    match by_pattern(ks, p, &it.elem, now) {
                        Some(v) => ctx.out.bulk(&v),
                        None => ctx.out.null(),
                    }
                }
                if ctx.out.buf.len() - mark > limit {
                    ctx.out.buf.truncate(mark);
                    ctx.out.err(TOO_BIG);
                    return Res::Ok;
                }
            }
        }
        Some(dst) => {
            let mut list: VecDeque<Bytes> = VecDeque::new();
            let mut bytes = 0usize;
            for it in range {
                if gets.is_empty() {
                    bytes += it.elem.len();
                    list.push_back(it.elem.clone());
                }
                for p in &gets {
                    let v = by_pattern(ks, p, &it.elem, now).unwrap_or_default();
                    bytes += v.len();
                    list.push_back(v);
                }
                if bytes > limit {
                    ctx.out.err(TOO_BIG);
                    return Res::Ok;
                }
            }
            let n = list.len();
            if n == 0 {
                if ks.remove(dst).is_some() {
                    db.notify(dbi, GENERIC, "del", dst);
                }
            } else {
                // Elements read from other keys are copies: the new list must not pin their
                // buffers (nor the read buffer of the request).
                let list = list.into_iter().map(|b| own(&b)).collect();
                ks.insert(own(dst), Value::List(list));
                db.signal(dbi, dst);
                db.notify(dbi, LIST, "sortstore", dst);
            }
            ctx.out.int(n as i64);
        }
    }
    Res::Ok
}

#[cfg(test)]
mod tests {
    use super::{c_str_cmp, score};
    use std::cmp::Ordering;

    #[test]
    fn scores_are_read_as_strtod_reads_them() {
        assert_eq!(score(b"1.5"), Some(1.5));
        assert_eq!(score(b" 5"), Some(5.0));
        assert_eq!(score(b"0x10"), Some(16.0));
        assert_eq!(score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(score(b""), Some(0.0));
        assert_eq!(score(b"1\0x"), Some(1.0));
        assert_eq!(score(b"2e1"), Some(20.0));
        assert_eq!(score(b"5 "), None);
        assert_eq!(score(b"nan"), None);
        assert_eq!(score(b"1e400"), None);
        assert_eq!(score(b"1e-400"), None);
        assert_eq!(score(b"abc"), None);
    }

    #[test]
    fn alpha_without_store_compares_c_strings() {
        assert_eq!(c_str_cmp(b"\0b", b"\0a"), Ordering::Equal);
        assert_eq!(c_str_cmp(b"a", b"ab"), Ordering::Less);
        assert_eq!(c_str_cmp(b"B", b"a"), Ordering::Less);
    }
}
