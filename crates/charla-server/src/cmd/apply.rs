//! Running an admitted command, and what follows a write. What follows is decided here, from
//! the table's declarations and from the keyspace itself, not by each command:
//!
//! - A [`WRITE`] command *changed the dataset* when the keyspace's change counter moved while
//!   it ran (every method that can change a key counts, see `db::Keyspace::changes`), its reply
//!   is not an error (commands check everything before they change anything, as Redis's do),
//!   and it did not call [`Ctx::unchanged`] (it reached for a key and found nothing to do).
//! - After such a command: WATCH's write count moves; clients blocked on any key the table
//!   lists for it (every blocked client, for a [`KEYSPACE_WIDE`] command) are woken to run
//!   their command again; and the AOF gets the command as it was sent, unless the command
//!   appended its own replayable form (SET … EX made absolute, XADD's generated id…). A
//!   command the table marks [`OWN_LOG`] must always do so (its form as sent would not replay
//!   the same: a relative expiry, a random pick, a blocking pop); debug builds check it.
//! - Keyspace notifications: the event the table names for the command, on every key it
//!   touched (`Shared::publish_key_events`), or the events a command names itself.
//! - Every reply that shows data waits, with `appendfsync always`, until everything the client
//!   could have seen is on disk.
//!
//! The consequence is that a command cannot lose a write by forgetting a flag: the failure a
//! forgotten [`Ctx::unchanged`] can cause is a no-op logged and a WATCH aborted needlessly.

use super::spec::{Ctx, DbFn, Handler, Res, Spec, ANY_DB, KEYSPACE_WIDE, NO_DATA, OWN_LOG, WRITE};
use crate::client::CallTimer;
use crate::db::Db;

/// Execute a looked-up command whose admission checks passed (arity, authentication, MULTI
/// queuing: see `crate::exec`). Data commands take the keyspace lock; connection commands run
/// without it.
pub fn run(ctx: &mut Ctx, spec: &Spec) -> Res {
    match spec.handler {
        Handler::Conn(f) => f(ctx),
        Handler::Db(f) => {
            let shared = ctx.shared;
            if spec.flags & WRITE != 0 {
                if let Some(e) = shared.aof.as_ref().and_then(|a| a.write_error()) {
                    // The disk refused the last write or fsync: accept nothing that could not
                    // be persisted (Redis's MISCONF), reads go on.
                    ctx.client.clear_block();
                    ctx.out.err(&e);
                    return Res::Ok;
                }
            }
            let mut db = shared.lock_db();
            run_locked(ctx, spec, f, &mut db)
        }
    }
}

/// Execute a data command with the keyspace already locked (EXEC holds it for the batch).
pub fn run_locked(ctx: &mut Ctx, spec: &Spec, f: DbFn, db: &mut Db) -> Res {
    let write = spec.flags & WRITE != 0;
    ctx.unchanged = false;
    ctx.shared.sync_notify_flags(db);
    // Only the client's database can change, unless the table says otherwise.
    let all_dbs = spec.flags & (ANY_DB | KEYSPACE_WIDE) != 0;
    let client_db = ctx.client.db;
    let count = |db: &Db| {
        if all_dbs {
            db.changes()
        } else {
            db.dbs[client_db].changes()
        }
    };
    let (changes, logged, mark) = if write {
        (count(db), db.logged, ctx.out.buf.len())
    } else {
        (0, 0, 0)
    };
    let r = f(ctx, db);
    // A command that blocks found nothing to do (yet).
    let changed = write
        && r != Res::Block
        && count(db) != changes
        && !ctx.unchanged
        && ctx.out.buf.get(mark) != Some(&b'-');
    if changed {
        after_write(ctx, spec, db, logged);
    }
    if db.notify_flags != 0 {
        ctx.shared.publish_key_events(db, spec.notify, changed);
    }
    // Nothing this client is told may be lost in a crash: its reply waits (fsync always)
    // until everything it could have observed is on disk.
    if spec.flags & NO_DATA == 0 {
        ctx.client.aof_seq = db.aof_seq;
    }
    if r != Res::Block {
        ctx.client.clear_block();
    }
    r
}

/// The consequences of a write that changed the dataset (see the module documentation).
fn after_write(ctx: &mut Ctx, spec: &Spec, db: &mut Db, logged_before: u64) {
    db.writes += 1;
    // Nothing to do, and no key positions to work out, when nobody is blocked.
    if db.has_waiters() {
        if spec.flags & KEYSPACE_WIDE != 0 {
            db.signal_all();
        } else {
            for key in spec.keys(ctx.args) {
                db.signal(ctx.client.db, key);
            }
        }
    }
    if db.logged == logged_before {
        // The tests and fuzzers run debug builds, where a command that must log its own form
        // and forgot is caught here.
        debug_assert!(
            spec.flags & OWN_LOG == 0,
            "{} changed the dataset but appended nothing to the AOF",
            spec.name
        );
        db.propagate(ctx.client.db, ctx.args);
    }
}

/// Run one queued command inside EXEC, with the keyspace lock EXEC took held throughout:
/// nothing another client does can land between two commands of a transaction. Connection
/// commands ([`Handler::Conn`]) never take the keyspace lock themselves (the ones that read
/// the keyspace, like INFO, are [`Handler::Db`]), so they run under it too; they may take the
/// pub/sub or client-registry locks, which are always taken after the keyspace lock, never
/// before it.
pub fn run_queued(ctx: &mut Ctx<'_>, db: &mut Db) -> Res {
    let Some(spec) = ctx.commands.lookup(&ctx.args[0]) else {
        ctx.out.err("ERR unknown command");
        return Res::Ok;
    };
    ctx.client.commands += 1;
    let (timer, mark) = (CallTimer::start(), ctx.out.buf.len());
    let r = match spec.handler {
        Handler::Conn(f) => f(ctx),
        Handler::Db(f) => run_locked(ctx, spec, f, db),
    };
    let failed = ctx.out.buf.get(mark) == Some(&b'-');
    let nanos = timer.nanos();
    ctx.client.record_call(spec.id, nanos, failed);
    r
}
