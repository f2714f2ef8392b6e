//! What `charla web` asks of its broker (issue 18, findings 2, 6 and 7): rooms share a few
//! broker connections and are bounded in number, a broker that is away is answered at once
//! rather than waited for, and a page of history costs a read, not a search.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use charla_testkit::{unique_name, RedisServer};
use common::redis_cli;
use common::web::{texts, Gateway, Page};

const LONG: Duration = Duration::from_secs(20);

/// The headers of a WebSocket handshake.
const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// One request (`extra`: more header lines); (status, head, body).
fn request_with(
    port: u16,
    method: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> (u16, String, String) {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    common::web::request_on(tcp, "127.0.0.1", method, path, extra, body)
}

fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String, String) {
    request_with(port, method, path, "", body)
}

fn connected_clients(port: u16) -> usize {
    redis_cli(port, &["INFO", "clients"])
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients")
}

/// Pages in hundreds of rooms: the gateway reads them over a handful of Redis connections
/// (it used to open one per room, and 10 000 rooms took Redis to `maxclients`), joining costs
/// the broker no key, live messages still arrive at once, the rooms are bounded in number
/// (one more is refused with the reason), and the room list stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_rooms_share_a_few_broker_connections_and_are_bounded() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    const ROOMS: usize = 250;
    let gateway = Gateway::start(
        &server.url(),
        &[
            "--max-rooms",
            &ROOMS.to_string(),
            "--max-connections-per-ip",
            "0",
        ],
    );
    let prefix = unique_name("many");
    let mut pages = Vec::new();
    for i in 0..ROOMS {
        let mut page = Page::open(&gateway.ws_url(&format!("{prefix}-{i}"), "Ana")).await;
        page.until("history", LONG).await;
        pages.push(page);
    }
    let clients = connected_clients(server.port());
    assert!(
        clients <= 20,
        "{clients} Redis connections for {ROOMS} rooms (one per room before)"
    );
    assert_eq!(
        redis_cli(server.port(), &["DBSIZE"]).trim(),
        "0",
        "joining rooms created keys on the broker"
    );

    // Live delivery through the shared waits, in a room in the middle and the last one.
    for i in [ROOMS / 2, ROOMS - 1] {
        let room = format!("{prefix}-{i}");
        let started = Instant::now();
        assert_eq!(gateway.post(&room, "Beto", &format!("hola {i}")).0, 201);
        assert_eq!(pages[i].messages(1, LONG).await, [format!("hola {i}")]);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "a message took {:?} to reach its page",
            started.elapsed()
        );
    }

    // One room more than --max-rooms: refused before the handshake, with the reason.
    let (code, _, body) = request_with(
        gateway.port,
        "GET",
        &format!("/ws?room={prefix}-extra&name=Ana"),
        UPGRADE,
        "",
    );
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("most rooms"), "{body}");
    // A room already served still takes pages.
    let mut again = Page::open(&gateway.ws_url(&format!("{prefix}-0"), "Carla")).await;
    again.until("history", LONG).await;

    let (code, list) = gateway.get("/api/rooms");
    assert_eq!(code, 200);
    let listed = list["rooms"].as_array().expect("rooms").len();
    assert!(listed <= 200, "{listed} rooms listed");
    assert!(
        list["total"].as_u64().unwrap_or(0) >= ROOMS as u64,
        "{}",
        list["total"]
    );

    // Broadcast mode: the rooms' channels share one pub/sub connection.
    let before = connected_clients(server.port());
    let live = Gateway::start(
        &server.url(),
        &["--mode", "broadcast", "--max-connections-per-ip", "0"],
    );
    let mut live_pages = Vec::new();
    for i in 0..100 {
        let mut page = Page::open(&live.ws_url(&format!("{prefix}-b{i}"), "Ana")).await;
        page.until("history", LONG).await;
        live_pages.push(page);
    }
    let added = connected_clients(server.port()) - before;
    assert!(
        added <= 10,
        "a broadcast gateway with 100 rooms holds {added} Redis connections"
    );
    assert_eq!(
        live.post(&format!("{prefix}-b42"), "Beto", "en vivo").0,
        201
    );
    assert_eq!(live_pages[42].messages(1, LONG).await, ["en vivo"]);
}

