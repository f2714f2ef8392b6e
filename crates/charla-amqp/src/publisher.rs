//! Publishing with publisher confirms: `publish` returns Ok only for messages RabbitMQ
//! confirmed. A connection that drops is re-opened (with backoff) and the unconfirmed
//! messages are sent again, so a message may arrive twice (same id) but is never reported
//! sent without the broker having it.

use std::sync::Arc;

use tokio::time::Instant;

use async_trait::async_trait;
use charla_core::{BrokerError, Message, Mode, Publisher, Result};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation};

use crate::link::{map_error, reply_code, short, Link, BACKEND};
use crate::topology::{declare_fanout, declare_queue, declare_stream, declare_topic};

/// Attempts per publish when RabbitMQ returns a message as unroutable. While the broker is
/// away, the link's recovery timeout bounds the retries instead.
const MAX_ATTEMPTS: u32 = 8;

pub(crate) struct AmqpPublisher {
    link: Arc<Link>,
    mode: Mode,
    room: String,
    /// Exchange and routing key messages go to.
    exchange: ShortString,
    routing_key: ShortString,
    /// Routing mode: the topic exchange's name.
    topic_exchange: String,
    max_bytes: usize,
    /// Queue mode: the delivery limit the room's queue is declared with.
    max_deliveries: u32,
    channel: Option<Channel>,
}

impl AmqpPublisher {
    pub(crate) fn new(
        link: Arc<Link>,
        mode: Mode,
        room: &str,
        topic_exchange: &str,
        max_bytes: usize,
        max_deliveries: u32,
    ) -> Result<Self> {
        let (exchange, routing_key) = match mode {
            // The default exchange routes by queue name.
            Mode::Queue | Mode::Stream => (short("")?, short(room)?),
            Mode::Broadcast => (short(room)?, short("")?),
            Mode::Routing => (short(topic_exchange)?, short(room)?),
        };
        Ok(AmqpPublisher {
            link,
            mode,
            room: room.to_owned(),
            exchange,
            routing_key,
            topic_exchange: topic_exchange.to_owned(),
            max_bytes,
            max_deliveries,
            channel: None,
        })
    }

