//! The HTTP API, over the same rooms as the pages.
//!
//! - `POST /api/rooms/{room}/messages` `{"usuario": "…", "mensaje": "…"}` → `201` and the
//!   message as sent (charla's wire format) once the broker has it; `202` when the broker is
//!   away (the message waits in the gateway's outbox and goes out when it is back); `400` bad
//!   input; `401` / `403` not authenticated, or a name someone else holds ([`crate::auth`]);
//!   `429` too fast (with `Retry-After`: one rate per client, across its pages and the API).
//!   With `--auth jwt|proxy`, `usuario` may be left out (it is the proved name) and the message
//!   carries `"verificado": true`.
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
//! limit ([`crate::conn`], `429`); `GET /api/…` through the client's read rate
//! ([`crate::caller`], `429` with `Retry-After`). Under `--auth password|jwt|proxy` every
//! `/api/…` route asks for the credential (`Authorization: Bearer …` or `Basic …`,
//! `X-Charla-Password`, or `?token=`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use charla_chat::Status;
use charla_core::{BrokerError, Message};
use charla_i18n::{Lang, Said};
use serde::Deserialize;
use serde_json::json;

use crate::caller::{api_poster, error, may_read, query_token, refused, unavailable};
use crate::client::Client;
use crate::hub::Hub;
use crate::limits::{check_room, check_text};

/// Most messages one history request returns.
pub const MAX_PAGE: usize = 1000;

/// How far back `before=ID` looks for the message without an archive (pages go by
/// `cursor`, which costs one read).
const BEFORE_SCAN: usize = 1_000;

/// Messages read at a time while looking for `before=ID`.
const SCAN_PAGE: usize = 500;

/// A catalogue line whose only argument is technical detail (a library's or the broker's own
/// words, kept as they are in parentheses).
fn with_detail(id: &'static str, detail: impl std::fmt::Display) -> Said {
    Said::new(id).arg("detail", detail)
}

/// The deepest cause of an error: the part that says what exactly was wrong.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(source) = e.source() {
        e = source;
    }
    e.to_string()
}

#[derive(Debug, Deserialize)]
pub struct NewMessage {
    /// The name; may be left out where the client proves one (`--auth jwt|proxy`).
    #[serde(default)]
    usuario: String,
    mensaje: String,
}

