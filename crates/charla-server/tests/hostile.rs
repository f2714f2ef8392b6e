//! `charla serve` against hostile or broken clients (issue 7, items 7, 8, 9, 12, 14), checked on
//! a real server process: the crate's `charla-serve` binary (the same flags as `charla serve`),
//! spawned per test so its memory (`VmRSS`), CPU time, listening socket and accepted sockets
//! can be read from `/proc` and `ss` exactly as an operator would. A separate process (not the
//! in-process test server) is what makes those figures honest: the test's own allocations and
//! threads are not counted.

mod common;

use charla_testkit::rss_kib;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Raw;

/// A `charla-serve` process on an ephemeral port, killed on drop. Its log (stderr) goes to a
/// file so tests can check what it reported.
struct Spawned {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Spawned {
    fn start(extra: &[&str]) -> Spawned {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_charla-serve"))
            .args(["--port", "0", "--dir"])
            .arg(dir.path())
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // The server logs its address once it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text
                .lines()
                .find(|l| l.contains("ready to accept connections"))
            {
                let at = line.find("127.0.0.1:").expect("address in the ready line") + 10;
                let digits: String = line[at..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                break digits.parse::<u16>().unwrap();
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("charla-serve exited early ({st}): {text}");
            }
            assert!(
                Instant::now() < deadline,
                "charla-serve did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Spawned {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn raw(&self) -> Raw {
        Raw::connect(self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory in KiB, from /proc/<pid>/status.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// User + system CPU time of the process, in clock ticks (1/100 s on Linux).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 of `rest`.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples a process's RSS in the background and keeps the highest value seen.
struct RssPeak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                // A sampling period, not a wait for a condition.
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RssPeak {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// One field of INFO, as a number.
fn info_field(r: &mut Raw, field: &str) -> Option<u64> {
    let info = r.cmd(&["INFO", "everything"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
}

/// Read from `s` until the server closes it; returns what came (a reset counts as closed).
fn read_until_closed(s: &mut TcpStream, timeout: Duration) -> Result<Vec<u8>, String> {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut all = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(all),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(all),
            Err(e) => {
                return Err(format!(
                    "{e} after {} bytes: {:?}",
                    all.len(),
                    String::from_utf8_lossy(&all[..all.len().min(200)])
                ))
            }
        }
    }
}

fn client_count(r: &mut Raw) -> usize {
    let list = r.cmd(&["CLIENT", "LIST"]);
    list.lines().filter(|l| l.contains("id=")).count()
}

// ---- item 7: limits before buffering --------------------------------------------------------

/// Send a multibulk announcing `args` bulks of `bulk` bytes each (the body is `x`s), as fast
/// as the server takes it; stops at the first write error (the server closed on us).
fn send_big_request(
    port: u16,
    args: usize,
    bulk: usize,
) -> (TcpStream, std::thread::JoinHandle<u64>) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut sent = 0u64;
        let chunk = vec![b'x'; 1 << 20];
        let mut go = |b: &[u8]| -> bool {
            if w.write_all(b).is_err() {
                return false;
            }
            sent += b.len() as u64;
            true
        };
        if !go(format!("*{args}\r\n").as_bytes()) {
            return sent;
        }
        for _ in 0..args {
            if !go(format!("${bulk}\r\n").as_bytes()) {
                return sent;
            }
            let mut left = bulk;
            while left > 0 {
                let n = left.min(chunk.len());
                if !go(&chunk[..n]) {
                    return sent;
                }
                left -= n;
            }
            if !go(b"\r\n") {
                return sent;
            }
        }
        sent
    });
    (s, writer)
}

#[test]
fn big_bulks_before_auth_are_refused_before_buffering() {
    let srv = Spawned::start(&["--requirepass", "s3cret"]);
    let base = srv.rss_kib();
    let peak = RssPeak::start(srv.pid());
    // The reproduced attack: arguments of 60 MB before AUTH (3 of them, a SET's worth).
    let (mut s, writer) = send_big_request(srv.port, 3, 60 << 20);
    let got = read_until_closed(&mut s, Duration::from_secs(60)).expect("connection closed");
    let sent = writer.join().unwrap();
    let peak = peak.finish();
    let got = String::from_utf8_lossy(&got).into_owned();
    eprintln!(
        "unauthenticated 3 x 60 MB: client sent {sent} B, server RSS {base} -> peak {peak} KiB"
    );
    assert!(
        got.is_empty() || got == "-ERR Protocol error: unauthenticated bulk length\r\n",
        "{got:?}"
    );
    assert!(
        peak < base + 32 * 1024,
        "server RSS went from {base} KiB to {peak} KiB while an unauthenticated client sent {sent} bytes"
    );
    // Too many arguments before AUTH: refused on the header alone.
    let mut r = srv.raw();
    r.send(b"*16\r\n$3\r\nSET\r\n");
    assert_eq!(
        r.read_to_close(),
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    let mut r = srv.raw();
    r.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16385\r\n");
    assert_eq!(
        r.read_to_close(),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    // Small requests before AUTH are answered normally, and AUTH lifts the limits.
    let mut r = srv.raw();
    assert!(r.cmd(&["GET", "k"]).starts_with("-NOAUTH"));
    assert_eq!(r.cmd(&["AUTH", "s3cret"]), "+OK\r\n");
    let big = "v".repeat(100_000);
    assert_eq!(r.cmd(&["SET", "k", &big]), "+OK\r\n");
    assert_eq!(r.cmd(&["STRLEN", "k"]), ":100000\r\n");
}

#[test]
fn query_buffer_and_bulk_limits_apply_to_everyone_and_are_configurable() {
    let srv = Spawned::start(&[]);
    let mut admin = srv.raw();
    // Redis's defaults.
    assert_eq!(
        admin.cmd(&["CONFIG", "GET", "proto-max-bulk-len"]),
        "*2\r\n$18\r\nproto-max-bulk-len\r\n$9\r\n536870912\r\n"
    );
    assert_eq!(
        admin.cmd(&["CONFIG", "GET", "client-query-buffer-limit"]),
        "*2\r\n$25\r\nclient-query-buffer-limit\r\n$10\r\n1073741824\r\n"
    );
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "client-query-buffer-limit", "4mb"]),
        "+OK\r\n"
    );
    assert_eq!(
        admin.cmd(&["CONFIG", "GET", "client-query-buffer-limit"]),
        "*2\r\n$25\r\nclient-query-buffer-limit\r\n$7\r\n4194304\r\n"
    );
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "proto-max-bulk-len", "2mb"]),
        "+OK\r\n"
    );
    assert!(admin
        .cmd(&["CONFIG", "SET", "proto-max-bulk-len", "lots"])
        .starts_with("-ERR"));

