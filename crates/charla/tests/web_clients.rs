//! `charla web` and who its clients are (issue 18, findings 5, 8 and 9): one rate per client
//! across its pages and the API, the client's address taken from a trusted proxy only, names
//! that cannot pass for others (bidi, invisible characters, NFC), and `--auth` under each mode.
//! Each test runs the built binary against `charla serve`; "another client" connects from
//! 127.0.0.2 (loopback too, another address to the gateway).

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use charla_testkit::{unique_name, RedisServer};
use common::web::{connect_from, request_on, Gateway, Page};

const LONG: Duration = Duration::from_secs(20);
const ME: [u8; 4] = [127, 0, 0, 1];
const OTHER: [u8; 4] = [127, 0, 0, 2];

fn broker() -> RedisServer {
    RedisServer::start_charla(std::path::Path::new(env!("CARGO_BIN_EXE_charla")), &[])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// One HTTP/1.1 request from `from` with extra header lines: (status, head, body).
fn http_from(
    from: [u8; 4],
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    let host = format!("127.0.0.1:{port}");
    request_on(connect_from(from, port), &host, method, path, headers, body)
}

/// POST a message from `from`: (status, JSON answer).
fn post_from(
    from: [u8; 4],
    port: u16,
    room: &str,
    name: &str,
    headers: &str,
) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"usuario": name, "mensaje": "hola"}).to_string();
    let path = format!("/api/rooms/{room}/messages");
    let (code, _, answer) = http_from(from, port, "POST", &path, headers, &body);
    (
        code,
        serde_json::from_str(&answer).unwrap_or(serde_json::Value::Null),
    )
}

/// A WebSocket handshake from `from`: the status line's code and the body of a refusal.
fn upgrade_from(from: [u8; 4], port: u16, path: &str, headers: &str) -> (u16, String) {
    let key = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let mut tcp = connect_from(from, port);
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{key}{headers}\r\n"
    )
    .expect("handshake");
    tcp.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    // A refusal ends with the connection; a 101 goes on: read what comes within the timeout.
    while let Ok(n) = tcp.read(&mut chunk) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.starts_with(b"HTTP/1.1 101") && answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// A page (a real WebSocket client) opened from 127.0.0.2.
async fn page_from_other(url: &str) -> Page {
    let port: u16 = url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port in the URL");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((OTHER, 0)))
        .expect("bind 127.0.0.2");
    let tcp = socket
        .connect(SocketAddr::from((ME, port)))
        .await
        .expect("connect");
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .unwrap_or_else(|e| panic!("WebSocket {url}: {e}"));
    Page {
        ws,
        frames: Vec::new(),
    }
}

/// `%XX` for every byte that is not unreserved (names with any character in a URL).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Finding 8: names with bidi controls or invisible characters are refused, with the reason,
/// on the page's WebSocket and on the API; a name typed decomposed is stored in NFC.
#[test]
fn bidi_and_invisible_names_are_refused_and_names_are_nfc() {
    let server = broker();
    let a = Gateway::start(&server.url(), &[]);
    let room = unique_name("names");
    for (name, why) in [
        ("Ana\u{202E}gnp.exe", "direction"),
        ("\u{202E}nauJ", "direction"),
        ("Vic\u{200B}", "invisible"),
        ("\u{FEFF}Vic", "invisible"),
        ("Z\u{300}\u{301}\u{302}\u{303}", "marks"),
    ] {
        let path = format!("/ws?room={room}&name={}", pct(name));
        let (code, body) = upgrade_from(ME, a.port, &path, "");
        assert_eq!(code, 400, "{name:?}: {body}");
        assert!(body.contains(why), "{name:?}: {body}");
        let (code, answer) = a.post(&room, name, "hola");
        assert_eq!(code, 400, "{name:?}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(why)),
            "{answer}"
        );
    }
    // "José" typed as "Jose" + U+0301: accepted, and stored precomposed.
    let (code, answer) = a.post(&room, "Jose\u{301}", "hola");
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["usuario"], "Jos\u{e9}");
    runtime().block_on(async {
        let url = format!(
            "ws://127.0.0.1:{}/ws?room={room}&name={}",
            a.port,
            pct("Jose\u{301}")
        );
        let mut page = Page::open(&url).await;
        let hello = page.until("hello", LONG).await;
        assert_eq!(hello["name"], "Jos\u{e9}", "{hello}");
    });
}

