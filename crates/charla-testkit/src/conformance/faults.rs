//! Fault injection: each case breaks something a real deployment sees break — the broker
//! restarted, a consumer process killed with SIGKILL mid-batch, a `recv` cancelled while the
//! broker was answering it, a live consumer cut off long enough that another takes its work
//! over, the network cut or stalled — and then counts, by message id: sent (the publish
//! returned Ok), received, lost (must be 0) and duplicated. A duplicate is allowed only as a
//! redelivery of a message nobody had acknowledged yet, after a fault (or a consumer leaving)
//! that explains it, flagged `redelivered` where the backend can know — or as a publish the
//! producer had to retry.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use charla_core::{Broker, Delivery, Message, Mode, Subscriber, Subscription};

use super::child::{ChildConsumer, ConsumerSpec};
use super::{msg, recv_within, Ctx, Open, PATIENCE, QUIET};
use crate::unique_name;

// ---------------------------------------------------------------------------------------------
// counting

/// One logical clock for every tally of the process, so that what two consumers counted
/// apart can be merged and still be ordered against acks and faults.
static CLOCK: AtomicU64 = AtomicU64::new(0);

fn tick() -> u64 {
    CLOCK.fetch_add(1, Ordering::SeqCst) + 1
}

/// One copy of a message as a consumer got it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// The backend's `redelivered` flag on this copy.
    pub redelivered: bool,
    /// When it was handed to the consumer (the shared logical clock).
    pub at: u64,
}

/// The faults a broker restart is recorded as: when it starts, and once the broker is back
/// (an ack made in between may be undone by the restart where acks do not survive one).
const BROKER_RESTARTING: &str = "the broker is restarting";
const BROKER_BACK: &str = "the broker is back after its restart";

/// What a fault case saw, by message id.
#[derive(Debug, Default)]
pub struct Tally {
    /// Messages whose publish returned Ok.
    pub sent: HashSet<String>,
    /// Messages whose publish failed at least once before it succeeded (a copy may have
    /// landed before the failure was reported, so a second copy is not a redelivery).
    pub retried: HashSet<String>,
    /// Every delivery: id → each copy, in order of arrival.
    pub received: HashMap<String, Vec<Arrival>>,
    /// Messages whose acknowledgement returned Ok, and when it returned: from then on the
    /// broker may not hand the message out again.
    pub acked: HashMap<String, u64>,
    /// The faults of the case and the consumers that left or came back, in order: a message
    /// may only come again across one of them.
    pub faults: Vec<(u64, String)>,
}

impl Tally {
    pub fn record(&mut self, id: &str, redelivered: bool) {
        let at = tick();
        self.received
            .entry(id.to_owned())
            .or_default()
            .push(Arrival { redelivered, at });
    }

    /// The acknowledgement of `id` returned Ok.
    pub fn ack(&mut self, id: &str) {
        let at = tick();
        self.acked.entry(id.to_owned()).or_insert(at);
    }

    /// Something happened that may hand unacknowledged messages out again: the network cut,
    /// the broker restarted, a consumer killed, closed, taken over or reconnected.
    pub fn fault(&mut self, what: &str) {
        self.faults.push((tick(), what.to_owned()));
    }

    /// Whether a broker restart ended (the broker was back) between two moments.
    fn restart_ended_between(&self, after: u64, before: u64) -> bool {
        self.faults
            .iter()
            .any(|(at, what)| *at > after && *at < before && what == BROKER_BACK)
    }

    /// Add what one consumer saw, counted apart, to the whole case's tally.
    pub fn absorb(&mut self, part: &Tally) {
        for (id, copies) in &part.received {
            let mine = self.received.entry(id.clone()).or_default();
            mine.extend(copies.iter().copied());
            mine.sort_by_key(|a| a.at);
        }
        for (id, at) in &part.acked {
            let mine = self.acked.entry(id.clone()).or_insert(*at);
            *mine = (*mine).min(*at);
        }
        self.faults.extend(part.faults.iter().cloned());
        self.faults.sort_by_key(|f| f.0);
    }

    /// Sent and never received.
    pub fn lost(&self) -> Vec<&String> {
        let mut lost: Vec<&String> = self
            .sent
            .iter()
            .filter(|id| !self.received.contains_key(*id))
            .collect();
        lost.sort();
        lost
    }

    /// Copies beyond the first.
    pub fn duplicated(&self) -> usize {
        self.received.values().map(|v| v.len() - 1).sum()
    }

    /// Every sent message received.
    pub fn complete(&self) -> bool {
        self.sent.iter().all(|id| self.received.contains_key(id))
    }

    /// One line: `sent … received … lost … duplicated …`.
    pub fn summary(&self) -> String {
        format!(
            "sent {} received {} (unique {}) lost {} duplicated {} acked {} faults {}",
            self.sent.len(),
            self.received.values().map(Vec::len).sum::<usize>(),
            self.received.len(),
            self.lost().len(),
            self.duplicated(),
            self.acked.len(),
            self.faults.len()
        )
    }

