//! Differential test against a real `redis-server` 7: seeded random command sequences over a
//! tiny key space, run on both servers, replies compared byte for byte.
//!
//! `compare_redis.rs` checks a fixed script; this finds what nobody thought to write down: how
//! commands interact (wrong types, missing keys, numbers at the edges, transactions, blocked
//! clients woken by another client's push, pub/sub deliveries). Each case starts with FLUSHALL
//! on both servers and fresh connections: a main one (RESP2 or, one case in four, RESP3 via
//! `HELLO 3`), a subscriber, a second client for blocking commands and a control connection
//! (FLUSHALL, `INFO clients`).
//!
//! Determinism is got by construction rather than by masking where possible: stream ids are
//! always explicit (`1-1`, `5-*`), never `*`; expiries are in the past or days away, never a
//! few ms; blocking commands run on the second client, and the waker (a push or XADD) is only
//! sent once that client is seen blocked (`INFO clients`) or has already answered; subscriber
//! output is read up to the reply of a `PING <marker>`, so every message published before it
//! is in the same batch on both servers; TTL-like commands never run inside MULTI (where their
//! replies could not be masked); SCAN uses COUNT 100, which covers this key space in one call
//! on both servers.
//!
//! The mask (applied to parsed replies, so everything else stays byte-exact):
//! - TTL/PTTL/EXPIRETIME/PEXPIRETIME: a positive value becomes `<ttl>` (it moves with the
//!   clock);
//! - KEYS, SCAN's key list, PUBSUB CHANNELS, the members of a set (SMEMBERS,
//!   SINTER/SUNION/SDIFF, SPOP/SRANDMEMBER with a count, SSCAN, SORT with a constant BY and no
//!   STORE): sorted (hashes are compared in their order: both servers keep a small hash in
//!   insertion order), and so are the
//!   channels confirmed by an argument-less (P)UNSUBSCRIBE and the `pmessage`s one message
//!   gives a subscriber with several matching patterns (the order is each server's table's);
//! - RANDOMKEY: any key becomes `<key>`; CLIENT ID: `<id>` (connection counters);
//!   HRANDFIELD's picks (unless the count covers the hash): each field or value `<field>`;
//!   OBJECT IDLETIME: `<idle>`;
//! - idle times (XPENDING's extended form, XINFO CONSUMERS' `idle`): `<idle>`;
//! - HELLO's server map and INFO's text: not compared beyond their type (versions, run ids,
//!   memory figures).
//!
//! Sorted-set replies are ordered and compared as they come, with no mask: the generator's
//! sorted sets stay small (a handful of members), which redis-server keeps as listpacks, so
//! ZSCAN returns them whole on both servers; ZRANDMEMBER is sent only in its deterministic
//! forms (a count covering the set, whose members Redis lists highest first; 0; errors).
//!
//! The generator also stays away from the deliberate differences listed in
//! docs/serve-differences.md (each place says which), and sends only commands charla serves,
//! plus names unknown to both servers to compare the unknown-command error.
//!
//! Knobs: `CHARLA_DIFF_SEED=<n>` replays one seed (the failure report names it);
//! `CHARLA_DIFF_CASES=<n>` / `CHARLA_DIFF_SECONDS=<s>` run longer by hand (defaults: seeds 0,
//! 1, 2… until 2 000 cases or 20 s, whichever comes first); `CHARLA_DIFF_KEEP_GOING=1`
//! reports every failing seed instead of stopping at the first. The number of commands
//! compared is printed (`--nocapture` to see it).

mod common;

use std::time::{Duration, Instant};

use charla_server::ServerConfig;
use charla_testkit::RedisServer;
use common::{reply_len, Raw, TestServer};

/// Commands per case: enough for keys to change type and for transactions and blocking to
/// meet earlier writes.
const STEPS_PER_CASE: usize = 40;

const KEYS: &[&str] = &["k0", "k1", "k2", "k3", "k4", "k5"];
const FIELDS: &[&str] = &["f0", "f1", "f2"];
/// Values that are also numbers at the edges, so INCR/HINCRBY meet them.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "10",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "abc",
    "",
    "1.5",
    "v",
    " 1",
    "01",
];
/// Integer arguments: edges, overflow and non-numbers.
const INTS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "-2",
    "100",
    "-100",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "x",
    "1.5",
    "",
];
/// INCRBYFLOAT increments: binary fractions only, exact in both Redis's long double and
/// charla's f64 (docs/serve-differences.md: INCRBYFLOAT precision).
const FLOATS: &[&str] = &[
    "0", "1", "-1", "1.5", "0.25", "-0.5", "1e3", "5e-1", "inf", "-inf", "nan", "x", "3.0", "",
];
/// The one key INCRBYFLOAT works on: no other command writes it, so it never holds a
/// 19-digit integer, whose sum with a fraction Redis (long double) and charla (f64) round
/// differently.
const FLOAT_KEY: &str = "kf";
/// The one key HINCRBYFLOAT adds to (and only HSET of small values otherwise writes): like
/// FLOAT_KEY, so that no field holds a 19-digit integer that long double and f64 round apart.
const HFLOAT_KEY: &str = "hf";
/// The one key OBJECT ENCODING / REFCOUNT look at: written only by whole-value SETs, DEL,
/// and additions that never take an encoding back (Redis's encoding of a value APPEND,
/// SETRANGE or SETBIT changed, or of a hash or set that shrank, depends on its history:
/// docs/serve-differences.md, OBJECT ENCODING).
const OBJECT_KEY: &str = "ke";
/// Explicit stream ids only: `*` would be generated from the clock.
const STREAM_IDS: &[&str] = &[
    "0-0",
    "0-1",
    "1-0",
    "1-1",
    "1-2",
    "2-0",
    "2",
    "3-5",
    "1-*",
    "5-*",
    "18446744073709551615-18446744073709551615",
    "bad",
    "-1",
];
/// Range bounds for XRANGE & co.
const STREAM_BOUNDS: &[&str] = &[
    "-", "+", "0", "1", "1-1", "(1-1", "2-0", "(2", "3-5", "bad", "(-", "(+",
];
const GROUPS: &[&str] = &["g0", "g1"];
const CONSUMERS: &[&str] = &["c0", "c1"];
const CHANNELS: &[&str] = &["ch0", "ch1", "ch2"];
const PATTERNS: &[&str] = &["ch*", "ch[01]", "x*"];
const KEY_PATTERNS: &[&str] = &["*", "k[0-2]", "k?", "*1", "nomatch*", "[", "k\\1"];
/// Sorted-set members (the sets' members, so SUNION/ZUNION mixes meet) and scores: integers,
/// fractions that print with 17 digits, signed zero, infinities (whose sums turn to NaN, which
/// Redis answers with 0 or an error), and non-numbers.
const ZMEMBERS: &[&str] = &["a", "b", "c", "1", "2", "10", ""];
const ZSCORES: &[&str] = &[
    "0", "1", "-1", "2", "1.5", "0.1", "-0", "3", "inf", "-inf", "+inf", "1e3", "x", "nan", "",
    "1e400", "0x10",
];
/// Score range bounds: `(` exclusive (alone: 0), infinities, non-numbers.
const ZSCORE_BOUNDS: &[&str] = &[
    "-inf", "+inf", "0", "1", "(1", "1.5", "(2", "3", "(3", "-1", "(", "", "x", "nan", "inf",
];
/// Lex range bounds: `-`, `+`, `[` inclusive, `(` exclusive, and invalid ones.
const ZLEX_BOUNDS: &[&str] = &[
    "-", "+", "[a", "(a", "[b", "(b", "[c", "[1", "(10", "[", "(", "x", "+a", "",
];
/// Not served by redis-server either: the unknown-command error must match.
const UNKNOWN: &[&str] = &["NOSUCHCMD", "FOO", "xgetall", "HGETALLX"];

/// One step of a case.
#[derive(Clone, Debug)]
enum Step {
    /// A command on the main connection.
    Cmd(Vec<String>),
    /// A command (or nothing) on the subscriber connection, then `PING <marker>`: all the
    /// replies and messages that arrive up to the marker's reply.
    Sub(Vec<String>),
    /// A blocking command on the second client; once it is blocked (or has answered), `waker`
    /// on the main connection; then the blocking command's reply.
    Block {
        blocking: Vec<String>,
        waker: Vec<String>,
        /// A short timeout (the waker pushes elsewhere): it may expire before the client is
        /// seen blocked, so whether it blocked is not compared, only the replies.
        short_timeout: bool,
    },
}

impl Step {
    /// Commands sent to each server (a subscriber step adds its marker PING).
    fn commands(&self) -> usize {
        match self {
            Step::Cmd(_) => 1,
            Step::Sub(a) => 1 + usize::from(!a.is_empty()),
            Step::Block { .. } => 2,
        }
    }

    fn describe(&self) -> String {
        match self {
            Step::Cmd(a) => a.join(" "),
            Step::Sub(a) => format!("[subscriber] {}", a.join(" ")),
            Step::Block {
                blocking, waker, ..
            } => {
                format!(
                    "[client 2] {}  then  {}",
                    blocking.join(" "),
                    waker.join(" ")
                )
            }
        }
    }
}

