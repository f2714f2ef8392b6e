//! `charla serve`: an embedded broker that speaks the Redis protocol.
//!
//! Every Redis client works with it unchanged (redis-cli, redis-benchmark, redis-py, the
//! `redis` crate, node-redis), so the workshop's scripts and charla's own `redis://` backend
//! need no broker install. It implements the commands those clients and charla's delivery
//! modes use — strings, hashes, lists with blocking pops and moves, sets, sorted sets (with
//! blocking pops), pub/sub, streams with consumer groups, transactions — with Redis's replies
//! and error texts, in RESP2 and RESP3.
//!
//! Layout, in the style of tokio-rs/mini-redis, bottom up (a module uses only modules above it
//! in this list; ARCHITECTURE.md follows a request through them):
//! - [`frame`]: sans-io RESP request parser and reply writer; [`config`]: the settings;
//!   [`events`]: keyspace notifications' classes;
//! - [`stream`], [`zset`] and [`db`]: the stream and sorted-set types and the keyspace (with blocked-client wakeups and
//!   the AOF buffer, which change atomically with it); [`pubsub`]: the subscription registry;
//! - [`client`]: one client's protocol state; [`persistence`]: the AOF's state handle;
//! - [`shared`]: what every connection shares (keyspace lock, registries, limits, counters);
//! - [`cmd`]: the command table and one file per command family;
//! - [`exec`]: the request path, one command from arguments to reply, for every caller;
//! - [`aof`]: the AOF writer thread, rewrite, replay and repair; [`connection`]: one socket;
//! - [`server`]: the accept loop, I/O threads, expiry and shutdown.
//!
//! ```no_run
//! # async fn run() -> Result<(), charla_server::ServerError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:6380").await?;
//! charla_server::serve(listener, charla_server::ServerConfig::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

pub mod config;
pub mod events;
pub mod frame;

pub mod db;
pub mod pubsub;
pub mod stream;
pub mod zset;

pub mod client;
pub mod persistence;

pub mod shared;

pub mod cmd;

pub mod exec;

pub mod aof;
pub mod connection;
#[doc(hidden)]
pub mod fuzzing;

pub mod server;

use std::path::PathBuf;

pub use config::{AppendFsync, OutputLimit, ServerConfig};
pub use server::serve;

/// The Redis version reported to clients (`INFO`, `HELLO`): clients enable features by it, and
/// charla implements the Redis 7.2 behaviour of the commands it has.
pub const REDIS_VERSION: &str = "7.2.0";
/// charla's own version (`INFO server` → `charla_version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the append-only file {path} is corrupt at byte {offset} ({reason}); `charla serve --aof-repair` cuts the file there (back to the last whole command) and starts, or move the file away")]
    AofCorrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

impl From<std::io::Error> for ServerError {
    fn from(e: std::io::Error) -> Self {
        ServerError::Io {
            what: "network".into(),
            source: e,
        }
    }
}