    /// The first fault strictly between two moments.
    fn fault_between(&self, after: u64, before: u64) -> Option<&str> {
        self.faults
            .iter()
            .find(|(at, _)| *at > after && *at < before)
            .map(|(_, what)| what.as_str())
    }

    /// Nothing lost; nothing received that nobody sent; no message handed out again after
    /// its acknowledgement returned (unless it was published again: a retried publish, or a
    /// publisher's own resend, one per fault at most); and every other duplicate explained: a publish the
    /// producer retried, a copy a backend's publisher resent by itself during the fault
    /// (`publisher_resends` and `published_during_fault`: no consumer can tell it from a first
    /// delivery), or else a redelivery across a fault — flagged `redelivered` where the
    /// backend flags them. A backend without the flag (Kafka) is held to the rest: a consumer
    /// that read every message twice, or a message again after its ack, fails here too.
    pub fn assert_sound(
        &self,
        case: &str,
        caps: &charla_core::Capabilities,
        published_during_fault: bool,
    ) {
        let resends = caps.publisher_resends && published_during_fault;
        eprintln!("FAULT {case}: {}", self.summary());
        let lost = self.lost();
        assert!(
            lost.is_empty(),
            "{case}: {} sent messages were lost: {lost:?} ({})",
            lost.len(),
            self.summary()
        );
        // Copies after an ack that a republish or a restart explained, for the log line.
        let (mut excused_resent, mut excused_restart) = (0, 0);
        let mut ids: Vec<&String> = self.received.keys().collect();
        ids.sort();
        for id in ids {
            let copies = &self.received[id];
            assert!(
                self.sent.contains(id) || self.retried.contains(id),
                "{case}: received {id}, which nobody sent"
            );
            if let Some(acked) = self.acked.get(id) {
                let after: Vec<&Arrival> = copies.iter().filter(|c| c.at > *acked).collect();
                // Where acks may not survive a restart (Capabilities::acks_survive_restart),
                // an ack made before the broker was back up may be undone by the restart.
                let undone = |c: &Arrival| {
                    !caps.acks_survive_restart && self.restart_ended_between(*acked, c.at)
                };
                // A message published twice is two messages on the broker: the producer's
                // retry, or the backend's publisher resending what a fault left unconfirmed
                // (one per fault at most). A resent copy may be flagged too: it can sit in
                // the prefetch of a channel a fault closed and come back from there.
                let resent = |_: &Arrival| resends;
                let unexplained = if self.retried.contains(id) {
                    0
                } else {
                    let resent_copies = after.iter().filter(|c| !undone(c) && resent(c)).count();
                    let other = after.iter().filter(|c| !undone(c) && !resent(c)).count();
                    excused_resent += resent_copies;
                    excused_restart += after.iter().filter(|c| undone(c)).count();
                    other + resent_copies.saturating_sub(self.faults.len())
                };
                assert!(
                    unexplained == 0,
                    "{case}: {id} was acknowledged (the ack returned Ok) and then delivered \
                     {} more time(s) (flagged redelivered: {:?}; faults meanwhile: {:?}) ({})",
                    after.len(),
                    after.iter().map(|c| c.redelivered).collect::<Vec<_>>(),
                    self.faults
                        .iter()
                        .filter(|(at, _)| *at > *acked)
                        .map(|(_, what)| what.as_str())
                        .collect::<Vec<_>>(),
                    self.summary()
                );
            }
            if self.retried.contains(id) || resends {
                continue;
            }
            for pair in copies.windows(2) {
                let (earlier, later) = (pair[0], pair[1]);
                let Some(fault) = self.fault_between(earlier.at, later.at) else {
                    panic!(
                        "{case}: {id} arrived {} times with no fault, leave or reconnect \
                         between two copies: a duplicate nothing explains ({})",
                        copies.len(),
                        self.summary()
                    );
                };
                assert!(
                    !caps.redelivered_flag || later.redelivered,
                    "{case}: {id} arrived {} times (again after: {fault}) and a later copy was \
                     not marked redelivered",
                    copies.len()
                );
            }
        }
        if excused_resent + excused_restart > 0 {
            eprintln!(
                "FAULT {case}: copies after their ack explained by a publisher's resend: \
                 {excused_resent}, by a broker restart: {excused_restart}"
            );
        }
    }
}

type Shared = Arc<Mutex<Tally>>;

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// the two durable shapes every fault case runs in

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Queue,
    StreamGroup,
}

impl Shape {
    fn mode(self) -> Mode {
        match self {
            Shape::Queue => Mode::Queue,
            Shape::StreamGroup => Mode::Stream,
        }
    }
}

/// Room and group of one case.
struct Place {
    shape: Shape,
    room: String,
    group: Option<String>,
}

