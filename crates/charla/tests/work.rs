//! `charla work` end to end: real `charla` processes running real commands for messages of a
//! queue on a private redis-server (and `charla serve`): every task runs once across workers,
//! failures are retried and dead-lettered with why, a timeout kills the command's whole
//! process group, SIGTERM lets the running task finish and gives the rest back, and a worker
//! killed mid-task loses nothing. Each case has a hard time limit and fails by name.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use charla_testkit::{unique_name, RedisServer};
use common::work::*;
use common::*;

fn charla_serve() -> RedisServer {
    RedisServer::start_charla(Path::new(env!("CARGO_BIN_EXE_charla")), &[])
}

/// A `sleep` argument no other process has: `30.<pid><n>`.
fn unique_sleep(n: u32) -> String {
    format!("30.{}{n}", std::process::id())
}

fn kill_all(pids: &[u32]) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

fn three_workers_share_300_tasks(url: String) {
    let room = unique_name("work-share-");
    let dir = case_dir("share-");
    let file = dir.join("done.txt");
    let script = append_id_script(&file);
    let workers: Vec<Child> = (0..3)
        .map(|_| worker(&url, &room, &["--concurrency", "2"], &["sh", "-c", &script]))
        .collect();
    send_tasks(&url, &room, 300);
    wait_lines(&file, 300, Duration::from_secs(90));
    // Time for a duplicate to show up, were there one.
    std::thread::sleep(Duration::from_millis(1500));
    for w in workers {
        let out = stop(w);
        let stdout = ok(&out);
        assert!(!stdout.contains("failed"), "{stdout}");
    }
    let lines = lines_of(&file);
    let unique: HashSet<&String> = lines.iter().collect();
    assert_eq!(unique.len(), 300, "unique ids");
    assert_eq!(lines.len(), 300, "each task ran exactly once");
}

#[test]
fn three_workers_share_300_tasks_on_redis_server() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    within("three_workers_share_300_tasks_on_redis_server", move || {
        three_workers_share_300_tasks(url)
    });
}

#[test]
fn three_workers_share_300_tasks_on_charla_serve() {
    let server = charla_serve();
    let url = server.url();
    within("three_workers_share_300_tasks_on_charla_serve", move || {
        three_workers_share_300_tasks(url)
    });
}

#[test]
fn three_workers_share_300_tasks_on_rabbitmq() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if !runtime.block_on(charla_testkit::rabbitmq::rabbitmq_available()) {
        return;
    }
    let _shared = charla_testkit::rabbitmq::shared_use();
    let url = charla_testkit::rabbitmq::amqp_url();
    within("three_workers_share_300_tasks_on_rabbitmq", move || {
        three_workers_share_300_tasks(url)
    });
}

#[test]
fn three_workers_share_300_tasks_on_kafka() {
    let Some(server) = charla_testkit::KafkaServer::start() else {
        return;
    };
    let url = server.url();
    within("three_workers_share_300_tasks_on_kafka", move || {
        three_workers_share_300_tasks(url)
    });
}

#[test]
fn a_command_that_always_fails_is_dead_lettered_with_why() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (url, port) = (server.url(), server.port());
    within(
        "a_command_that_always_fails_is_dead_lettered_with_why",
        move || {
            let room = unique_name("work-fail-");
            send_tasks(&url, &room, 1);
            let mut w = worker(
                &url,
                &room,
                &["--max-deliveries", "3", "--backoff", "10ms..50ms"],
                &["sh", "-c", "echo boom >&2; exit 3"],
            );
            let lines = Lines::of(&mut w);
            let failed = lines.until("failed ", 2, Duration::from_secs(30));
            assert!(
                failed[1].contains("exit 3 (attempt 2/3, retry in"),
                "{failed:?}"
            );
            let dead = lines.until("dead ", 1, Duration::from_secs(30));
            assert!(dead[0].contains("exit 3 after 3 attempts"), "{dead:?}");
            wait_after_term(w);
            let rest = lines.rest();
            assert!(
                rest.contains("summary") || !rest.contains("failed "),
                "{rest}"
            );
            let key = format!("charla:{{{room}}}:dead");
            let entries = redis_cli(port, &["LRANGE", &key, "0", "-1"]);
            assert!(entries.contains("command-failed: exit 3"), "{entries}");
            assert!(entries.contains("boom"), "{entries}");
            assert!(entries.contains(r#""attempts":"3""#), "{entries}");
            assert_eq!(redis_cli(port, &["LLEN", &room]).trim(), "0");
        },
    );
}

/// SIGTERM a worker whose stdout is read elsewhere; its exit must be 0. Returns stderr.
fn wait_after_term(w: Child) -> String {
    let out = stop(w);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stderr)
}

