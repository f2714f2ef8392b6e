//! [`Said`]: a line for a person, decided before its language is known.
//!
//! A library (the chat rules, the web gateway's checks) knows *what* to say but not to whom:
//! the terminal speaks the `--lang` of its user, each page and API client the language its
//! request asked for. So a reason travels as a catalogue id with its arguments, and is put
//! into words where the listener is known ([`Said::in_lang`]). Its `Display` is the English
//! line, for logs and for programs that asked for no language.

use std::fmt;

use crate::Lang;

/// A catalogue message not yet in a language: its id and its arguments (as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    id: &'static str,
    args: Vec<(&'static str, Arg)>,
}

/// An argument: text as it is (a name, a number, a broker's own words), or a line of its own
/// that is put into the same language as the line around it (a rule's refusal inside the
/// gateway's "the token's sub: …").
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    Text(String),
    Said(Box<Said>),
}

impl Said {
    /// The message `id` (of both catalogues), without arguments so far.
    pub fn new(id: &'static str) -> Said {
        Said {
            id,
            args: Vec::new(),
        }
    }

    /// With the argument `{ $name }` set to `value`.
    pub fn arg(mut self, name: &'static str, value: impl fmt::Display) -> Said {
        self.args.push((name, Arg::Text(value.to_string())));
        self
    }

    /// With the argument `{ $name }` set to another line, said in the same language.
    pub fn arg_said(mut self, name: &'static str, value: Said) -> Said {
        self.args.push((name, Arg::Said(Box::new(value))));
        self
    }

    /// The catalogue id.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// The arguments' names and their text in `lang`, in the order they were set.
    pub fn args(&self, lang: Lang) -> Vec<(&'static str, String)> {
        self.args
            .iter()
            .map(|(name, value)| match value {
                Arg::Text(text) => (*name, text.clone()),
                Arg::Said(said) => (*name, said.in_lang(lang)),
            })
            .collect()
    }

    /// The line in `lang`.
    pub fn in_lang(&self, lang: Lang) -> String {
        let args = self.args(lang);
        let args: Vec<(&str, &dyn fmt::Display)> = args
            .iter()
            .map(|(name, value)| (*name, value as &dyn fmt::Display))
            .collect();
        lang.tr(self.id, &args)
    }
}

impl fmt::Display for Said {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.in_lang(Lang::En))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn said_in_each_language_and_english_by_default() {
        let said = Said::new("rule-text-long").arg("len", 12).arg("max", 10);
        assert_eq!(said.to_string(), said.in_lang(Lang::En));
        assert!(said.in_lang(Lang::En).contains("12"));
        assert!(said.in_lang(Lang::Es).contains("límite es 10"));
        assert_eq!(said.id(), "rule-text-long");
        let nested = Said::new("error-line").arg_said("reason", Said::new("rule-text-empty"));
        assert!(nested.in_lang(Lang::Es).contains("el mensaje está vacío"));
    }
}
