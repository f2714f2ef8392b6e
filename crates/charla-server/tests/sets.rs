//! Sets against a real redis-server: the same script on both, replies compared byte for byte,
//! except that the members of replies Redis gives in no set order (SMEMBERS, SINTER, SUNION,
//! SDIFF, SSCAN) are sorted on both sides first.

mod common;

use charla_server::ServerConfig;
use common::{Raw, TestServer};

const SCRIPT: &[&str] = &[
    "SADD s a b c",
    "SADD s a d",
    "SCARD s",
    "SCARD nokey",
    "SISMEMBER s a",
    "SISMEMBER s z",
    "SMISMEMBER s a z b",
    "SMEMBERS s",
    "SMEMBERS nokey",
    "SET str x",
    "SADD str a",
    "SMEMBERS str",
    "SREM s a z",
    "SREM s b c d",
    "EXISTS s",
    "SADD s1 a b c d",
    "SADD s2 c d e",
    "SADD s3 d e f",
    "SINTER s1 s2",
    "SINTER s1 s2 s3",
    "SINTER s1 nokey",
    "SUNION s1 s2 s3",
    "SDIFF s1 s2",
    "SDIFF s1 s2 s3",
    "SDIFF nokey s1",
    "SINTER s1 str",
    "SINTERSTORE d s1 s2",
    "SMEMBERS d",
    "SUNIONSTORE d s1 s3",
    "SCARD d",
    "SDIFFSTORE d s1 s1",
    "EXISTS d",
    "SINTERSTORE str s1 s2",
    "TYPE str",
    "SINTERCARD 2 s1 s2",
    "SINTERCARD 2 s1 s2 LIMIT 1",
    "SINTERCARD 0 s1",
    "SINTERCARD 3 s1 s2",
    "SINTERCARD 2 s1 s2 LIMIT -1",
    "SINTERCARD 2 s1 s2 FOO 1",
    "SMOVE s1 s2 a",
    "SMOVE s1 s2 a",
    "SMOVE s1 s1 b",
    "SMOVE s1 nokey2 b",
    "SMEMBERS nokey2",
    "SMOVE s1 str c",
    "SPOP nokey",
    "SPOP nokey 2",
    "SPOP s3 -1",
    "SPOP s3 x",
    "SPOP s3 0",
    "SPOP s3 1 2",
    "SRANDMEMBER nokey",
    "SRANDMEMBER nokey 3",
    "SRANDMEMBER s3 0",
    "SRANDMEMBER s3 x",
    "SRANDMEMBER s3 -9223372036854775808",
    "SSCAN s3 0",
    "SSCAN s3 0 MATCH e*",
    "SSCAN s3 x",
    "SSCAN s3 0 COUNT 0",
    "SSCAN nokey 0",
    "SPOP s3 10",
    "EXISTS s3",
    "TYPE s1",
];

/// Commands whose reply lists members in no set order.
const UNORDERED: &[&str] = &["SMEMBERS", "SINTER", "SUNION", "SDIFF", "SSCAN", "SPOP"];

/// The last array of bulk strings in `reply`, its members sorted.
fn sort_last_array(reply: &str) -> String {
    let tokens: Vec<&str> = reply.split("\r\n").collect();
    let Some(at) = tokens.iter().rposition(|t| t.starts_with('*')) else {
        return reply.to_owned();
    };
    let mut pairs: Vec<(&str, &str)> = tokens[at + 1..]
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0], c[1]))
        .collect();
    pairs.sort_by(|a, b| a.1.cmp(b.1));
    let mut out: Vec<&str> = tokens[..=at].to_vec();
    for (len, member) in pairs {
        out.push(len);
        out.push(member);
    }
    out.push("");
    out.join("\r\n")
}

/// The members of set replies, sorted.
fn normalize(args: &[&str], reply: String) -> String {
    if UNORDERED.contains(&args[0]) && reply.starts_with('*') {
        sort_last_array(&reply)
    } else {
        reply
    }
}

#[test]
fn set_replies_match_redis_server() {
    common::assert_script_matches_redis(SCRIPT, normalize);
}

/// SPOP and SRANDMEMBER pick at random: over many calls every member turns up.
#[test]
fn spop_and_srandmember_are_random() {
    let s = TestServer::start(ServerConfig::default());
    let mut r = Raw::connect(s.port);
    assert_eq!(r.cmd(&["SADD", "s", "a", "b", "c", "d"]), ":4\r\n");
    let picks: std::collections::HashSet<String> =
        (0..200).map(|_| r.cmd(&["SRANDMEMBER", "s"])).collect();
    assert_eq!(picks.len(), 4, "{picks:?}");
    let with_repeats = r.cmd(&["SRANDMEMBER", "s", "-10"]);
    assert!(with_repeats.starts_with("*10\r\n"), "{with_repeats}");
    let mut popped: Vec<String> = (0..4).map(|_| r.cmd(&["SPOP", "s"])).collect();
    popped.sort();
    assert_eq!(
        popped,
        ["$1\r\na\r\n", "$1\r\nb\r\n", "$1\r\nc\r\n", "$1\r\nd\r\n"]
    );
    assert_eq!(r.cmd(&["EXISTS", "s"]), ":0\r\n");
}

/// SRANDMEMBER with a huge negative count asks for that many picks with repeats: Redis builds
/// the reply until memory runs out; charla serve refuses what would exceed 64 MiB (and still
/// answers a large one it can build).
#[test]
fn srandmember_with_a_huge_negative_count_is_refused_not_built() {
    let s = TestServer::start(ServerConfig::default());
    let mut r = Raw::connect(s.port);
    r.cmd(&["SADD", "s", "a", "b"]);
    let refused = r.cmd(&["SRANDMEMBER", "s", "-9223372036854775807"]);
    assert_eq!(
        refused,
        "-ERR value is out of range, the reply would exceed 64 MiB\r\n"
    );
    let big = r.cmd(&["SRANDMEMBER", "s", "-100000"]);
    assert!(big.starts_with("*100000\r\n"), "{}", &big[..20]);
    assert_eq!(r.cmd(&["PING"]), "+PONG\r\n");
}
