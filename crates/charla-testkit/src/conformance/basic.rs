//! The behaviour every backend shares: order, competing consumers, acks and redelivery, dead
//! letters, fan-out, replay, groups, routing, payload limits. Each case assumes its needs (see
//! [`super::CASES`]) are met; the harness skips it by name where they are not.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use charla_core::{Broker, BrokerError, Delivery, Message, Mode, StartFrom, Subscription};

use super::{msg, must_recv, publish_n, recv_within, subscribe, Ctx, Target, PATIENCE, QUIET};
use crate::unique_name;

// ---------------------------------------------------------------------------------------------
// queue

pub async fn queue_keeps_order_per_room(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let (room_a, room_b) = (unique_name("q-order-a-"), unique_name("q-order-b-"));
    let sent_a = publish_n(&*b, Mode::Queue, &room_a, 50).await;
    let sent_b = publish_n(&*b, Mode::Queue, &room_b, 50).await;
    for (room, sent) in [(&room_a, sent_a), (&room_b, sent_b)] {
        let mut sub = subscribe(&*b, Subscription::new(Mode::Queue, room.as_str())).await;
        for expected in &sent {
            let d = must_recv(&mut *sub).await;
            assert_eq!(d.message.id, expected.id, "order within room {room}");
            assert_eq!(d.message.room, *room);
            assert!(!d.redelivered);
            sub.ack(d.tag).await.expect("ack");
        }
        assert!(
            recv_within(&mut *sub, QUIET).await.is_none(),
            "nothing extra"
        );
        sub.close().await.expect("close");
        b.purge(Mode::Queue, room).await.expect("purge");
    }
}

pub async fn queue_competing_consumers_share_without_duplicates(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("q-compete-");
    let mut workers = Vec::new();
    for _ in 0..3 {
        let conn = t.connect().await;
        let sub = subscribe(
            &*conn,
            Subscription::new(Mode::Queue, room.as_str()).prefetch(1),
        )
        .await;
        workers.push((conn, sub));
    }
    let sent = publish_n(&*b, Mode::Queue, &room, 150).await;
    let total = sent.len();
    let seen = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<String>::new()));
    let mut handles = Vec::new();
    for (i, (conn, mut sub)) in workers.into_iter().enumerate() {
        let seen = seen.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = 0usize;
            loop {
                if seen.lock().await.len() >= total {
                    break;
                }
                let Some(d) = recv_within(&mut *sub, Duration::from_millis(1500)).await else {
                    continue;
                };
                // Simulated work, so that one fast worker cannot take everything.
                tokio::time::sleep(Duration::from_millis(2)).await;
                sub.ack(d.tag).await.expect("ack");
                seen.lock().await.push(d.message.id);
                mine += 1;
            }
            sub.close().await.expect("close");
            drop(conn);
            (i, mine)
        }));
    }
    let mut per_worker = Vec::new();
    for h in handles {
        per_worker.push(
            tokio::time::timeout(PATIENCE * 2, h)
                .await
                .expect("workers finished")
                .expect("join"),
        );
    }
    let seen = seen.lock().await;
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        seen.len(),
        total,
        "each message exactly once: {per_worker:?}"
    );
    assert_eq!(unique.len(), total);
    assert!(
        per_worker.iter().filter(|(_, n)| *n > 0).count() >= 2,
        "the work is shared: {per_worker:?}"
    );
    b.purge(Mode::Queue, &room).await.expect("purge");
}

pub async fn queue_nack_redelivers_then_ack_settles(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let caps = b.capabilities();
    let room = unique_name("q-nack-");
    let sent = publish_n(&*b, Mode::Queue, &room, 2).await;
    let mut sub = subscribe(
        &*b,
        Subscription::new(Mode::Queue, room.as_str()).prefetch(1),
    )
    .await;
    let first = must_recv(&mut *sub).await;
    if caps.queue_order {
        assert_eq!(first.message.id, sent[0].id);
    }
    let nacked = first.message.id.clone();
    let other = sent
        .iter()
        .find(|m| m.id != nacked)
        .map(|m| m.id.clone())
        .expect("two were sent");
    sub.nack(first.tag, true).await.expect("nack");
    let mut got = HashMap::new();
    for _ in 0..2 {
        let d = must_recv(&mut *sub).await;
        sub.ack(d.tag).await.expect("ack");
        got.insert(d.message.id.clone(), d);
    }
    let again = &got[&nacked];
    if caps.redelivered_flag {
        assert!(
            again.redelivered,
            "a nacked message comes back marked redelivered"
        );
        assert!(again.message.deliveries >= 1);
    }
    assert!(!got[&other].redelivered);
    assert!(
        recv_within(&mut *sub, QUIET).await.is_none(),
        "acked messages stay settled"
    );
    sub.close().await.expect("close");
    b.purge(Mode::Queue, &room).await.expect("purge");
}

pub async fn queue_acked_message_is_not_redelivered(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("q-acked-");
    publish_n(&*b, Mode::Queue, &room, 3).await;
    let mut sub = subscribe(&*b, Subscription::new(Mode::Queue, room.as_str())).await;
    for _ in 0..3 {
        let d = must_recv(&mut *sub).await;
        sub.ack(d.tag).await.expect("ack");
    }
    sub.close().await.expect("close");
    let mut again = subscribe(&*b, Subscription::new(Mode::Queue, room.as_str())).await;
    assert!(recv_within(&mut *again, QUIET).await.is_none());
    again.close().await.expect("close");
    b.purge(Mode::Queue, &room).await.expect("purge");
}

