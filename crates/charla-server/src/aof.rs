//! Append-only persistence.
//!
//! Write commands are appended, RESP-encoded, to a buffer inside the keyspace lock (so the
//! file order is the execution order; a transaction is framed in MULTI … EXEC). A dedicated
//! writer thread moves the buffer to the file and fsyncs per `appendfsync`; with `always`,
//! connections hold their replies until the writer reports their sequence number synced (group
//! commit: one fsync covers every client that wrote meanwhile).
//!
//! Faults, as Redis handles them: a short write is continued from where it stopped (never
//! written again from the start, which would duplicate commands); a failed write or fsync
//! turns the server read-only — write commands get `-MISCONF Errors writing to the AOF file:
//! …` — and nothing more is acknowledged as synced. A failed write is retried from where it
//! stopped; a failed fsync is not retried (after one, Linux may have dropped the dirty pages
//! and a second fsync can succeed with the data lost), the writer instead rewrites the whole
//! dataset into a new file and fsyncs that. Either success ends the read-only state.
//!
//! On start the file is replayed through the normal command path ([`walk`]): only well-formed
//! RESP is accepted; a truncated last command or unfinished MULTI block (a crash mid-write) is
//! cut off, as Redis's `aof-load-truncated`; anything else stops the start with the byte
//! offset ([`repair`] is `charla serve --aof-repair`).
//!
//! When the file has grown past the minimum size and doubled since the last rewrite it is
//! rewritten without stopping the clients: the writer thread serialises the dataset a few
//! hundred keys per lock acquisition, while a copy-on-write hook in the keyspace keeps the value
//! a key had when the rewrite began for keys changed before the rewriter reached them (see
//! `db::Snapshot`). The new file is that point-in-time image followed by every command
//! appended since; it is fsynced and renamed over the old one, which kept receiving the same
//! commands (and fsyncs) all along.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::client::Client;
use crate::cmd::table;
use crate::config::AppendFsync;
use crate::db::{Entry, Value, NUM_DBS};
use crate::exec;
use crate::frame::{encode_command, Out};
use crate::persistence::Aof;
use crate::shared::Shared;
use crate::ServerError;

/// Fault injection for tests. Nothing in the server sets these.
#[doc(hidden)]
pub mod fault {
    use std::sync::atomic::AtomicBool;
    /// Make every fsync of the append-only file fail with an I/O error.
    pub static FAIL_FSYNC: AtomicBool = AtomicBool::new(false);
}

/// A rewrite serialises at most this many keys, or about this many bytes, and passes at most
/// this many slots per lock acquisition (one huge value is still serialised whole).
const REWRITE_CHUNK_KEYS: usize = 256;
const REWRITE_CHUNK_BYTES: usize = 256 * 1024;
const REWRITE_CHUNK_SLOTS: usize = 8192;

/// Replay the existing file into `shared` (not yet serving), turn logging on, and return the
/// file's state handle for [`Shared::aof`].
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
    Ok(Aof::new(cfg.appendfsync, path))
}

/// Start the writer thread of `shared`'s append-only file (no-op without one).
pub fn start(shared: &Arc<Shared>) -> Result<(), ServerError> {
    let Some(aof) = &shared.aof else {
        return Ok(());
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&aof.path)
        .map_err(|e| ServerError::Io {
            what: format!("opening {}", aof.path.display()),
            source: e,
        })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let sh = shared.clone();
    let h = std::thread::Builder::new()
        .name("charla-aof".into())
        .spawn(move || Writer::new(file, size).run(&sh))
        .map_err(|e| ServerError::Io {
            what: "starting the AOF writer thread".into(),
            source: e,
        })?;
    aof.attach_writer(h);
    Ok(())
}

fn sync_file(f: &File) -> std::io::Result<()> {
    if fault::FAIL_FSYNC.load(Ordering::Relaxed) {
        return Err(std::io::Error::other("injected fsync failure"));
    }
    f.sync_data()
}

/// Why the file is not trusted right now.
#[derive(Debug, PartialEq, Eq)]
enum Health {
    Ok,
    /// `pending` could not be written completely; retry the rest.
    WriteFailed,
    /// An fsync failed: only a rewritten, fsynced file is trusted again.
    FsyncFailed,
}

/// The writer thread's state.
struct Writer {
    file: File,
    size: u64,
    /// Bytes taken from the keyspace's buffer and not yet written, from `written` on.
    pending: Vec<u8>,
    written: usize,
    /// Sequence number of the last command in `pending` (or written).
    taken_seq: u64,
    /// Sequence number of the last command whose bytes are all in the file.
    written_seq: u64,
    synced_seq: u64,
    last_sync: Instant,
    health: Health,
    last_attempt: Instant,
    /// File size after the last rewrite (rewrite again when it doubles).
    base: u64,
    rewrite: Option<Rewrite>,
    next_rewrite_try: Instant,
    /// Rewrites failed in a row (each retry waits twice as long, up to a minute: a retry
    /// serialises the whole dataset).
    rewrite_failures: u32,
}

