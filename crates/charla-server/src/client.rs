//! One client's protocol state, whatever carries its requests (a socket, the AOF replay, a
//! fuzzer): selected database, protocol version, authentication, MULTI queue and WATCH,
//! subscriptions and the mailbox publishers write into, a blocking command's bookkeeping, and
//! CLIENT REPLY's mode. [`ClientMeta`] is the part the server's client registry shares (CLIENT
//! LIST, CLIENT UNBLOCK).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::pubsub::{Mailbox, PubMsg};
use crate::stream::StreamId;

/// What CLIENT LIST shows about a connection; shared with the server's registry.
#[derive(Debug)]
pub struct ClientMeta {
    pub id: u64,
    pub addr: Option<SocketAddr>,
    pub created: Instant,
    pub db: AtomicUsize,
    pub info: Mutex<ClientInfo>,
    /// The connection waits in a blocking command (CLIENT UNBLOCK may release it).
    pub blocked: AtomicBool,
    /// CLIENT UNBLOCK's request to the waiting connection: see [`Unblock`].
    pub unblock: AtomicU8,
    /// The connection's wakeup (the same one the keys it waits on hold).
    pub notify: Arc<Notify>,
}

/// What CLIENT UNBLOCK asks of a blocked client, stored in [`ClientMeta::unblock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Unblock {
    None = 0,
    /// Answer as if the timeout had passed.
    Timeout = 1,
    /// Answer `-UNBLOCKED client unblocked via CLIENT UNBLOCK`.
    Error = 2,
}

#[derive(Debug, Default)]
pub struct ClientInfo {
    pub name: Option<Bytes>,
    pub lib_name: String,
    pub lib_ver: String,
}

/// WATCH's state: the keyspace's write count when the first key was watched (any write since
/// aborts EXEC: conservative, see cmd/transactions.rs), and the earliest deadline among the
/// watched keys that had one (a watched key that expires meanwhile aborts EXEC, as in Redis).
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    pub writes: u64,
    pub first_expiry: Option<u64>,
}

/// One command's counts for INFO commandstats.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallStats {
    pub calls: u64,
    /// Time spent running it, in nanoseconds (INFO shows microseconds).
    pub nanos: u64,
    /// Refused before running (unknown arity, NOAUTH, a bad subcommand…).
    pub rejected: u64,
    /// Ran and answered an error.
    pub failed: u64,
}

/// Times a command for INFO commandstats with the CPU's time-stamp counter (quanta, calibrated
/// once per process): a few nanoseconds a read, where `Instant::now` costs about twenty.
pub struct CallTimer(u64);

impl CallTimer {
    fn clock() -> &'static quanta::Clock {
        static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
        CLOCK.get_or_init(quanta::Clock::new)
    }

    #[inline]
    pub fn start() -> CallTimer {
        CallTimer(Self::clock().raw())
    }

    /// Nanoseconds since [`CallTimer::start`].
    #[inline]
    pub fn nanos(self) -> u64 {
        let clock = Self::clock();
        clock.delta_as_nanos(self.0, clock.raw())
    }
}

impl CallStats {
    pub fn add(&mut self, o: &CallStats) {
        self.calls += o.calls;
        self.nanos += o.nanos;
        self.rejected += o.rejected;
        self.failed += o.failed;
    }
}

/// CLIENT REPLY's modes, as Redis keeps them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    #[default]
    On,
    /// No replies until CLIENT REPLY ON.
    Off,
    /// CLIENT REPLY SKIP was just run: the next command's reply is dropped.
    SkipNext,
    /// The reply of the command running now is dropped.
    Skip,
}

/// Per-connection protocol state.
pub struct Client {
    pub id: u64,
    pub db: usize,
    pub proto: u8,
    pub authed: bool,
    pub multi: Option<Vec<Vec<Bytes>>>,
    pub multi_error: bool,
    pub in_exec: bool,
    pub watch: Option<Watch>,
    pub subs: HashSet<Bytes>,
    pub psubs: HashSet<Bytes>,
    pub mailbox: Mailbox,
    pub notify: Arc<Notify>,
    pub block_started: bool,
    pub block_deadline: Option<Instant>,
    pub block_timed_out: bool,
    pub blocked_keys: Vec<(usize, Bytes)>,
    /// XREAD's resolved `$` ids, kept while a blocked XREAD waits.
    pub block_ids: Option<Vec<Option<StreamId>>>,
    /// Commands run since the last flush into the server's counter.
    pub commands: u64,
    /// INFO commandstats since the last flush into the server's: (command id, counts), for
    /// the few commands a client uses (so the hot path touches no shared counter).
    pub call_stats: Vec<(usize, CallStats)>,
    /// AOF sequence number of this client's last write (fsync=always waits for it).
    pub aof_seq: u64,
    /// CLIENT REPLY: what happens to this client's replies.
    pub reply: ReplyMode,
    pub meta: Arc<ClientMeta>,
}

impl Client {
    pub fn new(
        id: u64,
        addr: Option<SocketAddr>,
        authed: bool,
    ) -> (Client, mpsc::UnboundedReceiver<PubMsg>) {
        let (mailbox, rx) = Mailbox::new();
        let notify = Arc::new(Notify::new());
        let meta = Arc::new(ClientMeta {
            id,
            addr,
            created: Instant::now(),
            db: AtomicUsize::new(0),
            info: Mutex::new(ClientInfo::default()),
            blocked: Default::default(),
            unblock: Default::default(),
            notify: notify.clone(),
        });
        (
            Client {
                id,
                db: 0,
                proto: 2,
                authed,
                multi: None,
                multi_error: false,
                in_exec: false,
                watch: None,
                subs: HashSet::new(),
                psubs: HashSet::new(),
                mailbox,
                notify,
                block_started: false,
                block_deadline: None,
                block_timed_out: false,
                blocked_keys: Vec::new(),
                block_ids: None,
                commands: 0,
                call_stats: Vec::new(),
                aof_seq: 0,
                reply: Default::default(),
                meta,
            },
            rx,
        )
    }

    pub fn in_subscribe_mode(&self) -> bool {
        !self.subs.is_empty() || !self.psubs.is_empty()
    }

    pub fn set_name(&mut self, name: Option<Bytes>) {
        self.meta
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .name = name;
    }

    pub fn name(&self) -> Option<Bytes> {
        self.meta
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .name
            .clone()
    }

    /// Count a finished call of command `id` (INFO commandstats).
    #[inline]
    pub fn record_call(&mut self, id: usize, nanos: u64, failed: bool) {
        let s = self.stats_of(id);
        s.calls += 1;
        s.nanos += nanos;
        s.failed += u64::from(failed);
    }

    /// Count a call of command `id` refused before it ran (arity, authentication…).
    pub fn record_rejected(&mut self, id: usize) {
        self.stats_of(id).rejected += 1;
    }

    fn stats_of(&mut self, id: usize) -> &mut CallStats {
        let i = match self.call_stats.iter().position(|(c, _)| *c == id) {
            Some(i) => i,
            None => {
                self.call_stats.push((id, CallStats::default()));
                self.call_stats.len() - 1
            }
        };
        &mut self.call_stats[i].1
    }

    /// Forget a finished blocking command's bookkeeping.
    pub fn clear_block(&mut self) {
        self.block_started = false;
        self.block_deadline = None;
        self.block_timed_out = false;
        self.block_ids = None;
    }
}
