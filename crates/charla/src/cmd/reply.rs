//! `charla send --wait`: publish a task and wait for its completion notice (request / reply
//! over the broker). The listener is on the reply room (broadcast, `<room>.done` unless
//! named) before the task is sent, so a worker that answers at once is not missed; it keeps
//! only the notice whose correlation id is the task's id, and ends with the task's status.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use charla_core::{Broker, Message, Mode, Subscriber, Subscription, TaskOutcome, TaskStatus};
use charla_i18n::Lang;

/// The exit code when no notice came in time (as `timeout(1)`).
const NO_REPLY: u8 = 124;

/// Listens on the reply room of `room` (or `reply_room`) through `broker`.
pub async fn listen(
    broker: &dyn Broker,
    room: &str,
    reply_room: Option<&str>,
) -> charla_core::Result<Box<dyn Subscriber>> {
    let reply_room = reply_room.map_or_else(|| charla_core::task::reply_room(room), str::to_owned);
    broker
        .subscribe(Subscription::new(Mode::Broadcast, reply_room))
        .await
}

/// Waits up to `limit` for the notice of task `task`, prints it, and returns the task's exit
/// code (124 when none came).
pub async fn wait(
    lang: Lang,
    replies: &mut dyn Subscriber,
    task: &Message,
    limit: Duration,
    json: bool,
) -> Result<ExitCode> {
    let found = tokio::time::timeout(limit, async {
        loop {
            let d = replies.recv().await?;
            if d.message.correlation_id.as_deref() == Some(task.id.as_str()) {
                if let Some(outcome) = d.message.task.clone() {
                    return Ok::<_, charla_core::BrokerError>((d.message, *outcome));
                }
            }
        }
    })
    .await;
    let (notice, outcome) = match found {
        Err(_) => {
            let secs = format!("{}", limit.as_secs_f64());
            eprintln!(
                "{}",
                lang.tr("send-wait-timeout", &[("id", &task.id), ("secs", &secs)])
            );
            return Ok(ExitCode::from(NO_REPLY));
        }
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(found)) => found,
    };
    if json {
        println!("{}", String::from_utf8_lossy(&notice.encode()));
    } else {
        print_outcome(lang, &task.id, &outcome);
    }
    Ok(ExitCode::from(outcome.exit_code()))
}

fn print_outcome(lang: Lang, id: &str, outcome: &TaskOutcome) {
    let secs = format!("{:.2}", outcome.duration_ms as f64 / 1000.0);
    let line = match outcome.status {
        TaskStatus::Done => lang.tr("work-notice-done", &[("id", &id), ("secs", &secs)]),
        TaskStatus::Dead => {
            let why = outcome.reason.clone().unwrap_or_default();
            lang.tr("work-notice-dead", &[("id", &id), ("why", &why)])
        }
    };
    println!("{}", super::visible(&line));
    for text in [&outcome.stdout, &outcome.stderr] {
        for l in text.lines() {
            println!("  {}", super::visible(l));
        }
    }
}
