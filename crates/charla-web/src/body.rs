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

pub async fn bounded(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let lang = crate::language::in_request(&request);
    let (parts, body) = request.into_parts();
    let max = max_body_bytes(&hub);
    let deadline = hub.config.header_timeout;
    let refuse = |status: StatusCode, why: Said| {
        // The connection is not reused: what is left of the body would be read as a request.
        let mut response = (status, Json(json!({"error": why.in_lang(lang)}))).into_response();
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        response
    };
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, max)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            Said::new("gw-body-too-large").arg("max", max),
        ),
        Err(_) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            Said::new("gw-body-late").arg("secs", deadline.as_secs()),
        ),
    }
}
