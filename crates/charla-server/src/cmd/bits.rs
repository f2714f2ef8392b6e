//! Bit commands on strings: SETBIT, GETBIT, BITCOUNT, BITPOS (BYTE / BIT ranges), BITOP
//! AND / OR / XOR / NOT, BITFIELD and BITFIELD_RO, with redis-server 7.0's argument order and
//! errors.
//!
//! Memory: a bit offset is refused, as Redis refuses it, when its byte lies at or beyond
//! `proto-max-bulk-len` (512 MiB by default), so no string grows past what a client could
//! have sent; BITOP's result is as long as its longest source. A string is changed in place
//! when nobody else holds its bytes (a SETBIT on a big bitmap does not copy it).
//!
//! Every one of them replays as sent (no randomness, no clock), so the AOF gets the command.

use bytes::{Bytes, BytesMut};

use super::args::{is, own, parse_i64, SYNTAX};
use super::spec::{Ctx, Res};
use super::typed;
use crate::db::{now_ms, Db, Value};
use crate::events::{GENERIC, STRING};

const OFFSET_ERR: &str = "ERR bit offset is not an integer or out of range";

/// The string at argument 1 for reading: Ok(None) when missing, Err(()) after WRONGTYPE.
fn read<'a>(ctx: &mut Ctx, db: &'a mut Db, key: &[u8]) -> Result<Option<&'a Bytes>, ()> {
    typed::read_as(ctx, db, key, |v| match v {
        Value::Str(s) => Some(s),
        _ => None,
    })
}

fn max_bulk(ctx: &Ctx) -> u64 {
    ctx.shared
        .net
        .proto_max_bulk_len
        .load(std::sync::atomic::Ordering::Relaxed) as u64
}

/// Redis's `getBitOffsetFromArgument`: a non-negative integer whose byte is below
/// `proto-max-bulk-len`; with `bits` (BITFIELD), `#n` means `n * bits`.
fn offset_arg(ctx: &mut Ctx, i: usize, bits: Option<u64>) -> Option<u64> {
    let a = &ctx.args[i];
    let (hash, digits) = match (a.first(), bits) {
        (Some(b'#'), Some(_)) => (true, &a[1..]),
        _ => (false, &a[..]),
    };
    let n = parse_i64(digits).and_then(|n| match (hash, bits) {
        (true, Some(b)) => n.checked_mul(b as i64),
        _ => Some(n),
    });
    match n {
        Some(n) if n >= 0 && ((n as u64) >> 3) < max_bulk(ctx) => Some(n as u64),
        _ => {
            ctx.out.err(OFFSET_ERR);
            None
        }
    }
}

/// Change the string at `key` (created empty when missing) through `f`, after growing it with
/// zero bytes to at least `len` bytes. The caller checked the type. In place when the bytes
/// are not shared (with a rewrite snapshot, say), else on a copy.
fn modify(db: &mut Db, dbi: usize, key: &Bytes, len: usize, f: impl FnOnce(&mut [u8])) {
    let ks = &mut db.dbs[dbi];
    let now = now_ms();
    if ks.get(key, now).is_none() {
        let mut v = vec![0u8; len];
        f(&mut v);
        ks.insert(own(key), Value::Str(Bytes::from(v)));
        return;
    }
    if let Some(e) = ks.get_mut(key, now) {
        if let Value::Str(s) = &mut e.value {
            let mut m = std::mem::take(s)
                .try_into_mut()
                .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
            if m.len() < len {
                m.resize(len, 0);
            }
            f(&mut m);
            *s = m.freeze();
        }
    }
}

