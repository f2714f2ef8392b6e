//! A TCP proxy the tests control, standing between a client and its broker on loopback, to
//! cause the network faults a real deployment sees: a *stall* (packets stop, nobody closes
//! anything — a dead peer, a pulled cable, a frozen VM), a *cut* (every connection closed at
//! once — a restarted NAT or load balancer), and an *outage* (connections refused for a while).
//!
//! Only loopback addresses are proxied; the proxy stops with the runtime or when dropped.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    /// Bytes flow; when false every connection is frozen (read nothing, write nothing).
    flowing: bool,
    /// New connections are closed as soon as they are accepted.
    refusing: bool,
    /// Bumped by [`FaultProxy::cut`]: connections of an older generation close.
    generation: u64,
}

/// A proxy from [`addr`](FaultProxy::addr) to an upstream address. Dropping it stops
/// accepting and closes every proxied connection.
pub struct FaultProxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream`. Call inside a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        assert!(
            upstream.ip().is_loopback(),
            "the fault proxy only forwards to loopback addresses"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (state, _) = watch::channel(State {
            flowing: true,
            refusing: false,
            generation: 0,
        });
        let watcher = state.subscribe();
        let accept = tokio::spawn(accept_loop(listener, upstream, watcher));
        FaultProxy {
            addr,
            state,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its port replaced by the proxy's (the host must be loopback already).
    pub fn url_for(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).expect("a broker URL");
        parsed
            .set_port(Some(self.addr.port()))
            .expect("the URL takes a port");
        parsed.to_string()
    }

    /// Freeze every connection: nothing is read or written, nothing is closed.
    pub fn stall(&self) {
        self.state.send_modify(|s| s.flowing = false);
    }

    /// Let bytes flow again after [`stall`](Self::stall).
    pub fn resume(&self) {
        self.state.send_modify(|s| s.flowing = true);
    }

    /// Close every connection open now (both sides see the connection end).
    pub fn cut(&self) {
        self.state.send_modify(|s| s.generation += 1);
    }

    /// Close every connection and refuse new ones until [`restore`](Self::restore).
    pub fn outage(&self) {
        self.state.send_modify(|s| {
            s.generation += 1;
            s.refusing = true;
        });
    }

    /// Accept connections again after [`outage`](Self::outage).
    pub fn restore(&self) {
        self.state.send_modify(|s| s.refusing = false);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Every pump sees a new generation and closes its sockets.
        self.state.send_modify(|s| {
            s.generation += 1;
            s.refusing = true;
        });
    }
}

/// The URL's host and port as a socket address (`default_port` when the URL has none).
pub fn socket_addr_of(url: &str, default_port: u16) -> SocketAddr {
    let parsed = url::Url::parse(url).expect("a broker URL");
    let host = parsed.host_str().expect("the URL has a host");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port().unwrap_or(default_port);
    let ip: std::net::IpAddr = if host == "localhost" {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        host.parse().expect("a numeric loopback host")
    };
    SocketAddr::new(ip, port)
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: watch::Receiver<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let now = *state.borrow();
        if now.refusing {
            drop(client);
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return; // upstream down: the client sees its connection close
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let there = tokio::spawn(pump(cr, sw, state.clone(), now.generation));
            pump(sr, cw, state, now.generation).await;
            let _ = there.await;
        });
    }
}

/// Copy `from` → `to` while the state allows, until EOF, an error or a cut.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    generation: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Wait while stalled; leave on a cut.
        loop {
            let s = *state.borrow_and_update();
            if s.generation != generation {
                return;
            }
            if s.flowing {
                break;
            }
            if state.changed().await.is_err() {
                return;
            }
        }
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        let _ = to.shutdown().await;
                        return;
                    }
                    Ok(n) => n,
                };
                tokio::select! {
                    written = to.write_all(&buf[..n]) => {
                        if written.is_err() {
                            return;
                        }
                    }
                    _ = cut(&mut state, generation) => return,
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Resolves when the connection's generation is over.
async fn cut(state: &mut watch::Receiver<State>, generation: u64) {
    loop {
        if state.borrow_and_update().generation != generation {
            return;
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}