    // One bulk over proto-max-bulk-len: refused on its header.
    let mut r = srv.raw();
    r.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2097153\r\n");
    assert_eq!(
        r.read_to_close(),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    // Bulks each under the limit whose request outgrows the query buffer limit: refused and
    // closed, and the server does not hold the request.
    let base = srv.rss_kib();
    let peak = RssPeak::start(srv.pid());
    let (mut s, writer) = send_big_request(srv.port, 40, 2 << 20);
    let got = read_until_closed(&mut s, Duration::from_secs(60)).expect("connection closed");
    let sent = writer.join().unwrap();
    let peak = peak.finish();
    eprintln!("40 x 2 MB over a 4 MB query buffer limit: client sent {sent} B, server RSS {base} -> peak {peak} KiB");
    assert!(
        String::from_utf8_lossy(&got).starts_with("-ERR Protocol error: "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        sent < 40 * (2 << 20),
        "the whole 80 MB request was accepted"
    );
    assert!(
        peak < base + 32 * 1024,
        "server RSS went from {base} KiB to {peak} KiB"
    );
    assert_eq!(admin.cmd(&["PING"]), "+PONG\r\n");
}

// ---- item 8: pub/sub output buffer limits ---------------------------------------------------

#[test]
fn a_subscriber_that_never_reads_is_disconnected_and_memory_stays_bounded() {
    let srv = Spawned::start(&[]);
    assert_eq!(
        srv.raw().cmd(&["CONFIG", "GET", "client-output-buffer-limit"]),
        "*2\r\n$26\r\nclient-output-buffer-limit\r\n$67\r\nnormal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60\r\n"
    );
    let mut sub = srv.raw();
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "firehose"]),
        "*3\r\n$9\r\nsubscribe\r\n$8\r\nfirehose\r\n:1\r\n"
    );
    // From here on the subscriber reads nothing.
    let base = srv.rss_kib();
    let peak = RssPeak::start(srv.pid());
    let mut publisher = srv.raw();
    let payload = vec![b'p'; 1 << 20];
    let mut frame = b"*3\r\n$7\r\nPUBLISH\r\n$8\r\nfirehose\r\n$1048576\r\n".to_vec();
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(b"\r\n");
    let mut batch = Vec::new();
    for _ in 0..16 {
        batch.extend_from_slice(&frame);
    }
    // ~1 GB in batches of 16 pipelined PUBLISHes.
    let mut counted = Vec::new();
    for _ in 0..64 {
        publisher.send(&batch);
        for _ in 0..16 {
            counted.push(publisher.reply());
        }
    }
    let peak = peak.finish();
    eprintln!(
        "1 GiB published to a subscriber that never reads: server RSS {base} -> peak {peak} KiB"
    );
    assert!(
        peak < base + 128 * 1024,
        "server RSS went from {base} KiB to {peak} KiB with a subscriber that never reads"
    );
    // The subscriber was cut off: what it can still read ends with the connection closing.
    let rest = read_until_closed(&mut sub.s, Duration::from_secs(20));
    assert!(rest.is_ok(), "the subscriber is still connected: {rest:?}");
    // Once dropped it is not counted as a receiver, and the server says why it dropped it.
    assert_eq!(counted.last().unwrap(), ":0\r\n", "{counted:?}");
    assert!(counted.iter().any(|c| c == ":1\r\n"));
    assert_eq!(
        publisher.cmd(&["PUBSUB", "NUMSUB", "firehose"]),
        "*2\r\n$8\r\nfirehose\r\n:0\r\n"
    );
    assert_eq!(
        info_field(&mut publisher, "client_output_buffer_limit_disconnections"),
        Some(1)
    );
    let log = srv.log_text();
    assert!(log.contains("output buffer limit"), "{log}");
}

