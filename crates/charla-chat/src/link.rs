//! The connection to the broker, shared by a chat's feeds, outbox and presence.
//!
//! Backends differ in what they re-establish by themselves after a broker restart, so the
//! chat does not rely on it: whoever meets a transient error reports it with
//! [`Link::broken`], the link drops that connection, says so in its [`Status`] and connects
//! again with backoff; everyone waiting in [`Link::broker`] then carries on with the new one.
//! A generation number makes several reports of one failure count once.

use std::sync::Arc;
use std::time::Duration;

use charla_core::{Broker, BrokerError, Subscriber, Subscription};
use futures::future::BoxFuture;
use tokio::sync::watch;

/// Makes a new connection (the binary knows the URL and every backend).
pub type Connector =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Box<dyn Broker>, BrokerError>> + Send + Sync>;

/// What the screens show about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Connected; what the broker said it is.
    Connected { broker: String },
    /// Lost; reconnecting in the background.
    Reconnecting { reason: String },
}

#[derive(Clone)]
enum State {
    Up(u64, Arc<dyn Broker>),
    /// Being re-made.
    Down,
}

/// The shared connection.
pub struct Link {
    connect: Connector,
    state: watch::Sender<State>,
    status: watch::Sender<Status>,
}

impl Link {
    /// Connect once: a broker that cannot be reached at the start is an error for the caller
    /// to show (wrong URL, nothing running), not something to wait for silently.
    pub async fn open(connect: Connector) -> Result<Arc<Link>, BrokerError> {
        let broker: Arc<dyn Broker> = Arc::from(connect().await?);
        let name = describe(broker.as_ref()).await?;
        let (state, _) = watch::channel(State::Up(0, broker));
        let (status, _) = watch::channel(Status::Connected { broker: name });
        Ok(Arc::new(Link {
            connect,
            state,
            status,
        }))
    }

    /// The current connection and its generation, waiting while it is being re-made.
    pub async fn broker(&self) -> (u64, Arc<dyn Broker>) {
        let mut rx = self.state.subscribe();
        loop {
            if let State::Up(generation, broker) = &*rx.borrow_and_update() {
                return (*generation, broker.clone());
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`: unreachable while we borrow it.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The connection of `generation` failed with `error`: drop it and reconnect (once per
    /// generation, whoever reports first).
    pub fn broken(self: &Arc<Self>, generation: u64, error: &BrokerError) {
        let reason = error.to_string();
        let mut took_it = false;
        self.state.send_if_modified(|state| match state {
            State::Up(g, _) if *g == generation => {
                *state = State::Down;
                took_it = true;
                true
            }
            _ => false,
        });
        if !took_it {
            return;
        }
        tracing::warn!("lost the broker: {reason}; reconnecting");
        self.status.send_replace(Status::Reconnecting { reason });
        let link = self.clone();
        tokio::spawn(async move { link.reconnect(generation + 1).await });
    }

    async fn reconnect(self: Arc<Self>, generation: u64) {
        let mut delay = Duration::from_millis(200);
        loop {
            tokio::time::sleep(delay).await;
            let attempt = async {
                let broker: Arc<dyn Broker> = Arc::from((self.connect)().await?);
                let name = describe(broker.as_ref()).await?;
                Ok::<_, BrokerError>((broker, name))
            };
            match attempt.await {
                Ok((broker, name)) => {
                    tracing::info!("reconnected to {name}");
                    self.state.send_replace(State::Up(generation, broker));
                    self.status.send_replace(Status::Connected { broker: name });
                    return;
                }
                Err(e) => {
                    let reason = e.to_string();
                    tracing::debug!("reconnecting: {reason}");
                    self.status.send_replace(Status::Reconnecting { reason });
                    delay = (delay * 2).min(Duration::from_secs(3));
                }
            }
        }
    }

    /// Watch the connection status.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Handle a failed broker call: transient errors break the link (the caller retries once
    /// it is back); others are returned for the caller to report.
    pub fn check<T>(
        self: &Arc<Self>,
        generation: u64,
        result: Result<T, BrokerError>,
    ) -> Result<Option<T>, BrokerError> {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_transient() => {
                self.broken(generation, &e);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

impl Link {
    /// `subscription` on the current connection: the connection's generation and the
    /// subscriber, retried through reconnects. A refusal that reconnecting cannot cure (a bad
    /// room name, a mode the backend lacks) is logged with `what`, reported to `on_refused`
    /// and tried again every [`REFUSED_RETRY`] rather than in a spin.
    pub async fn subscribe(
        self: &Arc<Self>,
        subscription: &Subscription,
        what: &str,
        on_refused: impl Fn(),
    ) -> (u64, Box<dyn Subscriber>) {
        loop {
            let (generation, broker) = self.broker().await;
            match self.check(generation, broker.subscribe(subscription.clone()).await) {
                Ok(Some(sub)) => return (generation, sub),
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!("cannot {what}: {e}");
                    on_refused();
                    tokio::time::sleep(REFUSED_RETRY).await;
                }
            }
        }
    }

    /// What a receive on the connection of `generation` gave: the value, or `None` when the
    /// subscription is to be made again (the link broke; or an error reconnecting cannot
    /// cure, logged with `what`, after a pause).
    pub async fn received<T>(
        self: &Arc<Self>,
        generation: u64,
        result: Result<T, BrokerError>,
        what: &str,
    ) -> Option<T> {
        match self.check(generation, result) {
            Ok(value) => value,
            Err(e) => {
                tracing::error!("{what}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
        }
    }
}

/// Pause before subscribing again after a refusal that will not go away by reconnecting.
pub const REFUSED_RETRY: Duration = Duration::from_secs(5);

async fn describe(broker: &dyn Broker) -> Result<String, BrokerError> {
    let info = broker.info().await?;
    Ok(format!(
        "{} {} at {}",
        info.product, info.version, info.address
    ))
}
