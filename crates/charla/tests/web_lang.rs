//! `charla web` speaks the language of the page or client it answers (issue 18, finding 12):
//! a page that adds `lang=es` to its addresses, or a browser or program that sends
//! `Accept-Language: es`, gets every reason in Spanish — a refused name, a name another client
//! holds, a post too fast or empty, the gateway's limit of rooms, an idle socket's close — and
//! a client that asks for nothing gets them in English, as before.

mod common;

use std::time::Duration;

use charla_testkit::RedisServer;
use common::web::{connect_from, request_on, Gateway, Page};
use futures::SinkExt;

const LONG: Duration = Duration::from_secs(20);

/// English words that would give away an untranslated reason.
const ENGLISH: [&str; 4] = ["the ", "too ", "name", "room"];

fn broker() -> RedisServer {
    RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[])
}

/// `text` without what is in parentheses: technical detail (a parser's or the broker's own
/// words) is kept as it is there, the reason around it is what must be in the asked language.
fn outside_parentheses(text: &str) -> String {
    let mut depth = 0usize;
    text.chars()
        .filter(|&c| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect()
}

fn assert_spanish(what: &str, text: &str) {
    assert!(!text.trim().is_empty(), "{what}: no reason given");
    let words = outside_parentheses(text).to_lowercase();
    for word in ENGLISH {
        assert!(
            !words.contains(word),
            "{what}: English {word:?} in {text:?}"
        );
    }
}

/// One HTTP/1.1 request from `from` (127.0.0.x) with extra header lines: (status, body).
fn request(
    from: [u8; 4],
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let host = format!("127.0.0.1:{port}");
    let (code, _, body) = request_on(connect_from(from, port), &host, method, path, headers, body);
    (code, body)
}

/// The `error` of a JSON body.
fn error_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no error in {body:?}"))
}

const ES: &str = "Accept-Language: es-ES,es;q=0.9\r\n";
const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[test]
fn a_spanish_page_is_refused_and_closed_in_spanish() {
    let server = broker();
    let gateway = Gateway::start(
        &server.url(),
        &[
            "--max-rooms",
            "1",
            "--rate",
            "0.5",
            "--burst",
            "1",
            "--idle-timeout",
            "3",
        ],
    );
    let port = gateway.port;
    let me = [127, 0, 0, 1];
    let other = [127, 0, 0, 2];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // A name that is not one: the rule's reason, by `lang=` and by the browser's language.
    let (code, body) = request(
        me,
        port,
        "GET",
        "/ws?room=charla&name=Ana%E2%80%AEx&lang=es",
        UPGRADE,
        "",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("U+202E"), "{body}");
    assert_spanish("bad name, lang=es", &body);
    let (code, body) = request(
        me,
        port,
        "GET",
        "/ws?room=charla&name=%20",
        &format!("{UPGRADE}{ES}"),
        "",
    );
    assert_eq!(code, 400, "{body}");
    assert_spanish("empty name, Accept-Language", &body);
    let (_, english) = request(me, port, "GET", "/ws?room=charla&name=%20", UPGRADE, "");
    assert!(english.contains("name"), "English by default: {english}");

    rt.block_on(async {
        // Vic's page (English) holds the gateway's one room and the name.
        let mut vic = Page::open(&gateway.ws_url("charla", "Vic")).await;
        vic.until("history", LONG).await;
        // English until the page's language switch says otherwise, on the same socket.
        vic.say(" ").await;
        let english = vic.until("error", LONG).await;
        assert!(
            english["error"]
                .as_str()
                .unwrap_or_default()
                .contains("the message"),
            "{english}"
        );
        vic.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                r#"{"lang": "es"}"#.into(),
            ))
            .await
            .expect("send");
        vic.say(" ").await;
        let switched = vic.until("error", LONG).await;
        assert_spanish(
            "after the switch",
            switched["error"].as_str().unwrap_or_default(),
        );

        // Another client asking for Vic's name; a page asking for a second room.
        let (code, body) = request(
            other,
            port,
            "GET",
            "/ws?room=charla&name=Vic&lang=es",
            UPGRADE,
            "",
        );
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("Vic"), "{body}");
        assert_spanish("name held", &body);
        let (code, body) = request(
            me,
            port,
            "GET",
            "/ws?room=otra&name=Ana",
            &format!("{UPGRADE}{ES}"),
            "",
        );
        assert_eq!(code, 503, "{body}");
        assert_spanish("room limit", &body);
        let (code, english) = request(me, port, "GET", "/ws?room=otra&name=Ana", UPGRADE, "");
        assert!(code == 503 && english.contains("most rooms"), "{english}");

        // A Spanish page's refused posts: empty, not the expected JSON, too fast.
        let url = format!("{}&lang=es", gateway.ws_url("charla", "Rafa"));
        let mut rafa = Page::open(&url).await;
        rafa.until("history", LONG).await;
        rafa.say("   ").await;
        let empty = rafa.until("error", LONG).await;
        assert_spanish("empty post", empty["error"].as_str().unwrap_or_default());
        rafa.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                r#"{"x": 1}"#.into(),
            ))
            .await
            .expect("send");
        let json = rafa.until("error", LONG).await;
        assert_spanish("bad JSON", json["error"].as_str().unwrap_or_default());
        rafa.say("uno").await;
        rafa.say("dos").await;
        let fast = rafa.until("error", LONG).await;
        let fast = fast["error"].as_str().unwrap_or_default().to_owned();
        assert!(fast.contains("demasiado rápido"), "{fast}");
        assert_spanish("too fast", &fast);

        // Vic's English page still reads; Rafa's reads nothing, answers no ping, and is let
        // go with the reason in Spanish.
        drop(vic);
        tokio::time::sleep(Duration::from_secs(4)).await;
        let close = rafa.until("close", LONG).await;
        let reason = close["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("pong"), "{close}");
        assert_spanish("idle close", reason);
    });
}

