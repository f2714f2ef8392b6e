//! List commands: LPUSH, RPUSH, LPUSHX, RPUSHX, LPOP, RPOP, LLEN, LRANGE, LINDEX, LSET, LREM,
//! LTRIM, LPOS, LMOVE, RPOPLPUSH, BLMOVE, BRPOPLPUSH, BLPOP, BRPOP, LMPOP, BLMPOP.
//! An emptied list is deleted, as in Redis.

use std::collections::VecDeque;

use bytes::Bytes;

use super::args::{is, own, parse_i64, NOT_INT, SYNTAX, WRONGTYPE};
use super::blocking::{block, may_block};
use super::options::parse_timeout;
use super::spec::{Ctx, Res};
use super::typed;
use crate::db::{now_ms, Db, Value};
use crate::events::{GENERIC, LIST};

/// Lookup result for a list key.
enum L<'a> {
    Missing,
    Wrong,
    List(&'a mut VecDeque<Bytes>),
}

fn list<'a>(db: &'a mut Db, dbi: usize, key: &[u8]) -> L<'a> {
    match db.dbs[dbi].get_mut(key, now_ms()).map(|e| &mut e.value) {
        None => L::Missing,
        Some(Value::List(l)) => L::List(l),
        Some(_) => L::Wrong,
    }
}

fn drop_if_empty(db: &mut Db, dbi: usize, key: &[u8]) {
    typed::drop_if_empty(
        db,
        dbi,
        key,
        |v| matches!(v, Value::List(l) if l.is_empty()),
    );
}

/// The events of a pop from `key` (for the commands whose events the table cannot name):
/// `lpop` / `rpop`, and `del` when the list emptied and went.
fn popped_from(db: &mut Db, dbi: usize, key: &[u8], left: bool) {
    db.notify(dbi, LIST, if left { "lpop" } else { "rpop" }, key);
    if db.dbs[dbi].peek(key).is_none() {
        db.notify(dbi, GENERIC, "del", key);
    }
}

pub fn push(ctx: &mut Ctx, db: &mut Db) -> Res {
    let name = &ctx.args[0];
    let left = name[0].eq_ignore_ascii_case(&b'L');
    let onlyx = name.len() == 6;
    let d = ctx.client.db;
    let key = &ctx.args[1];
    let l = match list(db, d, key) {
        L::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        L::Missing if onlyx => {
            ctx.out.int(0);
            return Res::Ok;
        }
        L::Missing => {
            db.dbs[d].insert(own(key), Value::List(VecDeque::new()));
            match list(db, d, key) {
                L::List(l) => l,
                _ => return Res::Ok,
            }
        }
        L::List(l) => l,
    };
    for v in &ctx.args[2..] {
        if left {
            l.push_front(own(v));
        } else {
            l.push_back(own(v));
        }
    }
    let n = l.len();
    ctx.out.int(n as i64);
    Res::Ok
}

pub fn pop(ctx: &mut Ctx, db: &mut Db) -> Res {
    let left = ctx.args[0][0].eq_ignore_ascii_case(&b'L');
    if ctx.args.len() > 3 {
        ctx.err_arity();
        return Res::Ok;
    }
    let count = match ctx.args.get(2) {
        None => None,
        Some(c) => match parse_i64(c) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => {
                ctx.out.err("ERR value is out of range, must be positive");
                return Res::Ok;
            }
        },
    };
    let d = ctx.client.db;
    let key = &ctx.args[1];
    let l = match list(db, d, key) {
        L::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        L::Missing => {
            if count.is_some() {
                ctx.out.null_array();
            } else {
                ctx.out.null();
            }
            return Res::Ok;
        }
        L::List(l) => l,
    };
    match count {
        None => {
            let v = if left { l.pop_front() } else { l.pop_back() };
            match v {
                Some(v) => ctx.out.bulk(&v),
                None => ctx.out.null(),
            }
        }
        Some(c) => {
            let c = c.min(l.len());
            if c == 0 {
                ctx.unchanged();
            }
            ctx.out.array(c);
            for _ in 0..c {
                if let Some(v) = if left { l.pop_front() } else { l.pop_back() } {
                    ctx.out.bulk(&v);
                }
            }
        }
    }
    drop_if_empty(db, d, key);
    Res::Ok
}

