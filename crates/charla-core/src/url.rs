//! Picking a backend by URL: `redis://`, `rediss://`, `amqp://`, `amqps://`, `kafka://`,
//! `memory://`. Options common to every backend ride in the query string.
//!
//! [`redact`] is the one function that turns a URL into text fit for a message, a log line or
//! JSON output: every place that shows a broker URL goes through it (or through
//! [`BrokerUrl`]'s `Display`, which uses it), including URLs that do not parse.

use crate::error::BrokerError;
use std::fmt;

/// Deliveries without an acknowledgement before a message is dead-lettered, on every backend
/// (`?max_deliveries=`): enough for a transient failure to pass, few enough that a poison
/// message stops looping within seconds. Sidekiq's 25 retries are for jobs with backoff; a
/// chat message redelivered at once needs far fewer.
pub const DEFAULT_MAX_DELIVERIES: u32 = 5;

/// Which backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Memory,
    Redis,
    Amqp,
    Kafka,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Redis => "redis",
            BackendKind::Amqp => "amqp",
            BackendKind::Kafka => "kafka",
        }
    }
}

/// A parsed broker URL. Keeps the original text for the backend's own client library and
/// offers a redacted form (no password) for messages and logs.
#[derive(Clone)]
pub struct BrokerUrl {
    url: url::Url,
    kind: BackendKind,
}

const SCHEMES: &str = "redis://, rediss://, amqp://, amqps://, kafka://, memory://";

impl BrokerUrl {
    pub fn parse(text: &str) -> Result<Self, BrokerError> {
        // The error is shown to the user and may be logged: never the password in it.
        let invalid = |reason: String| BrokerError::InvalidUrl {
            url: redact(text),
            reason,
        };
        let url = url::Url::parse(text).map_err(|e| {
            invalid(format!(
                "{e}; a broker URL looks like redis://127.0.0.1:6380 (schemes: {SCHEMES})"
            ))
        })?;
        let kind = match url.scheme() {
            "memory" => BackendKind::Memory,
            "redis" | "rediss" | "valkey" | "valkeys" => BackendKind::Redis,
            "amqp" | "amqps" => BackendKind::Amqp,
            "kafka" => BackendKind::Kafka,
            other => {
                return Err(invalid(format!(
                    "unknown scheme '{other}://' (known: {SCHEMES})"
                )))
            }
        };
        if kind != BackendKind::Memory && url.host_str().unwrap_or("").is_empty() {
            return Err(invalid("the URL has no host".into()));
        }
        Ok(BrokerUrl { url, kind })
    }

    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// `host:port` (with the scheme's default port), for messages.
    pub fn address(&self) -> String {
        let host = self.url.host_str().unwrap_or("");
        match self.url.port_or_known_default().or(self.default_port()) {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    fn default_port(&self) -> Option<u16> {
        match self.url.scheme() {
            "redis" | "rediss" | "valkey" | "valkeys" => Some(6379),
            "amqp" => Some(5672),
            "amqps" => Some(5671),
            "kafka" => Some(9092),
            _ => None,
        }
    }

    /// A query option, e.g. `?max_message_bytes=65536`.
    pub fn option(&self, key: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// A numeric query option, with a clear error when it is not a number.
    pub fn option_num<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, BrokerError> {
        match self.option(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| BrokerError::InvalidUrl {
                url: self.to_string(),
                reason: format!("option {key}={v} is not a valid number"),
            }),
        }
    }

    /// How many deliveries without an acknowledgement a queue or group message gets before it
    /// is dead-lettered (`?max_deliveries=`, [`DEFAULT_MAX_DELIVERIES`] when absent). The one
    /// definition and validation every backend uses: 0 would dead-letter a message before
    /// anyone could read it, so it is refused with the option named.
    pub fn max_deliveries(&self) -> Result<u32, BrokerError> {
        match self.option_num::<u32>("max_deliveries")? {
            None => Ok(DEFAULT_MAX_DELIVERIES),
            Some(0) => Err(BrokerError::InvalidUrl {
                url: self.to_string(),
                reason: format!(
                    "option max_deliveries=0: a message must be deliverable at least once \
                     (the default is {DEFAULT_MAX_DELIVERIES})"
                ),
            }),
            Some(n) => Ok(n),
        }
    }

    /// The maximum encoded message size for this connection (`?max_message_bytes=`).
    pub fn max_message_bytes(&self) -> Result<usize, BrokerError> {
        Ok(self
            .option_num("max_message_bytes")?
            .unwrap_or(crate::MAX_MESSAGE_BYTES))
    }

    /// The URL without the charla-only query options, for client libraries that reject
    /// unknown ones.
    pub fn without_options(&self, charla_options: &[&str]) -> url::Url {
        let mut url = self.url.clone();
        let kept: Vec<(String, String)> = self
            .url
            .query_pairs()
            .filter(|(k, _)| !charla_options.contains(&k.as_ref()) && k != "max_message_bytes")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        url
    }
}

/// Displays with the password replaced by `***`, so URLs can be logged.
impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(self.url.as_str()))
    }
}

/// What replaces a password wherever a URL is shown.
pub const REDACTED: &str = "***";