// ---- item 12: a slow sender costs linear work -----------------------------------------------

/// Two clients trickle a request of a million arguments a hundred at a time. What is checked:
/// the parser walks each byte about once (INFO's own counters, exact on any machine), and the
/// server neither burns CPU waiting for the rest nor keeps other clients waiting. Those two are
/// measured against a reference taken at the same moments on the same machine: a second
/// server of the same build that gets the same pings and no trickle (the pinger alternates
/// between the two), so a loaded or slow machine moves both figures alike. The margins are
/// generous; a busy loop (a core for the whole run) or a rescan per read still fails them.
#[test]
fn a_trickled_request_is_parsed_once_not_once_per_read() {
    let srv = Spawned::start(&[]);
    let reference = Spawned::start(&[]);
    let cpu0 = srv.cpu_ticks();
    let ref_cpu0 = reference.cpu_ticks();
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // Two clients announce a million arguments and send them a hundred at a time.
    let tricklers: Vec<_> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
            s.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                let mut sent = 0u64;
                s.write_all(b"*1000000\r\n").unwrap();
                sent += 10;
                let piece = b"$1\r\na\r\n".repeat(100);
                for _ in 0..1500 {
                    s.write_all(&piece).unwrap();
                    sent += piece.len() as u64;
                    // The attack's pacing: a little at a time, so each piece is its own read.
                    std::thread::sleep(Duration::from_millis(1));
                }
                sent
            })
        })
        .collect();
    // Meanwhile another client's PING latency, on the trickled server and on the reference,
    // one right after the other.
    let (port, ref_port) = (srv.port, reference.port);
    let st = stop.clone();
    let pinger = std::thread::spawn(move || {
        let mut on_srv = Raw::connect(port);
        let mut on_ref = Raw::connect(ref_port);
        let (mut lat, mut ref_lat) = (Vec::new(), Vec::new());
        while !st.load(Ordering::Relaxed) {
            for (r, lat) in [(&mut on_srv, &mut lat), (&mut on_ref, &mut ref_lat)] {
                let t = Instant::now();
                assert_eq!(r.cmd(&["PING"]), "+PONG\r\n");
                lat.push(t.elapsed());
            }
            // A ping per millisecond: a sample rate, so the server's CPU time measures the
            // slow senders and not a busy pinger.
            std::thread::sleep(Duration::from_millis(1));
        }
        lat.sort();
        ref_lat.sort();
        (lat, ref_lat)
    });
    let sent: u64 = tricklers.into_iter().map(|t| t.join().unwrap()).sum();
    stop.store(true, Ordering::Relaxed);
    let (lat, ref_lat) = pinger.join().unwrap();
    let wall = t0.elapsed();
    let ticks = |t: u64| Duration::from_millis(t * 10);
    let cpu = ticks(srv.cpu_ticks() - cpu0);
    let ref_cpu = ticks(reference.cpu_ticks() - ref_cpu0);
    // The tricklers' sockets closed when their threads ended; a connection's counters reach
    // INFO when it ends, so poll until all the bytes sent are accounted for.
    let mut r = srv.raw();
    let mut scanned = 0;
    let mut input = 0;
    common::wait_until(
        "the tricklers' bytes in INFO",
        Duration::from_secs(20),
        || {
            input = info_field(&mut r, "total_net_input_bytes").unwrap_or(0);
            scanned = info_field(&mut r, "charla_parser_bytes_scanned").unwrap_or(0);
            input >= sent
        },
    );
    let p50 = lat[lat.len() / 2];
    let ref_p50 = ref_lat[ref_lat.len() / 2];
    eprintln!(
        "sent {sent} B, parser walked {scanned} B; over {wall:?} server CPU {cpu:?} \
         (reference {ref_cpu:?}); PING p50 {p50:?} (reference {ref_p50:?}, {} pings each)",
        lat.len()
    );
    assert!(
        scanned <= 2 * input,
        "the parser walked {scanned} bytes for {input} bytes of input: it starts over on every read"
    );
    // The trickle costs a few reads and parses per millisecond, a small multiple of what the
    // pings alone cost the reference; a server that spins while a request is incomplete
    // spends a core's worth of the run on top of that.
    assert!(
        cpu <= ref_cpu * 8 + wall / 10,
        "two slow senders cost the server {cpu:?} of CPU in {wall:?}, where the same server \
         with only the pings spent {ref_cpu:?}"
    );
    // PING is not queued behind the trickled request: its median stays a small multiple of
    // the reference's, taken at the same moments.
    assert!(
        p50 <= ref_p50 * 5 + Duration::from_millis(1),
        "PING p50 {p50:?} on the trickled server, {ref_p50:?} on the reference"
    );
}

