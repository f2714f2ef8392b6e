//! One module per subcommand, plus what they share: connecting with a helpful error, and
//! making message text safe to print on a terminal.

pub mod archive;
pub mod bench;
pub mod chat;
pub mod check;
pub mod listen;
pub mod send;
pub mod serve;
pub mod web;

use anyhow::Result;
use charla_core::{Broker, BrokerError};

use crate::config::Settings;

/// Connect to the configured broker, or explain in one line what to do.
pub async fn connect(settings: &Settings) -> Result<Box<dyn Broker>> {
    crate::connect::connect(&settings.broker)
        .await
        .map_err(|e| anyhow::anyhow!(explain(settings, &e)))
}

/// Like [`connect`], for the main job (`send`, `listen`): when nobody named a broker and
/// nothing answers at the workshop's default address, start the embedded broker
/// (`charla serve`) there in the background and use it, so a fresh machine needs no broker
/// install. `CHARLA_NO_AUTOSTART=1` turns this off, and so does a password given apart from
/// the URL: it names a protected broker, which an auto-started one would not be.
pub async fn connect_or_start(settings: &Settings) -> Result<Box<dyn Broker>> {
    match crate::connect::connect(&settings.broker).await {
        Ok(b) => Ok(b),
        Err(BrokerError::Unreachable { .. })
            if !settings.broker_explicit
                && !settings.password_given
                && std::env::var_os("CHARLA_NO_AUTOSTART").is_none() =>
        {
            crate::embedded::start_default(settings.lang).await?;
            connect(settings).await
        }
        Err(e) => Err(anyhow::anyhow!(explain(settings, &e))),
    }
}

/// The chats' connection: the configured broker (the embedded one started first when nothing
/// was named and nothing answers, as for `send`), re-made by the chat engine when it breaks.
pub async fn chat_link(settings: &Settings) -> Result<std::sync::Arc<charla_chat::Link>> {
    drop(connect_or_start(settings).await?);
    let url = settings.broker.clone();
    let connector: charla_chat::Connector = std::sync::Arc::new(move || {
        let url = url.clone();
        Box::pin(async move { crate::connect::connect(&url).await })
    });
    charla_chat::Link::open(connector)
        .await
        .map_err(|e| anyhow::anyhow!(explain(settings, &e)))
}

/// The archive database, or one line saying why not.
pub async fn open_archive(url: &str) -> Result<charla_archive::Archive> {
    charla_archive::Archive::open(url).await.map_err(|e| {
        anyhow::anyhow!(
            "{e} (archive {}) — is PostgreSQL running there, and the URL postgres://USER@HOST:PORT/DATABASE?",
            charla_archive::redact(url)
        )
    })
}

/// A chat room is a stream (history) or a broadcast channel (live only).
pub fn chat_mode(mode: charla_core::Mode) -> Result<()> {
    use charla_core::Mode;
    match mode {
        Mode::Stream | Mode::Broadcast => Ok(()),
        other => anyhow::bail!(
            "--mode {other}: a chat room is a stream (with history) or broadcast (live only)"
        ),
    }
}

pub use charla_core::visible;

/// The error, plus a hint when the cause is a common first-day mistake.
pub fn explain(settings: &Settings, e: &BrokerError) -> String {
    let es = settings.lang.es();
    let hint = match e {
        BrokerError::Unreachable { .. } if !settings.broker_explicit => Some(if es {
            "nada escucha en el puerto del taller (6380): arranca un broker con `charla serve` (o `redis-server --port 6380`), o indica otro con --broker"
        } else {
            "nothing listens on the workshop port (6380): start a broker with `charla serve` (or `redis-server --port 6380`), or name one with --broker"
        }),
        BrokerError::Unreachable { .. } => Some(if es {
            "¿está arrancado el broker y es correcta la dirección? (en otra computadora: IP de la LAN y cortafuegos)"
        } else {
            "is the broker running and the address right? (on another computer: its LAN IP, and the firewall)"
        }),
        BrokerError::Auth { .. } if settings.broker.starts_with("amqp") => Some(if es {
            "pon el usuario en la URL (amqp://USUARIO@host:puerto/vhost) y la contraseña en CHARLA_PASSWORD o en un archivo (--password-file)"
        } else {
            "put the user in the URL (amqp://USER@host:port/vhost) and the password in CHARLA_PASSWORD or a file (--password-file)"
        }),
        BrokerError::Auth { .. } => Some(if es {
            "da la contraseña en CHARLA_PASSWORD o en un archivo (--password-file); en la URL (redis://:CONTRASEÑA@host:puerto) la ve cualquiera con `ps`"
        } else {
            "give the password in CHARLA_PASSWORD or a file (--password-file); in the URL (redis://:PASSWORD@host:port) anyone can see it with `ps`"
        }),
        _ => None,
    };
    match hint {
        Some(h) => format!("{e} — {h}"),
        None => e.to_string(),
    }
}

/// `--since`: a date-time (RFC 3339), unix seconds, or an age back from now (`90s`, `10m`,
/// `2h`, `1d`), as unix seconds.
pub fn since_secs(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return u64::try_from(t.timestamp())
            .map_err(|_| anyhow::anyhow!("--since {text}: before 1970"));
    }
    // A bare number was unix seconds above: what is left is an age with its unit.
    match charla_core::parse_age(text) {
        Some(age) => Ok(now.saturating_sub(age.as_secs())),
        None => anyhow::bail!(
            "--since {text}: expected a date-time (2026-11-24T14:30:00Z), unix seconds, or an \
             age such as 90s, 10m, 2h, 1d"
        ),
    }
}

#[cfg(test)]
mod since_tests {
    use super::since_secs;

    #[test]
    fn since_takes_times_seconds_and_ages() {
        assert_eq!(since_secs("1764000000").ok(), Some(1_764_000_000));
        assert_eq!(since_secs("2026-11-24T14:30:00Z").ok(), Some(1_795_530_600));
        let now = chrono::Utc::now().timestamp() as u64;
        let ten_min = since_secs("10m").expect("age");
        assert!((now - 601..=now - 599).contains(&ten_min));
        assert!(since_secs("yesterday").is_err());
    }
}
