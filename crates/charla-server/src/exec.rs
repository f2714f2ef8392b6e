//! The request path: one command, from its arguments to its reply, for every caller alike —
//! a client's connection, the AOF replay and the fuzzers. Nothing here knows where the
//! arguments came from or where the reply goes.
//!
//! [`execute`] admits the command (known, arity, subcommand, authentication, subscribe mode),
//! queues it inside MULTI, or runs it ([`crate::cmd::apply`], which also does what follows a
//! write). A blocking command that finds nothing returns [`Res::Block`]: the caller waits
//! (a connection: for a wakeup, the deadline, CLIENT UNBLOCK or the peer leaving) and then
//! calls [`resume`], which runs the same command again; a caller that cannot wait calls
//! [`run_to_end`], which times it out at once. Either way the command ends in [`finish`]:
//! CLIENT REPLY's dropping of replies and the subscriber count.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::client::{CallTimer, Client, ReplyMode};
use crate::cmd::apply;
use crate::cmd::args::{is, NOAUTH};
use crate::cmd::blocking;
use crate::cmd::spec::{Ctx, Res, Spec, NO_AUTH, NO_MULTI, PUBSUB_OK, TX_CTL};
use crate::cmd::table::commands;
use crate::frame::Out;
use crate::shared::Shared;

/// Run one command for `client`, its reply appended to `out`. [`Res::Block`]: see the module
/// documentation.
pub fn execute(shared: &Shared, client: &mut Client, out: &mut Out, args: &[Bytes]) -> Res {
    attempt(shared, client, out, args, admit_and_run)
}

/// Run again a command that returned [`Res::Block`], after a wakeup or its deadline (the
/// caller sets `client.block_timed_out` then: the command answers its timeout reply).
pub fn resume(shared: &Shared, client: &mut Client, out: &mut Out, args: &[Bytes]) -> Res {
    attempt(shared, client, out, args, |ctx| {
        match commands().lookup(&ctx.args[0]) {
            Some(spec) => run_counted(ctx, spec),
            None => Res::Ok,
        }
    })
}

/// Run a command through to its reply without waiting: a command that would block is timed
/// out at once, as if its deadline had passed (AOF replay and fuzzers, where no other client
/// can ever wake it).
pub fn run_to_end(shared: &Shared, client: &mut Client, out: &mut Out, args: &[Bytes]) -> Res {
    let r = execute(shared, client, out, args);
    if r != Res::Block {
        return r;
    }
    stop_waiting(shared, client);
    client.block_timed_out = true;
    let r = resume(shared, client, out, args);
    debug_assert!(r != Res::Block, "a timed-out command blocked again");
    if r == Res::Block {
        stop_waiting(shared, client);
        client.clear_block();
        return Res::Ok;
    }
    r
}

/// End a blocked command with an error instead of running it again (CLIENT UNBLOCK … ERROR).
pub fn fail_blocked(client: &mut Client, out: &mut Out, error: &str) -> Res {
    let mark = out.buf.len();
    let was_sub = client.in_subscribe_mode();
    client.clear_block();
    out.err(error);
    finish(None, client, out, mark, was_sub);
    Res::Ok
}

/// Forget a blocked client's registrations on keys (woken, timed out, or gone).
pub fn stop_waiting(shared: &Shared, client: &mut Client) {
    if client.blocked_keys.is_empty() {
        return;
    }
    let mut db = shared.lock_db();
    blocking::unregister(client, &mut db);
}

/// One attempt at a command, then [`finish`] unless it blocked.
fn attempt(
    shared: &Shared,
    client: &mut Client,
    out: &mut Out,
    args: &[Bytes],
    run: impl FnOnce(&mut Ctx) -> Res,
) -> Res {
    let mark = out.buf.len();
    let was_sub = client.in_subscribe_mode();
    let mut ctx = Ctx {
        args,
        out,
        client,
        shared,
        commands: commands(),
        unchanged: false,
    };
    let r = run(&mut ctx);
    if r != Res::Block {
        finish(Some(shared), client, out, mark, was_sub);
    }
    r
}

