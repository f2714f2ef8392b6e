//! Text from other people, made safe to show on a terminal.

/// `text` as it may reach a terminal: control characters (C0, DEL, C1) and the Unicode
/// bidirectional overrides are shown as visible escapes (`\x1b`, `\r`, `\n`, `\t`,
/// `\u{202e}`), so a message cannot retitle the window, recolour or clear the screen, ring the
/// bell, overwrite a line with `\r`, fake a second "received" line with `\n`, or reorder what
/// the reader sees. Backslashes are left as they are: a literal `\n` typed by a sender shows the
/// same as an escaped newline, which is harmless, and chat text keeps `C:\dir` readable.
/// JSON output does not go through here: it stays exact.
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    fn hidden(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hidden(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(visible("hola ñ 👋 C:\\dir"), "hola ñ 👋 C:\\dir");
        assert_eq!(
            visible("a\x1b]0;pwned\x07b\rc\nd\te\u{7f}\u{9b}\u{202e}"),
            "a\\x1b]0;pwned\\x07b\\rc\\nd\\te\\x7f\\u{9b}\\u{202e}"
        );
    }
}
