//! The command table: every command charla serve knows, with Redis's arity, the flags the
//! request path acts on, the key positions (COMMAND GETKEYS, wakeups and notifications use
//! them) and its handler. A command is served when it has a line here.

use std::sync::OnceLock;

use crate::events::{Notify, GENERIC, HASH, LIST, SET, STREAM, STRING, ZSET};

use super::spec::Commands;
use super::spec::Handler::{Conn, Db as D};
use super::spec::{
    Spec, ANY_DB, BLOCKING, KEYSPACE_WIDE, NO_AUTH, NO_DATA, NO_MULTI, OWN_LOG, PUBSUB_OK, TX_CTL,
    WRITE,
};
use super::{
    bits, connection, hashes, hashes_ext, keys, lists, object, pubsub, server, sets, sort, streams,
    strings, transactions, zsets,
};

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
            subcommands: subcommands($name),
            notify: notify($name),
            id: 0,
        }
    };
}

/// The command table.
pub fn commands() -> &'static Commands {
    static T: OnceLock<Commands> = OnceLock::new();
    T.get_or_init(|| {
        Commands::new(vec![
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
            spec!("EXPIRE", -3, WRITE | OWN_LOG, D(keys::expire), 1, 1, 1),
            spec!("PEXPIRE", -3, WRITE | OWN_LOG, D(keys::expire), 1, 1, 1),
            spec!("EXPIREAT", -3, WRITE | OWN_LOG, D(keys::expire), 1, 1, 1),
            spec!("PEXPIREAT", -3, WRITE | OWN_LOG, D(keys::expire), 1, 1, 1),
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
            spec!("COPY", -3, WRITE | ANY_DB, D(keys::copy), 1, 2, 1),
            spec!("MOVE", 3, WRITE | ANY_DB, D(keys::move_), 1, 1, 1),
            spec!("OBJECT", -2, 0, D(object::object), 2, 2, 1),
            // SORT is a write command in Redis (it may STORE); SORT_RO never stores.
            spec!("SORT", -2, WRITE, D(sort::sort), 1, 1, 1),
            spec!("SORT_RO", -2, 0, D(sort::sort), 1, 1, 1),
            // strings
            spec!("GET", 2, 0, D(strings::get), 1, 1, 1),
            spec!("SET", -3, WRITE, D(strings::set), 1, 1, 1),
            spec!("SETEX", 4, WRITE | OWN_LOG, D(strings::setex), 1, 1, 1),
            spec!("PSETEX", 4, WRITE | OWN_LOG, D(strings::setex), 1, 1, 1),
            spec!("SETNX", 3, WRITE, D(strings::setnx), 1, 1, 1),
            spec!("MGET", -2, 0, D(strings::mget), 1, -1, 1),
            spec!("MSET", -3, WRITE, D(strings::mset), 1, -1, 2),
            spec!("MSETNX", -3, WRITE, D(strings::mset), 1, -1, 2),
            spec!("INCR", 2, WRITE, D(strings::incr), 1, 1, 1),
            spec!("DECR", 2, WRITE, D(strings::incr), 1, 1, 1),
            spec!("INCRBY", 3, WRITE, D(strings::incr), 1, 1, 1),
            spec!("DECRBY", 3, WRITE, D(strings::incr), 1, 1, 1),
            spec!(
                "INCRBYFLOAT",
                3,
                WRITE | OWN_LOG,
                D(strings::incrbyfloat),
                1,
                1,
                1
            ),
            spec!("APPEND", 3, WRITE, D(strings::append), 1, 1, 1),
            spec!("STRLEN", 2, 0, D(strings::strlen), 1, 1, 1),
            spec!("GETDEL", 2, WRITE, D(strings::getdel), 1, 1, 1),
            spec!("GETSET", 3, WRITE, D(strings::getset), 1, 1, 1),
            spec!("GETRANGE", 4, 0, D(strings::getrange), 1, 1, 1),
            spec!("SETRANGE", 4, WRITE, D(strings::setrange), 1, 1, 1),
            spec!("GETEX", -2, WRITE | OWN_LOG, D(strings::getex), 1, 1, 1),
            // bits
            spec!("SETBIT", 4, WRITE, D(bits::setbit), 1, 1, 1),
            spec!("GETBIT", 3, 0, D(bits::getbit), 1, 1, 1),
            spec!("BITCOUNT", -2, 0, D(bits::bitcount), 1, 1, 1),
            spec!("BITPOS", -3, 0, D(bits::bitpos), 1, 1, 1),
            spec!("BITOP", -4, WRITE, D(bits::bitop), 2, -1, 1),
            spec!("BITFIELD", -2, WRITE, D(bits::bitfield), 1, 1, 1),
            spec!("BITFIELD_RO", -2, 0, D(bits::bitfield), 1, 1, 1),
            // hashes
            // sets
            spec!("SADD", -3, WRITE, D(sets::sadd), 1, 1, 1),
            spec!("SREM", -3, WRITE, D(sets::srem), 1, 1, 1),
            spec!("SCARD", 2, 0, D(sets::scard), 1, 1, 1),
            spec!("SISMEMBER", 3, 0, D(sets::sismember), 1, 1, 1),
            spec!("SMISMEMBER", -3, 0, D(sets::sismember), 1, 1, 1),
            spec!("SMEMBERS", 2, 0, D(sets::smembers), 1, 1, 1),
            spec!("SPOP", -2, WRITE | OWN_LOG, D(sets::spop), 1, 1, 1),
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
            spec!("ZPOPMIN", -2, WRITE | OWN_LOG, D(zsets::zpop), 1, 1, 1),
            spec!("ZPOPMAX", -2, WRITE | OWN_LOG, D(zsets::zpop), 1, 1, 1),
            spec!(
                "BZPOPMIN",
                -3,
                WRITE | BLOCKING | OWN_LOG,
                D(zsets::bzpop),
                1,
                -2,
                1
            ),
            spec!(
                "BZPOPMAX",
                -3,
                WRITE | BLOCKING | OWN_LOG,
                D(zsets::bzpop),
                1,
                -2,
                1
            ),
            spec!("ZMPOP", -4, WRITE | OWN_LOG, D(zsets::zmpop), 0, 0, 0),
            spec!(
                "BZMPOP",
                -5,
                WRITE | BLOCKING | OWN_LOG,
                D(zsets::zmpop),
                0,
                0,
                0
            ),
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
            spec!("HSCAN", -3, 0, D(hashes_ext::hscan), 1, 1, 1),
            spec!(
                "HINCRBYFLOAT",
                4,
                WRITE | OWN_LOG,
                D(hashes_ext::hincrbyfloat),
                1,
                1,
                1
            ),
            spec!("HRANDFIELD", -2, 0, D(hashes_ext::hrandfield), 1, 1, 1),
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
            spec!("LMOVE", 5, WRITE | OWN_LOG, D(lists::lmove), 1, 2, 1),
            spec!("RPOPLPUSH", 3, WRITE | OWN_LOG, D(lists::lmove), 1, 2, 1),
            spec!(
                "BLMOVE",
                6,
                WRITE | BLOCKING | OWN_LOG,
                D(lists::lmove),
                1,
                2,
                1
            ),
            spec!(
                "BRPOPLPUSH",
                4,
                WRITE | BLOCKING | OWN_LOG,
                D(lists::lmove),
                1,
                2,
                1
            ),
            spec!(
                "BLPOP",
                -3,
                WRITE | BLOCKING | OWN_LOG,
                D(lists::bpop),
                1,
                -2,
                1
            ),
            spec!(
                "BRPOP",
                -3,
                WRITE | BLOCKING | OWN_LOG,
                D(lists::bpop),
                1,
                -2,
                1
            ),
            spec!("LMPOP", -4, WRITE | OWN_LOG, D(lists::lmpop), 0, 0, 0),
            spec!(
                "BLMPOP",
                -5,
                WRITE | BLOCKING | OWN_LOG,
                D(lists::lmpop),
                0,
                0,
                0
            ),
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
            spec!(
                "XADD",
                -5,
                WRITE | OWN_LOG,
                D(streams::entries::xadd),
                1,
                1,
                1
            ),
            spec!("XLEN", 2, 0, D(streams::entries::xlen), 1, 1, 1),
            spec!("XRANGE", -4, 0, D(streams::entries::xrange), 1, 1, 1),
            spec!("XREVRANGE", -4, 0, D(streams::entries::xrange), 1, 1, 1),
            spec!("XREAD", -4, BLOCKING, D(streams::read::xread), 0, 0, 0),
            spec!(
                "XREADGROUP",
                -7,
                WRITE | BLOCKING | OWN_LOG,
                D(streams::read::xread),
                0,
                0,
                0
            ),
            spec!("XGROUP", -2, WRITE, D(streams::groups::xgroup), 2, 2, 1),
            spec!("XACK", -4, WRITE, D(streams::groups::xack), 1, 1, 1),
            spec!("XPENDING", -3, 0, D(streams::groups::xpending), 1, 1, 1),
            spec!(
                "XCLAIM",
                -6,
                WRITE | OWN_LOG,
                D(streams::groups::xclaim),
                1,
                1,
                1
            ),
            spec!(
                "XAUTOCLAIM",
                -6,
                WRITE | OWN_LOG,
                D(streams::groups::xautoclaim),
                1,
                1,
                1
            ),
            spec!("XTRIM", -4, WRITE, D(streams::entries::xtrim), 1, 1, 1),
            spec!("XDEL", -3, WRITE, D(streams::entries::xdel), 1, 1, 1),
            spec!("XSETID", -3, WRITE, D(streams::entries::xsetid), 1, 1, 1),
            spec!("XINFO", -2, 0, D(streams::info::xinfo), 2, 2, 1),
        ])
    })
}