// ---- item 14: listen backlog ---------------------------------------------------------------

#[test]
fn the_listen_backlog_is_the_system_maximum() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let srv = Spawned::start(&[]);
    // `ss` shows a listening socket's backlog in its Send-Q column.
    let out = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{}", srv.port)])
        .output()
        .expect("ss (iproute2) is needed to read the backlog");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let backlog: u32 = text
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no listening socket in {text:?}"));
    assert_eq!(backlog, somaxconn, "{text}");
    assert_eq!(
        srv.raw().cmd(&["CONFIG", "GET", "tcp-backlog"]),
        format!(
            "*2\r\n$11\r\ntcp-backlog\r\n${}\r\n{somaxconn}\r\n",
            somaxconn.to_string().len()
        )
    );
}

/// `kill -STOP` of a process for the lifetime of the guard (`kill -CONT` when dropped).
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) }, 0);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGCONT) };
    }
}

/// A burst of 2000 connections (or `net.core.somaxconn` of them where the system allows fewer)
/// waits in the accept queue however late the server gets to it: every connect completes while
/// the server process is stopped (SIGSTOP), so none waits for a SYN retransmission (1 s, 3 s,
/// …) as it would behind a small listen backlog; then every one is served. Nothing here
/// depends on the machine's speed: the kernel completes the handshakes without the server
/// running, and a connect that does not fit cannot complete until the server is resumed.
#[test]
fn a_burst_of_2000_connections_has_no_connect_stalls() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (threads, each) = (40, 2000.min(somaxconn) / 40);
    let burst = threads * each;
    let srv = Spawned::start(&[]);
    let port = srv.port;
    let connected = Arc::new(AtomicUsize::new(0));
    let stopped = Stopped::new(srv.pid());
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let connected = connected.clone();
            std::thread::spawn(move || {
                (0..each)
                    .map(|_| {
                        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                        connected.fetch_add(1, Ordering::Relaxed);
                        s
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    // A generous deadline: a connect that fits takes microseconds, one that does not fit
    // cannot complete while the server is stopped.
    common::wait_until(
        &format!("{burst} connects to complete while the server is stopped"),
        Duration::from_secs(60),
        || connected.load(Ordering::Relaxed) == burst,
    );
    eprintln!("{burst} connects completed with the server stopped (somaxconn {somaxconn})");
    drop(stopped);
    let mut socks: Vec<TcpStream> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(socks.len(), burst);
    // Every one of them is served.
    for s in socks.iter_mut().step_by(97) {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"PING\r\n").unwrap();
        let mut b = [0u8; 7];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"+PONG\r\n");
    }
}

// ---- item 9: dead peers --------------------------------------------------------------------

/// The keepalive timer of the server's end of a connection, from /proc/net/tcp{,6}: (timer
/// kind, expiry in clock ticks). Kind 2 is the keepalive timer.
fn server_side_timer(server_port: u16, client_port: u16) -> Option<(u32, u64)> {
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port_of = |a: &str| {
                a.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if f.len() > 5
                && port_of(f[1]) == Some(server_port)
                && port_of(f[2]) == Some(client_port)
                && f[3] == "01"
            {
                let (kind, when) = f[5].split_once(':')?;
                return Some((
                    u32::from_str_radix(kind, 16).ok()?,
                    u64::from_str_radix(when, 16).ok()?,
                ));
            }
        }
    }
    None
}

