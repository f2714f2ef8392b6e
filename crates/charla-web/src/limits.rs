//! What one page may do: message size, posting rate, how far it may fall behind.

use std::time::{Duration, Instant};

/// The gateway's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest message text, in bytes (UTF-8).
    pub max_text_bytes: usize,
    /// Longest name, in characters.
    pub max_name_chars: usize,
    /// Messages a page may post per second, sustained.
    pub posts_per_sec: f64,
    /// Messages a page may post in a burst.
    pub burst: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_bytes: 4096,
            max_name_chars: 32,
            posts_per_sec: 5.0,
            burst: 20.0,
        }
    }
}

/// A token bucket: `burst` posts at once, then `rate` per second.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Bucket {
            tokens: burst,
            rate,
            burst,
            last: Instant::now(),
        }
    }

    /// Take one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next token.
    pub fn wait(&self) -> Duration {
        if self.tokens >= 1.0 || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

pub use charla_chat::check_room;

/// A name: 1 to `max` characters, no control characters, trimmed.
pub fn check_name(name: &str, max: usize) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > max || name.chars().any(char::is_control) {
        return Err(format!(
            "name: use 1 to {max} characters, without control characters"
        ));
    }
    Ok(name.to_owned())
}

/// Message text: not empty, at most `max` bytes.
pub fn check_text(text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the message is empty".into());
    }
    if text.len() > max {
        return Err(format!(
            "the message has {} bytes; the limit is {max}",
            text.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2.0, 3.0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(b.wait() > Duration::ZERO);
        assert!(b.take(t0 + Duration::from_millis(510)));
        assert!(!b.take(t0 + Duration::from_millis(520)));
    }

    #[test]
    fn names_rooms_and_texts_are_checked() {
        assert!(check_room("sala-1.general_x").is_ok());
        for bad in [
            "",
            ".",
            "con espacio",
            "ñ",
            "a/b",
            "charla.presence",
            &"x".repeat(65),
        ] {
            assert!(check_room(bad).is_err(), "{bad}");
        }
        assert_eq!(check_name("  María 👋 ", 32).as_deref(), Ok("María 👋"));
        assert!(check_name("a\u{1b}[31m", 32).is_err());
        assert!(check_name("", 32).is_err());
        assert!(check_text("hola", 10).is_ok());
        assert!(check_text("   ", 10).is_err());
        assert!(check_text("12345678901", 10).is_err());
    }
}
