//! `charla bench` destroys nothing it did not create. On Kafka, run with its defaults against
//! a real Kafka-protocol broker (tansu, which deletes every topic of the cluster when asked to
//! delete one) that already holds a topic with a record: the topic and its record are still
//! there afterwards, and bench says which topics it left and how to remove them. On Redis, a
//! room named with `--room` keeps what it held, and the room bench made up is removed.

mod common;

use charla_testkit::{unique_name, KafkaServer, RedisServer};
use common::*;

#[test]
fn bench_leaves_a_named_room_as_it_is_and_removes_only_its_own() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let port = server.port();
    let room = unique_name("mine-");
    ok(&run(
        charla(&server.url()).args([
            "send", "--mode", "stream", "--room", &room, "--name", "Ana", "keep me",
        ]),
        b"",
    ));
    let out = run(
        charla(&server.url()).args([
            "bench",
            "--mode",
            "stream",
            "--room",
            &room,
            "--messages",
            "100",
            "--json",
        ]),
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).expect("one JSON object");
    assert_eq!(v["left_on_broker"], serde_json::json!([room]), "{v}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("leaves the room you named"), "{stderr}");
    // The stream is still there with the first message in it.
    let first = redis_cli(port, &["XRANGE", &room, "-", "+", "COUNT", "1"]);
    assert!(first.contains("keep me"), "{first}");
    // A run on a room of its own making leaves nothing behind, and touches nothing else.
    let keys_before = redis_cli(port, &["DBSIZE"]);
    let out = run(
        charla(&server.url()).args(["bench", "--messages", "100", "--json"]),
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).expect("one JSON object");
    assert_eq!(v["left_on_broker"], serde_json::json!([]), "{v}");
    assert_eq!(redis_cli(port, &["DBSIZE"]), keys_before);
    let first = redis_cli(port, &["XRANGE", &room, "-", "+", "COUNT", "1"]);
    assert!(first.contains("keep me"), "{first}");
}

#[test]
fn bench_with_its_defaults_keeps_every_topic_and_says_what_it_leaves() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    // Someone's data: a topic with one record, written before the bench.
    let topic = unique_name("precious-");
    ok(&run(
        charla(&server.url()).args([
            "send", "--mode", "stream", "--room", &topic, "--name", "Ana", "keep me",
        ]),
        b"",
    ));

    // The broker's URL as a user gives it: the test broker's usual URL says
    // `?delete_topics=false` (see KafkaServer::url), which would hide what bench does by
    // default.
    let plain_url = format!("kafka://{}", server.bootstrap());
    let out = run(
        charla(&plain_url).args(["bench", "--messages", "200", "--json"]),
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).expect("one JSON object");
    assert_eq!(v["received"], 200, "{v}");
    // The pre-existing topic and its record are still there.
    let check = ok(&run(charla(&server.url()).arg("check"), b""));
    assert!(check.contains(&topic), "the topic is gone: {check}");
    let got = json_lines(&ok(&run(
        charla(&server.url()).args([
            "listen",
            "--mode",
            "stream",
            "--room",
            &topic,
            "--from-beginning",
            "--json",
            "--count",
            "1",
        ]),
        b"",
    )));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["mensaje"], "keep me");
    assert_eq!(got[0]["usuario"], "Ana");

    // What it left: its own topic, named, and how to remove it.
    let left: Vec<String> = v["left_on_broker"]
        .as_array()
        .expect("left_on_broker is a list")
        .iter()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    assert!(
        left.iter().any(|t| t.starts_with("charla-bench-")),
        "{left:?}"
    );
    assert!(
        !left.contains(&topic),
        "the topic bench did not make is not its to list"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("deletes no Kafka topic"), "{stderr}");
    assert!(
        stderr.contains(&format!("--delete --topic {}", left[0])),
        "{stderr}"
    );

    // Bench's own topic too: nothing was deleted.
    assert!(check.contains(&left[0]), "{check}");
}
