//! Tests of the conformance suite itself: its cases must fail against a backend that breaks
//! a promise. Each test wraps the real `memory://` broker in one deliberate defect — an
//! acknowledged message handed out again, a duplicate with no fault to explain it on a
//! backend that cannot flag redeliveries (as Kafka cannot), a message lost by the publisher,
//! a subscription that never answers — runs one case of the suite against it, and checks that
//! the case fails, and fails for that reason. A suite whose verdicts cannot fail would pass
//! here: these tests are what keeps its assertions honest.
//!
//! The defects are injected around the real broker (every call goes through to it), so each
//! test also shows which cheap mistake of a backend the suite would miss if a check went.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use charla_core::{
    AckTag, Broker, BrokerInfo, BrokerUrl, Capabilities, DeadLetter, Delivery, Message, Mode,
    Publisher, Result, Subscriber, Subscription,
};
use charla_memory::MemoryBroker;
use charla_testkit::conformance::{check_case, BoxFuture, Suite, Target};

/// The one thing the wrapped broker gets wrong.
#[derive(Debug, Clone, Copy)]
enum Defect {
    /// The message acknowledged as the broker's `n`-th ack is put back once, marked
    /// redelivered: an acknowledgement that did not settle.
    AckedComesBack { at_ack: usize },
    /// A `recv` while the previous delivery is still unacknowledged hands that delivery out
    /// again, without the `redelivered` flag, and the backend declares no flag (Kafka-like):
    /// a duplicate that no fault explains.
    UnackedTwice,
    /// The publisher's `n`-th publish returns Ok and sends nothing.
    LosesOne { nth: usize },
    /// Subscribing never returns: a hung backend.
    SubscribeHangs,
}

/// What the defect needs to share between the connections of one broker.
#[derive(Default)]
struct State {
    acks: AtomicUsize,
    publishes: AtomicUsize,
    /// Ids the defect put back: their copies are marked redelivered.
    put_back: Mutex<HashSet<String>>,
}

struct Defective {
    inner: MemoryBroker,
    defect: Defect,
    state: Arc<State>,
}

#[async_trait]
impl Broker for Defective {
    fn backend(&self) -> &'static str {
        "memory-defective"
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        if matches!(self.defect, Defect::UnackedTwice) {
            caps.redelivered_flag = false;
        }
        caps
    }

    async fn info(&self) -> Result<BrokerInfo> {
        self.inner.info().await
    }

    async fn publisher(&self, mode: Mode, room: &str) -> Result<Box<dyn Publisher>> {
        Ok(Box::new(DefectivePublisher {
            inner: self.inner.publisher(mode, room).await?,
            defect: self.defect,
            state: self.state.clone(),
        }))
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        if matches!(self.defect, Defect::SubscribeHangs) {
            std::future::pending::<()>().await;
        }
        let put_back = match self.defect {
            Defect::AckedComesBack { .. } => Some(
                self.inner
                    .publisher(subscription.mode, &subscription.room)
                    .await?,
            ),
            _ => None,
        };
        Ok(Box::new(DefectiveSubscriber {
            inner: self.inner.subscribe(subscription).await?,
            defect: self.defect,
            state: self.state.clone(),
            put_back,
            held: HashMap::new(),
            unacked_last: None,
            next_fake: u64::MAX,
        }))
    }

    async fn dead_letters(&self, room: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(room, limit).await
    }

    async fn replay_dead(&self, room: &str, select: &charla_core::DeadSelect) -> Result<usize> {
        self.inner.replay_dead(room, select).await
    }

    async fn purge_dead(&self, room: &str, select: &charla_core::DeadSelect) -> Result<usize> {
        self.inner.purge_dead(room, select).await
    }

    async fn purge(&self, mode: Mode, room: &str) -> Result<()> {
        self.inner.purge(mode, room).await
    }
}

struct DefectivePublisher {
    inner: Box<dyn Publisher>,
    defect: Defect,
    state: Arc<State>,
}

#[async_trait]
impl Publisher for DefectivePublisher {
    async fn publish(&mut self, message: &Message) -> Result<()> {
        let n = self.state.publishes.fetch_add(1, Ordering::SeqCst) + 1;
        if matches!(self.defect, Defect::LosesOne { nth } if nth == n) {
            return Ok(());
        }
        self.inner.publish(message).await
    }

    async fn publish_raw(&mut self, payload: &[u8]) -> Result<()> {
        self.inner.publish_raw(payload).await
    }
}

struct DefectiveSubscriber {
    inner: Box<dyn Subscriber>,
    defect: Defect,
    state: Arc<State>,
    /// Puts an acknowledged message back (`AckedComesBack`).
    put_back: Option<Box<dyn Publisher>>,
    /// tag → the message, for what an ack settles.
    held: HashMap<AckTag, Message>,
    /// The last delivery handed out and not acknowledged yet, not yet duplicated.
    unacked_last: Option<Delivery>,
    /// Tags of the defect's own copies count down from here (acking one does nothing).
    next_fake: u64,
}

impl DefectiveSubscriber {
    fn mark(&mut self, mut d: Delivery) -> Delivery {
        if self
            .state
            .put_back
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&d.message.id)
        {
            d.redelivered = true;
        }
        self.held.insert(d.tag, d.message.clone());
        if matches!(self.defect, Defect::UnackedTwice) {
            self.unacked_last = Some(d.clone());
        }
        d
    }
}

