//! OBJECT, the bit commands (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD[_RO]), HSCAN,
//! HINCRBYFLOAT, HRANDFIELD and SORT / SORT_RO against a real redis-server: the same script
//! on both, every reply compared byte for byte, in RESP2 and (after `HELLO 3`) RESP3. The
//! scripts stay away from the differences docs/serve-differences.md lists (encodings that
//! depend on a value's history, long-double arithmetic, random picks); those, the random
//! commands and the memory bounds are checked on charla alone below.
//!
//! A script line is split on spaces; `"…"` quotes an argument (spaces, or `""` for an empty
//! one) and `\xNN` inside quotes is that byte.

mod common;

use charla_server::ServerConfig;
use common::{Raw, TestServer};

/// Split a script line into arguments (see the module doc).
fn split(line: &str) -> Vec<Vec<u8>> {
    let mut args = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let mut arg = Vec::new();
        if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len() {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("hex");
                    arg.push(u8::from_str_radix(hex, 16).expect("hex byte"));
                    i += 4;
                } else {
                    arg.push(b[i]);
                    i += 1;
                }
            }
            i += 1;
        } else {
            while i < b.len() && b[i] != b' ' {
                arg.push(b[i]);
                i += 1;
            }
        }
        args.push(arg);
    }
    args
}

fn send(r: &mut Raw, args: &[Vec<u8>]) -> String {
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    r.send(&req);
    r.reply()
}

/// Each line of `script` with its reply (HELLO's server map, whose version differs, only by
/// its first byte).
fn run(port: u16, script: &[&str]) -> Vec<String> {
    let mut r = Raw::connect(port);
    script
        .iter()
        .map(|line| {
            let args = split(line);
            let mut reply = send(&mut r, &args);
            if args[0].eq_ignore_ascii_case(b"HELLO") {
                reply.truncate(1);
            }
            format!("{line} => {}", reply.escape_debug())
        })
        .collect()
}

fn assert_matches_redis(script: &[&str]) {
    let Some(redis) = charla_testkit::RedisServer::start() else {
        return;
    };
    let ours = TestServer::start(ServerConfig::default());
    let theirs = run(redis.port(), script);
    let mine = run(ours.port, script);
    common::assert_same_replies(&theirs, &mine);
}

/// The same script again after `HELLO 3`.
fn assert_matches_redis_resp2_and_3(script: &[&str]) {
    assert_matches_redis(script);
    let mut resp3 = vec!["HELLO 3"];
    resp3.extend_from_slice(script);
    assert_matches_redis(&resp3);
}

#[test]
fn object_matches_redis_server() {
    assert_matches_redis_resp2_and_3(&[
        "OBJECT HELP",
        "OBJECT help",
        "OBJECT HELP extra",
        "OBJECT",
        "OBJECT ENCODING",
        "OBJECT ENCODING k extra",
        "OBJECT FOO k",
        "OBJECT ENCODING nokey",
        "OBJECT REFCOUNT nokey",
        "OBJECT IDLETIME nokey",
        "OBJECT FREQ nokey",
        // Strings: int, embstr, raw, by content as SET leaves them.
        "SET k 1",
        "OBJECT ENCODING k",
        "OBJECT REFCOUNT k",
        "OBJECT IDLETIME k",
        "OBJECT FREQ k",
        "SET k 9999",
        "OBJECT REFCOUNT k",
        "SET k 10000",
        "OBJECT ENCODING k",
        "OBJECT REFCOUNT k",
        "SET k -1",
        "OBJECT REFCOUNT k",
        "SET k -0",
        "OBJECT ENCODING k",
        "INCR k",
        "SET k 01",
        "OBJECT ENCODING k",
        "SET k +1",
        "OBJECT ENCODING k",
        "SET k 9223372036854775807",
        "OBJECT ENCODING k",
        "SET k -9223372036854775808",
        "OBJECT ENCODING k",
        "SET k 9223372036854775808",
        "OBJECT ENCODING k",
        "SET k \"\"",
        "OBJECT ENCODING k",
        "SET k 12345678901234567890123456789012345678901234",
        "OBJECT ENCODING k",
        "SET k 123456789012345678901234567890123456789012345",
        "OBJECT ENCODING k",
        "INCR i",
        "OBJECT ENCODING i",
        "OBJECT REFCOUNT i",
        "APPEND a 5",
        "OBJECT ENCODING a",
        // Lists are quicklists in 7.0, whatever their size.
        "RPUSH l a",
        "OBJECT ENCODING l",
        "OBJECT REFCOUNT l",
        // Hashes: listpack while small, hashtable with a value over 64 bytes.
        "HSET h f v",
        "OBJECT ENCODING h",
        "HSET h2 f 1234567890123456789012345678901234567890123456789012345678901234",
        "OBJECT ENCODING h2",
        "HSET h3 f 12345678901234567890123456789012345678901234567890123456789012345",
        "OBJECT ENCODING h3",
        "HSET h4 12345678901234567890123456789012345678901234567890123456789012345 v",
        "OBJECT ENCODING h4",
        // Sets: intset while every member is an integer.
        "SADD s 1 2 -3",
        "OBJECT ENCODING s",
        "SADD s a",
        "OBJECT ENCODING s",
        "SADD s2 1 00",
        "OBJECT ENCODING s2",
        "SADD s3 9223372036854775807 -9223372036854775808",
        "OBJECT ENCODING s3",
        "XADD x 1-1 f v",
        "OBJECT ENCODING x",
        "OBJECT REFCOUNT x",
        "OBJECT FREQ x",
    ]);
}

