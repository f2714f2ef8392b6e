//! Settings resolved from flags, environment, config file and defaults, in that order.
//!
//! The global flags ([`GlobalArgs`]) and a route ([`Route`], the mode and room flags of `send`
//! and `listen`) are defined here too. clap already merges flags with their `CHARLA_*` variables; this module fills what is still
//! unset from the TOML config file and then from the defaults.
//!
//! A broker password may come apart from the URL (`--password-file`, `CHARLA_PASSWORD`), so that
//! it is never in argv where `ps` shows it; it is merged into the URL here, once, and every
//! place that shows the URL redacts it ([`charla_core::redact`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use charla_core::Mode;
use clap::Args;
use serde::Deserialize;

use charla_i18n::Lang;

// The flags this module resolves are defined here, beside the resolving, rather than in
// `cli`: the commands import this module, and `cli` imports the commands.

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Broker URL [default: redis://127.0.0.1:6380]
    #[arg(
        long,
        short = 'b',
        env = "CHARLA_BROKER",
        global = true,
        value_name = "URL"
    )]
    pub broker: Option<String>,

    /// File whose content is the broker password, merged into the broker URL: unlike a
    /// password in the URL or in argv, it is not shown by `ps` (CHARLA_PASSWORD works too)
    #[arg(long, env = "CHARLA_PASSWORD_FILE", global = true, value_name = "PATH")]
    pub password_file: Option<PathBuf>,

    /// Kafka: partitions of the topics charla creates (a topic that exists keeps its own);
    /// the same as ?partitions=N in the URL [default: 3]
    #[arg(long, env = "CHARLA_PARTITIONS", global = true, value_name = "N")]
    pub partitions: Option<u32>,

    /// Config file (TOML) [default: ./charla.toml, then ~/.config/charla/config.toml]
    #[arg(long, env = "CHARLA_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Output language: en or es [default: from LANG]
    #[arg(long, env = "CHARLA_LANG", global = true, value_name = "LANG")]
    pub lang: Option<Lang>,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log lines as text, or as one JSON object each (for a log collector): time, level,
    /// message and fields
    #[arg(
        long,
        env = "CHARLA_LOG_FORMAT",
        global = true,
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text each, coloured on a terminal.
    Text,
    /// One JSON object each (tracing's JSON format).
    Json,
}

/// Where messages go or come from.
#[derive(Debug, Clone, Args)]
pub struct Route {
    /// Delivery mode: queue, broadcast, stream or routing [default: queue]
    #[arg(long, short = 'm', env = "CHARLA_MODE", value_name = "MODE")]
    pub mode: Option<Mode>,

    /// Room: the queue, channel, stream or topic name on the broker (a pattern when listening
    /// in routing mode) [default: chat_cola; chat_stream in stream mode; chat.general / chat.#
    /// in routing mode]
    #[arg(long, short = 'r', env = "CHARLA_ROOM", value_name = "NAME")]
    pub room: Option<String>,
}

/// Keys accepted in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub broker: Option<String>,
    pub name: Option<String>,
    pub room: Option<String>,
    pub mode: Option<String>,
    pub lang: Option<String>,
    pub group: Option<String>,
    pub prefetch: Option<usize>,
}

impl FileConfig {
    /// The file named by `--config` (must exist), else the first of `./charla.toml` and
    /// `~/.config/charla/config.toml` that exists, else nothing.
    pub fn load(explicit: Option<&Path>, lang: Lang) -> Result<FileConfig> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => default_locations().into_iter().find(|p| p.is_file()),
        };
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let file = path.display();
        let text = std::fs::read_to_string(&path)
            .with_context(|| lang.tr("config-unreadable", &[("file", &file)]))?;
        toml::from_str(&text).with_context(|| lang.tr("config-bad", &[("file", &file)]))
    }
}

fn default_locations() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("charla.toml")];
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(base) = base {
        v.push(base.join("charla").join("config.toml"));
    }
    v
}

