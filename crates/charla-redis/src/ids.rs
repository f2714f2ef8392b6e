//! Redis stream ids (`<milliseconds>-<sequence>`) compared as numbers, for the readers
//! ([`crate::stream`]) and their shared waits ([`crate::wake`]).

/// A stream id as a comparable pair (`ms-seq`); a bare `ms` is `ms-0`.
pub fn id_key(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// `a < b` for stream ids (false when either does not parse).
pub fn id_before(a: &str, b: &str) -> bool {
    matches!((id_key(a), id_key(b)), (Some(x), Some(y)) if x < y)
}
