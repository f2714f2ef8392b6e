//! The universal broker suite: one set of behaviours, written once against the `Broker`
//! trait, run for every backend (`memory://`, real Redis, `charla serve`, RabbitMQ, Kafka),
//! with the fault-injection cases (broker restart, consumer process killed with SIGKILL,
//! cancelled `recv`, consumer taken over while alive, network cut and stall) in the same table.
//!
//! A backend's suite is a test target with `harness = false` whose `main` is
//! [`run`]`(Suite { … })`. The harness is libtest-mimic: the output and closing line are those
//! of `cargo test`, and a case whose needs a backend lacks (a capability flag, a broker the
//! test can restart, a URL a child process or a proxy can use) is reported as *ignored* by
//! name, with the reason printed as a `SKIPPED:` line — never counted as passed.

mod basic;
mod child;
mod dead;
mod faults;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use async_trait::async_trait;
use charla_core::{Broker, Capabilities, Delivery, Message, Mode, Subscriber, Subscription};

pub use faults::Tally;

use crate::proxy::{socket_addr_of, FaultProxy};

/// A boxed future, as the case table stores its functions.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend under test: how to open connections to it, and what the harness may do to it.
#[async_trait]
pub trait Target: Send + Sync {
    /// A new, independent connection.
    async fn connect(&self) -> Box<dyn Broker>;

    /// The longest a backend takes to give a dead consumer's unacked messages to another
    /// consumer (heartbeat expiry, session timeout, …).
    fn recovery_time(&self) -> Duration {
        Duration::from_secs(5)
    }

    /// The broker's URL as another process (or a connection through a proxy, with its port
    /// replaced) opens it with [`Suite::open`]. `None`: the broker lives inside this process.
    fn url(&self) -> Option<String> {
        None
    }

    /// A fault proxy the case controls, and the broker's URL through it. By default a new
    /// proxy in front of [`url`](Target::url); a broker that tells its clients where to
    /// connect next (Kafka advertises its own address) keeps one in front of it from the
    /// start, advertised, and hands that one out.
    async fn fault_proxy(&self) -> Option<(Arc<FaultProxy>, String)> {
        let url = self.url()?;
        let proxy = FaultProxy::start(socket_addr_of(&url, 0)).await;
        let through = proxy.url_for(&url);
        Some((Arc::new(proxy), through))
    }

    /// Whether clients that do not use the [`fault_proxy`](Target::fault_proxy) reach the
    /// broker past it, so that one client's network can fail alone.
    fn proxy_isolates(&self) -> bool {
        true
    }

    /// Whether the broker notices by itself that a consumer died (its session expired) and
    /// hands that consumer's work to one already waiting, without a new consumer arriving.
    fn rebalances_on_expiry(&self) -> bool {
        true
    }

    /// Whether [`restart`](Target::restart) can stop and start the broker.
    fn can_restart(&self) -> bool {
        false
    }

    /// Called first by a case that restarts the broker: a broker shared with other tests
    /// waits here until no other test uses it.
    async fn prepare_restart(&self) {}

    /// Stop the broker as a crash would (SIGKILL where it is a process of the test's) and start
    /// it again on the same address with the same data.
    async fn restart(&self) {
        panic!("this target cannot restart its broker");
    }
}

/// Opens a backend at a URL.
pub type Open = fn(String) -> BoxFuture<'static, charla_core::Result<Box<dyn Broker>>>;

/// One backend's instantiation of the suite.
pub struct Suite {
    /// Shown in skip lines (`redis`, `serve`, `amqp`, `memory`, …).
    pub backend: &'static str,
    /// A fresh target for one case; `None` when the service is missing and this is not CI
    /// (after [`crate::service_missing`]).
    pub setup: fn() -> BoxFuture<'static, Option<Box<dyn Target>>>,
    /// Opens the backend at a URL (child processes, connections through the fault proxy).
    pub open: Open,
}