#[test]
fn a_timeout_kills_the_whole_process_group_and_dead_letters() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (url, port) = (server.url(), server.port());
    within(
        "a_timeout_kills_the_whole_process_group_and_dead_letters",
        move || {
            let room = unique_name("work-timeout-");
            let marker = unique_sleep(1);
            send_tasks(&url, &room, 1);
            let script = format!("sleep {marker} & sleep {marker}");
            let started = Instant::now();
            let mut w = worker(
                &url,
                &room,
                &["--timeout", "1s", "--max-deliveries", "1"],
                &["sh", "-c", &script],
            );
            let lines = Lines::of(&mut w);
            // Both sleeps run (the test would prove nothing otherwise)…
            let deadline = Instant::now() + Duration::from_secs(20);
            while processes_with(&format!("sleep {marker}")).len() < 2 {
                assert!(Instant::now() < deadline, "the command's sleeps never ran");
                std::thread::sleep(Duration::from_millis(20));
            }
            // …and the timeout kills both, not only the shell.
            let dead = lines.until("dead ", 1, Duration::from_secs(30));
            let took = started.elapsed();
            assert!(dead[0].contains("timeout after 1 attempts"), "{dead:?}");
            assert!(took >= Duration::from_secs(1), "{took:?}");
            // SIGKILL is delivered at once, but dying takes a moment.
            let mut survivors = processes_with(&format!("sleep {marker}"));
            for _ in 0..20 {
                if survivors.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                survivors = processes_with(&format!("sleep {marker}"));
            }
            kill_all(&survivors);
            assert!(survivors.is_empty(), "children left running: {survivors:?}");
            wait_after_term(w);
            let key = format!("charla:{{{room}}}:dead");
            let entries = redis_cli(port, &["LRANGE", &key, "0", "-1"]);
            assert!(entries.contains(r#""reason":"timeout""#), "{entries}");
        },
    );
}

#[test]
fn sigterm_lets_the_running_task_finish_and_gives_the_rest_back() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (url, port) = (server.url(), server.port());
    within(
        "sigterm_lets_the_running_task_finish_and_gives_the_rest_back",
        move || {
            let room = unique_name("work-term-");
            let dir = case_dir("term-");
            let (started, done) = (dir.join("started.txt"), dir.join("done.txt"));
            send_tasks(&url, &room, 3);
            let script = format!(
                "echo \"$CHARLA_ID\" >> '{}'; sleep 2; {}",
                started.display(),
                append_id_script(&done)
            );
            let w = worker(&url, &room, &["--concurrency", "1"], &["sh", "-c", &script]);
            let first = wait_lines(&started, 1, Duration::from_secs(30));
            let out = stop(w);
            let stdout = ok(&out);
            assert_eq!(
                lines_of(&done),
                first,
                "the running task finished: {stdout}"
            );
            assert_eq!(redis_cli(port, &["LLEN", &room]).trim(), "2", "{stdout}");

            let again = worker(&url, &room, &[], &["sh", "-c", &append_id_script(&done)]);
            wait_lines(&done, 3, Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(500));
            ok(&stop(again));
            let lines = lines_of(&done);
            let unique: HashSet<&String> = lines.iter().collect();
            assert_eq!((lines.len(), unique.len()), (3, 3), "{lines:?}");
        },
    );
}

#[test]
fn a_worker_killed_mid_task_loses_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = charla_testkit::with_option(&server.url(), "consumer_ttl_ms", 1000);
    within("a_worker_killed_mid_task_loses_nothing", move || {
        let room = unique_name("work-kill-");
        let dir = case_dir("kill-");
        let (started, done) = (dir.join("started.txt"), dir.join("done.txt"));
        let marker = unique_sleep(2);
        send_tasks(&url, &room, 1);
        let script = format!(
            "echo \"$CHARLA_ID\" >> '{}'; sleep {marker}",
            started.display()
        );
        let mut first = worker(&url, &room, &[], &["sh", "-c", &script]);
        let id = wait_lines(&started, 1, Duration::from_secs(30));
        signal(&first, "KILL");
        let _ = first.wait();
        // Its command is an orphan now, in a group of its own: not the test's to keep.
        kill_all(&processes_with(&format!("sleep {marker}")));

        let second = worker(&url, &room, &[], &["sh", "-c", &append_id_script(&done)]);
        let ran = wait_lines(&done, 1, Duration::from_secs(60));
        assert_eq!(ran, id);
        ok(&stop(second));
    });
}

