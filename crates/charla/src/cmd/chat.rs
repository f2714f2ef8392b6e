//! `charla chat`: the terminal chat (crates/charla-tui) on the configured broker.

use std::io::IsTerminal;
use std::process::ExitCode;

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
    super::chat_mode(args.mode)?;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "charla chat draws on a terminal; for scripts and pipes use `charla send` and `charla listen`"
        );
    }
    let name = args
        .name
        .or_else(|| settings.file.name.clone())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "Usuario".to_owned());
    let name = charla_chat::check_name(&name, charla_chat::MAX_NAME_CHARS)
        .map_err(|e| anyhow::anyhow!("--{e}"))?;
    let room = args.room.unwrap_or_else(|| "general".to_owned());
    charla_chat::check_room(&room).map_err(anyhow::Error::msg)?;
    let link = super::chat_link(settings).await?;
    let options = charla_tui::ChatOptions {
        name,
        room,
        mode: args.mode,
        history: args.history,
        max_text_bytes: charla_chat::DEFAULT_MAX_TEXT_BYTES,
    };
    charla_tui::run(link, options).await?;
    Ok(ExitCode::SUCCESS)
}