/// A consumer *value* dropped in this process without acking or closing (its connection goes
/// with it): what it held comes back. The consumer *process* killed with SIGKILL is
/// `faults::fault_queue_consumer_process_killed`.
pub async fn queue_dropped_consumer_loses_nothing(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let caps = b.capabilities();
    let room = unique_name("q-killed-");
    let sent = publish_n(&*b, Mode::Queue, &room, 5).await;
    let acked = {
        // The victim takes three, acks one, and dies without closing.
        let conn = t.connect().await;
        let mut victim = subscribe(
            &*conn,
            Subscription::new(Mode::Queue, room.as_str()).prefetch(3),
        )
        .await;
        let first = must_recv(&mut *victim).await;
        victim.ack(first.tag).await.expect("ack");
        let _ = must_recv(&mut *victim).await;
        let _ = must_recv(&mut *victim).await;
        drop(victim);
        drop(conn);
        first.message.id
    };
    let mut survivor = subscribe(&*b, Subscription::new(Mode::Queue, room.as_str())).await;
    let mut ids = HashSet::new();
    let mut redelivered = 0;
    while ids.len() < 4 {
        let d = recv_within(&mut *survivor, t.recovery_time() + PATIENCE)
            .await
            .expect("the dead consumer's messages come back");
        redelivered += usize::from(d.redelivered);
        survivor.ack(d.tag).await.expect("ack");
        ids.insert(d.message.id);
    }
    for m in sent.iter().filter(|m| m.id != acked) {
        assert!(ids.contains(&m.id), "message {} was lost", m.mensaje);
    }
    assert!(!ids.contains(&acked), "the acked message came back");
    if caps.redelivered_flag {
        assert!(
            redelivered >= 2,
            "the two unacked ones are marked redelivered"
        );
    }
    survivor.close().await.expect("close");
    b.purge(Mode::Queue, &room).await.expect("purge");
}

/// Several consumers of a room nobody used yet subscribe at the same moment, each declaring
/// the room on the broker (a RabbitMQ quorum queue, a Kafka topic, Redis keys) from a
/// connection of its own: every subscription succeeds, and the room then hands each message
/// to exactly one of them.
pub async fn queue_consumers_declaring_a_new_room_at_once(ctx: &Ctx<'_>) {
    const CONSUMERS: usize = 4;
    const MESSAGES: usize = 20;
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("q-declare-");
    let mut conns = Vec::new();
    for _ in 0..CONSUMERS {
        conns.push(t.connect().await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, conn) in conns.into_iter().enumerate() {
        let sub = Subscription::new(Mode::Queue, room.as_str()).prefetch(1);
        tasks.spawn(async move {
            let result = conn.subscribe(sub).await;
            (i, conn, result)
        });
    }
    let mut consumers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, conn, result) = joined.expect("subscribing task");
        match result {
            Ok(s) => consumers.push((conn, s)),
            Err(e) => panic!("consumer {i} of {CONSUMERS} declaring a new room at once: {e}"),
        }
    }
    let sent = publish_n(&*b, Mode::Queue, &room, MESSAGES).await;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.len() < MESSAGES && tokio::time::Instant::now() < deadline {
        for (_conn, s) in consumers.iter_mut() {
            if let Some(d) = recv_within(&mut **s, Duration::from_millis(50)).await {
                s.ack(d.tag).await.expect("ack");
                seen.push(d.message.id);
            }
        }
    }
    // A quiet moment on every consumer, so that a late second copy is seen too.
    for (_conn, s) in consumers.iter_mut() {
        if let Some(d) = recv_within(&mut **s, QUIET / 2).await {
            seen.push(d.message.id);
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no message arrived twice");
    let mut expected = ids_of(&sent);
    expected.sort();
    assert_eq!(unique, expected, "every message arrived");
    for (_conn, s) in consumers {
        s.close().await.expect("close");
    }
    b.purge(Mode::Queue, &room).await.expect("purge");
}

/// Another application's JSON event on a room (the seed's kafkajs producer writes
/// `{"type":"user_created",…}`): a subscriber that asks for events (`Subscription::events`,
/// what `charla listen` does) receives it as an event beside the chat messages; one that does
/// not (a chat, the archive) receives only the chat message, and in queue mode the event goes
/// to the dead letters instead of looping. A JSON array stays poison for both.
pub async fn other_applications_events_reach_subscribers_that_ask(ctx: &Ctx<'_>) {
    const EVENT: &[u8] = br#"{"type":"user_created","userId":123,"name":"Juan"}"#;
    let t = ctx.target;
    let b = t.connect().await;
    let caps = b.capabilities();
    for asks in [true, false] {
        let room = unique_name("q-events-");
        let mut p = b.publisher(Mode::Queue, &room).await.expect("publisher");
        p.publish_raw(EVENT).await.expect("raw publish");
        p.publish_raw(b"[1, 2, 3]").await.expect("raw publish");
        let chat = msg(&room, 1);
        p.publish(&chat).await.expect("publish");
        let mut s = subscribe(
            &*b,
            Subscription::new(Mode::Queue, room.as_str()).events(asks),
        )
        .await;
        let mut got = Vec::new();
        while let Some(d) = recv_within(&mut *s, QUIET * 2).await {
            s.ack(d.tag).await.expect("ack");
            got.push(d.message);
        }
        let events: Vec<&Message> = got.iter().filter(|m| m.is_event()).collect();
        let chats: Vec<&Message> = got.iter().filter(|m| !m.is_event()).collect();
        assert_eq!(
            chats.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            [chat.id.as_str()],
            "the chat message, once (events asked for: {asks})"
        );
        if asks {
            assert_eq!(events.len(), 1, "the event, once: {got:?}");
            let fields = events[0].event.as_deref().expect("an event's fields");
            assert_eq!(fields.get("type"), Some(&serde_json::json!("user_created")));
            assert_eq!(fields.get("userId"), Some(&serde_json::json!(123)));
        } else {
            assert!(
                events.is_empty(),
                "no event where none was asked for: {got:?}"
            );
        }
        if caps.dead_letters {
            let dead = b.dead_letters(&room, 10).await.expect("dead letters");
            let mut payloads: Vec<&[u8]> = dead.iter().map(|d| d.payload.as_slice()).collect();
            payloads.sort();
            let mut expected: Vec<&[u8]> = vec![b"[1, 2, 3]"];
            if !asks {
                expected.push(EVENT);
            }
            expected.sort();
            assert_eq!(
                payloads, expected,
                "what no subscriber could take is kept (events asked for: {asks})"
            );
        }
        s.close().await.expect("close");
        b.purge(Mode::Queue, &room).await.expect("purge");
    }
}

pub async fn queue_endless_nack_goes_to_dead_letters(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("q-loop-");
    let sent = publish_n(&*b, Mode::Queue, &room, 1).await;
    let mut sub = subscribe(&*b, Subscription::new(Mode::Queue, room.as_str())).await;
    let mut attempts = 0;
    while let Some(d) = recv_within(&mut *sub, QUIET * 2).await {
        attempts += 1;
        assert!(
            attempts <= 20,
            "a message that always fails must stop coming back"
        );
        sub.nack(d.tag, true).await.expect("nack");
    }
    assert!(attempts >= 2, "it was retried before giving up");
    let dead = b.dead_letters(&room, 10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    let m = Message::decode(&dead[0].payload, &room, usize::MAX)
        .expect("the dead letter is the message");
    assert_eq!(m.id, sent[0].id);
    assert_eq!(
        dead[0].reason,
        charla_core::DeadReason::MaxDeliveries,
        "the dead letter says why: {:?}",
        dead[0]
    );
    sub.close().await.expect("close");
    b.purge(Mode::Queue, &room).await.expect("purge");
}

pub async fn queue_poison_message_is_dead_lettered(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let caps = b.capabilities();
    let room = unique_name("q-poison-");
    let mut p = b.publisher(Mode::Queue, &room).await.expect("publisher");
    p.publish_raw(b"{this is not json")
        .await
        .expect("raw publish");
    let good = msg(&room, 1);
    p.publish(&good).await.expect("publish");
    let mut sub = subscribe(&*b, Subscription::new(Mode::Queue, room.as_str())).await;
    let d = must_recv(&mut *sub).await;
    assert_eq!(
        d.message.id, good.id,
        "the poison message is skipped, the next one arrives"
    );
    sub.ack(d.tag).await.expect("ack");
    // Waiting for more also lets a backend that spreads a room (Kafka's partitions) reach
    // the poison if the good message came first.
    assert!(
        recv_within(&mut *sub, QUIET).await.is_none(),
        "the poison does not loop"
    );
    if caps.dead_letters {
        let dead = b.dead_letters(&room, 10).await.expect("dead letters");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].payload, b"{this is not json");
        assert_eq!(dead[0].reason, charla_core::DeadReason::NotJson);
        assert!(!dead[0].error.is_empty(), "the decoder's complaint is kept");
    }
    sub.close().await.expect("close");
    b.purge(Mode::Queue, &room).await.expect("purge");
}

