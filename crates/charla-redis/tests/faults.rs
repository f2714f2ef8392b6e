//! Faults against a real redis-server: a cancelled `recv`, a consumer taken over while alive,
//! a heartbeat that cannot be written, a stalled network path, and stream retention.
//! Every case checks what a user would: no acknowledged-or-not message is lost.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use charla_core::{Broker, BrokerUrl, Message, Mode, StartFrom, Subscriber, Subscription};
use charla_redis::RedisBroker;
use charla_testkit::proxy::{socket_addr_of, FaultProxy};
use charla_testkit::{unique_name, RedisServer};
use redis::aio::MultiplexedConnection;
use redis::Value;

async fn connect(url: &str, ttl_ms: u64) -> RedisBroker {
    let url =
        BrokerUrl::parse(&charla_testkit::with_option(url, "consumer_ttl_ms", ttl_ms)).unwrap();
    RedisBroker::connect(&url).await.unwrap()
}

async fn raw(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn query<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(conn).await.unwrap()
}

async fn blocked_clients(conn: &mut MultiplexedConnection) -> u64 {
    let info: String = query(conn, &["INFO", "clients"]).await;
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Poll `cond` until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn publish(broker: &RedisBroker, room: &str, text: &str) -> Message {
    let m = Message::new("tester", text, room);
    let mut p = broker.publisher(Mode::Queue, room).await.unwrap();
    p.publish(&m).await.unwrap();
    m
}

/// Receive (and ack) until every id in `want` was seen; fails at the deadline naming the
/// missing ones.
async fn receive_all(sub: &mut Box<dyn Subscriber>, want: &[&Message], limit: Duration) {
    let mut missing: HashSet<String> = want.iter().map(|m| m.id.clone()).collect();
    let deadline = Instant::now() + limit;
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sub.recv()).await {
            Ok(Ok(d)) => {
                missing.remove(&d.message.id);
                sub.ack(d.tag).await.unwrap();
            }
            Ok(Err(e)) => panic!("recv failed: {e}"),
            Err(_) => panic!("lost messages (never delivered): {missing:?}"),
        }
    }
}

/// The reproduced loss: a recv cancelled while its BLMOVE is blocked on the server (the server
/// moves m1 into the processing list, the reply goes nowhere); then m2 is received and acked.
/// m1 must still be delivered, and nothing may stay behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_recv_loses_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let broker = connect(&server.url(), 10_000).await;
    let room = unique_name("q");
    let mut conn = raw(&server).await;
    let mut sub = broker
        .subscribe(Subscription::new(Mode::Queue, room.as_str()).consumer("a"))
        .await
        .unwrap();
    {
        let recv = sub.recv();
        tokio::pin!(recv);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::select! {
                r = &mut recv => panic!("recv returned on an empty queue: {:?}", r.map(|d| d.message)),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            if blocked_clients(&mut conn).await >= 1 {
                break; // the BLMOVE waits on the server: cancel the recv now
            }
            assert!(Instant::now() < deadline, "recv never blocked");
        }
    }
    let m1 = publish(&broker, &room, "m1").await;
    let m2 = publish(&broker, &room, "m2").await;
    let processing = format!("charla:{{{room}}}:processing:a");
    let mut c = conn.clone();
    let p = processing.clone();
    eventually(
        Duration::from_secs(5),
        "the cancelled BLMOVE took m1",
        || {
            let (mut c, p) = (c.clone(), p.clone());
            async move { query::<u64>(&mut c, &["LLEN", &p]).await == 1 }
        },
    )
    .await;
    receive_all(&mut sub, &[&m2, &m1], Duration::from_secs(10)).await;
    assert_eq!(query::<u64>(&mut c, &["LLEN", &room]).await, 0);
    assert_eq!(
        query::<u64>(&mut c, &["LLEN", &processing]).await,
        0,
        "every acked message is gone from the processing list"
    );
    sub.close().await.unwrap();
}

