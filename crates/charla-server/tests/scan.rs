//! SCAN's guarantees, as Redis gives them: a full iteration returns every key that existed for
//! the whole of it, however many other keys are deleted and added meanwhile, and one call does
//! work proportional to COUNT, not to the size of the keyspace.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use charla_server::ServerConfig;
use common::{Raw, TestServer};

/// Parse a SCAN reply into (cursor, keys).
fn parse_scan(rep: &str) -> (u64, Vec<String>) {
    let lines: Vec<&str> = rep.split("\r\n").collect();
    assert!(lines[0] == "*2", "{rep}");
    let cursor = lines[2].parse().expect("cursor");
    let n: usize = lines[3][1..].parse().expect("count");
    let keys = (0..n).map(|i| lines[5 + 2 * i].to_string()).collect();
    (cursor, keys)
}

fn mset(r: &mut Raw, keys: impl Iterator<Item = String>) {
    let keys: Vec<String> = keys.collect();
    for chunk in keys.chunks(500) {
        let mut args = vec!["MSET".to_string()];
        for k in chunk {
            args.push(k.clone());
            args.push("v".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(r.cmd(&args), "+OK\r\n");
    }
}

#[test]
fn every_key_present_for_the_whole_scan_is_returned_while_others_come_and_go() {
    let s = TestServer::start(ServerConfig::default());
    let mut r = s.raw();
    let mut w = s.raw();
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..5 {
        assert_eq!(r.cmd(&["FLUSHALL"]), "+OK\r\n");
        let n = 3000;
        mset(&mut w, (0..n).map(|i| format!("k{i}")));
        // Keys at odd indices are deleted at random moments during the scan; keys at even
        // indices survive. New keys are added all along.
        let mut doomed: Vec<usize> = (0..n).filter(|i| i % 2 == 1).collect();
        rng.shuffle(&mut doomed);
        let mut seen = HashSet::new();
        let mut cursor = 0u64;
        let mut calls = 0;
        let mut added = 0;
        loop {
            let (next, keys) = parse_scan(&r.cmd(&["SCAN", &cursor.to_string(), "COUNT", "37"]));
            seen.extend(keys);
            calls += 1;
            for _ in 0..25 {
                if let Some(i) = doomed.pop() {
                    assert_eq!(w.cmd(&["DEL", &format!("k{i}")]), ":1\r\n");
                }
            }
            mset(
                &mut w,
                (added..added + 20).map(|i| format!("new{round}-{i}")),
            );
            added += 20;
            cursor = next;
            if cursor == 0 {
                break;
            }
            assert!(calls < 10_000, "the scan does not end");
        }
        let missing: Vec<usize> = (0..n)
            .step_by(2)
            .filter(|i| !seen.contains(&format!("k{i}")))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} surviving keys never returned, e.g. k{}",
            missing.len(),
            missing[0]
        );
    }
}

#[test]
fn one_scan_call_costs_count_not_the_keyspace() {
    let s = TestServer::start(ServerConfig::default());
    let mut r = s.raw();
    // Median time of SCAN ... COUNT 10 calls walking the keyspace of db `db`.
    let time_calls = |r: &mut Raw, db: &str| {
        assert_eq!(r.cmd(&["SELECT", db]), "+OK\r\n");
        let mut cursor = 0u64;
        let mut t: Vec<Duration> = (0..40)
            .map(|_| {
                let t0 = Instant::now();
                let (next, keys) =
                    parse_scan(&r.cmd(&["SCAN", &cursor.to_string(), "COUNT", "10"]));
                let dt = t0.elapsed();
                assert!(keys.len() <= 10);
                cursor = next;
                dt
            })
            .collect();
        t.sort();
        t[t.len() / 2]
    };
    assert_eq!(r.cmd(&["SELECT", "1"]), "+OK\r\n");
    mset(&mut r, (0..1000).map(|i| format!("small{i}")));
    assert_eq!(r.cmd(&["SELECT", "2"]), "+OK\r\n");
    mset(&mut r, (0..300_000).map(|i| format!("big{i}")));
    let small = time_calls(&mut r, "1");
    let big = time_calls(&mut r, "2");
    // 300 times more keys: a call that sorted or copied the keyspace would take ~100× longer.
    assert!(
        big < small * 10 + Duration::from_millis(1),
        "SCAN COUNT 10 on 300k keys: {big:?}, on 1k keys: {small:?}"
    );
}
