//! RabbitMQ stops and starts (`rabbitmqctl stop_app` / `start_app`) in the middle of a
//! send/listen run, in queue and stream mode: every message whose publish returned Ok
//! arrives (duplicates are allowed and counted by id, losses are not), and the stream
//! subscriber resumes at the offset where it stopped (no duplicates there).
//!
//! A guard runs `rabbitmqctl start_app` when the test ends, also when it fails, so RabbitMQ
//! is left running.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use charla_amqp::AmqpBroker;
use charla_core::{Broker, BrokerUrl, Message, Mode, StartFrom, Subscription};
use charla_testkit::rabbitmq::rabbitmqctl;

const MESSAGES: usize = 240;
/// The stop happens after this many messages were sent.
const STOP_AFTER: usize = 80;

/// Starts the RabbitMQ application again when dropped, whatever happened.
struct StartOnDrop;

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        if let Err(e) = rabbitmqctl(&["start_app"]) {
            eprintln!("could not start RabbitMQ again: {e}");
        }
        let _ = rabbitmqctl(&["await_startup"]);
    }
}

/// An ack can meet the restart: a delivery received just before the connection went cannot
/// be acked on the new one, and `ack` says so with `Unreachable` (the message comes again
/// and shows as a duplicate, which is allowed). Any other ack error fails the test.
fn settle(acked: charla_core::Result<()>, lost: &mut usize) {
    match acked {
        Ok(()) => {}
        Err(charla_core::BrokerError::Unreachable { .. }) => *lost += 1,
        Err(e) => panic!("ack: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_confirmed_message_survives_a_restart() {
    // Alone: no other RabbitMQ test (of any test process) runs while RabbitMQ restarts.
    let Some(_lock) = common::rabbitmq_exclusive().await else {
        return;
    };
    if !charla_testkit::rabbitmq::is_local() || rabbitmqctl(&["status"]).is_err() {
        charla_testkit::service_missing("rabbitmqctl controlling the local RabbitMQ");
        return;
    }
    let url = BrokerUrl::parse(&charla_testkit::with_option(
        &common::url_text(),
        "recovery_timeout_ms",
        90000,
    ))
    .unwrap();
    let queue_room = charla_testkit::unique_name("restart-q-");
    let stream_room = charla_testkit::unique_name("restart-s-");

    let producer_conn = AmqpBroker::connect(&url).await.expect("connect");
    let consumer_conn = AmqpBroker::connect(&url).await.expect("connect");
    let mut queue_pub = producer_conn
        .publisher(Mode::Queue, &queue_room)
        .await
        .unwrap();
    let mut stream_pub = producer_conn
        .publisher(Mode::Stream, &stream_room)
        .await
        .unwrap();
    let mut queue_sub = consumer_conn
        .subscribe(Subscription::new(Mode::Queue, queue_room.as_str()).prefetch(20))
        .await
        .unwrap();
    let mut stream_sub = consumer_conn
        .subscribe(
            Subscription::new(Mode::Stream, stream_room.as_str())
                .start(StartFrom::Beginning)
                .prefetch(20),
        )
        .await
        .unwrap();
    // A broadcast subscriber: nothing is kept for it while the broker is down, but after
    // the restart it gets what is published again (its private queue is declared anew).
    let broadcast_room = charla_testkit::unique_name("restart-b-");
    let mut broadcast_sub = consumer_conn
        .subscribe(Subscription::new(Mode::Broadcast, broadcast_room.as_str()))
        .await
        .unwrap();
    let mut broadcast_pub = producer_conn
        .publisher(Mode::Broadcast, &broadcast_room)
        .await
        .unwrap();

    let sent = Arc::new(AtomicUsize::new(0));
    let producer = {
        let sent = sent.clone();
        let (qr, sr) = (queue_room.clone(), stream_room.clone());
        tokio::spawn(async move {
            let (mut q_ok, mut s_ok, mut failed) = (Vec::new(), Vec::new(), 0);
            for i in 0..MESSAGES {
                let m = Message::new("restart", format!("q {i}"), qr.as_str());
                match queue_pub.publish(&m).await {
                    Ok(()) => q_ok.push(m.id),
                    Err(e) => {
                        failed += 1;
                        eprintln!("queue publish {i} not confirmed: {e}");
                    }
                }
                let m = Message::new("restart", format!("s {i}"), sr.as_str());
                match stream_pub.publish(&m).await {
                    Ok(()) => s_ok.push(m.id),
                    Err(e) => {
                        failed += 1;
                        eprintln!("stream publish {i} not confirmed: {e}");
                    }
                }
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (q_ok, s_ok, failed)
        })
    };
    let consumer = tokio::spawn(async move {
        let mut q_got: HashMap<String, usize> = HashMap::new();
        let mut s_got: HashMap<String, usize> = HashMap::new();
        let mut acks_lost = 0usize;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            tokio::select! {
                d = queue_sub.recv() => {
                    let d = d.expect("queue recv survives the restart");
                    settle(queue_sub.ack(d.tag).await, &mut acks_lost);
                    *q_got.entry(d.message.id).or_default() += 1;
                }
                d = stream_sub.recv() => {
                    let d = d.expect("stream recv survives the restart");
                    settle(stream_sub.ack(d.tag).await, &mut acks_lost);
                    *s_got.entry(d.message.id).or_default() += 1;
                }
                _ = tokio::time::sleep(Duration::from_secs(3)) => {
                    if q_got.len() + s_got.len() >= 2 * MESSAGES { break; }
                }
            }
        }
        queue_sub.close().await.ok();
        stream_sub.close().await.ok();
        eprintln!("acks refused because their connection was gone: {acks_lost}");
        (q_got, s_got)
    });

    while sent.load(Ordering::SeqCst) < STOP_AFTER {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A publisher that may wait only half a second for the broker.
    let impatient = BrokerUrl::parse(&charla_testkit::with_option(
        &common::url_text(),
        "recovery_timeout_ms",
        500,
    ))
    .unwrap();
    let impatient = AmqpBroker::connect(&impatient).await.expect("connect");
    let mut impatient_pub = impatient.publisher(Mode::Queue, &queue_room).await.unwrap();

    let guard = StartOnDrop;
    let stopped_at = Instant::now();
    tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
        .await
        .unwrap()
        .expect("stop RabbitMQ");
    // While the broker is down, publish reports an error, never Ok.
    let m = Message::new("restart", "while down", queue_room.as_str());
    let started = Instant::now();
    match tokio::time::timeout(Duration::from_secs(30), impatient_pub.publish(&m)).await {
        Ok(Err(e)) => {
            assert!(e.is_transient(), "the error says the broker is away: {e}");
            eprintln!("publish while down: {e} (after {:?})", started.elapsed());
        }
        Ok(Ok(())) => panic!("publish returned Ok while RabbitMQ was stopped"),
        Err(_) => panic!("publish hung past its recovery timeout"),
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();
    eprintln!("RabbitMQ was down for {:?}", stopped_at.elapsed());

    // Broadcast after the restart: publish until the re-subscribed listener hears it.
    let heard = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let m = Message::new("restart", "after", broadcast_room.as_str());
            broadcast_pub.publish(&m).await.expect("broadcast publish");
            if let Ok(Ok(d)) =
                tokio::time::timeout(Duration::from_millis(500), broadcast_sub.recv()).await
            {
                break d.message.mensaje;
            }
        }
    })
    .await
    .expect("the broadcast subscriber hears messages again after the restart");
    assert_eq!(heard, "after");
    broadcast_sub.close().await.unwrap();

    let (q_ok, s_ok, failed) = tokio::time::timeout(Duration::from_secs(150), producer)
        .await
        .expect("the producer finished")
        .unwrap();
    let (q_got, s_got) = tokio::time::timeout(Duration::from_secs(150), consumer)
        .await
        .expect("the consumer finished")
        .unwrap();

    let q_lost: Vec<&String> = q_ok.iter().filter(|id| !q_got.contains_key(*id)).collect();
    let s_lost: Vec<&String> = s_ok.iter().filter(|id| !s_got.contains_key(*id)).collect();
    let q_dups = q_got.values().filter(|n| **n > 1).count();
    let s_dups = s_got.values().filter(|n| **n > 1).count();
    eprintln!(
        "queue: {} confirmed, {} received, {q_dups} duplicated; stream: {} confirmed, {} received, \
         {s_dups} duplicated; {failed} publishes not confirmed",
        q_ok.len(),
        q_got.len(),
        s_ok.len(),
        s_got.len()
    );
    assert!(q_lost.is_empty(), "queue messages lost: {q_lost:?}");
    assert!(s_lost.is_empty(), "stream messages lost: {s_lost:?}");
    assert!(
        q_ok.len() + s_ok.len() >= 2 * MESSAGES - failed,
        "publishes either confirmed or said so"
    );
    let unique: HashSet<&String> = s_got.keys().collect();
    assert_eq!(unique.len(), s_got.len());

    let cleanup = AmqpBroker::connect(&url).await.expect("connect");
    cleanup.purge(Mode::Queue, &queue_room).await.unwrap();
    cleanup.purge(Mode::Stream, &stream_room).await.unwrap();
}
