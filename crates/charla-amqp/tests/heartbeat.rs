//! A connection that stalls (the peer or the network stops answering, nothing closes) is
//! noticed through the AMQP heartbeat: `recv` and `publish` return a transient error within
//! a bounded time instead of hanging.
//!
//! Between charla and RabbitMQ sits a tiny TCP proxy of the test's own: it forwards both ways
//! until told to stall, then keeps every socket open and forwards nothing more (also on new
//! connections), which is what a dead host or a cut cable looks like from here.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use charla_amqp::AmqpBroker;
use charla_core::{Broker, BrokerUrl, Message, Mode, Subscription};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Copies one direction until the proxy stalls; then holds both halves open, forever.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stalled.load(Ordering::SeqCst) {
            break;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.load(Ordering::SeqCst) {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    // Stalled: nothing is forwarded and nothing is closed.
    let _keep = (from, to);
    std::future::pending::<()>().await;
}

/// Starts the proxy in front of `upstream`; returns its address and its stall switch.
async fn stalling_proxy(upstream: String) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let stalled = Arc::new(AtomicBool::new(false));
    let switch = stalled.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, stalled.clone()));
            tokio::spawn(pump(sr, cw, stalled.clone()));
        }
    });
    (address, switch)
}

/// The test URL with its host and port replaced by the proxy's, and `options` appended.
fn through(proxy: &str, options: &str) -> BrokerUrl {
    let mut url = common::url().url().clone();
    let (host, port) = proxy.rsplit_once(':').unwrap();
    url.set_host(Some(host)).unwrap();
    url.set_port(Some(port.parse().unwrap())).unwrap();
    let mut text = url.to_string();
    text.push(if url.query().is_some() { '&' } else { '?' });
    text.push_str(options);
    BrokerUrl::parse(&text).unwrap()
}

/// Works through the proxy, stalls it, and checks that `recv` and `publish` (sharing the
/// stalled connection) each fail with a transient error within `bound`.
async fn stall_is_noticed(options: &str, bound: Duration) {
    let Some(_lock) = common::rabbitmq_available().await else {
        return;
    };
    let upstream = common::url().address();
    let (proxy, stalled) = stalling_proxy(upstream).await;
    let url = through(&proxy, options);
    let b = AmqpBroker::connect(&url)
        .await
        .expect("connect through the proxy");
    let room = charla_testkit::unique_name("q-stall-");
    let mut p = b.publisher(Mode::Queue, &room).await.unwrap();
    let mut sub = b
        .subscribe(Subscription::new(Mode::Queue, room.as_str()))
        .await
        .unwrap();
    let m = Message::new("test", "before the stall", room.as_str());
    p.publish(&m).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("works through the proxy")
        .unwrap();
    assert_eq!(d.message.id, m.id);
    sub.ack(d.tag).await.unwrap();

    stalled.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let after = Message::new("test", "after the stall", room.as_str());
    let (recv, publish) = tokio::join!(
        async {
            let r = tokio::time::timeout(bound, sub.recv()).await;
            (r, started.elapsed())
        },
        async {
            let r = tokio::time::timeout(bound, p.publish(&after)).await;
            (r, started.elapsed())
        }
    );
    let (recv, recv_took) = recv;
    let (publish, publish_took) = publish;
    eprintln!("recv returned after {recv_took:?}, publish after {publish_took:?}");
    let Ok(recv) = recv else {
        panic!("recv still hangs {bound:?} after the connection stalled")
    };
    let Ok(publish) = publish else {
        panic!("publish still hangs {bound:?} after the connection stalled")
    };
    let e = recv.expect_err("recv cannot succeed on a stalled connection");
    assert!(
        e.is_transient(),
        "recv's error says the broker is away: {e}"
    );
    let e = publish.expect_err("publish cannot be confirmed on a stalled connection");
    assert!(
        e.is_transient(),
        "publish's error says the broker is away: {e}"
    );

    // Clean up directly, not through the stalled proxy.
    let direct = AmqpBroker::connect(&common::url()).await.unwrap();
    direct.purge(Mode::Queue, &room).await.unwrap();
}

/// `?heartbeat=2`: missing heartbeats are noticed after 4 s; with a 1 s recovery budget
/// (which also bounds the reconnection attempts through the stalled proxy) both calls fail
/// within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_fails_within_two_heartbeats() {
    stall_is_noticed(
        "heartbeat=2&recovery_timeout_ms=1000",
        Duration::from_secs(10),
    )
    .await;
}

/// Without `?heartbeat=` charla asks for 10 s (the stall is noticed after 20 s). Before, the
/// server's 60 s applied: two minutes of silence before anything was noticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_fails_with_the_default_heartbeat() {
    stall_is_noticed("recovery_timeout_ms=1000", Duration::from_secs(30)).await;
}
