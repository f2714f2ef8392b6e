//! Keyspace notifications against a real redis-server: the same script on both with the same
//! `notify-keyspace-events`, while a subscriber on `__key*__:*` records every event; the two
//! recordings must be the same, message for message and in order. The script touches every
//! command whose events the table names or that names its own, with the edge cases that decide
//! which events go out (a change that empties a key, a key created, an expiry in the past, a
//! write that changes nothing).

mod common;

use std::time::Duration;

use charla_server::ServerConfig;
use common::{Raw, TestServer};

/// One command per line, arguments split on spaces; `SLEEP <ms>` pauses the script;
/// `EXPIRE-UNREAD <key>` sets the new key `<key>` with a 1 ms time to live and waits, without
/// touching it, until the background expirer has removed it (DBSIZE, which touches no key, back
/// where it was).
const SCRIPT: &[&str] = &[
    // strings
    "SET a 1",
    "SET a 2 EX 100",
    "SETEX b 10 x",
    "PSETEX b2 10000 x",
    "SETNX a 3",
    "SETNX c0 3",
    "MSET m1 1 m2 2",
    "MSETNX m1 1 m3 3",
    "GETSET a 5",
    "INCR c",
    "DECRBY c 2",
    "INCRBYFLOAT c 1.5",
    "APPEND a x",
    "SETRANGE a 5 yy",
    "SETRANGE a 0 ",
    "GET nokey",
    "GETDEL m2",
    "GETDEL nokey",
    "SET k v",
    "GETEX k EX 100",
    "GETEX k PERSIST",
    "GETEX k",
    "GETEX k PX 0",
    "GETEX k PXAT 1",
    // keys
    "DEL a b zz",
    "UNLINK b2",
    "SET r 1",
    "RENAME r r2",
    "RENAME r2 r2",
    "RENAMENX r2 m1",
    "EXPIRE r2 100",
    "EXPIRE r2 100 NX",
    "PERSIST r2",
    "PERSIST r2",
    "PEXPIRE r2 -1",
    "EXPIRE nokey 10",
    "SET p 1",
    "EXPIREAT p 1",
    "SET cp v",
    "COPY cp cp2",
    "COPY cp cp2",
    "COPY cp cp2 REPLACE",
    "MOVE cp2 1",
    "MOVE cp2 1",
    // lists
    "RPUSH l 1 2 3",
    "LPUSH l 0",
    "LPUSHX nolist 1",
    "RPUSHX l 4",
    "LPOP l",
    "RPOP l 2",
    "LPOP l 0",
    "LSET l 0 z",
    "LINSERT l BEFORE z y",
    "LINSERT l BEFORE nope y",
    "LREM l 0 nope",
    "LREM l 1 y",
    "LTRIM l 0 -1",
    "RPUSH l a b",
    "LMOVE l l2 LEFT RIGHT",
    "RPOPLPUSH l l2",
    "LMOVE l2 l2 LEFT LEFT",
    "LMPOP 2 nolist l2 RIGHT COUNT 5",
    "RPUSH q a",
    "BLPOP q 1",
    "RPUSH q a b",
    "BRPOP q 1",
    "BLMOVE q q3 LEFT LEFT 1",
    "BLMPOP 1 1 q3 LEFT",
    // hashes
    "HSET h f 1 g 2",
    "HSET h f 1",
    "HSETNX h f 9",
    "HSETNX h n 9",
    "HINCRBY h f 5",
    "HDEL h nope",
    "HDEL h f g n",
    // sets
    "SADD s a b c",
    "SADD s a",
    "SREM s nope",
    "SREM s a",
    "SPOP s 0",
    "SMOVE s s2 b",
    "SMOVE s s2 nope",
    "SMOVE s s2 c",
    "SADD t1 a b",
    "SADD t2 b c",
    "SINTERSTORE d t1 t2",
    "SUNIONSTORE d t1 t2",
    "SDIFFSTORE d t1 t2",
    "SINTERSTORE d t1 nokey",
    "SINTERSTORE d t1 nokey",
    "SPOP t2 2",
    // streams
    "XADD st 1-1 a 1",
    "XADD st 2-1 b 2",
    "XADD st MAXLEN 1 3-1 c 3",
    "XADD nost NOMKSTREAM 1-1 a 1",
    "XGROUP CREATE st g 0",
    "XGROUP CREATECONSUMER st g c0",
    "XGROUP CREATECONSUMER st g c0",
    "XREADGROUP GROUP g c1 STREAMS st >",
    "XREADGROUP GROUP g c1 STREAMS st >",
    "XREADGROUP GROUP g c4 STREAMS st 0",
    "XCLAIM st g c2 0 3-1",
    "XAUTOCLAIM st g c3 0 0",
    "XACK st g 3-1",
    "XGROUP SETID st g 0",
    "XGROUP DELCONSUMER st g c1",
    "XGROUP DELCONSUMER st g nope",
    "XADD st 4-1 d 4",
    "XDEL st 9-9",
    "XDEL st 4-1",
    "XTRIM st MAXLEN 5",
    "XTRIM st MAXLEN 0",
    "XSETID st 9-9",
    "XGROUP DESTROY st g",
    "XGROUP DESTROY st g",
    "XGROUP CREATE st2 g $ MKSTREAM",
    // sorted sets
    "ZADD z 1 a 2 b",
    "ZADD z XX 5 nope",
    "ZADD z INCR 1 a",
    "ZINCRBY z 1 b",
    "ZREM z nope",
    "ZREM z a",
    "ZPOPMIN z",
    "ZPOPMIN z",
    "ZADD z 1 a 2 b 3 c",
    "ZPOPMAX z 2",
    "ZMPOP 1 z MIN",
    "ZADD z2 1 x",
    "BZPOPMAX z2 1",
    "ZADD z3 1 a 2 b",
    "ZUNIONSTORE d2 1 z3",
    "ZINTERSTORE d2 2 z3 nokey",
    "ZINTERSTORE d2 2 z3 nokey",
    "ZRANGESTORE d3 z3 0 -1",
    "ZREMRANGEBYSCORE z3 1 1",
    "ZREMRANGEBYRANK z3 0 0",
    "ZADD z4 1 a 1 b",
    "ZREMRANGEBYLEX z4 [a [a",
    "ZREMRANGEBYLEX z4 [x [y",
    // bitmaps, SORT, hash floats
    "SETBIT bm 7 1",
    "SETBIT bm 7 1",
    "BITFIELD bm SET u8 8 255",
    "BITFIELD bm GET u8 0",
    "BITOP AND bd bm bm",
    "BITOP AND bd nokey nokey2",
    "HSET hf f 1.5",
    "HINCRBYFLOAT hf f 1",
    "RPUSH sl 3 1 2",
    "SORT sl",
    "SORT sl STORE sd",
    "SORT nolist STORE sd",
    // transactions, wrong types, expiry
    "MULTI",
    "SET tx 1",
    "INCR tx",
    "LPUSH tx x",
    "EXEC",
    "SET e v PX 1",
    "SLEEP 30",
    "GET e",
    "EXPIRE-UNREAD e2",
    // database-wide writes notify nothing
    "SWAPDB 0 1",
    "SWAPDB 0 1",
    "FLUSHDB",
    "FLUSHALL",
];

