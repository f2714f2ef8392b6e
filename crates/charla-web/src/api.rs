//! The HTTP API, over the same rooms as the pages.
//!
//! - `POST /api/rooms/{room}/messages` `{"usuario": "…", "mensaje": "…"}` → `201` and the
//!   message as sent (charla's wire format) once the broker has it; `202` when the broker is
//!   away (the message waits in the gateway's outbox and goes out when it is back); `400` bad
//!   input; `429` too fast (per client address, like a page's own limit).
//! - `GET /api/rooms/{room}/messages?limit=N&before=ID&q=WORDS` → the room's messages,
//!   oldest first: the last `N` (default 50, at most 1000), or the `N` before the message
//!   `ID`; with `q`, those matching the words (PostgreSQL full-text search: needs
//!   `--archive`). The broker answers where it keeps the room's history; the archive answers
//!   beyond it (older pages, broadcast rooms, searches), and when the broker cannot.
//! - `GET /api/rooms` → `{"rooms": [{"room", "online"}]}`: rooms with people in them, rooms
//!   this gateway reads, and the rooms the broker keeps (where it can list them).
//! - `GET /healthz` → `200 {"status": "ok", "broker"}`, or `503` while reconnecting.
//!
//! Errors are `{"error": "…"}` with the status code. Before any of these, every request goes
//! through the Host and Origin rules ([`crate::guard`], `403`) and the per-address connection
//! limit ([`crate::conn`], `429`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use charla_chat::Status;
use charla_core::{BrokerError, Message};
use serde::Deserialize;
use serde_json::json;

use crate::hub::Hub;
use crate::limits::{check_name, check_room, check_text};

/// Most messages one history request returns.
pub const MAX_PAGE: usize = 1000;

/// How far back `before=ID` looks for the message without an archive.
const BEFORE_SCAN: usize = 10_000;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

#[derive(Debug, Deserialize)]
pub struct NewMessage {
    usuario: String,
    mensaje: String,
}

pub async fn post_message(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    body: Result<Json<NewMessage>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Err(e) = check_room(&room) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let limits = &hub.config.limits;
    let name = match check_name(&body.usuario, limits.max_name_chars) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Err(e) = check_text(&body.mensaje, limits.max_text_bytes) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    if !hub.api_post_allowed(peer.ip()) {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too fast: at most {} messages per second from one address",
                limits.posts_per_sec
            ),
        );
    }
    hub.archive_room(&room);
    let message = Message::new(name, body.mensaje, room);
    let posted = match hub.outbox.post_confirmed(message.clone()).await {
        Ok(p) => p,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    match tokio::time::timeout(Duration::from_secs(5), posted).await {
        Ok(Ok(Ok(()))) => (StatusCode::CREATED, Json(message)).into_response(),
        Ok(Ok(Err(e))) => error(status_of(&e), e),
        Ok(Err(_)) => error(StatusCode::SERVICE_UNAVAILABLE, "the gateway is closing"),
        // Still waiting for the broker: it stays queued and goes out when the broker is back.
        Err(_) => (StatusCode::ACCEPTED, Json(message)).into_response(),
    }
}

fn status_of(e: &BrokerError) -> StatusCode {
    match e {
        BrokerError::TooLarge { .. } | BrokerError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    }
}

#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<usize>,
    before: Option<String>,
    q: Option<String>,
}

pub async fn messages(
    State(hub): State<Arc<Hub>>,
    Path(room): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    if let Err(e) = check_room(&room) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let limit = page.limit.unwrap_or(charla_chat::DEFAULT_HISTORY);
    if limit == 0 || limit > MAX_PAGE {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit: 1 to {MAX_PAGE} messages"),
        );
    }
    if let Some(archive) = hub.archive() {
        // The archive has every page and can search; the broker's own history is used for
        // the newest page when it has one (it is never behind live delivery).
        let broker_first =
            page.q.is_none() && page.before.is_none() && broker_keeps_history(&hub).await;
        if !broker_first {
            return match archive
                .page(&room, limit, page.before.as_deref(), page.q.as_deref())
                .await
            {
                Ok(messages) => Json(json!({"room": room, "messages": messages})).into_response(),
                Err(charla_archive::ArchiveError::InvalidArgument(e)) => {
                    error(StatusCode::BAD_REQUEST, e)
                }
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
            };
        }
    } else if page.q.is_some() {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "searching needs the archive: start the gateway with --archive postgres://…",
        );
    }
    match broker_page(&hub, &room, limit, page.before.as_deref()).await {
        Ok(messages) => Json(json!({"room": room, "messages": messages})).into_response(),
        Err(e) => error(
            if matches!(e, BrokerError::InvalidArgument(_)) {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::BAD_GATEWAY
            },
            e,
        ),
    }
}

