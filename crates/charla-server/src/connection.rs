//! One client connection: read whatever has arrived, run every complete command in it, write
//! all replies with one write (pipelining costs one syscall each way per batch), deliver pub/sub
//! messages, and park on blocking commands while still noticing the peer hang up.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use crate::cmd::{self, Ctx, Res};
use crate::config::AppendFsync;
use crate::frame::{self, ArgSpans, Out, Scan};
use crate::pubsub::{Mailbox, PubMsg, QUEUE_LEN};
use crate::server::Shared;
use crate::stream::StreamId;

/// What CLIENT LIST shows about a connection; shared with the server's registry.
#[derive(Debug)]
pub struct ClientMeta {
    pub id: u64,
    pub addr: Option<SocketAddr>,
    pub created: Instant,
    pub db: AtomicUsize,
    pub info: Mutex<ClientInfo>,
}

#[derive(Debug, Default)]
pub struct ClientInfo {
    pub name: Option<Bytes>,
    pub lib_name: String,
    pub lib_ver: String,
}

/// Per-connection protocol state.
pub struct Client {
    pub id: u64,
    pub db: usize,
    pub proto: u8,
    pub authed: bool,
    pub multi: Option<Vec<Vec<Bytes>>>,
    pub multi_error: bool,
    pub in_exec: bool,
    pub watch: Option<u64>,
    pub subs: HashSet<Bytes>,
    pub psubs: HashSet<Bytes>,
    pub mailbox: Mailbox,
    pub notify: Arc<Notify>,
    pub block_started: bool,
    pub block_deadline: Option<Instant>,
    pub block_timed_out: bool,
    pub blocked_keys: Vec<(usize, Bytes)>,
    /// XREAD's resolved `$` ids, kept while a blocked XREAD waits.
    pub block_ids: Option<Vec<Option<StreamId>>>,
    /// Commands run since the last flush into the server's counter.
    pub commands: u64,
    /// AOF sequence number of this client's last write (fsync=always waits for it).
    pub aof_seq: u64,
    pub meta: Arc<ClientMeta>,
}

impl Client {
    pub fn new(
        id: u64,
        addr: Option<SocketAddr>,
        authed: bool,
    ) -> (Client, mpsc::Receiver<PubMsg>) {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let meta = Arc::new(ClientMeta {
            id,
            addr,
            created: Instant::now(),
            db: AtomicUsize::new(0),
            info: Mutex::new(ClientInfo::default()),
        });
        (
            Client {
                id,
                db: 0,
                proto: 2,
                authed,
                multi: None,
                multi_error: false,
                in_exec: false,
                watch: None,
                subs: HashSet::new(),
                psubs: HashSet::new(),
                mailbox: Mailbox {
                    tx,
                    overflow: Arc::new(AtomicBool::new(false)),
                },
                notify: Arc::new(Notify::new()),
                block_started: false,
                block_deadline: None,
                block_timed_out: false,
                blocked_keys: Vec::new(),
                block_ids: None,
                commands: 0,
                aof_seq: 0,
                meta,
            },
            rx,
        )
    }

    pub fn in_subscribe_mode(&self) -> bool {
        !self.subs.is_empty() || !self.psubs.is_empty()
    }

    pub fn set_name(&mut self, name: Option<Bytes>) {
        self.meta
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .name = name;
    }

    pub fn name(&self) -> Option<Bytes> {
        self.meta
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .name
            .clone()
    }

    /// Forget a finished blocking command's bookkeeping.
    pub fn clear_block(&mut self) {
        self.block_started = false;
        self.block_deadline = None;
        self.block_timed_out = false;
        self.block_ids = None;
    }
}

/// Flush replies once this much is pending even mid-batch, so a huge pipeline cannot grow the
/// output buffer without bound.
const OUT_FLUSH: usize = 256 * 1024;

