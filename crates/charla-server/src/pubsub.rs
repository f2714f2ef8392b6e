//! Pub/sub registry: who listens to which channel or pattern. A publisher hands each
//! subscriber's connection a message through a bounded queue; a subscriber that falls a whole
//! queue behind is disconnected (Redis's client-output-buffer-limit for pubsub), so a slow
//! reader can never make the server's memory grow without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::db::glob_match;

/// Messages a subscriber may have queued before it is considered too slow.
pub const QUEUE_LEN: usize = 100_000;

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

/// A connection's mailbox as the registry sees it.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub tx: mpsc::Sender<PubMsg>,
    /// Set when a message had to be dropped: the connection closes itself.
    pub overflow: Arc<AtomicBool>,
}

impl Mailbox {
    fn deliver(&self, m: PubMsg) {
        if self.tx.try_send(m).is_err() {
            self.overflow.store(true, Ordering::Relaxed);
        }
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
    /// receivers there were (PUBLISH's reply).
    pub fn publish(&self, channel: &Bytes, payload: &Bytes) -> i64 {
        let mut n = 0;
        if let Some(subs) = self.channels.get(channel.as_ref()) {
            for mb in subs.values() {
                mb.deliver(PubMsg::Message {
                    channel: channel.clone(),
                    payload: payload.clone(),
                });
                n += 1;
            }
        }
        for (pat, subs) in &self.patterns {
            if glob_match(pat, channel) {
                for mb in subs.values() {
                    mb.deliver(PubMsg::PMessage {
                        pattern: pat.clone(),
                        channel: channel.clone(),
                        payload: payload.clone(),
                    });
                    n += 1;
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