pub async fn queue_ten_thousand_without_loss(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    many_without_loss(
        t,
        &*b,
        Subscription::new(Mode::Queue, unique_name("q-10k-")),
    )
    .await;
}

/// 10 000 messages published in batches, two consumers, every message arrives exactly once
/// (and nothing more arrives in a quiet moment after the last one).
async fn many_without_loss(t: &dyn Target, b: &dyn Broker, sub: Subscription) {
    const N: usize = 10_000;
    let room = sub.room.clone();
    let mode = sub.mode;
    let mut subs = Vec::new();
    for _ in 0..2 {
        let conn = t.connect().await;
        let s = subscribe(&*conn, sub.clone()).await;
        subs.push((conn, s));
    }
    let mut p = b.publisher(mode, &room).await.expect("publisher");
    let all: Vec<Message> = (0..N).map(|i| msg(&room, i)).collect();
    for chunk in all.chunks(500) {
        p.publish_batch(chunk).await.expect("publish batch");
    }
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for (conn, mut s) in subs {
        let counter = counter.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            // The batch path (recv_batch + ack_many) is what high-volume consumers use.
            // Past N, a quiet moment more: a duplicate arriving late must be seen too.
            let mut quiet_until = None;
            loop {
                if counter.load(std::sync::atomic::Ordering::SeqCst) >= N {
                    let until =
                        *quiet_until.get_or_insert_with(|| std::time::Instant::now() + QUIET);
                    if std::time::Instant::now() >= until {
                        break;
                    }
                }
                let Ok(batch) =
                    tokio::time::timeout(Duration::from_millis(300), s.recv_batch(100)).await
                else {
                    continue;
                };
                let batch = batch.expect("recv_batch");
                let tags: Vec<_> = batch.iter().map(|d| d.tag).collect();
                s.ack_many(&tags).await.expect("ack_many");
                counter.fetch_add(batch.len(), std::sync::atomic::Ordering::SeqCst);
                ids.extend(batch.into_iter().map(|d| d.message.id));
            }
            s.close().await.expect("close");
            drop(conn);
            ids
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for h in handles {
        let ids = tokio::time::timeout(Duration::from_secs(120), h)
            .await
            .expect("consumers finished in time")
            .expect("join");
        total += ids.len();
        seen.extend(ids);
    }
    assert_eq!(seen.len(), N, "every message arrived");
    assert_eq!(total, N, "no message arrived twice");
    b.purge(mode, &room).await.expect("purge");
}

// ---------------------------------------------------------------------------------------------
// broadcast

pub async fn broadcast_fans_out_to_every_subscriber(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("b-fan-");
    let mut subs = Vec::new();
    for _ in 0..3 {
        let conn = t.connect().await;
        let s = subscribe(&*conn, Subscription::new(Mode::Broadcast, room.as_str())).await;
        subs.push((conn, s));
    }
    let sent = publish_n(&*b, Mode::Broadcast, &room, 30).await;
    for (_conn, s) in subs.iter_mut() {
        for expected in &sent {
            let d = must_recv(&mut **s).await;
            assert_eq!(
                d.message.id, expected.id,
                "every subscriber, every message, in order"
            );
        }
    }
    for (_conn, s) in subs {
        s.close().await.expect("close");
    }
}

pub async fn broadcast_keeps_no_history(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("b-hist-");
    publish_n(&*b, Mode::Broadcast, &room, 1).await;
    let mut s = subscribe(&*b, Subscription::new(Mode::Broadcast, room.as_str())).await;
    let later = publish_n(&*b, Mode::Broadcast, &room, 1).await;
    let d = must_recv(&mut *s).await;
    assert_eq!(
        d.message.id, later[0].id,
        "only what was published while subscribed"
    );
    s.close().await.expect("close");
}

/// Presence (charla_core::presence) rides on broadcast mode in the room `charla.presence`:
/// the name must be legal on the backend and a beat must come back as the beat it was.
pub async fn presence_beats_reach_every_listener(ctx: &Ctx<'_>) {
    use charla_core::presence::{Beat, Event, PRESENCE_ROOM};
    let t = ctx.target;
    let b = t.connect().await;
    let mut listeners = Vec::new();
    for _ in 0..2 {
        let conn = t.connect().await;
        let s = subscribe(&*conn, Subscription::new(Mode::Broadcast, PRESENCE_ROOM)).await;
        listeners.push((conn, s));
    }
    let beat = Beat {
        name: "María 👋".into(),
        room: unique_name("p-room-"),
        session: unique_name("session-"),
        event: Event::Join,
        // A proved name's mark travels with its beats on every backend.
        verified: true,
    };
    let mut p = b
        .publisher(Mode::Broadcast, PRESENCE_ROOM)
        .await
        .expect("a publisher on the presence room");
    p.publish(&beat.to_message()).await.expect("publish a beat");
    for (_conn, s) in listeners.iter_mut() {
        // Other runs' beats may be on the shared room too: look for ours.
        loop {
            let d = must_recv(&mut **s).await;
            if let Some(heard) = Beat::from_message(&d.message) {
                if heard.session == beat.session {
                    assert_eq!(heard, beat, "a beat comes back as it was sent");
                    break;
                }
            }
        }
    }
    for (_conn, s) in listeners {
        s.close().await.expect("close");
    }
}

// ---------------------------------------------------------------------------------------------
// stream

pub async fn stream_replays_from_beginning_and_offset(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("s-replay-");
    let sent = publish_n(&*b, Mode::Stream, &room, 20).await;
    let mut s = subscribe(
        &*b,
        Subscription::new(Mode::Stream, room.as_str()).start(StartFrom::Beginning),
    )
    .await;
    let mut offsets = Vec::new();
    for expected in &sent {
        let d = must_recv(&mut *s).await;
        assert_eq!(d.message.id, expected.id);
        offsets.push(d.offset.clone().expect("stream deliveries carry an offset"));
        s.ack(d.tag).await.expect("ack");
    }
    s.close().await.expect("close");
    let mut from = subscribe(
        &*b,
        Subscription::new(Mode::Stream, room.as_str()).start(StartFrom::After(offsets[9].clone())),
    )
    .await;
    for expected in &sent[10..] {
        let d = must_recv(&mut *from).await;
        assert_eq!(d.message.id, expected.id, "replay after an offset");
    }
    from.close().await.expect("close");
    b.purge(Mode::Stream, &room).await.expect("purge");
}

pub async fn stream_latest_skips_history(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("s-latest-");
    publish_n(&*b, Mode::Stream, &room, 5).await;
    let mut s = subscribe(&*b, Subscription::new(Mode::Stream, room.as_str())).await;
    let later = publish_n(&*b, Mode::Stream, &room, 3).await;
    for expected in &later {
        let d = must_recv(&mut *s).await;
        assert_eq!(d.message.id, expected.id);
    }
    assert!(recv_within(&mut *s, QUIET).await.is_none());
    s.close().await.expect("close");
    b.purge(Mode::Stream, &room).await.expect("purge");
}

/// A group resumes after what it acked: the first member reads ten and leaves; two more
/// members get exactly the other ten between them, none twice.
pub async fn stream_group_resumes_where_it_acked(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("s-group-");
    let group = unique_name("g-");
    let sub = || {
        Subscription::new(Mode::Stream, room.as_str())
            .group(group.as_str())
            .start(StartFrom::Beginning)
            .prefetch(5)
    };
    let sent = publish_n(&*b, Mode::Stream, &room, 20).await;
    let mut first = subscribe(&*b, sub().consumer("first")).await;
    let mut got = Vec::new();
    for _ in 0..10 {
        let d = must_recv(&mut *first).await;
        first.ack(d.tag).await.expect("ack");
        got.push(d.message.id);
    }
    first.close().await.expect("close");
    assert_eq!(got, ids_of(&sent[..10]));
    let c2 = t.connect().await;
    let second = subscribe(&*b, sub().consumer("second")).await;
    let third = subscribe(&*c2, sub().consumer("third")).await;
    let mut members = [second, third];
    let (rest, _per_member) = take_from_members(&mut members, 10).await;
    let mut unique = rest.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), rest.len(), "no message twice: {rest:?}");
    let mut expected = ids_of(&sent[10..]);
    expected.sort();
    assert_eq!(
        unique, expected,
        "the group resumes where it acked, without duplicates"
    );
    for m in members {
        m.close().await.expect("close");
    }
    b.purge(Mode::Stream, &room).await.expect("purge");
}

