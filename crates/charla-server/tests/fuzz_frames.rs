//! Stable-toolchain fuzzing of the frame parser and the commands behind it (cargo-fuzz in
//! `fuzz/` is the coverage-guided version). Random bytes, and valid pipelines of real commands
//! with random arguments and random mutations, go through the same path a connection takes;
//! any panic fails the test, and so does any reply that is not well-formed RESP2/RESP3 (every
//! reply is parsed by the small independent parser below). `CHARLA_FUZZ_CASES` sets how many
//! cases (default 3000).

use charla_server::frame::{scan, Admission, ArgSpans, Limits, Parser, Scan};
use charla_server::fuzzing::run_bytes_with;

const NAMES: &[&str] = &[
    "PING",
    "ECHO",
    "SET",
    "GET",
    "DEL",
    "EXISTS",
    "INCR",
    "INCRBY",
    "DECRBY",
    "APPEND",
    "GETRANGE",
    "MSET",
    "MGET",
    "SETEX",
    "EXPIRE",
    "PEXPIRE",
    "TTL",
    "PTTL",
    "PERSIST",
    "RENAME",
    "TYPE",
    "KEYS",
    "SCAN",
    "HSET",
    "HGET",
    "HDEL",
    "HINCRBY",
    "HGETALL",
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "LRANGE",
    "LINDEX",
    "LSET",
    "LREM",
    "LTRIM",
    "LPOS",
    "LMOVE",
    "BLMOVE",
    "BLPOP",
    "BRPOP",
    "LMPOP",
    "BLMPOP",
    "XADD",
    "XLEN",
    "XRANGE",
    "XREVRANGE",
    "XREAD",
    "XREADGROUP",
    "XGROUP",
    "XACK",
    "XPENDING",
    "XCLAIM",
    "XAUTOCLAIM",
    "XTRIM",
    "XDEL",
    "XSETID",
    "XINFO",
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "PSUBSCRIBE",
    "PUBLISH",
    "PUBSUB",
    "HELLO",
    "CLIENT",
    "CONFIG",
    "INFO",
    "COMMAND",
    "SELECT",
    "FLUSHDB",
    "DBSIZE",
    "RESET",
    "INCRBYFLOAT",
    "GETDEL",
    "SETNX",
];

const WORDS: &[&str] = &[
    "k",
    "l",
    "s",
    "h",
    "g",
    "c",
    "0",
    "1",
    "-1",
    "2",
    "100",
    "-100",
    "9223372036854775807",
    "-9223372036854775808",
    "1.5",
    "inf",
    "*",
    "$",
    ">",
    "-",
    "+",
    "(1-1",
    "1-1",
    "0-0",
    "1-*",
    "18446744073709551615-18446744073709551615",
    "LEFT",
    "RIGHT",
    "COUNT",
    "BLOCK",
    "STREAMS",
    "GROUP",
    "MKSTREAM",
    "CREATE",
    "DESTROY",
    "SETID",
    "CREATECONSUMER",
    "DELCONSUMER",
    "MAXLEN",
    "MINID",
    "~",
    "=",
    "LIMIT",
    "NX",
    "XX",
    "GT",
    "LT",
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "KEEPTTL",
    "GET",
    "MATCH",
    "TYPE",
    "IDLE",
    "TIME",
    "RETRYCOUNT",
    "FORCE",
    "JUSTID",
    "LASTID",
    "NOACK",
    "RANK",
    "STREAM",
    "GROUPS",
    "CONSUMERS",
    "3",
    "2",
    "AUTH",
    "SETNAME",
    "SETINFO",
    "LIB-NAME",
    "*a*[b-",
    "",
    "\u{0}",
    "é",
];

fn cases() -> usize {
    std::env::var("CHARLA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn random_command(rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
    let mut args = vec![NAMES[rng.usize(..NAMES.len())].as_bytes().to_vec()];
    for _ in 0..rng.usize(0..9) {
        args.push(WORDS[rng.usize(..WORDS.len())].as_bytes().to_vec());
    }
    args
}

fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        b.extend_from_slice(a);
        b.extend_from_slice(b"\r\n");
    }
    b
}

fn mutate(rng: &mut fastrand::Rng, data: &mut Vec<u8>) {
    for _ in 0..rng.usize(1..4) {
        if data.is_empty() {
            data.push(rng.u8(..));
            continue;
        }
        let i = rng.usize(..data.len());
        match rng.u8(..4) {
            0 => data[i] = rng.u8(..),
            1 => {
                data.remove(i);
            }
            2 => data.insert(
                i,
                *b"*$:\r\n-0123456789".get(rng.usize(..16)).unwrap_or(&b'x'),
            ),
            _ => data.truncate(i),
        }
    }
}

