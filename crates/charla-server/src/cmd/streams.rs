//! Stream commands: XADD, XLEN, XRANGE, XREVRANGE, XREAD, XREADGROUP, XGROUP, XACK, XPENDING,
//! XCLAIM, XAUTOCLAIM, XTRIM, XDEL, XSETID, XINFO.
//!
//! Anything that depends on the clock or on generated ids is written to the AOF in a
//! deterministic form (explicit ids, XCLAIM ... FORCE JUSTID for deliveries), as Redis does, so
//! replay rebuilds the same pending-entries lists.

use std::ops::Bound;

use bytes::Bytes;

use super::args::{is, own, parse_i64, NOT_INT, SYNTAX, WRONGTYPE};
use super::blocking::{block, may_block};
use super::spec::{Ctx, Res};
use crate::db::{now_ms, Db, Value};
use crate::frame::Out;
use crate::stream::{Group, Stream, StreamId};

const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";

enum S<'a> {
    Missing,
    Wrong,
    Stream(&'a mut Stream),
}

fn stream<'a>(db: &'a mut Db, d: usize, key: &[u8]) -> S<'a> {
    match db.dbs[d].get_mut(key, now_ms()).map(|e| &mut e.value) {
        None => S::Missing,
        Some(Value::Stream(s)) => S::Stream(s),
        Some(_) => S::Wrong,
    }
}

fn write_entry(out: &mut Out, id: StreamId, fields: &[Bytes]) {
    out.array(2);
    out.bulk(id.to_string().as_bytes());
    out.array(fields.len());
    for f in fields {
        out.bulk(f);
    }
}

fn write_id(out: &mut Out, id: StreamId) {
    out.bulk(id.to_string().as_bytes());
}

/// Parse an id where `-`/`+` mean the ends and `(` excludes (XRANGE / XPENDING bounds).
fn range_bound(s: &[u8], is_start: bool) -> Result<StreamId, &'static str> {
    if s == b"-" {
        return Ok(StreamId::MIN);
    }
    if s == b"+" {
        return Ok(StreamId::MAX);
    }
    let (excl, s) = match s.first() {
        Some(b'(') => (true, &s[1..]),
        _ => (false, s),
    };
    let id = StreamId::parse(s, if is_start { 0 } else { u64::MAX }).ok_or(INVALID_ID)?;
    if !excl {
        return Ok(id);
    }
    if is_start {
        id.incr().ok_or("ERR invalid start ID for the interval")
    } else {
        id.decr().ok_or("ERR invalid end ID for the interval")
    }
}

/// Trimming options shared by XADD and XTRIM: returns (maxlen, minid, limit) and how many args
/// were consumed, or an error text.
struct Trim {
    maxlen: Option<u64>,
    minid: Option<StreamId>,
    limit: u64,
}

fn parse_trim(args: &[Bytes], mut i: usize, trim: &mut Trim) -> Result<usize, &'static str> {
    let kind = &args[i];
    let is_max = is(kind, "MAXLEN");
    i += 1;
    let mut approx = false;
    if i < args.len() && (args[i].as_ref() == b"~" || args[i].as_ref() == b"=") {
        approx = args[i].as_ref() == b"~";
        i += 1;
    }
    let th = args.get(i).ok_or(SYNTAX)?;
    if is_max {
        match parse_i64(th) {
            Some(n) if n >= 0 => trim.maxlen = Some(n as u64),
            Some(_) => return Err("ERR The MAXLEN argument must be >= 0."),
            None => return Err(NOT_INT),
        }
    } else {
        trim.minid = Some(StreamId::parse(th, 0).ok_or(INVALID_ID)?);
    }
    i += 1;
    if i + 1 < args.len() && is(&args[i], "LIMIT") {
        if !approx {
            return Err("ERR syntax error, LIMIT cannot be used without the special ~ option");
        }
        match parse_i64(&args[i + 1]) {
            Some(n) if n >= 0 => trim.limit = n as u64,
            _ => return Err("ERR The LIMIT argument must be >= 0."),
        }
        i += 2;
    }
    Ok(i)
}

fn apply_trim(s: &mut Stream, t: &Trim) -> u64 {
    let mut n = 0;
    if let Some(m) = t.maxlen {
        n += s.trim_maxlen(m, t.limit);
    }
    if let Some(m) = t.minid {
        n += s.trim_minid(m, t.limit);
    }
    n
}

