//! What the chat engine's tests share: a broker per test (`memory://` in-process, or a real
//! `redis-server` on a free port), the faults they cause, a forwarding broker that lets a test
//! act at an exact point of a join, and the checks by message id.
//!
//! Nothing here is a mock: every broker call is forwarded to the real backend. The wrapper
//! only adds *when* (a hook run just before a history read is delegated) and, for the
//! in-process broker that has no network to cut, *an outage* (the chat's connection fails as
//! a dropped TCP connection would, and reconnecting is refused until the test restores it).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use charla_chat::{Connector, Joined, Link, Status};
use charla_core::{
    AckTag, Broker, BrokerError, BrokerInfo, BrokerUrl, Capabilities, DeadLetter, Delivery,
    Message, Mode, Publisher, Result, Subscriber, Subscription,
};
use charla_testkit::proxy::{socket_addr_of, FaultProxy};
use charla_testkit::{unique_name, RedisServer};
use futures::future::BoxFuture;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

/// Run a test body with a deadline, so a hang fails with the test's name and what it was
/// doing instead of blocking the run.
pub async fn within<F: Future<Output = ()>>(name: &str, limit: Duration, body: F) {
    if tokio::time::timeout(limit, body).await.is_err() {
        panic!("{name}: did not finish within {limit:?} (a hang)");
    }
}

/// Wait until `cond` holds, polling; fails with `what` at the deadline. A condition, never a
/// guessed sleep.
pub async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait until the link's status satisfies `want`.
pub async fn status_becomes(link: &Link, what: &str, want: impl Fn(&Status) -> bool) {
    let mut status = link.status();
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        status.wait_for(|s| want(s)).await.map(|_| ())
    })
    .await;
    match waited {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("the link's status channel closed waiting until {what}"),
        Err(_) => panic!(
            "timed out waiting until {what}; the status is {:?}",
            *link.status().borrow()
        ),
    }
}

pub fn is_reconnecting(s: &Status) -> bool {
    matches!(s, Status::Reconnecting { .. })
}

pub fn is_connected(s: &Status) -> bool {
    matches!(s, Status::Connected { .. })
}

// ---------------------------------------------------------------------------------------------
// The broker of a test

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

/// Called by the forwarding broker just before it delegates a history read and just after
/// the read returned, with the room and the limit asked for (a test acts on the join's read,
/// told apart by its limit).
pub type Hook = Arc<dyn Fn(Phase, usize) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    BeforeHistory,
    AfterHistory,
}

/// One test's broker and the faults the test can cause between it and the chat.
pub struct Env {
    /// For the test's own connections, which no fault touches.
    direct_url: String,
    /// What the chat's connector dials (through the fault proxy on Redis).
    chat_url: String,
    server: Option<RedisServer>,
    pub faults: Arc<Faults>,
}

impl Env {
    /// A fresh broker: a `memory://` hub of its own, or a `redis-server` on a free port with
    /// the append-only file synced on every write (so a killed and restarted server still has
    /// what it acknowledged), reached by the chat through a [`FaultProxy`]. `None` when
    /// redis-server is missing on a developer machine (with `CI=true` that fails the test,
    /// in `charla_testkit::service_missing`).
    pub async fn start(backend: Backend) -> Option<Env> {
        match backend {
            Backend::Memory => {
                let url = format!("memory://{}", unique_name("chat-"));
                Some(Env {
                    direct_url: url.clone(),
                    chat_url: url,
                    server: None,
                    faults: Arc::new(Faults::new(None)),
                })
            }
            Backend::Redis => {
                let server =
                    RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])?;
                let proxy = FaultProxy::start(socket_addr_of(&server.url(), 6379)).await;
                Some(Env {
                    direct_url: server.url(),
                    chat_url: proxy.url_for(&server.url()),
                    server: Some(server),
                    faults: Arc::new(Faults::new(Some(proxy))),
                })
            }
        }
    }

    /// A connection of the test's own (publishing, reading the stream back).
    pub async fn direct(&self) -> Arc<dyn Broker> {
        connect(&self.direct_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.direct_url))
            .into()
    }

    /// The chat's connector, as the binary hands one to the front ends: a closure making a
    /// new connection, here wrapped in the forwarding broker.
    pub fn connector(&self, hook: Option<Hook>) -> Connector {
        let url = self.chat_url.clone();
        let faults = self.faults.clone();
        Arc::new(move || {
            let url = url.clone();
            let faults = faults.clone();
            let hook = hook.clone();
            Box::pin(async move {
                faults.dial()?;
                let inner = connect(&url).await?;
                Ok(Box::new(Wire {
                    generation: faults.generation(),
                    inner,
                    faults,
                    hook,
                }) as Box<dyn Broker>)
            })
        })
    }

    pub async fn link(&self, hook: Option<Hook>) -> Arc<Link> {
        Link::open(self.connector(hook))
            .await
            .unwrap_or_else(|e| panic!("open the chat's link: {e}"))
    }

    /// The broker becomes unreachable for the chat (its connections cut, new ones refused):
    /// the proxy's outage on Redis, the forwarding broker's on `memory://`.
    pub fn outage(&self) {
        self.faults.outage();
    }

    pub fn restore(&self) {
        self.faults.restore();
    }

    /// The broker itself goes away: redis-server killed with SIGKILL (on `memory://`, which
    /// cannot stop while the process runs, an outage).
    pub fn stop_broker(&mut self) {
        match self.server.as_mut() {
            Some(server) => server.kill(),
            None => self.faults.outage(),
        }
    }

    /// The broker is back: redis-server started again on the same port and directory (its
    /// append-only file restores what it had acknowledged).
    pub async fn start_broker(&mut self) {
        match self.server.take() {
            Some(mut server) => {
                let server = tokio::task::spawn_blocking(move || {
                    server.restart();
                    server
                })
                .await
                .expect("restart redis-server");
                self.server = Some(server);
            }
            None => self.faults.restore(),
        }
    }
}