/// The end of a fault case with no publishing during the fault: the tally must be sound;
/// then the room is removed (best effort: the assertion is what counts).
async fn conclude(ctx: &Ctx<'_>, b: &dyn Broker, place: &Place, tally: &Shared, what: &str) {
    lock(tally).assert_sound(
        &format!("{} {what}", ctx.suite.backend),
        &b.capabilities(),
        false,
    );
    let _ = b.purge(place.shape.mode(), &place.room).await;
}

impl Place {
    fn new(shape: Shape, prefix: &str) -> Place {
        Place {
            shape,
            room: unique_name(prefix),
            group: (shape == Shape::StreamGroup).then(|| unique_name("g-")),
        }
    }

    fn subscription(&self, consumer: &str, prefetch: usize) -> Subscription {
        self.spec("", consumer, prefetch).subscription()
    }

    fn spec(&self, url: &str, consumer: &str, prefetch: usize) -> ConsumerSpec {
        ConsumerSpec {
            url: url.to_owned(),
            mode: self.shape.mode(),
            room: self.room.clone(),
            group: self.group.clone(),
            consumer: consumer.to_owned(),
            prefetch,
        }
    }

    /// For a stream group the group must exist before messages are published to be counted
    /// from the start; `Beginning` covers it, but creating it first makes every case read
    /// the same way on every backend.
    async fn prepare(&self, b: &dyn Broker) {
        if self.group.is_some() {
            let s = b
                .subscribe(self.subscription("setup", 1))
                .await
                .expect("create the group");
            s.close().await.expect("close");
        }
    }
}

/// Publish `n` messages, recording each in the tally.
async fn publish_counted(b: &dyn Broker, place: &Place, n: usize, tally: &Shared) -> Vec<Message> {
    let mut p = b
        .publisher(place.shape.mode(), &place.room)
        .await
        .expect("publisher");
    let mut out = Vec::new();
    for i in 0..n {
        let m = msg(&place.room, i);
        p.publish(&m).await.expect("publish");
        lock(tally).sent.insert(m.id.clone());
        out.push(m);
    }
    out
}

/// Receive and ack until every sent message arrived, or `patience` passes with nothing new;
/// then a quiet moment more, so that a copy arriving late is counted too.
async fn drain(sub: &mut dyn Subscriber, tally: &Shared, patience: Duration) {
    while !lock(tally).complete() {
        let Some(d) = recv_within(sub, patience).await else {
            return;
        };
        settle(sub, d, tally).await;
    }
    while let Some(d) = recv_within(sub, QUIET).await {
        settle(sub, d, tally).await;
    }
}

/// Receive and ack exactly `n` messages.
async fn take(sub: &mut dyn Subscriber, tally: &Shared, n: usize) {
    for i in 0..n {
        let d = recv_within(sub, PATIENCE)
            .await
            .unwrap_or_else(|| panic!("only {i} of {n} messages arrived"));
        settle(sub, d, tally).await;
    }
}

async fn settle(sub: &mut dyn Subscriber, d: Delivery, tally: &Shared) {
    lock(tally).record(&d.message.id, d.redelivered);
    sub.ack(d.tag).await.expect("ack");
    lock(tally).ack(&d.message.id);
}

// ---------------------------------------------------------------------------------------------
// a cancelled recv

pub async fn fault_queue_cancelled_recv(ctx: &Ctx<'_>) {
    cancelled_recv(ctx, Shape::Queue).await;
}

pub async fn fault_stream_group_cancelled_recv(ctx: &Ctx<'_>) {
    cancelled_recv(ctx, Shape::StreamGroup).await;
}

/// A `recv` dropped while the broker may already be handing it a message (the request went
/// out, the reply is lost with the future), then two messages: both must reach a consumer,
/// and acknowledging the one that arrived must not drop the other. Then, with a batch of
/// twenty waiting, five are taken and a `recv` is cancelled in the middle of the rest: the
/// consumer leaves, and another gets the other fifteen.
async fn cancelled_recv(ctx: &Ctx<'_>, shape: Shape) {
    let t = ctx.target;
    let b = t.connect().await;
    let place = Place::new(shape, "f-cancel-");
    place.prepare(&*b).await;
    let tally: Shared = Arc::default();
    let mut first = b
        .subscribe(place.subscription("first", 10))
        .await
        .expect("subscribe");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), first.recv())
            .await
            .is_err(),
        "nothing was published yet"
    );
    // Published at once, while the cancelled request may still be waiting on the broker.
    let publisher = t.connect().await;
    publish_counted(&*publisher, &place, 2, &tally).await;
    take(&mut *first, &tally, 2).await;
    // A batch waiting, five taken, then a cancel in the middle of the rest.
    publish_counted(&*publisher, &place, 20, &tally).await;
    take(&mut *first, &tally, 5).await;
    for _ in 0..3 {
        // A copy that did arrive in time is held unacked: closing gives it back.
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_micros(200), first.recv()).await {
            lock(&tally).record(&d.message.id, d.redelivered);
        }
    }
    first.close().await.expect("close");
    lock(&tally).fault("the first consumer closed");
    // Whatever the first consumer still held reaches another one.
    let mut second = b
        .subscribe(place.subscription("second", 10))
        .await
        .expect("subscribe");
    drain(&mut *second, &tally, t.recovery_time() + PATIENCE).await;
    second.close().await.expect("close");
    conclude(ctx, &*b, &place, &tally, "cancelled recv").await;
}

