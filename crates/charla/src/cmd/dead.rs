//! `charla dead`: the operator's view of a room's dead letters, the same on every backend.
//!
//! It lists them (id, reason, attempts, age, sender, a one-line preview; `--json` for
//! scripts), groups them by reason (`--stats`), puts them back in the room marked as replayed
//! (`--replay`), and removes them (`--purge`). An action needs a selection (`--id`, `--all`,
//! `--reason`, `--older-than`) so that nobody replays a thousand messages by a typo, and says
//! how many it touched. Both are safe to run twice: the backends move one dead letter at a
//! time and only while it is still there (`Broker::replay_dead`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use charla_core::{DeadLetter, DeadSelect, Mode};
use clap::Args;

use crate::config::{Route, Settings};

/// Dead letters listed at most (the operator narrows with --reason or pages with --limit).
const DEFAULT_LIMIT: usize = 100;
/// Characters of a message shown in a listing's preview.
const PREVIEW_CHARS: usize = 60;

#[derive(Debug, Args)]
pub struct DeadArgs {
    #[command(flatten)]
    pub route: Route,

    /// Count the dead letters by reason instead of listing them
    #[arg(long, conflicts_with_all = ["replay", "purge"])]
    pub stats: bool,

    /// Put the selected dead letters back in the room, marked as replayed
    #[arg(long, conflicts_with = "purge")]
    pub replay: bool,

    /// Remove the selected dead letters for good
    #[arg(long)]
    pub purge: bool,

    /// Only these dead letters (the ids of the listing); repeat for several
    #[arg(long, value_name = "ID")]
    pub id: Vec<String>,

    /// Every dead letter of the room
    #[arg(long, conflicts_with = "id")]
    pub all: bool,

    /// Only dead letters of this reason (not-json, too-large, max-deliveries, command-failed,
    /// timeout, nacked, unknown)
    #[arg(long, value_name = "REASON")]
    pub reason: Option<String>,

    /// Only dead letters that died longer ago than this (90s, 10m, 2h, 7d)
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,

    /// List at most this many [default: 100]
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Print JSON (one object per dead letter, or one object of counts)
    #[arg(long)]
    pub json: bool,
}

