//! The RESP wire format, sans-io: a request parser that works on whatever bytes have arrived
//! (returning [`Scan::Incomplete`] until a whole command is there), and a reply writer that
//! appends RESP2 or RESP3 straight into the connection's output buffer.
//!
//! Requests come in two shapes, as in Redis: multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what
//! every client library sends) and inline (`PING\r\n`, what telnet and `redis-benchmark`'s
//! PING_INLINE send). Replies are written directly rather than built as a tree so the hot path
//! allocates nothing per command.

use bytes::{BufMut, BytesMut};

/// Bounds on what one request may claim, so a hostile peer cannot make us allocate without limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bulk_len: usize,
    pub max_multibulk_len: usize,
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 64 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// A request the peer got wrong. The text is what Redis replies (after `-ERR `), and the
/// connection is closed after sending it, as Redis does: the stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub &'static str);

/// Result of scanning the start of a buffer for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Not a whole request yet: read more bytes and scan again from the same start.
    Incomplete,
    /// A request of `consumed` bytes whose arguments are `spans` (start, end) into the scanned
    /// buffer: every multibulk, and inline lines without quotes.
    Multibulk { consumed: usize },
    /// An inline request with quotes, of `consumed` bytes; its arguments were unquoted into
    /// `owned`.
    Inline { consumed: usize },
    /// An empty line or an empty multibulk (`*0`): consumed, nothing to run.
    Empty { consumed: usize },
}

/// Where the arguments of the last scanned request are. Reused across requests so scanning a
/// pipeline allocates nothing once it has warmed up.
#[derive(Debug, Default)]
pub struct ArgSpans {
    pub spans: Vec<(usize, usize)>,
    pub owned: Vec<Vec<u8>>,
}

/// Scan one request at the start of `buf`.
pub fn scan(buf: &[u8], limits: &Limits, out: &mut ArgSpans) -> Result<Scan, ProtocolError> {
    out.spans.clear();
    out.owned.clear();
    let Some(&first) = buf.first() else {
        return Ok(Scan::Incomplete);
    };
    if first == b'*' {
        scan_multibulk(buf, limits, out)
    } else {
        scan_inline(buf, limits, out)
    }
}

/// Find `\r\n` at or after `from`; returns the index of `\r`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        match buf[i..].iter().position(|&b| b == b'\r') {
            Some(p) => {
                let at = i + p;
                if at + 1 >= buf.len() {
                    return None;
                }
                if buf[at + 1] == b'\n' {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

/// Parse a decimal length as Redis does (optional `-`, digits only, bounded).
fn parse_len(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(d - b'0');
    }
    Some(if neg { -v } else { v })
}

fn scan_multibulk(buf: &[u8], limits: &Limits, out: &mut ArgSpans) -> Result<Scan, ProtocolError> {
    let Some(end) = find_crlf(buf, 1) else {
        if buf.len() > 32 {
            return Err(ProtocolError("invalid multibulk length"));
        }
        return Ok(Scan::Incomplete);
    };
    let n = parse_len(&buf[1..end]).ok_or(ProtocolError("invalid multibulk length"))?;
    if n > limits.max_multibulk_len as i64 {
        return Err(ProtocolError("invalid multibulk length"));
    }
    let mut pos = end + 2;
    if n <= 0 {
        return Ok(Scan::Empty { consumed: pos });
    }
    // Reserve lazily: a client may claim a million args and then send none.
    for _ in 0..n {
        if pos >= buf.len() {
            return Ok(Scan::Incomplete);
        }
        if buf[pos] != b'$' {
            return Err(ProtocolError("expected '$'"));
        }
        let Some(end) = find_crlf(buf, pos + 1) else {
            if buf.len() - pos > 32 {
                return Err(ProtocolError("invalid bulk length"));
            }
            return Ok(Scan::Incomplete);
        };
        let len = parse_len(&buf[pos + 1..end]).ok_or(ProtocolError("invalid bulk length"))?;
        if len < 0 || len > limits.max_bulk_len as i64 {
            return Err(ProtocolError("invalid bulk length"));
        }
        let start = end + 2;
        let stop = start + len as usize;
        if stop + 2 > buf.len() {
            return Ok(Scan::Incomplete);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string not terminated by CRLF"));
        }
        out.spans.push((start, stop));
        pos = stop + 2;
    }
    Ok(Scan::Multibulk { consumed: pos })
}

fn scan_inline(buf: &[u8], limits: &Limits, out: &mut ArgSpans) -> Result<Scan, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError("too big inline request"));
        }
        return Ok(Scan::Incomplete);
    };
    if nl > limits.max_inline_len {
        return Err(ProtocolError("too big inline request"));
    }
    let line = if nl > 0 && buf[nl - 1] == b'\r' {
        &buf[..nl - 1]
    } else {
        &buf[..nl]
    };
    // Fast path (redis-benchmark's PING_INLINE, telnet): no quotes means arguments are plain
    // spans of the buffer, handled exactly like a multibulk's, without copying.
    if !line.iter().any(|&b| b == b'"' || b == b'\'') {
        let mut i = 0;
        while i < line.len() {
            while i < line.len() && is_sep(line[i]) {
                i += 1;
            }
            let start = i;
            while i < line.len() && !is_sep(line[i]) {
                i += 1;
            }
            if i > start {
                out.spans.push((start, i));
            }
        }
        return Ok(if out.spans.is_empty() {
            Scan::Empty { consumed: nl + 1 }
        } else {
            Scan::Multibulk { consumed: nl + 1 }
        });
    }
    split_args(line, &mut out.owned).ok_or(ProtocolError("unbalanced quotes in request"))?;
    if out.owned.is_empty() {
        Ok(Scan::Empty { consumed: nl + 1 })
    } else {
        Ok(Scan::Inline { consumed: nl + 1 })
    }
}