/// A live consumer whose heartbeat key vanished (a stall longer than the TTL) is taken over by
/// another; whatever it does next, it must not remove the others' messages, and it must stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_taken_over_while_alive_loses_nothing_and_stops() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let broker = connect(&server.url(), 1000).await;
    let room = unique_name("q");
    let mut conn = raw(&server).await;
    let m1 = publish(&broker, &room, "m1").await;
    let mut a = broker
        .subscribe(
            Subscription::new(Mode::Queue, room.as_str())
                .consumer("a")
                .prefetch(1),
        )
        .await
        .unwrap();
    let d1 = a.recv().await.unwrap();
    assert_eq!(d1.message.id, m1.id);
    // Its heartbeat key expires (as after a long stall) while it lives on.
    let alive = format!("charla:{{{room}}}:alive:a");
    let _: () = query(&mut conn, &["DEL", &alive]).await;
    // b starts, finds a dead and requeues m1 (as a redelivery).
    let mut b = broker
        .subscribe(
            Subscription::new(Mode::Queue, room.as_str())
                .consumer("b")
                .prefetch(1),
        )
        .await
        .unwrap();
    let m2 = publish(&broker, &room, "m2").await;
    // a carries on: it may take a message into its list, then acks m1, which is not its own
    // any more.
    if let Ok(Ok(_unacked)) = tokio::time::timeout(Duration::from_secs(3), a.recv()).await {}
    a.ack(d1.tag).await.unwrap();
    // Then it must stop, with an error that says why.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stopped = None;
    while stopped.is_none() && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, a.recv()).await {
            Ok(Ok(_unacked)) => {} // not acked: must come back to someone
            Ok(Err(e)) => stopped = Some(e),
            Err(_) => break,
        }
    }
    drop(a); // the process dies without closing
    receive_all(&mut b, &[&m1, &m2], Duration::from_secs(15)).await;
    let e = stopped.expect("the taken-over consumer kept working");
    assert!(e.to_string().contains("heartbeat"), "{e}");
    b.close().await.unwrap();
}

/// A consumer whose heartbeat cannot be written (here: the server denies SET) stops with an
/// error, and its unacknowledged message goes to another consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_heartbeat_fails_stops_and_its_messages_are_recovered() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let broker = connect(&server.url(), 1500).await;
    let room = unique_name("q");
    let mut conn = raw(&server).await;
    let m1 = publish(&broker, &room, "m1").await;
    let mut a = broker
        .subscribe(Subscription::new(Mode::Queue, room.as_str()).consumer("a"))
        .await
        .unwrap();
    assert_eq!(a.recv().await.unwrap().message.id, m1.id);
    let _: () = query(&mut conn, &["ACL", "SETUSER", "default", "-set"]).await;
    let started = Instant::now();
    // The queue is empty: the only way out of recv is the heartbeat check.
    let e = match tokio::time::timeout(Duration::from_secs(10), a.recv()).await {
        Ok(Ok(d)) => panic!("delivered {:?} from an empty queue", d.message),
        Ok(Err(e)) => e,
        Err(_) => panic!("the consumer kept working without a heartbeat"),
    };
    assert!(e.to_string().contains("heartbeat"), "{e}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "stopped before its key could expire ({:?})",
        started.elapsed()
    );
    let _: () = query(&mut conn, &["ACL", "SETUSER", "default", "+set"]).await;
    drop(a);
    let mut b = broker
        .subscribe(Subscription::new(Mode::Queue, room.as_str()).consumer("b"))
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), b.recv())
        .await
        .expect("m1 recovered")
        .unwrap();
    assert_eq!(d.message.id, m1.id);
    assert!(d.redelivered);
    b.close().await.unwrap();
}

