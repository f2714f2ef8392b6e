//! What is particular to Kafka, against a real Kafka-protocol broker (tansu) per test:
//! partitions shared by a group's members, a group resuming exactly where it acked, history
//! across partitions, and bad input (unreachable broker, a name Kafka refuses, a payload that
//! is not a chat message).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use charla_core::{
    Broker, BrokerError, BrokerUrl, Message, Mode, StartFrom, Subscriber, Subscription,
};
use charla_kafka::KafkaBroker;
use charla_testkit::{unique_name, KafkaServer};

const PATIENCE: Duration = Duration::from_secs(30);

async fn connect(server: &KafkaServer) -> KafkaBroker {
    let url = BrokerUrl::parse(&server.url()).expect("url");
    KafkaBroker::connect(&url).await.expect("connect")
}

fn messages(room: &str, n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| Message::new("test", format!("m{i}"), room))
        .collect()
}

async fn recv(sub: &mut dyn Subscriber) -> Option<charla_core::Delivery> {
    match tokio::time::timeout(PATIENCE, sub.recv()).await {
        Ok(d) => Some(d.expect("recv")),
        Err(_) => None,
    }
}

/// Receive and ack exactly `expected`, in that order (`what` says why the order is owed).
async fn expect_in_order<'a>(
    sub: &mut dyn Subscriber,
    expected: impl IntoIterator<Item = &'a Message>,
    what: &str,
) {
    for m in expected {
        let d = recv(sub)
            .await
            .unwrap_or_else(|| panic!("{what}: {} did not arrive", m.mensaje));
        assert_eq!(d.message.id, m.id, "{what}");
        sub.ack(d.tag).await.expect("ack");
    }
}

async fn quiet(sub: &mut dyn Subscriber) -> bool {
    tokio::time::timeout(Duration::from_secs(2), sub.recv())
        .await
        .is_err()
}