/// The events the subscriber saw while `script` ran on `port` with `flags`, one line each.
fn record(port: u16, flags: &str) -> Vec<String> {
    let mut c = Raw::connect(port);
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "notify-keyspace-events", flags]),
        "+OK\r\n"
    );
    let mut sub = Raw::connect(port);
    sub.send_cmd(&["PSUBSCRIBE", "__key*__:*", "end-of-script"]);
    sub.reply();
    sub.reply();
    for line in SCRIPT {
        let args: Vec<&str> = line.split(' ').collect();
        if args[0] == "SLEEP" {
            let ms = args[1].parse().unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
            continue;
        }
        if args[0] == "EXPIRE-UNREAD" {
            let before = c.cmd(&["DBSIZE"]);
            assert_eq!(c.cmd(&["SET", args[1], "v", "PX", "1"]), "+OK\r\n");
            common::wait_until(
                &format!("the background expiry of {}", args[1]),
                Duration::from_secs(20),
                || c.cmd(&["DBSIZE"]) == before,
            );
            continue;
        }
        c.cmd(&args);
    }
    c.cmd(&["PUBLISH", "end-of-script", "."]);
    let mut events = Vec::new();
    loop {
        let m = sub
            .try_reply(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no end of script; events so far: {events:#?}"));
        if m.contains("end-of-script") {
            break;
        }
        events.push(m.escape_debug().to_string());
    }
    c.cmd(&["CONFIG", "SET", "notify-keyspace-events", ""]);
    events
}

fn compare(flags: &str) {
    let Some(redis) = charla_testkit::RedisServer::start() else {
        return;
    };
    let ours = TestServer::start(ServerConfig::default());
    let theirs = record(redis.port(), flags);
    let mine = record(ours.port, flags);
    eprintln!(
        "{flags}: {} events from redis-server, {} from charla serve",
        theirs.len(),
        mine.len()
    );
    if theirs != mine {
        let width = theirs.len().max(mine.len());
        let mut table = String::new();
        for i in 0..width {
            let t = theirs.get(i).map_or("-", String::as_str);
            let m = mine.get(i).map_or("-", String::as_str);
            let mark = if t == m { " " } else { "≠" };
            table.push_str(&format!("{mark} {i:3} redis: {t}\n        charla: {m}\n"));
        }
        panic!("keyspace events differ with {flags:?}:\n{table}");
    }
    assert!(!theirs.is_empty() || !flags.contains('A'));
}

#[test]
fn every_class_in_both_channels() {
    compare("KEA");
}

#[test]
fn new_keys_and_expired_only() {
    compare("Enx");
}

#[test]
fn some_classes_in_the_keyspace_channel() {
    compare("Kl$tz");
}

#[test]
fn config_get_answers_what_redis_answers() {
    let Some(redis) = charla_testkit::RedisServer::start() else {
        return;
    };
    let ours = TestServer::start(ServerConfig::default());
    for flags in ["KEA", "KEAn", "Elg", "Kn$", "", "Kxq", "KEm"] {
        let mut r = Raw::connect(redis.port());
        let mut m = Raw::connect(ours.port);
        let set = ["CONFIG", "SET", "notify-keyspace-events", flags];
        let get = ["CONFIG", "GET", "notify-keyspace-events"];
        let (rs, ms) = (r.cmd(&set), m.cmd(&set));
        if flags.contains('m') && !flags.contains('q') {
            // Key-miss events are refused, not accepted and never sent.
            assert_eq!(rs, "+OK\r\n");
            assert!(ms.starts_with("-ERR CONFIG SET failed"), "{ms}");
            continue;
        }
        assert_eq!(rs, ms, "CONFIG SET {flags}");
        assert_eq!(r.cmd(&get), m.cmd(&get), "after CONFIG SET {flags}");
    }
}