/// While the broker is away the gateway answers at once: a new page gets its hello and a
/// "broker away" status, the API answers 503 with Retry-After (it used to give a page
/// nothing, and hang `/api/rooms`, until the broker came back). Once it is back the page
/// gets its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_away_is_answered_at_once() {
    let mut server = RedisServer::start_charla(
        std::path::Path::new(env!("CARGO_BIN_EXE_charla")),
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    let gateway = Gateway::start(&server.url(), &[]);
    let room = unique_name("away");
    assert_eq!(gateway.post(&room, "Ana", "antes").0, 201);
    server.kill();
    charla_testkit::wait_until("the gateway noticed", LONG, || {
        common::web::http(gateway.port, "GET", "/healthz", None)
            .map(|(code, _)| code == 503)
            .unwrap_or(false)
    });

    let started = Instant::now();
    let mut page = Page::open(&gateway.ws_url(&room, "Beto")).await;
    let hello = page.until("hello", LONG).await;
    assert_eq!(hello["room"], room.as_str());
    let status = page.until("status", LONG).await;
    assert_eq!(status["connected"], false, "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the page waited {:?} for its hello",
        started.elapsed()
    );

    for (method, path, body) in [
        ("GET", format!("/api/rooms/{room}/messages"), ""),
        (
            "POST",
            format!("/api/rooms/{room}/messages"),
            r#"{"usuario":"Ana","mensaje":"durante"}"#,
        ),
    ] {
        let started = Instant::now();
        let (code, head, body) = request(gateway.port, method, &path, body);
        assert_eq!(code, 503, "{method} {path}: {body}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after:"),
            "{method} {path}: {head}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{method} {path} took {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let (code, _, body) = request(gateway.port, "GET", "/api/rooms", "");
    assert_eq!(code, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "/api/rooms took {:?}",
        started.elapsed()
    );

    server.restart();
    let history = page.until("history", Duration::from_secs(40)).await;
    assert_eq!(texts(&history), ["antes"]);
}

/// Paging back costs one read per page: the answer carries the `older` position, and an id
/// that names no message is refused without reading the room (`before=<unknown>` used to
/// scan 10 000 messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_by_position_and_unknown_ids_cost_no_scan() {
    let server = RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[]);
    let gateway = Gateway::start(&server.url(), &["--rate", "1000", "--burst", "1000"]);
    let room = unique_name("pages");
    for i in 0..30 {
        assert_eq!(gateway.post(&room, "Ana", &format!("m{i:02}")).0, 201);
    }
    let (code, body) = gateway.get(&format!("/api/rooms/{room}/messages?limit=7"));
    assert_eq!(code, 200, "{body}");
    let mut seen = texts(&body);
    let mut older = body["older"].clone();
    let mut reads = 1;
    while let Some(cursor) = older.as_str() {
        let (code, body) = gateway.get(&format!(
            "/api/rooms/{room}/messages?limit=7&cursor={cursor}"
        ));
        assert_eq!(code, 200, "{body}");
        let mut page = texts(&body);
        page.append(&mut seen);
        seen = page;
        older = body["older"].clone();
        reads += 1;
        assert!(reads < 10, "paging does not end: {body}");
    }
    let all: Vec<String> = (0..30).map(|i| format!("m{i:02}")).collect();
    assert_eq!(
        seen, all,
        "no gap, no overlap, and no `older` past the first"
    );
    assert_eq!(reads, 5);

    let monitor_before = redis_cli(server.port(), &["INFO", "commandstats"]);
    for before in ["nonsense", "01ARZ3NDEKTSV4RRFFQ69G5FAV"] {
        let (code, body) = gateway.get(&format!(
            "/api/rooms/{room}/messages?limit=1000&before={before}"
        ));
        assert_eq!(code, 400, "{body}");
    }
    let xrevrange = |stats: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_xrevrange:calls="))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let reads = xrevrange(&redis_cli(server.port(), &["INFO", "commandstats"]))
        - xrevrange(&monitor_before);
    assert!(
        reads <= 1,
        "{reads} reads of the room for two ids that name no message in it"
    );
}