/// A consumer whose connection is cut keeps calling `recv` under a short timeout, as a loop
/// with a deadline or a select would: the timeouts cancel `recv` at every point of its
/// reconnection (connecting, subscribing again). Nothing may be stranded by a cancelled
/// re-subscription: every message arrives within the patience window.
pub async fn fault_queue_recv_cancelled_while_reconnecting(ctx: &Ctx<'_>) {
    let t = ctx.target;
    let (proxy, through) = t.fault_proxy().await.expect("the case needs a URL");
    let b = t.connect().await;
    let place = Place::new(Shape::Queue, "f-cancel-reconnect-");
    let tally: Shared = Arc::default();
    let open_sub = || async {
        let broker = (ctx.suite.open)(through.clone()).await.ok()?;
        let sub = broker.subscribe(place.subscription("c", 20)).await.ok()?;
        Some((broker, sub))
    };
    let mut link = open_sub().await;
    assert!(link.is_some(), "subscribe through the proxy");
    publish_counted(&*b, &place, 300, &tally).await;
    let deadline = Instant::now() + t.recovery_time() + PATIENCE * 2;
    let mut round = 0u64;
    while !lock(&tally).complete() && Instant::now() < deadline {
        round += 1;
        if round.is_multiple_of(25) && round <= 250 {
            // Again and again, so that many re-subscriptions get cancelled; then no more,
            // so that whatever the last one stranded stays stranded unless it was handled.
            proxy.cut();
            lock(&tally).fault("the network cut");
        }
        let Some((_, sub)) = link.as_mut() else {
            link = open_sub().await;
            lock(&tally).fault("the consumer subscribed again");
            continue;
        };
        // 1 to 30 ms: short enough to land inside a reconnection now and then.
        let wait = Duration::from_millis(1 + round * 7 % 30);
        match tokio::time::timeout(wait, sub.recv()).await {
            Err(_) => {}
            Ok(Ok(d)) => {
                lock(&tally).record(&d.message.id, d.redelivered);
                match sub.ack(d.tag).await {
                    Ok(()) => lock(&tally).ack(&d.message.id),
                    Err(_) => link = None,
                }
            }
            Ok(Err(_)) => link = None,
        }
    }
    if let Some((_, sub)) = link.as_mut() {
        // A quiet moment: a late copy is counted too.
        while let Some(d) = recv_within(&mut **sub, QUIET).await {
            lock(&tally).record(&d.message.id, d.redelivered);
            if sub.ack(d.tag).await.is_ok() {
                lock(&tally).ack(&d.message.id);
            }
        }
    }
    conclude(
        ctx,
        &*b,
        &place,
        &tally,
        "recv cancelled while reconnecting",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// a consumer process killed with SIGKILL mid-batch

pub async fn fault_queue_consumer_process_killed(ctx: &Ctx<'_>) {
    killed_process(ctx, Shape::Queue, Survivor::ComesAfter).await;
}

pub async fn fault_stream_group_consumer_process_killed(ctx: &Ctx<'_>) {
    killed_process(ctx, Shape::StreamGroup, Survivor::ComesAfter).await;
}

pub async fn fault_queue_standby_takes_over_killed_consumer(ctx: &Ctx<'_>) {
    killed_process(ctx, Shape::Queue, Survivor::StandsBy).await;
}

pub async fn fault_stream_group_standby_takes_over_killed_member(ctx: &Ctx<'_>) {
    killed_process(ctx, Shape::StreamGroup, Survivor::StandsBy).await;
}

/// Who takes the killed consumer's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Survivor {
    /// A consumer that subscribes after the kill.
    ComesAfter,
    /// A consumer subscribed before the kill, idle while the other held the work (on Kafka,
    /// one member reads a stream room and the others stand by): it must notice the death by
    /// itself and take over, including what is published after it.
    StandsBy,
}

/// Messages published after the kill, for the standing-by survivor.
const AFTER_KILL: usize = 4;

/// A consumer process acks one batch, receives the next and is killed with SIGKILL before
/// acking it: the survivor gets every message not acked (the killed batch again, as
/// redeliveries, and what came after), none of the acked batch, within the backend's
/// recovery time.
async fn killed_process(ctx: &Ctx<'_>, shape: Shape, survivor_kind: Survivor) {
    let t = ctx.target;
    let url = t.url().expect("the case needs a URL");
    let b = t.connect().await;
    let place = Place::new(shape, "f-kill-");
    place.prepare(&*b).await;
    let tally: Shared = Arc::default();
    publish_counted(&*b, &place, 20, &tally).await;
    let mut victim = ChildConsumer::spawn(&place.spec(&url, "victim", 5)).await;
    let acked = victim.batch().await;
    assert!(!acked.is_empty(), "the consumer process received a batch");
    for (id, redelivered) in &acked {
        lock(&tally).record(id, *redelivered);
    }
    victim.ack().await;
    for (id, _) in &acked {
        lock(&tally).ack(id);
    }
    let unacked = victim.batch().await;
    assert!(
        !unacked.is_empty(),
        "the consumer process received a second batch"
    );
    for (id, redelivered) in &unacked {
        lock(&tally).record(id, *redelivered);
    }
    let mut standing_by = match survivor_kind {
        Survivor::StandsBy => Some(
            b.subscribe(place.subscription("survivor", 10))
                .await
                .expect("subscribe"),
        ),
        Survivor::ComesAfter => None,
    };
    victim.kill().await;
    lock(&tally).fault("the consumer process was killed");
    let mut survivor = match standing_by.take() {
        Some(s) => {
            publish_counted(&*b, &place, AFTER_KILL, &tally).await;
            s
        }
        None => b
            .subscribe(place.subscription("survivor", 10))
            .await
            .expect("subscribe"),
    };
    // The survivor alone must get every message the victim did not ack (its killed batch
    // included): count the survivor's deliveries apart.
    let by_survivor: Shared = Arc::default();
    {
        let all = lock(&tally);
        let acked: HashSet<String> = all.acked.keys().cloned().collect();
        lock(&by_survivor).sent = all.sent.difference(&acked).cloned().collect();
    }
    drain(&mut *survivor, &by_survivor, t.recovery_time() + PATIENCE).await;
    survivor.close().await.expect("close");
    {
        let by_survivor = lock(&by_survivor);
        assert!(
            by_survivor.complete(),
            "the survivor ({survivor_kind:?}) got every message the killed process had not \
             acked within {:?}: {}",
            t.recovery_time() + PATIENCE,
            by_survivor.summary()
        );
        lock(&tally).absorb(&by_survivor);
    }
    conclude(ctx, &*b, &place, &tally, "consumer process killed").await;
}

/// A message that makes its consumer crash — the consumer process is killed with SIGKILL each
/// time it holds it — is delivered [`charla_core::DEFAULT_MAX_DELIVERIES`] times, counted by
/// the broker side (the consumer never lives long enough to count), then dead-lettered; the
/// good message queued behind it is delivered, acked once, and never comes back. The case has
/// a deadline: a backend that loses the good message, or never dead-letters the poison, fails
/// it instead of spawning consumers forever.
pub async fn fault_queue_poison_kills_its_consumer_process(ctx: &Ctx<'_>) {
    let max_deliveries = charla_core::DEFAULT_MAX_DELIVERIES as usize;
    let t = ctx.target;
    let url = t.url().expect("the case needs a URL");
    let b = t.connect().await;
    let place = Place::new(Shape::Queue, "f-crash-");
    let mut p = b
        .publisher(Mode::Queue, &place.room)
        .await
        .expect("publisher");
    let poison = Message::new(
        "tester",
        "poison: kills whoever reads it",
        place.room.as_str(),
    );
    let good = Message::new("tester", "good", place.room.as_str());
    let tally: Shared = Arc::default();
    for m in [&poison, &good] {
        p.publish(m).await.expect("publish");
        lock(&tally).sent.insert(m.id.clone());
    }
    // Each round: a redelivery after a kill (recovery time), a process start, a batch.
    let wait = t.recovery_time() + Duration::from_secs(5);
    let deadline = Instant::now() + (wait + Duration::from_secs(5)) * (max_deliveries as u32 + 3);
    let mut kills = 0;
    let mut unseen_kills = 0;
    let mut dead = Vec::new();
    // Until the good message arrived and the poison is in the dead letters, a new consumer
    // process takes whatever comes next (a crashed consumer's message may come back after
    // the good one: a queue keeps order only while nobody crashes).
    loop {
        if dead.is_empty() {
            dead = b.dead_letters(&place.room, 10).await.expect("dead letters");
        }
        let good_arrived = lock(&tally).acked.contains_key(&good.id);
        if good_arrived && !dead.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "poison case past its deadline: good message acked {good_arrived}, poison \
             dead-lettered {}, {kills} kills: {}",
            !dead.is_empty(),
            lock(&tally).summary()
        );
        // Prefetch 1: the process holds exactly the message it is working on.
        let mut consumer =
            ChildConsumer::spawn(&place.spec(&url, &unique_name("crashing-"), 1)).await;
        let Some(batch) = consumer.batch_within(wait).await else {
            // Nothing came (the poison may be on its way to the dead letters): this consumer
            // is killed too, and may have been handed something just then.
            consumer.kill().await;
            lock(&tally).fault("an idle consumer process was killed");
            unseen_kills += 1;
            continue;
        };
        assert_eq!(batch.len(), 1, "prefetch 1 holds one message");
        let (id, redelivered) = &batch[0];
        lock(&tally).record(id, *redelivered);
        if *id == good.id {
            consumer.ack().await;
            lock(&tally).ack(id);
            consumer.kill().await;
            lock(&tally).fault("the consumer process that acked was stopped");
            continue;
        }
        assert_eq!(*id, poison.id, "only the poison and the good message exist");
        consumer.kill().await;
        lock(&tally).fault("the consumer process holding the poison was killed");
        kills += 1;
        assert!(
            kills <= max_deliveries,
            "the poison message was delivered {kills} times and still comes back"
        );
    }
    eprintln!(
        "FAULT {} poison: delivered {kills} times (and {unseen_kills} idle consumers killed), \
         then dead-lettered",
        ctx.suite.backend
    );
    assert!(
        kills <= max_deliveries && kills + unseen_kills >= max_deliveries,
        "the poison is delivered exactly {max_deliveries} times: seen {kills}, and \
         {unseen_kills} consumers killed idle"
    );
    assert_eq!(dead.len(), 1, "exactly the poison is in the dead letters");
    let m = Message::decode(&dead[0].payload, &place.room, usize::MAX)
        .expect("the dead letter is the message");
    assert_eq!(m.id, poison.id);
    // The good message: received, acked, and not handed out again.
    lock(&tally).sent.remove(&poison.id);
    lock(&tally).received.remove(&poison.id);
    lock(&tally).assert_sound(
        &format!("{} poison", ctx.suite.backend),
        &b.capabilities(),
        false,
    );
    let _ = b.purge(Mode::Queue, &place.room).await;
}