/// `text` with the password of its URL replaced by `***`, for errors, logs and output.
///
/// Textual, so that it works on text that is not a valid URL too (that is exactly when a URL
/// ends up in an error message) and on text the `url` crate would split differently from
/// what the user meant (`redis://:p@ss/w@rd@host`): everything between the scheme's `://`
/// (or the start) and the last `@` is the user-info, and what follows its first `:` is
/// hidden. With no `:` the user-info is a user name and is kept when the text has a scheme
/// (`redis://user@host`); a bare `secret@host` is hidden whole. An `@` in a path or query
/// may make it hide more than the password, never less.
pub fn redact(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(i) => (&text[..i + 3], &text[i + 3..]),
        None => ("", text),
    };
    let Some(at) = rest.rfind('@') else {
        return text.to_owned();
    };
    let (userinfo, host) = (&rest[..at], &rest[at..]);
    match userinfo.find(':') {
        Some(colon) => format!("{scheme}{}:{REDACTED}{host}", &userinfo[..colon]),
        None if !scheme.is_empty() => text.to_owned(),
        None => format!("{REDACTED}{host}"),
    }
}

/// The broker URL `text` with `password` put in it (percent-encoded as needed): how a password
/// from `CHARLA_PASSWORD` or `--password-file` reaches the backend without ever being in
/// argv. A URL that already has a password is an error (two sources, one would be ignored),
/// as is a URL that cannot hold one.
pub fn with_password(text: &str, password: &str) -> Result<String, BrokerError> {
    let invalid = |reason: &str| BrokerError::InvalidUrl {
        url: redact(text),
        reason: reason.to_owned(),
    };
    let mut url = BrokerUrl::parse(text)?.url;
    if url.password().is_some() {
        return Err(invalid(
            "the URL has a password and one was given apart (CHARLA_PASSWORD or \
             --password-file): give it once",
        ));
    }
    url.set_password(Some(password))
        .map_err(|()| invalid("this URL cannot carry a password"))?;
    Ok(url.into())
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_pick_backends() {
        let cases = [
            ("redis://127.0.0.1:6380", BackendKind::Redis),
            ("rediss://:pw@example.com/2", BackendKind::Redis),
            ("amqp://guest:guest@127.0.0.1:5672/%2f", BackendKind::Amqp),
            ("kafka://127.0.0.1:9092", BackendKind::Kafka),
            ("memory://", BackendKind::Memory),
        ];
        for (text, kind) in cases {
            assert_eq!(BrokerUrl::parse(text).unwrap().kind(), kind, "{text}");
        }
    }

    #[test]
    fn bad_urls_say_why() {
        let err = BrokerUrl::parse("http://x").unwrap_err().to_string();
        assert!(err.contains("unknown scheme 'http://'"), "{err}");
        let err = BrokerUrl::parse("127.0.0.1:6380").unwrap_err().to_string();
        assert!(err.contains("invalid broker URL"), "{err}");
        let err = BrokerUrl::parse("redis://h?max_message_bytes=lots")
            .unwrap()
            .max_message_bytes()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid number"), "{err}");
    }

    #[test]
    fn redact_hides_the_password_of_valid_and_invalid_urls() {
        let cases = [
            ("redis://:secret@h:1/2", "redis://:***@h:1/2"),
            ("amqp://guest:secret@h/%2f", "amqp://guest:***@h/%2f"),
            ("redis://h:1", "redis://h:1"),
            ("redis://user@h:1", "redis://user@h:1"),
            // Not URLs: bad port, spaces, no scheme, an unescaped '@' in the password.
            ("redis://:secret@h:99999", "redis://:***@h:99999"),
            ("redis://:sec ret@h :1", "redis://:***@h :1"),
            (":secret@h:1", ":***@h:1"),
            ("secret@h:1", "***@h:1"),
            ("redis://:p@ss/w@rd@h:1", "redis://:***@h:1"),
            ("not a url", "not a url"),
        ];
        for (text, shown) in cases {
            assert_eq!(redact(text), shown, "{text}");
            assert!(!redact(text).contains("secret"), "{text}");
        }
        let err = BrokerUrl::parse("redis://:secret@h:99999")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret") && err.contains(":***@"), "{err}");
    }

    #[test]
    fn with_password_merges_once() {
        let merged = with_password("redis://h:1/2", "s3c:r@t/").unwrap();
        let u = BrokerUrl::parse(&merged).unwrap();
        assert_eq!(u.url().password(), Some("s3c%3Ar%40t%2F"));
        assert!(!u.to_string().contains("s3c"));
        assert!(with_password("redis://:a@h", "b").is_err());
        let err = with_password("redis://:a@h:99999", "b")
            .unwrap_err()
            .to_string();
        assert!(!err.contains(":a@"), "{err}");
    }

    #[test]
    fn password_is_redacted_and_address_has_default_port() {
        let u = BrokerUrl::parse("redis://:secret@localhost/1").unwrap();
        assert!(!u.to_string().contains("secret"));
        assert_eq!(u.address(), "localhost:6379");
        let u = BrokerUrl::parse("redis://h:1/?consumer_ttl_ms=5&db=2").unwrap();
        assert_eq!(
            u.without_options(&["consumer_ttl_ms"]).as_str(),
            "redis://h:1/?db=2"
        );
    }
}
