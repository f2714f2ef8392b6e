//! charla-i18n: the languages charla speaks, English and Spanish, from one Fluent catalogue
//! per language (`locales/<lang>/charla.ftl`).
//!
//! Every line charla shows a person comes from here: the binary's output and `--help`, the
//! terminal chat, and the web page's strings (served by the gateway). A leaf crate: it
//! depends on no other charla crate, so every front end can use it.
//!
//! ```
//! use charla_i18n::Lang;
//! assert_eq!(Lang::Es.sent("Juan", "Hola"), "📤 Enviado: [Juan] Hola");
//! assert_eq!(Lang::En.tr("bye", &[]), "👋 Bye!");
//! ```

// In layers: `said` (a line not yet in a language) reads `lang` (choosing, lookups), which
// reads `catalogue` (the parsed files).
mod catalogue;
mod lang;
mod said;

pub use lang::{Lang, RULE_DOUBLE, RULE_SINGLE};
pub use said::Said;

/// What is wrong with the catalogues: parse errors, and ids one language has and the other
/// lacks. Empty when both are complete (the crate's tests require it).
pub fn catalogue_problems() -> Vec<String> {
    let cats = &*catalogue::CATALOGUES;
    let mut problems = Vec::new();
    for ((code, _), cat) in catalogue::SOURCES.iter().zip(cats.iter()) {
        problems.extend(cat.errors.iter().map(|e| format!("{code}: {e}")));
    }
    let [en, es] = [cats[0].id_set(), cats[1].id_set()];
    problems.extend(en.difference(&es).map(|id| format!("es lacks {id}")));
    problems.extend(es.difference(&en).map(|id| format!("en lacks {id}")));
    problems
}
