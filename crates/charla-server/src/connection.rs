//! One client connection: read whatever has arrived, run every complete command in it, write
//! all replies with one write (pipelining costs one syscall each way per batch), deliver pub/sub
//! messages, and park on blocking commands while still noticing the peer hang up. A request
//! over a limit gets Redis's error and the connection closes; a subscriber over its output
//! buffer limit is closed even while its write is blocked.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::client::{Client, Unblock};
use crate::cmd::spec::Res;
use crate::config::AppendFsync;
use crate::db;
use crate::exec;
use crate::frame::{Admission, ArgSpans, Out, Parser, ProtocolError, Scan};
use crate::pubsub::PubMsg;
use crate::shared::Shared;

/// Flush replies once this much is pending even mid-batch, so a huge pipeline cannot grow the
/// output buffer without bound.
const OUT_FLUSH: usize = 256 * 1024;

pub struct Connection {
    stream: TcpStream,
    inbuf: BytesMut,
    out: Out,
    parser: Parser,
    spans: ArgSpans,
    client: Client,
    rx: mpsc::UnboundedReceiver<PubMsg>,
    shared: Arc<Shared>,
    /// Bytes of pub/sub messages written into `out` and not yet to the socket: they still
    /// count against the subscriber's output buffer limit until the write completes.
    pub_pending: usize,
    /// Bytes read since the last flush into the shared counter (kept local so the hot path
    /// touches no shared cache line per read).
    net_in: u64,
    /// When the batch of commands being run began (what they see as the time: `db::now_ms`).
    batch_now: u64,
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
            parser: Parser::default(),
            spans: ArgSpans::default(),
            client,
            rx,
            shared,
            pub_pending: 0,
            net_in: 0,
            batch_now: 0,
        }
    }

    /// Move the local byte counters into the server's (INFO stats).
    fn flush_counters(&mut self) {
        let st = &self.shared.stats;
        st.net_input_bytes
            .fetch_add(std::mem::take(&mut self.net_in), Ordering::Relaxed);
        st.parser_bytes_scanned
            .fetch_add(std::mem::take(&mut self.parser.scanned), Ordering::Relaxed);
    }

    /// Serve the connection until the peer leaves, QUIT, a protocol error, or shutdown.
    pub async fn run(mut self) {
        let r = self.serve().await;
        if self.client.mailbox.state.killed() {
            // Redis logs this too: a subscriber too slow for what is published to it.
            self.shared
                .stats
                .output_limit_disconnections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                client = self.client.id,
                addr = ?self.client.meta.addr,
                "closing a pub/sub client over its output buffer limit (client-output-buffer-limit pubsub)"
            );
        } else if let Err(e) = r {
            tracing::debug!(client = self.client.id, error = %e, "connection ended");
        }
        self.cleanup();
    }

    fn cleanup(&mut self) {
        exec::stop_waiting(&self.shared, &mut self.client);
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
        self.shared.add_call_stats(&mut self.client.call_stats);
        self.flush_counters();
        self.shared.unregister_client(self.client.id);
    }

    /// What this client may send now (AUTH lifts the unauthenticated limits, CONFIG SET
    /// changes the query buffer limit).
    #[inline]
    fn admission(&self) -> Admission {
        Admission {
            unauthenticated: !self.client.authed,
            max_query: self.shared.query_buffer_limit(),
        }
    }

    /// Answer a request the client got wrong or that is over a limit, then close: the stream
    /// cannot be resynchronised, and nothing more of an oversized request is read.
    async fn refuse(&mut self, e: ProtocolError) -> std::io::Result<()> {
        if e.is_limit() {
            self.shared
                .stats
                .query_limit_disconnections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client = self.client.id, addr = ?self.client.meta.addr, error = %e, "closing a client over a request limit");
        } else {
            tracing::debug!(client = self.client.id, error = %e, "protocol error");
        }
        self.out.err(&format!("ERR {e}"));
        self.flush().await
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        let mut args: Vec<Bytes> = Vec::with_capacity(8);
        loop {
            // Run every complete command that has arrived. The parser keeps its place in an
            // unfinished request, so the bytes of a slow request are walked once in total.
            let limits = self.shared.limits();
            let mut adm = self.admission();
            self.batch_now = db::clock_ms();
            loop {
                let scanned = self
                    .parser
                    .parse(&self.inbuf, &limits, &adm, &mut self.spans);
                let res = match scanned {
                    Err(e) => return self.refuse(e).await,
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
                    self.batch_now = db::clock_ms();
                }
                // AUTH lifts the unauthenticated limits for the next request; RESET restores them.
                adm.unauthenticated = !self.client.authed;
            }
            self.flush().await?;
            if self.client.mailbox.state.killed() {
                return Ok(());
            }
            // Wait for more input or a pub/sub message; a subscriber pushed over its output
            // limit is closed at once. (Shutdown aborts the task: polling a shared shutdown
            // signal here would cost every request a lock on it.)
            let subscriber = self.client.in_subscribe_mode();
            tokio::select! {
                biased;
                _ = self.client.mailbox.state.kill.notified(), if subscriber => return Ok(()),
                r = self.stream.read_buf(&mut self.inbuf) => {
                    let n = r?;
                    if n == 0 {
                        return Ok(());
                    }
                    self.net_in += n as u64;
                    if self.net_in >= 1 << 20 {
                        self.flush_counters();
                    }
                    // Requests are refused on their announced size; this catches what a
                    // client sends beyond the one request being read (the parser has not
                    // looked at it yet).
                    if self.inbuf.len() > self.shared.query_buffer_limit() {
                        return self.refuse(ProtocolError::QUERY_BUFFER).await;
                    }
                    // Messages published before these commands arrived go out before their
                    // replies, as Redis writes them into the subscriber's buffer at PUBLISH
                    // time (a PING after a PUBLISH returned gets its PONG after the message).
                    self.write_queued_msgs();
                }
                Some(m) = self.rx.recv() => {
                    self.write_msg(m);
                    // Batch whatever else is queued into the same write.
                    self.write_queued_msgs();
                }
            }
        }
    }

    /// Write the pub/sub messages already queued for this client (a bounded batch: a
    /// firehose must not keep the connection from reading its own commands).
    fn write_queued_msgs(&mut self) {
        let mut n = 0;
        while let Ok(m) = self.rx.try_recv() {
            self.write_msg(m);
            n += 1;
            if n > 1024 || self.out.buf.len() >= OUT_FLUSH {
                break;
            }
        }
    }

    fn write_msg(&mut self, m: PubMsg) {
        self.pub_pending += m.size();
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
        if self.pub_pending == 0 && !self.client.in_subscribe_mode() {
            self.stream.write_all(&self.out.buf).await?;
        } else {
            // A subscriber that does not read blocks this write; publishers pushing it over
            // its output buffer limit must still be able to cut it off.
            let st = &self.client.mailbox.state;
            tokio::select! {
                biased;
                _ = st.kill.notified() => {
                    return Err(std::io::Error::other("over the pub/sub output buffer limit"));
                }
                r = self.stream.write_all(&self.out.buf) => r?,
            }
            st.written(std::mem::take(&mut self.pub_pending));
        }
        self.out.buf.clear();
        if self.client.commands >= 64 {
            self.shared
                .stats
                .commands
                .fetch_add(std::mem::take(&mut self.client.commands), Ordering::Relaxed);
            self.shared.add_call_stats(&mut self.client.call_stats);
        }
        Ok(())
    }

    /// Run one command ([`exec::execute`]), waiting here if it blocks.
    async fn exec(&mut self, args: &[Bytes]) -> std::io::Result<Res> {
        let (shared, client, out) = (&self.shared, &mut self.client, &mut self.out);
        let r = db::with_batch_time(self.batch_now, || exec::execute(shared, client, out, args));
        if r == Res::Block {
            let r = self.wait_blocked(args).await;
            self.batch_now = db::clock_ms();
            return r;
        }
        Ok(r)
    }

    /// Whether the peer has closed its end (or the connection broke), asked of the socket
    /// itself with a non-blocking peek rather than of the reactor's last readiness report.
    fn peer_hung_up(&self) -> bool {
        let mut b = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&self.stream).peek(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
        }
    }

    /// The client runs a blocking command that found nothing: wait for a wakeup, the
    /// deadline or the peer hanging up, then run the command again.
    async fn wait_blocked(&mut self, args: &[Bytes]) -> std::io::Result<Res> {
        self.flush().await?;
        let stats = &self.shared.stats;
        stats.blocked.fetch_add(1, Ordering::Relaxed);
        let meta = self.client.meta.clone();
        meta.unblock.store(Unblock::None as u8, Ordering::SeqCst);
        meta.blocked.store(true, Ordering::SeqCst);
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
            // Biased toward the socket: a peer that hung up while a value arrived for it
            // must be noticed first, or the value would be popped for a dead client and lost.
            tokio::select! {
                biased;
                r = self.stream.read_buf(&mut self.inbuf) => {
                    // The peer may pipeline more commands; keep them for later (within the
                    // query buffer limit), but a closed socket must unblock us.
                    match r {
                        Ok(0) | Err(_) => gone = true,
                        Ok(n) => {
                            self.net_in += n as u64;
                            if self.inbuf.len() > self.shared.query_buffer_limit() {
                                gone = true;
                            } else {
                                continue;
                            }
                        }
                    }
                }
                _ = notify.notified() => {
                    // The wakeup may be polled before the reactor has seen the hang-up that
                    // came first (the bias above only helps once it has): ask the socket.
                    gone = self.peer_hung_up();
                }
                _ = sleep => self.client.block_timed_out = true,
            }
            exec::stop_waiting(&self.shared, &mut self.client);
            if gone {
                self.client.clear_block();
                break Res::Close;
            }
            // CLIENT UNBLOCK: as if the time were up, or with its error.
            match meta.unblock.swap(Unblock::None as u8, Ordering::SeqCst) {
                x if x == Unblock::Timeout as u8 => self.client.block_timed_out = true,
                x if x == Unblock::Error as u8 => {
                    break exec::fail_blocked(
                        &mut self.client,
                        &mut self.out,
                        "UNBLOCKED client unblocked via CLIENT UNBLOCK",
                    );
                }
                _ => {}
            }
            let r = exec::resume(&self.shared, &mut self.client, &mut self.out, args);
            if r != Res::Block {
                break r;
            }
        };
        meta.blocked.store(false, Ordering::SeqCst);
        stats.blocked.fetch_sub(1, Ordering::Relaxed);
        Ok(result)
    }
}
