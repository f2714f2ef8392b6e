//! Set commands: SADD, SREM, SCARD, SISMEMBER, SMISMEMBER, SMEMBERS, SPOP, SRANDMEMBER, SMOVE,
//! SINTER / SUNION / SDIFF and their STORE forms, SINTERCARD, SSCAN.
//!
//! Members are kept in a hash set, so replies that list members come in no particular order,
//! as from Redis's hashtable-encoded sets (its small all-integer sets come sorted: clients that
//! compare must sort, as they must with Redis). SSCAN returns the whole set in one call with
//! cursor 0, which Redis also does for its small sets. SPOP is random, so the AOF gets the
//! members it removed (SREM), as Redis propagates it.

use std::collections::HashSet;

use bytes::Bytes;

use super::args::{is, own, parse_i64, MAX_RANDOM_REPLY, NOT_INT, RANDOM_REPLY_TOO_BIG, SYNTAX};
use super::spec::{Ctx, Res};
use super::typed;
use crate::db::{glob_match, Db, Value};
use crate::events::{GENERIC, SET};

/// The set at `key`: Ok(None) when missing, Err(()) after writing WRONGTYPE.
fn read<'a>(ctx: &mut Ctx, db: &'a mut Db, key: &[u8]) -> Result<Option<&'a HashSet<Bytes>>, ()> {
    typed::read_as(ctx, db, key, |v| match v {
        Value::Set(s) => Some(s),
        _ => None,
    })
}

/// The set at `key` for changing: Ok(None) when missing, Err(()) after writing WRONGTYPE.
fn write<'a>(
    ctx: &mut Ctx,
    db: &'a mut Db,
    key: &[u8],
) -> Result<Option<&'a mut HashSet<Bytes>>, ()> {
    typed::write_as(ctx, db, key, |v| match v {
        Value::Set(s) => Some(s),
        _ => None,
    })
}

/// Remove `key` if its set became empty.
fn drop_if_empty(db: &mut Db, dbi: usize, key: &[u8]) {
    typed::drop_if_empty(db, dbi, key, |v| matches!(v, Value::Set(s) if s.is_empty()));
}

/// A set of members as a reply: RESP3's set type, an array in RESP2.
fn reply_members<'a>(ctx: &mut Ctx, members: impl ExactSizeIterator<Item = &'a Bytes>) {
    ctx.out.set(members.len());
    for m in members {
        ctx.out.bulk(m);
    }
}

pub fn sadd(ctx: &mut Ctx, db: &mut Db) -> Res {
    let key = ctx.args[1].clone();
    let added = match write(ctx, db, &key) {
        Err(()) => return Res::Ok,
        Ok(Some(set)) => ctx.args[2..].iter().filter(|m| set.insert(own(m))).count(),
        Ok(None) => {
            let set: HashSet<Bytes> = ctx.args[2..].iter().map(own).collect();
            let n = set.len();
            db.dbs[ctx.client.db].insert(own(&key), Value::Set(set));
            n
        }
    };
    if added == 0 {
        ctx.unchanged();
    }
    ctx.out.int(added as i64);
    Res::Ok
}

pub fn srem(ctx: &mut Ctx, db: &mut Db) -> Res {
    let key = ctx.args[1].clone();
    let removed = match write(ctx, db, &key) {
        Err(()) => return Res::Ok,
        Ok(None) => 0,
        Ok(Some(set)) => ctx.args[2..].iter().filter(|m| set.remove(*m)).count(),
    };
    if removed > 0 {
        drop_if_empty(db, ctx.client.db, &key);
    } else {
        ctx.unchanged();
    }
    ctx.out.int(removed as i64);
    Res::Ok
}

pub fn scard(ctx: &mut Ctx, db: &mut Db) -> Res {
    let key = ctx.args[1].clone();
    if let Ok(set) = read(ctx, db, &key) {
        ctx.out.int(set.map_or(0, |s| s.len() as i64));
    }
    Res::Ok
}

