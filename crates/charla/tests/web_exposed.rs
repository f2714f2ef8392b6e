//! `charla web` exposed on a network (issue 18): what one hostile or broken client can do to
//! the gateway is bounded. Each test runs the built binary against `charla serve`, and talks to
//! it over raw TCP where a well-behaved client library would not misbehave on purpose.

mod common;

use charla_testkit::rss_kib;
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

/// `charla web` started through `sh -c '<shell>; exec charla web …'` (a lower `ulimit`, say),
/// on a free port, ready when /healthz answers; killed on drop, its log shown if the test
/// failed.
struct ShellGateway {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl ShellGateway {
    fn start(broker: &str, shell: &str, extra: &[&str]) -> ShellGateway {
        let port = charla_testkit::free_port();
        let log = common::sandbox().join(format!("web-sh-{port}.log"));
        let cmd = common::charla(broker);
        let program = cmd.get_program().to_owned();
        let mut args = vec![
            "web".to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c")
            .arg(format!("{shell}; exec \"$0\" \"$@\""))
            .arg(program)
            .args(args);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        sh.env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let child = sh.spawn().expect("start charla web");
        let mut gateway = ShellGateway { child, port, log };
        let deadline = Instant::now() + LONG;
        while !matches!(
            common::web::http(port, "GET", "/healthz", None),
            Ok((200, _))
        ) {
            if let Ok(Some(status)) = gateway.child.try_wait() {
                panic!("charla web exited ({status}): {}", gateway.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "not ready: {}",
                gateway.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gateway
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ShellGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- charla web :{} log ---\n{}", self.port, self.log_text());
        }
    }
}

/// 300 idle connections from one address against a gateway allowed 256 open files: the
/// address gets its 64, the rest are answered 429 at once, the 64 are closed when their
/// header deadline passes, and meanwhile /healthz from another address answers at once.
#[test]
fn idle_connections_from_one_address_do_not_lock_the_gateway_out() {
    let server = broker();
    let a = ShellGateway::start(&server.url(), "ulimit -n 256", &["--header-timeout", "3"]);
    let started = a.log_text();
    assert!(
        started.contains("256 open files") && started.contains("at most 64 connections"),
        "the start line says the limits: {started}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let gateway: std::net::SocketAddr = ([127, 0, 0, 1], a.port).into();
    // From 127.0.0.2 (loopback too, another address to the gateway).
    let idle: Vec<tokio::net::TcpStream> = rt.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..300 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(([127, 0, 0, 2], 0).into())
                .expect("bind 127.0.0.2");
            idle.push(socket.connect(gateway).await.expect("connect"));
        }
        idle
    });
    let opened = Instant::now();
    let (code, body) = common::web::http(a.port, "GET", "/healthz", None).expect("healthz");
    let took = opened.elapsed();
    eprintln!("/healthz with 300 idle connections open: {code} in {took:?}");
    assert_eq!(code, 200, "{body}");
    assert!(took < Duration::from_secs(2), "/healthz took {took:?}");

    // Every idle connection ends: refused at once with 429, or closed at its header deadline.
    let (refused, timed_out) = rt.block_on(async {
        use tokio::io::AsyncReadExt;
        let (mut refused, mut timed_out) = (0, 0);
        for mut tcp in idle {
            let mut answer = Vec::new();
            let read = tokio::time::timeout(LONG, tcp.read_to_end(&mut answer)).await;
            assert!(read.is_ok(), "an idle connection still open after {LONG:?}");
            if answer.starts_with(b"HTTP/1.1 429") {
                refused += 1;
            } else {
                timed_out += 1;
            }
        }
        (refused, timed_out)
    });
    eprintln!("{refused} refused with 429, {timed_out} closed at the header deadline");
    assert_eq!((refused, timed_out), (236, 64));
    let (code, _) = common::web::http(a.port, "GET", "/healthz", None).expect("healthz");
    assert_eq!(code, 200);
}

/// The frames of a raw WebSocket as (opcode, payload), until the socket closes or `limit`.
fn server_frames(tcp: &mut TcpStream, limit: Duration) -> Vec<(u8, Vec<u8>)> {
    let deadline = Instant::now() + limit;
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Whole frames in the buffer (a server's frames are not masked).
        loop {
            if buf.len() < 2 {
                break;
            }
            let (len, start) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < start + len {
                break;
            }
            frames.push((buf[0] & 0x0f, buf[start..start + len].to_vec()));
            buf.drain(..start + len);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return frames;
        }
        tcp.set_read_timeout(Some(left)).expect("timeout");
        match tcp.read(&mut chunk) {
            Ok(0) | Err(_) => return frames,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A page that answers nothing is pinged, then let go with the reason; one that answers
/// (a WebSocket client reading its socket) stays.
#[test]
fn a_page_that_answers_nothing_is_let_go() {
    let server = broker();
    let a = Gateway::start(&server.url(), &["--idle-timeout", "3"]);
    let room = unique_name("idle");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut alive = rt.block_on(async {
        let mut page = Page::open(&a.ws_url(&room, "Viva")).await;
        page.until("history", LONG).await;
        page
    });
    let (mut tcp, head) = raw_websocket(a.port, &format!("/ws?room={room}&name=Muda"), "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The raw socket is read on a thread; meanwhile the page reads its own (answering pings).
    let raw = std::thread::spawn(move || {
        let opened = Instant::now();
        let frames = server_frames(&mut tcp, LONG);
        (frames, opened.elapsed())
    });
    rt.block_on(async {
        let mut finished_at = None;
        loop {
            if let Some(frame) = alive.next(Duration::from_millis(200)).await {
                assert_ne!(
                    frame["type"], "close",
                    "the reading page was let go: {frame}"
                );
            }
            match finished_at {
                None if raw.is_finished() => finished_at = Some(Instant::now()),
                Some(t) if t.elapsed() > Duration::from_secs(2) => break,
                _ => {}
            }
        }
    });
    let (frames, took) = raw.join().expect("raw reader");
    let kinds: Vec<u8> = frames.iter().map(|f| f.0).collect();
    assert!(kinds.contains(&0x9), "pinged: {kinds:?}");
    let (op, close) = frames.last().expect("frames").clone();
    assert_eq!(op, 0x8, "a close frame last: {kinds:?}");
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1001);
    let reason = String::from_utf8_lossy(&close[2..]).into_owned();
    assert!(reason.contains("not even a pong"), "{reason}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "closed after {took:?}"
    );
    // The page that reads (and so answers the pings) is still there, past the timeout.
    rt.block_on(async {
        alive.say("sigo").await;
        assert_eq!(alive.messages(1, LONG).await, ["sigo"]);
    });
}

/// One HTTP/1.1 request with the given `Host` and extra header lines: (status, body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (code, _, body) = common::web::request_on(tcp, host, method, path, headers, body);
    (code, body)
}

/// Cross-site WebSocket hijacking and cross-site posts are refused; the gateway's own pages,
/// listed sites and programs without Origin are served. Host names the gateway does not know
/// (DNS rebinding) are refused.
#[test]
fn foreign_origins_and_hosts_are_refused() {
    let server = broker();
    let a = Gateway::start(
        &server.url(),
        &[
            "--allowed-origin",
            "https://chat.example",
            "--allowed-host",
            "chat.example",
        ],
    );
    let port = a.port;
    let room = unique_name("origin");
    let ws = format!("/ws?room={room}&name=Ana");
    let own = format!("http://127.0.0.1:{port}");
    let upgrade = |extra: &str| raw_websocket(port, &ws, extra).1;

    // WebSocket upgrades.
    let status = |head: String| {
        head.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(status(upgrade("Origin: http://evil.example\r\n")), "403");
    assert_eq!(status(upgrade("Origin: null\r\n")), "403");
    assert_eq!(
        status(upgrade("Sec-Fetch-Site: cross-site\r\n")),
        "403",
        "cross-site without Origin"
    );
    assert_eq!(
        status(upgrade(&format!("Origin: {own}\r\n"))),
        "101",
        "same origin"
    );
    assert_eq!(status(upgrade("")), "101", "no Origin: a program");
    assert_eq!(
        status(upgrade(
            "Origin: https://chat.example\r\nSec-Fetch-Site: cross-site\r\n"
        )),
        "101",
        "an allowed origin"
    );

    // Posts.
    let path = format!("/api/rooms/{room}/messages");
    let body = r#"{"usuario": "Ana", "mensaje": "hola"}"#;
    let host = format!("127.0.0.1:{port}");
    let (code, answer) = request(
        port,
        "POST",
        &path,
        &host,
        "Origin: http://evil.example\r\n",
        body,
    );
    assert_eq!(code, 403, "{answer}");
    assert!(answer.contains("--allowed-origin"), "{answer}");
    let (code, answer) = request(
        port,
        "POST",
        &path,
        &host,
        "Sec-Fetch-Site: cross-site\r\n",
        body,
    );
    assert_eq!(code, 403, "{answer}");
    let (code, answer) = request(
        port,
        "POST",
        &path,
        &host,
        &format!("Origin: {own}\r\n"),
        body,
    );
    assert_eq!(code, 201, "same origin: {answer}");
    let (code, answer) = request(port, "POST", &path, &host, "", body);
    assert_eq!(code, 201, "no Origin: {answer}");
    // Reading is not a change: a foreign page cannot read the answer anyway (no CORS).
    let (code, _) = request(
        port,
        "GET",
        &path,
        &host,
        "Origin: http://evil.example\r\n",
        "",
    );
    assert_eq!(code, 200);

    // Host names.
    let (code, answer) = request(port, "GET", "/", &format!("evil.example:{port}"), "", "");
    assert_eq!(code, 403, "a rebound name: {answer}");
    assert!(answer.contains("--allowed-host"), "{answer}");
    let (code, _) = request(port, "GET", "/healthz", "evil.example", "", "");
    assert_eq!(code, 403);
    for served in [
        host.as_str(),
        &format!("localhost:{port}"),
        "[::1]",
        "chat.example",
    ] {
        let (code, answer) = request(port, "GET", "/", served, "", "");
        assert_eq!(code, 200, "Host: {served}: {answer}");
    }
}

/// A request whose headers arrive but whose body trickles (or never comes) is answered 408
/// at the header deadline and closed, and one announcing a body larger than any post 413:
/// neither holds a connection, or reads without end.
#[test]
fn a_slow_or_oversized_request_body_is_cut_off() {
    let server = broker();
    let a = Gateway::start(&server.url(), &["--header-timeout", "2"]);
    let mut tcp = TcpStream::connect(("127.0.0.1", a.port)).expect("connect");
    tcp.set_read_timeout(Some(LONG)).expect("timeout");
    let room = unique_name("slow");
    write!(
        tcp,
        "POST /api/rooms/{room}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"usuario\""
    )
    .expect("head");
    let started = Instant::now();
    // A byte a second: the body never completes within the deadline.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let _ = tcp.write_all(b" ");
        tcp.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        match tcp.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => answer.push(byte[0]),
            Err(_) if started.elapsed() < LONG => continue,
            Err(e) => panic!("no answer to a trickled body in {LONG:?}: {e}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut off after {:?}",
        started.elapsed()
    );

    let big = format!(
        r#"{{"usuario":"Ana","mensaje":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    let (code, body) = common::web::http(
        a.port,
        "POST",
        &format!("/api/rooms/{room}/messages"),
        Some(&big),
    )
    .expect("answered");
    assert_eq!(code, 413, "{body}");
}
