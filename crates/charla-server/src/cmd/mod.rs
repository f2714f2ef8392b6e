//! Command table and dispatch. Each family lives in its own file; this module looks a command
//! up by name (case-insensitively, without allocating), checks arity, authentication, MULTI
//! queuing and the RESP2 subscribe-mode restrictions, then runs it. Data commands run with the
//! keyspace lock held; connection commands run without it.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::connection::Client;
use crate::db::Db;
use crate::frame::Out;
use crate::server::Shared;

pub mod connection;
pub mod hashes;
pub mod keys;
pub mod lists;
pub mod pubsub;
pub mod server;
pub mod sets;
pub mod streams;
pub mod strings;
pub mod transactions;
pub mod zsets;

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const SYNTAX: &str = "ERR syntax error";
pub const NOT_INT: &str = "ERR value is not an integer or out of range";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
pub const TIMEOUT_ERR: &str = "ERR timeout is not a float or out of range";
pub const NOAUTH: &str = "NOAUTH Authentication required.";

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
    /// Set by a write command that changed the dataset; it is then appended to the AOF.
    pub dirty: bool,
    /// Set by a command that wrote its own AOF form (relative expiry, generated ids...).
    pub propagated: bool,
}

impl Ctx<'_> {
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

macro_rules! spec {
    ($name:expr, $arity:expr, $flags:expr, $h:expr, $fk:expr, $lk:expr, $st:expr) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            handler: $h,
            first_key: $fk,
            last_key: $lk,
            step: $st,
        }
    };
}

use Handler::{Conn, Db as D};