/// OBJECT ENCODING of hashes and sets at Redis's size thresholds (512 fields / members).
#[test]
fn object_encoding_thresholds_match_redis_server() {
    let fields: Vec<String> = (0..512).map(|i| format!("f{i} {i}")).collect();
    let members: Vec<String> = (0..512).map(|i| i.to_string()).collect();
    let hset = format!("HSET h {}", fields.join(" "));
    let sadd = format!("SADD s {}", members.join(" "));
    assert_matches_redis(&[
        &hset,
        "OBJECT ENCODING h",
        "HSET h one-more 1",
        "OBJECT ENCODING h",
        &sadd,
        "OBJECT ENCODING s",
        "SADD s 512",
        "OBJECT ENCODING s",
    ]);
}

#[test]
fn bit_commands_match_redis_server() {
    assert_matches_redis_resp2_and_3(&[
        "SETBIT b 7 1",
        "SETBIT b 7 0",
        "SETBIT b 7 1",
        "SETBIT b 7 1",
        "SETBIT b 100 1",
        "GET b",
        "STRLEN b",
        "GETBIT b 7",
        "GETBIT b 6",
        "GETBIT b 100000",
        "GETBIT nokey 0",
        "SETBIT b -1 1",
        "SETBIT b 4294967295 2",
        "SETBIT b 4294967296 1",
        "SETBIT b x 1",
        "SETBIT b 1 x",
        "SETBIT b 1 -1",
        "SETBIT b 1 01",
        "SETBIT b 01 1",
        "SETBIT b #1 1",
        "GETBIT b -1",
        "GETBIT b 4294967296",
        "GETBIT b x",
        "SETBIT new 0 0",
        "GET new",
        "SET n 123",
        "GETBIT n 2",
        "BITCOUNT n",
        "SETBIT n 0 1",
        "GET n",
        "SET s foobar",
        "BITCOUNT s",
        "BITCOUNT s 0 0",
        "BITCOUNT s 1 1",
        "BITCOUNT s 1 1 BYTE",
        "BITCOUNT s 5 30 BIT",
        "BITCOUNT s 5 30 bit",
        "BITCOUNT s 7 7 BIT",
        "BITCOUNT s 9 12 BIT",
        "BITCOUNT s -1 -1 BIT",
        "BITCOUNT s -5 -1 BIT",
        "BITCOUNT s -1 -5",
        "BITCOUNT s -1 -5 BOGUS",
        "BITCOUNT s -5 -1 BOGUS",
        "BITCOUNT s 0",
        "BITCOUNT s 0 1 2",
        "BITCOUNT s 0 1 FOO",
        "BITCOUNT s x 1",
        "BITCOUNT s 0 x",
        "BITCOUNT s 0 x FOO",
        "BITCOUNT s 3 1",
        "BITCOUNT s -100 100",
        "BITCOUNT s -9223372036854775808 9223372036854775807",
        "BITCOUNT s -9223372036854775808 9223372036854775807 BIT",
        "BITCOUNT nokey",
        "BITCOUNT nokey 0 1",
        "BITCOUNT nokey 0",
        "BITCOUNT nokey x y",
        "BITCOUNT nokey 0 1 FOO",
        "BITCOUNT nokey 0 1 2 3",
        "SET p ab",
        "BITPOS p 1",
        "BITPOS p 0",
        "BITPOS p 1 1",
        "BITPOS p 1 1 1",
        "BITPOS p 1 1 1 BYTE",
        "BITPOS p 1 2 10 BIT",
        "BITPOS p 0 2 10 BIT",
        "BITPOS p 1 3 5 BIT",
        "BITPOS p 0 9 9 BIT",
        "BITPOS p 1 100",
        "BITPOS p 0 100",
        "BITPOS p 0 -1 -1 BIT",
        "BITPOS p 0 -1",
        "BITPOS p 2",
        "BITPOS p x",
        "BITPOS p 1 x",
        "BITPOS p 1 0 x",
        "BITPOS p 1 0 x FOO",
        "BITPOS p 1 x 0 FOO",
        "BITPOS p 1 0 1 FOO",
        "BITPOS p 1 0 1 BIT 2",
        "SET ff \"\\xff\\xff\"",
        "BITPOS ff 0",
        "BITPOS ff 0 0",
        "BITPOS ff 0 0 -1",
        "BITPOS ff 0 0 -1 BIT",
        "BITPOS ff 0 3 -1 BIT",
        "BITPOS ff 1 -9223372036854775808 9223372036854775807 BIT",
        "SET z \"\\x00\\x00\\x01\"",
        "BITPOS z 1",
        "BITPOS z 1 0 -1 BIT",
        "BITPOS z 0 16 23 BIT",
        "BITPOS z 1 23 23 BIT",
        "SET e \"\"",
        "BITPOS e 0",
        "BITPOS e 1",
        "BITCOUNT e 0 -1",
        "BITPOS nokey 1",
        "BITPOS nokey 0",
        "BITPOS nokey 2",
        "BITPOS nokey 1 0 1 FOO",
        "BITPOS nokey 0 x",
        "LPUSH l a",
        "BITPOS l 1",
        "BITPOS l 1 x",
        "BITPOS l x",
        "BITCOUNT l",
        "BITCOUNT l x 1",
        "GETBIT l 0",
        "SETBIT l 0 1",
        "SET a abc",
        "SET bb xyzzy",
        "BITOP AND d a bb",
        "GET d",
        "BITOP OR d a bb",
        "GET d",
        "BITOP XOR d a bb",
        "GET d",
        "BITOP NOT d a",
        "GET d",
        "BITOP NOT d a bb",
        "BITOP FOO d a",
        "BITOP and d a",
        "BITOP AND d a nokey",
        "GET d",
        "BITOP OR d l",
        "BITOP OR d nokey l",
        "BITOP AND d",
        "BITOP AND d nokey nokey2",
        "EXISTS d",
        "BITOP NOT d nokey",
        "BITOP NOT d",
        "SET d x EX 100",
        "BITOP OR d a",
        "TTL d",
        "BITOP XOR l a",
        "TYPE l",
    ]);
}

