//! Append-only persistence.
//!
//! Write commands are appended, RESP-encoded, to a buffer inside the keyspace lock (so the
//! file order is the execution order). A dedicated writer thread moves the buffer to the file
//! and fsyncs per `appendfsync`; with `always`, connections hold their replies until the
//! writer reports their sequence number synced (group commit: one fsync covers every client
//! that wrote meanwhile). On start the file is replayed through the normal command path; a
//! truncated last command (a crash mid-write) is cut off, as Redis's `aof-load-truncated`.
//! When the file has grown past the minimum size and doubled since the last rewrite, it is
//! rewritten from the dataset into a temporary file that atomically replaces it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::cmd::{self, Ctx};
use crate::config::AppendFsync;
use crate::connection::Client;
use crate::db::{Db, Value};
use crate::frame::{encode_command, Out};
use crate::server::Shared;
use crate::stream::StreamId;
use crate::ServerError;

pub struct Aof {
    pub fsync: AppendFsync,
    path: PathBuf,
    synced: watch::Sender<u64>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    waker: Mutex<Option<std::thread::Thread>>,
    rewrite: AtomicBool,
    stop: AtomicBool,
}

impl Aof {
    /// Replay the existing file into `shared` (not yet serving) and turn propagation on.
    pub fn open(shared: &Shared) -> Result<Aof, ServerError> {
        let cfg = &shared.config;
        std::fs::create_dir_all(&cfg.dir).map_err(|e| ServerError::Io {
            what: format!("creating {}", cfg.dir.display()),
            source: e,
        })?;
        let path = cfg.dir.join(&cfg.appendfilename);
        if path.exists() {
            let t = Instant::now();
            let n = replay(shared, &path)?;
            tracing::info!(path = %path.display(), commands = n, elapsed = ?t.elapsed(), "append-only file loaded");
        }
        {
            let mut db = shared.lock_db();
            db.aof_on = true;
            db.aof_db = usize::MAX;
            db.aof_buf.clear();
            db.aof_seq = 0;
        }
        let (synced, _) = watch::channel(0);
        Ok(Aof {
            fsync: cfg.appendfsync,
            path,
            synced,
            thread: Mutex::new(None),
            waker: Mutex::new(None),
            rewrite: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        })
    }

    /// Start the writer thread.
    pub fn start(&self, shared: Arc<Shared>) -> Result<(), ServerError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| ServerError::Io {
                what: format!("opening {}", self.path.display()),
                source: e,
            })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let h = std::thread::Builder::new()
            .name("charla-aof".into())
            .spawn(move || writer(shared, file, size))
            .map_err(|e| ServerError::Io {
                what: "starting the AOF writer thread".into(),
                source: e,
            })?;
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(h.thread().clone());
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        Ok(())
    }

    fn wake(&self) {
        if let Some(t) = self
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            t.unpark();
        }
    }

    /// Wait until everything up to `seq` is fsynced (appendfsync always).
    pub async fn wait_synced(&self, seq: u64) {
        if seq == 0 || *self.synced.borrow() >= seq {
            return;
        }
        let mut rx = self.synced.subscribe();
        self.wake();
        let _ = rx.wait_for(|v| *v >= seq).await;
    }

    pub fn request_rewrite(&self) {
        self.rewrite.store(true, Ordering::Relaxed);
        self.wake();
    }

    /// Flush, fsync and stop the writer (graceful shutdown).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake();
        if let Some(h) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }
}

