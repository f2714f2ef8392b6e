//! Which sites may use the gateway: the `Host` a request names and the `Origin` of a page
//! that opens a WebSocket or posts.
//!
//! **Origin** (cross-site WebSocket hijacking, cross-site posts): a page on another site can
//! make its visitor's browser open `ws://gateway/ws` or POST to the API; the browser says which
//! site asked, in `Origin` (and `Sec-Fetch-Site`). A WebSocket upgrade or a state-changing
//! request (anything but GET, HEAD, OPTIONS) is refused with 403 when
//! - its `Origin` is neither the gateway itself (the same `host:port` as the request's `Host`,
//!   whatever the scheme: a TLS proxy in front changes it) nor one of `--allowed-origin`
//!   (`Origin: null`, from sandboxed frames and files, is foreign too), or
//! - it says `Sec-Fetch-Site: cross-site` and its `Origin` is not one of `--allowed-origin`.
//!
//! Requests without `Origin` are let through: browsers always send it on these requests, so
//! its absence means a program (curl, a bot, the CLI), which no page can drive.
//!
//! **Host** (DNS rebinding): a page on `evil.example` whose name is made to resolve to the
//! gateway's address reaches the gateway as same-origin, with `Host: evil.example`. So only
//! names the gateway knows are served (403 otherwise), with any port:
//! - on a loopback bind (127.0.0.1, ::1, the default): loopback addresses (`127.x.x.x`, `[::1]`)
//!   and `localhost` (`*.localhost`);
//! - on any other bind: those, any IP address (a literal address cannot be rebound), the
//!   machine's host name (and `NAME.local`);
//! - and always the names given with `--allowed-host` (the public name behind a reverse
//!   proxy); `--allowed-host '*'` turns the check off.
//!
//! A request without `Host` (HTTP/1.0) is let through: browsers always send it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use charla_i18n::{Lang, Said};
use serde_json::json;

/// What the gateway serves: built once from its bind address and flags.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The bind is loopback: only loopback names are served (besides `hosts`).
    loopback_bind: bool,
    /// Host names served besides the rule of the bind (lowercase, no port).
    hosts: Vec<String>,
    any_host: bool,
    /// Origins allowed besides the gateway's own (`scheme://host[:port]`, lowercase).
    origins: Vec<String>,
    any_origin: bool,
}

impl Guard {
    /// `allowed_hosts`: names (a port, if given, is ignored) or `*`; `allowed_origins`: URLs
    /// (`https://chat.example`, a path is ignored) or `*`.
    pub fn new(bind: SocketAddr, allowed_hosts: &[String], allowed_origins: &[String]) -> Guard {
        let loopback_bind = bind.ip().is_loopback();
        let mut hosts: Vec<String> = allowed_hosts
            .iter()
            .filter(|h| h.as_str() != "*")
            .map(|h| host_name(h.trim()))
            .collect();
        if !loopback_bind {
            if let Some(name) = machine_name() {
                let name = name.to_ascii_lowercase();
                if !name.contains('.') {
                    hosts.push(format!("{name}.local"));
                }
                hosts.push(name);
            }
        }
        Guard {
            loopback_bind,
            hosts,
            any_host: allowed_hosts.iter().any(|h| h == "*"),
            origins: allowed_origins
                .iter()
                .filter(|o| o.as_str() != "*")
                .map(|o| origin_of(o.trim()))
                .collect(),
            any_origin: allowed_origins.iter().any(|o| o == "*"),
        }
    }

    /// Whether a request naming `host` (a `Host` header's value) is served.
    pub fn host_allowed(&self, host: &str) -> bool {
        if self.any_host {
            return true;
        }
        let name = host_name(host);
        let ip = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        let loopback = match ip {
            Some(ip) => ip.is_loopback(),
            None => name == "localhost" || name.ends_with(".localhost"),
        };
        loopback || (!self.loopback_bind && ip.is_some()) || self.hosts.contains(&name)
    }