/// SISMEMBER key member / SMISMEMBER key member…
pub fn sismember(ctx: &mut Ctx, db: &mut Db) -> Res {
    let key = ctx.args[1].clone();
    let Ok(set) = read(ctx, db, &key) else {
        return Res::Ok;
    };
    let has = |m: &Bytes| i64::from(set.is_some_and(|s| s.contains(m)));
    if is(&ctx.args[0], "SMISMEMBER") {
        let answers: Vec<i64> = ctx.args[2..].iter().map(has).collect();
        ctx.out.array(answers.len());
        for a in answers {
            ctx.out.int(a);
        }
    } else {
        let a = has(&ctx.args[2]);
        ctx.out.int(a);
    }
    Res::Ok
}

pub fn smembers(ctx: &mut Ctx, db: &mut Db) -> Res {
    let key = ctx.args[1].clone();
    match read(ctx, db, &key) {
        Err(()) => {}
        Ok(None) => ctx.out.set(0),
        Ok(Some(set)) => reply_members(ctx, set.iter()),
    }
    Res::Ok
}

/// The optional COUNT of SPOP / SRANDMEMBER: Ok(None) without one, Err(()) after the error.
fn count_arg(ctx: &mut Ctx, allow_negative: bool) -> Result<Option<i64>, ()> {
    match ctx.args.len() {
        2 => Ok(None),
        // Redis's checks: SPOP's count must be a non-negative integer (one error for both),
        // SRANDMEMBER's any integer but the most negative.
        3 => match parse_i64(&ctx.args[2]) {
            Some(n) if n >= 0 || (allow_negative && n > i64::MIN) => Ok(Some(n)),
            Some(_) if allow_negative => {
                ctx.out.err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807");
                Err(())
            }
            None if allow_negative => {
                ctx.out.err(NOT_INT);
                Err(())
            }
            _ => {
                ctx.out.err("ERR value is out of range, must be positive");
                Err(())
            }
        },
        _ => {
            ctx.out.err(SYNTAX);
            Err(())
        }
    }
}

/// Up to `n` distinct members of `set`, chosen at random.
fn pick(set: &HashSet<Bytes>, n: usize) -> Vec<Bytes> {
    if n >= set.len() {
        return set.iter().cloned().collect();
    }
    let mut all: Vec<&Bytes> = set.iter().collect();
    fastrand::shuffle(&mut all);
    all.into_iter().take(n).cloned().collect()
}

pub fn spop(ctx: &mut Ctx, db: &mut Db) -> Res {
    let Ok(count) = count_arg(ctx, false) else {
        return Res::Ok;
    };
    let key = ctx.args[1].clone();
    let popped = match write(ctx, db, &key) {
        Err(()) => return Res::Ok,
        Ok(None) => Vec::new(),
        Ok(Some(set)) => {
            let chosen = pick(set, count.map_or(1, |n| n as usize));
            for m in &chosen {
                set.remove(m);
            }
            chosen
        }
    };
    match count {
        None => match popped.first() {
            Some(m) => ctx.out.bulk(m),
            None => ctx.out.null(),
        },
        Some(_) => reply_members(ctx, popped.iter()),
    }
    if popped.is_empty() {
        ctx.unchanged();
    } else {
        drop_if_empty(db, ctx.client.db, &key);
        // Random: the AOF gets what was removed.
        let mut srem = vec![Bytes::from_static(b"SREM"), key];
        srem.extend(popped);
        db.propagate(ctx.client.db, &srem);
    }
    Res::Ok
}