/// SETBIT key offset 0|1
pub fn setbit(ctx: &mut Ctx, db: &mut Db) -> Res {
    const BIT_ERR: &str = "ERR bit is not an integer or out of range";
    let Some(offset) = offset_arg(ctx, 2, None) else {
        return Res::Ok;
    };
    let on = match parse_i64(&ctx.args[3]) {
        Some(b @ (0 | 1)) => b == 1,
        _ => {
            ctx.out.err(BIT_ERR);
            return Res::Ok;
        }
    };
    let key = ctx.args[1].clone();
    let (byte, shift) = ((offset >> 3) as usize, 7 - (offset & 7) as u32);
    let Ok(cur) = read(ctx, db, &key) else {
        return Res::Ok;
    };
    let (old, grows) = match cur {
        None => (false, true),
        Some(s) => (
            s.get(byte).is_some_and(|b| b >> shift & 1 == 1),
            s.len() <= byte,
        ),
    };
    // Redis changes nothing (and logs nothing) when the bit already has the value and the
    // string does not grow.
    if grows || old != on {
        modify(db, ctx.client.db, &key, byte + 1, |v| {
            if on {
                v[byte] |= 1 << shift;
            } else {
                v[byte] &= !(1 << shift);
            }
        });
    }
    ctx.out.int(i64::from(old));
    Res::Ok
}

/// GETBIT key offset
pub fn getbit(ctx: &mut Ctx, db: &mut Db) -> Res {
    let Some(offset) = offset_arg(ctx, 2, None) else {
        return Res::Ok;
    };
    let key = ctx.args[1].clone();
    let Ok(s) = read(ctx, db, &key) else {
        return Res::Ok;
    };
    let (byte, shift) = ((offset >> 3) as usize, 7 - (offset & 7) as u32);
    let bit = s
        .and_then(|s| s.get(byte))
        .is_some_and(|b| b >> shift & 1 == 1);
    ctx.out.int(i64::from(bit));
    Res::Ok
}

/// `BYTE` / `BIT` at argument `i`: Some(true) for BIT, None after the syntax error.
fn unit_arg(ctx: &mut Ctx, i: usize) -> Option<bool> {
    if is(&ctx.args[i], "BIT") {
        Some(true)
    } else if is(&ctx.args[i], "BYTE") {
        Some(false)
    } else {
        ctx.out.err(SYNTAX);
        None
    }
}

/// A BITCOUNT / BITPOS range made absolute as Redis does: byte positions `start..=end` into
/// a string of `len` bytes, and for a BIT range the masks of the bits of the first and last
/// bytes that lie outside it. `start > end` means empty.
struct Range {
    start: i64,
    end: i64,
    first_mask: u8,
    last_mask: u8,
}

fn resolve(start: i64, end: i64, len: usize, bit_unit: bool) -> Range {
    let total = if bit_unit {
        (len as i64) << 3
    } else {
        len as i64
    };
    let (mut start, mut end) = (start, end);
    if start < 0 {
        start = total.saturating_add(start);
    }
    if end < 0 {
        end = total.saturating_add(end);
    }
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    let (mut first_mask, mut last_mask) = (0u8, 0u8);
    if bit_unit && start <= end {
        first_mask = !((1u16 << (8 - (start & 7))) - 1) as u8;
        last_mask = ((1u16 << (7 - (end & 7))) - 1) as u8;
        start >>= 3;
        end >>= 3;
    }
    Range {
        start,
        end,
        first_mask,
        last_mask,
    }
}