async fn connect(url: &str) -> Result<Box<dyn Broker>> {
    let parsed = BrokerUrl::parse(url)?;
    if url.starts_with("memory://") {
        Ok(Box::new(charla_memory::MemoryBroker::connect(&parsed)?))
    } else {
        Ok(Box::new(charla_redis::RedisBroker::connect(&parsed).await?))
    }
}

/// The outage switch. On Redis it drives the TCP proxy; on `memory://` it is the network the
/// in-process broker does not have: every object made by a connection of an older generation
/// fails as a dropped connection does (a transient `Unreachable`, a pending receive woken
/// with it), and new connections are refused while the outage lasts.
pub struct Faults {
    proxy: Option<FaultProxy>,
    /// (down, generation): the generation moves on at each outage.
    state: watch::Sender<(bool, u64)>,
}

impl Faults {
    fn new(proxy: Option<FaultProxy>) -> Faults {
        Faults {
            proxy,
            state: watch::channel((false, 0)).0,
        }
    }

    pub fn outage(&self) {
        match &self.proxy {
            Some(p) => p.outage(),
            None => self.state.send_modify(|(down, g)| {
                *down = true;
                *g += 1;
            }),
        }
    }

    pub fn restore(&self) {
        match &self.proxy {
            Some(p) => p.restore(),
            None => self.state.send_modify(|(down, _)| *down = false),
        }
    }

    fn generation(&self) -> u64 {
        self.state.borrow().1
    }

    fn dial(&self) -> Result<()> {
        if self.state.borrow().0 {
            return Err(cut());
        }
        Ok(())
    }

    fn alive(&self, generation: u64) -> Result<()> {
        if self.state.borrow().1 == generation {
            Ok(())
        } else {
            Err(cut())
        }
    }

    /// Resolves once the connection of `generation` is cut.
    async fn cut(&self, generation: u64) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|(_, g)| *g != generation).await;
    }
}

fn cut() -> BrokerError {
    BrokerError::Unreachable {
        address: "memory:// (test outage)".into(),
        reason: "connection cut by the test".into(),
    }
}

/// The forwarding broker: every call goes to the real one.
struct Wire {
    inner: Box<dyn Broker>,
    faults: Arc<Faults>,
    generation: u64,
    hook: Option<Hook>,
}

#[async_trait]
impl Broker for Wire {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn info(&self) -> Result<BrokerInfo> {
        self.faults.alive(self.generation)?;
        self.inner.info().await
    }

    async fn publisher(&self, mode: Mode, room: &str) -> Result<Box<dyn Publisher>> {
        self.faults.alive(self.generation)?;
        let inner = self.inner.publisher(mode, room).await?;
        Ok(Box::new(WirePublisher {
            inner,
            faults: self.faults.clone(),
            generation: self.generation,
        }))
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        self.faults.alive(self.generation)?;
        let inner = self.inner.subscribe(subscription).await?;
        Ok(Box::new(WireSubscriber {
            inner,
            faults: self.faults.clone(),
            generation: self.generation,
        }))
    }

