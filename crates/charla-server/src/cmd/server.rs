//! Server commands: COMMAND (COUNT / DOCS / INFO / LIST, enough for redis-cli), INFO, DBSIZE,
//! FLUSHDB, FLUSHALL, SWAPDB, TIME, CONFIG GET/SET/RESETSTAT, BGREWRITEAOF.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::args::{is, SYNTAX};
use super::spec::{Ctx, Res, Spec, BLOCKING, WRITE};
use crate::db::{glob_match, Db, NUM_DBS};

fn write_spec(ctx: &mut Ctx, s: &Spec) {
    let o = &mut *ctx.out;
    o.array(10);
    o.bulk(s.name.to_ascii_lowercase().as_bytes());
    o.int(i64::from(s.arity));
    let mut flags = Vec::new();
    if s.flags & WRITE != 0 {
        flags.push("write");
    } else {
        flags.push("readonly");
    }
    if s.flags & BLOCKING != 0 {
        flags.push("blocking");
    }
    o.set(flags.len());
    for f in flags {
        o.simple(f);
    }
    o.int(i64::from(s.first_key));
    o.int(i64::from(s.last_key));
    o.int(i64::from(s.step));
    o.set(0);
    o.set(0);
    o.set(0);
    o.array(0);
}

pub fn command(ctx: &mut Ctx) -> Res {
    let Some(sub) = ctx.args.get(1).cloned() else {
        let t = ctx.commands.all();
        ctx.out.array(t.len());
        for s in t {
            write_spec(ctx, s);
        }
        return Res::Ok;
    };
    if is(&sub, "COUNT") {
        ctx.out.int(ctx.commands.all().len() as i64);
    } else if is(&sub, "DOCS") {
        // redis-cli asks for docs to show hints; an empty map makes it fall back quietly.
        ctx.out.map(0);
    } else if is(&sub, "INFO") {
        let names = ctx.args[2..].to_vec();
        if names.is_empty() {
            let t = ctx.commands.all();
            ctx.out.array(t.len());
            for s in t {
                write_spec(ctx, s);
            }
        } else {
            ctx.out.array(names.len());
            for n in names {
                match ctx.commands.lookup(&n) {
                    Some(s) => write_spec(ctx, s),
                    // Redis answers a null (`$-1`, `_` in RESP3) for an unknown name.
                    None => ctx.out.null(),
                }
            }
        }
    } else if is(&sub, "LIST") {
        let t = ctx.commands.all();
        ctx.out.array(t.len());
        for s in t {
            ctx.out.bulk(s.name.to_ascii_lowercase().as_bytes());
        }
    } else if is(&sub, "GETKEYS") {
        getkeys(ctx);
    } else {
        ctx.err_subcommand(&sub);
    }
    Res::Ok
}

/// `COMMAND GETKEYS <command> <args…>`: the keys from the table's first/last/step positions,
/// with Redis's errors. Commands whose keys follow a count (LMPOP, BLMPOP, XREAD,
/// XREADGROUP; Redis finds them with key specs) are not resolved (docs/serve-differences.md).
fn getkeys(ctx: &mut Ctx) {
    let call = &ctx.args[2..];
    let Some(spec) = ctx.commands.lookup(&call[0]) else {
        ctx.out.err("ERR Invalid command specified");
        return;
    };
    let n = call.len() as i32;
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        ctx.out
            .err("ERR Invalid number of arguments specified for command");
        return;
    }
    if spec.first_key == 0 {
        if matches!(spec.name, "LMPOP" | "BLMPOP" | "XREAD" | "XREADGROUP") {
            ctx.out.err("ERR Invalid arguments specified for command");
        } else {
            ctx.out.err("ERR The command has no key arguments");
        }
        return;
    }
    let keys: Vec<&Bytes> = spec.keys(call).collect();
    ctx.out.array(keys.len());
    for k in keys {
        ctx.out.bulk(k);
    }
}

