//! Load generator for `bench/web_fanout.sh`: many WebSocket pages in one room spread over
//! several `charla web` gateways, one poster sending at a fixed rate (open loop: a message is
//! due every 1/rate s whatever happened before, so queueing delay shows in the latency), and
//! every page counting what it receives.
//!
//! Latency is from the moment a message was due to be posted (carried in its text) to its
//! receipt by a page, over every (message, page) pair: an HdrHistogram, like wrk2.
//!
//! cargo run --release -p charla-web --example fanout -- \
//!     --gateways 127.0.0.1:8081,127.0.0.1:8082 --clients 1000 --rate 1000 --seconds 10 \
//!     [--pids PID,PID]   (gateway processes, for resident memory per connection)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message as Ws;

struct Args {
    gateways: Vec<String>,
    clients: usize,
    rate: u64,
    seconds: u64,
    pids: Vec<u32>,
    room: String,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        gateways: vec!["127.0.0.1:8080".into()],
        clients: 1000,
        rate: 1000,
        seconds: 10,
        pids: Vec::new(),
        room: format!("fanout-{}", std::process::id()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: std::num::ParseIntError| format!("{flag}: {e}");
        match flag.as_str() {
            "--gateways" => args.gateways = value.split(',').map(str::to_owned).collect(),
            "--clients" => args.clients = value.parse().map_err(bad)?,
            "--rate" => args.rate = value.parse().map_err(bad)?,
            "--seconds" => args.seconds = value.parse().map_err(bad)?,
            "--room" => args.room = value,
            "--pids" => {
                args.pids = value
                    .split(',')
                    .map(|p| p.parse().map_err(bad))
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.rate == 0 || args.clients == 0 {
        return Err("--rate and --clients must be above 0".into());
    }
    Ok(args)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// User + system CPU time of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let ticks: u64 = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) in parentheses.
            let rest = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    ticks as f64 / 100.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A page as the load generator reads it: the WebSocket handshake by hand, then server frames
/// (never masked) parsed in place from a 64 KiB buffer. The measuring side must cost less
/// than what it measures: tungstenite's client allocated and validated every frame and took
/// more CPU than the gateways it measured on the same two cores.
struct RawPage {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RawPage {
    /// Page `i`: on a loopback gateway each group of 32 pages connects from an address of its
    /// own (127.1.x.y), as a real gateway's pages come from many addresses: the gateway holds at
    /// most `--max-connections-per-ip` (64) connections per address.
    async fn open(gateway: &str, room: &str, name: &str, i: usize) -> std::io::Result<RawPage> {
        use tokio::io::AsyncWriteExt;
        let addr = tokio::net::lookup_host(gateway)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{gateway}: no address")))?;
        let mut stream = if addr.ip().is_loopback() && addr.is_ipv4() {
            let group = i / 32;
            let source =
                std::net::Ipv4Addr::new(127, 1, (group / 250) as u8, (group % 250) as u8 + 1);
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((source, 0).into())?;
            socket.connect(addr).await?
        } else {
            tokio::net::TcpStream::connect(addr).await?
        };
        let request = format!(
            "GET /ws?room={room}&name={name} HTTP/1.1\r\nHost: {gateway}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut page = RawPage {
            stream,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        };
        // The response head, then frames until the history frame: the page is in the room.
        loop {
            page.fill().await?;
            if let Some(at) = find(&page.buf[..page.end], b"\r\n\r\n") {
                if !page.buf.starts_with(b"HTTP/1.1 101") {
                    return Err(std::io::Error::other(
                        String::from_utf8_lossy(&page.buf[..at]).into_owned(),
                    ));
                }
                page.start = at + 4;
                break;
            }
        }
        loop {
            match page.next_text().await? {
                Some(t) if t.starts_with(b"{\"type\":\"history\"") => return Ok(page),
                Some(_) => {}
                None => return Err(std::io::Error::other("closed before joining")),
            }
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncReadExt;
        if self.start > 0 && self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }

    /// The next text frame's payload; `None` at a close frame.
    async fn next_text(&mut self) -> std::io::Result<Option<&[u8]>> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.len() >= 2 {
                let opcode = avail[0] & 0x0f;
                let (len, head) = match avail[1] & 0x7f {
                    126 if avail.len() >= 4 => {
                        (u16::from_be_bytes([avail[2], avail[3]]) as usize, 4)
                    }
                    127 if avail.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&avail[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && avail.len() >= head + len {
                    let from = self.start + head;
                    self.start = from + len;
                    match opcode {
                        0x8 => return Ok(None),
                        0x1 => return Ok(Some(&self.buf[from..from + len])),
                        _ => continue,
                    }
                }
            }
            self.fill().await?;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `(seq, due_us)` of a message frame whose text is "<seq> <due_us>".
fn due_of(frame: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"mensaje\":\"";
    let at = find(frame, KEY)? + KEY.len();
    let rest = &frame[at..];
    let space = rest.iter().position(|b| *b == b' ')?;
    let mut due = 0u64;
    for b in &rest[space + 1..] {
        match b {
            b'0'..=b'9' => due = due * 10 + u64::from(b - b'0'),
            _ => break,
        }
    }
    Some(due)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(gateway: &str, room: &str, name: &str) -> Socket {
    let url = format!("ws://{gateway}/ws?room={room}&name={name}");
    loop {
        // No Nagle: each post goes out when it is due, not bunched behind the last one's ACK.
        match tokio_tungstenite::connect_async_with_config(&url, None, true).await {
            Ok((mut ws, _)) => {
                // Ready once the history frame came: the page is in the room.
                while let Some(Ok(frame)) = ws.next().await {
                    if let Ws::Text(t) = frame {
                        if t.as_str().contains("\"type\":\"history\"") {
                            return ws;
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("connect {url}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fanout: {e}");
            std::process::exit(2);
        }
    };
    let before: Vec<u64> = args.pids.iter().map(|p| rss_kib(*p)).collect();
    let total = args.rate * args.seconds;
    let received = Arc::new(AtomicU64::new(0));
    let connect_start = Instant::now();
    // Connect in waves so the gateways' accept queues are not flooded.
    let mut sockets = Vec::with_capacity(args.clients);
    let mut middle: Vec<u64> = before.clone();
    let mut middle_at = 0;
    for wave in (0..args.clients).collect::<Vec<_>>().chunks(100) {
        if middle_at == 0 && sockets.len() >= args.clients / 2 {
            // Resident memory half-way: the second half's growth is what a page costs, without
            // what the first pages of a room set up once (the room, its buffers, the allocator's
            // first arenas).
            tokio::time::sleep(Duration::from_secs(2)).await;
            middle = args.pids.iter().map(|p| rss_kib(*p)).collect();
            middle_at = sockets.len();
        }
        let opened = futures::future::join_all(wave.iter().map(|i| {
            let gateway = args.gateways[i % args.gateways.len()].clone();
            let room = args.room.clone();
            async move {
                loop {
                    match RawPage::open(&gateway, &room, &format!("p{i}"), *i).await {
                        Ok(p) => return p,
                        Err(e) => {
                            eprintln!("page {i}: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        }))
        .await;
        sockets.extend(opened);
    }
    eprintln!(
        "{} pages connected in {:.1} s",
        sockets.len(),
        connect_start.elapsed().as_secs_f64()
    );
    // Let presence settle (every page's join reaches every other page once).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: Vec<u64> = args.pids.iter().map(|p| rss_kib(*p)).collect();

    let deadline = Duration::from_secs(args.seconds + 15);
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut page| {
            let received = received.clone();
            tokio::spawn(async move {
                let mut hist =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                let mut got = 0u64;
                let stop = tokio::time::Instant::now() + deadline;
                while got < total {
                    let due = match tokio::time::timeout_at(stop, page.next_text()).await {
                        Ok(Ok(Some(text))) if text.starts_with(b"{\"type\":\"message\"") => {
                            due_of(text)
                        }
                        Ok(Ok(Some(_))) => continue,
                        _ => break,
                    };
                    let Some(due) = due else { continue };
                    let _ = hist.record(now_us().saturating_sub(due).max(1));
                    got += 1;
                    received.fetch_add(1, Ordering::Relaxed);
                }
                (got, hist)
            })
        })
        .collect();

    // The poster: its own page on the first gateway, a message due every 1/rate s.
    let mut poster = open(&args.gateways[0], &args.room, "poster").await;
    let cpu_before: Vec<f64> = args.pids.iter().map(|p| cpu_secs(*p)).collect();
    let interval = Duration::from_nanos(1_000_000_000 / args.rate);
    let start = tokio::time::Instant::now();
    let start_us = now_us();
    for seq in 0..total {
        let due = start + interval * seq as u32;
        tokio::time::sleep_until(due).await;
        let due_us = start_us + (interval * seq as u32).as_micros() as u64;
        let body = format!("{{\"mensaje\":\"{seq} {due_us}\"}}");
        if let Err(e) = poster.send(Ws::Text(body.into())).await {
            eprintln!("posting failed at {seq}: {e}");
            break;
        }
    }
    let posted_in = start.elapsed();
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut complete = 0;
    let mut pages = 0;
    for r in readers {
        if let Ok((got, hist)) = r.await {
            pages += 1;
            if got == total {
                complete += 1;
            }
            let _ = all.add(&hist);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_run: f64 = args
        .pids
        .iter()
        .zip(&cpu_before)
        .map(|(p, b)| cpu_secs(*p) - b)
        .sum();
    let got = received.load(Ordering::Relaxed);
    let expected = total * args.clients as u64;
    println!("pages: {pages}, every message received by {complete} of them");
    println!(
        "posted {total} messages in {:.2} s ({:.0}/s)",
        posted_in.as_secs_f64(),
        total as f64 / posted_in.as_secs_f64()
    );
    println!(
        "deliveries: {got} of {expected} ({} missing), {:.0} deliveries/s",
        expected - got.min(expected),
        got as f64 / elapsed
    );
    println!(
        "latency due→received: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        all.value_at_quantile(0.50) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0,
        all.value_at_quantile(0.999) as f64 / 1000.0,
        all.max() as f64 / 1000.0
    );
    if !args.pids.is_empty() {
        println!(
            "gateways' CPU time while posting and delivering: {cpu_run:.2} s ({:.2} µs per delivery, {:.0}% of a core)",
            cpu_run * 1e6 / got.max(1) as f64,
            cpu_run * 100.0 / elapsed
        );
    }
    for (i, pid) in args.pids.iter().enumerate() {
        let gateways = args.pids.len().max(1);
        let pages_here = args.clients / gateways;
        let second_half = (args.clients - middle_at) / gateways;
        println!(
            "gateway {pid}: resident {} KiB before, {} KiB with {} pages, {} KiB with {pages_here}: \
             {:.1} KiB per connection over all, {:.1} KiB per connection over the second half",
            before[i],
            middle[i],
            middle_at / gateways,
            after[i],
            after[i].saturating_sub(before[i]) as f64 / pages_here.max(1) as f64,
            after[i].saturating_sub(middle[i]) as f64 / second_half.max(1) as f64
        );
    }
    if got < expected {
        std::process::exit(1);
    }
}
