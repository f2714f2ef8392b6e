//! A message that crashes its consumer every time ends in the dead letters after 5
//! deliveries, counted by RabbitMQ (not by the consumer, which never lives long enough to
//! count anything), and the good message queued behind it is delivered.
//!
//! The consumer is a real process: this test binary runs itself again with
//! [`CHILD_ROOM`] set, and that copy (the same `#[test]` function, selected with `--exact`)
//! subscribes, prints what it holds, and waits. The parent kills it with SIGKILL
//! (`Child::kill`) each time it holds the poison message.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use charla_amqp::AmqpBroker;
use charla_core::{Broker, Message, Mode, Subscription};

/// Set in the child's environment: the room to consume from.
const CHILD_ROOM: &str = "CHARLA_AMQP_POISON_CHILD_ROOM";
const TEST_NAME: &str = "a_message_that_kills_its_consumer_five_times_is_dead_lettered";
const POISON: &str = "poison: kills whoever reads it";
/// RabbitMQ's default in charla (`?max_deliveries=`), the same as Redis's.
const MAX_DELIVERIES: usize = 5;
/// Far past the limit: reaching it means the poison would come back forever.
const MAX_KILLS: usize = 12;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The child: takes one message (prefetch 1, so it holds exactly that one), says which, and
/// then either waits to be killed (the poison) or acks it and exits (a good message).
fn run_child(room: String) {
    runtime().block_on(async move {
        let b = AmqpBroker::connect(&common::url()).await.unwrap();
        let mut sub = b
            .subscribe(Subscription::new(Mode::Queue, room.as_str()).prefetch(1))
            .await
            .unwrap();
        let d = sub.recv().await.unwrap();
        if d.message.mensaje == POISON {
            println!(
                "HOLDING {} deliveries={}",
                d.message.id, d.message.deliveries
            );
            // "Crashing" on it: the parent kills this process now.
            loop {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }
        sub.ack(d.tag).await.unwrap();
        println!("GOT {}", d.message.id);
    });
}

/// Runs one consumer process; returns the line it printed (HOLDING or GOT), having killed it
/// with SIGKILL if it was holding the poison.
fn one_consumer(room: &str) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ROOM, room)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the test binary as a consumer");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest's "test … ... " precedes the first line on the same line.
            if let Some(at) = line.find("HOLDING ").or_else(|| line.find("GOT ")) {
                let _ = tx.send(line[at..].to_owned());
            }
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the consumer process received nothing within 60 s");
        }
    };
    if line.starts_with("HOLDING ") {
        child.kill().expect("kill -9 the consumer");
        child.wait().unwrap();
    } else {
        let status = child.wait().unwrap();
        assert!(status.success(), "the consumer exits cleanly: {status}");
    }
    line
}

#[test]
fn a_message_that_kills_its_consumer_five_times_is_dead_lettered() {
    if let Ok(room) = std::env::var(CHILD_ROOM) {
        return run_child(room);
    }
    let rt = runtime();
    let Some(_lock) = rt.block_on(common::rabbitmq_available()) else {
        return;
    };
    let b = rt.block_on(AmqpBroker::connect(&common::url())).unwrap();
    let room = charla_testkit::unique_name("q-crash-");
    let poison = Message::new("test", POISON, room.as_str());
    let good = Message::new("test", "good", room.as_str());
    rt.block_on(async {
        let mut p = b.publisher(Mode::Queue, &room).await.unwrap();
        p.publish(&poison).await.unwrap();
        p.publish(&good).await.unwrap();
    });

    let mut kills = 0;
    let got = loop {
        let line = one_consumer(&room);
        eprintln!("consumer {}: {line}", kills + 1);
        match line.strip_prefix("GOT ") {
            Some(id) => break id.to_owned(),
            None => {
                assert!(line.contains(&poison.id), "the poison comes first: {line}");
                kills += 1;
                assert!(
                    kills < MAX_KILLS,
                    "the poison message was delivered {kills} times and still comes back"
                );
            }
        }
    };
    assert_eq!(got, good.id, "the good message behind the poison arrives");
    assert_eq!(
        kills, MAX_DELIVERIES,
        "the poison is delivered exactly {MAX_DELIVERIES} times"
    );

    // RabbitMQ dead-letters asynchronously: wait for it with a deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = rt.block_on(b.dead_letters(&room, 10)).unwrap();
        if !dead.is_empty() || Instant::now() > deadline {
            break dead;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(dead.len(), 1, "exactly the poison is in {room}.dead");
    let m = Message::decode(&dead[0].payload, &room, usize::MAX).unwrap();
    assert_eq!(m.id, poison.id);
    rt.block_on(b.purge(Mode::Queue, &room)).unwrap();
}