#[test]
fn bitfield_matches_redis_server() {
    assert_matches_redis_resp2_and_3(&[
        "BITFIELD bf",
        "BITFIELD bf GET u8 0",
        "EXISTS bf",
        "BITFIELD bf SET u8 0 255 GET u8 0",
        "BITFIELD bf SET i8 0 -1 GET i8 0 GET u4 4 GET i4 4",
        "BITFIELD bf INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1",
        "BITFIELD bf INCRBY u2 100 1 INCRBY u2 100 1 INCRBY u2 100 1 INCRBY u2 100 1",
        "BITFIELD bf OVERFLOW SAT INCRBY u2 100 7 INCRBY i8 0 200 INCRBY i8 0 -300",
        "BITFIELD bf OVERFLOW FAIL INCRBY u2 100 7 INCRBY i8 0 1 INCRBY i8 0 127",
        "BITFIELD bf OVERFLOW WRAP INCRBY i8 0 127 INCRBY u8 0 1000 SET u8 0 300",
        "BITFIELD bf SET i64 0 -9223372036854775808 GET i64 0 INCRBY i64 0 -1",
        "BITFIELD bf OVERFLOW SAT INCRBY i64 0 -1 INCRBY i64 0 9223372036854775807",
        "BITFIELD bf SET u63 0 9223372036854775807 GET u63 0 INCRBY u63 0 1",
        "BITFIELD bf SET i5 #3 9 GET i5 #3 GET u5 15",
        "BITFIELD bf GET u64 0",
        "BITFIELD bf GET i65 0",
        "BITFIELD bf GET i0 0",
        "BITFIELD bf GET x8 0",
        "BITFIELD bf GET u8 -1",
        "BITFIELD bf GET u8 x",
        "BITFIELD bf GET u8 #x",
        "BITFIELD bf GET u8 4294967296",
        "BITFIELD bf SET u8 0 x",
        "BITFIELD bf SET u8 0",
        "BITFIELD bf OVERFLOW",
        "BITFIELD bf OVERFLOW BAD GET u8 0",
        "BITFIELD bf FOO",
        "BITFIELD bf GET u8 0 FOO",
        "BITFIELD bf OVERFLOW FAIL SET i8 0 200",
        "GET bf",
        "BITFIELD_RO bf GET u8 0 GET i16 4",
        "BITFIELD_RO bf SET u8 0 1",
        "BITFIELD_RO bf",
        "BITFIELD_RO nokey GET u8 0",
        "BITFIELD new OVERFLOW FAIL INCRBY u2 0 9",
        "GET new",
        "LPUSH l a",
        "BITFIELD l GET u8 0",
        "BITFIELD l SET u8 0 1",
        "BITFIELD_RO l GET u8 0",
        "BITFIELD l GET u8 x",
    ]);
}

