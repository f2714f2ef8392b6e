//! The conformance suite's fault cases that apply to a worker, on real `charla work`
//! processes running real commands: the network to the broker cut (through the testkit's
//! fault proxy), and the consumer killed (SIGKILL) mid-task on RabbitMQ and on `charla serve`.
//! Each case prints one line
//! `FAULT work <case>: sent N, ran M (U unique), lost L, duplicated D` and asserts that
//! nothing is lost (a task may run twice: delivery is at least once, duplicates are counted).
//! Each case has a hard time limit and fails by name.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use charla_testkit::proxy::{socket_addr_of, FaultProxy};
use charla_testkit::{unique_name, with_option, RedisServer};
use common::work::*;
use common::*;

/// Prints the case's FAULT line from the ids a file collected and returns the number lost.
fn fault_line(case: &str, sent: usize, ran: &[String]) -> usize {
    let unique: HashSet<&String> = ran.iter().collect();
    let lost = sent.saturating_sub(unique.len());
    eprintln!(
        "FAULT work {case}: sent {sent}, ran {} ({} unique), lost {lost}, duplicated {}",
        ran.len(),
        unique.len(),
        ran.len() - unique.len()
    );
    lost
}

/// Process groups of `sleep` processes whose command line contains `marker` (an orphaned
/// command of a killed worker leads a group of its own: the shell and its sleep).
fn groups_sleeping(marker: &str) -> Vec<u32> {
    let mut groups: Vec<u32> = processes_with(marker)
        .into_iter()
        .filter_map(|pid| {
            // /proc/PID/stat: "pid (comm) state ppid pgrp …"; comm is `sleep` here.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().nth(2)?.parse().ok()
        })
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// SIGKILL whole process groups.
fn kill_groups(groups: &[u32]) {
    for pgid in groups {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
    }
}

/// Case 1: the worker reaches its redis-server through the fault proxy; after ~10 of 60
/// tasks ran, every connection is cut and new ones refused for 3 s, then let through again.
/// Every task runs at least once, and the worker is still alive and exits 0 on SIGTERM.
#[test]
fn a_network_cut_mid_run_loses_no_task() {
    within("a_network_cut_mid_run_loses_no_task", || {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let proxy = runtime.block_on(FaultProxy::start(socket_addr_of(&server.url(), 6379)));
        let through_proxy = with_option(&proxy.url_for(&server.url()), "consumer_ttl_ms", 2000);
        let room = unique_name("work-cut-");
        let file = case_dir("work-cut-").join("ids");
        const SENT: usize = 60;
        // Straight to redis-server: the tasks are queued whatever the proxy does.
        send_tasks(&server.url(), &room, SENT);
        let script = format!("sleep 0.05; {}", append_id_script(&file));
        let mut w = worker(
            &through_proxy,
            &room,
            &["--concurrency", "2"],
            &["sh", "-c", &script],
        );
        wait_unique_lines(&file, 10, Duration::from_secs(30));
        proxy.outage();
        std::thread::sleep(Duration::from_secs(3));
        let during = lines_of(&file).len();
        proxy.restore();
        wait_unique_lines(&file, SENT, Duration::from_secs(60));
        // Whatever was redelivered has run again by now or will: give it a moment.
        std::thread::sleep(Duration::from_secs(3));
        let alive = w.try_wait().expect("try_wait").is_none();
        let out = stop(w);
        let lost = fault_line("network-cut", SENT, &lines_of(&file));
        assert_eq!(lost, 0, "every task ran");
        assert!(alive, "the worker died of the cut: {}", text(&out.stderr));
        assert!(
            out.status.success(),
            "exit on SIGTERM: {}\n{}",
            out.status,
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("Lost the broker"),
            "the worker said it lost the broker and reconnected: {}",
            text(&out.stderr)
        );
        assert!(
            during < SENT,
            "the cut happened too late to test anything ({during} tasks ran by its end)"
        );
        assert_eq!(
            redis_cli(server.port(), &["LLEN", &room]).trim(),
            "0",
            "nothing left in the queue"
        );
        drop(proxy);
        drop(runtime);
    });
}

/// Cases 2 and 3: a worker is SIGKILLed while its command runs (`sleep 2`, then the id into
/// a file); a second worker starts, and the task runs (the broker hands the message out again
/// when the first consumer's connection closes, or its liveness expires).
fn killed_mid_task(url: &str, case: &str) {
    let room = unique_name("work-killed-");
    let dir = case_dir("work-killed-");
    let (started, done) = (dir.join("started.txt"), dir.join("done.txt"));
    // A `sleep` argument no other process has (about 2 s).
    let marker = format!("2.{}{}", std::process::id(), case.len());
    let script = format!(
        "echo \"$CHARLA_ID\" >> '{}'; sleep {marker} && {}",
        started.display(),
        append_id_script(&done)
    );
    let mut first = worker(url, &room, &[], &["sh", "-c", &script]);
    send_tasks(url, &room, 1);
    let id = wait_unique_lines(&started, 1, Duration::from_secs(30));
    signal(&first, "KILL");
    let _ = first.wait();
    // Its command is an orphan now, in a group of its own: not the test's to keep (had it
    // finished, the task would have run, which would prove nothing).
    kill_groups(&groups_sleeping(&format!("sleep {marker}")));
    let orphan_done = lines_of(&done).len();

    let second_script = format!("sleep 2; {}", append_id_script(&done));
    let second = worker(url, &room, &[], &["sh", "-c", &second_script]);
    let ran = wait_unique_lines(&done, 1, Duration::from_secs(60));
    // A second redelivery, were there one, would show up within this.
    std::thread::sleep(Duration::from_secs(3));
    let out = stop(second);
    let all = lines_of(&done);
    let lost = fault_line(case, 1, &all);
    assert_eq!(lost, 0, "the task ran");
    assert_eq!(
        orphan_done, 0,
        "the killed worker's command was stopped in time"
    );
    assert_eq!(
        ran[..1],
        id[..],
        "the task that ran is the one that was killed"
    );
    assert!(
        out.status.success(),
        "exit on SIGTERM: {}\n{}",
        out.status,
        text(&out.stderr)
    );
}

#[test]
fn a_worker_killed_mid_task_loses_nothing_on_rabbitmq() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if !runtime.block_on(charla_testkit::rabbitmq::rabbitmq_available()) {
        return;
    }
    drop(runtime);
    let _shared = charla_testkit::rabbitmq::shared_use();
    let url = charla_testkit::rabbitmq::amqp_url();
    within(
        "a_worker_killed_mid_task_loses_nothing_on_rabbitmq",
        move || killed_mid_task(&url, "consumer-killed-rabbitmq"),
    );
}

#[test]
fn a_worker_killed_mid_task_loses_nothing_on_charla_serve() {
    let server = RedisServer::start_charla(Path::new(env!("CARGO_BIN_EXE_charla")), &[]);
    let url = with_option(&server.url(), "consumer_ttl_ms", 1000);
    within(
        "a_worker_killed_mid_task_loses_nothing_on_charla_serve",
        move || killed_mid_task(&url, "consumer-killed-serve"),
    );
}