/// INFO reads the keyspace, so it is a data command: it runs under the keyspace lock (also
/// inside EXEC, where taking the lock again would deadlock).
pub fn info(ctx: &mut Ctx, db: &mut Db) -> Res {
    let sections: Vec<String> = ctx.args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let want = |s: &str| {
        sections.is_empty()
            || sections
                .iter()
                .any(|x| x == s || x == "all" || x == "everything" || x == "default")
    };
    let sh = ctx.shared;
    let st = &sh.stats;
    let mut s = String::new();
    if want("server") {
        let up = sh.started.elapsed().as_secs();
        let _ = write!(
            s,
            "# Server\r\nredis_version:{}\r\ncharla_version:{}\r\nserver_name:charla\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:tokio\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nexecutable:charla\r\n\r\n",
            crate::REDIS_VERSION,
            crate::VERSION,
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            sh.run_id,
            sh.config.port,
            up,
            up / 86400,
        );
    }
    if want("clients") {
        let blocked = st.blocked.load(Ordering::Relaxed);
        let _ = write!(
            s,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\npubsub_clients:{}\r\n\r\n",
            st.connected.load(Ordering::Relaxed),
            sh.config.maxclients,
            blocked,
            st.pubsub_clients.load(Ordering::Relaxed),
        );
    }
    let (mem, keyspace) = {
        let mem = if want("memory") {
            db.approx_memory()
        } else {
            0
        };
        let ks: Vec<(usize, usize, usize)> = db
            .dbs
            .iter()
            .enumerate()
            .filter(|(_, k)| !k.is_empty())
            .map(|(i, k)| (i, k.len(), k.volatile_len()))
            .collect();
        (mem, ks)
    };
    if want("memory") {
        let _ = write!(
            s,
            "# Memory\r\nused_memory:{mem}\r\nused_memory_human:{:.2}M\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n\r\n",
            mem as f64 / (1024.0 * 1024.0)
        );
    }
    if want("persistence") {
        let _ = write!(
            s,
            "# Persistence\r\nloading:0\r\naof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_last_write_status:{}\r\naof_rewrites:{}\r\naof_last_rewrite_max_lock_us:{}\r\naof_current_size:{}\r\nrdb_changes_since_last_save:0\r\n\r\n",
            u8::from(sh.config.appendonly),
            u8::from(sh.aof.as_ref().is_some_and(|a| a.rewriting())),
            if sh.aof.as_ref().is_some_and(|a| a.write_error().is_some()) {
                "err"
            } else {
                "ok"
            },
            st.aof_rewrites.load(Ordering::Relaxed),
            st.aof_rewrite_max_lock_us.load(Ordering::Relaxed),
            st.aof_size.load(Ordering::Relaxed),
        );
    }
    if want("stats") {
        let (channels, patterns) = {
            let ps = sh.lock_pubsub();
            (ps.channels(None).len(), ps.numpat())
        };
        let _ = write!(
            s,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ntotal_net_input_bytes:{}\r\ncharla_parser_bytes_scanned:{}\r\nclient_query_buffer_limit_disconnections:{}\r\nclient_output_buffer_limit_disconnections:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\n\r\n",
            st.total_connections.load(Ordering::Relaxed),
            st.commands.load(Ordering::Relaxed) + ctx.client.commands,
            st.net_input_bytes.load(Ordering::Relaxed),
            st.parser_bytes_scanned.load(Ordering::Relaxed),
            st.query_limit_disconnections.load(Ordering::Relaxed),
            st.output_limit_disconnections.load(Ordering::Relaxed),
            st.rejected.load(Ordering::Relaxed),
            st.expired.load(Ordering::Relaxed),
            channels,
            patterns,
        );
    }
    if want("replication") {
        s.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
    }
    if want("cpu") {
        let (sys, user) = cpu_seconds();
        let _ = write!(
            s,
            "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\n\r\n"
        );
    }
    // Not part of the default sections, as in Redis.
    if sections
        .iter()
        .any(|x| x == "commandstats" || x == "all" || x == "everything")
    {
        s.push_str("# Commandstats\r\n");
        let all = sh.call_stats(&ctx.client.call_stats);
        for (spec, c) in ctx.commands.all().iter().zip(&all) {
            if c.calls + c.rejected + c.failed == 0 {
                continue;
            }
            let per_call = if c.calls > 0 {
                c.nanos as f64 / 1000.0 / c.calls as f64
            } else {
                0.0
            };
            let _ = write!(
                s,
                "cmdstat_{}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
                spec.name.to_ascii_lowercase(),
                c.calls,
                c.nanos / 1000,
                c.rejected,
                c.failed
            );
        }
        s.push_str("\r\n");
    }
    if want("keyspace") {
        s.push_str("# Keyspace\r\n");
        for (i, n, v) in keyspace {
            let _ = write!(s, "db{i}:keys={n},expires={v},avg_ttl=0\r\n");
        }
        s.push_str("\r\n");
    }
    while s.ends_with("\r\n\r\n") {
        s.truncate(s.len() - 2);
    }
    ctx.out.verbatim(&s);
    Res::Ok
}

