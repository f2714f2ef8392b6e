//! Sorted sets: the [`ZSet`] type and its commands — ZADD, ZINCRBY, ZREM, ZCARD, ZSCORE,
//! ZMSCORE, ZRANK / ZREVRANK, ZCOUNT, ZLEXCOUNT, ZRANGE (BYSCORE, BYLEX, REV, LIMIT) and its
//! older forms (ZREVRANGE, Z[REV]RANGEBYSCORE, Z[REV]RANGEBYLEX), ZRANGESTORE, ZPOPMIN /
//! ZPOPMAX, ZMPOP, BZPOPMIN / BZPOPMAX / BZMPOP, ZREMRANGEBYRANK / BYSCORE / BYLEX,
//! ZRANDMEMBER, ZSCAN, ZUNION / ZINTER / ZDIFF and their STORE forms, ZINTERCARD.
//!
//! Replies are redis-server 7.0's, byte for byte (tests/zsets.rs and the differential test
//! compare them), with Redis 7.2's WITHSCORE for ZRANK and ZREVRANK. Scores are printed as 7.0
//! prints them (`%.17g`: `1.5`, `0.10000000000000001`, `1e+100`, `inf`); 7.2 prints the
//! shortest form that reads back the same (`0.1`). ZRANDMEMBER with a negative count refuses
//! a reply over 64 MiB, which Redis builds until memory runs out. See
//! docs/serve-differences.md.
//!
//! Where Redis's two encodings of a sorted set (a listpack up to 128 members of up to 64
//! bytes, a skiplist beyond) answer differently, charla answers as the listpack does, the
//! common case: a score of -0 is stored as 0; ZSCAN returns the whole set in order with
//! cursor 0; a lex range over members of mixed scores is walked as the listpack walks it (for
//! a skiplist Redis's answer then depends on its random node levels).
//!
//! The data structure is a member → score hash map plus an ordered index of (score, member),
//! ties ordered by member bytes as in Redis. Score ranges are found in the index in
//! O(log n); ranks (ZRANK, ZRANGE by index, ZREMRANGEBYRANK) and lex ranges are linear scans
//! of the index, which a counted tree would make logarithmic if big sets ever need it.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ops::Bound;

use bytes::Bytes;

use super::args::{
    c_strtod, is, own, parse_i64, MAX_RANDOM_REPLY, NOT_FLOAT, NOT_INT, RANDOM_REPLY_TOO_BIG,
    SYNTAX, WRONGTYPE,
};
use super::blocking::{block, may_block};
use super::options::parse_timeout;
use super::spec::{Ctx, Res};
use super::typed;
use crate::db::{glob_match, now_ms, Db, Value};
use crate::events::{GENERIC, ZSET};
use crate::frame::Out;
use crate::zset::{Score, ZSet};

/// The commands an AOF rewrite writes for a sorted set: ZADDs of at most 64 members, with
/// scores printed so they read back exactly.
pub fn rewrite(key: &Bytes, z: &ZSet) -> Vec<Vec<Bytes>> {
    let all: Vec<(&Bytes, f64)> = z.iter().collect();
    all.chunks(64)
        .map(|chunk| {
            let mut c = vec![Bytes::from_static(b"ZADD"), key.clone()];
            for (m, s) in chunk {
                c.push(Bytes::from(fmt_score(*s)));
                c.push((*m).clone());
            }
            c
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Numbers: C's strtod and printf("%.17g"), which Redis's replies and errors follow.

/// C's `isspace` in the C locale.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Redis's `string2d`, for scores, increments and weights: the whole argument must be a
/// number, with no leading blank, not NaN, and neither overflowing nor underflowing to zero.
fn parse_score(s: &[u8]) -> Option<f64> {
    if s.first().is_none_or(|&c| is_c_space(c)) {
        return None;
    }
    let (v, n, erange) = c_strtod(s);
    let bad = n != s.len() || v.is_nan() || (erange && (v.is_infinite() || v == 0.0));
    (!bad).then_some(v)
}

/// One bound of a score range, as Redis's `zslParseRange` reads it: `(` makes it exclusive;
/// `strtod` must stop at the end of the argument (or a NUL byte, where C stops looking), so
/// an empty bound is 0; overflow is infinity; NaN is refused.
fn parse_score_bound(s: &[u8]) -> Option<(f64, bool)> {
    let (body, excl) = match s.first() {
        Some(b'(') => (&s[1..], true),
        _ => (s, false),
    };
    let (v, n, _) = c_strtod(body);
    let ends = body.get(n).is_none_or(|&c| c == 0);
    (ends && !v.is_nan()).then_some((v, excl))
}

/// Redis 7.0's score format: C's `%.17g` (17 significant digits, trailing zeros dropped,
/// an exponent below 1e-4 and from 1e17 on), `inf` / `-inf`.
pub fn fmt_score(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's exact formatting gives the 17 digits C would; the exponent after rounding
    // decides the style, as in C.
    let sci = format!("{v:.16e}");
    let Some((mant, exp)) = sci.split_once('e') else {
        return sci;
    };
    let x: i32 = exp.parse().unwrap_or(0);
    if (-4..17).contains(&x) {
        let fixed = format!("{v:.prec$}", prec = (16 - x) as usize);
        trim_fraction(&fixed).to_string()
    } else {
        let sign = if x < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_fraction(mant), x.unsigned_abs())
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A score as Redis's listpack stores it (`d2string`), which ZSCAN returns as it is: an
/// integral score within ±2^62 as an integer (`100000000000000000`, not `1e+17`), any other
/// as [`fmt_score`].
fn fmt_stored(v: f64) -> String {
    const LIMIT: f64 = (1u64 << 62) as f64;
    if v.fract() == 0.0 && v.abs() <= LIMIT {
        (v as i64).to_string()
    } else {
        fmt_score(v)
    }
}

/// A score as Redis's `addReplyDouble` writes it: a bulk string in RESP2, a double in RESP3.
fn reply_score(out: &mut Out, v: f64) {
    let s = fmt_score(v);
    if out.proto >= 3 {
        out.buf.extend_from_slice(b",");
        out.buf.extend_from_slice(s.as_bytes());
        out.buf.extend_from_slice(b"\r\n");
    } else {
        out.bulk(s.as_bytes());
    }
}

/// Members, with their scores if asked: a flat array in RESP2, an array of [member, score]
/// pairs in RESP3 (ordered, so not a map), as the ZRANGE family replies.
fn reply_members(out: &mut Out, items: &[(Bytes, f64)], withscores: bool) {
    if withscores {
        let nested = out.proto >= 3;
        reply_pairs(out, items, nested);
    } else {
        out.array(items.len());
        for (m, _) in items {
            out.bulk(m);
        }
    }
}

/// Members and scores: one flat array, or (`nested`) an array of [member, score] arrays.
fn reply_pairs(out: &mut Out, items: &[(Bytes, f64)], nested: bool) {
    out.array(if nested { items.len() } else { items.len() * 2 });
    for (m, s) in items {
        if nested {
            out.array(2);
        }
        out.bulk(m);
        reply_score(out, *s);
    }
}

// ---------------------------------------------------------------------------------------
// Keyspace access.

/// The sorted set at `key`: Ok(None) when missing, Err(()) after WRONGTYPE.
fn read<'a>(ctx: &mut Ctx, db: &'a mut Db, key: &[u8]) -> Result<Option<&'a ZSet>, ()> {
    typed::read_as(ctx, db, key, |v| match v {
        Value::ZSet(z) => Some(&**z),
        _ => None,
    })
}

/// The sorted set at `key` for changing: Ok(None) when missing, Err(()) after WRONGTYPE.
fn write<'a>(ctx: &mut Ctx, db: &'a mut Db, key: &[u8]) -> Result<Option<&'a mut ZSet>, ()> {
    typed::write_as(ctx, db, key, |v| match v {
        Value::ZSet(z) => Some(&mut **z),
        _ => None,
    })
}

