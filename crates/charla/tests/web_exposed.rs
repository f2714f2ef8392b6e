//! `charla web` exposed on a network (issue 18): what one hostile or broken client can do to
//! the gateway is bounded. Each test runs the built binary against `charla serve`, and talks to
//! it over raw TCP where a well-behaved client library would not misbehave on purpose.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use charla_testkit::{unique_name, RedisServer};
use common::web::{Gateway, Page};

const LONG: Duration = Duration::from_secs(20);

fn broker() -> RedisServer {
    RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[])
}

/// The resident memory of a process, in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A WebSocket opened by hand on a raw TCP socket: the request, then the response headers
/// read up to their end (nothing after them).
fn raw_websocket(port: u16, path: &str, extra_headers: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(LONG)).expect("timeout");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra_headers}\r\n"
    )
    .expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (tcp, String::from_utf8_lossy(&head).into_owned())
}

/// A client that pings as fast as it can and never reads: the pongs it does not take are not
/// kept for it without bound. The gateway's memory stays bounded, the client is let go, and
/// the gateway serves the next page.
#[test]
fn a_ping_flood_that_reads_nothing_is_bounded_and_dropped() {
    let server = broker();
    let a = Gateway::start(&server.url(), &[]);
    let pid = a.child.id();
    let room = unique_name("flood");
    let (mut tcp, head) = raw_websocket(a.port, &format!("/ws?room={room}&name=Flood"), "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let baseline = rss_kib(pid);
    const BOUND_KIB: u64 = 64 * 1024;

    // Sample the gateway's memory while the flood runs; stop the flood if it is past the
    // bound (without the fix it grows by tens of MB a second).
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let now = rss_kib(pid);
                peak.fetch_max(now, Ordering::SeqCst);
                if now > baseline + BOUND_KIB {
                    stop.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // Pings with the largest payload a control frame may carry (125 bytes), masked with the
    // zero key, many to a write.
    let mut ping = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
    ping.extend_from_slice(&[b'p'; 125]);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 500)
        .collect();
    tcp.set_write_timeout(Some(Duration::from_secs(2)))
        .expect("write timeout");
    let started = Instant::now();
    let mut sent: u64 = 0;
    let closed = loop {
        if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(30) {
            break None;
        }
        match tcp.write_all(&burst) {
            Ok(()) => sent += 500,
            // Timed out: the gateway stopped reading (it is saying goodbye); keep at it.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => break Some(e),
        }
    };
    stop.store(true, Ordering::SeqCst);
    sampler.join().expect("sampler");
    let grew = peak.load(Ordering::SeqCst).saturating_sub(baseline);
    eprintln!(
        "{sent} pings in {:.1} s; gateway RSS {baseline} KiB, peak +{grew} KiB",
        started.elapsed().as_secs_f64()
    );
    assert!(
        grew <= BOUND_KIB,
        "the gateway grew by {grew} KiB under the ping flood ({sent} pings)"
    );
    let closed = closed.unwrap_or_else(|| {
        panic!(
            "the flooding socket was still open after {:.0} s ({sent} pings)",
            started.elapsed().as_secs_f64()
        )
    });
    eprintln!("the flood ended: {closed}");
    // The gateway says why, in its log.
    let deadline = Instant::now() + LONG;
    while !a.log_text().contains("pongs") {
        assert!(
            Instant::now() < deadline,
            "no reason logged: {}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Another page still works.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut page = Page::open(&a.ws_url(&room, "Otra")).await;
        page.until("history", LONG).await;
        page.say("sigo aquí").await;
        assert_eq!(page.messages(1, LONG).await, ["sigo aquí"]);
    });
}
