//! The accept loop and the state all connections share: keyspace, pub/sub registry, client
//! registry, counters, and the append-only file. Also the background expiry task and graceful
//! shutdown.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::aof::Aof;
use crate::config::{OutputLimit, ServerConfig};
use crate::connection::{ClientMeta, Connection};
use crate::db::{now_ms, Db};
use crate::frame::Limits;
use crate::pubsub::PubSub;
use crate::ServerError;

#[derive(Debug, Default)]
pub struct Stats {
    pub connected: AtomicUsize,
    pub total_connections: AtomicU64,
    pub commands: AtomicU64,
    pub rejected: AtomicU64,
    pub expired: AtomicU64,
    pub blocked: AtomicUsize,
    pub pubsub_clients: AtomicUsize,
    pub aof_rewrites: AtomicU64,
    pub aof_size: AtomicU64,
    /// Bytes read from clients (INFO `total_net_input_bytes`).
    pub net_input_bytes: AtomicU64,
    /// Bytes the request parser walked over (INFO `charla_parser_bytes_scanned`): equal to
    /// the input when parsing resumes where it stopped, quadratic in a trickled request if it
    /// started over on every read. Tests use it to check that a slow sender costs linear work.
    pub parser_bytes_scanned: AtomicU64,
    /// Clients closed for `client-query-buffer-limit` / `proto-max-bulk-len` / the
    /// unauthenticated limits (INFO `client_query_buffer_limit_disconnections`).
    pub query_limit_disconnections: AtomicU64,
    /// Subscribers closed for `client-output-buffer-limit pubsub`.
    pub output_limit_disconnections: AtomicU64,
    /// Longest single hold of the keyspace lock by the last AOF rewrite, in microseconds.
    pub aof_rewrite_max_lock_us: AtomicU64,
}

/// The limits `CONFIG SET` can change while clients are connected (read on every use, so a
/// change applies to connected clients too).
#[derive(Debug)]
pub struct NetLimits {
    pub proto_max_bulk_len: AtomicUsize,
    pub client_query_buffer_limit: AtomicUsize,
    pub pubsub_hard: AtomicUsize,
    pub pubsub_soft: AtomicUsize,
    pub pubsub_soft_seconds: AtomicU64,
    pub tcp_keepalive: AtomicU64,
}

pub struct Shared {
    db: Mutex<Db>,
    pubsub: Mutex<PubSub>,
    pub config: ServerConfig,
    pub net: NetLimits,
    clients: Mutex<HashMap<u64, Arc<ClientMeta>>>,
    next_id: AtomicU64,
    pub stats: Stats,
    pub aof: Option<Aof>,
    pub started: Instant,
    pub run_id: String,
    /// SHUTDOWN was asked for: the accept loop ends as on the caller's shutdown signal.
    pub shutdown_asked: tokio::sync::Notify,
}

impl Shared {
    pub fn new(config: ServerConfig) -> Shared {
        let net = NetLimits {
            proto_max_bulk_len: AtomicUsize::new(config.max_bulk_len),
            client_query_buffer_limit: AtomicUsize::new(config.client_query_buffer_limit),
            pubsub_hard: AtomicUsize::new(config.pubsub_output_limit.hard),
            pubsub_soft: AtomicUsize::new(config.pubsub_output_limit.soft),
            pubsub_soft_seconds: AtomicU64::new(config.pubsub_output_limit.soft_seconds),
            tcp_keepalive: AtomicU64::new(config.tcp_keepalive),
        };
        let seed = now_ms() ^ u64::from(std::process::id()).rotate_left(32);
        Shared {
            db: Mutex::new(Db::new()),
            pubsub: Mutex::new(PubSub::default()),
            config,
            net,
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stats: Stats::default(),
            aof: None,
            started: Instant::now(),
            run_id: format!(
                "{seed:016x}{:024x}",
                seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ),
            shutdown_asked: tokio::sync::Notify::new(),
        }
    }

    /// The request limits in force now.
    #[inline]
    pub fn limits(&self) -> Limits {
        Limits {
            max_bulk_len: self.net.proto_max_bulk_len.load(Ordering::Relaxed),
            max_multibulk_len: self.config.max_multibulk_len,
            max_inline_len: self.config.max_inline_len,
        }
    }

    /// `client-query-buffer-limit` now.
    #[inline]
    pub fn query_buffer_limit(&self) -> usize {
        self.net.client_query_buffer_limit.load(Ordering::Relaxed)
    }

    /// `client-output-buffer-limit pubsub` now.
    pub fn pubsub_limit(&self) -> OutputLimit {
        OutputLimit {
            hard: self.net.pubsub_hard.load(Ordering::Relaxed),
            soft: self.net.pubsub_soft.load(Ordering::Relaxed),
            soft_seconds: self.net.pubsub_soft_seconds.load(Ordering::Relaxed),
        }
    }