fn writer(shared: Arc<Shared>, mut file: File, mut size: u64) {
    let Some(aof) = shared.aof.as_ref() else {
        return;
    };
    let mut base = size.max(1);
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    let park = match aof.fsync {
        AppendFsync::Always => Duration::from_millis(2),
        _ => Duration::from_millis(50),
    };
    loop {
        let stopping = aof.stop.load(Ordering::Relaxed);
        let (buf, seq) = {
            let mut db = shared.lock_db();
            (std::mem::take(&mut db.aof_buf), db.aof_seq)
        };
        if !buf.is_empty() {
            // Keep retrying: with fsync=always, nothing is acknowledged until this succeeds.
            while let Err(e) = file.write_all(&buf) {
                tracing::error!(error = %e, "writing the append-only file failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            size += buf.len() as u64;
            shared.stats.aof_size.store(size, Ordering::Relaxed);
            unsynced = true;
        }
        let must_sync = match aof.fsync {
            AppendFsync::Always => unsynced,
            AppendFsync::EverySec => {
                unsynced && (stopping || last_sync.elapsed() >= Duration::from_secs(1))
            }
            AppendFsync::No => stopping && unsynced,
        };
        if must_sync {
            if let Err(e) = file.sync_data() {
                tracing::error!(error = %e, "fsync of the append-only file failed");
            } else {
                unsynced = false;
                last_sync = Instant::now();
            }
        }
        if !unsynced || aof.fsync != AppendFsync::Always {
            aof.synced.send_replace(seq);
        }
        if stopping {
            return;
        }
        let grown = size > shared.config.aof_rewrite_min_size && size >= base * 2;
        if aof.rewrite.swap(false, Ordering::Relaxed) || grown {
            match rewrite(&shared, &aof.path) {
                Ok((f, s, seq)) => {
                    file = f;
                    size = s;
                    base = s.max(1);
                    shared.stats.aof_rewrites.fetch_add(1, Ordering::Relaxed);
                    shared.stats.aof_size.store(s, Ordering::Relaxed);
                    aof.synced.send_replace(seq);
                    tracing::info!(size = s, "append-only file rewritten");
                }
                Err(e) => tracing::error!(error = %e, "append-only file rewrite failed"),
            }
        }
        std::thread::park_timeout(park);
    }
}

/// Write the dataset as commands to a temp file, fsync it and rename it over the AOF.
fn rewrite(shared: &Shared, path: &std::path::Path) -> std::io::Result<(File, u64, u64)> {
    let (snap, seq) = {
        let mut db = shared.lock_db();
        let snap = snapshot(&db);
        // Everything pending is part of the snapshot.
        db.aof_buf.clear();
        db.aof_db = usize::MAX;
        (snap, db.aof_seq)
    };
    let tmp = path.with_extension("aof.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&snap)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let f = OpenOptions::new().append(true).open(path)?;
    Ok((f, snap.len() as u64, seq))
}

/// The dataset as a sequence of commands that rebuilds it.
pub fn snapshot(db: &Db) -> Vec<u8> {
    let mut out = Vec::new();
    let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    for (i, ks) in db.dbs.iter().enumerate() {
        if ks.is_empty() {
            continue;
        }
        encode_command(&mut out, &[b("SELECT"), b(&i.to_string())]);
        for (k, e) in ks.iter() {
            match &e.value {
                Value::Str(v) => encode_command(&mut out, &[b("SET"), k.clone(), v.clone()]),
                Value::List(l) => {
                    let items: Vec<Bytes> = l.iter().cloned().collect();
                    for chunk in items.chunks(64) {
                        let mut c = vec![b("RPUSH"), k.clone()];
                        c.extend(chunk.iter().cloned());
                        encode_command(&mut out, &c);
                    }
                }
                Value::Hash(h) => {
                    let pairs: Vec<(&Bytes, &Bytes)> = h.iter().collect();
                    for chunk in pairs.chunks(64) {
                        let mut c = vec![b("HSET"), k.clone()];
                        for (f, v) in chunk {
                            c.push((*f).clone());
                            c.push((*v).clone());
                        }
                        encode_command(&mut out, &c);
                    }
                }
                Value::Stream(s) => {
                    for (id, f) in &s.entries {
                        let mut c = vec![b("XADD"), k.clone(), id.to_bytes()];
                        c.extend(f.iter().cloned());
                        encode_command(&mut out, &c);
                    }
                    if s.entries.is_empty() {
                        // Create the empty stream: a group created with MKSTREAM, then removed.
                        encode_command(
                            &mut out,
                            &[
                                b("XGROUP"),
                                b("CREATE"),
                                k.clone(),
                                b("\u{1}tmp"),
                                b("0"),
                                b("MKSTREAM"),
                            ],
                        );
                        encode_command(
                            &mut out,
                            &[b("XGROUP"), b("DESTROY"), k.clone(), b("\u{1}tmp")],
                        );
                    }
                    encode_command(
                        &mut out,
                        &[
                            b("XSETID"),
                            k.clone(),
                            s.last_id.to_bytes(),
                            b("ENTRIESADDED"),
                            b(&s.entries_added.to_string()),
                            b("MAXDELETEDID"),
                            s.max_deleted_id.to_bytes(),
                        ],
                    );
                    for (gname, g) in &s.groups {
                        let mut c = vec![
                            b("XGROUP"),
                            b("CREATE"),
                            k.clone(),
                            gname.clone(),
                            g.last_id.to_bytes(),
                        ];
                        if let Some(r) = g.entries_read {
                            c.push(b("ENTRIESREAD"));
                            c.push(b(&r.to_string()));
                        }
                        encode_command(&mut out, &c);
                        for cname in g.consumers.keys() {
                            encode_command(
                                &mut out,
                                &[
                                    b("XGROUP"),
                                    b("CREATECONSUMER"),
                                    k.clone(),
                                    gname.clone(),
                                    cname.clone(),
                                ],
                            );
                        }
                        for (id, p) in &g.pel {
                            encode_command(
                                &mut out,
                                &[
                                    b("XCLAIM"),
                                    k.clone(),
                                    gname.clone(),
                                    p.consumer.clone(),
                                    b("0"),
                                    id.to_bytes(),
                                    b("TIME"),
                                    b(&p.delivery_time.to_string()),
                                    b("RETRYCOUNT"),
                                    b(&p.delivery_count.to_string()),
                                    b("FORCE"),
                                    b("JUSTID"),
                                ],
                            );
                        }
                    }
                }
            }
            if e.expire_at != 0 {
                encode_command(
                    &mut out,
                    &[b("PEXPIREAT"), k.clone(), b(&e.expire_at.to_string())],
                );
            }
        }
    }
    let _ = StreamId::MIN;
    out
}

/// How a walk over the file ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every byte was a complete command, outside any MULTI block.
    Clean,
    /// The last command was cut short (a crash while it was being written).
    TruncatedTail,
    /// A MULTI block has no EXEC (a crash while a transaction was being written).
    OpenMulti,
    /// Bytes that are not a well-formed RESP command.
    Garbage { offset: u64, reason: String },
}

/// The result of walking the file: where it ended and how much of it is kept.
#[derive(Debug)]
pub struct Walk {
    pub ending: Ending,
    /// Length of the prefix made of whole commands and whole transactions.
    pub keep: u64,
    /// Commands in that prefix.
    pub commands: usize,
}

/// One command parsed from the file, or why there is none.
enum Parsed {
    Command {
        args: Vec<Bytes>,
        consumed: usize,
    },
    /// A well-formed prefix of a command that the file ends in the middle of.
    Incomplete,
    /// Not RESP: the offset (relative to the command's start) and what is wrong there.
    Bad {
        at: usize,
        reason: &'static str,
    },
}

/// Parse a `<prefix><digits>\r\n` header line at `pos`; digits only, at most 19 of them.
fn header(
    data: &[u8],
    pos: usize,
    prefix: u8,
) -> Result<Option<(usize, usize)>, (usize, &'static str)> {
    match data.get(pos) {
        None => return Ok(None),
        Some(&b) if b != prefix => {
            return Err((
                pos,
                if prefix == b'*' {
                    "expected '*' (the start of a command)"
                } else {
                    "expected '$' (the start of an argument)"
                },
            ))
        }
        Some(_) => {}
    }
    let mut n: usize = 0;
    let mut i = pos + 1;
    loop {
        match data.get(i) {
            None => return Ok(None),
            Some(b) if b.is_ascii_digit() => {
                if i - pos > 19 {
                    return Err((i, "length too long"));
                }
                n = n * 10 + usize::from(b - b'0');
            }
            Some(b'\r') if i > pos + 1 => {
                return match data.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((n, i + 2))),
                    Some(_) => Err((i + 1, "expected '\\n' after '\\r'")),
                }
            }
            Some(_) => return Err((i, "expected a length (digits, then \\r\\n)")),
        }
        i += 1;
    }
}