pub async fn run(settings: &Settings, args: DeadArgs) -> Result<ExitCode> {
    let lang = settings.lang;
    let room = settings.room(&args.route, Mode::Queue, false);
    let select = selection(settings, &args)?;
    let acting = args.replay || args.purge;
    if acting && select == DeadSelect::all() && !args.all {
        anyhow::bail!(lang.tr("dead-select-needed", &[]));
    }
    let broker = super::connect(settings).await?;
    let explain = |e: charla_core::BrokerError| anyhow::anyhow!(super::explain(settings, &e));
    if acting {
        let done = if args.replay {
            broker.replay_dead(&room, &select).await.map_err(explain)?
        } else {
            broker.purge_dead(&room, &select).await.map_err(explain)?
        };
        let id = if args.replay {
            "dead-replayed"
        } else {
            "dead-purged"
        };
        let said = lang.tr(id, &[("count", &done), ("room", &room)]);
        if args.json {
            let action = if args.replay { "replayed" } else { "purged" };
            println!("{}", serde_json::json!({ action: done, "room": room }));
        } else {
            println!("{said}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let limit = args.limit.unwrap_or(DEFAULT_LIMIT);
    // A selection or the counts look at every dead letter; a plain listing at the first ones.
    let read = match args.stats || select != DeadSelect::all() {
        true => usize::MAX,
        false => limit,
    };
    let mut dead: Vec<DeadLetter> = broker
        .dead_letters(&room, read)
        .await
        .map_err(explain)?
        .into_iter()
        .filter(|d| select.matches(d))
        .collect();
    if !args.stats {
        dead.truncate(limit);
    }
    if args.stats {
        print_stats(settings, &room, &dead, args.json);
    } else {
        print_list(settings, &room, &dead, args.json);
    }
    Ok(ExitCode::SUCCESS)
}

/// The selection the flags describe.
fn selection(settings: &Settings, args: &DeadArgs) -> Result<DeadSelect> {
    let failed_before_us = match &args.older_than {
        None => None,
        Some(age) => {
            let Some(age) = charla_core::parse_age(age) else {
                anyhow::bail!(settings.lang.tr("dead-age-bad", &[("text", age)]));
            };
            let age_us = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
            Some(charla_core::dead::now_us().saturating_sub(age_us))
        }
    };
    Ok(DeadSelect {
        ids: args.id.clone(),
        reason: args.reason.clone(),
        failed_before_us,
    })
}

fn print_list(settings: &Settings, room: &str, dead: &[DeadLetter], json: bool) {
    let lang = settings.lang;
    if json {
        for d in dead {
            println!("{}", to_json(d));
        }
        return;
    }
    if dead.is_empty() {
        eprintln!("{}", lang.tr("dead-none", &[("room", &room)]));
        return;
    }
    let now = charla_core::dead::now_us();
    for d in dead {
        let message = d.message();
        let sender = message.as_ref().map_or("-", |m| m.usuario.as_str());
        let preview = message.as_ref().map_or_else(
            || String::from_utf8_lossy(&d.payload).into_owned(),
            |m| m.mensaje.clone(),
        );
        let mut line = format!(
            "{}  {}  {}  {}  {}  {}",
            d.id(),
            d.reason,
            lang.tr("dead-attempts", &[("count", &d.attempts)]),
            age(now, d.last_failure_us),
            charla_core::visible(sender),
            charla_core::visible(&one_line(&preview)),
        );
        if d.replays() > 0 {
            line.push_str(&format!(
                "  {}",
                lang.tr("dead-replays", &[("count", &d.replays())])
            ));
        }
        println!("{line}");
        if !d.error.is_empty() {
            println!("    {}", charla_core::visible(&one_line(&d.error)));
        }
    }
}

fn print_stats(settings: &Settings, room: &str, dead: &[DeadLetter], json: bool) {
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for d in dead {
        *by_reason.entry(d.reason.kind()).or_default() += 1;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "room": room, "total": dead.len(), "by_reason": by_reason })
        );
        return;
    }
    let lang = settings.lang;
    println!(
        "{}",
        lang.tr("dead-total", &[("count", &dead.len()), ("room", &room)])
    );
    for (reason, n) in by_reason {
        println!("  {n:>6}  {reason}");
    }
}

fn to_json(d: &DeadLetter) -> serde_json::Value {
    let message = d
        .message()
        .map(|m| serde_json::from_slice::<serde_json::Value>(&m.encode()));
    serde_json::json!({
        "id": d.id(),
        "room": d.room,
        "mode": d.mode.map(Mode::as_str),
        "reason": d.reason.to_string(),
        "reason_kind": d.reason.kind(),
        "error": d.error,
        "attempts": d.attempts,
        "replays": d.replays(),
        "first_failure_us": d.first_failure_us,
        "last_failure_us": d.last_failure_us,
        "message": message.and_then(|m| m.ok()),
        "payload": String::from_utf8_lossy(&d.payload),
    })
}

/// How long ago, in the largest unit that fits (`42s`, `5m`, `3h`, `2d`); `?` when unknown.
fn age(now_us: i64, then_us: i64) -> String {
    if then_us <= 0 {
        return "?".into();
    }
    let secs = (now_us - then_us).max(0) / 1_000_000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

/// The first line, cut to [`PREVIEW_CHARS`] characters.
fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    let mut out: String = first.chars().take(PREVIEW_CHARS).collect();
    if first.chars().count() > PREVIEW_CHARS || text.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_previews_are_short() {
        let now = 10_000_000_000;
        assert_eq!(age(now, now - 42_000_000), "42s");
        assert_eq!(age(now, now - 300_000_000), "5m");
        assert_eq!(age(now, 0), "?");
        assert_eq!(one_line("a\nb"), "a…");
        assert_eq!(
            one_line(&"x".repeat(100)).chars().count(),
            PREVIEW_CHARS + 1
        );
    }
}
