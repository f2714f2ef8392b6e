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
}

impl PubSubSubscriber {
    pub async fn start(client: &redis::Client, opts: &Options, sub: Subscription) -> Result<Self> {
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| map_err(e, &opts.address))?;
        let pattern = if sub.mode == Mode::Routing {
            pubsub
                .psubscribe(topic::to_redis_glob(&sub.room))
                .await
                .map_err(|e| map_err(e, &opts.address))?;
            Some(sub.room.clone())
        } else {
            pubsub
                .subscribe(&sub.room)
                .await
                .map_err(|e| map_err(e, &opts.address))?;
            None
        };
        Ok(PubSubSubscriber {
            messages: Box::pin(pubsub.into_on_message()),
            pattern,
            decode: sub.decoder(),
            room: sub.room,
            opts: opts.clone(),
            next_tag: 0,
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
                    reason: "the subscription connection closed".into(),
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

    async fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