/// The subcommands charla serves of Redis's container commands, with Redis 7's arity for
/// each (N exact, -N at least N). Redis rejects an unknown subcommand or a wrong count before
/// running anything (inside MULTI: at queuing time, so EXEC aborts); [`dispatch`] does the
/// same from this table (`Spec::subcommands`).
fn subcommands(command: &str) -> &'static [(&'static str, i32)] {
    match command {
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
        "OBJECT" => &[
            ("ENCODING", 3),
            ("FREQ", 3),
            ("IDLETIME", 3),
            ("REFCOUNT", 3),
            ("HELP", 2),
        ],
        _ => &[],
    }
}

/// The keyspace events of each write command, as Redis 7 names them (checked against
/// redis-server by tests/notifications.rs). Reads notify nothing (keys found expired are
/// notified by the keyspace itself).
fn notify(command: &str) -> Notify {
    use Notify::{Custom, Event, Nothing};
    match command {
        "DEL" | "UNLINK" | "GETDEL" => Event(GENERIC, "del"),
        "PERSIST" => Event(GENERIC, "persist"),
        "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" | "GETEX" => Custom,
        "RENAME" | "RENAMENX" | "COPY" | "MOVE" => Custom,
        "SET" | "SETNX" | "SETEX" | "PSETEX" | "MSET" | "MSETNX" | "GETSET" => Event(STRING, "set"),
        "INCR" | "DECR" | "INCRBY" | "DECRBY" => Event(STRING, "incrby"),
        "INCRBYFLOAT" => Event(STRING, "incrbyfloat"),
        "APPEND" => Event(STRING, "append"),
        "SETRANGE" => Event(STRING, "setrange"),
        "LPUSH" | "LPUSHX" => Event(LIST, "lpush"),
        "RPUSH" | "RPUSHX" => Event(LIST, "rpush"),
        "LPOP" | "BLPOP" => Event(LIST, "lpop"),
        "RPOP" | "BRPOP" => Event(LIST, "rpop"),
        "LSET" => Event(LIST, "lset"),
        "LREM" => Event(LIST, "lrem"),
        "LTRIM" => Event(LIST, "ltrim"),
        "LINSERT" => Event(LIST, "linsert"),
        "LMOVE" | "RPOPLPUSH" | "BLMOVE" | "BRPOPLPUSH" | "LMPOP" | "BLMPOP" => Custom,
        "HSET" | "HMSET" | "HSETNX" => Event(HASH, "hset"),
        "HDEL" => Event(HASH, "hdel"),
        "HINCRBY" => Event(HASH, "hincrby"),
        "SADD" => Event(SET, "sadd"),
        "SREM" => Event(SET, "srem"),
        "SPOP" => Event(SET, "spop"),
        "SMOVE" | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" => Custom,
        "XADD" => Event(STREAM, "xadd"),
        "XTRIM" => Event(STREAM, "xtrim"),
        "XDEL" => Event(STREAM, "xdel"),
        "XSETID" => Event(STREAM, "xsetid"),
        "XGROUP" | "XREADGROUP" | "XCLAIM" | "XAUTOCLAIM" => Custom,
        "ZREM" => Event(ZSET, "zrem"),
        "SETBIT" | "BITFIELD" => Event(STRING, "setbit"),
        "HINCRBYFLOAT" => Event(HASH, "hincrbyfloat"),
        "BITOP" | "SORT" => Custom,
        "ZREMRANGEBYRANK" => Event(ZSET, "zremrangebyrank"),
        "ZREMRANGEBYSCORE" => Event(ZSET, "zremrangebyscore"),
        "ZREMRANGEBYLEX" => Event(ZSET, "zremrangebylex"),
        "ZADD" | "ZINCRBY" | "ZPOPMIN" | "ZPOPMAX" | "BZPOPMIN" | "BZPOPMAX" | "ZMPOP"
        | "BZMPOP" | "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" | "ZRANGESTORE" => Custom,
        _ => Nothing,
    }
}