/// A rewrite in progress.
struct Rewrite {
    tmp_path: PathBuf,
    tmp: File,
    /// Next database to serialise.
    db: usize,
    /// Did this database's SELECT go out yet?
    selected: bool,
    /// Every command appended since the rewrite began (goes after the image).
    diff: Vec<u8>,
    buf: Vec<u8>,
    started: Instant,
    max_lock: Duration,
}

impl Writer {
    fn new(file: File, size: u64) -> Writer {
        let now = Instant::now();
        Writer {
            file,
            size,
            pending: Vec::new(),
            written: 0,
            taken_seq: 0,
            written_seq: 0,
            synced_seq: 0,
            last_sync: now,
            health: Health::Ok,
            last_attempt: now,
            base: size.max(1),
            rewrite: None,
            next_rewrite_try: now,
            rewrite_failures: 0,
        }
    }

    fn run(mut self, shared: &Shared) {
        let Some(aof) = shared.aof.as_ref() else {
            return;
        };
        let park = match aof.fsync {
            AppendFsync::Always => Duration::from_millis(2),
            _ => Duration::from_millis(50),
        };
        loop {
            let stopping = aof.stop.load(Ordering::Relaxed);
            // A rewrite step (one chunk under the lock) also takes the buffer, in the same
            // critical section, so the image/diff boundary is exact.
            if self.rewrite.is_some() {
                self.rewrite_step(shared, aof);
            } else {
                let mut db = shared.lock_db();
                let seq = db.aof_seq;
                self.take(&mut db.aof_buf, seq);
            }
            self.write_pending(aof);
            shared.stats.aof_size.store(self.size, Ordering::Relaxed);
            self.sync(aof, stopping);
            if stopping {
                if let Some(rw) = self.rewrite.take() {
                    abandon(shared, rw, aof, None);
                }
                return;
            }
            let grown =
                self.size > shared.config.aof_rewrite_min_size && self.size >= self.base * 2;
            let wanted =
                aof.rewrite.load(Ordering::Relaxed) || grown || self.health == Health::FsyncFailed;
            if self.rewrite.is_none() && wanted && Instant::now() >= self.next_rewrite_try {
                aof.rewrite.store(false, Ordering::Relaxed);
                self.rewrite_begin(shared, aof);
            }
            if self.rewrite.is_none() {
                std::thread::park_timeout(park);
            }
        }
    }

    fn take(&mut self, buf: &mut Vec<u8>, seq: u64) {
        if buf.is_empty() {
            return;
        }
        if self.written == self.pending.len() {
            self.pending.clear();
            self.written = 0;
        }
        if self.pending.is_empty() {
            std::mem::swap(&mut self.pending, buf);
        } else {
            self.pending.extend_from_slice(buf);
            buf.clear();
        }
        self.taken_seq = seq;
    }

    /// Write what is pending, continuing after whatever part already reached the file. While
    /// failing, retry at most every 100 ms.
    fn write_pending(&mut self, aof: &Aof) {
        if self.written == self.pending.len() {
            self.written_seq = self.taken_seq;
            return;
        }
        if self.health == Health::WriteFailed
            && self.last_attempt.elapsed() < Duration::from_millis(100)
        {
            return;
        }
        self.last_attempt = Instant::now();
        while self.written < self.pending.len() {
            match self.file.write(&self.pending[self.written..]) {
                Ok(0) => {
                    aof.fail(
                        "write",
                        &std::io::Error::from(std::io::ErrorKind::WriteZero),
                    );
                    self.health = Health::WriteFailed;
                    return;
                }
                Ok(n) => {
                    self.written += n;
                    self.size += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    aof.fail("write", &e);
                    if self.health == Health::Ok {
                        self.health = Health::WriteFailed;
                    }
                    return;
                }
            }
        }
        self.written_seq = self.taken_seq;
        if self.health == Health::WriteFailed {
            // Durable again once the fsync below succeeds (or at once with fsync no).
            self.health = Health::Ok;
            if aof.fsync == AppendFsync::No {
                aof.recovered();
            }
        }
    }

