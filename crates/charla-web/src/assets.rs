//! The page, compiled into the binary: nothing to build or install to run `charla web`.
//!
//! The page speaks the visitor's language: `?lang=es|en`, else the browser's
//! `Accept-Language` (as every answer of the gateway: [`crate::language`]). Its texts are the catalogue's `page-…` messages (charla-i18n, the same
//! files as the terminal's): filled into the HTML here (`{{page-…}}`), and handed to the
//! script as JSON in the page and at `i18n.json?lang=` (for the language switch), so no text
//! of the page lives in the page's own files.

use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::Extension;
use charla_i18n::Lang;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// Headers every asset carries: the page runs only its own script (no inline script, no
/// other origin), so even a message that slipped into the page as markup could not run.
/// (The page's strings travel in a `<script type="application/json">` block, which is data:
/// a browser never runs it.)
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; object-src 'none'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// The page's strings in `lang`, as a JSON object (id → text, arguments left as `{$name}`).
fn strings(lang: Lang) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = lang
        .with_prefix("page-")
        .into_iter()
        .map(|(id, text)| (id.to_owned(), serde_json::Value::String(text)))
        .collect();
    serde_json::json!({ "lang": lang.code(), "strings": map })
}

/// Text for HTML (element content and quoted attributes).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page in `lang`: every `{{page-…}}` filled in, `{{lang}}` and `{{strings}}` too.
pub fn render(lang: Lang) -> String {
    let mut html = INDEX.replace("{{lang}}", lang.code());
    for (id, text) in lang.with_prefix("page-") {
        html = html.replace(&format!("{{{{{id}}}}}"), &escape(&text));
    }
    // `</` could end the data block early: JSON allows `<\/` for it.
    let json = strings(lang).to_string().replace("</", "<\\/");
    html.replace("{{strings}}", &json)
}

pub async fn index(Extension(lang): Extension<Lang>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Caches must keep one copy per language asked for.
            (header::VARY, "Accept-Language"),
            (header::CONTENT_LANGUAGE, lang.code()),
        ],
        render(lang),
    )
}

/// `GET i18n.json?lang=es`: the page's strings, for its language switch.
pub async fn page_strings(Extension(lang): Extension<Lang>) -> impl IntoResponse {
    (
        [
            (header::VARY, "Accept-Language"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Json(strings(lang)),
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCRIPT,
    )
}

pub async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        STYLE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_of_the_page_is_filled_in_both_languages() {
        for lang in Lang::ALL {
            let html = render(lang);
            assert!(
                !html.contains("{{"),
                "{lang}: unfilled {}",
                &html[html.find("{{").unwrap_or(0)..]
            );
            assert!(html.contains(&format!("<html lang=\"{}\"", lang.code())));
        }
        assert!(render(Lang::Es).contains("Mensajes anteriores"));
        assert!(render(Lang::En).contains("Older messages"));
    }

    /// Behind a reverse proxy at `/chat/` the page is `/chat/`: an address starting with `/`
    /// would leave the prefix (the stylesheet, the script, the API and the WebSocket alike).
    #[test]
    fn the_page_uses_relative_addresses_only() {
        for (file, text) in [
            ("index.html", INDEX),
            ("app.js", SCRIPT),
            ("style.css", STYLE),
        ] {
            for absolute in [
                "href=\"/",
                "src=\"/",
                "fetch(\"/",
                "\"/api",
                "\"/ws",
                "url(/",
                "\"/i18n",
            ] {
                assert!(!text.contains(absolute), "{file} has {absolute}");
            }
        }
    }
}
