//! Who each request is from, said once for the handlers: the middleware that works out the
//! client ([`crate::client`]: its address, through a trusted proxy) and holds `GET /api/…` to
//! the client's read rate, and what a page or a post needs before it may speak in a room
//! ([`admit`]: authentication, the room, the name, the client's posting rate).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use charla_i18n::{Lang, Said};
use serde_json::json;

use crate::auth::{NameHold, Refusal};
use crate::client::{client_ip, retry_after, Client, ClientKey};
use crate::hub::Hub;

/// The middleware: a [`Client`] in every request's extensions, and `GET /api/…` counted
/// against the client's read rate (`429` with `Retry-After` past it). The page, its assets
/// and `/healthz` are not counted; the WebSocket is bounded by the connection cap instead.
pub async fn identify(State(hub): State<Arc<Hub>>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let trusted = &hub.config.trusted_proxies;
    let client = Client {
        ip: client_ip(peer, request.headers(), trusted),
        via_trusted_proxy: trusted.iter().any(|c| c.contains(peer)),
    };
    if request.method() == Method::GET && request.uri().path().starts_with("/api/") {
        let token = query_token(request.uri().query());
        let key = reader(&hub, &client, request.headers(), token.as_deref());
        if let Err(wait) = hub.reads.take(&key) {
            let why = Said::new("gw-too-many-reads").arg("rate", hub.reads.rate());
            return too_fast(wait, &why, crate::language::in_request(&request));
        }
    }
    request.extensions_mut().insert(client);
    next.run(request).await
}

/// Who a read is counted against: the identity it proves, else its address.
fn reader(hub: &Hub, client: &Client, headers: &HeaderMap, token: Option<&str>) -> ClientKey {
    let max = hub.config.limits.max_name_chars;
    match hub.config.auth.admit(client, headers, token, None, max) {
        Ok(Some(identity)) => ClientKey::Identity(identity.name),
        _ => ClientKey::of_ip(client.ip),
    }
}

/// `token=` of a query string.
pub fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode(v))
}

/// `%XX` and `+` decoded (a token or password typed in a URL).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An API error: `status` and `{"error": why}` in `lang`.
pub fn error(status: StatusCode, why: &Said, lang: Lang) -> Response {
    (status, Json(json!({ "error": why.in_lang(lang) }))).into_response()
}

/// `429 Too Many Requests` with `Retry-After` and the reason in `lang`.
pub fn too_fast(wait: Duration, why: &Said, lang: Lang) -> Response {
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, why, lang);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after(wait)));
    response
}

/// A refusal as an answer: its status and `{"error"}` in `lang`.
pub fn refused(refusal: &Refusal, lang: Lang) -> Response {
    error(refusal.status(), refusal.reason(), lang)
}

/// Who speaks in a room: the name shown, who is counted for the posting rate, whether the
/// name was proved; for a page, its hold on the name while it lives.
pub struct Author {
    pub name: String,
    pub key: ClientKey,
    pub verified: bool,
    _hold: Option<NameHold>,
}

impl std::fmt::Debug for Author {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Author")
            .field("name", &self.name)
            .field("verified", &self.verified)
            .finish()
    }
}

/// How the asked-for name is treated when the client proves another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A page: the proved name replaces it (the hello tells the page its name).
    Page,
    /// The API: a different name is refused.
    Api,
}

/// What a page or a post must show before speaking in `room` as `asked`: a credential that
/// opens the room (per `--auth`), and a name nobody else holds there. A page (`Asked::Page`)
/// holds its name while the returned [`Author`] lives.
pub fn admit(
    hub: &Arc<Hub>,
    client: &Client,
    headers: &HeaderMap,
    token: Option<&str>,
    room: &str,
    asked: &str,
    from: Asked,
) -> Result<Author, Refusal> {
    let max = hub.config.limits.max_name_chars;
    if let Some(identity) = hub
        .config
        .auth
        .admit(client, headers, token, Some(room), max)?
    {
        if from == Asked::Api && !asked.trim().is_empty() {
            let asked = charla_chat::check_name(asked, max)?;
            if asked != identity.name {
                return Err(Refusal::Forbidden(
                    Said::new("gw-not-your-name")
                        .arg("name", &identity.name)
                        .arg("asked", asked),
                ));
            }
        }
        return Ok(Author {
            key: ClientKey::Identity(identity.name.clone()),
            name: identity.name,
            verified: true,
            _hold: None,
        });
    }
    let name = charla_chat::check_name(asked, max)?;
    let key = ClientKey::of_ip(client.ip);
    // A lookup, not `online(room)`: that copies every name in the room, at each join.
    let online = hub.presence.is_online(room, &name);
    let hold = match from {
        Asked::Page => Some(hub.names.hold(room, &name, &key, online)?),
        Asked::Api => {
            hub.names.check(room, &name, &key, online)?;
            None
        }
    };
    Ok(Author {
        name,
        key,
        verified: false,
        _hold: hold,
    })
}

/// Whether `client` may read `room` (`None`: the room list), per `--auth`.
pub fn may_read(
    hub: &Hub,
    client: &Client,
    headers: &HeaderMap,
    token: Option<&str>,
    room: Option<&str>,
) -> Result<(), Refusal> {
    let max = hub.config.limits.max_name_chars;
    hub.config
        .auth
        .admit(client, headers, token, room, max)
        .map(|_| ())
}

/// Who posts through the API (a message, an upload) in `room` as `asked`: admitted (the
/// credential, the name), within the client's posting rate, and the broker there to take it
/// now; otherwise the answer that says why not.
#[allow(clippy::result_large_err)] // the refusal is the response itself
pub fn api_poster(
    hub: &Arc<Hub>,
    client: &Client,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    room: &str,
    asked: &str,
    lang: Lang,
) -> Result<Author, Response> {
    let token = query_token(uri.query());
    let author = admit(
        hub,
        client,
        headers,
        token.as_deref(),
        room,
        asked,
        Asked::Api,
    )
    .map_err(|refusal| refused(&refusal, lang))?;
    post_allowed(hub, &author).map_err(|(wait, why)| too_fast(wait, &why, lang))?;
    if let charla_chat::Status::Reconnecting { reason } = &*hub.link.status().borrow() {
        // Not queued in this process's memory: refused now, so the client knows to try again
        // (an accepted post that died with the gateway would be lost).
        return Err(unavailable(reason, lang));
    }
    Ok(author)
}

/// What a client is told to wait before asking again while the broker is away.
const RETRY_AFTER_SECS: u64 = 2;

/// `503` with `Retry-After`: the broker is away, ask again soon. `reason`: the link's or the
/// broker's own words, as technical detail.
pub fn unavailable(reason: &str, lang: Lang) -> Response {
    let why = Said::new("gw-broker-away").arg("detail", reason);
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, &why, lang);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// Take one post from `author`'s bucket (shared by all the client's pages and its API
/// posts); the refusal says how long to wait.
pub fn post_allowed(hub: &Hub, author: &Author) -> Result<(), (Duration, Said)> {
    hub.posts.take(&author.key).map_err(|wait| {
        let why = Said::new("gw-too-fast")
            .arg("rate", hub.posts.rate())
            .arg("wait", format!("{:.1}", wait.as_secs_f64()));
        (wait, why)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_the_query() {
        assert_eq!(
            query_token(Some("room=a&token=x%2By+z")).as_deref(),
            Some("x+y z")
        );
        assert_eq!(query_token(Some("token=%zz%")).as_deref(), Some("%zz%"));
        assert_eq!(query_token(Some("room=a")), None);
        assert_eq!(query_token(None), None);
    }
}
