//! What the stream commands share: looking a stream up, writing entries and ids, ID range
//! bounds, the MAXLEN / MINID trim options, the NOGROUP error, and the XCLAIM form that
//! records a delivery in the AOF.

use bytes::Bytes;

use crate::cmd::args::{is, parse_i64, NOT_INT, SYNTAX, WRONGTYPE};
use crate::cmd::spec::Ctx;
use crate::db::{now_ms, Db, Value};
use crate::frame::Out;
use crate::stream::{Stream, StreamId};

pub(super) const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";

pub(super) enum S<'a> {
    Missing,
    Wrong,
    Stream(&'a mut Stream),
}

pub(super) fn stream<'a>(db: &'a mut Db, d: usize, key: &[u8]) -> S<'a> {
    match db.dbs[d].get_mut(key, now_ms()).map(|e| &mut e.value) {
        None => S::Missing,
        Some(Value::Stream(s)) => S::Stream(s),
        Some(_) => S::Wrong,
    }
}

pub(super) fn write_entry(out: &mut Out, id: StreamId, fields: &[Bytes]) {
    out.array(2);
    out.bulk(id.to_string().as_bytes());
    out.array(fields.len());
    for f in fields {
        out.bulk(f);
    }
}

pub(super) fn write_id(out: &mut Out, id: StreamId) {
    out.bulk(id.to_string().as_bytes());
}

/// Parse an id where `-`/`+` mean the ends and `(` excludes (XRANGE / XPENDING bounds).
pub(super) fn range_bound(s: &[u8], is_start: bool) -> Result<StreamId, &'static str> {
    if s == b"-" {
        return Ok(StreamId::MIN);
    }
    if s == b"+" {
        return Ok(StreamId::MAX);
    }
    let (excl, s) = match s.first() {
        Some(b'(') => (true, &s[1..]),
        _ => (false, s),
    };
    let id = StreamId::parse(s, if is_start { 0 } else { u64::MAX }).ok_or(INVALID_ID)?;
    if !excl {
        return Ok(id);
    }
    if is_start {
        id.incr().ok_or("ERR invalid start ID for the interval")
    } else {
        id.decr().ok_or("ERR invalid end ID for the interval")
    }
}

/// Trimming options shared by XADD and XTRIM: returns (maxlen, minid, limit) and how many args
/// were consumed, or an error text.
#[derive(Default)]
pub(super) struct Trim {
    maxlen: Option<u64>,
    minid: Option<StreamId>,
    limit: u64,
}

pub(super) fn parse_trim(
    args: &[Bytes],
    mut i: usize,
    trim: &mut Trim,
) -> Result<usize, &'static str> {
    let kind = &args[i];
    let is_max = is(kind, "MAXLEN");
    i += 1;
    let mut approx = false;
    if i < args.len() && (args[i].as_ref() == b"~" || args[i].as_ref() == b"=") {
        approx = args[i].as_ref() == b"~";
        i += 1;
    }
    let th = args.get(i).ok_or(SYNTAX)?;
    if is_max {
        match parse_i64(th) {
            Some(n) if n >= 0 => trim.maxlen = Some(n as u64),
            Some(_) => return Err("ERR The MAXLEN argument must be >= 0."),
            None => return Err(NOT_INT),
        }
    } else {
        trim.minid = Some(StreamId::parse(th, 0).ok_or(INVALID_ID)?);
    }
    i += 1;
    if i + 1 < args.len() && is(&args[i], "LIMIT") {
        if !approx {
            return Err("ERR syntax error, LIMIT cannot be used without the special ~ option");
        }
        match parse_i64(&args[i + 1]) {
            Some(n) if n >= 0 => trim.limit = n as u64,
            _ => return Err("ERR The LIMIT argument must be >= 0."),
        }
        i += 2;
    }
    Ok(i)
}

pub(super) fn apply_trim(s: &mut Stream, t: &Trim) -> u64 {
    let mut n = 0;
    if let Some(m) = t.maxlen {
        n += s.trim_maxlen(m, t.limit);
    }
    if let Some(m) = t.minid {
        n += s.trim_minid(m, t.limit);
    }
    n
}

/// The AOF form of one delivery: XCLAIM ... FORCE JUSTID with the exact time and count.
pub(super) fn claim_prop(
    key: &Bytes,
    group: &Bytes,
    consumer: &Bytes,
    id: StreamId,
    time: u64,
    count: u64,
    lastid: StreamId,
) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XCLAIM"),
        key.clone(),
        group.clone(),
        consumer.clone(),
        Bytes::from_static(b"0"),
        id.to_bytes(),
        Bytes::from_static(b"TIME"),
        Bytes::from(time.to_string()),
        Bytes::from_static(b"RETRYCOUNT"),
        Bytes::from(count.to_string()),
        Bytes::from_static(b"FORCE"),
        Bytes::from_static(b"JUSTID"),
        Bytes::from_static(b"LASTID"),
        lastid.to_bytes(),
    ]
}

/// The stream at `key` when it has group `g`; otherwise the reply Redis gives (WRONGTYPE, or
/// NOGROUP for a missing key or group) is written and `None` returned.
pub(super) fn stream_with_group<'a>(
    ctx: &mut Ctx,
    db: &'a mut Db,
    d: usize,
    key: &[u8],
    g: &[u8],
) -> Option<&'a mut Stream> {
    match stream(db, d, key) {
        S::Wrong => {
            ctx.out.err(WRONGTYPE);
            None
        }
        S::Stream(s) if s.groups.contains_key(g) => Some(s),
        S::Missing | S::Stream(_) => {
            nogroup(ctx, key, g);
            None
        }
    }
}

pub(super) fn nogroup(ctx: &mut Ctx, key: &[u8], g: &[u8]) {
    ctx.out.err(&format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(g)
    ));
}