/// Two members of a group on one room both get work: each takes a message while the other
/// holds what it took (no acks until both have one), then together they get every message
/// exactly once.
pub async fn stream_group_members_share_a_room(ctx: &Ctx<'_>) {
    const N: usize = 20;
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("s-share-");
    let group = unique_name("g-");
    let sub = |name: &str| {
        Subscription::new(Mode::Stream, room.as_str())
            .group(group.as_str())
            .start(StartFrom::Beginning)
            .prefetch(5)
            .consumer(name)
    };
    let sent = publish_n(&*b, Mode::Stream, &room, N).await;
    let c2 = t.connect().await;
    let a = subscribe(&*b, sub("a")).await;
    let other = subscribe(&*c2, sub("b")).await;
    let mut members = [a, other];
    // Each member's first message, taken while the other holds its own unacked.
    let mut held = Vec::new();
    for (i, m) in members.iter_mut().enumerate() {
        let d = recv_within(&mut **m, PATIENCE).await.unwrap_or_else(|| {
            panic!("member {i} got nothing while the other held its messages: the group does not share")
        });
        held.push(d);
    }
    let mut seen: Vec<String> = held.iter().map(|d| d.message.id.clone()).collect();
    for (m, d) in members.iter_mut().zip(&held) {
        m.ack(d.tag).await.expect("ack");
    }
    let (rest, per_member) = take_from_members(&mut members, N - 2).await;
    seen.extend(rest);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no message twice");
    let mut expected = ids_of(&sent);
    expected.sort();
    assert_eq!(
        unique, expected,
        "every message once: {per_member:?} after one each"
    );
    for m in members {
        m.close().await.expect("close");
    }
    b.purge(Mode::Stream, &room).await.expect("purge");
}

