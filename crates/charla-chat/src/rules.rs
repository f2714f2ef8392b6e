//! What the chats accept from people, the same in the terminal, the page and the API.
//!
//! A refusal is a [`Refusal`]: which rule, with the character or the numbers it names. Each
//! has a catalogue line ([`Refusal::said`]) that every screen puts into its listener's
//! language; its `Display` is English, for logs.

use charla_i18n::Said;

/// What a rule refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a room every backend accepts.
    #[error("room '{room}': use 1 to 64 letters, digits, '.', '_' or '-'")]
    Room { room: String },
    /// Empty, or longer than `max` characters.
    #[error("name: use 1 to {max} characters")]
    NameLength { max: usize },
    #[error("name: {code} is a control character; remove it")]
    NameControl { code: String },
    #[error(
        "name: {code} changes the direction of the text around it (it can make a name look \
         like another); remove it"
    )]
    NameBidi { code: String },
    #[error(
        "name: {code} is an invisible character (it makes a name look like another); remove it"
    )]
    NameInvisible { code: String },
    /// A check mark, kept for verified names.
    #[error("name: {mark} is kept for the mark of a verified name; remove it")]
    NameMark { mark: char },
    /// More than `max` combining marks on one letter.
    #[error("name: at most {max} accents or marks on one letter")]
    NameMarks { max: usize },
    #[error("the message is empty")]
    TextEmpty,
    #[error("the message has {len} bytes; the limit is {max}")]
    TextTooLong { len: usize, max: usize },
}

impl Refusal {
    /// The catalogue id of this refusal's line.
    pub fn id(&self) -> &'static str {
        match self {
            Refusal::Room { .. } => "rule-room",
            Refusal::NameLength { .. } => "rule-name-length",
            Refusal::NameControl { .. } => "rule-name-control",
            Refusal::NameBidi { .. } => "rule-name-bidi",
            Refusal::NameInvisible { .. } => "rule-name-invisible",
            Refusal::NameMark { .. } => "rule-name-mark",
            Refusal::NameMarks { .. } => "rule-name-marks",
            Refusal::TextEmpty => "rule-text-empty",
            Refusal::TextTooLong { .. } => "rule-text-long",
        }
    }

    /// The line with its arguments, for the listener's language (`said().in_lang(lang)`).
    pub fn said(&self) -> Said {
        let said = Said::new(self.id());
        match self {
            Refusal::Room { room } => said.arg("room", charla_core::visible(room)),
            Refusal::NameLength { max } | Refusal::NameMarks { max } => said.arg("max", max),
            Refusal::NameControl { code }
            | Refusal::NameBidi { code }
            | Refusal::NameInvisible { code } => said.arg("code", code),
            Refusal::NameMark { mark } => said.arg("code", mark),
            Refusal::TextEmpty => said,
            Refusal::TextTooLong { len, max } => said.arg("len", len).arg("max", max),
        }
    }
}

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// Longest message text by default, in bytes of UTF-8: a chat line, far below the broker's
/// own message limit.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 4096;

/// A room name every backend accepts (Kafka's topic rules are the narrowest): 1 to 64 ASCII
/// letters, digits, '.', '_' or '-'; not the presence room.
pub fn check_room(room: &str) -> Result<(), Refusal> {
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
        Err(Refusal::Room {
            room: room.to_owned(),
        })
    }
}

/// Most combining marks (accents, vowel signs, variation selectors) in a row in a name: enough
/// for every script's letters (Vietnamese stacks two), too few for a "Zalgo" tower that draws
/// over the lines around it.
pub const MAX_COMBINING_RUN: usize = 2;

/// Characters that change the direction of the text around them (Unicode bidi controls): a
/// name "Ana\u{202E}gnp.exe" would show as "Anaexe.png", and "\u{202E}nauJ" as "Juan".
const BIDI_CONTROLS: &[(char, char)] = &[
    ('\u{202A}', '\u{202E}'),
    ('\u{2066}', '\u{2069}'),
    ('\u{200E}', '\u{200F}'),
    ('\u{061C}', '\u{061C}'),
];

/// Characters that draw nothing (zero-width, invisible, fillers): "Vic\u{200B}" looks exactly
/// like "Vic" and is another name.
const INVISIBLE: &[(char, char)] = &[
    ('\u{200B}', '\u{200D}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{00AD}', '\u{00AD}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FFA0}', '\u{FFA0}'),
];

