//! Broadcast subscribers of one broker share one pub/sub connection.
//!
//! A Redis connection in subscribed state can carry any number of channels; giving each
//! broadcast subscriber its own, as charla did, made a web gateway in broadcast mode hold a
//! connection per room (issue 18, finding 2). Here the first broadcast subscriber opens the
//! broker's pub/sub connection, every later one adds its channel to it (`SUBSCRIBE`, which
//! answers once the server has it, so a subscriber still hears everything published after it
//! returns), and one task passes each message to the subscribers of its channel.
//!
//! What one subscriber does not take is held for it as Redis held it on the subscriber's own
//! connection, and bounded the same way: past [`QUEUE_BYTES`] queued (Redis's default
//! `client-output-buffer-limit pubsub` hard limit) the subscriber is dropped, its stream ends
//! and its `recv` says why, as Redis disconnects a pub/sub client that falls that far behind.
//! (A queue of a fixed number of messages that dropped the overflow lost messages a fast
//! burst, such as `charla bench --mode broadcast`, had always received.) When the connection
//! fails every subscriber's stream ends (its `recv` reports the loss; the caller reconnects)
//! and the next subscriber opens a new one. A channel nobody here listens to any more is
//! unsubscribed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use charla_core::Result;
use futures::StreamExt;
use redis::aio::PubSubSink;
use redis::Msg;
use tokio::sync::mpsc;

use crate::{map_err, Options};

/// Bytes queued for one subscriber that has not taken them yet, at most.
pub const QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// One subscriber's place on the shared connection.
struct Route {
    id: u64,
    tx: mpsc::UnboundedSender<Msg>,
    queued: Arc<AtomicUsize>,
}

/// The broker's shared pub/sub connection, opened on first use.
pub(crate) struct Channels {
    client: redis::Client,
    opts: Options,
    current: tokio::sync::Mutex<Option<Arc<Shared>>>,
}

struct Shared {
    sink: PubSubSink,
    routes: Mutex<HashMap<String, Vec<Route>>>,
    /// SUBSCRIBE and UNSUBSCRIBE one at a time, so a channel's last subscriber leaving and a
    /// new one arriving cannot end with the channel unsubscribed under the new one.
    ops: tokio::sync::Mutex<()>,
    alive: AtomicBool,
    next_id: AtomicU64,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

/// What a subscriber holds: its messages, the bytes of them queued (the taker subtracts
/// what it takes: see [`taken`]), and (on drop) its leave.
pub(crate) struct Subscription {
    pub messages: mpsc::UnboundedReceiver<Msg>,
    pub queued: Arc<AtomicUsize>,
    pub leave: Leave,
}

/// Leaves the channel when dropped (unsubscribing it when it was the last one here).
pub(crate) struct Leave {
    shared: Weak<Shared>,
    channel: String,
    id: u64,
}

impl Channels {
    pub fn new(client: redis::Client, opts: Options) -> Channels {
        Channels {
            client,
            opts,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// Listen to `channel` on the shared connection; returns once the server confirmed it.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription> {
        let shared = self.shared().await?;
        let (tx, messages) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        shared
            .routes()
            .entry(channel.to_owned())
            .or_default()
            .push(Route {
                id,
                tx,
                queued: queued.clone(),
            });
        let leave = Leave {
            shared: Arc::downgrade(&shared),
            channel: channel.to_owned(),
            id,
        };
        // Subscribing a channel the connection already has is answered the same: every
        // subscriber waits for the server's confirmation of its own.
        let _op = shared.ops.lock().await;
        let mut sink = shared.sink.clone();
        sink.subscribe(channel)
            .await
            .map_err(|e| map_err(e, &self.opts.address))?;
        Ok(Subscription {
            messages,
            queued,
            leave,
        })
    }

    async fn shared(&self) -> Result<Arc<Shared>> {
        let mut current = self.current.lock().await;
        if let Some(shared) = current.as_ref().filter(|s| s.alive.load(Ordering::SeqCst)) {
            return Ok(shared.clone());
        }
        let (sink, stream) = self
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| map_err(e, &self.opts.address))?
            .split();
        let shared = Arc::new(Shared {
            sink,
            routes: Mutex::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
            alive: AtomicBool::new(true),
            next_id: AtomicU64::new(0),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(dispatch(Arc::downgrade(&shared), stream));
        *shared.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        *current = Some(shared.clone());
        Ok(shared)
    }
}

impl Drop for Channels {
    fn drop(&mut self) {
        if let Some(shared) = self.current.get_mut().take() {
            if let Some(task) = shared.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
                task.abort();
            }
        }
    }
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, HashMap<String, Vec<Route>>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Leave {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let last = {
            let mut routes = shared.routes();
            let list = routes.entry(self.channel.clone()).or_default();
            list.retain(|r| r.id != self.id);
            list.is_empty()
        };
        if !last || !shared.alive.load(Ordering::SeqCst) {
            return;
        }
        let channel = self.channel.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _op = shared.ops.lock().await;
            // Someone subscribed again meanwhile: the channel stays.
            if shared.routes().get(&channel).is_some_and(|l| !l.is_empty()) {
                return;
            }
            shared.routes().remove(&channel);
            let mut sink = shared.sink.clone();
            if let Err(e) = sink.unsubscribe(&channel).await {
                tracing::debug!(channel, "unsubscribing: {e}");
            }
        });
    }
}

/// Pass each message to the subscribers of its channel; on the connection's end, end theirs.
async fn dispatch(shared: Weak<Shared>, mut stream: redis::aio::PubSubStream) {
    while let Some(msg) = stream.next().await {
        let Some(s) = shared.upgrade() else { return };
        let mut routes = s.routes();
        let size = size_of(&msg);
        if let Some(list) = routes.get_mut(msg.get_channel_name()) {
            list.retain(|route| {
                let queued = route.queued.fetch_add(size, Ordering::Relaxed) + size;
                if queued > QUEUE_BYTES {
                    tracing::warn!(
                        channel = msg.get_channel_name(),
                        "a subscriber fell {queued} bytes behind: dropped, as Redis drops such a pub/sub client"
                    );
                    return false; // its sender dropped: its stream ends
                }
                route.tx.send(msg.clone()).is_ok()
            });
        }
    }
    if let Some(s) = shared.upgrade() {
        s.alive.store(false, Ordering::SeqCst);
        // Dropping the senders ends every subscriber's stream: each reports the loss.
        s.routes().clear();
    }
}

/// What a message counts against its subscriber's queue.
fn size_of(msg: &Msg) -> usize {
    msg.get_payload_bytes().len() + msg.get_channel_name().len()
}

/// The subscriber took `msg` from its queue.
pub(crate) fn taken(queued: &AtomicUsize, msg: &Msg) {
    let _ = queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
        Some(q.saturating_sub(size_of(msg)))
    });
}