    /// Why a WebSocket upgrade or a state-changing request is refused, if it is.
    pub fn refuse_origin(&self, headers: &HeaderMap) -> Option<Said> {
        let origin = headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or("null"));
        let listed =
            origin.is_some_and(|o| self.any_origin || self.origins.contains(&origin_of(o)));
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        if cross_site && !listed {
            return Some(Said::new("gw-origin-cross-site").arg("origin", origin.unwrap_or("?")));
        }
        let origin = origin?;
        if listed {
            return None;
        }
        let own = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|host| authority(&origin_of(origin)) == host.to_ascii_lowercase());
        if own {
            return None;
        }
        Some(Said::new("gw-origin").arg("origin", origin))
    }
}

/// The middleware: the Host rule for every request, the Origin rule for WebSocket upgrades
/// and state-changing requests.
pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let lang = crate::language::in_request(&request);
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("?").to_owned())
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    if let Some(host) = host {
        if !guard.host_allowed(&host) {
            tracing::debug!(%host, "refused: a host name this gateway does not serve");
            return refused(&Said::new("gw-host").arg("host", host), lang);
        }
    }
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let upgrade = headers.contains_key(header::UPGRADE);
    if changes_state || upgrade {
        if let Some(why) = guard.refuse_origin(headers) {
            tracing::debug!(path = %request.uri().path(), "refused: {why}");
            return refused(&why, lang);
        }
    }
    next.run(request).await
}

fn refused(why: &Said, lang: Lang) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({ "error": why.in_lang(lang) })),
    )
        .into_response()
}

/// The name in a `Host` value or a bare name: lowercase, without the port or a final dot
/// (`[::1]:8080` → `[::1]`, `Chat.Example.:80` → `chat.example`).
fn host_name(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    let name = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => host[..=end].to_owned(),
            None => host,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_owned(),
            _ => host,
        }
    };
    name.trim_end_matches('.').to_owned()
}

/// An origin as compared: `scheme://host[:port]`, lowercase, without a path or a default port.
fn origin_of(url: &str) -> String {
    let url = url.to_ascii_lowercase();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url.as_str()));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = match (scheme, authority.rsplit_once(':')) {
        ("http", Some((host, "80"))) | ("https", Some((host, "443"))) => host,
        _ => authority,
    };
    format!("{scheme}://{authority}")
}

/// The `host[:port]` of an origin from [`origin_of`].
fn authority(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, a)| a)
}

/// This machine's host name.
fn machine_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn hosts_on_a_loopback_bind() {
        let g = Guard::new("127.0.0.1:8080".parse().unwrap(), &[], &[]);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "127.0.0.2",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "192.168.1.5:8080",
            "localhost.evil.example",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
        let g = Guard::new(
            "127.0.0.1:8080".parse().unwrap(),
            &["Chat.Example".into()],
            &[],
        );
        assert!(g.host_allowed("chat.example:443"));
        assert!(!g.host_allowed("other.example"));
    }

    #[test]
    fn hosts_on_another_bind() {
        let g = Guard::new("0.0.0.0:8080".parse().unwrap(), &[], &[]);
        assert!(g.host_allowed("192.168.1.5:8080"));
        assert!(g.host_allowed("[fe80::1]:8080"));
        assert!(!g.host_allowed("evil.example"));
        if let Some(name) = machine_name() {
            assert!(g.host_allowed(&format!("{name}:8080")), "{name}");
        }
        assert!(Guard::new("0.0.0.0:1".parse().unwrap(), &["*".into()], &[]).host_allowed("x.y"));
    }

    #[test]
    fn origins() {
        let g = Guard::new(
            "127.0.0.1:8080".parse().unwrap(),
            &[],
            &["https://Chat.Example/".into()],
        );
        let own = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert_eq!(g.refuse_origin(&own), None);
        let none = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(g.refuse_origin(&none), None);
        let listed = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://chat.example"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert_eq!(g.refuse_origin(&listed), None);
        for bad in [
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:9999"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
        ] {
            assert!(g.refuse_origin(&bad).is_some(), "{bad:?}");
        }
    }
}
