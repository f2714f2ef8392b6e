//! One module per subcommand, plus what they share: connecting with a helpful error.

pub mod bench;
pub mod check;
pub mod listen;
pub mod send;
pub mod serve;

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
/// install. `CHARLA_NO_AUTOSTART=1` turns this off.
pub async fn connect_or_start(settings: &Settings) -> Result<Box<dyn Broker>> {
    match crate::connect::connect(&settings.broker).await {
        Ok(b) => Ok(b),
        Err(BrokerError::Unreachable { .. })
            if !settings.broker_explicit && std::env::var_os("CHARLA_NO_AUTOSTART").is_none() =>
        {
            crate::embedded::start_default(settings.lang).await?;
            connect(settings).await
        }
        Err(e) => Err(anyhow::anyhow!(explain(settings, &e))),
    }
}

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
            "pon usuario y contraseña en la URL: amqp://USUARIO:CONTRASEÑA@host:puerto/vhost"
        } else {
            "put the user and password in the URL: amqp://USER:PASSWORD@host:port/vhost"
        }),
        BrokerError::Auth { .. } => Some(if es {
            "pon la contraseña en la URL: redis://:CONTRASEÑA@host:puerto"
        } else {
            "put the password in the URL: redis://:PASSWORD@host:port"
        }),
        _ => None,
    };
    match hint {
        Some(h) => format!("{e} — {h}"),
        None => e.to_string(),
    }
}