/// SETBIT's offset is limited by proto-max-bulk-len as in Redis (1 MiB is Redis's minimum).
#[test]
fn setbit_offsets_are_bounded_by_proto_max_bulk_len_as_in_redis() {
    assert_matches_redis(&[
        "CONFIG SET proto-max-bulk-len 1048576",
        "SETBIT k 8388608 1",
        "GETBIT k 8388608",
        "BITFIELD k SET u8 8388608 1",
        "BITFIELD k SET u8 #1048576 1",
        "SETBIT k 8388607 1",
        "STRLEN k",
        "BITCOUNT k",
        "BITPOS k 1",
        "BITFIELD k INCRBY u8 8388600 1",
        "BITOP NOT k2 k",
        "BITCOUNT k2",
    ]);
}

#[test]
fn hscan_hincrbyfloat_and_deterministic_hrandfield_match_redis_server() {
    assert_matches_redis_resp2_and_3(&[
        "HSET h b 1 a 2 c 3",
        "HSCAN h 0",
        "HSCAN h 0 MATCH a*",
        "HSCAN h 0 MATCH [bc]",
        "HSCAN h 0 COUNT 1",
        "HSCAN h 7 COUNT 100 MATCH *",
        "HSCAN h 0 COUNT 0",
        "HSCAN h 0 COUNT x",
        "HSCAN h x",
        "HSCAN h 18446744073709551615",
        "HSCAN h 18446744073709551616",
        "HSCAN h 0 NOVALUES",
        "HSCAN h 0 MATCH",
        "HSCAN h 0 FOO bar",
        "HSCAN h 0 TYPE string",
        "HSCAN nokey 0",
        "HSCAN nokey 0 FOO",
        "HSCAN nokey x",
        "HSCAN",
        "LPUSH l a",
        "HSCAN l 0",
        "HSCAN l 0 FOO",
        "HINCRBYFLOAT h a 1.5",
        "HINCRBYFLOAT h new 2.5",
        "HINCRBYFLOAT h new -2.5",
        "HINCRBYFLOAT h new 1e3",
        "HINCRBYFLOAT h new 0x10",
        "HINCRBYFLOAT h new -0.25",
        "HINCRBYFLOAT h new x",
        "HINCRBYFLOAT h new inf",
        "HINCRBYFLOAT h new -infinity",
        "HINCRBYFLOAT h new nan",
        "HINCRBYFLOAT h new \"\"",
        "HINCRBYFLOAT h new \" 1\"",
        "HINCRBYFLOAT h new \"1 \"",
        "HSET h s abc sp \" 1\" e \"\" hx 0x10",
        "HINCRBYFLOAT h s 1",
        "HINCRBYFLOAT h sp 1",
        "HINCRBYFLOAT h e 1",
        "HINCRBYFLOAT h hx 1",
        "HINCRBYFLOAT l a 1",
        "HINCRBYFLOAT l a x",
        "HINCRBYFLOAT nokey f 3.0",
        "HGETALL nokey",
        "HINCRBYFLOAT nokey2 f x",
        "EXISTS nokey2",
        "HINCRBYFLOAT h a",
        "HGETALL h",
        "HKEYS h",
        "HVALS h",
        "HRANDFIELD nokey",
        "HRANDFIELD nokey 2",
        "HRANDFIELD nokey 2 WITHVALUES",
        "HRANDFIELD nokey x",
        "HRANDFIELD nokey 1 FOO",
        "HRANDFIELD h 0",
        "HRANDFIELD h 0 WITHVALUES",
        "HRANDFIELD h x",
        "HRANDFIELD h 1 FOO",
        "HRANDFIELD h 1 WITHVALUES FOO",
        "HRANDFIELD h 100",
        "HRANDFIELD h 100 WITHVALUES",
        "HRANDFIELD h 9 withvalues",
        "HRANDFIELD h -9223372036854775808",
        "HRANDFIELD h -9223372036854775807 WITHVALUES",
        "HRANDFIELD h -4611686018427387904 WITHVALUES",
        "HRANDFIELD h 4611686018427387904 WITHVALUES",
        "HRANDFIELD h 4611686018427387903 WITHVALUES",
        "HRANDFIELD l",
        "HRANDFIELD l 1",
        "HRANDFIELD l x",
        "HSET one f v",
        "HRANDFIELD one",
        "HRANDFIELD one -3 WITHVALUES",
        "HRANDFIELD one 1",
    ]);
}