#[test]
fn random_and_mutated_pipelines_never_panic() {
    let seed = std::env::var("CHARLA_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (CHARLA_FUZZ_SEED to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut ran = 0;
    let mut checked = 0;
    for case in 0..cases() {
        let mut data = Vec::new();
        match case % 4 {
            0 => {
                data = (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect();
            }
            1 => {
                for _ in 0..rng.usize(1..20) {
                    data.extend(encode(&random_command(&mut rng)));
                }
            }
            2 => {
                for _ in 0..rng.usize(1..20) {
                    data.extend(encode(&random_command(&mut rng)));
                }
                mutate(&mut rng, &mut data);
            }
            _ => {
                for _ in 0..rng.usize(1..20) {
                    let c: Vec<String> = random_command(&mut rng)
                        .into_iter()
                        .map(|a| String::from_utf8_lossy(&a).into_owned())
                        .collect();
                    data.extend_from_slice(c.join(" ").as_bytes());
                    data.extend_from_slice(b"\r\n");
                }
                mutate(&mut rng, &mut data);
            }
        }
        if std::env::var("CHARLA_FUZZ_TRACE").is_ok() {
            eprintln!("case {case}: {:?}", String::from_utf8_lossy(&data));
        }
        let mut replies = 0;
        ran += run_bytes_with(&data, |name, reply| {
            if let Err(e) = resp::check_all(reply) {
                panic!(
                    "case {case} (seed {seed}): the reply to {:?} is not valid RESP: {e}\n\
                     reply: {:?}\ninput: {:?}",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(reply),
                    String::from_utf8_lossy(&data)
                )
            }
            replies += 1;
        });
        checked += replies;
    }
    eprintln!("{} cases, {ran} commands executed", cases());
    assert!(
        checked > cases(),
        "only {checked} replies checked in {} cases",
        cases()
    );
}

/// A RESP2/RESP3 reply parser written from the protocol spec, independent of the server's
/// writer, that accepts a buffer only when it is a sequence of complete, well-formed values.
mod resp {
    /// Check that `buf` is one or more complete values and nothing else.
    pub fn check_all(buf: &[u8]) -> Result<(), String> {
        if buf.is_empty() {
            return Err("no reply at all".into());
        }
        let mut i = 0;
        while i < buf.len() {
            i = value(buf, i, 0)?;
        }
        Ok(())
    }

    /// The line starting at `i` (without its CRLF) and the index after the CRLF.
    fn line(buf: &[u8], i: usize) -> Result<(&[u8], usize), String> {
        let rest = buf.get(i..).ok_or("truncated")?;
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| format!("no CRLF after byte {i}"))?;
        let l = &rest[..end];
        if l.contains(&b'\r') || l.contains(&b'\n') {
            return Err(format!("a bare CR or LF in a line at byte {i}"));
        }
        Ok((l, i + end + 2))
    }

    fn int(l: &[u8]) -> Result<i64, String> {
        std::str::from_utf8(l)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("not an integer: {:?}", String::from_utf8_lossy(l)))
    }

    /// Parse one value at `i`; returns the index after it.
    fn value(buf: &[u8], i: usize, depth: usize) -> Result<usize, String> {
        if depth > 64 {
            return Err("nested too deep".into());
        }
        let kind = *buf.get(i).ok_or("truncated: a value is missing")?;
        let (l, next) = line(buf, i + 1)?;
        match kind {
            b'+' | b'-' => Ok(next),
            b':' => int(l).map(|_| next),
            b'_' if l.is_empty() => Ok(next),
            b'#' if l == b"t" || l == b"f" => Ok(next),
            b',' => {
                let t = std::str::from_utf8(l).map_err(|e| e.to_string())?;
                let ok = matches!(t, "inf" | "-inf" | "nan") || t.parse::<f64>().is_ok();
                if ok {
                    Ok(next)
                } else {
                    Err(format!("bad double {t:?}"))
                }
            }
            b'(' => {
                let digits = l.strip_prefix(b"-").unwrap_or(l);
                if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
                    Ok(next)
                } else {
                    Err(format!("bad big number {:?}", String::from_utf8_lossy(l)))
                }
            }
            b'$' | b'!' | b'=' => {
                let n = int(l)?;
                if n == -1 && kind == b'$' {
                    return Ok(next);
                }
                let n = usize::try_from(n).map_err(|_| format!("bad length {n}"))?;
                let body = buf
                    .get(next..next + n)
                    .ok_or_else(|| format!("bulk of {n} bytes truncated at byte {next}"))?;
                if kind == b'=' && (n < 4 || body[3] != b':') {
                    return Err("verbatim string without a 3-letter format".into());
                }
                if buf.get(next + n..next + n + 2) != Some(b"\r\n") {
                    return Err(format!("bulk of {n} bytes not followed by CRLF"));
                }
                Ok(next + n + 2)
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = int(l)?;
                if n == -1 && kind == b'*' {
                    return Ok(next);
                }
                let n = usize::try_from(n).map_err(|_| format!("bad count {n}"))?;
                let items = if matches!(kind, b'%' | b'|') {
                    2 * n
                } else {
                    n
                };
                let mut j = next;
                for _ in 0..items {
                    j = value(buf, j, depth + 1)?;
                }
                // An attribute precedes the value it describes.
                if kind == b'|' {
                    j = value(buf, j, depth + 1)?;
                }
                Ok(j)
            }
            other => Err(format!("unknown type byte {:?} at {i}", other as char)),
        }
    }

    #[test]
    fn the_checker_rejects_what_it_must() {
        assert!(
            check_all(b"+OK\r\n:1\r\n$3\r\nabc\r\n*2\r\n$-1\r\n_\r\n%1\r\n+a\r\n#t\r\n").is_ok()
        );
        for bad in [
            &b""[..],
            b"+OK",
            b"+OK\n",
            b":x\r\n",
            b"$3\r\nab\r\n",
            b"$3\r\nabcd\r\n",
            b"*2\r\n:1\r\n",
            b"?\r\n",
            b"#x\r\n",
            b"+a\rb\r\n",
        ] {
            assert!(
                check_all(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

#[test]
fn every_prefix_of_a_valid_pipeline_is_incomplete_or_a_command() {
    let mut rng = fastrand::Rng::with_seed(7);
    let limits = Limits::default();
    let mut spans = ArgSpans::default();
    for _ in 0..200 {
        let data = encode(&random_command(&mut rng));
        for cut in 0..data.len() {
            let r = scan(&data[..cut], &limits, &mut spans);
            assert!(
                matches!(r, Ok(charla_server::frame::Scan::Incomplete)),
                "prefix {cut} of {data:?}: {r:?}"
            );
        }
        assert!(matches!(
            scan(&data, &limits, &mut spans),
            Ok(charla_server::frame::Scan::Multibulk { .. })
        ));
    }
}

/// The arguments of every request in `data`, scanned from scratch one request at a time.
fn parse_whole(data: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let limits = Limits::default();
    let mut spans = ArgSpans::default();
    let mut pos = 0;
    let mut all = Vec::new();
    while pos < data.len() {
        match scan(&data[pos..], &limits, &mut spans).unwrap() {
            Scan::Multibulk { consumed } => {
                let base = pos;
                all.push(
                    spans
                        .spans
                        .iter()
                        .map(|&(s, e)| data[base + s..base + e].to_vec())
                        .collect(),
                );
                pos += consumed;
            }
            Scan::Inline { consumed } => {
                all.push(spans.owned.clone());
                pos += consumed;
            }
            Scan::Empty { consumed } => pos += consumed,
            Scan::Incomplete => panic!("whole pipeline incomplete at {pos}"),
        }
    }
    all
}

#[test]
fn a_pipeline_arriving_in_random_pieces_parses_as_a_whole_and_is_walked_once() {
    let mut rng = fastrand::Rng::with_seed(12);
    let limits = Limits::default();
    for _ in 0..300 {
        let mut data = Vec::new();
        for _ in 0..rng.usize(1..20) {
            match rng.u8(0..6) {
                0 => data.extend_from_slice(b"PING\r\n"),
                1 => data.extend_from_slice(b"ECHO \"a b\" 'c'\r\n"),
                2 => data.extend_from_slice(b"*0\r\n\r\n"),
                _ => data.extend_from_slice(&encode(&random_command(&mut rng))),
            }
        }
        let expected = parse_whole(&data);
        // What a connection does: append what arrived, take every complete request.
        let mut parser = Parser::default();
        let mut spans = ArgSpans::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        let mut fed = 0;
        while fed < data.len() {
            let n = rng.usize(1..=64).min(data.len() - fed);
            buf.extend_from_slice(&data[fed..fed + n]);
            fed += n;
            loop {
                match parser
                    .parse(&buf, &limits, &Admission::TRUSTED, &mut spans)
                    .unwrap()
                {
                    Scan::Incomplete => break,
                    Scan::Multibulk { consumed } => {
                        got.push(
                            spans
                                .spans
                                .iter()
                                .map(|&(s, e)| buf[s..e].to_vec())
                                .collect(),
                        );
                        buf.drain(..consumed);
                    }
                    Scan::Inline { consumed } => {
                        got.push(spans.owned.clone());
                        buf.drain(..consumed);
                    }
                    Scan::Empty { consumed } => {
                        buf.drain(..consumed);
                    }
                }
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(&data));
        // Each byte walked over once, however the pipeline was cut.
        assert_eq!(parser.scanned, data.len() as u64);
    }
}