/// Two members of one group, records spread over three partitions: they split the
/// partitions and together get every message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_of_a_group_split_the_partitions() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let b = connect(&server).await;
    let room = unique_name("split-");
    let group = unique_name("g-");
    let sub = || {
        Subscription::new(Mode::Stream, room.as_str())
            .group(group.as_str())
            .start(StartFrom::Beginning)
    };
    let b2 = connect(&server).await;
    let mut one = b.subscribe(sub()).await.expect("subscribe");
    let mut two = b2.subscribe(sub()).await.expect("subscribe");
    // Queue mode keys each record by its id: they spread over the partitions. Published a
    // little at a time, so that both members have joined before most of them arrive.
    let sent = messages(&room, 300);
    let mut p = b.publisher(Mode::Queue, &room).await.expect("publisher");
    let batches: Vec<Vec<Message>> = sent.chunks(20).map(<[Message]>::to_vec).collect();
    let publishing = tokio::spawn(async move {
        for batch in batches {
            p.publish_batch(&batch).await.expect("publish");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let (mut got_one, mut got_two) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + PATIENCE * 2;
    while got_one.len() + got_two.len() < sent.len() && Instant::now() < deadline {
        tokio::select! {
            d = one.recv() => { let d = d.expect("recv"); one.ack(d.tag).await.expect("ack"); got_one.push(d.message.id); }
            d = two.recv() => { let d = d.expect("recv"); two.ack(d.tag).await.expect("ack"); got_two.push(d.message.id); }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    publishing.await.expect("publisher task");
    let all: HashSet<&String> = got_one.iter().chain(&got_two).collect();
    assert_eq!(all.len(), sent.len(), "every message arrived");
    assert_eq!(got_one.len() + got_two.len(), sent.len(), "each once");
    assert!(
        !got_one.is_empty() && !got_two.is_empty(),
        "both members got partitions: {} and {}",
        got_one.len(),
        got_two.len()
    );
    one.close().await.expect("close");
    two.close().await.expect("close");
}

/// A member acks part of a batch and leaves; the next member of the group gets exactly the
/// rest: nothing acked again, nothing missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_resumes_exactly_where_it_acked() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let b = connect(&server).await;
    let room = unique_name("resume-");
    let group = unique_name("g-");
    let sub = || {
        Subscription::new(Mode::Stream, room.as_str())
            .group(group.as_str())
            .start(StartFrom::Beginning)
    };
    let sent = messages(&room, 20);
    b.publisher(Mode::Stream, &room)
        .await
        .expect("publisher")
        .publish_batch(&sent)
        .await
        .expect("publish");
    let mut first = b.subscribe(sub()).await.expect("subscribe");
    expect_in_order(&mut *first, &sent[..7], "in order").await;
    // Three more are taken and never acked: the group must give them again.
    for _ in 0..3 {
        recv(&mut *first).await.expect("a message");
    }
    first.close().await.expect("close");
    let mut next = b.subscribe(sub()).await.expect("subscribe");
    expect_in_order(&mut *next, &sent[7..], "exactly the rest, in order").await;
    assert!(quiet(&mut *next).await, "nothing more");
    next.close().await.expect("close");
}

/// A group that starts at the end misses nothing published once `subscribe` returned, even
/// before its first poll; and a new group replays everything from the beginning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_starts_at_the_end_and_another_replays_history() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let b = connect(&server).await;
    let room = unique_name("latest-");
    let mut p = b.publisher(Mode::Stream, &room).await.expect("publisher");
    let old = messages(&room, 5);
    p.publish_batch(&old).await.expect("publish");
    let mut late = b
        .subscribe(Subscription::new(Mode::Stream, room.as_str()).group(unique_name("g-")))
        .await
        .expect("subscribe");
    let new = messages(&room, 3);
    p.publish_batch(&new).await.expect("publish");
    expect_in_order(&mut *late, &new, "only what came after subscribe").await;
    late.close().await.expect("close");
    let mut replay = b
        .subscribe(
            Subscription::new(Mode::Stream, room.as_str())
                .group(unique_name("g-"))
                .start(StartFrom::Beginning),
        )
        .await
        .expect("subscribe");
    expect_in_order(
        &mut *replay,
        old.iter().chain(&new),
        "a new group replays history in order",
    )
    .await;
    replay.close().await.expect("close");
}

/// `--since TIME`: a reader starting at a time gets exactly what was stored from then on
/// (Kafka's offsets-for-times), with and without a group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_can_start_at_a_time() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let b = connect(&server).await;
    let room = unique_name("since-");
    let mut p = b.publisher(Mode::Stream, &room).await.expect("publisher");
    p.publish_batch(&messages(&room, 3)).await.expect("publish");
    // The next whole second: everything before it is older.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let since = now.as_secs() + 1;
    tokio::time::sleep(Duration::from_millis(
        1000 - u64::from(now.subsec_millis()) + 50,
    ))
    .await;
    let recent = messages(&room, 2);
    p.publish_batch(&recent).await.expect("publish");
    for group in [None, Some(unique_name("g-"))] {
        let mut sub = Subscription::new(Mode::Stream, room.as_str())
            .start(StartFrom::After(format!("@{since}")));
        if let Some(g) = &group {
            sub = sub.group(g.as_str());
        }
        let mut s = b.subscribe(sub).await.expect("subscribe");
        let what = format!("from the time on (group {group:?})");
        expect_in_order(&mut *s, &recent, &what).await;
        assert!(quiet(&mut *s).await, "nothing older");
        s.close().await.expect("close");
    }
}

/// A record that is not a chat message (another application's JSON, or not JSON at all) is
/// moved to the room's dead letters by a group member and the group goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_records_go_to_the_dead_letters_in_a_group() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let b = connect(&server).await;
    let room = unique_name("foreign-");
    let mut p = b.publisher(Mode::Stream, &room).await.expect("publisher");
    p.publish_raw(br#"{"type":"user_created","userId":123}"#)
        .await
        .expect("raw");
    p.publish_raw(b"\xff not json").await.expect("raw");
    let good = Message::new("test", "after the poison", room.as_str());
    p.publish(&good).await.expect("publish");
    let mut s = b
        .subscribe(
            Subscription::new(Mode::Stream, room.as_str())
                .group(unique_name("g-"))
                .start(StartFrom::Beginning),
        )
        .await
        .expect("subscribe");
    let d = recv(&mut *s).await.expect("the good one");
    assert_eq!(d.message.id, good.id);
    s.ack(d.tag).await.expect("ack");
    s.close().await.expect("close");
    let dead = b.dead_letters(&room, 10).await.expect("dead letters");
    assert_eq!(dead.len(), 2, "both foreign records are kept as they were");
    assert_eq!(dead[1].payload, b"\xff not json");
}

#[tokio::test]
async fn an_unreachable_broker_is_a_clear_error_within_seconds() {
    let port = charla_testkit::free_port();
    let url = BrokerUrl::parse(&format!("kafka://127.0.0.1:{port}")).expect("url");
    let started = Instant::now();
    match KafkaBroker::connect(&url).await {
        Err(e @ BrokerError::Unreachable { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
            assert!(!text.contains('\n'), "one line: {text}");
        }
        Err(e) => panic!("expected Unreachable, got {e}"),
        Ok(_) => panic!("nothing listens there"),
    }
    assert!(started.elapsed() < Duration::from_secs(15), "no hang");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_kafka_refuses_are_clear_errors() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let b = connect(&server).await;
    for room in ["sala con espacios", "ñandú", "a/b"] {
        let e = match b.publisher(Mode::Stream, room).await {
            Err(e) => e,
            Ok(_) => panic!("{room:?} accepted"),
        };
        assert!(
            matches!(e, BrokerError::InvalidArgument(_)) && e.to_string().contains("Kafka topic"),
            "{e}"
        );
        assert!(b
            .subscribe(Subscription::new(Mode::Queue, room))
            .await
            .is_err());
    }
}

/// A room's records spread over every partition (queue mode keys them by id): history reads
/// them all, in send order, and pages back through them without gaps or overlaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_every_partition_in_send_order() {
    let Some(server) = KafkaServer::start() else {
        return;
    };
    let b = connect(&server).await;
    let room = unique_name("spread-");
    let mut sent = messages(&room, 40);
    let mut p = b.publisher(Mode::Queue, &room).await.expect("publisher");
    p.publish_batch(&sent).await.expect("publish");
    sent.sort_by(|x, y| (x.ts_us, &x.id).cmp(&(y.ts_us, &y.id)));
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = b
            .history(&room, 7, before.as_deref())
            .await
            .expect("history");
        let Some(first) = page.first() else { break };
        before = first.offset.clone();
        pages.push(page);
        assert!(pages.len() <= 10, "paging back does not end");
    }
    let partitions: HashSet<String> = pages
        .iter()
        .flatten()
        .filter_map(|d| Some(d.offset.as_deref()?.split_once(':')?.0.to_owned()))
        .collect();
    assert!(
        partitions.len() > 1,
        "spread over partitions: {partitions:?}"
    );
    let walked: Vec<&str> = pages
        .iter()
        .rev()
        .flatten()
        .map(|d| d.message.id.as_str())
        .collect();
    let expected: Vec<&str> = sent.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(walked, expected, "every message once, in send order");
    for bad in ["9:0", "x", "0-1"] {
        match b.history(&room, 7, Some(bad)).await {
            Err(BrokerError::InvalidArgument(_)) => {}
            other => panic!("before={bad}: expected InvalidArgument, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_url_options_are_refused() {
    for (url, why) in [
        ("kafka://127.0.0.1:9?partitions=0", "partitions"),
        ("kafka://127.0.0.1:9?colour=red", "unknown option colour"),
        ("kafka://u:p@127.0.0.1:9", "no user or password"),
    ] {
        let url = BrokerUrl::parse(url).expect("url");
        match KafkaBroker::connect(&url).await {
            Err(e @ BrokerError::InvalidUrl { .. }) => {
                assert!(e.to_string().contains(why), "{e}")
            }
            Err(e) => panic!("expected InvalidUrl, got {e}"),
            Ok(_) => panic!("accepted"),
        }
    }
}

/// A replay that died half way (its `replaying` step written; for one dead letter its message
/// already published again, for the other not yet) is finished by the next replay without
/// doubling or losing either: the one already back is found in the room's topic and only
/// marked, the other is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_died_half_way_is_finished_without_doubles() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::Message as _;

    let Some(server) = KafkaServer::start() else {
        return;
    };
    let broker = connect(&server).await;
    let room = unique_name("kdead-");
    let sent = messages(&room, 2);
    let mut publisher = broker
        .publisher(Mode::Queue, &room)
        .await
        .expect("publisher");
    publisher.publish_batch(&sent).await.expect("publish");
    let mut sub = broker
        .subscribe(Subscription::new(Mode::Queue, room.as_str()))
        .await
        .expect("subscribe");
    for _ in 0..2 {
        let d = recv(&mut *sub).await.expect("a message");
        let failure = charla_core::Failure::new(charla_core::DeadReason::Timeout);
        sub.reject(d.tag, failure).await.expect("reject");
    }
    // Where the two dead records are, read as any Kafka client would.
    let dead_topic = charla_kafka::dead_letter_topic(&room).expect("topic");
    let reader: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&dead_topic, p, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    reader.assign(&tpl).expect("assign");
    let mut dead = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while dead.len() < 2 && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(500)) {
            let letter =
                charla_core::DeadLetter::bare(m.payload().unwrap_or_default().to_vec(), &room);
            dead.push((format!("{}:{}", m.partition(), m.offset()), letter));
        }
    }
    assert_eq!(dead.len(), 2, "two dead records");
    // The replay that died: both `replaying`, the first one's message already back.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .create()
        .expect("producer");
    let settled = format!("charla-dead-settled.{room}");
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", server.bootstrap())
            .create()
            .expect("admin");
    let topic =
        rdkafka::admin::NewTopic::new(&settled, 1, rdkafka::admin::TopicReplication::Fixed(1));
    admin
        .create_topics([&topic], &rdkafka::admin::AdminOptions::new())
        .await
        .expect("the steps' topic");
    let now = charla_core::dead::now_us() / 1000;
    for (identity, _) in &dead {
        let step = format!("replaying {now}");
        let record = FutureRecord::to(&settled).key(identity).payload(&step);
        producer
            .send(record, rdkafka::util::Timeout::Never)
            .await
            .expect("step");
    }
    let first = dead[0].1.replay_payload();
    publisher
        .publish_raw(&first)
        .await
        .expect("the first one back");

    let replayed = broker
        .replay_dead(&room, &charla_core::DeadSelect::all())
        .await
        .expect("replay");
    assert_eq!(replayed, 2);
    let mut got: Vec<String> = Vec::new();
    while let Ok(Ok(d)) = tokio::time::timeout(Duration::from_secs(8), sub.recv()).await {
        assert_eq!(d.message.replays, 1, "marked as replayed");
        got.push(d.message.id.clone());
        sub.ack(d.tag).await.expect("ack");
    }
    got.sort();
    let mut want: Vec<String> = sent.iter().map(|m| m.id.clone()).collect();
    want.sort();
    assert_eq!(got, want, "each back once: none doubled, none lost");
    assert!(broker
        .dead_letters(&room, 10)
        .await
        .expect("dead")
        .is_empty());
    assert_eq!(
        broker
            .replay_dead(&room, &charla_core::DeadSelect::all())
            .await
            .expect("again"),
        0
    );
    sub.close().await.expect("close");
}
