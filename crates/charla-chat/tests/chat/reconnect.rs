//! The broker connection cut while joining, and right after: the link reconnects, the join
//! completes, readers carry on where they were, with no gap and no repeat.
//!
//! The cut is real on Redis (the fault proxy between the chat and redis-server closes every
//! connection and refuses new ones) and simulated on `memory://` (the forwarding broker fails
//! the chat's connection as a dropped one fails). Messages keep being published during the
//! outage through the test's own connection, as other people's chats would.

use std::sync::Arc;
use std::time::Duration;

use charla_chat::RoomFeed;
use charla_core::Mode;
use charla_testkit::unique_name;
use tokio::sync::Notify;

use crate::common::{
    assert_suffix, is_connected, is_reconnecting, named, status_becomes, stream_of, texts, Backend,
    Env, Hook, Phase, Reader, Sender,
};

const READ: Duration = Duration::from_secs(20);

/// The connection is cut just as the join reads history: the read fails, the link
/// reconnects (refused while the outage lasts), and the join completes on the new
/// connection with what was published meanwhile, then live messages.
pub async fn reconnect_in_the_middle_of_a_join(backend: Backend) {
    const N: usize = 20;
    let Some(env) = Env::start(backend).await else {
        return;
    };
    let direct = env.direct().await;
    let room = unique_name("rejoin-");
    let sender = Sender::new(&*direct, &room).await;
    sender.send_n("old", 5).await;

    let cut = Arc::new(Notify::new());
    let hook: Hook = {
        let faults = env.faults.clone();
        let sender = sender.clone();
        let cut = cut.clone();
        let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        Arc::new(move |phase, limit| {
            let faults = faults.clone();
            let sender = sender.clone();
            let cut = cut.clone();
            let fired = fired.clone();
            Box::pin(async move {
                if phase == Phase::BeforeHistory
                    && limit == N
                    && !fired.swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    faults.outage();
                    sender.send("away-0").await;
                    cut.notify_one();
                }
            })
        })
    };
    let link = env.link(Some(hook)).await;
    let feed = RoomFeed::start(link.clone(), Mode::Stream, &room);
    let join = tokio::spawn(async move {
        let joined = feed.join(N).await;
        (feed, joined)
    });
    cut.notified().await;
    status_becomes(&link, "the link knows it lost the broker", is_reconnecting).await;
    sender.send("away-1").await;
    sender.send("away-2").await;
    assert!(
        !join.is_finished(),
        "the join finished while the broker was unreachable"
    );
    env.restore();
    let (feed, joined) = join.await.expect("the join task");
    let mut reader = Reader::new(joined.expect("the join completes after the reconnect"));
    let mut want = named("old", 0..5);
    want.extend(named("away", 0..3));
    assert_eq!(
        texts(&reader.view),
        want,
        "the history read after the reconnect"
    );

    sender.send_n("back", 5).await;
    reader.read_until("back-4", READ).await;
    let stream = stream_of(&*direct, &room).await;
    assert_suffix(&reader.view, &stream, "the reader");
    assert_eq!(reader.view.len(), 5 + 3 + 5);
    assert!(is_connected(&link.status().borrow()));
    drop(feed);
}

/// A reader joined, nothing live has come yet, and the broker becomes unreachable. What is
/// published meanwhile must reach the reader once the link is back.
pub async fn outage_right_after_joining_loses_nothing(backend: Backend) {
    outage_after_join(backend, 0).await;
}

/// As above, after some live messages (the feed has a position to resume from).
pub async fn outage_after_live_messages_loses_nothing(backend: Backend) {
    outage_after_join(backend, 3).await;
}

async fn outage_after_join(backend: Backend, live_before: usize) {
    let Some(env) = Env::start(backend).await else {
        return;
    };
    let direct = env.direct().await;
    let room = unique_name("outage-");
    let sender = Sender::new(&*direct, &room).await;
    sender.send_n("old", 3).await;
    let link = env.link(None).await;
    let feed = RoomFeed::start(link.clone(), Mode::Stream, &room);
    let mut reader = Reader::new(feed.join(10).await.expect("join"));
    assert_eq!(texts(&reader.view), named("old", 0..3));
    if live_before > 0 {
        sender.send_n("live", live_before).await;
        reader
            .read_until(&format!("live-{}", live_before - 1), READ)
            .await;
    }

    env.outage();
    status_becomes(&link, "the feed noticed the outage", is_reconnecting).await;
    sender.send_n("away", 3).await;
    env.restore();
    status_becomes(&link, "the link is back", is_connected).await;
    sender.send_n("back", 2).await;
    reader.read_until("back-1", READ).await;

    let stream = stream_of(&*direct, &room).await;
    assert_suffix(&reader.view, &stream, "the reader");
    assert_eq!(reader.view.len(), 3 + live_before + 3 + 2);
}
