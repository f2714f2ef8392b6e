//! `charla work`: run a command once per message of a room, as a job queue.
//!
//! Why it is built this way:
//! - Retries happen in this process, after a backoff, while the worker keeps holding the
//!   delivery: the backends keep its lease alive with their background heartbeat, so nobody
//!   else gets the message meanwhile, and a worker that dies mid-retry loses nothing (the
//!   broker hands the message out again). Only after the last attempt is it dead-lettered,
//!   with the reason, the attempts and the end of the command's stderr.
//! - Each command runs in a process group of its own, so a timeout (or a shutdown past its
//!   grace) kills the whole group with SIGKILL: `sh -c 'a & b'` leaves no child behind.
//! - No shell: the command and its arguments are run as given (write `sh -c '…'` for one), so
//!   nothing a message carries is ever interpreted by a shell; the message reaches the command
//!   as JSON on stdin and as `CHARLA_…` environment variables.
//! - The subscriber is `&mut` and not shareable, so it stays in the main loop, which receives
//!   only while fewer than `--concurrency` commands run (prefetch = concurrency: a worker never
//!   holds messages it is not working on) and acks or rejects what the command tasks report
//!   back over a channel.

use std::collections::VecDeque;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use charla_core::{AckTag, DeadReason, Delivery, Failure, Subscriber, Subscription};
use clap::Args;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::config::{Route, Settings};

/// Bytes of each of a command's stdout and stderr kept while it runs (older bytes dropped).
const KEEP_OUTPUT: usize = 64 * 1024;

/// How long the output of a command that exited is still read (a background child it left
/// may hold the pipes open for ever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct WorkArgs {
    #[command(flatten)]
    pub route: Route,

    /// Commands run at once (each holds one message)
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Kill a command (its whole process group) that runs longer than this: 30s, 500ms, 5m
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub timeout: Duration,

    /// Attempts before a message is dead-lettered, counting earlier deliveries of it
    #[arg(long, value_name = "N", default_value_t = charla_core::DEFAULT_MAX_DELIVERIES,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_deliveries: u32,

    /// Wait before a retry: MIN doubled per attempt, at most MAX, times a random 0.5..1.5
    #[arg(long, value_name = "MIN..MAX", default_value = "1s..5m", value_parser = backoff)]
    pub backoff: Backoff,

    /// On SIGTERM or Ctrl+C, let running commands finish this long before killing them
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub grace: Duration,

    /// Print one JSON object per event (NDJSON) instead of text
    #[arg(long)]
    pub json: bool,

    /// The command to run for each message, and its arguments (after `--`)
    #[arg(trailing_var_arg = true, required = true, num_args = 1.., value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `--backoff MIN..MAX`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt `attempt` (1-based), jitter included.
    fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(40);
        let base = self
            .min
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        base.mul_f64(0.5 + random_unit())
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    charla_core::parse_age(text)
        .ok_or_else(|| format!("'{text}' is not a duration (500ms, 30s, 5m, 1h)"))
}

fn backoff(text: &str) -> Result<Backoff, String> {
    let (min, max) = text
        .split_once("..")
        .ok_or_else(|| format!("'{text}': expected MIN..MAX, such as 1s..5m"))?;
    let (min, max) = (duration(min)?, duration(max)?);
    if min > max || min.is_zero() {
        return Err(format!("'{text}': MIN must be above 0 and at most MAX"));
    }
    Ok(Backoff { min, max })
}

/// A number in 0..1 without a random-number crate: std's hasher keys are random per process,
/// and a counter makes each call differ.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What the running commands are told by the main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Keep working.
    Run,
    /// Shutting down: finish the command running, but no retries.
    Drain,
    /// Kill the command now.
    Kill,
}

/// What is fixed for every job of this worker.
struct Plan {
    command: Vec<String>,
    room: String,
    timeout: Duration,
    max_deliveries: u32,
    backoff: Backoff,
}

/// How one run of the command ended.
enum Run {
    Exited {
        duration: Duration,
    },
    Failed {
        why: Why,
        error: String,
    },
    /// Killed on shutdown: the message goes back to the broker.
    Killed,
    /// Could not be started at all (no such program): the worker cannot work.
    Broken(String),
}

/// Why a run failed.
#[derive(Debug, Clone)]
enum Why {
    Exit(i32),
    Signal(i32),
    Timeout,
    NotStarted(String),
}

