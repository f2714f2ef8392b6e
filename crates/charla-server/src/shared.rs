//! The state every connection shares: the keyspace (behind one lock), the pub/sub registry,
//! the client registry, the limits CONFIG SET can change, counters for INFO, and the
//! append-only file's handle. It sits below the commands, which reach it through their
//! context; the accept loop that creates it is [`crate::server`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

use crate::client::{CallStats, ClientMeta};
use crate::config::{OutputLimit, ServerConfig};
use crate::db::{now_ms, Db};
use crate::events::{self, Notify};
use crate::frame::Limits;
use crate::persistence::Aof;
use crate::pubsub::PubSub;

#[derive(Debug, Default)]
pub struct Stats {
    pub connected: AtomicUsize,
    pub total_connections: AtomicU64,
    pub commands: AtomicU64,
    pub rejected: AtomicU64,
    pub expired: AtomicU64,
    pub blocked: AtomicUsize,
    pub pubsub_clients: AtomicUsize,
    pub aof_rewrites: AtomicU64,
    pub aof_size: AtomicU64,
    /// Bytes read from clients (INFO `total_net_input_bytes`).
    pub net_input_bytes: AtomicU64,
    /// Bytes the request parser walked over (INFO `charla_parser_bytes_scanned`): equal to
    /// the input when parsing resumes where it stopped, quadratic in a trickled request if it
    /// started over on every read. Tests use it to check that a slow sender costs linear work.
    pub parser_bytes_scanned: AtomicU64,
    /// Clients closed for `client-query-buffer-limit` / `proto-max-bulk-len` / the
    /// unauthenticated limits (INFO `client_query_buffer_limit_disconnections`).
    pub query_limit_disconnections: AtomicU64,
    /// Subscribers closed for `client-output-buffer-limit pubsub`.
    pub output_limit_disconnections: AtomicU64,
    /// Longest single hold of the keyspace lock by the last AOF rewrite, in microseconds.
    pub aof_rewrite_max_lock_us: AtomicU64,
}

/// The limits `CONFIG SET` can change while clients are connected (read on every use, so a
/// change applies to connected clients too).
#[derive(Debug)]
pub struct NetLimits {
    pub proto_max_bulk_len: AtomicUsize,
    pub client_query_buffer_limit: AtomicUsize,
    pub pubsub_hard: AtomicUsize,
    pub pubsub_soft: AtomicUsize,
    pub pubsub_soft_seconds: AtomicU64,
    pub tcp_keepalive: AtomicU64,
    /// `notify-keyspace-events` (see [`crate::events`]); the keyspace takes it over under its
    /// lock before the next command (CONFIG SET cannot take that lock: inside EXEC it is
    /// already held).
    pub notify_keyspace_events: AtomicU32,
}

pub struct Shared {
    db: Mutex<Db>,
    pubsub: Mutex<PubSub>,
    pub config: ServerConfig,
    pub net: NetLimits,
    clients: Mutex<HashMap<u64, Arc<ClientMeta>>>,
    next_id: AtomicU64,
    pub stats: Stats,
    pub aof: Option<Aof>,
    pub started: Instant,
    pub run_id: String,
    /// SHUTDOWN was asked for: the accept loop ends as on the caller's shutdown signal.
    pub shutdown_asked: tokio::sync::Notify,
    /// INFO commandstats, by command id, as clients hand their counts over.
    call_stats: Mutex<Vec<CallStats>>,
}

