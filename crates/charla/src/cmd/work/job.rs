//! One message's processing in `charla work`: the command's runs and the waits between them,
//! each run in a process group of its own (so a timeout kills everything it started), the
//! message on stdin and in `CHARLA_…` variables, and the end of its output kept, bounded, for
//! the dead letter and the completion notice.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use charla_core::{AckTag, DeadReason, Delivery, Failure};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::backoff::Backoff;

/// Bytes of each of a command's stdout and stderr kept while it runs (older bytes dropped).
const KEEP_OUTPUT: usize = 64 * 1024;

/// Bytes of each of stdout and stderr a completion notice carries (`--notify`).
const NOTICE_OUTPUT: usize = 1024;

/// The first lines of a run's output, for the completion notice.
#[derive(Debug, Clone, Default)]
pub(super) struct Output {
    pub(super) stdout: String,
    pub(super) stderr: String,
}

/// How long the output of a command that exited is still read (a background child it left
/// may hold the pipes open for ever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// What the running commands are told by the main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Keep working.
    Run,
    /// Shutting down: finish the command running, but no retries.
    Drain,
    /// Kill the command now.
    Kill,
}

/// What is fixed for every job of this worker.
pub(super) struct Plan {
    pub(super) command: Vec<String>,
    pub(super) room: String,
    pub(super) timeout: Duration,
    pub(super) max_deliveries: u32,
    pub(super) backoff: Backoff,
}

/// How one run of the command ended.
pub(super) enum Run {
    Exited {
        duration: Duration,
        output: Output,
    },
    Failed {
        why: Why,
        error: String,
        duration: Duration,
        output: Output,
    },
    /// Killed on shutdown: the message goes back to the broker.
    Killed,
    /// Could not be started at all (no such program): the worker cannot work.
    Broken(String),
}

/// Why a run failed.
#[derive(Debug, Clone)]
pub(super) enum Why {
    Exit(i32),
    Signal(i32),
    Timeout,
    NotStarted(String),
}

impl Why {
    pub(super) fn reason(&self) -> DeadReason {
        match self {
            Why::Timeout => DeadReason::Timeout,
            other => DeadReason::CommandFailed(other.to_string()),
        }
    }
}

impl Why {
    /// The event's JSON with the exit code or signal added, where there is one.
    pub(super) fn add_to(&self, mut event: serde_json::Value) -> serde_json::Value {
        match self {
            Why::Exit(code) => event["exit"] = json!(code),
            Why::Signal(sig) => event["signal"] = json!(sig),
            Why::Timeout | Why::NotStarted(_) => {}
        }
        event
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Exit(code) => write!(f, "exit {code}"),
            Why::Signal(sig) => write!(f, "signal {sig}"),
            Why::Timeout => f.write_str("timeout"),
            Why::NotStarted(e) => write!(f, "not started: {e}"),
        }
    }
}

/// What a job task reports to the main loop.
pub(super) enum Report {
    /// An attempt failed and will be retried after `delay`.
    Retry {
        id: String,
        why: Why,
        attempt: u32,
        delay: Duration,
    },
    /// The job is over: the main loop settles the delivery.
    Finished { tag: AckTag, id: String, end: End },
}

pub(super) enum End {
    Done {
        attempt: u32,
        duration: Duration,
        output: Output,
    },
    Dead {
        why: Why,
        failure: Failure,
        duration: Duration,
        output: Output,
    },
    GiveBack,
    Broken(String),
}

/// One message's processing: attempts and the waits between them.
pub(super) struct Job {
    pub(super) plan: Arc<Plan>,
    pub(super) delivery: Delivery,
    pub(super) stop: watch::Receiver<Stop>,
    pub(super) tx: mpsc::UnboundedSender<Report>,
}

impl Job {
    pub(super) async fn run(mut self) {
        let end = self.attempts().await;
        let report = Report::Finished {
            tag: self.delivery.tag,
            id: self.delivery.message.id.clone(),
            end,
        };
        // The main loop outlives every job; if it is gone there is nobody to tell.
        let _ = self.tx.send(report);
    }

