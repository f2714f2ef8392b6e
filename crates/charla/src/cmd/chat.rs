//! `charla chat`: the terminal chat (crates/charla-tui) on the configured broker.
//!
//! While the screen is up nothing but the screen may write to the terminal: a log line
//! ("WARN lost the broker…") written over it stayed there after the reconnect, across the input
//! box. So stderr (fd 2: tracing's log lines, and anything a library prints) goes to a log file
//! for as long as the screen is up, and back to the terminal once it is torn down.

use std::io::{IsTerminal, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::Result;
use charla_core::Mode;
use clap::Args;

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Your name [default: CHARLA_NAME, the config file's name, then your login name]
    #[arg(long, short = 'n', env = "CHARLA_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Room to start in (/join ROOM moves) [default: general]
    #[arg(long, short = 'r', value_name = "ROOM")]
    pub room: Option<String>,

    /// stream: rooms keep their history (shown on joining); broadcast: live only
    #[arg(
        long,
        short = 'm',
        env = "CHARLA_CHAT_MODE",
        default_value = "stream",
        value_name = "MODE"
    )]
    pub mode: Mode,

    /// Messages shown on joining a room
    #[arg(long, default_value_t = charla_chat::DEFAULT_HISTORY, value_name = "N")]
    pub history: usize,
}

pub async fn run(settings: &Settings, args: ChatArgs) -> Result<ExitCode> {
    super::chat_mode(args.mode, settings.lang)?;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(settings.lang.tr("chat-needs-terminal", &[]));
    }
    let name = args
        .name
        .or_else(|| settings.file.name.clone())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "Usuario".to_owned());
    let said = |e: charla_chat::Refusal| anyhow::anyhow!(e.said().in_lang(settings.lang));
    let name = charla_chat::check_name(&name, charla_chat::MAX_NAME_CHARS).map_err(said)?;
    let room = args.room.unwrap_or_else(|| "general".to_owned());
    charla_chat::check_room(&room).map_err(said)?;
    let link = super::chat_link(settings).await?;
    let log_file = log_path();
    let options = charla_tui::ChatOptions {
        name,
        room,
        mode: args.mode,
        history: args.history,
        max_text_bytes: charla_chat::DEFAULT_MAX_TEXT_BYTES,
        log_file: Some(log_file.clone()),
        lang: settings.lang,
    };
    let off_screen = StderrToFile::start(&log_file, settings.lang)?;
    let finished = charla_tui::run(link, options).await;
    drop(off_screen);
    let finished = finished?;
    if finished.unsent > 0 {
        eprintln!(
            "{}",
            settings
                .lang
                .tr("chat-unsent", &[("count", &finished.unsent)])
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `$XDG_STATE_HOME/charla/chat.log`, `~/.local/state/charla/chat.log` without it (the XDG
/// default), the temporary directory without a home.
fn log_path() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("state"))
        })
        .unwrap_or_else(std::env::temp_dir);
    state.join("charla").join("chat.log")
}

/// A log file past this size is moved to `chat.log.old` when a chat starts.
const LOG_ROTATE_BYTES: u64 = 4 << 20;

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(path, path.with_extension("log.old"));
    }
    let mut file = std::fs::File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    writeln!(
        file,
        "--- charla chat, pid {}, {} ---",
        std::process::id(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )?;
    Ok(file)
}

/// The terminal's stderr while it is redirected, for the panic hook (-1: not redirected).
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);

/// Stderr (fd 2) pointed at the log file (at /dev/null if the file cannot be opened: the
/// screen matters more than the log) until this is dropped.
struct StderrToFile {
    saved: OwnedFd,
}

impl StderrToFile {
    fn start(path: &Path, lang: charla_i18n::Lang) -> Result<StderrToFile> {
        let file = match open_log(path) {
            Ok(f) => f,
            Err(e) => {
                let file = path.display();
                eprintln!(
                    "{}",
                    lang.tr("chat-no-log", &[("file", &file), ("reason", &e)])
                );
                std::fs::File::options().write(true).open("/dev/null")?
            }
        };
        // SAFETY: plain fd calls on descriptors this process owns; the duplicate is owned by
        // `saved` from here on.
        let saved = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
        if saved < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let saved = unsafe { OwnedFd::from_raw_fd(saved) };
        // A panic while the screen is up prints on the terminal, not into the file: ratatui's
        // hook restores the screen and then calls this one, which restores stderr first.
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let saved = SAVED_STDERR.swap(-1, Ordering::SeqCst);
                if saved >= 0 {
                    // SAFETY: `saved` is open while SAVED_STDERR holds it.
                    unsafe { libc::dup2(saved, 2) };
                }
                previous(info);
            }));
        });
        // SAFETY: as above; fd 2 now points at the file (which stays open through it).
        if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        SAVED_STDERR.store(saved.as_raw_fd(), Ordering::SeqCst);
        Ok(StderrToFile { saved })
    }
}

impl Drop for StderrToFile {
    fn drop(&mut self) {
        SAVED_STDERR.store(-1, Ordering::SeqCst);
        // SAFETY: both descriptors are open; fd 2 is the terminal again.
        unsafe { libc::dup2(self.saved.as_raw_fd(), 2) };
    }
}