/// Receive and ack `n` messages from whichever member has one, then a quiet moment on each
/// (a late duplicate must be seen too): the ids in order of arrival and how many each member
/// got.
async fn take_from_members(
    members: &mut [Box<dyn charla_core::Subscriber>; 2],
    n: usize,
) -> (Vec<String>, [usize; 2]) {
    let mut ids = Vec::new();
    let mut per_member = [0usize; 2];
    let [x, y] = members;
    let deadline = tokio::time::sleep(PATIENCE);
    tokio::pin!(deadline);
    while ids.len() < n {
        let (who, d) = tokio::select! {
            d = x.recv() => (0, d),
            d = y.recv() => (1, d),
            _ = &mut deadline => panic!("the group stopped delivering after {} of {n}", ids.len()),
        };
        let d = d.expect("recv");
        let m = if who == 0 { &mut *x } else { &mut *y };
        m.ack(d.tag).await.expect("ack");
        per_member[who] += 1;
        ids.push(d.message.id);
    }
    for m in [x, y] {
        if let Some(d) = recv_within(&mut **m, QUIET / 2).await {
            ids.push(d.message.id);
        }
    }
    (ids, per_member)
}

/// As [`queue_dropped_consumer_loses_nothing`], for a stream group member dropped in this
/// process (the process kill is `faults::fault_stream_group_consumer_process_killed`).
pub async fn stream_group_dropped_consumer_loses_nothing(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("s-killed-");
    let group = unique_name("g-");
    let sub = |name: &str| {
        Subscription::new(Mode::Stream, room.as_str())
            .group(group.as_str())
            .start(StartFrom::Beginning)
            .prefetch(2)
            .consumer(name)
    };
    let sent = publish_n(&*b, Mode::Stream, &room, 4).await;
    {
        let conn = t.connect().await;
        let mut victim = subscribe(&*conn, sub("victim")).await;
        let d = must_recv(&mut *victim).await;
        victim.ack(d.tag).await.expect("ack");
        let _unacked = must_recv(&mut *victim).await;
        drop(victim);
        drop(conn);
    }
    let mut survivor = subscribe(&*b, sub("survivor")).await;
    let mut ids = HashSet::new();
    while ids.len() < 3 {
        let d = recv_within(&mut *survivor, t.recovery_time() + PATIENCE)
            .await
            .expect("the dead member's pending message comes back");
        survivor.ack(d.tag).await.expect("ack");
        ids.insert(d.message.id);
    }
    for m in &sent[1..] {
        assert!(ids.contains(&m.id), "message {} was lost", m.mensaje);
    }
    survivor.close().await.expect("close");
    b.purge(Mode::Stream, &room).await.expect("purge");
}

pub async fn stream_ten_thousand_without_loss(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let sub = Subscription::new(Mode::Stream, unique_name("s-10k-"))
        .group(unique_name("g-"))
        .start(StartFrom::Beginning);
    many_without_loss(t, &*b, sub).await;
}

// ---------------------------------------------------------------------------------------------
// history and rooms

fn ids(page: &[Delivery]) -> Vec<String> {
    page.iter().map(|d| d.message.id.clone()).collect()
}

fn ids_of(sent: &[Message]) -> Vec<String> {
    sent.iter().map(|m| m.id.clone()).collect()
}

async fn history(b: &dyn Broker, room: &str, limit: usize, before: Option<&str>) -> Vec<Delivery> {
    b.history(room, limit, before)
        .await
        .unwrap_or_else(|e| panic!("history of {room} (limit {limit}, before {before:?}): {e}"))
}

/// The offset a delivery of a history page carries (the next older page starts there).
fn offset_of(d: &Delivery) -> &str {
    d.offset
        .as_deref()
        .expect("history deliveries carry their offset")
}