/// What a case needs from a backend.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    Queue,
    /// Queue mode keeps publish order for a single consumer.
    QueueOrder,
    Broadcast,
    Stream,
    StreamGroups,
    /// The members of a stream group share one room between them (`group_shares_room`).
    GroupSharesRoom,
    /// The backend has streams but no stream groups: asking for one must be refused.
    WithoutStreamGroups,
    /// The backend lacks at least one mode: asking for it must be refused.
    WithoutSomeMode,
    /// The backend cannot read history back: asking must be refused.
    WithoutHistory,
    /// The backend cannot list its rooms: asking must be refused.
    WithoutListRooms,
    Replay,
    Routing,
    DeadLetters,
    /// Dead letters can be replayed and purged (`Capabilities::dead_letter_actions`).
    DeadLetterActions,
    /// A stream room's recent messages can be read back (`Broker::history`).
    History,
    /// The broker lists the rooms it keeps (`Broker::rooms`).
    ListRooms,
    /// A consumer that dies holding a message counts as a delivery of it.
    CrashCount,
    /// The broker keeps messages across a restart and the target can restart it.
    Restart,
    /// The broker can be reached from another process and through a TCP proxy (a URL).
    Url,
    /// One client's network can fail while the others' works (see [`Target::proxy_isolates`]).
    IsolatedFault,
    /// A dead consumer's work goes to one already waiting (see
    /// [`Target::rebalances_on_expiry`]).
    RebalanceOnExpiry,
}

/// What the harness learnt about a backend before building the trials.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub caps: Capabilities,
    pub url: bool,
    pub restart: bool,
    pub isolates: bool,
    pub rebalances_on_expiry: bool,
}

impl Need {
    /// `None` when met, else the reason the case does not apply.
    fn unmet(self, p: &Profile) -> Option<&'static str> {
        let c = &p.caps;
        let (ok, why) = match self {
            Need::Queue => (c.queue, "no queue mode"),
            Need::QueueOrder => (
                c.queue && c.queue_order,
                "queue mode spreads a room over partitions (order is per partition; stream mode keeps it)",
            ),
            Need::Broadcast => (c.broadcast, "no broadcast mode"),
            Need::Stream => (c.stream, "no stream mode"),
            Need::StreamGroups => (c.stream && c.stream_groups, "no stream consumer groups"),
            Need::GroupSharesRoom => (
                c.stream && c.stream_groups && c.group_shares_room,
                "a stream room is one partition: one member of a group reads it, the others \
                 stand by to take over (Capabilities::group_shares_room)",
            ),
            Need::WithoutStreamGroups => (
                c.stream && !c.stream_groups,
                "the backend has stream groups (their refusal is checked where it has none)",
            ),
            Need::WithoutSomeMode => (
                !Mode::ALL.iter().all(|m| c.supports(*m)),
                "the backend has every mode (the refusal of a missing one is checked where \
                 one is missing)",
            ),
            Need::WithoutHistory => (
                !(c.stream && c.history),
                "the backend reads history back (the refusal is checked where it cannot)",
            ),
            Need::WithoutListRooms => (
                !c.list_rooms,
                "the backend lists its rooms (the refusal is checked where it cannot)",
            ),
            Need::Replay => (c.stream && c.replay, "no stream replay"),
            Need::Routing => (c.routing, "no routing mode"),
            Need::DeadLetters => (c.dead_letters, "no readable dead letters"),
            Need::DeadLetterActions => (
                c.dead_letters && c.dead_letter_actions,
                "the backend cannot replay or purge dead letters one by one \
                 (Capabilities::dead_letter_actions)",
            ),
            Need::History => (
                c.stream && c.history,
                "the backend cannot read a stream room's history back (Capabilities::history)",
            ),
            Need::ListRooms => (
                c.list_rooms,
                "the backend cannot list the rooms it keeps (Capabilities::list_rooms)",
            ),
            Need::CrashCount => (
                c.counts_crashed_deliveries,
                "the backend does not count a delivery to a consumer that died holding it",
            ),
            Need::Restart => (
                c.survives_restart && p.restart,
                "the broker cannot be restarted by the test or keeps nothing across restarts",
            ),
            Need::Url => (
                p.url,
                "the broker lives inside the test process (no other process or proxy can reach it)",
            ),
            Need::RebalanceOnExpiry => (
                p.rebalances_on_expiry,
                "the test broker drops a member whose session expired without a rebalance, so \
                 a member already waiting never gets its partitions (tansu 0.6; a member \
                 joining later does: fault_*_consumer_process_killed)",
            ),
            Need::IsolatedFault => (
                p.url && p.isolates,
                "the broker advertises one address that every client connects to, so a proxy \
                 in front of it stalls every client at once, never one alone",
            ),
        };
        (!ok).then_some(why)
    }
}

