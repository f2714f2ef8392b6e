//! A real Redis-protocol server process for one test — `redis-server`, or the `charla serve`
//! of a built `charla` binary — in the style of redis-rs's test support.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a local port")
}

/// A `redis-server` (or `charla serve`) child process. Dropping it kills the server; if the
/// test is failing (the thread is panicking) the server's log is printed first so the failure
/// can be understood.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    /// `None`: `redis-server` from PATH; `Some(exe)`: `exe serve` (a `charla` binary).
    charla: Option<PathBuf>,
}

impl RedisServer {
    /// Start with default settings, or `None` (after [`crate::service_missing`]) when
    /// `redis-server` is not installed.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(&[])
    }

    /// Start with extra command-line settings such as `["--requirepass", "pw"]`.
    pub fn start_with(args: &[&str]) -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            crate::service_missing("redis-server");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("charla-redis-")
            .tempdir()
            .expect("cannot create a temp dir");
        Some(Self::launch(dir, args, None))
    }

    /// `charla serve` of the given `charla` binary (tests of the `charla` package pass
    /// `env!("CARGO_BIN_EXE_charla")`), with extra `serve` flags such as
    /// `["--appendonly", "yes"]`. Its log (stderr) goes where [`log_path`](Self::log_path) says.
    pub fn start_charla(charla: &Path, args: &[&str]) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("charla-serve-")
            .tempdir()
            .expect("cannot create a temp dir");
        Self::launch(dir, args, Some(charla.to_path_buf()))
    }

    fn launch(dir: tempfile::TempDir, args: &[&str], charla: Option<PathBuf>) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            charla,
        };
        // The free port can be taken between probing and binding; try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        server.print_log();
        panic!("the server did not start");
    }

    fn spawn(&mut self) -> bool {
        let log = self.log_path();
        let port = self.port.to_string();
        let child = match &self.charla {
            None => Command::new("redis-server")
                .args(["--port", &port, "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .arg("--logfile")
                .arg(&log)
                .args(&self.extra_args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot run redis-server"),
            Some(exe) => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .expect("cannot open the server log");
                Command::new(exe)
                    .args(["serve", "--port", &port, "--bind", "127.0.0.1"])
                    .arg("--dir")
                    .arg(self.dir.path())
                    .args(&self.extra_args)
                    .env("RUST_LOG", "info")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("cannot run charla serve")
            }
        };
        self.child = Some(child);
        let port = self.port;
        await_ready(&mut self.child, Duration::from_secs(10), || answers(port))
    }
}

/// Poll `ready` until it holds (true), the child exits, or `limit` passes (the child is then
/// killed): how every test server waits for its process to come up.
pub(crate) fn await_ready(
    child: &mut Option<Child>,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        if let Some(c) = child.as_mut() {
            if let Ok(Some(_)) = c.try_wait() {
                return false; // exited: port taken or bad arguments
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(child);
    false
}

/// SIGKILL a test server and reap it.
pub(crate) fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// True once the server on `port` replies to PING (an auth error also proves it is up).
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if n > 0 && (buf.starts_with(b"+PONG") || buf.starts_with(b"-NOAUTH")))
}

impl RedisServer {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// SIGKILL the server (a crash), keeping its directory so it can be started again.
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Start again on the same port and directory (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "the server did not restart on port {}",
            self.port
        );
    }

    fn print_log(&self) {
        print_log_tail(
            &self.log_path(),
            &format!("server log (port {})", self.port),
        );
    }
}

/// Print the end of a test server's log (its last 200 lines: what explains a failure), for a
/// failing test.
pub(crate) fn print_log_tail(path: &Path, title: &str) {
    match std::fs::read_to_string(path) {
        Ok(log) => {
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(200)..].join("\n");
            eprintln!("---- {title} ----\n{tail}\n----");
        }
        Err(e) => eprintln!("(no {title}: {e})"),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log();
        }
        self.kill();
    }
}