/// One separator set for skipping and for ending an inline token: a byte that ends a token
/// but is not skipped would loop forever producing empty arguments (found by the fuzzer).
fn is_sep(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c | 0)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Split an inline line into arguments the way Redis's `sdssplitargs` does: blanks separate,
/// `"..."` understands `\n \r \t \b \a \\ \" \xHH`, `'...'` understands `\'`. `None` on
/// unbalanced quotes or a closing quote not followed by a blank.
pub fn split_args(line: &[u8], out: &mut Vec<Vec<u8>>) -> Option<()> {
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && is_sep(line[i]) {
            i += 1;
        }
        if i >= n {
            return Some(());
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 3 < n && line[i + 1] == b'x' {
                    if let (Some(h), Some(l)) = (hex_val(line[i + 2]), hex_val(line[i + 3])) {
                        cur.push(h * 16 + l);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < n {
                    let e = match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        o => o,
                    };
                    cur.push(e);
                    i += 2;
                    continue;
                }
                if c == b'"' {
                    if i + 1 < n && !is_sep(line[i + 1]) {
                        return None;
                    }
                    i += 1;
                    break;
                }
                cur.push(c);
                i += 1;
            } else if in_sq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    cur.push(b'\'');
                    i += 2;
                    continue;
                }
                if c == b'\'' {
                    if i + 1 < n && !is_sep(line[i + 1]) {
                        return None;
                    }
                    i += 1;
                    break;
                }
                cur.push(c);
                i += 1;
            } else {
                if i >= n {
                    break;
                }
                let c = line[i];
                match c {
                    c if is_sep(c) => break,
                    b'"' if cur.is_empty() => in_dq = true,
                    b'\'' if cur.is_empty() => in_sq = true,
                    _ => cur.push(c),
                }
                i += 1;
            }
        }
        out.push(cur);
    }
}

/// Reply writer: appends RESP2 or RESP3 to a buffer. The `proto` decides how maps, nulls,
/// doubles and pushes look, so command code writes one shape for both protocols.
pub struct Out {
    pub buf: BytesMut,
    pub proto: u8,
}

impl Out {
    pub fn new() -> Self {
        Out {
            buf: BytesMut::with_capacity(16 * 1024),
            proto: 2,
        }
    }

