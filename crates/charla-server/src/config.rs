//! Server settings: what `charla serve` flags map to, with Redis's defaults where Redis has one.

use std::path::PathBuf;

/// When the append-only file is fsynced. Same meaning as Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendFsync {
    /// fsync before any reply that acknowledges a write: a crash loses nothing acknowledged.
    Always,
    /// fsync once a second: a crash loses at most about a second.
    EverySec,
    /// Let the OS decide when to flush.
    No,
}

impl std::str::FromStr for AppendFsync {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(AppendFsync::Always),
            "everysec" => Ok(AppendFsync::EverySec),
            "no" => Ok(AppendFsync::No),
            other => Err(format!(
                "appendfsync must be always, everysec or no (got {other:?})"
            )),
        }
    }
}

impl AppendFsync {
    /// The name Redis uses (`CONFIG GET appendfsync`).
    pub fn as_str(self) -> &'static str {
        match self {
            AppendFsync::Always => "always",
            AppendFsync::EverySec => "everysec",
            AppendFsync::No => "no",
        }
    }
}

/// Everything the server needs to know. `Default` is what `charla serve` without flags does:
/// loopback only on the seed's port 6380, no password, protected mode, memory only.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the CLI binds (informational for `serve`, which takes a bound listener).
    pub bind: String,
    /// Port the CLI binds; reported by `INFO` and `CONFIG GET port`.
    pub port: u16,
    /// When set, clients must `AUTH` (or `HELLO 3 AUTH default <pw>`) first.
    pub requirepass: Option<String>,
    /// Refuse non-loopback clients while no password is set, as Redis does.
    pub protected_mode: bool,
    /// Directory of the append-only file.
    pub dir: PathBuf,
    /// Keep an append-only file and replay it on start.
    pub appendonly: bool,
    pub appendfsync: AppendFsync,
    /// File name of the append-only file inside `dir`.
    pub appendfilename: String,
    /// Rewrite (compact) the file when it grew past this size and doubled since the last
    /// rewrite. Redis's default is 64 MiB.
    pub aof_rewrite_min_size: u64,
    /// Connections beyond this many get `-ERR max number of clients reached`.
    pub maxclients: usize,
    /// Largest bulk string a client may send (Redis's `proto-max-bulk-len`, 512 MiB as there).
    pub max_bulk_len: usize,
    /// Most bytes one client's unfinished request may occupy (Redis's
    /// `client-query-buffer-limit`, 1 GiB as there). A request announcing more is refused on
    /// its header, before its body is read.
    pub client_query_buffer_limit: usize,
    /// Output buffer limits of pub/sub clients (Redis's `client-output-buffer-limit pubsub`).
    pub pubsub_output_limit: OutputLimit,
    /// Listen backlog; 0 (the default) is the system's maximum (`net.core.somaxconn`).
    pub tcp_backlog: u32,
    /// Seconds of idleness before TCP keepalive probes a client (Redis's `tcp-keepalive`,
    /// 300 as there); 0 turns keepalive off.
    pub tcp_keepalive: u64,
    /// Most arguments in one command (Redis allows 1024*1024).
    pub max_multibulk_len: usize,
    /// Largest inline command line (Redis: 64 KiB).
    pub max_inline_len: usize,
    /// I/O threads, each a single-threaded runtime owning its connections (0 = one per core).
    pub threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1".into(),
            port: 6380,
            requirepass: None,
            protected_mode: true,
            dir: PathBuf::from("."),
            appendonly: false,
            appendfsync: AppendFsync::EverySec,
            appendfilename: "charla.aof".into(),
            aof_rewrite_min_size: 64 * 1024 * 1024,
            maxclients: 10_000,
            max_bulk_len: 512 * 1024 * 1024,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            pubsub_output_limit: OutputLimit::PUBSUB_DEFAULT,
            tcp_backlog: 0,
            tcp_keepalive: 300,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            threads: 0,
        }
    }
}

