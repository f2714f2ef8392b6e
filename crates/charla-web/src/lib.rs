//! charla-web: the browser chat (`charla web`).
//!
//! - `/` serves one page (HTML, CSS and JS compiled into the binary: `assets/`);
//! - `/ws?room=ROOM&name=NAME` carries a page's live traffic (protocol in [`ws`]);
//! - `/api/…` is a small HTTP API over the same rooms ([`api`]);
//! - [`hub`] holds what the pages of one gateway share: one feed per room, presence, one
//!   outbox, and with `--archive` the archiver of the rooms it serves (charla-archive). Several gateways pointed at one broker serve the same rooms: everything a page
//!   sees went through the broker.
//!
//! Hygiene: text from users is only ever put into the page as text (never as HTML); message
//! size and per-connection rate are limited; each page reads from a bounded window of its
//! room's feed, and a page that falls out of it is disconnected with a reason rather than
//! holding memory or slowing the others.
//!
//! Exposed on a network: [`conn`] bounds what one client address and one idle connection can
//! hold (per-address cap, header deadline), [`guard`] refuses other sites' pages (Origin) and
//! host names the gateway does not know (Host, against DNS rebinding). [`client`] says who a
//! request is from (through `--trusted-proxy`) and keeps the rates per client, across all its
//! pages and the API; [`auth`] checks who people are (`--auth`) and which names they may use;
//! [`caller`] puts both in front of the handlers.

pub mod api;
pub mod assets;
pub mod auth;
pub mod body;
pub mod caller;
pub mod client;
pub mod conn;
pub mod files;
pub mod guard;
pub mod hub;
pub mod language;
pub mod limits;
pub mod uploads;
pub mod wire;
pub mod ws;

use std::future::Future;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use charla_chat::Link;
use charla_core::Mode;
use tokio::net::TcpListener;

pub use hub::Hub;
pub use limits::Limits;

/// How a gateway behaves.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Stream (history, no gaps) or broadcast (live only).
    pub mode: Mode,
    /// Messages shown on joining a room.
    pub history: usize,
    pub limits: Limits,
    /// Frames a page may fall behind its room before it is disconnected.
    pub page_backlog: usize,
    /// How long a room's messages are gathered before they go out to its pages as one burst
    /// (each page then wakes and writes once per burst instead of once per message).
    pub linger: std::time::Duration,
    /// The PostgreSQL archive, when the gateway keeps one: every room it serves is archived,
    /// and history beyond the broker's (older pages, broadcast rooms, search) comes from it.
    pub archive: Option<charla_archive::Archive>,
    /// Connections one client address may hold at once (HTTP and WebSocket); 0: no limit.
    pub max_connections_per_ip: usize,
    /// Time a connection has to send a request's head (after being accepted, or after its
    /// previous response) before it is closed.
    pub header_timeout: std::time::Duration,
    /// A page from which nothing has come for this long (not even the pong to the gateway's
    /// ping, sent when it has been quiet a third of that) is let go.
    pub idle_timeout: std::time::Duration,
    /// Host names served besides the bind's own (see [`guard`]); `*`: any.
    pub allowed_hosts: Vec<String>,
    /// Sites whose pages may open a WebSocket or post, besides the gateway's own (see
    /// [`guard`]); `*`: any.
    pub allowed_origins: Vec<String>,
    /// Who people are (`--auth`; see [`auth`]).
    pub auth: auth::Auth,
    /// Peers whose `Forwarded` / `X-Forwarded-For` (and, under `--auth proxy`, user header)
    /// are believed (see [`client`]).
    pub trusted_proxies: Vec<client::Cidr>,
    /// Reachable from other machines (set by [`serve`] from the bind): pages are told when
    /// names are not verified.
    pub exposed: bool,
    /// Rooms the gateway reads at once (a page asking for one more is refused with the
    /// reason); rooms no page reads any more are let go within a minute.
    pub max_rooms: usize,
    /// `--uploads DIR`: pictures taken and turned into tasks (see [`uploads`]).
    pub uploads: Option<UploadConfig>,
}

