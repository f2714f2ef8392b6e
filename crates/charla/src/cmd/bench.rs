//! `charla bench`: end-to-end throughput and latency on one broker and mode.
//!
//! P producers and C consumers, each on its own connection, move N messages of B bytes
//! through a fresh room. Latency is measured per message from its send stamp (`ts_us`, set
//! just before publishing) to its arrival, in one process, so both ends read the same clock.
//! Throughput is messages delivered divided by the time from the first publish to the last
//! arrival. In broadcast mode every consumer gets every message.
//!
//! Two loops. Closed (the default): producers send as fast as the broker takes them, at most
//! `--window` ahead of the consumers; it measures throughput, and its latency hides queueing
//! (a slow broker slows the producer, so fewer messages wait). Open (`--rate R`): message k is
//! due at start + k/R whatever happened before, is stamped with that due time, and its latency
//! runs from then (coordinated-omission-correct, as wrk2 and HdrHistogram do): a stall shows
//! as the latency of every message that should have been sent during it.
//!
//! A benchmark never destroys data it did not create. It removes its room afterwards only
//! when it made the room up (a fresh `charla-bench-…` name) and only where removing a room
//! removes just that room: never a room named with `--room`, and never on Kafka, where a topic
//! deletion is the cluster's business (tansu 0.6 deletes every topic when asked to delete
//! one). What it leaves is printed on stderr with how to remove it, and listed in `--json`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use charla_core::{Message, Mode, StartFrom, Subscription};
use clap::Args;
use hdrhistogram::Histogram;
use tokio::sync::watch;

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Delivery mode to measure
    #[arg(long, short = 'm', default_value = "queue", value_name = "MODE")]
    pub mode: Mode,

    /// Messages to send in total (with --rate and --duration: rate × duration)
    #[arg(long, short = 'n', default_value_t = 100_000, value_name = "N")]
    pub messages: u64,

    /// Open loop: send this many messages per second on a fixed schedule, whatever the broker
    /// does, and measure each message's latency from when it was due (not from when it could be
    /// sent: queueing delay counts, as in wrk2). Without it, producers send as fast as the
    /// broker takes them (closed loop: throughput, but latency hides the queueing)
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<u64>,

    /// With --rate: run this long (`10s`, `1m`, `500ms`, or seconds) instead of --messages
    #[arg(long, requires = "rate", value_name = "TIME")]
    pub duration: Option<String>,

    /// Bytes of text per message (the `mensaje` field)
    #[arg(long, short = 's', default_value_t = 100, value_name = "BYTES")]
    pub size: usize,

    /// Concurrent producers, each with its own connection
    #[arg(long, short = 'p', default_value_t = 1, value_name = "P")]
    pub producers: usize,

    /// Concurrent consumers, each with its own connection
    #[arg(long, short = 'c', default_value_t = 1, value_name = "C")]
    pub consumers: usize,

    /// Messages per publish call (1 = one round trip per message, like the seed's emisor);
    /// with --rate, the most messages a late producer sends at once to catch up
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub batch: usize,

    /// Unacknowledged messages a consumer holds (queue and stream); also the receive batch
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub prefetch: usize,

    /// Most messages published and not yet delivered (0 = no limit): backpressure, so that
    /// producers do not take the CPU the consumers and a local broker need (not with --rate:
    /// an open loop never waits)
    #[arg(long, default_value_t = 2_000, value_name = "N")]
    pub window: u64,

    /// Room to use, left as it is afterwards [default: a fresh random name, removed afterwards
    /// except on Kafka, where bench deletes no topic and prints what it leaves]
    #[arg(long, value_name = "NAME")]
    pub room: Option<String>,

    /// Print one JSON object with the results
    #[arg(long)]
    pub json: bool,
}