/// Hashes keep Redis's listpack order: insertion, an update in place, a deletion closing the
/// gap; COPY, RENAME and HINCRBY keep it.
#[test]
fn small_hashes_list_fields_in_redis_order() {
    assert_matches_redis_resp2_and_3(&[
        "HSET h b 1 a 2 c 3 d 4",
        "HDEL h a",
        "HSET h a 5 b 6",
        "HSETNX h e 7",
        "HINCRBY h z 1",
        "HINCRBYFLOAT h c 0.5",
        "HDEL h d",
        "HMSET h y 1 d 2",
        "HGETALL h",
        "HKEYS h",
        "HVALS h",
        "HSCAN h 0",
        "HRANDFIELD h 100 WITHVALUES",
        "COPY h h2",
        "HGETALL h2",
        "RENAME h h3",
        "HKEYS h3",
        "HDEL h3 b a c e z y",
        "HGETALL h3",
    ]);
}

#[test]
fn sort_matches_redis_server() {
    assert_matches_redis_resp2_and_3(&[
        "RPUSH l 3 1 2 10",
        "SORT l",
        "ZADD zs 3 c 1 10 2 2",
        "SORT zs",
        "SORT zs DESC",
        "SORT zs BY nosort",
        "SORT zs BY nosort DESC",
        "SORT zs BY nosort LIMIT 1 2",
        "SORT zs BY nosort DESC LIMIT 0 2",
        "SORT zs ALPHA BY nosort STORE zsd",
        "LRANGE zsd 0 -1",
        "ZADD zs 5 x",
        "SORT zs",
        "SORT l DESC",
        "SORT l ALPHA",
        "SORT l ALPHA DESC",
        "SORT l LIMIT 1 2",
        "SORT l LIMIT -1 2",
        "SORT l LIMIT 1 -1",
        "SORT l LIMIT 10 2",
        "SORT l LIMIT 0 0",
        "SORT l LIMIT 9223372036854775807 9223372036854775807",
        "SORT l LIMIT -9223372036854775808 -9223372036854775808",
        "SORT l LIMIT 0 1 LIMIT 1 1",
        "SORT l DESC ASC",
        "SORT l LIMIT x 2",
        "SORT l LIMIT 1 x",
        "SORT l LIMIT 1",
        "SORT l FOO",
        "SORT l GET",
        "SORT l BY",
        "SORT l STORE",
        "SORT",
        "SORT_RO",
        "RPUSH m b a 1",
        "SORT m",
        "SORT m ALPHA",
        "SORT m ALPHA LIMIT 1 1",
        "SORT nokey",
        "SORT nokey STORE d",
        "SORT nokey FOO",
        "SORT nokey LIMIT x 1",
        "EXISTS d",
        "SORT l STORE d",
        "LRANGE d 0 -1",
        "SORT l STORE d LIMIT 0 0",
        "EXISTS d",
        "MSET w_3 30 w_1 10 w_2 20 w_10 5",
        "SORT l BY w_*",
        "SORT l BY w_* DESC",
        "SORT l BY w_* LIMIT 1 2",
        "SORT l BY w_* GET #",
        "SORT l BY w_* GET # GET w_*",
        "SORT l BY nosort",
        "SORT l BY nosort DESC",
        "SORT l BY nosort LIMIT 1 2",
        "SORT l BY nosort DESC LIMIT 1 2",
        "SORT l BY nosort LIMIT 5 2",
        "SORT l BY nosort GET # BY w_*",
        "SORT l GET nokey_*",
        "SORT l GET nokey",
        "SORT l GET w_*",
        "SORT l BY nosuch_*",
        "SORT l BY nosuch",
        "SORT l ALPHA BY w_*",
        "SORT l ALPHA BY w_* DESC",
        "HSET h_3 f 1",
        "HSET h_1 f 3",
        "HSET h_2 f 2",
        "SORT l BY h_*->f",
        "SORT l BY h_*->f GET h_*->f",
        "SORT l BY h_*->",
        "SORT l BY h_*->g",
        "SORT l GET h_*->f GET #",
        "SORT l GET w_*->f",
        "SORT l GET h_*",
        "SET x 1",
        "SORT l BY x",
        "SORT l GET x*->",
        "SORT l GET # GET nokey_* STORE d",
        "LRANGE d 0 -1",
        "SADD s 5 3 4",
        "SORT s",
        "SORT s DESC",
        "SORT s BY nosort",
        "SORT s BY nosort DESC",
        "SORT s BY nosort LIMIT 1 1",
        "SORT s BY nosort DESC STORE d",
        "LRANGE d 0 -1",
        "SADD s2 b a c",
        "SORT s2",
        "SORT s2 ALPHA",
        "SORT s2 ALPHA DESC LIMIT 0 2",
        "SORT s2 BY nosort STORE d",
        "LRANGE d 0 -1",
        "SET str x",
        "SORT str",
        "HSET hh a 1",
        "SORT hh",
        "SORT l STORE str",
        "TYPE str",
        "SORT_RO l",
        "SORT_RO l STORE d",
        "SORT_RO l BY w_* GET #",
        "SORT_RO l ALPHA DESC LIMIT 1 2",
        "RPUSH f 1.5 -inf 2e1 inf 0 0x10 \" 5\" -0 \"\"",
        "SORT f",
        "SORT f DESC",
        "RPUSH bad 1 x",
        "SORT bad",
        "SORT bad BY w_*",
        "SORT bad BY nosort",
        "SORT bad ALPHA",
        "RPUSH sp \"5 \"",
        "SORT sp",
        "RPUSH nan nan",
        "SORT nan",
        "RPUSH u \"\\x00b\" \"\\x00a\" b",
        "SORT u ALPHA",
        "SORT u ALPHA STORE d",
        "LRANGE d 0 -1",
        "RPUSH ties a b c",
        "SORT ties BY nosuch_* ALPHA",
        "SORT ties BY nosuch_* ALPHA DESC",
        "SORT ties BY nosuch_*",
        "EXPIRE l 100",
        "SORT l STORE l",
        "TTL l",
        "LRANGE l 0 -1",
    ]);
}

