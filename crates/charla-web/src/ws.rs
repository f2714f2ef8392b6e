//! A page's WebSocket: `GET /ws?room=ROOM&name=NAME`.
//!
//! Server → page, one JSON object per text frame, told apart by `type`:
//! - `hello` `{room, name, mode, history: bool}` — first frame, with `status` right after it,
//!   at once whatever the broker is doing;
//! - `history` `{messages: [Message…]}` — the room's recent messages, oldest first, once the
//!   room is joined (later when the broker is away): the page is in the room from here on,
//!   and what is posted after it comes as `message`s;
//! - `online` `{names: […]}` — who is in the room now (again after the page missed changes);
//! - `presence` `{event: "join"|"leave", name}` — a change;
//! - `message` `{message: Message}` — live, in the room's order, charla's wire format;
//! - `status` `{connected: bool, detail}` — the gateway lost / regained the broker;
//! - `error` `{error}` — a post was refused (too long, too fast, empty); the socket stays.
//!
//! Page → server: `{"mensaje": "text"}` (or the bare text). The gateway stamps the name,
//! the room, the time and a fresh id. `{"lang": "es"|"en"}` changes the language of what the
//! gateway tells this page from then on (`error` frames, the close reason): the page's
//! language switch, without reconnecting (and so without a leave and a join for the others).
//!
//! A page that falls `page_backlog` messages behind its room is closed with code 1008 and the
//! reason, rather than slowing the room or holding memory for it; so is a page that sends
//! pings and does not read their pongs (what is queued for a page is bounded either way).

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use charla_core::Message;
use charla_i18n::{Lang, Said};
use futures::{FutureExt, SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use crate::caller::{admit, post_allowed, Asked, Author};
use crate::client::Client;
use crate::hub::{Frame, FrameKind, Hub, Room};
use crate::limits::{check_room, check_text};
use crate::wire::text_frame;
use charla_chat::Joined;

#[derive(Debug, Deserialize)]
pub struct Join {
    room: Option<String>,
    name: Option<String>,
    /// The password or JWT, under `--auth password|jwt` (a browser cannot set headers on a
    /// WebSocket).
    token: Option<String>,
}

/// Close codes (RFC 6455): going away, unsupported data, policy violation.
const GOING_AWAY: u16 = 1001;
const UNSUPPORTED: u16 = 1003;
const POLICY: u16 = 1008;

/// Most frames, and about the most bytes, written to a page at once when several are ready.
const WRITE_BATCH: usize = 256;
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// A page whose socket takes nothing for this long is let go (it is not reading; what this
/// side holds for it meanwhile is one batch, at most [`WRITE_BATCH_BYTES`] of shared frames).
/// Redis gives a stuck pub/sub client the same minute.
const WRITE_STALL: Duration = Duration::from_secs(60);

/// What tungstenite may hold for a page of its own frames (pongs, the close) while the socket
/// takes nothing: past it, it keeps only the latest pong instead of one per ping.
const CONTROL_BUFFER: usize = 16 * 1024;

/// Pings a page may send while its socket takes none of the pongs: a page that pings and
/// does not read is let go (code 1008), as one that falls behind its room.
const UNREAD_PONGS: u32 = 1024;

/// How long a goodbye (close frame) may take to go out.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// `GET /ws`: check the room and the name, then the WebSocket handshake (RFC 6455 §4.2), done
/// here rather than by axum's WebSocket so that the session owns the raw socket: the room's
/// frames are written to it already framed ([`crate::wire`]), with no per-page write buffer.
pub async fn upgrade(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(client): Extension<Client>,
    Extension(lang): Extension<Lang>,
    Query(join): Query<Join>,
    mut request: Request,
) -> Response {
    // The connection's place in its address's count: the page keeps it while it lives.
    let slot = request.extensions().get::<crate::conn::Slot>().cloned();
    // Every reason below is an answer's body in the page's language (`lang=` it adds to the
    // address, else its browser's): the page shows it as it is.
    let plain = |status: StatusCode, why: &Said| (status, why.in_lang(lang)).into_response();
    let room = join.room.unwrap_or_else(|| "general".to_owned());
    if let Err(e) = check_room(&room) {
        return plain(StatusCode::BAD_REQUEST, &e.said());
    }
    // Who may come in, and under which name: the reason comes back as the answer's body
    // (a page that could not connect asks again with a plain GET to read it).
    let author = match admit(
        &hub,
        &client,
        request.headers(),
        join.token.as_deref(),
        &room,
        join.name.as_deref().unwrap_or_default(),
        Asked::Page,
    ) {
        Ok(a) => a,
        Err(refusal) => return plain(refusal.status(), refusal.reason()),
    };
    let name = author.name.clone();
    let accept = match accept_key(request.headers(), lang) {
        Ok(key) => key,
        Err(refusal) => return refusal,
    };
    // Before the handshake, so a refusal is an HTTP answer with its reason.
    let room_handle = match hub.room(&room) {
        Ok(r) => r,
        Err(why) => return plain(StatusCode::SERVICE_UNAVAILABLE, &why),
    };
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return plain(StatusCode::UPGRADE_REQUIRED, &Said::new("gw-no-upgrade"));
    };
    // Small buffers: a gateway holds thousands of idle pages, and what a page sends is small.
    // The read buffer is allocated up front (and grows for a longer frame); tungstenite writes
    // only control frames (pongs, close), at once, and holds at most `CONTROL_BUFFER` of them
    // for a page that does not read (see `UNREAD_PONGS`). Frames over the message limit (plus JSON
    // overhead) are refused by the protocol layer.
    let max_frame = hub.config.limits.max_text_bytes * 2 + 1024;
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(CONTROL_BUFFER)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame));
    let fut = async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(%peer, "WebSocket upgrade failed: {e}");
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let _slot = slot;
        tracing::info!(%peer, %room, %name, "page joined");
        let mut page = PageSocket { ws, lang };
        let reason = session(&mut page, hub, room_handle, room.clone(), author).await;
        tracing::info!(%peer, %room, %name, %reason, "page left");
    };
    tokio::spawn(fut);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The `Sec-WebSocket-Accept` answering a valid WebSocket request, or the refusal.
