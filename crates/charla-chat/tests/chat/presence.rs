//! Presence between two processes (two links, two `Presence`s, as two chats on two
//! machines): each sees the other join and leave, through the broker's beats.

use std::time::Duration;

use charla_chat::{Change, Presence};
use charla_testkit::unique_name;
use tokio::sync::broadcast;

use crate::common::{eventually, Backend, Env};

/// Beats go out every 2 s and a silent member expires after 5.5 s: room to spare.
const HEAR: Duration = Duration::from_secs(15);

/// Wait for `want` among the changes; fails with what came instead.
async fn change_arrives(changes: &mut broadcast::Receiver<Change>, want: Change) {
    let deadline = tokio::time::Instant::now() + HEAR;
    let mut other = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(Ok(c)) if c == want => return,
            Ok(Ok(c)) => other.push(c),
            Ok(Err(e)) => panic!("waiting for {want:?}: {e}"),
            Err(_) => panic!("{want:?} did not come within {HEAR:?}; came: {other:?}"),
        }
    }
}

fn joined(room: &str, name: &str) -> Change {
    Change::Joined {
        room: room.into(),
        name: name.into(),
    }
}

fn left(room: &str, name: &str) -> Change {
    Change::Left {
        room: room.into(),
        name: name.into(),
    }
}

/// Ana and Beto in one room, each in a process of their own: each sees the other arrive;
/// Beto leaves (his session ends) and Ana sees him go, while she stays.
pub async fn members_see_each_other_join_and_leave(backend: Backend) {
    let Some(env) = Env::start(backend).await else {
        return;
    };
    let room = unique_name("presence-");
    let a = Presence::start(env.link(None).await);
    let b = Presence::start(env.link(None).await);
    let mut a_changes = a.changes();
    let mut b_changes = b.changes();

    let ana = a.enter("ana", &room);
    change_arrives(&mut a_changes, joined(&room, "ana")).await;
    let beto = b.enter("beto", &room);
    change_arrives(&mut a_changes, joined(&room, "beto")).await;
    change_arrives(&mut b_changes, joined(&room, "ana")).await;
    let both = vec!["ana".to_owned(), "beto".to_owned()];
    assert_eq!(a.online(&room), both);
    eventually("Beto's process lists both", HEAR, || {
        b.online(&room) == both
    })
    .await;
    assert_eq!(a.rooms(), vec![(room.clone(), 2)]);

    drop(beto);
    change_arrives(&mut a_changes, left(&room, "beto")).await;
    assert_eq!(a.online(&room), vec!["ana".to_owned()]);
    eventually("Beto's own process no longer lists him", HEAR, || {
        b.online(&room) == vec!["ana".to_owned()]
    })
    .await;
    drop(ana);
    change_arrives(&mut b_changes, left(&room, "ana")).await;
    assert!(b.online(&room).is_empty());
}

/// Beto's process stops without saying goodbye (its presence tasks end, no leave is sent):
/// Ana sees him expire once his beats stop; she, who keeps beating, stays.
pub async fn a_member_that_vanishes_expires(backend: Backend) {
    let Some(env) = Env::start(backend).await else {
        return;
    };
    let room = unique_name("vanish-");
    let a = Presence::start(env.link(None).await);
    let b = Presence::start(env.link(None).await);
    let mut a_changes = a.changes();
    let _ana = a.enter("ana", &room);
    let _beto = b.enter("beto", &room);
    change_arrives(&mut a_changes, joined(&room, "beto")).await;

    // The session is kept (no leave is said); the process's beating stops.
    drop(b);
    change_arrives(&mut a_changes, left(&room, "beto")).await;
    assert_eq!(a.online(&room), vec!["ana".to_owned()]);
}
