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
    // "-0" is not an integer to Redis either (its first digit after a sign must be 1-9).
    if d.is_empty() || (d.len() > 1 && d[0] == b'0') || (neg && d == b"0") {
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

/// C's `strtod` as glibc does it, for the commands that read numbers with it (SORT's scores,
/// HINCRBYFLOAT through `strtold`): leading white space, a sign, a decimal or hexadecimal
/// (`0x1.8p3`) number, `inf` / `infinity` / `nan` in any case. Returns the value, how many
/// bytes were used (0: no number, value 0) and whether it was out of range (ERANGE: an
/// overflow, or an underflow to zero or to a subnormal).
pub fn c_strtod(s: &[u8]) -> (f64, usize, bool) {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let sign = if neg { -1.0 } else { 1.0 };
    let rest = &s[i..];
    let starts = |w: &[u8]| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w);
    if starts(b"infinity") {
        return (sign * f64::INFINITY, i + 8, false);
    }
    if starts(b"inf") {
        return (sign * f64::INFINITY, i + 3, false);
    }
    if starts(b"nan") {
        let mut end = i + 3;
        // nan(n-char-sequence)
        if s.get(end) == Some(&b'(') {
            let mut j = end + 1;
            while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == b'_') {
                j += 1;
            }
            if s.get(j) == Some(&b')') {
                end = j + 1;
            }
        }
        return (f64::NAN, end, false);
    }
    if starts(b"0x") && rest.len() > 2 {
        if let Some((v, used, erange)) = hex_float(&rest[2..]) {
            return (sign * v, i + 2 + used, erange);
        }
    }
    // Decimal: digits, an optional fraction, an optional exponent (used only when it has
    // digits).
    let mut j = i;
    let digits = |j: &mut usize| {
        let from = *j;
        while *j < s.len() && s[*j].is_ascii_digit() {
            *j += 1;
        }
        *j - from
    };
    let mut n = digits(&mut j);
    if s.get(j) == Some(&b'.') {
        j += 1;
        n += digits(&mut j);
    }
    if n == 0 {
        return (0.0, 0, false);
    }
    let mantissa_end = j;
    if matches!(s.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(s.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if digits(&mut k) > 0 {
            j = k;
        }
    }
    let text = std::str::from_utf8(&s[i..j]).unwrap_or("0");
    let v: f64 = text.parse().unwrap_or(0.0);
    let nonzero = s[i..mantissa_end].iter().any(|c| (b'1'..=b'9').contains(c));
    let erange = v.is_infinite() || (nonzero && (v == 0.0 || v.is_subnormal()));
    (sign * v, j, erange)
}

/// The part of a hexadecimal float after `0x`: hex digits with an optional `.` fraction, an
/// optional binary exponent `p[+-]digits`. None when there is no hex digit.
fn hex_float(s: &[u8]) -> Option<(f64, usize, bool)> {
    let mut j = 0;
    let (mut mant, mut exp, mut any, mut lost) = (0u64, 0i64, false, false);
    let mut frac = false;
    while j < s.len() {
        let c = s[j];
        if c == b'.' && !frac {
            frac = true;
            j += 1;
            continue;
        }
        let Some(d) = (c as char).to_digit(16) else {
            break;
        };
        any = true;
        if mant >> 58 == 0 {
            mant = mant * 16 + u64::from(d);
            if frac {
                exp -= 4;
            }
        } else {
            // Beyond 60 bits of mantissa: only the exponent moves.
            lost |= d != 0;
            if !frac {
                exp += 4;
            }
        }
        j += 1;
    }
    if !any {
        return None;
    }
    if matches!(s.get(j), Some(b'p' | b'P')) {
        let mut k = j + 1;
        let eneg = match s.get(k) {
            Some(b'-') => {
                k += 1;
                true
            }
            Some(b'+') => {
                k += 1;
                false
            }
            _ => false,
        };
        let from = k;
        let mut e: i64 = 0;
        while k < s.len() && s[k].is_ascii_digit() {
            e = e.saturating_mul(10).saturating_add(i64::from(s[k] - b'0'));
            k += 1;
        }
        if k > from {
            exp = exp.saturating_add(if eneg { -e } else { e });
            j = k;
        }
    }
    let v = (mant as f64) * 2f64.powi(exp.clamp(-2000, 2000) as i32);
    let erange = v.is_infinite() || (mant != 0 && (v == 0.0 || (v.is_subnormal() && lost)));
    Some((v, j, erange))
}
