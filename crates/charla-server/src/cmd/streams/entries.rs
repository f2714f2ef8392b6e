//! The entries of a stream: XADD, XLEN, XRANGE / XREVRANGE, XTRIM, XDEL, XSETID. XADD logs
//! the id it generated, so a replay rebuilds the same stream.

use super::common::{
    apply_trim, parse_trim, range_bound, stream, write_entry, Trim, INVALID_ID, S,
};
use crate::cmd::args::{is, own, parse_i64, NOT_INT, SYNTAX, WRONGTYPE};
use crate::cmd::spec::{Ctx, Res};
use crate::db::{now_ms, Db, Value};
use crate::events::STREAM;
use crate::stream::StreamId;

pub fn xadd(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let mut i = 2;
    let mut nomk = false;
    let mut trim = Trim::default();
    loop {
        let Some(a) = args.get(i) else {
            ctx.err_arity();
            return Res::Ok;
        };
        if is(a, "NOMKSTREAM") {
            nomk = true;
            i += 1;
        } else if is(a, "MAXLEN") || is(a, "MINID") {
            match parse_trim(args, i, &mut trim) {
                Ok(n) => i = n,
                Err(e) => {
                    ctx.out.err(e);
                    return Res::Ok;
                }
            }
        } else {
            break;
        }
    }
    let id_at = i;
    let idarg = &args[id_at];
    // Parse the requested id: None = `*`, Some((ms, None)) = `ms-*`.
    let req: Option<(u64, Option<u64>)> = if idarg.as_ref() == b"*" {
        None
    } else if idarg.ends_with(b"-*") {
        match StreamId::parse(&idarg[..idarg.len() - 2], 0) {
            Some(id) if !idarg[..idarg.len() - 2].contains(&b'-') => Some((id.ms, None)),
            _ => {
                ctx.out.err(INVALID_ID);
                return Res::Ok;
            }
        }
    } else {
        match StreamId::parse(idarg, 0) {
            Some(id) => Some((id.ms, Some(id.seq))),
            None => {
                ctx.out.err(INVALID_ID);
                return Res::Ok;
            }
        }
    };
    // Redis's order: the id is parsed before the field/value count is checked.
    let fields = &args[i + 1..];
    if fields.is_empty() || !fields.len().is_multiple_of(2) {
        ctx.err_arity();
        return Res::Ok;
    }
    if req == Some((0, Some(0))) {
        ctx.out
            .err("ERR The ID specified in XADD must be greater than 0-0");
        return Res::Ok;
    }
    let d = ctx.client.db;
    let key = &args[1];
    match stream(db, d, key) {
        S::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        S::Missing if nomk => {
            ctx.out.null();
            return Res::Ok;
        }
        S::Missing => {
            db.dbs[d].insert(own(key), Value::Stream(Box::default()));
        }
        S::Stream(_) => {}
    }
    let S::Stream(s) = stream(db, d, key) else {
        return Res::Ok;
    };
    let last = s.last_id;
    if last == StreamId::MAX {
        // Redis checks this before looking at the requested id.
        ctx.out
            .err("ERR The stream has exhausted the last possible ID, unable to add more items");
        return Res::Ok;
    }
    let too_small =
        "ERR The ID specified in XADD is equal or smaller than the target stream top item";
    let id = match req {
        None => {
            let now = now_ms();
            if now > last.ms {
                StreamId::new(now, 0)
            } else {
                match last.incr() {
                    Some(id) => id,
                    None => {
                        ctx.out.err("ERR The stream has exhausted the last possible ID, unable to add more items");
                        return Res::Ok;
                    }
                }
            }
        }
        Some((ms, None)) => {
            if ms < last.ms {
                ctx.out.err(too_small);
                return Res::Ok;
            }
            if ms == last.ms {
                if last.seq == u64::MAX {
                    ctx.out.err(too_small);
                    return Res::Ok;
                }
                StreamId::new(ms, last.seq + 1)
            } else {
                StreamId::new(ms, 0)
            }
        }
        Some((ms, Some(seq))) => {
            let id = StreamId::new(ms, seq);
            if id <= last {
                ctx.out.err(too_small);
                return Res::Ok;
            }
            id
        }
    };
    s.entries.insert(id, fields.iter().map(own).collect());
    s.last_id = id;
    s.entries_added += 1;
    let trimmed = apply_trim(s, &trim);
    let idb = id.to_bytes();
    // The AOF gets the generated id, so replay rebuilds the same stream.
    db.propagate_replacing(d, args, id_at, &idb);
    if trimmed > 0 {
        // After the table's `xadd`, as Redis sends them.
        db.notify(d, STREAM, "xtrim", key);
    }
    ctx.out.bulk(&idb);
    Res::Ok
}