/// Remove `key` if its sorted set became empty.
fn drop_if_empty(db: &mut Db, dbi: usize, key: &[u8]) {
    typed::drop_if_empty(
        db,
        dbi,
        key,
        |v| matches!(v, Value::ZSet(z) if z.is_empty()),
    );
}

/// A store command's result: the new set under `dst` (its old value and expiry gone), or,
/// empty, `dst` deleted; the reply is the result's size. Marks the dataset changed when it
/// did.
fn store(ctx: &mut Ctx, db: &mut Db, dst: &Bytes, items: Vec<(Bytes, f64)>) {
    let dbi = ctx.client.db;
    if items.is_empty() {
        if db.dbs[dbi].remove(dst).is_some() {
            db.notify(dbi, GENERIC, "del", dst);
        }
        ctx.out.int(0);
        return;
    }
    let mut z = ZSet::default();
    for (m, s) in items {
        z.insert(m, s);
    }
    let n = z.len();
    db.dbs[dbi].insert(own(dst), Value::ZSet(Box::new(z)));
    let event = match ctx.args[0].to_ascii_uppercase().as_slice() {
        b"ZUNIONSTORE" => "zunionstore",
        b"ZINTERSTORE" => "zinterstore",
        b"ZDIFFSTORE" => "zdiffstore",
        _ => "zrangestore",
    };
    db.notify(dbi, ZSET, event, dst);
    ctx.out.int(n as i64);
}

// ---------------------------------------------------------------------------------------
// Ranges.

/// A score range: `min`/`max`, each inclusive or exclusive.
#[derive(Clone, Copy)]
struct ScoreRange {
    min: f64,
    minex: bool,
    max: f64,
    maxex: bool,
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> Option<ScoreRange> {
        let (min, minex) = parse_score_bound(min)?;
        let (max, maxex) = parse_score_bound(max)?;
        Some(ScoreRange {
            min,
            minex,
            max,
            maxex,
        })
    }

    /// Ranges that hold nothing whatever the set (Redis tests this first).
    fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.minex || self.maxex))
    }

    fn gte_min(&self, v: f64) -> bool {
        if self.minex {
            v > self.min
        } else {
            v >= self.min
        }
    }

    fn lte_max(&self, v: f64) -> bool {
        if self.maxex {
            v < self.max
        } else {
            v <= self.max
        }
    }

    /// The index from the first entry at or above the minimum, upwards.
    fn walk_up<'a>(&self, z: &'a ZSet) -> impl Iterator<Item = &'a (Score, Bytes)> {
        // Every score above `min` is at least the next representable one.
        let lo = if self.minex {
            self.min.next_up()
        } else {
            self.min
        };
        z.order
            .range((Bound::Included((Score(lo), Bytes::new())), Bound::Unbounded))
    }

    /// The index from the last entry at or below the maximum, downwards.
    fn walk_down<'a>(&self, z: &'a ZSet) -> impl Iterator<Item = &'a (Score, Bytes)> {
        // (s, "") is below every member of score s: exclude it for the first score past
        // the maximum.
        let hi = if self.maxex {
            Bound::Excluded((Score(self.max), Bytes::new()))
        } else if self.max == f64::INFINITY {
            Bound::Unbounded
        } else {
            Bound::Excluded((Score(self.max.next_up()), Bytes::new()))
        };
        z.order.range((Bound::Unbounded, hi)).rev()
    }

    /// Members in range: from the lowest (`rev`: the highest), `offset` skipped (a negative
    /// one skips everything, as Redis's loop does), at most `limit` (negative: no limit).
    fn select(&self, z: &ZSet, offset: i64, limit: i64, rev: bool) -> Vec<(Bytes, f64)> {
        if self.is_empty() || (offset > 0 && offset as u64 >= z.len() as u64) || offset < 0 {
            return Vec::new();
        }
        let (offset, limit) = (offset as usize, take_limit(limit));
        let entry = |(s, m): &(Score, Bytes)| (m.clone(), s.0);
        if rev {
            self.walk_down(z)
                .skip(offset)
                .take_while(|(s, _)| self.gte_min(s.0))
                .take(limit)
                .map(entry)
                .collect()
        } else {
            self.walk_up(z)
                .skip(offset)
                .take_while(|(s, _)| self.lte_max(s.0))
                .take(limit)
                .map(entry)
                .collect()
        }
    }
}

