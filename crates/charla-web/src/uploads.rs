//! The workshop's exercise 2 through the gateway (`charla web --uploads DIR`): an API that
//! takes pictures, a task per picture for workers, and the uploader told when it is done.
//!
//! - `POST /api/rooms/{room}/uploads` (multipart: `usuario`, `file`) → `201 {"task", "file",
//!   "queue"}`: the picture is kept under a name the gateway makes up ([`crate::files`]), a
//!   task message referencing it (`Message::file`, the full path) goes to the upload room's
//!   queue (`--upload-room`, default `uploads`) for `charla work` to take, and "📎 name" is
//!   said in the chat room with the picture. Refused with the reason: not multipart or no
//!   file (`400`), over `--max-upload-bytes` (`413`), not a picture (`415`), and whatever
//!   refuses a post (auth, names, the posting rate, the broker away).
//! - The worker's completion notices (`charla work --notify`, broadcast on `<upload
//!   room>.done`) are read by [`relay`]: for an upload of this gateway's, it says in the chat
//!   room that the thumbnail is ready (with the thumbnail, `<ULID>.thumb.<ext>` beside the
//!   picture), or why the work failed. Everybody in the room sees it, the uploader's page too.
//! - `GET /uploads/{name}` serves the pictures and thumbnails, only under the gateway's own
//!   names, as images that cannot run anything (`nosniff`, a CSP that allows nothing).

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use charla_chat::check_room;
use charla_core::{Message, Mode, Subscription, TaskOutcome, TaskStatus};
use charla_i18n::{Lang, Said};
use serde_json::json;

use crate::caller::{api_poster, error};
use crate::client::Client;
use crate::files::{self, Waiting};
use crate::hub::Hub;
use crate::UploadConfig;

/// Who the gateway's own lines about uploads are from.
const SENDER: &str = "charla work";

/// Bytes of a name field read at most (a name is far shorter; the rest is refused).
const MAX_NAME_FIELD: usize = 1024;

/// How long publishing a task may take before the upload is refused.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the form carried.
struct Form {
    usuario: String,
    file_name: String,
    bytes: Vec<u8>,
}

#[allow(clippy::too_many_arguments)] // axum's extractors, one per part of the request
pub async fn post_upload(
    State(hub): State<Arc<Hub>>,
    Extension(client): Extension<Client>,
    Extension(lang): Extension<Lang>,
    headers: HeaderMap,
    uri: Uri,
    Path(room): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let Some(config) = hub.config.uploads.clone() else {
        return error(StatusCode::NOT_FOUND, &Said::new("gw-uploads-off"), lang);
    };
    let Ok(mut multipart) = multipart else {
        return error(StatusCode::BAD_REQUEST, &Said::new("gw-upload-form"), lang);
    };
    if let Err(e) = check_room(&room) {
        return error(StatusCode::BAD_REQUEST, &e.said(), lang);
    }
    let form = match read_form(&mut multipart, config.max_bytes).await {
        Ok(form) => form,
        Err((status, why)) => return error(status, &why, lang),
    };
    let Some(kind) = files::kind_of(&form.bytes) else {
        let why = Said::new("gw-upload-not-picture");
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &why, lang);
    };
    let author = match api_poster(&hub, &client, &headers, &uri, &room, &form.usuario, lang) {
        Ok(a) => a,
        Err(refusal) => return refusal,
    };
    let stored = match files::store(&config.dir, &form.bytes, kind).await {
        Ok(name) => name,
        Err(e) => {
            tracing::warn!("could not keep an upload in {}: {e}", config.dir.display());
            let why = Said::new("gw-upload-store").arg("reason", e.to_string());
            return error(StatusCode::INSUFFICIENT_STORAGE, &why, lang);
        }
    };
    let shown = files::shown_name(&form.file_name);
    let mut task = Message::new(author.name.clone(), shown.clone(), config.room.as_str());
    task.file = Some(config.dir.join(&stored).to_string_lossy().into_owned());
    if let Err(why) = publish_task(&hub, &config, &task).await {
        let _ = tokio::fs::remove_file(config.dir.join(&stored)).await;
        return error(StatusCode::SERVICE_UNAVAILABLE, &why, lang);
    }
    hub.waiting_uploads.add(
        task.id.clone(),
        Waiting {
            room: room.clone(),
            shown: shown.clone(),
            stored: stored.clone(),
        },
    );
    let mut said = Message::new(author.name, format!("📎 {shown}"), room);
    said.file = Some(stored.clone());
    said.verificado = author.verified;
    // The task is queued whatever happens to this line: not waited for.
    let _ = hub.outbox.post(said).await;
    let body = json!({"task": task.id, "file": stored, "queue": config.room});
    (StatusCode::CREATED, Json(body)).into_response()
}