/// BITCOUNT key [start end [BYTE|BIT]]
pub fn bitcount(ctx: &mut Ctx, db: &mut Db) -> Res {
    // redis-server 7.0's order: the key first (missing: 0, whatever follows), then the range.
    let key = ctx.args[1].clone();
    let s = match read(ctx, db, &key) {
        Err(()) => return Res::Ok,
        Ok(None) => {
            ctx.out.int(0);
            return Res::Ok;
        }
        Ok(Some(s)) => s.clone(),
    };
    let r = match ctx.args.len() {
        2 => Range {
            start: 0,
            end: s.len() as i64 - 1,
            first_mask: 0,
            last_mask: 0,
        },
        4 | 5 => {
            let Some(start) = ctx.int_arg(2) else {
                return Res::Ok;
            };
            let Some(end) = ctx.int_arg(3) else {
                return Res::Ok;
            };
            // 7.0 answers an empty negative range before it reads BYTE / BIT.
            if start < 0 && end < 0 && start > end {
                ctx.out.int(0);
                return Res::Ok;
            }
            let bit_unit = if ctx.args.len() == 5 {
                let Some(b) = unit_arg(ctx, 4) else {
                    return Res::Ok;
                };
                b
            } else {
                false
            };
            resolve(start, end, s.len(), bit_unit)
        }
        _ => {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
    };
    if r.start > r.end {
        ctx.out.int(0);
        return Res::Ok;
    }
    let (a, b) = (r.start as usize, r.end as usize);
    let mut n: i64 = s[a..=b].iter().map(|x| i64::from(x.count_ones())).sum();
    n -= i64::from((s[a] & r.first_mask).count_ones());
    n -= i64::from((s[b] & r.last_mask).count_ones());
    ctx.out.int(n);
    Res::Ok
}

/// Redis's `redisBitpos`: the position of the first bit equal to `bit` in `s`; when there is
/// none, -1 for a 1 and the position just past the end for a 0.
fn first_bit(s: &[u8], bit: bool) -> i64 {
    let skip = if bit { 0x00 } else { 0xff };
    match s.iter().position(|&b| b != skip) {
        Some(i) => {
            let b = if bit { s[i] } else { !s[i] };
            (i as i64) * 8 + i64::from(b.leading_zeros())
        }
        None if bit => -1,
        None => (s.len() as i64) * 8,
    }
}

/// BITPOS key 0|1 [start [end [BYTE|BIT]]]
pub fn bitpos(ctx: &mut Ctx, db: &mut Db) -> Res {
    let Some(bit) = ctx.int_arg(2) else {
        return Res::Ok;
    };
    if bit != 0 && bit != 1 {
        ctx.out.err("ERR The bit argument must be 1 or 0.");
        return Res::Ok;
    }
    let bit = bit == 1;
    // redis-server 7.0's order: the bit, the key (missing: an endless run of zeros, whatever
    // follows), then the range.
    let key = ctx.args[1].clone();
    let s = match read(ctx, db, &key) {
        Err(()) => return Res::Ok,
        Ok(None) => {
            ctx.out.int(if bit { -1 } else { 0 });
            return Res::Ok;
        }
        Ok(Some(s)) => s.clone(),
    };
    let argc = ctx.args.len();
    let mut end_given = false;
    let r = match argc {
        3 => Range {
            start: 0,
            end: s.len() as i64 - 1,
            first_mask: 0,
            last_mask: 0,
        },
        4..=6 => {
            let Some(start) = ctx.int_arg(3) else {
                return Res::Ok;
            };
            let mut bit_unit = false;
            if argc == 6 {
                let Some(b) = unit_arg(ctx, 5) else {
                    return Res::Ok;
                };
                bit_unit = b;
            }
            let end = if argc >= 5 {
                let Some(end) = ctx.int_arg(4) else {
                    return Res::Ok;
                };
                end_given = true;
                end
            } else if bit_unit {
                ((s.len() as i64) << 3) + 7
            } else {
                s.len() as i64 - 1
            };
            resolve(start, end, s.len(), bit_unit)
        }
        _ => {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
    };
    if r.start > r.end {
        ctx.out.int(-1);
        return Res::Ok;
    }
    // Redis's walk: the partial first byte, the whole bytes, the partial last byte.
    let (mut start, end) = (r.start as usize, r.end as usize);
    let mut bytes = (end - start + 1) as i64;
    let masked = |b: u8, mask: u8| if bit { b & !mask } else { b | mask };
    let pos = 'found: {
        if r.first_mask != 0 {
            let mut c = masked(s[start], r.first_mask);
            if r.last_mask != 0 && bytes == 1 {
                c = masked(c, r.last_mask);
            }
            let pos = first_bit(&[c], bit);
            if bytes == 1 || (pos != -1 && pos != 8) {
                break 'found pos;
            }
            start += 1;
            bytes -= 1;
        }
        let cur = bytes - i64::from(r.last_mask != 0);
        if cur > 0 {
            let pos = first_bit(&s[start..start + cur as usize], bit);
            if bytes == cur || (pos != -1 && pos != cur << 3) {
                break 'found pos;
            }
            start += cur as usize;
            bytes -= cur;
        }
        first_bit(&[masked(s[end], r.last_mask)], bit)
    };
    // With an explicit end, running off the range looking for a 0 finds none.
    if pos == -1 || (end_given && !bit && pos == bytes << 3) {
        ctx.out.int(-1);
    } else {
        ctx.out.int(pos + ((start as i64) << 3));
    }
    Res::Ok
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// BITOP AND|OR|XOR|NOT destkey key…
pub fn bitop(ctx: &mut Ctx, db: &mut Db) -> Res {
    let name = &ctx.args[1];
    let op = if is(name, "AND") {
        BitOp::And
    } else if is(name, "OR") {
        BitOp::Or
    } else if is(name, "XOR") {
        BitOp::Xor
    } else if is(name, "NOT") {
        BitOp::Not
    } else {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    };
    if op == BitOp::Not && ctx.args.len() != 4 {
        ctx.out
            .err("ERR BITOP NOT must be called with a single source key.");
        return Res::Ok;
    }
    let mut srcs: Vec<Bytes> = Vec::with_capacity(ctx.args.len() - 3);
    for k in &ctx.args[3..] {
        match read(ctx, db, k) {
            Err(()) => return Res::Ok,
            Ok(s) => srcs.push(s.cloned().unwrap_or_default()),
        }
    }
    let maxlen = srcs.iter().map(Bytes::len).max().unwrap_or(0);
    let dst = ctx.args[2].clone();
    let dbi = ctx.client.db;
    let ks = &mut db.dbs[dbi];
    if maxlen == 0 {
        if ks.remove(&dst).is_some() {
            db.notify(dbi, GENERIC, "del", &dst);
        }
    } else {
        let byte = |s: &Bytes, j: usize| s.get(j).copied().unwrap_or(0);
        let res: Vec<u8> = (0..maxlen)
            .map(|j| {
                let first = byte(&srcs[0], j);
                let rest = srcs[1..].iter().map(|s| byte(s, j));
                match op {
                    BitOp::And => rest.fold(first, |a, b| a & b),
                    BitOp::Or => rest.fold(first, |a, b| a | b),
                    BitOp::Xor => rest.fold(first, |a, b| a ^ b),
                    BitOp::Not => !first,
                }
            })
            .collect();
        ks.insert(own(&dst), Value::Str(Bytes::from(res)));
        db.notify(dbi, STRING, "set", &dst);
    }
    ctx.out.int(maxlen as i64);
    Res::Ok
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldOp {
    Get,
    Set,
    Incr,
}

struct Field {
    op: FieldOp,
    offset: u64,
    value: i64,
    overflow: Overflow,
    bits: u32,
    signed: bool,
}

/// `i<1..64>` or `u<1..63>`, or Redis's error.
fn field_type(ctx: &mut Ctx, i: usize) -> Option<(bool, u32)> {
    let a = &ctx.args[i];
    let signed = match a.first() {
        Some(b'i') => Some(true),
        Some(b'u') => Some(false),
        _ => None,
    };
    let bits = parse_i64(a.get(1..).unwrap_or_default());
    match (signed, bits) {
        (Some(true), Some(b @ 1..=64)) => Some((true, b as u32)),
        (Some(false), Some(b @ 1..=63)) => Some((false, b as u32)),
        _ => {
            ctx.out.err("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.");
            None
        }
    }
}

fn get_unsigned(p: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v = 0u64;
    for j in 0..u64::from(bits) {
        let o = offset + j;
        let byte = p.get((o >> 3) as usize).copied().unwrap_or(0);
        v = (v << 1) | u64::from(byte >> (7 - (o & 7)) & 1);
    }
    v
}

fn get_signed(p: &[u8], offset: u64, bits: u32) -> i64 {
    let mut v = get_unsigned(p, offset, bits) as i64;
    if bits < 64 && v & (1i64 << (bits - 1)) != 0 {
        v |= -1i64 << bits;
    }
    v
}

fn set_unsigned(p: &mut [u8], offset: u64, bits: u32, value: u64) {
    for j in 0..u64::from(bits) {
        let bit = value >> (u64::from(bits) - 1 - j) & 1;
        let o = offset + j;
        if let Some(b) = p.get_mut((o >> 3) as usize) {
            let shift = 7 - (o & 7);
            *b = (*b & !(1 << shift)) | ((bit as u8) << shift);
        }
    }
}

/// Redis's `checkUnsignedBitfieldOverflow`: 0, or ±1 with the wrapped or saturated value.
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> (i32, u64) {
    let max = (1u64 << bits) - 1;
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = value.wrapping_neg() as i64;
    let wrap = || value.wrapping_add(incr as u64) & !(u64::MAX << bits);
    let limit = |sat: u64| match ow {
        Overflow::Wrap => wrap(),
        Overflow::Sat => sat,
        Overflow::Fail => 0,
    };
    if value > max || (incr > 0 && incr > maxincr) {
        (1, limit(max))
    } else if incr < 0 && incr < minincr {
        (-1, limit(0))
    } else {
        (0, 0)
    }
}

/// Redis's `checkSignedBitfieldOverflow`.
fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> (i32, i64) {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    let limit = |sat: i64| match ow {
        Overflow::Wrap => wrap(),
        Overflow::Sat => sat,
        Overflow::Fail => 0,
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        (1, limit(max))
    } else if value < min
        || (bits != 64 && incr < minincr)
        || (value < 0 && incr < 0 && incr < minincr)
    {
        (-1, limit(min))
    } else {
        (0, 0)
    }
}

/// BITFIELD key [GET type offset | SET type offset value | INCRBY type offset increment |
/// OVERFLOW WRAP|SAT|FAIL]…, and BITFIELD_RO key [GET type offset]…
pub fn bitfield(ctx: &mut Ctx, db: &mut Db) -> Res {
    let ro_command = is(&ctx.args[0], "BITFIELD_RO");
    let mut ops: Vec<Field> = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut highest: u64 = 0;
    let mut writes = false;
    let argc = ctx.args.len();
    let mut j = 2;
    while j < argc {
        let left = argc - j - 1;
        let a = &ctx.args[j];
        let op = if is(a, "GET") && left >= 2 {
            FieldOp::Get
        } else if is(a, "SET") && left >= 3 {
            FieldOp::Set
        } else if is(a, "INCRBY") && left >= 3 {
            FieldOp::Incr
        } else if is(a, "OVERFLOW") && left >= 1 {
            let t = &ctx.args[j + 1];
            overflow = if is(t, "WRAP") {
                Overflow::Wrap
            } else if is(t, "SAT") {
                Overflow::Sat
            } else if is(t, "FAIL") {
                Overflow::Fail
            } else {
                ctx.out.err("ERR Invalid OVERFLOW type specified");
                return Res::Ok;
            };
            j += 2;
            continue;
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        };
        let Some((signed, bits)) = field_type(ctx, j + 1) else {
            return Res::Ok;
        };
        let Some(offset) = offset_arg(ctx, j + 2, Some(u64::from(bits))) else {
            return Res::Ok;
        };
        let mut value = 0;
        if op != FieldOp::Get {
            writes = true;
            highest = highest.max(offset + u64::from(bits) - 1);
            let Some(v) = ctx.int_arg(j + 3) else {
                return Res::Ok;
            };
            value = v;
        }
        ops.push(Field {
            op,
            offset,
            value,
            overflow,
            bits,
            signed,
        });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }
    if writes && ro_command {
        ctx.out
            .err("ERR BITFIELD_RO only supports the GET subcommand");
        return Res::Ok;
    }
    let key = ctx.args[1].clone();
    let current = match read(ctx, db, &key) {
        Err(()) => return Res::Ok,
        Ok(s) => s.cloned(),
    };
    // Work on a copy grown to the farthest bit written, then store it once if anything
    // changed (or the string had to be created or grown, as Redis counts it).
    let mut buf: Vec<u8> = current.as_deref().unwrap_or_default().to_vec();
    let grows = writes && (current.is_none() || buf.len() <= (highest >> 3) as usize);
    if writes && buf.len() <= (highest >> 3) as usize {
        buf.resize((highest >> 3) as usize + 1, 0);
    }
    let mut changed = grows;
    ctx.out.array(ops.len());
    for f in &ops {
        match (f.op, f.signed) {
            // Reads see the writes before them; past the end, zeros.
            (FieldOp::Get, true) => {
                let v = get_signed(&buf, f.offset, f.bits);
                ctx.out.int(v);
            }
            (FieldOp::Get, false) => {
                let v = get_unsigned(&buf, f.offset, f.bits);
                ctx.out.int(v as i64);
            }
            (op, true) => {
                let old = get_signed(&buf, f.offset, f.bits);
                let (over, new, reply) = if op == FieldOp::Incr {
                    let (o, w) = signed_overflow(old, f.value, f.bits, f.overflow);
                    let new = if o != 0 { w } else { old.wrapping_add(f.value) };
                    (o, new, new)
                } else {
                    let (o, w) = signed_overflow(f.value, 0, f.bits, f.overflow);
                    (o, if o != 0 { w } else { f.value }, old)
                };
                if over != 0 && f.overflow == Overflow::Fail {
                    ctx.out.null();
                } else {
                    ctx.out.int(reply);
                    set_unsigned(&mut buf, f.offset, f.bits, new as u64);
                    changed |= old != new;
                }
            }
            (op, false) => {
                let old = get_unsigned(&buf, f.offset, f.bits);
                let (over, new, reply) = if op == FieldOp::Incr {
                    let (o, w) = unsigned_overflow(old, f.value, f.bits, f.overflow);
                    let new = if o != 0 {
                        w
                    } else {
                        old.wrapping_add(f.value as u64)
                    };
                    (o, new, new)
                } else {
                    let v = f.value as u64;
                    let (o, w) = unsigned_overflow(v, 0, f.bits, f.overflow);
                    (o, if o != 0 { w } else { v }, old)
                };
                if over != 0 && f.overflow == Overflow::Fail {
                    ctx.out.null();
                } else {
                    ctx.out.int(reply as i64);
                    set_unsigned(&mut buf, f.offset, f.bits, new);
                    changed |= old != new;
                }
            }
        }
    }
    if changed {
        db.dbs[ctx.client.db].insert_keep_ttl(own(&key), Value::Str(Bytes::from(buf)));
    }
    Res::Ok
}

#[cfg(test)]
mod tests {
    use super::{first_bit, get_signed, get_unsigned, set_unsigned};

    #[test]
    fn first_bit_is_redis_bitpos() {
        assert_eq!(first_bit(&[0x00, 0x10], true), 11);
        assert_eq!(first_bit(&[0x00, 0x00], true), -1);
        assert_eq!(first_bit(&[0xff, 0xfe], false), 15);
        assert_eq!(first_bit(&[0xff, 0xff], false), 16);
        assert_eq!(first_bit(&[], false), 0);
    }

    #[test]
    fn bitfields_round_trip() {
        let mut p = vec![0u8; 9];
        set_unsigned(&mut p, 5, 13, 0x1abc);
        assert_eq!(get_unsigned(&p, 5, 13), 0x1abc);
        set_unsigned(&mut p, 3, 64, (-5i64) as u64);
        assert_eq!(get_signed(&p, 3, 64), -5);
        set_unsigned(&mut p, 0, 4, 0b1010);
        assert_eq!(get_signed(&p, 0, 4), -6);
    }
}
