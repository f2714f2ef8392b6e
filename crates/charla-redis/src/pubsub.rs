//! Broadcast and routing modes over Redis pub/sub.
//!
//! Broadcast subscribes to the channel named after the room. Routing subscribes with
//! `PSUBSCRIBE` to a glob that covers the AMQP-style pattern (`room.*`, `app.error.#`) and
//! keeps only channels the pattern really matches, so the pattern language is the same as on
//! RabbitMQ. `subscribe` returns after the server confirmed the subscription: anything
//! published after that reaches this subscriber.

use std::pin::Pin;

use async_trait::async_trait;
use charla_core::{topic, AckTag, BrokerError, Delivery, Mode, Result, Subscriber, Subscription};
use futures::{Stream, StreamExt};

use crate::{map_err, Options};

pub struct PubSubSubscriber {
    messages: Pin<Box<dyn Stream<Item = redis::Msg> + Send>>,
    /// The routing pattern; `None` in broadcast mode.
    pattern: Option<String>,
    room: String,
    opts: Options,
    next_tag: u64,
    /// Chat messages only, or other JSON objects too (`Subscription::events`).
    decode: charla_core::Decoder,
    /// Broadcast mode: leaves the channel on the shared connection when dropped.
    _leave: Option<crate::channels::Leave>,
}

impl PubSubSubscriber {
    /// Broadcast mode on the broker's shared pub/sub connection ([`crate::channels`]);
    /// routing mode on a connection of its own (its glob is filtered per subscriber).
    pub async fn start(
        client: &redis::Client,
        channels: &crate::channels::Channels,
        opts: &Options,
        sub: Subscription,
    ) -> Result<Self> {
        if sub.mode != Mode::Routing {
            let shared = channels.subscribe(&sub.room).await?;
            let queued = shared.queued;
            let messages = futures::stream::unfold(shared.messages, move |mut rx| {
                let queued = queued.clone();
                async move {
                    let m = rx.recv().await?;
                    crate::channels::taken(&queued, &m);
                    Some((m, rx))
                }
            });
            return Ok(PubSubSubscriber {
                messages: Box::pin(messages),
                pattern: None,
                decode: sub.decoder(),
                room: sub.room,
                opts: opts.clone(),
                next_tag: 0,
                _leave: Some(shared.leave),
            });
        }
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| map_err(e, &opts.address))?;
        pubsub
            .psubscribe(topic::to_redis_glob(&sub.room))
            .await
            .map_err(|e| map_err(e, &opts.address))?;
        Ok(PubSubSubscriber {
            messages: Box::pin(pubsub.into_on_message()),
            pattern: Some(sub.room.clone()),
            decode: sub.decoder(),
            room: sub.room,
            opts: opts.clone(),
            next_tag: 0,
            _leave: None,
        })
    }
}

#[async_trait]
impl Subscriber for PubSubSubscriber {
    async fn recv(&mut self) -> Result<Delivery> {
        loop {
            let Some(msg) = self.messages.next().await else {
                return Err(BrokerError::Unreachable {
                    address: self.opts.address.clone(),
                    reason:
                        "the subscription ended: its connection closed, or this subscriber fell \
                             too far behind (Redis drops such a pub/sub client)"
                            .into(),
                });
            };
            let channel = msg.get_channel_name();
            if let Some(p) = &self.pattern {
                if !topic::matches(p, channel) {
                    continue; // the glob is wider than the pattern
                }
            }
            match (self.decode)(
                msg.get_payload_bytes(),
                channel,
                self.opts.max_message_bytes,
            ) {
                Ok(mut message) => {
                    if self.pattern.is_some() {
                        message.room = channel.to_owned();
                    }
                    self.next_tag += 1;
                    return Ok(Delivery {
                        message,
                        redelivered: false,
                        offset: None,
                        tag: AckTag(self.next_tag),
                    });
                }
                Err(e) => {
                    tracing::warn!(room = %self.room, channel, "dropped a broadcast payload: {e}")
                }
            }
        }
    }

    // Pub/sub keeps nothing: there is nothing to acknowledge or give back.
    async fn ack(&mut self, _tag: AckTag) -> Result<()> {
        Ok(())
    }

    async fn nack(&mut self, _tag: AckTag, _requeue: bool) -> Result<()> {
        Ok(())
    }

    async fn reject(&mut self, _tag: AckTag, _failure: charla_core::Failure) -> Result<()> {
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