pub fn xadd(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let mut i = 2;
    let mut nomk = false;
    let mut trim = Trim {
        maxlen: None,
        minid: None,
        limit: 0,
    };
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
    apply_trim(s, &trim);
    let idb = id.to_bytes();
    // The AOF gets the generated id, so replay rebuilds the same stream.
    let mut prop: Vec<Bytes> = args.to_vec();
    prop[id_at] = idb.clone();
    db.propagate(d, &prop);
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

/// Why XREAD/XREADGROUP cannot read stream `k`: a wrong type, or (with a group) a missing
/// key or group.
fn stream_error(
    db: &mut Db,
    d: usize,
    k: &[u8],
    group: Option<&(Bytes, Bytes)>,
    woken: bool,
) -> Option<String> {
    let nogroup = |g: &[u8]| {
        format!(
            "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
            String::from_utf8_lossy(k),
            String::from_utf8_lossy(g)
        )
    };
    match (stream(db, d, k), group) {
        (S::Wrong | S::Missing, Some(_)) if woken => {
            Some("UNBLOCKED the stream key no longer exists".into())
        }
        (S::Stream(s), Some((g, _))) if woken && !s.groups.contains_key(g) => {
            Some("NOGROUP the consumer group this client was blocked on no longer exists".into())
        }
        (S::Wrong, _) => Some(WRONGTYPE.to_string()),
        (S::Missing, Some((g, _))) => Some(nogroup(g)),
        (S::Stream(s), Some((g, _))) if !s.groups.contains_key(g) => Some(nogroup(g)),
        _ => None,
    }
}

/// XREAD and XREADGROUP.
pub fn xread(ctx: &mut Ctx, db: &mut Db) -> Res {
    let group_mode = is(&ctx.args[0], "XREADGROUP");
    let args = ctx.args;
    let mut i = 1;
    let mut count = usize::MAX;
    let mut block_ms: Option<i64> = None;
    let mut noack = false;
    let mut group: Option<(Bytes, Bytes)> = None;
    while i < args.len() {
        let a = &args[i];
        if is(a, "STREAMS") {
            i += 1;
            break;
        } else if is(a, "COUNT") && i + 1 < args.len() {
            match parse_i64(&args[i + 1]) {
                Some(c) if c > 0 => count = c as usize,
                Some(_) => count = usize::MAX,
                None => {
                    ctx.out.err(NOT_INT);
                    return Res::Ok;
                }
            }
            i += 2;
        } else if is(a, "BLOCK") && i + 1 < args.len() {
            match parse_i64(&args[i + 1]) {
                Some(b) if b >= 0 => block_ms = Some(b),
                Some(_) => {
                    ctx.out.err("ERR timeout is negative");
                    return Res::Ok;
                }
                None => {
                    ctx.out.err("ERR timeout is not an integer or out of range");
                    return Res::Ok;
                }
            }
            i += 2;
        } else if group_mode && is(a, "NOACK") {
            noack = true;
            i += 1;
        } else if group_mode && is(a, "GROUP") && i + 2 < args.len() {
            group = Some((args[i + 1].clone(), args[i + 2].clone()));
            i += 3;
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
    }
    if group_mode && group.is_none() {
        ctx.out.err("ERR Missing GROUP option for XREADGROUP");
        return Res::Ok;
    }
    let rest = &args[i.min(args.len())..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        ctx.out.err("ERR Unbalanced 'xread' list of streams: for each stream key an ID or '$' must be specified.");
        return Res::Ok;
    }
    let n = rest.len() / 2;
    let (keys, ids) = rest.split_at(n);
    let d = ctx.client.db;
    let now = now_ms();

    // Resolve the start ids once: `$` must mean "the last id when the command was first
    // run", not at each wakeup, so it is remembered across re-runs of a blocked command.
    // Redis goes stream by stream: the key's type and group, then that stream's id.
    if ctx.client.block_ids.is_none() {
        let mut resolved = Vec::with_capacity(n);
        for (k, id) in keys.iter().zip(ids) {
            if let Some(e) = stream_error(db, d, k, group.as_ref(), false) {
                ctx.out.err(&e);
                return Res::Ok;
            }
            let r = if id.as_ref() == b"$" {
                if group_mode {
                    ctx.out.err("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.");
                    return Res::Ok;
                }
                match stream(db, d, k) {
                    S::Stream(s) => Some(s.last_id),
                    _ => Some(StreamId::MIN),
                }
            } else if id.as_ref() == b">" {
                if !group_mode {
                    ctx.out.err("ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.");
                    return Res::Ok;
                }
                None
            } else if id.as_ref() == b"+" && !group_mode {
                match stream(db, d, k) {
                    S::Stream(s) => Some(s.last_id.decr().unwrap_or(StreamId::MIN)),
                    _ => Some(StreamId::MIN),
                }
            } else {
                match StreamId::parse(id, 0) {
                    Some(v) => Some(v),
                    None => {
                        ctx.out.err(INVALID_ID);
                        return Res::Ok;
                    }
                }
            };
            resolved.push(r);
        }
        ctx.client.block_ids = Some(resolved);
    }
    let resolved = ctx.client.block_ids.clone().unwrap_or_default();

    // Check types and groups again on a re-run (a woken blocked command): errors come before
    // any state change. A blocked XREADGROUP woken because its key or group went away is told
    // so, with Redis's errors for that case.
    let woken = group_mode && ctx.client.block_started;
    for k in keys {
        if let Some(e) = stream_error(db, d, k, group.as_ref(), woken) {
            ctx.out.err(&e);
            return Res::Ok;
        }
    }

    // Gather replies per key: (key, entries) where an entry may be deleted (None fields).
    type Entries = Vec<(StreamId, Option<Vec<Bytes>>)>;
    let mut results: Vec<(Bytes, Entries)> = Vec::new();
    let mut props: Vec<Vec<Bytes>> = Vec::new();
    let mut any_history = false;
    for (idx, k) in keys.iter().enumerate() {
        let S::Stream(s) = stream(db, d, k) else {
            continue;
        };
        match (&group, resolved[idx]) {
            (None, Some(after)) => {
                let items: Entries = s
                    .entries
                    .range((Bound::Excluded(after), Bound::Unbounded))
                    .take(count)
                    .map(|(id, f)| (*id, Some(f.clone())))
                    .collect();
                if !items.is_empty() {
                    results.push((k.clone(), items));
                }
            }
            (Some((g, c)), None) => {
                // New messages for the group.
                let entries_added = s.entries_added;
                let Some(gr) = s.groups.get(g) else { continue };
                let from = gr.last_id;
                let items: Entries = s
                    .entries
                    .range((Bound::Excluded(from), Bound::Unbounded))
                    .take(count)
                    .map(|(id, f)| (*id, Some(f.clone())))
                    .collect();
                // Each delivered id moves the group's read counter as Redis does: one more
                // when the counter is known and nothing after the id was deleted, else
                // estimated again.
                let counters: Vec<Option<u64>> = {
                    let mut read = gr.entries_read;
                    items
                        .iter()
                        .map(|(id, _)| {
                            read = match read {
                                Some(r) if !s.has_tombstones_from(*id) => Some(r + 1),
                                _ if entries_added > 0 => s.estimate_entries_read(*id),
                                _ => read,
                            };
                            read
                        })
                        .collect()
                };
                let Some(gr) = s.groups.get_mut(g) else {
                    continue;
                };
                gr.consumer(c, now).seen_time = now;
                if items.is_empty() {
                    continue;
                }
                let cons = gr.consumer(c, now);
                cons.active_time = Some(now);
                for ((id, _), read) in items.iter().zip(counters) {
                    gr.last_id = *id;
                    gr.entries_read = read;
                    if !noack {
                        gr.assign(*id, c, now, false);
                        let p = &gr.pel[id];
                        props.push(claim_prop(
                            k,
                            g,
                            c,
                            *id,
                            p.delivery_time,
                            p.delivery_count,
                            *id,
                        ));
                    }
                }
                let lastid = gr.last_id.to_bytes();
                let mut setid = vec![
                    Bytes::from_static(b"XGROUP"),
                    Bytes::from_static(b"SETID"),
                    k.clone(),
                    g.clone(),
                    lastid,
                ];
                if let Some(r) = gr.entries_read {
                    setid.push(Bytes::from_static(b"ENTRIESREAD"));
                    setid.push(Bytes::from(r.to_string()));
                }
                props.push(setid);
                results.push((k.clone(), items));
            }
            (Some((g, c)), Some(after)) => {
                // History: this consumer's own pending entries after `after`.
                any_history = true;
                let Some(gr) = s.groups.get_mut(g) else {
                    continue;
                };
                let ids: Vec<StreamId> = gr
                    .consumer(c, now)
                    .pending
                    .range((Bound::Excluded(after), Bound::Unbounded))
                    .take(count)
                    .copied()
                    .collect();
                let items: Entries = ids
                    .iter()
                    .map(|id| (*id, s.entries.get(id).cloned()))
                    .collect();
                // Reading history is a redelivery: Redis bumps the count and the time.
                for (id, f) in &items {
                    if f.is_none() {
                        continue;
                    }
                    if let Some(p) = gr.pel.get_mut(id) {
                        p.delivery_count += 1;
                        p.delivery_time = now;
                        props.push(claim_prop(k, g, c, *id, now, p.delivery_count, gr.last_id));
                    }
                }
                results.push((k.clone(), items));
            }
            (None, None) => {}
        }
    }
    for p in &props {
        db.propagate(d, p);
    }
    if props.is_empty() {
        // Nothing delivered or redelivered (the stream was only looked at).
        ctx.unchanged();
    }
    if results.is_empty() && !any_history {
        if let Some(ms) = block_ms {
            if may_block(ctx) {
                let t = if ms == 0 {
                    None
                } else {
                    Some(std::time::Duration::from_millis(ms as u64))
                };
                let refs: Vec<&Bytes> = keys.iter().collect();
                return block(ctx, db, &refs, t);
            }
        }
        ctx.out.null_array();
        return Res::Ok;
    }
    if ctx.out.proto >= 3 {
        ctx.out.map(results.len());
    } else {
        ctx.out.array(results.len());
    }
    for (k, items) in results {
        if ctx.out.proto < 3 {
            ctx.out.array(2);
        }
        ctx.out.bulk(&k);
        ctx.out.array(items.len());
        for (id, f) in items {
            match f {
                Some(f) => write_entry(ctx.out, id, &f),
                None => {
                    ctx.out.array(2);
                    write_id(ctx.out, id);
                    ctx.out.null_array();
                }
            }
        }
    }
    Res::Ok
}

/// The AOF form of one delivery: XCLAIM ... FORCE JUSTID with the exact time and count.
fn claim_prop(
    key: &Bytes,
    group: &Bytes,
    consumer: &Bytes,
    id: StreamId,
    time: u64,
    count: u64,
    lastid: StreamId,
) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XCLAIM"),
        key.clone(),
        group.clone(),
        consumer.clone(),
        Bytes::from_static(b"0"),
        id.to_bytes(),
        Bytes::from_static(b"TIME"),
        Bytes::from(time.to_string()),
        Bytes::from_static(b"RETRYCOUNT"),
        Bytes::from(count.to_string()),
        Bytes::from_static(b"FORCE"),
        Bytes::from_static(b"JUSTID"),
        Bytes::from_static(b"LASTID"),
        lastid.to_bytes(),
    ]
}