/// `listen` must not hang forever on a dead path: a blocked recv whose reply never comes
/// fails with a transient error (the CLI then reconnects) within a bounded time.
async fn stalled_recv_fails_transiently(mode: Mode) {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = FaultProxy::start(socket_addr_of(&server.url(), 6379)).await;
    // A long TTL: what must fire here is the response timeout, not the heartbeat check.
    let broker = connect(&proxy.url_for(&server.url()), 600_000).await;
    let room = unique_name("r");
    let mut sub = broker
        .subscribe(Subscription::new(mode, room.as_str()).start(StartFrom::Latest))
        .await
        .unwrap();
    proxy.stall();
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(30), sub.recv()).await;
    let e = match outcome {
        Err(_) => panic!("recv still hangs on a dead connection after 30 s"),
        Ok(Ok(d)) => panic!("delivered {:?} from an empty room", d.message),
        Ok(Err(e)) => e,
    };
    assert!(e.is_transient(), "a dead path is transient: {e}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_fails_a_queue_recv_transiently() {
    stalled_recv_fails_transiently(Mode::Queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_fails_a_stream_recv_transiently() {
    stalled_recv_fails_transiently(Mode::Stream).await;
}

/// `survives_restart` is what the server does, not a promise of the backend: true with an
/// append-only file, false without one (the Redis default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_restart_is_declared_only_when_the_server_keeps_an_aof() {
    let Some(plain) = RedisServer::start() else {
        return;
    };
    let broker = connect(&plain.url(), 10_000).await;
    assert!(!broker.capabilities().survives_restart);
    let Some(aof) = RedisServer::start_with(&["--appendonly", "yes"]) else {
        return;
    };
    let broker = connect(&aof.url(), 10_000).await;
    assert!(broker.capabilities().survives_restart);
}

async fn publish_stream(broker: &RedisBroker, room: &str, n: usize) -> Vec<Message> {
    let mut p = broker.publisher(Mode::Stream, room).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..n {
        let m = Message::new("tester", format!("e{i}"), room);
        p.publish(&m).await.unwrap();
        sent.push(m);
    }
    sent
}

async fn recv_one(sub: &mut Box<dyn Subscriber>) -> charla_core::Delivery {
    tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("an entry")
        .unwrap()
}

/// A plain reader whose next entries were trimmed away is told exactly how many it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_stream_reader_is_told_what_retention_removed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let broker = connect(&server.url(), 10_000).await;
    let room = unique_name("s");
    let mut conn = raw(&server).await;
    let sent = publish_stream(&broker, &room, 5).await;
    let mut sub = broker
        .subscribe(
            Subscription::new(Mode::Stream, room.as_str())
                .start(StartFrom::Beginning)
                .prefetch(2),
        )
        .await
        .unwrap();
    assert_eq!(recv_one(&mut sub).await.message.id, sent[0].id);
    assert_eq!(recv_one(&mut sub).await.message.id, sent[1].id);
    assert_eq!(sub.take_missed(), 0);
    // Retention removes e0..e2; the reader has not read e2.
    let _: u64 = query(&mut conn, &["XTRIM", &room, "MAXLEN", "2"]).await;
    assert_eq!(recv_one(&mut sub).await.message.id, sent[3].id);
    assert_eq!(sub.take_missed(), 1, "e2 was never read");
    assert_eq!(recv_one(&mut sub).await.message.id, sent[4].id);
    assert_eq!(sub.take_missed(), 0, "reported once");
}

/// A group behind a trimmed stream is told exactly how many entries it missed, each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_group_is_told_what_retention_removed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let broker = connect(&server.url(), 10_000).await;
    let room = unique_name("s");
    let mut conn = raw(&server).await;
    let sent = publish_stream(&broker, &room, 6).await;
    let mut sub = broker
        .subscribe(
            Subscription::new(Mode::Stream, room.as_str())
                .group("g")
                .start(StartFrom::Beginning)
                .prefetch(2),
        )
        .await
        .unwrap();
    for m in &sent[..2] {
        let d = recv_one(&mut sub).await;
        assert_eq!(d.message.id, m.id);
        sub.ack(d.tag).await.unwrap();
    }
    let _: u64 = query(&mut conn, &["XTRIM", &room, "MAXLEN", "2"]).await;
    for m in &sent[4..6] {
        let d = recv_one(&mut sub).await;
        assert_eq!(d.message.id, m.id);
        sub.ack(d.tag).await.unwrap();
    }
    assert_eq!(sub.take_missed(), 2, "e2 and e3 were never read");
    // A second gap is counted on its own, not with the first again.
    let more = publish_stream(&broker, &room, 4).await;
    let _: u64 = query(&mut conn, &["XTRIM", &room, "MAXLEN", "1"]).await;
    let d = recv_one(&mut sub).await;
    assert_eq!(d.message.id, more[3].id);
    assert_eq!(sub.take_missed(), 3);
}

