//! charla-testkit: what charla's tests share.
//!
//! - [`RedisServer`]: a real `redis-server` on a free port in a temporary directory, probed
//!   until it answers, killed on drop, its log printed when the test fails.
//! - [`KafkaServer`]: the same for a Kafka-protocol broker (`tansu`, SQLite storage).
//! - [`PostgresServer`]: a private PostgreSQL (initdb / pg_ctl) that a test may stop and start.
//! - [`conformance`]: ONE suite of behaviour and fault injection written against the `Broker`
//!   trait; each backend runs it from a `harness = false` test whose `main` calls
//!   [`conformance::run`], and its capability flags decide which cases apply (the others are
//!   reported as ignored, by name, with the reason).
//! - [`proxy`]: a TCP proxy the tests control (stall, cut, outage) for network faults.
//! - [`layering`]: the import-circle check every crate of the workspace runs
//!   (`tests/layering.rs`).
//! - [`service_missing`]: the one place that decides whether a missing service skips a test
//!   (a developer's laptop) or fails it (`CI=true`).

pub mod conformance;
mod kafka_server;
pub mod layering;
mod postgres_server;
pub mod proxy;
pub mod rabbitmq;
mod redis_server;

pub use kafka_server::{tansu_path, KafkaServer};
pub use postgres_server::{PostgresServer, ScratchDatabase};
pub use redis_server::{free_port, RedisServer};

/// Call when a service a test needs is not there. On CI (`CI` set to anything but `false`/`0`)
/// this panics, so a missing service can never turn into a silently green run; elsewhere it
/// prints why the test is skipped and returns, and the caller returns early.
pub fn service_missing(what: &str) {
    if in_ci() {
        panic!("{what} is required when CI=true (.ci/run installs and starts it)");
    }
    report_skip(&format!("{what} is not available on this machine"));
}

/// Say that the running test (the current thread's name, as test harnesses name it) is
/// skipped and why: on stderr, and appended to the file `CHARLA_SKIP_LOG` names, because a
/// passing test's stderr is captured and `scripts/test` lists every skip at its end.
pub fn report_skip(why: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    report_skip_of(&test, why);
}

/// As [`report_skip`], naming the test.
pub fn report_skip_of(test: &str, why: &str) {
    let line = format!("SKIPPED: {test}: {why}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("CHARLA_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Poll `probe` until it returns true, failing the test after `limit` with `what`: tests wait
/// for a condition, never for a guessed number of milliseconds.
pub fn wait_until(what: &str, limit: std::time::Duration, mut probe: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !probe() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The resident memory of a process, in KiB (`VmRSS` of /proc/PID/status; 0 when the
/// process is gone): how the tests that flood a server bound its memory.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `url` with the query option `key=value` added (after `?`, or `&` when it has a query).
pub fn with_option(url: &str, key: &str, value: impl std::fmt::Display) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// True when running under CI.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A name no other test run uses: `prefix` + a ULID in lower case.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}
