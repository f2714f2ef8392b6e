//! The consumer's poll loop, in a task of its own.
//!
//! librdkafka serves a group's rebalances only while the application polls. A subscriber
//! that polled only inside `recv` would stall its whole group whenever its caller was busy
//! (or had not started reading yet): every other member's join waits for it. So each
//! subscription's consumer is polled by this task all the time, into a bounded channel of
//! records (the subscription's prefetch). When the channel stays full (the caller is not
//! reading) the task pauses the assigned partitions and keeps polling, which still serves
//! rebalances, and resumes once the caller has taken records.
//!
//! A record waiting in the channel was not delivered yet: each carries the epoch of its
//! partition at the time it was fetched, and the subscriber drops it, undelivered, if the
//! partition was revoked since (its new owner reads it).

use std::sync::Arc;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message as _;
use tokio::sync::mpsc;

/// A record taken from the consumer, owned.
#[derive(Clone)]
pub struct Record {
    pub partition: (String, i32),
    pub offset: i64,
    pub payload: Vec<u8>,
}

impl Record {
    fn of(m: &BorrowedMessage<'_>) -> Record {
        Record {
            partition: (m.topic().to_owned(), m.partition()),
            offset: m.offset(),
            payload: m.payload().unwrap_or_default().to_vec(),
        }
    }
}

/// What the poll loop hands the subscriber.
pub enum Item {
    /// A record and the epoch of its partition when it was fetched.
    Record(Record, u64),
    /// An error the consumer reported (the subscriber decides whether it is fatal).
    Error(KafkaError),
}

/// The receiving end of a poll loop; dropping it stops the loop.
pub struct Feed {
    pub items: mpsc::Receiver<Item>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start polling `consumer` into a channel of `capacity` records. `epoch_of` reads a
/// partition's current epoch (kept by the rebalance callbacks).
pub fn start<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
    capacity: usize,
    epoch_of: impl Fn(&(String, i32)) -> u64 + Send + Sync + 'static,
) -> Feed {
    let (tx, items) = mpsc::channel(capacity.max(1));
    let task = tokio::spawn(poll_loop(consumer, tx, epoch_of));
    Feed { items, task }
}

async fn poll_loop<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
    tx: mpsc::Sender<Item>,
    epoch_of: impl Fn(&(String, i32)) -> u64 + Sync,
) {
    let mut paused = false;
    // A record fetched while paused (a partition assigned meanwhile is not paused), kept
    // until there is room for it.
    let mut spare: Option<Item> = None;
    loop {
        let permit = match tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => return,
            Err(mpsc::error::TrySendError::Full(())) => {
                // A caller that is reading makes room within moments: wait for it without
                // pausing, because pausing drops what librdkafka prefetched (and resuming
                // fetches it again: a round trip per channel-full, which halved throughput).
                if !paused {
                    tokio::select! {
                        permit = tx.reserve() => match permit {
                            Ok(permit) => {
                                permit.send(next_item(&consumer, &mut spare, &epoch_of).await);
                                continue;
                            }
                            Err(_) => return,
                        },
                        _ = tokio::time::sleep(PAUSE_AFTER) => {}
                    }
                    set_paused(&consumer, true);
                    paused = true;
                }
                tokio::select! {
                    permit = tx.reserve() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return,
                    },
                    // Polling while paused serves rebalances; a record can still come from
                    // a partition assigned since the pause.
                    polled = consumer.recv(), if spare.is_none() => {
                        spare = Some(item_of(polled, &epoch_of));
                        set_paused(&consumer, true);
                        continue;
                    }
                }
            }
        };
        if let Some(item) = spare.take() {
            permit.send(item);
            continue;
        }
        if paused {
            set_paused(&consumer, false);
            paused = false;
        }
        permit.send(next_item(&consumer, &mut spare, &epoch_of).await);
    }
}

/// How long a full channel waits for the caller before the partitions are paused (so that
/// an idle caller's consumer still serves its group's rebalances).
const PAUSE_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// The record kept aside while paused, else the next one polled.
async fn next_item<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    spare: &mut Option<Item>,
    epoch_of: &impl Fn(&(String, i32)) -> u64,
) -> Item {
    match spare.take() {
        Some(item) => item,
        None => item_of(consumer.recv().await, epoch_of),
    }
}

fn item_of(
    polled: Result<BorrowedMessage<'_>, KafkaError>,
    epoch_of: &impl Fn(&(String, i32)) -> u64,
) -> Item {
    match polled {
        Ok(m) => {
            let record = Record::of(&m);
            let epoch = epoch_of(&record.partition);
            Item::Record(record, epoch)
        }
        Err(e) => Item::Error(e),
    }
}

fn set_paused<C: ConsumerContext>(consumer: &StreamConsumer<C>, pause: bool) {
    let Ok(assigned) = consumer.assignment() else {
        return;
    };
    let result = if pause {
        consumer.pause(&assigned)
    } else {
        consumer.resume(&assigned)
    };
    if let Err(e) = result {
        tracing::debug!("Kafka consumer pause/resume: {e}");
    }
}
