//! The outbox: what people type while the broker is away is sent once it is back, each
//! message exactly once, in the order typed (also across rooms).

use std::time::Duration;

use charla_chat::{Outbox, Posted, RoomFeed};
use charla_core::{Message, Mode};
use charla_testkit::unique_name;
use tokio::sync::oneshot::error::TryRecvError;

use crate::common::{
    assert_suffix, eventually, is_connected, is_reconnecting, status_becomes, stream_of, texts,
    Backend, Env, Reader,
};

const READ: Duration = Duration::from_secs(20);

/// Three posts go out; the broker stops (redis-server killed; `memory://`: an outage); 20
/// posts are typed into two rooms, none can be confirmed; the broker comes back (restarted on
/// the same port with its append-only file); every post is confirmed, each room's stream
/// holds its posts once each in the order typed, and a reader of each room shows them so.
pub async fn typed_while_the_broker_is_away_sent_once_in_order(backend: Backend) {
    let Some(mut env) = Env::start(backend).await else {
        return;
    };
    let rooms = [unique_name("outbox-a-"), unique_name("outbox-b-")];
    let link = env.link(None).await;
    let outbox = Outbox::start(link.clone(), Mode::Stream);
    let feeds = rooms
        .each_ref()
        .map(|room| RoomFeed::start(link.clone(), Mode::Stream, room));
    let mut readers = Vec::new();
    for feed in &feeds {
        readers.push(Reader::new(feed.join(100).await.expect("join")));
    }

    let mut typed: [Vec<Message>; 2] = Default::default();
    for i in 0..3 {
        let m = Message::new("ana", format!("before-{i}"), rooms[0].as_str());
        typed[0].push(m.clone());
        let posted = outbox.post_confirmed(m).await.expect("post");
        confirmed(posted, "a post while the broker is up").await;
    }

    env.stop_broker();
    status_becomes(&link, "the chat noticed the broker left", is_reconnecting).await;
    let mut pending: Vec<Posted> = Vec::new();
    for i in 0..20 {
        let r = i % 2;
        let m = Message::new("ana", format!("away-{i}"), rooms[r].as_str());
        typed[r].push(m.clone());
        pending.push(outbox.post_confirmed(m).await.expect("post"));
    }
    eventually("the 20 posts wait in the outbox", READ, || {
        outbox.waiting() == 20
    })
    .await;
    for p in &mut pending {
        assert!(
            matches!(p.try_recv(), Err(TryRecvError::Empty)),
            "a post was settled while the broker was away"
        );
    }

    env.start_broker().await;
    for p in pending {
        confirmed(p, "a post typed while the broker was away").await;
    }
    assert_eq!(outbox.waiting(), 0);
    status_becomes(&link, "the link is back", is_connected).await;

    let direct = env.direct().await;
    for (r, room) in rooms.iter().enumerate() {
        let stream = stream_of(&*direct, room).await;
        let ids = |ms: &[Message]| ms.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(&stream),
            ids(&typed[r]),
            "room {r}: each post once, in the order typed\n  stream: {:?}\n  typed:  {:?}",
            texts(&stream),
            texts(&typed[r])
        );
        let last = typed[r].last().expect("posts").mensaje.clone();
        readers[r].read_until(&last, READ).await;
        assert_suffix(
            &readers[r].view,
            &stream,
            &format!("the reader of room {r}"),
        );
        assert_eq!(
            texts(&readers[r].view),
            texts(&typed[r]),
            "the reader of room {r} (joined when it was empty) shows every post"
        );
    }
}

async fn confirmed(posted: Posted, what: &str) {
    match tokio::time::timeout(READ, posted).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => panic!("{what}: refused: {e}"),
        Ok(Err(_)) => panic!("{what}: the outbox dropped it"),
        Err(_) => panic!("{what}: not confirmed within {READ:?}"),
    }
}