pub struct Connection {
    stream: TcpStream,
    inbuf: BytesMut,
    out: Out,
    spans: ArgSpans,
    client: Client,
    rx: mpsc::Receiver<PubMsg>,
    shared: Arc<Shared>,
}

impl Connection {
    pub fn new(stream: TcpStream, addr: SocketAddr, shared: Arc<Shared>) -> Connection {
        let id = shared.next_client_id();
        let (client, rx) = Client::new(id, Some(addr), shared.config.requirepass.is_none());
        shared.register_client(client.meta.clone());
        Connection {
            stream,
            inbuf: BytesMut::with_capacity(16 * 1024),
            out: Out::new(),
            spans: ArgSpans::default(),
            client,
            rx,
            shared,
        }
    }

    /// Serve the connection until the peer leaves, QUIT, a protocol error, or shutdown.
    pub async fn run(mut self) {
        if let Err(e) = self.serve().await {
            tracing::debug!(client = self.client.id, error = %e, "connection ended");
        }
        self.cleanup();
    }

    fn cleanup(&mut self) {
        {
            let mut db = self.shared.lock_db();
            crate::blocking::unregister(&mut self.client, &mut db);
        }
        if self.client.in_subscribe_mode() {
            self.shared
                .stats
                .pubsub_clients
                .fetch_sub(1, Ordering::Relaxed);
            let mut ps = self.shared.lock_pubsub();
            for ch in self.client.subs.drain() {
                ps.unsubscribe(&ch, self.client.id);
            }
            for p in self.client.psubs.drain() {
                ps.punsubscribe(&p, self.client.id);
            }
        }
        self.shared
            .stats
            .commands
            .fetch_add(std::mem::take(&mut self.client.commands), Ordering::Relaxed);
        self.shared.unregister_client(self.client.id);
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        let limits = self.shared.limits;
        let mut args: Vec<Bytes> = Vec::with_capacity(8);
        loop {
            // Run every complete command that has arrived.
            loop {
                let scanned = frame::scan(&self.inbuf, &limits, &mut self.spans);
                let res = match scanned {
                    Err(e) => {
                        tracing::debug!(client = self.client.id, error = %e, "protocol error");
                        self.out.err(&format!("ERR {e}"));
                        self.flush().await?;
                        return Ok(());
                    }
                    Ok(Scan::Incomplete) => break,
                    Ok(Scan::Empty { consumed }) => {
                        self.inbuf.advance(consumed);
                        continue;
                    }
                    Ok(Scan::Multibulk { consumed }) => {
                        let chunk = self.inbuf.split_to(consumed).freeze();
                        args.clear();
                        args.extend(self.spans.spans.iter().map(|&(s, e)| chunk.slice(s..e)));
                        self.exec(&args).await?
                    }
                    Ok(Scan::Inline { consumed }) => {
                        self.inbuf.advance(consumed);
                        args.clear();
                        args.extend(self.spans.owned.drain(..).map(Bytes::from));
                        self.exec(&args).await?
                    }
                };
                args.clear();
                if res == Res::Close {
                    self.flush().await?;
                    return Ok(());
                }
                if self.out.buf.len() >= OUT_FLUSH {
                    self.flush().await?;
                }
            }
            self.flush().await?;
            if self.client.mailbox.overflow.load(Ordering::Relaxed) {
                tracing::warn!(
                    client = self.client.id,
                    "subscriber too slow, disconnecting"
                );
                return Ok(());
            }
            // Wait for more input or a pub/sub message. (Shutdown aborts the task: polling a
            // shared shutdown signal here would cost every request a lock on it.)
            tokio::select! {
                r = self.stream.read_buf(&mut self.inbuf) => {
                    if r? == 0 {
                        return Ok(());
                    }
                }
                Some(m) = self.rx.recv() => {
                    self.write_msg(m);
                    // Batch whatever else is queued into the same write.
                    let mut n = 0;
                    while let Ok(m) = self.rx.try_recv() {
                        self.write_msg(m);
                        n += 1;
                        if n > 1024 || self.out.buf.len() >= OUT_FLUSH {
                            break;
                        }
                    }
                }
            }
        }
    }