    fn sync(&mut self, aof: &Aof, stopping: bool) {
        if self.health != Health::Ok {
            return;
        }
        let unsynced = self.written_seq > self.synced_seq;
        let must = match aof.fsync {
            AppendFsync::Always => unsynced,
            AppendFsync::EverySec => {
                unsynced && (stopping || self.last_sync.elapsed() >= Duration::from_secs(1))
            }
            AppendFsync::No => stopping && unsynced,
        };
        if must {
            if let Err(e) = sync_file(&self.file) {
                aof.fail("fsync", &e);
                self.health = Health::FsyncFailed;
                return;
            }
            self.synced_seq = self.written_seq;
            self.last_sync = Instant::now();
            aof.recovered();
        } else if aof.fsync != AppendFsync::Always {
            // Acknowledged without waiting for the disk, by configuration.
            self.synced_seq = self.written_seq;
        }
        let synced = self.synced_seq;
        aof.synced.send_if_modified(|v| {
            let changed = *v != synced;
            *v = synced;
            changed
        });
    }

    fn rewrite_failed(&mut self) {
        let wait = Duration::from_secs(1) * 2u32.saturating_pow(self.rewrite_failures.min(6));
        self.rewrite_failures = self.rewrite_failures.saturating_add(1);
        self.next_rewrite_try = Instant::now() + wait.min(Duration::from_secs(60));
    }

