//! What a command is and what it sees: the [`Spec`] each command has in the table (name,
//! arity, flags, key positions, handler), the [`Ctx`] a handler runs with, and what it
//! returns ([`Res`]). The flags are the table's declarations that the request path acts on
//! (authentication, MULTI, subscribe mode, persistence, wakeups); see [`crate::cmd::apply`].

use std::collections::HashMap;

use bytes::Bytes;

use super::args::{parse_i64, NOT_INT};
use crate::client::Client;
use crate::db::Db;
use crate::events::Notify;
use crate::frame::Out;
use crate::shared::Shared;

/// What the connection does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Res {
    Ok,
    /// The command registered the client as blocked: wait for a wakeup or the deadline, then
    /// run the same command again.
    Block,
    /// Send what was written, then close (QUIT, fatal errors).
    Close,
}

/// Everything a command sees.
pub struct Ctx<'a> {
    pub args: &'a [Bytes],
    pub out: &'a mut Out,
    pub client: &'a mut Client,
    pub shared: &'a Shared,
    /// The command table (COMMAND describes it, EXEC runs queued commands from it).
    pub commands: &'static Commands,
    /// Set by [`Ctx::unchanged`]: the write command touched a key but left it as it was.
    pub unchanged: bool,
}

impl Ctx<'_> {
    /// A write command that reached for a key to change it and found nothing to do (HDEL of
    /// fields that are not there, LREM that matched nothing…) says so, so that it is not
    /// logged, counted as a change for WATCH, or notified. Forgetting it costs a harmless
    /// no-op in the AOF, never a lost write: see [`crate::cmd::apply`].
    #[inline]
    pub fn unchanged(&mut self) {
        self.unchanged = true;
    }

    #[inline]
    pub fn arg(&self, i: usize) -> &Bytes {
        &self.args[i]
    }

    pub fn int_arg(&mut self, i: usize) -> Option<i64> {
        match parse_i64(&self.args[i]) {
            Some(v) => Some(v),
            None => {
                self.out.err(NOT_INT);
                None
            }
        }
    }

    /// The command name in lower case (for error messages).
    pub fn name_lower(&self) -> String {
        String::from_utf8_lossy(&self.args[0]).to_ascii_lowercase()
    }

    /// Redis's `addReplySubcommandSyntaxError`, for a bad option of a known subcommand
    /// (unknown subcommands and wrong counts are caught by [`dispatch`] first): `Try <COMMAND>
    /// HELP.` names the command as the client typed it, upper-cased.
    pub fn err_subcommand(&mut self, sub: &[u8]) {
        let name = self.name_lower().to_ascii_uppercase();
        let sub = &sub[..sub.len().min(128)];
        self.out.err(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try {name} HELP.",
            String::from_utf8_lossy(sub)
        ));
    }

    pub fn err_arity(&mut self) {
        let n = self.name_lower();
        self.out
            .err(&format!("ERR wrong number of arguments for '{n}' command"));
    }
}

pub type DbFn = fn(&mut Ctx, &mut Db) -> Res;
pub type ConnFn = fn(&mut Ctx) -> Res;

#[derive(Clone, Copy)]
pub enum Handler {
    Db(DbFn),
    Conn(ConnFn),
}

pub const WRITE: u32 = 1;
/// Allowed before AUTH (AUTH, HELLO, QUIT...).
pub const NO_AUTH: u32 = 2;
/// Allowed in RESP2 subscribe mode.
pub const PUBSUB_OK: u32 = 4;
/// Runs immediately even inside MULTI (EXEC, DISCARD, MULTI, WATCH...).
pub const TX_CTL: u32 = 8;
/// Not allowed inside MULTI at all.
pub const NO_MULTI: u32 = 16;
/// May block (for COMMAND flags).
pub const BLOCKING: u32 = 32;
/// Reads the keyspace's shape, not its data (INFO): its reply need not wait, with
/// `appendfsync always`, for other clients' writes to reach the disk.
pub const NO_DATA: u32 = 64;
/// Changes keys it does not name (FLUSHALL, FLUSHDB, SWAPDB): after it, any key may be gone.
pub const KEYSPACE_WIDE: u32 = 128;
/// A write command that appends its own form to the AOF instead of its arguments as sent
/// (relative expiries made absolute, generated ids and random picks made concrete, blocking
/// forms made non-blocking): [`crate::cmd::apply`] then logs nothing for it.
pub const OWN_LOG: u32 = 256;
/// Writes keys in a database other than the client's (MOVE, COPY … DB): the request path
/// then looks at every database for changes, not only the client's.
pub const ANY_DB: u32 = 512;

pub struct Spec {
    pub name: &'static str,
    /// Redis's arity: N exact, -N at least N.
    pub arity: i32,
    pub flags: u32,
    pub handler: Handler,
    /// First key position (for COMMAND), 0 = none.
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    /// A container command's subcommands with Redis's arity for each (empty otherwise).
    pub subcommands: &'static [(&'static str, i32)],
    /// Its keyspace notifications (see [`crate::events::Notify`]).
    pub notify: Notify,
    /// Its position in the table (INFO commandstats counts by it); set by [`Commands::new`].
    pub id: usize,
}

impl Spec {
    /// The arguments that are keys, by the table's first / last / step positions (a negative
    /// last counts from the end: -1 is the last argument).
    pub fn keys<'a>(&self, args: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> + 'a {
        let n = args.len() as i32;
        let last = if self.last_key < 0 {
            n + self.last_key
        } else {
            self.last_key
        };
        let (first, step) = (self.first_key, self.step.max(1));
        let keys: &[Bytes] = if first > 0 && last >= first {
            args.get(first as usize..=(last.min(n - 1)) as usize)
                .unwrap_or_default()
        } else {
            &[]
        };
        keys.iter().step_by(step as usize)
    }
}

/// The command table with its by-name index.
pub struct Commands {
    specs: Vec<Spec>,
    index: HashMap<&'static [u8], usize>,
}

impl Commands {
    pub fn new(mut specs: Vec<Spec>) -> Commands {
        for (i, s) in specs.iter_mut().enumerate() {
            s.id = i;
        }
        let index = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_bytes(), i))
            .collect();
        Commands { specs, index }
    }

    /// Every command, in table order.
    pub fn all(&self) -> &[Spec] {
        &self.specs
    }

    /// Find a command by name, case-insensitively, without allocating.
    pub fn lookup(&self, name: &[u8]) -> Option<&Spec> {
        let mut buf = [0u8; 24];
        if name.len() > buf.len() {
            return None;
        }
        for (d, s) in buf.iter_mut().zip(name) {
            *d = s.to_ascii_uppercase();
        }
        self.index
            .get(&buf[..name.len()])
            .and_then(|&i| self.specs.get(i))
    }
}
