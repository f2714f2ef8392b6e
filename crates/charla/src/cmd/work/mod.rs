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

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use charla_core::{AckTag, Delivery, Failure, Subscriber, Subscription, TaskStatus};
use clap::Args;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::config::{Route, Settings};

mod backoff;
mod job;
mod notify;
mod output;

use super::duration_arg as duration;
use backoff::{backoff, Backoff};
use job::{End, Job, Plan, Report, Stop, Why};
use notify::Notifier;
use output::{Counts, Printer, Rate};

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

    /// Publish one completion message per task to ROOM (broadcast) [default ROOM: the room's
    /// name and `.done`]: its id as correlation id, status, exit code or signal, duration, the
    /// first lines of its output; what `charla send --wait` waits for
    #[arg(long, value_name = "ROOM", num_args = 0..=1, default_missing_value = "")]
    pub notify: Option<String>,

    /// Exit once this many tasks were taken and finished (scripts, benchmarks)
    #[arg(long, short = 'c', value_name = "N")]
    pub count: Option<u64>,

    /// Print one JSON object per event (NDJSON) instead of text
    #[arg(long)]
    pub json: bool,

    /// The command to run for each message, and its arguments (after `--`)
    #[arg(trailing_var_arg = true, required = true, num_args = 1.., value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// RabbitMQ's default `consumer_timeout`: a delivery unacked this long closes its channel.
const RABBITMQ_CONSUMER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub async fn run(settings: &Settings, args: WorkArgs) -> Result<ExitCode> {
    let mode = settings.mode(&args.route)?;
    let room = settings.room(&args.route, mode, true);
    let concurrency = usize::from(args.concurrency);
    let subscription = Subscription::new(mode, room.as_str())
        .prefetch(concurrency)
        .events(true);
    // Listening for signals from the start: a SIGTERM while connecting (a Kafka group join
    // takes seconds) ends the worker cleanly, having taken nothing.
    let shutdown = crate::signal::shutdown();
    tokio::pin!(shutdown);
    let connect = async {
        let broker = super::connect_or_start(settings).await?;
        let sub = broker
            .subscribe(subscription.clone())
            .await
            .map_err(|e| anyhow::anyhow!(super::explain(settings, &e)))?;
        anyhow::Ok((broker, sub))
    };
    let (broker, sub) = tokio::select! {
        connected = connect => connected?,
        _ = &mut shutdown => return Ok(ExitCode::SUCCESS),
    };
    let lang = settings.lang;
    if broker.backend() == "amqp" && args.timeout > RABBITMQ_CONSUMER_TIMEOUT {
        // RabbitMQ closes a channel whose delivery stays unacked past its consumer_timeout
        // (30 minutes by default; per queue only from 3.12): the task would run twice.
        let minutes = args.timeout.as_secs() / 60;
        eprintln!("{}", lang.tr("work-amqp-long", &[("minutes", &minutes)]));
    }
    let out = Printer::new(args.json, lang);
    out.start(&room, mode, concurrency, &args.command);
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
    worker.left = args.count;
    if let Some(notify) = args.notify {
        let room = match notify.trim() {
            "" => charla_core::task::reply_room(&worker.plan.room),
            named => named.to_owned(),
        };
        let mut notifier = Notifier::new(room, lang);
        notifier
            .attach(&*worker.link.broker)
            .await
            .map_err(|e| anyhow::anyhow!(super::explain(settings, &e)))?;
        worker.notifier = Some(notifier);
    }
    let outcome = worker.work(args.grace, shutdown.as_mut()).await;
    let Worker {
        sub, counts, link, ..
    } = worker;
    if let Err(e) = sub.close().await {
        tracing::warn!(
            "closing the subscription (unacked messages come back after the consumer timeout): {e}"
        );
    }
    drop(link);
    out.summary(&counts);
    outcome.map(|()| ExitCode::SUCCESS)
}

/// What the worker needs to subscribe again after the broker went away.
struct Link {
    broker: Box<dyn charla_core::Broker>,
    url: String,
    subscription: Subscription,
}

/// A task whose command succeeded, waiting for its ack (see [`Worker::settle_ready`]).
struct Done {
    tag: AckTag,
    id: String,
    attempt: u32,
    duration: Duration,
    output: job::Output,
}

