//! Interop with a client charla did not write: pika (Python), run as a subprocess.
//! - pika reads what charla publishes to a queue (the JSON keeps the seed's fields);
//! - charla reads what pika publishes (a seed-style `{"usuario","mensaje","hora"}`);
//! - a queue pika declared first (plain durable, no charla arguments) is used by charla as
//!   is, and a poison message there still goes to `<room>.dead`.

mod common;

use std::process::Command;
use std::time::Duration;

use charla_amqp::AmqpBroker;
use charla_core::{Broker, Message, Mode, Subscription};

const PIKA_SCRIPT: &str = r#"
import json, os, sys
import pika

params = pika.URLParameters(os.environ["AMQP_URL"])
conn = pika.BlockingConnection(params)
ch = conn.channel()
action = sys.argv[1]
room = os.environ["ROOM"]
if action == "read":
    # The queue charla declared: a passive declare finds it whatever its arguments.
    ch.queue_declare(queue=room, passive=True)
    want = int(os.environ["COUNT"])
    got = 0
    for method, props, body in ch.consume(room, inactivity_timeout=10):
        if method is None:
            break
        m = json.loads(body)
        print(json.dumps({"usuario": m["usuario"], "mensaje": m["mensaje"], "hora": m["hora"],
                          "persistent": props.delivery_mode == 2}, ensure_ascii=False))
        ch.basic_ack(method.delivery_tag)
        got += 1
        if got == want:
            break
    ch.cancel()
elif action == "send":
    ch.queue_declare(queue=room, passive=True)
    body = json.dumps({"usuario": "Juan", "mensaje": "¡Hola desde pika!", "hora": "14:30:25"},
                      ensure_ascii=False)
    ch.basic_publish(exchange="", routing_key=room, body=body.encode(),
                     properties=pika.BasicProperties(delivery_mode=2))
elif action == "declare_plain":
    # What a plain client (the seed's style) does: a durable queue without arguments.
    ch.queue_declare(queue=room, durable=True)
    ch.basic_publish(exchange="", routing_key=room, body=b"not json at all",
                     properties=pika.BasicProperties(delivery_mode=2))
    body = json.dumps({"usuario": "Ana", "mensaje": "cola simple", "hora": "09:00:00"})
    ch.basic_publish(exchange="", routing_key=room, body=body.encode(),
                     properties=pika.BasicProperties(delivery_mode=2))
conn.close()
"#;

fn pika(action: &str, room: &str, count: usize) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PIKA_SCRIPT)
        .arg(action)
        .env("AMQP_URL", common::url_text())
        .env("ROOM", room)
        .env("COUNT", count.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "pika {action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 from pika")
}

fn pika_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pika"])
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        charla_testkit::service_missing("python3 with pika (pip install pika)");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_reads_charla_and_charla_reads_pika() {
    let Some(_lock) = common::rabbitmq_available().await else {
        return;
    };
    if !pika_available() {
        return;
    }
    let b = AmqpBroker::connect(&common::url()).await.expect("connect");
    let room = charla_testkit::unique_name("interop-");

    // charla → pika
    let mut p = b.publisher(Mode::Queue, &room).await.unwrap();
    let sent: Vec<Message> = ["Hola María", "¿Qué tal? 👋", "adiós"]
        .iter()
        .map(|t| Message::new("Zoë", *t, room.as_str()))
        .collect();
    for m in &sent {
        p.publish(m).await.unwrap();
    }
    let lines = tokio::task::spawn_blocking({
        let room = room.clone();
        move || pika("read", &room, 3)
    })
    .await
    .unwrap();
    let read: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line from pika"))
        .collect();
    assert_eq!(read.len(), 3, "pika read every message: {lines}");
    for (m, r) in sent.iter().zip(&read) {
        assert_eq!(r["usuario"], "Zoë");
        assert_eq!(r["mensaje"], m.mensaje.as_str());
        assert_eq!(r["hora"], m.hora.as_str());
        assert_eq!(
            r["persistent"], true,
            "charla publishes persistent messages"
        );
    }

    // pika → charla
    let mut sub = b
        .subscribe(Subscription::new(Mode::Queue, room.as_str()))
        .await
        .unwrap();
    tokio::task::spawn_blocking({
        let room = room.clone();
        move || pika("send", &room, 1)
    })
    .await
    .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("pika's message arrives")
        .unwrap();
    assert_eq!(d.message.usuario, "Juan");
    assert_eq!(d.message.mensaje, "¡Hola desde pika!");
    assert_eq!(d.message.hora, "14:30:25");
    assert_eq!(d.message.room, room);
    assert_eq!(
        d.message.id.len(),
        26,
        "an id is assigned to a seed message"
    );
    sub.ack(d.tag).await.unwrap();
    sub.close().await.unwrap();
    b.purge(Mode::Queue, &room).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_pika_declared_plain_is_used_as_is() {
    let Some(_lock) = common::rabbitmq_available().await else {
        return;
    };
    if !pika_available() {
        return;
    }
    let b = AmqpBroker::connect(&common::url()).await.expect("connect");
    let room = charla_testkit::unique_name("plain-");
    tokio::task::spawn_blocking({
        let room = room.clone();
        move || pika("declare_plain", &room, 0)
    })
    .await
    .unwrap();
    // charla's declaration (with dead-letter arguments) does not match: it falls back.
    let mut sub = b
        .subscribe(Subscription::new(Mode::Queue, room.as_str()))
        .await
        .expect("subscribe to a plain queue");
    let d = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("the good message arrives")
        .unwrap();
    assert_eq!(d.message.usuario, "Ana");
    sub.ack(d.tag).await.unwrap();
    let dead = b.dead_letters(&room, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "the poison went to {room}.dead");
    assert_eq!(dead[0].payload, b"not json at all");
    // Publishing to it works too.
    let mut p = b.publisher(Mode::Queue, &room).await.expect("publisher");
    let m = Message::new("charla", "sobre cola simple", room.as_str());
    p.publish(&m).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("arrives")
        .unwrap();
    assert_eq!(d.message.id, m.id);
    sub.ack(d.tag).await.unwrap();
    sub.close().await.unwrap();
    b.purge(Mode::Queue, &room).await.unwrap();
}
