//! The accept loop: protected mode, maxclients, TCP options, handing each connection to an
//! I/O thread; the background expiry task; graceful shutdown. The state all connections share
//! is [`crate::shared`].

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::connection::Connection;
use crate::db::now_ms;
use crate::shared::Shared;
use crate::ServerError;

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
        shared.aof = Some(crate::aof::open(&shared)?);
    }
    let shared = Arc::new(shared);
    crate::aof::start(&shared)?;
    let local = listener.local_addr().ok();
    // Whoever bound the listener chose some backlog (tokio's and std's bind use 128 or 1024);
    // a burst of connections beyond it waits a whole SYN retransmission (1 s). Listening again
    // on the bound socket sets the backlog, as nginx does on reload.
    let backlog = shared.config.effective_backlog();
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
        shared.sync_notify_flags(&mut db);
        let mut n = 0;
        for ks in &mut db.dbs {
            n += ks.expire_due(now, 10_000);
        }
        shared.publish_key_events(&mut db, crate::events::Notify::Nothing, false);
        drop(db);
        if n > 0 {
            shared.stats.expired.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}
