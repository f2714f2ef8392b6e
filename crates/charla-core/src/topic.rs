//! Routing patterns, one language on every backend: AMQP topic syntax.
//!
//! A topic is words separated by dots (`app.error.database`). In a pattern `*` stands for
//! exactly one word and `#` for zero or more words. Backends whose native matching differs
//! (Redis globs, where `*` also crosses dots) subscribe with a wider native pattern and filter
//! with [`matches`], so `room.*` means the same thing on Redis, RabbitMQ and Kafka.

/// Does `topic` match `pattern`?
pub fn matches(pattern: &str, topic: &str) -> bool {
    let pat: Vec<&str> = pattern.split('.').collect();
    let words: Vec<&str> = topic.split('.').collect();
    match_words(&pat, &words)
}

fn match_words(pat: &[&str], words: &[&str]) -> bool {
    match pat.split_first() {
        None => words.is_empty(),
        Some((&"#", rest)) => (0..=words.len()).any(|skip| match_words(rest, &words[skip..])),
        Some((p, rest)) => match words.split_first() {
            Some((w, wrest)) => (*p == "*" || p == w) && match_words(rest, wrest),
            None => false,
        },
    }
}

/// True when the pattern has wildcards (otherwise it is a plain topic name).
pub fn is_pattern(pattern: &str) -> bool {
    pattern.split('.').any(|w| w == "*" || w == "#")
}

/// A Redis glob that matches at least every topic the pattern matches: each wildcard word
/// becomes `*`, and glob metacharacters in literal words are escaped.
pub fn to_redis_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for (i, word) in pattern.split('.').enumerate() {
        if word == "#" {
            // `#` may match zero words, which also removes the dot before it: `a.#` matches `a`.
            if i > 0 && out.ends_with('.') {
                out.pop();
            }
            out.push('*');
        } else if word == "*" {
            out.push('*');
        } else {
            for c in word.chars() {
                if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        out.push('.');
    }
    out.pop();
    out
}

/// A regular expression (anchored) equivalent to the pattern, for Kafka's regex subscriptions.
pub fn to_regex(pattern: &str) -> String {
    let mut out = String::from("^");
    for (i, word) in pattern.split('.').enumerate() {
        let sep = if i > 0 { "\\." } else { "" };
        match word {
            "#" => out.push_str(if i > 0 { "(\\..*)?" } else { ".*" }),
            "*" => {
                out.push_str(sep);
                out.push_str("[^.]+");
            }
            lit => {
                out.push_str(sep);
                for c in lit.chars() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        out.push(c);
                    } else {
                        out.push('\\');
                        out.push(c);
                    }
                }
            }
        }
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_topic_semantics() {
        assert!(matches("app.*", "app.error"));
        assert!(!matches("app.*", "app.error.database"));
        assert!(matches("*.error.*", "app.error.database"));
        assert!(matches("app.error.#", "app.error.database"));
        assert!(matches("app.error.#", "app.error"));
        assert!(matches("#", "anything.at.all"));
        assert!(matches("room.general", "room.general"));
        assert!(!matches("room.general", "room.other"));
        assert!(!matches("app.#.db", "app.x"));
        assert!(matches("app.#.db", "app.x.y.db"));
    }

    #[test]
    fn redis_glob_covers_pattern() {
        assert_eq!(to_redis_glob("room.*"), "room.*");
        assert_eq!(to_redis_glob("app.error.#"), "app.error*");
        assert_eq!(to_redis_glob("a[1].*"), "a\\[1\\].*");
        assert!(is_pattern("a.#"));
        assert!(!is_pattern("a.b"));
    }

    #[test]
    fn regex_form() {
        assert_eq!(to_regex("room.*"), "^room\\.[^.]+$");
        assert_eq!(to_regex("app.error.#"), "^app\\.error(\\..*)?$");
    }
}
