//! The catalogues: one Fluent file per language, compiled into the binary and parsed once.
//!
//! Why Fluent rather than format strings in code: a translator edits one file per language,
//! a line can reorder its placeables (`{ $name }`) as the language needs, and a test can
//! check that both files carry the same messages.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::sync::LazyLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use fluent_syntax::ast::Entry;

/// The catalogue files, beside `Cargo.toml` under `locales/<lang>/charla.ftl`.
pub(crate) const SOURCES: [(&str, &str); 2] = [
    ("en", include_str!("../locales/en/charla.ftl")),
    ("es", include_str!("../locales/es/charla.ftl")),
];

/// One language's messages.
pub(crate) struct Catalogue {
    bundle: FluentBundle<FluentResource>,
    /// Every message id, in file order: for the page's strings and the catalogue tests.
    ids: Vec<String>,
    /// Parse errors, as text: empty for a good file (a test checks both).
    pub(crate) errors: Vec<String>,
}

/// The catalogues in the order of [`SOURCES`], parsed on first use.
pub(crate) static CATALOGUES: LazyLock<[Catalogue; 2]> =
    LazyLock::new(|| SOURCES.map(|(code, text)| Catalogue::parse(code, text)));

impl Catalogue {
    fn parse(code: &str, text: &str) -> Catalogue {
        // A broken line is reported by the tests; at run time the rest of the file still serves.
        let (resource, mut errors) = match FluentResource::try_new(text.to_owned()) {
            Ok(r) => (r, Vec::new()),
            Err((r, errs)) => (r, errs.iter().map(|e| format!("{e:?}")).collect()),
        };
        let ids = resource
            .entries()
            .filter_map(|e| match e {
                Entry::Message(m) => Some(m.id.name.to_owned()),
                _ => None,
            })
            .collect();
        let langid = code.parse().unwrap_or_default();
        let mut bundle = FluentBundle::new_concurrent(vec![langid]);
        // No Unicode isolation marks around placeables: the output goes to terminals, pipes
        // and the seed's exact lines (`📤 Enviado: [Juan] Hola`), where they would be bytes
        // nobody sees and comparisons would fail on.
        bundle.set_use_isolating(false);
        if let Err(errs) = bundle.add_resource(resource) {
            errors.extend(errs.iter().map(|e| format!("{e:?}")));
        }
        Catalogue {
            bundle,
            ids,
            errors,
        }
    }

    /// The message `id` with `args` filled in, or `None` when this catalogue lacks it.
    pub(crate) fn format(&self, id: &str, args: &[(&str, &dyn Display)]) -> Option<String> {
        let message = self.bundle.get_message(id)?;
        let pattern = message.value()?;
        let mut fluent_args = FluentArgs::new();
        for (name, value) in args {
            fluent_args.set(*name, value.to_string());
        }
        let mut errors = Vec::new();
        // A missing argument shows as `{$name}` in the text: what the page's strings rely on
        // (it fills them in itself).
        let text = self
            .bundle
            .format_pattern(pattern, Some(&fluent_args), &mut errors);
        Some(text.into_owned())
    }

    pub(crate) fn has(&self, id: &str) -> bool {
        self.bundle.has_message(id)
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }

    pub(crate) fn id_set(&self) -> BTreeSet<&str> {
        self.ids().collect()
    }
}
