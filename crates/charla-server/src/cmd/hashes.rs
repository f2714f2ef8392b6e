//! Hash commands: HSET/HMSET, HSETNX, HGET, HMGET, HGETALL, HDEL, HEXISTS, HLEN, HINCRBY,
//! HKEYS, HVALS, HSTRLEN (HSCAN, HINCRBYFLOAT, HRANDFIELD: `hashes_ext`).
//!
//! A hash keeps its fields in insertion order (an `IndexMap`): Redis keeps a small hash as a
//! listpack, which lists fields in the order they were added, an update keeping its place and
//! a deletion closing the gap; so HGETALL, HKEYS, HVALS and HSCAN of such a hash answer in
//! Redis's order exactly. A big one (over [`LISTPACK_ENTRIES`] fields) is in Redis's hash
//! table order, which nobody can rely on: there a deletion moves the last field into the gap,
//! which costs O(1) instead of O(n).

use indexmap::IndexMap;

use bytes::Bytes;

use super::args::{is, own, parse_i64, NOT_INT, WRONGTYPE};
use super::spec::{Ctx, Res};
use crate::db::{now_ms, Db, Value};

/// Redis's `hash-max-listpack-entries` (7.0's default): up to this many fields a hash is a
/// listpack, in insertion order.
pub const LISTPACK_ENTRIES: usize = 512;
/// Redis's `hash-max-listpack-value`: a longer field or value makes the hash a hash table.
pub const LISTPACK_VALUE: usize = 64;

/// Remove field `f`, keeping the others' order while the hash is listpack-sized.
fn remove_field(h: &mut IndexMap<Bytes, Bytes>, f: &[u8]) -> Option<Bytes> {
    if h.len() <= LISTPACK_ENTRIES {
        h.shift_remove(f)
    } else {
        h.swap_remove(f)
    }
}

/// The hash at `key` for reading: Ok(None) if missing, Err(()) after writing WRONGTYPE.
macro_rules! read_hash {
    ($ctx:expr, $db:expr) => {{
        let ks = &mut $db.dbs[$ctx.client.db];
        match ks.get(&$ctx.args[1], now_ms()).map(|e| &e.value) {
            None => None,
            Some(Value::Hash(h)) => Some(h),
            Some(_) => {
                $ctx.out.err(WRONGTYPE);
                return Res::Ok;
            }
        }
    }};
}

/// The hash at `key` for writing, created when missing.
fn write_hash<'a>(ctx: &mut Ctx, db: &'a mut Db) -> Option<&'a mut IndexMap<Bytes, Bytes>> {
    let ks = &mut db.dbs[ctx.client.db];
    let key = &ctx.args[1];
    let now = now_ms();
    if ks.get(key, now).is_none() {
        ks.insert(own(key), Value::Hash(IndexMap::new()));
    }
    match ks.get_mut(key, now).map(|e| &mut e.value) {
        Some(Value::Hash(h)) => Some(h),
        _ => {
            ctx.out.err(WRONGTYPE);
            None
        }
    }
}

pub fn hset(ctx: &mut Ctx, db: &mut Db) -> Res {
    if !ctx.args.len().is_multiple_of(2) {
        ctx.err_arity();
        return Res::Ok;
    }
    let hm = is(&ctx.args[0], "HMSET");
    let args = ctx.args;
    let Some(h) = write_hash(ctx, db) else {
        return Res::Ok;
    };
    let mut added = 0;
    for p in args[2..].chunks(2) {
        if h.insert(own(&p[0]), own(&p[1])).is_none() {
            added += 1;
        }
    }
    if hm {
        ctx.out.ok();
    } else {
        ctx.out.int(added);
    }
    Res::Ok
}

pub fn hsetnx(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    if let Some(h) = read_hash!(ctx, db) {
        if h.contains_key(&args[2]) {
            ctx.out.int(0);
            return Res::Ok;
        }
    }
    let Some(h) = write_hash(ctx, db) else {
        return Res::Ok;
    };
    h.insert(own(&args[2]), own(&args[3]));
    ctx.out.int(1);
    Res::Ok
}

