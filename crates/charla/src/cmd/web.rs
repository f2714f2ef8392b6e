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

    /// Rooms the gateway reads at once (each is a subscription on the broker); a page asking
    /// for one more is refused with the reason (503). Rooms no page reads any more are let go
    /// within a minute
    #[arg(long, default_value_t = charla_web::MAX_ROOMS, value_name = "N")]
    pub max_rooms: usize,

    /// Take pictures at POST /api/rooms/ROOM/uploads (and the page's 📎 button) and keep them
    /// in DIR; each becomes a task in --upload-room for `charla work`, and the workers'
    /// notices (`charla work --notify`) are said in the room, with the thumbnail
    #[arg(long, value_name = "DIR")]
    pub uploads: Option<std::path::PathBuf>,

    /// With --uploads: the queue room the tasks go to
    #[arg(long, value_name = "ROOM", default_value = charla_web::DEFAULT_UPLOAD_ROOM,
          requires = "uploads")]
    pub upload_room: String,

    /// With --uploads: the largest picture taken (10MiB, 512kb, …)
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = super::size_arg,
          requires = "uploads")]
    pub max_upload_bytes: usize,

    /// GET /api/… requests a client may make per second, sustained, over all its pages
    /// (beyond it: 429 with Retry-After)
    #[arg(long, default_value_t = charla_web::limits::READS_PER_SEC, value_name = "N")]
    pub read_rate: f64,

    /// GET /api/… requests a client may make in a burst above --read-rate
    #[arg(long, default_value_t = charla_web::limits::READ_BURST, value_name = "N")]
    pub read_burst: f64,

    /// A reverse proxy in front of the gateway (repeatable): an address or a range such as
    /// 10.0.0.0/8. Only from these is the client's address taken from X-Forwarded-For /
    /// Forwarded (the rightmost hop that is not a trusted proxy), and, with --auth proxy, the
    /// user from --auth-header; from anyone else those headers are ignored
    #[arg(long, value_name = "CIDR")]
    pub trusted_proxy: Vec<charla_web::client::Cidr>,

    /// Who people are. none: anyone picks a name (a name online in a room is kept for the
    /// client that has it); password: a site or room password (--auth-password-file) lets
    /// people in; jwt: a signed token, whose sub is the name and optional rooms / channels
    /// claim the rooms; proxy: the user a trusted proxy names in --auth-header. Names proved
    /// by jwt or proxy are marked ✓
    #[arg(long, default_value = "none", value_name = "MODE")]
    pub auth: charla_web::auth::Mode,

    /// With --auth password: a file with the site password on a line, and/or lines
    /// ROOM:PASSWORD for rooms with their own (the global --password-file is the broker's)
    #[arg(long, value_name = "FILE")]
    pub auth_password_file: Option<std::path::PathBuf>,

    /// With --auth jwt: a file holding the HS256 secret
    #[arg(long, value_name = "FILE")]
    pub jwt_secret_file: Option<std::path::PathBuf>,

    /// With --auth jwt: a file holding the RS256 public key (PEM)
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,

    /// With --auth proxy: the header the trusted proxy names the user in
    #[arg(long, default_value = charla_web::auth::DEFAULT_AUTH_HEADER, value_name = "HEADER")]
    pub auth_header: String,
}

/// The authenticator `--auth` and its files describe; the flags of another mode are refused
/// rather than silently ignored.
fn auth(args: &WebArgs, lang: charla_i18n::Lang) -> Result<charla_web::auth::Auth> {
    use charla_web::auth::{Auth, Mode};
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .with_context(|| lang.tr("file-unreadable", &[("path", &path.display())]))
    };
    let stray = match args.auth {
        Mode::Password => args.jwt_secret_file.is_some() || args.jwt_public_key_file.is_some(),
        Mode::Jwt => args.auth_password_file.is_some(),
        Mode::None | Mode::Proxy => {
            args.auth_password_file.is_some()
                || args.jwt_secret_file.is_some()
                || args.jwt_public_key_file.is_some()
        }
    };
    if stray {
        anyhow::bail!(lang.tr("web-auth-stray-file", &[]));
    }
    Ok(match args.auth {
        Mode::None => Auth::default(),
        Mode::Password => {
            let Some(path) = &args.auth_password_file else {
                anyhow::bail!(lang.tr("web-auth-password-file", &[]));
            };
            let text = String::from_utf8(read(path)?)
                .with_context(|| lang.tr("file-not-utf8", &[("path", &path.display())]))?;
            Auth::password(&text)?
        }
        Mode::Jwt => match (&args.jwt_secret_file, &args.jwt_public_key_file) {
            (Some(secret), None) => {
                let secret = read(secret)?;
                // A file written by `echo` ends with a newline that is not part of the secret.
                let end = secret
                    .iter()
                    .rposition(|b| !matches!(b, b'\n' | b'\r'))
                    .map_or(0, |i| i + 1);
                Auth::jwt_hs256(&secret[..end])?
            }
            (None, Some(key)) => Auth::jwt_rs256(&read(key)?)?,
            _ => anyhow::bail!(lang.tr("web-auth-jwt-key", &[])),
        },
        Mode::Proxy => {
            if args.trusted_proxy.is_empty() {
                anyhow::bail!(lang.tr("web-auth-proxy-trusted", &[]));
            }
            Auth::proxy(&args.auth_header)?
        }
    })
}

