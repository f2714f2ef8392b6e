//! `charla web` end to end: two gateway processes on one `charla serve`, pages as real
//! WebSocket clients, the HTTP API over plain HTTP. What a page sees went through the broker.

mod common;

use std::time::Duration;

use charla_testkit::{unique_name, RedisServer};
use common::web::{texts, Gateway, Page};

const LONG: Duration = Duration::from_secs(20);

fn broker() -> RedisServer {
    RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[])
}

/// Test gateways: limits raised so a test can post quickly through the API.
const FAST: &[&str] = &["--rate", "100000", "--burst", "100000"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_a_room_in_order() {
    let server = broker();
    let a = Gateway::start(&server.url(), FAST);
    let b = Gateway::start(&server.url(), FAST);
    let room = unique_name("web");
    let mut beto = Page::open(&b.ws_url(&room, "Beto")).await;
    let hello = beto.until("hello", LONG).await;
    assert_eq!(hello["room"], room.as_str());
    beto.until("history", LONG).await;
    let mut ana = Page::open(&a.ws_url(&room, "Ana")).await;
    ana.until("history", LONG).await;

    for i in 0..20 {
        let (code, body) = a.post(&room, "Ana", &format!("api {i}"));
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["usuario"], "Ana");
        assert_eq!(body["room"], room.as_str());
    }
    ana.say("por websocket").await;
    let expected: Vec<String> = (0..20)
        .map(|i| format!("api {i}"))
        .chain(["por websocket".to_string()])
        .collect();
    assert_eq!(
        beto.messages(21, LONG).await,
        expected,
        "gateway B shows A's messages in order"
    );
    assert_eq!(
        ana.messages(21, LONG).await,
        expected,
        "and A its own, once each"
    );
}

