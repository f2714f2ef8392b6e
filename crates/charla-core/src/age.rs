//! Ages and retention periods written as people write them: `7d`, `12h`, `30m`, `90s`,
//! `500ms` (Redis stream retention `?stream_max_age=`, `listen --since 10m`).

use std::time::Duration;

/// `7d`, `12h`, `30m`, `90s`, `500ms`, or a bare number of seconds; `None` for anything else
/// (or an age too large to represent).
pub fn parse_age(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.checked_mul(ms)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_in_the_usual_units() {
        assert_eq!(parse_age("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_age("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_age("3w"), None);
        assert_eq!(parse_age("h"), None);
        assert_eq!(parse_age("99999999999999999999d"), None);
    }
}
