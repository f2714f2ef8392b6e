//! Consuming: one channel and one consumer per subscriber, opened again (with the topology
//! declared again) when the connection drops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use charla_core::{
    AckTag, BrokerError, DeadLetter, DeadReason, Delivery, Failure, Mode, Result, StartFrom,
    Subscriber, Subscription,
};
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Consumer};

use crate::link::{map_error, short, Link};
use crate::topology::{
    dead_letter_queue, declare_fanout, declare_private_queue, declare_queue, declare_stream,
    declare_topic, QueueKind, DEAD_HEADER_PREFIX, DELIVERIES_HEADER, DELIVERY_COUNT_HEADER,
};

/// Bits of an [`AckTag`] that hold the AMQP delivery tag; the bits above hold the channel's
/// epoch, so that a tag from before a reconnect is recognised (its message is redelivered).
const TAG_BITS: u32 = 40;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// A consumer that lived this long counts as healthy: a failure after it starts a new
/// recovery period.
const HEALTHY: Duration = Duration::from_secs(30);

/// A queue-mode delivery the caller has not settled yet.
struct Pending {
    payload: Vec<u8>,
    properties: BasicProperties,
    /// Classic queues: times it was nacked with requeue before this delivery.
    nacks: u64,
}

struct Active {
    channel: Channel,
    consumer: Consumer,
}

pub(crate) struct AmqpSubscriber {
    link: Arc<Link>,
    sub: Subscription,
    topic_exchange: String,
    max_bytes: usize,
    /// Queue mode: deliveries after which a message is dead-lettered (`?max_deliveries=`).
    max_deliveries: u32,
    /// Queue mode: what the room's queue is (who counts deliveries).
    kind: QueueKind,
    active: Option<Active>,
    /// A channel `open` created and had not finished with: set before each await that can
    /// leave state on the broker, cleared once the consumer is active. A `recv` cancelled
    /// inside `open` (a timeout around it, say) leaves it here, possibly with a consumer
    /// RabbitMQ already delivers to — up to `prefetch` messages held by nobody until the
    /// connection closes. The next `open` (or `close`) closes it, which gives them back.
    opening: Option<Channel>,
    epoch: u64,
    /// Queue mode: deliveries not settled yet on the current channel, with what it takes
    /// to publish them again (requeue with a count, or dead-letter).
    unacked: BTreeMap<u64, Pending>,
    /// Stream mode: offset of the next message wanted (where to resume after a reconnect).
    next_offset: Option<u64>,
    /// Stream mode: deliveries below this offset are skipped (RabbitMQ starts at the
    /// beginning of the chunk that holds the requested offset).
    skip_below: Option<u64>,
    /// Requeueing and dead-lettering: a confirm-mode channel.
    side_channel: Option<Channel>,
    /// Queue mode: poison deliveries waiting to be dead-lettered on the current channel.
    poison: Vec<(u64, Pending, Failure)>,
    /// Consecutive failures, and when the first of them happened.
    failures: u32,
    failing_since: Option<Instant>,
    opened_at: Instant,
    consumer_tag: String,
}

/// How many times a subscription's first channel is opened when RabbitMQ fails it internally.
const OPEN_ATTEMPTS: u64 = 3;

impl AmqpSubscriber {
    /// The channel's prefetch (basic.qos), in AMQP's range.
    fn prefetch(&self) -> u16 {
        self.sub.prefetch.clamp(1, u16::MAX as usize) as u16
    }