    /// A confirm-mode channel with the room's topology declared.
    pub(crate) async fn channel(&mut self) -> Result<Channel> {
        if let Some(ch) = &self.channel {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        self.channel = None;
        let conn = self.link.connection().await?;
        let address = &self.link.address;
        let map = |e: lapin::Error| map_error(address, &e);
        let ch = conn.create_channel().await.map_err(map)?;
        let ch = match self.mode {
            Mode::Queue => {
                declare_queue(&conn, ch, &self.room, self.max_deliveries, address)
                    .await?
                    .0
            }
            Mode::Stream => {
                declare_stream(&ch, &self.room, address).await?;
                ch
            }
            Mode::Broadcast => {
                declare_fanout(&ch, &self.room, address).await?;
                ch
            }
            Mode::Routing => {
                declare_topic(&ch, &self.topic_exchange, address).await?;
                ch
            }
        };
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(map)?;
        self.channel = Some(ch.clone());
        Ok(ch)
    }

    fn properties(&self, message: Option<&Message>) -> BasicProperties {
        let mut p = BasicProperties::default().with_content_type("application/json".into());
        // Durable modes: persistent messages (delivery mode 2).
        p = p.with_delivery_mode(if self.mode.is_durable() { 2 } else { 1 });
        if let Some(m) = message {
            if let Ok(id) = ShortString::try_new(m.id.clone()) {
                p = p.with_message_id(id);
            }
            if m.ts_us > 0 {
                p = p.with_timestamp((m.ts_us / 1_000_000) as u64);
            }
        }
        p
    }

    /// Publishes every payload and waits for RabbitMQ's confirms, pipelined. On a failure
    /// the ones not confirmed yet are sent again on a fresh channel.
    async fn send_all(&mut self, items: &[(Vec<u8>, BasicProperties)]) -> Result<()> {
        let mut done = 0;
        let mut attempt = 0u32;
        // From the first failure on, transient errors are retried until this deadline.
        let mut deadline: Option<Instant> = None;
        while done < items.len() {
            // `channel` waits for the broker while it is away (up to the link's recovery
            // timeout) and declares the room again.
            let err = match self.channel().await {
                Ok(ch) => match self.try_send(&ch, &items[done..]).await {
                    Ok(()) => return Ok(()),
                    Err((confirmed, e)) => {
                        done += confirmed;
                        e
                    }
                },
                Err(e) => Retry::Fatal(e),
            };
            attempt += 1;
            self.channel = None;
            let deadline =
                *deadline.get_or_insert_with(|| Instant::now() + self.link.recovery_timeout);
            let retry = match &err {
                Retry::Again => attempt < MAX_ATTEMPTS,
                e => e.is_transient() && Instant::now() < deadline,
            };
            if !retry {
                return Err(err.into());
            }
            tracing::warn!(room = %self.room, attempt, "publish not confirmed ({err}); sending again");
            tokio::time::sleep(Link::backoff(attempt.saturating_sub(1))).await;
        }
        Ok(())
    }

    /// Publishes `items` on `ch`; on failure returns how many from the start were confirmed.
    async fn try_send(
        &self,
        ch: &Channel,
        items: &[(Vec<u8>, BasicProperties)],
    ) -> std::result::Result<(), (usize, Retry)> {
        let options = BasicPublishOptions {
            // Queue and stream: a message no queue takes is an error, not a silent drop.
            mandatory: matches!(self.mode, Mode::Queue | Mode::Stream),
            ..BasicPublishOptions::default()
        };
        // Each publish future queues its frames on its first poll and then waits for the
        // socket write; polling them together (in order: `join_all` polls in index order)
        // pipelines the batch instead of one I/O round trip per message.
        let sends = items.iter().map(|(payload, props)| {
            ch.basic_publish(
                self.exchange.clone(),
                self.routing_key.clone(),
                options,
                payload,
                props.clone(),
            )
        });
        let mut confirms = Vec::with_capacity(items.len());
        for sent in futures::future::join_all(sends).await {
            match sent {
                Ok(c) => confirms.push(c),
                Err(e) => {
                    // Wait for what was already sent, then report.
                    let ok = Self::count_confirmed(confirms).await;
                    return Err((ok, self.classify(&e)));
                }
            }
        }
        let mut ok = 0;
        let mut iter = confirms.into_iter();
        for c in iter.by_ref() {
            match c.await {
                Ok(Confirmation::Ack(None)) => ok += 1,
                Ok(Confirmation::Ack(Some(returned))) => {
                    let _ = Self::count_confirmed(iter.collect()).await;
                    // Returned as unroutable: the queue was deleted under us; declare again.
                    tracing::warn!(room = %self.room, reply = %returned.reply_text, "message returned unroutable");
                    return Err((ok, Retry::Again));
                }
                Ok(Confirmation::Nack(_)) => {
                    let _ = Self::count_confirmed(iter.collect()).await;
                    return Err((
                        ok,
                        Retry::Fatal(BrokerError::backend(
                            BACKEND,
                            format!(
                                "RabbitMQ refused to store a message for '{}' (publisher nack); \
                                 the queue may be full or the node short of disk or memory",
                                self.room
                            ),
                        )),
                    ));
                }
                Ok(Confirmation::NotRequested) => ok += 1,
                Err(e) => {
                    let _ = Self::count_confirmed(iter.collect()).await;
                    return Err((ok, self.classify(&e)));
                }
            }
        }
        Ok(())
    }

    async fn count_confirmed(confirms: Vec<lapin::PublisherConfirm>) -> usize {
        let mut n = 0;
        for c in confirms {
            if matches!(c.await, Ok(Confirmation::Ack(None))) {
                n += 1;
            }
        }
        n
    }

    fn classify(&self, e: &lapin::Error) -> Retry {
        match reply_code(e) {
            // The auto-delete fanout exchange went away with its last subscriber: declare it
            // again and send (to whoever subscribes now).
            Some(404) if matches!(self.mode, Mode::Broadcast | Mode::Routing) => Retry::Again,
            _ => Retry::Fatal(map_error(&self.link.address, e)),
        }
    }
}

/// Why a send attempt failed.
enum Retry {
    /// Declare again and resend.
    Again,
    /// Resend if the error is transient (the link then waits for the broker), else give up.
    Fatal(BrokerError),
}

impl Retry {
    fn is_transient(&self) -> bool {
        matches!(self, Retry::Fatal(e) if e.is_transient())
    }
}

impl std::fmt::Display for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retry::Again => f.write_str("returned or routed nowhere; declaring again"),
            Retry::Fatal(e) => e.fmt(f),
        }
    }
}

impl From<Retry> for BrokerError {
    fn from(r: Retry) -> Self {
        match r {
            Retry::Again => BrokerError::backend(
                BACKEND,
                "RabbitMQ kept returning the message as unroutable (its queue or exchange keeps disappearing)",
            ),
            Retry::Fatal(e) => e,
        }
    }
}

#[async_trait]
impl Publisher for AmqpPublisher {
    async fn publish(&mut self, message: &Message) -> Result<()> {
        let payload = message.encode_checked(self.max_bytes)?;
        let props = self.properties(Some(message));
        self.send_all(&[(payload, props)]).await
    }

    async fn publish_batch(&mut self, messages: &[Message]) -> Result<()> {
        let mut items = Vec::with_capacity(messages.len());
        for m in messages {
            items.push((m.encode_checked(self.max_bytes)?, self.properties(Some(m))));
        }
        self.send_all(&items).await
    }

    async fn publish_raw(&mut self, payload: &[u8]) -> Result<()> {
        let props = self.properties(None);
        self.send_all(&[(payload.to_vec(), props)]).await
    }
}
