//! Waiting for new stream entries without a connection per reader.
//!
//! A plain (group-less) stream reader reads with non-blocking commands, which share the
//! broker's one multiplexed connection; only its *wait* for something new needs a blocking
//! `XREAD`, and a blocking command holds a whole connection. Given one each, a web gateway
//! serving 10 000 rooms held 10 000 Redis connections and took the server to `maxclients`
//! (issue 18, finding 2). Here the waits are shared: a few [`Shard`]s, each one blocking
//! connection running `XREAD COUNT 1 BLOCK … STREAMS r1 r2 … id1 id2 …` over every room its
//! readers wait on, and waking the readers of the rooms that answered. So a broker holds at
//! most [`SHARDS`] blocking connections for its plain readers, whatever the number of rooms.
//!
//! A reader registers what it waits for (room, the id it has read up to); a registration the
//! running `XREAD` does not cover ends that wait early with `CLIENT UNBLOCK` (sent on the
//! shared connection), and the shard starts again with the new set. Nothing depends on a
//! wake arriving: a wait ends after [`crate::stream`]'s block time anyway and the reader then
//! reads, so a lost wake costs latency, never a message. A shard whose connection fails
//! fails its waiters with a transient error (the reader's caller reconnects, as it did when
//! the wait was on its own connection) and is made again by the next registration.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use charla_core::{BrokerError, Result};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use tokio::sync::{oneshot, Notify};

use crate::{map_err, Options};

/// Blocking connections a broker gives its plain stream readers, at most.
pub const SHARDS: usize = 8;

/// How long one shared `XREAD` blocks before it is issued again.
const BLOCK_MS: u64 = 1000;

/// One reader's wait.
struct Waiter {
    /// The last id the reader has: anything after it wakes it.
    after: String,
    wake: oneshot::Sender<()>,
}

/// Every broker's wait sharing, made on the first plain reader's wait.
pub(crate) struct Wakers {
    client: redis::Client,
    /// The broker's shared connection, for CLIENT UNBLOCK.
    conn: MultiplexedConnection,
    opts: Options,
    shards: Mutex<Vec<Option<Arc<Shard>>>>,
}

impl Wakers {
    pub fn new(client: redis::Client, conn: MultiplexedConnection, opts: Options) -> Wakers {
        Wakers {
            client,
            conn,
            opts,
            shards: Mutex::new(vec![None; SHARDS]),
        }
    }

    /// Wait until `room` has an entry after `after`, or `limit` has passed (`Ok` either
    /// way: the caller reads next). `Err` when the shared connection failed.
    pub async fn wait(&self, room: &str, after: &str, limit: Duration) -> Result<()> {
        let shard = self.shard(room).await?;
        let (wake, woken) = oneshot::channel();
        shard.register(room, after, wake);
        shard.nudge(self.conn.clone());
        match tokio::time::timeout(limit, woken).await {
            Ok(Ok(())) | Err(_) => Ok(()),
            // The shard dropped the waiter: its connection failed.
            Ok(Err(_)) => Err(shard.failure(&self.opts.address)),
        }
    }

