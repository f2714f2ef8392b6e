//! Key commands: DEL, UNLINK, EXISTS, TYPE, KEYS, SCAN, EXPIRE family, TTL family, PERSIST,
//! RENAME, RANDOMKEY.

use super::args::{is, own, SYNTAX};
use super::spec::{Ctx, Res};
use crate::db::{glob_match, now_ms, Db};
use crate::events::GENERIC;

pub fn del(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ks = &mut db.dbs[ctx.client.db];
    let now = now_ms();
    let mut n = 0;
    for k in &ctx.args[1..] {
        if ks.get(k, now).is_some() {
            ks.remove(k);
            n += 1;
        }
    }
    if n == 0 {
        ctx.unchanged();
    }
    ctx.out.int(n);
    Res::Ok
}

pub fn exists(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ks = &mut db.dbs[ctx.client.db];
    let now = now_ms();
    let n = ctx.args[1..].iter().filter(|k| ks.contains(k, now)).count();
    ctx.out.int(n as i64);
    Res::Ok
}

pub fn type_(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ks = &mut db.dbs[ctx.client.db];
    let t = ks
        .get(&ctx.args[1], now_ms())
        .map_or("none", |e| e.value.type_name());
    ctx.out.simple(t);
    Res::Ok
}

pub fn keys(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ks = &mut db.dbs[ctx.client.db];
    let now = now_ms();
    let pat = &ctx.args[1];
    let found: Vec<_> = ks
        .iter()
        .filter(|(k, e)| (e.expire_at == 0 || e.expire_at > now) && glob_match(pat, k))
        .map(|(k, _)| k.clone())
        .collect();
    ctx.out.array(found.len());
    for k in found {
        ctx.out.bulk(&k);
    }
    Res::Ok
}

/// SCAN: the cursor is a slot index of the keyspace's stable slot order (see
/// [`crate::db::Keyspace::scan`]), so a call does COUNT's worth of work and a key present for
/// the whole iteration is returned whatever else is deleted or added.
pub fn scan(ctx: &mut Ctx, db: &mut Db) -> Res {
    let Some(cursor) = super::options::scan_cursor(ctx, 1) else {
        return Res::Ok;
    };
    let Some(super::options::ScanOptions {
        pattern: pat,
        count,
        kind: ty,
    }) = super::options::scan_options(ctx, 2, true)
    else {
        return Res::Ok;
    };
    let ks = &db.dbs[ctx.client.db];
    let mut found = Vec::new();
    let next = ks.scan(cursor, count, now_ms(), |k, e| {
        if pat.as_ref().is_some_and(|p| !glob_match(p, k)) {
            return;
        }
        if ty.as_deref().is_some_and(|t| e.value.type_name() != t) {
            return;
        }
        found.push(k.clone());
    });
    ctx.out.array(2);
    ctx.out.bulk(next.to_string().as_bytes());
    ctx.out.array(found.len());
    for k in found {
        ctx.out.bulk(&k);
    }
    Res::Ok
}

pub fn expire(ctx: &mut Ctx, db: &mut Db) -> Res {
    let name = ctx.args[0].to_ascii_uppercase();
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for a in &ctx.args[3..] {
        if is(a, "NX") {
            nx = true
        } else if is(a, "XX") {
            xx = true
        } else if is(a, "GT") {
            gt = true
        } else if is(a, "LT") {
            lt = true
        } else {
            ctx.out.err(&format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(a)
            ));
            return Res::Ok;
        }
    }
    if nx && (xx || gt || lt) {
        ctx.out
            .err("ERR NX and XX, GT or LT options at the same time are not compatible");
        return Res::Ok;
    }
    if gt && lt {
        ctx.out
            .err("ERR GT and LT options at the same time are not compatible");
        return Res::Ok;
    }
    // The time is parsed after the options, as Redis does.
    let Some(v) = ctx.int_arg(2) else {
        return Res::Ok;
    };
    let now = now_ms();
    let at: i128 = match name.as_slice() {
        b"EXPIRE" => now as i128 + v as i128 * 1000,
        b"PEXPIRE" => now as i128 + v as i128,
        b"EXPIREAT" => v as i128 * 1000,
        _ => v as i128,
    };
    if at > i64::MAX as i128 || at < i64::MIN as i128 {
        let n = ctx.name_lower();
        ctx.out
            .err(&format!("ERR invalid expire time in '{n}' command"));
        return Res::Ok;
    }
    let key = ctx.args[1].clone();
    let ks = &mut db.dbs[ctx.client.db];
    let Some(e) = ks.get(&key, now) else {
        ctx.out.int(0);
        return Res::Ok;
    };
    let cur = e.expire_at;
    let ok = if nx {
        cur == 0
    } else if xx {
        cur != 0
    } else {
        true
    } && (!gt || (cur != 0 && at > cur as i128))
        && (!lt || cur == 0 || at < cur as i128);
    if !ok {
        ctx.out.int(0);
        return Res::Ok;
    }
    // Negative deadlines are long past: the key goes.
    db.expire_at(ctx.client.db, &key, at.max(0) as u64, now);
    ctx.out.int(1);
    Res::Ok
}

