//! The language charla speaks: [`Lang`], how it is chosen (flag, locale, a browser's
//! `Accept-Language`), and the lookup into its catalogue ([`Lang::tr`]).
//!
//! The Spanish lines of the workshop seed are kept character for character
//! (`📤 Enviado: [Juan] Hola`, `📥 Recibido: [Juan] Hola (14:30:25)`), so a class that
//! follows the workshop sees what the handout shows: they have methods of their own here.

use std::fmt::Display;
use std::str::FromStr;

use crate::catalogue::CATALOGUES;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Es,
}

impl FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("es") {
            Ok(Lang::Es)
        } else if lower.starts_with("en") || lower == "c" || lower == "posix" {
            Ok(Lang::En)
        } else {
            Err(format!(
                "unknown language '{s}': expected en or es / idioma desconocido '{s}': en o es"
            ))
        }
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl Lang {
    /// Every language, in catalogue order.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Es];

    /// From the usual locale variables (`LC_ALL`, `LC_MESSAGES`, `LANG`): Spanish when the
    /// first one set starts with `es`, English otherwise.
    pub fn from_locale() -> Lang {
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| !v.is_empty())
            .map(|v| {
                if v.to_ascii_lowercase().starts_with("es") {
                    Lang::Es
                } else {
                    Lang::En
                }
            })
            .unwrap_or(Lang::En)
    }

    /// The language a browser asks for in `Accept-Language` (`es-ES,es;q=0.9,en;q=0.8`): the
    /// one of ours with the highest weight, English when it names neither.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim();
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let Ok(lang) = tag.parse::<Lang>() else {
                continue;
            };
            // Ties keep the first named, as the header's order is the user's preference.
            if weight > 0.0 && best.is_none_or(|(w, _)| weight > w) {
                best = Some((weight, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::En)
    }

    /// `en` or `es`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
        }
    }

    pub fn es(self) -> bool {
        self == Lang::Es
    }

    fn index(self) -> usize {
        match self {
            Lang::En => 0,
            Lang::Es => 1,
        }
    }

    /// The message `id` in this language with `args` (`{ $name }` in the catalogue) filled
    /// in. A message missing from this language falls back to English, then to the id itself
    /// (the catalogue tests keep both files complete).
    pub fn tr(self, id: &str, args: &[(&str, &dyn Display)]) -> String {
        CATALOGUES[self.index()]
            .format(id, args)
            .or_else(|| CATALOGUES[Lang::En.index()].format(id, args))
            .unwrap_or_else(|| id.to_owned())
    }

    /// Whether this language's catalogue itself has `id` (no fallback).
    pub fn has(self, id: &str) -> bool {
        CATALOGUES[self.index()].has(id)
    }

    /// Every message id of this language's catalogue, in file order.
    pub fn ids(self) -> Vec<&'static str> {
        CATALOGUES[self.index()].ids().collect()
    }

    /// The messages whose id starts with `prefix`, as (id, text) with their arguments left as
    /// `{$name}`: what the web page takes (it fills the arguments in itself).
    pub fn with_prefix(self, prefix: &str) -> Vec<(&'static str, String)> {
        CATALOGUES[self.index()]
            .ids()
            .filter(|id| id.starts_with(prefix))
            .map(|id| (id, self.tr(id, &[])))
            .collect()
    }

    pub fn sent(self, usuario: &str, mensaje: &str) -> String {
        self.tr("sent", &[("name", &usuario), ("text", &mensaje)])
    }

    pub fn received(self, usuario: &str, mensaje: &str, hora: &str) -> String {
        self.tr(
            "received",
            &[("name", &usuario), ("text", &mensaje), ("time", &hora)],
        )
    }

    pub fn connected(self, product: &str, version: &str, address: &str) -> String {
        self.tr(
            "connected",
            &[
                ("product", &product),
                ("version", &version),
                ("address", &address),
            ],
        )
    }

    pub fn connect_error(self, reason: &str) -> String {
        self.tr("connect-error", &[("reason", &reason)])
    }

    pub fn sender_banner(self) -> String {
        self.tr("sender-banner", &[])
    }

    pub fn listener_banner(self) -> String {
        self.tr("listener-banner", &[])
    }

    pub fn ask_name(self) -> String {
        self.tr("ask-name", &[])
    }

    pub fn hello(self, name: &str) -> String {
        self.tr("hello", &[("name", &name)])
    }

    pub fn bye(self) -> String {
        self.tr("bye", &[])
    }

    pub fn listening(self, room: &str, mode: &str) -> String {
        self.tr("listening", &[("room", &room), ("mode", &mode)])
    }

    pub fn exiting(self, count: u64) -> String {
        self.tr("exiting", &[("count", &count)])
    }

    pub fn sent_total(self, count: u64) -> String {
        self.tr("sent-total", &[("count", &count)])
    }

    pub fn reconnecting(self, reason: &str, secs: f64) -> String {
        let secs = format!("{secs:.1}");
        self.tr("reconnecting", &[("reason", &reason), ("secs", &secs)])
    }

    pub fn error_line(self, reason: &str) -> String {
        self.tr("error-line", &[("reason", &reason)])
    }
}

/// The seed's separator lines.
pub const RULE_DOUBLE: &str = "========================================";
pub const RULE_SINGLE: &str = "----------------------------------------";