/// Whether the broker keeps this gateway's rooms' history (stream mode on a backend that
/// reads it back).
pub async fn broker_keeps_history(hub: &Hub) -> bool {
    let (_, broker) = hub.link.broker().await;
    broker.capabilities().history && hub.config.mode == charla_core::Mode::Stream
}

/// A page of history from the broker: the last `limit`, or the `limit` before message `before`.
async fn broker_page(
    hub: &Hub,
    room: &str,
    limit: usize,
    before: Option<&str>,
) -> Result<Vec<Message>, BrokerError> {
    if !broker_keeps_history(hub).await {
        return Ok(Vec::new());
    }
    let (_, broker) = hub.link.broker().await;
    let Some(before_id) = before else {
        let page = broker.history(room, limit, None).await?;
        return Ok(page.into_iter().map(|d| d.message).collect());
    };
    // The broker pages by its own offsets; find the message's offset, newest pages first.
    let mut cursor: Option<String> = None;
    let mut scanned = 0;
    loop {
        let page = broker.history(room, 500, cursor.as_deref()).await?;
        let Some(first) = page.first() else {
            return Err(BrokerError::InvalidArgument(format!(
                "before={before_id}: no such message in room '{room}'"
            )));
        };
        if let Some(at) = page.iter().position(|d| d.message.id == before_id) {
            let mut older: Vec<Message> = Vec::new();
            let mut from = page[at].offset.clone();
            while older.len() < limit {
                let more = broker
                    .history(room, limit - older.len(), from.as_deref())
                    .await?;
                let Some(first) = more.first() else { break };
                from = first.offset.clone();
                let mut more: Vec<Message> = more.into_iter().map(|d| d.message).collect();
                more.append(&mut older);
                older = more;
            }
            return Ok(older);
        }
        scanned += page.len();
        if scanned >= BEFORE_SCAN {
            return Err(BrokerError::InvalidArgument(format!(
                "before={before_id}: not among the room's last {BEFORE_SCAN} messages"
            )));
        }
        cursor = first.offset.clone();
    }
}

pub async fn rooms(State(hub): State<Arc<Hub>>) -> Response {
    let mut rooms: BTreeMap<String, usize> = hub.presence.rooms().into_iter().collect();
    for room in hub.open_rooms() {
        rooms.entry(room).or_insert(0);
    }
    let (_, broker) = hub.link.broker().await;
    if broker.capabilities().list_rooms {
        match broker.rooms().await {
            Ok(stored) => {
                for room in stored {
                    if check_room(&room).is_ok() {
                        rooms.entry(room).or_insert(0);
                    }
                }
            }
            Err(e) => tracing::warn!("listing the broker's rooms: {e}"),
        }
    }
    let list: Vec<_> = rooms
        .into_iter()
        .map(|(room, online)| json!({"room": room, "online": online}))
        .collect();
    Json(json!({ "rooms": list })).into_response()
}

pub async fn health(State(hub): State<Arc<Hub>>) -> Response {
    let status = hub.link.status().borrow().clone();
    // The archive's state is reported, not required: live chat does not need it.
    let archive = match hub.archive() {
        None => "none",
        Some(a) if a.ping().await => "ok",
        Some(_) => "unreachable",
    };
    match status {
        Status::Connected { broker } => {
            Json(json!({"status": "ok", "broker": broker, "archive": archive})).into_response()
        }
        Status::Reconnecting { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "reconnecting", "detail": reason, "archive": archive})),
        )
            .into_response(),
    }
}