pub fn table() -> &'static [Spec] {
    static T: OnceLock<Vec<Spec>> = OnceLock::new();
    T.get_or_init(|| {
        vec![
            // connection
            spec!("PING", -1, PUBSUB_OK, Conn(connection::ping), 0, 0, 0),
            spec!("ECHO", 2, 0, Conn(connection::echo), 0, 0, 0),
            spec!(
                "AUTH",
                -2,
                NO_AUTH | PUBSUB_OK,
                Conn(connection::auth),
                0,
                0,
                0
            ),
            spec!(
                "HELLO",
                -1,
                NO_AUTH | PUBSUB_OK,
                Conn(connection::hello),
                0,
                0,
                0
            ),
            spec!("SELECT", 2, 0, Conn(connection::select), 0, 0, 0),
            spec!(
                "QUIT",
                -1,
                NO_AUTH | PUBSUB_OK | TX_CTL,
                Conn(connection::quit),
                0,
                0,
                0
            ),
            spec!(
                "RESET",
                1,
                NO_AUTH | PUBSUB_OK | TX_CTL,
                Conn(connection::reset),
                0,
                0,
                0
            ),
            spec!("CLIENT", -2, 0, Conn(connection::client), 0, 0, 0),
            // server
            spec!("COMMAND", -1, 0, Conn(server::command), 0, 0, 0),
            spec!("INFO", -1, NO_DATA, D(server::info), 0, 0, 0),
            spec!("DBSIZE", 1, 0, D(server::dbsize), 0, 0, 0),
            spec!(
                "FLUSHDB",
                -1,
                WRITE | KEYSPACE_WIDE,
                D(server::flushdb),
                0,
                0,
                0
            ),
            spec!(
                "FLUSHALL",
                -1,
                WRITE | KEYSPACE_WIDE,
                D(server::flushall),
                0,
                0,
                0
            ),
            spec!("TIME", 1, 0, Conn(server::time), 0, 0, 0),
            spec!("FUNCTION", -2, 0, Conn(server::function), 0, 0, 0),
            spec!("SHUTDOWN", -1, NO_MULTI, Conn(server::shutdown), 0, 0, 0),
            spec!("CONFIG", -2, 0, Conn(server::config), 0, 0, 0),
            spec!("BGREWRITEAOF", 1, 0, Conn(server::bgrewriteaof), 0, 0, 0),
            spec!(
                "SWAPDB",
                3,
                WRITE | KEYSPACE_WIDE,
                D(server::swapdb),
                0,
                0,
                0
            ),
            // transactions
            spec!("MULTI", 1, TX_CTL, Conn(transactions::multi), 0, 0, 0),
            spec!("EXEC", 1, TX_CTL, Conn(transactions::exec), 0, 0, 0),
            spec!("DISCARD", 1, TX_CTL, Conn(transactions::discard), 0, 0, 0),
            spec!(
                "WATCH",
                -2,
                TX_CTL | NO_MULTI,
                Conn(transactions::watch),
                1,
                -1,
                1
            ),
            // Not TX_CTL: Redis queues UNWATCH inside MULTI (only EXEC, DISCARD, MULTI, WATCH, QUIT
            // and RESET run at once).
            spec!("UNWATCH", 1, 0, Conn(transactions::unwatch), 0, 0, 0),
            // keys
            spec!("DEL", -2, WRITE, D(keys::del), 1, -1, 1),
            spec!("UNLINK", -2, WRITE, D(keys::del), 1, -1, 1),
            spec!("EXISTS", -2, 0, D(keys::exists), 1, -1, 1),
            spec!("TYPE", 2, 0, D(keys::type_), 1, 1, 1),
            spec!("KEYS", 2, 0, D(keys::keys), 0, 0, 0),
            spec!("SCAN", -2, 0, D(keys::scan), 0, 0, 0),
            spec!("EXPIRE", -3, WRITE, D(keys::expire), 1, 1, 1),
            spec!("PEXPIRE", -3, WRITE, D(keys::expire), 1, 1, 1),
            spec!("EXPIREAT", -3, WRITE, D(keys::expire), 1, 1, 1),
            spec!("PEXPIREAT", -3, WRITE, D(keys::expire), 1, 1, 1),
            spec!("TTL", 2, 0, D(keys::ttl), 1, 1, 1),
            spec!("PTTL", 2, 0, D(keys::ttl), 1, 1, 1),
            spec!("EXPIRETIME", 2, 0, D(keys::ttl), 1, 1, 1),
            spec!("PEXPIRETIME", 2, 0, D(keys::ttl), 1, 1, 1),
            spec!("PERSIST", 2, WRITE, D(keys::persist), 1, 1, 1),
            spec!("RENAME", 3, WRITE, D(keys::rename), 1, 2, 1),
            spec!("RENAMENX", 3, WRITE, D(keys::rename), 1, 2, 1),
            spec!("RANDOMKEY", 1, 0, D(keys::randomkey), 0, 0, 0),
            // TOUCH only refreshes access times, which charla serve does not keep: it counts
            // the keys that exist, as EXISTS does.
            spec!("TOUCH", -2, 0, D(keys::exists), 1, -1, 1),
            spec!("COPY", -3, WRITE, D(keys::copy), 1, 2, 1),
            spec!("MOVE", 3, WRITE, D(keys::move_), 1, 1, 1),
            // strings
            spec!("GET", 2, 0, D(strings::get), 1, 1, 1),
            spec!("SET", -3, WRITE, D(strings::set), 1, 1, 1),
            spec!("SETEX", 4, WRITE, D(strings::setex), 1, 1, 1),
            spec!("PSETEX", 4, WRITE, D(strings::setex), 1, 1, 1),
            spec!("SETNX", 3, WRITE, D(strings::setnx), 1, 1, 1),
            spec!("MGET", -2, 0, D(strings::mget), 1, -1, 1),
            spec!("MSET", -3, WRITE, D(strings::mset), 1, -1, 2),
            spec!("MSETNX", -3, WRITE, D(strings::mset), 1, -1, 2),
            spec!("INCR", 2, WRITE, D(strings::incr), 1, 1, 1),
            spec!("DECR", 2, WRITE, D(strings::incr), 1, 1, 1),
            spec!("INCRBY", 3, WRITE, D(strings::incr), 1, 1, 1),
            spec!("DECRBY", 3, WRITE, D(strings::incr), 1, 1, 1),
            spec!("INCRBYFLOAT", 3, WRITE, D(strings::incrbyfloat), 1, 1, 1),
            spec!("APPEND", 3, WRITE, D(strings::append), 1, 1, 1),
            spec!("STRLEN", 2, 0, D(strings::strlen), 1, 1, 1),
            spec!("GETDEL", 2, WRITE, D(strings::getdel), 1, 1, 1),
            spec!("GETSET", 3, WRITE, D(strings::getset), 1, 1, 1),
            spec!("GETRANGE", 4, 0, D(strings::getrange), 1, 1, 1),
            spec!("SETRANGE", 4, WRITE, D(strings::setrange), 1, 1, 1),
            spec!("GETEX", -2, WRITE, D(strings::getex), 1, 1, 1),
            // hashes
            // sets
            spec!("SADD", -3, WRITE, D(sets::sadd), 1, 1, 1),
            spec!("SREM", -3, WRITE, D(sets::srem), 1, 1, 1),
            spec!("SCARD", 2, 0, D(sets::scard), 1, 1, 1),
            spec!("SISMEMBER", 3, 0, D(sets::sismember), 1, 1, 1),
            spec!("SMISMEMBER", -3, 0, D(sets::sismember), 1, 1, 1),
            spec!("SMEMBERS", 2, 0, D(sets::smembers), 1, 1, 1),
            spec!("SPOP", -2, WRITE, D(sets::spop), 1, 1, 1),
            spec!("SRANDMEMBER", -2, 0, D(sets::srandmember), 1, 1, 1),
            spec!("SMOVE", 4, WRITE, D(sets::smove), 1, 2, 1),
            spec!("SINTER", -2, 0, D(sets::combine_reply), 1, -1, 1),
            spec!("SUNION", -2, 0, D(sets::combine_reply), 1, -1, 1),
            spec!("SDIFF", -2, 0, D(sets::combine_reply), 1, -1, 1),
            spec!("SINTERSTORE", -3, WRITE, D(sets::combine_store), 1, -1, 1),
            spec!("SUNIONSTORE", -3, WRITE, D(sets::combine_store), 1, -1, 1),
            spec!("SDIFFSTORE", -3, WRITE, D(sets::combine_store), 1, -1, 1),
            spec!("SINTERCARD", -3, 0, D(sets::sintercard), 0, 0, 0),
            spec!("SSCAN", -3, 0, D(sets::sscan), 1, 1, 1),
            spec!("HSET", -4, WRITE, D(hashes::hset), 1, 1, 1),
            spec!("HMSET", -4, WRITE, D(hashes::hset), 1, 1, 1),
            spec!("HSETNX", 4, WRITE, D(hashes::hsetnx), 1, 1, 1),
            spec!("HGET", 3, 0, D(hashes::hget), 1, 1, 1),
            spec!("HMGET", -3, 0, D(hashes::hmget), 1, 1, 1),
            spec!("HGETALL", 2, 0, D(hashes::hgetall), 1, 1, 1),
            spec!("HDEL", -3, WRITE, D(hashes::hdel), 1, 1, 1),
            spec!("HEXISTS", 3, 0, D(hashes::hexists), 1, 1, 1),
            spec!("HLEN", 2, 0, D(hashes::hlen), 1, 1, 1),
            spec!("HINCRBY", 4, WRITE, D(hashes::hincrby), 1, 1, 1),
            spec!("HKEYS", 2, 0, D(hashes::hkeys), 1, 1, 1),
            spec!("HVALS", 2, 0, D(hashes::hkeys), 1, 1, 1),
            spec!("HSTRLEN", 3, 0, D(hashes::hstrlen), 1, 1, 1),
            // lists
            spec!("LPUSH", -3, WRITE, D(lists::push), 1, 1, 1),
            spec!("RPUSH", -3, WRITE, D(lists::push), 1, 1, 1),
            spec!("LPUSHX", -3, WRITE, D(lists::push), 1, 1, 1),
            spec!("RPUSHX", -3, WRITE, D(lists::push), 1, 1, 1),
            spec!("LPOP", -2, WRITE, D(lists::pop), 1, 1, 1),
            spec!("RPOP", -2, WRITE, D(lists::pop), 1, 1, 1),
            spec!("LLEN", 2, 0, D(lists::llen), 1, 1, 1),
            spec!("LRANGE", 4, 0, D(lists::lrange), 1, 1, 1),
            spec!("LINDEX", 3, 0, D(lists::lindex), 1, 1, 1),
            spec!("LSET", 4, WRITE, D(lists::lset), 1, 1, 1),
            spec!("LREM", 4, WRITE, D(lists::lrem), 1, 1, 1),
            spec!("LTRIM", 4, WRITE, D(lists::ltrim), 1, 1, 1),
            spec!("LPOS", -3, 0, D(lists::lpos), 1, 1, 1),
            spec!("LINSERT", 5, WRITE, D(lists::linsert), 1, 1, 1),
            spec!("LMOVE", 5, WRITE, D(lists::lmove), 1, 2, 1),
            spec!("RPOPLPUSH", 3, WRITE, D(lists::lmove), 1, 2, 1),
            spec!("BLMOVE", 6, WRITE | BLOCKING, D(lists::lmove), 1, 2, 1),
            spec!("BRPOPLPUSH", 4, WRITE | BLOCKING, D(lists::lmove), 1, 2, 1),
            spec!("BLPOP", -3, WRITE | BLOCKING, D(lists::bpop), 1, -2, 1),
            spec!("BRPOP", -3, WRITE | BLOCKING, D(lists::bpop), 1, -2, 1),
            spec!("LMPOP", -4, WRITE, D(lists::lmpop), 0, 0, 0),
            spec!("BLMPOP", -5, WRITE | BLOCKING, D(lists::lmpop), 0, 0, 0),
            // sorted sets
            spec!("ZADD", -4, WRITE, D(zsets::zadd), 1, 1, 1),
            spec!("ZINCRBY", 4, WRITE, D(zsets::zadd), 1, 1, 1),
            spec!("ZREM", -3, WRITE, D(zsets::zrem), 1, 1, 1),
            spec!("ZCARD", 2, 0, D(zsets::zcard), 1, 1, 1),
            spec!("ZSCORE", 3, 0, D(zsets::zscore), 1, 1, 1),
            spec!("ZMSCORE", -3, 0, D(zsets::zmscore), 1, 1, 1),
            // Redis 7.2's arity: WITHSCORE may follow.
            spec!("ZRANK", -3, 0, D(zsets::zrank), 1, 1, 1),
            spec!("ZREVRANK", -3, 0, D(zsets::zrank), 1, 1, 1),
            spec!("ZCOUNT", 4, 0, D(zsets::zcount), 1, 1, 1),
            spec!("ZLEXCOUNT", 4, 0, D(zsets::zlexcount), 1, 1, 1),
            spec!("ZRANGE", -4, 0, D(zsets::zrange), 1, 1, 1),
            spec!("ZREVRANGE", -4, 0, D(zsets::zrange), 1, 1, 1),
            spec!("ZRANGEBYSCORE", -4, 0, D(zsets::zrange), 1, 1, 1),
            spec!("ZREVRANGEBYSCORE", -4, 0, D(zsets::zrange), 1, 1, 1),
            spec!("ZRANGEBYLEX", -4, 0, D(zsets::zrange), 1, 1, 1),
            spec!("ZREVRANGEBYLEX", -4, 0, D(zsets::zrange), 1, 1, 1),
            spec!("ZRANGESTORE", -5, WRITE, D(zsets::zrangestore), 1, 2, 1),
            spec!("ZREMRANGEBYRANK", 4, WRITE, D(zsets::zremrange), 1, 1, 1),
            spec!("ZREMRANGEBYSCORE", 4, WRITE, D(zsets::zremrange), 1, 1, 1),
            spec!("ZREMRANGEBYLEX", 4, WRITE, D(zsets::zremrange), 1, 1, 1),
            spec!("ZPOPMIN", -2, WRITE, D(zsets::zpop), 1, 1, 1),
            spec!("ZPOPMAX", -2, WRITE, D(zsets::zpop), 1, 1, 1),
            spec!("BZPOPMIN", -3, WRITE | BLOCKING, D(zsets::bzpop), 1, -2, 1),
            spec!("BZPOPMAX", -3, WRITE | BLOCKING, D(zsets::bzpop), 1, -2, 1),
            spec!("ZMPOP", -4, WRITE, D(zsets::zmpop), 0, 0, 0),
            spec!("BZMPOP", -5, WRITE | BLOCKING, D(zsets::zmpop), 0, 0, 0),
            spec!("ZRANDMEMBER", -2, 0, D(zsets::zrandmember), 1, 1, 1),
            spec!("ZSCAN", -3, 0, D(zsets::zscan), 1, 1, 1),
            spec!("ZUNION", -3, 0, D(zsets::setop), 0, 0, 0),
            spec!("ZINTER", -3, 0, D(zsets::setop), 0, 0, 0),
            spec!("ZDIFF", -3, 0, D(zsets::setop), 0, 0, 0),
            spec!("ZINTERCARD", -3, 0, D(zsets::setop), 0, 0, 0),
            // Redis's key positions name only the destination (the inputs follow a count).
            spec!("ZUNIONSTORE", -4, WRITE, D(zsets::setop), 1, 1, 1),
            spec!("ZINTERSTORE", -4, WRITE, D(zsets::setop), 1, 1, 1),
            spec!("ZDIFFSTORE", -4, WRITE, D(zsets::setop), 1, 1, 1),
            // pub/sub
            spec!("PUBLISH", 3, 0, Conn(pubsub::publish), 0, 0, 0),
            spec!(
                "SUBSCRIBE",
                -2,
                PUBSUB_OK | NO_MULTI,
                Conn(pubsub::subscribe),
                0,
                0,
                0
            ),
            spec!(
                "UNSUBSCRIBE",
                -1,
                PUBSUB_OK | NO_MULTI,
                Conn(pubsub::unsubscribe),
                0,
                0,
                0
            ),
            spec!(
                "PSUBSCRIBE",
                -2,
                PUBSUB_OK | NO_MULTI,
                Conn(pubsub::subscribe),
                0,
                0,
                0
            ),
            spec!(
                "PUNSUBSCRIBE",
                -1,
                PUBSUB_OK | NO_MULTI,
                Conn(pubsub::unsubscribe),
                0,
                0,
                0
            ),
            spec!("PUBSUB", -2, 0, Conn(pubsub::pubsub), 0, 0, 0),
            // streams
            spec!("XADD", -5, WRITE, D(streams::xadd), 1, 1, 1),
            spec!("XLEN", 2, 0, D(streams::xlen), 1, 1, 1),
            spec!("XRANGE", -4, 0, D(streams::xrange), 1, 1, 1),
            spec!("XREVRANGE", -4, 0, D(streams::xrange), 1, 1, 1),
            spec!("XREAD", -4, BLOCKING, D(streams::xread), 0, 0, 0),
            spec!(
                "XREADGROUP",
                -7,
                WRITE | BLOCKING,
                D(streams::xread),
                0,
                0,
                0
            ),
            spec!("XGROUP", -2, WRITE, D(streams::xgroup), 2, 2, 1),
            spec!("XACK", -4, WRITE, D(streams::xack), 1, 1, 1),
            spec!("XPENDING", -3, 0, D(streams::xpending), 1, 1, 1),
            spec!("XCLAIM", -6, WRITE, D(streams::xclaim), 1, 1, 1),
            spec!("XAUTOCLAIM", -6, WRITE, D(streams::xautoclaim), 1, 1, 1),
            spec!("XTRIM", -4, WRITE, D(streams::xtrim), 1, 1, 1),
            spec!("XDEL", -3, WRITE, D(streams::xdel), 1, 1, 1),
            spec!("XSETID", -3, WRITE, D(streams::xsetid), 1, 1, 1),
            spec!("XINFO", -2, 0, D(streams::xinfo), 2, 2, 1),
        ]
    })
}

