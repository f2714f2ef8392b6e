//! `charla archive`: store rooms' messages in PostgreSQL (crates/charla-archive), as one
//! member of the archivers' consumer group: start several and they share the work.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use charla_core::Mode;
use clap::Args;

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The PostgreSQL database to archive into (created if missing, schema migrated):
    /// postgres://USER@HOST:PORT/DATABASE; a password is better in PGPASSWORD than in the URL
    #[arg(long, short = 'a', env = "CHARLA_ARCHIVE", value_name = "URL")]
    pub archive: String,

    /// A room to archive (repeat for more) [default: every room the broker keeps, looked up
    /// again every 10 s]
    #[arg(long, short = 'r', value_name = "ROOM")]
    pub room: Vec<String>,

    /// stream: read in the archivers' consumer group, catching up after any outage;
    /// broadcast: store what is heard live (nothing is kept to catch up from)
    #[arg(long, short = 'm', default_value = "stream", value_name = "MODE")]
    pub mode: Mode,

    /// Consumer group of the archivers (stream mode)
    #[arg(long, short = 'g', default_value = charla_archive::ARCHIVE_GROUP, value_name = "GROUP")]
    pub group: String,
}

pub async fn run(settings: &Settings, args: ArchiveArgs) -> Result<ExitCode> {
    super::chat_mode(args.mode, settings.lang)?;
    for room in &args.room {
        charla_chat::check_room(room)
            .map_err(|e| anyhow::anyhow!(e.said().in_lang(settings.lang)))?;
    }
    let archive = super::open_archive(&args.archive, settings.lang).await?;
    let link = super::chat_link(settings).await?;
    let stream_groups = link.broker().await.1.capabilities().stream_groups;
    let archiver =
        charla_archive::Archiver::new(link.clone(), archive, args.mode, &args.group, stream_groups);
    if args.room.is_empty() {
        let (_, broker) = link.broker().await;
        if !broker.capabilities().list_rooms {
            let backend = broker.backend();
            anyhow::bail!(settings
                .lang
                .tr("archive-cannot-list", &[("backend", &backend)]));
        }
    }
    for room in &args.room {
        archiver.room(room);
    }
    eprintln!(
        "🗄  archiving {} into {} (group {}); Ctrl+C stops",
        if args.room.is_empty() {
            "every room".to_owned()
        } else {
            args.room.join(", ")
        },
        charla_archive::redact(&args.archive),
        args.group
    );
    let discover = async {
        if !args.room.is_empty() {
            return std::future::pending().await;
        }
        loop {
            let (_, broker) = link.broker().await;
            match broker.rooms().await {
                Ok(rooms) => {
                    for room in rooms {
                        if charla_chat::check_room(&room).is_ok() {
                            archiver.room(&room);
                        }
                    }
                }
                Err(e) => tracing::warn!("listing the broker's rooms: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    };
    tokio::select! {
        () = discover => {}
        () = crate::signal::shutdown() => {}
    }
    eprintln!("{}", settings.lang.tr("archive-stopped", &[]));
    Ok(ExitCode::SUCCESS)
}