/// The stream at `key` when it has group `g`; otherwise the reply Redis gives (WRONGTYPE, or
/// NOGROUP for a missing key or group) is written and `None` returned.
fn stream_with_group<'a>(
    ctx: &mut Ctx,
    db: &'a mut Db,
    d: usize,
    key: &[u8],
    g: &[u8],
) -> Option<&'a mut Stream> {
    match stream(db, d, key) {
        S::Wrong => {
            ctx.out.err(WRONGTYPE);
            None
        }
        S::Stream(s) if s.groups.contains_key(g) => Some(s),
        S::Missing | S::Stream(_) => {
            nogroup(ctx, key, g);
            None
        }
    }
}

fn nogroup(ctx: &mut Ctx, key: &[u8], g: &[u8]) {
    ctx.out.err(&format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(g)
    ));
}

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
        if !n {
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
        }
        if !created {
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
                cons.pending.len()
            }
            None => 0,
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
    ctx.out.array(claimed.len());
    for id in &claimed {
        if justid {
            write_id(ctx.out, *id);
        } else if let Some(f) = entries.get(id) {
            write_entry(ctx.out, *id, f);
        }
    }
    for p in &props {
        db.propagate(d, p);
    }
    if props.is_empty() {
        ctx.unchanged();
    }
    Res::Ok
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
    ctx.out.array(3);
    write_id(ctx.out, next);
    ctx.out.array(claimed.len());
    for id in &claimed {
        if justid {
            write_id(ctx.out, *id);
        } else if let Some(f) = entries.get(id) {
            write_entry(ctx.out, *id, f);
        }
    }
    ctx.out.array(deleted.len());
    for id in deleted {
        write_id(ctx.out, id);
    }
    for p in &props {
        db.propagate(d, p);
    }
    if props.is_empty() {
        ctx.unchanged();
    }
    Res::Ok
}