impl Shared {
    pub fn new(config: ServerConfig) -> Shared {
        let net = NetLimits {
            proto_max_bulk_len: AtomicUsize::new(config.max_bulk_len),
            client_query_buffer_limit: AtomicUsize::new(config.client_query_buffer_limit),
            pubsub_hard: AtomicUsize::new(config.pubsub_output_limit.hard),
            pubsub_soft: AtomicUsize::new(config.pubsub_output_limit.soft),
            pubsub_soft_seconds: AtomicU64::new(config.pubsub_output_limit.soft_seconds),
            tcp_keepalive: AtomicU64::new(config.tcp_keepalive),
            notify_keyspace_events: AtomicU32::new(0),
        };
        let seed = now_ms() ^ u64::from(std::process::id()).rotate_left(32);
        Shared {
            db: Mutex::new(Db::new()),
            pubsub: Mutex::new(PubSub::default()),
            config,
            net,
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stats: Stats::default(),
            aof: None,
            started: Instant::now(),
            run_id: format!(
                "{seed:016x}{:024x}",
                seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ),
            shutdown_asked: tokio::sync::Notify::new(),
            call_stats: Mutex::new(Vec::new()),
        }
    }

    /// The request limits in force now.
    #[inline]
    pub fn limits(&self) -> Limits {
        Limits {
            max_bulk_len: self.net.proto_max_bulk_len.load(Ordering::Relaxed),
            max_multibulk_len: self.config.max_multibulk_len,
            max_inline_len: self.config.max_inline_len,
        }
    }

    /// `client-query-buffer-limit` now.
    #[inline]
    pub fn query_buffer_limit(&self) -> usize {
        self.net.client_query_buffer_limit.load(Ordering::Relaxed)
    }

    /// `client-output-buffer-limit pubsub` now.
    pub fn pubsub_limit(&self) -> OutputLimit {
        OutputLimit {
            hard: self.net.pubsub_hard.load(Ordering::Relaxed),
            soft: self.net.pubsub_soft.load(Ordering::Relaxed),
            soft_seconds: self.net.pubsub_soft_seconds.load(Ordering::Relaxed),
        }
    }

    pub fn set_pubsub_limit(&self, l: OutputLimit) {
        self.net.pubsub_hard.store(l.hard, Ordering::Relaxed);
        self.net.pubsub_soft.store(l.soft, Ordering::Relaxed);
        self.net
            .pubsub_soft_seconds
            .store(l.soft_seconds, Ordering::Relaxed);
    }

