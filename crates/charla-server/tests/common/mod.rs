//! Test support: an in-process server on port 0 (own thread and runtime, so both sync and
//! async tests can use it), and a raw RESP client that returns the exact reply bytes.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use charla_server::ServerConfig;

pub struct TestServer {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(cfg: ServerConfig) -> TestServer {
        Self::start_on("127.0.0.1", cfg)
    }

    pub fn start_on(bind: &str, cfg: ServerConfig) -> TestServer {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let bind = bind.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind((bind.as_str(), 0))
                    .await
                    .expect("bind");
                port_tx
                    .send(l.local_addr().expect("addr").port())
                    .expect("send port");
                charla_server::serve(l, cfg, async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("serve");
            });
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        TestServer {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Wrap a server started elsewhere on a fixed port.
    pub fn adopt(
        port: u16,
        stop: tokio::sync::oneshot::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    ) -> TestServer {
        TestServer {
            port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stop gracefully and wait (the AOF is flushed when this returns).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub use charla_testkit::wait_until;

impl TestServer {
    /// `INFO clients`' `blocked_clients` equals `n` (within 5 s).
    pub fn wait_blocked(&self, n: usize) {
        let mut r = self.raw();
        wait_until(
            &format!("{n} clients are blocked"),
            Duration::from_secs(5),
            || r.blocked_clients() == Some(n),
        );
    }
}

/// One server for the whole test binary, for tests that only need isolation by key names.
pub fn shared() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let s = TestServer::start(ServerConfig::default());
        let p = s.port;
        std::mem::forget(s);
        p
    })
}

pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.set_nodelay(true).ok();
        Raw { s, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    /// Send a command as a multibulk without reading its reply.
    pub fn send_cmd<A: AsRef<str>>(&mut self, args: &[A]) {
        self.send(&encode(args));
    }

    /// Send a command as a multibulk and return the exact reply as text.
    pub fn cmd(&mut self, args: &[&str]) -> String {
        self.send_cmd(args);
        self.reply()
    }

    /// Read exactly one complete reply.
    pub fn reply(&mut self) -> String {
        String::from_utf8_lossy(&self.reply_bytes()).into_owned()
    }

    /// Read exactly one complete reply, as its bytes (binary values stay exact).
    pub fn reply_bytes(&mut self) -> Vec<u8> {
        loop {
            if let Some(n) = reply_len(&self.buf) {
                return self.buf.drain(..n).collect();
            }
            let mut tmp = [0u8; 65536];
            let n = self.s.read(&mut tmp).expect("read reply");
            if n == 0 {
                let mut closed = b"<closed>".to_vec();
                closed.append(&mut self.buf);
                return closed;
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// One complete reply, or None if none arrives within `timeout` (the connection stays
    /// usable: a late reply is read by the next call).
    pub fn try_reply(&mut self, timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(n) = reply_len(&self.buf) {
                let r: Vec<u8> = self.buf.drain(..n).collect();
                return Some(String::from_utf8_lossy(&r).into_owned());
            }
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            self.s
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok();
            let mut tmp = [0u8; 65536];
            let r = self.s.read(&mut tmp);
            self.s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            match r {
                Ok(0) => return Some(format!("<closed>{}", String::from_utf8_lossy(&self.buf))),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return None
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// `INFO clients`' `blocked_clients` (on redis-server too), or None if the reply lacks it.
    pub fn blocked_clients(&mut self) -> Option<usize> {
        let info = self.cmd(&["INFO", "clients"]);
        let (_, rest) = info.split_once("blocked_clients:")?;
        rest.split("\r\n").next()?.parse().ok()
    }

    /// Read until the server closes; returns everything that came.
    pub fn read_to_close(&mut self) -> String {
        let mut all = std::mem::take(&mut self.buf);
        let mut tmp = [0u8; 65536];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// Length of one complete RESP2/RESP3 value at the start of `b`.
pub fn reply_len(b: &[u8]) -> Option<usize> {
    let line_end = b.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(b.get(1..line_end)?).ok()?;
    let after = line_end + 2;
    match b.first()? {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after),
        b'$' | b'=' | b'!' => {
            let n: i64 = head.parse().ok()?;
            if n < 0 {
                return Some(after);
            }
            let end = after + n as usize + 2;
            (b.len() >= end).then_some(end)
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n: i64 = head.parse().ok()?;
            if n < 0 {
                return Some(after);
            }
            let items = if b[0] == b'%' { n * 2 } else { n };
            let mut pos = after;
            for _ in 0..items {
                pos += reply_len(&b[pos..])?;
            }
            Some(pos)
        }
        _ => None,
    }
}

/// A unique key prefix so tests sharing a server do not collide.
pub fn k(name: &str) -> String {
    charla_testkit::unique_name(&format!("{name}:"))
}

/// A command as the RESP multibulk a client sends.
pub fn encode<A: AsRef<str>>(args: &[A]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        b.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    b
}

/// Run `script` (one command per line, arguments split on spaces) on a fresh connection to
/// `port`; each line with its reply, passed through `normalize` (line's arguments, raw reply)
/// for what legitimately differs, escaped for printing.
pub fn run_script(
    port: u16,
    script: &[&str],
    normalize: fn(&[&str], String) -> String,
) -> Vec<String> {
    let mut r = Raw::connect(port);
    script
        .iter()
        .map(|line| {
            let args: Vec<&str> = line.split(' ').collect();
            let reply = normalize(&args, r.cmd(&args));
            format!("{line} => {}", reply.escape_debug())
        })
        .collect()
}

/// `script` on a real redis-server and on charla serve: every reply must be the same after
/// `normalize`. Skips (or, with CI=true, fails) when redis-server is not installed.
pub fn assert_script_matches_redis(script: &[&str], normalize: fn(&[&str], String) -> String) {
    let Some(redis) = charla_testkit::RedisServer::start() else {
        return;
    };
    let ours = TestServer::start(charla_server::ServerConfig::default());
    let theirs = run_script(redis.port(), script, normalize);
    let mine = run_script(ours.port, script, normalize);
    assert_same_replies(&theirs, &mine);
}

/// Two recordings of the same script (redis-server's, charla serve's) line for line, every
/// differing line shown.
pub fn assert_same_replies(theirs: &[String], mine: &[String]) {
    let diffs: Vec<String> = theirs
        .iter()
        .zip(mine)
        .filter(|(t, m)| t != m)
        .map(|(t, m)| format!("redis : {t}\ncharla: {m}"))
        .collect();
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
