//! The append-only file as the request path sees it: its fsync policy, how far it is synced
//! (replies wait on that with `appendfsync always`), whether it is failing (write commands are
//! then refused with `-MISCONF`), and the requests a command can make of it (BGREWRITEAOF).
//! The writer thread that does the work is in [`crate::aof`]; this handle sits below the shared
//! state so commands can reach it without depending on the writer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::watch;

use crate::config::AppendFsync;

/// The append-only file's state, shared by the request path and the writer thread.
pub struct Aof {
    pub fsync: AppendFsync,
    pub(crate) path: PathBuf,
    /// Sequence number of the last command known to be on disk.
    pub(crate) synced: watch::Sender<u64>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    waker: Mutex<Option<std::thread::Thread>>,
    /// A rewrite was asked for (BGREWRITEAOF, or the writer after a failed fsync).
    pub(crate) rewrite: AtomicBool,
    pub(crate) stop: AtomicBool,
    /// A write or fsync failed and has not succeeded since: write commands are refused.
    failing: AtomicBool,
    /// What failed, for the MISCONF reply and INFO.
    error: Mutex<String>,
    pub(crate) rewriting: AtomicBool,
}

impl Aof {
    /// The state of a file at `path` not yet being written (the writer is attached by
    /// [`Aof::attach_writer`]).
    pub fn new(fsync: AppendFsync, path: PathBuf) -> Aof {
        let (synced, _) = watch::channel(0);
        Aof {
            fsync,
            path,
            synced,
            thread: Mutex::new(None),
            waker: Mutex::new(None),
            rewrite: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            error: Mutex::new(String::new()),
            rewriting: AtomicBool::new(false),
        }
    }

    /// The writer thread, to wake and to join at shutdown.
    pub(crate) fn attach_writer(&self, h: std::thread::JoinHandle<()>) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(h.thread().clone());
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
    }

    pub(crate) fn wake(&self) {
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

    /// The `-MISCONF` error write commands get while the file cannot be written, if it cannot.
    #[inline]
    pub fn write_error(&self) -> Option<String> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        let e = self.error.lock().unwrap_or_else(|e| e.into_inner());
        Some(format!("MISCONF Errors writing to the AOF file: {e}"))
    }

    /// Is a rewrite in progress (INFO's `aof_rewrite_in_progress`)?
    pub fn rewriting(&self) -> bool {
        self.rewriting.load(Ordering::Relaxed)
    }

    pub(crate) fn fail(&self, what: &str, e: &std::io::Error) {
        let msg = e.to_string();
        let mut cur = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if !self.failing.load(Ordering::Relaxed) || *cur != msg {
            tracing::error!(error = %e, path = %self.path.display(), "{what} of the append-only file failed; refusing writes until it succeeds");
        }
        *cur = msg;
        self.failing.store(true, Ordering::Release);
    }

    pub(crate) fn recovered(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            tracing::warn!(path = %self.path.display(), "append-only file writable again; accepting writes");
        }
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