#[allow(clippy::result_large_err)] // the refusal is the response itself
fn accept_key(headers: &HeaderMap, lang: Lang) -> Result<HeaderValue, Response> {
    let said = |id: &'static str| Said::new(id).in_lang(lang);
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, "websocket")],
            said("gw-websocket-only"),
        )
            .into_response());
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            said("gw-websocket-version"),
        )
            .into_response());
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err((StatusCode::BAD_REQUEST, said("gw-websocket-key")).into_response());
    };
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| (StatusCode::BAD_REQUEST, said("gw-websocket-key")).into_response())
}

/// A page's socket. tungstenite reads the page's frames and answers its control frames (pong,
/// the close handshake); what the gateway sends is written straight to the socket, already
/// framed, always at a frame boundary: tungstenite's own writes are flushed before, and the
/// page is not read (so no pong is queued) while a batch is being written.
struct PageSocket {
    ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    /// The page's language: of its `error` frames and close reasons.
    lang: Lang,
}

impl PageSocket {
    /// Write `frames` (whole WebSocket frames) in order, as few system calls as the socket
    /// allows. An error says why the page is gone.
    async fn write(&mut self, frames: &[&[u8]]) -> Result<(), String> {
        let gone = |e: std::io::Error| format!("the page went away ({e})");
        let stalled = || format!("the page took nothing for {} s", WRITE_STALL.as_secs());
        match tokio::time::timeout(WRITE_STALL, self.ws.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("the page went away ({e})")),
            Err(_) => return Err(stalled()),
        }
        let socket = self.ws.get_mut();
        let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match tokio::time::timeout(WRITE_STALL, socket.write_vectored(rest)).await {
                Ok(Ok(0)) => return Err("the page went away".into()),
                Ok(Ok(n)) => IoSlice::advance_slices(&mut rest, n),
                Ok(Err(e)) => return Err(gone(e)),
                Err(_) => return Err(stalled()),
            }
        }
        Ok(())
    }

    /// Say goodbye with a close frame (best effort, bounded in time), the reason in the page's
    /// language; the reason in English comes back, for the log.
    async fn close(&mut self, code: u16, reason: &Said) -> String {
        let frame = WsMessage::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: close_reason(&reason.in_lang(self.lang)).into(),
        }));
        let _ = tokio::time::timeout(CLOSE_WAIT, self.ws.send(frame)).await;
        reason.to_string()
    }

    /// What the page sent as text: a change of its language, or a post (checked, limited,
    /// queued for the broker; the refusal comes back).
    async fn take(
        &mut self,
        hub: &Hub,
        author: &Author,
        room: &str,
        body: &str,
    ) -> Result<(), Said> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Switch {
            lang: String,
        }
        if let Ok(Switch { lang }) = serde_json::from_str::<Switch>(body) {
            // A language the gateway does not speak leaves the page's as it was.
            if let Ok(lang) = lang.parse() {
                self.lang = lang;
            }
            return Ok(());
        }
        post(hub, author, room, body).await
    }

    /// Tell the page a post was refused (an `error` frame in its language).
    async fn refuse(&mut self, why: &Said) -> Result<(), String> {
        let text = json!({"type": "error", "error": why.in_lang(self.lang)}).to_string();
        self.write(&[&text_frame(&text)]).await
    }
}

