//! Consumer groups: XGROUP (CREATE, SETID, DESTROY, CREATECONSUMER, DELCONSUMER), XACK,
//! XPENDING, XCLAIM, XAUTOCLAIM. Claims are logged in a deterministic form (explicit ids,
//! times and counts), so a replay rebuilds the same pending entries.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::common::{
    claim_prop, nogroup, range_bound, stream, stream_with_group, write_entry, write_id, INVALID_ID,
    S,
};
use crate::cmd::args::{is, own, parse_i64, NOT_INT, SYNTAX, WRONGTYPE};
use crate::cmd::spec::{Ctx, Res};
use crate::db::{now_ms, Db, Value};
use crate::events::STREAM;
use crate::frame::Out;
use crate::stream::{Group, Stream, StreamId};

pub fn xgroup(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let sub = args[1].clone();
    let d = ctx.client.db;
    if is(&sub, "HELP") {
        ctx.out.array(1);
        ctx.out
            .simple("XGROUP <subcommand> [<arg> [value] [opt] ...]");
        return Res::Ok;
    }
    if args.len() < 4 {
        ctx.err_subcommand(&sub);
        return Res::Ok;
    }
    let key = args[2].clone();
    let g = args[3].clone();
    if is(&sub, "CREATE") {
        if args.len() < 5 {
            ctx.err_arity();
            return Res::Ok;
        }
        let mut mk = false;
        let mut entries_read = None;
        let mut i = 5;
        while i < args.len() {
            if is(&args[i], "MKSTREAM") {
                mk = true;
                i += 1;
            } else if is(&args[i], "ENTRIESREAD") && i + 1 < args.len() {
                match parse_i64(&args[i + 1]) {
                    Some(n) if n >= -1 => entries_read = (n >= 0).then_some(n as u64),
                    Some(_) => {
                        ctx.out
                            .err("ERR value for ENTRIESREAD must be positive or -1");
                        return Res::Ok;
                    }
                    None => {
                        ctx.out.err(NOT_INT);
                        return Res::Ok;
                    }
                }
                i += 2;
            } else {
                ctx.err_subcommand(&sub);
                return Res::Ok;
            }
        }
        // Redis's order: options, the key's type, a missing key without MKSTREAM, the id;
        // the stream is created only once nothing can fail.
        let last_id = match stream(db, d, &key) {
            S::Wrong => {
                ctx.out.err(WRONGTYPE);
                return Res::Ok;
            }
            S::Missing if !mk => {
                ctx.out.err("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.");
                return Res::Ok;
            }
            S::Missing => StreamId::MIN,
            S::Stream(s) => s.last_id,
        };
        let id = if args[4].as_ref() == b"$" {
            last_id
        } else {
            match StreamId::parse(&args[4], 0) {
                Some(id) => id,
                None => {
                    ctx.out.err(INVALID_ID);
                    return Res::Ok;
                }
            }
        };
        if matches!(stream(db, d, &key), S::Missing) {
            db.dbs[d].insert(own(&key), Value::Stream(Box::default()));
        }
        let S::Stream(s) = stream(db, d, &key) else {
            return Res::Ok;
        };
        if s.groups.contains_key(&g) {
            ctx.out.err("BUSYGROUP Consumer Group name already exists");
            return Res::Ok;
        }
        // Unknown unless given, as in Redis 7.0 (XINFO estimates the lag without it).
        let er = entries_read;
        s.groups.insert(
            own(&g),
            Group {
                last_id: id,
                entries_read: er,
                ..Default::default()
            },
        );
        let mut p = vec![
            Bytes::from_static(b"XGROUP"),
            Bytes::from_static(b"CREATE"),
            key.clone(),
            g.clone(),
            id.to_bytes(),
            Bytes::from_static(b"MKSTREAM"),
        ];
        if let Some(er) = er {
            p.push(Bytes::from_static(b"ENTRIESREAD"));
            p.push(Bytes::from(er.to_string()));
        }
        db.propagate(d, &p);
        db.notify(d, STREAM, "xgroup-create", &key);
        ctx.out.ok();
        return Res::Ok;
    }
    let s = match stream(db, d, &key) {
        S::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        S::Missing => {
            ctx.out.err("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.");
            return Res::Ok;
        }
        S::Stream(s) => s,
    };
    if is(&sub, "DESTROY") && args.len() == 4 {
        let n = s.groups.remove(&g).is_some();
        if n {
            db.notify(d, STREAM, "xgroup-destroy", &key);
        } else {
            ctx.unchanged();
        }
        ctx.out.int(i64::from(n));
        return Res::Ok;
    }
    let last_id = s.last_id;
    let Some(gr) = s.groups.get_mut(&g) else {
        ctx.out.err(&format!(
            "NOGROUP No such consumer group '{}' for key name '{}'",
            String::from_utf8_lossy(&g),
            String::from_utf8_lossy(&key)
        ));
        return Res::Ok;
    };
    if is(&sub, "CREATECONSUMER") && args.len() == 5 {
        let c = &args[4];
        let created = !gr.consumers.contains_key(c);
        if created {
            gr.consumer(&own(c), now_ms());
            db.notify(d, STREAM, "xgroup-createconsumer", &key);
        } else {
            ctx.unchanged();
        }
        ctx.out.int(i64::from(created));
    } else if is(&sub, "DELCONSUMER") && args.len() == 5 {
        let c = &args[4];
        let n = match gr.consumers.remove(c) {
            Some(cons) => {
                for id in &cons.pending {
                    gr.pel.remove(id);
                }
                db.notify(d, STREAM, "xgroup-delconsumer", &key);
                cons.pending.len()
            }
            None => {
                ctx.unchanged();
                0
            }
        };
        ctx.out.int(n as i64);
    } else if is(&sub, "SETID") && (args.len() == 5 || args.len() == 7) {
        let id = if args[4].as_ref() == b"$" {
            last_id
        } else {
            match StreamId::parse(&args[4], 0) {
                Some(id) => id,
                None => {
                    ctx.out.err(INVALID_ID);
                    return Res::Ok;
                }
            }
        };
        let mut er = None;
        if args.len() == 7 {
            if !is(&args[5], "ENTRIESREAD") {
                ctx.out.err(SYNTAX);
                return Res::Ok;
            }
            match parse_i64(&args[6]) {
                Some(n) if n >= -1 => er = (n >= 0).then_some(n as u64),
                _ => {
                    ctx.out
                        .err("ERR value for ENTRIESREAD must be positive or -1");
                    return Res::Ok;
                }
            }
        }
        gr.last_id = id;
        gr.entries_read = er;
        let idb = id.to_bytes();
        let mut p: Vec<Bytes> = args.to_vec();
        p[4] = idb;
        db.propagate(d, &p);
        db.notify(d, STREAM, "xgroup-setid", &key);
        ctx.out.ok();
    } else {
        ctx.err_subcommand(&sub);
    }
    Res::Ok
}

