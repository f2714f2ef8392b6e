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
    /// Largest bulk string a client may send (Redis's `proto-max-bulk-len`, 512 MiB there).
    pub max_bulk_len: usize,
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
            max_bulk_len: 64 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            threads: 0,
        }
    }
}