/// Strict RESP multibulk parser for the loader: `*N\r\n` then N × `$len\r\n<bytes>\r\n`, N ≥ 1.
/// Unlike the network parser it accepts no inline commands, blank lines or other leniency:
/// the file is written only by charla, so anything else is damage, not a client's style.
fn parse_command(data: &Bytes, pos: usize) -> Parsed {
    let bad = |(at, reason): (usize, &'static str)| Parsed::Bad {
        at: at - pos,
        reason,
    };
    let (n, mut i) = match header(data, pos, b'*') {
        Ok(Some(x)) => x,
        Ok(None) => return Parsed::Incomplete,
        Err(e) => return bad(e),
    };
    if n == 0 {
        return bad((pos, "a command with no arguments"));
    }
    // The count is only trusted as far as the file can hold that many arguments.
    let mut args = Vec::with_capacity(n.min((data.len() - i) / 4 + 1));
    for _ in 0..n {
        let (len, at) = match header(data, i, b'$') {
            Ok(Some(x)) => x,
            Ok(None) => return Parsed::Incomplete,
            Err(e) => return bad(e),
        };
        let end = at.saturating_add(len);
        if end.saturating_add(2) > data.len() {
            // Either the tail of a crash or a length pointing past the end: only the bytes that
            // are there can be checked.
            if end < data.len() && data[end] != b'\r' {
                return bad((end, "argument not followed by \\r\\n"));
            }
            return Parsed::Incomplete;
        }
        if &data[end..end + 2] != b"\r\n" {
            return bad((end, "argument not followed by \\r\\n"));
        }
        args.push(data.slice(at..end));
        i = end + 2;
    }
    Parsed::Command {
        args,
        consumed: i - pos,
    }
}