impl Why {
    fn reason(&self) -> DeadReason {
        match self {
            Why::Timeout => DeadReason::Timeout,
            other => DeadReason::CommandFailed(other.to_string()),
        }
    }
}

impl Why {
    /// The event's JSON with the exit code or signal added, where there is one.
    fn add_to(&self, mut event: serde_json::Value) -> serde_json::Value {
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
enum Report {
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

enum End {
    Done { attempt: u32, duration: Duration },
    Dead { why: Why, failure: Failure },
    GiveBack,
    Broken(String),
}

#[derive(Default)]
struct Counts {
    done: u64,
    failed: u64,
    dead: u64,
    given_back: u64,
}

pub async fn run(settings: &Settings, args: WorkArgs) -> Result<ExitCode> {
    let mode = settings.mode(&args.route)?;
    let room = settings.room(&args.route, mode, true);
    let concurrency = usize::from(args.concurrency);
    let subscription = Subscription::new(mode, room.as_str())
        .prefetch(concurrency)
        .events(true);
    let broker = super::connect_or_start(settings).await?;
    let sub = broker
        .subscribe(subscription.clone())
        .await
        .map_err(|e| anyhow::anyhow!(super::explain(settings, &e)))?;
    let lang = settings.lang;
    let out = Printer {
        json: args.json,
        lang,
    };
    let command = args.command.join(" ");
    out.event(
        json!({"event": "start", "room": room, "mode": mode.as_str(),
               "concurrency": concurrency, "command": args.command}),
        || {
            lang.tr(
                "work-start",
                &[
                    ("room", &room),
                    ("mode", &mode.as_str()),
                    ("count", &concurrency),
                    ("command", &command),
                ],
            )
        },
        true,
    );
    let plan = Arc::new(Plan {
        command: args.command,
        room,
        timeout: args.timeout,
        max_deliveries: args.max_deliveries,
        backoff: args.backoff,
    });
    let link = Link {
        broker,
        url: settings.broker.clone(),
        subscription,
    };
    let mut worker = Worker::new(sub, plan, concurrency, out, link);
    let outcome = worker.work(args.grace).await;
    let Worker {
        sub, counts, link, ..
    } = worker;
    if let Err(e) = sub.close().await {
        tracing::warn!(
            "closing the subscription (unacked messages come back after the consumer timeout): {e}"
        );
    }
    drop(link);
    out.event(
        json!({"event": "summary", "done": counts.done, "failed": counts.failed,
               "dead": counts.dead, "given_back": counts.given_back}),
        || {
            lang.tr(
                "work-summary",
                &[
                    ("done", &counts.done),
                    ("failed", &counts.failed),
                    ("dead", &counts.dead),
                    ("back", &counts.given_back),
                ],
            )
        },
        true,
    );
    outcome.map(|()| ExitCode::SUCCESS)
}

/// Where events go: a text line, or one JSON object on stdout.
#[derive(Clone, Copy)]
struct Printer {
    json: bool,
    lang: charla_i18n::Lang,
}

impl Printer {
    /// `text` lines go to stdout, or to stderr when `banner` (start and summary).
    fn event(&self, object: serde_json::Value, text: impl FnOnce() -> String, banner: bool) {
        use std::io::Write;
        let line = if self.json {
            object.to_string()
        } else {
            super::visible(&text()).into_owned()
        };
        // A reader that went away is no reason to stop working.
        if banner && !self.json {
            let _ = writeln!(std::io::stderr(), "{line}");
        } else {
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    }
}

/// What the worker needs to subscribe again after the broker went away.
struct Link {
    broker: Box<dyn charla_core::Broker>,
    url: String,
    subscription: Subscription,
}

struct Worker {
    sub: Box<dyn Subscriber>,
    link: Link,
    plan: Arc<Plan>,
    concurrency: usize,
    running: usize,
    out: Printer,
    counts: Counts,
    tx: mpsc::UnboundedSender<Report>,
    rx: mpsc::UnboundedReceiver<Report>,
    stop: watch::Sender<Stop>,
    broken: Option<String>,
}

impl Worker {
    fn new(
        sub: Box<dyn Subscriber>,
        plan: Arc<Plan>,
        concurrency: usize,
        out: Printer,
        link: Link,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(Stop::Run);
        Worker {
            sub,
            link,
            plan,
            concurrency,
            running: 0,
            out,
            counts: Counts::default(),
            tx,
            rx,
            stop,
            broken: None,
        }
    }

    /// Receive and run until a signal (then drain for `grace`) or a broken command or broker.
    async fn work(&mut self, grace: Duration) -> Result<()> {
        let shutdown = crate::signal::shutdown();
        tokio::pin!(shutdown);
        let mut failure: Option<anyhow::Error> = None;
        loop {
            if self.broken.is_some() || failure.is_some() {
                break;
            }
            let room = self.running < self.concurrency;
            tokio::select! {
                d = self.sub.recv(), if room => match d {
                    Ok(d) => self.start(d),
                    Err(e) if e.is_transient() => match self.reconnect(e, shutdown.as_mut()).await {
                        Ok(true) => {}
                        Ok(false) => break, // stopped while reconnecting
                        Err(e) => failure = Some(e),
                    },
                    Err(e) => failure = Some(anyhow::anyhow!("receiving from {}: {e}", self.plan.room)),
                },
                Some(report) = self.rx.recv() => self.settle(report).await,
                _ = &mut shutdown => break,
            }
        }
        self.drain(grace).await;
        match (self.broken.take(), failure) {
            (Some(why), _) => anyhow::bail!("the command cannot be run: {why}"),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(()),
        }
    }

    /// The broker went away: let the commands running finish (their messages are theirs until
    /// then; an ack that cannot reach the broker means the message comes again, at least
    /// once), then connect and subscribe again, for as long as it takes. `Ok(false)` when a
    /// signal came meanwhile.
    async fn reconnect(
        &mut self,
        why: charla_core::BrokerError,
        mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<bool> {
        let lang = self.out.lang;
        let report = |e: &charla_core::BrokerError, d: Duration| {
            eprintln!("{}", lang.reconnecting(&e.to_string(), d.as_secs_f64()));
        };
        report(&why, Duration::from_millis(200));
        while self.running > 0 {
            tokio::select! {
                Some(report) = self.rx.recv() => self.settle(report).await,
                _ = &mut shutdown => return Ok(false),
            }
        }
        let again = tokio::select! {
            r = super::resubscribe(&self.link.url, &self.link.subscription, report) => r,
            _ = &mut shutdown => return Ok(false),
        };
        let (broker, sub) = again.map_err(|e| anyhow::anyhow!("{e}"))?;
        let old = std::mem::replace(&mut self.sub, sub);
        let _ = old.close().await; // its connection is gone; what it held comes back anyway
        self.link.broker = broker;
        Ok(true)
    }

    /// Take nothing new; let running commands finish up to `grace` (a second signal ends it
    /// at once), then kill the rest. Their messages go back to the broker on close.
    async fn drain(&mut self, grace: Duration) {
        self.stop.send_replace(Stop::Drain);
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        let again = crate::signal::shutdown();
        tokio::pin!(again);
        let mut killing = false;
        while self.running > 0 {
            tokio::select! {
                Some(report) = self.rx.recv() => self.settle(report).await,
                _ = &mut deadline, if !killing => killing = true,
                _ = &mut again, if !killing => killing = true,
            }
            if killing {
                self.stop.send_replace(Stop::Kill);
            }
        }
    }

    fn start(&mut self, delivery: Delivery) {
        self.running += 1;
        let job = Job {
            plan: Arc::clone(&self.plan),
            delivery,
            stop: self.stop.subscribe(),
            tx: self.tx.clone(),
        };
        tokio::spawn(job.run());
    }

    async fn settle(&mut self, report: Report) {
        let max = self.plan.max_deliveries;
        let (tag, id, end) = match report {
            Report::Retry {
                id,
                why,
                attempt,
                delay,
            } => {
                self.counts.failed += 1;
                let secs = delay.as_secs_f64();
                self.out.event(
                    why.add_to(json!({"event": "failed", "id": id,
                           "reason": why.reason().to_string(), "attempt": attempt,
                           "max_deliveries": max, "retry_in_ms": delay.as_millis() as u64})),
                    || {
                        let secs = format!("{secs:.1}");
                        self.out.lang.tr(
                            "work-failed",
                            &[
                                ("id", &id),
                                ("why", &why),
                                ("attempt", &attempt),
                                ("max", &max),
                                ("secs", &secs),
                            ],
                        )
                    },
                    false,
                );
                return;
            }
            Report::Finished { tag, id, end } => (tag, id, end),
        };
        self.running = self.running.saturating_sub(1);
        match end {
            End::Done { attempt, duration } => self.done(tag, &id, attempt, duration).await,
            End::Dead { why, failure } => self.dead(tag, &id, why, failure).await,
            End::GiveBack => {
                self.counts.given_back += 1;
                self.out.event(
                    json!({"event": "given-back", "id": id}),
                    || self.out.lang.tr("work-given-back", &[("id", &id)]),
                    false,
                );
            }
            End::Broken(why) => {
                self.counts.given_back += 1;
                self.broken.get_or_insert(why);
            }
        }
    }

    async fn done(&mut self, tag: AckTag, id: &str, attempt: u32, duration: Duration) {
        if let Err(e) = self.sub.ack(tag).await {
            tracing::warn!("acknowledging {id} failed (it will be delivered again): {e}");
        }
        self.counts.done += 1;
        let secs = duration.as_secs_f64();
        self.out.event(
            json!({"event": "done", "id": id, "exit": 0, "attempt": attempt,
                   "duration_ms": duration.as_millis() as u64}),
            || {
                let secs = format!("{secs:.2}");
                self.out
                    .lang
                    .tr("work-done", &[("id", &id), ("secs", &secs)])
            },
            false,
        );
    }

    async fn dead(&mut self, tag: AckTag, id: &str, why: Why, failure: Failure) {
        let attempts = failure.attempts;
        let reason = failure.reason.to_string();
        if let Err(e) = self.sub.reject(tag, failure).await {
            tracing::warn!("dead-lettering {id} failed (it will be delivered again): {e}");
        }
        self.counts.failed += 1;
        self.counts.dead += 1;
        self.out.event(
            why.add_to(json!({"event": "dead", "id": id, "reason": reason, "attempts": attempts})),
            || {
                self.out.lang.tr(
                    "work-dead",
                    &[("id", &id), ("why", &why), ("count", &attempts)],
                )
            },
            false,
        );
    }
}

/// One message's processing: attempts and the waits between them.
struct Job {
    plan: Arc<Plan>,
    delivery: Delivery,
    stop: watch::Receiver<Stop>,
    tx: mpsc::UnboundedSender<Report>,
}

impl Job {
    async fn run(mut self) {
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
            let (why, error) = match self.once(attempt).await {
                Run::Exited { duration } => return End::Done { attempt, duration },
                Run::Killed => return End::GiveBack,
                Run::Broken(e) => return End::Broken(e),
                Run::Failed { why, error } => (why, error),
            };
            if first_failure_us == 0 {
                first_failure_us = charla_core::dead::now_us();
            }
            if attempt >= self.plan.max_deliveries {
                let failure = Failure::new(why.reason())
                    .error(&error)
                    .attempts(attempt)
                    .first_failure_us(first_failure_us);
                return End::Dead { why, failure };
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
        let error = last_output(stderr, stdout).await;
        let why = match status {
            None => Why::Timeout,
            Some(Err(e)) => Why::NotStarted(format!("waiting for it: {e}")),
            Some(Ok(s)) if s.success() => return Run::Exited { duration },
            Some(Ok(s)) => exit_why(s),
        };
        Run::Failed { why, error }
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

/// The end of the command's stderr (its stdout when stderr is empty), at most
/// [`charla_core::dead::MAX_ERROR_BYTES`], for the dead letter.
async fn last_output(
    stderr: Option<tokio::task::JoinHandle<Vec<u8>>>,
    stdout: Option<tokio::task::JoinHandle<Vec<u8>>>,
) -> String {
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
    let (err, out) = tokio::join!(collect(stderr), collect(stdout));
    let bytes = if err.iter().all(u8::is_ascii_whitespace) {
        out
    } else {
        err
    };
    last_text(&bytes, charla_core::dead::MAX_ERROR_BYTES)
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
    fn backoff_doubles_up_to_max_with_jitter() {
        let b = backoff("1s..5m").expect("parses");
        for _ in 0..100 {
            let first = b.delay(1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(1500));
            let third = b.delay(3);
            assert!(third >= Duration::from_secs(2) && third <= Duration::from_secs(6));
            let late = b.delay(30);
            assert!(late >= Duration::from_secs(150) && late <= Duration::from_secs(450));
        }
        assert!(backoff("5m..1s").is_err());
        assert!(backoff("1s").is_err());
        assert!(backoff("0s..1s").is_err());
    }

    #[test]
    fn the_last_bytes_are_kept_at_a_character_boundary() {
        let text = format!("{}{}", "x".repeat(10), "é".repeat(10));
        let kept = last_text(text.as_bytes(), 5);
        assert_eq!(kept, "éé");
        assert_eq!(last_text(b"boom\n", 2048), "boom");
    }
}
