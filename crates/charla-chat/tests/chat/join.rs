//! Joining a room: its last N messages, then live ones, without a gap or a repeat between
//! them, also when messages arrive exactly while the join is in progress.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use charla_chat::{Joined, RoomFeed};
use charla_core::{Message, Mode};
use charla_testkit::unique_name;
use tokio::sync::broadcast;

use crate::common::{
    assert_suffix, eventually, named, stream_of, texts, Backend, Env, Hook, Phase, Reader, Sender,
};

const READ: Duration = Duration::from_secs(20);

/// 30 old messages, a join of 10: the last 10, oldest first; then 20 live ones. A second
/// reader joining the same feed later gets the last 10 (live ones by then) and what follows.
pub async fn history_then_live(backend: Backend) {
    let Some(env) = Env::start(backend).await else {
        return;
    };
    let direct = env.direct().await;
    let room = unique_name("join-");
    let sender = Sender::new(&*direct, &room).await;
    sender.send_n("old", 30).await;

    let link = env.link(None).await;
    let feed = RoomFeed::start(link.clone(), Mode::Stream, &room);
    let mut first = Reader::new(feed.join(10).await.expect("join"));
    assert_eq!(
        texts(&first.view),
        named("old", 20..30),
        "the last 10, oldest first"
    );

    sender.send_n("live", 20).await;
    first.read_until("live-19", READ).await;

    let mut second = Reader::new(feed.join(10).await.expect("second join"));
    assert_eq!(texts(&second.view), named("live", 10..20));
    sender.send_n("more", 5).await;
    first.read_until("more-4", READ).await;
    second.read_until("more-4", READ).await;

    let stream = stream_of(&*direct, &room).await;
    assert_suffix(&first.view, &stream, "the first reader");
    assert_eq!(first.view.len(), 10 + 20 + 5);
    assert_suffix(&second.view, &stream, "the second reader");
    assert_eq!(second.view.len(), 10 + 5);
}

/// How a front end joins: the terminal chat calls `join`; the web gateway passes a channel
/// of its own, fed from the feed by a task (its frame encoder), subscribed before
/// `join_with` is called.
#[derive(Debug, Clone, Copy)]
pub enum Style {
    Terminal,
    Web,
}

pub async fn join_as(style: Style, feed: &RoomFeed, history: usize) -> Joined {
    match style {
        Style::Terminal => feed.join(history).await.expect("join"),
        Style::Web => {
            let (tx, rx) = broadcast::channel(1024);
            let mut from = feed.subscribe();
            // Ends when the feed does.
            tokio::spawn(async move {
                while let Ok(m) = from.recv().await {
                    let _ = tx.send(m);
                }
            });
            feed.join_with(rx, history).await.expect("join_with")
        }
    }
}

/// The feed's own live channel, watched by a hook: set once the feed is started.
type Probe = Arc<Mutex<Option<broadcast::Receiver<Arc<Message>>>>>;

/// A hook that, the first time the join reads history (told apart by its limit), publishes
/// `before` messages through the test's own connection just before the read and one more,
/// `raced-after`, as soon as the read returned, and waits until the feed has passed that one
/// on to its readers: the first are published after the feed's live subscription is in place
/// and before the history read (the window in which a join can show a message twice: it is
/// in both), the last is in the feed's channel before the join returns (the window in which
/// a join can miss one: it is not in the history, and only a live subscription taken before
/// the read has it).
fn publish_around_the_joins_history_read(
    sender: Arc<Sender>,
    limit: usize,
    before: usize,
    fired: Arc<AtomicUsize>,
    probe: Probe,
) -> Hook {
    Arc::new(move |phase, asked| {
        let sender = sender.clone();
        let fired = fired.clone();
        let probe = probe.clone();
        Box::pin(async move {
            if asked != limit {
                return;
            }
            match phase {
                Phase::BeforeHistory if fired.load(Ordering::SeqCst) == 0 => {
                    sender.send_n("raced", before).await;
                    fired.store(1, Ordering::SeqCst);
                }
                Phase::AfterHistory if fired.load(Ordering::SeqCst) == 1 => {
                    let mut live = probe.lock().unwrap().take().expect("the probe is set");
                    let m = sender.send("raced-after").await;
                    let passed = tokio::time::timeout(READ, async {
                        while live.recv().await.expect("the feed's channel").id != m.id {}
                    });
                    passed.await.expect("the feed passed raced-after on");
                    fired.store(2, Ordering::SeqCst);
                }
                _ => {}
            }
        })
    })
}