// ---------------------------------------------------------------------------------------------
// a live consumer taken over

pub async fn fault_queue_consumer_taken_over_while_alive(ctx: &Ctx<'_>) {
    taken_over(ctx, Shape::Queue).await;
}

pub async fn fault_stream_group_consumer_taken_over_while_alive(ctx: &Ctx<'_>) {
    taken_over(ctx, Shape::StreamGroup).await;
}

/// Consumer A (through the proxy) holds a batch unacked when its network stalls: it is alive
/// but silent, and another consumer takes its messages over. When A's network comes back its
/// late acks and whatever it does next must not lose anything: everything sent, including what
/// is published after the stall, is received.
async fn taken_over(ctx: &Ctx<'_>, shape: Shape) {
    let t = ctx.target;
    let (proxy, through) = t.fault_proxy().await.expect("the case needs a URL");
    let b = t.connect().await;
    let place = Place::new(shape, "f-takeover-");
    place.prepare(&*b).await;
    let tally: Shared = Arc::default();
    let a_broker = (ctx.suite.open)(through)
        .await
        .expect("connect through the proxy");
    let mut a = a_broker
        .subscribe(place.subscription("a", 5))
        .await
        .expect("subscribe a");
    publish_counted(&*b, &place, 10, &tally).await;
    let held = tokio::time::timeout(PATIENCE, a.recv_batch(5))
        .await
        .expect("a receives a batch")
        .expect("recv_batch");
    for d in &held {
        lock(&tally).record(&d.message.id, d.redelivered);
    }
    proxy.stall();
    lock(&tally).fault("the first consumer's network stalled");
    let mut other = b
        .subscribe(place.subscription("b", 10))
        .await
        .expect("subscribe b");
    // B alone must end up with all ten, A's five included: count B's deliveries apart.
    let by_b: Shared = Arc::default();
    let all_sent = lock(&tally).sent.clone();
    lock(&by_b).sent = all_sent;
    drain(&mut *other, &by_b, t.recovery_time() + PATIENCE).await;
    assert!(
        lock(&by_b).complete(),
        "another consumer took the stalled one's messages over: {}",
        lock(&by_b).summary()
    );
    lock(&tally).absorb(&lock(&by_b));
    proxy.resume();
    lock(&tally).fault("the first consumer's network came back");
    // A's late acks may succeed or fail; either way nothing may be lost by them.
    let tags: Vec<_> = held.iter().map(|d| d.tag).collect();
    let late = tokio::time::timeout(PATIENCE, a.ack_many(&tags)).await;
    eprintln!("late ack of the taken-over consumer: {late:?}");
    if matches!(late, Ok(Ok(()))) {
        for d in &held {
            lock(&tally).ack(&d.message.id);
        }
    }
    // New messages after the fault reach the consumers still working.
    publish_counted(&*b, &place, 10, &tally).await;
    let deadline = Instant::now() + t.recovery_time() + PATIENCE;
    let mut a_alive = true;
    while !lock(&tally).complete() && Instant::now() < deadline {
        // An error is a pause here: the loop tries again until the deadline.
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(200), other.recv()).await {
            settle(&mut *other, d, &tally).await;
        }
        if a_alive {
            match tokio::time::timeout(Duration::from_millis(200), a.recv()).await {
                Ok(Ok(d)) => {
                    lock(&tally).record(&d.message.id, d.redelivered);
                    match a.ack(d.tag).await {
                        Ok(()) => lock(&tally).ack(&d.message.id),
                        Err(_) => a_alive = false,
                    }
                }
                // A consumer that lost its place says so and stops: acceptable.
                Ok(Err(e)) => {
                    eprintln!("the taken-over consumer stopped: {e}");
                    a_alive = false;
                }
                Err(_) => {}
            }
        }
    }
    // A quiet moment on both: a late copy is counted too.
    while let Some(d) = recv_within(&mut *other, QUIET).await {
        settle(&mut *other, d, &tally).await;
    }
    if a_alive {
        if let Some(d) = recv_within(&mut *a, QUIET).await {
            lock(&tally).record(&d.message.id, d.redelivered);
        }
    }
    drop(a);
    other.close().await.expect("close");
    conclude(ctx, &*b, &place, &tally, "consumer taken over while alive").await;
}