/// The process's system and user CPU time so far, in seconds (INFO cpu).
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return (0.0, 0.0);
        }
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_stime), secs(usage.ru_utime))
}

pub fn dbsize(ctx: &mut Ctx, db: &mut Db) -> Res {
    ctx.out.int(db.dbs[ctx.client.db].len() as i64);
    Res::Ok
}

fn flush_args_ok(ctx: &mut Ctx) -> bool {
    match ctx.args.len() {
        1 => true,
        2 if is(&ctx.args[1], "ASYNC") || is(&ctx.args[1], "SYNC") => true,
        _ => {
            ctx.out.err(super::args::SYNTAX);
            false
        }
    }
}

pub fn flushdb(ctx: &mut Ctx, db: &mut Db) -> Res {
    if flush_args_ok(ctx) {
        db.dbs[ctx.client.db].clear();
        ctx.out.ok();
    }
    Res::Ok
}

pub fn flushall(ctx: &mut Ctx, db: &mut Db) -> Res {
    if flush_args_ok(ctx) {
        for k in &mut db.dbs {
            k.clear();
        }
        ctx.out.ok();
    }
    Res::Ok
}

pub fn swapdb(ctx: &mut Ctx, db: &mut Db) -> Res {
    let (Some(a), Some(b)) = (
        super::args::parse_i64(&ctx.args[1]),
        super::args::parse_i64(&ctx.args[2]),
    ) else {
        ctx.out.err("ERR invalid first DB index");
        return Res::Ok;
    };
    if !(0..NUM_DBS as i64).contains(&a) || !(0..NUM_DBS as i64).contains(&b) {
        ctx.out.err("ERR DB index is out of range");
        return Res::Ok;
    }
    // (Dropping what an interrupted AOF rewrite had saved happens under the lock here; SWAPDB
    // during a rewrite is rare enough for that.)
    drop(db.swap_dbs(a as usize, b as usize));
    ctx.out.ok();
    Res::Ok
}

pub fn time(ctx: &mut Ctx) -> Res {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ctx.out.array(2);
    ctx.out.bulk(now.as_secs().to_string().as_bytes());
    ctx.out.bulk(now.subsec_micros().to_string().as_bytes());
    Res::Ok
}

