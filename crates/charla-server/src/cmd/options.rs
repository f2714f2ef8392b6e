//! Option parsers shared by several commands that answer Redis's error themselves: blocking
//! timeouts and the SCAN family's cursor and MATCH / COUNT / TYPE.

use bytes::Bytes;

use super::args::{is, parse_f64, parse_i64, NOT_INT, SYNTAX, TIMEOUT_ERR};
use super::spec::Ctx;

/// The SCAN family's cursor (an unsigned integer), or Redis's error written.
pub fn scan_cursor(ctx: &mut Ctx, i: usize) -> Option<u64> {
    let cursor = std::str::from_utf8(&ctx.args[i])
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    if cursor.is_none() {
        ctx.out.err("ERR invalid cursor");
    }
    cursor
}

/// The SCAN family's options after the cursor: MATCH, COUNT, and TYPE where `with_type`.
pub struct ScanOptions {
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub kind: Option<String>,
}

/// Parse the options from argument `from` on; None after writing Redis's error.
pub fn scan_options(ctx: &mut Ctx, from: usize, with_type: bool) -> Option<ScanOptions> {
    let mut o = ScanOptions {
        pattern: None,
        count: 10,
        kind: None,
    };
    let mut i = from;
    while i < ctx.args.len() {
        let a = &ctx.args[i];
        if i + 1 >= ctx.args.len() {
            ctx.out.err(SYNTAX);
            return None;
        }
        if is(a, "MATCH") {
            o.pattern = Some(ctx.args[i + 1].clone());
        } else if is(a, "COUNT") {
            match parse_i64(&ctx.args[i + 1]) {
                Some(c) if c >= 1 => o.count = c as usize,
                Some(_) => {
                    ctx.out.err(SYNTAX);
                    return None;
                }
                None => {
                    ctx.out.err(NOT_INT);
                    return None;
                }
            }
        } else if with_type && is(a, "TYPE") {
            o.kind = Some(String::from_utf8_lossy(&ctx.args[i + 1]).to_ascii_lowercase());
        } else {
            ctx.out.err(SYNTAX);
            return None;
        }
        i += 2;
    }
    Some(o)
}

/// Parse a blocking timeout in seconds (float) as Redis does.
pub fn parse_timeout(ctx: &mut Ctx, s: &[u8]) -> Option<Option<std::time::Duration>> {
    match parse_f64(s) {
        Some(v) if v < 0.0 => {
            ctx.out.err("ERR timeout is negative");
            None
        }
        Some(v) if v.is_finite() => {
            if v == 0.0 {
                Some(None)
            } else {
                // Absurdly long timeouts (which would overflow a Duration) mean "forever".
                Some(std::time::Duration::try_from_secs_f64(v).ok())
            }
        }
        _ => {
            ctx.out.err(TIMEOUT_ERR);
            None
        }
    }
}

/// The reply of a SCAN-family call on a key that does not exist: cursor 0, nothing found.
pub fn reply_empty_scan(ctx: &mut Ctx) {
    ctx.out.array(2);
    ctx.out.bulk(b"0");
    ctx.out.array(0);
}