/// Finding 5: twenty pages and the API of one client share one bucket (before: each page had
/// its own, so N pages posted N times the rate); another client keeps its own.
#[test]
fn one_clients_pages_and_api_posts_share_one_rate() {
    let server = broker();
    let a = Gateway::start(&server.url(), &["--rate", "5", "--burst", "20"]);
    let room = unique_name("rate");
    const PAGES: usize = 20;
    const SECONDS: f64 = 4.0;
    let started = Instant::now();
    let rt = runtime();
    let (refused_pages, api_codes) = rt.block_on(async {
        let mut pages = Vec::new();
        for i in 0..PAGES {
            let mut page = Page::open(&a.ws_url(&room, &format!("p{i}"))).await;
            page.until("history", LONG).await;
            pages.push(page);
        }
        let port = a.port;
        let api_room = room.clone();
        let api = std::thread::spawn(move || {
            let mut codes = Vec::new();
            let t0 = Instant::now();
            while t0.elapsed().as_secs_f64() < SECONDS {
                codes.push(post_from(ME, port, &api_room, "api", "").0);
                std::thread::sleep(Duration::from_millis(50));
            }
            codes
        });
        let mut refused = 0;
        let t0 = Instant::now();
        while t0.elapsed().as_secs_f64() < SECONDS {
            for page in &mut pages {
                page.say("x").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for page in &mut pages {
            while let Some(f) = page.next(Duration::from_millis(300)).await {
                if f["type"] == "error" {
                    refused += 1;
                }
            }
        }
        (refused, api.join().expect("api thread"))
    });
    let elapsed = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let (code, body) = a.get(&format!("/api/rooms/{room}/messages?limit=1000"));
    assert_eq!(code, 200, "{body}");
    let stored = common::web::texts(&body).len();
    let api_429 = api_codes.iter().filter(|&&c| c == 429).count();
    eprintln!(
        "{PAGES} pages + the API of one client for {SECONDS} s ({elapsed:.1} s in all): {stored} \
         messages stored; {refused_pages} page posts and {api_429} API posts refused"
    );
    // The burst, then 5 a second for the whole run (pages were opened within it), and slack.
    let bound = (20.0 + 5.0 * elapsed + 5.0) as usize;
    assert!(stored <= bound, "{stored} stored, more than {bound}");
    assert!(stored >= 20, "the burst goes through: {stored}");
    assert!(refused_pages > 0 && api_429 > 0, "both were held back");
    // The API's refusal says when to come back; another client has its own bucket.
    let (code, head, _) = http_from(
        ME,
        a.port,
        "POST",
        &format!("/api/rooms/{room}/messages"),
        "",
        r#"{"usuario": "api", "mensaje": "x"}"#,
    );
    if code == 429 {
        assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    }
    assert_eq!(post_from(OTHER, a.port, &room, "otra", "").0, 201);
}

/// Finding 5 (and 7): `GET /api/…` is held to a looser per-client rate, answered 429 with
/// `Retry-After`; the page itself and /healthz are not counted.
#[test]
fn api_reads_are_rate_limited_per_client() {
    let server = broker();
    let a = Gateway::start(&server.url(), &["--read-rate", "1", "--read-burst", "5"]);
    let room = unique_name("reads");
    let path = format!("/api/rooms/{room}/messages?limit=10");
    let codes: Vec<u16> = (0..8)
        .map(|_| http_from(ME, a.port, "GET", &path, "", "").0)
        .collect();
    assert_eq!(&codes[..5], &[200; 5], "{codes:?}");
    assert!(codes[5..].iter().all(|&c| c == 429), "{codes:?}");
    let (code, head, body) = http_from(ME, a.port, "GET", "/api/rooms", "", "");
    assert_eq!(code, 429, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    for free in ["/", "/app.js", "/healthz"] {
        assert_eq!(http_from(ME, a.port, "GET", free, "", "").0, 200, "{free}");
    }
    assert_eq!(http_from(OTHER, a.port, "GET", &path, "", "").0, 200);
}

/// Finding 5: the client's address comes from X-Forwarded-For / Forwarded only when the peer
/// is a trusted proxy; anybody else's headers are ignored.
#[test]
fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    let server = broker();
    let a = Gateway::start(
        &server.url(),
        &[
            "--rate",
            "1",
            "--burst",
            "2",
            "--trusted-proxy",
            "127.0.0.1/32",
        ],
    );
    let room = unique_name("proxy");
    let xff = |ip: &str| format!("X-Forwarded-For: 6.6.6.6, {ip}\r\n");
    // Through the proxy (127.0.0.1): each forwarded client has its own bucket.
    let codes: Vec<u16> = (0..3)
        .map(|_| post_from(ME, a.port, &room, "a", &xff("203.0.113.1")).0)
        .collect();
    assert_eq!(codes, [201, 201, 429]);
    assert_eq!(
        post_from(ME, a.port, &room, "b", &xff("203.0.113.2")).0,
        201
    );
    let fwd = "Forwarded: for=\"[2001:db8::7]:4711\"\r\n";
    assert_eq!(post_from(ME, a.port, &room, "c", fwd).0, 201);
    // From an untrusted peer (127.0.0.2) the header changes nothing: one bucket.
    let codes: Vec<u16> = (0..3)
        .map(|i| post_from(OTHER, a.port, &room, "d", &xff(&format!("198.51.100.{i}"))).0)
        .collect();
    assert_eq!(codes, [201, 201, 429]);
}

/// A page's first frames, up to `online`.
async fn hello(url: &str) -> serde_json::Value {
    let mut page = Page::open(url).await;
    page.until("hello", LONG).await
}

/// Finding 9, `--auth none`: a name online in a room is kept for the client that has it
/// (another client is refused it, on a page and through the API; the same client may open
/// several pages); on loopback the page is not told names are unverified, on a LAN it is.
#[test]
fn none_mode_keeps_an_online_name_for_its_client() {
    let server = broker();
    let a = Gateway::start(&server.url(), &[]);
    let room = unique_name("none");
    let rt = runtime();
    let mut vic = rt.block_on(async {
        let mut page = Page::open(&a.ws_url(&room, "Vic")).await;
        let hello = page.until("hello", LONG).await;
        assert_eq!(hello["auth"], "none");
        assert_eq!(hello["unverified_names"], false, "loopback: {hello}");
        let online = page.until("online", LONG).await;
        assert_eq!(
            online["verified"],
            serde_json::json!([]),
            "not proved: {online}"
        );
        page
    });
    let path = format!("/ws?room={room}&name=Vic");
    let (code, body) = upgrade_from(OTHER, a.port, &path, "");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("already online"), "{body}");
    let (code, answer) = post_from(OTHER, a.port, &room, "Vic", "");
    assert_eq!(code, 403, "{answer}");
    assert_eq!(post_from(OTHER, a.port, &room, "Eve", "").0, 201);
    assert_eq!(post_from(ME, a.port, &room, "Vic", "").0, 201);
    rt.block_on(async {
        // The same client, a second tab.
        let mut again = Page::open(&a.ws_url(&room, "Vic")).await;
        again.until("history", LONG).await;
        // Another client in another room may be Vic there.
        let other_room = unique_name("none2");
        let mut elsewhere = page_from_other(&a.ws_url(&other_room, "Vic")).await;
        elsewhere.until("history", LONG).await;
        vic.say("sigo siendo yo").await;
        let texts = vic.messages(3, LONG).await;
        assert!(texts.contains(&"sigo siendo yo".to_owned()), "{texts:?}");
    });

    // Listening on every address: pages are told that names are not verified.
    let lan = Gateway::start_on(&server.url(), "0.0.0.0", &[]);
    assert!(
        lan.log_text().contains("names are not verified"),
        "{}",
        lan.log_text()
    );
    let hello = rt.block_on(hello(&lan.ws_url(&room, "Ana")));
    assert_eq!(hello["unverified_names"], true, "{hello}");
}

/// Writes `text` into a file of the test's sandbox; its path.
fn file(name: &str, text: &[u8]) -> String {
    let path = common::sandbox().join(format!("{}-{name}", unique_name("f")));
    std::fs::write(&path, text).expect("write");
    path.to_string_lossy().into_owned()
}

/// Finding 9, `--auth password`: no password or a wrong one is refused on the page and the
/// API; a room's own password opens that room only.
#[test]
fn password_mode_refuses_a_wrong_password() {
    let server = broker();
    let passwords = file("passwords", b"secreto\nprofes:clave-profes\n");
    let a = Gateway::start(
        &server.url(),
        &["--auth", "password", "--auth-password-file", &passwords],
    );
    let room = unique_name("pw");
    let ws = |token: &str, room: &str| {
        upgrade_from(
            ME,
            a.port,
            &format!("/ws?room={room}&name=Ana&token={token}"),
            "",
        )
        .0
    };
    assert_eq!(ws("", &room), 401);
    assert_eq!(ws("secret", &room), 401);
    assert_eq!(ws("secreto", &room), 101);
    assert_eq!(ws("secreto", "profes"), 401);
    assert_eq!(ws("clave-profes", "profes"), 101);
    let post = |headers: &str, room: &str| post_from(ME, a.port, room, "Ana", headers).0;
    assert_eq!(post("", &room), 401);
    assert_eq!(post("Authorization: Bearer nope\r\n", &room), 401);
    assert_eq!(post("Authorization: Bearer secreto\r\n", &room), 201);
    // "ana:secreto"
    assert_eq!(
        post("Authorization: Basic YW5hOnNlY3JldG8=\r\n", &room),
        201
    );
    assert_eq!(post("X-Charla-Password: clave-profes\r\n", "profes"), 201);
    assert_eq!(post("X-Charla-Password: secreto\r\n", "profes"), 401);
    let read = format!("/api/rooms/{room}/messages");
    assert_eq!(http_from(ME, a.port, "GET", &read, "", "").0, 401);
    let ok = "Authorization: Bearer secreto\r\n";
    let (code, _, body) = http_from(ME, a.port, "GET", &read, ok, "");
    assert_eq!(code, 200, "{body}");
    // Proving a password is not proving a name: not marked.
    assert!(!body.contains("verificado"), "{body}");
    let hello = runtime().block_on(hello(&format!(
        "ws://127.0.0.1:{}/ws?room={room}&name=Ana&token=secreto",
        a.port
    )));
    assert_eq!(
        (hello["auth"].as_str(), hello["verified"].as_bool()),
        (Some("password"), Some(false))
    );
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn hs256(claims: serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("token")
}

const SECRET: &[u8] = b"the workshop's secret, long enough";

/// Finding 9, `--auth jwt`: the token's `sub` is the name (whatever the page asked for) and
/// its messages are marked verified; a forged or expired token, or a room outside its `rooms`
/// claim, is refused; the API cannot post under another name.
#[test]
fn jwt_mode_fixes_the_name_and_the_rooms() {
    let server = broker();
    let secret = file("secret", &[SECRET, b"\n"].concat());
    let a = Gateway::start(
        &server.url(),
        &["--auth", "jwt", "--jwt-secret-file", &secret],
    );
    let room = unique_name("jwt");
    let vic = hs256(
        serde_json::json!({"sub": "Vic", "exp": now() + 600, "rooms": [room]}),
        SECRET,
    );
    let forged = hs256(
        serde_json::json!({"sub": "Vic"}),
        b"not the workshop's secret at all",
    );
    let expired = hs256(
        serde_json::json!({"sub": "Vic", "exp": now() - 3600}),
        SECRET,
    );
    let ws = |token: &str, room: &str| {
        upgrade_from(
            ME,
            a.port,
            &format!("/ws?room={room}&name=Eve&token={token}"),
            "",
        )
    };
    assert_eq!(ws("", &room).0, 401);
    let (code, why) = ws(&forged, &room);
    assert_eq!(code, 401, "{why}");
    assert!(why.contains("signature"), "{why}");
    let (code, why) = ws(&expired, &room);
    assert!(code == 401 && why.contains("expired"), "{code} {why}");
    let (code, why) = ws(&vic, "otra-sala");
    assert!(code == 403 && why.contains("otra-sala"), "{code} {why}");
    runtime().block_on(async {
        let url = format!(
            "ws://127.0.0.1:{}/ws?room={room}&name=Eve&token={vic}",
            a.port
        );
        let mut page = Page::open(&url).await;
        let hello = page.until("hello", LONG).await;
        assert_eq!(
            (hello["name"].as_str(), hello["verified"].as_bool()),
            (Some("Vic"), Some(true))
        );
        // Presence marks the proved name too.
        let online = page.until("online", LONG).await;
        assert_eq!(online["verified"], serde_json::json!(["Vic"]), "{online}");
        // The same identity, a second page.
        let mut second = Page::open(&url).await;
        second.until("history", LONG).await;
        page.say("soy yo").await;
        let message = page.until("message", LONG).await;
        assert_eq!(message["message"]["usuario"], "Vic");
        assert_eq!(message["message"]["verificado"], true, "{message}");
    });
    let bearer = format!("Authorization: Bearer {vic}\r\n");
    let (code, answer) = post_from(ME, a.port, &room, "Eve", &bearer);
    assert_eq!(code, 403, "{answer}");
    let body = serde_json::json!({"mensaje": "por la API"}).to_string();
    let path = format!("/api/rooms/{room}/messages");
    let (code, _, answer) = http_from(ME, a.port, "POST", &path, &bearer, &body);
    assert_eq!(code, 201, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(
        (answer["usuario"].as_str(), answer["verificado"].as_bool()),
        (Some("Vic"), Some(true))
    );
    assert_eq!(post_from(ME, a.port, &room, "Vic", "").0, 401, "no token");

    // RS256 with a public key; a token signed by another key is refused.
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charla-web/testdata/jwt-rs256.pub"
    );
    let b = Gateway::start(
        &server.url(),
        &["--auth", "jwt", "--jwt-public-key-file", key],
    );
    let private = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charla-web/testdata/jwt-rs256.pem"
    ))
    .expect("key");
    let rs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &serde_json::json!({"sub": "Ana", "channels": [room]}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&private).expect("private key"),
    )
    .expect("token");
    let bearer = format!("Authorization: Bearer {rs}\r\n");
    let (code, answer) = post_from(ME, b.port, &room, "", &bearer);
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["usuario"], "Ana");
    let hs = format!(
        "Authorization: Bearer {}\r\n",
        hs256(serde_json::json!({"sub": "Ana"}), SECRET)
    );
    assert_eq!(post_from(ME, b.port, &room, "", &hs).0, 401);
}