    pub fn set_pubsub_limit(&self, l: OutputLimit) {
        self.net.pubsub_hard.store(l.hard, Ordering::Relaxed);
        self.net.pubsub_soft.store(l.soft, Ordering::Relaxed);
        self.net
            .pubsub_soft_seconds
            .store(l.soft_seconds, Ordering::Relaxed);
    }

    /// The keyspace lock. A panic while holding it cannot leave a torn value behind (commands
    /// validate before mutating), so a poisoned lock is simply taken over.
    #[inline]
    pub fn lock_db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    pub fn lock_pubsub(&self) -> MutexGuard<'_, PubSub> {
        self.pubsub.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register_client(&self, meta: Arc<ClientMeta>) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(meta.id, meta);
    }

    pub fn unregister_client(&self, id: u64) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// CLIENT LIST / CLIENT INFO text.
    /// The registry's entry of client `id`, if it is connected.
    pub fn client_meta(&self, id: u64) -> Option<Arc<ClientMeta>> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.get(&id).cloned()
    }

    pub fn client_list(&self, only: Option<u64>) -> String {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<_> = clients.keys().copied().collect();
        ids.sort_unstable();
        let mut s = String::new();
        for id in ids {
            if only.is_some_and(|o| o != id) {
                continue;
            }
            let Some(m) = clients.get(&id) else { continue };
            let info = m.info.lock().unwrap_or_else(|e| e.into_inner());
            let name = info
                .name
                .as_ref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "id={} addr={} laddr= fd=0 name={} age={} idle=0 flags=N db={} sub=0 psub=0 multi=-1 qbuf=0 obl=0 oll=0 omem=0 events=r cmd=client lib-name={} lib-ver={}",
                m.id,
                m.addr.map(|a| a.to_string()).unwrap_or_default(),
                name,
                m.created.elapsed().as_secs(),
                m.db.load(Ordering::Relaxed),
                info.lib_name,
                info.lib_ver,
            );
        }
        s
    }
}

/// Redis's protected-mode refusal, pointing at charla's own flags.
pub const DENIED: &str = "-DENIED charla serve is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers, you may adopt one of the following solutions: 1) Restart the server with a password: 'charla serve --requirepass <password>' (or CHARLA_REQUIREPASS), and connect with that password. 2) Alternatively, if this network is trusted, restart it with '--protected-mode no'. 3) Bind only to the addresses you mean to serve with '--bind'. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

/// Run the server on `listener` until `shutdown` completes. Replays the append-only file first
/// when persistence is on; on shutdown, stops accepting, closes connections, and flushes and
/// fsyncs the file.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let mut shared = Shared::new(config);
    if shared.config.appendonly {
        let aof = Aof::open(&shared)?;
        shared.aof = Some(aof);
    }
    let shared = Arc::new(shared);
    if let Some(aof) = &shared.aof {
        aof.start(shared.clone())?;
    }
    let local = listener.local_addr().ok();
    // Whoever bound the listener chose some backlog (tokio's and std's bind use 128 or 1024);
    // a burst of connections beyond it waits a whole SYN retransmission (1 s). Listening again
    // on the bound socket sets the backlog, as nginx does on reload.
    let backlog = effective_backlog(&shared.config);
    if let Err(e) = socket2::SockRef::from(&listener).listen(backlog.min(i32::MAX as u32) as i32) {
        tracing::warn!(error = %e, backlog, "cannot set the listen backlog");
    }
    tracing::info!(addr = ?local, appendonly = shared.config.appendonly, backlog, "charla serve ready to accept connections");

    let (stop_tx, stop_rx) = watch::channel(false);
    let expirer = tokio::spawn(expire_loop(shared.clone(), stop_rx.clone()));
    let workers = start_workers(&shared)?;
    let mut next_worker = 0usize;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = shared.shutdown_asked.notified() => {
                tracing::info!("SHUTDOWN asked for by a client");
                break;
            }
            r = listener.accept() => {
                let (mut sock, addr) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let st = &shared.stats;
                st.total_connections.fetch_add(1, Ordering::Relaxed);
                if shared.config.protected_mode
                    && shared.config.requirepass.is_none()
                    && !addr.ip().is_loopback()
                    && !addr.ip().to_canonical().is_loopback()
                {
                    st.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%addr, "refused by protected mode");
                    tokio::spawn(async move {
                        let _ = sock.write_all(DENIED.as_bytes()).await;
                        let _ = sock.shutdown().await;
                    });
                    continue;
                }
                if st.connected.load(Ordering::Relaxed) >= shared.config.maxclients {
                    st.rejected.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let _ = sock.write_all(b"-ERR max number of clients reached\r\n").await;
                        let _ = sock.shutdown().await;
                    });
                    continue;
                }
                let _ = sock.set_nodelay(true);
                set_keepalive(&sock, shared.net.tcp_keepalive.load(Ordering::Relaxed));
                let std_sock = match sock.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot hand the connection to a worker");
                        continue;
                    }
                };
                st.connected.fetch_add(1, Ordering::Relaxed);
                // Round-robin over the I/O threads; a connection stays on its thread.
                let w = &workers[next_worker % workers.len()];
                next_worker = next_worker.wrapping_add(1);
                if w.tx.send((std_sock, addr)).is_err() {
                    st.connected.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }
    tracing::info!("shutting down: closing connections");
    drop(listener);
    let _ = stop_tx.send(true);
    // Every acknowledged write is already in the AOF buffer, so connections can simply be
    // dropped (each worker aborts its own when its queue closes); the file is flushed below.
    let handles: Vec<_> = workers.into_iter().map(|w| w.thread).collect();
    let _ = tokio::task::spawn_blocking(move || {
        for h in handles {
            let _ = h.join();
        }
    })
    .await;
    let _ = expirer.await;
    if let Some(aof) = &shared.aof {
        aof.stop();
    }
    tracing::info!("charla serve stopped");
    Ok(())
}