#[async_trait]
impl Subscriber for DefectiveSubscriber {
    async fn recv(&mut self) -> Result<Delivery> {
        if let Some(mut again) = self.unacked_last.take() {
            again.tag = AckTag(self.next_fake);
            self.next_fake -= 1;
            return Ok(again);
        }
        let d = self.inner.recv().await?;
        Ok(self.mark(d))
    }

    async fn try_recv(&mut self) -> Result<Option<Delivery>> {
        match self.inner.try_recv().await? {
            Some(d) => Ok(Some(self.mark(d))),
            None => Ok(None),
        }
    }

    async fn ack(&mut self, tag: AckTag) -> Result<()> {
        if tag.0 > self.next_fake {
            return Ok(()); // one of the defect's own copies
        }
        if self.unacked_last.as_ref().is_some_and(|d| d.tag == tag) {
            self.unacked_last = None;
        }
        self.inner.ack(tag).await?;
        let n = self.state.acks.fetch_add(1, Ordering::SeqCst) + 1;
        if let (Defect::AckedComesBack { at_ack }, Some(m)) = (self.defect, self.held.remove(&tag))
        {
            if let (true, Some(put_back)) = (at_ack == n, self.put_back.as_mut()) {
                self.state
                    .put_back
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(m.id.clone());
                put_back.publish(&m).await?;
            }
        }
        Ok(())
    }

    async fn ack_many(&mut self, tags: &[AckTag]) -> Result<()> {
        for tag in tags {
            self.ack(*tag).await?;
        }
        Ok(())
    }

    async fn nack(&mut self, tag: AckTag, requeue: bool) -> Result<()> {
        self.inner.nack(tag, requeue).await
    }

    async fn reject(&mut self, tag: AckTag, failure: charla_core::Failure) -> Result<()> {
        self.inner.reject(tag, failure).await
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.inner.close().await
    }
}

/// A target whose every connection has the defect, sharing one named in-process broker.
struct Target1 {
    url: BrokerUrl,
    defect: Defect,
    state: Arc<State>,
}

#[async_trait]
impl Target for Target1 {
    async fn connect(&self) -> Box<dyn Broker> {
        Box::new(Defective {
            inner: MemoryBroker::connect(&self.url).expect("memory broker"),
            defect: self.defect,
            state: self.state.clone(),
        })
    }
}

fn target(defect: Defect) -> BoxFuture<'static, Option<Box<dyn Target>>> {
    Box::pin(async move {
        let url = format!("memory://{}", charla_testkit::unique_name("mutant"));
        Some(Box::new(Target1 {
            url: BrokerUrl::parse(&url).expect("url"),
            defect,
            state: Arc::default(),
        }) as Box<dyn Target>)
    })
}

fn open(url: String) -> BoxFuture<'static, charla_core::Result<Box<dyn Broker>>> {
    Box::pin(async move {
        let url = BrokerUrl::parse(&url)?;
        Ok(Box::new(MemoryBroker::connect(&url)?) as Box<dyn Broker>)
    })
}

/// A suite whose target has the given defect (the suite takes plain functions).
macro_rules! suite_with {
    ($defect:expr) => {{
        fn setup() -> BoxFuture<'static, Option<Box<dyn Target>>> {
            target($defect)
        }
        Suite {
            backend: "memory-defective",
            setup,
            open,
        }
    }};
}

/// Run `case` against `suite` and require it to fail with a message containing `because`.
fn must_fail(suite: Suite, case: &str, because: &str) {
    match check_case(suite, case, Duration::from_secs(120)) {
        Ok(()) => panic!("{case} passed against a backend with a defect it must catch"),
        Err(why) => assert!(
            why.contains(because),
            "{case} failed, but not for the defect ({because:?}): {why}"
        ),
    }
}

#[test]
fn an_acknowledged_message_handed_out_again_fails_the_fault_cases() {
    must_fail(
        suite_with!(Defect::AckedComesBack { at_ack: 1 }),
        "fault_queue_cancelled_recv",
        "was acknowledged (the ack returned Ok) and then delivered",
    );
    must_fail(
        suite_with!(Defect::AckedComesBack { at_ack: 1 }),
        "fault_stream_group_cancelled_recv",
        "was acknowledged (the ack returned Ok) and then delivered",
    );
}

#[test]
fn a_duplicate_after_the_last_message_fails_the_bulk_case() {
    // The 10 000th ack puts its message back: only a case that keeps listening after the
    // last expected message sees it.
    must_fail(
        suite_with!(Defect::AckedComesBack { at_ack: 10_000 }),
        "queue_ten_thousand_without_loss",
        "no message arrived twice",
    );
}

#[test]
fn an_unflagged_duplicate_with_no_fault_fails_where_redeliveries_cannot_be_flagged() {
    must_fail(
        suite_with!(Defect::UnackedTwice),
        "fault_queue_cancelled_recv",
        "a duplicate nothing explains",
    );
}

#[test]
fn a_message_the_publisher_drops_fails_as_lost() {
    must_fail(
        suite_with!(Defect::LosesOne { nth: 7 }),
        "fault_queue_cancelled_recv",
        "sent messages were lost",
    );
}

#[test]
fn a_hung_backend_fails_its_case_by_name_at_the_time_limit() {
    match check_case(
        suite_with!(Defect::SubscribeHangs),
        "queue_keeps_order_per_room",
        Duration::from_secs(2),
    ) {
        Ok(()) => panic!("a case whose subscription never answers passed"),
        Err(why) => assert!(
            why.contains("queue_keeps_order_per_room did not finish within 2s"),
            "{why}"
        ),
    }
}
