//! The seed's "task queue with 3 workers" on RabbitMQ, with the library: a boss sends 30
//! tasks to a durable queue; three workers (each its own connection, prefetch 1) take one
//! task at a time, work on it, and ack it only afterwards. Each task is done once.
//!
//! ```sh
//! cargo run -p charla-amqp --example task_queue [amqp://guest:guest@127.0.0.1:5672/%2f]
//! ```
//!
//! The same with the command line: `charla listen --mode queue --room tareas --prefetch 1`
//! in three terminals, and `charla send --mode queue --room tareas` in a fourth.

use std::collections::HashSet;
use std::time::Duration;

use charla_amqp::AmqpBroker;
use charla_core::{Broker, BrokerUrl, Message, Mode, Subscription};

const TASKS: usize = 30;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let url = BrokerUrl::parse(&url)?;
    let room = format!("tareas-{}", std::process::id());

    let boss = AmqpBroker::connect(&url).await?;
    let mut workers = Vec::new();
    for w in 1..=3 {
        let conn = AmqpBroker::connect(&url).await?;
        let mut sub = conn
            .subscribe(Subscription::new(Mode::Queue, room.as_str()).prefetch(1))
            .await?;
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            // A worker stops when no task came for a second.
            while let Ok(Ok(d)) = tokio::time::timeout(Duration::from_secs(1), sub.recv()).await {
                // The work: longer tasks take longer.
                tokio::time::sleep(Duration::from_millis(10 * (d.message.mensaje.len() as u64)))
                    .await;
                println!("worker {w}: done '{}'", d.message.mensaje);
                sub.ack(d.tag).await.expect("ack");
                done.push(d.message.id);
            }
            sub.close().await.expect("close");
            drop(conn);
            (w, done)
        }));
    }

    let mut p = boss.publisher(Mode::Queue, &room).await?;
    for i in 1..=TASKS {
        p.publish(&Message::new("jefe", format!("tarea {i}"), room.as_str()))
            .await?;
    }
    println!("boss: {TASKS} tasks sent to queue '{room}'");

    let mut all = HashSet::new();
    for w in workers {
        let (w, done) = w.await?;
        println!("worker {w} did {} tasks", done.len());
        all.extend(done);
    }
    println!("{} distinct tasks done of {TASKS}", all.len());
    boss.purge(Mode::Queue, &room).await?;
    Ok(())
}
