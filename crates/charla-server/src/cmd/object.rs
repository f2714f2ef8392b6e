//! OBJECT ENCODING / REFCOUNT / IDLETIME / FREQ / HELP.
//!
//! charla keeps every value in one representation per type, so ENCODING names the encoding
//! redis-server 7.0 would give a value with the same content, by Redis's own rules:
//!
//! - strings: `int` for an integer Redis would read as one (`string2ll`: no sign but `-`, no
//!   leading zero, in i64 range, at most 20 bytes), else `embstr` up to 44 bytes, else `raw`;
//! - lists: `quicklist` (7.2 calls small lists `listpack`);
//! - hashes: `listpack` up to 512 fields and while every field and value has at most 64
//!   bytes (`hash-max-listpack-entries` / `-value`), else `hashtable`;
//! - sets: `intset` up to 512 members that are all integers (`set-max-intset-entries`), else
//!   `hashtable` (7.2 adds `listpack` for small sets of strings);
//! - streams: `stream`.
//!
//! Where Redis's answer depends on a value's history rather than its content, charla's may
//! differ (docs/serve-differences.md): APPEND to an existing string, SETRANGE, SETBIT and
//! BITOP leave a `raw` string in Redis, INCRBYFLOAT an `embstr`; a hash or set Redis converted
//! to a hash table stays one when it shrinks.
//!
//! REFCOUNT is 2147483647 (Redis's shared objects) for the integers 0 to 9999 Redis shares,
//! else 1. IDLETIME is 0: charla keeps no access times. FREQ is Redis's error for a server
//! whose eviction policy is not LFU (charla's is `noeviction`).

use super::args::parse_i64;
use super::hashes::{LISTPACK_ENTRIES, LISTPACK_VALUE};
use super::spec::{Ctx, Res};
use crate::db::{now_ms, Db, Value};

/// Redis's `set-max-intset-entries`.
const INTSET_ENTRIES: usize = 512;
/// Redis's `OBJ_ENCODING_EMBSTR_SIZE_LIMIT`.
const EMBSTR_MAX: usize = 44;
/// Redis's `OBJ_SHARED_INTEGERS`: 0..this are shared objects.
const SHARED_INTEGERS: i64 = 10_000;
/// Redis's `OBJ_SHARED_REFCOUNT`.
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

const HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// A string Redis stores as an integer (`tryObjectEncoding`).
fn as_int(s: &[u8]) -> Option<i64> {
    if s.len() > 20 {
        return None;
    }
    parse_i64(s)
}

/// The encoding redis-server 7.0 reports for a value with this content.
pub fn encoding(v: &Value) -> &'static str {
    match v {
        Value::Str(s) if as_int(s).is_some() => "int",
        Value::Str(s) if s.len() <= EMBSTR_MAX => "embstr",
        Value::Str(_) => "raw",
        Value::List(_) => "quicklist",
        Value::Hash(h)
            if h.len() <= LISTPACK_ENTRIES
                && h.iter()
                    .all(|(f, v)| f.len() <= LISTPACK_VALUE && v.len() <= LISTPACK_VALUE) =>
        {
            "listpack"
        }
        Value::Hash(_) => "hashtable",
        Value::Set(s) if s.len() <= INTSET_ENTRIES && s.iter().all(|m| parse_i64(m).is_some()) => {
            "intset"
        }
        Value::Set(_) => "hashtable",
        Value::ZSet(z)
            if z.len() <= ZSET_LISTPACK_ENTRIES
                && z.iter().all(|(m, _)| m.len() <= LISTPACK_VALUE) =>
        {
            "listpack"
        }
        Value::ZSet(_) => "skiplist",
        Value::Stream(_) => "stream",
    }
}

/// `zset-max-listpack-entries` (128 in Redis 7.0; members over `LISTPACK_VALUE` bytes also
/// make a skiplist).
const ZSET_LISTPACK_ENTRIES: usize = 128;

fn refcount(v: &Value) -> i64 {
    match v {
        Value::Str(s) if as_int(s).is_some_and(|n| (0..SHARED_INTEGERS).contains(&n)) => {
            SHARED_REFCOUNT
        }
        _ => 1,
    }
}

/// OBJECT <subcommand> [key]. The request path checked the subcommand and its arity.
pub fn object(ctx: &mut Ctx, db: &mut Db) -> Res {
    let sub = ctx.args[1].to_ascii_uppercase();
    if sub == b"HELP" {
        ctx.out.array(HELP.len());
        for line in HELP {
            ctx.out.simple(line);
        }
        return Res::Ok;
    }
    // A missing key is a null whatever the subcommand (FREQ's policy error comes after).
    let Some(e) = db.dbs[ctx.client.db].get(&ctx.args[2], now_ms()) else {
        ctx.out.null();
        return Res::Ok;
    };
    match sub.as_slice() {
        b"ENCODING" => {
            let enc = encoding(&e.value);
            ctx.out.bulk(enc.as_bytes());
        }
        b"REFCOUNT" => {
            let n = refcount(&e.value);
            ctx.out.int(n);
        }
        b"IDLETIME" => ctx.out.int(0),
        _ => ctx.out.err(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
    }
    Res::Ok
}
