//! A page's WebSocket: `GET /ws?room=ROOM&name=NAME`.
//!
//! Server → page, one JSON object per text frame, told apart by `type`:
//! - `hello` `{room, name, mode, history: bool}` — first frame;
//! - `history` `{messages: [Message…]}` — the room's recent messages, oldest first;
//! - `online` `{names: […]}` — who is in the room now (again after the page missed changes);
//! - `presence` `{event: "join"|"leave", name}` — a change;
//! - `message` `{message: Message}` — live, in the room's order, charla's wire format;
//! - `status` `{connected: bool, detail}` — the gateway lost / regained the broker;
//! - `error` `{error}` — a post was refused (too long, too fast, empty); the socket stays.
//!
//! Page → server: `{"mensaje": "text"}` (or the bare text). The gateway stamps the name,
//! the room, the time and a fresh id.
//!
//! A page that falls `page_backlog` messages behind its room is closed with code 1008 and the
//! reason, rather than slowing the room or holding memory for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use charla_core::Message;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::hub::{FrameKind, Hub};
use crate::limits::{check_name, check_room, check_text, Bucket};

#[derive(Debug, Deserialize)]
pub struct Join {
    room: Option<String>,
    name: Option<String>,
}

/// Close codes (RFC 6455): going away, policy violation.
const GOING_AWAY: u16 = 1001;
const POLICY: u16 = 1008;

/// Frames written before a flush when several are ready at once.
const WRITE_BATCH: usize = 256;