pub fn xack(ctx: &mut Ctx, db: &mut Db) -> Res {
    // Redis's order: the key's type, then "no key or group: nothing to ack" (0), and only
    // then the ids (all parsed before any is acked: all or nothing).
    let g = ctx.args[2].clone();
    let gr = match stream(db, ctx.client.db, &ctx.args[1]) {
        S::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        S::Missing => None,
        S::Stream(s) => s.groups.get_mut(&g),
    };
    let Some(gr) = gr else {
        ctx.out.int(0);
        return Res::Ok;
    };
    let mut ids = Vec::new();
    for a in &ctx.args[3..] {
        match StreamId::parse(a, 0) {
            Some(id) => ids.push(id),
            None => {
                ctx.out.err(INVALID_ID);
                return Res::Ok;
            }
        }
    }
    let n = ids.iter().filter(|id| gr.ack(**id)).count();
    if n == 0 {
        ctx.unchanged();
    }
    ctx.out.int(n as i64);
    Res::Ok
}

pub fn xpending(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let key = args[1].clone();
    let g = args[2].clone();
    let mut min_idle = 0u64;
    let mut i = 3;
    if args.len() > 3 && is(&args[3], "IDLE") {
        match args.get(4).and_then(|a| parse_i64(a)) {
            Some(v) => min_idle = v.max(0) as u64,
            None => {
                ctx.out.err(NOT_INT);
                return Res::Ok;
            }
        }
        i = 5;
    }
    let extended = args.len() > 3;
    if extended && !(args.len() == i + 3 || args.len() == i + 4) {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    // Redis parses the extended form's arguments (count, then start and end) before it looks
    // the key and group up.
    let mut range = None;
    if extended {
        let count = match parse_i64(&args[i + 2]) {
            Some(c) => c.max(0) as usize,
            None => {
                ctx.out.err(NOT_INT);
                return Res::Ok;
            }
        };
        let start = match range_bound(&args[i], true) {
            Ok(id) => id,
            Err(e) => {
                ctx.out.err(e);
                return Res::Ok;
            }
        };
        let end = match range_bound(&args[i + 1], false) {
            Ok(id) => id,
            Err(e) => {
                ctx.out.err(e);
                return Res::Ok;
            }
        };
        range = Some((start, end, count));
    }
    let now = now_ms();
    let Some(s) = stream_with_group(ctx, db, ctx.client.db, &key, &g) else {
        return Res::Ok;
    };
    let Some(gr) = s.groups.get(&g) else {
        nogroup(ctx, &key, &g);
        return Res::Ok;
    };
    let Some((start, end, count)) = range else {
        if gr.pel.is_empty() {
            ctx.out.array(4);
            ctx.out.int(0);
            ctx.out.null();
            ctx.out.null();
            ctx.out.null_array();
            return Res::Ok;
        }
        ctx.out.array(4);
        ctx.out.int(gr.pel.len() as i64);
        let first = gr.pel.keys().next().copied().unwrap_or_default();
        let last = gr.pel.keys().next_back().copied().unwrap_or_default();
        write_id(ctx.out, first);
        write_id(ctx.out, last);
        let with: Vec<_> = gr
            .consumers
            .iter()
            .filter(|(_, c)| !c.pending.is_empty())
            .collect();
        ctx.out.array(with.len());
        for (name, c) in with {
            ctx.out.array(2);
            ctx.out.bulk(name);
            ctx.out.bulk(c.pending.len().to_string().as_bytes());
        }
        return Res::Ok;
    };
    let consumer = args.get(i + 3);
    let items: Vec<_> = if start > end {
        Vec::new()
    } else {
        gr.pel
            .range(start..=end)
            .filter(|(_, p)| consumer.is_none_or(|c| p.consumer == *c))
            .filter(|(_, p)| now.saturating_sub(p.delivery_time) >= min_idle)
            .take(count)
            .collect()
    };
    ctx.out.array(items.len());
    for (id, p) in items {
        ctx.out.array(4);
        write_id(ctx.out, *id);
        ctx.out.bulk(&p.consumer);
        ctx.out.int(now.saturating_sub(p.delivery_time) as i64);
        ctx.out.int(p.delivery_count as i64);
    }
    Res::Ok
}

pub fn xclaim(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let (key, g, c) = (args[1].clone(), args[2].clone(), own(&args[3]));
    // Redis's order: the key's type and the group first, then the arguments.
    let d = ctx.client.db;
    let Some(s) = stream_with_group(ctx, db, d, &key, &g) else {
        return Res::Ok;
    };
    let Some(min_idle) = parse_i64(&args[4]) else {
        ctx.out.err("ERR Invalid min-idle-time argument for XCLAIM");
        return Res::Ok;
    };
    let min_idle = min_idle.max(0) as u64;
    let mut ids = Vec::new();
    let mut i = 5;
    while i < args.len() {
        match StreamId::parse(&args[i], 0) {
            Some(id) => ids.push(id),
            None => break,
        }
        i += 1;
    }
    let now = now_ms();
    let (mut time, mut retry, mut force, mut justid, mut lastid) = (None, None, false, false, None);
    while i < args.len() {
        let a = &args[i];
        let has_value = i + 1 < args.len();
        // An option's value that is not an integer is an error naming the option, as Redis's.
        let value = |ctx: &mut Ctx, opt: &str| {
            let v = parse_i64(&args[i + 1]);
            if v.is_none() {
                ctx.out
                    .err(&format!("ERR Invalid {opt} option argument for XCLAIM"));
            }
            v
        };
        if is(a, "FORCE") {
            force = true;
            i += 1;
        } else if is(a, "JUSTID") {
            justid = true;
            i += 1;
        } else if is(a, "IDLE") && has_value {
            let Some(v) = value(ctx, "IDLE") else {
                return Res::Ok;
            };
            time = Some(now.saturating_sub(v.max(0) as u64));
            i += 2;
        } else if is(a, "TIME") && has_value {
            let Some(v) = value(ctx, "TIME") else {
                return Res::Ok;
            };
            time = Some(v.max(0) as u64);
            i += 2;
        } else if is(a, "RETRYCOUNT") && has_value {
            let Some(v) = value(ctx, "RETRYCOUNT") else {
                return Res::Ok;
            };
            retry = Some(v.max(0) as u64);
            i += 2;
        } else if is(a, "LASTID") && i + 1 < args.len() {
            match StreamId::parse(&args[i + 1], 0) {
                Some(id) => lastid = Some(id),
                None => {
                    ctx.out.err(INVALID_ID);
                    return Res::Ok;
                }
            }
            i += 2;
        } else {
            ctx.out.err(&format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(a)
            ));
            return Res::Ok;
        }
    }
    let Stream {
        entries, groups, ..
    } = &mut *s;
    let Some(gr) = groups.get_mut(&g) else {
        nogroup(ctx, &key, &g);
        return Res::Ok;
    };
    let had_consumer = gr.consumers.contains_key(&c);
    if let Some(l) = lastid {
        if l > gr.last_id {
            gr.last_id = l;
        }
    }
    let mut claimed = Vec::new();
    let mut props = Vec::new();
    for id in ids {
        let exists = entries.contains_key(&id);
        match gr.pel.get(&id) {
            None if !(force && exists) => continue,
            Some(p) if now.saturating_sub(p.delivery_time) < min_idle => continue,
            _ => {}
        }
        if !exists {
            // Deleted from the stream: drop it from the PEL (Redis 7 behaviour).
            gr.ack(id);
            continue;
        }
        gr.assign(id, &c, time.unwrap_or(now), !justid);
        if let Some(p) = gr.pel.get_mut(&id) {
            if let Some(r) = retry {
                p.delivery_count = r;
            }
            props.push(claim_prop(
                &key,
                &g,
                &c,
                id,
                p.delivery_time,
                p.delivery_count,
                gr.last_id,
            ));
        }
        claimed.push(id);
    }
    let new_consumer = !had_consumer && gr.consumers.contains_key(&c);
    write_claimed(ctx.out, &claimed, entries, justid);
    claimed_done(ctx, db, &key, &props, new_consumer)
}