    async fn dead_letters(&self, room: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        self.faults.alive(self.generation)?;
        self.inner.dead_letters(room, limit).await
    }

    async fn replay_dead(&self, room: &str, select: &charla_core::DeadSelect) -> Result<usize> {
        self.faults.alive(self.generation)?;
        self.inner.replay_dead(room, select).await
    }

    async fn purge_dead(&self, room: &str, select: &charla_core::DeadSelect) -> Result<usize> {
        self.faults.alive(self.generation)?;
        self.inner.purge_dead(room, select).await
    }

    async fn purge(&self, mode: Mode, room: &str) -> Result<()> {
        self.faults.alive(self.generation)?;
        self.inner.purge(mode, room).await
    }

    async fn history(
        &self,
        room: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<Delivery>> {
        if let Some(hook) = &self.hook {
            hook(Phase::BeforeHistory, limit).await;
        }
        self.faults.alive(self.generation)?;
        let page = self.inner.history(room, limit, before).await?;
        self.faults.alive(self.generation)?;
        if let Some(hook) = &self.hook {
            hook(Phase::AfterHistory, limit).await;
        }
        Ok(page)
    }

    async fn rooms(&self) -> Result<Vec<String>> {
        self.faults.alive(self.generation)?;
        self.inner.rooms().await
    }
}

struct WirePublisher {
    inner: Box<dyn Publisher>,
    faults: Arc<Faults>,
    generation: u64,
}

#[async_trait]
impl Publisher for WirePublisher {
    async fn publish(&mut self, message: &Message) -> Result<()> {
        self.faults.alive(self.generation)?;
        self.inner.publish(message).await
    }

    async fn publish_batch(&mut self, messages: &[Message]) -> Result<()> {
        self.faults.alive(self.generation)?;
        self.inner.publish_batch(messages).await
    }

    async fn publish_raw(&mut self, payload: &[u8]) -> Result<()> {
        self.faults.alive(self.generation)?;
        self.inner.publish_raw(payload).await
    }
}

struct WireSubscriber {
    inner: Box<dyn Subscriber>,
    faults: Arc<Faults>,
    generation: u64,
}

#[async_trait]
impl Subscriber for WireSubscriber {
    async fn recv(&mut self) -> Result<Delivery> {
        self.faults.alive(self.generation)?;
        tokio::select! {
            got = self.inner.recv() => {
                // Cut while the delivery was on its way: it never arrived.
                self.faults.alive(self.generation)?;
                got
            }
            _ = self.faults.cut(self.generation) => Err(cut()),
        }
    }

    async fn recv_batch(&mut self, max: usize) -> Result<Vec<Delivery>> {
        self.faults.alive(self.generation)?;
        tokio::select! {
            got = self.inner.recv_batch(max) => {
                self.faults.alive(self.generation)?;
                got
            }
            _ = self.faults.cut(self.generation) => Err(cut()),
        }
    }

    async fn try_recv(&mut self) -> Result<Option<Delivery>> {
        self.faults.alive(self.generation)?;
        self.inner.try_recv().await
    }

    async fn ack(&mut self, tag: AckTag) -> Result<()> {
        self.faults.alive(self.generation)?;
        self.inner.ack(tag).await
    }

    async fn ack_many(&mut self, tags: &[AckTag]) -> Result<()> {
        self.faults.alive(self.generation)?;
        self.inner.ack_many(tags).await
    }

    async fn nack(&mut self, tag: AckTag, requeue: bool) -> Result<()> {
        self.faults.alive(self.generation)?;
        self.inner.nack(tag, requeue).await
    }

    async fn reject(&mut self, tag: AckTag, failure: charla_core::Failure) -> Result<()> {
        self.faults.alive(self.generation)?;
        self.inner.reject(tag, failure).await
    }

    fn take_missed(&mut self) -> u64 {
        self.inner.take_missed()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.inner.close().await
    }
}

// ---------------------------------------------------------------------------------------------
// Publishing and reading back

/// A publisher of the test's own, on a connection no fault touches.
pub struct Sender {
    publisher: tokio::sync::Mutex<Box<dyn Publisher>>,
    room: String,
}

impl Sender {
    pub async fn new(direct: &dyn Broker, room: &str) -> Arc<Sender> {
        Arc::new(Sender {
            publisher: tokio::sync::Mutex::new(
                direct
                    .publisher(Mode::Stream, room)
                    .await
                    .expect("a stream publisher"),
            ),
            room: room.to_owned(),
        })
    }