pub fn llen(ctx: &mut Ctx, db: &mut Db) -> Res {
    match list(db, ctx.client.db, &ctx.args[1]) {
        L::Missing => ctx.out.int(0),
        L::Wrong => ctx.out.err(WRONGTYPE),
        L::List(l) => ctx.out.int(l.len() as i64),
    }
    Res::Ok
}

pub fn lrange(ctx: &mut Ctx, db: &mut Db) -> Res {
    let (Some(s), Some(e)) = (parse_i64(&ctx.args[2]), parse_i64(&ctx.args[3])) else {
        ctx.out.err(NOT_INT);
        return Res::Ok;
    };
    match list(db, ctx.client.db, &ctx.args[1]) {
        L::Missing => ctx.out.array(0),
        L::Wrong => ctx.out.err(WRONGTYPE),
        L::List(l) => match super::args::norm_range(s, e, l.len()) {
            None => ctx.out.array(0),
            Some((a, b)) => {
                ctx.out.array(b - a + 1);
                for v in l.range(a..=b) {
                    ctx.out.bulk(v);
                }
            }
        },
    }
    Res::Ok
}

fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (i >= 0 && (i as usize) < len).then_some(i as usize)
}

// LINDEX and LSET look the key up before they parse the index, as Redis does: a missing
// key or a wrong type is the answer even when the index is not a number.
pub fn lindex(ctx: &mut Ctx, db: &mut Db) -> Res {
    let i = parse_i64(&ctx.args[2]);
    match list(db, ctx.client.db, &ctx.args[1]) {
        L::Missing => ctx.out.null(),
        L::Wrong => ctx.out.err(WRONGTYPE),
        L::List(_) if i.is_none() => ctx.out.err(NOT_INT),
        L::List(l) => match i.and_then(|i| index(i, l.len())) {
            Some(i) => ctx.out.bulk(&l[i]),
            None => ctx.out.null(),
        },
    }
    Res::Ok
}

pub fn lset(ctx: &mut Ctx, db: &mut Db) -> Res {
    let i = parse_i64(&ctx.args[2]);
    let v = own(&ctx.args[3]);
    match list(db, ctx.client.db, &ctx.args[1]) {
        L::Missing => ctx.out.err("ERR no such key"),
        L::Wrong => ctx.out.err(WRONGTYPE),
        L::List(_) if i.is_none() => ctx.out.err(NOT_INT),
        L::List(l) => match i.and_then(|i| index(i, l.len())) {
            Some(i) => {
                l[i] = v;
                ctx.out.ok();
            }
            None => ctx.out.err("ERR index out of range"),
        },
    }
    Res::Ok
}

