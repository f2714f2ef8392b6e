//! String commands: GET, SET (EX/PX/EXAT/PXAT/NX/XX/GET/KEEPTTL), SETEX, PSETEX, SETNX, MGET,
//! MSET, MSETNX, INCR/DECR/INCRBY/DECRBY, INCRBYFLOAT, APPEND, STRLEN, GETDEL, GETSET,
//! GETRANGE.

use bytes::Bytes;

use super::args::{is, own, parse_f64, parse_i64, NOT_INT, SYNTAX, WRONGTYPE};
use super::spec::{Ctx, Res};
use crate::db::{now_ms, Db, Value};
use crate::events::GENERIC;

pub fn get(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ks = &mut db.dbs[ctx.client.db];
    match ks.get(&ctx.args[1], now_ms()) {
        None => ctx.out.null(),
        Some(e) => match &e.value {
            Value::Str(s) => ctx.out.bulk(s),
            _ => ctx.out.err(WRONGTYPE),
        },
    }
    Res::Ok
}

pub fn set(ctx: &mut Ctx, db: &mut Db) -> Res {
    let now = now_ms();
    let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
    // Redis parses every option first (the same expiry option may repeat: the last wins;
    // two different ones or one with KEEPTTL are a syntax error) and only then checks the
    // expiry's value.
    let mut expire_arg: Option<(u8, usize)> = None;
    let mut i = 3;
    while i < ctx.args.len() {
        let a = &ctx.args[i];
        let unit = if is(a, "EX") {
            Some(0)
        } else if is(a, "PX") {
            Some(1)
        } else if is(a, "EXAT") {
            Some(2)
        } else if is(a, "PXAT") {
            Some(3)
        } else {
            None
        };
        if let Some(u) = unit {
            if expire_arg.is_some_and(|(other, _)| other != u) || keepttl || i + 1 >= ctx.args.len()
            {
                ctx.out.err(SYNTAX);
                return Res::Ok;
            }
            expire_arg = Some((u, i + 1));
            i += 2;
            continue;
        }
        if is(a, "NX") && !xx {
            nx = true;
        } else if is(a, "XX") && !nx {
            xx = true;
        } else if is(a, "GET") {
            get = true;
        } else if is(a, "KEEPTTL") && expire_arg.is_none() {
            keepttl = true;
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
        i += 1;
    }
    let mut expire: Option<i128> = None;
    if let Some((u, at)) = expire_arg {
        let Some(v) = parse_i64(&ctx.args[at]) else {
            ctx.out.err(NOT_INT);
            return Res::Ok;
        };
        if v <= 0 {
            ctx.out.err("ERR invalid expire time in 'set' command");
            return Res::Ok;
        }
        let v = v as i128;
        expire = Some(match u {
            0 => now as i128 + v * 1000,
            1 => now as i128 + v,
            2 => v * 1000,
            _ => v,
        });
    }
    if expire.is_some_and(|e| e > i64::MAX as i128) {
        ctx.out.err("ERR invalid expire time in 'set' command");
        return Res::Ok;
    }
    let ks = &mut db.dbs[ctx.client.db];
    let key = &ctx.args[1];
    let old = ks.get(key, now);
    let exists = old.is_some();
    if get {
        match old.map(|e| &e.value) {
            None => ctx.out.null(),
            Some(Value::Str(s)) => ctx.out.bulk(s),
            Some(_) => {
                ctx.out.err(WRONGTYPE);
                return Res::Ok;
            }
        }
    }
    if (nx && exists) || (xx && !exists) {
        if !get {
            ctx.out.null();
        }
        return Res::Ok;
    }
    let k = own(key);
    let v = Value::Str(own(&ctx.args[2]));
    if keepttl {
        ks.insert_keep_ttl(k, v);
    } else {
        ks.insert(k, v);
    }
    if let Some(at) = expire {
        ks.set_expire(key, at as u64);
        let ats = at.to_string();
        let (key, val) = (ctx.args[1].clone(), ctx.args[2].clone());
        db.propagate(
            ctx.client.db,
            &[b"SET".as_slice(), &key, &val, b"PXAT", ats.as_bytes()],
        );
    }
    if !get {
        ctx.out.ok();
    }
    Res::Ok
}

pub fn setex(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ms = is(&ctx.args[0], "PSETEX");
    let Some(v) = ctx.int_arg(2) else {
        return Res::Ok;
    };
    if v <= 0 {
        let n = ctx.name_lower();
        ctx.out
            .err(&format!("ERR invalid expire time in '{n}' command"));
        return Res::Ok;
    }
    let at = now_ms() as i128 + if ms { v as i128 } else { v as i128 * 1000 };
    if at > i64::MAX as i128 {
        let n = ctx.name_lower();
        ctx.out
            .err(&format!("ERR invalid expire time in '{n}' command"));
        return Res::Ok;
    }
    let ks = &mut db.dbs[ctx.client.db];
    let k = own(&ctx.args[1]);
    ks.insert(k.clone(), Value::Str(own(&ctx.args[3])));
    ks.set_expire(&k, at as u64);
    let ats = at.to_string();
    db.propagate(
        ctx.client.db,
        &[b"SET".as_slice(), &k, &ctx.args[3], b"PXAT", ats.as_bytes()],
    );
    ctx.out.ok();
    Res::Ok
}

pub fn setnx(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ks = &mut db.dbs[ctx.client.db];
    if ks.contains(&ctx.args[1], now_ms()) {
        ctx.out.int(0);
    } else {
        ks.insert(own(&ctx.args[1]), Value::Str(own(&ctx.args[2])));
        ctx.out.int(1);
    }
    Res::Ok
}

pub fn mget(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ks = &mut db.dbs[ctx.client.db];
    let now = now_ms();
    ctx.out.array(ctx.args.len() - 1);
    for k in &ctx.args[1..] {
        match ks.get(k, now).map(|e| &e.value) {
            Some(Value::Str(s)) => ctx.out.bulk(s),
            _ => ctx.out.null(),
        }
    }
    Res::Ok
}

pub fn mset(ctx: &mut Ctx, db: &mut Db) -> Res {
    if ctx.args.len().is_multiple_of(2) {
        ctx.err_arity();
        return Res::Ok;
    }
    let nx = is(&ctx.args[0], "MSETNX");
    let ks = &mut db.dbs[ctx.client.db];
    let now = now_ms();
    if nx && ctx.args[1..].chunks(2).any(|p| ks.contains(&p[0], now)) {
        ctx.out.int(0);
        return Res::Ok;
    }
    for p in ctx.args[1..].chunks(2) {
        ks.insert(own(&p[0]), Value::Str(own(&p[1])));
    }
    if nx {
        ctx.out.int(1);
    } else {
        ctx.out.ok();
    }
    Res::Ok
}

pub fn incr(ctx: &mut Ctx, db: &mut Db) -> Res {
    let name = &ctx.args[0];
    let by = if is(name, "INCR") {
        1
    } else if is(name, "DECR") {
        -1
    } else {
        let Some(v) = parse_i64(&ctx.args[2]) else {
            ctx.out.err(NOT_INT);
            return Res::Ok;
        };
        if is(name, "DECRBY") {
            match v.checked_neg() {
                Some(n) => n,
                None => {
                    ctx.out.err("ERR decrement would overflow");
                    return Res::Ok;
                }
            }
        } else {
            v
        }
    };
    let ks = &mut db.dbs[ctx.client.db];
    let key = &ctx.args[1];
    let cur = match ks.get_mut(key, now_ms()) {
        None => 0,
        Some(e) => match &e.value {
            Value::Str(s) => match parse_i64(s) {
                Some(v) => v,
                None => {
                    ctx.out.err(NOT_INT);
                    return Res::Ok;
                }
            },
            _ => {
                ctx.out.err(WRONGTYPE);
                return Res::Ok;
            }
        },
    };
    let Some(n) = cur.checked_add(by) else {
        ctx.out.err("ERR increment or decrement would overflow");
        return Res::Ok;
    };
    let mut b = itoa::Buffer::new();
    let v = Bytes::copy_from_slice(b.format(n).as_bytes());
    match ks.get_mut(key, now_ms()) {
        Some(e) => e.value = Value::Str(v),
        None => ks.insert(own(key), Value::Str(v)),
    }
    ctx.out.int(n);
    Res::Ok
}

pub fn incrbyfloat(ctx: &mut Ctx, db: &mut Db) -> Res {
    let Some(by) = parse_f64(&ctx.args[2]) else {
        ctx.out.err(super::args::NOT_FLOAT);
        return Res::Ok;
    };
    let ks = &mut db.dbs[ctx.client.db];
    let key = ctx.args[1].clone();
    let cur = match ks.get(&key, now_ms()).map(|e| &e.value) {
        None => 0.0,
        Some(Value::Str(s)) => match parse_f64(s) {
            Some(v) => v,
            None => {
                ctx.out.err(super::args::NOT_FLOAT);
                return Res::Ok;
            }
        },
        Some(_) => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
    };
    let n = cur + by;
    if !n.is_finite() {
        ctx.out.err("ERR increment would produce NaN or Infinity");
        return Res::Ok;
    }
    let s = Bytes::from(crate::frame::format_double(n));
    ks.insert_keep_ttl(own(&key), Value::Str(s.clone()));
    db.propagate(ctx.client.db, &[b"SET".as_slice(), &key, &s, b"KEEPTTL"]);
    ctx.out.bulk(&s);
    Res::Ok
}

pub fn append(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ks = &mut db.dbs[ctx.client.db];
    let key = &ctx.args[1];
    let add = &ctx.args[2];
    let len = match ks.get_mut(key, now_ms()) {
        None => {
            ks.insert(own(key), Value::Str(own(add)));
            add.len()
        }
        Some(e) => match &mut e.value {
            Value::Str(s) => {
                let mut v = Vec::with_capacity(s.len() + add.len());
                v.extend_from_slice(s);
                v.extend_from_slice(add);
                let l = v.len();
                *s = Bytes::from(v);
                l
            }
            _ => {
                ctx.out.err(WRONGTYPE);
                return Res::Ok;
            }
        },
    };
    ctx.out.int(len as i64);
    Res::Ok
}

pub fn strlen(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ks = &mut db.dbs[ctx.client.db];
    match ks.get(&ctx.args[1], now_ms()).map(|e| &e.value) {
        None => ctx.out.int(0),
        Some(Value::Str(s)) => ctx.out.int(s.len() as i64),
        Some(_) => ctx.out.err(WRONGTYPE),
    }
    Res::Ok
}

pub fn getdel(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ks = &mut db.dbs[ctx.client.db];
    match ks.get(&ctx.args[1], now_ms()).map(|e| &e.value) {
        None => ctx.out.null(),
        Some(Value::Str(s)) => {
            ctx.out.bulk(s);
            ks.remove(&ctx.args[1]);
        }
        Some(_) => ctx.out.err(WRONGTYPE),
    }
    Res::Ok
}

pub fn getset(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ks = &mut db.dbs[ctx.client.db];
    match ks.get(&ctx.args[1], now_ms()).map(|e| &e.value) {
        None => ctx.out.null(),
        Some(Value::Str(s)) => ctx.out.bulk(s),
        Some(_) => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
    }
    ks.insert(own(&ctx.args[1]), Value::Str(own(&ctx.args[2])));
    Res::Ok
}

pub fn getrange(ctx: &mut Ctx, db: &mut Db) -> Res {
    let (Some(s), Some(e)) = (parse_i64(&ctx.args[2]), parse_i64(&ctx.args[3])) else {
        ctx.out.err(NOT_INT);
        return Res::Ok;
    };
    let ks = &mut db.dbs[ctx.client.db];
    match ks.get(&ctx.args[1], now_ms()).map(|e| &e.value) {
        None => ctx.out.bulk(b""),
        Some(Value::Str(v)) => match getrange_bounds(s, e, v.len()) {
            Some((a, b)) => ctx.out.bulk(&v[a..=b]),
            None => ctx.out.bulk(b""),
        },
        Some(_) => ctx.out.err(WRONGTYPE),
    }
    Res::Ok
}

/// SETRANGE key offset value: overwrite part of a string, padding with zero bytes.
pub fn setrange(ctx: &mut Ctx, db: &mut Db) -> Res {
    let Some(offset) = ctx.int_arg(2) else {
        return Res::Ok;
    };
    if offset < 0 {
        ctx.out.err("ERR offset is out of range");
        return Res::Ok;
    }
    let offset = offset as usize;
    let max = ctx
        .shared
        .net
        .proto_max_bulk_len
        .load(std::sync::atomic::Ordering::Relaxed);
    let value = ctx.args[3].clone();
    let ks = &mut db.dbs[ctx.client.db];
    let key = &ctx.args[1];
    let current: &[u8] = match ks.get(key, now_ms()).map(|e| &e.value) {
        None => b"",
        Some(Value::Str(s)) => s,
        Some(_) => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
    };
    if value.is_empty() {
        // Nothing to write: the length as it is (and no key is created).
        ctx.out.int(current.len() as i64);
        return Res::Ok;
    }
    let Some(end) = offset.checked_add(value.len()).filter(|end| *end <= max) else {
        ctx.out
            .err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return Res::Ok;
    };
    let mut v = Vec::with_capacity(end.max(current.len()));
    v.extend_from_slice(current);
    if v.len() < end {
        v.resize(end, 0);
    }
    v[offset..end].copy_from_slice(&value);
    let len = v.len();
    ks.insert_keep_ttl(own(key), Value::Str(Bytes::from(v)));
    ctx.out.int(len as i64);
    Res::Ok
}

/// GETEX key [EX s | PX ms | EXAT unix-s | PXAT unix-ms | PERSIST]: GET, then change the expiry.
pub fn getex(ctx: &mut Ctx, db: &mut Db) -> Res {
    // Redis's order: the options' syntax, then the key (missing: nil; not a string:
    // WRONGTYPE), and only then the expiry's value.
    let now = now_ms();
    let mut expire: Option<(usize, usize)> = None; // (unit, index of its value)
    let mut persist = false;
    let mut i = 2;
    while i < ctx.args.len() {
        let a = &ctx.args[i];
        let unit = ["EX", "PX", "EXAT", "PXAT"].iter().position(|u| is(a, u));
        match unit {
            Some(u) if expire.is_none() && !persist && i + 1 < ctx.args.len() => {
                expire = Some((u, i + 1));
                i += 2;
            }
            None if is(a, "PERSIST") && expire.is_none() => {
                persist = true;
                i += 1;
            }
            _ => {
                ctx.out.err(SYNTAX);
                return Res::Ok;
            }
        }
    }
    let key = ctx.args[1].clone();
    match db.dbs[ctx.client.db].get(&key, now).map(|e| &e.value) {
        None => {
            ctx.out.null();
            return Res::Ok;
        }
        Some(Value::Str(_)) => {}
        Some(_) => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
    }
    let expire = match expire {
        None => None,
        Some((unit, at)) => {
            let Some(v) = ctx.int_arg(at) else {
                return Res::Ok;
            };
            let v = v as i128;
            let at = match unit {
                0 => v * 1000 + now as i128,
                1 => v + now as i128,
                2 => v * 1000,
                _ => v,
            };
            if v <= 0 || at > i64::MAX as i128 {
                ctx.out.err("ERR invalid expire time in 'getex' command");
                return Res::Ok;
            }
            Some(at)
        }
    };
    let ks = &mut db.dbs[ctx.client.db];
    let Some(e) = ks.get(&key, now) else {
        ctx.out.null();
        return Res::Ok;
    };
    let had_expiry = e.expire_at != 0;
    if let Value::Str(s) = &e.value {
        ctx.out.bulk(s);
    }
    // The AOF gets what happened, in absolute time: a replay must not restart the clock.
    if let Some(at) = expire {
        db.expire_at(ctx.client.db, &key, at.max(0) as u64, now);
    } else if persist && had_expiry {
        ks.set_expire(&key, 0);
        db.propagate(ctx.client.db, &[b"PERSIST".as_slice(), &key]);
        db.notify(ctx.client.db, GENERIC, "persist", &key);
    }
    Res::Ok
}

/// GETRANGE's bounds, step for step as Redis 7.0 computes them. Unlike LRANGE, an end that is
/// still negative after adding the length is clamped to 0, not an empty range: `GETRANGE k
/// 0 -3` of `"ab"` is `"a"`.
fn getrange_bounds(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let len = len as i64;
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.max(0).min(len - 1);
    if start > end || len == 0 {
        return None;
    }
    Some((start as usize, end as usize))
}