pub async fn post_message(
    State(hub): State<Arc<Hub>>,
    Extension(client): Extension<Client>,
    Extension(lang): Extension<Lang>,
    headers: HeaderMap,
    uri: Uri,
    Path(room): Path<String>,
    body: Result<Json<NewMessage>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            // The parser's own words only (what is missing, where), without axum's prose.
            let why = with_detail("gw-bad-json", innermost(&e));
            return error(StatusCode::BAD_REQUEST, &why, lang);
        }
    };
    if let Err(e) = check_room(&room) {
        return error(StatusCode::BAD_REQUEST, &e.said(), lang);
    }
    let limits = &hub.config.limits;
    if let Err(e) = check_text(&body.mensaje, limits.max_text_bytes) {
        return error(StatusCode::BAD_REQUEST, &e.said(), lang);
    }
    let author = match api_poster(&hub, &client, &headers, &uri, &room, &body.usuario, lang) {
        Ok(a) => a,
        Err(refusal) => return refusal,
    };
    hub.archive_room(&room);
    let mut message = Message::new(author.name, body.mensaje, room);
    message.verificado = author.verified;
    let posted = match hub.outbox.post_confirmed(message.clone()).await {
        Ok(p) => p,
        Err(e) => {
            let why = Said::new("gw-not-queued").arg_said("reason", e.said());
            return error(StatusCode::SERVICE_UNAVAILABLE, &why, lang);
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), posted).await {
        Ok(Ok(Ok(()))) => (StatusCode::CREATED, Json(message)).into_response(),
        Ok(Ok(Err(e))) => error(status_of(&e), &with_detail("gw-broker-refused", e), lang),
        Ok(Err(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &Said::new("gw-closing"),
            lang,
        ),
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
    /// A position in the broker's room (`older` in a previous answer).
    cursor: Option<String>,
    q: Option<String>,
}

pub async fn messages(
    State(hub): State<Arc<Hub>>,
    Extension(client): Extension<Client>,
    Extension(lang): Extension<Lang>,
    headers: HeaderMap,
    uri: Uri,
    Path(room): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    if let Err(e) = check_room(&room) {
        return error(StatusCode::BAD_REQUEST, &e.said(), lang);
    }
    let token = query_token(uri.query());
    if let Err(refusal) = may_read(&hub, &client, &headers, token.as_deref(), Some(&room)) {
        return refused(&refusal, lang);
    }
    let limit = page.limit.unwrap_or(charla_chat::DEFAULT_HISTORY);
    if limit == 0 || limit > MAX_PAGE {
        let why = Said::new("gw-page-limit").arg("max", MAX_PAGE);
        return error(StatusCode::BAD_REQUEST, &why, lang);
    }
    if let Some(before) = &page.before {
        // Every id charla gives a message is a ULID: anything else names no message, and is
        // refused before a single read (it used to cost a scan of 10 000 messages).
        if before.parse::<ulid::Ulid>().is_err() {
            let why = Said::new("gw-not-an-id").arg("id", charla_core::visible(before));
            return error(StatusCode::BAD_REQUEST, &why, lang);
        }
    }
    if let Some(archive) = hub.archive() {
        // The archive has every page and can search; the broker's own history is used for
        // the newest page when it has one (it is never behind live delivery).
        let broker_first = page.q.is_none()
            && page.before.is_none()
            && page.cursor.is_none()
            && hub.broker_keeps_history();
        if !broker_first {
            return match archive
                .page(&room, limit, page.before.as_deref(), page.q.as_deref())
                .await
            {
                Ok(messages) => Json(json!({"room": room, "messages": messages})).into_response(),
                Err(charla_archive::ArchiveError::InvalidArgument(e)) => error(
                    StatusCode::BAD_REQUEST,
                    &with_detail("gw-bad-page", e),
                    lang,
                ),
                Err(e) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &with_detail("gw-archive-away", e),
                    lang,
                ),
            };
        }
    } else if page.q.is_some() {
        let why = Said::new("gw-search-needs-archive");
        return error(StatusCode::NOT_IMPLEMENTED, &why, lang);
    }
    if !hub.broker_keeps_history() {
        return Json(json!({"room": room, "messages": [], "older": null})).into_response();
    }
    let broker = match broker_now(&hub, lang).await {
        Ok(b) => b,
        Err(away) => return away,
    };
    let read = broker_page(broker.as_ref(), &room, limit, &page);
    match tokio::time::timeout(BROKER_CALL, read).await {
        Ok(Ok((messages, older))) => {
            Json(json!({"room": room, "messages": messages, "older": older})).into_response()
        }
        Ok(Err(e)) if matches!(e, BrokerError::InvalidArgument(_)) => error(
            StatusCode::BAD_REQUEST,
            &with_detail("gw-bad-page", e),
            lang,
        ),
        Ok(Err(e)) if e.is_transient() => unavailable(&e.to_string(), lang),
        Ok(Err(e)) => error(
            StatusCode::BAD_GATEWAY,
            &with_detail("gw-broker-refused", e),
            lang,
        ),
        Err(_) => unavailable(&Said::new("gw-broker-slow").in_lang(lang), lang),
    }
}

/// Longest a request waits for the broker before it is answered 503.
const BROKER_CALL: Duration = Duration::from_secs(3);

/// The broker, at once: while the gateway is reconnecting a request is answered 503 with
/// `Retry-After` now, instead of waiting (it used to hang until the broker came back).
#[allow(clippy::result_large_err)] // the refusal is the response itself
async fn broker_now(hub: &Hub, lang: Lang) -> Result<Arc<dyn charla_core::Broker>, Response> {
    if let Status::Reconnecting { reason } = &*hub.link.status().borrow() {
        return Err(unavailable(reason, lang));
    }
    match tokio::time::timeout(BROKER_CALL, hub.link.broker()).await {
        Ok((_, broker)) => Ok(broker),
        Err(_) => Err(unavailable(
            &Said::new("gw-broker-slow").in_lang(lang),
            lang,
        )),
    }
}

/// A page of history from the broker: the last `limit`, the `limit` before the message
/// `before`, or before the position `cursor` (the `older` of a previous page: one read, no
/// search). Also the cursor of the page before it, `None` at the room's beginning.
async fn broker_page(
    broker: &dyn charla_core::Broker,
    room: &str,
    limit: usize,
    page: &Page,
) -> Result<(Vec<Message>, Option<String>), BrokerError> {
    let from = match (&page.cursor, &page.before) {
        (Some(cursor), _) => Some(cursor.clone()),
        (None, None) => None,
        (None, Some(id)) => Some(find_offset(broker, room, id).await?),
    };
    // One more than asked: whether there is anything older says whether to offer `older`.
    let mut read = broker.history(room, limit + 1, from.as_deref()).await?;
    let older = if read.len() > limit {
        read.remove(0);
        read.first().and_then(|d| d.offset.clone())
    } else {
        None
    };
    Ok((read.into_iter().map(|d| d.message).collect(), older))
}