/// Walk the file's commands in order, handing each one inside the kept prefix to `run` (a
/// transaction's commands are handed over as they come; the loader's client queues them until
/// EXEC, so an unfinished MULTI block never executes). Unknown command names count as garbage:
/// charla writes only commands it knows.
pub fn walk(data: &Bytes, mut run: impl FnMut(&[Bytes])) -> Walk {
    let mut pos = 0usize;
    let mut commands = 0usize;
    let mut multi_start: Option<(usize, usize)> = None;
    let ending = loop {
        if pos == data.len() {
            break if multi_start.is_some() {
                Ending::OpenMulti
            } else {
                Ending::Clean
            };
        }
        match parse_command(data, pos) {
            Parsed::Incomplete => break Ending::TruncatedTail,
            Parsed::Bad { at, reason } => {
                break Ending::Garbage {
                    offset: (pos + at) as u64,
                    reason: reason.into(),
                }
            }
            Parsed::Command { args, consumed } => {
                let Some(spec) = cmd::lookup(&args[0]) else {
                    break Ending::Garbage {
                        offset: pos as u64,
                        reason: format!("unknown command '{}'", String::from_utf8_lossy(&args[0])),
                    };
                };
                match spec.name {
                    "MULTI" if multi_start.is_some() => {
                        break Ending::Garbage {
                            offset: pos as u64,
                            reason: "MULTI inside MULTI".into(),
                        }
                    }
                    "MULTI" => multi_start = Some((pos, commands)),
                    "EXEC" if multi_start.is_none() => {
                        break Ending::Garbage {
                            offset: pos as u64,
                            reason: "EXEC without MULTI".into(),
                        }
                    }
                    "EXEC" => multi_start = None,
                    _ => {}
                }
                run(&args);
                pos += consumed;
                commands += 1;
            }
        }
    };
    // Whatever follows the last whole command, or the start of an unfinished MULTI block, is
    // not kept.
    let (keep, commands) = multi_start.unwrap_or((pos, commands));
    Walk {
        ending,
        keep: keep as u64,
        commands,
    }
}