struct Worker {
    sub: Box<dyn Subscriber>,
    /// Tasks finished a second, for the progress line.
    rate: Rate,
    /// Succeeded tasks not acknowledged yet.
    done: Vec<Done>,
    /// Tasks still to take (`--count`); `None`: no end.
    left: Option<u64>,
    link: Link,
    notifier: Option<Notifier>,
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
            rate: Rate::default(),
            done: Vec::new(),
            left: None,
            link,
            notifier: None,
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
    async fn work(
        &mut self,
        grace: Duration,
        mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<()> {
        let mut failure: Option<anyhow::Error> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if self.broken.is_some() || failure.is_some() {
                break;
            }
            if self.left == Some(0) && self.running == 0 {
                break; // --count reached
            }
            let room = self.running < self.concurrency && self.left != Some(0);
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
                Some(report) = self.rx.recv() => self.settle_ready(report).await,
                _ = tick.tick(), if self.out.progress => self.redraw(),
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
                Some(report) = self.rx.recv() => self.settle_ready(report).await,
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
        if let Some(notifier) = self.notifier.as_mut() {
            notifier.attach(&*self.link.broker).await?;
        }
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
                Some(report) = self.rx.recv() => self.settle_ready(report).await,
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
        if let Some(left) = self.left.as_mut() {
            *left = left.saturating_sub(1);
        }
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
            End::Done {
                attempt,
                duration,
                output,
            } => self.done.push(Done {
                tag,
                id,
                attempt,
                duration,
                output,
            }),
            End::Dead {
                why,
                failure,
                duration,
                output,
            } => {
                let attempts = failure.attempts;
                self.dead(tag, &id, &why, failure).await;
                let outcome =
                    notify::outcome(TaskStatus::Dead, Some(&why), attempts, duration, output);
                self.notify(&id, outcome).await;
            }
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

    /// The progress line (on a terminal): counts, commands running, tasks a second.
    fn redraw(&mut self) {
        let c = &self.counts;
        let rate = format!("{:.1}", self.rate.per_sec(c.done + c.dead));
        let args: [(&str, &dyn std::fmt::Display); 5] = [
            ("done", &c.done),
            ("failed", &c.failed),
            ("dead", &c.dead),
            ("running", &self.running),
            ("rate", &rate),
        ];
        let line = self.out.lang.tr("work-progress", &args);
        self.out.status(&line);
    }

    /// Settles `first` and every report already waiting, then acknowledges the tasks done
    /// among them in one call: one round trip for a burst of quick tasks instead of one each.
    async fn settle_ready(&mut self, first: Report) {
        self.settle(first).await;
        while let Ok(report) = self.rx.try_recv() {
            self.settle(report).await;
        }
        self.flush_done().await;
    }

    /// Acknowledges the finished tasks, then says so (and notifies) for each.
    async fn flush_done(&mut self) {
        if self.done.is_empty() {
            return;
        }
        let done = std::mem::take(&mut self.done);
        let tags: Vec<AckTag> = done.iter().map(|d| d.tag).collect();
        if let Err(e) = self.sub.ack_many(&tags).await {
            tracing::warn!(
                "acknowledging {} tasks failed (they will be delivered again): {e}",
                tags.len()
            );
        }
        for d in done {
            self.counts.done += 1;
            let secs = format!("{:.2}", d.duration.as_secs_f64());
            let id = d.id.as_str();
            self.out.event(
                json!({"event": "done", "id": id, "exit": 0, "attempt": d.attempt,
                       "duration_ms": d.duration.as_millis() as u64}),
                || {
                    self.out
                        .lang
                        .tr("work-done", &[("id", &id), ("secs", &secs)])
                },
                false,
            );
            let outcome = notify::outcome(TaskStatus::Done, None, d.attempt, d.duration, d.output);
            self.notify(&d.id, outcome).await;
        }
    }

    async fn notify(&mut self, id: &str, outcome: charla_core::TaskOutcome) {
        if let Some(notifier) = self.notifier.as_mut() {
            notifier.notify(id, outcome).await;
        }
    }

    async fn dead(&mut self, tag: AckTag, id: &str, why: &Why, failure: Failure) {
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
