//! `charla listen` on a room that carries other applications' JSON events (the seed's kafkajs
//! producer writes `{"type":"user_created",…}` to the same topic): each event is shown and
//! counted, so `--count N` ends, and only what is not a JSON object stays poison. Against a
//! real redis-server, with the events written raw by redis-cli as another application would.

mod common;

use charla_testkit::{unique_name, RedisServer};
use common::*;

const EVENT: &str =
    r#"{"type":"user_created","userId":1,"name":"Ana","timestamp":"2026-11-24T14:30:00Z"}"#;

#[test]
fn an_event_published_raw_is_shown_and_counted_and_listen_exits() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Queue mode, the seed's list: nothing but the event in it. Before, listen skipped it and
    // `--count 1` waited for ever (the run below fails after its deadline if it hangs).
    let room = unique_name("events-");
    redis_cli(server.port(), &["LPUSH", &room, EVENT]);
    let out = run(
        charla(&server.url()).args(["listen", "--room", &room, "--count", "1"]),
        b"",
    );
    let stdout = ok(&out);
    assert!(
        stdout.contains("📥 user_created userId=1 name=Ana timestamp=2026-11-24T14:30:00Z"),
        "{stdout}"
    );
    assert!(stdout.contains("Messages received: 1"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("not a chat message"), "{stderr}");
    assert_eq!(
        redis_cli(server.port(), &["LLEN", &room]).trim(),
        "0",
        "acknowledged like a message"
    );

    // --json: the object itself, exactly, field order included.
    redis_cli(server.port(), &["LPUSH", &room, EVENT]);
    let out = run(
        charla(&server.url()).args(["listen", "--room", &room, "--count", "1", "--json"]),
        b"",
    );
    let stdout = ok(&out);
    assert_eq!(stdout.trim_end(), EVENT);
}

#[test]
fn events_and_chat_messages_share_a_stream_and_only_non_objects_are_poison() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let room = unique_name("events-stream-");
    let port = server.port();
    for payload in [EVENT, "[1, 2, 3]", "{this is not json", "plain text"] {
        redis_cli(port, &["XADD", &room, "*", "payload", payload]);
    }
    ok(&run(
        charla(&server.url()).args([
            "send", "--mode", "stream", "--room", &room, "--name", "Juan", "hola",
        ]),
        b"",
    ));
    // Read by a group, which dead-letters poison: the event and the message arrive, counted,
    // and listen ends with --count 2.
    let out = run(
        charla(&server.url()).args([
            "listen",
            "--mode",
            "stream",
            "--room",
            &room,
            "--group",
            "g",
            "--from-beginning",
            "--count",
            "2",
            "--json",
        ]),
        b"",
    );
    let lines = json_lines(&ok(&out));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        serde_json::from_str::<serde_json::Value>(EVENT).expect("json")
    );
    assert_eq!(lines[1]["usuario"], "Juan");
    assert_eq!(lines[1]["mensaje"], "hola");
    // The array, the broken JSON and the text went to the dead letters, as before.
    let dead = redis_cli(
        port,
        &["LRANGE", &format!("charla:{{{room}}}:dead"), "0", "-1"],
    );
    for poison in ["[1, 2, 3]", "{this is not json", "plain text"] {
        assert!(dead.contains(poison), "{poison} not dead-lettered: {dead}");
    }
    assert!(!dead.contains("user_created"), "{dead}");
}
