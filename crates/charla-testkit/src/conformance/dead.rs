//! Dead letters that say why, and the operator's replay and purge of them (`charla dead`):
//! every backend keeps the reason, the attempts, the error and the room with each dead
//! letter, and where it offers the actions (`Capabilities::dead_letter_actions`) a replay
//! puts messages back marked as replayed, never twice, and a purge removes exactly what it
//! selects.

use std::collections::HashSet;

use charla_core::{DeadLetter, DeadReason, DeadSelect, Failure, Message, Mode, Subscription};

use super::{must_recv, publish_n, recv_within, subscribe, Ctx, QUIET};
use crate::unique_name;

/// The dead letters of `room` by message id.
async fn dead_by_id(b: &dyn charla_core::Broker, room: &str) -> Vec<(String, DeadLetter)> {
    let dead = b.dead_letters(room, 100).await.expect("dead letters");
    dead.into_iter().map(|d| (d.id(), d)).collect()
}

pub async fn dead_letters_say_why(ctx: &Ctx<'_>) {
    let b = ctx.target.connect().await;
    let room = unique_name("q-why-");
    let sent = publish_n(&*b, Mode::Queue, &room, 2).await;
    let mut sub = subscribe(&*b, Subscription::new(Mode::Queue, room.as_str())).await;
    let before = charla_core::dead::now_us();
    for _ in 0..2 {
        let d = must_recv(&mut *sub).await;
        if d.message.id == sent[0].id {
            let failure = Failure::new(DeadReason::CommandFailed("exit 3".into()))
                .error("convert: corrupt image")
                .attempts(4)
                .first_failure_us(before - 1_000_000);
            sub.reject(d.tag, failure).await.expect("reject");
        } else {
            sub.nack(d.tag, false).await.expect("nack");
        }
    }
    assert!(
        recv_within(&mut *sub, QUIET).await.is_none(),
        "both settled"
    );
    let dead = dead_by_id(&*b, &room).await;
    assert_eq!(dead.len(), 2, "both dead-lettered: {dead:?}");
    let failed = &dead
        .iter()
        .find(|(id, _)| *id == sent[0].id)
        .expect("the failed one")
        .1;
    assert_eq!(failed.reason, DeadReason::CommandFailed("exit 3".into()));
    assert_eq!(failed.error, "convert: corrupt image");
    assert_eq!(failed.attempts, 4);
    assert_eq!(failed.first_failure_us, before - 1_000_000);
    assert!(failed.last_failure_us >= before, "the last failure is now");
    assert_eq!(failed.room, room);
    assert_eq!(failed.mode, Some(Mode::Queue));
    let m = Message::decode(&failed.payload, &room, usize::MAX).expect("the payload is kept");
    assert_eq!(m.mensaje, sent[0].mensaje);
    let nacked = &dead
        .iter()
        .find(|(id, _)| *id == sent[1].id)
        .expect("the nacked one")
        .1;
    assert_eq!(nacked.reason, DeadReason::Nacked);
    assert!(
        nacked.attempts >= 1,
        "a nack counts its delivery: {nacked:?}"
    );
    sub.close().await.expect("close");
    b.purge(Mode::Queue, &room).await.expect("purge");
}

pub async fn dead_letters_replay_and_purge(ctx: &Ctx<'_>) {
    let b = ctx.target.connect().await;
    let room = unique_name("q-replay-");
    let sent = publish_n(&*b, Mode::Queue, &room, 3).await;
    let ids: Vec<String> = sent.iter().map(|m| m.id.clone()).collect();
    let mut sub = subscribe(&*b, Subscription::new(Mode::Queue, room.as_str())).await;
    for _ in 0..3 {
        let d = must_recv(&mut *sub).await;
        let reason = if d.message.id == ids[2] {
            DeadReason::Timeout
        } else {
            DeadReason::CommandFailed("exit 1".into())
        };
        sub.reject(d.tag, Failure::new(reason).attempts(1))
            .await
            .expect("reject");
    }
    // Replay by reason: only the timeout comes back, marked as replayed.
    let timeouts = DeadSelect {
        reason: Some("timeout".into()),
        ..DeadSelect::default()
    };
    assert_eq!(b.replay_dead(&room, &timeouts).await.expect("replay"), 1);
    assert_eq!(
        b.replay_dead(&room, &timeouts).await.expect("replay"),
        0,
        "never twice"
    );
    let d = must_recv(&mut *sub).await;
    assert_eq!(d.message.id, ids[2]);
    assert_eq!(d.message.replays, 1, "marked as replayed");
    assert_eq!(
        d.message.deliveries, 0,
        "a replay starts a fresh set of attempts"
    );
    // It dies again: the dead letter says it was replayed once.
    sub.reject(d.tag, Failure::new(DeadReason::Timeout).attempts(1))
        .await
        .expect("reject");
    let again = dead_by_id(&*b, &room).await;
    let second = &again
        .iter()
        .find(|(id, _)| *id == ids[2])
        .expect("dead again")
        .1;
    assert_eq!(
        second.replays(),
        1,
        "a second death shows as one: {second:?}"
    );
    // Purge one by id; the others stay.
    let one = DeadSelect {
        ids: vec![ids[0].clone()],
        ..DeadSelect::default()
    };
    assert_eq!(b.purge_dead(&room, &one).await.expect("purge"), 1);
    assert_eq!(b.purge_dead(&room, &one).await.expect("purge"), 0);
    let left: HashSet<String> = dead_by_id(&*b, &room)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, HashSet::from([ids[1].clone(), ids[2].clone()]));
    // Replay all: both back, once each, and the dead letters empty.
    assert_eq!(
        b.replay_dead(&room, &DeadSelect::all())
            .await
            .expect("replay"),
        2
    );
    let mut back = Vec::new();
    while let Some(d) = recv_within(&mut *sub, QUIET * 3).await {
        sub.ack(d.tag).await.expect("ack");
        back.push(d.message.id);
    }
    back.sort();
    let mut want = vec![ids[1].clone(), ids[2].clone()];
    want.sort();
    assert_eq!(back, want, "each replayed message once");
    assert!(b
        .dead_letters(&room, 10)
        .await
        .expect("dead letters")
        .is_empty());
    sub.close().await.expect("close");
    b.purge(Mode::Queue, &room).await.expect("purge");
}
