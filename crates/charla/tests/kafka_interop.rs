//! The `charla` binary on Kafka, against a real Kafka-protocol broker (tansu) per test, and
//! with Kafka clients charla did not write: the seed's own kafkajs producer and consumer
//! (compat/kafka/, from npm) and confluent-kafka (pip). Each reads what charla sends and
//! charla reads what they send; the seed's event-streaming pattern runs with charla as the
//! producer; bad input ends in one clear line, never a hang.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use charla_testkit::{service_missing, unique_name, KafkaServer};
use common::*;

fn kafka_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../compat/kafka")
}

/// `node ARGS` in compat/kafka (one of its scripts, or `-` for a module on stdin), or None
/// after reporting what is missing.
fn node(args: &[&str], server: &KafkaServer) -> Option<Command> {
    let has_node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_node || !kafka_dir().join("node_modules/kafkajs").is_dir() {
        service_missing("node with compat/kafka's kafkajs (cd compat/kafka && npm ci)");
        return None;
    }
    let mut cmd = Command::new("node");
    cmd.current_dir(kafka_dir())
        .args(args)
        .env("KAFKA_BROKERS", server.bootstrap())
        .env("TIMEOUT_MS", "30000");
    Some(cmd)
}

/// compat/kafka/confluent_client.py, or None after reporting that confluent-kafka is missing.
fn confluent(server: &KafkaServer, args: &[&str]) -> Option<Command> {
    let ok = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        service_missing("python3 with confluent-kafka (pip install confluent-kafka)");
        return None;
    }
    let mut cmd = Command::new("python3");
    cmd.arg(kafka_dir().join("confluent_client.py"))
        .arg(args[0])
        .args(["--bootstrap", &server.bootstrap()])
        .args(&args[1..]);
    Some(cmd)
}

/// `charla send --mode stream --room ROOM --name NAME [TEXT]` on the test broker.
fn send_cmd(server: &KafkaServer, room: &str, name: &str, text: Option<&str>) -> Command {
    let mut cmd = charla(&server.url());
    cmd.args(["send", "--mode", "stream", "--room", room, "--name", name]);
    cmd.args(text);
    cmd
}

/// `charla listen --mode stream --room ROOM --json --count N` plus `extra` flags, run to its
/// end: the messages it printed.
fn listen_json(
    server: &KafkaServer,
    room: &str,
    count: usize,
    extra: &[&str],
) -> Vec<serde_json::Value> {
    let count = count.to_string();
    let mut cmd = charla(&server.url());
    cmd.args([
        "listen", "--mode", "stream", "--room", room, "--json", "--count", &count,
    ])
    .args(extra);
    json_lines(&ok(&run(&mut cmd, b"")))
}