#[test]
fn a_second_signal_during_the_grace_stops_at_once_and_loses_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (url, port) = (server.url(), server.port());
    within(
        "a_second_signal_during_the_grace_stops_at_once",
        move || {
            let room = unique_name("work-twice-");
            let dir = case_dir("twice-");
            let started = dir.join("started.txt");
            let marker = unique_sleep(3);
            send_tasks(&url, &room, 1);
            let script = format!(
                "echo \"$CHARLA_ID\" >> '{}'; sleep {marker}",
                started.display()
            );
            let w = worker(&url, &room, &["--grace", "60s"], &["sh", "-c", &script]);
            wait_lines(&started, 1, Duration::from_secs(30));
            let begun = Instant::now();
            signal(&w, "TERM");
            std::thread::sleep(Duration::from_millis(500));
            signal(&w, "INT");
            let out = wait(w, Duration::from_secs(20));
            assert!(out.status.success(), "{}", text(&out.stderr));
            assert!(
                begun.elapsed() < Duration::from_secs(10),
                "{:?}",
                begun.elapsed()
            );
            assert!(
                text(&out.stdout).contains("given back"),
                "{}",
                text(&out.stdout)
            );
            assert!(processes_with(&format!("sleep {marker}")).is_empty());
            assert_eq!(redis_cli(port, &["LLEN", &room]).trim(), "1", "given back");
        },
    );
}

#[test]
fn a_command_that_does_not_exist_stops_the_worker_and_keeps_the_message() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (url, port) = (server.url(), server.port());
    within(
        "a_command_that_does_not_exist_stops_the_worker",
        move || {
            let room = unique_name("work-missing-");
            send_tasks(&url, &room, 1);
            let w = worker(&url, &room, &[], &["/nonexistent/charla-work-test"]);
            let out = wait(w, Duration::from_secs(30));
            assert!(!out.status.success());
            let stderr = text(&out.stderr);
            assert!(stderr.contains("/nonexistent/charla-work-test"), "{stderr}");
            assert_eq!(redis_cli(port, &["LLEN", &room]).trim(), "1", "{stderr}");
        },
    );
}

/// The broker is killed (SIGKILL) and started again while a worker runs: the worker says it
/// reconnects, carries on, and every task runs at least once (lost 0; duplicates counted and
/// allowed: a command that finished while the broker was away could not be acked).
#[test]
fn a_broker_restart_mid_run_loses_no_task() {
    within("a_broker_restart_mid_run_loses_no_task", || {
        let Some(mut server) =
            RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
        else {
            return;
        };
        let url = format!("{}?consumer_ttl_ms=2000", server.url());
        let room = unique_name("work-restart-");
        let dir = case_dir("work-restart-");
        let file = dir.join("ids");
        send_tasks(&url, &room, 60);
        let script = format!("sleep 0.05; {}", append_id_script(&file));
        let w = worker(&url, &room, &["--concurrency", "2"], &["sh", "-c", &script]);
        wait_lines(&file, 10, Duration::from_secs(30));
        server.restart();
        let ids = wait_lines(&file, 60, Duration::from_secs(60));
        // Whatever was redelivered has run again by now or will: give it a moment.
        std::thread::sleep(Duration::from_secs(3));
        let out = stop(w);
        let unique: HashSet<&String> = ids.iter().collect();
        let all = lines_of(&file);
        let unique_all: HashSet<&String> = all.iter().collect();
        eprintln!(
            "FAULT work broker-restart: sent 60, ran {} ({} unique), lost {}, duplicated {}",
            all.len(),
            unique_all.len(),
            60 - unique_all.len(),
            all.len() - unique_all.len()
        );
        assert_eq!(unique_all.len(), 60, "every task ran: {unique:?}");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("Lost the broker"),
            "the worker said it lost the broker and retried: {}",
            text(&out.stderr)
        );
        assert_eq!(
            redis_cli(server.port(), &["LLEN", &room]).trim(),
            "0",
            "nothing left in the queue"
        );
    });
}