/// Serve one page until it leaves; why it ended, for the log.
///
/// One task per page: it waits on the room's one channel and on the page's socket. A burst
/// of messages costs each page one wakeup and one write of shared, already framed bytes.
async fn session(
    page: &mut PageSocket,
    hub: Arc<Hub>,
    room: Arc<Room>,
    room_name: String,
    author: Author,
) -> String {
    let name = author.name.clone();
    let _page = hub.page();
    // The hello and the broker's status at once, whatever the broker is doing: a page opened
    // while it is away says so now (it used to get nothing for as long as the broker was
    // away). History and who is online follow once the room is joined.
    let hello = [
        json!({"type": "hello", "room": room_name, "name": name,
            "mode": hub.config.mode.as_str(),
            // How names are checked (`--auth`), whether this one was proved, and whether the
            // page should say that names are not verified (anyone on the network may pick any).
            "auth": hub.config.auth.mode().as_str(),
            "verified": author.verified,
            "unverified_names": hub.config.exposed && !hub.config.auth.verifies_names(),
            "history": hub.broker_keeps_history() || hub.archive().is_some(),
            "archive": hub.archive().is_some(),
            // The page shows its 📎 button only where pictures are taken (`--uploads`).
            "uploads": hub.config.uploads.as_ref().map(|u| u.max_bytes)})
        .to_string(),
        crate::hub::status_frame(&hub.link.status().borrow()),
    ]
    .map(|text| text_frame(&text));
    if let Err(why) = page.write(&hello.each_ref().map(|f| &f[..])).await {
        return why;
    }
    drop(hello);
    // Boxed: the join's state (history read, archive page) would otherwise be part of every
    // page's task for its whole life, joined or not (+0.8 KiB a page in bench/web_fanout.sh).
    let mut joined = match Box::pin(join(page, &hub, &room, &room_name, &author)).await {
        Ok(j) => j,
        Err(why) => return why,
    };
    if hub.is_closing() {
        return page.close(GOING_AWAY, &Said::new("gw-closing")).await;
    }
    let _session = hub.presence.enter_as(&name, &room_name, author.verified);
    let joined_frames = [
        json!({"type": "history", "messages": std::mem::take(&mut joined.history)}).to_string(),
        json!({"type": "online", "names": hub.presence.online(&room_name),
            "verified": hub.presence.verified(&room_name)})
        .to_string(),
    ]
    .map(|text| text_frame(&text));
    if let Err(why) = page.write(&joined_frames.each_ref().map(|f| &f[..])).await {
        return why;
    }
    drop(joined_frames);
    // Pings since the socket last took everything tungstenite had queued (its pongs).
    let mut unread_pongs = 0u32;
    // A page that has sent nothing for a third of the idle timeout is pinged (browsers answer
    // on their own); one that has sent nothing for the whole of it is gone.
    let idle_timeout = hub.config.idle_timeout;
    let mut heard = tokio::time::Instant::now();
    let mut pinged = false;
    // One timer for the session, moved on only when it fires (not at each frame).
    let idle = tokio::time::sleep(idle_timeout / 3);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            biased;
            () = &mut idle => {
                let due = heard + if pinged { idle_timeout } else { idle_timeout / 3 };
                if tokio::time::Instant::now() < due {
                    idle.as_mut().reset(due);
                    continue;
                }
                if pinged {
                    let why = Said::new("gw-idle").arg("secs", idle_timeout.as_secs());
                    return page.close(GOING_AWAY, &why).await;
                }
                pinged = true;
                idle.as_mut().reset(heard + idle_timeout);
                let ping = WsMessage::Ping(Default::default());
                match tokio::time::timeout(WRITE_STALL, page.ws.send(ping)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return format!("socket error: {e}"),
                    Err(_) => {
                        return format!("the page took nothing for {} s", WRITE_STALL.as_secs())
                    }
                }
            }
            frame = joined.live.recv() => {
                // This frame and whatever else is ready, up to a batch: one write.
                let mut batch: Vec<Arc<Frame>> = Vec::new();
                let mut bytes = 0;
                let mut next = frame;
                loop {
                    let f = match next {
                        Ok(f) => f,
                        Err(RecvError::Lagged(n)) => {
                            let why = Said::new("gw-too-slow").arg("count", n);
                            if page.write(&wires(&batch)).await.is_ok() {
                                page.close(POLICY, &why).await;
                            }
                            return why.to_string();
                        }
                        Err(RecvError::Closed) => {
                            let why = Said::new("gw-room-closed");
                            if page.write(&wires(&batch)).await.is_ok() {
                                page.close(GOING_AWAY, &why).await;
                            }
                            return why.to_string();
                        }
                    };
                    let send = match &f.kind {
                        FrameKind::Message { id } => joined.is_new(id),
                        FrameKind::Presence { name: who } => *who != name,
                        FrameKind::Notice => true,
                        FrameKind::Close { reason } => {
                            if page.write(&wires(&batch)).await.is_ok() {
                                page.close(GOING_AWAY, reason).await;
                            }
                            return reason.to_string();
                        }
                    };
                    if send {
                        bytes += f.wire.len();
                        batch.push(f);
                    }
                    if batch.len() >= WRITE_BATCH || bytes >= WRITE_BATCH_BYTES {
                        break;
                    }
                    next = match joined.live.try_recv() {
                        Ok(f) => Ok(f),
                        Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                        Err(_) => break,
                    };
                }
                if let Err(why) = page.write(&wires(&batch)).await {
                    return why;
                }
            }
            incoming = page.ws.next() => {
                heard = tokio::time::Instant::now();
                pinged = false;
                let body = match incoming {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(_))) | None => {
                        // tungstenite has queued the answer to the page's close: send it.
                        let _ = tokio::time::timeout(CLOSE_WAIT, page.ws.flush()).await;
                        return "the page closed".into();
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        return page.close(UNSUPPORTED, &Said::new("gw-text-frames")).await;
                    }
                    // A ping: tungstenite queued its pong, and sends it on the next read
                    // (now) or before the next write. A page that pings without reading
                    // the pongs is let go: tungstenite keeps only one pong beyond
                    // `CONTROL_BUFFER`, so memory is bounded either way, but such a page is
                    // a flood, not a reader.
                    Some(Ok(WsMessage::Ping(_))) => {
                        match page.ws.flush().now_or_never() {
                            Some(Ok(())) => unread_pongs = 0,
                            Some(Err(e)) => return format!("socket error: {e}"),
                            None => unread_pongs += 1,
                        }
                        if unread_pongs > UNREAD_PONGS {
                            let why = Said::new("gw-unread-pongs").arg("count", UNREAD_PONGS);
                            return page.close(POLICY, &why).await;
                        }
                        continue;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return format!("socket error: {e}"),
                };
                if let Err(e) = page.take(&hub, &author, &room_name, body.as_str()).await {
                    if let Err(why) = page.refuse(&e).await {
                        return why;
                    }
                }
            }
        }
    }
}

