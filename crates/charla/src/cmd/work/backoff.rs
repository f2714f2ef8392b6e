//! `charla work --backoff MIN..MAX`: the wait before a retry, MIN doubled per failed attempt,
//! at most MAX, times a random factor in 0.5..1.5 so that workers that failed together do not
//! retry together (Sidekiq's and River's jitter, for the same reason).

use std::time::Duration;

use super::super::duration_arg as duration;

/// `--backoff MIN..MAX`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt `attempt` (1-based), jitter included.
    pub(super) fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(40);
        let base = self
            .min
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        base.mul_f64(0.5 + random_unit())
    }
}

pub(super) fn backoff(text: &str) -> Result<Backoff, String> {
    let (min, max) = text
        .split_once("..")
        .ok_or_else(|| format!("'{text}': expected MIN..MAX, such as 1s..5m"))?;
    let (min, max) = (duration(min)?, duration(max)?);
    if min > max || min.is_zero() {
        return Err(format!("'{text}': MIN must be above 0 and at most MAX"));
    }
    Ok(Backoff { min, max })
}

/// A number in 0..1 without a random-number crate: std's hasher keys are random per process,
/// and a counter makes each call differ.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max_with_jitter() {
        let b = backoff("1s..5m").expect("parses");
        for _ in 0..100 {
            let first = b.delay(1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(1500));
            let third = b.delay(3);
            assert!(third >= Duration::from_secs(2) && third <= Duration::from_secs(6));
            let late = b.delay(30);
            assert!(late >= Duration::from_secs(150) && late <= Duration::from_secs(450));
        }
        assert!(backoff("5m..1s").is_err());
        assert!(backoff("1s").is_err());
        assert!(backoff("0s..1s").is_err());
    }
}