    fn rewrite_begin(&mut self, shared: &Shared, aof: &Aof) {
        let tmp_path = aof.path.with_extension("aof.tmp");
        let tmp = match File::create(&tmp_path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, path = %tmp_path.display(), "cannot start the append-only file rewrite");
                self.rewrite_failed();
                return;
            }
        };
        let started = Instant::now();
        let held;
        {
            let mut db = shared.lock_db();
            let t = Instant::now();
            // Everything before this point is in the image; everything after goes in the diff.
            let seq = db.aof_seq;
            self.take(&mut db.aof_buf, seq);
            for ks in &mut db.dbs {
                ks.snapshot_begin();
            }
            db.rewrite_aborted = false;
            // The diff must start by selecting its database.
            db.aof_db = usize::MAX;
            held = t.elapsed();
        }
        aof.rewriting.store(true, Ordering::Relaxed);
        tracing::info!("append-only file rewrite started");
        self.rewrite = Some(Rewrite {
            tmp_path,
            tmp,
            db: 0,
            selected: false,
            diff: Vec::new(),
            buf: Vec::new(),
            started,
            max_lock: held,
        });
    }

    /// Serialise one chunk under the lock, write it to the new file without the lock; finish
    /// when every database is done.
    fn rewrite_step(&mut self, shared: &Shared, aof: &Aof) {
        let Some(mut rw) = self.rewrite.take() else {
            return;
        };
        let mut leftovers = None;
        let mut db_done = false;
        let (aborted, (mut taken, seq)) = {
            let mut db = shared.lock_db();
            let t = Instant::now();
            let aborted = db.rewrite_aborted;
            if !aborted && rw.db < NUM_DBS {
                let i = rw.db;
                let (buf, selected) = (&mut rw.buf, &mut rw.selected);
                let mut keys = 0;
                db_done = db.dbs[i].snapshot_step(REWRITE_CHUNK_SLOTS, |k, e| {
                    if !*selected {
                        select(buf, i);
                        *selected = true;
                    }
                    encode_entry(buf, k, e);
                    keys += 1;
                    keys < REWRITE_CHUNK_KEYS && buf.len() < REWRITE_CHUNK_BYTES
                });
                if db_done {
                    leftovers = Some(db.dbs[i].snapshot_end());
                }
            }
            // Same critical section: what was appended up to here goes in the diff, and the
            // image reflects exactly the state before it. (Taken in O(1); copied below.)
            let taken = (std::mem::take(&mut db.aof_buf), db.aof_seq);
            drop(db);
            rw.max_lock = rw.max_lock.max(t.elapsed());
            (aborted, taken)
        };
        rw.diff.extend_from_slice(&taken);
        self.take(&mut taken, seq);
        if aborted {
            // SWAPDB moved databases under the rewriter's feet: start over later.
            abandon(shared, rw, aof, Some("SWAPDB ran during the rewrite"));
            aof.rewrite.store(true, Ordering::Relaxed);
            return;
        }
        // Outside the lock: the keys deleted before the rewriter reached them, as they were.
        for (k, e) in leftovers.into_iter().flat_map(|r| r.into_entries()) {
            if !rw.selected {
                select(&mut rw.buf, rw.db);
                rw.selected = true;
            }
            encode_entry(&mut rw.buf, &k, &e);
        }
        if db_done {
            rw.db += 1;
            rw.selected = false;
        }
        if let Err(e) = rw.tmp.write_all(&rw.buf) {
            let why = format!("writing the new file: {e}");
            abandon(shared, rw, aof, Some(&why));
            self.rewrite_failed();
            return;
        }
        rw.buf.clear();
        if rw.db < NUM_DBS {
            self.rewrite = Some(rw);
            return;
        }
        self.rewrite_finish(shared, aof, rw);
    }

    /// The image is complete and the diff holds everything taken since it began: write the
    /// diff, fsync, rename over the old file and continue appending to the new one.
    fn rewrite_finish(&mut self, shared: &Shared, aof: &Aof, mut rw: Rewrite) {
        let res = (|| -> std::io::Result<u64> {
            rw.tmp.write_all(&rw.diff)?;
            sync_file(&rw.tmp)?;
            std::fs::rename(&rw.tmp_path, &aof.path)?;
            if let Some(dir) = aof.path.parent() {
                // Make the rename itself durable.
                if let Ok(d) = File::open(dir) {
                    d.sync_all()?;
                }
            }
            rw.tmp.metadata().map(|m| m.len())
        })();
        let size = match res {
            Ok(s) => s,
            Err(e) => {
                let why = format!("finishing the new file: {e}");
                abandon(shared, rw, aof, Some(&why));
                self.rewrite_failed();
                return;
            }
        };
        // Everything taken so far is in the new file and on disk; what the old file still
        // owed (after a failed write) is in it too.
        self.file = rw.tmp;
        self.size = size;
        self.base = size.max(1);
        self.pending.clear();
        self.written = 0;
        self.written_seq = self.taken_seq;
        self.synced_seq = self.taken_seq;
        self.last_sync = Instant::now();
        self.health = Health::Ok;
        self.rewrite_failures = 0;
        aof.recovered();
        aof.synced.send_replace(self.synced_seq);
        aof.rewriting.store(false, Ordering::Relaxed);
        shared.stats.aof_rewrites.fetch_add(1, Ordering::Relaxed);
        shared.stats.aof_size.store(size, Ordering::Relaxed);
        shared.stats.aof_rewrite_max_lock_us.store(
            u64::try_from(rw.max_lock.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        tracing::info!(
            size,
            elapsed = ?rw.started.elapsed(),
            longest_lock_hold = ?rw.max_lock,
            "append-only file rewritten"
        );
    }
}

/// Give up a rewrite: close the snapshots, delete the temporary file.
fn abandon(shared: &Shared, rw: Rewrite, aof: &Aof, why: Option<&str>) {
    let rest: Vec<_> = {
        let mut db = shared.lock_db();
        db.rewrite_aborted = false;
        db.dbs.iter_mut().map(|ks| ks.snapshot_end()).collect()
    };
    drop(rest);
    drop(rw.tmp);
    let _ = std::fs::remove_file(&rw.tmp_path);
    aof.rewriting.store(false, Ordering::Relaxed);
    if let Some(why) = why {
        tracing::error!(reason = why, "append-only file rewrite abandoned");
    }
}

fn select(out: &mut Vec<u8>, db: usize) {
    let n = db.to_string();
    encode_command(out, &[b"SELECT".as_slice(), n.as_bytes()]);
}

/// One key as the commands that rebuild it.
fn encode_entry(out: &mut Vec<u8>, k: &Bytes, e: &Entry) {
    let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    match &e.value {
        Value::Str(v) => encode_command(out, &[b("SET"), k.clone(), v.clone()]),
        Value::List(l) => {
            let items: Vec<Bytes> = l.iter().cloned().collect();
            for chunk in items.chunks(64) {
                let mut c = vec![b("RPUSH"), k.clone()];
                c.extend(chunk.iter().cloned());
                encode_command(out, &c);
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
                encode_command(out, &c);
            }
        }
        Value::Set(set) => {
            let members: Vec<&Bytes> = set.iter().collect();
            for chunk in members.chunks(64) {
                let mut c = vec![b("SADD"), k.clone()];
                c.extend(chunk.iter().map(|m| (*m).clone()));
                encode_command(out, &c);
            }
        }
        Value::ZSet(z) => {
            for c in crate::cmd::zsets::rewrite(k, z) {
                encode_command(out, &c);
            }
        }
        Value::Stream(s) => {
            for (id, f) in &s.entries {
                let mut c = vec![b("XADD"), k.clone(), id.to_bytes()];
                c.extend(f.iter().cloned());
                encode_command(out, &c);
            }
            if s.entries.is_empty() {
                // Create the empty stream: a group created with MKSTREAM, then removed.
                encode_command(
                    out,
                    &[
                        b("XGROUP"),
                        b("CREATE"),
                        k.clone(),
                        b("\u{1}tmp"),
                        b("0"),
                        b("MKSTREAM"),
                    ],
                );
                encode_command(out, &[b("XGROUP"), b("DESTROY"), k.clone(), b("\u{1}tmp")]);
            }
            encode_command(
                out,
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
                encode_command(out, &c);
                for cname in g.consumers.keys() {
                    encode_command(
                        out,
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
                        out,
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
            out,
            &[b("PEXPIREAT"), k.clone(), b(&e.expire_at.to_string())],
        );
    }
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
                let Some(spec) = table::commands().lookup(&args[0]) else {
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
        let _ = exec::run_to_end(shared, &mut client, &mut out, args);
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