// ---------------------------------------------------------------------------------------------
// traffic while the network or the broker fails

pub async fn fault_queue_network_cut(ctx: &Ctx<'_>) {
    traffic_through(ctx, Shape::Queue, Disruption::Network).await;
}

pub async fn fault_stream_group_network_cut(ctx: &Ctx<'_>) {
    traffic_through(ctx, Shape::StreamGroup, Disruption::Network).await;
}

pub async fn fault_queue_broker_restart(ctx: &Ctx<'_>) {
    traffic_through(ctx, Shape::Queue, Disruption::Restart).await;
}

pub async fn fault_stream_group_broker_restart(ctx: &Ctx<'_>) {
    traffic_through(ctx, Shape::StreamGroup, Disruption::Restart).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disruption {
    /// Through the proxy: every connection cut, then an outage of a second, then a stall
    /// shorter than any timeout.
    Network,
    /// The broker killed and started again with its data.
    Restart,
}

const TRAFFIC: usize = 3000;

/// A producer and a consumer that reconnect on any error, as an application would, move
/// [`TRAFFIC`] messages while the disruption happens a third of the way in.
async fn traffic_through(ctx: &Ctx<'_>, shape: Shape, disruption: Disruption) {
    let t = ctx.target;
    let url = t.url().expect("the case needs a URL");
    if disruption == Disruption::Restart {
        t.prepare_restart().await;
    }
    let (proxy, client_url) = match disruption {
        Disruption::Network => {
            let (proxy, through) = t.fault_proxy().await.expect("the case needs a URL");
            (Some(proxy), through)
        }
        Disruption::Restart => (None, url.clone()),
    };
    let b = t.connect().await;
    let caps = b.capabilities();
    let place = Arc::new(Place::new(shape, "f-traffic-"));
    place.prepare(&*b).await;
    drop(b);
    let tally: Shared = Arc::default();
    let open = ctx.suite.open;
    let deadline = Instant::now() + t.recovery_time() + PATIENCE * 4;
    let producer = tokio::spawn(produce(
        open,
        client_url.clone(),
        place.clone(),
        tally.clone(),
        deadline,
    ));
    let consumer = tokio::spawn(consume(
        open,
        client_url.clone(),
        place.clone(),
        tally.clone(),
        deadline,
    ));
    // The disruption, a third of the way in.
    wait_for(|| lock(&tally).sent.len() >= TRAFFIC / 3, deadline).await;
    match (disruption, &proxy) {
        (Disruption::Network, Some(proxy)) => {
            proxy.cut();
            lock(&tally).fault("the network cut");
            wait_for(|| lock(&tally).sent.len() >= TRAFFIC / 2, deadline).await;
            proxy.outage();
            lock(&tally).fault("a network outage");
            tokio::time::sleep(Duration::from_secs(1)).await;
            proxy.restore();
            wait_for(|| lock(&tally).sent.len() >= TRAFFIC * 2 / 3, deadline).await;
            proxy.stall();
            lock(&tally).fault("a network stall");
            tokio::time::sleep(Duration::from_millis(300)).await;
            proxy.resume();
        }
        _ => {
            lock(&tally).fault(BROKER_RESTARTING);
            t.restart().await;
            lock(&tally).fault(BROKER_BACK);
        }
    }
    let produced = producer.await.expect("producer task");
    let consumed = consumer.await.expect("consumer task");
    let what = match (disruption, shape) {
        (Disruption::Network, Shape::Queue) => "queue: network cut, outage and stall",
        (Disruption::Network, Shape::StreamGroup) => "stream group: network cut, outage and stall",
        (Disruption::Restart, Shape::Queue) => "queue: broker restart",
        (Disruption::Restart, Shape::StreamGroup) => "stream group: broker restart",
    };
    {
        let tally = lock(&tally);
        assert_eq!(
            tally.sent.len(),
            TRAFFIC,
            "{what}: the producer could not send everything before the deadline: {produced:?}"
        );
        if !tally.complete() {
            eprintln!("{what}: the consumer's last error: {consumed:?}");
        }
        tally.assert_sound(&format!("{} {what}", ctx.suite.backend), &caps, true);
    }
    if let Ok(b) = (ctx.suite.open)(url).await {
        let _ = b.purge(shape.mode(), &place.room).await;
    }
}

async fn wait_for(done: impl Fn() -> bool, deadline: Instant) {
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Publish [`TRAFFIC`] messages, reconnecting on errors; a message whose publish failed is
/// sent again (and marked retried). Returns the last error seen.
async fn produce(
    open: Open,
    url: String,
    place: Arc<Place>,
    tally: Shared,
    deadline: Instant,
) -> Option<String> {
    let mut last_error = None;
    let mut link: Option<(Box<dyn Broker>, Box<dyn charla_core::Publisher>)> = None;
    for i in 0..TRAFFIC {
        let m = msg(&place.room, i);
        loop {
            if Instant::now() > deadline {
                return last_error;
            }
            if link.is_none() {
                match connect_publisher(open, &url, &place).await {
                    Ok(l) => link = Some(l),
                    Err(e) => {
                        last_error = Some(e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            let Some((_, p)) = link.as_mut() else {
                continue;
            };
            match tokio::time::timeout(PATIENCE, p.publish(&m)).await {
                Ok(Ok(())) => {
                    lock(&tally).sent.insert(m.id.clone());
                    break;
                }
                Ok(Err(e)) => last_error = Some(e.to_string()),
                Err(_) => last_error = Some("publish timed out".into()),
            }
            lock(&tally).retried.insert(m.id.clone());
            link = None;
        }
    }
    last_error
}

async fn connect_publisher(
    open: Open,
    url: &str,
    place: &Place,
) -> Result<(Box<dyn Broker>, Box<dyn charla_core::Publisher>), String> {
    let b = open(url.to_owned()).await.map_err(|e| e.to_string())?;
    let p = b
        .publisher(place.shape.mode(), &place.room)
        .await
        .map_err(|e| e.to_string())?;
    Ok((b, p))
}

/// Receive and ack until everything sent has arrived (after the producer finished), or the
/// deadline; reconnects (same consumer name) on any error. Returns the last error seen.
async fn consume(
    open: Open,
    url: String,
    place: Arc<Place>,
    tally: Shared,
    deadline: Instant,
) -> Option<String> {
    let mut last_error = None;
    let mut link: Option<(Box<dyn Broker>, Box<dyn Subscriber>)> = None;
    // Once everything arrived, a quiet moment more: a late copy is counted too.
    let mut quiet_until = None;
    loop {
        {
            let t = lock(&tally);
            if Instant::now() > deadline {
                break;
            }
            if t.sent.len() == TRAFFIC && t.complete() {
                let until = *quiet_until.get_or_insert_with(|| Instant::now() + QUIET);
                if Instant::now() >= until {
                    break;
                }
            }
        }
        if link.is_none() {
            let attempt = async {
                let b = open(url.clone()).await.map_err(|e| e.to_string())?;
                let s = b
                    .subscribe(place.subscription("consumer", 50))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((b, s))
            };
            match tokio::time::timeout(PATIENCE, attempt).await {
                Ok(Ok(l)) => {
                    link = Some(l);
                    lock(&tally).fault("the consumer subscribed again");
                }
                Ok(Err(e)) => {
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(_) => {
                    last_error = Some("subscribe timed out".into());
                    continue;
                }
            }
        }
        let Some((_, sub)) = link.as_mut() else {
            continue;
        };
        let batch = match tokio::time::timeout(Duration::from_millis(500), sub.recv_batch(50)).await
        {
            Err(_) => continue,
            Ok(Err(e)) => {
                last_error = Some(e.to_string());
                link = None;
                continue;
            }
            Ok(Ok(batch)) => batch,
        };
        {
            let mut t = lock(&tally);
            for d in &batch {
                t.record(&d.message.id, d.redelivered);
            }
        }
        let tags: Vec<_> = batch.iter().map(|d| d.tag).collect();
        match tokio::time::timeout(PATIENCE, sub.ack_many(&tags)).await {
            Ok(Ok(())) => {
                let mut t = lock(&tally);
                for d in &batch {
                    t.ack(&d.message.id);
                }
            }
            Ok(Err(e)) => {
                last_error = Some(e.to_string());
                link = None;
            }
            Err(_) => {
                last_error = Some("ack timed out".into());
                link = None;
            }
        }
    }
    if let Some((_, sub)) = link {
        let _ = tokio::time::timeout(PATIENCE, sub.close()).await;
    }
    last_error
}