/// Five "old" messages in `room`, then a join of `n` through a link whose history read is
/// raced by `burst` publishes before it and one after (see
/// `publish_around_the_joins_history_read`): the sender, the feed (kept alive for the live
/// messages) and the reader, once the hook has run on both sides of the read.
async fn join_raced(
    env: &Env,
    direct: &Arc<dyn charla_core::Broker>,
    style: Style,
    room: &str,
    n: usize,
    burst: usize,
    who: &str,
) -> (Arc<Sender>, RoomFeed, Reader) {
    let sender = Sender::new(&**direct, room).await;
    sender.send_n("old", 5).await;
    let fired = Arc::new(AtomicUsize::new(0));
    let probe = Probe::default();
    let hook = publish_around_the_joins_history_read(
        sender.clone(),
        n,
        burst,
        fired.clone(),
        probe.clone(),
    );
    let link = env.link(Some(hook)).await;
    let feed = RoomFeed::start(link, Mode::Stream, room);
    *probe.lock().unwrap() = Some(feed.subscribe());
    let reader = Reader::new(join_as(style, &feed, n).await);
    assert_eq!(
        fired.load(Ordering::SeqCst),
        2,
        "{who}: the hook ran around the join's read"
    );
    (sender, feed, reader)
}

/// THE RACE: a message published between the live subscription and the history read is in
/// the history AND comes live, it must be shown once; one published right after the history
/// read is in neither the history nor (had the join subscribed late) the live channel, it
/// must be shown once too. For both ways of joining.
pub async fn race_a_message_between_subscribing_and_reading_history_shows_once(backend: Backend) {
    const N: usize = 10;
    let Some(env) = Env::start(backend).await else {
        return;
    };
    let direct = env.direct().await;
    for style in [Style::Terminal, Style::Web] {
        let who = format!("the reader ({style:?})");
        let room = unique_name("race-");
        let (sender, _feed, mut reader) = join_raced(&env, &direct, style, &room, N, 1, &who).await;
        let mut want = named("old", 0..5);
        want.push("raced-0".into());
        assert_eq!(
            texts(&reader.view),
            want,
            "{who}: the history has the raced message"
        );

        sender.send_n("after", 3).await;
        reader.read_until("after-2", READ).await;
        let stream = stream_of(&*direct, &room).await;
        assert_suffix(&reader.view, &stream, &who);
        want.push("raced-after".into());
        want.extend(named("after", 0..3));
        assert_eq!(texts(&reader.view), want, "{who}");
        assert!(
            reader.carried.contains(&reader.view[5].id),
            "{who}: raced-0 also came live (the race happened)"
        );
    }
}

/// The same window with more messages in it than the join shows: the history is the last N
/// of them, and the older ones that come live after it must not be shown (they would come
/// after newer messages, out of the room's order).
pub async fn race_a_burst_longer_than_the_history_keeps_order(backend: Backend) {
    const N: usize = 3;
    const BURST: usize = 8;
    let Some(env) = Env::start(backend).await else {
        return;
    };
    let direct = env.direct().await;
    for style in [Style::Terminal, Style::Web] {
        let who = format!("the reader ({style:?})");
        let room = unique_name("burst-");
        let (sender, _feed, mut reader) =
            join_raced(&env, &direct, style, &room, N, BURST, &who).await;
        assert_eq!(
            texts(&reader.view),
            named("raced", BURST - N..BURST),
            "{who}"
        );

        sender.send_n("after", 3).await;
        reader.read_until("after-2", READ).await;
        let stream = stream_of(&*direct, &room).await;
        assert_suffix(&reader.view, &stream, &who);
        assert_eq!(reader.view.len(), N + 1 + 3, "{who}");
        assert_eq!(
            reader.carried.len(),
            BURST + 1 + 3,
            "{who}: the whole burst came live (the race happened)"
        );
    }
}