pub async fn history_returns_the_last_messages_oldest_first(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let caps = b.capabilities();
    let room = unique_name("h-last-");
    let sent = publish_n(&*b, Mode::Stream, &room, 25).await;
    let page = history(&*b, &room, 10, None).await;
    assert_eq!(
        ids(&page),
        ids_of(&sent[15..]),
        "the last ten, oldest first"
    );
    for (d, m) in page.iter().zip(&sent[15..]) {
        assert_eq!(d.message.mensaje, m.mensaje);
        assert_eq!(d.message.room, room);
        assert!(!d.redelivered);
        offset_of(d);
    }
    let all = history(&*b, &room, 100, None).await;
    assert_eq!(
        ids(&all),
        ids_of(&sent),
        "a limit above the room's size gives all of it"
    );
    assert!(
        history(&*b, &room, 0, None).await.is_empty(),
        "a limit of 0 is an empty page"
    );
    let other = t.connect().await;
    assert_eq!(
        ids(&history(&*other, &room, 10, None).await),
        ids(&page),
        "another connection reads the same history"
    );
    if caps.replay {
        // The offsets are the stream's own: a subscriber starts after one of them.
        let mut s = subscribe(
            &*b,
            Subscription::new(Mode::Stream, room.as_str())
                .start(StartFrom::After(offset_of(&page[4]).to_owned())),
        )
        .await;
        for expected in &sent[20..] {
            let d = must_recv(&mut *s).await;
            assert_eq!(d.message.id, expected.id, "a replay after a history offset");
        }
        s.close().await.expect("close");
    }
    b.purge(Mode::Stream, &room).await.expect("purge");
}

pub async fn history_pages_back_without_gaps_or_overlaps(ctx: &Ctx<'_>) {
    const PAGE: usize = 5;
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("h-page-");
    let sent = publish_n(&*b, Mode::Stream, &room, 23).await;
    let mut pages: Vec<Vec<Delivery>> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = history(&*b, &room, PAGE, before.as_deref()).await;
        if page.is_empty() {
            break;
        }
        assert!(
            page.len() <= PAGE,
            "a page of {} for a limit of {PAGE}",
            page.len()
        );
        assert!(pages.len() < 10, "paging back does not end");
        before = Some(offset_of(&page[0]).to_owned());
        pages.push(page);
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [5, 5, 5, 5, 3], "full pages until the oldest one");
    let walked: Vec<String> = pages.iter().rev().flat_map(|p| ids(p)).collect();
    assert_eq!(
        walked,
        ids_of(&sent),
        "the pages, oldest first, are the whole room without gaps or overlaps"
    );
    b.purge(Mode::Stream, &room).await.expect("purge");
}

pub async fn history_of_an_unknown_room_is_empty(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let caps = b.capabilities();
    let room = unique_name("h-none-");
    assert!(
        history(&*b, &room, 10, None).await.is_empty(),
        "a room nobody used has no history"
    );
    if caps.list_rooms {
        let rooms = b.rooms().await.expect("rooms");
        assert!(
            !rooms.contains(&room),
            "reading a room's history does not create it"
        );
    }
}

pub async fn history_takes_nothing_from_groups_or_subscribers(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let caps = b.capabilities();
    let room = unique_name("h-take-");
    // Readers that were there before the messages: a subscriber from now on, and a group
    // where the backend has them.
    let mut live = subscribe(&*b, Subscription::new(Mode::Stream, room.as_str())).await;
    let group_conn = t.connect().await;
    let mut group = if caps.stream_groups {
        Some(
            subscribe(
                &*group_conn,
                Subscription::new(Mode::Stream, room.as_str())
                    .group(unique_name("g-"))
                    .start(StartFrom::Beginning)
                    .prefetch(4),
            )
            .await,
        )
    } else {
        None
    };
    let sent = publish_n(&*b, Mode::Stream, &room, 12).await;
    // History read from a connection of its own and from the subscribers' one, twice over.
    let reader = t.connect().await;
    for conn in [&*reader, &*b] {
        let newest = history(conn, &room, 5, None).await;
        assert_eq!(ids(&newest), ids_of(&sent[7..]));
        let older = history(conn, &room, 5, Some(offset_of(&newest[0]))).await;
        assert_eq!(ids(&older), ids_of(&sent[2..7]));
    }
    for expected in &sent {
        let d = must_recv(&mut *live).await;
        assert_eq!(
            d.message.id, expected.id,
            "the subscriber receives every message, in order"
        );
        assert!(!d.redelivered);
        live.ack(d.tag).await.expect("ack");
    }
    assert!(
        recv_within(&mut *live, QUIET).await.is_none(),
        "nothing twice"
    );
    if let Some(g) = group.as_mut() {
        for expected in &sent {
            let d = must_recv(&mut **g).await;
            assert_eq!(
                d.message.id, expected.id,
                "the group receives every message, in order"
            );
            assert!(!d.redelivered, "history left nothing pending in the group");
            g.ack(d.tag).await.expect("ack");
        }
        assert!(
            recv_within(&mut **g, QUIET).await.is_none(),
            "nothing twice"
        );
    }
    assert_eq!(
        ids(&history(&*reader, &room, 100, None).await),
        ids_of(&sent),
        "the readers took nothing out of the history either"
    );
    live.close().await.expect("close");
    if let Some(g) = group {
        g.close().await.expect("close");
    }
    b.purge(Mode::Stream, &room).await.expect("purge");
}