pub async fn run(settings: &Settings, mut args: BenchArgs) -> Result<ExitCode> {
    let lang = settings.lang;
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0, lang.tr("bench-rate", &[]));
        if let Some(text) = &args.duration {
            let duration = charla_core::parse_age(text)
                .with_context(|| settings.lang.tr("bench-bad-duration", &[("text", &text)]))?;
            args.messages = (rate as f64 * duration.as_secs_f64()).round() as u64;
        }
    }
    anyhow::ensure!(args.messages > 0, "--messages must be at least 1");
    anyhow::ensure!(
        args.producers > 0 && args.consumers > 0,
        "--producers and --consumers must be at least 1"
    );
    let mode = args.mode;
    // Only a room this run named itself is its own to remove.
    let room_is_ours = args.room.is_none();
    let room = args
        .room
        .clone()
        .unwrap_or_else(|| format!("charla-bench-{}", ulid_lower()));
    let admin = super::connect(settings).await?;
    anyhow::ensure!(
        admin.capabilities().supports(mode),
        "{} cannot do {mode} mode",
        admin.backend()
    );
    let group = format!("bench-{}", ulid_lower());
    // Stream consumers share the work through a group where the backend has groups; without
    // them (RabbitMQ streams) every consumer reads the whole stream, as in broadcast.
    let stream_group = mode == Mode::Stream && admin.capabilities().stream_groups;
    let every_consumer_gets_all =
        matches!(mode, Mode::Broadcast | Mode::Routing) || (mode == Mode::Stream && !stream_group);
    let per_consumer_target = if every_consumer_gets_all {
        args.messages
    } else {
        0 // shared: consumers stop on the global count
    };

    // Consumers first, so broadcast subscribers are in place before anything is sent.
    let delivered = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let total_target = if per_consumer_target > 0 {
        args.messages * args.consumers as u64
    } else {
        args.messages
    };
    let (done_tx, done_rx) = watch::channel(false);
    let done_tx = Arc::new(done_tx);
    let mut consumers = Vec::new();
    for _ in 0..args.consumers {
        let broker = super::connect(settings).await?;
        let mut sub = Subscription::new(mode, room.as_str()).prefetch(args.prefetch);
        if mode == Mode::Stream {
            sub = sub.start(StartFrom::Beginning);
            if stream_group {
                sub = sub.group(group.as_str());
            }
        }
        let mut subscriber = broker
            .subscribe(sub)
            .await
            .with_context(|| lang.tr("bench-subscribing", &[]))?;
        let delivered = delivered.clone();
        let progress = progress.clone();
        let done_tx = done_tx.clone();
        let mut done_rx = done_rx.clone();
        let prefetch = args.prefetch;
        consumers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds");
            let mut mine = 0u64;
            let mut last = Instant::now();
            loop {
                if per_consumer_target > 0 && mine >= per_consumer_target {
                    break;
                }
                let batch = tokio::select! {
                    b = subscriber.recv_batch(prefetch) => b,
                    _ = done_rx.changed() => break,
                };
                let batch = batch?;
                for d in &batch {
                    if let Some(age) = d.message.age_us() {
                        hist.saturating_record(age.max(1) as u64);
                    }
                }
                let tags: Vec<_> = batch.iter().map(|d| d.tag).collect();
                subscriber.ack_many(&tags).await?;
                mine += batch.len() as u64;
                last = Instant::now();
                let total =
                    delivered.fetch_add(batch.len() as u64, Ordering::SeqCst) + batch.len() as u64;
                progress.notify_waiters();
                if total >= total_target {
                    let _ = done_tx.send(true);
                    break;
                }
            }
            subscriber.close().await?;
            drop(broker);
            Ok::<_, charla_core::BrokerError>((hist, last, mine))
        }));
    }

    let payload = "x".repeat(args.size);
    let sent = Arc::new(AtomicU64::new(0));
    // Deliveries per message: every consumer gets each one in the fan-out modes.
    let copies = if every_consumer_gets_all {
        args.consumers as u64
    } else {
        1
    };
    let window = args.window;
    let started = Instant::now();
    let started_wall_us = chrono::Utc::now().timestamp_micros();
    let mut producers = Vec::new();
    for p in 0..args.producers {
        let share = args.messages / args.producers as u64
            + u64::from((p as u64) < args.messages % args.producers as u64);
        let broker = super::connect(settings).await?;
        let publisher = broker.publisher(mode, &room).await?;
        let mut out = Outgoing {
            publisher,
            room: room.clone(),
            payload: payload.clone(),
            sent: sent.clone(),
        };
        let batch = args.batch.max(1);
        let (delivered, progress) = (delivered.clone(), progress.clone());
        let schedule = args.rate.map(|rate| {
            // Producer p of P sends messages p, p+P, p+2P… of one schedule at `rate`.
            let every = Duration::from_secs_f64(args.producers as f64 / rate as f64);
            let offset = Duration::from_secs_f64(p as f64 / rate as f64);
            Schedule {
                first: started + offset,
                first_wall_us: started_wall_us + offset.as_micros() as i64,
                every,
            }
        });
        producers.push(tokio::spawn(async move {
            if let Some(schedule) = schedule {
                send_on_schedule(&mut out, schedule, share, batch).await?;
            } else {
                let mut left = share;
                while left > 0 {
                    // Backpressure: stay at most `window` messages ahead of the consumers, so
                    // a producer racing ahead does not take the CPU the consumers and broker
                    // need.
                    loop {
                        let wake = progress.notified();
                        tokio::pin!(wake);
                        wake.as_mut().enable();
                        let ahead = out
                            .sent
                            .load(Ordering::SeqCst)
                            .saturating_sub(delivered.load(Ordering::SeqCst) / copies);
                        if window == 0 || ahead <= window {
                            break;
                        }
                        wake.await;
                    }
                    let n = (batch as u64).min(left) as usize;
                    out.send(&vec![None; n]).await?;
                    left -= n as u64;
                }
            }
            drop(out);
            drop(broker);
            Ok::<_, charla_core::BrokerError>(())
        }));
    }
    for p in producers {
        p.await
            .with_context(|| lang.tr("bench-producer-task", &[]))?
            .with_context(|| lang.tr("bench-publishing", &[]))?;
    }
    let sent_at = started.elapsed();
    let sent_rate = args.messages as f64 / sent_at.as_secs_f64().max(1e-6);

    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
    let mut finished = started;
    let mut received = 0u64;
    let wait = tokio::time::timeout(Duration::from_secs(600), async {
        let mut results = Vec::new();
        for c in consumers {
            results.push(c.await);
        }
        results
    });
    let results = wait
        .await
        .with_context(|| lang.tr("bench-consumers-late", &[]))?;
    for r in results {
        let (h, last, mine) = r
            .with_context(|| lang.tr("bench-consumer-task", &[]))?
            .with_context(|| lang.tr("bench-consuming", &[]))?;
        hist.add(&h)
            .with_context(|| lang.tr("bench-merging", &[]))?;
        finished = finished.max(last);
        received += mine;
    }
    let elapsed = finished
        .duration_since(started)
        .max(Duration::from_micros(1));
    let rate = received as f64 / elapsed.as_secs_f64();
    let (left, left_note) = clean_up(settings, &*admin, mode, &room, room_is_ours).await;

    let q = |p: f64| hist.value_at_quantile(p);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "broker": charla_core::redact(&settings.broker),
                "backend": admin.backend(),
                "mode": mode.as_str(),
                "messages": args.messages,
                "size": args.size,
                "producers": args.producers,
                "consumers": args.consumers,
                "batch": args.batch,
                "prefetch": args.prefetch,
                "window": args.window,
                "received": received,
                "publish_s": sent_at.as_secs_f64(),
                "elapsed_s": elapsed.as_secs_f64(),
                "msgs_per_sec": rate,
                "rate": args.rate,
                "sent_per_sec": sent_rate,
                "latency_from": if args.rate.is_some() { "due" } else { "sent" },
                "latency_us": {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "p999": q(0.999), "max": hist.max()},
                "left_on_broker": left,
            })
        );
    } else {
        println!(
            "{}",
            lang.tr(
                "bench-header",
                &[
                    ("backend", &admin.backend()),
                    ("mode", &mode),
                    ("messages", &args.messages),
                    ("size", &args.size),
                    ("producers", &args.producers),
                    ("consumers", &args.consumers),
                    ("batch", &args.batch),
                    ("prefetch", &args.prefetch),
                    ("window", &args.window),
                ],
            )
        );
        if let Some(target) = args.rate {
            let sent = format!("{sent_rate:.0}");
            println!(
                "{}",
                lang.tr("bench-open-loop", &[("target", &target), ("sent", &sent)])
            );
        }
        let rate = format!("{rate:>12.0}");
        let secs = format!("{:.3}", elapsed.as_secs_f64());
        println!(
            "{}",
            lang.tr(
                "bench-throughput",
                &[("rate", &rate), ("received", &received), ("secs", &secs)],
            )
        );
        println!(
            "{}",
            lang.tr(
                "bench-latency",
                &[
                    ("p50", &q(0.50)),
                    ("p90", &q(0.90)),
                    ("p99", &q(0.99)),
                    ("p999", &q(0.999)),
                    ("max", &hist.max()),
                ],
            )
        );
    }
    // After the results, on stderr: what bench left on the broker, and how to remove it.
    if let Some(note) = left_note {
        eprintln!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Remove what this run created, where that is safe. Returns the names left on the broker
/// (for `--json`) and, when something is left, what to tell the user about it.
async fn clean_up(
    settings: &Settings,
    admin: &dyn charla_core::Broker,
    mode: Mode,
    room: &str,
    room_is_ours: bool,
) -> (Vec<String>, Option<String>) {
    if !room_is_ours {
        let note = settings.lang.tr("bench-room-left", &[("room", &room)]);
        return (vec![room.to_owned()], Some(note));
    }
    let kafka = charla_core::BrokerUrl::parse(&settings.broker)
        .is_ok_and(|u| u.kind() == charla_core::BackendKind::Kafka);
    if !kafka {
        // A fresh unique name: purging it removes nothing anyone else made.
        return match admin.purge(mode, room).await {
            Ok(()) => (Vec::new(), None),
            Err(e) => {
                let note = settings
                    .lang
                    .tr("bench-room-not-removed", &[("room", &room), ("reason", &e)]);
                (vec![room.to_owned()], Some(note))
            }
        };
    }
    // Kafka: delete nothing. The topics this run created are the broker's topics whose names
    // contain the room's (the room's own and, if anything was dead-lettered, its dead
    // letters), as `charla check` lists them ("name (3 partitions)").
    let mut topics: Vec<String> = match admin.info().await {
        Ok(info) => info
            .details
            .iter()
            .filter_map(|line| line.split(" (").next())
            .filter(|name| name.contains(room))
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    };
    if !topics.iter().any(|t| t == room) {
        topics.insert(0, room.to_owned());
    }
    let bootstrap = charla_core::BrokerUrl::parse(&settings.broker)
        .map(|u| u.address())
        .unwrap_or_else(|_| "HOST:PORT".to_owned());
    let mut note = settings
        .lang
        .tr("bench-kafka-left", &[("topics", &topics.join(", "))]);
    // One command per topic: --topic takes one name (or a regex, and `.` in charla's
    // dead-letter names would match more than meant).
    for topic in &topics {
        note.push_str(&format!(
            "\n     kafka-topics.sh --bootstrap-server {bootstrap} --delete --topic {topic}"
        ));
    }
    (topics, Some(note))
}

/// One producer's sending: what it publishes and the count of what it has sent.
struct Outgoing {
    publisher: Box<dyn charla_core::Publisher>,
    room: String,
    payload: String,
    sent: Arc<AtomicU64>,
}

impl Outgoing {
    /// Publish one message per entry, stamped with the entry's due time (wall clock, µs) or
    /// with the moment it is made; one round trip for one message, one batch for several.
    async fn send(&mut self, due_us: &[Option<i64>]) -> charla_core::Result<()> {
        let messages: Vec<Message> = due_us
            .iter()
            .map(|due| {
                let mut m = Message::new("bench", self.payload.as_str(), self.room.as_str());
                if let Some(due) = due {
                    m.ts_us = *due;
                }
                m
            })
            .collect();
        match messages.as_slice() {
            [one] => self.publisher.publish(one).await?,
            _ => self.publisher.publish_batch(&messages).await?,
        }
        self.sent.fetch_add(messages.len() as u64, Ordering::SeqCst);
        Ok(())
    }
}

/// When one producer's messages are due: the first at `first`, then one `every`.
#[derive(Clone, Copy)]
struct Schedule {
    first: Instant,
    /// `first` on the wall clock (µs since the epoch), the clock the consumers read.
    first_wall_us: i64,
    every: Duration,
}

impl Schedule {
    /// How many messages are due by `now`.
    fn due_by(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.first) {
            Some(since) => (since.as_nanos() / self.every.as_nanos().max(1)) as u64 + 1,
            None => 0,
        }
    }

    fn at(&self, k: u64) -> Instant {
        self.first + Duration::from_nanos((self.every.as_nanos() as u64).saturating_mul(k))
    }

    fn wall_us(&self, k: u64) -> i64 {
        self.first_wall_us + (self.every.as_nanos() as u64).saturating_mul(k) as i64 / 1000
    }
}