/// `--uploads DIR` made ready: the directory created if missing, and absolute.
fn uploads(args: &WebArgs, lang: charla_i18n::Lang) -> Result<Option<charla_web::UploadConfig>> {
    let Some(dir) = &args.uploads else {
        return Ok(None);
    };
    let dir = charla_web::files::prepare(dir)
        .with_context(|| lang.tr("web-uploads-dir", &[("dir", &dir.display())]))?;
    charla_chat::check_room(&args.upload_room)
        .map_err(|e| anyhow::anyhow!("--upload-room: {}", e.said().in_lang(lang)))?;
    Ok(Some(charla_web::UploadConfig {
        dir,
        room: args.upload_room.clone(),
        max_bytes: args.max_upload_bytes.max(1),
        lang,
    }))
}

pub async fn run(settings: &Settings, args: WebArgs) -> Result<ExitCode> {
    let lang = settings.lang;
    super::chat_mode(args.mode, lang)?;
    if args.max_message_bytes == 0 || args.max_message_bytes > charla_core::MAX_MESSAGE_BYTES / 2 {
        let max = charla_core::MAX_MESSAGE_BYTES / 2;
        anyhow::bail!(lang.tr("web-max-message-bytes", &[("max", &max)]));
    }
    if !(args.rate > 0.0 && args.burst >= 1.0) {
        anyhow::bail!(lang.tr("web-rate", &[]));
    }
    if !(args.read_rate > 0.0 && args.read_burst >= 1.0) {
        anyhow::bail!(lang.tr("web-read-rate", &[]));
    }
    let auth = auth(&args, lang)?;
    if args.header_timeout == 0 || args.idle_timeout < 3 {
        anyhow::bail!(lang.tr("web-timeouts", &[]));
    }
    // Each page is a socket: the most open files the system lets this process have.
    let open_files = match charla_web::limits::raise_open_files() {
        Ok((soft, _)) => lang.tr("web-open-files", &[("count", &soft)]),
        Err(e) => {
            tracing::warn!("{}", lang.tr("web-open-files-error", &[("reason", &e)]));
            lang.tr("web-open-files-unknown", &[])
        }
    };
    let archive = match &args.archive {
        Some(url) => Some(super::open_archive(url, lang).await?),
        None => None,
    };
    let link = super::chat_link(settings).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| lang.tr("web-cannot-listen", &[("address", &args.listen)]))?;
    let address = listener.local_addr()?;
    let config = charla_web::WebConfig {
        mode: args.mode,
        history: args.history,
        limits: charla_web::Limits {
            max_text_bytes: args.max_message_bytes,
            posts_per_sec: args.rate,
            burst: args.burst,
            reads_per_sec: args.read_rate,
            read_burst: args.read_burst,
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
        max_rooms: args.max_rooms.max(1),
        auth,
        trusted_proxies: args.trusted_proxy.clone(),
        exposed: false,
        uploads: uploads(&args, lang)?,
    };
    let archive = args
        .archive
        .as_deref()
        .map(|a| lang.tr("web-archive", &[("url", &charla_archive::redact(a))]))
        .unwrap_or_default();
    let per_address = match args.max_connections_per_ip {
        0 => lang.tr("web-no-connection-limit", &[]),
        n => lang.tr("web-connection-limit", &[("count", &n)]),
    };
    eprintln!(
        "{}",
        lang.tr(
            "web-started",
            &[
                ("address", &address),
                ("broker", &charla_core::redact(&settings.broker)),
                ("mode", &args.mode),
                ("archive", &archive),
                ("limit", &per_address),
                ("files", &open_files),
            ],
        )
    );
    if let Some(up) = &config.uploads {
        let args: [(&str, &dyn std::fmt::Display); 2] =
            [("dir", &up.dir.display()), ("room", &up.room)];
        eprintln!("{}", lang.tr("web-uploads", &args));
    }
    if args.auth == charla_web::auth::Mode::None && !address.ip().is_loopback() {
        eprintln!(
            "{}",
            lang.tr("web-names-unverified", &[("address", &address)])
        );
    }
    tracing::info!(%address, mode = %args.mode, auth = %args.auth, "gateway started");
    charla_web::serve(listener, link, config, crate::signal::shutdown()).await?;
    eprintln!("{}", lang.tr("web-stopped", &[]));
    Ok(ExitCode::SUCCESS)
}