/// Finding 9, `--auth proxy`: the user header is believed from the trusted proxy only, and
/// the gateway refuses to start in proxy mode without one.
#[test]
fn proxy_mode_believes_the_user_header_only_from_the_trusted_proxy() {
    let server = broker();
    let status = common::charla(&server.url())
        .args(["web", "--listen", "127.0.0.1:0", "--auth", "proxy"])
        .output()
        .expect("run");
    assert!(!status.status.success());
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(stderr.contains("--trusted-proxy"), "{stderr}");

    let a = Gateway::start(
        &server.url(),
        &["--auth", "proxy", "--trusted-proxy", "127.0.0.1"],
    );
    let room = unique_name("px");
    let user = "X-Forwarded-User: Vic\r\n";
    let (code, answer) = post_from(ME, a.port, &room, "", user);
    assert_eq!(code, 201, "{answer}");
    assert_eq!(
        (answer["usuario"].as_str(), answer["verificado"].as_bool()),
        (Some("Vic"), Some(true))
    );
    let (code, answer) = post_from(OTHER, a.port, &room, "", user);
    assert_eq!(code, 403, "an untrusted peer's header: {answer}");
    let path = format!("/ws?room={room}&name=Vic");
    assert_eq!(upgrade_from(OTHER, a.port, &path, user).0, 403);
    assert_eq!(upgrade_from(ME, a.port, &path, "").0, 403, "no user header");
    assert_eq!(upgrade_from(ME, a.port, &path, user).0, 101);
}