pub async fn history_skips_payloads_that_are_not_chat_messages(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let room = unique_name("h-poison-");
    let good: Vec<Message> = (0..3).map(|i| msg(&room, i)).collect();
    let mut p = b.publisher(Mode::Stream, &room).await.expect("publisher");
    p.publish(&good[0]).await.expect("publish");
    p.publish_raw(b"{this is not json")
        .await
        .expect("raw publish");
    p.publish(&good[1]).await.expect("publish");
    p.publish_raw(b"plain text, not a chat message")
        .await
        .expect("raw publish");
    p.publish_raw(b"[1, 2, 3]").await.expect("raw publish");
    p.publish(&good[2]).await.expect("publish");
    p.publish_raw(b"\xff\xfe not even UTF-8")
        .await
        .expect("raw publish");
    let page = history(&*b, &room, 10, None).await;
    assert_eq!(
        ids(&page),
        ids_of(&good),
        "only the chat messages, oldest first"
    );
    let newest = history(&*b, &room, 2, None).await;
    assert_eq!(
        ids(&newest),
        ids_of(&good[1..]),
        "payloads that are not chat messages do not count towards the limit"
    );
    let older = history(&*b, &room, 2, Some(offset_of(&newest[0]))).await;
    assert_eq!(ids(&older), ids_of(&good[..1]), "paging back past them");
    assert!(history(&*b, &room, 2, Some(offset_of(&older[0])))
        .await
        .is_empty());
    b.purge(Mode::Stream, &room).await.expect("purge");
}

pub async fn rooms_lists_stream_rooms_without_bookkeeping(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let caps = b.capabilities();
    let plain = unique_name("h-rooms-a-");
    let grouped = unique_name("h-rooms-b-");
    let queued = unique_name("h-rooms-q-");
    publish_n(&*b, Mode::Stream, &plain, 2).await;
    // Bookkeeping of charla's own around a room: a group's state, and a dead letter (a
    // payload that is not a chat message, read by the group).
    let mut p = b
        .publisher(Mode::Stream, &grouped)
        .await
        .expect("publisher");
    p.publish_raw(b"{not a chat message")
        .await
        .expect("raw publish");
    p.publish(&msg(&grouped, 1)).await.expect("publish");
    if caps.stream_groups {
        let mut g = subscribe(
            &*b,
            Subscription::new(Mode::Stream, grouped.as_str())
                .group(unique_name("g-"))
                .start(StartFrom::Beginning),
        )
        .await;
        let d = must_recv(&mut *g).await;
        g.ack(d.tag).await.expect("ack");
        // Waiting once more lets the poison reach the dead letters wherever it goes later.
        assert!(recv_within(&mut *g, QUIET).await.is_none());
        g.close().await.expect("close");
        if caps.dead_letters {
            let dead = b.dead_letters(&grouped, 10).await.expect("dead letters");
            assert_eq!(dead.len(), 1, "the poison went to the dead letters");
        }
    }
    // A queue room's dead letters too, where queues keep them.
    if caps.queue && caps.dead_letters {
        let mut q = b.publisher(Mode::Queue, &queued).await.expect("publisher");
        q.publish_raw(b"{not a chat message either")
            .await
            .expect("raw publish");
        let good = msg(&queued, 1);
        q.publish(&good).await.expect("publish");
        let mut s = subscribe(&*b, Subscription::new(Mode::Queue, queued.as_str())).await;
        let d = must_recv(&mut *s).await;
        assert_eq!(d.message.id, good.id);
        s.ack(d.tag).await.expect("ack");
        assert!(recv_within(&mut *s, QUIET).await.is_none());
        s.close().await.expect("close");
        let dead = b.dead_letters(&queued, 10).await.expect("dead letters");
        assert_eq!(dead.len(), 1, "the queue's poison went to the dead letters");
    }
    let rooms = b.rooms().await.expect("rooms");
    for room in [&plain, &grouped] {
        assert!(
            rooms.contains(room),
            "{room} is listed after a stream publish: {rooms:?}"
        );
    }
    let mut sorted = rooms.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(rooms, sorted, "sorted by name, each once");
    // Dead letters and bookkeeping carry the room's name (`charla:{room}:dead`,
    // `charla-dead.room`, …): no such name is listed. (A queue room may be: on Kafka a
    // queue and a stream of one room are the same topic.)
    for name in &rooms {
        for ours in [&plain, &grouped, &queued] {
            assert!(
                !name.contains(ours.as_str()) || name == ours,
                "charla's own '{name}' is listed as a room"
            );
        }
    }
    b.purge(Mode::Stream, &plain).await.expect("purge");
    b.purge(Mode::Stream, &grouped).await.expect("purge");
    if caps.queue {
        b.purge(Mode::Queue, &queued).await.expect("purge");
    }
}

/// Where a backend does not declare history, asking for it is an `Unsupported` error, not an
/// empty page (which would read as "the room is empty").
pub async fn history_is_refused_where_not_declared(ctx: &Ctx<'_>) {
    let b = ctx.target.connect().await;
    match b.history(&unique_name("h-refused-"), 10, None).await {
        Err(BrokerError::Unsupported { .. }) => {}
        other => panic!("history is not declared: expected Unsupported, got {other:?}"),
    }
}

