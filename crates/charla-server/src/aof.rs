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
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::watch;

use crate::cmd::{self, Ctx};
use crate::config::AppendFsync;
use crate::connection::Client;
use crate::db::{Db, Value};
use crate::frame::{encode_command, ArgSpans, Out, Scan};
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
        for (k, e) in &ks.map {
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

/// Run every command of the file. Returns how many ran.
fn replay(shared: &Shared, path: &std::path::Path) -> Result<usize, ServerError> {
    let data = std::fs::read(path).map_err(|e| ServerError::Io {
        what: format!("reading {}", path.display()),
        source: e,
    })?;
    let total = data.len();
    let mut buf = BytesMut::from(&data[..]);
    drop(data);
    let (mut client, _rx) = Client::new(0, None, true);
    let mut out = Out::new();
    let mut spans = ArgSpans::default();
    let limits = crate::frame::Limits {
        max_bulk_len: usize::MAX / 4,
        max_multibulk_len: usize::MAX / 4,
        max_inline_len: 1 << 20,
    };
    let mut n = 0;
    let mut offset = 0usize;
    loop {
        match crate::frame::scan(&buf, &limits, &mut spans) {
            Ok(Scan::Incomplete) => break,
            Ok(Scan::Empty { consumed }) => {
                buf.advance(consumed);
                offset += consumed;
            }
            Ok(Scan::Multibulk { consumed }) => {
                let chunk = buf.split_to(consumed).freeze();
                offset += consumed;
                let args: Vec<Bytes> = spans
                    .spans
                    .iter()
                    .map(|&(s, e)| chunk.slice(s..e))
                    .collect();
                let mut ctx = Ctx {
                    args: &args,
                    out: &mut out,
                    client: &mut client,
                    shared,
                    dirty: false,
                    propagated: false,
                };
                let _ = cmd::dispatch(&mut ctx);
                out.buf.clear();
                n += 1;
            }
            Ok(Scan::Inline { .. }) | Err(_) => {
                return Err(ServerError::AofCorrupt {
                    path: path.to_path_buf(),
                    offset: offset as u64,
                })
            }
        }
    }
    if offset < total {
        tracing::warn!(
            path = %path.display(),
            valid = offset,
            total,
            "append-only file ends with a truncated command (crash while writing); truncating it"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| ServerError::Io {
                what: format!("truncating {}", path.display()),
                source: e,
            })?;
        f.set_len(offset as u64).map_err(|e| ServerError::Io {
            what: format!("truncating {}", path.display()),
            source: e,
        })?;
    }
    Ok(n)
}
