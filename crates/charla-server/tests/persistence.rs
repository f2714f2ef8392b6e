//! Append-only persistence with the server as a child process (this test binary re-run in
//! "child" mode), so it can be stopped gracefully or killed with SIGKILL.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use charla_server::{AppendFsync, ServerConfig};
use common::Raw;

/// Not a test of its own: when CHARLA_CHILD_DIR is set this runs a server until killed.
#[test]
fn child_server() {
    let Ok(dir) = std::env::var("CHARLA_CHILD_DIR") else {
        return;
    };
    let port: u16 = std::env::var("CHARLA_CHILD_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect("CHARLA_CHILD_PORT");
    let fsync: AppendFsync = std::env::var("CHARLA_CHILD_FSYNC")
        .unwrap_or_else(|_| "always".into())
        .parse()
        .expect("fsync");
    let cfg = ServerConfig {
        port,
        dir: dir.into(),
        appendonly: true,
        appendfsync: fsync,
        aof_rewrite_min_size: std::env::var("CHARLA_CHILD_REWRITE_MIN")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64 << 20),
        ..ServerConfig::default()
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal");
        charla_server::serve(l, cfg, async move {
            term.recv().await;
        })
        .await
        .expect("serve");
    });
    std::process::exit(0);
}

struct Child_ {
    child: Child,
    port: u16,
}

fn spawn(dir: &std::path::Path, port: u16, fsync: &str, rewrite_min: u64) -> Child_ {
    let child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "child_server", "--nocapture", "--test-threads=1"])
        .env("CHARLA_CHILD_DIR", dir)
        .env("CHARLA_CHILD_PORT", port.to_string())
        .env("CHARLA_CHILD_FSYNC", fsync)
        .env("CHARLA_CHILD_REWRITE_MIN", rewrite_min.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child server");
    // Owned by the guard at once: if it never answers, the panic below still kills it.
    let c = Child_ { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return c;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("child server did not start");
}

impl Child_ {
    fn raw(&self) -> Raw {
        Raw::connect(self.port)
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn term(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("child server did not stop on SIGTERM");
    }
}

impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_dataset(r: &mut Raw) {
    assert_eq!(r.cmd(&["SET", "s", "v"]), "+OK\r\n");
    assert_eq!(r.cmd(&["SET", "ttl", "v", "EX", "1000"]), "+OK\r\n");
    assert_eq!(r.cmd(&["SET", "gone", "v", "PX", "1"]), "+OK\r\n");
    assert_eq!(r.cmd(&["RPUSH", "l", "a", "b", "c"]), ":3\r\n");
    assert_eq!(r.cmd(&["LMOVE", "l", "l2", "LEFT", "RIGHT"]), "$1\r\na\r\n");
    assert_eq!(r.cmd(&["HSET", "h", "f", "1"]), ":1\r\n");
    assert_eq!(r.cmd(&["HINCRBY", "h", "f", "41"]), ":42\r\n");
    assert_eq!(r.cmd(&["SELECT", "2"]), "+OK\r\n");
    assert_eq!(r.cmd(&["SET", "in2", "x"]), "+OK\r\n");
    assert_eq!(r.cmd(&["SELECT", "0"]), "+OK\r\n");
    assert_eq!(r.cmd(&["XADD", "st", "1-1", "f", "a"]), "$3\r\n1-1\r\n");
    assert!(r.cmd(&["XADD", "st", "*", "f", "b"]).starts_with('$'));
    assert_eq!(r.cmd(&["XGROUP", "CREATE", "st", "g", "0"]), "+OK\r\n");
    assert!(r
        .cmd(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "1",
            "STREAMS",
            "st",
            ">"
        ])
        .contains("1-1"));
    assert_eq!(r.cmd(&["INCR", "n"]), ":1\r\n");
}

fn check_dataset(r: &mut Raw) {
    assert_eq!(r.cmd(&["GET", "s"]), "$1\r\nv\r\n");
    let ttl = r.cmd(&["TTL", "ttl"]);
    assert!(ttl.starts_with(":9") || ttl.starts_with(":1000"), "{ttl}");
    assert_eq!(r.cmd(&["EXISTS", "gone"]), ":0\r\n");
    assert_eq!(
        r.cmd(&["LRANGE", "l", "0", "-1"]),
        "*2\r\n$1\r\nb\r\n$1\r\nc\r\n"
    );
    assert_eq!(r.cmd(&["LRANGE", "l2", "0", "-1"]), "*1\r\n$1\r\na\r\n");
    assert_eq!(r.cmd(&["HGET", "h", "f"]), "$2\r\n42\r\n");
    r.cmd(&["SELECT", "2"]);
    assert_eq!(r.cmd(&["GET", "in2"]), "$1\r\nx\r\n");
    r.cmd(&["SELECT", "0"]);
    assert_eq!(r.cmd(&["XLEN", "st"]), ":2\r\n");
    let pend = r.cmd(&["XPENDING", "st", "g", "-", "+", "10"]);
    assert!(
        pend.starts_with("*1\r\n*4\r\n$3\r\n1-1\r\n$1\r\nc\r\n"),
        "{pend}"
    );
    // The group resumes after the delivered entry.
    let next = r.cmd(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "st", ">"]);
    assert!(
        !next.contains("1-1") && next.contains("$1\r\nb\r\n"),
        "{next}"
    );
    assert_eq!(r.cmd(&["INCR", "n"]), ":2\r\n");
}