/// Join the room (its history from the broker, or the archive when the broker keeps none),
/// reading the page meanwhile: a page that leaves while the broker is away is let go, and
/// what it posts meanwhile is handled as always (the outbox holds it for the broker).
async fn join(
    page: &mut PageSocket,
    hub: &Arc<Hub>,
    room: &Room,
    room_name: &str,
    author: &Author,
) -> Result<Joined<Arc<Frame>>, String> {
    let joining = room.feed.join_with(room.frames(), hub.config.history);
    tokio::pin!(joining);
    let mut joined = loop {
        tokio::select! {
            joined = &mut joining => match joined {
                Ok(j) => break j,
                Err(e) => {
                    let why = Said::new("gw-join-failed").arg_said("reason", e.said());
                    return Err(page.close(GOING_AWAY, &why).await);
                }
            },
            incoming = page.ws.next() => match incoming {
                Some(Ok(WsMessage::Text(body))) => {
                    if let Err(e) = page.take(hub, author, room_name, body.as_str()).await {
                        page.refuse(&e).await?;
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None => return Err("the page closed".into()),
                Some(Err(e)) => return Err(format!("socket error: {e}")),
                Some(Ok(_)) => {}
            },
        }
    };
    if !hub.broker_keeps_history() && hub.config.history > 0 {
        // The broker keeps none (broadcast mode): the archive's, when there is one. Live
        // messages it already has are dropped by id like the broker's.
        if let Some(archive) = hub.archive() {
            match archive
                .page(room_name, hub.config.history, None, None)
                .await
            {
                Ok(page) => joined.set_history(page),
                Err(e) => tracing::warn!(room = %room_name, "history from the archive: {e}"),
            }
        }
    }
    Ok(joined)
}

/// Most bytes of a close frame's reason (RFC 6455 §5.5: 125 for the payload, 2 of them the
/// code).
const CLOSE_REASON_BYTES: usize = 123;

/// `reason` cut at a character boundary to fit a close frame (a longer one would not be sent).
fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(CLOSE_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The bytes of each frame of a batch.
fn wires(batch: &[Arc<Frame>]) -> Vec<&[u8]> {
    batch.iter().map(|f| &f.wire[..]).collect()
}

/// A page's post: checked, limited, queued for the broker; the refusal, for the page's language.
async fn post(hub: &Hub, author: &Author, room: &str, body: &str) -> Result<(), Said> {
    #[derive(Deserialize)]
    struct Post {
        mensaje: String,
    }
    let text = match serde_json::from_str::<Post>(body) {
        Ok(p) => p.mensaje,
        Err(_) if !body.trim_start().starts_with('{') => body.to_owned(),
        Err(e) => return Err(Said::new("gw-bad-json").arg("detail", e)),
    };
    check_text(&text, hub.config.limits.max_text_bytes).map_err(|e| e.said())?;
    // One bucket for the client, whatever the number of its pages and API posts.
    post_allowed(hub, author).map_err(|(_, why)| why)?;
    let mut message = Message::new(author.name.as_str(), text, room);
    message.verificado = author.verified;
    hub.outbox
        .post(message)
        .await
        .map_err(|e| Said::new("gw-not-queued").arg_said("reason", e.said()))
}