pub fn config(ctx: &mut Ctx) -> Res {
    let sub = ctx.args[1].clone();
    let sh = ctx.shared;
    let c = &sh.config;
    if is(&sub, "GET") && ctx.args.len() >= 3 {
        let pubsub = sh.pubsub_limit();
        let params: Vec<(&str, String)> = vec![
            ("save", String::new()),
            ("appendonly", if c.appendonly { "yes" } else { "no" }.into()),
            ("appendfsync", c.appendfsync.as_str().into()),
            ("appendfilename", c.appendfilename.clone()),
            ("port", c.port.to_string()),
            ("bind", c.bind.clone()),
            ("dir", c.dir.display().to_string()),
            ("maxclients", c.maxclients.to_string()),
            ("databases", NUM_DBS.to_string()),
            (
                "protected-mode",
                if c.protected_mode { "yes" } else { "no" }.into(),
            ),
            ("requirepass", c.requirepass.clone().unwrap_or_default()),
            (
                "proto-max-bulk-len",
                sh.net
                    .proto_max_bulk_len
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
            (
                "client-query-buffer-limit",
                sh.query_buffer_limit().to_string(),
            ),
            (
                "client-output-buffer-limit",
                format!(
                    "normal 0 0 0 slave 268435456 67108864 60 pubsub {} {} {}",
                    pubsub.hard, pubsub.soft, pubsub.soft_seconds
                ),
            ),
            ("tcp-backlog", c.effective_backlog().to_string()),
            ("maxmemory", "0".into()),
            ("maxmemory-policy", "noeviction".into()),
            ("timeout", "0".into()),
            (
                "tcp-keepalive",
                sh.net.tcp_keepalive.load(Ordering::Relaxed).to_string(),
            ),
            (
                "notify-keyspace-events",
                crate::events::format(sh.net.notify_keyspace_events.load(Ordering::Relaxed)),
            ),
            ("cluster-enabled", "no".into()),
        ];
        let pats = ctx.args[2..].to_vec();
        let found: Vec<_> = params
            .iter()
            .filter(|(k, _)| {
                pats.iter()
                    .any(|p| glob_match(&p.to_ascii_lowercase(), k.as_bytes()))
            })
            .collect();
        ctx.out.map(found.len());
        for (k, v) in found {
            ctx.out.bulk(k.as_bytes());
            ctx.out.bulk(v.as_bytes());
        }
    } else if is(&sub, "SET") {
        // An odd count (a name without a value) is Redis's syntax error.
        if ctx.args.len().is_multiple_of(2) {
            config_set(ctx);
        } else {
            ctx.out.err(SYNTAX);
        }
    } else if is(&sub, "RESETSTAT") && ctx.args.len() == 2 {
        ctx.shared.reset_stats();
        ctx.client.call_stats.clear();
        ctx.client.commands = 0;
        ctx.out.ok();
    } else {
        ctx.err_subcommand(&sub);
    }
    Res::Ok
}

/// A setting CONFIG SET changes, parsed and checked before any is applied (Redis applies a
/// multi-parameter CONFIG SET all or nothing).
enum Setting {
    /// A setting at the only value charla serve has (client libraries and test harnesses set
    /// these): accepted because it is what already holds. Any other value is refused, never
    /// answered OK and ignored.
    AsItIs,
    ProtoMaxBulkLen(usize),
    QueryBufferLimit(usize),
    PubsubLimit(Option<crate::config::OutputLimit>),
    TcpKeepalive(u64),
    NotifyKeyspaceEvents(u32),
}

fn parse_setting(name: &str, value: &str) -> Result<Setting, &'static str> {
    // Redis's floor for both sizes: smaller ones would refuse ordinary commands.
    let size = |v: &str| {
        crate::config::parse_size(v)
            .filter(|&n| n >= 1024 * 1024)
            .ok_or("argument must be a memory value of at least 1mb")
    };
    Ok(match name {
        // No snapshots: only "no save points".
        "save" if value.trim().is_empty() => Setting::AsItIs,
        "save" => return Err("charla serve writes no snapshots (only \"\" is accepted; for persistence start it with --appendonly)"),
        "notify-keyspace-events" => match crate::events::parse(value) {
            None => return Err("Invalid event class character. Use 'Ag$lshzxeKEtmdn'."),
            // Refused rather than accepted and never sent.
            Some(f) if f & crate::events::KEY_MISS != 0 => {
                return Err("charla serve does not send key-miss events ('m')")
            }
            Some(f) => Setting::NotifyKeyspaceEvents(f),
        },
        "timeout" if value.trim() == "0" => Setting::AsItIs,
        "timeout" => return Err("charla serve does not close idle clients (only 0 is accepted)"),
        "maxmemory-policy" if value.eq_ignore_ascii_case("noeviction") => Setting::AsItIs,
        "maxmemory-policy" => {
            return Err("charla serve never evicts keys (only noeviction is accepted)")
        }
        "proto-max-bulk-len" => Setting::ProtoMaxBulkLen(size(value)?),
        "client-query-buffer-limit" => Setting::QueryBufferLimit(size(value)?),
        "client-output-buffer-limit" => Setting::PubsubLimit(
            crate::config::parse_output_limits(value)
                .map_err(|_| "argument must be <class> <hard> <soft> <seconds>, repeated")?,
        ),
        "tcp-keepalive" => Setting::TcpKeepalive(
            value
                .parse()
                .map_err(|_| "argument couldn't be parsed into an integer")?,
        ),
        _ => return Err("not supported by charla serve, use the command-line flag"),
    })
}

