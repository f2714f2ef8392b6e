//! One AMQP connection shared by a broker handle and the publishers and subscribers it made,
//! re-established with backoff when it drops, and the mapping of lapin's errors to charla's.

use std::sync::Arc;
use std::time::Duration;

use charla_core::BrokerError;
use lapin::protocol::AMQPErrorKind;
use lapin::types::ShortString;
use lapin::{Connection, ConnectionProperties, ErrorKind};
use tokio::sync::Mutex;
use tokio::time::Instant;

pub(crate) const BACKEND: &str = "amqp";

/// First and longest pause between reconnection attempts.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long one TCP connect + AMQP handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// While recovering, an attempt may run past the recovery timeout by at most this much (an
/// attempt needs some time even when the budget is nearly spent).
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

pub(crate) struct Link {
    uri: String,
    pub(crate) address: String,
    /// How long an operation keeps retrying while the broker is away before it gives up.
    pub(crate) recovery_timeout: Duration,
    conn: Mutex<Option<Arc<Connection>>>,
}

impl Link {
    pub(crate) fn new(uri: String, address: String, recovery_timeout: Duration) -> Self {
        Link {
            uri,
            address,
            recovery_timeout,
            conn: Mutex::new(None),
        }
    }

    async fn open(&self) -> Result<Connection, BrokerError> {
        let props = ConnectionProperties::default().with_connection_name("charla".into());
        match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.uri, props)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(connect_error(&self.address, &e)),
            Err(_) => Err(BrokerError::Unreachable {
                address: self.address.clone(),
                reason: format!(
                    "no AMQP handshake within {}s (is this a RabbitMQ port?)",
                    CONNECT_TIMEOUT.as_secs()
                ),
            }),
        }
    }

    /// The live connection, opening one if there is none; a single attempt.
    pub(crate) async fn connect_once(&self) -> Result<Arc<Connection>, BrokerError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.status().connected() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(self.open().await?);
        *guard = Some(c.clone());
        Ok(c)
    }

    /// The live connection; while the broker is away, retries with backoff (100 ms doubling
    /// to 5 s) until `recovery_timeout`, then returns the last error. Errors that a retry
    /// cannot fix (bad credentials) return at once. Each attempt, including the wait for
    /// another caller's attempt in progress, ends by the deadline too: a broker that accepts
    /// connections but never answers (a stalled network) costs the recovery timeout, not a
    /// full handshake timeout per caller.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, BrokerError> {
        let deadline = Instant::now() + self.recovery_timeout;
        let mut delay = BACKOFF_START;
        let mut attempt = 0u32;
        loop {
            let until = deadline.max(Instant::now() + MIN_ATTEMPT);
            let result = match tokio::time::timeout_at(until, self.connect_once()).await {
                Ok(result) => result,
                Err(_) => Err(BrokerError::Unreachable {
                    address: self.address.clone(),
                    reason: format!(
                        "no AMQP handshake within the recovery timeout ({} ms)",
                        self.recovery_timeout.as_millis()
                    ),
                }),
            };
            match result {
                Ok(c) => {
                    if attempt > 0 {
                        tracing::info!(address = %self.address, attempt, "reconnected to RabbitMQ");
                    }
                    return Ok(c);
                }
                Err(e) if e.is_transient() && Instant::now() + delay < deadline => {
                    attempt += 1;
                    tracing::warn!(address = %self.address, attempt, "RabbitMQ unavailable ({e}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Backoff pause for the `n`-th consecutive failure of something other than connecting.
    pub(crate) fn backoff(n: u32) -> Duration {
        BACKOFF_START
            .saturating_mul(1u32 << n.min(6))
            .min(BACKOFF_MAX)
    }
}

/// A ShortString (≤ 255 bytes) or a clear error.
pub(crate) fn short(name: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(name).map_err(|_| {
        BrokerError::InvalidArgument(format!(
            "name '{}…' is {} bytes; AMQP names are at most 255",
            name.chars().take(40).collect::<String>(),
            name.len()
        ))
    })
}

/// The AMQP reply code of a protocol error, if it is one.
pub(crate) fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        ErrorKind::ProtocolError(p) => Some(p.get_id()),
        _ => None,
    }
}

fn protocol_text(e: &lapin::Error) -> String {
    match e.kind() {
        ErrorKind::ProtocolError(p) => p.get_message().to_string(),
        _ => e.to_string(),
    }
}

/// Errors while opening the connection: refused → Unreachable, ACCESS_REFUSED → Auth.
pub(crate) fn connect_error(address: &str, e: &lapin::Error) -> BrokerError {
    match reply_code(e) {
        Some(403) => BrokerError::Auth {
            address: address.to_owned(),
            reason: format!(
                "RabbitMQ refused the user name or password ({}); check the user:password in the amqp:// URL",
                protocol_text(e)
            ),
        },
        Some(530) => BrokerError::Auth {
            address: address.to_owned(),
            reason: format!(
                "the virtual host is missing or this user may not use it ({}); the default vhost is written %2f in the URL",
                protocol_text(e)
            ),
        },
        _ => match e.kind() {
            ErrorKind::IOError(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                BrokerError::Unreachable {
                    address: address.to_owned(),
                    reason: "connection refused; is RabbitMQ running? (start it with `rabbitmq-server -detached`)".into(),
                }
            }
            _ => map_error(address, e),
        },
    }
}

/// Errors of an established connection or channel.
pub(crate) fn map_error(address: &str, e: &lapin::Error) -> BrokerError {
    match e.kind() {
        ErrorKind::ProtocolError(p) => {
            let code = p.get_id();
            let text = p.get_message().to_string();
            match (p.kind(), code) {
                (_, 406) => BrokerError::WrongType {
                    name: extract_name(&text).unwrap_or_default(),
                    detail: format!("RabbitMQ: {text}"),
                },
                (_, 403) => BrokerError::Auth {
                    address: address.to_owned(),
                    reason: format!("access refused: {text}"),
                },
                // A durable queue whose node is still starting (after a restart).
                (_, 404) if text.contains("down or inaccessible") => BrokerError::Unreachable {
                    address: address.to_owned(),
                    reason: format!("RabbitMQ is still starting: {text}"),
                },
                // RabbitMQ closes a channel with 541 when a process behind it crashed — seen
                // on `basic.consume` while several clients declared a new quorum queue at the
                // same moment. The next channel works: worth retrying, not a reason to exit.
                (_, 541) => BrokerError::Unavailable {
                    address: address.to_owned(),
                    reason: format!(
                        "RabbitMQ failed internally on this channel: {text} (AMQP reply 541)"
                    ),
                },
                // The broker is shutting down or closed the connection on purpose.
                (AMQPErrorKind::Hard(_), 320) => BrokerError::Unreachable {
                    address: address.to_owned(),
                    reason: format!("RabbitMQ closed the connection: {text}"),
                },
                _ => BrokerError::backend(BACKEND, format!("{text} (AMQP reply {code})")),
            }
        }
        ErrorKind::InvalidChannelState(..) | ErrorKind::InvalidConnectionState(..) => {
            BrokerError::Unreachable {
                address: address.to_owned(),
                reason: format!("the connection or channel is no longer open ({e})"),
            }
        }
        ErrorKind::IOError(_)
        | ErrorKind::RuntimeShutdownError(_)
        | ErrorKind::MissingHeartbeatError
        | ErrorKind::ParsingError(_)
        | ErrorKind::InvalidChannel(_) => BrokerError::Unreachable {
            address: address.to_owned(),
            reason: e.to_string(),
        },
        _ => BrokerError::backend(BACKEND, e),
    }
}

/// `… for queue 'x' in vhost '/' …` → `x`.
fn extract_name(text: &str) -> Option<String> {
    let start = ["queue '", "exchange '"]
        .iter()
        .find_map(|k| text.find(k).map(|i| i + k.len()))?;
    let end = text[start..].find('\'')? + start;
    Some(text[start..end].to_owned())
}

/// Publishes to a queue by name through the default exchange (`mandatory`: a queue that is
/// not there is a refusal, not a silent drop) on a confirm-mode channel, and waits for
/// RabbitMQ's confirm. `refused` ends the error said when RabbitMQ does not take it (what that
/// means for the caller).
pub(crate) async fn publish_to_queue(
    ch: &lapin::Channel,
    address: &str,
    queue: &str,
    payload: &[u8],
    properties: lapin::BasicProperties,
    refused: &str,
) -> Result<(), BrokerError> {
    let map = |e: lapin::Error| map_error(address, &e);
    let options = lapin::options::BasicPublishOptions {
        mandatory: true,
        ..lapin::options::BasicPublishOptions::default()
    };
    let confirm = ch
        .basic_publish("".into(), short(queue)?, options, payload, properties)
        .await
        .map_err(map)?
        .await
        .map_err(map)?;
    match confirm {
        lapin::Confirmation::Ack(None) | lapin::Confirmation::NotRequested => Ok(()),
        _ => Err(BrokerError::backend(
            BACKEND,
            format!("RabbitMQ did not take the message for queue '{queue}'; {refused}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_rabbitmq_errors() {
        let text = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'chat_cola' in vhost '/': received none but current is the value 'stream'";
        assert_eq!(extract_name(text).as_deref(), Some("chat_cola"));
        assert_eq!(
            extract_name("NOT_FOUND - no exchange 'x' in vhost '/'").as_deref(),
            Some("x")
        );
        assert_eq!(extract_name("PRECONDITION_FAILED - ok").as_deref(), None);
        assert_eq!(
            extract_name(
                "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'room' in vhost '/'"
            )
            .as_deref(),
            Some("room")
        );
    }

    #[test]
    fn backoff_doubles_to_five_seconds() {
        assert_eq!(Link::backoff(0), Duration::from_millis(100));
        assert_eq!(Link::backoff(1), Duration::from_millis(200));
        assert_eq!(Link::backoff(5), Duration::from_millis(3200));
        assert_eq!(Link::backoff(6), Duration::from_secs(5));
        assert_eq!(Link::backoff(60), Duration::from_secs(5));
    }

    #[test]
    fn long_names_are_refused_not_panics() {
        assert!(short(&"x".repeat(255)).is_ok());
        let err = short(&"x".repeat(256)).unwrap_err().to_string();
        assert!(err.contains("at most 255"), "{err}");
    }
}