/// Check marks: the chats draw one beside a name that was proved (`verificado`), so no name
/// may contain one ("Vic ✓" typed by anybody would look proved).
const CHECK_MARKS: &[(char, char)] = &[
    ('\u{2713}', '\u{2714}'),
    ('\u{2705}', '\u{2705}'),
    ('\u{2611}', '\u{2611}'),
    ('\u{1F5F8}', '\u{1F5F8}'),
];

/// Whether `c` draws nothing or turns the text around it (bidi controls, zero-width and
/// invisible characters): what a name may not hold, and what a shown file name loses.
pub fn is_invisible(c: char) -> bool {
    in_ranges(c, BIDI_CONTROLS) || in_ranges(c, INVISIBLE)
}

fn in_ranges(c: char, ranges: &[(char, char)]) -> bool {
    ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// A name as it is shown and compared: trimmed, in Unicode NFC (an "é" typed as one character
/// or as "e" and an accent is one name), 1 to `max` characters, without control characters,
/// bidi controls, invisible characters, check marks, or more than [`MAX_COMBINING_RUN`] combining marks in
/// a row. The refusal says which rule, and which character, so a person can act on it.
pub fn check_name(name: &str, max: usize) -> Result<String, Refusal> {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;

    let name: String = name.trim().nfc().collect();
    let count = name.chars().count();
    if count == 0 || count > max {
        return Err(Refusal::NameLength { max });
    }
    let mut run = 0;
    for c in name.chars() {
        let code = || format!("U+{:04X}", u32::from(c));
        if c.is_control() {
            return Err(Refusal::NameControl { code: code() });
        }
        if in_ranges(c, BIDI_CONTROLS) {
            return Err(Refusal::NameBidi { code: code() });
        }
        if in_ranges(c, INVISIBLE) {
            return Err(Refusal::NameInvisible { code: code() });
        }
        if in_ranges(c, CHECK_MARKS) {
            return Err(Refusal::NameMark { mark: c });
        }
        run = if is_combining_mark(c) { run + 1 } else { 0 };
        if run > MAX_COMBINING_RUN {
            return Err(Refusal::NameMarks {
                max: MAX_COMBINING_RUN,
            });
        }
    }
    Ok(name)
}

/// Message text: not empty, at most `max` bytes.
pub fn check_text(text: &str, max: usize) -> Result<(), Refusal> {
    if text.trim().is_empty() {
        return Err(Refusal::TextEmpty);
    }
    if text.len() > max {
        return Err(Refusal::TextTooLong {
            len: text.len(),
            max,
        });
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
        assert!(check_name("   ", 32).is_err());
        assert!(check_text("hola", 10).is_ok());
        assert!(check_text("   ", 10).is_err());
        assert!(check_text("12345678901", 10).is_err());
    }

    #[test]
    fn names_are_nfc_and_refuse_bidi_invisible_and_mark_towers() {
        // "é" as e + U+0301 is the same name as the precomposed "é".
        assert_eq!(check_name("Jose\u{301}", 32).as_deref(), Ok("José"));
        assert_eq!(check_name("Jose\u{301}", 32), check_name("José", 32));
        // Counted after normalising: 4 characters, not 5.
        assert!(check_name("Jose\u{301}", 4).is_ok());
        for bidi in [
            "Ana\u{202E}gnp.exe",
            "\u{202E}nauJ",
            "a\u{2066}b",
            "a\u{200F}",
            "\u{61C}x",
        ] {
            let e = check_name(bidi, 32).unwrap_err().to_string();
            assert!(e.contains("direction"), "{bidi:?}: {e}");
        }
        for hidden in [
            "Vic\u{200B}",
            "V\u{200D}ic",
            "\u{FEFF}Vic",
            "Vi\u{AD}c",
            "Vic\u{2063}",
            "\u{180E}Vic",
            "\u{3164}",
        ] {
            let e = check_name(hidden, 32).unwrap_err().to_string();
            assert!(e.contains("invisible"), "{hidden:?}: {e}");
        }
        // Two marks on a letter (Vietnamese "ệ" decomposes to e + two marks) pass; three fail.
        assert!(check_name("Nguy\u{1EC5}n", 32).is_ok());
        assert!(check_name("x\u{323}\u{302}", 32).is_ok());
        let e = check_name("Z\u{300}\u{301}\u{302}\u{303}", 32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("marks"), "{e}");
        assert!(check_name("❤\u{FE0F} Ana", 32).is_ok());
        let e = check_name("Vic ✓", 32).unwrap_err().to_string();
        assert!(e.contains("verified"), "{e}");
    }
}
