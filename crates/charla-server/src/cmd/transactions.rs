//! MULTI / EXEC / DISCARD / WATCH. WATCH's check and every queued command run under one
//! acquisition of the keyspace lock, so no other client sees half a transaction or slips a
//! write between the check and the execution; the AOF gets the transaction framed in
//! MULTI … EXEC. WATCH is conservative: any write to
//! the watched database since WATCH aborts the EXEC (a false abort only costs the client a
//! retry, which optimistic-locking loops already do; a missed conflict would be a bug), and so
//! does a watched key's expiry, as in Redis.

use super::apply::run_queued;
use super::spec::{Ctx, Res, WRITE};
use crate::client::Watch;
use crate::db::Db;
use crate::frame::encode_command;

pub fn multi(ctx: &mut Ctx) -> Res {
    if ctx.client.multi.is_some() {
        ctx.out.err("ERR MULTI calls can not be nested");
        return Res::Ok;
    }
    ctx.client.multi = Some(Vec::new());
    ctx.client.multi_error = false;
    ctx.out.ok();
    Res::Ok
}

pub fn discard(ctx: &mut Ctx) -> Res {
    if ctx.client.multi.take().is_none() {
        ctx.out.err("ERR DISCARD without MULTI");
        return Res::Ok;
    }
    ctx.client.multi_error = false;
    ctx.client.watch = None;
    ctx.out.ok();
    Res::Ok
}

pub fn watch(ctx: &mut Ctx) -> Res {
    if ctx.client.multi.is_some() {
        ctx.out.err("ERR WATCH inside MULTI is not allowed");
        return Res::Ok;
    }
    let db = ctx.shared.lock_db();
    let now = crate::db::now_ms();
    let keyspace = &db.dbs[ctx.client.db];
    let watch = ctx.client.watch.get_or_insert(Watch {
        writes: db.writes,
        first_expiry: None,
    });
    for key in &ctx.args[1..] {
        if let Some(at) = keyspace
            .peek(key)
            .map(|e| e.expire_at)
            .filter(|&at| at > now)
        {
            watch.first_expiry = Some(watch.first_expiry.map_or(at, |t| t.min(at)));
        }
    }
    drop(db);
    ctx.out.ok();
    Res::Ok
}

pub fn unwatch(ctx: &mut Ctx) -> Res {
    ctx.client.watch = None;
    ctx.out.ok();
    Res::Ok
}

pub fn exec(ctx: &mut Ctx) -> Res {
    let Some(queue) = ctx.client.multi.take() else {
        ctx.out.err("ERR EXEC without MULTI");
        return Res::Ok;
    };
    let watched = ctx.client.watch.take();
    if std::mem::take(&mut ctx.client.multi_error) {
        ctx.out
            .err("EXECABORT Transaction discarded because of previous errors.");
        return Res::Ok;
    }
    // One lock acquisition for WATCH's check and every queued command: a write from another
    // I/O thread can land before the check (and abort us) or after the last command, never
    // in between.
    let shared = ctx.shared;
    let writes = queue.iter().any(|a| {
        ctx.commands
            .lookup(&a[0])
            .is_some_and(|s| s.flags & WRITE != 0)
    });
    if writes {
        if let Some(e) = shared.aof.as_ref().and_then(|a| a.write_error()) {
            ctx.out.err(&e);
            return Res::Ok;
        }
    }
    let mut db = shared.lock_db();
    let now = crate::db::now_ms();
    if watched.is_some_and(|w| db.writes != w.writes || w.first_expiry.is_some_and(|t| t <= now)) {
        ctx.out.null_array();
        return Res::Ok;
    }
    let aof_mark = db.aof_on.then(|| (db.aof_buf.len(), db.aof_seq));
    ctx.out.array(queue.len());
    ctx.client.in_exec = true;
    let mut close = false;
    for args in &queue {
        let mut inner = Ctx {
            args,
            out: &mut *ctx.out,
            client: &mut *ctx.client,
            shared,
            commands: ctx.commands,
            unchanged: false,
        };
        if run_queued(&mut inner, &mut db) == Res::Close {
            close = true;
        }
    }
    ctx.client.in_exec = false;
    if let Some((start, seq)) = aof_mark {
        frame_in_aof(&mut db, start, seq);
        ctx.client.aof_seq = db.aof_seq;
    }
    drop(db);
    if close {
        Res::Close
    } else {
        Res::Ok
    }
}

/// Wrap what the transaction appended to the AOF stream (from byte `start`, sequence `seq`) in
/// MULTI … EXEC, as Redis does, so a crash in the middle of writing it leaves a MULTI block
/// without EXEC, which the loader discards whole instead of replaying half a transaction.
fn frame_in_aof(db: &mut Db, start: usize, seq: u64) {
    if db.aof_seq == seq {
        return;
    }
    let mut multi = Vec::with_capacity(16);
    encode_command(&mut multi, &[b"MULTI".as_slice()]);
    db.aof_buf.splice(start..start, multi);
    encode_command(&mut db.aof_buf, &[b"EXEC".as_slice()]);
    db.aof_seq += 1;
}