/// Where a backend does not declare listing rooms, asking is an `Unsupported` error, not an
/// empty list.
pub async fn rooms_are_refused_where_not_declared(ctx: &Ctx<'_>) {
    let b = ctx.target.connect().await;
    match b.rooms().await {
        Err(BrokerError::Unsupported { .. }) => {}
        other => panic!("listing rooms is not declared: expected Unsupported, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// routing

pub async fn routing_patterns_match_topics(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let ns = unique_name("r");
    let mut rooms = subscribe(
        &*b,
        Subscription::new(Mode::Routing, format!("{ns}.room.*")),
    )
    .await;
    let mut errors = subscribe(
        &*b,
        Subscription::new(Mode::Routing, format!("{ns}.app.error.#")),
    )
    .await;
    let topics = [
        "room.general",
        "room.general.extra",
        "app.error",
        "app.error.database",
        "app.info",
        "other",
    ];
    let mut ids = HashMap::new();
    for topic in topics {
        let full = format!("{ns}.{topic}");
        let sent = publish_n(&*b, Mode::Routing, &full, 1).await;
        ids.insert(sent[0].id.clone(), topic);
    }
    let d = must_recv(&mut *rooms).await;
    assert_eq!(ids[&d.message.id], "room.general");
    assert_eq!(
        d.message.room,
        format!("{ns}.room.general"),
        "the delivery names its topic"
    );
    assert!(
        recv_within(&mut *rooms, QUIET).await.is_none(),
        "`*` is exactly one word"
    );
    let mut got = Vec::new();
    while let Some(d) = recv_within(&mut *errors, QUIET).await {
        got.push(ids[&d.message.id]);
    }
    // Which topics match is the point; order across topics is not promised (a topic per
    // routing key on Kafka).
    got.sort_unstable();
    assert_eq!(
        got,
        ["app.error", "app.error.database"],
        "`#` is zero or more words"
    );
    rooms.close().await.expect("close");
    errors.close().await.expect("close");
}

// ---------------------------------------------------------------------------------------------
// payloads and limits

pub async fn large_and_unicode_payloads_round_trip(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let caps = b.capabilities();
    let modes: Vec<Mode> = Mode::ALL
        .into_iter()
        .filter(|m| caps.supports(*m) && *m != Mode::Routing)
        .collect();
    for mode in modes {
        let room = unique_name("p-");
        let mut s = subscribe(&*b, Subscription::new(mode, room.as_str())).await;
        let mut p = b.publisher(mode, &room).await.expect("publisher");
        let texts = [
            "¡Hola María! ¿Qué tal? ñandú 你好 مرحبا 👋🏽 \u{0} \"quoted\" \\ back\nslash".to_owned(),
            "x".repeat(512 * 1024),
        ];
        for text in &texts {
            let m = Message::new("Zoë 🦀", text.clone(), room.as_str());
            p.publish(&m).await.expect("publish");
            let d = must_recv(&mut *s).await;
            assert_eq!(d.message.mensaje, *text, "{mode}: payload intact");
            assert_eq!(d.message.usuario, "Zoë 🦀");
            s.ack(d.tag).await.expect("ack");
        }
        s.close().await.expect("close");
        b.purge(mode, &room).await.expect("purge");
    }
}

pub async fn oversized_message_is_refused(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let caps = b.capabilities();
    for mode in Mode::ALL.into_iter().filter(|m| caps.supports(*m)) {
        let room = unique_name("big-");
        let mut p = b.publisher(mode, &room).await.expect("publisher");
        let huge = Message::new(
            "x",
            "y".repeat(charla_core::MAX_MESSAGE_BYTES + 1),
            room.as_str(),
        );
        match p.publish(&huge).await {
            Err(BrokerError::TooLarge { .. }) => {}
            other => panic!("{mode}: expected TooLarge, got {other:?}"),
        }
        b.purge(mode, &room).await.expect("purge");
    }
}

/// Every mode a backend declares can be subscribed to and published on.
pub async fn declared_modes_subscribe_and_publish(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let b = t.connect().await;
    let caps = b.capabilities();
    for mode in Mode::ALL.into_iter().filter(|m| caps.supports(*m)) {
        let room = unique_name("u-");
        let subscribed = b.subscribe(Subscription::new(mode, room.as_str())).await;
        let sub =
            subscribed.unwrap_or_else(|e| panic!("{mode} is declared but subscribing failed: {e}"));
        if let Err(e) = b.publisher(mode, &room).await {
            panic!("{mode} is declared but a publisher failed: {e}");
        }
        let closed = sub.close().await;
        // Leave nothing behind on shared brokers; purged once nobody reads the room
        // (tansu, the Kafka test broker, fails when a topic is deleted under a reader).
        let _ = b.purge(mode, &room).await;
        closed.expect("close");
    }
}

/// A mode the backend does not declare is refused at once, with `Unsupported`, both to a
/// subscriber and to a publisher: never a subscription that silently receives nothing.
pub async fn undeclared_modes_are_refused(ctx: &Ctx<'_>) {
    let b = ctx.target.connect().await;
    let caps = b.capabilities();
    let missing: Vec<Mode> = Mode::ALL
        .into_iter()
        .filter(|m| !caps.supports(*m))
        .collect();
    assert!(!missing.is_empty(), "the case runs where a mode is missing");
    for mode in missing {
        let room = unique_name("u-");
        match b.subscribe(Subscription::new(mode, room.as_str())).await {
            Err(BrokerError::Unsupported { .. }) => {}
            Err(e) => panic!("{mode}: expected an Unsupported error, got {e}"),
            Ok(_) => panic!("{mode} is not declared but subscribing succeeded"),
        }
        match b.publisher(mode, &room).await {
            Err(BrokerError::Unsupported { .. }) => {}
            Err(e) => panic!("{mode}: expected an Unsupported error, got {e}"),
            Ok(_) => panic!("{mode} is not declared but a publisher was made"),
        }
    }
}

/// Where a backend has streams but no stream groups, a subscription with a group is refused
/// with `Unsupported` (never treated as a group-less reader that every member would read).
pub async fn stream_groups_are_refused_where_not_declared(ctx: &Ctx<'_>) {
    let b = ctx.target.connect().await;
    let room = unique_name("u-group-");
    let sub = Subscription::new(Mode::Stream, room.as_str())
        .group(unique_name("g-"))
        .start(StartFrom::Beginning);
    match b.subscribe(sub).await {
        Err(BrokerError::Unsupported { .. }) => {}
        Err(e) => panic!("a stream group: expected an Unsupported error, got {e}"),
        Ok(_) => panic!("stream groups are not declared but a group subscription succeeded"),
    }
    let _ = b.purge(Mode::Stream, &room).await;
}
