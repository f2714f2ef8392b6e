//! What one client may do: message size, posting and reading rates (kept per client in
//! [`crate::client`]), how far a page may fall behind.

use std::time::{Duration, Instant};

/// Default of [`Limits::reads_per_sec`].
pub const READS_PER_SEC: f64 = 10.0;

/// Default of [`Limits::read_burst`].
pub const READ_BURST: f64 = 60.0;

/// The gateway's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest message text, in bytes (UTF-8).
    pub max_text_bytes: usize,
    /// Longest name, in characters.
    pub max_name_chars: usize,
    /// Messages a client (all its pages and its API posts together) may post per second,
    /// sustained.
    pub posts_per_sec: f64,
    /// Messages a client may post in a burst.
    pub burst: f64,
    /// `GET /api/…` requests a client may make per second, sustained (looser than posts: a
    /// page polls the room list, and reads older pages).
    pub reads_per_sec: f64,
    /// `GET /api/…` requests a client may make in a burst.
    pub read_burst: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_bytes: charla_chat::DEFAULT_MAX_TEXT_BYTES,
            max_name_chars: charla_chat::MAX_NAME_CHARS,
            posts_per_sec: 5.0,
            burst: 20.0,
            reads_per_sec: READS_PER_SEC,
            read_burst: READ_BURST,
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

    /// Whether the bucket has refilled by `now` (a new one would be the same).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.tokens + elapsed.as_secs_f64() * self.rate >= self.burst
    }

    /// How long until the next token.
    pub fn wait(&self) -> Duration {
        if self.tokens >= 1.0 || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

pub use charla_chat::{check_name, check_room, check_text};

/// Raise this process's soft limit on open files to its hard limit (each page is a socket,
/// and many systems start processes at 1 024). Returns the limit in force afterwards, soft
/// then hard.
pub fn raise_open_files() -> std::io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((limit.rlim_cur, limit.rlim_max))
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
}
