//! Publishing: records into the room's topic through the connection's idempotent producer;
//! `publish` returns once the broker acknowledged the record (acks=all).

use std::sync::Arc;

use async_trait::async_trait;
use charla_core::{BrokerError, Message, Mode, Publisher, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use crate::Shared;

/// How a record's key is chosen.
#[derive(Clone, Copy)]
enum Keying {
    /// Key = room: one room, one partition, publish order kept (stream, broadcast, routing).
    Room,
    /// Key = message id: records spread over the partitions, so a queue's group shares them.
    PerMessage,
}

pub struct KafkaPublisher {
    shared: Arc<Shared>,
    topic: String,
    keying: Keying,
}

impl KafkaPublisher {
    pub(crate) fn new(shared: Arc<Shared>, mode: Mode, topic: &str) -> Self {
        KafkaPublisher {
            shared,
            topic: topic.to_owned(),
            keying: if mode == Mode::Queue {
                Keying::PerMessage
            } else {
                Keying::Room
            },
        }
    }

    /// Hand one record to the producer; the future resolves when the broker has it.
    async fn enqueue(&self, key: &str, payload: &[u8]) -> Result<DeliveryFuture> {
        let mut record = FutureRecord::to(&self.topic).key(key).payload(payload);
        loop {
            match self.shared.producer.send_result(record) {
                Ok(future) => return Ok(future),
                // The producer's local queue is full: wait a moment for deliveries to drain.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(self.error(e, payload.len())),
            }
        }
    }

    async fn settle(&self, future: DeliveryFuture, size: usize) -> Result<()> {
        match future.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(self.error(e, size)),
            // The producer dropped the record without a report: only when it is shut down.
            Err(_) => Err(BrokerError::Closed),
        }
    }

    fn error(&self, e: KafkaError, size: usize) -> BrokerError {
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => BrokerError::InvalidArgument(format!(
                "the Kafka broker at {} refused a message of {size} bytes as too large (its \
                 message.max.bytes, or the topic's max.message.bytes, is lower)",
                self.shared.settings.address
            )),
            _ => self.shared.settings.error(e),
        }
    }

    fn key<'a>(&'a self, message_id: &'a str) -> &'a str {
        match self.keying {
            Keying::Room => &self.topic,
            Keying::PerMessage => message_id,
        }
    }
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&mut self, message: &Message) -> Result<()> {
        let payload = message.encode_checked(self.shared.settings.max_bytes)?;
        let future = self.enqueue(self.key(&message.id), &payload).await?;
        self.settle(future, payload.len()).await
    }

    async fn publish_batch(&mut self, messages: &[Message]) -> Result<()> {
        // Everything is checked before anything is sent, then every record is in flight at
        // once (the producer batches them); reports are awaited in order.
        let payloads = messages
            .iter()
            .map(|m| m.encode_checked(self.shared.settings.max_bytes))
            .collect::<Result<Vec<_>>>()?;
        let mut pending = Vec::with_capacity(messages.len());
        for (m, payload) in messages.iter().zip(&payloads) {
            pending.push((self.enqueue(self.key(&m.id), payload).await?, payload.len()));
        }
        let mut first_error = None;
        for (future, size) in pending {
            if let Err(e) = self.settle(future, size).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn publish_raw(&mut self, payload: &[u8]) -> Result<()> {
        let limit = self.shared.settings.max_bytes;
        if payload.len() > limit {
            return Err(BrokerError::TooLarge {
                size: payload.len(),
                limit,
            });
        }
        let id = ulid::Ulid::new().to_string();
        let future = self.enqueue(self.key(&id), payload).await?;
        self.settle(future, payload.len()).await
    }
}