fn take_limit(limit: i64) -> usize {
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// One end of a lex range: `-` and `+` (below and above every member), `[m` inclusive,
/// `(m` exclusive.
#[derive(Clone)]
enum Lex {
    Min,
    Max,
    Incl(Bytes),
    Excl(Bytes),
}

impl Lex {
    /// Redis's `zslParseLexRangeItem` (which reads `+`/`-` as C strings: a NUL ends them).
    fn parse(s: &[u8]) -> Option<Lex> {
        let alone = s.len() == 1 || s.get(1) == Some(&0);
        match s.first()? {
            b'+' if alone => Some(Lex::Max),
            b'-' if alone => Some(Lex::Min),
            b'(' => Some(Lex::Excl(Bytes::copy_from_slice(&s[1..]))),
            b'[' => Some(Lex::Incl(Bytes::copy_from_slice(&s[1..]))),
            _ => None,
        }
    }

    fn excl(&self) -> bool {
        !matches!(self, Lex::Incl(_))
    }
}

/// Redis's `sdscmplex` of two bounds.
fn cmp_lex(a: &Lex, b: &Lex) -> Ordering {
    match (a, b) {
        (Lex::Min, Lex::Min) | (Lex::Max, Lex::Max) => Ordering::Equal,
        (Lex::Min, _) | (_, Lex::Max) => Ordering::Less,
        (Lex::Max, _) | (_, Lex::Min) => Ordering::Greater,
        (Lex::Incl(x) | Lex::Excl(x), Lex::Incl(y) | Lex::Excl(y)) => x.cmp(y),
    }
}

struct LexRange {
    min: Lex,
    max: Lex,
}

impl LexRange {
    fn parse(min: &Bytes, max: &Bytes) -> Option<LexRange> {
        Some(LexRange {
            min: Lex::parse(min)?,
            max: Lex::parse(max)?,
        })
    }

    fn is_empty(&self) -> bool {
        match cmp_lex(&self.min, &self.max) {
            Ordering::Greater => true,
            Ordering::Equal => self.min.excl() || self.max.excl(),
            Ordering::Less => false,
        }
    }

    fn gte_min(&self, m: &[u8]) -> bool {
        match &self.min {
            Lex::Min => true,
            Lex::Max => false,
            Lex::Incl(b) => m >= &b[..],
            Lex::Excl(b) => m > &b[..],
        }
    }

    fn lte_max(&self, m: &[u8]) -> bool {
        match &self.max {
            Lex::Max => true,
            Lex::Min => false,
            Lex::Incl(b) => m <= &b[..],
            Lex::Excl(b) => m < &b[..],
        }
    }

    /// Redis's listpack walk (`zzlFirstInLexRange` / `zzlLastInLexRange` and the loops
    /// after them), which assumes members sorted, i.e. equal scores: nothing unless the last
    /// member is above the minimum and the first below the maximum; then from the first member
    /// (`rev`: the last) past the near end, provided it is within the far end; `offset` members
    /// skipped unchecked (a negative offset skips everything); then members while within the
    /// far end, at most `limit`. Linear in the set's size.
    fn select(&self, z: &ZSet, offset: i64, limit: i64, rev: bool) -> Vec<(Bytes, f64)> {
        let (Some(first), Some(last)) = (z.order.first(), z.order.last()) else {
            return Vec::new();
        };
        if self.is_empty() || !self.gte_min(&last.1) || !self.lte_max(&first.1) || offset < 0 {
            return Vec::new();
        }
        let (offset, limit) = (offset as usize, take_limit(limit));
        let entry = |(s, m): &(Score, Bytes)| (m.clone(), s.0);
        if rev {
            let mut it = z.order.iter().rev().skip_while(|e| !self.lte_max(&e.1));
            match it.next() {
                Some(e) if self.gte_min(&e.1) => std::iter::once(e)
                    .chain(it)
                    .skip(offset)
                    .take_while(|e| self.gte_min(&e.1))
                    .take(limit)
                    .map(entry)
                    .collect(),
                _ => Vec::new(),
            }
        } else {
            let mut it = z.order.iter().skip_while(|e| !self.gte_min(&e.1));
            match it.next() {
                Some(e) if self.lte_max(&e.1) => std::iter::once(e)
                    .chain(it)
                    .skip(offset)
                    .take_while(|e| self.lte_max(&e.1))
                    .take(limit)
                    .map(entry)
                    .collect(),
                _ => Vec::new(),
            }
        }
    }
}

/// Redis's rank range: negative indexes count from the end, then the range is clipped; None
/// when empty.
fn rank_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    if s < 0 {
        s = 0;
    }
    if s > e || s >= len {
        return None;
    }
    if e >= len {
        e = len - 1;
    }
    Some((s as usize, (e - s + 1) as usize))
}

fn by_rank(z: &ZSet, start: i64, end: i64, rev: bool) -> Vec<(Bytes, f64)> {
    let Some((skip, n)) = rank_range(start, end, z.len()) else {
        return Vec::new();
    };
    let entry = |(m, s): (&Bytes, f64)| (m.clone(), s);
    if rev {
        z.iter().rev().skip(skip).take(n).map(entry).collect()
    } else {
        z.iter().skip(skip).take(n).map(entry).collect()
    }
}