/// The generator: a seeded PRNG and the choices above.
struct Gen {
    rng: fastrand::Rng,
    /// A command of this case left redis-server's `errno` at ERANGE (SCAN's cursor past
    /// 2^64-1, read with `strtoul`): from then on redis-server 7.0 fails every numeric SORT
    /// of a non-integer string, a bug (it never resets `errno` before its `strtod`;
    /// docs/serve-differences.md, SORT) that lasts until a failing system call resets it, as
    /// the next case's connections do. SORT is then ALPHA or unsorted.
    erange: bool,
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Gen {
    fn pick(&mut self, from: &[&str]) -> String {
        from[self.rng.usize(..from.len())].to_string()
    }
    fn key(&mut self) -> String {
        // Now and then a key that is never written (other than by RENAME).
        if self.rng.u8(..20) == 0 {
            "nokey".into()
        } else {
            self.pick(KEYS)
        }
    }
    fn value(&mut self) -> String {
        self.pick(VALUES)
    }
    fn int(&mut self) -> String {
        self.pick(INTS)
    }
    fn small(&mut self) -> String {
        // Mostly sensible counts and indexes, sometimes an edge.
        if self.rng.bool() {
            self.rng.i64(-3..6).to_string()
        } else {
            self.int()
        }
    }
    fn chance(&mut self, one_in: u8) -> bool {
        self.rng.u8(..one_in) == 0
    }
    fn side(&mut self) -> String {
        let choices = if self.chance(15) { 4 } else { 3 };
        self.pick(&["LEFT", "RIGHT", "left", "UP"][..choices])
    }

    fn case(&mut self) -> (bool, bool, Vec<Step>) {
        let main_resp3 = self.chance(4);
        let sub_resp3 = self.chance(4);
        let mut steps = Vec::new();
        while steps.len() < STEPS_PER_CASE {
            match self.rng.u8(..100) {
                0..=5 => steps.extend(self.transaction()),
                6..=11 => steps.push(self.block()),
                12..=16 => steps.push(Step::Sub(self.subscriber())),
                _ => steps.push(Step::Cmd(self.command(false))),
            }
        }
        // Whatever was published last is read too.
        steps.push(Step::Sub(Vec::new()));
        (main_resp3, sub_resp3, steps)
    }

    /// A command for the main connection; `in_multi`: nothing whose reply is time-dependent.
    fn command(&mut self, in_multi: bool) -> Vec<String> {
        loop {
            // Sorted sets get about a fifth: within one case their commands must meet each
            // other.
            let c = match self.rng.u8(..125) {
                0..=15 => self.string_cmd(),
                16..=26 => self.key_cmd(),
                27..=39 => self.list_cmd(),
                40..=50 => self.hash_cmd(),
                51..=65 => self.stream_cmd(),
                66..=70 => self.set_cmd(),
                71..=76 => self.bit_cmd(),
                77..=80 => self.sort_cmd(),
                81..=82 => self.object_cmd(),
                83..=86 => self.pubsub_cmd(),
                87..=93 => self.server_cmd(),
                94..=99 => self.misc_cmd(),
                _ => self.zset_cmd(),
            };
            let name = c[0].to_ascii_uppercase();
            let timed = ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"].contains(&name.as_str());
            if in_multi && (timed || name == "RESET") {
                continue;
            }
            return c;
        }
    }

    fn string_cmd(&mut self) -> Vec<String> {
        let k = self.key();
        match self.rng.u8(..25) {
            20 => vec!["SETRANGE".into(), k, self.small(), self.value()],
            21 => {
                let mut c = vec!["GETEX".into(), k];
                match self.rng.u8(..8) {
                    0 => c.extend(["EX".into(), self.pick(&["100000", "0", "-1", "x"])]),
                    1 => c.extend(["PX".into(), "100000000".into()]),
                    // Never a time in the past (the key would go at once, as with SET).
                    2 => c.extend(["EXAT".into(), "4000000000".into()]),
                    3 => c.push("PERSIST".into()),
                    4 => c.extend(["PERSIST".into(), "EX".into(), "10".into()]),
                    5 => c.push("BOGUS".into()),
                    _ => {}
                }
                c
            }
            0 => vec!["GET".into(), k],
            1 | 2 => {
                let mut c = vec!["SET".into(), k, self.value()];
                for _ in 0..self.rng.usize(..3) {
                    match self.rng.u8(..9) {
                        0 => c.push("NX".into()),
                        1 => c.push("XX".into()),
                        2 => c.push("GET".into()),
                        3 => c.extend(["EX".into(), self.pick(&["100", "0", "-1", "x"])]),
                        4 => c.extend(["PX".into(), self.pick(&["100000", "0", "x"])]),
                        // No time in the past: docs/serve-differences.md (DBSIZE).
                        5 => c.extend(["EXAT".into(), self.pick(&["4000000000", "0"])]),
                        6 => c.extend(["PXAT".into(), "4000000000000".into()]),
                        7 => c.push("KEEPTTL".into()),
                        _ => c.push("BOGUS".into()),
                    }
                }
                c
            }
            3 => vec!["INCR".into(), k],
            4 => vec!["DECR".into(), k],
            5 => vec!["INCRBY".into(), k, self.int()],
            6 => vec!["DECRBY".into(), k, self.int()],
            7 => {
                if self.chance(6) {
                    let v = self.pick(&["abc", "1", "-1", "1.5", "", "0"]);
                    vec!["SET".into(), FLOAT_KEY.into(), v]
                } else {
                    vec!["INCRBYFLOAT".into(), FLOAT_KEY.into(), self.pick(FLOATS)]
                }
            }
            8 => vec!["APPEND".into(), k, self.value()],
            9 => vec!["STRLEN".into(), k],
            10 => vec!["GETRANGE".into(), k, self.small(), self.small()],
            11 => vec!["GETDEL".into(), k],
            12 => vec!["GETSET".into(), k, self.value()],
            13 => vec!["SETNX".into(), k, self.value()],
            14 => vec![
                self.pick(&["SETEX", "PSETEX"]),
                k,
                self.pick(&["1000000", "100000", "0", "-5", "x"]),
                self.value(),
            ],
            15 => {
                let mut c = vec!["MGET".into(), k];
                for _ in 0..self.rng.usize(..3) {
                    c.push(self.key());
                }
                c
            }
            16 | 17 => {
                let mut c = vec![self.pick(&["MSET", "MSETNX"]), k, self.value()];
                for _ in 0..self.rng.usize(..2) {
                    c.extend([self.key(), self.value()]);
                }
                if self.chance(8) {
                    c.pop();
                }
                c
            }
            18 => vec!["INCR".into()],
            19 => vec!["GET".into(), k, "extra".into()],
            _ => vec!["SET".into(), k, self.value()],
        }
    }

    fn key_cmd(&mut self) -> Vec<String> {
        let k = self.key();
        match self.rng.u8(..24) {
            20 => vec!["TOUCH".into(), k, self.key()],
            21 => {
                let mut c = vec!["COPY".into(), k, self.key()];
                if self.rng.bool() {
                    c.push("REPLACE".into());
                }
                if self.chance(3) {
                    c.extend(["DB".into(), self.pick(&["1", "0", "16", "x"])]);
                }
                c
            }
            22 => vec!["MOVE".into(), k, self.pick(&["1", "0", "16", "x"])],
            0 | 1 => {
                let mut c = vec![self.pick(&["DEL", "UNLINK"]), k];
                if self.rng.bool() {
                    c.push(self.key());
                }
                c
            }
            2 => vec!["EXISTS".into(), k.clone(), self.key(), k],
            3 => vec!["TYPE".into(), k],
            4 => vec!["KEYS".into(), self.pick(KEY_PATTERNS)],
            5 | 6 => {
                let mut c = vec![
                    self.pick(&["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"]),
                    k,
                    // Expiries are in the past (the key goes at once) or days away, never
                    // a few ms: a key expiring mid-case would race the comparison.
                    self.pick(&[
                        "10000",
                        "100000",
                        "4000000000",
                        "2000000000",
                        "0",
                        "-1",
                        "x",
                    ]),
                ];
                if self.chance(3) {
                    c.push(self.pick(&["NX", "XX", "GT", "LT", "nx", "BAD"]));
                }
                if self.chance(10) {
                    c.push(self.pick(&["NX", "GT"]));
                }
                c
            }
            7 | 8 => vec![self.pick(&["TTL", "PTTL"]), k],
            9 => vec![self.pick(&["EXPIRETIME", "PEXPIRETIME"]), k],
            10 => vec!["PERSIST".into(), k],
            11 | 12 => vec![self.pick(&["RENAME", "RENAMENX"]), k, self.key()],
            13 => vec!["RANDOMKEY".into()],
            14 => vec!["DBSIZE".into()],
            15 => {
                // No negative cursor: docs/serve-differences.md (SCAN).
                let cursor = self.pick(&["0", "0", "0", "x", "18446744073709551616"]);
                self.erange |= cursor == "18446744073709551616";
                let mut c = vec!["SCAN".into(), cursor];
                if self.rng.bool() {
                    c.extend(["MATCH".into(), self.pick(KEY_PATTERNS)]);
                }
                c.extend(["COUNT".into(), "100".into()]);
                if self.rng.bool() {
                    c.extend([
                        "TYPE".into(),
                        self.pick(&["string", "list", "hash", "stream", "set", "zset", "bogus"]),
                    ]);
                }
                if self.chance(6) {
                    c.push(self.pick(&["COUNT", "MATCH", "BOGUS"]));
                }
                if self.chance(6) {
                    c.extend(["COUNT".into(), self.pick(&["0", "-1", "x"])]);
                }
                c
            }
            16 => vec!["EXPIRE".into(), k],
            _ => vec!["EXISTS".into(), k],
        }
    }

    fn list_cmd(&mut self) -> Vec<String> {
        let k = self.key();
        match self.rng.u8(..21) {
            19 => vec![
                "LINSERT".into(),
                k,
                self.pick(&["BEFORE", "AFTER", "after", "MIDDLE"]),
                self.value(),
                self.value(),
            ],
            0..=2 => {
                let mut c = vec![self.pick(&["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"]), k];
                for _ in 0..1 + self.rng.usize(..3) {
                    c.push(self.value());
                }
                c
            }
            3 | 4 => {
                let mut c = vec![self.pick(&["LPOP", "RPOP"]), k];
                if self.rng.bool() {
                    c.push(self.small());
                }
                c
            }
            5 => vec!["LLEN".into(), k],
            6 | 7 => vec!["LRANGE".into(), k, self.small(), self.small()],
            8 => vec!["LINDEX".into(), k, self.small()],
            9 => vec!["LSET".into(), k, self.small(), self.value()],
            10 => vec!["LREM".into(), k, self.small(), self.value()],
            11 => vec!["LTRIM".into(), k, self.small(), self.small()],
            12 => {
                let mut c = vec!["LPOS".into(), k, self.value()];
                for _ in 0..self.rng.usize(..3) {
                    let opt = self.pick(&["RANK", "COUNT", "MAXLEN", "BOGUS"]);
                    let mut v = self.small();
                    if opt == "RANK" && v == "-9223372036854775808" {
                        // docs/serve-differences.md (LPOS RANK).
                        v = "-1".into();
                    }
                    c.extend([opt, v]);
                }
                c
            }
            13 => vec!["LMOVE".into(), k, self.key(), self.side(), self.side()],
            14 => vec!["RPOPLPUSH".into(), k, self.key()],
            15 => {
                let mut c = vec!["LMPOP".into(), self.pick(&["1", "2", "0", "x", "3"])];
                c.push(k);
                c.push(self.key());
                c.push(self.side());
                if self.rng.bool() {
                    c.extend(["COUNT".into(), self.small()]);
                }
                c
            }
            // Blocking forms that do not block: data is there, or the arguments are wrong.
            16 => vec![
                self.pick(&["BLPOP", "BRPOP"]),
                k,
                self.pick(&["0.01", "-1", "x", "0.001"]),
            ],
            17 => vec![
                "BLMOVE".into(),
                k,
                self.key(),
                self.side(),
                self.side(),
                "0.01".into(),
            ],
            18 => vec![
                "BLMPOP".into(),
                self.pick(&["0.01", "-1"]),
                "1".into(),
                k,
                self.side(),
            ],
            _ => vec!["RPUSH".into(), k, self.value()],
        }
    }

    fn set_cmd(&mut self) -> Vec<String> {
        let k = self.key();
        let member = |g: &mut Self| g.pick(&["a", "b", "c", "1", "2", "10", ""]);
        match self.rng.u8(..16) {
            0..=2 => {
                let mut c = vec!["SADD".into(), k];
                for _ in 0..1 + self.rng.usize(..3) {
                    c.push(member(self));
                }
                c
            }
            3 => vec!["SREM".into(), k, member(self), member(self)],
            4 => vec!["SCARD".into(), k],
            5 => vec!["SISMEMBER".into(), k, member(self)],
            6 => vec!["SMISMEMBER".into(), k, member(self), member(self)],
            7 => vec!["SMEMBERS".into(), k],
            8 => vec![self.pick(&["SINTER", "SUNION", "SDIFF"]), k, self.key()],
            9 => vec![
                self.pick(&["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]),
                self.key(),
                k,
                self.key(),
            ],
            10 => {
                let mut c = vec![
                    "SINTERCARD".into(),
                    self.pick(&["2", "1", "0", "3", "x"]),
                    k,
                    self.key(),
                ];
                if self.rng.bool() {
                    c.extend(["LIMIT".into(), self.pick(&["1", "0", "-1", "x"])]);
                }
                c
            }
            11 => vec!["SMOVE".into(), k, self.key(), member(self)],
            // Only what is not random: the whole set, nothing, or an error.
            12 => vec!["SPOP".into(), k, self.pick(&["100", "0", "-1", "x"])],
            13 => vec!["SRANDMEMBER".into(), k, self.pick(&["100", "0", "x"])],
            14 => {
                let mut c = vec!["SSCAN".into(), k, self.pick(&["0", "x"])];
                if self.rng.bool() {
                    c.extend(["MATCH".into(), self.pick(&["a*", "*", "1?"])]);
                }
                if self.chance(3) {
                    c.extend(["COUNT".into(), self.pick(&["100", "0", "x"])]);
                }
                c
            }
            _ => vec!["SADD".into(), k, member(self)],
        }
    }

    /// A key for a sorted-set command: half the time one that only these commands write, so
    /// that sets grow and meet each other, else any key (wrong types, plain sets as inputs).
    fn zkey(&mut self) -> String {
        if self.rng.bool() {
            self.pick(&["z0", "z1", "z2"])
        } else {
            self.key()
        }
    }

    fn zset_cmd(&mut self) -> Vec<String> {
        let k = self.zkey();
        let member = |g: &mut Self| g.pick(ZMEMBERS);
        let score = |g: &mut Self| g.pick(ZSCORES);
        let sbound = |g: &mut Self| g.pick(ZSCORE_BOUNDS);
        let lbound = |g: &mut Self| g.pick(ZLEX_BOUNDS);
        match self.rng.u8(..33) {
            0..=3 | 30..=32 => {
                let mut c = vec!["ZADD".into(), k];
                for _ in 0..self.rng.usize(..3) {
                    c.push(self.pick(&["NX", "XX", "GT", "LT", "CH", "INCR", "ch"]));
                }
                for _ in 0..1 + self.rng.usize(..3) {
                    c.extend([score(self), member(self)]);
                }
                if self.chance(10) {
                    c.pop();
                }
                c
            }
            4 => vec!["ZINCRBY".into(), k, score(self), member(self)],
            5 => vec!["ZREM".into(), k, member(self), member(self)],
            6 => vec!["ZCARD".into(), k],
            7 => vec!["ZSCORE".into(), k, member(self)],
            8 => vec!["ZMSCORE".into(), k, member(self), member(self)],
            // No WITHSCORE: Redis 7.2's (docs/serve-differences.md).
            9 => vec![self.pick(&["ZRANK", "ZREVRANK"]), k, member(self)],
            10 => vec!["ZCOUNT".into(), k, sbound(self), sbound(self)],
            11 => vec!["ZLEXCOUNT".into(), k, lbound(self), lbound(self)],
            12..=14 => {
                let by = self.rng.u8(..4);
                let (a, b) = match by {
                    0 => (sbound(self), sbound(self)),
                    1 => (lbound(self), lbound(self)),
                    _ => (self.small(), self.small()),
                };
                let mut c = vec!["ZRANGE".into(), k, a, b];
                match by {
                    0 => c.push("BYSCORE".into()),
                    1 => c.push("BYLEX".into()),
                    2 if self.chance(5) => c.push(self.pick(&["BYSCORE", "BYLEX"])),
                    _ => {}
                }
                if self.chance(3) {
                    c.push("REV".into());
                }
                if self.chance(3) {
                    c.extend(["LIMIT".into(), self.small(), self.small()]);
                }
                if self.chance(2) {
                    c.push("WITHSCORES".into());
                }
                if self.chance(12) {
                    c.push(self.pick(&["REV", "BOGUS", "LIMIT"]));
                }
                c
            }
            15 => {
                let mut c = vec![
                    self.pick(&["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"]),
                    k,
                    sbound(self),
                    sbound(self),
                ];
                if self.rng.bool() {
                    c.push("WITHSCORES".into());
                }
                if self.chance(3) {
                    c.extend(["LIMIT".into(), self.small(), self.small()]);
                }
                c
            }
            16 => {
                let mut c = vec![
                    self.pick(&["ZRANGEBYLEX", "ZREVRANGEBYLEX"]),
                    k,
                    lbound(self),
                    lbound(self),
                ];
                if self.chance(3) {
                    c.extend(["LIMIT".into(), self.small(), self.small()]);
                }
                c
            }
            17 => {
                let mut c = vec!["ZREVRANGE".into(), k, self.small(), self.small()];
                if self.rng.bool() {
                    c.push("WITHSCORES".into());
                }
                c
            }
            18 => {
                let mut c = vec!["ZRANGESTORE".into(), self.zkey(), k];
                match self.rng.u8(..3) {
                    0 => c.extend([sbound(self), sbound(self), "BYSCORE".into()]),
                    1 => c.extend([lbound(self), lbound(self), "BYLEX".into()]),
                    _ => c.extend([self.small(), self.small()]),
                }
                if self.chance(3) {
                    c.push("REV".into());
                }
                if self.chance(4) {
                    c.extend(["LIMIT".into(), self.small(), self.small()]);
                }
                c
            }
            19 | 20 => {
                let mut c = vec![self.pick(&["ZPOPMIN", "ZPOPMAX"]), k];
                if self.rng.bool() {
                    c.push(self.small());
                }
                c
            }
            21 => {
                let mut c = vec!["ZMPOP".into(), self.pick(&["1", "2", "0", "x", "3"])];
                c.extend([k, self.zkey()]);
                c.push(self.pick(&["MIN", "MAX", "max", "LEFT"]));
                if self.rng.bool() {
                    c.extend(["COUNT".into(), self.small()]);
                }
                c
            }
            22 => match self.rng.u8(..3) {
                0 => vec!["ZREMRANGEBYRANK".into(), k, self.small(), self.small()],
                1 => vec!["ZREMRANGEBYSCORE".into(), k, sbound(self), sbound(self)],
                _ => vec!["ZREMRANGEBYLEX".into(), k, lbound(self), lbound(self)],
            },
            // Only what is not random: the whole set (highest first), nothing, or an error.
            23 => {
                let mut c = vec![
                    "ZRANDMEMBER".into(),
                    k,
                    self.pick(&["100", "0", "x", "-9223372036854775808"]),
                ];
                if self.rng.bool() {
                    c.push(self.pick(&["WITHSCORES", "WITHSCORES", "BOGUS"]));
                }
                c
            }
            24 => {
                let mut c = vec!["ZSCAN".into(), k, self.pick(&["0", "x"])];
                if self.rng.bool() {
                    c.extend(["MATCH".into(), self.pick(&["a*", "*", "1?"])]);
                }
                if self.chance(3) {
                    c.extend(["COUNT".into(), self.pick(&["100", "0", "x"])]);
                }
                c
            }
            25 | 26 => {
                let store = self.rng.bool();
                let op = self.pick(&["ZUNION", "ZINTER", "ZDIFF"]);
                let mut c = if store {
                    vec![format!("{op}STORE"), self.zkey()]
                } else {
                    vec![op]
                };
                c.extend([self.pick(&["2", "2", "1", "0", "3", "x"]), k, self.zkey()]);
                if self.chance(3) {
                    c.extend(["WEIGHTS".into(), score(self), score(self)]);
                }
                if self.chance(3) {
                    c.extend([
                        "AGGREGATE".into(),
                        self.pick(&["SUM", "MIN", "MAX", "min", "AVG"]),
                    ]);
                }
                if !store && self.rng.bool() {
                    c.push("WITHSCORES".into());
                }
                c
            }
            27 => {
                let mut c = vec![
                    "ZINTERCARD".into(),
                    self.pick(&["2", "1", "0", "3", "x"]),
                    k,
                    self.zkey(),
                ];
                if self.rng.bool() {
                    c.extend(["LIMIT".into(), self.pick(&["1", "0", "-1", "x"])]);
                }
                c
            }
            // Blocking forms that do not block: data is there, or the arguments are wrong.
            28 => vec![
                self.pick(&["BZPOPMIN", "BZPOPMAX"]),
                k,
                self.pick(&["0.01", "-1", "x", "0.001"]),
            ],
            _ => {
                let mut c = vec![
                    "BZMPOP".into(),
                    self.pick(&["0.01", "-1"]),
                    "1".into(),
                    k,
                    self.pick(&["MIN", "MAX"]),
                ];
                if self.rng.bool() {
                    c.extend(["COUNT".into(), self.pick(&["1", "2", "0"])]);
                }
                c
            }
        }
    }

    fn hash_cmd(&mut self) -> Vec<String> {
        let k = self.key();
        let f = self.pick(FIELDS);
        match self.rng.u8(..18) {
            0..=2 => {
                let mut c = vec![self.pick(&["HSET", "HMSET"]), k, f, self.value()];
                if self.rng.bool() {
                    c.extend([self.pick(FIELDS), self.value()]);
                }
                if self.chance(8) {
                    c.pop();
                }
                c
            }
            3 => vec!["HSETNX".into(), k, f, self.value()],
            4 => vec!["HGET".into(), k, f],
            5 => vec!["HMGET".into(), k, f, self.pick(FIELDS)],
            6 => vec!["HGETALL".into(), k],
            7 => vec!["HDEL".into(), k, f, self.pick(FIELDS)],
            8 => vec!["HEXISTS".into(), k, f],
            9 => vec!["HLEN".into(), k],
            10 | 11 => vec!["HINCRBY".into(), k, f, self.int()],
            12 => vec![self.pick(&["HKEYS", "HVALS"]), k],
            13 => vec!["HSTRLEN".into(), k, f],
            14 => {
                let mut c = vec!["HSCAN".into(), k, self.pick(&["0", "0", "7", "x"])];
                if self.rng.bool() {
                    c.extend(["MATCH".into(), self.pick(&["f*", "*", "f[01]", "x*"])]);
                }
                if self.chance(3) {
                    c.extend(["COUNT".into(), self.pick(&["100", "1", "0", "x"])]);
                }
                if self.chance(10) {
                    c.push(self.pick(&["NOVALUES", "MATCH"]));
                }
                c
            }
            15 => {
                // Random picks are masked; a count of 100 (the whole hash, in its order), 0,
                // or a bad one is compared exactly.
                let mut c = vec!["HRANDFIELD".into(), k];
                if !self.chance(4) {
                    c.push(self.pick(&[
                        "100",
                        "100",
                        "0",
                        "1",
                        "2",
                        "-3",
                        "x",
                        // Not a huge negative count: docs/serve-differences.md (replies
                        // that could only be huge; Redis would try to build it).
                        "-9223372036854775808",
                    ]));
                    if self.rng.bool() {
                        c.push(self.pick(&["WITHVALUES", "WITHVALUES", "withvalues", "BOGUS"]));
                    }
                }
                c
            }
            16 => {
                // HINCRBYFLOAT on its own key (see HFLOAT_KEY), and its errors anywhere.
                if self.chance(3) {
                    vec![
                        "HINCRBYFLOAT".into(),
                        k,
                        f,
                        self.pick(&["x", "nan", "inf", "-inf", ""]),
                    ]
                } else if self.chance(6) {
                    let v = self.pick(&["abc", "1", "-1", "1.5", "", "0"]);
                    vec!["HSET".into(), HFLOAT_KEY.into(), f, v]
                } else {
                    vec![
                        "HINCRBYFLOAT".into(),
                        HFLOAT_KEY.into(),
                        f,
                        self.pick(FLOATS),
                    ]
                }
            }
            _ => vec!["HSET".into(), k, f, self.value()],
        }
    }

    /// SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD[_RO] over the shared keys (so they
    /// meet other types and the values other commands wrote). Valid offsets stay small: the
    /// largest one Redis accepts would make both servers allocate 512 MB.
    fn bit_cmd(&mut self) -> Vec<String> {
        let k = self.key();
        let offset = |g: &mut Self| {
            if g.chance(8) {
                g.pick(&["-1", "x", "4294967296", "01", "#2"])
            } else {
                g.rng.u32(0..48).to_string()
            }
        };
        let unit = |g: &mut Self, c: &mut Vec<String>| {
            if g.rng.bool() {
                c.push(g.pick(&["BIT", "BYTE", "bit", "BOGUS"]));
            }
        };
        match self.rng.u8(..12) {
            0..=2 => vec![
                "SETBIT".into(),
                k,
                offset(self),
                self.pick(&["1", "1", "0", "2", "x"]),
            ],
            3 => vec!["GETBIT".into(), k, offset(self)],
            4 | 5 => {
                let mut c = vec!["BITCOUNT".into(), k];
                if self.rng.bool() {
                    c.extend([self.small(), self.small()]);
                    unit(self, &mut c);
                } else if self.chance(5) {
                    c.push(self.small());
                }
                c
            }
            6 | 7 => {
                let mut c = vec!["BITPOS".into(), k, self.pick(&["1", "0", "0", "2", "x"])];
                if self.rng.bool() {
                    c.push(self.small());
                    if self.rng.bool() {
                        c.push(self.small());
                        unit(self, &mut c);
                    }
                }
                c
            }
            8 | 9 => {
                let op = self.pick(&["AND", "OR", "XOR", "NOT", "not", "BOGUS"]);
                let mut c = vec!["BITOP".into(), op, self.key(), k];
                if self.chance(3) {
                    c.push(self.key());
                }
                c
            }
            _ => {
                let cmd = self.pick(&["BITFIELD", "BITFIELD", "BITFIELD_RO"]);
                let mut c = vec![cmd, k];
                for _ in 0..1 + self.rng.usize(..3) {
                    let ty = self.pick(&["u8", "i8", "u4", "i16", "i64", "u63", "u64", "x8"]);
                    let off = if self.chance(6) {
                        self.pick(&["#1", "-1", "x"])
                    } else {
                        self.rng.u32(0..40).to_string()
                    };
                    match self.rng.u8(..5) {
                        0 | 1 => c.extend(["GET".into(), ty, off]),
                        2 => c.extend(["SET".into(), ty, off, self.small()]),
                        3 => c.extend(["INCRBY".into(), ty, off, self.small()]),
                        _ => c.extend([
                            "OVERFLOW".into(),
                            self.pick(&["WRAP", "SAT", "FAIL", "BOGUS"]),
                        ]),
                    }
                }
                c
            }
        }
    }

    /// SORT / SORT_RO of the shared keys' lists and sets, with BY and GET patterns that reach
    /// the other keys (`k*` turns the element `1` into `k1`). Never ALPHA with a BY pattern
    /// (equal weights keep each server's own order of a set's members), and a constant BY
    /// (no sorting: a set comes in its table's order) without STORE is compared sorted and
    /// gets no LIMIT or GET (docs/serve-differences.md, SORT).
    fn sort_cmd(&mut self) -> Vec<String> {
        let k = self.key();
        let readonly = self.chance(4);
        let mut c = vec![if readonly { "SORT_RO" } else { "SORT" }.into(), k];
        let store = !readonly && self.chance(3);
        let mut by = if self.chance(3) {
            Some(self.pick(&["k*", "nokey*", "k*->f0", "nosort", "nosort"]))
        } else {
            None
        };
        if self.erange && by.as_ref().is_some_and(|b| b.contains('*')) {
            by = None;
        }
        let constant_by = by.as_ref().is_some_and(|b| !b.contains('*'));
        let alpha = by.as_ref().is_none_or(|b| !b.contains('*')) && (self.erange || self.chance(3));
        if let Some(b) = by {
            c.extend(["BY".into(), b]);
        }
        if alpha {
            c.push(self.pick(&["ALPHA", "alpha"]));
        }
        if self.chance(3) {
            c.push(self.pick(&["DESC", "ASC"]));
        }
        let plain = constant_by && !store;
        if !plain {
            if self.chance(3) {
                c.extend(["LIMIT".into(), self.small(), self.small()]);
            }
            for _ in 0..self.rng.usize(..3) {
                c.extend([
                    "GET".into(),
                    self.pick(&["#", "k*", "nokey*", "k*->f1", "*"]),
                ]);
            }
        }
        if store {
            c.extend(["STORE".into(), self.key()]);
        }
        if self.chance(15) {
            c.push(self.pick(&["BOGUS", "LIMIT", "GET", "STORE"]));
        }
        c
    }

    /// OBJECT: ENCODING and REFCOUNT only of its own key (see OBJECT_KEY), whose writes keep
    /// its encoding a function of its content; FREQ, IDLETIME (masked) and HELP anywhere.
    fn object_cmd(&mut self) -> Vec<String> {
        const BIG: &str = "12345678901234567890123456789012345678901234567890123456789012345";
        let ke = OBJECT_KEY.to_string();
        match self.rng.u8(..12) {
            0 | 1 => {
                let v = if self.chance(5) {
                    BIG.into()
                } else {
                    self.value()
                };
                vec!["SET".into(), ke, v]
            }
            2 => vec!["DEL".into(), ke],
            3 => vec!["RPUSH".into(), ke, self.value()],
            4 => vec![
                "SADD".into(),
                ke,
                self.pick(&["1", "2", "-3", "10", "a", "01", ""]),
            ],
            5 => {
                // A big value only ever under its own field: a hash Redis converted to a
                // hash table stays one, so no field may shrink back.
                if self.chance(4) {
                    vec!["HSET".into(), ke, "big".into(), BIG.into()]
                } else {
                    vec!["HSET".into(), ke, self.pick(FIELDS), self.value()]
                }
            }
            6..=8 => vec![
                "OBJECT".into(),
                self.pick(&["ENCODING", "ENCODING", "REFCOUNT", "encoding"]),
                ke,
            ],
            9 => vec![
                "OBJECT".into(),
                self.pick(&["FREQ", "IDLETIME"]),
                if self.rng.bool() { ke } else { self.key() },
            ],
            // A key nothing writes (`nokey` may be: SET, SETBIT… take any key).
            10 => vec!["OBJECT".into(), "ENCODING".into(), "kmissing".into()],
            _ => {
                let sub = self.pick(&["HELP", "BOGUS", "ENCODING", "FREQ"]);
                // ENCODING of a key other commands write depends on its history in Redis
                // (docs/serve-differences.md): only of OBJECT_KEY.
                let key = if sub == "ENCODING" { ke } else { self.key() };
                let mut c = vec!["OBJECT".into(), sub];
                if self.rng.bool() {
                    c.push(key);
                }
                if self.chance(4) {
                    c.push("extra".into());
                }
                c
            }
        }
    }

    fn stream_cmd(&mut self) -> Vec<String> {
        let k = self.key();
        let g = self.pick(GROUPS);
        let c_name = self.pick(CONSUMERS);
        match self.rng.u8(..30) {
            0..=5 => {
                let mut c = vec!["XADD".into(), k];
                if self.chance(6) {
                    c.push("NOMKSTREAM".into());
                }
                if self.chance(5) {
                    let how = self.pick(&["MAXLEN", "MINID"]);
                    c.push(how.clone());
                    if self.chance(3) {
                        c.push(self.pick(&["=", "~"]));
                    }
                    c.push(if how == "MAXLEN" {
                        self.small()
                    } else {
                        self.pick(STREAM_IDS)
                    });
                }
                c.push(self.pick(STREAM_IDS));
                c.extend([self.pick(FIELDS), self.value()]);
                if self.chance(4) {
                    c.extend([self.pick(FIELDS), self.value()]);
                }
                if self.chance(12) {
                    c.pop();
                }
                c
            }
            6 => vec!["XLEN".into(), k],
            7..=9 => {
                let (cmd, a, b) = if self.rng.bool() {
                    ("XRANGE", self.pick(STREAM_BOUNDS), self.pick(STREAM_BOUNDS))
                } else {
                    (
                        "XREVRANGE",
                        self.pick(STREAM_BOUNDS),
                        self.pick(STREAM_BOUNDS),
                    )
                };
                let mut c = vec![cmd.into(), k, a, b];
                if self.rng.bool() {
                    c.extend(["COUNT".into(), self.small()]);
                }
                c
            }
            10 | 11 => {
                let mut c = vec!["XREAD".into()];
                if self.rng.bool() {
                    c.extend(["COUNT".into(), self.small()]);
                }
                c.push("STREAMS".into());
                c.push(k);
                if self.rng.bool() {
                    c.push(self.key());
                    c.push(self.pick(STREAM_IDS));
                }
                // No `+`: Redis 7.4's "last entry", which charla serves and 7.0 rejects
                // (docs/serve-differences.md).
                c.push(self.pick(&["0", "0-0", "1-1", "$", "bad", ">"]));
                c
            }
            12 | 13 => {
                let mut c = vec!["XGROUP".into(), "CREATE".into(), k, g];
                c.push(self.pick(&["0", "$", "1-1", "bad"]));
                if self.rng.bool() {
                    c.push("MKSTREAM".into());
                }
                if self.chance(5) {
                    c.extend(["ENTRIESREAD".into(), self.small()]);
                }
                c
            }
            14 => {
                let sub =
                    self.pick(&["SETID", "DESTROY", "CREATECONSUMER", "DELCONSUMER", "BOGUS"]);
                let mut c = vec!["XGROUP".into(), sub.clone(), k, g];
                match sub.as_str() {
                    "SETID" => c.push(self.pick(&["0", "$", "1-1", "bad"])),
                    "CREATECONSUMER" | "DELCONSUMER" => c.push(c_name),
                    _ => {}
                }
                c
            }
            15..=17 => {
                let mut c = vec!["XREADGROUP".into(), "GROUP".into(), g, c_name];
                if self.rng.bool() {
                    c.extend(["COUNT".into(), self.small()]);
                }
                if self.chance(4) {
                    c.push("NOACK".into());
                }
                c.extend(["STREAMS".into(), k]);
                c.push(self.pick(&[">", ">", "0", "1-1", "$", "bad"]));
                c
            }
            18 | 19 => vec![
                "XACK".into(),
                k,
                g,
                self.pick(STREAM_IDS),
                self.pick(STREAM_IDS),
            ],
            20 | 21 => {
                let mut c = vec!["XPENDING".into(), k, g];
                if self.rng.bool() {
                    if self.chance(4) {
                        c.extend(["IDLE".into(), "0".into()]);
                    }
                    c.extend([
                        self.pick(STREAM_BOUNDS),
                        self.pick(STREAM_BOUNDS),
                        self.small(),
                    ]);
                    if self.rng.bool() {
                        c.push(c_name);
                    }
                }
                c
            }
            22 => {
                let mut c = vec![
                    "XCLAIM".into(),
                    k,
                    g,
                    c_name,
                    self.pick(&["0", "100000", "-1", "x"]),
                    self.pick(STREAM_IDS),
                ];
                if self.rng.bool() {
                    c.push(self.pick(STREAM_IDS));
                }
                for _ in 0..self.rng.usize(..3) {
                    match self.rng.u8(..5) {
                        0 => c.push("JUSTID".into()),
                        1 => c.push("FORCE".into()),
                        2 => c.extend(["RETRYCOUNT".into(), self.small()]),
                        3 => c.extend(["IDLE".into(), self.pick(&["0", "5000"])]),
                        _ => c.push("LASTID".into()),
                    }
                }
                c
            }
            23 => {
                let mut c = vec![
                    "XAUTOCLAIM".into(),
                    k,
                    g,
                    c_name,
                    self.pick(&["0", "100000", "x"]),
                    self.pick(&["0", "0-0", "1-1", "bad", "-", "+"]),
                ];
                if self.rng.bool() {
                    c.extend(["COUNT".into(), self.small()]);
                }
                if self.rng.bool() {
                    c.push("JUSTID".into());
                }
                c
            }
            24 => {
                let mut c = vec!["XDEL".into(), k, self.pick(STREAM_IDS)];
                if self.rng.bool() {
                    c.push(self.pick(STREAM_IDS));
                }
                c
            }
            25 => {
                let how = self.pick(&["MAXLEN", "MINID", "BOGUS"]);
                let mut c = vec!["XTRIM".into(), k, how.clone()];
                if self.chance(3) {
                    c.push(self.pick(&["=", "~"]));
                }
                c.push(if how == "MINID" {
                    self.pick(STREAM_IDS)
                } else {
                    self.small()
                });
                c
            }
            26 => vec!["XSETID".into(), k, self.pick(STREAM_IDS)],
            27 => vec![
                "XINFO".into(),
                self.pick(&["GROUPS", "CONSUMERS", "STREAM", "BOGUS"]),
                k,
            ],
            28 => vec!["XINFO".into(), "CONSUMERS".into(), k, g],
            _ => vec![
                "XADD".into(),
                k,
                self.pick(STREAM_IDS),
                "f".into(),
                "v".into(),
            ],
        }
    }

    fn pubsub_cmd(&mut self) -> Vec<String> {
        match self.rng.u8(..5) {
            0 | 1 => vec!["PUBLISH".into(), self.pick(CHANNELS), self.value()],
            2 => vec![
                "PUBSUB".into(),
                "NUMSUB".into(),
                self.pick(CHANNELS),
                self.pick(CHANNELS),
            ],
            3 => vec!["PUBSUB".into(), "NUMPAT".into()],
            _ => {
                let mut c = vec!["PUBSUB".into(), "CHANNELS".into()];
                if self.rng.bool() {
                    c.push(self.pick(PATTERNS));
                }
                c
            }
        }
    }

    fn subscriber(&mut self) -> Vec<String> {
        let mut c = match self.rng.u8(..8) {
            0 | 1 => vec!["SUBSCRIBE".into()],
            2 => vec!["PSUBSCRIBE".into(), self.pick(PATTERNS)],
            3 | 4 => vec!["UNSUBSCRIBE".into()],
            5 => vec!["PUNSUBSCRIBE".into()],
            6 => vec!["GET".into(), self.key()],
            _ => return Vec::new(),
        };
        if c.len() == 1 {
            for _ in 0..self
                .rng
                .usize(if c[0] == "SUBSCRIBE" { 1..3 } else { 0..2 })
            {
                c.push(self.pick(CHANNELS));
            }
        }
        c
    }

    fn server_cmd(&mut self) -> Vec<String> {
        match self.rng.u8(..16) {
            0 => vec![
                "CLIENT".into(),
                "SETNAME".into(),
                self.pick(&["app", "a b", ""]),
            ],
            1 => vec!["CLIENT".into(), "GETNAME".into()],
            2 => vec!["CLIENT".into(), "ID".into()],
            3 => vec!["CLIENT".into(), self.pick(&["BOGUS", "SETNAME"])],
            4 => vec![
                "CONFIG".into(),
                "GET".into(),
                self.pick(&[
                    "maxmemory",
                    "maxmemory-policy",
                    "timeout",
                    "databases",
                    "appendonly",
                    "save",
                    "nosuch",
                ]),
            ],
            5 => vec!["CONFIG".into(), self.pick(&["SET", "BOGUS", "GET"])],
            // A name with no value (Redis's syntax error); not an unknown name:
            // docs/serve-differences.md (CONFIG SET).
            6 => vec![
                "CONFIG".into(),
                "SET".into(),
                "timeout".into(),
                "0".into(),
                "maxmemory".into(),
            ],
            7 => vec!["INFO".into(), self.pick(&["keyspace", "clients", "server"])],
            // Only an unknown name: the entries of served commands are simplified
            // (docs/serve-differences.md, COMMAND INFO).
            8 => vec![
                "COMMAND".into(),
                "INFO".into(),
                self.pick(&["nosuch", "NOSUCH"]),
            ],
            9 => {
                let mut c = vec!["COMMAND".into(), "GETKEYS".into()];
                c.extend(strs(self.pick_getkeys()));
                c
            }
            10 => vec!["DBSIZE".into()],
            11 => vec!["SELECT".into(), self.pick(&["0", "1", "16", "-1", "x"])],
            12 => vec![
                "SWAPDB".into(),
                self.pick(&["0", "1", "x"]),
                self.pick(&["0", "1", "99"]),
            ],
            13 => vec!["FLUSHDB".into()],
            14 => vec!["PING".into()],
            _ => vec!["ECHO".into(), self.value()],
        }
    }

    fn pick_getkeys(&mut self) -> &'static [&'static str] {
        const CASES: &[&[&str]] = &[
            &["SET", "a", "b"],
            &["MSET", "a", "1", "b", "2"],
            &["GET"],
            &["NOSUCH", "a"],
            &["LMOVE", "a", "b", "LEFT", "RIGHT"],
        ];
        CASES[self.rng.usize(..CASES.len())]
    }

    fn misc_cmd(&mut self) -> Vec<String> {
        match self.rng.u8(..6) {
            0 => {
                let mut c = vec![self.pick(UNKNOWN)];
                for _ in 0..self.rng.usize(..3) {
                    c.push(self.value());
                }
                c
            }
            1 => vec!["EXEC".into()],
            2 => vec!["DISCARD".into()],
            3 => vec!["UNWATCH".into()],
            4 => vec!["RESET".into()],
            _ => vec!["PING".into(), self.value()],
        }
    }

    /// MULTI … EXEC|DISCARD, sometimes after WATCH, sometimes with a queuing error.
    fn transaction(&mut self) -> Vec<Step> {
        let mut steps = Vec::new();
        if self.chance(3) {
            let watched = self.key();
            steps.push(Step::Cmd(vec!["WATCH".into(), watched.clone()]));
            // Between WATCH and EXEC: a write to the watched key (which aborts EXEC on both
            // servers) or a read. Never a write to another key: charla's WATCH aborts on any
            // write to the database (docs/serve-differences.md, WATCH).
            if self.rng.bool() {
                let v = self.value();
                let c = match self.rng.u8(..6) {
                    0 => vec!["SET".into(), watched, v],
                    1 => vec!["DEL".into(), watched],
                    2 => vec!["RPUSH".into(), watched, v],
                    3 => vec!["GET".into(), self.key()],
                    4 => vec!["EXISTS".into(), self.key()],
                    _ => vec!["TYPE".into(), watched],
                };
                steps.push(Step::Cmd(c));
            }
        }
        steps.push(Step::Cmd(vec!["MULTI".into()]));
        for _ in 0..1 + self.rng.usize(..5) {
            let c = match self.rng.u8(..20) {
                0 => vec!["NOSUCHCMD".into()],
                1 => vec!["GET".into()],
                2 => vec!["WATCH".into(), self.key()],
                3 => vec!["MULTI".into()],
                _ => self.command(true),
            };
            let name = c[0].to_ascii_uppercase();
            if name == "EXEC" || name == "DISCARD" {
                continue;
            }
            steps.push(Step::Cmd(c));
        }
        steps.push(Step::Cmd(vec![
            self.pick(&["EXEC", "EXEC", "EXEC", "DISCARD"])
        ]));
        steps
    }

    /// A blocking command for the second client and a waker for the main connection.
    fn block(&mut self) -> Step {
        let k = self.key();
        // Usually the waker serves the blocked key (1 s is then never reached); now and then
        // it does not, and the short timeout expires.
        let serves = !self.chance(6);
        let timeout = if serves { "1" } else { "0.02" };
        #[derive(PartialEq)]
        enum Waker {
            List,
            Stream,
            ZSet,
        }
        let (blocking, waker_kind) = match self.rng.u8(..8) {
            0 => (
                vec!["BLPOP".into(), k.clone(), self.key(), timeout.into()],
                Waker::List,
            ),
            1 => (vec!["BRPOP".into(), k.clone(), timeout.into()], Waker::List),
            2 => (
                vec![
                    "BLMOVE".into(),
                    k.clone(),
                    self.key(),
                    self.side(),
                    self.side(),
                    timeout.into(),
                ],
                Waker::List,
            ),
            3 => {
                let mut c = vec!["BLMPOP".into(), timeout.into(), "1".into(), k.clone()];
                c.push(self.side());
                if self.rng.bool() {
                    c.extend(["COUNT".into(), self.pick(&["1", "2", "5"])]);
                }
                (c, Waker::List)
            }
            4 => (
                vec![
                    "XREAD".into(),
                    "BLOCK".into(),
                    if serves { "1000" } else { "20" }.into(),
                    "STREAMS".into(),
                    k.clone(),
                    self.pick(&["$", "$", "0", "1-1"]),
                ],
                Waker::Stream,
            ),
            5 => (
                vec![
                    "XREADGROUP".into(),
                    "GROUP".into(),
                    self.pick(GROUPS),
                    self.pick(CONSUMERS),
                    "BLOCK".into(),
                    if serves { "1000" } else { "20" }.into(),
                    "STREAMS".into(),
                    k.clone(),
                    ">".into(),
                ],
                Waker::Stream,
            ),
            6 => (
                vec![
                    self.pick(&["BZPOPMIN", "BZPOPMAX"]),
                    k.clone(),
                    self.key(),
                    timeout.into(),
                ],
                Waker::ZSet,
            ),
            _ => {
                let mut c = vec!["BZMPOP".into(), timeout.into(), "1".into(), k.clone()];
                c.push(self.pick(&["MIN", "MAX"]));
                if self.rng.bool() {
                    c.extend(["COUNT".into(), self.pick(&["1", "2", "5"])]);
                }
                (c, Waker::ZSet)
            }
        };
        let target = if serves { k } else { self.key() };
        let waker = match waker_kind {
            // Above every id the generator uses but the largest: it is accepted.
            Waker::Stream => vec![
                "XADD".into(),
                target,
                "100-*".into(),
                self.pick(FIELDS),
                self.value(),
            ],
            Waker::List => vec![
                self.pick(&["LPUSH", "RPUSH"]),
                target,
                self.value(),
                self.value(),
            ],
            Waker::ZSet => vec![
                "ZADD".into(),
                target,
                self.pick(ZSCORES),
                self.pick(ZMEMBERS),
                self.pick(ZSCORES),
                self.pick(ZMEMBERS),
            ],
        };
        Step::Block {
            blocking,
            waker,
            short_timeout: !serves,
        }
    }
}

/// A parsed reply, kept exact: serialising an unmasked one gives back the bytes received.
#[derive(Clone, Debug)]
enum Reply {
    /// `+ - : _ , # (` and their text.
    Line(u8, String),
    /// `$ = !`, None for `$-1`.
    Bulk(u8, Option<String>),
    /// `* ~ > %` (a map's items are flattened), None for `*-1`.
    Agg(u8, Option<Vec<Reply>>),
    /// Replaced by the mask.
    Masked(&'static str),
    /// Not a RESP value (`<closed>` when the server hung up): compared as it came.
    Unparsed(String),
}

fn parse(b: &str) -> Reply {
    parse_bytes(b.as_bytes())
}

/// Bytes as comparable text: as they are when they are UTF-8, else marked and escaped (the
/// bit commands make binary values; they compare exactly either way).
fn text_of(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => format!("<binary>{}", b.escape_ascii()),
    }
}

/// Parse a reply as it came, byte for byte.
fn parse_bytes(b: &[u8]) -> Reply {
    if reply_len(b) != Some(b.len()) {
        return Reply::Unparsed(text_of(b));
    }
    fn one(b: &[u8]) -> (Reply, usize) {
        let end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a complete reply");
        let kind = b[0];
        let head = text_of(&b[1..end]);
        let after = end + 2;
        match kind {
            b'$' | b'=' | b'!' => {
                let n: i64 = head.parse().expect("bulk length");
                if n < 0 {
                    return (Reply::Bulk(kind, None), after);
                }
                let n = n as usize;
                (
                    Reply::Bulk(kind, Some(text_of(&b[after..after + n]))),
                    after + n + 2,
                )
            }
            b'*' | b'~' | b'>' | b'%' => {
                let n: i64 = head.parse().expect("aggregate length");
                if n < 0 {
                    return (Reply::Agg(kind, None), after);
                }
                let items = if kind == b'%' { n * 2 } else { n };
                let mut pos = after;
                let mut v = Vec::new();
                for _ in 0..items {
                    let (r, used) = one(&b[pos..]);
                    v.push(r);
                    pos += used;
                }
                (Reply::Agg(kind, Some(v)), pos)
            }
            _ => (Reply::Line(kind, head), after),
        }
    }
    one(b).0
}

impl Reply {
    fn write(&self, out: &mut String) {
        match self {
            Reply::Line(k, s) => {
                out.push(*k as char);
                out.push_str(s);
                out.push_str("\r\n");
            }
            Reply::Bulk(k, None) => {
                out.push(*k as char);
                out.push_str("-1\r\n");
            }
            Reply::Bulk(k, Some(s)) => {
                out.push_str(&format!("{}{}\r\n{s}\r\n", *k as char, s.len()));
            }
            Reply::Agg(k, None) => {
                out.push(*k as char);
                out.push_str("-1\r\n");
            }
            Reply::Agg(k, Some(v)) => {
                let n = if *k == b'%' { v.len() / 2 } else { v.len() };
                out.push_str(&format!("{}{n}\r\n", *k as char));
                for r in v {
                    r.write(out);
                }
            }
            Reply::Masked(m) => out.push_str(m),
            Reply::Unparsed(s) => out.push_str(s),
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    fn items(&mut self) -> Option<&mut Vec<Reply>> {
        match self {
            Reply::Agg(_, Some(v)) => Some(v),
            _ => None,
        }
    }

    fn sort_items(&mut self) {
        if let Some(v) = self.items() {
            v.sort_by_key(|r| r.text());
        }
    }

    /// Every bulk string inside (an aggregate's shape is kept) becomes `mask`.
    fn mask_leaves(&mut self, mask: &'static str) {
        match self {
            Reply::Bulk(_, Some(_)) => *self = Reply::Masked(mask),
            Reply::Agg(_, Some(v)) => v.iter_mut().for_each(|r| r.mask_leaves(mask)),
            _ => {}
        }
    }

    /// `<idle>` for the value after an `idle` name, anywhere inside.
    fn mask_named_idle(&mut self) {
        if let Some(v) = self.items() {
            for i in 0..v.len() {
                let is_idle =
                    matches!(&v[i], Reply::Bulk(_, Some(s)) | Reply::Line(b'+', s) if s == "idle");
                if is_idle && i + 1 < v.len() {
                    v[i + 1] = Reply::Masked("<idle>");
                }
                v[i].mask_named_idle();
            }
        }
    }
}

/// The mask (see the module doc), by command.
fn mask(args: &[String], reply: &mut Reply) {
    let name = args[0].to_ascii_uppercase();
    let sub = args
        .get(1)
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_default();
    match (name.as_str(), sub.as_str()) {
        ("TTL" | "PTTL" | "EXPIRETIME" | "PEXPIRETIME", _) => {
            if let Reply::Line(b':', n) = reply {
                if n.parse::<i64>().is_ok_and(|n| n > 0) {
                    *reply = Reply::Masked("<ttl>");
                }
            }
        }
        ("SMEMBERS" | "SINTER" | "SUNION" | "SDIFF" | "SPOP" | "SRANDMEMBER", _) => {
            reply.sort_items()
        }
        ("SSCAN", _) => {
            if let Some(v) = reply.items() {
                if let Some(members) = v.get_mut(1) {
                    members.sort_items();
                }
            }
        }
        ("KEYS", _) | ("PUBSUB", "CHANNELS") => reply.sort_items(),
        ("HRANDFIELD", _) => {
            // Random unless the count covers the hash (100 here) or is 0 or wrong.
            let count = args.get(2).and_then(|c| c.parse::<i64>().ok());
            if count.is_none_or(|n| n != 0 && n < 100) {
                reply.mask_leaves("<field>");
            }
        }
        ("OBJECT", "IDLETIME") => {
            if let Reply::Line(b':', n) = reply {
                if n.parse::<i64>().is_ok_and(|n| n >= 0) {
                    *reply = Reply::Masked("<idle>");
                }
            }
        }
        ("SORT" | "SORT_RO", _) => {
            // A constant BY sorts nothing: a set comes in its table's order.
            let by = args.iter().position(|a| a.eq_ignore_ascii_case("BY"));
            let constant = by
                .and_then(|i| args.get(i + 1))
                .is_some_and(|p| !p.contains('*'));
            let store = args.iter().any(|a| a.eq_ignore_ascii_case("STORE"));
            if constant && !store {
                reply.sort_items();
            }
        }
        ("SCAN", _) => {
            if let Some(v) = reply.items() {
                if let Some(keys) = v.get_mut(1) {
                    keys.sort_items();
                }
            }
        }
        ("RANDOMKEY", _) => {
            if let Reply::Bulk(_, Some(_)) = reply {
                *reply = Reply::Masked("<key>");
            }
        }
        ("CLIENT", "ID") => {
            if let Reply::Line(b':', _) = reply {
                *reply = Reply::Masked("<id>");
            }
        }
        ("HELLO", _) => {
            if let Reply::Agg(k, _) = reply {
                *reply = Reply::Masked(if *k == b'%' {
                    "<hello map>"
                } else {
                    "<hello array>"
                });
            }
        }
        ("INFO", _) => {
            if let Reply::Bulk(_, Some(_)) = reply {
                *reply = Reply::Masked("<info text>");
            }
        }
        ("XPENDING", _) if args.len() > 3 => {
            // Extended form: [id, consumer, idle, deliveries] per entry.
            if let Some(v) = reply.items() {
                for e in v {
                    if let Some(f) = e.items() {
                        if f.len() == 4 {
                            f[2] = Reply::Masked("<idle>");
                        }
                    }
                }
            }
        }
        ("XINFO", "CONSUMERS") => reply.mask_named_idle(),
        _ => {}
    }
}

/// UNSUBSCRIBE / PUNSUBSCRIBE without arguments confirm each channel in the order of the
/// server's own table: the names are sorted among those confirmations (each keeps its
/// position and its count of remaining subscriptions).
fn mask_unsubscribe_all(command: &str, replies: &mut [String]) {
    let kind = command.to_ascii_lowercase();
    if kind != "unsubscribe" && kind != "punsubscribe" {
        return;
    }
    let mut parsed: Vec<Reply> = replies.iter().map(|r| parse(r)).collect();
    let confirmation = |r: &mut Reply| matches!(r.items(), Some(v) if v.len() == 3 && matches!(&v[0], Reply::Bulk(_, Some(k)) if *k == kind));
    let at: Vec<usize> = (0..parsed.len())
        .filter(|&i| confirmation(&mut parsed[i]))
        .collect();
    let mut names: Vec<Reply> = at
        .iter()
        .filter_map(|&i| parsed[i].items().map(|v| v[1].clone()))
        .collect();
    names.sort_by_key(|r| r.text());
    for (&i, name) in at.iter().zip(names) {
        if let Some(v) = parsed[i].items() {
            v[1] = name;
        }
    }
    for (r, p) in replies.iter_mut().zip(parsed) {
        *r = p.text();
    }
}

/// A message matching several of the subscriber's patterns is delivered once per pattern, in
/// the order of the server's pattern table: such runs of `pmessage`s (same channel and
/// payload, one after the other) are sorted by pattern.
fn sort_pattern_deliveries(replies: &mut [String]) {
    let key = |r: &str| {
        let mut p = parse(r);
        match p.items() {
            Some(v)
                if v.len() == 4 && matches!(&v[0], Reply::Bulk(_, Some(k)) if k == "pmessage") =>
            {
                Some((v[2].text(), v[3].text()))
            }
            _ => None,
        }
    };
    let mut start = 0;
    while start < replies.len() {
        let Some(k) = key(&replies[start]) else {
            start += 1;
            continue;
        };
        let mut end = start + 1;
        while end < replies.len() && key(&replies[end]).as_ref() == Some(&k) {
            end += 1;
        }
        replies[start..end].sort();
        start = end;
    }
}

/// The four connections of one case to one server.
struct Conns {
    main: Raw,
    sub: Raw,
    second: Raw,
    ctl: Raw,
    markers: u64,
    /// Commands queued since MULTI (to mask each of EXEC's replies as its own command's).
    queued: Option<Vec<Vec<String>>>,
}

fn send(r: &mut Raw, args: &[String]) {
    r.send_cmd(args);
}

/// Send a command and read its reply as bytes (binary values must not be mangled).
fn cmd(r: &mut Raw, args: &[String]) -> Vec<u8> {
    r.send_cmd(args);
    r.reply_bytes()
}

impl Conns {
    fn open(port: u16, main_resp3: bool, sub_resp3: bool) -> Conns {
        let mut ctl = Raw::connect(port);
        assert_eq!(ctl.cmd(&["FLUSHALL"]), "+OK\r\n");
        let mut main = Raw::connect(port);
        let mut sub = Raw::connect(port);
        if main_resp3 {
            assert!(main.cmd(&["HELLO", "3"]).starts_with('%'));
        }
        if sub_resp3 {
            assert!(sub.cmd(&["HELLO", "3"]).starts_with('%'));
        }
        Conns {
            main,
            sub,
            second: Raw::connect(port),
            ctl,
            markers: 0,
            queued: None,
        }
    }

    /// Leave the servers as the next case expects them: a subscriber that only hung up could
    /// still be counted by PUBLISH and PUBSUB NUMSUB while its server handles the close, so it
    /// says RESET (which unsubscribes it from everything) and waits for the answer.
    fn close(mut self) {
        let reply = self.sub.cmd(&["RESET"]);
        assert!(reply.ends_with("+RESET\r\n"), "RESET answered {reply:?}");
    }

    /// The step's replies as one comparable (masked) text.
    fn run(&mut self, step: &Step) -> String {
        match step {
            Step::Cmd(args) => self.main_cmd(args),
            Step::Sub(args) => {
                if !args.is_empty() {
                    send(&mut self.sub, args);
                }
                self.markers += 1;
                let marker = format!("marker-{}", self.markers);
                send(&mut self.sub, &["PING".into(), marker.clone()]);
                let mut replies = Vec::new();
                loop {
                    let r = self.sub.reply();
                    let done = r.contains(&marker) || r.starts_with("<closed>");
                    replies.push(r);
                    if done {
                        break;
                    }
                }
                if args.len() == 1 {
                    mask_unsubscribe_all(&args[0], &mut replies);
                }
                sort_pattern_deliveries(&mut replies);
                replies.concat()
            }
            Step::Block {
                blocking,
                waker,
                short_timeout,
            } => {
                send(&mut self.second, blocking);
                let deadline = Instant::now() + Duration::from_secs(5);
                let early = loop {
                    if let Some(r) = self.second.try_reply(Duration::from_millis(1)) {
                        break Some(r);
                    }
                    if self.ctl.blocked_clients() == Some(1) {
                        break None;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{} neither answered nor blocked",
                        blocking.join(" ")
                    );
                };
                let how = match (early.is_some(), short_timeout) {
                    (_, true) => "answered or blocked",
                    (true, false) => "answered",
                    (false, false) => "blocked",
                };
                let woke = self.main_cmd(waker);
                let reply = match early {
                    Some(r) => r,
                    None => self.second.reply(),
                };
                format!("{how}; waker: {woke}; client 2: {}", reply)
            }
        }
    }

    fn main_cmd(&mut self, args: &[String]) -> String {
        let raw = cmd(&mut self.main, args);
        let mut reply = parse_bytes(&raw);
        let name = args[0].to_ascii_uppercase();
        match name.as_str() {
            "MULTI" if raw == b"+OK\r\n" => self.queued = Some(Vec::new()),
            "EXEC" => {
                if let (Some(q), Some(items)) = (self.queued.take(), reply.items()) {
                    for (a, r) in q.iter().zip(items.iter_mut()) {
                        mask(a, r);
                    }
                }
            }
            "DISCARD" | "RESET" => self.queued = None,
            _ => {
                if let Some(q) = self.queued.as_mut() {
                    if raw == b"+QUEUED\r\n" {
                        q.push(args.to_vec());
                    }
                } else {
                    mask(args, &mut reply);
                }
            }
        }
        reply.text()
    }
}

/// Knobs from the environment.
struct Plan {
    seeds: Box<dyn Iterator<Item = u64>>,
    max_cases: usize,
    budget: Duration,
    keep_going: bool,
}

fn env_num(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

fn plan() -> Plan {
    let keep_going = std::env::var("CHARLA_DIFF_KEEP_GOING").is_ok_and(|v| v == "1");
    if let Some(seed) = env_num("CHARLA_DIFF_SEED") {
        return Plan {
            seeds: Box::new(std::iter::once(seed)),
            max_cases: 1,
            budget: Duration::MAX,
            keep_going,
        };
    }
    let cases = env_num("CHARLA_DIFF_CASES");
    let seconds = env_num("CHARLA_DIFF_SECONDS");
    // Given one knob only, the other does not cut the run short.
    let (max_cases, budget) = match (cases, seconds) {
        (None, None) => (2_000, Duration::from_secs(20)),
        (Some(c), None) => (c as usize, Duration::MAX),
        (None, Some(s)) => (usize::MAX, Duration::from_secs(s)),
        (Some(c), Some(s)) => (c as usize, Duration::from_secs(s)),
    };
    Plan {
        seeds: Box::new(0..),
        max_cases,
        budget,
        keep_going,
    }
}

/// One case on both servers: None if every reply matched, else the report.
/// Steps and commands compared so far.
#[derive(Default)]
struct Counts {
    steps: usize,
    commands: usize,
}

fn run_case(seed: u64, redis: u16, charla: u16, compared: &mut Counts) -> Option<String> {
    let (main_resp3, sub_resp3, steps) = Gen {
        rng: fastrand::Rng::with_seed(seed),
        erange: false,
    }
    .case();
    let mut theirs = Conns::open(redis, main_resp3, sub_resp3);
    let mut ours = Conns::open(charla, main_resp3, sub_resp3);
    for (i, step) in steps.iter().enumerate() {
        let want = theirs.run(step);
        let got = ours.run(step);
        compared.steps += 1;
        compared.commands += step.commands();
        if want != got {
            let mut report = format!(
                "seed {seed}, step {i} differs (replay: CHARLA_DIFF_SEED={seed} cargo test -p charla-server --test differential -- --nocapture)\n\
                 main connection: {}, subscriber: {}\nsequence (after FLUSHALL):\n",
                if main_resp3 { "RESP3" } else { "RESP2" },
                if sub_resp3 { "RESP3" } else { "RESP2" },
            );
            for (j, s) in steps[..=i].iter().enumerate() {
                report.push_str(&format!("  {j:>3}  {}\n", s.describe()));
            }
            report.push_str(&format!(
                "redis-server: {}\ncharla serve: {}\n",
                want.escape_debug(),
                got.escape_debug()
            ));
            return Some(report);
        }
    }
    theirs.close();
    ours.close();
    None
}

#[test]
fn random_command_sequences_match_redis_server() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let ours = TestServer::start(ServerConfig::default());
    let plan = plan();
    let started = Instant::now();
    let (mut cases, mut compared) = (0usize, Counts::default());
    let mut failures = Vec::new();
    for seed in plan.seeds {
        if cases >= plan.max_cases || started.elapsed() >= plan.budget {
            break;
        }
        cases += 1;
        if let Some(report) = run_case(seed, redis.port(), ours.port, &mut compared) {
            eprintln!("{report}");
            failures.push(seed);
            if !plan.keep_going {
                break;
            }
        }
    }
    println!(
        "differential: {cases} cases, {} steps, {} commands compared with redis-server in {:.1} s",
        compared.steps,
        compared.commands,
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failing seeds: {failures:?} (reports above)",
        failures.len()
    );
    assert!(cases > 0, "no case ran");
}

/// The parser and serialiser must give back the exact bytes, or unmasked replies would be
/// compared after a lossy round trip.
#[test]
fn parsed_replies_serialise_to_the_same_bytes() {
    for raw in [
        "+OK\r\n",
        "-ERR x\r\n",
        ":-5\r\n",
        "$-1\r\n",
        "$0\r\n\r\n",
        "*-1\r\n",
        "*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
        "%1\r\n$1\r\nf\r\n_\r\n",
        ">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n",
        "=8\r\ntxt:abcd\r\n",
    ] {
        assert_eq!(reply_len(raw.as_bytes()), Some(raw.len()));
        assert_eq!(parse(raw).text(), raw);
    }
}
