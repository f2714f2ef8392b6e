//! More hash commands: HSCAN, HINCRBYFLOAT, HRANDFIELD.
//!
//! - HSCAN returns the whole hash in one call with cursor 0, as Redis does for a small
//!   (listpack) hash, and in the hash's insertion order, which is Redis's order for such a
//!   hash (see `cmd::hashes`). COUNT is checked and has nothing to bound.
//! - HINCRBYFLOAT computes in f64 (Redis: long double, see docs/serve-differences.md) and
//!   gives the AOF `HSET key field <result>`, as Redis propagates it, so a replay does not
//!   depend on float formatting.
//! - HRANDFIELD picks at random; a count at least the hash's size returns the whole hash in
//!   its order, and distinct picks come in the hash's order, as from Redis's listpack hashes.
//!   A negative count (picks with repeats) is refused when its reply could only be longer
//!   than `proto-max-bulk-len` (Redis would try to build it).

use bytes::Bytes;
use indexmap::IndexMap;

use super::args::{
    c_strtod, is, own, parse_i64, MAX_RANDOM_REPLY, NOT_FLOAT, NOT_INT, RANDOM_REPLY_TOO_BIG,
    SYNTAX,
};
use super::spec::{Ctx, Res};
use super::typed;
use crate::db::{glob_match, now_ms, Db, Value};

/// The hash at argument 1: Ok(None) when missing, Err(()) after writing WRONGTYPE.
fn read<'a>(ctx: &mut Ctx, db: &'a mut Db) -> Result<Option<&'a IndexMap<Bytes, Bytes>>, ()> {
    let key = ctx.args[1].clone();
    typed::read_as(ctx, db, &key, |v| match v {
        Value::Hash(h) => Some(h),
        _ => None,
    })
}

/// HSCAN key cursor [MATCH pattern] [COUNT count]
pub fn hscan(ctx: &mut Ctx, db: &mut Db) -> Res {
    // Redis's order: the cursor, the key (missing: an empty scan whatever the options say),
    // then the options.
    if super::options::scan_cursor(ctx, 2).is_none() {
        return Res::Ok;
    }
    let Ok(h) = read(ctx, db) else {
        return Res::Ok;
    };
    let Some(h) = h else {
        super::options::reply_empty_scan(ctx);
        return Res::Ok;
    };
    let Some(super::options::ScanOptions { pattern, .. }) =
        super::options::scan_options(ctx, 3, false)
    else {
        return Res::Ok;
    };
    let matching = |f: &Bytes| pattern.as_ref().is_none_or(|p| glob_match(p, f));
    let n = h.keys().filter(|f| matching(f)).count();
    ctx.out.array(2);
    ctx.out.bulk(b"0");
    ctx.out.array(n * 2);
    for (f, v) in h.iter().filter(|(f, _)| matching(f)) {
        ctx.out.bulk(f);
        ctx.out.bulk(v);
    }
    Res::Ok
}

/// Redis's `string2ld` (HINCRBYFLOAT's reading of both numbers): `strtold` over the whole
/// argument, no leading space, not NaN, not out of range.
fn parse_ld(s: &[u8]) -> Option<f64> {
    // MAX_LONG_DOUBLE_CHARS.
    if s.is_empty() || s.len() >= 5 * 1024 || s[0].is_ascii_whitespace() || s[0] == 0x0b {
        return None;
    }
    let (v, used, erange) = c_strtod(s);
    if used != s.len() || v.is_nan() || (erange && (v.is_infinite() || v == 0.0)) {
        return None;
    }
    Some(v)
}

/// HINCRBYFLOAT key field increment
pub fn hincrbyfloat(ctx: &mut Ctx, db: &mut Db) -> Res {
    let Some(by) = parse_ld(&ctx.args[3]) else {
        ctx.out.err(NOT_FLOAT);
        return Res::Ok;
    };
    if by.is_infinite() {
        ctx.out.err("ERR value is NaN or Infinity");
        return Res::Ok;
    }
    let field = ctx.args[2].clone();
    let Ok(h) = read(ctx, db) else {
        return Res::Ok;
    };
    let cur = match h.and_then(|h| h.get(&field)) {
        None => 0.0,
        Some(v) => match parse_ld(v) {
            Some(v) => v,
            None => {
                ctx.out.err("ERR hash value is not a float");
                return Res::Ok;
            }
        },
    };
    let n = cur + by;
    if !n.is_finite() {
        ctx.out.err("ERR increment would produce NaN or Infinity");
        return Res::Ok;
    }
    let s = Bytes::from(crate::frame::format_double(n));
    let key = ctx.args[1].clone();
    let ks = &mut db.dbs[ctx.client.db];
    match ks.get_mut(&key, now_ms()).map(|e| &mut e.value) {
        Some(Value::Hash(h)) => {
            h.insert(own(&field), s.clone());
        }
        _ => {
            let h = IndexMap::from([(own(&field), s.clone())]);
            ks.insert(own(&key), Value::Hash(h));
        }
    }
    // The result, not the increment: a replay must not depend on float arithmetic.
    db.propagate(ctx.client.db, &[b"HSET".as_slice(), &key, &field, &s]);
    ctx.out.bulk(&s);
    Res::Ok
}

