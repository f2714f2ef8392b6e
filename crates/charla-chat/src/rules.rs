//! What the chats accept from people, the same in the terminal, the page and the API.

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// Longest message text by default, in bytes of UTF-8: a chat line, far below the broker's
/// own message limit.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 4096;

/// A room name every backend accepts (Kafka's topic rules are the narrowest): 1 to 64 ASCII
/// letters, digits, '.', '_' or '-'; not the presence room.
pub fn check_room(room: &str) -> Result<(), String> {
    let ok = !room.is_empty()
        && room.len() <= 64
        && room != "."
        && room != ".."
        && room != charla_core::presence::PRESENCE_ROOM
        && room
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "room '{}': use 1 to 64 letters, digits, '.', '_' or '-'",
            charla_core::visible(room)
        ))
    }
}

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
