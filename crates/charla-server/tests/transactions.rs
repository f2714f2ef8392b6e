//! MULTI/EXEC/WATCH under concurrency: several connections on several I/O threads, checking
//! the two promises of a transaction — WATCH sees every conflicting write (no lost update) and
//! nobody ever observes half of an EXEC.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use charla_server::ServerConfig;
use common::{Raw, TestServer};

fn server() -> TestServer {
    TestServer::start(ServerConfig {
        threads: 4,
        ..ServerConfig::default()
    })
}

/// Send several commands in one write and read one reply per command.
fn pipeline(r: &mut Raw, cmds: &[&[&str]]) -> Vec<String> {
    let b: Vec<u8> = cmds.iter().flat_map(|args| common::encode(args)).collect();
    r.send(&b);
    cmds.iter().map(|_| r.reply()).collect()
}

#[test]
fn watch_check_and_set_from_many_connections_loses_no_update() {
    let s = server();
    let port = s.port;
    let (clients, per_client) = (8, 300);
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let retries = retries.clone();
            std::thread::spawn(move || {
                let mut r = Raw::connect(port);
                let mut done = 0;
                while done < per_client {
                    assert_eq!(r.cmd(&["WATCH", "counter"]), "+OK\r\n");
                    let cur = r.cmd(&["GET", "counter"]);
                    let v: u64 = cur
                        .split("\r\n")
                        .nth(1)
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0);
                    let next = (v + 1).to_string();
                    // MULTI, SET and EXEC in one write: the window between WATCH's check and
                    // the execution is the server's alone.
                    let rep =
                        pipeline(&mut r, &[&["MULTI"], &["SET", "counter", &next], &["EXEC"]]);
                    if rep[2] == "*1\r\n+OK\r\n" {
                        done += 1;
                    } else {
                        assert!(rep[2] == "*-1\r\n" || rep[2] == "_\r\n", "{rep:?}");
                        retries.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client");
    }
    let total = (clients * per_client).to_string();
    assert_eq!(
        Raw::connect(port).cmd(&["GET", "counter"]),
        format!("${}\r\n{total}\r\n", total.len()),
        "lost updates ({} retries)",
        retries.load(Ordering::Relaxed)
    );
}

#[test]
fn no_reader_sees_half_a_transaction() {
    let s = server();
    let port = s.port;
    let stop = Arc::new(AtomicBool::new(false));
    // Readers compare the three keys a transaction always sets together.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut r = Raw::connect(port);
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let rep = r.cmd(&["MGET", "a", "b", "c"]);
                    let vals: Vec<&str> = rep.split("\r\n").skip(1).step_by(2).take(3).collect();
                    assert!(
                        vals.iter().all(|v| *v == vals[0]),
                        "half a transaction seen: {rep:?}"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // PUBLISH and SELECT between the writes: both used to release the keyspace lock.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            std::thread::spawn(move || {
                let mut r = Raw::connect(port);
                let deadline = Instant::now() + Duration::from_millis(1500);
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let v = format!("{w}-{i}");
                    let rep = pipeline(
                        &mut r,
                        &[
                            &["MULTI"],
                            &["SET", "a", &v],
                            &["PUBLISH", "ch", &v],
                            &["SET", "b", &v],
                            &["SELECT", "0"],
                            &["SET", "c", &v],
                            &["EXEC"],
                        ],
                    );
                    assert!(rep[6].starts_with("*5\r\n"), "{rep:?}");
                    i += 1;
                }
                i
            })
        })
        .collect();
    let txs: u64 = writers.into_iter().map(|h| h.join().expect("writer")).sum();
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|h| h.join().expect("reader")).sum();
    assert!(txs > 100 && reads > 100, "too little work: {txs} {reads}");
}

#[test]
fn info_and_other_connection_commands_run_inside_exec() {
    // Connection-level commands now run with the keyspace lock held: one that took the lock
    // itself would deadlock here.
    let s = server();
    let mut r = s.raw();
    let rep = pipeline(
        &mut r,
        &[
            &["MULTI"],
            &["SET", "k", "v"],
            &["INFO", "keyspace"],
            &["PING"],
            &["ECHO", "x"],
            &["TIME"],
            &["CLIENT", "ID"],
            &["PUBSUB", "NUMPAT"],
            &["EXEC"],
        ],
    );
    assert!(rep[8].starts_with("*7\r\n+OK\r\n"), "{rep:?}");
    assert!(rep[8].contains("db0:keys=1"), "{rep:?}");
}

/// A watched key that expires before EXEC aborts the transaction, as in Redis (it ran, since
/// an expiry is no client's write); one already gone when watched does not; RESET unwatches.
#[test]
fn a_watched_key_that_expires_aborts_exec_and_reset_unwatches() {
    let s = server();
    let mut r = Raw::connect(s.port);
    assert_eq!(r.cmd(&["SET", "short", "v", "PX", "100"]), "+OK\r\n");
    assert_eq!(r.cmd(&["SET", "long", "v", "EX", "100"]), "+OK\r\n");
    assert_eq!(r.cmd(&["WATCH", "long", "short"]), "+OK\r\n");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(
        pipeline(&mut r, &[&["MULTI"], &["SET", "x", "1"], &["EXEC"]])[2],
        "*-1\r\n",
        "the watched key expired: aborted"
    );
    assert_eq!(r.cmd(&["WATCH", "short", "long"]), "+OK\r\n");
    assert_eq!(
        pipeline(&mut r, &[&["MULTI"], &["SET", "x", "2"], &["EXEC"]])[2],
        "*1\r\n+OK\r\n",
        "gone before WATCH, and the other key lives: runs"
    );
    assert_eq!(r.cmd(&["SET", "short", "v", "PX", "100"]), "+OK\r\n");
    assert_eq!(r.cmd(&["WATCH", "short"]), "+OK\r\n");
    assert_eq!(r.cmd(&["RESET"]), "+RESET\r\n");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(
        pipeline(&mut r, &[&["MULTI"], &["SET", "x", "3"], &["EXEC"]])[2],
        "*1\r\n+OK\r\n",
        "RESET unwatched"
    );
}