/// Pending entries trimmed before they were acked are reported when a member takes them over
/// (XAUTOCLAIM's deleted ids), not settled silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_pending_entries_are_reported_when_claimed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let broker = connect(&server.url(), 300).await;
    let room = unique_name("s");
    let mut conn = raw(&server).await;
    let sub = |name: &str| {
        Subscription::new(Mode::Stream, room.as_str())
            .group("g")
            .consumer(name)
            .start(StartFrom::Beginning)
            .prefetch(2)
    };
    publish_stream(&broker, &room, 2).await;
    let mut a = broker.subscribe(sub("a")).await.unwrap();
    recv_one(&mut a).await;
    recv_one(&mut a).await;
    drop(a); // dies holding both, unacked
    let _: u64 = query(&mut conn, &["XTRIM", &room, "MAXLEN", "0"]).await;
    let mut b = broker.subscribe(sub("b")).await.unwrap();
    let mut missed = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while missed < 2 && Instant::now() < deadline {
        // Nothing is left to deliver: each recv only waits, taking over what is idle.
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(700), b.recv()).await {
            panic!("delivered from an empty stream: {:?}", r.map(|d| d.message));
        }
        missed += b.take_missed();
    }
    assert_eq!(missed, 2);
    let pending: Vec<Value> = query(&mut conn, &["XPENDING", &room, "g", "-", "+", "10"]).await;
    assert!(pending.is_empty(), "settled after being reported");
}

/// Retention is what the URL says: `stream_maxlen=0` keeps everything, `stream_max_age`
/// trims by age (MINID, approximate: whole nodes of old entries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_retention_follows_the_url_options() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut conn = raw(&server).await;
    let unlimited = connect(&format!("{}?stream_maxlen=0", server.url()), 10_000).await;
    let room = unique_name("s");
    publish_stream(&unlimited, &room, 250).await;
    assert_eq!(query::<u64>(&mut conn, &["XLEN", &room]).await, 250);

    // 300 entries from 1970 (explicit ids), then one published with a one-hour limit.
    let room = unique_name("s");
    let mut pipe = redis::pipe();
    for i in 1..=300 {
        pipe.cmd("XADD")
            .arg(&room)
            .arg(format!("1-{i}"))
            .arg("payload")
            .arg("{}")
            .ignore();
    }
    let _: () = pipe.query_async(&mut conn).await.unwrap();
    let aged = connect(&format!("{}?stream_max_age=1h", server.url()), 10_000).await;
    publish_stream(&aged, &room, 1).await;
    let left: u64 = query(&mut conn, &["XLEN", &room]).await;
    assert!(left < 150, "old entries trimmed by age: {left} left");
    // Bad values are refused, not ignored.
    let bad = BrokerUrl::parse(&format!("{}?stream_max_age=soon", server.url())).unwrap();
    assert!(RedisBroker::connect(&bad).await.is_err());
}

/// A member restarted under its name finds its own pending entries gone (trimmed while it was
/// down): they are reported as missed and settled, and it goes on with what is new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_reports_its_trimmed_pending_entries() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let broker = connect(&server.url(), 10_000).await;
    let room = unique_name("s");
    let mut conn = raw(&server).await;
    let sub = || {
        Subscription::new(Mode::Stream, room.as_str())
            .group("g")
            .consumer("a")
            .start(StartFrom::Beginning)
            .prefetch(10)
    };
    publish_stream(&broker, &room, 2).await;
    let mut a = broker.subscribe(sub()).await.unwrap();
    recv_one(&mut a).await;
    recv_one(&mut a).await;
    drop(a); // dies holding both, unacked
    let _: u64 = query(&mut conn, &["XTRIM", &room, "MAXLEN", "0"]).await;
    let mut a = broker.subscribe(sub()).await.unwrap();
    let fresh = publish_stream(&broker, &room, 1).await;
    let d = recv_one(&mut a).await;
    assert_eq!(d.message.id, fresh[0].id);
    a.ack(d.tag).await.unwrap();
    assert_eq!(a.take_missed(), 2);
    let pending: Vec<Value> = query(&mut conn, &["XPENDING", &room, "g", "-", "+", "10"]).await;
    assert!(pending.is_empty(), "settled after being reported");
}
