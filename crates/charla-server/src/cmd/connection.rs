//! Connection commands: PING, ECHO, AUTH, HELLO, SELECT, QUIT, RESET, CLIENT.

use std::sync::atomic::Ordering;

use super::args::{is, own, parse_i64, NOT_INT};
use super::spec::{Ctx, Res};
use crate::db::NUM_DBS;

pub fn ping(ctx: &mut Ctx) -> Res {
    if ctx.args.len() > 2 {
        ctx.err_arity();
        return Res::Ok;
    }
    // In RESP2 subscribe mode Redis answers PING with a ["pong", msg] array.
    if ctx.client.proto < 3 && ctx.client.in_subscribe_mode() {
        ctx.out.array(2);
        ctx.out.bulk(b"pong");
        let msg = ctx.args.get(1).map(|b| b.as_ref()).unwrap_or(b"");
        ctx.out.bulk(msg);
        return Res::Ok;
    }
    match ctx.args.get(1) {
        None => ctx.out.simple("PONG"),
        Some(m) => {
            let m = m.clone();
            ctx.out.bulk(&m)
        }
    }
    Res::Ok
}

pub fn echo(ctx: &mut Ctx) -> Res {
    let m = ctx.arg(1).clone();
    ctx.out.bulk(&m);
    Res::Ok
}

/// Check a password; on success the client is authenticated.
fn check_pass(ctx: &mut Ctx, user: Option<&[u8]>, pass: &[u8]) -> bool {
    let Some(expected) = ctx.shared.config.requirepass.as_deref() else {
        if user.is_none() {
            ctx.out.err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
            return false;
        }
        // Redis accepts any password for `default` when it has none (nopass).
        if user.is_some_and(|u| u == b"default") {
            ctx.client.authed = true;
            return true;
        }
        ctx.out
            .err("WRONGPASS invalid username-password pair or user is disabled.");
        return false;
    };
    let user_ok = user.is_none_or(|u| u == b"default");
    if user_ok && constant_time_eq(expected.as_bytes(), pass) {
        ctx.client.authed = true;
        true
    } else {
        ctx.out
            .err("WRONGPASS invalid username-password pair or user is disabled.");
        false
    }
}

/// Compare a password in time that depends on neither its content nor its length. Both sides
/// are hashed to fixed-size SHA-256 digests first and the digests compared with `subtle`:
/// comparing the raw bytes would return early when the lengths differ (subtle's `ct_eq` on
/// slices does too), telling an attacker the password's length. Hashing the expected one costs
/// the same on every attempt; hashing the given one depends only on what the client sent.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (a, b) = (Sha256::digest(expected), Sha256::digest(given));
    a.as_slice().ct_eq(b.as_slice()).into()
}

pub fn auth(ctx: &mut Ctx) -> Res {
    let ok = match ctx.args.len() {
        2 => {
            let p = ctx.arg(1).clone();
            check_pass(ctx, None, &p)
        }
        3 => {
            let (u, p) = (ctx.arg(1).clone(), ctx.arg(2).clone());
            check_pass(ctx, Some(&u), &p)
        }
        _ => {
            ctx.out.err(super::args::SYNTAX);
            false
        }
    };
    if ok {
        ctx.out.ok();
    }
    Res::Ok
}

pub fn hello(ctx: &mut Ctx) -> Res {
    let mut proto = ctx.client.proto;
    let mut i = 1;
    if let Some(v) = ctx.args.get(1) {
        match parse_i64(v) {
            Some(p @ 2..=3) => proto = p as u8,
            Some(_) => {
                ctx.out.err("NOPROTO unsupported protocol version");
                return Res::Ok;
            }
            None => {
                ctx.out
                    .err("ERR Protocol version is not an integer or out of range");
                return Res::Ok;
            }
        }
        i = 2;
    }
    let mut setname = None;
    while i < ctx.args.len() {
        let a = ctx.arg(i).clone();
        if is(&a, "AUTH") && i + 2 < ctx.args.len() {
            let (u, p) = (ctx.arg(i + 1).clone(), ctx.arg(i + 2).clone());
            if !check_pass(ctx, Some(&u), &p) {
                return Res::Ok;
            }
            i += 3;
        } else if is(&a, "SETNAME") && i + 1 < ctx.args.len() {
            setname = Some(ctx.arg(i + 1).clone());
            i += 2;
        } else {
            ctx.out.err(&format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&a)
            ));
            return Res::Ok;
        }
    }
    if !ctx.client.authed {
        ctx.out.err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        return Res::Ok;
    }
    if let Some(n) = setname {
        ctx.client.set_name(Some(own(&n)));
    }
    ctx.client.proto = proto;
    ctx.out.proto = proto;
    let o = &mut *ctx.out;
    o.map(7);
    o.bulk(b"server");
    o.bulk(b"redis");
    o.bulk(b"version");
    o.bulk(crate::REDIS_VERSION.as_bytes());
    o.bulk(b"proto");
    o.int(i64::from(proto));
    o.bulk(b"id");
    o.int(ctx.client.id as i64);
    o.bulk(b"mode");
    o.bulk(b"standalone");
    o.bulk(b"role");
    o.bulk(b"master");
    o.bulk(b"modules");
    o.array(0);
    Res::Ok
}

pub fn select(ctx: &mut Ctx) -> Res {
    match parse_i64(ctx.arg(1)) {
        Some(n) if (0..NUM_DBS as i64).contains(&n) => {
            ctx.client.db = n as usize;
            ctx.client.meta.db.store(n as usize, Ordering::Relaxed);
            ctx.out.ok();
        }
        Some(_) => ctx.out.err("ERR DB index is out of range"),
        None => ctx.out.err(NOT_INT),
    }
    Res::Ok
}

