//! Blocking commands (BLPOP, BRPOP, BLMOVE, BLMPOP, XREAD BLOCK, XREADGROUP BLOCK).
//!
//! A command that finds nothing registers the client's `Notify` under each key it waits on
//! (inside the keyspace lock, so no push can slip between the check and the registration) and
//! returns [`Res::Block`]. The connection then waits for the notify, the deadline, or the peer
//! hanging up, and runs the very same command again. Every write that changes a key wakes the
//! clients blocked on it (`cmd::apply`, from the table's key positions). Re-running instead of handing the value over keeps one code path per command,
//! and a client that hung up is never handed a value (nothing popped is lost).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::args::own;
use super::spec::{Ctx, Res};
use crate::client::Client;
use crate::db::Db;

/// True when the command may block now; false inside EXEC / after the deadline, where the
/// caller writes its timeout reply instead.
pub fn may_block(ctx: &Ctx) -> bool {
    !ctx.client.in_exec && !ctx.client.block_timed_out
}

/// Register the client on `keys` and ask the connection to wait.
pub fn block(ctx: &mut Ctx, db: &mut Db, keys: &[&Bytes], timeout: Option<Duration>) -> Res {
    let c = &mut *ctx.client;
    if !c.block_started {
        c.block_started = true;
        // A deadline past what Instant can hold is the same as no deadline.
        c.block_deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    }
    for k in keys {
        let k = own(k);
        db.add_waiter(c.db, k.clone(), c.notify.clone());
        c.blocked_keys.push((c.db, k));
    }
    Res::Block
}

/// Forget the client's registrations (called by the connection under the lock).
pub fn unregister(c: &mut Client, db: &mut Db) {
    for (d, k) in c.blocked_keys.drain(..) {
        db.remove_waiter(d, &k, &c.notify);
    }
}

/// Keys from a slice of arguments, as references (what [`block`] takes).
pub fn key_refs(args: &[Bytes]) -> Vec<&Bytes> {
    args.iter().collect()
}