/// The subcommands charla serves of Redis's container commands, with Redis 7's arity for
/// each (N exact, -N at least N). Redis rejects an unknown subcommand or a wrong count before
/// running anything (inside MULTI: at queuing time, so EXEC aborts); [`dispatch`] does the
/// same from this table.
fn subcommands(command: &str) -> Option<&'static [(&'static str, i32)]> {
    Some(match command {
        "CLIENT" => &[
            ("SETNAME", 3),
            ("GETNAME", 2),
            ("ID", 2),
            ("LIST", -2),
            ("INFO", 2),
            ("NO-EVICT", 3),
            ("NO-TOUCH", 3),
            ("REPLY", 3),
            ("UNBLOCK", -3),
            // Redis 7.2's: redis-rs sends it on connect.
            ("SETINFO", 4),
            ("HELP", 2),
        ],
        "CONFIG" => &[("GET", -3), ("SET", -4), ("RESETSTAT", 2)],
        "COMMAND" => &[
            ("COUNT", 2),
            ("DOCS", -2),
            ("INFO", -2),
            ("LIST", -2),
            ("GETKEYS", -4),
        ],
        "PUBSUB" => &[("CHANNELS", -2), ("NUMSUB", -2), ("NUMPAT", 2)],
        // Redis's FUNCTION subcommands: FLUSH and LIST are served, the others refused by
        // the command (charla serve runs no scripts).
        "FUNCTION" => &[
            ("FLUSH", -2),
            ("LIST", -2),
            ("LOAD", -3),
            ("DELETE", 3),
            ("DUMP", 2),
            ("RESTORE", -3),
            ("STATS", 2),
            ("KILL", 2),
            ("HELP", 2),
        ],
        "XGROUP" => &[
            ("CREATE", -5),
            ("SETID", -5),
            ("DESTROY", 4),
            ("CREATECONSUMER", 5),
            ("DELCONSUMER", 5),
            ("HELP", 2),
        ],
        "XINFO" => &[("CONSUMERS", 4), ("GROUPS", 3), ("STREAM", -3), ("HELP", 2)],
        _ => return None,
    })
}

