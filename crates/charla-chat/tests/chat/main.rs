//! charla-chat's own tests: the engine the terminal chat and the web gateway share, driven
//! through its public API as they drive it (a `Connector` closure into `Link::open`,
//! `RoomFeed::start` + `join`, `Outbox::start` + `post_confirmed`, `Presence::start` +
//! `enter`), on the in-process `memory://` broker and on a real `redis-server` started per
//! test on a free port.
//!
//! Every case counts message ids: no message lost, none shown twice, the room's order kept.
//! Each scenario runs once per backend (`<scenario>::memory`, `<scenario>::redis`), under a
//! deadline so a hang fails by name. With `CI=true` a missing redis-server fails the redis
//! cases (`charla_testkit::service_missing`); elsewhere they say `SKIPPED:` and return.

mod common;
mod join;
mod outbox;
mod presence;
mod reconnect;

/// One scenario on both backends, each under `$secs` seconds.
macro_rules! on_both_backends {
    ($($module:ident :: $scenario:ident, $secs:expr;)*) => {$(
        mod $scenario {
            use crate::common::{within, Backend};
            use std::time::Duration;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                within(
                    concat!(stringify!($scenario), "::memory"),
                    Duration::from_secs($secs),
                    crate::$module::$scenario(Backend::Memory),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                within(
                    concat!(stringify!($scenario), "::redis"),
                    Duration::from_secs($secs),
                    crate::$module::$scenario(Backend::Redis),
                )
                .await;
            }
        }
    )*};
}

on_both_backends! {
    join::history_then_live, 60;
    join::race_a_message_between_subscribing_and_reading_history_shows_once, 60;
    join::race_a_burst_longer_than_the_history_keeps_order, 60;
    join::a_retried_publish_shows_once, 60;
    join::joins_under_continuous_traffic_see_the_end_of_the_room, 120;
    reconnect::reconnect_in_the_middle_of_a_join, 60;
    reconnect::outage_right_after_joining_loses_nothing, 60;
    reconnect::outage_after_live_messages_loses_nothing, 60;
    outbox::typed_while_the_broker_is_away_sent_once_in_order, 60;
    presence::members_see_each_other_join_and_leave, 60;
    presence::a_member_that_vanishes_expires, 60;
}
