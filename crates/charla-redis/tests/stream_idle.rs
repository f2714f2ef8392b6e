//! An idle stream reader waits on the server (XREAD BLOCK) instead of asking again and again:
//! a chat room nobody writes in must cost nothing. Counted with real Redis's
//! `total_commands_processed` while a `recv` waits.

use std::time::Duration;

use charla_core::{Broker, BrokerUrl, Mode, StartFrom, Subscription};
use charla_redis::RedisBroker;
use charla_testkit::{unique_name, RedisServer};

async fn commands(server: &RedisServer) -> u64 {
    let mut conn = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_commands_processed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_stream_readers_wait_on_the_server() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let b = RedisBroker::connect(&BrokerUrl::parse(&server.url()).expect("url"))
        .await
        .expect("connect");
    for (label, subscription) in [
        (
            "plain, room without a stream",
            Subscription::new(Mode::Stream, unique_name("idle-")),
        ),
        (
            "plain, from the beginning",
            Subscription::new(Mode::Stream, unique_name("idle-")).start(StartFrom::Beginning),
        ),
        (
            "group",
            Subscription::new(Mode::Stream, unique_name("idle-")).group("g"),
        ),
    ] {
        let mut sub = b.subscribe(subscription).await.expect("subscribe");
        let before = commands(&server).await;
        let waited = tokio::time::timeout(Duration::from_secs(3), sub.recv()).await;
        assert!(waited.is_err(), "{label}: nothing was published");
        let spent = commands(&server).await - before;
        // A blocking read is one command per second (plus the INFO calls and a read around
        // each wait); a reader that spins sends thousands.
        assert!(spent < 40, "{label}: {spent} commands in 3 s of waiting");
        sub.close().await.expect("close");
    }
}