/// Finding 9 in a real browser (compat/web/auth.mjs, headless Chromium): the login box under
/// `--auth password` (a wrong password asked again with the reason), the token's name and the
/// verified mark under `--auth jwt`, and the notice on a gateway listening on the network.
#[test]
fn the_page_logs_in_marks_verified_names_and_warns_on_a_lan() {
    let web_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../compat/web");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let has_node = std::process::Command::new("node")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_node
        || !std::path::Path::new(&chromium).exists()
        || !web_dir.join("node_modules/playwright-core").is_dir()
    {
        charla_testkit::service_missing(
            "node, Debian's chromium and compat/web's playwright-core (apt-get install chromium; cd compat/web && npm ci)",
        );
        return;
    }
    let server = broker();
    let passwords = file("passwords", b"secreto\n");
    let pw = Gateway::start(
        &server.url(),
        &["--auth", "password", "--auth-password-file", &passwords],
    );
    let secret = file("secret", SECRET);
    let jwt = Gateway::start(
        &server.url(),
        &["--auth", "jwt", "--jwt-secret-file", &secret],
    );
    let lan = Gateway::start_on(&server.url(), "0.0.0.0", &[]);
    let room = unique_name("browser-auth");
    let token = hs256(
        serde_json::json!({"sub": "Vic", "exp": now() + 600}),
        SECRET,
    );
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(&web_dir)
        .arg("auth.mjs")
        .arg(format!("http://127.0.0.1:{}", pw.port))
        .arg("secreto")
        .arg(format!("http://127.0.0.1:{}", jwt.port))
        .arg(&token)
        .arg(format!("http://127.0.0.1:{}", lan.port))
        .arg(&room)
        .env("CHROMIUM", &chromium);
    let out = common::run(&mut cmd, b"");
    let stdout = common::text(&out.stdout);
    let stderr = common::text(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK:"), "{stdout}\n{stderr}");
}