pub fn xtrim(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    if !(is(&args[2], "MAXLEN") || is(&args[2], "MINID")) {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    let mut t = Trim {
        maxlen: None,
        minid: None,
        limit: 0,
    };
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

pub fn xinfo(ctx: &mut Ctx, db: &mut Db) -> Res {
    let args = ctx.args;
    let sub = args[1].clone();
    if is(&sub, "HELP") {
        ctx.out.array(1);
        ctx.out
            .simple("XINFO <subcommand> [<arg> [value] [opt] ...]");
        return Res::Ok;
    }
    if args.len() < 3 {
        ctx.err_subcommand(&sub);
        return Res::Ok;
    }
    let now = now_ms();
    let s = match stream(db, ctx.client.db, &args[2]) {
        S::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        S::Missing => {
            ctx.out.err("ERR no such key");
            return Res::Ok;
        }
        S::Stream(s) => s,
    };
    let out = &mut *ctx.out;
    if is(&sub, "STREAM") {
        out.map(10);
        out.bulk(b"length");
        out.int(s.entries.len() as i64);
        out.bulk(b"radix-tree-keys");
        out.int(s.entries.len().div_ceil(100) as i64);
        out.bulk(b"radix-tree-nodes");
        out.int(s.entries.len().div_ceil(100) as i64 + 1);
        out.bulk(b"last-generated-id");
        write_id(out, s.last_id);
        out.bulk(b"max-deleted-entry-id");
        write_id(out, s.max_deleted_id);
        out.bulk(b"entries-added");
        out.int(s.entries_added as i64);
        out.bulk(b"recorded-first-entry-id");
        write_id(out, s.first_id().unwrap_or_default());
        out.bulk(b"groups");
        out.int(s.groups.len() as i64);
        out.bulk(b"first-entry");
        match s.entries.first_key_value() {
            Some((id, f)) => write_entry(out, *id, f),
            None => out.null(),
        }
        out.bulk(b"last-entry");
        match s.entries.last_key_value() {
            Some((id, f)) => write_entry(out, *id, f),
            None => out.null(),
        }
    } else if is(&sub, "GROUPS") {
        out.array(s.groups.len());
        for (name, g) in &s.groups {
            out.map(6);
            out.bulk(b"name");
            out.bulk(name);
            out.bulk(b"consumers");
            out.int(g.consumers.len() as i64);
            out.bulk(b"pending");
            out.int(g.pel.len() as i64);
            out.bulk(b"last-delivered-id");
            write_id(out, g.last_id);
            out.bulk(b"entries-read");
            match g.entries_read {
                Some(n) => out.int(n as i64),
                None => out.null(),
            }
            // Redis's `streamReplyWithCGLag`.
            out.bulk(b"lag");
            let read = match g.entries_read {
                _ if s.entries_added == 0 => Some(0),
                Some(n) if !s.has_tombstones_from(g.last_id) => Some(n),
                _ => s.estimate_entries_read(g.last_id),
            };
            match read {
                Some(n) => out.int(s.entries_added.saturating_sub(n) as i64),
                None => out.null(),
            }
        }
    } else if is(&sub, "CONSUMERS") && args.len() == 4 {
        let Some(g) = s.groups.get(&args[3]) else {
            let (k, gn) = (args[2].clone(), args[3].clone());
            ctx.out.err(&format!(
                "NOGROUP No such consumer group '{}' for key name '{}'",
                String::from_utf8_lossy(&gn),
                String::from_utf8_lossy(&k)
            ));
            return Res::Ok;
        };
        out.array(g.consumers.len());
        for (name, c) in &g.consumers {
            out.map(4);
            out.bulk(b"name");
            out.bulk(name);
            out.bulk(b"pending");
            out.int(c.pending.len() as i64);
            out.bulk(b"idle");
            out.int(now.saturating_sub(c.seen_time) as i64);
            out.bulk(b"inactive");
            match c.active_time {
                Some(t) => out.int(now.saturating_sub(t) as i64),
                None => out.int(-1),
            }
        }
    } else {
        ctx.err_subcommand(&sub);
    }
    Res::Ok
}