    /// The keyspace lock. A panic while holding it cannot leave a torn value behind (commands
    /// validate before mutating), so a poisoned lock is simply taken over.
    #[inline]
    pub fn lock_db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    pub fn lock_pubsub(&self) -> MutexGuard<'_, PubSub> {
        self.pubsub.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register_client(&self, meta: Arc<ClientMeta>) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(meta.id, meta);
    }

    pub fn unregister_client(&self, id: u64) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// The registry's entry of client `id`, if it is connected.
    pub fn client_meta(&self, id: u64) -> Option<Arc<ClientMeta>> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.get(&id).cloned()
    }

    /// Take over a changed `notify-keyspace-events` (called under the keyspace lock before
    /// each command and expiry sweep: one relaxed load when nothing changed).
    #[inline]
    pub fn sync_notify_flags(&self, db: &mut Db) {
        let flags = self.net.notify_keyspace_events.load(Ordering::Relaxed);
        if flags != db.notify_flags {
            db.set_notify_flags(flags);
        }
    }

    /// Publish the keyspace events of what just ran (a command, or an expiry sweep), under
    /// the keyspace lock so they go out in execution order, and forget what was recorded:
    /// keys found expired; then, if a write changed the dataset and the table names its event
    /// (`changed`), that event on every key it touched, with `new` before it when the key was
    /// created, `expire` after it when an expiry was set and `del` when the change emptied the
    /// key away; for a command that names its own events, `new` for the keys it created; then
    /// the events commands named themselves, in order.
    pub fn publish_key_events(&self, db: &mut Db, notify: Notify, changed: bool) {
        let flags = db.notify_flags;
        if !events::enabled(flags) {
            return;
        }
        let limit = self.pubsub_limit();
        for (dbi, ks) in db.dbs.iter_mut().enumerate() {
            if ks.touches.is_empty() && ks.expired.is_empty() && ks.events.is_empty() {
                continue;
            }
            let mut out: Vec<(u32, &'static str, Bytes)> = Vec::new();
            out.extend(
                ks.expired
                    .drain(..)
                    .map(|k| (events::EXPIRED, "expired", k)),
            );
            for t in std::mem::take(&mut ks.touches) {
                match notify {
                    Notify::Event(class, name) if changed => {
                        let exists = ks.peek(&t.key).is_some();
                        if t.created {
                            out.push((events::NEW, "new", t.key.clone()));
                        }
                        if exists || name != "del" {
                            out.push((class, name, t.key.clone()));
                        }
                        if exists && t.expire {
                            out.push((events::GENERIC, "expire", t.key.clone()));
                        }
                        if !exists {
                            out.push((events::GENERIC, "del", t.key));
                        }
                    }
                    Notify::Custom if changed && t.created => {
                        out.push((events::NEW, "new", t.key));
                    }
                    _ => {}
                }
            }
            out.append(&mut ks.events);
            if out.is_empty() {
                continue;
            }
            let ps = self.lock_pubsub();
            for (class, name, key) in out {
                if flags & class == 0 {
                    continue;
                }
                if flags & events::KEYSPACE != 0 {
                    let mut ch = format!("__keyspace@{dbi}__:").into_bytes();
                    ch.extend_from_slice(&key);
                    ps.publish(&ch, name.as_bytes(), &limit);
                }
                if flags & events::KEYEVENT != 0 {
                    let ch = format!("__keyevent@{dbi}__:{name}");
                    ps.publish(ch.as_bytes(), &key, &limit);
                }
            }
        }
    }

    /// Take over a client's INFO commandstats counts (it keeps counting from zero).
    pub fn add_call_stats(&self, from: &mut Vec<(usize, CallStats)>) {
        if from.is_empty() {
            return;
        }
        let mut all = self.call_stats.lock().unwrap_or_else(|e| e.into_inner());
        for (id, s) in from.drain(..) {
            if all.len() <= id {
                all.resize(id + 1, CallStats::default());
            }
            all[id].add(&s);
        }
    }

    /// INFO commandstats so far, by command id (plus what `extra` has not handed over yet).
    pub fn call_stats(&self, extra: &[(usize, CallStats)]) -> Vec<CallStats> {
        let mut all = self
            .call_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (id, s) in extra {
            if all.len() <= *id {
                all.resize(id + 1, CallStats::default());
            }
            all[*id].add(s);
        }
        all
    }

    /// CONFIG RESETSTAT: the counters Redis resets.
    pub fn reset_stats(&self) {
        self.call_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let st = &self.stats;
        for c in [
            &st.total_connections,
            &st.commands,
            &st.rejected,
            &st.expired,
            &st.net_input_bytes,
            &st.query_limit_disconnections,
            &st.output_limit_disconnections,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// CLIENT LIST / CLIENT INFO text.
    pub fn client_list(&self, only: Option<u64>) -> String {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<_> = clients.keys().copied().collect();
        ids.sort_unstable();
        let mut s = String::new();
        for id in ids {
            if only.is_some_and(|o| o != id) {
                continue;
            }
            let Some(m) = clients.get(&id) else { continue };
            let info = m.info.lock().unwrap_or_else(|e| e.into_inner());
            let name = info
                .name
                .as_ref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "id={} addr={} laddr= fd=0 name={} age={} idle=0 flags=N db={} sub=0 psub=0 multi=-1 qbuf=0 obl=0 oll=0 omem=0 events=r cmd=client lib-name={} lib-ver={}",
                m.id,
                m.addr.map(|a| a.to_string()).unwrap_or_default(),
                name,
                m.created.elapsed().as_secs(),
                m.db.load(Ordering::Relaxed),
                info.lib_name,
                info.lib_ver,
            );
        }
        s
    }
}