pub fn hget(ctx: &mut Ctx, db: &mut Db) -> Res {
    let f = ctx.args[2].clone();
    match read_hash!(ctx, db).and_then(|h| h.get(&f)) {
        Some(v) => ctx.out.bulk(v),
        None => ctx.out.null(),
    }
    Res::Ok
}

pub fn hmget(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let h = read_hash!(ctx, db);
    ctx.out.array(args.len() - 2);
    for f in &args[2..] {
        match h.and_then(|h| h.get(f)) {
            Some(v) => ctx.out.bulk(v),
            None => ctx.out.null(),
        }
    }
    Res::Ok
}

pub fn hgetall(ctx: &mut Ctx, db: &mut Db) -> Res {
    match read_hash!(ctx, db) {
        None => ctx.out.map(0),
        Some(h) => {
            ctx.out.map(h.len());
            for (k, v) in h {
                ctx.out.bulk(k);
                ctx.out.bulk(v);
            }
        }
    }
    Res::Ok
}

pub fn hdel(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let key = args[1].clone();
    let Some(_) = read_hash!(ctx, db) else {
        ctx.out.int(0);
        return Res::Ok;
    };
    let ks = &mut db.dbs[ctx.client.db];
    let mut n = 0;
    let mut empty = false;
    if let Some(Value::Hash(h)) = ks.get_mut(&key, now_ms()).map(|e| &mut e.value) {
        for f in &args[2..] {
            if remove_field(h, f).is_some() {
                n += 1;
            }
        }
        empty = h.is_empty();
    }
    if empty {
        ks.remove(&key);
    }
    if n == 0 {
        ctx.unchanged();
    }
    ctx.out.int(n);
    Res::Ok
}

pub fn hexists(ctx: &mut Ctx, db: &mut Db) -> Res {
    let f = ctx.args[2].clone();
    let v = read_hash!(ctx, db).is_some_and(|h| h.contains_key(&f));
    ctx.out.int(i64::from(v));
    Res::Ok
}

pub fn hlen(ctx: &mut Ctx, db: &mut Db) -> Res {
    let n = read_hash!(ctx, db).map_or(0, |h| h.len());
    ctx.out.int(n as i64);
    Res::Ok
}

pub fn hstrlen(ctx: &mut Ctx, db: &mut Db) -> Res {
    let f = ctx.args[2].clone();
    let n = read_hash!(ctx, db)
        .and_then(|h| h.get(&f))
        .map_or(0, |v| v.len());
    ctx.out.int(n as i64);
    Res::Ok
}

pub fn hincrby(ctx: &mut Ctx, db: &mut Db) -> Res {
    let Some(by) = parse_i64(&ctx.args[3]) else {
        ctx.out.err(NOT_INT);
        return Res::Ok;
    };
    let f = ctx.args[2].clone();
    let cur = match read_hash!(ctx, db).and_then(|h| h.get(&f)) {
        None => 0,
        Some(v) => match parse_i64(v) {
            Some(n) => n,
            None => {
                ctx.out.err("ERR hash value is not an integer");
                return Res::Ok;
            }
        },
    };
    let Some(n) = cur.checked_add(by) else {
        ctx.out.err("ERR increment or decrement would overflow");
        return Res::Ok;
    };
    let Some(h) = write_hash(ctx, db) else {
        return Res::Ok;
    };
    h.insert(own(&f), Bytes::from(n.to_string()));
    ctx.out.int(n);
    Res::Ok
}

pub fn hkeys(ctx: &mut Ctx, db: &mut Db) -> Res {
    let vals = is(&ctx.args[0], "HVALS");
    match read_hash!(ctx, db) {
        None => ctx.out.array(0),
        Some(h) => {
            ctx.out.array(h.len());
            for (k, v) in h {
                ctx.out.bulk(if vals { v } else { k });
            }
        }
    }
    Res::Ok
}
