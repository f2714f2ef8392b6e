//! Log lines (tracing's warnings) carry colour codes only for a terminal: with stderr piped
//! into a file or another program they are plain text, and NO_COLOR is honoured.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use charla_testkit::{service_missing, unique_name, RedisServer};
use common::*;

/// A `listen` that meets a poison message logs a warning (tracing's, with its timestamp and
/// level); its stderr here is a pipe.
fn listen_past_a_poison_message(server: &RedisServer, no_color: Option<&str>) -> String {
    let room = poisoned_room(server);
    let mut listen = charla(&server.url());
    listen
        .env_remove("RUST_LOG")
        .args(["listen", "--room", &room, "--count", "1"]);
    match no_color {
        Some(v) => listen.env("NO_COLOR", v),
        None => listen.env_remove("NO_COLOR"),
    };
    let out = run(&mut listen, b"");
    assert!(ok(&out).contains("[a] after"));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("WARN") && stderr.contains("bad message"),
        "the warning is logged: {stderr}"
    );
    stderr
}

/// A room holding a poison message, then a chat message.
fn poisoned_room(server: &RedisServer) -> String {
    let room = unique_name("colour-");
    redis_cli(server.port(), &["LPUSH", &room, "this is { not json"]);
    ok(&run(
        charla(&server.url()).args(["send", "--room", &room, "--name", "a", "after"]),
        b"",
    ));
    room
}

#[test]
fn log_lines_into_a_pipe_carry_no_colour_codes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    for no_color in [None, Some("1"), Some("")] {
        let stderr = listen_past_a_poison_message(&server, no_color);
        assert!(
            !stderr.contains("\x1b["),
            "colour codes in piped log lines (NO_COLOR={no_color:?}): {stderr:?}"
        );
    }
}

/// On a terminal (a tmux pane) the warning is coloured, unless NO_COLOR says not to.
#[test]
fn no_color_is_honoured_on_a_terminal() {
    let tmux_ok = Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !tmux_ok {
        service_missing("tmux (apt-get install tmux)");
        return;
    }
    let Some(server) = RedisServer::start() else {
        return;
    };
    let socket = unique_name("charla-tmux");
    let tmux = |args: &[&str]| {
        let out = Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    struct Kill<'a>(&'a dyn Fn(&[&str]) -> String);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            (self.0)(&["kill-server"]);
        }
    }
    let _kill = Kill(&tmux);
    let mut warn_lines = Vec::new();
    for (window, no_color) in [("plain", "NO_COLOR=1"), ("coloured", "")] {
        let room = poisoned_room(&server);
        // The pane stays open after listen ends (`exec cat`), so it can be read.
        let command = format!(
            "env -u RUST_LOG -u NO_COLOR -u CHARLA_NAME {no_color} HOME={home} XDG_CONFIG_HOME={home} \
             LANG=C.UTF-8 TERM=xterm-256color CHARLA_NO_AUTOSTART=1 {bin} listen --broker {url} \
             --room {room} --count 1; echo LISTEN-DONE; exec cat",
            home = sandbox().display(),
            bin = env!("CARGO_BIN_EXE_charla"),
            url = server.url(),
        );
        let first = tmux(&["list-sessions"]).is_empty();
        if first {
            tmux(&[
                "new-session",
                "-d",
                "-s",
                "t",
                "-n",
                window,
                "-x",
                "200",
                "-y",
                "40",
                &command,
            ]);
        } else {
            tmux(&["new-window", "-d", "-t", "t", "-n", window, &command]);
        }
        let target = format!("t:{window}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let screen = loop {
            let screen = tmux(&["capture-pane", "-p", "-e", "-t", &target]);
            if screen.contains("LISTEN-DONE") {
                break screen;
            }
            assert!(Instant::now() < deadline, "listen never ended:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let warn = screen
            .lines()
            .find(|l| l.contains("WARN"))
            .unwrap_or_else(|| panic!("no warning on the terminal:\n{screen}"))
            .to_owned();
        warn_lines.push(warn);
    }
    assert!(
        !warn_lines[0].contains("\x1b["),
        "NO_COLOR=1: {:?}",
        warn_lines[0]
    );
    assert!(
        warn_lines[1].contains("\x1b["),
        "a terminal without NO_COLOR gets colour: {:?}",
        warn_lines[1]
    );
}

/// `--log-format json` (or CHARLA_LOG_FORMAT=json) writes each log line as one JSON object a
/// log collector can read: its level, its message and its fields.
#[test]
fn log_lines_can_be_json_for_a_collector() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    for how in ["flag", "env"] {
        let room = poisoned_room(&server);
        let mut listen = charla(&server.url());
        listen
            .env_remove("RUST_LOG")
            .args(["listen", "--room", &room, "--count", "1"]);
        match how {
            "flag" => listen.args(["--log-format", "json"]),
            _ => listen.env("CHARLA_LOG_FORMAT", "json"),
        };
        let out = run(&mut listen, b"");
        assert!(ok(&out).contains("[a] after"));
        let stderr = text(&out.stderr);
        let warning = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["level"] == "WARN")
            .unwrap_or_else(|| panic!("a JSON warning line ({how}): {stderr}"));
        let message = warning["fields"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("bad message"), "{warning}");
        assert_eq!(warning["fields"]["room"], room.as_str(), "{warning}");
        assert!(warning["timestamp"].is_string(), "{warning}");
        assert!(!stderr.contains("\x1b["), "no colour codes: {stderr:?}");
    }
}
