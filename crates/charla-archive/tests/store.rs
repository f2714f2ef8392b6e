//! The archive against real PostgreSQL (a database of its own on the machine's server,
//! created by charla and dropped afterwards): once per id, pages, search, bad input.

use charla_archive::{Archive, ArchiveError};
use charla_core::Message;
use charla_testkit::ScratchDatabase;

fn messages(room: &str, texts: &[&str]) -> Vec<Message> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut m = Message::new(if i % 2 == 0 { "Ana" } else { "Beto" }, *t, room);
            m.ts_us = 1_000_000 + i as i64; // distinct, increasing send times
            m
        })
        .collect()
}

#[tokio::test]
async fn each_message_once_in_order_paged_and_searchable() {
    let Some(db) = ScratchDatabase::new() else {
        return;
    };
    // The database does not exist yet: charla creates it and its schema.
    let archive = Archive::open(&db.url())
        .await
        .expect("open creates and migrates");
    // Opening again (a second gateway, a restart) migrates nothing and works.
    let again = Archive::open(&db.url()).await.expect("open again");
    let room = "sala";
    let batch = messages(
        room,
        &[
            "Hola a todos",
            "¿Alguien vio la canción nueva?",
            "sí, la canción es buena",
            "adiós\0con nul",
            "hasta mañana",
        ],
    );
    assert_eq!(archive.store(&batch).await.expect("store"), 5);
    // The same messages again (a redelivery, another archiver): nothing new.
    assert_eq!(again.store(&batch).await.expect("store again"), 0);
    assert_eq!(archive.store(&batch[1..3]).await.expect("part again"), 0);
    assert_eq!(archive.count(room).await.expect("count"), (5, 5));

    let all = archive.page(room, 10, None, None).await.expect("page");
    let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
    let sent: Vec<&str> = batch.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, sent, "oldest first, in send order");
    assert_eq!(
        all[3].mensaje, "adiós\u{fffd}con nul",
        "NUL, which PostgreSQL text cannot hold, is replaced"
    );

    let last_two = archive.page(room, 2, None, None).await.expect("last two");
    assert_eq!(
        last_two.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        &sent[3..]
    );
    let before = archive
        .page(room, 2, Some(sent[3]), None)
        .await
        .expect("before");
    assert_eq!(
        before.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        &sent[1..3]
    );
    let first = archive
        .page(room, 5, Some(sent[0]), None)
        .await
        .expect("before the first");
    assert!(first.is_empty());

    let found = archive
        .page(room, 10, None, Some("canción"))
        .await
        .expect("search");
    assert_eq!(
        found.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        &sent[1..3]
    );
    let by_name = archive
        .page(room, 10, None, Some("Beto"))
        .await
        .expect("search a name");
    assert_eq!(by_name.len(), 2);
    let none = archive
        .page(room, 10, None, Some("zanahoria"))
        .await
        .expect("search");
    assert!(none.is_empty());
    // Search syntax from users is never an SQL or tsquery error.
    for q in ["\"sin cerrar", "a & | ! (", "' OR 1=1 --", "-todos"] {
        archive
            .page(room, 10, None, Some(q))
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    // Other rooms are apart.
    assert!(archive
        .page("otra", 10, None, None)
        .await
        .expect("other room")
        .is_empty());

    let unknown = archive.page(room, 10, Some("01NOSUCHID"), None).await;
    assert!(
        matches!(unknown, Err(ArchiveError::InvalidArgument(_))),
        "{unknown:?}"
    );
    let empty_q = archive.page(room, 10, None, Some("  ")).await;
    assert!(matches!(empty_q, Err(ArchiveError::InvalidArgument(_))));
}

#[tokio::test]
async fn an_unreachable_database_is_one_clear_error() {
    let port = charla_testkit::free_port();
    let e = Archive::open(&format!("postgres://postgres@127.0.0.1:{port}/x"))
        .await
        .expect_err("nothing listens there");
    assert!(matches!(e, ArchiveError::Unreachable(_)), "{e:?}");
    let bad = Archive::open("mysql://nope")
        .await
        .expect_err("not postgres");
    assert!(matches!(bad, ArchiveError::Url(_)), "{bad:?}");
}