/// How a gateway takes uploads (`--uploads DIR`; see [`uploads`]).
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Where the files are kept: absolute, since each task names its file's full path.
    pub dir: std::path::PathBuf,
    /// The queue room each upload's task goes to (what `charla work --room` reads).
    pub room: String,
    /// The largest file taken.
    pub max_bytes: usize,
    /// The language of what the gateway says in rooms about uploads.
    pub lang: charla_i18n::Lang,
}

/// Default of [`UploadConfig::room`].
pub const DEFAULT_UPLOAD_ROOM: &str = "uploads";

/// Uploads received at once: each body is held whole while it arrives, so the gateway's
/// memory for uploads stays near this many times `--max-upload-bytes` however many clients
/// send; one more gets `503` with `Retry-After`.
pub const UPLOADS_AT_ONCE: usize = 8;

/// Default of [`UploadConfig::max_bytes`]: 10 MiB.
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;

/// Default of [`WebConfig::max_rooms`].
pub const MAX_ROOMS: usize = 1000;

/// Default of [`WebConfig::max_connections_per_ip`].
pub const MAX_CONNECTIONS_PER_IP: usize = 64;

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            mode: Mode::Stream,
            history: charla_chat::DEFAULT_HISTORY,
            limits: Limits::default(),
            page_backlog: hub::PAGE_BACKLOG,
            linger: std::time::Duration::from_millis(2),
            archive: None,
            max_connections_per_ip: MAX_CONNECTIONS_PER_IP,
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(90),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            auth: auth::Auth::default(),
            trusted_proxies: Vec::new(),
            exposed: false,
            max_rooms: MAX_ROOMS,
            uploads: None,
        }
    }
}

/// The routes, over a hub, behind the guard (Host and Origin rules).
pub fn router(hub: Arc<Hub>, guard: Arc<guard::Guard>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/style.css", get(assets::style))
        .route("/i18n.json", get(assets::page_strings))
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(api::health))
        .route("/api/rooms", get(api::rooms))
        .route(
            "/api/rooms/{room}/messages",
            post(api::post_message).get(api::messages),
        )
        // The body is bounded by `body::bounded` (to --max-upload-bytes for this route).
        .route(
            "/api/rooms/{room}/uploads",
            post(uploads::post_upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/uploads/{name}", get(uploads::file))
        .with_state(hub.clone())
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            body::bounded,
        ))
        .layer(axum::middleware::from_fn_with_state(hub, caller::identify))
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        // Outermost: every refusal after it, the guard's too, is in the request's language.
        .layer(axum::middleware::from_fn(language::tag))
}

/// Serve on a bound listener until `shutdown` completes; then pages are told the gateway is
/// closing, their sockets closed, and in-flight requests finished.
pub async fn serve(
    listener: TcpListener,
    link: Arc<Link>,
    config: WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut config = config;
    config.exposed = !listener.local_addr()?.ip().is_loopback();
    let capabilities = link.broker().await.1.capabilities();
    let hub = Hub::new(link, config, capabilities);
    let guard = guard::Guard::new(
        listener.local_addr()?,
        &hub.config.allowed_hosts,
        &hub.config.allowed_origins,
    );
    let app = router(hub.clone(), Arc::new(guard));
    if hub.config.uploads.is_some() {
        tokio::spawn(uploads::relay(Arc::downgrade(&hub)));
    }
    let closing = hub.clone();
    let limits = conn::ConnLimits {
        header_timeout: hub.config.header_timeout,
        max_per_ip: hub.config.max_connections_per_ip,
    };
    conn::serve(listener, app, limits, async move {
        shutdown.await;
        closing.close();
    })
    .await;
    // WebSockets left hyper's books when they were upgraded: give their goodbyes a moment.
    hub.pages_gone(std::time::Duration::from_secs(5)).await;
    Ok(())
}
