//! The RESP wire format, sans-io: a request parser that works on whatever bytes have arrived
//! (returning [`Scan::Incomplete`] until a whole command is there, and keeping its place so
//! the next read resumes instead of starting over), with the request limits checked on each
//! length header before the bytes it announces are buffered; and a reply writer that appends
//! RESP2 or RESP3 straight into the connection's output buffer.
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
            max_bulk_len: 512 * 1024 * 1024,
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

impl ProtocolError {
    /// A request bigger than `client-query-buffer-limit` allows.
    pub const QUERY_BUFFER: ProtocolError = ProtocolError("query buffer limit reached");
    /// A bulk over the unauthenticated limit, before AUTH.
    pub const UNAUTH_BULK: ProtocolError = ProtocolError("unauthenticated bulk length");
    /// Too many arguments before AUTH.
    pub const UNAUTH_MULTIBULK: ProtocolError = ProtocolError("unauthenticated multibulk length");
    /// An inline request longer than the inline limit.
    pub const INLINE_TOO_BIG: ProtocolError = ProtocolError("too big inline request");

    /// The request broke a limit on unauthenticated clients or on the query buffer (rather
    /// than the syntax): worth a warning in the log and a count in INFO.
    pub fn is_limit(&self) -> bool {
        [
            Self::UNAUTH_BULK,
            Self::UNAUTH_MULTIBULK,
            Self::INLINE_TOO_BIG,
            Self::QUERY_BUFFER,
        ]
        .contains(self)
    }
}

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

/// Who is sending, for the limits that depend on it (checked on each header, before the body
/// it announces is read).
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// A password is set and this client has not given it: Redis's limits for such clients
    /// (at most 10 arguments of at most 16 KiB) apply, so nobody can make the server buffer
    /// before proving who they are.
    pub unauthenticated: bool,
    /// Most bytes one request may occupy (`client-query-buffer-limit`).
    pub max_query: usize,
}

impl Admission {
    /// No per-client limits beyond [`Limits`] (the AOF loader, fuzzers).
    pub const TRUSTED: Admission = Admission {
        unauthenticated: false,
        max_query: usize::MAX,
    };
}

/// Redis's limits for a client that has not authenticated yet.
pub const UNAUTH_MAX_MULTIBULK: i64 = 10;
pub const UNAUTH_MAX_BULK: i64 = 16 * 1024;

/// Scan one request at the start of `buf`, from scratch (the AOF loader and tests; a
/// connection keeps a [`Parser`] so an unfinished request is not walked again).
pub fn scan(buf: &[u8], limits: &Limits, out: &mut ArgSpans) -> Result<Scan, ProtocolError> {
    Parser::default().parse(buf, limits, &Admission::TRUSTED, out)
}

/// Where an unfinished request stopped. Offsets are into the caller's buffer, whose start is
/// the request's first byte; the caller only appends to it until the request completes.
#[derive(Debug, Default, Clone, Copy)]
enum State {
    #[default]
    Start,
    /// Inside a multibulk.
    Multi(Cursor),
    /// An inline request with no `\n` before `searched`.
    Inline { searched: usize },
}

