//! The PostgreSQL archive end to end: `charla web --archive` and `charla archive` against
//! real PostgreSQL — a private server this test stops and starts (never the shared one), or a
//! scratch database on the shared one — and `charla serve` as the broker.

mod common;

use std::time::{Duration, Instant};

use charla_archive::Archive;
use charla_testkit::{unique_name, PostgresServer, RedisServer, ScratchDatabase};
use common::web::{texts, Gateway, Page};

const LONG: Duration = Duration::from_secs(30);
const FAST: [&str; 4] = ["--rate", "100000", "--burst", "100000"];

fn broker() -> RedisServer {
    RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[])
}

/// Wait until the archive holds `n` messages of `room` (and as many distinct ids).
async fn archived(archive: &Archive, room: &str, n: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let count = archive.count(room).await.unwrap_or((-1, -1));
        if count == (n, n) {
            return;
        }
        assert!(count.0 <= n, "more rows than messages: {count:?}");
        assert!(
            Instant::now() < deadline,
            "the archive has {count:?} of {n} messages of {room}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_chat_goes_on_while_postgres_is_down_and_the_archive_catches_up() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let server = broker();
    let url = pg.url("charla");
    let mut args = vec!["--archive", url.as_str()];
    args.extend(FAST);
    let gw = Gateway::start(&server.url(), &args);
    let archive = Archive::open(&url)
        .await
        .expect("the gateway created the archive");
    let room = unique_name("arch");
    let mut page = Page::open(&gw.ws_url(&room, "Ana")).await;
    let hello = page.until("hello", LONG).await;
    assert_eq!(hello["archive"], true);
    // In the room from its history on (the hello comes first, even with the broker away).
    page.until("history", LONG).await;

    for i in 0..20 {
        assert_eq!(gw.post(&room, "Ana", &format!("antes {i}")).0, 201);
    }
    archived(&archive, &room, 20, LONG).await;

    pg.stop();
    let (code, health) = gw.get("/healthz");
    assert_eq!(
        (code, health["archive"].as_str()),
        (200, Some("unreachable")),
        "{health}"
    );
    for i in 0..30 {
        let (code, body) = gw.post(&room, "Beto", &format!("durante el corte {i}"));
        assert_eq!(code, 201, "posting does not wait for the archive: {body}");
    }
    let live = page.messages(50, LONG).await;
    assert_eq!(live.len(), 50, "live delivery went on");
    let (code, body) = gw.get(&format!("/api/rooms/{room}/messages?q=corte"));
    assert_eq!(
        code, 503,
        "a search while the archive is down says so: {body}"
    );

    pg.start_again();
    archived(&archive, &room, 50, Duration::from_secs(60)).await;
    let (code, body) = gw.get(&format!("/api/rooms/{room}/messages?q=corte&limit=1000"));
    assert_eq!(code, 200, "{body}");
    let found = texts(&body);
    let expected: Vec<String> = (0..30).map(|i| format!("durante el corte {i}")).collect();
    assert_eq!(
        found, expected,
        "search finds each message of the outage once, in order"
    );
    // Paging back from the archive with before=ID.
    let first_id = body["messages"][0]["id"].as_str().expect("id").to_owned();
    let (code, older) = gw.get(&format!(
        "/api/rooms/{room}/messages?limit=5&before={first_id}"
    ));
    assert_eq!(code, 200, "{older}");
    assert_eq!(
        texts(&older),
        (15..20).map(|i| format!("antes {i}")).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archivers_share_a_room_and_a_killed_one_loses_nothing() {
    let Some(db) = ScratchDatabase::new() else {
        return;
    };
    let server = broker();
    let room = unique_name("group");
    let url = db.url();
    let start = || {
        let mut cmd = common::charla(&server.url());
        let log = std::fs::File::create(
            common::sandbox().join(format!("archive-{}.log", unique_name(""))),
        )
        .expect("log");
        cmd.args(["archive", "--archive", &url, "--room", &room])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log);
        common::KillOnDrop(cmd.spawn().expect("charla archive"))
    };
    let mut first = start();
    let _second = start();
    let archive = loop {
        // The first archiver creates the database; wait for it.
        if let Ok(a) = Archive::open(&url).await {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lines: String = (0..3000).map(|i| format!("m {i}\n")).collect();
    let mut send = common::charla(&server.url());
    send.args([
        "send", "--mode", "stream", "--room", &room, "--name", "bot", "--quiet",
    ]);
    let sent = std::thread::spawn(move || common::ok(&common::run(&mut send, lines.as_bytes())));
    // Kill one archiver while the messages are coming in.
    let deadline = Instant::now() + LONG;
    while archive.count(&room).await.map(|c| c.0).unwrap_or(0) < 500 {
        assert!(Instant::now() < deadline, "the archivers do not archive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.0.kill().expect("kill -9 one archiver");
    sent.join().expect("sent");
    // The survivor takes over what the dead one held (the group's pending entries).
    archived(&archive, &room, 3000, Duration::from_secs(90)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_room_gets_its_history_from_the_archive() {
    let Some(db) = ScratchDatabase::new() else {
        return;
    };
    let server = broker();
    let url = db.url();
    let mut args = vec!["--mode", "broadcast", "--archive", url.as_str()];
    args.extend(FAST);
    let gw = Gateway::start(&server.url(), &args);
    let archive = Archive::open(&url).await.expect("archive");
    let room = unique_name("bcast");
    // Someone is in the room (a broadcast room keeps nothing for latecomers).
    let mut ana = Page::open(&gw.ws_url(&room, "Ana")).await;
    ana.until("history", LONG).await;
    for i in 0..5 {
        assert_eq!(gw.post(&room, "Ana", &format!("b{i}")).0, 201);
    }
    assert_eq!(ana.messages(5, LONG).await.len(), 5);
    archived(&archive, &room, 5, LONG).await;
    let mut beto = Page::open(&gw.ws_url(&room, "Beto")).await;
    let history = beto.until("history", LONG).await;
    assert_eq!(texts(&history), ["b0", "b1", "b2", "b3", "b4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_rooms_are_archived_from_the_live_feed() {
    // RabbitMQ has no stream consumer groups over AMQP 0.9.1: the gateway archives what its
    // room feed hears.
    if !charla_testkit::rabbitmq::rabbitmq_available().await {
        return;
    }
    let _shared = charla_testkit::rabbitmq::shared_use();
    let Some(db) = ScratchDatabase::new() else {
        return;
    };
    let url = db.url();
    let mut args = vec!["--archive", url.as_str()];
    args.extend(FAST);
    let gw = Gateway::start(&charla_testkit::rabbitmq::amqp_url(), &args);
    let archive = Archive::open(&url).await.expect("archive");
    let room = unique_name("amqparch");
    let mut page = Page::open(&gw.ws_url(&room, "Ana")).await;
    page.until("history", LONG).await;
    for i in 0..10 {
        assert_eq!(gw.post(&room, "Ana", &format!("r{i}")).0, 201);
    }
    archived(&archive, &room, 10, LONG).await;
    let (code, body) = gw.get(&format!("/api/rooms/{room}/messages?q=r3"));
    assert_eq!(
        (code, texts(&body)),
        (200, vec!["r3".to_string()]),
        "{body}"
    );
}
