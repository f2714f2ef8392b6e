//! What history and the room list do on Redis beyond what the conformance suite states for
//! every backend: a room whose key holds another type, entries written by other producers,
//! a position that is not a stream id, and keys that are not rooms.

use charla_core::{Broker, BrokerError, BrokerUrl, Message, Mode};
use charla_redis::RedisBroker;
use charla_testkit::{unique_name, RedisServer};
use redis::aio::MultiplexedConnection;

async fn raw(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

async fn query(conn: &mut MultiplexedConnection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async::<redis::Value>(conn)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_redis_keys_of_every_kind() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = BrokerUrl::parse(&server.url()).expect("url");
    let b = RedisBroker::connect(&url).await.expect("connect");
    let mut conn = raw(&server).await;

    // A queue room is a list: reading it as a stream is the wrong type, said so.
    let queue = unique_name("q-");
    let mut p = b.publisher(Mode::Queue, &queue).await.expect("publisher");
    p.publish(&Message::new("a", "b", queue.as_str()))
        .await
        .expect("publish");
    match b.history(&queue, 10, None).await {
        Err(BrokerError::WrongType { .. }) => {}
        other => panic!("history of a list: expected WrongType, got {other:?}"),
    }

    // Entries another producer wrote without charla's field, or with a seed message in it.
    let room = unique_name("s-");
    let seed = r#"{"usuario":"Ana","mensaje":"hola","hora":"10:00:00"}"#;
    query(&mut conn, &["XADD", &room, "*", "text", "no payload field"]).await;
    query(&mut conn, &["XADD", &room, "*", "payload", seed]).await;
    query(
        &mut conn,
        &["XADD", &room, "*", "other", "x", "payload", "nope"],
    )
    .await;
    let page = b.history(&room, 10, None).await.expect("history");
    assert_eq!(page.len(), 1, "only the chat message: {page:?}");
    assert_eq!(page[0].message.mensaje, "hola");
    assert_eq!(page[0].message.room, room, "the room is filled in");

    // A position that is not a stream id.
    for bad in ["0:41", "abc", "1-x"] {
        match b.history(&room, 10, Some(bad)).await {
            Err(BrokerError::InvalidArgument(text)) => {
                assert!(text.contains("stream id"), "{text}")
            }
            other => panic!("before={bad}: expected InvalidArgument, got {other:?}"),
        }
    }
    // A bare millisecond time is an id too (`ms` = `ms-0`): nothing is that old.
    assert!(b
        .history(&room, 10, Some("1"))
        .await
        .expect("history")
        .is_empty());

    // Rooms: streams only, never charla's bookkeeping nor keys that cannot be room names.
    query(&mut conn, &["SET", "a-string", "1"]).await;
    query(&mut conn, &["XADD", "charla:{x}:own", "*", "f", "v"]).await;
    query(&mut conn, &["XADD", "braces{y}", "*", "f", "v"]).await;
    let rooms = b.rooms().await.expect("rooms");
    assert_eq!(rooms, vec![room.clone()], "only the stream room");
}
