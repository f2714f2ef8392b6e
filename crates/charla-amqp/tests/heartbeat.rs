//! A connection that stalls (the peer or the network stops answering, nothing closes) is
//! noticed through the AMQP heartbeat: `recv` and `publish` return a transient error within
//! a bounded time instead of hanging.
//!
//! Between charla and RabbitMQ sits charla-testkit's fault proxy: it forwards both ways until
//! told to stall, then keeps every socket open and forwards nothing more (also on new
//! connections), which is what a dead host or a cut cable looks like from here.

mod common;

use std::time::{Duration, Instant};

use charla_amqp::AmqpBroker;
use charla_core::{Broker, BrokerUrl, Message, Mode, Subscription};
use charla_testkit::proxy::{socket_addr_of, FaultProxy};

/// The test URL through `proxy`, with `options` (`key=value&…`) appended.
fn through(proxy: &FaultProxy, options: &str) -> BrokerUrl {
    let (key, value) = options.split_once('=').unwrap();
    BrokerUrl::parse(&charla_testkit::with_option(
        &proxy.url_for(&common::url_text()),
        key,
        value,
    ))
    .unwrap()
}

/// Works through the proxy, stalls it, and checks that `recv` and `publish` (sharing the
/// stalled connection) each fail with a transient error within `bound`.
async fn stall_is_noticed(options: &str, bound: Duration) {
    let Some(_lock) = common::rabbitmq_available().await else {
        return;
    };
    let proxy = FaultProxy::start(socket_addr_of(&common::url_text(), 5672)).await;
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

    proxy.stall();
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