pub fn srandmember(ctx: &mut Ctx, db: &mut Db) -> Res {
    let Ok(count) = count_arg(ctx, true) else {
        return Res::Ok;
    };
    let key = ctx.args[1].clone();
    let Ok(set) = read(ctx, db, &key) else {
        return Res::Ok;
    };
    let chosen: Vec<Bytes> = match (set, count) {
        (None, _) => Vec::new(),
        (Some(set), None) => pick(set, 1),
        (Some(set), Some(n)) if n >= 0 => pick(set, n as usize),
        // Negative: that many picks, repeats allowed (within a bounded reply).
        (Some(set), Some(n)) => {
            let longest = set.iter().map(Bytes::len).max().unwrap_or(0) as u64;
            if n.unsigned_abs().saturating_mul(longest + 16) > MAX_RANDOM_REPLY {
                ctx.out.err(RANDOM_REPLY_TOO_BIG);
                return Res::Ok;
            }
            let all: Vec<&Bytes> = set.iter().collect();
            (0..n.unsigned_abs())
                .map(|_| all[fastrand::usize(..all.len())].clone())
                .collect()
        }
    };
    match count {
        None => match chosen.first() {
            Some(m) => ctx.out.bulk(m),
            None => ctx.out.null(),
        },
        Some(_) => {
            ctx.out.array(chosen.len());
            for m in &chosen {
                ctx.out.bulk(m);
            }
        }
    }
    Res::Ok
}