/// What every command ends with, whoever ran it: CLIENT REPLY OFF / SKIP drop the reply (the
/// command's effects are the same), and a client entering or leaving subscribe mode is
/// counted for INFO.
fn finish(shared: Option<&Shared>, client: &mut Client, out: &mut Out, mark: usize, was_sub: bool) {
    client.reply = match client.reply {
        ReplyMode::Off => {
            out.buf.truncate(mark);
            ReplyMode::Off
        }
        ReplyMode::Skip => {
            out.buf.truncate(mark);
            ReplyMode::On
        }
        ReplyMode::SkipNext => ReplyMode::Skip,
        ReplyMode::On => ReplyMode::On,
    };
    let is_sub = client.in_subscribe_mode();
    if let (Some(shared), true) = (shared, was_sub != is_sub) {
        let n = &shared.stats.pubsub_clients;
        if is_sub {
            n.fetch_add(1, Ordering::Relaxed);
        } else {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Redis's `processCommand` checks, in its order, then queue (inside MULTI) or run.
fn admit_and_run(ctx: &mut Ctx) -> Res {
    let spec = match admit(ctx) {
        Ok(spec) => spec,
        Err(e) => {
            // A command refused while queuing makes EXEC fail (EXECABORT), as in Redis; the
            // subscribe-mode refusal does not (it is not a queuing error there either).
            if ctx.client.multi.is_some() && e.aborts_multi {
                ctx.client.multi_error = true;
            }
            if let Some(spec) = e.spec {
                ctx.client.record_rejected(spec.id);
            }
            ctx.out.err(&e.message);
            return Res::Ok;
        }
    };
    if let Some(q) = ctx.client.multi.as_mut() {
        if spec.flags & TX_CTL == 0 {
            if spec.flags & NO_MULTI != 0 {
                let n = ctx.name_lower();
                ctx.client.multi_error = true;
                ctx.out.err(&format!(
                    "ERR Command not allowed inside a transaction: {n}"
                ));
                return Res::Ok;
            }
            q.push(ctx.args.to_vec());
            ctx.out.simple("QUEUED");
            return Res::Ok;
        }
    }
    ctx.client.commands += 1;
    run_counted(ctx, spec)
}

/// Run an admitted command and count it for INFO commandstats: its time (a blocked command's
/// last run only, as Redis counts it) and whether it answered an error.
fn run_counted(ctx: &mut Ctx, spec: &Spec) -> Res {
    let (timer, mark) = (CallTimer::start(), ctx.out.buf.len());
    let r = apply::run(ctx, spec);
    if r != Res::Block {
        let nanos = timer.nanos();
        let failed = ctx.out.buf.get(mark) == Some(&b'-');
        ctx.client.record_call(spec.id, nanos, failed);
    }
    r
}

/// Why a command was not admitted.
struct Refusal {
    message: String,
    aborts_multi: bool,
    /// The command, when it is a known one (INFO commandstats counts it as rejected).
    spec: Option<&'static Spec>,
}

fn admit(ctx: &Ctx) -> Result<&'static Spec, Refusal> {
    let Some(spec) = ctx.commands.lookup(&ctx.args[0]) else {
        return Err(Refusal {
            message: unknown_command(ctx.args),
            aborts_multi: true,
            spec: None,
        });
    };
    let refuse = |message: String| Refusal {
        message,
        aborts_multi: true,
        spec: Some(spec),
    };
    let n = ctx.args.len() as i32;
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        let name = ctx.name_lower();
        return Err(refuse(format!(
            "ERR wrong number of arguments for '{name}' command"
        )));
    }
    if let Some(e) = subcommand_error(spec, ctx.args) {
        return Err(refuse(e));
    }
    if !ctx.client.authed && spec.flags & NO_AUTH == 0 {
        return Err(refuse(NOAUTH.to_string()));
    }
    if ctx.client.proto < 3 && ctx.client.in_subscribe_mode() && spec.flags & PUBSUB_OK == 0 {
        let n = ctx.name_lower();
        return Err(Refusal {
            message: format!("ERR Can't execute '{n}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"),
            aborts_multi: false,
            spec: Some(spec),
        });
    }
    Ok(spec)
}

/// Redis's reply to an unknown command. The name and arguments are cut at 128 bytes as
/// Redis's `%.128s` does: the reply must not echo a client's whole (possibly huge) argument.
fn unknown_command(args: &[Bytes]) -> String {
    let name = &args[0][..args[0].len().min(128)];
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(name)
    );
    for a in args.iter().skip(1).take(20) {
        msg.push('\'');
        msg.push_str(&String::from_utf8_lossy(&a[..a.len().min(128)]));
        msg.push_str("' ");
    }
    msg
}

/// Redis's error for an unknown subcommand or a subcommand with the wrong number of
/// arguments, if the command is a container and `args` are not a valid call of it.
fn subcommand_error(spec: &Spec, args: &[Bytes]) -> Option<String> {
    if spec.subcommands.is_empty() {
        return None;
    }
    let sub = args.get(1)?;
    let n = args.len() as i32;
    let Some((name, arity)) = spec.subcommands.iter().find(|(name, _)| is(sub, name)) else {
        let typed = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        return Some(format!(
            "ERR unknown subcommand '{}'. Try {typed} HELP.",
            String::from_utf8_lossy(&sub[..sub.len().min(128)])
        ));
    };
    if (*arity > 0 && n != *arity) || (*arity < 0 && n < -*arity) {
        return Some(format!(
            "ERR wrong number of arguments for '{}|{}' command",
            spec.name.to_ascii_lowercase(),
            name.to_ascii_lowercase()
        ));
    }
    None
}
