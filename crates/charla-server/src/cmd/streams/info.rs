//! XINFO STREAM (with FULL), GROUPS and CONSUMERS.

use super::common::{stream, write_entry, write_id, S};
use crate::cmd::args::{is, WRONGTYPE};
use crate::cmd::spec::{Ctx, Res};
use crate::db::{now_ms, Db};

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
