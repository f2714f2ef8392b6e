//! The zero-install default: `send`/`listen` start `charla serve` when nothing listens at the
//! default address, and that broker keeps what it acknowledged across a crash.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Kills the background broker (by pid) however the test ends.
struct Stop(Option<String>);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(pid) = &self.0 {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

/// A charla command that relies on the default broker, moved to `port`, with its data under
/// `data` (XDG_DATA_HOME).
fn default_charla(port: u16, data: &Path) -> Command {
    let mut cmd = charla("unused");
    cmd.env_remove("CHARLA_BROKER")
        .env_remove("CHARLA_NO_AUTOSTART")
        .env("CHARLA_SERVE_PORT", port.to_string())
        .env("XDG_DATA_HOME", data);
    cmd
}

/// The pid named in the "started its embedded broker" note.
fn started_pid(stderr: &str) -> Option<String> {
    stderr
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .map(str::to_owned)
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn the_auto_started_broker_keeps_messages_across_a_crash() {
    let port = charla_testkit::free_port();
    let data = tempfile::tempdir().unwrap();

    let out = run(
        default_charla(port, data.path()).args(["send", "--name", "Juan", "sobrevive"]),
        b"",
    );
    let err = text(&out.stderr);
    let first = Stop(started_pid(&err));
    ok(&out);
    assert!(err.contains("started its embedded broker"), "{err}");
    let dir = data.path().join("charla");
    assert!(
        err.contains(&dir.display().to_string()),
        "the note says where the data is: {err}"
    );
    assert!(
        dir.join("charla-serve.log").is_file(),
        "log in the data dir"
    );

    // A crash: no chance to flush anything.
    let pid = first.0.clone().expect("the note names the pid");
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while listening(port) {
        assert!(Instant::now() < deadline, "the broker did not die");
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = run(
        default_charla(port, data.path()).args(["listen", "--count", "1"]),
        b"",
    );
    let err = text(&out.stderr);
    let _second = Stop(started_pid(&err));
    assert!(
        err.contains("started its embedded broker"),
        "a new broker was started: {err}"
    );
    assert!(
        ok(&out).contains("[Juan] sobrevive"),
        "the message survived the crash: {err}"
    );
}