#[test]
fn data_survives_a_graceful_restart_and_a_rewrite() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = charla_testkit::free_port();
    let c = spawn(dir.path(), port, "everysec", 64 << 20);
    write_dataset(&mut c.raw());
    c.term();
    let c = spawn(dir.path(), port, "everysec", 64 << 20);
    check_dataset(&mut c.raw());
    // Compact, then restart from the rewritten file.
    let mut r = c.raw();
    assert_eq!(
        r.cmd(&["BGREWRITEAOF"]),
        "+Background append only file rewriting started\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !r.cmd(&["INFO", "persistence"]).contains("aof_rewrites:1") {
        assert!(Instant::now() < deadline, "rewrite did not happen");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(r.cmd(&["INCR", "n"]), ":3\r\n");
    c.term();
    let c = spawn(dir.path(), port, "everysec", 64 << 20);
    let mut r = c.raw();
    assert_eq!(r.cmd(&["GET", "n"]), "$1\r\n3\r\n");
    assert_eq!(r.cmd(&["XLEN", "st"]), ":2\r\n");
    assert_eq!(r.cmd(&["HGET", "h", "f"]), "$2\r\n42\r\n");
    let pend = r.cmd(&["XPENDING", "st", "g"]);
    assert!(pend.starts_with("*4\r\n:2\r\n"), "{pend}");
}

#[test]
fn kill_9_under_load_with_fsync_always_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = charla_testkit::free_port();
    // A small rewrite threshold so a rewrite also happens under load.
    let c = spawn(dir.path(), port, "always", 256 * 1024);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut r = Raw::connect(port);
                r.s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let key = format!("w{w}");
                let mut acked = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v = (acked + 1).to_string();
                    let mut b = format!(
                        "*3\r\n$5\r\nRPUSH\r\n${}\r\n{key}\r\n${}\r\n{v}\r\n",
                        key.len(),
                        v.len()
                    )
                    .into_bytes();
                    b.extend_from_slice(b"");
                    if std::io::Write::write_all(&mut r.s, &b).is_err() {
                        break;
                    }
                    let rep = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.reply()));
                    match rep {
                        Ok(s) if s.starts_with(':') => acked += 1,
                        _ => break,
                    }
                }
                (key, acked)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    c.kill9();
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(String, u64)> = writers
        .into_iter()
        .map(|h| h.join().expect("writer"))
        .collect();
    let total: u64 = results.iter().map(|(_, a)| a).sum();
    assert!(total > 100, "too little load to mean anything: {total}");
    let c = spawn(dir.path(), port, "always", 256 * 1024);
    let mut r = c.raw();
    for (key, acked) in results {
        let len: u64 = r.cmd(&["LLEN", &key])[1..].trim_end().parse().expect("len");
        // Everything acknowledged is there; at most the one in flight beyond it.
        assert!(
            len == acked || len == acked + 1,
            "{key}: acknowledged {acked}, found {len}"
        );
        let last = r.cmd(&["LINDEX", &key, &(acked as i64 - 1).to_string()]);
        assert!(
            acked == 0 || last.ends_with(&format!("\r\n{acked}\r\n")),
            "{key}: {last}"
        );
    }
    eprintln!("acknowledged {total} writes before kill -9, all present after replay");
}

#[test]
fn a_truncated_tail_is_cut_off_and_the_rest_loads() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = charla_testkit::free_port();
    let c = spawn(dir.path(), port, "always", 64 << 20);
    assert_eq!(c.raw().cmd(&["SET", "a", "1"]), "+OK\r\n");
    c.kill9();
    let path = dir.path().join(ServerConfig::default().appendfilename);
    let mut data = std::fs::read(&path).expect("aof");
    let good = data.len();
    data.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$10\r\nhal");
    std::fs::write(&path, &data).expect("write");
    let c = spawn(dir.path(), port, "always", 64 << 20);
    let mut r = c.raw();
    assert_eq!(r.cmd(&["GET", "a"]), "$1\r\n1\r\n");
    assert_eq!(r.cmd(&["EXISTS", "b"]), ":0\r\n");
    assert_eq!(std::fs::metadata(&path).expect("meta").len() as usize, good);
}