impl State {
    /// How far into the request scanning has got (where it resumes).
    fn position(self) -> usize {
        match self {
            State::Start => 0,
            State::Multi(Cursor::Header { pos, .. }) => pos,
            State::Multi(Cursor::Body { start, .. }) => start,
            State::Inline { searched } => searched,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// `left` bulks to come, the next one's `$` header at `pos`.
    Header { left: usize, pos: usize },
    /// A bulk's header was read: its body is `start..start + len`, `left` bulks including it.
    Body {
        left: usize,
        start: usize,
        len: usize,
    },
}

/// A resumable request parser: on [`Scan::Incomplete`] it remembers where it stopped, so a
/// request that arrives a few bytes at a time is walked once in total instead of once per
/// read (a client announcing a million arguments and trickling them in cannot make the server
/// rescan megabytes on every read). Only the short length lines (at most 32 bytes) are looked
/// at again when they arrive split.
#[derive(Debug, Default)]
pub struct Parser {
    state: State,
    /// Bytes walked over in total (INFO `charla_parser_bytes_scanned`).
    pub scanned: u64,
}

impl Parser {
    /// Continue (or start) scanning the request at the start of `buf`.
    pub fn parse(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        adm: &Admission,
        out: &mut ArgSpans,
    ) -> Result<Scan, ProtocolError> {
        let from = self.state.position();
        let r = self.step(buf, limits, adm, out);
        let reached = match &r {
            Ok(Scan::Incomplete) => self.state.position(),
            Ok(
                Scan::Multibulk { consumed } | Scan::Inline { consumed } | Scan::Empty { consumed },
            ) => *consumed,
            Err(_) => buf.len(),
        };
        self.scanned += reached.saturating_sub(from) as u64;
        if !matches!(r, Ok(Scan::Incomplete)) {
            self.state = State::Start;
        }
        r
    }

    fn step(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        adm: &Admission,
        out: &mut ArgSpans,
    ) -> Result<Scan, ProtocolError> {
        let mut cur = match self.state {
            State::Multi(cur) => cur,
            State::Inline { searched } => return self.inline(buf, searched, limits, out),
            State::Start => {
                out.spans.clear();
                out.owned.clear();
                match buf.first() {
                    None => return Ok(Scan::Incomplete),
                    Some(b'*') => match multibulk_header(buf, limits, adm)? {
                        Ok(cur) => cur,
                        Err(scan) => return Ok(scan),
                    },
                    Some(_) => return self.inline(buf, 0, limits, out),
                }
            }
        };
        loop {
            match cur {
                Cursor::Header { left: 0, pos } => return Ok(Scan::Multibulk { consumed: pos }),
                Cursor::Header { left, pos } => {
                    if pos >= buf.len() {
                        self.state = State::Multi(cur);
                        return Ok(Scan::Incomplete);
                    }
                    if buf[pos] != b'$' {
                        return Err(ProtocolError("expected '$'"));
                    }
                    let Some(end) = find_crlf(buf, pos + 1) else {
                        if buf.len() - pos > 32 {
                            return Err(ProtocolError("invalid bulk length"));
                        }
                        self.state = State::Multi(cur);
                        return Ok(Scan::Incomplete);
                    };
                    let len = parse_len(&buf[pos + 1..end])
                        .ok_or(ProtocolError("invalid bulk length"))?;
                    if len < 0 || len > limits.max_bulk_len as i64 {
                        return Err(ProtocolError("invalid bulk length"));
                    }
                    if adm.unauthenticated && len > UNAUTH_MAX_BULK {
                        return Err(ProtocolError::UNAUTH_BULK);
                    }
                    let start = end + 2;
                    // The request so far plus this bulk must fit the query buffer limit:
                    // refused on the announcement, before the body is buffered.
                    if (start as u64).saturating_add(len as u64 + 2) > adm.max_query as u64 {
                        return Err(ProtocolError::QUERY_BUFFER);
                    }
                    cur = Cursor::Body {
                        left,
                        start,
                        len: len as usize,
                    };
                }
                Cursor::Body { left, start, len } => {
                    let stop = start + len;
                    if stop + 2 > buf.len() {
                        self.state = State::Multi(cur);
                        return Ok(Scan::Incomplete);
                    }
                    if &buf[stop..stop + 2] != b"\r\n" {
                        return Err(ProtocolError("bulk string not terminated by CRLF"));
                    }
                    out.spans.push((start, stop));
                    cur = Cursor::Header {
                        left: left - 1,
                        pos: stop + 2,
                    };
                }
            }
        }
    }

    fn inline(
        &mut self,
        buf: &[u8],
        searched: usize,
        limits: &Limits,
        out: &mut ArgSpans,
    ) -> Result<Scan, ProtocolError> {
        // (A buffer shorter than what was searched cannot happen while the caller only
        // appends; searching it again from the start is the safe answer if it did.)
        let searched = if searched <= buf.len() { searched } else { 0 };
        let Some(nl) = buf[searched..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| p + searched)
        else {
            if buf.len() > limits.max_inline_len {
                return Err(ProtocolError::INLINE_TOO_BIG);
            }
            self.state = State::Inline {
                searched: buf.len(),
            };
            return Ok(Scan::Incomplete);
        };
        scan_inline_line(buf, nl, limits, out)
    }
}

/// The `*<n>\r\n` line of a multibulk: where its first bulk starts, or the whole (empty or
/// unfinished) result.
fn multibulk_header(
    buf: &[u8],
    limits: &Limits,
    adm: &Admission,
) -> Result<Result<Cursor, Scan>, ProtocolError> {
    let Some(end) = find_crlf(buf, 1) else {
        if buf.len() > 32 {
            return Err(ProtocolError("invalid multibulk length"));
        }
        return Ok(Err(Scan::Incomplete));
    };
    let n = parse_len(&buf[1..end]).ok_or(ProtocolError("invalid multibulk length"))?;
    if n > limits.max_multibulk_len as i64 {
        return Err(ProtocolError("invalid multibulk length"));
    }
    if adm.unauthenticated && n > UNAUTH_MAX_MULTIBULK {
        return Err(ProtocolError::UNAUTH_MULTIBULK);
    }
    if n <= 0 {
        return Ok(Err(Scan::Empty { consumed: end + 2 }));
    }
    // Spans are pushed as bulks arrive, never reserved from the claim: a client may announce
    // a million arguments and send none.
    Ok(Ok(Cursor::Header {
        left: n as usize,
        pos: end + 2,
    }))
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

/// An inline request whose line ends with the `\n` at `nl`.
fn scan_inline_line(
    buf: &[u8],
    nl: usize,
    limits: &Limits,
    out: &mut ArgSpans,
) -> Result<Scan, ProtocolError> {
    if nl > limits.max_inline_len {
        return Err(ProtocolError::INLINE_TOO_BIG);
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
    fn a_request_fed_byte_by_byte_is_walked_once() {
        let full = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n";
        let first = full.len() - 6;
        let mut p = Parser::default();
        let mut spans = ArgSpans::default();
        let limits = Limits::default();
        for cut in 1..first {
            assert_eq!(
                p.parse(&full[..cut], &limits, &Admission::TRUSTED, &mut spans),
                Ok(Scan::Incomplete),
                "cut {cut}"
            );
        }
        assert_eq!(
            p.parse(&full[..first], &limits, &Admission::TRUSTED, &mut spans),
            Ok(Scan::Multibulk { consumed: first })
        );
        assert_eq!(spans.spans, vec![(8, 11), (17, 18), (24, 29)]);
        assert_eq!(p.scanned, first as u64);
        // Inline requests resume too.
        let rest = &full[first..];
        for cut in 1..rest.len() {
            assert_eq!(
                p.parse(&rest[..cut], &limits, &Admission::TRUSTED, &mut spans),
                Ok(Scan::Incomplete)
            );
        }
        assert_eq!(
            p.parse(rest, &limits, &Admission::TRUSTED, &mut spans),
            Ok(Scan::Multibulk { consumed: 6 })
        );
        assert_eq!(p.scanned, full.len() as u64);
    }

    #[test]
    fn unauthenticated_and_query_limits_apply_on_the_header() {
        let limits = Limits::default();
        let unauth = Admission {
            unauthenticated: true,
            max_query: 1 << 20,
        };
        let mut spans = ArgSpans::default();
        let mut parse =
            |b: &[u8], adm: &Admission| Parser::default().parse(b, &limits, adm, &mut spans);
        assert_eq!(
            parse(b"*11\r\n", &unauth),
            Err(ProtocolError::UNAUTH_MULTIBULK)
        );
        assert_eq!(parse(b"*10\r\n$16384\r\n", &unauth), Ok(Scan::Incomplete));
        assert_eq!(
            parse(b"*10\r\n$16385\r\n", &unauth),
            Err(ProtocolError::UNAUTH_BULK)
        );
        let authed = Admission {
            unauthenticated: false,
            ..unauth
        };
        assert_eq!(parse(b"*2\r\n$1048000\r\n", &authed), Ok(Scan::Incomplete));
        assert_eq!(
            parse(b"*2\r\n$1048576\r\n", &authed),
            Err(ProtocolError::QUERY_BUFFER)
        );
    }

    #[test]
    fn bad_lengths() {
        assert!(scan_all(b"*x\r\n").is_err());
        assert!(scan_all(b"*1\r\n$-5\r\n").is_err());
        assert!(scan_all(b"*1\r\n:5\r\n").is_err());
        assert!(scan_all(b"*1\r\n$999999999999\r\n").is_err());
    }
}