pub fn ttl(ctx: &mut Ctx, db: &mut Db) -> Res {
    let name = ctx.args[0].to_ascii_uppercase();
    let now = now_ms();
    let ks = &mut db.dbs[ctx.client.db];
    let Some(e) = ks.get(&ctx.args[1], now) else {
        ctx.out.int(-2);
        return Res::Ok;
    };
    if e.expire_at == 0 {
        ctx.out.int(-1);
        return Res::Ok;
    }
    let left = e.expire_at.saturating_sub(now) as i64;
    let v = match name.as_slice() {
        b"TTL" => (left + 500) / 1000,
        b"PTTL" => left,
        b"EXPIRETIME" => (e.expire_at / 1000) as i64,
        _ => e.expire_at as i64,
    };
    ctx.out.int(v);
    Res::Ok
}

pub fn persist(ctx: &mut Ctx, db: &mut Db) -> Res {
    let now = now_ms();
    let ks = &mut db.dbs[ctx.client.db];
    let had = ks.get(&ctx.args[1], now).is_some_and(|e| e.expire_at != 0);
    if had {
        ks.set_expire(&ctx.args[1], 0);
    }
    ctx.out.int(i64::from(had));
    Res::Ok
}

pub fn rename(ctx: &mut Ctx, db: &mut Db) -> Res {
    let nx = is(&ctx.args[0], "RENAMENX");
    let now = now_ms();
    let ks = &mut db.dbs[ctx.client.db];
    let (src, dst) = (ctx.args[1].clone(), ctx.args[2].clone());
    if ks.get(&src, now).is_none() {
        ctx.out.err("ERR no such key");
        return Res::Ok;
    }
    if nx && ks.contains(&dst, now) {
        ctx.out.int(0);
        return Res::Ok;
    }
    if src != dst {
        if let Some(e) = ks.remove(&src) {
            let dk = own(&dst);
            ks.insert(dk.clone(), e.value);
            if e.expire_at != 0 {
                ks.set_expire(&dk, e.expire_at);
            }
            db.notify(ctx.client.db, GENERIC, "rename_from", &src);
            db.notify(ctx.client.db, GENERIC, "rename_to", &dst);
        }
    }
    if nx {
        ctx.out.int(1);
    } else {
        ctx.out.ok();
    }
    Res::Ok
}

pub fn randomkey(ctx: &mut Ctx, db: &mut Db) -> Res {
    match db.dbs[ctx.client.db].random_key(now_ms()) {
        Some(k) => ctx.out.bulk(&k),
        None => ctx.out.null(),
    }
    Res::Ok
}

/// COPY source destination [DB index] [REPLACE]: the value and its expiry, under a new name
/// (in another database with DB).
pub fn copy(ctx: &mut Ctx, db: &mut Db) -> Res {
    let mut replace = false;
    let mut target = ctx.client.db;
    let mut i = 3;
    while i < ctx.args.len() {
        if is(&ctx.args[i], "REPLACE") {
            replace = true;
            i += 1;
        } else if is(&ctx.args[i], "DB") && i + 1 < ctx.args.len() {
            let Some(n) = ctx.int_arg(i + 1) else {
                return Res::Ok;
            };
            if !(0..crate::db::NUM_DBS as i64).contains(&n) {
                ctx.out.err("ERR DB index is out of range");
                return Res::Ok;
            }
            target = n as usize;
            i += 2;
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
    }
    let (src, dst) = (ctx.args[1].clone(), ctx.args[2].clone());
    if target == ctx.client.db && src == dst {
        ctx.out
            .err("ERR source and destination objects are the same");
        return Res::Ok;
    }
    let now = now_ms();
    let Some(e) = db.dbs[ctx.client.db].get(&src, now) else {
        ctx.out.int(0);
        return Res::Ok;
    };
    let (value, expire_at) = (e.value.clone(), e.expire_at);
    let to = &mut db.dbs[target];
    if to.contains(&dst, now) {
        if !replace {
            ctx.out.int(0);
            return Res::Ok;
        }
        to.remove(&dst);
    }
    to.insert(own(&dst), value);
    if expire_at != 0 {
        to.set_expire(&dst, expire_at);
    }
    // The table's key positions wake clients blocked in this database; the copy may land in
    // another one.
    if target != ctx.client.db {
        db.signal(target, &dst);
    }
    db.notify(target, GENERIC, "copy_to", &dst);
    ctx.out.int(1);
    Res::Ok
}

/// MOVE key db: the key, its value and expiry, into another database, unless a key of that
/// name is there already.
pub fn move_(ctx: &mut Ctx, db: &mut Db) -> Res {
    let Some(target) = ctx.int_arg(2) else {
        return Res::Ok;
    };
    if !(0..crate::db::NUM_DBS as i64).contains(&target) {
        ctx.out.err("ERR DB index is out of range");
        return Res::Ok;
    }
    let (source, target) = (ctx.client.db, target as usize);
    if source == target {
        ctx.out
            .err("ERR source and destination objects are the same");
        return Res::Ok;
    }
    let key = ctx.args[1].clone();
    let now = now_ms();
    if !db.dbs[source].contains(&key, now) || db.dbs[target].contains(&key, now) {
        ctx.out.int(0);
        return Res::Ok;
    }
    let Some(e) = db.dbs[source].remove(&key) else {
        ctx.out.int(0);
        return Res::Ok;
    };
    let to = &mut db.dbs[target];
    to.insert(key.clone(), e.value);
    if e.expire_at != 0 {
        to.set_expire(&key, e.expire_at);
    }
    // The key lands in another database than the one the table's key positions are woken in.
    db.signal(target, &key);
    db.notify(source, GENERIC, "move_from", &key);
    db.notify(target, GENERIC, "move_to", &key);
    ctx.out.int(1);
    Res::Ok
}