/// One case of the suite.
pub struct Case {
    pub name: &'static str,
    pub needs: &'static [Need],
    run: for<'a> fn(&'a Ctx<'a>) -> BoxFuture<'a, ()>,
}

/// What a running case has: the target and the suite (to open URLs).
pub struct Ctx<'a> {
    pub target: &'a dyn Target,
    pub suite: &'a Suite,
}

macro_rules! case {
    ($module:ident :: $name:ident, [$($need:ident),*]) => {
        Case {
            name: stringify!($name),
            needs: &[$(Need::$need),*],
            run: {
                fn run<'a>(ctx: &'a Ctx<'a>) -> BoxFuture<'a, ()> {
                    Box::pin($module::$name(ctx))
                }
                run
            },
        }
    };
}

/// Every case, in the order they are listed by the test binary.
pub static CASES: &[Case] = &[
    case!(basic::queue_keeps_order_per_room, [Queue, QueueOrder]),
    case!(
        basic::queue_competing_consumers_share_without_duplicates,
        [Queue]
    ),
    case!(basic::queue_nack_redelivers_then_ack_settles, [Queue]),
    case!(basic::queue_acked_message_is_not_redelivered, [Queue]),
    case!(basic::queue_dropped_consumer_loses_nothing, [Queue]),
    case!(basic::queue_consumers_declaring_a_new_room_at_once, [Queue]),
    case!(
        basic::queue_endless_nack_goes_to_dead_letters,
        [Queue, DeadLetters]
    ),
    case!(basic::queue_poison_message_is_dead_lettered, [Queue]),
    case!(dead::dead_letters_say_why, [Queue, DeadLetters]),
    case!(
        dead::dead_letters_replay_and_purge,
        [Queue, DeadLetters, DeadLetterActions]
    ),
    case!(
        basic::other_applications_events_reach_subscribers_that_ask,
        [Queue]
    ),
    case!(basic::queue_ten_thousand_without_loss, [Queue]),
    case!(basic::broadcast_fans_out_to_every_subscriber, [Broadcast]),
    case!(basic::broadcast_keeps_no_history, [Broadcast]),
    case!(basic::presence_beats_reach_every_listener, [Broadcast]),
    case!(
        basic::stream_replays_from_beginning_and_offset,
        [Stream, Replay]
    ),
    case!(basic::stream_latest_skips_history, [Stream]),
    case!(basic::stream_group_resumes_where_it_acked, [StreamGroups]),
    case!(basic::stream_group_members_share_a_room, [GroupSharesRoom]),
    case!(
        basic::stream_group_dropped_consumer_loses_nothing,
        [StreamGroups]
    ),
    case!(basic::stream_ten_thousand_without_loss, [StreamGroups]),
    case!(
        basic::history_returns_the_last_messages_oldest_first,
        [Stream, History]
    ),
    case!(
        basic::history_pages_back_without_gaps_or_overlaps,
        [Stream, History]
    ),
    case!(basic::history_of_an_unknown_room_is_empty, [History]),
    case!(
        basic::history_takes_nothing_from_groups_or_subscribers,
        [Stream, History]
    ),
    case!(
        basic::history_skips_payloads_that_are_not_chat_messages,
        [Stream, History]
    ),
    case!(
        basic::rooms_lists_stream_rooms_without_bookkeeping,
        [Stream, ListRooms]
    ),
    case!(
        basic::history_is_refused_where_not_declared,
        [WithoutHistory]
    ),
    case!(
        basic::rooms_are_refused_where_not_declared,
        [WithoutListRooms]
    ),
    case!(basic::routing_patterns_match_topics, [Routing]),
    case!(basic::large_and_unicode_payloads_round_trip, []),
    case!(basic::oversized_message_is_refused, []),
    case!(basic::declared_modes_subscribe_and_publish, []),
    case!(basic::undeclared_modes_are_refused, [WithoutSomeMode]),
    case!(
        basic::stream_groups_are_refused_where_not_declared,
        [WithoutStreamGroups]
    ),
    case!(faults::fault_queue_cancelled_recv, [Queue]),
    case!(faults::fault_stream_group_cancelled_recv, [StreamGroups]),
    case!(
        faults::fault_queue_recv_cancelled_while_reconnecting,
        [Queue, Url]
    ),
    case!(faults::fault_queue_consumer_process_killed, [Queue, Url]),
    case!(
        faults::fault_stream_group_consumer_process_killed,
        [StreamGroups, Url]
    ),
    case!(
        faults::fault_queue_standby_takes_over_killed_consumer,
        [Queue, Url, RebalanceOnExpiry]
    ),
    case!(
        faults::fault_stream_group_standby_takes_over_killed_member,
        [StreamGroups, Url, RebalanceOnExpiry]
    ),
    case!(
        faults::fault_queue_poison_kills_its_consumer_process,
        [Queue, DeadLetters, CrashCount, Url]
    ),
    case!(
        faults::fault_queue_consumer_taken_over_while_alive,
        [Queue, Url, IsolatedFault]
    ),
    case!(
        faults::fault_stream_group_consumer_taken_over_while_alive,
        [StreamGroups, Url, IsolatedFault]
    ),
    case!(faults::fault_queue_network_cut, [Queue, Url]),
    case!(faults::fault_stream_group_network_cut, [StreamGroups, Url]),
    case!(faults::fault_queue_broker_restart, [Queue, Restart]),
    case!(
        faults::fault_stream_group_broker_restart,
        [StreamGroups, Restart]
    ),
];

