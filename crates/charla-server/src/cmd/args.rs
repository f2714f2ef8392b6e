//! Arguments as Redis reads them: integers and floats with Redis's own rules, keywords
//! compared case-insensitively, ranges normalised, and the error texts commands answer with.
//! Nothing here knows about clients or the keyspace.

use bytes::Bytes;

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const SYNTAX: &str = "ERR syntax error";
pub const NOT_INT: &str = "ERR value is not an integer or out of range";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
pub const TIMEOUT_ERR: &str = "ERR timeout is not a float or out of range";
pub const NOAUTH: &str = "NOAUTH Authentication required.";

/// The most a random-pick reply with repeats (SRANDMEMBER, ZRANDMEMBER, HRANDFIELD with a
/// negative count) may take: Redis builds whatever is asked until memory runs out (a test
/// redis-server reached 23 GB on `ZRANDMEMBER z -4611686018427387903 WITHSCORES`); charla
/// serve refuses beyond this, so no client can make it allocate without bound.
pub const MAX_RANDOM_REPLY: u64 = 64 << 20;
pub const RANDOM_REPLY_TOO_BIG: &str = "ERR value is out of range, the reply would exceed 64 MiB";

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
pub fn is(arg: &[u8], kw: &str) -> bool {
    arg.eq_ignore_ascii_case(kw.as_bytes())
}

/// Copy an argument before storing it: arguments are views into the read buffer, and a
/// stored view would pin the whole buffer in memory.
#[inline]
pub fn own(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
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