pub fn quit(ctx: &mut Ctx) -> Res {
    ctx.out.ok();
    Res::Close
}

pub fn reset(ctx: &mut Ctx) -> Res {
    crate::cmd::pubsub::unsubscribe_all(ctx);
    let c = &mut *ctx.client;
    c.multi = None;
    c.multi_error = false;
    c.watch = None;
    c.reply = crate::client::ReplyMode::On;
    c.db = 0;
    c.proto = 2;
    ctx.out.proto = 2;
    c.set_name(None);
    c.authed = ctx.shared.config.requirepass.is_none();
    ctx.out.simple("RESET");
    Res::Ok
}

pub fn client(ctx: &mut Ctx) -> Res {
    let sub = ctx.arg(1).clone();
    let n = ctx.args.len();
    if is(&sub, "SETNAME") && n == 3 {
        let name = ctx.arg(2).clone();
        if name.iter().any(|&b| b <= b' ' || b > b'~') {
            ctx.out
                .err("ERR Client names cannot contain spaces, newlines or special characters.");
            return Res::Ok;
        }
        ctx.client.set_name(if name.is_empty() {
            None
        } else {
            Some(own(&name))
        });
        ctx.out.ok();
    } else if is(&sub, "GETNAME") && n == 2 {
        match ctx.client.name() {
            Some(nm) => ctx.out.bulk(&nm),
            None => ctx.out.null(),
        }
    } else if is(&sub, "ID") && n == 2 {
        ctx.out.int(ctx.client.id as i64);
    } else if is(&sub, "SETINFO") && n == 4 {
        let attr = ctx.arg(2).clone();
        let val = ctx.arg(3).clone();
        if is(&attr, "LIB-NAME") || is(&attr, "LIB-VER") {
            if val.iter().any(|&b| b <= b' ' || b > b'~') {
                ctx.out.err(&format!(
                    "ERR {} cannot contain spaces, newlines or special characters.",
                    String::from_utf8_lossy(&attr).to_ascii_lowercase()
                ));
                return Res::Ok;
            }
            let mut info = ctx
                .client
                .meta
                .info
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if is(&attr, "LIB-NAME") {
                info.lib_name = String::from_utf8_lossy(&val).into_owned();
            } else {
                info.lib_ver = String::from_utf8_lossy(&val).into_owned();
            }
            drop(info);
            ctx.out.ok();
        } else {
            ctx.out.err(&format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(&attr)
            ));
        }
    } else if is(&sub, "LIST") {
        let s = ctx.shared.client_list(None);
        ctx.out.verbatim(&s);
    } else if is(&sub, "INFO") && n == 2 {
        let s = ctx.shared.client_list(Some(ctx.client.id));
        ctx.out.verbatim(&s);
    } else if is(&sub, "UNBLOCK") && (n == 3 || n == 4) {
        use crate::client::Unblock;
        let Some(id) = parse_i64(ctx.arg(2)) else {
            ctx.out.err(NOT_INT);
            return Res::Ok;
        };
        let how = match ctx.args.get(3) {
            None => Unblock::Timeout,
            Some(a) if is(a, "TIMEOUT") => Unblock::Timeout,
            Some(a) if is(a, "ERROR") => Unblock::Error,
            Some(_) => {
                ctx.out
                    .err("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
                return Res::Ok;
            }
        };
        let target = u64::try_from(id)
            .ok()
            .and_then(|id| ctx.shared.client_meta(id))
            .filter(|m| m.blocked.load(Ordering::SeqCst));
        match target {
            Some(m) => {
                m.unblock.store(how as u8, Ordering::SeqCst);
                m.notify.notify_one();
                ctx.out.int(1);
            }
            None => ctx.out.int(0),
        }
    } else if is(&sub, "REPLY") && n == 3 {
        use crate::client::ReplyMode;
        let mode = ctx.arg(2).clone();
        if is(&mode, "ON") {
            ctx.client.reply = ReplyMode::On;
            ctx.out.ok();
        } else if is(&mode, "OFF") {
            ctx.client.reply = ReplyMode::Off; // this command's own reply is dropped too
        } else if is(&mode, "SKIP") {
            if ctx.client.reply != ReplyMode::Off {
                ctx.client.reply = ReplyMode::SkipNext;
            }
        } else {
            ctx.out.err(super::args::SYNTAX);
        }
    } else if (is(&sub, "NO-EVICT") || is(&sub, "NO-TOUCH")) && n == 3 {
        // Accepted for client compatibility; they change nothing here.
        ctx.out.ok();
    } else if is(&sub, "HELP") {
        let lines = [
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GETNAME",
            "ID",
            "INFO",
            "LIST",
            "SETNAME <name>",
            "SETINFO <LIB-NAME|LIB-VER> <value>",
            "REPLY (ON|OFF|SKIP)",
            "UNBLOCK <clientid> [TIMEOUT|ERROR]",
        ];
        ctx.out.array(lines.len());
        for l in lines {
            ctx.out.simple(l);
        }
    } else {
        let known = [
            "SETNAME", "GETNAME", "ID", "SETINFO", "INFO", "NO-EVICT", "NO-TOUCH", "REPLY",
            "UNBLOCK",
        ];
        let name = String::from_utf8_lossy(&sub).into_owned();
        if known.iter().any(|k| k.eq_ignore_ascii_case(&name)) {
            ctx.out.err(&format!(
                "ERR wrong number of arguments for 'client|{}' command",
                name.to_ascii_lowercase()
            ));
        } else {
            ctx.out.err(&format!(
                "ERR unknown subcommand '{name}'. Try CLIENT HELP."
            ));
        }
    }
    Res::Ok
}
