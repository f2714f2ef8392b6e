//! `charla web` gateways for tests: started on a free port against a broker, ready when
//! `/healthz` answers, killed on drop (their log printed when the test failed), and a
//! minimal HTTP/1.1 client and WebSocket page to talk to them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use charla_testkit::free_port;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Ws;

use super::charla;

pub struct Gateway {
    pub child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl Gateway {
    /// `charla web` on `broker` with extra flags; waits until it serves.
    pub fn start(broker: &str, extra: &[&str]) -> Gateway {
        Gateway::start_on(broker, "127.0.0.1", extra)
    }

    /// The same, listening on `ip` (`0.0.0.0`: a gateway exposed to the network); it is still
    /// reached through 127.0.0.1.
    pub fn start_on(broker: &str, ip: &str, extra: &[&str]) -> Gateway {
        let port = free_port();
        let log = super::sandbox().join(format!("web-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = charla(broker);
        cmd.args(["web", "--listen", &format!("{ip}:{port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file);
        let child = cmd.spawn().expect("start charla web");
        let mut gateway = Gateway { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = http(port, "GET", "/healthz", None) {
                break;
            }
            if let Ok(Some(status)) = gateway.child.try_wait() {
                panic!("charla web exited ({status}): {}", gateway.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "charla web did not get ready: {}",
                gateway.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gateway
    }

    /// `charla web --uploads DIR --upload-room QUEUE` and `extra` flags.
    pub fn with_uploads(
        broker: &str,
        dir: &std::path::Path,
        queue: &str,
        extra: &[&str],
    ) -> Gateway {
        let dir = dir.to_str().expect("a UTF-8 path");
        let mut args = vec!["--uploads", dir, "--upload-room", queue];
        args.extend_from_slice(extra);
        Gateway::start(broker, &args)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn ws_url(&self, room: &str, name: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?room={room}&name={name}", self.port)
    }

    /// POST a message through the API: the status code and the body.
    pub fn post(&self, room: &str, name: &str, text: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({"usuario": name, "mensaje": text}).to_string();
        let (code, body) = http(
            self.port,
            "POST",
            &format!("/api/rooms/{room}/messages"),
            Some(&body),
        )
        .expect("POST answered");
        (
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// POST `n` messages "0 …", "1 …", … (each padded with `padding` bytes) one by one
    /// through the API from a thread of their own; each must be accepted.
    pub fn post_numbered(
        &self,
        room: &str,
        n: usize,
        padding: usize,
    ) -> std::thread::JoinHandle<()> {
        let port = self.port;
        let path = format!("/api/rooms/{room}/messages");
        std::thread::spawn(move || {
            let padding = "z".repeat(padding);
            for i in 0..n {
                let body =
                    serde_json::json!({"usuario": "bot", "mensaje": format!("{i} {padding}")})
                        .to_string();
                let (code, answer) = http(port, "POST", &path, Some(&body)).expect("POST");
                assert_eq!(code, 201, "{answer}");
            }
        })
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = http(self.port, "GET", path, None).expect("GET answered");
        (
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- charla web :{} log ---\n{}", self.port, self.log_text());
        }
    }
}

/// The `mensaje` texts of a `{"messages": [...]}` body (a history frame or an API page).
pub fn texts(body: &serde_json::Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["mensaje"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A TCP connection to the gateway on `port` from the loopback address `from` (a client of its
/// own to the gateway's per-address limits). std cannot bind before connecting, tokio can: on a
/// thread of its own, so a test may call this from inside its runtime too.
pub fn connect_from(from: [u8; 4], port: u16) -> TcpStream {
    use std::net::SocketAddr;
    let tcp = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((from, 0)))?;
            let tcp = socket
                .connect(SocketAddr::from(([127, 0, 0, 1], port)))
                .await?;
            tcp.into_std()
        })
    })
    .join()
    .expect("connecting thread")
    .expect("connect");
    tcp.set_nonblocking(false).expect("blocking");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    tcp
}

/// One HTTP/1.1 request on `tcp` with `Connection: close`, `Host: host` and extra header
/// lines (each ending in CRLF), read to the end: (status, head, body).
pub fn request_on(
    mut tcp: TcpStream,
    host: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let (code, head, body) = read_answer(tcp);
    (code, head, String::from_utf8_lossy(&body).into_owned())
}

/// An HTTP/1.1 answer read to the end of the connection: (status, head, body bytes).
pub fn read_answer(mut tcp: TcpStream) -> (u16, String, Vec<u8>) {
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let body = answer.get(split + 4..).unwrap_or_default().to_vec();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head, body)
}

/// One HTTP/1.1 request with `Connection: close`: (status, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// A page's WebSocket, as a test drives it.
pub struct Page {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Frames read and not yet looked at.
    pub frames: Vec<serde_json::Value>,
}

impl Page {
    pub async fn open(url: &str) -> Page {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("WebSocket {url}: {e}"));
        Page {
            ws,
            frames: Vec::new(),
        }
    }

    /// The next frame, or None at `limit` / when the socket closed; a close frame comes back
    /// as `{"type": "close", "code", "reason"}`.
    pub async fn next(&mut self, limit: Duration) -> Option<serde_json::Value> {
        loop {
            match tokio::time::timeout(limit, self.ws.next()).await {
                Ok(Some(Ok(Ws::Text(t)))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("frames are JSON"))
                }
                Ok(Some(Ok(Ws::Close(frame)))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((0, String::new()));
                    return Some(
                        serde_json::json!({"type": "close", "code": code, "reason": reason}),
                    );
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Read until a frame of `kind` arrives (others are kept in `frames`).
    pub async fn until(&mut self, kind: &str, limit: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(f) if f["type"] == kind => return f,
                Some(f) => self.frames.push(f),
                None => panic!("no '{kind}' frame within {limit:?}; got {:?}", self.frames),
            }
        }
    }

    /// The texts of the next `n` live messages, in arrival order.
    pub async fn messages(&mut self, n: usize, limit: Duration) -> Vec<String> {
        let mut texts: Vec<String> = std::mem::take(&mut self.frames)
            .into_iter()
            .filter(|f| f["type"] == "message")
            .map(|f| {
                f["message"]["mensaje"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let deadline = tokio::time::Instant::now() + limit;
        while texts.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(f) if f["type"] == "message" => texts.push(
                    f["message"]["mensaje"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ),
                Some(_) => {}
                None => panic!(
                    "only {} of {n} messages arrived: {:?}",
                    texts.len(),
                    texts.last()
                ),
            }
        }
        texts
    }

    pub async fn say(&mut self, text: &str) {
        let frame = serde_json::json!({"mensaje": text}).to_string();
        self.ws
            .send(Ws::Text(frame.into()))
            .await
            .expect("send a post");
    }
}