/// Send `count` messages on `schedule`: each as it falls due, every message already due in one
/// batch (up to `batch`) when the producer is late, each stamped with its own due time.
///
/// Waking on time is a thread's job: tokio's timers tick in whole milliseconds, ten messages
/// apart at 10 000 msg/s, and that slack would be counted as the broker's latency. The thread
/// sleeps (the OS timer, tens of µs late) until the next due time and wakes the producer; it
/// never runs ahead of it, so a stalled broker costs one pending wakeup, not a backlog of them.
async fn send_on_schedule(
    out: &mut Outgoing,
    schedule: Schedule,
    count: u64,
    batch: usize,
) -> charla_core::Result<()> {
    let wake = Arc::new(tokio::sync::Notify::new());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pacer = {
        let (wake, stop) = (wake.clone(), stop.clone());
        std::thread::spawn(move || {
            // Linux lets a sleeping thread wake up to 50 µs late by default (timer slack, to
            // batch wakeups): half a message's interval at 10 000 msg/s. 1 ns asks for none.
            // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects this thread only.
            #[cfg(target_os = "linux")]
            unsafe {
                libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
            }
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let next = schedule.at(schedule.due_by(now));
                std::thread::sleep(next.saturating_duration_since(now));
                wake.notify_one();
            }
        })
    };
    struct StopPacer(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for StopPacer {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_on_return = StopPacer(stop);
    let mut next = 0u64;
    while next < count {
        let due = schedule.due_by(Instant::now()).min(count);
        if due <= next {
            wake.notified().await;
            continue;
        }
        let n = (due - next).min(batch as u64);
        let stamps: Vec<Option<i64>> = (next..next + n)
            .map(|k| Some(schedule.wall_us(k)))
            .collect();
        out.send(&stamps).await?;
        next += n;
    }
    // The pacer sees the flag at its next wake (at most one interval away) and ends; nothing
    // waits for it.
    drop(pacer);
    Ok(())
}

fn ulid_lower() -> String {
    Message::new("", "", "").id.to_ascii_lowercase()
}