/// The system's maximum listen backlog (`net.core.somaxconn` on Linux), or Redis's default
/// `tcp-backlog` (511) where it cannot be read.
pub fn system_backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(511)
}

/// The backlog `serve` listens with: `tcp_backlog`, or the system's maximum when it is 0;
/// never above the system's maximum (the kernel would cap it anyway, and `CONFIG GET
/// tcp-backlog` reports what is really in force).
pub fn effective_backlog(config: &ServerConfig) -> u32 {
    let max = system_backlog();
    match config.tcp_backlog {
        0 => max,
        n => n.min(max),
    }
}

/// TCP keepalive on a client socket, as Redis's `tcp-keepalive` sets it: the first probe after
/// `secs` idle seconds, then every `secs / 3`, giving up after 3 unanswered probes. A peer
/// that vanished (powered off, cable pulled, NAT entry dropped) is then noticed and its
/// connection, with its blocked commands and subscriptions, released.
fn set_keepalive(sock: &tokio::net::TcpStream, secs: u64) {
    if secs == 0 {
        return;
    }
    let ka = socket2::TcpKeepalive::new().with_time(Duration::from_secs(secs));
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd",
        target_os = "netbsd"
    ))]
    let ka = ka
        .with_interval(Duration::from_secs((secs / 3).max(1)))
        .with_retries(3);
    if let Err(e) = socket2::SockRef::from(sock).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "cannot enable TCP keepalive");
    }
}

/// An I/O thread: its own single-threaded runtime running the connections handed to it.
/// Thread-per-core instead of one work-stealing pool: a connection's readiness event, its
/// commands and its reply all happen on the thread that polled the socket, which avoids a
/// cross-thread wakeup per request (what dominates latency at pipeline depth 1).
struct Worker {
    tx: tokio::sync::mpsc::UnboundedSender<(std::net::TcpStream, std::net::SocketAddr)>,
    thread: std::thread::JoinHandle<()>,
}

fn start_workers(shared: &Arc<Shared>) -> Result<Vec<Worker>, ServerError> {
    let n = match shared.config.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, std::net::SocketAddr)>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ServerError::Io {
                what: "starting an I/O thread".into(),
                source: e,
            })?;
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("charla-io-{i}"))
            .spawn(move || {
                rt.block_on(async move {
                    let mut conns = tokio::task::JoinSet::new();
                    loop {
                        tokio::select! {
                            m = rx.recv() => {
                                let Some((sock, addr)) = m else { break };
                                let sock = match tokio::net::TcpStream::from_std(sock) {
                                    Ok(s) => s,
                                    Err(e) => {
                                        tracing::warn!(error = %e, "cannot register a connection");
                                        shared.stats.connected.fetch_sub(1, Ordering::Relaxed);
                                        continue;
                                    }
                                };
                                let conn = Connection::new(sock, addr, shared.clone());
                                let sh = shared.clone();
                                conns.spawn(async move {
                                    conn.run().await;
                                    sh.stats.connected.fetch_sub(1, Ordering::Relaxed);
                                });
                            }
                            // Reap finished tasks so the set stays the size of the live ones.
                            Some(_) = conns.join_next(), if !conns.is_empty() => {}
                        }
                    }
                    conns.abort_all();
                    while conns.join_next().await.is_some() {}
                });
            })
            .map_err(|e| ServerError::Io {
                what: "starting an I/O thread".into(),
                source: e,
            })?;
        workers.push(Worker { tx, thread });
    }
    Ok(workers)
}

/// Remove expired keys in the background so keys nobody reads again do not pile up.
async fn expire_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = now_ms();
        let mut db = shared.lock_db();
        let mut n = 0;
        for ks in &mut db.dbs {
            n += ks.expire_due(now, 10_000);
        }
        drop(db);
        if n > 0 {
            shared.stats.expired.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}