pub fn xlen(ctx: &mut Ctx, db: &mut Db) -> Res {
    match stream(db, ctx.client.db, &ctx.args[1]) {
        S::Missing => ctx.out.int(0),
        S::Wrong => ctx.out.err(WRONGTYPE),
        S::Stream(s) => ctx.out.int(s.entries.len() as i64),
    }
    Res::Ok
}

pub fn xrange(ctx: &mut Ctx, db: &mut Db) -> Res {
    let rev = is(&ctx.args[0], "XREVRANGE");
    let (a, b) = if rev { (3, 2) } else { (2, 3) };
    let start = match range_bound(&ctx.args[a], true) {
        Ok(id) => id,
        Err(e) => {
            ctx.out.err(e);
            return Res::Ok;
        }
    };
    let end = match range_bound(&ctx.args[b], false) {
        Ok(id) => id,
        Err(e) => {
            ctx.out.err(e);
            return Res::Ok;
        }
    };
    let mut count = usize::MAX;
    match ctx.args.len() {
        4 => {}
        6 if is(&ctx.args[4], "COUNT") => match parse_i64(&ctx.args[5]) {
            Some(c) if c >= 0 => count = c as usize,
            Some(_) => count = 0,
            None => {
                ctx.out.err(NOT_INT);
                return Res::Ok;
            }
        },
        _ => {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
    }
    match stream(db, ctx.client.db, &ctx.args[1]) {
        S::Missing => ctx.out.array(0),
        S::Wrong => ctx.out.err(WRONGTYPE),
        S::Stream(s) => {
            // COUNT 0 (or negative) on an existing stream is a null array in Redis, an empty
            // range an empty one.
            if count == 0 {
                ctx.out.null_array();
                return Res::Ok;
            }
            if start > end {
                ctx.out.array(0);
                return Res::Ok;
            }
            let r = s.entries.range(start..=end);
            let items: Vec<_> = if rev {
                r.rev().take(count).collect()
            } else {
                r.take(count).collect()
            };
            ctx.out.array(items.len());
            for (id, f) in items {
                write_entry(ctx.out, *id, f);
            }
        }
    }
    Res::Ok
}

pub fn xtrim(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    if !(is(&args[2], "MAXLEN") || is(&args[2], "MINID")) {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    let mut t = Trim::default();
    match parse_trim(args, 2, &mut t) {
        Ok(n) if n == args.len() => {}
        Ok(_) => {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
        Err(e) => {
            ctx.out.err(e);
            return Res::Ok;
        }
    }
    let n = match stream(db, ctx.client.db, &args[1]) {
        S::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        S::Missing => 0,
        S::Stream(s) => apply_trim(s, &t),
    };
    if n == 0 {
        ctx.unchanged();
    }
    ctx.out.int(n as i64);
    Res::Ok
}

pub fn xdel(ctx: &mut Ctx, db: &mut Db) -> Res {
    // Redis's order: a missing key is 0 and a wrong type an error before any id is parsed.
    let n = match stream(db, ctx.client.db, &ctx.args[1]) {
        S::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        S::Missing => 0,
        S::Stream(s) => {
            let mut ids = Vec::new();
            for a in &ctx.args[2..] {
                match StreamId::parse(a, 0) {
                    Some(id) => ids.push(id),
                    None => {
                        ctx.out.err(INVALID_ID);
                        return Res::Ok;
                    }
                }
            }
            let mut n = 0;
            for id in ids {
                if s.entries.remove(&id).is_some() {
                    if id > s.max_deleted_id {
                        s.max_deleted_id = id;
                    }
                    n += 1;
                }
            }
            n
        }
    };
    if n == 0 {
        ctx.unchanged();
    }
    ctx.out.int(n);
    Res::Ok
}

pub fn xsetid(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let Some(id) = StreamId::parse(&args[2], 0) else {
        ctx.out.err(INVALID_ID);
        return Res::Ok;
    };
    let (mut added, mut maxdel) = (None, None);
    let mut i = 3;
    while i + 1 < args.len() {
        if is(&args[i], "ENTRIESADDED") {
            added = parse_i64(&args[i + 1]).map(|v| v.max(0) as u64);
        } else if is(&args[i], "MAXDELETEDID") {
            maxdel = StreamId::parse(&args[i + 1], 0);
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
        i += 2;
    }
    if i != args.len() {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    match stream(db, ctx.client.db, &args[1]) {
        S::Wrong => ctx.out.err(WRONGTYPE),
        S::Missing => ctx.out.err("ERR no such key"),
        S::Stream(s) => {
            let top = s.entries.keys().next_back().copied().unwrap_or_default();
            if id < top {
                ctx.out.err(
                    "ERR The ID specified in XSETID is smaller than the target stream top item",
                );
                return Res::Ok;
            }
            s.last_id = id;
            if let Some(a) = added {
                s.entries_added = a;
            }
            if let Some(m) = maxdel {
                s.max_deleted_id = m;
            }
            ctx.out.ok();
        }
    }
    Res::Ok
}