/// The test binary's `main`: runs a child role when the suite re-executed itself (the consumer
/// process of the SIGKILL cases), otherwise every case as a libtest-mimic trial.
pub fn run(suite: Suite) -> ExitCode {
    if let Some(code) = child::run_if_child(&suite) {
        return code;
    }
    let args = libtest_mimic::Arguments::from_args();
    let suite: &'static Suite = Box::leak(Box::new(suite));
    let probe = if args.list {
        None // listing must not need the broker
    } else {
        Some(runtime().block_on(profile(suite)))
    };
    let trials = CASES
        .iter()
        .map(|case| {
            let skip = match &probe {
                None => None,
                Some(Err(why)) => Some(why.clone()),
                Some(Ok(p)) => case
                    .needs
                    .iter()
                    .find_map(|n| n.unmet(p))
                    .map(str::to_owned),
            };
            if let Some(why) = &skip {
                if args.filter.as_deref().is_none_or(|f| case.name.contains(f)) {
                    crate::report_skip_of(&format!("{} {}", suite.backend, case.name), why);
                }
            }
            libtest_mimic::Trial::test(case.name, move || run_case(suite, case))
                .with_ignored_flag(skip.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Connect once to learn the backend's capabilities. A missing service (not in CI) makes
/// every case a named skip.
async fn profile(suite: &Suite) -> Result<Profile, String> {
    let Some(target) = (suite.setup)().await else {
        return Err(format!(
            "{} is not available on this machine",
            suite.backend
        ));
    };
    let broker = target.connect().await;
    Ok(Profile {
        caps: broker.capabilities(),
        url: target.url().is_some(),
        restart: target.can_restart(),
        isolates: target.proxy_isolates(),
        rebalances_on_expiry: target.rebalances_on_expiry(),
    })
}

fn run_case(suite: &'static Suite, case: &'static Case) -> Result<(), libtest_mimic::Failed> {
    run_bounded(suite, case, case_limit()).map_err(Into::into)
}

/// The longest one case may take before it fails by name (`CHARLA_CASE_TIMEOUT_SECS`,
/// default 300 s): the slowest case on the slowest backend (Kafka's traffic under a broker
/// restart) takes about 90 s, so a case past five minutes is hung, and a hung case must
/// fail in minutes instead of holding CI until its 90-minute limit.
fn case_limit() -> Duration {
    std::env::var("CHARLA_CASE_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_secs)
}

/// Run one case on a runtime of its own, failing it when it takes longer than `limit`. The
/// case's future is dropped at the limit, and with it what it owns (consumer processes are
/// killed on drop).
fn run_bounded(suite: &'static Suite, case: &'static Case, limit: Duration) -> Result<(), String> {
    runtime().block_on(async {
        let Some(target) = (suite.setup)().await else {
            return Err(format!("{} became unavailable", suite.backend));
        };
        let ctx = Ctx {
            target: &*target,
            suite,
        };
        tokio::time::timeout(limit, (case.run)(&ctx))
            .await
            .map_err(|_| {
                format!(
                    "{} {} did not finish within {limit:?}: hung (CHARLA_CASE_TIMEOUT_SECS sets \
                     the limit)",
                    suite.backend, case.name
                )
            })
    })
}

/// Run the case named `name` against `suite` outside the harness and say how it ended: the
/// failure's message, or `Ok`. This is how the suite's own tests show that a case fails
/// against a deliberately broken backend (a test of the test).
pub fn check_case(suite: Suite, name: &str, limit: Duration) -> Result<(), String> {
    let case = CASES
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("no case named {name}"))?;
    let suite: &'static Suite = Box::leak(Box::new(suite));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_bounded(suite, case, limit)
    }));
    match outcome {
        Ok(result) => result,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the case panicked".to_owned())),
    }
}

// ---------------------------------------------------------------------------------------------
// helpers shared by the cases

const QUIET: Duration = Duration::from_millis(700);
const PATIENCE: Duration = Duration::from_secs(20);

fn msg(room: &str, i: usize) -> Message {
    Message::new("tester", format!("message {i}"), room)
}

/// The next delivery, or `None` after `wait`.
pub async fn recv_within(sub: &mut dyn Subscriber, wait: Duration) -> Option<Delivery> {
    match tokio::time::timeout(wait, sub.recv()).await {
        Ok(Ok(d)) => Some(d),
        Ok(Err(e)) => panic!("recv failed: {e}"),
        Err(_) => None,
    }
}

async fn must_recv(sub: &mut dyn Subscriber) -> Delivery {
    recv_within(sub, PATIENCE)
        .await
        .expect("no message arrived within the patience window")
}

async fn publish_n(broker: &dyn Broker, mode: Mode, room: &str, n: usize) -> Vec<Message> {
    let mut p = broker.publisher(mode, room).await.expect("publisher");
    let messages: Vec<Message> = (0..n).map(|i| msg(room, i)).collect();
    for m in &messages {
        p.publish(m).await.expect("publish");
    }
    messages
}

async fn subscribe(broker: &dyn Broker, sub: Subscription) -> Box<dyn Subscriber> {
    broker.subscribe(sub).await.expect("subscribe")
}

/// A Redis-protocol server process of the test's own (`redis-server` or `charla serve`, see
/// [`crate::RedisServer`]) as a target: its URL with a short consumer TTL, so killed consumers
/// recover within seconds, and a restart that is a SIGKILL followed by a start on the same
/// port and directory.
pub struct ServerTarget {
    server: std::sync::Mutex<crate::RedisServer>,
    url: String,
    open: Open,
}

impl ServerTarget {
    /// The consumer TTL the URL asks for (`?consumer_ttl_ms=`).
    pub const TTL: Duration = Duration::from_millis(1500);

    pub fn new(server: crate::RedisServer, open: Open) -> ServerTarget {
        let url = crate::with_option(&server.url(), "consumer_ttl_ms", Self::TTL.as_millis());
        ServerTarget {
            server: std::sync::Mutex::new(server),
            url,
            open,
        }
    }
}

#[async_trait]
impl Target for ServerTarget {
    async fn connect(&self) -> Box<dyn Broker> {
        (self.open)(self.url.clone())
            .await
            .expect("connect to the server")
    }

    fn recovery_time(&self) -> Duration {
        Self::TTL * 2
    }

    fn url(&self) -> Option<String> {
        Some(self.url.clone())
    }

    fn can_restart(&self) -> bool {
        true
    }

    async fn restart(&self) {
        let mut server = self.server.lock().unwrap_or_else(|p| p.into_inner());
        server.restart(); // SIGKILL, then the same port and directory
    }
}