/// Redis's `client-output-buffer-limit` for one class of clients: disconnect a client whose
/// pending output exceeds `hard` bytes, or stays above `soft` bytes for more than
/// `soft_seconds`. A limit of 0 is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimit {
    pub hard: usize,
    pub soft: usize,
    pub soft_seconds: u64,
}

impl OutputLimit {
    /// Redis's default for pub/sub clients: `32mb 8mb 60`.
    pub const PUBSUB_DEFAULT: OutputLimit = OutputLimit {
        hard: 32 * 1024 * 1024,
        soft: 8 * 1024 * 1024,
        soft_seconds: 60,
    };
}

/// A `client-output-buffer-limit` value: `<class> <hard> <soft> <seconds>`, repeated, as
/// `redis.conf` and `CONFIG SET` take it. Only the `pubsub` class matters to charla serve
/// (its clients have no replicas, and normal clients are bounded by waiting for the peer to
/// read); the others are accepted as long as they keep Redis's defaults. Returns the pubsub
/// limit if the value names it.
pub fn parse_output_limits(s: &str) -> Result<Option<OutputLimit>, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(4) {
        return Err("expected <class> <hard> <soft> <seconds>, repeated".into());
    }
    let mut pubsub = None;
    for w in words.chunks(4) {
        let size = |v: &str| parse_size(v).ok_or_else(|| format!("invalid size {v:?}"));
        let limit = OutputLimit {
            hard: size(w[1])?,
            soft: size(w[2])?,
            soft_seconds: w[3]
                .parse()
                .map_err(|_| format!("invalid seconds {:?}", w[3]))?,
        };
        match w[0].to_ascii_lowercase().as_str() {
            "pubsub" => pubsub = Some(limit),
            "normal"
                if limit
                    == (OutputLimit {
                        hard: 0,
                        soft: 0,
                        soft_seconds: 0,
                    }) => {}
            "replica" | "slave" => {}
            other => {
                return Err(format!(
                    "charla serve limits only the pubsub class (got {other:?} with a limit)"
                ))
            }
        }
    }
    Ok(pubsub)
}

/// A size as `redis.conf` writes it: plain bytes, or with a unit `k`/`m`/`g` (powers of 1000)
/// or `kb`/`mb`/`gb` (powers of 1024), in any case.
/// [`parse_memory`] as an in-memory size (`None` also when it does not fit a `usize`).
pub fn parse_size(s: &str) -> Option<usize> {
    parse_memory(s).and_then(|n| usize::try_from(n).ok())
}

pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// The system's maximum listen backlog (`net.core.somaxconn` on Linux), or Redis's default
/// `tcp-backlog` (511) where it cannot be read.
pub fn system_backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(511)
}

impl ServerConfig {
    /// The backlog `serve` listens with: `tcp_backlog`, or the system's maximum when it is 0;
    /// never above the system's maximum (the kernel would cap it anyway, and `CONFIG GET
    /// tcp-backlog` reports what is really in force).
    pub fn effective_backlog(&self) -> u32 {
        let max = system_backlog();
        match self.tcp_backlog {
            0 => max,
            n => n.min(max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("1024"), Some(1024));
        assert_eq!(parse_memory("32mb"), Some(32 << 20));
        assert_eq!(parse_memory("1GB"), Some(1 << 30));
        assert_eq!(parse_memory("2k"), Some(2000));
        assert_eq!(parse_memory("lots"), None);
        assert_eq!(parse_memory("-1"), None);
        assert_eq!(parse_memory("99999999999999gb"), None);
    }

    #[test]
    fn output_limits() {
        assert_eq!(
            parse_output_limits("normal 0 0 0 slave 268435456 67108864 60 pubsub 32mb 8mb 60"),
            Ok(Some(OutputLimit::PUBSUB_DEFAULT))
        );
        assert_eq!(parse_output_limits("replica 1mb 1mb 1"), Ok(None));
        assert!(parse_output_limits("normal 1mb 0 0").is_err());
        assert!(parse_output_limits("pubsub 1mb 0").is_err());
    }
}
