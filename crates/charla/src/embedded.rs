//! Starting the embedded broker on the workshop's default address when nothing listens there.
//!
//! It runs as a detached child (`charla serve` in its own process group), not inside the
//! command that found the port free: a one-shot `charla send` would otherwise take the broker
//! and its messages with it when it exits. The child keeps running for every later charla and
//! seed program until it is stopped; its pid and data directory are printed so that is easy.
//!
//! It is durable: `send` returns once the broker has the message, so the broker must not lose
//! it when it crashes or the machine restarts. It keeps an append-only file with
//! `appendfsync always` (a reply only after the write is on disk) in the platform's data
//! directory (`$XDG_DATA_HOME/charla`, else `~/.local/share/charla`), and logs to
//! `charla-serve.log` there, not to a predictable path in a shared /tmp.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use charla_i18n::Lang;

/// The address `charla serve` takes when started for the default broker URL.
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 6380;

/// The embedded broker's port: `CHARLA_SERVE_PORT` (the variable `charla serve --port` reads)
/// or the workshop's 6380. The default broker URL points there too, so moving the embedded
/// broker to another port moves the commands that look for it.
pub fn default_port() -> u16 {
    std::env::var("CHARLA_SERVE_PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

/// The broker URL used when nothing names one.
pub fn default_broker() -> String {
    format!("redis://{DEFAULT_HOST}:{}", default_port())
}

/// Where the auto-started broker keeps its append-only file and log: `$XDG_DATA_HOME/charla`,
/// else `~/.local/share/charla` (the XDG base directory default).
pub fn data_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("share"))
        })
        .context("neither XDG_DATA_HOME nor HOME is set: nowhere to keep the embedded broker's data (set one, or start a broker yourself with `charla serve --dir DIR`)")?;
    Ok(base.join("charla"))
}

pub async fn start_default(lang: Lang) -> Result<()> {
    let exe = std::env::current_exe()
        .context("cannot find the charla executable to start the embedded broker")?;
    let port = default_port();
    let dir = data_dir()?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        // Messages are private: only this user reads them.
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = dir.join("charla-serve.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "serve",
        "--bind",
        DEFAULT_HOST,
        "--port",
        &port.to_string(),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
    ])
    .arg(&dir)
    .stdin(Stdio::null())
    .stdout(log.try_clone().context("log file")?)
    .stderr(log);
    #[cfg(unix)]
    {
        // Its own process group: Ctrl+C in this terminal must not stop the shared broker.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let child = cmd
        .spawn()
        .context("cannot start the embedded broker (charla serve)")?;
    let pid = child.id();
    // Wait until it answers; another charla may have won the race for the port, which is fine.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect((DEFAULT_HOST, port))
            .await
            .is_ok()
        {
            eprintln!(
                "{}",
                started_note(lang, port, pid, &dir.display().to_string())
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "the embedded broker did not start on {DEFAULT_HOST}:{port}; see {}",
        log_path.display()
    )
}

fn started_note(lang: Lang, port: u16, pid: u32, dir: &str) -> String {
    match lang {
        Lang::Es => format!(
            "ℹ️  Nada escuchaba en {DEFAULT_HOST}:{port}: charla arrancó allí su broker integrado \
             (pid {pid}, datos y registro en {dir}). Sigue activo para los demás programas; se detiene con: kill {pid}"
        ),
        Lang::En => format!(
            "ℹ️  Nothing listened on {DEFAULT_HOST}:{port}, so charla started its embedded broker there \
             (pid {pid}, data and log in {dir}). It keeps running for the other programs; stop it with: kill {pid}"
        ),
    }
}
