//! What people type, on its way to the broker.
//!
//! Posts wait in a bounded queue and one task publishes them in order, several at a time when
//! they pile up. When the broker is away the task keeps the post it was sending and tries
//! again once the [`Link`] is back: a message typed during an outage is sent late, never
//! dropped. Its id is fixed when it is typed, so a retry the broker did receive the first
//! time shows once (readers drop repeated ids).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use charla_core::{BrokerError, Message, Mode, Publisher};
use tokio::sync::{mpsc, oneshot};

use crate::link::Link;
use crate::ChatError;

/// How many posts may wait. Past it, posting waits (the terminal) or is refused (the web's
/// rate limit stops a page long before).
const QUEUE: usize = 1024;

/// Most messages published in one call.
const BATCH: usize = 64;

/// A post's fate, for a caller that wants to know (the HTTP API answers after it).
pub type Posted = oneshot::Receiver<Result<(), BrokerError>>;

struct Post {
    message: Message,
    done: Option<oneshot::Sender<Result<(), BrokerError>>>,
}

/// The queue of posts and its publishing task.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Post>,
    waiting: Arc<AtomicUsize>,
}

impl Outbox {
    pub fn start(link: Arc<Link>, mode: Mode) -> Outbox {
        let (tx, rx) = mpsc::channel(QUEUE);
        let waiting = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(link, mode, rx, waiting.clone()));
        Outbox { tx, waiting }
    }

    /// Queue a message; waits only when the queue is full.
    pub async fn post(&self, message: Message) -> Result<(), ChatError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.send(Post {
            message,
            done: None,
        });
        sent.await.map_err(|_| ChatError::Closed)
    }

    /// Queue a message and get a receiver that says when the broker has it.
    pub async fn post_confirmed(&self, message: Message) -> Result<Posted, ChatError> {
        let (done, posted) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Post {
                message,
                done: Some(done),
            })
            .await
            .map_err(|_| ChatError::Closed)?;
        Ok(posted)
    }

    /// Posts not yet confirmed by the broker (the terminal shows them as pending).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

async fn run(link: Arc<Link>, mode: Mode, mut rx: mpsc::Receiver<Post>, waiting: Arc<AtomicUsize>) {
    // One publisher per room and connection generation.
    let mut publishers: HashMap<String, (u64, Box<dyn Publisher>)> = HashMap::new();
    let mut batch: Vec<Post> = Vec::with_capacity(BATCH);
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(post) => batch.push(post),
                None => return,
            }
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(post) => batch.push(post),
                Err(_) => break,
            }
        }
        // Publish the leading run of one room in one call (order across rooms is kept too).
        let room = batch[0].message.room.clone();
        let run_len = batch.iter().take_while(|p| p.message.room == room).count();
        let (generation, broker) = link.broker().await;
        let outcome = async {
            if publishers.get(&room).is_none_or(|(g, _)| *g != generation) {
                let p = broker.publisher(mode, &room).await?;
                publishers.insert(room.clone(), (generation, p));
            }
            let Some((_, publisher)) = publishers.get_mut(&room) else {
                return Err(BrokerError::Closed); // inserted just above
            };
            let messages: Vec<Message> =
                batch[..run_len].iter().map(|p| p.message.clone()).collect();
            publisher.publish_batch(&messages).await
        }
        .await;
        match outcome {
            Ok(()) => finish(&mut batch, run_len, Ok(()), &waiting),
            Err(e) if e.is_transient() => {
                // Keep the posts; send them again on the next connection.
                publishers.remove(&room);
                link.broken(generation, &e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::warn!("a message to '{room}' was refused: {e}");
                publishers.remove(&room);
                finish(&mut batch, run_len, Err(e), &waiting);
            }
        }
    }
}

fn finish(
    batch: &mut Vec<Post>,
    count: usize,
    result: Result<(), BrokerError>,
    waiting: &AtomicUsize,
) {
    for post in batch.drain(..count) {
        waiting.fetch_sub(1, Ordering::Relaxed);
        if let Some(done) = post.done {
            let _ = done.send(result.clone());
        }
    }
}
