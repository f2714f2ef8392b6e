//! MULTI / EXEC / DISCARD / WATCH. Queued commands run with the keyspace lock held for the
//! whole EXEC, so no other client sees half a transaction. WATCH is conservative: any write to
//! the watched database since WATCH aborts the EXEC (a false abort only costs the client a
//! retry, which optimistic-locking loops already do; a missed conflict would be a bug).

use super::{dispatch_exec, Ctx, Res};

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
    if ctx.client.watch.is_none() {
        let w = ctx.shared.lock_db().writes;
        ctx.client.watch = Some(w);
    }
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
    if let Some(w) = watched {
        if ctx.shared.lock_db().writes != w {
            ctx.out.null_array();
            return Res::Ok;
        }
    }
    ctx.out.array(queue.len());
    ctx.client.in_exec = true;
    let mut close = false;
    let shared = ctx.shared;
    let mut guard = Some(shared.lock_db());
    for args in &queue {
        let mut inner = Ctx {
            args,
            out: &mut *ctx.out,
            client: &mut *ctx.client,
            shared,
            dirty: false,
            propagated: false,
        };
        if dispatch_exec(&mut inner, shared, &mut guard) == Res::Close {
            close = true;
        }
    }
    drop(guard);
    ctx.client.in_exec = false;
    if close {
        Res::Close
    } else {
        Res::Ok
    }
}