/// The broker's offset of the message `id`, among the room's last [`BEFORE_SCAN`].
async fn find_offset(
    broker: &dyn charla_core::Broker,
    room: &str,
    id: &str,
) -> Result<String, BrokerError> {
    let mut cursor: Option<String> = None;
    let mut scanned = 0;
    loop {
        let page = broker.history(room, SCAN_PAGE, cursor.as_deref()).await?;
        if let Some(d) = page.iter().find(|d| d.message.id == id) {
            return d.offset.clone().ok_or_else(|| {
                BrokerError::InvalidArgument(format!("before={id}: the broker cannot page by it"))
            });
        }
        scanned += page.len();
        let Some(first) = page.first().filter(|_| page.len() == SCAN_PAGE) else {
            // Fewer than asked: the room's first message was read.
            return Err(BrokerError::InvalidArgument(format!(
                "before={id}: no such message in room '{room}'"
            )));
        };
        if scanned >= BEFORE_SCAN {
            return Err(BrokerError::InvalidArgument(format!(
                "before={id}: not among the room's last {BEFORE_SCAN} messages (page with \
                 `cursor`, the `older` of the previous page, instead)"
            )));
        }
        cursor = first.offset.clone();
    }
}

/// Most rooms `/api/rooms` lists: those with people first, then by name. Every page asks
/// for the list every few seconds; at 10 000 rooms it was 317 KB and 12.7 ms per call.
pub const MAX_LISTED_ROOMS: usize = 200;

/// How long the broker's list of rooms is reused before it is asked again (one SCAN for
/// every page's poll in that time, not one each).
const ROOM_LIST_TTL: Duration = Duration::from_secs(5);

pub async fn rooms(
    State(hub): State<Arc<Hub>>,
    Extension(client): Extension<Client>,
    Extension(lang): Extension<Lang>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let token = query_token(uri.query());
    if let Err(refusal) = may_read(&hub, &client, &headers, token.as_deref(), None) {
        return refused(&refusal, lang);
    }
    let mut rooms: BTreeMap<String, usize> = hub.presence.rooms().into_iter().collect();
    for room in hub.open_rooms() {
        rooms.entry(room).or_insert(0);
    }
    let mut stored_error = None;
    if hub.capabilities.list_rooms {
        match stored_rooms(&hub).await {
            Ok(stored) => {
                for room in stored.iter() {
                    rooms.entry(room.clone()).or_insert(0);
                }
            }
            Err(e) => stored_error = Some(e),
        }
    }
    let total = rooms.len();
    let mut list: Vec<(String, usize)> = rooms.into_iter().collect();
    // People first (most first), then by name; the list is cut after that order.
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list.truncate(MAX_LISTED_ROOMS);
    let list: Vec<_> = list
        .into_iter()
        .map(|(room, online)| json!({"room": room, "online": online}))
        .collect();
    Json(json!({ "rooms": list, "total": total, "stored": stored_error.is_none() })).into_response()
}

/// The rooms the broker keeps, from a copy at most [`ROOM_LIST_TTL`] old; while the broker
/// is away, the last copy (or an error at once).
async fn stored_rooms(hub: &Hub) -> Result<Arc<Vec<String>>, String> {
    let fresh = async {
        // Only logged (the list is served from the last copy): in the log's English.
        let broker = broker_now(hub, Lang::En)
            .await
            .map_err(|_| "the broker is away".to_owned())?;
        match tokio::time::timeout(BROKER_CALL, broker.rooms()).await {
            Ok(Ok(list)) => Ok(list),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the broker did not answer in time".to_owned()),
        }
    };
    // One refresh at a time: the pages polling meanwhile wait for it, not for one each.
    let mut cached = hub.room_list.lock().await;
    if let Some((at, list)) = &*cached {
        if at.elapsed() < ROOM_LIST_TTL {
            return Ok(list.clone());
        }
    }
    match fresh.await {
        Ok(list) => {
            let list: Vec<String> = list.into_iter().filter(|r| check_room(r).is_ok()).collect();
            let list = Arc::new(list);
            *cached = Some((std::time::Instant::now(), list.clone()));
            Ok(list)
        }
        Err(e) => {
            tracing::warn!("listing the broker's rooms: {e}");
            match &*cached {
                Some((_, list)) => Ok(list.clone()),
                None => Err(e),
            }
        }
    }
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