    /// The shard of `room`, started (or started again after a failure) if needed.
    async fn shard(&self, room: &str) -> Result<Arc<Shard>> {
        let index = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            room.hash(&mut h);
            (h.finish() % SHARDS as u64) as usize
        };
        if let Some(shard) = self.slots()[index].as_ref().filter(|s| s.alive()) {
            return Ok(shard.clone());
        }
        // Connected outside the lock; two racing starts keep the first one installed.
        let conn = crate::open(
            &self.client,
            &self.opts,
            Some(Duration::from_millis(BLOCK_MS) + crate::BLOCKING_MARGIN),
        )
        .await?;
        let mut slots = self.slots();
        if let Some(shard) = slots[index].as_ref().filter(|s| s.alive()) {
            return Ok(shard.clone());
        }
        let shard = Shard::start(conn, self.opts.clone());
        slots[index] = Some(shard.clone());
        Ok(shard)
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Option<Arc<Shard>>>> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Wakers {
    fn drop(&mut self) {
        for shard in self.slots().iter().flatten() {
            shard.stop();
        }
    }
}

/// One blocking connection and the readers waiting on it.
pub(crate) struct Shard {
    waiting: Mutex<HashMap<String, Vec<Waiter>>>,
    /// Set by a registration, cleared when the loop takes the set: a registration the
    /// running XREAD does not cover.
    dirty: AtomicBool,
    /// The loop is in (or about to send) its XREAD: a registration unblocks it.
    blocked: AtomicBool,
    /// Counts the loop's XREADs: an unblock that found nothing blocked retries until the
    /// round moves on (it was sent before the XREAD reached the server).
    round: AtomicU64,
    /// The XREAD connection's client id, for CLIENT UNBLOCK.
    client_id: AtomicU64,
    /// Wakes the loop when it has nothing to wait on.
    idle: Notify,
    failed: Mutex<Option<String>>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Shard {
    fn start(conn: MultiplexedConnection, opts: Options) -> Arc<Shard> {
        let shard = Arc::new(Shard {
            waiting: Mutex::new(HashMap::new()),
            dirty: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            round: AtomicU64::new(0),
            client_id: AtomicU64::new(0),
            idle: Notify::new(),
            failed: Mutex::new(None),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(Arc::downgrade(&shard), conn, opts));
        *shard.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        shard
    }

    fn alive(&self) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }

    fn failure(&self, address: &str) -> BrokerError {
        let reason = self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "the shared wait for stream entries stopped".into());
        BrokerError::Unavailable {
            address: address.to_owned(),
            reason,
        }
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<String, Vec<Waiter>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, room: &str, after: &str, wake: oneshot::Sender<()>) {
        let mut waiting = self.waiting();
        let list = waiting.entry(room.to_owned()).or_default();
        // Readers that gave up (their wait timed out) leave closed senders behind.
        list.retain(|w| !w.wake.is_closed());
        list.push(Waiter {
            after: after.to_owned(),
            wake,
        });
        drop(waiting);
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// Make the loop take a new registration: wake it when idle, unblock its XREAD when
    /// blocked (retrying while the XREAD may not have reached the server yet).
    fn nudge(self: &Arc<Self>, mut conn: MultiplexedConnection) {
        self.idle.notify_one();
        if !self.blocked.load(Ordering::SeqCst) {
            return;
        }
        let shard = self.clone();
        tokio::spawn(async move {
            let round = shard.round.load(Ordering::SeqCst);
            for _ in 0..50 {
                if !shard.blocked.load(Ordering::SeqCst)
                    || shard.round.load(Ordering::SeqCst) != round
                {
                    return;
                }
                let id = shard.client_id.load(Ordering::SeqCst);
                let unblocked: redis::RedisResult<i64> = redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(id)
                    .query_async(&mut conn)
                    .await;
                match unblocked {
                    Ok(1) => return,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                    // A server without CLIENT UNBLOCK: the wait ends at its block time.
                    Err(_) => return,
                }
            }
        });
    }
}

/// The XREAD of a set of waits: rooms and, for each, the oldest id one of its readers has.
fn xread_of(waiting: &mut HashMap<String, Vec<Waiter>>) -> Vec<(String, String)> {
    waiting.retain(|_, list| {
        list.retain(|w| !w.wake.is_closed());
        !list.is_empty()
    });
    waiting
        .iter()
        .filter_map(|(room, list)| {
            let oldest = list
                .iter()
                .map(|w| w.after.as_str())
                .min_by_key(|id| crate::ids::id_key(id))?;
            Some((room.clone(), oldest.to_owned()))
        })
        .collect()
}

async fn run(shard: Weak<Shard>, mut conn: MultiplexedConnection, opts: Options) {
    let failed = |shard: &Shard, reason: String| {
        tracing::debug!("the shared stream wait failed: {reason}");
        *shard.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        // Dropping the senders fails every waiter.
        shard.waiting().clear();
    };
    match redis::cmd("CLIENT")
        .arg("ID")
        .query_async::<u64>(&mut conn)
        .await
    {
        Ok(id) => {
            if let Some(s) = shard.upgrade() {
                s.client_id.store(id, Ordering::SeqCst);
            }
        }
        Err(e) => {
            if let Some(s) = shard.upgrade() {
                failed(&s, map_err(e, &opts.address).to_string());
            }
            return;
        }
    }
    loop {
        let Some(s) = shard.upgrade() else { return };
        s.dirty.store(false, Ordering::SeqCst);
        let streams = xread_of(&mut s.waiting());
        if streams.is_empty() {
            // A registration's `notify_one` leaves a permit if it comes before this wait.
            // (A dropped broker ends this task through the abort in `Wakers::drop`.)
            let _ = tokio::time::timeout(Duration::from_millis(BLOCK_MS), s.idle.notified()).await;
            continue;
        }
        s.blocked.store(true, Ordering::SeqCst);
        s.round.fetch_add(1, Ordering::SeqCst);
        if s.dirty.load(Ordering::SeqCst) {
            // Registered since the set was taken: take it again rather than block without it.
            s.blocked.store(false, Ordering::SeqCst);
            continue;
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS");
        for (room, _) in &streams {
            cmd.arg(room);
        }
        for (_, after) in &streams {
            cmd.arg(after);
        }
        drop(s);
        let reply: redis::RedisResult<Option<StreamReadReply>> = cmd.query_async(&mut conn).await;
        let Some(s) = shard.upgrade() else { return };
        s.blocked.store(false, Ordering::SeqCst);
        match reply {
            Ok(reply) => {
                let mut waiting = s.waiting();
                for key in reply.into_iter().flat_map(|r| r.keys) {
                    // Every reader of a room that has something new reads: one whose id is
                    // past the entry finds nothing and waits again (rare: readers of one room
                    // in one process are usually one feed).
                    for waiter in waiting.remove(&key.key).into_iter().flatten() {
                        let _ = waiter.wake.send(());
                    }
                }
            }
            // A room that became another type, a refused command: the readers read, and their
            // own read reports it; the shard goes on (after a pause, not in a spin).
            Err(e) if e.code().is_some() => {
                for waiter in s.waiting().drain().flat_map(|(_, l)| l) {
                    let _ = waiter.wake.send(());
                }
                drop(s);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                failed(&s, map_err(e, &opts.address).to_string());
                return;
            }
        }
    }
}