pub async fn upgrade(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(join): Query<Join>,
    ws: WebSocketUpgrade,
) -> Response {
    let room = join.room.unwrap_or_else(|| "general".to_owned());
    if let Err(e) = check_room(&room) {
        return (StatusCode::BAD_REQUEST, e).into_response();
    }
    let name = match check_name(
        join.name.as_deref().unwrap_or_default(),
        hub.config.limits.max_name_chars,
    ) {
        Ok(n) => n,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    // Small buffers: a gateway holds thousands of idle pages, and chat frames are small. The
    // read buffer is allocated up front (and grows for a longer frame); the write buffer keeps
    // the capacity it reached, which is about this target (a write goes out once it is passed).
    // Frames over the message limit (plus JSON overhead) are refused by the protocol layer.
    let max_frame = hub.config.limits.max_text_bytes * 2 + 1024;
    ws.read_buffer_size(1024)
        .write_buffer_size(4096)
        .max_write_buffer_size(1 << 20)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_upgrade(move |socket| async move {
            tracing::info!(%peer, %room, %name, "page joined");
            let reason = session(socket, hub, room.clone(), name.clone()).await;
            tracing::info!(%peer, %room, %name, %reason, "page left");
        })
}

fn text(value: serde_json::Value) -> WsMessage {
    WsMessage::Text(Utf8Bytes::from(value.to_string()))
}

fn close(code: u16, reason: &str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

/// Serve one page until it leaves; why it ended, for the log.
///
/// Two tasks: this one writes (the room's frames, and the replies of the reader), the reader
/// task reads the page's posts. The writer waits on the room's one channel and its reader's
/// replies only: a burst of messages costs each page one wakeup and one write.
async fn session(socket: WebSocket, hub: Arc<Hub>, room_name: String, name: String) -> String {
    let _page = hub.page();
    let room = hub.room(&room_name);
    let (mut sink, stream) = socket.split();
    let mut joined = match room.feed.join_with(room.frames(), hub.config.history).await {
        Ok(j) => j,
        Err(e) => {
            let _ = sink.send(close(GOING_AWAY, &e.to_string())).await;
            return e.to_string();
        }
    };
    if hub.is_closing() {
        let _ = sink
            .send(close(GOING_AWAY, "the gateway is shutting down"))
            .await;
        return "the gateway is shutting down".into();
    }
    let _session = hub.presence.enter(&name, &room_name);
    let broker_history = crate::api::broker_keeps_history(&hub).await;
    if !broker_history && hub.config.history > 0 {
        // The broker keeps none (broadcast mode): the archive's, when there is one. Live
        // messages it already has are dropped by id like the broker's.
        if let Some(archive) = hub.archive() {
            match archive
                .page(&room_name, hub.config.history, None, None)
                .await
            {
                Ok(page) => joined.set_history(page),
                Err(e) => tracing::warn!(room = %room_name, "history from the archive: {e}"),
            }
        }
    }
    let status = hub_status(&hub);
    let hello = [
        text(json!({"type": "hello", "room": room_name, "name": name,
            "mode": hub.config.mode.as_str(),
            "history": broker_history || hub.archive().is_some(),
            "archive": hub.archive().is_some()})),
        text(json!({"type": "history", "messages": joined.history})),
        text(json!({"type": "online", "names": hub.presence.online(&room_name)})),
        WsMessage::Text(status),
    ];
    for frame in hello {
        if sink.feed(frame).await.is_err() {
            return "the page went away".into();
        }
    }
    joined.history = Vec::new();
    if sink.flush().await.is_err() {
        return "the page went away".into();
    }
    // The reader: the page's posts, and its replies (refusals) back to this writer.
    let (replies, mut from_reader) = tokio::sync::mpsc::channel::<Reply>(8);
    let reader = tokio::spawn(read_page(
        stream,
        hub.clone(),
        room_name.clone(),
        name.clone(),
        replies,
    ));
    let _reader = AbortOnDrop(reader.abort_handle());
    loop {
        tokio::select! {
            biased;
            frame = joined.live.recv() => {
                let mut batch = 0;
                let mut next = frame;
                loop {
                    let f = match next {
                        Ok(f) => f,
                        Err(RecvError::Lagged(n)) => {
                            let why = format!("too slow: fell {n} messages behind the room; reload to catch up");
                            let _ = sink.send(close(POLICY, &why)).await;
                            return why;
                        }
                        Err(RecvError::Closed) => {
                            let _ = sink.send(close(GOING_AWAY, "the room closed")).await;
                            return "the room closed".into();
                        }
                    };
                    let send = match &f.kind {
                        FrameKind::Message { id } => joined.is_new(id),
                        FrameKind::Presence { name: who } => *who != name,
                        FrameKind::Notice => true,
                        FrameKind::Close => {
                            let _ = sink.flush().await;
                            let _ = sink.send(close(GOING_AWAY, f.text.as_str())).await;
                            return f.text.to_string();
                        }
                    };
                    if send && sink.feed(WsMessage::Text(f.text.clone())).await.is_err() {
                        return "the page went away".into();
                    }
                    batch += 1;
                    if batch >= WRITE_BATCH {
                        break;
                    }
                    next = match joined.live.try_recv() {
                        Ok(f) => Ok(f),
                        Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                        Err(_) => break,
                    };
                }
                if sink.flush().await.is_err() {
                    return "the page went away".into();
                }
            }
            reply = from_reader.recv() => match reply {
                Some(Reply::Frame(frame)) => {
                    if sink.send(frame).await.is_err() {
                        return "the page went away".into();
                    }
                }
                Some(Reply::Close(code, why)) => {
                    let _ = sink.send(close(code, &why)).await;
                    return why;
                }
                Some(Reply::Gone(why)) => return why,
                None => return "the page closed".into(),
            },
        }
    }
}

/// What the reader asks the writer to do.
enum Reply {
    Frame(WsMessage),
    Close(u16, String),
    Gone(String),
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Read a page's frames until it leaves: posts go to the outbox, refusals back to the writer.
async fn read_page(
    mut stream: futures::stream::SplitStream<WebSocket>,
    hub: Arc<Hub>,
    room: String,
    name: String,
    replies: tokio::sync::mpsc::Sender<Reply>,
) {
    let limits = &hub.config.limits;
    let mut bucket = Bucket::new(limits.posts_per_sec, limits.burst);
    loop {
        let body = match stream.next().await {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(_))) | None => {
                let _ = replies.send(Reply::Gone("the page closed".into())).await;
                return;
            }
            Some(Ok(WsMessage::Binary(_))) => {
                let _ = replies
                    .send(Reply::Close(1003, "send text frames".into()))
                    .await;
                return;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                let _ = replies
                    .send(Reply::Gone(format!("socket error: {e}")))
                    .await;
                return;
            }
        };
        if let Err(e) = post(&hub, &mut bucket, &room, &name, body.as_str()).await {
            let refusal = text(json!({"type": "error", "error": e}));
            if replies.send(Reply::Frame(refusal)).await.is_err() {
                return;
            }
        }
    }
}

fn hub_status(hub: &Hub) -> Utf8Bytes {
    crate::hub::status_frame(&hub.link.status().borrow())
}

/// A page's post: checked, limited, queued for the broker.
async fn post(
    hub: &Hub,
    bucket: &mut Bucket,
    room: &str,
    name: &str,
    body: &str,
) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Post {
        mensaje: String,
    }
    let text = match serde_json::from_str::<Post>(body) {
        Ok(p) => p.mensaje,
        Err(_) if !body.trim_start().starts_with('{') => body.to_owned(),
        Err(e) => return Err(format!("expected {{\"mensaje\": \"…\"}}: {e}")),
    };
    check_text(&text, hub.config.limits.max_text_bytes)?;
    if !bucket.take(Instant::now()) {
        return Err(format!(
            "too fast: at most {} messages per second; wait {:.1} s",
            hub.config.limits.posts_per_sec,
            bucket.wait().as_secs_f64()
        ));
    }
    hub.outbox
        .post(Message::new(name, text, room))
        .await
        .map_err(|e| e.to_string())
}