fn texts(messages: &[serde_json::Value]) -> Vec<String> {
    messages
        .iter()
        .map(|v| v["mensaje"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn json_values(stdout: &str) -> Vec<serde_json::Value> {
    json_lines(stdout)
        .into_iter()
        .map(|line| {
            let value = line["value"].as_str().expect("value is a string");
            serde_json::from_str(value).unwrap_or_else(|e| panic!("value not JSON: {value}: {e}"))
        })
        .collect()
}

/// A kafkajs admin (node reads it on stdin, in compat/kafka): exits 0 once every group in
/// GROUP_IDS has committed an offset past the start of some partition of TOPIC, 1 after
/// TIMEOUT_MS saying which have not.
const COMMITTED_BY_EVERY_GROUP: &str = r#"
import { Kafka, logLevel } from 'kafkajs'
const admin = new Kafka({ brokers: process.env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING }).admin()
const deadline = Date.now() + Number(process.env.TIMEOUT_MS)
let waiting = process.env.GROUP_IDS.split(',')
let lastError = ''
await admin.connect()
while (waiting.length > 0) {
  const still = []
  for (const groupId of waiting) {
    try {
      const [offsets] = await admin.fetchOffsets({ groupId, topics: [process.env.TOPIC] })
      if (!offsets.partitions.some((p) => Number(p.offset) > 0)) still.push(groupId)
    } catch (e) {
      // A group the broker does not know yet: not there yet.
      lastError = ` (last error: ${e.message})`
      still.push(groupId)
    }
  }
  waiting = still
  if (waiting.length > 0) {
    if (Date.now() > deadline) {
      console.error(`no offset committed on ${process.env.TOPIC} by ${waiting.join(', ')}${lastError}`)
      process.exit(1)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
await admin.disconnect()
"#;

#[test]
fn charla_and_the_seeds_kafkajs_read_each_other() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let topic = unique_name("user-events-");
    // charla → the seed's consumer (group user-service, fromBeginning: true).
    ok(&run(
        &mut send_cmd(&server, &topic, "Juan", Some("Hola María!")),
        b"",
    ));
    let Some(mut consumer) = node(&["consumer.mjs"], &server) else {
        return;
    };
    let out = ok(&run(consumer.env("TOPIC", &topic).env("COUNT", "1"), b""));
    let got = json_values(&out);
    assert_eq!(got[0]["usuario"], "Juan");
    assert_eq!(got[0]["mensaje"], "Hola María!");
    assert_eq!(json_lines(&out)[0]["key"], topic.as_str(), "keyed by room");
    // The seed's producer (key user-123) → charla.
    let Some(mut producer) = node(&["producer.mjs"], &server) else {
        return;
    };
    ok(&run(
        producer
            .env("TOPIC", &topic)
            .env("CHAT_MESSAGE", "hola desde kafkajs"),
        b"",
    ));
    // Two keys, two partitions: no order between them.
    let mut got: Vec<(String, String)> = listen_json(&server, &topic, 2, &["--from-beginning"])
        .iter()
        .map(|v| {
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (field("usuario"), field("mensaje"))
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("Juan".to_owned(), "Hola María!".to_owned()),
            ("kafkajs".to_owned(), "hola desde kafkajs".to_owned())
        ]
    );
}

#[test]
fn charla_and_confluent_kafka_read_each_other() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let topic = unique_name("confluent-");
    let Some(mut produce) = confluent(
        &server,
        &["produce", "--topic", &topic, "--count", "5", "--chat"],
    ) else {
        return;
    };
    ok(&run(&mut produce, b""));
    let group = ["--group", "lectores"];
    let first = listen_json(
        &server,
        &topic,
        5,
        &[&group[..], &["--from-beginning"]].concat(),
    );
    assert_eq!(first.len(), 5);
    ok(&run(
        &mut send_cmd(&server, &topic, "Ana", None),
        b"uno\ndos\ntres\n",
    ));
    let Some(mut consume) = confluent(
        &server,
        &[
            "consume", "--topic", &topic, "--group", "py", "--count", "8",
        ],
    ) else {
        return;
    };
    let got = json_values(&ok(&run(&mut consume, b"")));
    let from_charla: Vec<&str> = got
        .iter()
        .filter(|v| v["usuario"] == "Ana")
        .filter_map(|v| v["mensaje"].as_str())
        .collect();
    assert_eq!(from_charla, ["uno", "dos", "tres"], "in order");
    // The group `lectores` committed what it read: it resumes with exactly charla's three.
    assert_eq!(
        texts(&listen_json(&server, &topic, 3, &group)),
        ["uno", "dos", "tres"]
    );
}

/// The seed's "Event Streaming (Kafka)" pattern as written, charla publishing: three
/// services in their own groups each get every order.
#[test]
fn the_seeds_event_streaming_pattern_with_charla_as_the_producer() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let topic = unique_name("orders-");
    // The topic exists before the services subscribe, as in a deployment.
    ok(&run(
        &mut send_cmd(&server, &topic, "api", None),
        b"order_created 1\n",
    ));
    let (Some(mut pattern), Some(mut joined)) = (
        node(&["event_streaming.mjs"], &server),
        node(&["--input-type=module", "-"], &server),
    ) else {
        return;
    };
    let services = pattern
        .env("TOPIC", &topic)
        .env("ORDERS", "3")
        .env("CHARLA_ORDERS_FROM_CHARLA", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    // The services are live before the next orders are sent: each group has read order 1
    // (the script's consumers commit after each batch), which it can do only once it has
    // joined its group and been given the partition.
    let waited = run(
        joined
            .env("TOPIC", &topic)
            .env("GROUP_IDS", "inventario,notificaciones,analytics"),
        COMMITTED_BY_EVERY_GROUP.as_bytes(),
    );
    if !waited.status.success() {
        let services = wait(services, Duration::from_secs(60));
        panic!(
            "the services did not all read the first order\n--- waiting\n{}\n--- services\n{}{}",
            text(&waited.stderr),
            text(&services.stdout),
            text(&services.stderr)
        );
    }
    ok(&run(
        &mut send_cmd(&server, &topic, "api", None),
        b"order_created 2\norder_created 3\n",
    ));
    let out = ok(&wait(services, Duration::from_secs(60)));
    for service in ["inventario", "notificaciones", "analytics"] {
        assert!(out.contains(&format!("{service}: 3 orders")), "{out}");
    }
}

/// The seed's pattern exactly as written (kafkajs publishing and consuming), only the broker
/// address changed: it runs against the test broker.
#[test]
fn the_seeds_event_streaming_pattern_runs_as_written() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let Some(mut pattern) = node(&["event_streaming.mjs"], &server) else {
        return;
    };
    let out = ok(&run(
        pattern
            .env("TOPIC", unique_name("orders-"))
            .env("ORDERS", "3"),
        b"",
    ));
    for service in ["inventario", "notificaciones", "analytics"] {
        assert!(out.contains(&format!("{service}: 3 orders")), "{out}");
    }
}

/// charla's own listeners as the seed's three services: one producer, three groups, every
/// group gets every event.
#[test]
fn three_charla_services_in_their_own_groups_each_get_every_event() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let topic = unique_name("orders-");
    ok(&run(
        &mut send_cmd(&server, &topic, "api", None),
        b"order 1\norder 2\norder 3\n",
    ));
    for group in ["inventario", "notificaciones", "analytics"] {
        let got = listen_json(&server, &topic, 3, &["--group", group, "--from-beginning"]);
        assert_eq!(texts(&got), ["order 1", "order 2", "order 3"], "{group}");
    }
}

#[test]
fn bad_input_ends_in_one_clear_line() {
    // An unreachable broker.
    let port = charla_testkit::free_port();
    let out = run(
        charla(&format!("kafka://127.0.0.1:{port}")).args(["send", "hola"]),
        b"",
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let Some(server) = KafkaServer::start() else {
        return;
    };
    // A topic name Kafka refuses.
    let out = run(
        charla(&server.url()).args(["send", "--room", "sala de espera", "hola"]),
        b"",
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("cannot be a Kafka topic"), "{err}");
    // A message over the size limit: refused before it is sent, nothing else is lost.
    let room = unique_name("big-");
    let big = "x".repeat(2 * 1024 * 1024);
    let out = run(
        &mut send_cmd(&server, &room, "a", None),
        format!("antes\n{big}\ndespués\n").as_bytes(),
    );
    assert!(!out.status.success(), "an oversized line fails the run");
    let err = text(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(
        texts(&listen_json(&server, &room, 2, &["--from-beginning"])),
        ["antes", "después"]
    );
    // Another client's JSON event on the topic: shown (the object itself with --json) and
    // counted like a message, not dropped; the chat message after it arrives too.
    let topic = unique_name("mixed-");
    let Some(mut producer) = node(&["producer.mjs"], &server) else {
        return;
    };
    // The seed's user_created event, then a chat message under the same key (user-123): one
    // partition, so the group meets the foreign record first.
    ok(&run(producer.env("TOPIC", &topic), b""));
    ok(&run(producer.env("CHAT_MESSAGE", "ok"), b""));
    let out = run(
        charla(&server.url()).args([
            "listen",
            "--mode",
            "stream",
            "--room",
            &topic,
            "--group",
            "g",
            "--from-beginning",
            "--json",
            "--count",
            "2",
        ]),
        b"",
    );
    let got = json_lines(&ok(&out));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["type"], "user_created", "{got:?}");
    assert_eq!(got[0]["userId"], 123, "{got:?}");
    assert_eq!(texts(&got[1..]), ["ok"]);
    assert!(
        !text(&out.stderr).contains("not a chat message"),
        "{}",
        text(&out.stderr)
    );
}

/// `--partitions N` sets the partitions of the topics charla creates; `check` shows them.
#[test]
fn partitions_come_from_a_flag_and_check_lists_the_topics() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let room = unique_name("wide-");
    ok(&run(
        send_cmd(&server, &room, "a", Some("hola")).args(["--partitions", "5"]),
        b"",
    ));
    let out = ok(&run(charla(&server.url()).arg("check"), b""));
    assert!(out.contains(&format!("{room} (5 partitions)")), "{out}");
    let refused = run(
        charla("redis://127.0.0.1:1").args(["check", "--partitions", "5"]),
        b"",
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("kafka:// brokers only"),
        "{}",
        text(&refused.stderr)
    );
}
