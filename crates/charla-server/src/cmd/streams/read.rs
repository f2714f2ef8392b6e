//! XREAD and XREADGROUP, blocking or not. A group read records each delivery in the AOF as
//! `XCLAIM … FORCE JUSTID` plus the group's new last id (`XGROUP SETID`), as Redis propagates
//! it, so a replay rebuilds the same pending-entries lists; a blocked group read is released
//! with Redis's errors when its key or group goes away.

use std::ops::Bound;

use bytes::Bytes;

use super::common::{claim_prop, stream, write_entry, write_id, INVALID_ID, S};
use crate::cmd::args::{is, parse_i64, NOT_INT, SYNTAX, WRONGTYPE};
use crate::cmd::blocking::{block, may_block};
use crate::cmd::spec::{Ctx, Res};
use crate::db::{now_ms, Db};
use crate::events::STREAM;
use crate::stream::StreamId;

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
    let mut new_consumers: Vec<Bytes> = Vec::new();
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
                if !gr.consumers.contains_key(c) {
                    new_consumers.push(k.clone());
                }
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
                if !gr.consumers.contains_key(c) {
                    new_consumers.push(k.clone());
                }
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
    for k in &new_consumers {
        db.notify(d, STREAM, "xgroup-createconsumer", k);
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
