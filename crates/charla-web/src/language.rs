//! The language of each request: the one function that picks it ([`of`]), and the middleware
//! that puts it into every request's extensions ([`tag`]) for the guard, the handlers and the
//! page's socket alike.
//!
//! Why per request: one gateway serves pages in several languages at once, and each reason it
//! gives (a refused name, a post too fast, a closed socket) must be in the language of the page
//! or client that will read it. The page adds `lang=` to its `/ws` and `/api` addresses (its
//! language switch may differ from the browser's); a program that asks nothing gets English.

use axum::extract::Request;
use axum::http::{header, HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::Response;
use charla_i18n::Lang;

/// The language asked for: `?lang=` (read by hand: any other query, even a malformed one,
/// must not keep the page from loading), else `Accept-Language`, else English.
pub fn of(uri: &Uri, headers: &HeaderMap) -> Lang {
    let asked = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("lang="))
        .and_then(|l| l.parse().ok());
    if let Some(lang) = asked {
        return lang;
    }
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(Lang::from_accept_language)
        .unwrap_or(Lang::En)
}

/// The language [`tag`] put into `request` (English if none).
pub fn in_request(request: &Request) -> Lang {
    request
        .extensions()
        .get::<Lang>()
        .copied()
        .unwrap_or_default()
}

/// The middleware: the request's [`Lang`] in its extensions, for everything after it.
pub async fn tag(mut request: Request, next: Next) -> Response {
    let lang = of(request.uri(), request.headers());
    request.extensions_mut().insert(lang);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_is_the_querys_then_the_browsers() {
        let uri = |u: &str| u.parse::<Uri>().expect("uri");
        let mut headers = HeaderMap::new();
        assert_eq!(of(&uri("/"), &headers), Lang::En);
        assert_eq!(of(&uri("/ws?room=a&lang=es"), &headers), Lang::Es);
        headers.insert(
            header::ACCEPT_LANGUAGE,
            "es-ES,es;q=0.9".parse().expect("value"),
        );
        assert_eq!(of(&uri("/?room=a%ZZ&name=x"), &headers), Lang::Es);
        assert_eq!(of(&uri("/?room=a&lang=en"), &headers), Lang::En);
        assert_eq!(of(&uri("/?lang=xx"), &headers), Lang::Es);
    }

    /// Every catalogue id the gateway's sources name (`"gw-…"`, `"rule-…"`) is in both
    /// catalogues: a missing one would reach a page as its bare id.
    #[test]
    fn every_reason_the_gateway_gives_is_in_both_catalogues() {
        let sources = [
            include_str!("api.rs"),
            include_str!("auth.rs"),
            include_str!("body.rs"),
            include_str!("caller.rs"),
            include_str!("guard.rs"),
            include_str!("hub.rs"),
            include_str!("ws.rs"),
        ];
        let mut seen = 0;
        for source in sources {
            for piece in source.split('"').skip(1).step_by(2) {
                let is_id = piece.starts_with("gw-")
                    && piece.chars().all(|c| c.is_ascii_lowercase() || c == '-');
                if is_id {
                    seen += 1;
                    for lang in Lang::ALL {
                        assert!(lang.has(piece), "{lang} lacks {piece}");
                    }
                }
            }
        }
        assert!(seen > 30, "only {seen} ids found");
    }
}