pub fn xautoclaim(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let (key, g, c) = (args[1].clone(), args[2].clone(), own(&args[3]));
    let Some(min_idle) = parse_i64(&args[4]) else {
        ctx.out
            .err("ERR Invalid min-idle-time argument for XAUTOCLAIM");
        return Res::Ok;
    };
    let min_idle = min_idle.max(0) as u64;
    let start = match range_bound(&args[5], true) {
        Ok(id) => id,
        Err(e) => {
            ctx.out.err(e);
            return Res::Ok;
        }
    };
    let mut count = 100usize;
    let mut justid = false;
    let mut i = 6;
    while i < args.len() {
        if is(&args[i], "COUNT") && i + 1 < args.len() {
            match parse_i64(&args[i + 1]) {
                Some(n) if n > 0 && n <= i64::MAX / 10 => count = n as usize,
                _ => {
                    ctx.out.err("ERR COUNT must be > 0");
                    return Res::Ok;
                }
            }
            i += 2;
        } else if is(&args[i], "JUSTID") {
            justid = true;
            i += 1;
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
    }
    let d = ctx.client.db;
    let now = now_ms();
    let Some(s) = stream_with_group(ctx, db, d, &key, &g) else {
        return Res::Ok;
    };
    let Stream {
        entries, groups, ..
    } = &mut *s;
    let Some(gr) = groups.get_mut(&g) else {
        nogroup(ctx, &key, &g);
        return Res::Ok;
    };
    let had_consumer = gr.consumers.contains_key(&c);
    let candidates: Vec<StreamId> = gr.pel.range(start..).map(|(id, _)| *id).collect();
    let mut claimed = Vec::new();
    let mut deleted = Vec::new();
    let mut props = Vec::new();
    let mut next = StreamId::MIN;
    let mut scanned = 0;
    // Redis scans at most COUNT*10 PEL entries per call.
    let mut budget = count * 10;
    for id in candidates {
        if scanned >= count || budget == 0 {
            next = id;
            break;
        }
        budget -= 1;
        let Some(p) = gr.pel.get(&id) else { continue };
        if now.saturating_sub(p.delivery_time) < min_idle {
            continue;
        }
        scanned += 1;
        if !entries.contains_key(&id) {
            gr.ack(id);
            deleted.push(id);
            props.push(vec![
                Bytes::from_static(b"XACK"),
                key.clone(),
                g.clone(),
                id.to_bytes(),
            ]);
            continue;
        }
        gr.assign(id, &c, now, !justid);
        if let Some(p) = gr.pel.get(&id) {
            props.push(claim_prop(
                &key,
                &g,
                &c,
                id,
                p.delivery_time,
                p.delivery_count,
                gr.last_id,
            ));
        }
        claimed.push(id);
    }
    let new_consumer = !had_consumer && gr.consumers.contains_key(&c);
    ctx.out.array(3);
    write_id(ctx.out, next);
    write_claimed(ctx.out, &claimed, entries, justid);
    ctx.out.array(deleted.len());
    for id in deleted {
        write_id(ctx.out, id);
    }
    claimed_done(ctx, db, &key, &props, new_consumer)
}

/// XCLAIM's and XAUTOCLAIM's claimed entries: their ids (JUSTID) or the entries.
fn write_claimed(
    out: &mut Out,
    claimed: &[StreamId],
    entries: &BTreeMap<StreamId, Vec<Bytes>>,
    justid: bool,
) {
    out.array(claimed.len());
    for id in claimed {
        if justid {
            write_id(out, *id);
        } else if let Some(f) = entries.get(id) {
            write_entry(out, *id, f);
        }
    }
}

/// After a claim: the AOF gets each delivery in its replayable form, a consumer the claim
/// created is notified, and a claim that moved nothing changed nothing.
fn claimed_done(
    ctx: &mut Ctx,
    db: &mut Db,
    key: &[u8],
    props: &[Vec<Bytes>],
    new_consumer: bool,
) -> Res {
    let d = ctx.client.db;
    for p in props {
        db.propagate(d, p);
    }
    if new_consumer {
        db.notify(d, STREAM, "xgroup-createconsumer", key);
    }
    if props.is_empty() {
        ctx.unchanged();
    }
    Res::Ok
}