/// Redis's error for an unknown subcommand or a subcommand with the wrong number of
/// arguments, if the command is a container and `args` are not a valid call of it.
fn subcommand_error(spec: &Spec, args: &[Bytes]) -> Option<String> {
    let subs = subcommands(spec.name)?;
    let sub = args.get(1)?;
    let n = args.len() as i32;
    let Some((name, arity)) = subs.iter().find(|(name, _)| is(sub, name)) else {
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

fn index() -> &'static HashMap<&'static [u8], &'static Spec> {
    static I: OnceLock<HashMap<&'static [u8], &'static Spec>> = OnceLock::new();
    I.get_or_init(|| table().iter().map(|s| (s.name.as_bytes(), s)).collect())
}

/// Find a command by name, case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let mut buf = [0u8; 24];
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    index().get(&buf[..name.len()]).copied()
}

/// Redis's `string2ll`: optional sign, digits, no spaces, no leading `+`, fits in i64.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, d) = if s[0] == b'-' {
        (true, &s[1..])
    } else {
        (false, s)
    };
    if d.is_empty() || (d.len() > 1 && d[0] == b'0') {
        return None;
    }
    let mut v: i64 = 0;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        let x = i64::from(c - b'0');
        v = if neg {
            v.checked_mul(10)?.checked_sub(x)?
        } else {
            v.checked_mul(10)?.checked_add(x)?
        };
    }
    Some(v)
}

pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?;
    if t.is_empty() || t.starts_with(char::is_whitespace) || t.ends_with(char::is_whitespace) {
        return None;
    }
    let v: f64 = match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => t.parse().ok()?,
    };
    if v.is_nan() {
        None
    } else {
        Some(v)
    }
}

/// Case-insensitive compare of an argument with an upper-case keyword.
#[inline]
/// The SCAN family's cursor (an unsigned integer), or Redis's error written.
pub fn scan_cursor(ctx: &mut Ctx, i: usize) -> Option<u64> {
    let cursor = std::str::from_utf8(&ctx.args[i])
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    if cursor.is_none() {
        ctx.out.err("ERR invalid cursor");
    }
    cursor
}

/// The SCAN family's options after the cursor: MATCH, COUNT, and TYPE where `with_type`.
pub struct ScanOptions {
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub kind: Option<String>,
}

/// Parse the options from argument `from` on; None after writing Redis's error.
pub fn scan_options(ctx: &mut Ctx, from: usize, with_type: bool) -> Option<ScanOptions> {
    let mut o = ScanOptions {
        pattern: None,
        count: 10,
        kind: None,
    };
    let mut i = from;
    while i < ctx.args.len() {
        let a = &ctx.args[i];
        if i + 1 >= ctx.args.len() {
            ctx.out.err(SYNTAX);
            return None;
        }
        if is(a, "MATCH") {
            o.pattern = Some(ctx.args[i + 1].clone());
        } else if is(a, "COUNT") {
            match parse_i64(&ctx.args[i + 1]) {
                Some(c) if c >= 1 => o.count = c as usize,
                Some(_) => {
                    ctx.out.err(SYNTAX);
                    return None;
                }
                None => {
                    ctx.out.err(NOT_INT);
                    return None;
                }
            }
        } else if with_type && is(a, "TYPE") {
            o.kind = Some(String::from_utf8_lossy(&ctx.args[i + 1]).to_ascii_lowercase());
        } else {
            ctx.out.err(SYNTAX);
            return None;
        }
        i += 2;
    }
    Some(o)
}

