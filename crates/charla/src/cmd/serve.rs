//! `charla serve`: the embedded broker (crate `charla-server`), speaking the Redis protocol so
//! the workshop's Python scripts, redis-cli and charla itself use it like Redis.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use charla_server::{AppendFsync, ServerConfig};

const SERVE_HELP: &str = "\
What it is:
  A broker inside charla that speaks the Redis protocol (RESP2/RESP3). Every Redis client
  works with it unchanged: the workshop's broker.py / emisor.py / receptor.py (they expect
  localhost:6380, the default here), redis-cli, redis-py, node-redis, and charla's own
  redis:// backend. Lists, pub/sub, streams with consumer groups, transactions, expiry.

Examples:
  charla serve                                     # 127.0.0.1:6380, memory only
  charla serve --bind 0.0.0.0 --requirepass s3cret # reachable from the other computer
  charla serve --appendonly --dir ./data           # keep messages across restarts
  charla serve --appendonly --appendfsync always   # no acknowledged write lost, even on a crash
  redis-cli -p 6380 ping                           # talk to it with any Redis client

Security: it listens on 127.0.0.1 only unless --bind says otherwise. With no password,
clients from other machines are refused with an explanation (protected mode, as Redis does);
set --requirepass (or CHARLA_REQUIREPASS), or, on a trusted network, --protected-mode no.
Clients then connect with redis://:PASSWORD@HOST:6380.

Persistence: off by default, like the workshop's Redis. With --appendonly every write is
appended to DIR/charla.aof, replayed on start, and compacted when it grows. --appendfsync:
always = a reply is sent only after the write is on disk; everysec = at most ~1 s lost on
a power cut; no = the OS decides.

A damaged file (anything but whole commands, apart from a last command cut short by a
crash, which is dropped) stops the start with its byte offset; --aof-repair cuts it there.

Stop with Ctrl+C or SIGTERM: connections are closed and the file is flushed.";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum YesNo {
    Yes,
    No,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Fsync {
    Always,
    Everysec,
    No,
}

#[derive(Debug, Args)]
#[command(after_help = SERVE_HELP)]
pub struct ServeArgs {
    /// Address to listen on (0.0.0.0 = every interface)
    #[arg(
        long,
        env = "CHARLA_SERVE_BIND",
        default_value = "127.0.0.1",
        value_name = "ADDR"
    )]
    pub bind: String,

    /// Port to listen on (6380 is the workshop's)
    #[arg(long, short = 'p', env = "CHARLA_SERVE_PORT", default_value_t = 6380)]
    pub port: u16,

    /// Password clients must give (AUTH, or redis://:PASSWORD@host)
    #[arg(
        long,
        env = "CHARLA_REQUIREPASS",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub requirepass: Option<String>,

    /// Refuse clients from other machines while no password is set
    #[arg(long, value_enum, default_value = "yes", value_name = "yes|no")]
    pub protected_mode: YesNo,

    /// Directory of the append-only file
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,

    /// Keep an append-only file and replay it on start (`--appendonly` or `--appendonly yes`)
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "yes", default_value = "no", value_name = "yes|no")]
    pub appendonly: YesNo,

    /// When to fsync the append-only file
    #[arg(long, value_enum, default_value = "everysec")]
    pub appendfsync: Fsync,

    /// Most simultaneous clients
    #[arg(long, default_value_t = 10_000)]
    pub maxclients: usize,

    /// Before starting, cut a damaged append-only file back to its last whole command (like
    /// redis-check-aof --fix), printing what was cut
    #[arg(long)]
    pub aof_repair: bool,
}

pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let cfg = ServerConfig {
        bind: args.bind.clone(),
        port: args.port,
        requirepass: args.requirepass.filter(|p| !p.is_empty()),
        protected_mode: matches!(args.protected_mode, YesNo::Yes),
        dir: args.dir,
        appendonly: matches!(args.appendonly, YesNo::Yes),
        appendfsync: match args.appendfsync {
            Fsync::Always => AppendFsync::Always,
            Fsync::Everysec => AppendFsync::EverySec,
            Fsync::No => AppendFsync::No,
        },
        maxclients: args.maxclients.max(1),
        ..ServerConfig::default()
    };
    if args.aof_repair {
        repair(&cfg.dir.join(&cfg.appendfilename))?;
    }
    let listener = tokio::net::TcpListener::bind((args.bind.as_str(), args.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (is another broker already running there? try --port)",
                args.bind, args.port
            )
        })?;
    eprintln!(
        "charla serve {} listening on {}:{} (redis://{}:{}){}{}",
        charla_server::VERSION,
        args.bind,
        args.port,
        args.bind,
        args.port,
        if cfg.requirepass.is_some() {
            ", password required"
        } else {
            ""
        },
        if cfg.appendonly {
            format!(", append-only file in {}", cfg.dir.display())
        } else {
            ", memory only".into()
        },
    );
    charla_server::serve(listener, cfg, crate::signal::shutdown()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `--aof-repair`: cut the file to its longest sound prefix and say what went.
fn repair(path: &std::path::Path) -> Result<()> {
    if !path.exists() {
        eprintln!(
            "--aof-repair: {} does not exist, nothing to repair",
            path.display()
        );
        return Ok(());
    }
    let r = charla_server::aof::repair(path)
        .with_context(|| format!("repairing {}", path.display()))?;
    if r.new_len == r.old_len {
        eprintln!(
            "--aof-repair: {} is sound ({} commands), left unchanged",
            path.display(),
            r.commands
        );
    } else {
        let why = match &r.ending {
            charla_server::aof::Ending::Garbage { offset, reason } => {
                format!("damaged at byte {offset}: {reason}")
            }
            charla_server::aof::Ending::OpenMulti => "unfinished transaction at the end".into(),
            _ => "truncated command at the end".into(),
        };
        eprintln!(
            "--aof-repair: {} {why}; cut {} bytes (from byte {} to {}), kept {} commands. Cut bytes begin: {}",
            path.display(),
            r.old_len - r.new_len,
            r.new_len,
            r.old_len,
            r.commands,
            r.cut_preview
        );
    }
    Ok(())
}
