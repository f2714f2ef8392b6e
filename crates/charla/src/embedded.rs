//! Starting the embedded broker on the workshop's default address when nothing listens there.
//!
//! It runs as a detached child (`charla serve` in its own process group), not inside the
//! command that found the port free: a one-shot `charla send` would otherwise take the broker
//! and its messages with it when it exits. The child keeps running for every later charla and
//! seed program until it is stopped; its pid and log file are printed so that is easy.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::i18n::Lang;

/// The address `charla serve` takes when started for the default broker URL.
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 6380;

pub async fn start_default(lang: Lang) -> Result<()> {
    let exe = std::env::current_exe()
        .context("cannot find the charla executable to start the embedded broker")?;
    let log_path = std::env::temp_dir().join(format!("charla-serve-{DEFAULT_PORT}.log"));
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
        &DEFAULT_PORT.to_string(),
    ])
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
        if tokio::net::TcpStream::connect((DEFAULT_HOST, DEFAULT_PORT))
            .await
            .is_ok()
        {
            eprintln!(
                "{}",
                started_note(lang, pid, &log_path.display().to_string())
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "the embedded broker did not start on {DEFAULT_HOST}:{DEFAULT_PORT}; see {}",
        log_path.display()
    )
}

fn started_note(lang: Lang, pid: u32, log: &str) -> String {
    match lang {
        Lang::Es => format!(
            "ℹ️  Nada escuchaba en {DEFAULT_HOST}:{DEFAULT_PORT}: charla arrancó allí su broker integrado \
             (pid {pid}, registro {log}). Sigue activo para los demás programas; se detiene con: kill {pid}"
        ),
        Lang::En => format!(
            "ℹ️  Nothing listened on {DEFAULT_HOST}:{DEFAULT_PORT}, so charla started its embedded broker there \
             (pid {pid}, log {log}). It keeps running for the other programs; stop it with: kill {pid}"
        ),
    }
}