fn read_file(path: &Path) -> Result<Bytes, ServerError> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|e| ServerError::Io {
            what: format!("reading {}", path.display()),
            source: e,
        })
}

fn truncate(path: &Path, len: u64) -> Result<(), ServerError> {
    let io = |e| ServerError::Io {
        what: format!("truncating {}", path.display()),
        source: e,
    };
    let f = OpenOptions::new().write(true).open(path).map_err(io)?;
    f.set_len(len).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Run every command of the file. A truncated tail (a crash mid-write), including an unfinished
/// MULTI block, is cut off as Redis's `aof-load-truncated yes` does: otherwise the next writes
/// would be appended inside the dangling transaction and never replay. Anything else that is not
/// RESP stops the start with the file and byte offset (`charla serve --aof-repair` cuts it).
/// Returns how many commands ran.
fn replay(shared: &Shared, path: &Path) -> Result<usize, ServerError> {
    let data = read_file(path)?;
    let (mut client, _rx) = Client::new(0, None, true);
    let mut out = Out::new();
    let w = walk(&data, |args| {
        let mut ctx = Ctx {
            args,
            out: &mut out,
            client: &mut client,
            shared,
            dirty: false,
            propagated: false,
        };
        let _ = cmd::dispatch(&mut ctx);
        out.buf.clear();
    });
    match w.ending {
        Ending::Clean => {}
        Ending::Garbage { offset, reason } => {
            return Err(ServerError::AofCorrupt {
                path: path.to_path_buf(),
                offset,
                reason,
            })
        }
        Ending::TruncatedTail | Ending::OpenMulti => {
            let what = if w.ending == Ending::OpenMulti || client.multi.is_some() {
                "an unfinished transaction (MULTI without EXEC), discarded whole"
            } else {
                "a truncated command"
            };
            tracing::warn!(
                path = %path.display(),
                valid = w.keep,
                total = data.len(),
                "append-only file ends with {what} (crash while writing); truncating it"
            );
            truncate(path, w.keep)?;
        }
    }
    Ok(w.commands)
}

/// What [`repair`] did.
#[derive(Debug)]
pub struct Repair {
    /// How the file ended before the repair.
    pub ending: Ending,
    /// Its length before and after.
    pub old_len: u64,
    pub new_len: u64,
    /// Whole commands kept.
    pub commands: usize,
    /// The first bytes that were cut, for the operator to see what went.
    pub cut_preview: String,
}

/// Like `redis-check-aof --fix`: keep the longest prefix of whole commands and whole
/// transactions and cut the rest (everything from the first damaged byte, or the start of the
/// MULTI block it is in, to the end — later commands cannot be trusted to line up).
pub fn repair(path: &Path) -> Result<Repair, ServerError> {
    let data = read_file(path)?;
    let w = walk(&data, |_| {});
    let keep = w.keep as usize;
    let cut = &data[keep.min(data.len())..];
    let preview: String = cut
        .iter()
        .take(80)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if keep < data.len() {
        truncate(path, w.keep)?;
    }
    Ok(Repair {
        ending: w.ending,
        old_len: data.len() as u64,
        new_len: w.keep,
        commands: w.commands,
        cut_preview: preview,
    })
}
