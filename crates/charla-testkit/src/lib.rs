//! charla-testkit: what charla's tests share.
//!
//! - [`RedisServer`]: a real `redis-server` on a free port in a temporary directory, probed
//!   until it answers, killed on drop, its log printed when the test fails.
//! - [`conformance`]: ONE suite of behaviour written against the `Broker` trait; each backend
//!   instantiates it with [`conformance_suite!`] and its capability flags decide which cases
//!   apply.
//! - [`service_missing`]: the one place that decides whether a missing service skips a test
//!   (a developer's laptop) or fails it (`CI=true`).

pub mod conformance;
pub mod rabbitmq;
mod redis_server;

pub use redis_server::{free_port, RedisServer};

/// Call when a service a test needs is not there. On CI (`CI` set to anything but `false`/`0`)
/// this panics, so a missing service can never turn into a silently green run; elsewhere it
/// prints why the test is skipped and returns, and the caller returns early.
pub fn service_missing(what: &str) {
    if in_ci() {
        panic!("{what} is required when CI=true (.ci/run installs and starts it)");
    }
    eprintln!("SKIPPED: {what} is not available on this machine");
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