pub fn smove(ctx: &mut Ctx, db: &mut Db) -> Res {
    let (src, dst, member) = (
        ctx.args[1].clone(),
        ctx.args[2].clone(),
        ctx.args[3].clone(),
    );
    // Redis's order: a missing source answers 0 before any type is checked.
    let Ok(from) = read(ctx, db, &src) else {
        return Res::Ok;
    };
    let Some(from) = from else {
        ctx.out.int(0);
        return Res::Ok;
    };
    let in_source = from.contains(&member);
    if read(ctx, db, &dst).is_err() {
        return Res::Ok;
    }
    if !in_source {
        ctx.out.int(0);
        return Res::Ok;
    }
    if src != dst {
        if let Ok(Some(from)) = write(ctx, db, &src) {
            from.remove(&member);
        }
        drop_if_empty(db, ctx.client.db, &src);
        db.notify(ctx.client.db, SET, "srem", &src);
        if db.dbs[ctx.client.db].peek(&src).is_none() {
            db.notify(ctx.client.db, GENERIC, "del", &src);
        }
        match write(ctx, db, &dst) {
            Ok(Some(to)) => {
                to.insert(member);
            }
            _ => {
                let set = HashSet::from([member]);
                db.dbs[ctx.client.db].insert(dst.clone(), Value::Set(set));
            }
        }
        db.notify(ctx.client.db, SET, "sadd", &dst);
    }
    ctx.out.int(1);
    Res::Ok
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// The result of `op` over the sets at `keys` (missing keys are empty sets); Err(()) after
/// WRONGTYPE.
fn combine(ctx: &mut Ctx, db: &mut Db, op: Op, keys: &[Bytes]) -> Result<HashSet<Bytes>, ()> {
    let mut sets = Vec::with_capacity(keys.len());
    for k in keys {
        sets.push(read(ctx, db, k)?.cloned().unwrap_or_default());
    }
    let mut sets = sets.into_iter();
    let first = sets.next().unwrap_or_default();
    Ok(match op {
        Op::Union => sets.fold(first, |mut acc, s| {
            acc.extend(s);
            acc
        }),
        Op::Inter => sets.fold(first, |acc, s| {
            acc.into_iter().filter(|m| s.contains(m)).collect()
        }),
        Op::Diff => sets.fold(first, |acc, s| {
            acc.into_iter().filter(|m| !s.contains(m)).collect()
        }),
    })
}

fn op_of(name: &[u8]) -> Op {
    let name = name.to_ascii_uppercase();
    if name.starts_with(b"SINTER") {
        Op::Inter
    } else if name.starts_with(b"SUNION") {
        Op::Union
    } else {
        Op::Diff
    }
}

/// SINTER / SUNION / SDIFF key…
pub fn combine_reply(ctx: &mut Ctx, db: &mut Db) -> Res {
    let op = op_of(&ctx.args[0]);
    let keys = ctx.args[1..].to_vec();
    if let Ok(result) = combine(ctx, db, op, &keys) {
        reply_members(ctx, result.iter());
    }
    Res::Ok
}

/// SINTERSTORE / SUNIONSTORE / SDIFFSTORE destination key…
pub fn combine_store(ctx: &mut Ctx, db: &mut Db) -> Res {
    let op = op_of(&ctx.args[0]);
    let dst = ctx.args[1].clone();
    let keys = ctx.args[2..].to_vec();
    let Ok(result) = combine(ctx, db, op, &keys) else {
        return Res::Ok;
    };
    let n = result.len();
    let d = ctx.client.db;
    let ks = &mut db.dbs[d];
    if result.is_empty() {
        if ks.remove(&dst).is_some() {
            db.notify(d, GENERIC, "del", &dst);
        }
    } else {
        ks.insert(dst.clone(), Value::Set(result));
        let event = match op {
            Op::Inter => "sinterstore",
            Op::Union => "sunionstore",
            Op::Diff => "sdiffstore",
        };
        db.notify(d, SET, event, &dst);
    }
    ctx.out.int(n as i64);
    Res::Ok
}

/// SINTERCARD numkeys key… [LIMIT limit]
pub fn sintercard(ctx: &mut Ctx, db: &mut Db) -> Res {
    // Redis gives one error for a count that is not a number and one that is not positive.
    let Some(numkeys) = parse_i64(&ctx.args[1]).filter(|n| *n > 0) else {
        ctx.out.err("ERR numkeys should be greater than 0");
        return Res::Ok;
    };
    let numkeys = numkeys as usize;
    if numkeys > ctx.args.len() - 2 {
        ctx.out
            .err("ERR Number of keys can't be greater than number of args");
        return Res::Ok;
    }
    let keys = ctx.args[2..2 + numkeys].to_vec();
    let mut limit = 0usize;
    let rest = &ctx.args[2 + numkeys..];
    let mut i = 0;
    while i < rest.len() {
        if is(&rest[i], "LIMIT") && i + 1 < rest.len() {
            let Some(l) = parse_i64(&rest[i + 1]).filter(|l| *l >= 0) else {
                ctx.out.err("ERR LIMIT can't be negative");
                return Res::Ok;
            };
            limit = l as usize;
            i += 2;
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
    }
    if let Ok(result) = combine(ctx, db, Op::Inter, &keys) {
        let n = if limit > 0 {
            result.len().min(limit)
        } else {
            result.len()
        };
        ctx.out.int(n as i64);
    }
    Res::Ok
}

/// SSCAN key cursor [MATCH pattern] [COUNT count]: the whole set at once (cursor 0).
pub fn sscan(ctx: &mut Ctx, db: &mut Db) -> Res {
    if super::options::scan_cursor(ctx, 2).is_none() {
        return Res::Ok;
    }
    // Redis's order: the cursor, then the key (missing: an empty scan, whatever the options
    // say), then the options.
    let key = ctx.args[1].clone();
    let Ok(set) = read(ctx, db, &key) else {
        return Res::Ok;
    };
    let Some(set) = set else {
        super::options::reply_empty_scan(ctx);
        return Res::Ok;
    };
    // COUNT is checked and has nothing to bound: the whole set goes in one reply.
    let Some(super::options::ScanOptions { pattern, .. }) =
        super::options::scan_options(ctx, 3, false)
    else {
        return Res::Ok;
    };
    let members: Vec<Bytes> = set
        .iter()
        .filter(|m| pattern.as_ref().is_none_or(|p| glob_match(p, m)))
        .cloned()
        .collect();
    ctx.out.array(2);
    ctx.out.bulk(b"0");
    ctx.out.array(members.len());
    for m in &members {
        ctx.out.bulk(m);
    }
    Res::Ok
}
