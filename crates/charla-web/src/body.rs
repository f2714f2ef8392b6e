//! A request's body, read whole within a deadline and a size before any handler sees it.
//!
//! hyper's header deadline ([`crate::conn`]) ends when the headers are in; a client that then
//! trickles its body a byte at a time (or announces a length and sends nothing) held the
//! connection, and a slot of its address's count, for as long as it liked. Here the body
//! must arrive within the same deadline as the headers, and be no larger than a post can
//! be: `408` or `413` otherwise, with the reason.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use charla_i18n::Said;
use serde_json::json;

use crate::hub::Hub;

/// The largest body a request may have: a post of the longest message, escaped, and its name.
pub fn max_body_bytes(hub: &Hub) -> usize {
    hub.config.limits.max_text_bytes * 6 + 1024
}

/// Room for an upload's form around its file (boundaries, headers, the name field).
const FORM_OVERHEAD: usize = 64 * 1024;

/// How long an upload's body may take to arrive (a picture from a phone on a slow network).
const UPLOAD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether a request is an upload (`--uploads`).
fn is_upload(hub: &Hub, path: &str) -> bool {
    hub.config.uploads.is_some() && path.starts_with("/api/rooms/") && path.ends_with("/uploads")
}

/// The size and deadline of a request's body, and what is said past that size: an upload's
/// (`--uploads`: the file's limit), or any other's.
fn body_bounds(hub: &Hub, path: &str) -> (usize, std::time::Duration, Said) {
    match &hub.config.uploads {
        Some(up) if is_upload(hub, path) => (
            up.max_bytes + FORM_OVERHEAD,
            hub.config.header_timeout.max(UPLOAD_DEADLINE),
            Said::new("gw-upload-too-large").arg("max", up.max_bytes),
        ),
        _ => {
            let max = max_body_bytes(hub);
            let too_large = Said::new("gw-body-too-large").arg("max", max);
            (max, hub.config.header_timeout, too_large)
        }
    }
}

pub async fn bounded(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let lang = crate::language::in_request(&request);
    let (parts, body) = request.into_parts();
    let (max, deadline, too_large) = body_bounds(&hub, parts.uri.path());
    let refuse = |status: StatusCode, why: Said| {
        // The connection is not reused: what is left of the body would be read as a request.
        let mut response = (status, Json(json!({"error": why.in_lang(lang)}))).into_response();
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        response
    };
    // An upload's body is held whole while it arrives and is kept: at most this many at once
    // (memory about that many times --max-upload-bytes, whatever the clients do); one more is
    // told to come back, not queued.
    let _slot = match is_upload(&hub, parts.uri.path()) {
        true => match hub.upload_slots.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => {
                let why = Said::new("gw-uploads-busy").arg("count", crate::UPLOADS_AT_ONCE);
                let mut response = refuse(StatusCode::SERVICE_UNAVAILABLE, why);
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("2"),
                );
                return response;
            }
        },
        false => None,
    };
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, max)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => refuse(StatusCode::PAYLOAD_TOO_LARGE, too_large),
        Err(_) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            Said::new("gw-body-late").arg("secs", deadline.as_secs()),
        ),
    }
}
