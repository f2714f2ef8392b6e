//! English and Spanish output. The Spanish lines are the workshop seed's, character for
//! character (`📤 Enviado: [Juan] Hola`, `📥 Recibido: [Juan] Hola (14:30:25)`), so a class
//! that follows the workshop sees what the handout shows.

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
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
            Err(format!("unknown language '{s}': expected en or es"))
        }
    }
}

impl Lang {
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

    pub fn es(self) -> bool {
        self == Lang::Es
    }

    pub fn sent(self, usuario: &str, mensaje: &str) -> String {
        match self {
            Lang::Es => format!("📤 Enviado: [{usuario}] {mensaje}"),
            Lang::En => format!("📤 Sent: [{usuario}] {mensaje}"),
        }
    }

    pub fn received(self, usuario: &str, mensaje: &str, hora: &str) -> String {
        match self {
            Lang::Es => format!("📥 Recibido: [{usuario}] {mensaje} ({hora})"),
            Lang::En => format!("📥 Received: [{usuario}] {mensaje} ({hora})"),
        }
    }

    pub fn connected(self, product: &str, version: &str, address: &str) -> String {
        match self {
            Lang::Es => format!("✅ Conectado al broker {product} {version} en {address}"),
            Lang::En => format!("✅ Connected to the broker: {product} {version} at {address}"),
        }
    }

    pub fn connect_error(self, reason: &str) -> String {
        match self {
            Lang::Es => format!("❌ Error conectando al broker: {reason}"),
            Lang::En => format!("❌ Cannot connect to the broker: {reason}"),
        }
    }

    pub fn sender_banner(self) -> &'static str {
        match self {
            Lang::Es => "📤 EMISOR DE MENSAJES",
            Lang::En => "📤 MESSAGE SENDER",
        }
    }

    pub fn listener_banner(self) -> &'static str {
        match self {
            Lang::Es => "📥 RECEPTOR DE MENSAJES",
            Lang::En => "📥 MESSAGE RECEIVER",
        }
    }

    pub fn ask_name(self) -> &'static str {
        match self {
            Lang::Es => "¿Cuál es tu nombre? ",
            Lang::En => "What is your name? ",
        }
    }

    pub fn hello(self, name: &str) -> String {
        match self {
            Lang::Es => format!("¡Hola {name}! Escribe mensajes (o 'salir' para terminar)"),
            Lang::En => format!("Hello {name}! Type messages ('exit' or 'salir' to quit)"),
        }
    }

    pub fn bye(self) -> &'static str {
        match self {
            Lang::Es => "👋 ¡Hasta luego!",
            Lang::En => "👋 Bye!",
        }
    }

    pub fn listening(self, room: &str, mode: &str) -> String {
        match self {
            Lang::Es => format!("🔄 Escuchando mensajes... (sala '{room}', modo {mode})\nPresiona Ctrl+C para salir"),
            Lang::En => format!("🔄 Listening for messages... (room '{room}', {mode} mode)\nPress Ctrl+C to quit"),
        }
    }

    pub fn exiting(self, count: u64) -> String {
        match self {
            Lang::Es => format!("👋 Saliendo... Mensajes recibidos: {count}"),
            Lang::En => format!("👋 Exiting... Messages received: {count}"),
        }
    }

    pub fn sent_total(self, count: u64) -> String {
        match self {
            Lang::Es => format!("Mensajes enviados: {count}"),
            Lang::En => format!("Messages sent: {count}"),
        }
    }

    pub fn reconnecting(self, reason: &str, secs: f64) -> String {
        match self {
            Lang::Es => format!("⚠️  Se perdió el broker ({reason}); reintentando en {secs:.1} s"),
            Lang::En => format!("⚠️  Lost the broker ({reason}); retrying in {secs:.1} s"),
        }
    }

    pub fn error_line(self, reason: &str) -> String {
        format!("❌ Error: {reason}")
    }
}

/// The seed's separator lines.
pub const RULE_DOUBLE: &str = "========================================";
pub const RULE_SINGLE: &str = "----------------------------------------";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lines_in_spanish() {
        assert_eq!(
            Lang::Es.sent("Juan", "Hola María!"),
            "📤 Enviado: [Juan] Hola María!"
        );
        assert_eq!(
            Lang::Es.received("Juan", "Hola María!", "14:30:25"),
            "📥 Recibido: [Juan] Hola María! (14:30:25)"
        );
        assert_eq!(Lang::Es.exiting(2), "👋 Saliendo... Mensajes recibidos: 2");
    }

    #[test]
    fn language_names() {
        assert_eq!("es_ES.UTF-8".parse::<Lang>(), Ok(Lang::Es));
        assert_eq!("en".parse::<Lang>(), Ok(Lang::En));
        assert!("fr".parse::<Lang>().is_err());
    }
}