pub fn lrem(ctx: &mut Ctx, db: &mut Db) -> Res {
    let Some(count) = parse_i64(&ctx.args[2]) else {
        ctx.out.err(NOT_INT);
        return Res::Ok;
    };
    let d = ctx.client.db;
    let key = ctx.args[1].clone();
    let target = ctx.args[3].clone();
    let l = match list(db, d, &key) {
        L::Missing => {
            ctx.out.int(0);
            return Res::Ok;
        }
        L::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        L::List(l) => l,
    };
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0usize;
    if count >= 0 {
        let mut i = 0;
        while i < l.len() && removed < limit {
            if l[i] == target {
                l.remove(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
    } else {
        let mut i = l.len();
        while i > 0 && removed < limit {
            i -= 1;
            if l[i] == target {
                l.remove(i);
                removed += 1;
            }
        }
    }
    drop_if_empty(db, d, &key);
    if removed == 0 {
        ctx.unchanged();
    }
    ctx.out.int(removed as i64);
    Res::Ok
}

pub fn ltrim(ctx: &mut Ctx, db: &mut Db) -> Res {
    let (Some(s), Some(e)) = (parse_i64(&ctx.args[2]), parse_i64(&ctx.args[3])) else {
        ctx.out.err(NOT_INT);
        return Res::Ok;
    };
    let d = ctx.client.db;
    let key = ctx.args[1].clone();
    match list(db, d, &key) {
        L::Missing => {}
        L::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        L::List(l) => match super::args::norm_range(s, e, l.len()) {
            None => l.clear(),
            Some((a, b)) => {
                l.truncate(b + 1);
                l.drain(..a);
            }
        },
    }
    drop_if_empty(db, d, &key);
    ctx.out.ok();
    Res::Ok
}

pub fn lpos(ctx: &mut Ctx, db: &mut Db) -> Res {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0usize);
    let mut i = 3;
    while i < ctx.args.len() {
        if i + 1 >= ctx.args.len() {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
        // Each option's value is checked as Redis does: RANK must be an integer, COUNT and
        // MAXLEN a non-negative one (anything else is "can't be negative").
        let v = parse_i64(&ctx.args[i + 1]);
        let a = &ctx.args[i];
        if is(a, "RANK") {
            let Some(v) = v else {
                ctx.out.err(NOT_INT);
                return Res::Ok;
            };
            if v == 0 || v == i64::MIN {
                ctx.out.err("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list");
                return Res::Ok;
            }
            rank = v;
        } else if is(a, "COUNT") || is(a, "MAXLEN") {
            let Some(v) = v.filter(|v| *v >= 0) else {
                let what = if is(a, "COUNT") { "COUNT" } else { "MAXLEN" };
                ctx.out.err(&format!("ERR {what} can't be negative"));
                return Res::Ok;
            };
            if is(a, "COUNT") {
                count = Some(v as usize);
            } else {
                maxlen = v as usize;
            }
        } else {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
        i += 2;
    }
    let target = ctx.args[2].clone();
    let l = match list(db, ctx.client.db, &ctx.args[1]) {
        L::Missing => {
            if count.is_some() {
                ctx.out.array(0)
            } else {
                ctx.out.null()
            }
            return Res::Ok;
        }
        L::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        L::List(l) => l,
    };
    let want = match count {
        Some(0) => usize::MAX,
        Some(c) => c,
        None => 1,
    };
    let mut found = Vec::new();
    let mut skip = rank.unsigned_abs() as usize - 1;
    let len = l.len();
    for step in 0..len {
        if maxlen != 0 && step >= maxlen {
            break;
        }
        let idx = if rank > 0 { step } else { len - 1 - step };
        if l[idx] == target {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            found.push(idx);
            if found.len() >= want {
                break;
            }
        }
    }
    if count.is_some() {
        ctx.out.array(found.len());
        for f in found {
            ctx.out.int(f as i64);
        }
    } else {
        match found.first() {
            Some(&f) => ctx.out.int(f as i64),
            None => ctx.out.null(),
        }
    }
    Res::Ok
}

fn side(a: &[u8]) -> Option<bool> {
    if is(a, "LEFT") {
        Some(true)
    } else if is(a, "RIGHT") {
        Some(false)
    } else {
        None
    }
}

/// LMOVE, RPOPLPUSH, BLMOVE, BRPOPLPUSH.
pub fn lmove(ctx: &mut Ctx, db: &mut Db) -> Res {
    let name = ctx.args[0].to_ascii_uppercase();
    let (from_left, to_left, timeout) = match name.as_slice() {
        b"LMOVE" | b"BLMOVE" => {
            let (Some(f), Some(t)) = (side(&ctx.args[3]), side(&ctx.args[4])) else {
                ctx.out.err(SYNTAX);
                return Res::Ok;
            };
            let to = if name == b"BLMOVE" {
                let t = ctx.args[5].clone();
                match parse_timeout(ctx, &t) {
                    Some(t) => Some(t),
                    None => return Res::Ok,
                }
            } else {
                None
            };
            (f, t, to)
        }
        b"BRPOPLPUSH" => {
            let t = ctx.args[3].clone();
            match parse_timeout(ctx, &t) {
                Some(t) => (false, true, Some(t)),
                None => return Res::Ok,
            }
        }
        _ => (false, true, None),
    };
    let d = ctx.client.db;
    let (src, dst) = (ctx.args[1].clone(), ctx.args[2].clone());
    // Redis's order: the source's type, then (only when it has an element to move) the
    // destination's. An empty source with a wrong-type destination is a null (or a block),
    // not WRONGTYPE.
    let src_has_items = match list(db, d, &src) {
        L::Wrong => {
            ctx.out.err(WRONGTYPE);
            return Res::Ok;
        }
        L::Missing => false,
        L::List(l) => !l.is_empty(),
    };
    if src_has_items && matches!(list(db, d, &dst), L::Wrong) {
        ctx.out.err(WRONGTYPE);
        return Res::Ok;
    }
    let v = match list(db, d, &src) {
        L::Wrong | L::Missing => None,
        L::List(l) => {
            if from_left {
                l.pop_front()
            } else {
                l.pop_back()
            }
        }
    };
    let Some(v) = v else {
        if let Some(t) = timeout {
            if may_block(ctx) {
                return block(ctx, db, &[&src], t);
            }
            // A blocking move that timed out replies with a null array, as Redis does; inside
            // EXEC (where it cannot block) Redis answers a plain null.
            if ctx.client.in_exec {
                ctx.out.null();
            } else {
                ctx.out.null_array();
            }
            return Res::Ok;
        }
        ctx.out.null();
        return Res::Ok;
    };
    drop_if_empty(db, d, &src);
    if matches!(list(db, d, &dst), L::Missing) {
        db.dbs[d].insert(own(&dst), Value::List(VecDeque::new()));
    }
    if let L::List(l) = list(db, d, &dst) {
        if to_left {
            l.push_front(v.clone());
        } else {
            l.push_back(v.clone());
        }
    }
    let (f, t): (&[u8], &[u8]) = (
        if from_left { b"LEFT" } else { b"RIGHT" },
        if to_left { b"LEFT" } else { b"RIGHT" },
    );
    db.propagate(d, &[b"LMOVE".as_slice(), &src, &dst, f, t]);
    // Redis's order: the push, then the pop, then the source's removal if it emptied.
    db.notify(d, LIST, if to_left { "lpush" } else { "rpush" }, &dst);
    popped_from(db, d, &src, from_left);
    ctx.out.bulk(&v);
    Res::Ok
}

/// BLPOP / BRPOP key [key ...] timeout.
pub fn bpop(ctx: &mut Ctx, db: &mut Db) -> Res {
    let left = is(&ctx.args[0], "BLPOP");
    let n = ctx.args.len();
    let t = ctx.args[n - 1].clone();
    let Some(timeout) = parse_timeout(ctx, &t) else {
        return Res::Ok;
    };
    let d = ctx.client.db;
    let keys = &ctx.args[1..n - 1];
    for k in keys {
        let v = match list(db, d, k) {
            L::Wrong => {
                ctx.out.err(WRONGTYPE);
                return Res::Ok;
            }
            L::Missing => None,
            L::List(l) => {
                if left {
                    l.pop_front()
                } else {
                    l.pop_back()
                }
            }
        };
        if let Some(v) = v {
            drop_if_empty(db, d, k);
            let cmd: &[u8] = if left { b"LPOP" } else { b"RPOP" };
            db.propagate(d, &[cmd, k]);
            ctx.out.array(2);
            ctx.out.bulk(k);
            ctx.out.bulk(&v);
            return Res::Ok;
        }
    }
    if may_block(ctx) {
        let refs: Vec<&Bytes> = keys.iter().collect();
        return block(ctx, db, &refs, timeout);
    }
    ctx.out.null_array();
    Res::Ok
}

/// LMPOP numkeys key... LEFT|RIGHT [COUNT n]; BLMPOP timeout numkeys ...
pub fn lmpop(ctx: &mut Ctx, db: &mut Db) -> Res {
    let blocking = is(&ctx.args[0], "BLMPOP");
    let base = if blocking { 2 } else { 1 };
    let numkeys = match parse_i64(&ctx.args[base]) {
        Some(n) if n > 0 => n as usize,
        _ => {
            ctx.out.err("ERR numkeys should be greater than 0");
            return Res::Ok;
        }
    };
    let dir_at = base + 1 + numkeys;
    if dir_at >= ctx.args.len() {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    }
    let Some(left) = side(&ctx.args[dir_at]) else {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    };
    let mut count = 1usize;
    let rest = &ctx.args[dir_at + 1..];
    match rest.len() {
        0 => {}
        2 if is(&rest[0], "COUNT") => match parse_i64(&rest[1]) {
            Some(c) if c > 0 => count = c as usize,
            _ => {
                ctx.out.err("ERR count should be greater than 0");
                return Res::Ok;
            }
        },
        _ => {
            ctx.out.err(SYNTAX);
            return Res::Ok;
        }
    }
    // BLMPOP's timeout comes first on the line but Redis parses it last.
    let timeout = if blocking {
        let t = ctx.args[1].clone();
        match parse_timeout(ctx, &t) {
            Some(t) => t,
            None => return Res::Ok,
        }
    } else {
        None
    };
    let d = ctx.client.db;
    let keys = &ctx.args[base + 1..dir_at];
    for k in keys {
        let popped: Vec<Bytes> = match list(db, d, k) {
            L::Wrong => {
                ctx.out.err(WRONGTYPE);
                return Res::Ok;
            }
            L::Missing => continue,
            L::List(l) => {
                let c = count.min(l.len());
                (0..c)
                    .filter_map(|_| if left { l.pop_front() } else { l.pop_back() })
                    .collect()
            }
        };
        if popped.is_empty() {
            continue;
        }
        drop_if_empty(db, d, k);
        let cmd: &[u8] = if left { b"LPOP" } else { b"RPOP" };
        let cs = popped.len().to_string();
        db.propagate(d, &[cmd, k, cs.as_bytes()]);
        popped_from(db, d, k, left);
        ctx.out.array(2);
        ctx.out.bulk(k);
        ctx.out.array(popped.len());
        for v in &popped {
            ctx.out.bulk(v);
        }
        return Res::Ok;
    }
    if blocking && may_block(ctx) {
        let refs: Vec<&Bytes> = keys.iter().collect();
        return block(ctx, db, &refs, timeout);
    }
    ctx.out.null_array();
    Res::Ok
}

/// LINSERT key BEFORE|AFTER pivot element: the list's new length, -1 without the pivot, 0
/// without the list.
pub fn linsert(ctx: &mut Ctx, db: &mut Db) -> Res {
    let after = if is(&ctx.args[2], "AFTER") {
        true
    } else if is(&ctx.args[2], "BEFORE") {
        false
    } else {
        ctx.out.err(SYNTAX);
        return Res::Ok;
    };
    let pivot = ctx.args[3].clone();
    let element = own(&ctx.args[4]);
    match list(db, ctx.client.db, &ctx.args[1]) {
        L::Missing => ctx.out.int(0),
        L::Wrong => ctx.out.err(WRONGTYPE),
        L::List(l) => match l.iter().position(|v| *v == pivot) {
            Some(at) => {
                l.insert(at + usize::from(after), element);
                ctx.out.int(l.len() as i64);
            }
            None => {
                ctx.unchanged();
                ctx.out.int(-1);
            }
        },
    }
    Res::Ok
}