    #[inline]
    fn line(&mut self, prefix: u8, n: i64) {
        self.buf.put_u8(prefix);
        let mut b = itoa::Buffer::new();
        self.buf.extend_from_slice(b.format(n).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    #[inline]
    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    #[inline]
    pub fn simple(&mut self, s: &str) {
        self.buf.put_u8(b'+');
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// An error reply; `msg` starts with its code (`ERR`, `WRONGTYPE`, ...). CR/LF inside are
    /// replaced so a reply can never break the framing.
    pub fn err(&mut self, msg: &str) {
        self.buf.put_u8(b'-');
        for &b in msg.as_bytes() {
            self.buf
                .put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.buf.extend_from_slice(b"\r\n");
    }

    #[inline]
    pub fn int(&mut self, n: i64) {
        self.line(b':', n);
    }

    #[inline]
    pub fn bulk(&mut self, s: &[u8]) {
        self.line(b'$', s.len() as i64);
        self.buf.extend_from_slice(s);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// A bulk string holding a number, as Redis sends for e.g. HINCRBY-less replies.
    pub fn bulk_int(&mut self, n: i64) {
        let mut b = itoa::Buffer::new();
        let s = b.format(n);
        self.bulk(s.as_bytes());
    }

    /// Null bulk string (`$-1` in RESP2, `_` in RESP3).
    #[inline]
    pub fn null(&mut self) {
        if self.proto >= 3 {
            self.buf.extend_from_slice(b"_\r\n");
        } else {
            self.buf.extend_from_slice(b"$-1\r\n");
        }
    }

    /// Null array (`*-1` in RESP2, `_` in RESP3), e.g. a BLPOP that timed out.
    pub fn null_array(&mut self) {
        if self.proto >= 3 {
            self.buf.extend_from_slice(b"_\r\n");
        } else {
            self.buf.extend_from_slice(b"*-1\r\n");
        }
    }

    #[inline]
    pub fn array(&mut self, n: usize) {
        self.line(b'*', n as i64);
    }

    /// A map of `n` pairs (`%n` in RESP3, a flat array of 2n in RESP2).
    pub fn map(&mut self, n: usize) {
        if self.proto >= 3 {
            self.line(b'%', n as i64);
        } else {
            self.line(b'*', 2 * n as i64);
        }
    }

    /// A set (`~n` in RESP3, an array in RESP2).
    pub fn set(&mut self, n: usize) {
        if self.proto >= 3 {
            self.line(b'~', n as i64);
        } else {
            self.line(b'*', n as i64);
        }
    }

    /// An out-of-band push (`>n` in RESP3: pub/sub messages; an array in RESP2).
    pub fn push(&mut self, n: usize) {
        if self.proto >= 3 {
            self.line(b'>', n as i64);
        } else {
            self.line(b'*', n as i64);
        }
    }

    /// A double (`,` in RESP3, a bulk string in RESP2).
    pub fn double(&mut self, v: f64) {
        let s = format_double(v);
        if self.proto >= 3 {
            self.buf.put_u8(b',');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.bulk(s.as_bytes());
        }
    }

    /// Verbatim text (`=` with `txt:` in RESP3, bulk in RESP2): INFO, CLIENT LIST.
    pub fn verbatim(&mut self, s: &str) {
        if self.proto >= 3 {
            self.line(b'=', s.len() as i64 + 4);
            self.buf.extend_from_slice(b"txt:");
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.bulk(s.as_bytes());
        }
    }

    pub fn bool(&mut self, v: bool) {
        if self.proto >= 3 {
            self.buf
                .extend_from_slice(if v { b"#t\r\n" } else { b"#f\r\n" });
        } else {
            self.int(i64::from(v));
        }
    }
}

impl Default for Out {
    fn default() -> Self {
        Out::new()
    }
}

/// Format a double as Redis does: integers without a fraction, `inf` / `-inf`.
pub fn format_double(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else if v == v.trunc() && v.abs() < 1e17 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Encode a command as a RESP multibulk (used for the append-only file).
pub fn encode_command<A: AsRef<[u8]>>(buf: &mut Vec<u8>, args: &[A]) {
    let mut b = itoa::Buffer::new();
    buf.push(b'*');
    buf.extend_from_slice(b.format(args.len()).as_bytes());
    buf.extend_from_slice(b"\r\n");
    for a in args {
        let a = a.as_ref();
        buf.push(b'$');
        buf.extend_from_slice(b.format(a.len()).as_bytes());
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Result<Scan, ProtocolError> {
        let mut spans = ArgSpans::default();
        scan(input, &Limits::default(), &mut spans)
    }

    #[test]
    fn multibulk_and_incomplete() {
        let full = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        for cut in 0..full.len() {
            assert_eq!(scan_all(&full[..cut]), Ok(Scan::Incomplete), "cut {cut}");
        }
        assert_eq!(
            scan_all(full),
            Ok(Scan::Multibulk {
                consumed: full.len()
            })
        );
    }

    #[test]
    fn inline_quotes() {
        let mut v = Vec::new();
        split_args(br#"SET "a b" 'c\'d' "\x41\n""#, &mut v).unwrap();
        assert_eq!(
            v,
            vec![
                b"SET".to_vec(),
                b"a b".to_vec(),
                b"c'd".to_vec(),
                b"A\n".to_vec()
            ]
        );
        v.clear();
        assert!(split_args(br#"SET "a"#, &mut v).is_none());
        v.clear();
        split_args(b"a\0b\x0bc", &mut v).unwrap();
        assert_eq!(v, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn bad_lengths() {
        assert!(scan_all(b"*x\r\n").is_err());
        assert!(scan_all(b"*1\r\n$-5\r\n").is_err());
        assert!(scan_all(b"*1\r\n:5\r\n").is_err());
        assert!(scan_all(b"*1\r\n$999999999999\r\n").is_err());
    }
}