/// One field (and its value) of an HRANDFIELD reply: a pair is an array of two in RESP3, two
/// items of the flat array in RESP2.
fn reply_entry(ctx: &mut Ctx, f: &[u8], v: &[u8], with_values: bool) {
    if with_values && ctx.out.proto >= 3 {
        ctx.out.array(2);
    }
    ctx.out.bulk(f);
    if with_values {
        ctx.out.bulk(v);
    }
}

/// HRANDFIELD key [count [WITHVALUES]]
pub fn hrandfield(ctx: &mut Ctx, db: &mut Db) -> Res {
    let argc = ctx.args.len();
    if argc == 2 {
        match read(ctx, db) {
            Err(()) => {}
            Ok(None) => ctx.out.null(),
            Ok(Some(h)) if h.is_empty() => ctx.out.null(),
            Ok(Some(h)) => {
                let i = fastrand::usize(..h.len());
                if let Some((f, _)) = h.get_index(i) {
                    ctx.out.bulk(f);
                }
            }
        }
        return Res::Ok;
    }
    // Redis's order: the count (any integer but the most negative), the syntax, WITHVALUES'
    // narrower range, then the key.
    let count = match parse_i64(&ctx.args[2]) {
        Some(i64::MIN) => {
            ctx.out.err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807");
            return Res::Ok;
        }
        Some(n) => n,
        None => {
            ctx.out.err(NOT_INT);
            return Res::Ok;
        }
    };
    if argc > 4 || (argc == 4 && !is(&ctx.args[3], "WITHVALUES")) {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    let with_values = argc == 4;
    if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        ctx.out.err("ERR value is out of range");
        return Res::Ok;
    }
    let resp2 = ctx.out.proto < 3;
    let h = match read(ctx, db) {
        Err(()) => return Res::Ok,
        Ok(Some(h)) if !h.is_empty() => h,
        Ok(_) => {
            ctx.out.array(0);
            return Res::Ok;
        }
    };
    if count == 0 {
        ctx.out.array(0);
        return Res::Ok;
    }
    let len = h.len();
    let n = count.unsigned_abs();
    let items = |k: u64| if with_values && resp2 { k * 2 } else { k };
    if count < 0 || count == 1 {
        // Picks with repeats, in random order. Each costs at least its bulk strings' bytes:
        // a reply that must be longer than the random-pick bound is not built.
        let smallest = h
            .iter()
            .map(|(f, v)| f.len() as u64 + 5 + if with_values { v.len() as u64 + 5 } else { 0 })
            .min()
            .unwrap_or(0);
        if n.saturating_mul(smallest) > MAX_RANDOM_REPLY {
            ctx.out.err(RANDOM_REPLY_TOO_BIG);
            return Res::Ok;
        }
        ctx.out.array(items(n) as usize);
        for _ in 0..n {
            if let Some((f, v)) = h.get_index(fastrand::usize(..len)) {
                reply_entry(ctx, f, v, with_values);
            }
        }
        return Res::Ok;
    }
    if n >= len as u64 {
        ctx.out.array(items(len as u64) as usize);
        for (f, v) in h {
            reply_entry(ctx, f, v, with_values);
        }
        return Res::Ok;
    }
    // Distinct picks, in the hash's order (as Redis gives them from a listpack).
    let mut picked = fastrand::choose_multiple(0..len, n as usize);
    picked.sort_unstable();
    ctx.out.array(items(n) as usize);
    for i in picked {
        if let Some((f, v)) = h.get_index(i) {
            reply_entry(ctx, f, v, with_values);
        }
    }
    Res::Ok
}
