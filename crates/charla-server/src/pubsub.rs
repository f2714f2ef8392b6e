//! Pub/sub registry: who listens to which channel or pattern. A publisher hands each
//! subscriber's connection its messages through the subscriber's [`Mailbox`], which counts
//! the bytes waiting there (queued, or written into the connection's output buffer and not
//! yet taken by the socket). Over Redis's `client-output-buffer-limit pubsub` (a hard limit,
//! or a soft limit held for some seconds) the subscriber is disconnected and the message is
//! not counted as received, so a reader that never reads cannot grow the server's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::config::OutputLimit;
use crate::db::{glob_match, now_ms};

#[derive(Debug, Clone)]
pub enum PubMsg {
    Message {
        channel: Bytes,
        payload: Bytes,
    },
    PMessage {
        pattern: Bytes,
        channel: Bytes,
        payload: Bytes,
    },
}

impl PubMsg {
    /// What the message costs in the subscriber's output buffer: its bytes plus the RESP
    /// framing around them (close enough to what the connection writes).
    pub fn size(&self) -> usize {
        match self {
            PubMsg::Message { channel, payload } => channel.len() + payload.len() + 48,
            PubMsg::PMessage {
                pattern,
                channel,
                payload,
            } => pattern.len() + channel.len() + payload.len() + 64,
        }
    }
}

/// The part of a subscriber's mailbox that publishers and its connection share.
#[derive(Debug, Default)]
pub struct MailboxState {
    /// Bytes delivered and not yet written to the socket.
    pub pending: AtomicUsize,
    /// When the pending bytes went over the soft limit (ms since the epoch), 0 when under.
    soft_since_ms: AtomicU64,
    /// Set once the subscriber went over a limit: nothing more is delivered and its
    /// connection closes itself.
    killed: AtomicBool,
    /// Wakes the connection when it is killed, even in the middle of a blocked write.
    pub kill: Notify,
}

impl MailboxState {
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// The connection wrote `n` delivered bytes to its socket.
    pub fn written(&self, n: usize) {
        if n > 0 {
            self.pending.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// A connection's mailbox as the registry sees it.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub tx: mpsc::UnboundedSender<PubMsg>,
    pub state: Arc<MailboxState>,
}

impl Mailbox {
    pub fn new() -> (Mailbox, mpsc::UnboundedReceiver<PubMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Mailbox {
                tx,
                state: Arc::new(MailboxState::default()),
            },
            rx,
        )
    }

    /// Queue `m` unless that takes the subscriber over its limit (then it is killed instead).
    /// True when the message was delivered.
    fn deliver(&self, m: PubMsg, limit: &OutputLimit, clock: &mut Option<u64>) -> bool {
        let st = &*self.state;
        if st.killed() {
            return false;
        }
        let size = m.size();
        let pending = st.pending.fetch_add(size, Ordering::Relaxed) + size;
        let over = if limit.hard > 0 && pending > limit.hard {
            true
        } else if limit.soft > 0 && pending > limit.soft {
            // Over the soft limit: allowed for `soft_seconds`, counted from the first time
            // it was seen over (as Redis counts it).
            let now = *clock.get_or_insert_with(now_ms);
            match st
                .soft_since_ms
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => false,
                Err(since) => now.saturating_sub(since) > limit.soft_seconds * 1000,
            }
        } else {
            st.soft_since_ms.store(0, Ordering::Relaxed);
            false
        };
        if over {
            st.pending.fetch_sub(size, Ordering::Relaxed);
            if !st.killed.swap(true, Ordering::Relaxed) {
                st.kill.notify_one();
            }
            return false;
        }
        if self.tx.send(m).is_err() {
            // The connection is gone; its registrations are being removed.
            st.pending.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }
}

#[derive(Debug, Default)]
pub struct PubSub {
    channels: HashMap<Bytes, HashMap<u64, Mailbox>>,
    patterns: HashMap<Bytes, HashMap<u64, Mailbox>>,
}

impl PubSub {
    pub fn subscribe(&mut self, channel: Bytes, id: u64, mb: &Mailbox) {
        self.channels
            .entry(channel)
            .or_default()
            .insert(id, mb.clone());
    }

    pub fn unsubscribe(&mut self, channel: &[u8], id: u64) {
        if let Some(m) = self.channels.get_mut(channel) {
            m.remove(&id);
            if m.is_empty() {
                self.channels.remove(channel);
            }
        }
    }

    pub fn psubscribe(&mut self, pattern: Bytes, id: u64, mb: &Mailbox) {
        self.patterns
            .entry(pattern)
            .or_default()
            .insert(id, mb.clone());
    }

