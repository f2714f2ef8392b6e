//! What the chat rules (charla-chat's `check_name`, `check_room`, `check_text`) refuse, said in
//! the screen's language.
//!
//! The rules are a library's and answer in English; here, at the screen, each kind of refusal
//! becomes a catalogue line, with the character or the numbers the rule named. A refusal of a
//! kind not known here is shown as the library said it (a test feeds every kind through).

use charla_i18n::Lang;

/// `refusal` (a rule's English words) in `lang`.
pub fn said(lang: Lang, refusal: &str) -> String {
    let code = refusal
        .split_whitespace()
        .find(|w| w.starts_with("U+"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .unwrap_or_default();
    let numbers: Vec<&str> = refusal
        .split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
        .collect();
    let first = numbers.first().copied().unwrap_or_default();
    let second = numbers.get(1).copied().unwrap_or_default();
    let id = if refusal.starts_with("room ") {
        "rule-room"
    } else if refusal.contains("control character") {
        "rule-name-control"
    } else if refusal.contains("direction") {
        "rule-name-bidi"
    } else if refusal.contains("invisible") {
        "rule-name-invisible"
    } else if refusal.contains("verified") {
        "rule-name-mark"
    } else if refusal.contains("accents") {
        "rule-name-marks"
    } else if refusal.starts_with("name:") {
        "rule-name-length"
    } else if refusal.contains("is empty") {
        "rule-text-empty"
    } else if refusal.contains("the limit is") {
        "rule-text-long"
    } else {
        return refusal.to_owned();
    };
    // The numbers a rule names, in its order: name length (the most), accents (the most),
    // text (its size, then the limit).
    lang.tr(
        id,
        &[("code", &code), ("first", &first), ("second", &second)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_refusal_is_said_in_both_languages() {
        let refusals = [
            charla_chat::check_room("con espacio").err(),
            charla_chat::check_name("", 32).err(),
            charla_chat::check_name("Ana\u{7}", 32).err(),
            charla_chat::check_name("Ana\u{202E}gnp.exe", 32).err(),
            charla_chat::check_name("A\u{200B}na", 32).err(),
            charla_chat::check_name("Vic ✓", 32).err(),
            charla_chat::check_name("Z\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}", 32).err(),
            charla_chat::check_text("  ", 10).err(),
            charla_chat::check_text("0123456789ab", 10).err(),
        ];
        for refusal in refusals {
            let refusal = refusal.expect("each of these is refused");
            let es = said(Lang::Es, &refusal);
            assert_ne!(es, refusal, "not known here: {refusal}");
            for english in ["name:", "room '", "remove", "use 1", "message", "limit"] {
                assert!(
                    !es.contains(english),
                    "{english:?} in {es:?} (from {refusal:?})"
                );
            }
            assert!(!said(Lang::En, &refusal).contains("rule-"), "{refusal}");
        }
        assert!(said(
            Lang::Es,
            &charla_chat::check_name("Ana\u{202E}x", 32)
                .err()
                .unwrap_or_default()
        )
        .contains("U+202E"));
    }
}
