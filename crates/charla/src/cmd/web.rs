//! `charla web`: the browser chat gateway (crates/charla-web) on the configured broker.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use charla_core::Mode;
use clap::Args;

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct WebArgs {
    /// Address to serve the page, the WebSocket and the API on (0.0.0.0:8080 for the LAN)
    #[arg(
        long,
        short = 'l',
        env = "CHARLA_WEB_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// stream: rooms keep their history (shown on joining, no gaps after a broker restart);
    /// broadcast: live only
    #[arg(
        long,
        short = 'm',
        env = "CHARLA_WEB_MODE",
        default_value = "stream",
        value_name = "MODE"
    )]
    pub mode: Mode,

    /// Messages shown on joining a room
    #[arg(long, default_value_t = charla_chat::DEFAULT_HISTORY, value_name = "N")]
    pub history: usize,

    /// Longest message, in bytes of UTF-8 text
    #[arg(long, default_value_t = charla_chat::DEFAULT_MAX_TEXT_BYTES, value_name = "BYTES")]
    pub max_message_bytes: usize,

    /// Messages a page (or an API client address) may post per second, sustained
    #[arg(long, default_value_t = 5.0, value_name = "N")]
    pub rate: f64,

    /// Messages a page may post in a burst above the rate
    #[arg(long, default_value_t = 20.0, value_name = "N")]
    pub burst: f64,

    /// Keep every message of the rooms served in this PostgreSQL database (created if
    /// missing) and serve older pages and searches from it: postgres://USER@HOST:PORT/DB
    #[arg(long, short = 'a', env = "CHARLA_ARCHIVE", value_name = "URL")]
    pub archive: Option<String>,

    /// Milliseconds a room's messages are gathered before going out to its pages as one
    /// burst: fewer wakeups and writes per page under load, at most this much more latency
    /// (0 sends each message at once)
    #[arg(long, default_value_t = 2, value_name = "MS")]
    pub linger_ms: u64,

    /// Messages a page may fall behind its room before it is disconnected (with the reason)
    #[arg(long, default_value_t = charla_web::hub::PAGE_BACKLOG, value_name = "N")]
    pub page_backlog: usize,

    /// Connections one client address may hold at once, pages and HTTP requests alike
    /// (beyond it: 429 and closed). Loopback counts like any address: behind a reverse proxy
    /// on the same machine every client is the proxy's address, so raise it there, or 0 for
    /// no limit
    #[arg(long, default_value_t = charla_web::MAX_CONNECTIONS_PER_IP, value_name = "N")]
    pub max_connections_per_ip: usize,

    /// Seconds a connection has to send a request's headers (after connecting, or after its
    /// previous answer) before it is closed
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub header_timeout: u64,

    /// Seconds a page may send nothing before it is dropped; it is pinged after a third of it
    /// (browsers answer on their own)
    #[arg(long, default_value_t = 90, value_name = "SECS")]
    pub idle_timeout: u64,

    /// A site whose pages may open the WebSocket and post (repeatable): https://chat.example.
    /// The gateway's own pages always may; pages of other sites are refused (403), as are
    /// requests a browser marks Sec-Fetch-Site: cross-site. Requests without Origin (curl,
    /// programs) are let through. '*' allows every site
    #[arg(long, value_name = "URL")]
    pub allowed_origin: Vec<String>,

    /// A host name to serve (repeatable), such as the public name in front of a reverse
    /// proxy. Requests naming another host are refused (403, against DNS rebinding). Served
    /// without it: on a loopback --listen, loopback addresses and localhost only; on any other,
    /// also any IP address and this machine's host name. '*' serves every name
    #[arg(long, value_name = "NAME")]
    pub allowed_host: Vec<String>,
}

pub async fn run(settings: &Settings, args: WebArgs) -> Result<ExitCode> {
    super::chat_mode(args.mode)?;
    if args.max_message_bytes == 0 || args.max_message_bytes > charla_core::MAX_MESSAGE_BYTES / 2 {
        anyhow::bail!(
            "--max-message-bytes: 1 to {} bytes",
            charla_core::MAX_MESSAGE_BYTES / 2
        );
    }
    if !(args.rate > 0.0 && args.burst >= 1.0) {
        anyhow::bail!("--rate must be above 0 and --burst at least 1");
    }
    if args.header_timeout == 0 || args.idle_timeout < 3 {
        anyhow::bail!("--header-timeout must be at least 1 s and --idle-timeout at least 3 s");
    }
    // Each page is a socket: the most open files the system lets this process have.
    let open_files = match charla_web::limits::raise_open_files() {
        Ok((soft, _)) => format!("{soft} open files"),
        Err(e) => {
            tracing::warn!("cannot read or raise the open-files limit: {e}");
            "open-files limit unknown".to_owned()
        }
    };
    let archive = match &args.archive {
        Some(url) => Some(super::open_archive(url).await?),
        None => None,
    };
    let link = super::chat_link(settings).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let config = charla_web::WebConfig {
        mode: args.mode,
        history: args.history,
        limits: charla_web::Limits {
            max_text_bytes: args.max_message_bytes,
            posts_per_sec: args.rate,
            burst: args.burst,
            ..charla_web::Limits::default()
        },
        page_backlog: args.page_backlog.max(1),
        linger: std::time::Duration::from_millis(args.linger_ms.min(1000)),
        archive,
        max_connections_per_ip: args.max_connections_per_ip,
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout),
        allowed_hosts: args.allowed_host.clone(),
        allowed_origins: args.allowed_origin.clone(),
    };
    eprintln!(
        "💬 charla web on http://{address}/ — broker {} ({} mode){}; {}, {open_files}; Ctrl+C stops",
        charla_core::redact(&settings.broker),
        args.mode,
        args.archive
            .as_deref()
            .map(|a| format!(", archive {}", charla_archive::redact(a)))
            .unwrap_or_default(),
        match args.max_connections_per_ip {
            0 => "no limit of connections per address".to_owned(),
            n => format!("at most {n} connections per address"),
        }
    );
    tracing::info!(%address, mode = %args.mode, "gateway started");
    charla_web::serve(listener, link, config, crate::signal::shutdown()).await?;
    eprintln!("charla web stopped");
    Ok(ExitCode::SUCCESS)
}
