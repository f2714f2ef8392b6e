//! Log lines (tracing's warnings) carry colour codes only for a terminal: with stderr piped
//! into a file or another program they are plain text, and NO_COLOR is honoured.

mod common;

use charla_testkit::{unique_name, RedisServer};
use common::*;

/// A `listen` that meets a poison message logs a warning (tracing's, with its timestamp and
/// level); its stderr here is a pipe.
fn listen_past_a_poison_message(server: &RedisServer, no_color: Option<&str>) -> String {
    let room = unique_name("colour-");
    redis_cli(server.port(), &["LPUSH", &room, "this is { not json"]);
    ok(&run(
        charla(&server.url()).args(["send", "--room", &room, "--name", "a", "after"]),
        b"",
    ));
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