/// A publish retried after its reply was lost (the outbox does it, same id) puts the message
/// in the room twice: the history shows it once, and so does the live channel.
pub async fn a_retried_publish_shows_once(backend: Backend) {
    let Some(env) = Env::start(backend).await else {
        return;
    };
    let direct = env.direct().await;
    let room = unique_name("retried-");
    let sender = Sender::new(&*direct, &room).await;
    let old = sender.send_n("old", 3).await;
    sender.resend(&old[1]).await;
    sender.send("old-3").await;
    assert_eq!(
        texts(&stream_of(&*direct, &room).await),
        ["old-0", "old-1", "old-2", "old-1", "old-3"],
        "the room holds the retried message twice"
    );

    let link = env.link(None).await;
    let feed = RoomFeed::start(link, Mode::Stream, &room);
    let mut reader = Reader::new(feed.join(10).await.expect("join"));
    assert_eq!(
        texts(&reader.view),
        named("old", 0..4),
        "the history, each once"
    );
    let live = sender.send("live-0").await;
    sender.resend(&live).await;
    sender.send("live-1").await;
    reader.read_until("live-1", READ).await;
    let mut want = named("old", 0..4);
    want.extend(named("live", 0..2));
    assert_eq!(texts(&reader.view), want, "each message once, in order");

    // The room now ends with a repeat of an earlier message (live-0, live-1, live-0 again): a
    // reader joining on a new feed gets the history each once and what follows.
    sender.resend(&live).await;
    let link = env.link(None).await;
    let fresh = RoomFeed::start(link, Mode::Stream, &room);
    // The last five entries: old-3, live-0, live-0 again, live-1, live-0 again.
    let mut late = Reader::new(fresh.join(5).await.expect("join"));
    assert_eq!(texts(&late.view), ["old-3", "live-0", "live-1"]);
    sender.send("next").await;
    late.read_until("next", READ).await;
    reader.read_until("next", READ).await;
    want.push("next".into());
    assert_eq!(texts(&reader.view), want, "the first reader");
    assert_eq!(
        texts(&late.view),
        ["old-3", "live-0", "live-1", "next"],
        "the late reader"
    );
}

/// Messages published without pause while readers join, some on one shared feed (as the web
/// gateway's pages do), some on a feed of their own (as `charla chat` does), with histories
/// of 1 to 4 messages: each reader shows the end of the room, gapless, once each, in order.
pub async fn joins_under_continuous_traffic_see_the_end_of_the_room(backend: Backend) {
    const JOINERS: usize = 12;
    let Some(env) = Env::start(backend).await else {
        return;
    };
    let direct = env.direct().await;
    let room = unique_name("traffic-");
    let sender = Sender::new(&*direct, &room).await;
    sender.send_n("old", 5).await;
    let link = env.link(None).await;
    let shared = Arc::new(RoomFeed::start(link.clone(), Mode::Stream, &room));

    let published = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let sender = sender.clone();
        let published = published.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                sender.send(&format!("m-{i}")).await;
                i += 1;
                published.store(i, Ordering::SeqCst);
            }
            sender.send("end").await;
        })
    };

    let joined = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for j in 0..JOINERS {
        // Each join starts while messages keep coming: a few after the previous one.
        let from = published.load(Ordering::SeqCst);
        eventually("more traffic went by", READ, || {
            published.load(Ordering::SeqCst) >= from + 7
        })
        .await;
        let shared = shared.clone();
        let link = link.clone();
        let room = room.clone();
        let joined = joined.clone();
        readers.push(tokio::spawn(async move {
            let own;
            let feed = if j % 2 == 0 {
                &*shared
            } else {
                own = RoomFeed::start(link, Mode::Stream, &room);
                &own
            };
            let mut reader = Reader::new(feed.join(1 + j % 4).await.expect("join"));
            joined.fetch_add(1, Ordering::SeqCst);
            reader.read_until("end", READ).await;
            (j, reader.view)
        }));
    }
    eventually("every reader joined", READ, || {
        joined.load(Ordering::SeqCst) == JOINERS
    })
    .await;
    let from = published.load(Ordering::SeqCst);
    eventually("traffic after the last join", READ, || {
        published.load(Ordering::SeqCst) >= from + 7
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.expect("the traffic task");

    let stream = stream_of(&*direct, &room).await;
    for r in readers {
        let (j, view) = r.await.expect("a reader");
        let on = if j % 2 == 0 { "shared" } else { "own" };
        assert_suffix(
            &view,
            &stream,
            &format!("reader {j} (history {}, {on} feed)", 1 + j % 4),
        );
    }
}