/// `send --wait` publishes a task and waits for the worker's notice: exit 0 and the command's
/// output for a task done, the command's exit code and stderr for one that died.
#[test]
fn send_wait_gets_the_workers_notice() {
    within("send_wait_gets_the_workers_notice", || {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let url = server.url();
        let (good, bad) = (unique_name("work-wait-ok-"), unique_name("work-wait-bad-"));
        let w1 = worker(
            &url,
            &good,
            &["--notify"],
            &["sh", "-c", "echo \"hecho $CHARLA_MENSAJE\""],
        );
        let w2 = worker(
            &url,
            &bad,
            &["--notify", "--max-deliveries", "1"],
            &["sh", "-c", "echo mal >&2; exit 3"],
        );
        let done = run(
            charla(&url).args([
                "send",
                "--room",
                &good,
                "--wait",
                "--timeout",
                "30s",
                "foto1",
            ]),
            b"",
        );
        assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
        let said = text(&done.stdout);
        assert!(
            said.contains("done") && said.contains("hecho foto1"),
            "{said}"
        );
        let died = run(
            charla(&url).args([
                "send",
                "--room",
                &bad,
                "--wait",
                "--timeout",
                "30s",
                "--json",
                "x",
            ]),
            b"",
        );
        assert_eq!(
            died.status.code(),
            Some(3),
            "the command's exit code: {}",
            text(&died.stderr)
        );
        let notice: serde_json::Value =
            serde_json::from_str(text(&died.stdout).lines().last().expect("the notice"))
                .expect("JSON");
        assert_eq!(notice["task"]["status"], "dead");
        assert_eq!(notice["task"]["exit"], 3);
        assert_eq!(notice["task"]["stderr"], "mal");
        assert_eq!(notice["task"]["reason"], "command-failed: exit 3");
        assert!(notice["correlation_id"].is_string());
        for w in [w1, w2] {
            assert!(stop(w).status.success());
        }
    });
}

/// With no worker, `send --wait` gives up after --timeout with 124 and a reason; the task
/// stays queued for a worker to come.
#[test]
fn send_wait_times_out_cleanly_without_a_worker() {
    within("send_wait_times_out_cleanly_without_a_worker", || {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let room = unique_name("work-nobody-");
        let started = Instant::now();
        let out = run(
            charla(&server.url()).args(["send", "--room", &room, "--wait", "--timeout", "1s", "x"]),
            b"",
        );
        assert_eq!(out.status.code(), Some(124));
        assert!(
            text(&out.stderr).contains("no notice"),
            "{}",
            text(&out.stderr)
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(redis_cli(server.port(), &["LLEN", &room]).trim(), "1");
    });
}

/// A task that runs far longer than the broker's consumer liveness window (here the Redis
/// queue's heartbeat TTL, 1 s) keeps its delivery: the second worker never gets it.
#[test]
fn a_long_task_is_not_given_to_a_second_worker() {
    within("a_long_task_is_not_given_to_a_second_worker", || {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let url = format!("{}?consumer_ttl_ms=1000", server.url());
        let room = unique_name("work-long-");
        let file = case_dir("work-long-").join("ids");
        let script = format!("sleep 5; {}", append_id_script(&file));
        let workers: Vec<Child> = (0..2)
            .map(|_| worker(&url, &room, &[], &["sh", "-c", &script]))
            .collect();
        send_tasks(&url, &room, 1);
        wait_lines(&file, 1, Duration::from_secs(30));
        // Had the other worker taken it over, its run would end within these seconds too.
        std::thread::sleep(Duration::from_secs(6));
        for w in workers {
            assert!(stop(w).status.success());
        }
        assert_eq!(lines_of(&file).len(), 1, "ran once: {:?}", lines_of(&file));
    });
}

/// On a terminal (a tmux pane) a worker keeps a progress line under its task lines: counts,
/// commands running and tasks a second, redrawn in place, never mixed into a task line.
#[test]
fn a_terminal_shows_a_progress_line() {
    within("a_terminal_shows_a_progress_line", || {
        let has_tmux = std::process::Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_tmux {
            charla_testkit::service_missing("tmux (apt-get install tmux)");
            return;
        }
        let Some(server) = RedisServer::start() else {
            return;
        };
        let room = unique_name("work-tty-");
        send_tasks(&server.url(), &room, 20);
        let socket = unique_name("charla-work-tmux");
        let tmux = |args: &[&str]| {
            let out = std::process::Command::new("tmux")
                .args(["-L", &socket])
                .args(args)
                .output()
                .expect("tmux");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let command = format!(
            "exec env LANG=C.UTF-8 CHARLA_NO_AUTOSTART=1 HOME={home} XDG_CONFIG_HOME={home} \
             {charla} --broker {url} work --room {room} --concurrency 2 -- sleep 0.3",
            home = sandbox().display(),
            charla = env!("CARGO_BIN_EXE_charla"),
            url = server.url(),
        );
        tmux(&[
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "-s",
            "w",
            &command,
        ]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut screen = String::new();
        while Instant::now() < deadline {
            screen = tmux(&["capture-pane", "-p", "-t", "w"]);
            if screen.contains("done 20 ·") {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        tmux(&["kill-server"]);
        assert!(
            screen.contains("done 20 · failed 0 · dead 0 · running 0"),
            "{screen}"
        );
        let task_lines = screen.lines().filter(|l| l.starts_with("ok ")).count();
        assert_eq!(task_lines, 20, "each task's line whole: {screen}");
        assert!(
            screen
                .lines()
                .all(|l| !(l.starts_with("ok ") && l.contains("running"))),
            "no progress mixed into a task line: {screen}"
        );
    });
}