fn config_set(ctx: &mut Ctx) {
    let mut settings = Vec::new();
    for pair in ctx.args[2..].chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let value = String::from_utf8_lossy(&pair[1]);
        match parse_setting(&name, &value) {
            Ok(s) => settings.push(s),
            Err(why) => {
                ctx.out.err(&format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
                ));
                return;
            }
        }
    }
    let net = &ctx.shared.net;
    for s in settings {
        match s {
            Setting::AsItIs | Setting::PubsubLimit(None) => {}
            Setting::ProtoMaxBulkLen(n) => net.proto_max_bulk_len.store(n, Ordering::Relaxed),
            Setting::QueryBufferLimit(n) => {
                net.client_query_buffer_limit.store(n, Ordering::Relaxed)
            }
            Setting::PubsubLimit(Some(l)) => ctx.shared.set_pubsub_limit(l),
            // Applies to connections accepted from now on, as in Redis.
            Setting::TcpKeepalive(n) => net.tcp_keepalive.store(n, Ordering::Relaxed),
            Setting::NotifyKeyspaceEvents(f) => {
                net.notify_keyspace_events.store(f, Ordering::Relaxed)
            }
        }
    }
    ctx.out.ok();
}

pub fn bgrewriteaof(ctx: &mut Ctx) -> Res {
    match &ctx.shared.aof {
        Some(a) => {
            a.request_rewrite();
            ctx.out
                .simple("Background append only file rewriting started");
        }
        None => ctx
            .out
            .err("ERR append only file is not enabled (start with --appendonly)"),
    }
    Res::Ok
}

/// FUNCTION FLUSH and FUNCTION LIST: charla serve runs no scripts, so its function library is
/// always empty, and flushing it is done at once. Test harnesses send FUNCTION FLUSH before
/// anything else. Loading code is refused, plainly.
pub fn function(ctx: &mut Ctx) -> Res {
    let sub = ctx.arg(1).clone();
    if is(&sub, "FLUSH") {
        match ctx.args.len() {
            2 => ctx.out.ok(),
            3 if is(ctx.arg(2), "ASYNC") || is(ctx.arg(2), "SYNC") => ctx.out.ok(),
            3 => ctx
                .out
                .err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"),
            _ => ctx.err_subcommand(&sub),
        }
    } else if is(&sub, "LIST") {
        let mut i = 2;
        while i < ctx.args.len() {
            if is(ctx.arg(i), "WITHCODE") {
                i += 1;
            } else if is(ctx.arg(i), "LIBRARYNAME") {
                if i + 1 >= ctx.args.len() {
                    ctx.out.err("ERR library name argument was not given");
                    return Res::Ok;
                }
                i += 2;
            } else {
                let arg = String::from_utf8_lossy(ctx.arg(i)).into_owned();
                ctx.out.err(&format!("ERR Unknown argument {arg}"));
                return Res::Ok;
            }
        }
        ctx.out.array(0);
    } else if ["LOAD", "DELETE", "DUMP", "RESTORE", "STATS", "KILL"]
        .iter()
        .any(|s| is(&sub, s))
    {
        ctx.out.err(&format!(
            "ERR FUNCTION {} is not served: charla serve runs no scripts (FUNCTION FLUSH and FUNCTION LIST only)",
            String::from_utf8_lossy(&sub).to_ascii_uppercase()
        ));
    } else {
        let sub = String::from_utf8_lossy(&sub).into_owned();
        ctx.out.err(&format!(
            "ERR unknown subcommand '{sub}'. Try FUNCTION HELP."
        ));
    }
    Res::Ok
}

/// SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]: stop the server as SIGTERM does (the AOF
/// flushed and synced); the asking connection is closed without a reply, as in Redis.
/// charla serve writes no snapshots, so SAVE is refused rather than ignored; with nothing
/// ever in progress, ABORT has nothing to abort.
pub fn shutdown(ctx: &mut Ctx) -> Res {
    let (mut save, mut abort) = (false, false);
    for a in &ctx.args[1..] {
        if is(a, "SAVE") {
            save = true;
        } else if is(a, "ABORT") {
            abort = true;
        } else if !(is(a, "NOSAVE") || is(a, "NOW") || is(a, "FORCE")) {
            ctx.out.err(super::args::SYNTAX);
            return Res::Ok;
        }
    }
    if abort {
        if ctx.args.len() > 2 {
            ctx.out.err(super::args::SYNTAX);
        } else {
            ctx.out.err("ERR No shutdown in progress.");
        }
        return Res::Ok;
    }
    if save {
        ctx.out.err("ERR charla serve writes no snapshots, so SHUTDOWN SAVE is not served: use SHUTDOWN (the append-only file is flushed either way)");
        return Res::Ok;
    }
    ctx.shared.shutdown_asked.notify_one();
    Res::Close
}
