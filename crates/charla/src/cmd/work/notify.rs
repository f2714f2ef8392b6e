//! `charla work --notify [ROOM]`: one completion message per finished task, published in
//! broadcast mode to the reply room (`<room>.done` by default): a chat message anyone in that
//! room reads ("✅ 01J… done in 0.31 s"), carrying the task's id as its correlation id and how
//! it ended (`Message::task`), which `charla send --wait` and the web gateway look for.
//!
//! Broadcast because a reply is for whoever waits for it now (a `send --wait`, an uploader's
//! page): it needs no storage, and every waiter sees every reply and keeps its own. A notice
//! that cannot be published is logged and skipped: the task itself is settled either way.

use std::time::Duration;

use charla_core::{Broker, Message, Mode, Publisher, TaskOutcome, TaskStatus};
use charla_i18n::Lang;

use super::job::{Output, Why};

/// Who the notices say they are from.
const SENDER: &str = "charla work";

pub(super) struct Notifier {
    room: String,
    lang: Lang,
    publisher: Option<Box<dyn Publisher>>,
}

impl Notifier {
    pub(super) fn new(room: String, lang: Lang) -> Self {
        Notifier {
            room,
            lang,
            publisher: None,
        }
    }

    /// Publishes on `broker` from now on (after a reconnect, its new connection).
    pub(super) async fn attach(&mut self, broker: &dyn Broker) -> charla_core::Result<()> {
        self.publisher = Some(broker.publisher(Mode::Broadcast, &self.room).await?);
        Ok(())
    }

    /// Says that task `id` ended as `outcome`.
    pub(super) async fn notify(&mut self, id: &str, outcome: TaskOutcome) {
        let secs = format!(
            "{:.2}",
            Duration::from_millis(outcome.duration_ms).as_secs_f64()
        );
        let text = match outcome.status {
            TaskStatus::Done => self
                .lang
                .tr("work-notice-done", &[("id", &id), ("secs", &secs)]),
            TaskStatus::Dead => {
                let why = outcome.reason.clone().unwrap_or_default();
                self.lang
                    .tr("work-notice-dead", &[("id", &id), ("why", &why)])
            }
        };
        let mut m = Message::new(SENDER, text, self.room.as_str());
        m.correlation_id = Some(id.to_owned());
        m.task = Some(Box::new(outcome));
        let Some(publisher) = self.publisher.as_mut() else {
            return;
        };
        if let Err(e) = publisher.publish(&m).await {
            tracing::warn!(room = %self.room, "the completion notice of {id} was not sent: {e}");
        }
    }
}

/// How a task that ran ended, for its notice.
pub(super) fn outcome(
    status: TaskStatus,
    why: Option<&Why>,
    attempts: u32,
    duration: Duration,
    output: Output,
) -> TaskOutcome {
    let (exit, signal) = match why {
        None => (Some(0), None),
        Some(Why::Exit(code)) => (Some(*code), None),
        Some(Why::Signal(sig)) => (None, Some(*sig)),
        Some(Why::Timeout | Why::NotStarted(_)) => (None, None),
    };
    TaskOutcome {
        status,
        exit,
        signal,
        reason: why.map(|w| w.reason().to_string()),
        attempts,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        stdout: output.stdout,
        stderr: output.stderr,
    }
}