/// The form's name and file, the file read chunk by chunk and refused past `max` bytes.
async fn read_form(multipart: &mut Multipart, max: usize) -> Result<Form, (StatusCode, Said)> {
    let bad_form = || (StatusCode::BAD_REQUEST, Said::new("gw-upload-form"));
    let mut form = Form {
        usuario: String::new(),
        file_name: String::new(),
        bytes: Vec::new(),
    };
    let mut has_file = false;
    while let Some(mut field) = multipart.next_field().await.map_err(|_| bad_form())? {
        let is_file = field.name() == Some("file");
        let cap = if is_file { max } else { MAX_NAME_FIELD };
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|_| bad_form())? {
            if bytes.len() + chunk.len() > cap {
                let why = match is_file {
                    true => Said::new("gw-upload-too-large").arg("max", max),
                    false => Said::new("gw-upload-form"),
                };
                return Err((StatusCode::PAYLOAD_TOO_LARGE, why));
            }
            bytes.extend_from_slice(&chunk);
        }
        if is_file {
            form.file_name = field.file_name().unwrap_or_default().to_owned();
            form.bytes = bytes;
            has_file = true;
        } else if field.name() == Some("usuario") {
            form.usuario = String::from_utf8(bytes).map_err(|_| bad_form())?;
        }
    }
    if !has_file {
        return Err((StatusCode::BAD_REQUEST, Said::new("gw-upload-no-file")));
    }
    Ok(form)
}

/// Puts the task in the upload room's queue, confirmed by the broker.
async fn publish_task(hub: &Hub, config: &UploadConfig, task: &Message) -> Result<(), Said> {
    let publish = async {
        let (_, broker) = hub.link.broker().await;
        let mut publisher = broker.publisher(Mode::Queue, &config.room).await?;
        publisher.publish(task).await
    };
    match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Said::new("gw-upload-not-queued").arg("reason", e.to_string())),
        Err(_) => Err(Said::new("gw-upload-not-queued")
            .arg("reason", format!("{} s", PUBLISH_TIMEOUT.as_secs()))),
    }
}

/// `GET /uploads/{name}`: a picture or thumbnail, by the gateway's own name only.
pub async fn file(State(hub): State<Arc<Hub>>, Path(name): Path<String>) -> Response {
    let (Some(config), Some(kind)) = (&hub.config.uploads, files::kind_of_name(&name)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !files::is_served_name(&name) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Ok(bytes) = tokio::fs::read(config.dir.join(&name)).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind.mime));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    // A name is never reused for other bytes.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400, immutable"),
    );
    response
}

/// Reads the workers' notices for as long as the gateway lives (subscribing again after the
/// broker went away), and says in the chat room how each of this gateway's uploads ended.
pub async fn relay(hub: Weak<Hub>) {
    loop {
        let Some((link, config)) = hub
            .upgrade()
            .and_then(|h| Some((h.link.clone(), h.config.uploads.clone()?)))
        else {
            return;
        };
        let (_, broker) = link.broker().await;
        let notices = charla_core::task::reply_room(&config.room);
        match broker
            .subscribe(Subscription::new(Mode::Broadcast, notices.as_str()))
            .await
        {
            Ok(mut sub) => loop {
                let d = match sub.recv().await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(room = %notices, "reading the workers' notices: {e}");
                        break;
                    }
                };
                let Some(hub) = hub.upgrade() else {
                    return;
                };
                let (Some(task), Some(outcome)) = (&d.message.correlation_id, &d.message.task)
                else {
                    continue;
                };
                if let Some(upload) = hub.waiting_uploads.take(task) {
                    say(&hub, &config, upload, outcome).await;
                }
            },
            Err(e) => tracing::warn!(room = %notices, "cannot read the workers' notices: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Says in the upload's room how its task ended: the thumbnail when one was made.
async fn say(hub: &Hub, config: &UploadConfig, upload: Waiting, outcome: &TaskOutcome) {
    let lang = config.lang;
    let shown = upload.shown.as_str();
    let (text, file) = match outcome.status {
        TaskStatus::Done => match files::thumbnail_of(&config.dir, &upload.stored) {
            Some(thumb) => (
                lang.tr("upload-thumb-ready", &[("file", &shown)]),
                Some(thumb),
            ),
            None => (lang.tr("upload-done", &[("file", &shown)]), None),
        },
        TaskStatus::Dead => {
            let why = outcome.reason.clone().unwrap_or_default();
            let detail = outcome.stderr.lines().next().unwrap_or("").to_owned();
            let args: [(&str, &dyn std::fmt::Display); 3] =
                [("file", &shown), ("why", &why), ("detail", &detail)];
            (lang.tr("upload-failed", &args), None)
        }
    };
    let mut m = Message::new(SENDER, text, upload.room);
    m.file = file;
    if let Err(e) = hub.outbox.post(m).await {
        tracing::warn!("could not say how an upload ended: {e}");
    }
}