/// HRANDFIELD picks at random: over many calls every field turns up; distinct picks are
/// distinct and in the hash's order; negative counts repeat.
#[test]
fn hrandfield_is_random() {
    let s = TestServer::start(ServerConfig::default());
    let mut r = Raw::connect(s.port);
    assert_eq!(
        r.cmd(&["HSET", "h", "a", "1", "b", "2", "c", "3", "d", "4"]),
        ":4\r\n"
    );
    let picks: std::collections::HashSet<String> =
        (0..200).map(|_| r.cmd(&["HRANDFIELD", "h"])).collect();
    assert_eq!(picks.len(), 4, "{picks:?}");
    let order = ["a", "b", "c", "d"];
    let mut pairs = std::collections::HashSet::new();
    for _ in 0..200 {
        let reply = r.cmd(&["HRANDFIELD", "h", "2"]);
        let fields: Vec<&str> = reply.split("\r\n").skip(2).step_by(2).take(2).collect();
        assert_eq!(fields.len(), 2, "{reply}");
        let (i, j) = (
            order.iter().position(|f| *f == fields[0]).expect("a field"),
            order.iter().position(|f| *f == fields[1]).expect("a field"),
        );
        assert!(i < j, "distinct, in the hash's order: {reply}");
        pairs.insert((i, j));
    }
    assert_eq!(pairs.len(), 6, "every pair turns up: {pairs:?}");
    let with_repeats = r.cmd(&["HRANDFIELD", "h", "-10", "WITHVALUES"]);
    assert!(with_repeats.starts_with("*20\r\n"), "{with_repeats}");
    r.cmd(&["HELLO", "3"]);
    let nested = r.cmd(&["HRANDFIELD", "h", "-3", "WITHVALUES"]);
    assert!(nested.starts_with("*3\r\n*2\r\n"), "{nested}");
}