/// What every command needs to know, resolved. `Debug` redacts the broker URL.
#[derive(Clone)]
pub struct Settings {
    /// The broker URL, with the password from `--password-file` / `CHARLA_PASSWORD` merged in:
    /// never print it as is, print [`charla_core::redact`] of it.
    pub broker: String,
    /// False when the broker is the built-in default (nothing named one).
    pub broker_explicit: bool,
    /// True when a password was given apart from the URL.
    pub password_given: bool,
    pub lang: Lang,
    pub file: std::sync::Arc<FileConfig>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("broker", &charla_core::redact(&self.broker))
            .field("broker_explicit", &self.broker_explicit)
            .field("password_given", &self.password_given)
            .field("lang", &self.lang)
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub fn resolve(global: &GlobalArgs) -> Result<Settings> {
        // The config file may itself name the language; its own errors are said in the one
        // named so far.
        let early = global.lang.unwrap_or_else(Lang::from_locale);
        let file = FileConfig::load(global.config.as_deref(), early)?;
        let (broker, broker_explicit) = match global.broker.clone().or_else(|| file.broker.clone())
        {
            Some(b) => (b, true),
            // The workshop's address (`charla serve` and the seed's Redis both listen there),
            // or wherever CHARLA_SERVE_PORT moved the embedded broker.
            None => (crate::embedded::default_broker(), false),
        };
        let password = password(global, early)?;
        let password_given = password.is_some();
        let broker = match password {
            Some(p) => charla_core::with_password(&broker, &p)?,
            None => broker,
        };
        let broker = match global.partitions {
            Some(n) => with_partitions(&broker, n)?,
            None => broker,
        };
        let lang = match (global.lang, &file.lang) {
            (Some(l), _) => l,
            (None, Some(l)) => l
                .parse()
                .map_err(anyhow::Error::msg)
                .context(early.tr("config-key", &[("key", &"lang")]))?,
            (None, None) => Lang::from_locale(),
        };
        Ok(Settings {
            broker,
            broker_explicit,
            password_given,
            lang,
            file: std::sync::Arc::new(file),
        })
    }

    pub fn mode(&self, route: &Route) -> Result<Mode> {
        match (route.mode, &self.file.mode) {
            (Some(m), _) => Ok(m),
            (None, Some(m)) => m
                .parse()
                .map_err(anyhow::Error::msg)
                .context(self.lang.tr("config-key", &[("key", &"mode")])),
            (None, None) => Ok(Mode::Queue),
        }
    }

    /// The room for this mode; `listening` picks the routing default pattern.
    pub fn room(&self, route: &Route, mode: Mode, listening: bool) -> String {
        route
            .room
            .clone()
            .or_else(|| self.file.room.clone())
            .unwrap_or_else(|| default_room(mode, listening).to_owned())
    }
}

/// `--partitions N` as the Kafka URL option `?partitions=N` (the one place the backend reads
/// it). Refused for other brokers (only Kafka has partitions) and when the URL has it already.
fn with_partitions(broker: &str, n: u32) -> Result<String> {
    let parsed = charla_core::BrokerUrl::parse(broker)?;
    if parsed.kind() != charla_core::BackendKind::Kafka {
        anyhow::bail!(
            "--partitions applies to kafka:// brokers only (this is {})",
            parsed.kind().name()
        );
    }
    if parsed.option("partitions").is_some() {
        anyhow::bail!("--partitions and ?partitions= in the broker URL: give it once");
    }
    let mut url = parsed.url().clone();
    url.query_pairs_mut()
        .append_pair("partitions", &n.to_string());
    Ok(url.into())
}

/// The broker password given apart from the URL: the file named by `--password-file` (or
/// `CHARLA_PASSWORD_FILE`) wins over `CHARLA_PASSWORD`, as a flag wins over the environment.
fn password(global: &GlobalArgs, lang: Lang) -> Result<Option<String>> {
    if let Some(path) = &global.password_file {
        return read_password_file(path, lang).map(Some);
    }
    match std::env::var("CHARLA_PASSWORD") {
        Ok(p) if !p.is_empty() => Ok(Some(p)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!(lang.tr("password-not-utf8", &[]))
        }
    }
}

/// A password file: its whole content, less one trailing line break (`echo pw > file`).
/// An empty one is an error: it is a mistake, not a wish for no password.
pub fn read_password_file(path: &Path, lang: Lang) -> Result<String> {
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .with_context(|| lang.tr("password-file-unreadable", &[("file", &file)]))?;
    let pw = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if pw.is_empty() {
        anyhow::bail!(lang.tr("password-file-empty", &[("file", &file)]));
    }
    Ok(pw.to_owned())
}

/// Default room per mode. Queue and broadcast use the seed's `chat_cola`; a stream gets its
/// own name because on Redis (and RabbitMQ) a stream cannot share a name with the seed's list
/// (queue); routing sends to a topic and listens to the whole `chat.` tree.
pub fn default_room(mode: Mode, listening: bool) -> &'static str {
    match mode {
        Mode::Queue | Mode::Broadcast => "chat_cola",
        Mode::Stream => "chat_stream",
        Mode::Routing if listening => "chat.#",
        Mode::Routing => "chat.general",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_rejects_unknown_keys() {
        let err = toml::from_str::<FileConfig>("brokr = 'x'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("brokr"), "{err}");
        let ok: FileConfig = toml::from_str("broker = 'redis://h:1'\nprefetch = 5").unwrap();
        assert_eq!(ok.prefetch, Some(5));
    }
}
