//! What `charla work` says: one line per event (a task done, failed, dead, given back), as
//! text or as one JSON object (`--json`); and on a terminal, a progress line kept at the
//! bottom (done, failed, dead, running, tasks a second), redrawn every second and cleared
//! before each event line so the two never mix.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use charla_core::Mode;
use serde_json::json;

/// What a worker did, for its progress line and its last line.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) done: u64,
    pub(super) failed: u64,
    pub(super) dead: u64,
    pub(super) given_back: u64,
}

/// Where events go.
#[derive(Clone, Copy)]
pub(super) struct Printer {
    pub(super) json: bool,
    pub(super) lang: charla_i18n::Lang,
    /// stderr is a terminal and events are text: keep a progress line there.
    pub(super) progress: bool,
}

/// Clears the terminal's current line.
const CLEAR_LINE: &str = "\r\x1b[2K";

impl Printer {
    pub(super) fn new(json: bool, lang: charla_i18n::Lang) -> Self {
        Printer {
            json,
            lang,
            progress: !json && std::io::stderr().is_terminal(),
        }
    }

    /// `text` lines go to stdout, or to stderr when `banner` (start and summary).
    pub(super) fn event(
        &self,
        object: serde_json::Value,
        text: impl FnOnce() -> String,
        banner: bool,
    ) {
        let line = if self.json {
            object.to_string()
        } else {
            crate::cmd::visible(&text()).into_owned()
        };
        if self.progress {
            let _ = write!(std::io::stderr(), "{CLEAR_LINE}");
        }
        // A reader that went away is no reason to stop working.
        if banner && !self.json {
            let _ = writeln!(std::io::stderr(), "{line}");
        } else {
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    }

    /// The worker's first line: where it works, how many at a time, on what.
    pub(super) fn start(&self, room: &str, mode: Mode, concurrency: usize, command: &[String]) {
        let text = command.join(" ");
        self.event(
            json!({"event": "start", "room": room, "mode": mode.as_str(),
                   "concurrency": concurrency, "command": command}),
            || {
                let args: [(&str, &dyn std::fmt::Display); 4] = [
                    ("room", &room),
                    ("mode", &mode.as_str()),
                    ("count", &concurrency),
                    ("command", &text),
                ];
                self.lang.tr("work-start", &args)
            },
            true,
        );
    }

    /// The worker's last line: what it did.
    pub(super) fn summary(&self, counts: &Counts) {
        self.event(
            json!({"event": "summary", "done": counts.done, "failed": counts.failed,
                   "dead": counts.dead, "given_back": counts.given_back}),
            || {
                let args: [(&str, &dyn std::fmt::Display); 4] = [
                    ("done", &counts.done),
                    ("failed", &counts.failed),
                    ("dead", &counts.dead),
                    ("back", &counts.given_back),
                ];
                self.lang.tr("work-summary", &args)
            },
            true,
        );
    }

    /// Replaces the progress line (no newline: the next event or redraw clears it).
    pub(super) fn status(&self, line: &str) {
        if self.progress {
            let mut err = std::io::stderr();
            let _ = write!(err, "{CLEAR_LINE}{line}");
            let _ = err.flush();
        }
    }
}

/// Tasks finished a second, smoothed over the last seconds.
#[derive(Default)]
pub(super) struct Rate {
    last: Option<(Instant, u64)>,
    smoothed: f64,
}

impl Rate {
    /// The rate with `total` tasks finished so far.
    pub(super) fn per_sec(&mut self, total: u64) -> f64 {
        let now = Instant::now();
        if let Some((at, before)) = self.last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let current = total.saturating_sub(before) as f64 / secs;
                self.smoothed = 0.5 * self.smoothed + 0.5 * current;
            }
        }
        self.last = Some((now, total));
        self.smoothed
    }
}
