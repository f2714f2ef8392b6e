//! `charla bench`: end-to-end throughput and latency on one broker and mode.
//!
//! P producers and C consumers, each on its own connection, move N messages of B bytes
//! through a fresh room. Latency is measured per message from its send stamp (`ts_us`, set
//! just before publishing) to its arrival, in one process, so both ends read the same clock.
//! Throughput is messages delivered divided by the time from the first publish to the last
//! arrival. In broadcast mode every consumer gets every message.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use charla_core::{Message, Mode, StartFrom, Subscription};
use hdrhistogram::Histogram;
use tokio::sync::watch;

use crate::cli::BenchArgs;
use crate::config::Settings;

pub async fn run(settings: &Settings, args: BenchArgs) -> Result<ExitCode> {
    anyhow::ensure!(args.messages > 0, "--messages must be at least 1");
    anyhow::ensure!(
        args.producers > 0 && args.consumers > 0,
        "--producers and --consumers must be at least 1"
    );
    let mode = args.mode;
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
        let mut subscriber = broker.subscribe(sub).await.context("subscribing")?;
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
    let mut producers = Vec::new();
    for p in 0..args.producers {
        let share = args.messages / args.producers as u64
            + u64::from((p as u64) < args.messages % args.producers as u64);
        let broker = super::connect(settings).await?;
        let mut publisher = broker.publisher(mode, &room).await?;
        let (room, payload, batch) = (room.clone(), payload.clone(), args.batch.max(1));
        let (sent, delivered, progress) = (sent.clone(), delivered.clone(), progress.clone());
        producers.push(tokio::spawn(async move {
            let mut left = share;
            while left > 0 {
                // Backpressure: stay at most `window` messages ahead of the consumers, so a
                // producer racing ahead does not take the CPU the consumers and broker need.
                loop {
                    let wake = progress.notified();
                    tokio::pin!(wake);
                    wake.as_mut().enable();
                    let ahead = sent
                        .load(Ordering::SeqCst)
                        .saturating_sub(delivered.load(Ordering::SeqCst) / copies);
                    if window == 0 || ahead <= window {
                        break;
                    }
                    wake.await;
                }
                let n = (batch as u64).min(left) as usize;
                let messages: Vec<Message> = (0..n)
                    .map(|_| Message::new("bench", payload.as_str(), room.as_str()))
                    .collect();
                if n == 1 {
                    publisher.publish(&messages[0]).await?;
                } else {
                    publisher.publish_batch(&messages).await?;
                }
                left -= n as u64;
                sent.fetch_add(n as u64, Ordering::SeqCst);
            }
            drop(publisher);
            drop(broker);
            Ok::<_, charla_core::BrokerError>(())
        }));
    }
    for p in producers {
        p.await.context("producer task")?.context("publishing")?;
    }
    let sent_at = started.elapsed();

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
        .context("consumers did not finish within 10 minutes")?;
    for r in results {
        let (h, last, mine) = r.context("consumer task")?.context("consuming")?;
        hist.add(&h).context("merging histograms")?;
        finished = finished.max(last);
        received += mine;
    }
    let elapsed = finished
        .duration_since(started)
        .max(Duration::from_micros(1));
    let rate = received as f64 / elapsed.as_secs_f64();
    if let Err(e) = admin.purge(mode, &room).await {
        tracing::warn!("could not remove the bench room {room}: {e}");
    }

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
                "latency_us": {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "max": hist.max()},
            })
        );
    } else {
        println!(
            "charla bench: {} {mode}, {} messages of {} B, {} producer(s), {} consumer(s), batch {}, prefetch {}, window {}",
            admin.backend(), args.messages, args.size, args.producers, args.consumers, args.batch, args.prefetch, args.window
        );
        println!(
            "  throughput  {rate:>12.0} msg/s   ({received} delivered in {:.3} s)",
            elapsed.as_secs_f64()
        );
        println!(
            "  latency µs  p50 {}   p90 {}   p99 {}   max {}",
            q(0.50),
            q(0.90),
            q(0.99),
            hist.max()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn ulid_lower() -> String {
    Message::new("", "", "").id.to_ascii_lowercase()
}