    pub fn punsubscribe(&mut self, pattern: &[u8], id: u64) {
        if let Some(m) = self.patterns.get_mut(pattern) {
            m.remove(&id);
            if m.is_empty() {
                self.patterns.remove(pattern);
            }
        }
    }

    /// Deliver to every subscriber of `channel` and every matching pattern; returns how many
    /// received it (PUBLISH's reply: a subscriber dropped for its output buffer is not one).
    /// The payload is copied once into its own buffer: the arguments are slices of the
    /// publisher's read buffer, which queued messages must not keep alive.
    pub fn publish(&self, channel: &[u8], payload: &[u8], limit: &OutputLimit) -> i64 {
        let mut n = 0;
        let mut owned_payload: Option<Bytes> = None;
        let mut owned_channel: Option<Bytes> = None;
        let mut now = None;
        if let Some((name, subs)) = self.channels.get_key_value(channel) {
            let payload = owned_payload.get_or_insert_with(|| Bytes::copy_from_slice(payload));
            for mb in subs.values() {
                let m = PubMsg::Message {
                    channel: name.clone(),
                    payload: payload.clone(),
                };
                n += i64::from(mb.deliver(m, limit, &mut now));
            }
        }
        for (pat, subs) in &self.patterns {
            if glob_match(pat, channel) {
                let payload = owned_payload.get_or_insert_with(|| Bytes::copy_from_slice(payload));
                let channel = owned_channel.get_or_insert_with(|| Bytes::copy_from_slice(channel));
                for mb in subs.values() {
                    let m = PubMsg::PMessage {
                        pattern: pat.clone(),
                        channel: channel.clone(),
                        payload: payload.clone(),
                    };
                    n += i64::from(mb.deliver(m, limit, &mut now));
                }
            }
        }
        n
    }

    /// Active channels, optionally filtered by a glob (PUBSUB CHANNELS).
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c)))
            .cloned()
            .collect()
    }

    pub fn numsub(&self, channel: &[u8]) -> usize {
        self.channels.get(channel).map_or(0, |m| m.len())
    }

    pub fn numpat(&self) -> usize {
        self.patterns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> PubMsg {
        PubMsg::Message {
            channel: Bytes::from_static(b"c"),
            payload: Bytes::from(vec![b'x'; n]),
        }
    }

    #[test]
    fn soft_limit_counts_seconds_from_the_first_time_over() {
        let limit = OutputLimit {
            hard: 0,
            soft: 1000,
            soft_seconds: 2,
        };
        let (mb, _rx) = Mailbox::new();
        let at = |ms: u64| Some(ms);
        // Over the soft limit from t = 10 s: tolerated for 2 s.
        assert!(mb.deliver(msg(2000), &limit, &mut at(10_000)));
        assert!(mb.deliver(msg(10), &limit, &mut at(11_000)));
        assert!(mb.deliver(msg(10), &limit, &mut at(12_000)));
        assert!(!mb.state.killed());
        assert!(!mb.deliver(msg(10), &limit, &mut at(12_001)));
        assert!(mb.state.killed());
        // Once killed, nothing more is delivered.
        assert!(!mb.deliver(msg(1), &limit, &mut at(12_002)));
    }

    #[test]
    fn draining_below_the_soft_limit_resets_its_clock() {
        let limit = OutputLimit {
            hard: 0,
            soft: 1000,
            soft_seconds: 2,
        };
        let (mb, _rx) = Mailbox::new();
        let at = |ms: u64| Some(ms);
        assert!(mb.deliver(msg(2000), &limit, &mut at(10_000)));
        mb.state.written(mb.state.pending.load(Ordering::Relaxed));
        assert!(mb.deliver(msg(10), &limit, &mut at(11_000)));
        // Over again at 13 s: a new grace period, not 3 s since the first time.
        assert!(mb.deliver(msg(2000), &limit, &mut at(13_000)));
        assert!(mb.deliver(msg(10), &limit, &mut at(14_500)));
        assert!(!mb.state.killed());
    }

    #[test]
    fn hard_limit_disconnects_at_once_and_the_message_is_not_counted() {
        let limit = OutputLimit {
            hard: 5000,
            soft: 0,
            soft_seconds: 0,
        };
        let (mb, _rx) = Mailbox::new();
        let mut ps = PubSub::default();
        ps.subscribe(Bytes::from_static(b"c"), 1, &mb);
        assert_eq!(ps.publish(b"c", &[b'x'; 4000], &limit), 1);
        assert_eq!(ps.publish(b"c", &[b'x'; 4000], &limit), 0);
        assert!(mb.state.killed());
        // What was queued before still counts; what was refused does not.
        assert_eq!(mb.state.pending.load(Ordering::Relaxed), msg(4000).size());
    }
}