    fn write_msg(&mut self, m: PubMsg) {
        match m {
            PubMsg::Message { channel, payload } => {
                self.out.push(3);
                self.out.bulk(b"message");
                self.out.bulk(&channel);
                self.out.bulk(&payload);
            }
            PubMsg::PMessage {
                pattern,
                channel,
                payload,
            } => {
                self.out.push(4);
                self.out.bulk(b"pmessage");
                self.out.bulk(&pattern);
                self.out.bulk(&channel);
                self.out.bulk(&payload);
            }
        }
    }

    /// Write pending replies. With `appendfsync always`, first wait until the writes they
    /// acknowledge are on disk.
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.buf.is_empty() {
            return Ok(());
        }
        if let Some(aof) = &self.shared.aof {
            if aof.fsync == AppendFsync::Always {
                aof.wait_synced(self.client.aof_seq).await;
            }
        }
        self.stream.write_all(&self.out.buf).await?;
        self.out.buf.clear();
        if self.client.commands >= 64 {
            self.shared
                .stats
                .commands
                .fetch_add(std::mem::take(&mut self.client.commands), Ordering::Relaxed);
        }
        Ok(())
    }

    async fn exec(&mut self, args: &[Bytes]) -> std::io::Result<Res> {
        let was_sub = self.client.in_subscribe_mode();
        let mut ctx = Ctx {
            args,
            out: &mut self.out,
            client: &mut self.client,
            shared: &self.shared,
            dirty: false,
            propagated: false,
        };
        let mut r = cmd::dispatch(&mut ctx);
        if r == Res::Block {
            r = self.wait_blocked(args).await?;
        }
        let is_sub = self.client.in_subscribe_mode();
        if was_sub != is_sub {
            if is_sub {
                self.shared
                    .stats
                    .pubsub_clients
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                self.shared
                    .stats
                    .pubsub_clients
                    .fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(r)
    }

    /// The client runs a blocking command that found nothing: wait for a wakeup, the
    /// deadline or the peer hanging up, then run the command again.
    async fn wait_blocked(&mut self, args: &[Bytes]) -> std::io::Result<Res> {
        let Some(spec) = cmd::lookup(&args[0]) else {
            return Ok(Res::Ok);
        };
        self.flush().await?;
        let stats = &self.shared.stats;
        stats.blocked.fetch_add(1, Ordering::Relaxed);
        let result = loop {
            let notify = self.client.notify.clone();
            let deadline = self.client.block_deadline;
            let sleep = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let mut gone = false;
            tokio::select! {
                _ = notify.notified() => {}
                _ = sleep => self.client.block_timed_out = true,
                r = self.stream.read_buf(&mut self.inbuf) => {
                    // The peer may pipeline more commands; keep them for later, but a closed
                    // socket must unblock us so nothing is popped for a dead client.
                    match r {
                        Ok(0) | Err(_) => gone = true,
                        Ok(_) if self.inbuf.len() > self.shared.limits.max_bulk_len + 1024 * 1024 => gone = true,
                        Ok(_) => continue,
                    }
                }
            }
            {
                let mut db = self.shared.lock_db();
                crate::blocking::unregister(&mut self.client, &mut db);
            }
            if gone {
                self.client.clear_block();
                break Res::Close;
            }
            let mut ctx = Ctx {
                args,
                out: &mut self.out,
                client: &mut self.client,
                shared: &self.shared,
                dirty: false,
                propagated: false,
            };
            let r = cmd::run(&mut ctx, spec);
            if r != Res::Block {
                break r;
            }
        };
        stats.blocked.fetch_sub(1, Ordering::Relaxed);
        Ok(result)
    }
}
