//! The gateway's connections: the accept loop, HTTP/1.1 on each connection with a deadline for
//! each request's headers, and a cap on the connections one client address holds at once.
//!
//! What an idle or hostile client can take from the gateway is bounded:
//! - a connection that has not sent a whole request head within `header_timeout` of being
//!   accepted (or of its previous response, on a kept-alive connection) is closed by hyper;
//! - one address holds at most `max_per_ip` connections (HTTP and WebSocket alike, loopback
//!   included: a gateway behind a reverse proxy on the same machine should raise or lift the
//!   limit, `0`); beyond it a connection is answered `429` and closed at once, so refusing costs
//!   no file descriptor beyond the moment of the refusal;
//! - out of file descriptors, the loop pauses briefly rather than spinning, and what it holds
//!   is released by the deadlines above.
//!
//! HTTP/1.1 only: pages use it (WebSockets are HTTP/1.1 upgrades) and plain-text HTTP/2 is not
//! used by browsers.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The connections each client address holds now.
pub struct Slots {
    table: Mutex<HashMap<IpAddr, usize>>,
    /// Most connections per address; 0: no limit.
    max: usize,
}

/// One connection's place in its address's count; released when the last holder (the HTTP
/// connection, or the WebSocket session it became) lets go. Requests carry a clone in their
/// extensions (`ws.rs` keeps it for the life of a page).
#[derive(Clone)]
pub struct Slot {
    _held: Arc<SlotInner>,
}

struct SlotInner {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        let mut table = self.slots.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = table.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

impl Slots {
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            table: Mutex::new(HashMap::new()),
            max,
        })
    }

    /// A place for one more connection from `ip`, unless it holds the most already.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let n = table.entry(ip).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            _held: Arc::new(SlotInner {
                slots: self.clone(),
                ip,
            }),
        })
    }
}

/// How connections are served.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time to send a request's head (from the accept, or from the previous response).
    pub header_timeout: Duration,
    /// Connections one client address may hold at once; 0: no limit.
    pub max_per_ip: usize,
}

/// What a connection over the per-address limit is told before it is closed.
const REFUSED: &str = r#"{"error": "too many connections from this address"}"#;

/// Accept and serve connections until `shutdown` completes; then stop accepting, let the
/// connections finish what they are doing (idle ones close at once) and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Slots::new(limits.max_per_ip);
    // Dropped when the shutdown comes: every connection is told to finish.
    let (stop_tx, stop_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(stop_rx);
    });
    // Each connection task holds a receiver; all gone = all finished.
    let (done_tx, done_rx) = watch::channel(());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = stop_tx.closed() => break,
        };
        let Some(slot) = slots.take(peer.ip()) else {
            refuse(tcp, peer);
            continue;
        };
        // No Nagle: a page's frames go out as they are written. With it, a burst written
        // while the page had not yet acknowledged the previous one waited for the page's
        // delayed ACK (~40 ms on Linux): p99 of 46 ms at 1 000 messages/s with two pages.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY on a page's connection: {e}");
        }
        tokio::spawn(connection(
            tcp,
            peer,
            slot,
            app.clone(),
            limits.header_timeout,
            stop_tx.clone(),
            done_rx.clone(),
        ));
    }
    drop(listener);
    drop(done_rx);
    done_tx.closed().await;
}

/// An accept that failed: out of file descriptors, wait a little for some to be released
/// (the deadlines release idle ones) instead of spinning; anything else is the peer's
/// problem (it went away between connecting and being accepted).
async fn accept_failed(e: std::io::Error) {
    let out_of_files = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
    if out_of_files {
        tracing::warn!("cannot accept a connection: {e}; retrying in 50 ms");
        tokio::time::sleep(Duration::from_millis(50)).await;
    } else {
        tracing::debug!("accept: {e}");
    }
}

/// Answer 429 and close, without waiting for anything: what the client already sent is read
/// first (so closing does not reset the connection before it reads the answer).
fn refuse(tcp: TcpStream, peer: SocketAddr) {
    tracing::debug!(%peer, "refused: too many connections from this address");
    let mut sink = [0u8; 4096];
    let _ = tcp.try_read(&mut sink);
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{REFUSED}",
        REFUSED.len()
    );
    let _ = tcp.try_write(answer.as_bytes());
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    app: Router,
    header_timeout: Duration,
    stop: watch::Sender<()>,
    _done: watch::Receiver<()>,
) {
    let service =
        tower::ServiceExt::map_request(app, move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(slot.clone());
            request.map(axum::body::Body::new)
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            _ = stop.closed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
