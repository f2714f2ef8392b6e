//! One module per subcommand, plus what they share: connecting with a helpful error, and
//! making message text safe to print on a terminal.

pub mod archive;
pub mod bench;
pub mod chat;
pub mod check;
pub mod dead;
pub mod listen;
pub mod reply;
pub mod send;
pub mod serve;
pub mod web;
pub mod work;

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

/// Connect again and subscribe again after the broker went away, retrying transient failures
/// for as long as it takes (`report` says each wait): `listen` and `work` carry on this way.
pub async fn resubscribe(
    url: &str,
    subscription: &charla_core::Subscription,
    report: impl Fn(&charla_core::BrokerError, std::time::Duration),
) -> Result<
    (
        Box<dyn charla_core::Broker>,
        Box<dyn charla_core::Subscriber>,
    ),
    charla_core::BrokerError,
> {
    loop {
        let broker = crate::connect::connect_with_retry(url, u32::MAX, &report).await?;
        match broker.subscribe(subscription.clone()).await {
            Ok(sub) => return Ok((broker, sub)),
            Err(e) if e.is_transient() => {
                report(&e, std::time::Duration::from_secs(1));
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A size flag (`--max-upload-bytes 10MiB`): bytes, or with a unit as redis.conf writes
/// them (`k`/`m`/`g` powers of 1000, `kb`/`mb`/`gb` powers of 1024); `KiB`/`MiB`/`GiB` too.
pub fn size_arg(text: &str) -> std::result::Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let plain = ["kib", "mib", "gib"]
        .iter()
        .find_map(|iec| {
            lower
                .strip_suffix(iec)
                .map(|n| format!("{n}{}b", &iec[..1]))
        })
        .unwrap_or(lower);
    charla_server::config::parse_size(&plain)
        .ok_or_else(|| format!("{text:?} is not a size (e.g. 1048576, 512mb, 10MiB, 1gb)"))
}

/// A duration flag (`--timeout 30s`): 500ms, 30s, 5m, 1h, or seconds.
pub fn duration_arg(text: &str) -> std::result::Result<std::time::Duration, String> {
    charla_core::parse_age(text)
        .ok_or_else(|| format!("'{text}' is not a duration (500ms, 30s, 5m, 1h)"))
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

/// The archive database, or one line saying why not (the driver's English reason last, in
/// parentheses, as [`explain`] does for the broker).
pub async fn open_archive(url: &str, lang: charla_i18n::Lang) -> Result<charla_archive::Archive> {
    charla_archive::Archive::open(url).await.map_err(|e| {
        let url = charla_archive::redact(url);
        anyhow::anyhow!(lang.tr("archive-unreachable", &[("url", &url), ("detail", &e)]))
    })
}

/// A chat room is a stream (history) or a broadcast channel (live only).
pub fn chat_mode(mode: charla_core::Mode, lang: charla_i18n::Lang) -> Result<()> {
    use charla_core::Mode;
    match mode {
        Mode::Stream | Mode::Broadcast => Ok(()),
        other => anyhow::bail!(lang.tr("chat-mode", &[("mode", &other)])),
    }
}

pub use charla_core::visible;

/// The error in the user's language, plus a hint when the cause is a common first-day
/// mistake.
///
/// The libraries' errors (`BrokerError`'s Display, and the OS's and drivers' reasons inside
/// it) are English; here, at the binary's edge, the common kinds become catalogue lines and
/// the library's own words stay only as the technical detail in parentheses (for a refused
/// connection, a timeout or an unknown host just the OS error code, as the line already says
/// what it means).
pub fn explain(settings: &Settings, e: &BrokerError) -> String {
    let lang = settings.lang;
    let hint = match e {
        BrokerError::Unreachable { .. } if !settings.broker_explicit => Some("hint-default-port"),
        BrokerError::Unreachable { .. } => Some("hint-unreachable"),
        BrokerError::Auth { .. } if settings.broker.starts_with("amqp") => Some("hint-auth-amqp"),
        BrokerError::Auth { .. } => Some("hint-auth"),
        _ => None,
    };
    let said = describe(lang, e);
    match hint {
        Some(h) => format!("{said} — {}", lang.tr(h, &[])),
        None => said,
    }
}

/// A broker error as one line of the catalogue, the library's words in parentheses.
fn describe(lang: charla_i18n::Lang, e: &BrokerError) -> String {
    match e {
        BrokerError::Unreachable { address, reason } => {
            let lower = reason.to_ascii_lowercase();
            let kind = if lower.contains("refused") {
                "err-refused"
            } else if lower.contains("timed out") || lower.contains("timeout") {
                "err-timeout"
            } else if lower.contains("lookup")
                || lower.contains("resolve")
                || lower.contains("not known")
            {
                "err-unknown-host"
            } else {
                "err-unreachable"
            };
            let detail = if kind == "err-unreachable" {
                reason.clone()
            } else {
                os_code(reason)
            };
            lang.tr(kind, &[("address", address), ("detail", &detail)])
        }
        BrokerError::Auth { address, reason } => {
            lang.tr("err-auth", &[("address", address), ("detail", reason)])
        }
        BrokerError::Unavailable { address, reason } => lang.tr(
            "err-unavailable",
            &[("address", address), ("detail", reason)],
        ),
        BrokerError::InvalidUrl { url, reason } => {
            lang.tr("err-invalid-url", &[("url", url), ("detail", reason)])
        }
        other => other.to_string(),
    }
}

/// `os error 111` out of an OS reason ("Connection refused (os error 111)"), else the
/// reason's first clause: the detail a line already explained in words.
fn os_code(reason: &str) -> String {
    match reason.find("os error") {
        Some(at) => reason[at..].trim_end_matches(')').to_owned(),
        None => reason.split(':').next().unwrap_or(reason).trim().to_owned(),
    }
}

/// `--since`: a date-time (RFC 3339), unix seconds, or an age back from now (`90s`, `10m`,
/// `2h`, `1d`), as unix seconds.
pub fn since_secs(text: &str, lang: charla_i18n::Lang) -> anyhow::Result<u64> {
    let text = text.trim();
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return u64::try_from(t.timestamp())
            .map_err(|_| anyhow::anyhow!(lang.tr("since-before-1970", &[("text", &text)])));
    }
    // A bare number was unix seconds above: what is left is an age with its unit.
    match charla_core::parse_age(text) {
        Some(age) => Ok(now.saturating_sub(age.as_secs())),
        None => anyhow::bail!(lang.tr("since-bad", &[("text", &text)])),
    }
}

#[cfg(test)]
mod since_tests {
    use charla_i18n::Lang;

    /// English, the language the expectations below do not depend on.
    fn since_secs(text: &str) -> anyhow::Result<u64> {
        super::since_secs(text, Lang::En)
    }

    #[test]
    fn since_takes_times_seconds_and_ages() {
        assert_eq!(since_secs("1764000000").ok(), Some(1_764_000_000));
        assert_eq!(since_secs("2026-11-24T14:30:00Z").ok(), Some(1_795_530_600));
        let now = chrono::Utc::now().timestamp() as u64;
        let ten_min = since_secs("10m").expect("age");
        assert!((now - 601..=now - 599).contains(&ten_min));
        assert!(since_secs("yesterday").is_err());
        // A refused --since is said in the chosen language.
        let es = super::since_secs("yesterday", Lang::Es).expect_err("refused");
        assert!(es.to_string().contains("se esperaba"), "{es}");
    }
}
