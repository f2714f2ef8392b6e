//! A real Kafka-protocol broker process for one test: `tansu` (an Apache-Kafka-compatible
//! broker written in Rust) with its SQLite storage, on a free loopback port, in a temporary
//! directory, probed until it answers, killed on drop, its log printed when the test fails.
//!
//! Why tansu: this machine has no JVM Kafka and no Docker, and tansu speaks the protocol
//! librdkafka, kafkajs and confluent-kafka use (groups, committed offsets, idempotent
//! producers). Why SQLite and not its `memory://` engine: the in-memory engine loses messages
//! read from inside a batch. The database path in the storage URL is relative to the working
//! directory, so each broker runs in its own directory and a restart keeps the data.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::free_port;
use crate::redis_server::{await_ready, print_log_tail, stop};

/// The `tansu` executable: `CHARLA_TANSU`, else `tansu` on PATH, else `~/.cargo/bin/tansu`
/// (where `cargo install tansu` puts it, which is not always on a test's PATH).
pub fn tansu_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHARLA_TANSU") {
        return Some(PathBuf::from(p));
    }
    let on_path = Command::new("tansu")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if on_path {
        return Some(PathBuf::from("tansu"));
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let candidate = home.join("bin").join("tansu");
    candidate.is_file().then_some(candidate)
}

/// A `tansu` broker child process. Dropping it kills the broker; if the test is failing the
/// broker's log is printed first.
pub struct KafkaServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    exe: PathBuf,
    /// The port the broker tells clients to connect to, when not its own (a proxy's).
    advertised: Option<u16>,
}

impl KafkaServer {
    /// Start a broker, or `None` (after [`crate::service_missing`]) when tansu is not
    /// installed (`scripts/test` installs it).
    pub fn start() -> Option<KafkaServer> {
        Self::start_on(None, None)
    }

    /// Start on `port` (a free one when `None`), telling clients to connect to
    /// `advertised` instead of the broker's own port: a proxy in front of it, which then
    /// carries every connection (Kafka clients connect to the advertised address after the
    /// first).
    pub fn start_on(port: Option<u16>, advertised: Option<u16>) -> Option<KafkaServer> {
        let Some(exe) = tansu_path() else {
            crate::service_missing(
                "the tansu Kafka broker (cargo install tansu --features libsql)",
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("charla-kafka-")
            .tempdir()
            .expect("cannot create a temp dir");
        let mut server = KafkaServer {
            child: None,
            port: 0,
            dir,
            exe,
            advertised,
        };
        // The free port can be taken between probing and binding; try a few.
        for _ in 0..5 {
            server.port = port.unwrap_or_else(free_port);
            if server.spawn() {
                return Some(server);
            }
        }
        server.print_log();
        panic!("the Kafka test broker (tansu) did not start");
    }

    fn spawn(&mut self) -> bool {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised.unwrap_or(self.port));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("cannot open the broker log");
        let log2 = log.try_clone().expect("cannot share the broker log");
        let child = Command::new(&self.exe)
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            // CHARLA_TANSU_LOG raises it to debug a case (`tansu_broker::coordinator=info`
            // shows the group's joins and missed heartbeats in the log a failure prints).
            .env(
                "RUST_LOG",
                std::env::var("CHARLA_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("cannot run tansu");
        self.child = Some(child);
        let port = self.port;
        await_ready(&mut self.child, Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `kafka://127.0.0.1:<port>?delete_topics=false`: tansu 0.6 deletes every topic of
    /// the cluster when any one is deleted (its `sql/topic_delete_by.sql` filters on the
    /// cluster only), so charla's clean-up must leave topics alone on it.
    pub fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}?delete_topics=false", self.port)
    }

    /// `127.0.0.1:<port>`, as other Kafka clients take their bootstrap servers.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    /// SIGKILL the broker (a crash), keeping its directory so it can be started again.
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Start again on the same port and directory (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "the Kafka test broker did not restart on port {}",
            self.port
        );
    }

    fn print_log(&self) {
        print_log_tail(
            &self.log_path(),
            &format!("kafka broker log (port {})", self.port),
        );
    }
}

impl Drop for KafkaServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log();
        }
        self.kill();
    }
}
