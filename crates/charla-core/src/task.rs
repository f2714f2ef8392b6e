//! Tasks and their replies: `charla work --notify` publishes one message per finished task to
//! a reply room, carrying the task's id as its correlation id and a [`TaskOutcome`], and
//! `charla send --wait` publishes a task and waits for that reply (request / reply over the
//! broker, as RabbitMQ's RPC tutorial does with `correlation_id` and `reply_to`).

use serde::{Deserialize, Serialize};

/// The reply room of a room's tasks when none is named: `<room>.done`.
pub fn reply_room(room: &str) -> String {
    format!("{room}.done")
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    /// The command exited with 0: the message was acknowledged.
    Done,
    /// Every attempt failed: the message is in the dead letters.
    Dead,
}

/// What a reply says about a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub status: TaskStatus,
    /// The last run's exit code, where it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// The signal that ended the last run, where one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Why it died (`command-failed: exit 3`, `timeout`), for a dead task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    /// The last run's duration.
    pub duration_ms: u64,
    /// The first lines of the last run's output, bounded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
}

impl TaskOutcome {
    /// The exit code a waiting `charla send --wait` ends with: the command's own, 128 + the
    /// signal as a shell says it, 124 for a timeout (as `timeout(1)`), else 1.
    pub fn exit_code(&self) -> u8 {
        match (self.status, self.exit, self.signal) {
            (TaskStatus::Done, _, _) => 0,
            (_, Some(code), _) => u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1),
            (_, None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
            _ if self.reason.as_deref() == Some("timeout") => 124,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: TaskStatus, exit: Option<i32>, signal: Option<i32>) -> TaskOutcome {
        TaskOutcome {
            status,
            exit,
            signal,
            reason: None,
            attempts: 1,
            duration_ms: 5,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    #[test]
    fn exit_codes_say_how_the_task_ended() {
        assert_eq!(outcome(TaskStatus::Done, Some(0), None).exit_code(), 0);
        assert_eq!(outcome(TaskStatus::Dead, Some(3), None).exit_code(), 3);
        assert_eq!(outcome(TaskStatus::Dead, None, Some(9)).exit_code(), 137);
        let mut timeout = outcome(TaskStatus::Dead, None, None);
        timeout.reason = Some("timeout".into());
        assert_eq!(timeout.exit_code(), 124);
        assert_eq!(reply_room("fotos"), "fotos.done");
    }
}
