//! `charla serve`: the embedded broker (crate `charla-server`), speaking the Redis protocol so
//! the workshop's Python scripts, redis-cli and charla itself use it like Redis.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use charla_server::{AppendFsync, OutputLimit, ServerConfig};

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

    /// Password clients must give (AUTH, or redis://:PASSWORD@host). On the command line it
    /// is visible in `ps`: prefer CHARLA_REQUIREPASS or --requirepass-file
    #[arg(
        long,
        env = "CHARLA_REQUIREPASS",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub requirepass: Option<String>,

    /// File whose content is the password clients must give (one trailing newline ignored)
    #[arg(long, env = "CHARLA_REQUIREPASS_FILE", value_name = "PATH")]
    pub requirepass_file: Option<PathBuf>,

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

    /// Largest argument a client may send, e.g. 512mb (Redis's proto-max-bulk-len)
    #[arg(long, default_value = "512mb", value_parser = super::size_arg, value_name = "SIZE")]
    pub proto_max_bulk_len: usize,

    /// Most bytes one client's unfinished request may take, e.g. 1gb (client-query-buffer-limit)
    #[arg(long, default_value = "1gb", value_parser = super::size_arg, value_name = "SIZE")]
    pub client_query_buffer_limit: usize,

    /// Disconnect a subscriber whose unread messages pass HARD, or stay above SOFT for SECS
    #[arg(
        long,
        default_value = "pubsub 32mb 8mb 60",
        value_parser = parse_output_limit,
        value_name = "pubsub HARD SOFT SECS"
    )]
    pub client_output_buffer_limit: OutputLimit,

    /// Listen backlog (0 = the system's maximum, net.core.somaxconn)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub tcp_backlog: u32,

    /// Seconds of silence before TCP keepalive probes a client (0 = off)
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub tcp_keepalive: u64,

    /// Before starting, cut a damaged append-only file back to its last whole command (like
    /// redis-check-aof --fix), printing what was cut
    #[arg(long)]
    pub aof_repair: bool,
}

fn parse_output_limit(s: &str) -> Result<OutputLimit, String> {
    Ok(charla_server::config::parse_output_limits(s)?.unwrap_or(OutputLimit::PUBSUB_DEFAULT))
}

pub async fn run(args: ServeArgs, lang: charla_i18n::Lang) -> Result<ExitCode> {
    let requirepass = match (&args.requirepass_file, args.requirepass) {
        (Some(_), Some(_)) => anyhow::bail!(lang.tr("serve-password-twice", &[])),
        (Some(path), None) => Some(crate::config::read_password_file(path, lang)?),
        (None, p) => p.filter(|p| !p.is_empty()),
    };
    let cfg = ServerConfig {
        bind: args.bind.clone(),
        port: args.port,
        requirepass,
        protected_mode: matches!(args.protected_mode, YesNo::Yes),
        dir: args.dir,
        appendonly: matches!(args.appendonly, YesNo::Yes),
        appendfsync: match args.appendfsync {
            Fsync::Always => AppendFsync::Always,
            Fsync::Everysec => AppendFsync::EverySec,
            Fsync::No => AppendFsync::No,
        },
        maxclients: args.maxclients.max(1),
        max_bulk_len: args.proto_max_bulk_len,
        client_query_buffer_limit: args.client_query_buffer_limit,
        pubsub_output_limit: args.client_output_buffer_limit,
        tcp_backlog: args.tcp_backlog,
        tcp_keepalive: args.tcp_keepalive,
        ..ServerConfig::default()
    };
    if args.aof_repair {
        repair(&cfg.dir.join(&cfg.appendfilename), lang)?;
    }
    let listener = tokio::net::TcpListener::bind((args.bind.as_str(), args.port))
        .await
        .with_context(|| {
            let address = format!("{}:{}", args.bind, args.port);
            lang.tr("serve-cannot-listen", &[("address", &address)])
        })?;
    let address = format!("{}:{}", args.bind, args.port);
    let password = if cfg.requirepass.is_some() {
        lang.tr("serve-password-required", &[])
    } else {
        String::new()
    };
    let storage = if cfg.appendonly {
        let dir = cfg.dir.display();
        lang.tr("serve-append-only", &[("dir", &dir)])
    } else {
        lang.tr("serve-memory-only", &[])
    };
    eprintln!(
        "{}",
        lang.tr(
            "serve-started",
            &[
                ("version", &charla_server::VERSION),
                ("address", &address),
                ("password", &password),
                ("storage", &storage),
            ],
        )
    );
    charla_server::serve(listener, cfg, crate::signal::shutdown()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `--aof-repair`: cut the file to its longest sound prefix and say what went.
fn repair(path: &std::path::Path, lang: charla_i18n::Lang) -> Result<()> {
    if !path.exists() {
        eprintln!(
            "--aof-repair: {} does not exist, nothing to repair",
            path.display()
        );
        return Ok(());
    }
    let r = charla_server::aof::repair(path)
        .with_context(|| lang.tr("serve-repairing", &[("path", &path.display())]))?;
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