#[test]
fn an_api_client_asking_for_spanish_gets_spanish_errors() {
    let server = broker();
    let gateway = Gateway::start(&server.url(), &["--rate", "0.5", "--burst", "1"]);
    let port = gateway.port;
    let me = [127, 0, 0, 1];
    let post = |from, path: &str, headers: &str, body: &str| {
        let (code, body) = request(from, port, "POST", path, headers, body);
        (code, error_of(&body))
    };
    let messages = "/api/rooms/charla/messages";
    let cases = [
        ("bad JSON", post(me, messages, ES, "{\"x\": 1}"), 400),
        (
            "empty",
            post(me, messages, ES, r#"{"usuario": "Ana", "mensaje": "  "}"#),
            400,
        ),
        (
            "bad room",
            post(
                me,
                "/api/rooms/con%20espacio/messages",
                ES,
                r#"{"usuario": "Ana", "mensaje": "hola"}"#,
            ),
            400,
        ),
        (
            "bad name",
            post(
                me,
                messages,
                ES,
                r#"{"usuario": "Vic\u200b", "mensaje": "hola"}"#,
            ),
            400,
        ),
    ];
    for (what, (code, why), want) in cases {
        assert_eq!(code, want, "{what}: {why}");
        assert_spanish(what, &why);
    }
    let ok = r#"{"usuario": "Ana", "mensaje": "hola"}"#;
    assert_eq!(request(me, port, "POST", messages, ES, ok).0, 201);
    let (code, why) = post(me, messages, ES, ok);
    assert_eq!(code, 429, "{why}");
    assert!(why.contains("demasiado rápido"), "{why}");
    assert_spanish("too fast", &why);
    // English for a program that asks nothing.
    let (code, why) = post(me, messages, "", ok);
    assert!(code == 429 && why.contains("too fast"), "{code} {why}");

    for (what, path) in [
        ("limit", "/api/rooms/charla/messages?limit=0"),
        ("before", "/api/rooms/charla/messages?before=nada"),
        ("search", "/api/rooms/charla/messages?q=hola"),
    ] {
        let (code, body) = request(me, port, "GET", path, ES, "");
        assert!(code >= 400, "{what}: {code} {body}");
        assert_spanish(what, &error_of(&body));
    }
    // `lang=` wins over the browser's language, as the page's switch does.
    let (_, body) = request(
        me,
        port,
        "GET",
        "/api/rooms/charla/messages?limit=0&lang=en",
        ES,
        "",
    );
    assert!(error_of(&body).contains("messages"), "{body}");
}
