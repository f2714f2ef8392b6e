//! `charla listen`: the seed's `receptor.py`, reliable.
//!
//! Messages are printed first and acknowledged after, so a listener killed mid-batch loses
//! nothing (the broker redelivers). Redelivered duplicates are recognised by id and dropped.
//! When the broker goes away the listener reconnects with backoff and carries on.
//!
//! A room may carry other applications' JSON events too (a kafkajs producer's
//! `{"type":"user_created",…}` on the same topic): they are shown and counted like messages
//! (one line, or the object itself with `--json`), never dropped; only a payload that is not a
//! JSON object, or is too large, is poison (dead-lettered or skipped by the backend).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use charla_core::{Delivery, Mode, StartFrom, Subscription};
use clap::Args;
use serde::Serialize;

use crate::config::{Route, Settings};
use charla_i18n::{RULE_DOUBLE, RULE_SINGLE};

/// How many recent ids are remembered to drop redelivered duplicates.
const DEDUPE_WINDOW: usize = 10_000;

#[derive(Debug, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub route: Route,

    /// Consumer group (stream mode): the group resumes where its members acked. Redis and
    /// `charla serve`: the members share the room's messages. Kafka: a room is one partition in
    /// stream mode, so one member gets all of it and the others stand by, taking over when it
    /// dies (queue mode spreads a room over partitions). RabbitMQ: no stream groups
    #[arg(long, short = 'g', env = "CHARLA_GROUP", value_name = "GROUP")]
    pub group: Option<String>,

    /// Stream mode: start from the oldest message the broker keeps
    #[arg(long, conflicts_with = "from")]
    pub from_beginning: bool,

    /// Stream mode: start after this offset (as printed in --json output: a Redis stream id,
    /// a RabbitMQ offset, a Kafka PARTITION:OFFSET)
    #[arg(long, value_name = "OFFSET", conflicts_with = "since")]
    pub from: Option<String>,

    /// Stream mode: start at the first message stored at or after TIME: a date-time
    /// (2026-11-24T14:30:00Z), unix seconds (1764000000), or an age (90s, 10m, 2h, 1d)
    #[arg(long, value_name = "TIME", conflicts_with = "from_beginning")]
    pub since: Option<String>,

    /// Print one JSON object per line (NDJSON) instead of text
    #[arg(long)]
    pub json: bool,

    /// Exit after receiving this many messages (other applications' JSON events count too)
    #[arg(long, short = 'c', value_name = "N")]
    pub count: Option<u64>,

    /// Unacknowledged messages held at once (queue and stream) [default: 100]
    #[arg(long, env = "CHARLA_PREFETCH", value_name = "N")]
    pub prefetch: Option<usize>,

    /// Print messages delivered again with an id already seen (normally dropped)
    #[arg(long)]
    pub keep_duplicates: bool,
}

pub async fn run(settings: &Settings, args: ListenArgs) -> Result<ExitCode> {
    let lang = settings.lang;
    let mode = settings.mode(&args.route)?;
    let room = settings.room(&args.route, mode, true);
    let group = args.group.clone().or_else(|| settings.file.group.clone());
    let prefetch = args
        .prefetch
        .or(settings.file.prefetch)
        .unwrap_or(charla_core::broker::DEFAULT_PREFETCH);
    let start = if args.from_beginning {
        StartFrom::Beginning
    } else if let Some(id) = &args.from {
        StartFrom::After(id.clone())
    } else if let Some(time) = &args.since {
        StartFrom::After(format!("@{}", super::since_secs(time, lang)?))
    } else {
        StartFrom::Latest
    };
    if mode != Mode::Stream && (group.is_some() || start != StartFrom::Latest) {
        anyhow::bail!(settings.lang.tr("listen-stream-only", &[("mode", &mode)]));
    }
    // Events too: a listener shows whatever the room carries, so `--count N` ends after N
    // records whoever wrote them, instead of waiting for chat messages that never come.
    let mut subscription = Subscription::new(mode, room.as_str())
        .start(start)
        .prefetch(prefetch)
        .events(true);
    if let Some(g) = &group {
        subscription = subscription.group(g.as_str());
    }

    eprintln!("{}", lang.listener_banner());
    eprintln!("{RULE_DOUBLE}");
    let broker = super::connect_or_start(settings).await?;
    let info = broker
        .info()
        .await
        .map_err(|e| anyhow::anyhow!(super::explain(settings, &e)))?;
    eprintln!(
        "{}",
        lang.connected(&info.product, &info.version, &info.address)
    );
    let mut sub = broker
        .subscribe(subscription.clone())
        .await
        .map_err(|e| anyhow::anyhow!(super::explain(settings, &e)))?;
    eprintln!("{}", lang.listening(&room, mode.as_str()));
    eprintln!("{RULE_SINGLE}");

    let mut state = Printer {
        json: args.json,
        lang,
        received: 0,
        limit: args.count,
        seen: charla_core::IdWindow::new(DEDUPE_WINDOW),
        keep_duplicates: args.keep_duplicates,
    };
    let mut broker = broker;
    let shutdown = crate::signal::shutdown();
    tokio::pin!(shutdown);
    let outcome = loop {
        if state.done() {
            break Ok(());
        }
        let max = state
            .limit
            .map_or(prefetch, |l| ((l - state.received) as usize).min(prefetch))
            .max(1);
        let batch = tokio::select! {
            b = sub.recv_batch(max) => b,
            _ = &mut shutdown => break Ok(()),
        };
        match batch {
            Ok(batch) => {
                let missed = sub.take_missed();
                if missed > 0 {
                    eprintln!(
                        "{}",
                        lang.tr("listen-missed", &[("count", &missed), ("room", &room)])
                    );
                }
                let tags: Vec<_> = batch.iter().map(|d| d.tag).collect();
                match state.print(&batch) {
                    Ok(()) => {}
                    // The reader went away (`| head`): stop; unacked messages go back.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break Ok(()),
                    Err(e) => break Err(e.into()),
                }
                if let Err(e) = sub.ack_many(&tags).await {
                    tracing::warn!(
                        "acknowledging failed (the messages will be delivered again): {e}"
                    );
                }
            }
            Err(e) if e.is_transient() => {
                let report = |e: &charla_core::BrokerError, d: Duration| {
                    eprintln!("{}", lang.reconnecting(&e.to_string(), d.as_secs_f64()))
                };
                report(&e, Duration::from_millis(200));
                let reconnected = tokio::select! {
                    r = super::resubscribe(&settings.broker, &subscription, report) => r,
                    _ = &mut shutdown => break Ok(()),
                };
                match reconnected {
                    Ok((b, s)) => {
                        broker = b;
                        sub = s;
                    }
                    Err(e) => break Err(anyhow::anyhow!(super::explain(settings, &e))),
                }
            }
            Err(e) => break Err(anyhow::anyhow!(super::explain(settings, &e))),
        }
    };
    if let Err(e) = sub.close().await {
        tracing::warn!("closing the subscription: {e}");
    }
    drop(broker);
    let bye = lang.exiting(state.received);
    if args.json {
        eprintln!("{bye}");
    } else {
        println!("\n{bye}");
    }
    outcome.map(|()| ExitCode::SUCCESS)
}