/// What Redis would build whatever its size is refused when it must exceed
/// a bound: HRANDFIELD with a huge negative count (64 MiB), SORT … GET repeating a big value
/// (proto-max-bulk-len).
#[test]
fn replies_that_could_only_be_huge_are_refused() {
    let s = TestServer::start(ServerConfig::default());
    let mut r = Raw::connect(s.port);
    assert_eq!(r.cmd(&["HSET", "h", "f", "v"]), ":1\r\n");
    let e = r.cmd(&["HRANDFIELD", "h", "-9223372036854775807"]);
    assert_eq!(
        e,
        "-ERR value is out of range, the reply would exceed 64 MiB\r\n"
    );
    // Picks that fit are served.
    assert!(r
        .cmd(&["HRANDFIELD", "h", "-1000"])
        .starts_with("*1000\r\n"));
    assert_eq!(
        r.cmd(&["CONFIG", "SET", "proto-max-bulk-len", "1048576"]),
        "+OK\r\n"
    );
    let big = "x".repeat(400_000);
    assert_eq!(r.cmd(&["SET", "big_1", &big]), "+OK\r\n");
    assert_eq!(r.cmd(&["RPUSH", "l", "1", "1", "1"]), ":3\r\n");
    // 1.2 MB from a few bytes of list: over the limit, and so is its STORE.
    let e = r.cmd(&["SORT", "l", "GET", "big_*"]);
    assert!(e.starts_with("-ERR SORT result is longer"), "{e}");
    let e = r.cmd(&["SORT", "l", "GET", "big_*", "STORE", "d"]);
    assert!(e.starts_with("-ERR SORT result is longer"), "{e}");
    assert_eq!(r.cmd(&["EXISTS", "d"]), ":0\r\n");
    // Twice fits.
    assert!(r
        .cmd(&["SORT", "l", "GET", "big_*", "LIMIT", "0", "2"])
        .starts_with("*2\r\n$400000\r\n"));
    // SETBIT cannot grow a string past the limit either.
    assert_eq!(
        r.cmd(&["SETBIT", "b", "8388608", "1"]),
        "-ERR bit offset is not an integer or out of range\r\n"
    );
}

/// SORT … STORE serves a client blocked on the destination, as a push would.
#[test]
fn sort_store_wakes_a_client_blocked_on_the_destination() {
    let s = TestServer::start(ServerConfig::default());
    let mut r = Raw::connect(s.port);
    let mut blocked = Raw::connect(s.port);
    assert_eq!(r.cmd(&["RPUSH", "src", "2", "1"]), ":2\r\n");
    blocked.send_cmd(&["BLPOP", "dst", "5"]);
    s.wait_blocked(1);
    assert_eq!(r.cmd(&["SORT", "src", "STORE", "dst"]), ":2\r\n");
    assert_eq!(blocked.reply(), "*2\r\n$3\r\ndst\r\n$1\r\n1\r\n");
    assert_eq!(r.cmd(&["LRANGE", "dst", "0", "-1"]), "*1\r\n$1\r\n2\r\n");
}
