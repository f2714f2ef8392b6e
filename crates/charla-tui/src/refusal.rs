//! What the chat rules (charla-chat's `check_name`, `check_room`, `check_text`) refuse, said in
//! the screen's language.
//!
//! The rules answer with a typed [`Refusal`] that names its catalogue line and arguments; here,
//! at the screen, it becomes that line in the screen's language (the English `Display` is for
//! logs).

use charla_chat::Refusal;
use charla_i18n::Lang;

/// `refusal` in `lang`.
pub fn said(lang: Lang, refusal: &Refusal) -> String {
    refusal.said().in_lang(lang)
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
            assert!(Lang::Es.has(refusal.id()), "no line for {refusal}");
            let es = said(Lang::Es, &refusal);
            for english in ["name", "room", "remove", "use 1", "message", "limit", "{"] {
                assert!(
                    !es.contains(english),
                    "{english:?} in {es:?} (from {refusal:?})"
                );
            }
            assert!(!said(Lang::En, &refusal).contains('{'), "{refusal}");
        }
        let bidi = charla_chat::check_name("Ana\u{202E}x", 32).expect_err("refused");
        assert!(said(Lang::Es, &bidi).contains("U+202E"));
        let long = charla_chat::check_text("0123456789ab", 10).expect_err("refused");
        assert!(said(Lang::Es, &long).contains("12 bytes; el límite es 10"));
    }
}