    /// Publish one message; returns once the broker has it.
    pub async fn send(&self, text: &str) -> Message {
        let m = Message::new("tester", text, self.room.as_str());
        self.resend(&m).await;
        m
    }

    /// Publish `m` (again: what a publisher retrying after a lost reply does, same id).
    pub async fn resend(&self, m: &Message) {
        self.publisher
            .lock()
            .await
            .publish(m)
            .await
            .unwrap_or_else(|e| panic!("publish {}: {e}", m.mensaje));
    }

    pub async fn send_n(&self, prefix: &str, n: usize) -> Vec<Message> {
        let mut sent = Vec::with_capacity(n);
        for i in 0..n {
            sent.push(self.send(&format!("{prefix}-{i}")).await);
        }
        sent
    }
}

/// The room's stream as the broker keeps it, oldest first: the order every reader must show.
pub async fn stream_of(direct: &dyn Broker, room: &str) -> Vec<Message> {
    let all = direct
        .history(room, 100_000, None)
        .await
        .expect("read the room back");
    all.into_iter().map(|d| d.message).collect()
}

/// A reader of a room, as a screen is: what it shows is the joined history, then each live
/// message the join says is new.
pub struct Reader {
    pub joined: Joined,
    /// Shown, in order.
    pub view: Vec<Message>,
    /// Everything the live channel carried, shown or not (to prove a race happened).
    pub carried: Vec<String>,
}

impl Reader {
    pub fn new(joined: Joined) -> Reader {
        let view = joined.history.clone();
        Reader {
            joined,
            view,
            carried: Vec::new(),
        }
    }

    /// Show live messages until one with text `last` is shown; fails at the deadline with
    /// what was shown.
    pub async fn read_until(&mut self, last: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.view.iter().any(|m| m.mensaje == last) {
            let got = tokio::time::timeout_at(deadline, self.joined.live.recv()).await;
            match got {
                Ok(Ok(m)) => {
                    self.carried.push(m.id.clone());
                    if self.joined.is_new(&m.id) {
                        self.view.push((*m).clone());
                    }
                }
                Ok(Err(RecvError::Lagged(n))) => panic!("the reader lagged {n} messages"),
                Ok(Err(RecvError::Closed)) => panic!("the feed closed"),
                Err(_) => panic!(
                    "'{last}' was not shown within {limit:?}; shown: {:?}",
                    texts(&self.view)
                ),
            }
        }
    }
}

pub fn texts(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.mensaje.clone()).collect()
}

/// `prefix-i` for each i of `range`: the texts [`Sender::send_n`] gives.
pub fn named(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// What a reader shows must be the end of the room's stream: no message lost (a gap), none
/// shown twice, in the stream's order, up to its last message.
pub fn assert_suffix(view: &[Message], stream: &[Message], who: &str) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in view {
        *counts.entry(m.id.as_str()).or_default() += 1;
    }
    let twice: Vec<&str> = view
        .iter()
        .filter(|m| counts[m.id.as_str()] > 1)
        .map(|m| m.mensaje.as_str())
        .collect();
    assert!(
        twice.is_empty(),
        "{who}: shown more than once: {twice:?}\nshown: {:?}",
        texts(view)
    );
    let in_stream: HashSet<&str> = stream.iter().map(|m| m.id.as_str()).collect();
    let unknown: Vec<&str> = view
        .iter()
        .filter(|m| !in_stream.contains(m.id.as_str()))
        .map(|m| m.mensaje.as_str())
        .collect();
    assert!(
        unknown.is_empty(),
        "{who}: shown but not in the room: {unknown:?}"
    );
    let expected = &stream[stream.len().saturating_sub(view.len())..];
    if view
        .iter()
        .map(|m| &m.id)
        .ne(expected.iter().map(|m| &m.id))
    {
        let shown: HashSet<&str> = view.iter().map(|m| m.id.as_str()).collect();
        let first = view
            .first()
            .and_then(|f| stream.iter().position(|m| m.id == f.id))
            .unwrap_or(0);
        let missing: Vec<&str> = stream[first..]
            .iter()
            .filter(|m| !shown.contains(m.id.as_str()))
            .map(|m| m.mensaje.as_str())
            .collect();
        panic!(
            "{who}: what was shown is not the end of the room in order\n  missing (gap): {missing:?}\n  shown:    {:?}\n  expected: {:?}",
            texts(view),
            texts(expected)
        );
    }
}