/// The gateway writes a room's frames straight to the page's socket while tungstenite answers
/// the page's pings on the same socket: every pong must land between two frames, never inside
/// one, and every message arrive whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_between_messages() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Ws;
    let server = broker();
    let a = Gateway::start(&server.url(), FAST);
    let room = unique_name("ping");
    let mut page = Page::open(&a.ws_url(&room, "Pinga")).await;
    page.until("history", LONG).await;
    const N: usize = 1500;
    let sender = a.post_numbered(&room, N, 3000);
    let (mut got, mut pings, mut pongs) = (0usize, 0u32, Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while got < N {
        let frame = tokio::time::timeout_at(deadline, page.ws.next())
            .await
            .unwrap_or_else(|_| panic!("only {got} of {N} messages within 120 s"));
        match frame {
            Some(Ok(Ws::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("whole JSON");
                if v["type"] != "message" {
                    continue;
                }
                let text = v["message"]["mensaje"].as_str().unwrap_or_default();
                assert!(
                    text.starts_with(&format!("{got} ")),
                    "message {got} out of order"
                );
                got += 1;
                if got % 10 == 0 {
                    pings += 1;
                    let payload = pings.to_be_bytes().to_vec();
                    page.ws.send(Ws::Ping(payload.into())).await.expect("ping");
                }
            }
            Some(Ok(Ws::Pong(p))) => pongs.push(p.to_vec()),
            Some(Ok(_)) => {}
            other => panic!("the socket broke after {got} messages: {other:?}"),
        }
    }
    sender.join().expect("sender");
    // The last pings' pongs may still be on their way.
    while pongs.len() < pings as usize {
        match tokio::time::timeout(LONG, page.ws.next()).await {
            Ok(Some(Ok(Ws::Pong(p)))) => pongs.push(p.to_vec()),
            Ok(Some(Ok(_))) => {}
            other => panic!("{} of {pings} pongs, then {other:?}", pongs.len()),
        }
    }
    let expected: Vec<Vec<u8>> = (1..=pings).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(pongs, expected, "one pong per ping, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_join_then_live_and_paging() {
    let server = broker();
    let a = Gateway::start(&server.url(), FAST);
    let room = unique_name("hist");
    for i in 0..60 {
        assert_eq!(a.post(&room, "Ana", &format!("m{i:02}")).0, 201);
    }
    let mut page = Page::open(&a.ws_url(&room, "Beto")).await;
    let history = page.until("history", LONG).await;
    let last_50: Vec<String> = (10..60).map(|i| format!("m{i:02}")).collect();
    assert_eq!(texts(&history), last_50, "the last 50, oldest first");
    assert_eq!(a.post(&room, "Ana", "after").0, 201);
    assert_eq!(
        page.messages(1, LONG).await,
        vec!["after"],
        "then live, no repeat"
    );

    let (code, body) = a.get(&format!("/api/rooms/{room}/messages?limit=5"));
    assert_eq!(code, 200, "{body}");
    let mut seen = texts(&body);
    assert_eq!(seen, ["m56", "m57", "m58", "m59", "after"]);
    // Walk back with before=ID to the first message: no gap, no overlap.
    let mut oldest = body["messages"][0]["id"].as_str().expect("id").to_owned();
    loop {
        let (code, body) = a.get(&format!(
            "/api/rooms/{room}/messages?limit=7&before={oldest}"
        ));
        assert_eq!(code, 200, "{body}");
        let mut older = texts(&body);
        if older.is_empty() {
            break;
        }
        older.append(&mut seen);
        seen = older;
        oldest = body["messages"][0]["id"].as_str().expect("id").to_owned();
    }
    let all: Vec<String> = (0..60)
        .map(|i| format!("m{i:02}"))
        .chain(["after".to_string()])
        .collect();
    assert_eq!(seen, all);

    let (code, body) = a.get("/api/rooms");
    assert_eq!(code, 200);
    assert!(
        body["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .any(|r| r["room"] == room.as_str()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_across_gateways_and_a_killed_gateway_drops_out() {
    let server = broker();
    let a = Gateway::start(&server.url(), FAST);
    let mut b = Gateway::start(&server.url(), FAST);
    let room = unique_name("who");
    let mut ana = Page::open(&a.ws_url(&room, "Ana")).await;
    ana.until("history", LONG).await;
    let mut beto = Page::open(&b.ws_url(&room, "Beto")).await;
    let online = beto.until("online", LONG).await;
    assert!(online["names"]
        .as_array()
        .expect("names")
        .iter()
        .any(|n| n == "Beto"));
    let joined = ana.until("presence", LONG).await;
    assert_eq!(
        (joined["event"].as_str(), joined["name"].as_str()),
        (Some("join"), Some("Beto")),
        "a page hears others join, not itself"
    );
    // Beto's gateway dies without a word: Beto drops out within seconds.
    b.child.kill().expect("kill -9 gateway B");
    let started = std::time::Instant::now();
    let left = ana.until("presence", LONG).await;
    assert_eq!(
        (left["event"].as_str(), left["name"].as_str()),
        (Some("leave"), Some("Beto"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(beto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_answer() {
    let server = broker();
    let a = Gateway::start(
        &server.url(),
        &["--max-message-bytes", "100", "--rate", "2", "--burst", "3"],
    );
    let room = unique_name("bad");
    let (code, body) = a.post(&room, "Ana", &"x".repeat(101));
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("limit is 100")),
        "{body}"
    );
    let (code, body) = a.post("no spaces", "Ana", "hola");
    assert_eq!(code, 400, "{body}");
    let (code, body) = a.post(&room, "a\u{1b}[2J", "hola");
    assert_eq!(code, 400, "{body}");
    let (code, _) = common::web::http(
        a.port,
        "POST",
        &format!("/api/rooms/{room}/messages"),
        Some("{not json"),
    )
    .expect("answer");
    assert_eq!(code, 400);
    let (code, body) = a.get(&format!("/api/rooms/{room}/messages?limit=0"));
    assert_eq!(code, 400, "{body}");
    let (code, body) = a.get(&format!("/api/rooms/{room}/messages?q=hola"));
    assert_eq!(code, 501, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("--archive")),
        "{body}"
    );
    let (code, _) =
        common::web::http(a.port, "GET", "/ws?room=a%20b&name=x", None).expect("answer");
    assert_eq!(code, 400);
    // A plain GET of the WebSocket address: told what it takes.
    let (code, body) =
        common::web::http(a.port, "GET", "/ws?room=ok&name=x", None).expect("answer");
    assert_eq!(code, 426, "{body}");
    assert!(body.contains("WebSocket"), "{body}");

    // A page: an over-long message and a burst over the rate are refused, the socket stays.
    let mut page = Page::open(&a.ws_url(&room, "Ana")).await;
    page.until("history", LONG).await;
    page.say(&"y".repeat(101)).await;
    let refused = page.until("error", LONG).await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("limit is 100")),
        "{refused}"
    );
    for i in 0..6 {
        page.say(&format!("r{i}")).await;
    }
    let too_fast = page.until("error", LONG).await;
    assert!(
        too_fast["error"]
            .as_str()
            .is_some_and(|e| e.contains("too fast")),
        "{too_fast}"
    );
    let got = page.messages(3, LONG).await;
    assert_eq!(
        got,
        ["r0", "r1", "r2"],
        "the burst of 3 went through, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_does_not_read_is_dropped_and_the_others_get_everything() {
    let server = broker();
    let a = Gateway::start(
        &server.url(),
        &[
            "--rate",
            "100000",
            "--burst",
            "100000",
            "--page-backlog",
            "256",
        ],
    );
    let room = unique_name("slow");
    let mut fast = Page::open(&a.ws_url(&room, "Rapido")).await;
    fast.until("history", LONG).await;
    let mut slow = Page::open(&a.ws_url(&room, "Lento")).await;
    slow.until("history", LONG).await;
    // 4000 messages of ~4 KB, posted one by one: more than the loopback socket buffers (a few
    // MB each way) and the page backlog hold, at a pace a reading page keeps up with.
    const N: usize = 4000;
    let sender = a.post_numbered(&room, N, 4000);
    let got = fast.messages(N, Duration::from_secs(120)).await;
    for (i, t) in got.iter().enumerate() {
        assert!(t.starts_with(&format!("{i} ")), "message {i} out of order");
    }
    sender.join().expect("sender");
    // The slow page now reads: some messages, then the close frame with the reason.
    let mut closed = None;
    while let Some(frame) = slow.next(LONG).await {
        if frame["type"] == "close" {
            closed = Some(frame);
            break;
        }
    }
    let closed = closed.expect("the slow page was closed");
    assert_eq!(closed["code"], 1008, "{closed}");
    assert!(
        closed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("too slow")),
        "{closed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pages_on_two_gateways_get_every_message() {
    const PAGES: usize = 40;
    const MESSAGES: usize = 200;
    let server = broker();
    let gateways = [
        Gateway::start(&server.url(), FAST),
        Gateway::start(&server.url(), FAST),
    ];
    let room = unique_name("load");
    let mut pages = Vec::new();
    for i in 0..PAGES {
        let mut p = Page::open(&gateways[i % 2].ws_url(&room, &format!("p{i}"))).await;
        p.until("history", LONG).await;
        pages.push(p);
    }
    for i in 0..MESSAGES {
        let (code, body) = gateways[i % 2].post(&room, "bot", &format!("n{i}"));
        assert_eq!(code, 201, "{body}");
    }
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("n{i}")).collect();
    let readers = pages.into_iter().map(|mut p| {
        let expected = expected.clone();
        tokio::spawn(async move {
            assert_eq!(
                p.messages(MESSAGES, Duration::from_secs(60)).await,
                expected
            );
        })
    });
    for r in readers {
        r.await.expect("every page got every message in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_the_pages_and_exits() {
    let server = broker();
    let mut a = Gateway::start(&server.url(), FAST);
    let mut page = Page::open(&a.ws_url(&unique_name("bye"), "Ana")).await;
    page.until("history", LONG).await;
    common::signal(&a.child, "TERM");
    let closed = page.until("close", LONG).await;
    assert_eq!(closed["code"], 1001, "{closed}");
    assert!(
        closed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("shutting down")),
        "{closed}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = a.child.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The chat over another broker: history on joining, live messages in order through the
/// other gateway, and presence, as on `charla serve`.
async fn one_room_over(broker_url: &str) {
    let a = Gateway::start(broker_url, FAST);
    let b = Gateway::start(broker_url, FAST);
    let room = unique_name("xb");
    for i in 0..5 {
        let (code, body) = a.post(&room, "Ana", &format!("h{i}"));
        assert_eq!(code, 201, "{body}");
    }
    let mut beto = Page::open(&b.ws_url(&room, "Beto")).await;
    let history = beto.until("history", LONG).await;
    assert_eq!(
        texts(&history),
        ["h0", "h1", "h2", "h3", "h4"],
        "history on joining"
    );
    let mut ana = Page::open(&a.ws_url(&room, "Ana")).await;
    ana.until("history", LONG).await;
    let joined = beto.until("presence", LONG).await;
    assert_eq!(joined["name"], "Ana", "{joined}");
    for i in 0..10 {
        assert_eq!(b.post(&room, "Beto", &format!("l{i}")).0, 201);
    }
    let expected: Vec<String> = (0..10).map(|i| format!("l{i}")).collect();
    assert_eq!(ana.messages(10, LONG).await, expected);
    assert_eq!(beto.messages(10, LONG).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_room_over_rabbitmq() {
    if !charla_testkit::rabbitmq::rabbitmq_available().await {
        return;
    }
    let _shared = charla_testkit::rabbitmq::shared_use();
    one_room_over(&charla_testkit::rabbitmq::amqp_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_room_over_kafka() {
    let Some(kafka) = charla_testkit::KafkaServer::start() else {
        return;
    };
    one_room_over(&kafka.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_is_shown_and_what_pages_post_meanwhile_arrives_once() {
    let mut server = RedisServer::start_charla(
        std::path::Path::new(env!("CARGO_BIN_EXE_charla")),
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    let a = Gateway::start(&server.url(), FAST);
    let b = Gateway::start(&server.url(), FAST);
    let room = unique_name("restart");
    let mut ana = Page::open(&a.ws_url(&room, "Ana")).await;
    let first = ana.until("status", LONG).await;
    assert_eq!(first["connected"], true, "the joining status: {first}");
    let mut beto = Page::open(&b.ws_url(&room, "Beto")).await;
    beto.until("history", LONG).await;
    ana.say("antes").await;
    assert_eq!(beto.messages(1, LONG).await, ["antes"]);

    server.kill();
    let down = ana.until("status", LONG).await;
    assert_eq!(down["connected"], false, "{down}");
    for i in 0..3 {
        ana.say(&format!("durante {i}")).await;
    }
    server.restart();
    let up = ana.until("status", LONG).await;
    assert_eq!(up["connected"], true, "{up}");
    let expected = ["durante 0", "durante 1", "durante 2"];
    assert_eq!(
        beto.messages(3, Duration::from_secs(40)).await,
        expected,
        "in order, once"
    );
    assert_eq!(
        ana.messages(4, LONG).await[1..],
        expected,
        "the poster sees them too"
    );
    // Nothing more (no second copy) arrives.
    assert_eq!(
        beto.next(Duration::from_millis(1500))
            .await
            .map(|f| f["type"].clone())
            .filter(|t| t == "message"),
        None
    );
}

/// A page joining leaves nothing on the gateway's stderr but its log lines (a debug print of
/// the session's size used to go out on every join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_prints_no_debug_line() {
    let server = broker();
    let a = Gateway::start(&server.url(), FAST);
    let room = unique_name("quiet");
    for name in ["Ana", "Beto"] {
        let mut page = Page::open(&a.ws_url(&room, name)).await;
        page.until("history", LONG).await;
    }
    // Both joins are logged ("page joined") before their first frame is written.
    let log = a.log_text();
    assert_eq!(log.matches("page joined").count(), 2, "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("SIZE")),
        "a debug line on stderr:\n{log}"
    );
}