    pub(crate) async fn open_new(
        link: Arc<Link>,
        sub: Subscription,
        topic_exchange: &str,
        max_bytes: usize,
        max_deliveries: u32,
    ) -> Result<Self> {
        let name = sub
            .consumer
            .clone()
            .unwrap_or_else(|| "consumer".to_owned());
        let mut s = AmqpSubscriber {
            link,
            consumer_tag: format!(
                "charla-{}-{}",
                name.chars().take(100).collect::<String>(),
                ulid::Ulid::new()
            ),
            sub,
            topic_exchange: topic_exchange.to_owned(),
            max_bytes,
            max_deliveries,
            kind: QueueKind::Quorum,
            active: None,
            opening: None,
            epoch: 0,
            unacked: BTreeMap::new(),
            next_offset: None,
            skip_below: None,
            side_channel: None,
            poison: Vec::new(),
            failures: 0,
            failing_since: None,
            opened_at: Instant::now(),
        };
        // Validate the start point before talking to the broker.
        if s.sub.mode == Mode::Stream {
            stream_start(&s.sub.start)?;
        }
        // A channel RabbitMQ crashed while opening (541, mapped to Unavailable) is opened
        // again a few times before the caller hears of it.
        let mut attempt = 1;
        loop {
            match s.open().await {
                Ok(()) => return Ok(s),
                Err(e @ BrokerError::Unavailable { .. }) if attempt < OPEN_ATTEMPTS => {
                    tracing::warn!(room = %s.sub.room, "subscribing failed ({e}); trying again");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn open(&mut self) -> Result<()> {
        self.drop_active();
        self.close_abandoned();
        let conn = self.link.connection().await?;
        let address = self.link.address.clone();
        let map = |e: lapin::Error| map_error(&address, &e);
        let ch = conn.create_channel().await.map_err(map)?;
        self.opening = Some(ch.clone());
        let prefetch = self.prefetch();
        let room = self.sub.room.clone();
        let mut args = FieldTable::default();
        let (ch, queue, no_ack) = match self.sub.mode {
            Mode::Queue => {
                // A classic queue (declared by another client, or by an older charla) works
                // the same for a subscriber, except that charla counts nacks itself there.
                let (ch, kind) =
                    declare_queue(&conn, ch, &room, self.max_deliveries, &address).await?;
                self.kind = kind;
                ch.basic_qos(prefetch, BasicQosOptions::default())
                    .await
                    .map_err(map)?;
                (ch, room, false)
            }
            Mode::Stream => {
                declare_stream(&ch, &room, &address).await?;
                ch.basic_qos(prefetch, BasicQosOptions::default())
                    .await
                    .map_err(map)?;
                let (value, skip) = match self.next_offset {
                    // Resuming after a reconnect: exactly where we stopped.
                    Some(next) => (AMQPValue::LongLongInt(next as i64), Some(next)),
                    None => stream_start(&self.sub.start)?,
                };
                self.skip_below = skip;
                args.insert("x-stream-offset".into(), value);
                (ch, room, false)
            }
            // Broadcast and routing: acked as soon as the caller takes a message (there is
            // nothing to redeliver), but with a prefetch, so that a slow subscriber makes
            // RabbitMQ hold the backlog instead of this process buffering without bound.
            Mode::Broadcast => {
                declare_fanout(&ch, &room, &address).await?;
                let q = declare_private_queue(&ch, &room, "", &address).await?;
                ch.basic_qos(prefetch, BasicQosOptions::default())
                    .await
                    .map_err(map)?;
                (ch, q, false)
            }
            Mode::Routing => {
                declare_topic(&ch, &self.topic_exchange, &address).await?;
                let q = declare_private_queue(&ch, &self.topic_exchange, &room, &address).await?;
                ch.basic_qos(prefetch, BasicQosOptions::default())
                    .await
                    .map_err(map)?;
                (ch, q, false)
            }
        };
        // The declares may have replaced the channel: the one the consumer lives on is the
        // one to close if this is cancelled from here on.
        self.opening = Some(ch.clone());
        let consumer = ch
            .basic_consume(
                short(&queue)?,
                short(&self.consumer_tag)?,
                BasicConsumeOptions {
                    no_ack,
                    ..BasicConsumeOptions::default()
                },
                args,
            )
            .await
            .map_err(map)?;
        self.epoch += 1;
        self.opened_at = Instant::now();
        self.opening = None;
        self.active = Some(Active {
            channel: ch,
            consumer,
        });
        Ok(())
    }

    /// Close the channel a cancelled `open` left behind (see [`AmqpSubscriber::opening`]):
    /// RabbitMQ then gives whatever it delivered there to the consumers that read.
    fn close_abandoned(&mut self) {
        if let Some(ch) = self.opening.take() {
            tracing::debug!("closing the channel of a cancelled subscribe");
            close_in_background(ch, "abandoned by a cancelled subscribe");
        }
    }

    /// Forget the current channel, closing it: it may be alive (a failed ack, a cancelled
    /// consumer) and still hold prefetched messages that RabbitMQ gives back only when the
    /// channel closes.
    fn drop_active(&mut self) {
        if let Some(active) = self.active.take() {
            close_in_background(active.channel, "subscribing again");
        }
        self.unacked.clear();
        self.poison.clear();
        self.side_channel = None;
    }

    /// Turns an AMQP delivery into a charla one, or sets it aside and returns `None` (poison,
    /// or a stream message before the requested offset).
    fn accept(&mut self, d: lapin::message::Delivery) -> Result<Option<Delivery>> {
        let Some(active) = self.active.as_ref() else {
            return Ok(None);
        };
        let ch = active.channel.clone();
        let tag = d.delivery_tag;
        let mode = self.sub.mode;
        let offset = header_u64(&d.properties, "x-stream-offset");
        if mode != Mode::Queue {
            // Stream acks carry no state over AMQP 0.9.1 and broadcast messages are never
            // redelivered: the ack only gives credit back, as soon as the message is taken,
            // so the prefetch bounds what waits here. Not awaited past queueing the frame:
            // `recv` must stay cancel-safe once a delivery is taken off the consumer.
            if let Some(Err(e)) = ch.basic_ack(tag, BasicAckOptions::default()).now_or_never() {
                tracing::debug!("credit ack failed: {e}");
            }
        }
        if mode == Mode::Stream {
            if let (Some(o), Some(min)) = (offset, self.skip_below) {
                if o < min {
                    return Ok(None);
                }
            }
            if let Some(o) = offset {
                self.next_offset = Some(o + 1);
            }
        }
        let room = if mode == Mode::Routing {
            d.routing_key.to_string()
        } else {
            self.sub.room.clone()
        };
        let mut message = match (self.sub.decoder())(&d.data, &room, self.max_bytes) {
            Ok(m) => m,
            Err(why) => {
                match mode {
                    Mode::Queue => {
                        // Kept until dead-lettered (by `recv`, before it waits for more), so
                        // that a cancelled `recv` cannot lose it.
                        self.poison.push((
                            tag,
                            Pending {
                                payload: d.data,
                                properties: d.properties,
                                nacks: 0,
                            },
                            Failure::new(DeadReason::of_decode_error(&why)).error(&why.to_string()),
                        ));
                    }
                    _ => {
                        tracing::warn!(room = %room, "dropping a message that is not a chat message: {why}")
                    }
                }
                return Ok(None);
            }
        };
        if mode == Mode::Routing {
            message.room = room;
        }
        // Earlier deliveries: counted by a quorum queue (nacks and consumers that died), or
        // by charla itself on a classic queue (nacks only).
        let nacks = header_u64(&d.properties, DELIVERIES_HEADER).unwrap_or(0);
        let returned = header_u64(&d.properties, DELIVERY_COUNT_HEADER).unwrap_or(0);
        let redelivered = d.redelivered || nacks > 0 || returned > 0;
        message.deliveries = message
            .deliveries
            .max(u32::try_from(nacks.max(returned)).unwrap_or(u32::MAX))
            .max(u32::from(redelivered));
        if mode == Mode::Queue {
            self.unacked.insert(
                tag,
                Pending {
                    payload: d.data,
                    properties: d.properties,
                    nacks,
                },
            );
        }
        Ok(Some(Delivery {
            message,
            redelivered,
            offset: offset.map(|o| o.to_string()),
            tag: AckTag((self.epoch << TAG_BITS) | (tag & TAG_MASK)),
        }))
    }

    /// Dead-letters one delivery: publishes it to `<room>.dead` (confirmed) with why in
    /// headers (`x-charla-dead-reason`, `-attempts`, `-error`, …: [`DeadLetter::fields`]),
    /// then acks the original. Done by charla rather than by a nack to the dead-letter
    /// exchange so that it is confirmed (RabbitMQ's own dead-lettering is asynchronous), keeps
    /// the reason, and works on queues declared without charla's arguments.
    async fn dead_letter(
        &mut self,
        ch: &Channel,
        tag: u64,
        pending: Pending,
        failure: &Failure,
    ) -> Result<()> {
        let mut headers = pending.properties.headers().clone().unwrap_or_default();
        let dead = DeadLetter::new(Vec::new(), &self.sub.room, Mode::Queue, failure);
        for (name, value) in dead.fields() {
            headers.insert(
                format!("{DEAD_HEADER_PREFIX}{name}").into(),
                AMQPValue::LongString(LongString::from(value.into_bytes())),
            );
        }
        let properties = pending
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        let target = dead_letter_queue(&self.sub.room);
        self.republish(&target, &pending.payload, properties)
            .await?;
        ch.basic_ack(tag, BasicAckOptions::default())
            .await
            .map_err(|e| map_error(&self.link.address, &e))
    }

    /// Gives a delivery back for another try. A quorum queue counts the try itself (a plain
    /// nack with requeue) and dead-letters the message once it had `max_deliveries`. On a
    /// classic queue charla counts: it publishes the message again to the room's queue with
    /// the count raised (confirmed), then acks the original, and dead-letters it instead
    /// once it was delivered `max_deliveries` times.
    async fn requeue(&mut self, ch: &Channel, tag: u64, pending: Pending) -> Result<()> {
        if self.kind == QueueKind::Quorum {
            return ch
                .basic_nack(
                    tag,
                    BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    },
                )
                .await
                .map_err(|e| map_error(&self.link.address, &e));
        }
        let nacks = pending.nacks + 1;
        if nacks >= u64::from(self.max_deliveries) {
            tracing::warn!(room = %self.sub.room, "dead-lettering a message nacked {nacks} times");
            let failure = Failure::new(DeadReason::MaxDeliveries)
                .attempts(u32::try_from(nacks).unwrap_or(u32::MAX))
                .error(&format!(
                    "nacked with requeue {nacks} times (max_deliveries {})",
                    self.max_deliveries
                ));
            return self.dead_letter(ch, tag, pending, &failure).await;
        }
        let mut headers = pending.properties.headers().clone().unwrap_or_default();
        headers.insert(
            DELIVERIES_HEADER.into(),
            AMQPValue::LongLongInt(i64::try_from(nacks).unwrap_or(i64::MAX)),
        );
        let properties = pending
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        let room = self.sub.room.clone();
        self.republish(&room, &pending.payload, properties).await?;
        ch.basic_ack(tag, BasicAckOptions::default())
            .await
            .map_err(|e| map_error(&self.link.address, &e))
    }

    /// Publishes to a queue by name through the default exchange and waits for the confirm.
    async fn republish(
        &mut self,
        queue: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<()> {
        let side = self.side_channel().await?;
        let refused = "the original stays unacked and comes back";
        crate::link::publish_to_queue(
            &side,
            &self.link.address,
            queue,
            payload,
            properties,
            refused,
        )
        .await
    }

    async fn side_channel(&mut self) -> Result<Channel> {
        if let Some(ch) = &self.side_channel {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let conn = self.link.connection().await?;
        let map = |e: lapin::Error| map_error(&self.link.address, &e);
        let ch = conn.create_channel().await.map_err(map)?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(map)?;
        self.side_channel = Some(ch.clone());
        Ok(ch)
    }

    /// A nack or reject that could not reach RabbitMQ is no error for the caller: the
    /// connection is gone with the delivery, which RabbitMQ hands out again.
    fn settled_or_redelivered(&mut self, result: Result<()>) -> Result<()> {
        match result {
            Err(e) if e.is_transient() => {
                tracing::warn!("nack not delivered ({e}); the message will be delivered again");
                self.drop_active();
                Ok(())
            }
            other => other,
        }
    }

    /// Dead-letters the poison deliveries taken so far; each leaves the list only once done.
    async fn dead_letter_poison(&mut self) -> Result<()> {
        while let Some((tag, pending, why)) = self.poison.first() {
            let Some(active) = self.active.as_ref() else {
                self.poison.clear();
                return Ok(());
            };
            let ch = active.channel.clone();
            let (tag, failure) = (*tag, why.clone());
            let pending = Pending {
                payload: pending.payload.clone(),
                properties: pending.properties.clone(),
                nacks: pending.nacks,
            };
            tracing::warn!(room = %self.sub.room, "dead-lettering a message that is not a chat message: {}", failure.error);
            self.dead_letter(&ch, tag, pending, &failure).await?;
            self.poison.remove(0);
        }
        Ok(())
    }

    /// After a failure: errors that a retry cannot fix are returned; transient ones (the
    /// broker away or still starting) are retried with backoff for up to the link's
    /// recovery timeout, counted from the first failure in a row.
    async fn retry_or_fail(&mut self, why: BrokerError) -> Result<()> {
        if !why.is_transient() {
            return Err(why);
        }
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() > self.link.recovery_timeout {
            return Err(why);
        }
        self.failures += 1;
        tracing::warn!(room = %self.sub.room, "{why}; subscribing again");
        tokio::time::sleep(Link::backoff(self.failures - 1)).await;
        Ok(())
    }

    /// The current channel and the AMQP delivery tag for `tag`, or `None` when the tag
    /// belongs to a channel that is gone (RabbitMQ has given the message back already).
    fn settle_target(&mut self, tag: AckTag) -> Result<Option<(Channel, u64, Pending)>> {
        if self.sub.mode != Mode::Queue {
            return Ok(None);
        }
        let (epoch, dtag) = (tag.0 >> TAG_BITS, tag.0 & TAG_MASK);
        let Some(active) = self.active.as_ref() else {
            return Ok(None);
        };
        if epoch != self.epoch {
            // Its channel is gone, and RabbitMQ gives the message out again: an Ok here
            // would claim a settle that never happened.
            return Err(BrokerError::Unreachable {
                address: self.link.address.clone(),
                reason: "the connection that delivered this message was lost, so its ack \
                         cannot reach RabbitMQ: the message is delivered again"
                    .into(),
            });
        }
        match self.unacked.remove(&dtag) {
            Some(pending) => Ok(Some((active.channel.clone(), dtag, pending))),
            None => Err(BrokerError::InvalidArgument(format!(
                "ack tag {} is unknown or already settled",
                tag.0
            ))),
        }
    }
}

/// `x-stream-offset` for a start point, and the first offset to deliver.
fn stream_start(start: &StartFrom) -> Result<(AMQPValue, Option<u64>)> {
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    Ok(match start {
        StartFrom::Latest => (text("next"), None),
        StartFrom::Beginning => (text("first"), None),
        StartFrom::After(s) => {
            let s = s.trim();
            if let Some(secs) = start.time() {
                (AMQPValue::Timestamp(secs?), None)
            } else {
                let offset: u64 = s.parse().map_err(|_| {
                    BrokerError::InvalidArgument(format!(
                        "stream start '{s}': RabbitMQ stream offsets are whole numbers \
                         (as printed with each message), or @<unix seconds> for a time"
                    ))
                })?;
                let first = offset.saturating_add(1);
                (AMQPValue::LongLongInt(first as i64), Some(first))
            }
        }
    })
}

pub(crate) fn header_u64(props: &BasicProperties, key: &str) -> Option<u64> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(key)? {
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::Timestamp(v) => Some(*v),
        _ => None,
    }
}

#[async_trait]
impl Subscriber for AmqpSubscriber {
    async fn recv(&mut self) -> Result<Delivery> {
        loop {
            if self.active.is_none() {
                if let Err(e) = self.open().await {
                    self.retry_or_fail(e).await?;
                    continue;
                }
            }
            if let Err(e) = self.dead_letter_poison().await {
                self.drop_active();
                self.retry_or_fail(e).await?;
                continue;
            }
            let Some(active) = self.active.as_mut() else {
                continue;
            };
            match active.consumer.next().await {
                Some(Ok(d)) => {
                    self.failures = 0;
                    self.failing_since = None;
                    if let Some(delivery) = self.accept(d)? {
                        return Ok(delivery);
                    }
                }
                other => {
                    let why = match other {
                        Some(Err(e)) => map_error(&self.link.address, &e),
                        _ => BrokerError::Unreachable {
                            address: self.link.address.clone(),
                            reason:
                                "RabbitMQ cancelled the consumer (queue deleted or node restarting)"
                                    .into(),
                        },
                    };
                    self.drop_active();
                    if self.opened_at.elapsed() > HEALTHY {
                        // The consumer had been working: this is a new outage.
                        self.failures = 0;
                        self.failing_since = None;
                    }
                    self.retry_or_fail(why).await?;
                }
            }
        }
    }

    async fn try_recv(&mut self) -> Result<Option<Delivery>> {
        // Only what lapin already received: polled once, never waiting on the network, and
        // nothing awaited once a delivery is taken (cancel-safe like `recv`).
        loop {
            let Some(active) = self.active.as_mut() else {
                return Ok(None);
            };
            match active.consumer.next().now_or_never() {
                None => return Ok(None),
                Some(Some(Ok(d))) => {
                    if let Some(delivery) = self.accept(d)? {
                        return Ok(Some(delivery));
                    }
                }
                // The consumer failed or was cancelled: `recv` subscribes again.
                Some(_) => {
                    self.drop_active();
                    return Ok(None);
                }
            }
        }
    }

    async fn ack(&mut self, tag: AckTag) -> Result<()> {
        self.ack_many(&[tag]).await
    }

    async fn ack_many(&mut self, tags: &[AckTag]) -> Result<()> {
        let mut targets = Vec::with_capacity(tags.len());
        // Deliveries of a lost connection cannot be acked (they come again): the others of
        // the batch still are, and the caller hears of the lost ones at the end.
        let mut lost = None;
        for tag in tags {
            match self.settle_target(*tag) {
                Ok(Some((ch, dtag, _))) => targets.push((ch, dtag)),
                Ok(None) => {}
                Err(e @ BrokerError::Unreachable { .. }) => {
                    lost.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        if targets.is_empty() {
            return lost.map_or(Ok(()), Err);
        }
        // Every tag below the lowest one still held (unacked by the caller, or poison waiting
        // to be dead-lettered) is settled by one `multiple` ack of the highest of them; the
        // rest one by one. One frame is one settle command in a quorum queue: RabbitMQ's
        // queue client holds back settles beyond 32 in flight (its soft limit) and drops the
        // held ones when the channel closes, so a message acked in a burst just before a
        // close could come back. A batch as one command keeps far below that limit (and is
        // faster).
        // `unacked` is ordered: its lowest held tag is its first key (poison is rare and short).
        let held = self
            .unacked
            .keys()
            .next()
            .into_iter()
            .chain(self.poison.iter().map(|(t, _, _)| t))
            .min()
            .copied()
            .unwrap_or(u64::MAX);
        let (below, above): (Vec<_>, Vec<_>) = targets.into_iter().partition(|(_, t)| *t < held);
        let mut frames: Vec<(Channel, u64, bool)> = Vec::with_capacity(above.len() + 1);
        if let Some((ch, top)) = below.into_iter().max_by_key(|(_, t)| *t) {
            frames.push((ch, top, true));
        }
        frames.extend(above.into_iter().map(|(ch, t)| (ch, t, false)));
        // All queued on the channel at once (in order), then awaited together until written.
        // AMQP 0.9.1 acks have no reply, and a written frame is not a processed one: a
        // connection lost right after would have RabbitMQ give the messages out again though
        // `ack` said Ok. So one synchronous method follows on the same channel (basic.qos
        // with the prefetch it has, which changes nothing): the broker handles a channel's
        // frames in order, so its reply proves every ack before it was processed and its
        // settle handed to the queue. One round trip per batch, not per message.
        let confirm_on = frames.first().map(|(ch, _, _)| ch.clone());
        let acks = frames.iter().map(|(ch, dtag, multiple)| {
            ch.basic_ack(
                *dtag,
                BasicAckOptions {
                    multiple: *multiple,
                },
            )
        });
        let written = futures::future::join_all(acks)
            .await
            .into_iter()
            .find(|r| r.is_err())
            .unwrap_or(Ok(()));
        let confirmed = match (written, confirm_on) {
            (Ok(()), Some(ch)) => {
                ch.basic_qos(self.prefetch(), BasicQosOptions::default())
                    .await
            }
            (other, _) => other,
        };
        if let Err(e) = confirmed {
            // The channel is gone, and with it the deliveries: RabbitMQ gives them out
            // again (at-least-once; the ids tell duplicates). The caller is told, so that
            // nobody counts these messages as settled.
            self.drop_active();
            return Err(map_error(&self.link.address, &e));
        }
        lost.map_or(Ok(()), Err)
    }

    async fn nack(&mut self, tag: AckTag, requeue: bool) -> Result<()> {
        if !requeue {
            return self.reject(tag, Failure::new(DeadReason::Nacked)).await;
        }
        let Some((ch, dtag, pending)) = self.settle_target(tag)? else {
            return Ok(());
        };
        let result = self.requeue(&ch, dtag, pending).await;
        self.settled_or_redelivered(result)
    }

    async fn reject(&mut self, tag: AckTag, failure: Failure) -> Result<()> {
        let Some((ch, dtag, pending)) = self.settle_target(tag)? else {
            return Ok(());
        };
        let mut failure = failure;
        if failure.attempts == 0 {
            failure.attempts = u32::try_from(pending.nacks + 1).unwrap_or(u32::MAX);
        }
        let result = self.dead_letter(&ch, dtag, pending, &failure).await;
        self.settled_or_redelivered(result)
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        if let Some(active) = self.active.take() {
            // Cancel first (a round trip through the queue): settles RabbitMQ's quorum queue
            // client held back meanwhile go out as it catches up, before the close gives
            // the unacked messages back. Closing the channel cancels the consumer too.
            let _ = active
                .channel
                .basic_cancel(short(&self.consumer_tag)?, BasicCancelOptions::default())
                .await;
            let _ = active.channel.close(200, "closing".into()).await;
        }
        if let Some(dead) = self.side_channel.take() {
            let _ = dead.close(200, "closing".into()).await;
        }
        self.close_abandoned();
        Ok(())
    }
}

impl Drop for AmqpSubscriber {
    /// Dropped without `close` (a task cancelled, a caller that gave up): close its channels
    /// in the background where a runtime runs, so RabbitMQ gives what it delivered to them
    /// to other consumers now rather than when the shared connection closes.
    fn drop(&mut self) {
        self.drop_active();
        self.close_abandoned();
    }
}

/// Close a channel in a task of its own: a close awaited inside `recv` could be cancelled
/// with it, and a channel whose close never went out keeps its prefetched messages from
/// every other consumer for as long as the shared connection lives. Without a runtime (a
/// subscriber dropped after it) the connection's own end gives them back.
pub(crate) fn close_in_background(ch: Channel, why: &'static str) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = ch.close(200, why.into()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &AMQPValue) -> String {
        match v {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn start_points_map_to_stream_offsets() {
        let (v, skip) = stream_start(&StartFrom::Latest).unwrap();
        assert_eq!((text(&v), skip), ("next".to_owned(), None));
        let (v, skip) = stream_start(&StartFrom::Beginning).unwrap();
        assert_eq!((text(&v), skip), ("first".to_owned(), None));
        let (v, skip) = stream_start(&StartFrom::After("41".into())).unwrap();
        assert_eq!(v, AMQPValue::LongLongInt(42));
        assert_eq!(skip, Some(42));
        let (v, skip) = stream_start(&StartFrom::After("@1700000000".into())).unwrap();
        assert_eq!(v, AMQPValue::Timestamp(1_700_000_000));
        assert_eq!(skip, None);
        let err = stream_start(&StartFrom::After("1-0".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("whole numbers"), "{err}");
    }

    #[test]
    fn headers_read_as_numbers() {
        let mut h = FieldTable::default();
        h.insert("a".into(), AMQPValue::LongLongInt(7));
        h.insert("b".into(), AMQPValue::LongInt(-1));
        h.insert("c".into(), AMQPValue::ShortUInt(3));
        let p = BasicProperties::default().with_headers(h);
        assert_eq!(header_u64(&p, "a"), Some(7));
        assert_eq!(header_u64(&p, "b"), None);
        assert_eq!(header_u64(&p, "c"), Some(3));
        assert_eq!(header_u64(&p, "missing"), None);
        assert_eq!(header_u64(&BasicProperties::default(), "a"), None);
    }

    #[test]
    fn ack_tags_carry_the_epoch() {
        let tag = (3u64 << TAG_BITS) | 12345;
        assert_eq!(tag >> TAG_BITS, 3);
        assert_eq!(tag & TAG_MASK, 12345);
    }
}