// ---------------------------------------------------------------------------------------
// ZADD, ZINCRBY, ZREM, ZCARD, ZSCORE, ZMSCORE, ZRANK.

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member … and ZINCRBY key increment member
/// (Redis runs both through one function, so ZINCRBY also reads ZADD's option words).
pub fn zadd(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let key = &args[1];
    let (mut nx, mut xx, mut gt, mut lt, mut ch) = (false, false, false, false, false);
    let mut incr = is(&args[0], "ZINCRBY");
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if is(a, "NX") {
            nx = true;
        } else if is(a, "XX") {
            xx = true;
        } else if is(a, "CH") {
            ch = true;
        } else if is(a, "INCR") {
            incr = true;
        } else if is(a, "GT") {
            gt = true;
        } else if is(a, "LT") {
            lt = true;
        } else {
            break;
        }
        i += 1;
    }
    let pairs = &args[i..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    if nx && xx {
        ctx.out
            .err("ERR XX and NX options at the same time are not compatible");
        return Res::Ok;
    }
    // XX goes with either GT or LT; NX with neither.
    if (gt || lt) && (nx || (gt && lt)) {
        ctx.out
            .err("ERR GT, LT, and/or NX options at the same time are not compatible");
        return Res::Ok;
    }
    if incr && pairs.len() > 2 {
        ctx.out
            .err("ERR INCR option supports a single increment-element pair");
        return Res::Ok;
    }
    // Every score is read before anything changes: the command runs whole or not at all.
    let mut scores = Vec::with_capacity(pairs.len() / 2);
    for p in pairs.chunks(2) {
        match parse_score(&p[0]) {
            Some(s) => scores.push(s),
            None => {
                ctx.out.err(NOT_FLOAT);
                return Res::Ok;
            }
        }
    }
    let dbi = ctx.client.db;
    let mut fresh: Option<ZSet> = None;
    let z = match write(ctx, db, key) {
        Err(()) => return Res::Ok,
        Ok(Some(z)) => z,
        Ok(None) if xx => {
            if incr {
                ctx.out.null();
            } else {
                ctx.out.int(0);
            }
            return Res::Ok;
        }
        Ok(None) => fresh.insert(ZSet::default()),
    };
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
    let mut last = 0.0;
    for (p, &score) in pairs.chunks(2).zip(&scores) {
        let member = &p[1];
        match z.score(member) {
            Some(cur) => {
                if nx {
                    continue;
                }
                let mut new = score;
                if incr {
                    new += cur;
                    if new.is_nan() {
                        ctx.out.err("ERR resulting score is not a number (NaN)");
                        return Res::Ok;
                    }
                }
                if (lt && new >= cur) || (gt && new <= cur) {
                    continue;
                }
                // The reply shows the sum as computed (-0 included); the set stores it.
                last = new;
                processed += 1;
                if new != cur {
                    z.insert(own(member), new);
                    updated += 1;
                }
            }
            None if xx => {}
            None => {
                z.insert(own(member), score);
                last = score;
                added += 1;
                processed += 1;
            }
        }
    }
    if let Some(z) = fresh {
        db.dbs[dbi].insert(own(key), Value::ZSet(Box::new(z)));
    }
    if added + updated > 0 {
        db.notify(dbi, ZSET, if incr { "zincr" } else { "zadd" }, key);
    } else {
        ctx.unchanged();
    }
    if incr {
        if processed > 0 {
            reply_score(ctx.out, last);
        } else {
            ctx.out.null();
        }
    } else {
        ctx.out.int(if ch { added + updated } else { added });
    }
    Res::Ok
}

pub fn zrem(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let removed = match write(ctx, db, &args[1]) {
        Err(()) => return Res::Ok,
        Ok(None) => 0,
        Ok(Some(z)) => args[2..].iter().filter(|m| z.remove(m).is_some()).count(),
    };
    if removed > 0 {
        drop_if_empty(db, ctx.client.db, &args[1]);
    } else {
        ctx.unchanged();
    }
    ctx.out.int(removed as i64);
    Res::Ok
}

pub fn zcard(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    if let Ok(z) = read(ctx, db, &args[1]) {
        ctx.out.int(z.map_or(0, |z| z.len() as i64));
    }
    Res::Ok
}

pub fn zscore(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    if let Ok(z) = read(ctx, db, &args[1]) {
        match z.and_then(|z| z.score(&args[2])) {
            Some(s) => reply_score(ctx.out, s),
            None => ctx.out.null(),
        }
    }
    Res::Ok
}

pub fn zmscore(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let Ok(z) = read(ctx, db, &args[1]) else {
        return Res::Ok;
    };
    ctx.out.array(args.len() - 2);
    for m in &args[2..] {
        match z.and_then(|z| z.score(m)) {
            Some(s) => reply_score(ctx.out, s),
            None => ctx.out.null(),
        }
    }
    Res::Ok
}