    async fn attempts(&mut self) -> End {
        let before = self.delivery.message.deliveries;
        let mut first_failure_us = 0;
        let mut attempt = before;
        loop {
            attempt = attempt.saturating_add(1);
            let (why, error, duration, output) = match self.once(attempt).await {
                Run::Exited { duration, output } => {
                    return End::Done {
                        attempt,
                        duration,
                        output,
                    }
                }
                Run::Killed => return End::GiveBack,
                Run::Broken(e) => return End::Broken(e),
                Run::Failed {
                    why,
                    error,
                    duration,
                    output,
                } => (why, error, duration, output),
            };
            if first_failure_us == 0 {
                first_failure_us = charla_core::dead::now_us();
            }
            if attempt >= self.plan.max_deliveries {
                let failure = Failure::new(why.reason())
                    .error(&error)
                    .attempts(attempt)
                    .first_failure_us(first_failure_us);
                return End::Dead {
                    why,
                    failure,
                    duration,
                    output,
                };
            }
            let delay = self.plan.backoff.delay(attempt);
            let id = self.delivery.message.id.clone();
            let _ = self.tx.send(Report::Retry {
                id,
                why,
                attempt,
                delay,
            });
            // Shutting down: no retry; the message goes back to the broker.
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stop.wait_for(|s| *s != Stop::Run) => return End::GiveBack,
            }
            if *self.stop.borrow() != Stop::Run {
                return End::GiveBack;
            }
        }
    }

    /// Runs the command once for attempt `attempt`.
    async fn once(&mut self, attempt: u32) -> Run {
        let mut child = match self.command(attempt).spawn() {
            Ok(c) => c,
            Err(e) => return spawn_failed(&self.plan.command[0], e),
        };
        let started = Instant::now();
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        if let Some(mut stdin) = child.stdin.take() {
            let payload = self.delivery.message.encode();
            // A command that does not read its stdin closes it: not an error.
            tokio::spawn(async move {
                let _ = stdin.write_all(&payload).await;
            });
        }
        let stdout = child.stdout.take().map(|o| tokio::spawn(tail(o)));
        let stderr = child.stderr.take().map(|e| tokio::spawn(tail(e)));
        let status = tokio::select! {
            s = child.wait() => Some(s),
            _ = tokio::time::sleep(self.plan.timeout) => None,
            _ = wait_kill(&mut self.stop) => {
                kill_group(pgid, &mut child).await;
                return Run::Killed;
            }
        };
        if status.is_none() {
            kill_group(pgid, &mut child).await;
        }
        let duration = started.elapsed();
        let (err, out) = tokio::join!(collect(stderr), collect(stdout));
        let output = Output {
            stdout: first_text(&out, NOTICE_OUTPUT),
            stderr: first_text(&err, NOTICE_OUTPUT),
        };
        let why = match status {
            None => Why::Timeout,
            Some(Err(e)) => Why::NotStarted(format!("waiting for it: {e}")),
            Some(Ok(s)) if s.success() => return Run::Exited { duration, output },
            Some(Ok(s)) => exit_why(s),
        };
        // The end of stderr says why a command failed (stdout's when stderr is empty).
        let why_text = if err.iter().all(u8::is_ascii_whitespace) {
            out
        } else {
            err
        };
        let error = last_text(&why_text, charla_core::dead::MAX_ERROR_BYTES);
        Run::Failed {
            why,
            error,
            duration,
            output,
        }
    }

    fn command(&self, attempt: u32) -> tokio::process::Command {
        let m = &self.delivery.message;
        let room = if m.room.is_empty() {
            &self.plan.room
        } else {
            &m.room
        };
        // An environment value cannot hold a NUL byte (spawning would fail): drop them.
        let clean = |s: &str| s.replace('\0', "");
        let mut cmd = tokio::process::Command::new(&self.plan.command[0]);
        cmd.args(&self.plan.command[1..])
            .env("CHARLA_ID", clean(&m.id))
            .env("CHARLA_ROOM", clean(room))
            .env("CHARLA_USUARIO", clean(&m.usuario))
            .env("CHARLA_MENSAJE", clean(&m.mensaje))
            .env("CHARLA_ATTEMPT", attempt.to_string())
            .env("CHARLA_DELIVERIES", m.deliveries.to_string())
            .env(
                "CHARLA_FILE",
                m.file.as_deref().map(clean).unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        cmd
    }
}

/// A program that is not there (or not runnable) breaks the worker; anything else (out of
/// processes for a moment) is a failed attempt.
fn spawn_failed(program: &str, e: std::io::Error) -> Run {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::PermissionDenied => Run::Broken(format!("{program}: {e}")),
        _ => Run::Failed {
            why: Why::NotStarted(e.to_string()),
            error: String::new(),
            duration: Duration::ZERO,
            output: Output::default(),
        },
    }
}

fn exit_why(status: std::process::ExitStatus) -> Why {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return Why::Signal(sig);
        }
    }
    Why::Exit(status.code().unwrap_or(-1))
}

/// Completes once the main loop says to kill (never, if the main loop is gone).
async fn wait_kill(stop: &mut watch::Receiver<Stop>) {
    if stop.wait_for(|s| *s == Stop::Kill).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// SIGKILL to the command's whole process group, then reap it.
async fn kill_group(pgid: Option<i32>, child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pgid) = pgid.filter(|p| *p > 0) {
        // SAFETY: killpg only sends a signal; the group is the one the child leads.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = pgid;
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// The last [`KEEP_OUTPUT`] bytes a stream gives until it ends.
async fn tail(mut from: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = VecDeque::with_capacity(4096);
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend(&buf[..n]);
                let over = kept.len().saturating_sub(KEEP_OUTPUT);
                kept.drain(..over);
            }
        }
    }
    kept.into()
}

/// What a stream gave, read until it ends or for [`DRAIN_AFTER_EXIT`] after the command
/// exited (a background child it left may hold the pipe open for ever).
async fn collect(handle: Option<tokio::task::JoinHandle<Vec<u8>>>) -> Vec<u8> {
    let Some(mut handle) = handle else {
        return Vec::new();
    };
    match tokio::time::timeout(DRAIN_AFTER_EXIT, &mut handle).await {
        Ok(Ok(bytes)) => bytes,
        _ => {
            handle.abort();
            Vec::new()
        }
    }
}

/// The first `limit` bytes of `bytes` as text, cut at a character boundary.
fn first_text(bytes: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(limit + 4)]);
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim_end().to_owned()
}

/// The last `limit` bytes of `bytes` as text, cut at a character boundary.
fn last_text(bytes: &[u8], limit: usize) -> String {
    let start = bytes.len().saturating_sub(limit);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let text = text.trim_end();
    let mut cut = text.len().saturating_sub(limit);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text[cut..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_bytes_are_kept_at_a_character_boundary() {
        let text = format!("{}{}", "x".repeat(10), "é".repeat(10));
        let kept = last_text(text.as_bytes(), 5);
        assert_eq!(kept, "éé");
        assert_eq!(last_text(b"boom\n", 2048), "boom");
    }
}