struct Printer {
    json: bool,
    lang: charla_i18n::Lang,
    received: u64,
    limit: Option<u64>,
    seen: charla_core::IdWindow,
    keep_duplicates: bool,
}

/// One NDJSON line: the message's own fields plus delivery facts.
#[derive(Serialize)]
struct JsonLine<'a> {
    #[serde(flatten)]
    message: &'a charla_core::Message,
    redelivered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<&'a str>,
}

/// Another application's event as one line: `📥 user_created userId=1 name=Ana`.
///
/// Why this form: logfmt-like `key=value` pairs read at a glance, keep one record per line
/// (so `grep`, `wc -l` and `--count` agree), and lead with `type`, the field event producers
/// use to say what happened; the exact object is one `--json` away. Strings without spaces,
/// quotes or `=` stand bare, other strings are JSON-quoted (so a space cannot fake a field),
/// anything else is compact JSON; the line goes through [`super::visible`] because any sender
/// controls it.
fn event_line(event: &charla_core::Event) -> String {
    fn value(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s)
                if !s.is_empty()
                    && !s.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') =>
            {
                s.clone()
            }
            // Serializing a JSON value into a String cannot fail.
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
    let kind = match event.get("type") {
        Some(serde_json::Value::String(t)) => Some(t.as_str()),
        _ => None,
    };
    let mut line = String::from("📥");
    if let Some(t) = kind {
        line.push(' ');
        line.push_str(&value(&serde_json::Value::String(t.to_owned())));
    }
    for (k, v) in event {
        if kind.is_some() && k == "type" {
            continue;
        }
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(&value(v));
    }
    if event.is_empty() {
        line.push_str(" {}");
    }
    super::visible(&line).into_owned()
}

impl Printer {
    fn done(&self) -> bool {
        self.limit.is_some_and(|l| self.received >= l)
    }

    /// True the first time an id is seen within the window.
    fn first_time(&mut self, id: &str) -> bool {
        if self.keep_duplicates {
            return true;
        }
        self.seen.first_time(id)
    }

    fn print(&mut self, batch: &[Delivery]) -> std::io::Result<()> {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        for d in batch {
            if self.done() {
                break;
            }
            if !self.first_time(&d.message.id) {
                tracing::info!(id = %d.message.id, "dropped a duplicate delivery");
                continue;
            }
            let m = &d.message;
            if let Some(event) = &m.event {
                if self.json {
                    // The object itself, as the other application wrote it (field order
                    // kept): a reader of this NDJSON tells it from a chat line by its fields.
                    serde_json::to_writer(&mut out, event)?;
                    out.write_all(b"\n")?;
                } else {
                    writeln!(out, "{}", event_line(event))?;
                }
            } else if self.json {
                let line = JsonLine {
                    message: m,
                    redelivered: d.redelivered,
                    offset: d.offset.as_deref(),
                };
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
            } else {
                // Any sender controls these fields: never raw control characters on a terminal.
                let show = super::visible;
                writeln!(
                    out,
                    "{}",
                    self.lang
                        .received(&show(&m.usuario), &show(&m.mensaje), &show(&m.hora))
                )?;
            }
            self.received += 1;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::event_line;

    fn line(json: &str) -> String {
        event_line(&serde_json::from_str(json).expect("a JSON object"))
    }

    #[test]
    fn an_event_is_one_readable_line() {
        assert_eq!(
            line(
                r#"{"type":"user_created","userId":1,"name":"Ana","timestamp":"2026-01-01T00:00:00Z"}"#
            ),
            "📥 user_created userId=1 name=Ana timestamp=2026-01-01T00:00:00Z"
        );
        // Strings that could be misread are quoted; nested values are compact JSON.
        assert_eq!(
            line(r#"{"name":"Ana María","tags":["a","b"],"x":null,"note":"a=b"}"#),
            r#"📥 name="Ana María" tags=["a","b"] x=null note="a=b""#
        );
        // A sender cannot put control characters on the terminal, not even through a key.
        let shown = line("{\"type\":\"x\",\"k\\u001b[2J\":\"v\\u202e\"}");
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{202e}'),
            "{shown}"
        );
        assert_eq!(line("{}"), "📥 {}");
    }
}
