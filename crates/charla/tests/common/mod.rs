//! Helpers for tests that run the built `charla` binary against real brokers.

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `charla` command isolated from the developer's own setup: no config file is found
/// (empty XDG_CONFIG_HOME and working directory), English output, the given broker.
pub fn charla(broker: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_charla"));
    cmd.env("CHARLA_BROKER", broker)
        .env("XDG_CONFIG_HOME", sandbox())
        .env("HOME", sandbox())
        .env("LANG", "C.UTF-8")
        .env("CHARLA_NO_AUTOSTART", "1")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env_remove("CHARLA_LANG")
        .env_remove("CHARLA_CONFIG")
        .env_remove("CHARLA_NAME")
        .env_remove("CHARLA_ROOM")
        .env_remove("CHARLA_MODE")
        .current_dir(sandbox());
    cmd
}

/// An empty directory shared by the tests of this binary.
pub fn sandbox() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
        .to_path_buf()
}

/// Run to completion with a deadline; on timeout kill it and fail with what it printed.
pub fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run charla");
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write;
        input.write_all(stdin).expect("write stdin");
    }
    wait(child, Duration::from_secs(60))
}

/// Wait for a spawned child (stdout/stderr piped) with a deadline.
pub fn wait(mut child: Child, limit: Duration) -> Output {
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut v);
        }
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut v);
        }
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().expect("wait");
            let (o, e) = (
                out_t.join().unwrap_or_default(),
                err_t.join().unwrap_or_default(),
            );
            panic!(
                "timed out after {limit:?} ({status})\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Panic with both streams unless the command succeeded.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "command failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// NDJSON lines parsed.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Run redis-cli against a port; returns stdout.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Lines of a child's stdout, read on a thread as they come.
pub struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    pub fn of(child: &mut Child) -> Lines {
        use std::io::BufRead;
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// Wait until `n` lines containing `needle` have arrived; returns them.
    pub fn until(&self, needle: &str, n: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut found = Vec::new();
        while found.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) if line.contains(needle) => found.push(line),
                Ok(_) => {}
                Err(_) => panic!(
                    "only {} of {n} lines containing {needle:?} arrived: {found:?}",
                    found.len()
                ),
            }
        }
        found
    }

    /// Everything else, until the child closes its stdout.
    pub fn rest(self) -> String {
        self.0.iter().collect::<Vec<_>>().join("\n")
    }
}

/// Send a signal by name (`TERM`, `INT`) with the `kill` command.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

impl Lines {
    /// Lines of a child's stderr, read on a thread as they come.
    pub fn of_stderr(child: &mut Child) -> Lines {
        use std::io::BufRead;
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }
}

/// Wait until something accepts TCP connections on 127.0.0.1:`port`, or panic at `limit`.
pub fn wait_for_port(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The argv of a running process as `ps` shows it (NUL-separated in /proc).
pub fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("read /proc/PID/cmdline");
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// Kills a child process however the test ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
pub mod web;
pub mod work;