pub fn is(arg: &[u8], kw: &str) -> bool {
    arg.eq_ignore_ascii_case(kw.as_bytes())
}

/// Copy an argument before storing it: arguments are views into the read buffer, and a
/// stored view would pin the whole buffer in memory.
#[inline]
pub fn own(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// Run one command: the single entry point used by connections, EXEC and AOF replay.
pub fn dispatch(ctx: &mut Ctx) -> Res {
    let Some(spec) = lookup(&ctx.args[0]) else {
        // The name is cut at 128 bytes as Redis's `%.128s` does: the reply must not echo a
        // client's whole (possibly huge) first argument back at it.
        let name = &ctx.args[0][..ctx.args[0].len().min(128)];
        let mut msg = format!(
            "ERR unknown command '{}', with args beginning with: ",
            String::from_utf8_lossy(name)
        );
        for a in ctx.args.iter().skip(1).take(20) {
            msg.push('\'');
            msg.push_str(&String::from_utf8_lossy(&a[..a.len().min(128)]));
            msg.push_str("' ");
        }
        if ctx.client.multi.is_some() {
            ctx.client.multi_error = true;
        }
        ctx.out.err(&msg);
        return Res::Ok;
    };
    let n = ctx.args.len() as i32;
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        if ctx.client.multi.is_some() {
            ctx.client.multi_error = true;
        }
        ctx.err_arity();
        return Res::Ok;
    }
    if let Some(e) = subcommand_error(spec, ctx.args) {
        if ctx.client.multi.is_some() {
            ctx.client.multi_error = true;
        }
        ctx.out.err(&e);
        return Res::Ok;
    }
    if !ctx.client.authed && spec.flags & NO_AUTH == 0 {
        if ctx.client.multi.is_some() {
            ctx.client.multi_error = true;
        }
        ctx.out.err(NOAUTH);
        return Res::Ok;
    }
    if ctx.client.proto < 3 && ctx.client.in_subscribe_mode() && spec.flags & PUBSUB_OK == 0 {
        let n = ctx.name_lower();
        ctx.out.err(&format!(
            "ERR Can't execute '{n}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ));
        return Res::Ok;
    }
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
    run(ctx, spec)
}

/// Execute a looked-up command (no queuing checks).
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
    ctx.dirty = false;
    ctx.propagated = false;
    let r = f(ctx, db);
    if ctx.dirty {
        db.writes += 1;
        // Whatever a write did to the keys it names (or, keyspace-wide, to any key), clients
        // blocked in a way that must hear of a key going away are woken to look: the table
        // says which keys a command touches, so no command has to remember to tell them.
        // Nothing to do, and no key positions to work out, when nobody is blocked.
        if db.has_waiters() {
            if spec.flags & KEYSPACE_WIDE != 0 {
                db.signal_all_gone();
            } else {
                for key in spec.keys(ctx.args) {
                    db.signal_gone(ctx.client.db, key);
                }
            }
        }
    }
    if spec.flags & WRITE != 0 && ctx.dirty && !ctx.propagated {
        db.propagate(ctx.client.db, ctx.args);
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

/// Normalise a Redis range (negative = from the end) to `[start, end]` inside `len`, or None
/// when empty.
pub fn norm_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    if s < 0 {
        s = 0;
    }
    if e >= len {
        e = len - 1;
    }
    if s > e || s >= len || len == 0 {
        return None;
    }
    if e < 0 {
        e = 0;
    }
    Some((s as usize, e as usize))
}

/// Parse a blocking timeout in seconds (float) as Redis does.
pub fn parse_timeout(ctx: &mut Ctx, s: &[u8]) -> Option<Option<std::time::Duration>> {
    match parse_f64(s) {
        Some(v) if v < 0.0 => {
            ctx.out.err("ERR timeout is negative");
            None
        }
        Some(v) if v.is_finite() => {
            if v == 0.0 {
                Some(None)
            } else {
                // Absurdly long timeouts (which would overflow a Duration) mean "forever".
                Some(std::time::Duration::try_from_secs_f64(v).ok())
            }
        }
        _ => {
            ctx.out.err(TIMEOUT_ERR);
            None
        }
    }
}

/// Run one queued command inside EXEC, with the keyspace lock EXEC took held throughout:
/// nothing another client does can land between two commands of a transaction. Connection
/// commands ([`Handler::Conn`]) never take the keyspace lock themselves (the ones that read
/// the keyspace, like INFO, are [`Handler::Db`]), so they run under it too; they may take the
/// pub/sub or client-registry locks, which are always taken after the keyspace lock, never
/// before it.
pub fn dispatch_exec(ctx: &mut Ctx<'_>, db: &mut Db) -> Res {
    let Some(spec) = lookup(&ctx.args[0]) else {
        ctx.out.err("ERR unknown command");
        return Res::Ok;
    };
    ctx.client.commands += 1;
    match spec.handler {
        Handler::Conn(f) => f(ctx),
        Handler::Db(f) => run_locked(ctx, spec, f, db),
    }
}
