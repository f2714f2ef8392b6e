//! The consumer *process* of the SIGKILL cases: the suite's own test binary, started again
//! with `CHARLA_SUITE_CHILD=consumer`, opens the broker by URL and obeys its parent line by
//! line on stdin, so the parent can kill it with SIGKILL at an exact point (messages received
//! and printed, not yet acknowledged) — a real process death, not a dropped value.
//!
//! Protocol (one line each way): the child prints `READY` once subscribed; on `batch` it
//! receives one batch and prints `RECV <id> <redelivered 0|1>` per message, then `END`; on
//! `ack` it acknowledges everything it holds and prints `ACKED`.

use std::process::ExitCode;
use std::time::Duration;

use charla_core::{Mode, StartFrom, Subscription};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::Suite;

const ROLE: &str = "CHARLA_SUITE_CHILD";

/// What the parent tells the child (through its environment).
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub url: String,
    pub mode: Mode,
    pub room: String,
    pub group: Option<String>,
    pub consumer: String,
    pub prefetch: usize,
}

impl ConsumerSpec {
    /// The subscription this consumer (process or not) makes.
    pub(super) fn subscription(&self) -> Subscription {
        let mut s = Subscription::new(self.mode, self.room.as_str())
            .prefetch(self.prefetch)
            .consumer(self.consumer.as_str());
        if let Some(g) = &self.group {
            s = s.group(g.as_str()).start(StartFrom::Beginning);
        }
        s
    }
}

/// The parent's handle on a consumer process.
pub struct ChildConsumer {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
}

/// How long the child may take to answer one request.
const ANSWER: Duration = Duration::from_secs(30);

impl ChildConsumer {
    /// Start the test binary again as a consumer and wait until it is subscribed.
    pub async fn spawn(spec: &ConsumerSpec) -> ChildConsumer {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut cmd = Command::new(exe);
        cmd.env(ROLE, "consumer")
            .env("CHARLA_SUITE_URL", &spec.url)
            .env("CHARLA_SUITE_MODE", spec.mode.as_str())
            .env("CHARLA_SUITE_ROOM", &spec.room)
            .env("CHARLA_SUITE_CONSUMER", &spec.consumer)
            .env("CHARLA_SUITE_PREFETCH", spec.prefetch.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(g) = &spec.group {
            cmd.env("CHARLA_SUITE_GROUP", g);
        }
        let mut child = cmd.spawn().expect("start the consumer process");
        let stdin = child.stdin.take().expect("child stdin");
        let stdout = child.stdout.take().expect("child stdout");
        let mut me = ChildConsumer {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        let first = me.line().await;
        assert_eq!(first, "READY", "the consumer process did not start");
        me
    }

    async fn line(&mut self) -> String {
        match tokio::time::timeout(ANSWER, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!("the consumer process exited (see its stderr above)"),
            Ok(Err(e)) => panic!("reading from the consumer process: {e}"),
            Err(_) => panic!("the consumer process did not answer within {ANSWER:?}"),
        }
    }

    async fn say(&mut self, what: &str) {
        self.stdin
            .write_all(format!("{what}\n").as_bytes())
            .await
            .expect("write to the consumer process");
        self.stdin.flush().await.expect("flush");
    }

    /// One batch as the child received it: `(id, redelivered)`, not acknowledged yet.
    pub async fn batch(&mut self) -> Vec<(String, bool)> {
        self.say("batch").await;
        self.read_batch().await
    }

    /// As [`batch`](ChildConsumer::batch), or `None` when no message came within `wait` (the
    /// child is then still waiting: kill it).
    pub async fn batch_within(&mut self, wait: Duration) -> Option<Vec<(String, bool)>> {
        self.say("batch").await;
        tokio::time::timeout(wait, self.read_batch()).await.ok()
    }

    async fn read_batch(&mut self) -> Vec<(String, bool)> {
        let mut got = Vec::new();
        loop {
            let line = self.line().await;
            if line == "END" {
                return got;
            }
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("RECV"), Some(id), Some(flag)) => got.push((id.to_owned(), flag == "1")),
                _ => panic!("unexpected line from the consumer process: {line}"),
            }
        }
    }

    /// Acknowledge everything the child holds.
    pub async fn ack(&mut self) {
        self.say("ack").await;
        let line = self.line().await;
        assert_eq!(line, "ACKED", "the consumer process could not ack");
    }

    /// SIGKILL, and wait until the process is gone.
    pub async fn kill(mut self) {
        self.child
            .kill()
            .await
            .expect("kill -9 the consumer process");
    }
}

/// When this process is a child of the suite, play its role and return the exit code.
pub(super) fn run_if_child(suite: &Suite) -> Option<ExitCode> {
    let role = std::env::var(ROLE).ok()?;
    if role != "consumer" {
        eprintln!("unknown {ROLE} role {role:?}");
        return Some(ExitCode::FAILURE);
    }
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let spec = ConsumerSpec {
        url: var("CHARLA_SUITE_URL"),
        mode: var("CHARLA_SUITE_MODE").parse().unwrap_or(Mode::Queue),
        room: var("CHARLA_SUITE_ROOM"),
        group: std::env::var("CHARLA_SUITE_GROUP").ok(),
        consumer: var("CHARLA_SUITE_CONSUMER"),
        prefetch: var("CHARLA_SUITE_PREFETCH").parse().unwrap_or(10),
    };
    let result = super::runtime().block_on(consume(suite, spec));
    Some(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer process: {e}");
            ExitCode::FAILURE
        }
    })
}

async fn consume(suite: &Suite, spec: ConsumerSpec) -> Result<(), String> {
    let broker = (suite.open)(spec.url.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut sub = broker
        .subscribe(spec.subscription())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = tokio::io::stdout();
    out.write_all(b"READY\n").await.map_err(|e| e.to_string())?;
    out.flush().await.map_err(|e| e.to_string())?;
    let mut held = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let mut reply = String::new();
        match line.as_str() {
            "batch" => {
                let batch = sub
                    .recv_batch(spec.prefetch)
                    .await
                    .map_err(|e| e.to_string())?;
                for d in batch {
                    reply.push_str(&format!(
                        "RECV {} {}\n",
                        d.message.id,
                        u8::from(d.redelivered)
                    ));
                    held.push(d.tag);
                }
                reply.push_str("END\n");
            }
            "ack" => {
                sub.ack_many(&held).await.map_err(|e| e.to_string())?;
                held.clear();
                reply.push_str("ACKED\n");
            }
            other => return Err(format!("unknown request {other:?}")),
        }
        out.write_all(reply.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        out.flush().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