#[test]
fn accepted_connections_have_tcp_keepalive() {
    let srv = Spawned::start(&[]);
    let mut r = srv.raw();
    assert_eq!(
        r.cmd(&["CONFIG", "GET", "tcp-keepalive"]),
        "*2\r\n$13\r\ntcp-keepalive\r\n$3\r\n300\r\n"
    );
    let client_port = r.s.local_addr().unwrap().port();
    let mut timer = None;
    // Right after traffic a retransmit or delayed-ack timer may show first; then the idle
    // connection's only timer is keepalive's.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        timer = server_side_timer(srv.port, client_port);
        if matches!(timer, Some((2, _))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (kind, when) = timer.expect("the server's end of the connection in /proc/net/tcp");
    assert_eq!(kind, 2, "no keepalive timer on the server's socket");
    // tcp-keepalive 300: the first probe is due in at most 300 s (clock ticks of 1/100 s).
    assert!(
        (250 * 100..=300 * 100).contains(&when),
        "keepalive due in {when} ticks"
    );
}

#[test]
fn a_blocked_client_that_hangs_up_is_removed_and_never_served() {
    let srv = Spawned::start(&[]);
    let mut admin = srv.raw();
    let mut pusher = srv.raw();
    for round in 0..30 {
        let key = format!("q{round}");
        let mut blocked = srv.raw();
        blocked.send(
            format!(
                "*3\r\n$5\r\nBLPOP\r\n${}\r\n{key}\r\n$1\r\n0\r\n",
                key.len()
            )
            .as_bytes(),
        );
        common::wait_until("the client to block", Duration::from_secs(5), || {
            info_field(&mut admin, "blocked_clients") == Some(1)
        });
        // It hangs up; a value arrives right after.
        drop(blocked);
        assert_eq!(pusher.cmd(&["LPUSH", &key, "v"]), ":1\r\n");
        common::wait_until(
            "the hung-up client to leave CLIENT LIST",
            Duration::from_secs(20),
            || client_count(&mut admin) == 2,
        );
        // Nothing was popped for the dead client.
        assert_eq!(admin.cmd(&["LLEN", &key]), ":1\r\n", "round {round}");
        assert_eq!(info_field(&mut admin, "blocked_clients"), Some(0));
    }
}

#[test]
fn an_unknown_command_is_not_echoed_back_whole() {
    let srv = Spawned::start(&[]);
    let mut r = srv.raw();
    let name = "x".repeat(1 << 20);
    let reply = r.cmd(&[&name, "a"]);
    // Redis cuts the name at 128 bytes (`%.128s`); a 1 MB name must not come back as 1 MB.
    assert_eq!(
        reply,
        format!(
            "-ERR unknown command '{}', with args beginning with: 'a' \r\n",
            "x".repeat(128)
        )
    );
}