/// ZRANK / ZREVRANK key member [WITHSCORE] (WITHSCORE is Redis 7.2's).
pub fn zrank(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let rev = is(&args[0], "ZREVRANK");
    if args.len() > 4 {
        ctx.err_arity();
        return Res::Ok;
    }
    let withscore = args.len() == 4;
    if withscore && !is(&args[3], "WITHSCORE") {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    let Ok(z) = read(ctx, db, &args[1]) else {
        return Res::Ok;
    };
    match (z.and_then(|z| z.rank(&args[2], rev)), withscore) {
        (Some((r, _)), false) => ctx.out.int(r as i64),
        (Some((r, s)), true) => {
            ctx.out.array(2);
            ctx.out.int(r as i64);
            reply_score(ctx.out, s);
        }
        (None, false) => ctx.out.null(),
        (None, true) => ctx.out.null_array(),
    }
    Res::Ok
}

// ---------------------------------------------------------------------------------------
// Counting and ranges.

pub fn zcount(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let Some(r) = ScoreRange::parse(&args[2], &args[3]) else {
        ctx.out.err("ERR min or max is not a float");
        return Res::Ok;
    };
    if let Ok(z) = read(ctx, db, &args[1]) {
        let n = match z {
            Some(z) if !r.is_empty() => r.walk_up(z).take_while(|(s, _)| r.lte_max(s.0)).count(),
            _ => 0,
        };
        ctx.out.int(n as i64);
    }
    Res::Ok
}

pub fn zlexcount(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let Some(r) = LexRange::parse(&args[2], &args[3]) else {
        ctx.out.err("ERR min or max not valid string range item");
        return Res::Ok;
    };
    if let Ok(z) = read(ctx, db, &args[1]) {
        let n = z.map_or(0, |z| r.select(z, 0, -1, false).len());
        ctx.out.int(n as i64);
    }
    Res::Ok
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Auto,
    Rank,
    Score,
    Lex,
}

/// Redis's `zrangeGenericCommand`: the source key at `key_at`, its two bounds after it, then
/// the options. `kind` and `rev` are fixed by the older commands (ZREVRANGE,
/// ZRANGEBYSCORE…), whose options then may not set them again; ZRANGE and ZRANGESTORE leave
/// them to the options. `dst`: ZRANGESTORE's destination.
fn range_generic(
    ctx: &mut Ctx,
    db: &mut Db,
    key_at: usize,
    dst: Option<&Bytes>,
    mut kind: Kind,
    mut rev: Option<bool>,
) -> Res {
    let args = ctx.args;
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = key_at + 3;
    while j < args.len() {
        let a = &args[j];
        let left = args.len() - j - 1;
        if dst.is_none() && is(a, "WITHSCORES") {
            withscores = true;
        } else if is(a, "LIMIT") && left >= 2 {
            match (parse_i64(&args[j + 1]), parse_i64(&args[j + 2])) {
                (Some(o), Some(l)) => (offset, limit) = (o, l),
                _ => {
                    ctx.out.err(NOT_INT);
                    return Res::Ok;
                }
            }
            j += 2;
        } else if rev.is_none() && is(a, "REV") {
            rev = Some(true);
        } else if kind == Kind::Auto && is(a, "BYLEX") {
            kind = Kind::Lex;
        } else if kind == Kind::Auto && is(a, "BYSCORE") {
            kind = Kind::Score;
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    if kind == Kind::Auto {
        kind = Kind::Rank;
    }
    // Redis checks `limit != -1`: `LIMIT 0 -1` passes with a rank range.
    if limit != -1 && kind == Kind::Rank {
        ctx.out.err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
        return Res::Ok;
    }
    if withscores && kind == Kind::Lex {
        ctx.out
            .err("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        return Res::Ok;
    }
    // Reversed score and lex ranges are written max first.
    let (lo, hi) = if rev && kind != Kind::Rank {
        (&args[key_at + 2], &args[key_at + 1])
    } else {
        (&args[key_at + 1], &args[key_at + 2])
    };
    enum Parsed {
        Rank(i64, i64),
        Score(ScoreRange),
        Lex(LexRange),
    }
    let parsed = match kind {
        Kind::Score => match ScoreRange::parse(lo, hi) {
            Some(r) => Parsed::Score(r),
            None => {
                ctx.out.err("ERR min or max is not a float");
                return Res::Ok;
            }
        },
        Kind::Lex => match LexRange::parse(lo, hi) {
            Some(r) => Parsed::Lex(r),
            None => {
                ctx.out.err("ERR min or max not valid string range item");
                return Res::Ok;
            }
        },
        _ => match (parse_i64(lo), parse_i64(hi)) {
            (Some(s), Some(e)) => Parsed::Rank(s, e),
            _ => {
                ctx.out.err(NOT_INT);
                return Res::Ok;
            }
        },
    };
    let Ok(z) = read(ctx, db, &args[key_at]) else {
        return Res::Ok;
    };
    let items = match z {
        None => Vec::new(),
        Some(z) => match &parsed {
            Parsed::Rank(s, e) => by_rank(z, *s, *e, rev),
            Parsed::Score(r) => r.select(z, offset, limit, rev),
            Parsed::Lex(r) => r.select(z, offset, limit, rev),
        },
    };
    match dst {
        Some(dst) => store(ctx, db, dst, items),
        None => reply_members(ctx.out, &items, withscores),
    }
    Res::Ok
}

/// ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]
pub fn zrange(ctx: &mut Ctx, db: &mut Db) -> Res {
    let name = ctx.args[0].to_ascii_uppercase();
    let (kind, rev) = match &name[..] {
        b"ZREVRANGE" => (Kind::Rank, Some(true)),
        b"ZRANGEBYSCORE" => (Kind::Score, Some(false)),
        b"ZREVRANGEBYSCORE" => (Kind::Score, Some(true)),
        b"ZRANGEBYLEX" => (Kind::Lex, Some(false)),
        b"ZREVRANGEBYLEX" => (Kind::Lex, Some(true)),
        _ => (Kind::Auto, None),
    };
    range_generic(ctx, db, 1, None, kind, rev)
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]
pub fn zrangestore(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    range_generic(ctx, db, 2, Some(&args[1]), Kind::Auto, None)
}

/// ZREMRANGEBYRANK / ZREMRANGEBYSCORE / ZREMRANGEBYLEX key min max
pub fn zremrange(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let name = args[0].to_ascii_uppercase();
    let (min, max) = (&args[2], &args[3]);
    type Select = Box<dyn Fn(&ZSet) -> Vec<(Bytes, f64)>>;
    let select: Select = match &name[..] {
        b"ZREMRANGEBYSCORE" => match ScoreRange::parse(min, max) {
            Some(r) => Box::new(move |z| r.select(z, 0, -1, false)),
            None => {
                ctx.out.err("ERR min or max is not a float");
                return Res::Ok;
            }
        },
        b"ZREMRANGEBYLEX" => match LexRange::parse(min, max) {
            Some(r) => Box::new(move |z| r.select(z, 0, -1, false)),
            None => {
                ctx.out.err("ERR min or max not valid string range item");
                return Res::Ok;
            }
        },
        _ => match (parse_i64(min), parse_i64(max)) {
            (Some(s), Some(e)) => Box::new(move |z| by_rank(z, s, e, false)),
            _ => {
                ctx.out.err(NOT_INT);
                return Res::Ok;
            }
        },
    };
    let removed = match write(ctx, db, &args[1]) {
        Err(()) => return Res::Ok,
        Ok(None) => 0,
        Ok(Some(z)) => {
            let gone = select(z);
            for (m, _) in &gone {
                z.remove(m);
            }
            gone.len()
        }
    };
    if removed > 0 {
        drop_if_empty(db, ctx.client.db, &args[1]);
    } else {
        ctx.unchanged();
    }
    ctx.out.int(removed as i64);
    Res::Ok
}

// ---------------------------------------------------------------------------------------
// Pops.

/// Pop up to `count` of the lowest (`max`: highest) members of `key`, dropping the key if
/// that empties it, and log `ZPOPMIN|ZPOPMAX key [count]`: what Redis propagates for every
/// pop (ZMPOP and the blocking forms included).
fn pop_logged(
    ctx: &mut Ctx,
    db: &mut Db,
    key: &Bytes,
    max: bool,
    count: Option<usize>,
) -> Vec<(Bytes, f64)> {
    let dbi = ctx.client.db;
    let mut popped = Vec::new();
    if let Ok(Some(z)) = write(ctx, db, key) {
        for _ in 0..count.unwrap_or(1) {
            match z.pop(max) {
                Some(e) => popped.push(e),
                None => break,
            }
        }
    }
    if !popped.is_empty() {
        drop_if_empty(db, dbi, key);
        let cmd: &[u8] = if max { b"ZPOPMAX" } else { b"ZPOPMIN" };
        match count {
            Some(n) => {
                let n = n.to_string();
                db.propagate(dbi, &[cmd, key, n.as_bytes()]);
            }
            None => db.propagate(dbi, &[cmd, key]),
        }
        db.notify(dbi, ZSET, if max { "zpopmax" } else { "zpopmin" }, key);
        if db.dbs[dbi].peek(key).is_none() {
            db.notify(dbi, GENERIC, "del", key);
        }
    } else {
        ctx.unchanged();
    }
    popped
}

/// ZPOPMIN / ZPOPMAX key [count]
pub fn zpop(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let max = is(&args[0], "ZPOPMAX");
    if args.len() > 3 {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    // Redis gives one error for a count that is not a number and one that is negative.
    let count = match args.get(2) {
        None => None,
        Some(a) => match parse_i64(a).filter(|n| *n >= 0) {
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => {
                ctx.out.err("ERR value is out of range, must be positive");
                return Res::Ok;
            }
        },
    };
    let Ok(z) = read(ctx, db, &args[1]) else {
        return Res::Ok;
    };
    if z.is_none() || count == Some(0) {
        ctx.out.array(0);
        return Res::Ok;
    }
    let popped = pop_logged(ctx, db, &args[1], max, count);
    // A single pop is a flat [member, score] in both protocols; with a count RESP3 nests
    // the pairs.
    let nested = count.is_some() && ctx.out.proto >= 3;
    reply_pairs(ctx.out, &popped, nested);
    Res::Ok
}

/// BZPOPMIN / BZPOPMAX key… timeout: [key, member, score] from the first non-empty set, or
/// wait for one.
pub fn bzpop(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let max = is(&args[0], "BZPOPMAX");
    let n = args.len();
    let Some(timeout) = parse_timeout(ctx, &args[n - 1]) else {
        return Res::Ok;
    };
    let keys = &args[1..n - 1];
    for k in keys {
        match read(ctx, db, k) {
            Err(()) => return Res::Ok,
            Ok(Some(z)) if !z.is_empty() => {}
            Ok(_) => continue,
        }
        let popped = pop_logged(ctx, db, k, max, None);
        if let Some((m, s)) = popped.first() {
            ctx.out.array(3);
            ctx.out.bulk(k);
            ctx.out.bulk(m);
            reply_score(ctx.out, *s);
            return Res::Ok;
        }
    }
    if may_block(ctx) {
        let refs: Vec<&Bytes> = keys.iter().collect();
        return block(ctx, db, &refs, timeout);
    }
    ctx.out.null_array();
    Res::Ok
}

/// ZMPOP numkeys key… MIN|MAX [COUNT count]; BZMPOP timeout numkeys key… MIN|MAX [COUNT
/// count]: [key, [[member, score]…]] from the first non-empty set.
pub fn zmpop(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let blocking = is(&args[0], "BZMPOP");
    let at = if blocking { 2 } else { 1 };
    let Some(numkeys) = parse_i64(&args[at]).filter(|n| *n >= 1) else {
        ctx.out.err("ERR numkeys should be greater than 0");
        return Res::Ok;
    };
    let where_at = (at as u64).saturating_add(numkeys as u64).saturating_add(1);
    if where_at >= args.len() as u64 {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    let where_at = where_at as usize;
    let max = if is(&args[where_at], "MIN") {
        false
    } else if is(&args[where_at], "MAX") {
        true
    } else {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    };
    let mut count = None;
    let mut j = where_at + 1;
    while j < args.len() {
        if count.is_none() && is(&args[j], "COUNT") && j + 1 < args.len() {
            j += 1;
            match parse_i64(&args[j]).filter(|n| *n >= 1) {
                Some(n) => count = Some(usize::try_from(n).unwrap_or(usize::MAX)),
                None => {
                    ctx.out.err("ERR count should be greater than 0");
                    return Res::Ok;
                }
            }
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
        j += 1;
    }
    // BZMPOP's timeout comes first on the line but Redis parses it last.
    let timeout = if blocking {
        match parse_timeout(ctx, &args[1]) {
            Some(t) => t,
            None => return Res::Ok,
        }
    } else {
        None
    };
    let keys = &args[at + 1..where_at];
    for k in keys {
        match read(ctx, db, k) {
            Err(()) => return Res::Ok,
            Ok(Some(z)) if !z.is_empty() => {}
            Ok(_) => continue,
        }
        let popped = pop_logged(ctx, db, k, max, Some(count.unwrap_or(1)));
        ctx.out.array(2);
        ctx.out.bulk(k);
        reply_pairs(ctx.out, &popped, true);
        return Res::Ok;
    }
    if blocking && may_block(ctx) {
        let refs: Vec<&Bytes> = keys.iter().collect();
        return block(ctx, db, &refs, timeout);
    }
    ctx.out.null_array();
    Res::Ok
}

// ---------------------------------------------------------------------------------------
// ZRANDMEMBER, ZSCAN.

/// ZRANDMEMBER key [count [WITHSCORES]]
pub fn zrandmember(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    if args.len() < 3 {
        if let Ok(z) = read(ctx, db, &args[1]) {
            // (A stored set is never empty; the filter keeps the draw below safe regardless.)
            let z = z.filter(|z| !z.is_empty());
            match z.and_then(|z| z.iter().nth(fastrand::usize(..z.len()))) {
                Some((m, _)) => ctx.out.bulk(m),
                None => ctx.out.null(),
            }
        }
        return Res::Ok;
    }
    // Redis's order of checks: the count, the syntax, WITHSCORES's tighter range, the key.
    let count = match parse_i64(&args[2]) {
        None => {
            ctx.out.err(NOT_INT);
            return Res::Ok;
        }
        Some(i64::MIN) => {
            ctx.out.err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807");
            return Res::Ok;
        }
        Some(n) => n,
    };
    if args.len() > 4 || (args.len() == 4 && !is(&args[3], "WITHSCORES")) {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    let withscores = args.len() == 4;
    // (C's `-LONG_MAX/2` rounds towards zero.)
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        ctx.out.err("ERR value is out of range");
        return Res::Ok;
    }
    let Ok(z) = read(ctx, db, &args[1]) else {
        return Res::Ok;
    };
    let Some(z) = z.filter(|z| count != 0 && !z.is_empty()) else {
        ctx.out.array(0);
        return Res::Ok;
    };
    let out = &mut *ctx.out;
    if count < 0 || count == 1 {
        // Picks with repeats, in the order drawn.
        let picks = count.unsigned_abs();
        let longest = z.scores.keys().map(Bytes::len).max().unwrap_or(0) as u64;
        let each = longest + if withscores { 48 } else { 16 };
        if picks.saturating_mul(each) > MAX_RANDOM_REPLY {
            out.err(RANDOM_REPLY_TOO_BIG);
            return Res::Ok;
        }
        let all: Vec<(&Bytes, f64)> = z.iter().collect();
        let nested = withscores && out.proto >= 3;
        out.array(if withscores && !nested {
            picks as usize * 2
        } else {
            picks as usize
        });
        for _ in 0..picks {
            let (m, s) = all[fastrand::usize(..all.len())];
            if nested {
                out.array(2);
            }
            out.bulk(m);
            if withscores {
                reply_score(out, s);
            }
        }
        return Res::Ok;
    }
    let entry = |(m, s): (&Bytes, f64)| (m.clone(), s);
    let chosen: Vec<(Bytes, f64)> = if count as u64 >= z.len() as u64 {
        // The whole set, highest first: Redis walks it from the tail.
        z.iter().rev().map(entry).collect()
    } else {
        let mut all: Vec<(&Bytes, f64)> = z.iter().collect();
        fastrand::shuffle(&mut all);
        all.into_iter().take(count as usize).map(entry).collect()
    };
    reply_members(out, &chosen, withscores);
    Res::Ok
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]: the whole set at once (cursor 0), in
/// order, scores as bulk strings in both protocols and in their stored form, as Redis
/// answers for its small sets.
pub fn zscan(ctx: &mut Ctx, db: &mut Db) -> Res {
    if super::options::scan_cursor(ctx, 2).is_none() {
        return Res::Ok;
    }
    // Redis's order: the cursor, then the key (missing: an empty scan, whatever the options
    // say), then the options.
    let args = ctx.args;
    let Ok(z) = read(ctx, db, &args[1]) else {
        return Res::Ok;
    };
    let Some(z) = z else {
        super::options::reply_empty_scan(ctx);
        return Res::Ok;
    };
    // COUNT is checked and has nothing to bound: the whole set goes in one reply.
    let Some(super::options::ScanOptions { pattern, .. }) =
        super::options::scan_options(ctx, 3, false)
    else {
        return Res::Ok;
    };
    let found: Vec<(&Bytes, f64)> = z
        .iter()
        .filter(|(m, _)| pattern.as_ref().is_none_or(|p| glob_match(p, m)))
        .collect();
    ctx.out.array(2);
    ctx.out.bulk(b"0");
    ctx.out.array(found.len() * 2);
    for (m, s) in found {
        ctx.out.bulk(m);
        ctx.out.bulk(fmt_stored(s).as_bytes());
    }
    Res::Ok
}

// ---------------------------------------------------------------------------------------
// ZUNION / ZINTER / ZDIFF, their STORE forms, ZINTERCARD.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    /// Redis's `zunionInterAggregate`: a sum of inf and -inf is 0; MIN and MAX keep the
    /// current value when the other is NaN (the comparison is false).
    fn apply(self, acc: &mut f64, v: f64) {
        match self {
            Aggregate::Sum => {
                *acc += v;
                if acc.is_nan() {
                    *acc = 0.0;
                }
            }
            Aggregate::Min => {
                if v < *acc {
                    *acc = v;
                }
            }
            Aggregate::Max => {
                if v > *acc {
                    *acc = v;
                }
            }
        }
    }
}

/// An input of the set operations: plain sets count as sorted sets whose scores are all 1.
enum Src<'a> {
    Missing,
    Z(&'a ZSet),
    S(&'a HashSet<Bytes>),
}

impl Src<'_> {
    fn len(&self) -> usize {
        match self {
            Src::Missing => 0,
            Src::Z(z) => z.len(),
            Src::S(s) => s.len(),
        }
    }

    fn score(&self, m: &[u8]) -> Option<f64> {
        match self {
            Src::Missing => None,
            Src::Z(z) => z.score(m),
            Src::S(s) => s.contains(m).then_some(1.0),
        }
    }

    fn entries(&self) -> Box<dyn Iterator<Item = (&Bytes, f64)> + '_> {
        match self {
            Src::Missing => Box::new(std::iter::empty()),
            Src::Z(z) => Box::new(z.scores.iter().map(|(m, s)| (m, *s))),
            Src::S(s) => Box::new(s.iter().map(|m| (m, 1.0))),
        }
    }
}

/// ZUNION / ZINTER / ZDIFF numkeys key… [WEIGHTS w…] [AGGREGATE SUM|MIN|MAX] [WITHSCORES];
/// ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE destination numkeys key… [WEIGHTS…]
/// [AGGREGATE…]; ZINTERCARD numkeys key… [LIMIT limit]. Redis's
/// `zunionInterDiffGenericCommand`, its order of checks and its order of summing included
/// (inputs from the smallest to the largest, so that inf + -inf turns to 0 at the same step).
pub fn setop(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let name = args[0].to_ascii_uppercase();
    let op = if name.starts_with(b"ZUNION") {
        Op::Union
    } else if name.starts_with(b"ZINTER") {
        Op::Inter
    } else {
        Op::Diff
    };
    let store_to = name.ends_with(b"STORE").then(|| &args[1]);
    let card = &name[..] == b"ZINTERCARD";
    let at = if store_to.is_some() { 2 } else { 1 };
    let Some(setnum) = parse_i64(&args[at]) else {
        ctx.out.err(NOT_INT);
        return Res::Ok;
    };
    if setnum < 1 {
        let n = ctx.name_lower();
        ctx.out.err(&format!(
            "ERR at least 1 input key is needed for '{n}' command"
        ));
        return Res::Ok;
    }
    if setnum > (args.len() - at - 1) as i64 {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    let setnum = setnum as usize;
    let keys = &args[at + 1..at + 1 + setnum];
    // The inputs' types are checked before the options are read.
    let dbi = ctx.client.db;
    let now = now_ms();
    for k in keys {
        match db.dbs[dbi].get(k, now).map(|e| &e.value) {
            None | Some(Value::ZSet(_) | Value::Set(_)) => {}
            Some(_) => {
                ctx.out.err(WRONGTYPE);
                return Res::Ok;
            }
        }
    }
    let mut weights = vec![1.0; setnum];
    let mut aggregate = Aggregate::Sum;
    let (mut withscores, mut limit) = (false, 0usize);
    let mut j = at + 1 + setnum;
    while j < args.len() {
        let remaining = args.len() - j;
        let a = &args[j];
        if op != Op::Diff && !card && remaining > setnum && is(a, "WEIGHTS") {
            for (w, arg) in weights.iter_mut().zip(&args[j + 1..]) {
                match parse_score(arg) {
                    Some(v) => *w = v,
                    None => {
                        ctx.out.err("ERR weight value is not a float");
                        return Res::Ok;
                    }
                }
            }
            j += 1 + setnum;
        } else if op != Op::Diff && !card && remaining >= 2 && is(a, "AGGREGATE") {
            let how = &args[j + 1];
            aggregate = if is(how, "SUM") {
                Aggregate::Sum
            } else if is(how, "MIN") {
                Aggregate::Min
            } else if is(how, "MAX") {
                Aggregate::Max
            } else {
                ctx.out.err(SYNTAX);
                return Res::Ok;
            };
            j += 2;
        } else if store_to.is_none() && !card && is(a, "WITHSCORES") {
            withscores = true;
            j += 1;
        } else if card && remaining >= 2 && is(a, "LIMIT") {
            match parse_i64(&args[j + 1]).filter(|l| *l >= 0) {
                Some(l) => limit = usize::try_from(l).unwrap_or(usize::MAX),
                None => {
                    ctx.out.err("ERR LIMIT can't be negative");
                    return Res::Ok;
                }
            }
            j += 2;
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
    }
    let ks = &db.dbs[dbi];
    let srcs: Vec<Src> = keys
        .iter()
        .map(|k| match ks.peek(k).map(|e| &e.value) {
            Some(Value::ZSet(z)) => Src::Z(z),
            Some(Value::Set(s)) => Src::S(s),
            _ => Src::Missing,
        })
        .collect();
    // Redis sorts the inputs by size (a stable sort: equal sizes keep their order), which
    // decides the order of summing; ZDIFF keeps the first input first.
    let mut by_size: Vec<usize> = (0..setnum).collect();
    if op != Op::Diff {
        by_size.sort_by_key(|&i| srcs[i].len());
    }
    let weighted = |i: usize, s: f64| {
        let v = weights[i] * s;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let mut result: Vec<(Bytes, f64)> = Vec::new();
    let mut count = 0usize;
    match op {
        Op::Inter => {
            let first = by_size[0];
            for (m, s) in srcs[first].entries() {
                let mut score = weighted(first, s);
                let mut everywhere = true;
                for &i in &by_size[1..] {
                    match srcs[i].score(m) {
                        Some(v) => aggregate.apply(&mut score, v * weights[i]),
                        None => {
                            everywhere = false;
                            break;
                        }
                    }
                }
                if !everywhere {
                    continue;
                }
                if card {
                    count += 1;
                    if limit > 0 && count >= limit {
                        break;
                    }
                } else {
                    result.push((m.clone(), score));
                }
            }
        }
        Op::Union => {
            let mut acc: HashMap<Bytes, f64> = HashMap::new();
            for &i in &by_size {
                for (m, s) in srcs[i].entries() {
                    let v = weighted(i, s);
                    match acc.get_mut(m) {
                        Some(cur) => aggregate.apply(cur, v),
                        None => {
                            acc.insert(m.clone(), v);
                        }
                    }
                }
            }
            result = acc.into_iter().collect();
        }
        Op::Diff => {
            for (m, s) in srcs[0].entries() {
                if !srcs[1..].iter().any(|o| o.score(m).is_some()) {
                    result.push((m.clone(), s));
                }
            }
        }
    }
    if card {
        ctx.out.int(count as i64);
        return Res::Ok;
    }
    result.sort_by(|a, b| Score(a.1).cmp(&Score(b.1)).then_with(|| a.0.cmp(&b.0)));
    match store_to {
        Some(dst) => store(ctx, db, dst, result),
        None => reply_members(ctx.out, &result, withscores),
    }
    Res::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_print_as_c_does_with_17_digits() {
        for (v, s) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (0.1, "0.10000000000000001"),
            (1e100, "1e+100"),
            (-1e-5, "-1.0000000000000001e-05"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (-0.0, "-0"),
            (1e-320, "9.9998886718268301e-321"),
            (f64::MAX, "1.7976931348623157e+308"),
            (3.3, "3.2999999999999998"),
        ] {
            assert_eq!(fmt_score(v), s, "{v:e}");
        }
        assert_eq!(fmt_stored(1e17), "100000000000000000");
        assert_eq!(fmt_stored(4611686018427387904.0), "4611686018427387904");
        assert_eq!(fmt_stored(9223372036854775807.0), "9.2233720368547758e+18");
        assert_eq!(fmt_stored(-2.5), "-2.5");
    }

    #[test]
    fn scores_parse_as_redis_string2d() {
        for (s, v) in [
            ("1", Some(1.0)),
            ("-1.5", Some(-1.5)),
            ("+2", Some(2.0)),
            ("1e3", Some(1000.0)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("inf", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("0x10", Some(16.0)),
            ("0x1p-2", Some(0.25)),
            ("0X.8P1", Some(1.0)),
            ("1e-320", Some(1e-320)),
            ("0e-999", Some(0.0)),
            ("nan", None),
            ("1e400", None),
            ("1e-400", None),
            (" 1", None),
            ("1 ", None),
            ("", None),
            ("1e", None),
            ("0x", None),
            ("abc", None),
            ("--1", None),
        ] {
            assert_eq!(parse_score(s.as_bytes()), v, "{s:?}");
        }
    }

    #[test]
    fn range_bounds_parse_as_zslparserange() {
        let b = |s: &str| parse_score_bound(s.as_bytes());
        assert_eq!(b("("), Some((0.0, true)));
        assert_eq!(b(""), Some((0.0, false)));
        assert_eq!(b(" 1"), Some((1.0, false)));
        assert_eq!(b("1e999"), Some((f64::INFINITY, false)));
        assert_eq!(b("(-inf"), Some((f64::NEG_INFINITY, true)));
        assert_eq!(b("1\0x"), Some((1.0, false)));
        assert_eq!(b(" "), None);
        assert_eq!(b("nan"), None);
        assert_eq!(b("1x"), None);
    }

    #[test]
    fn the_index_orders_by_score_then_member_and_merges_signed_zeros() {
        let mut z = ZSet::default();
        for (m, s) in [
            ("b", 1.0),
            ("a", 1.0),
            ("c", -0.0),
            ("d", f64::NEG_INFINITY),
        ] {
            z.insert(Bytes::from(m), s);
        }
        let order: Vec<&[u8]> = z.iter().map(|(m, _)| &m[..]).collect();
        assert_eq!(order, [&b"d"[..], b"c", b"a", b"b"]);
        assert_eq!(z.score(b"c").map(f64::is_sign_negative), Some(false));
        assert_eq!(z.rank(b"a", false), Some((2, 1.0)));
        assert_eq!(z.rank(b"a", true), Some((1, 1.0)));
        z.insert(Bytes::from("a"), 5.0);
        assert_eq!(z.rank(b"a", true), Some((0, 5.0)));
        assert_eq!(z.remove(b"a"), Some(5.0));
        assert_eq!((z.len(), z.order.len()), (3, 3));
    }
}
