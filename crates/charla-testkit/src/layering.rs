//! Import circles between the modules of a crate, found by reading its sources.
//!
//! A crate's modules should read top-down: no module imports one that (directly or through
//! others) imports it back. Rust allows such circles, and they grow quietly (one convenient
//! `use crate::…` at a time) until no module can be understood or moved without the others.
//! This reads a crate's `src/`, finds every path starting at `crate::` or `super::` (also
//! inside `use …::{a, b}` groups), resolves each to the module that defines it, and reports
//! any cycle by naming it. It is a test, not a lint, so a circle cannot come back unnoticed:
//! `charla-testkit/tests/layering.rs` runs it over every crate of the workspace, and a crate
//! may check its own layers further with [`ImportGraph::imports`]
//! (`charla-server/tests/layering.rs`).
//!
//! What counts as an import: a path written `crate::a::b…` or `super::…` anywhere in a module's
//! code (comments and the `#[cfg(test)] mod …` at the end of a file are left out: unit tests
//! reach into their module's parent by design). A path that names an item a module re-exports
//! (`pub use inner::Thing;`, also at the crate root) is followed to the module it comes from,
//! so a re-export does not hide a circle. A module's own submodules and its ancestors are not
//! imports of it: a parent declares its children, and a child sees its parent's items by
//! design. A file's module path comes from its place under `src/` (`mod.rs`, `lib.rs` and
//! `main.rs` name their directory); `src/bin/` and, next to a `lib.rs`, `main.rs` are other
//! crates and are left out. Not understood (so not counted): glob re-exports, `#[path]`
//! attributes, and modules written inline (`mod m { … }`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Which module imports which, for one crate. Modules are named by their path from the crate
/// root (`"cmd::apply"`; `""` is the root itself).
#[derive(Debug, Clone, Default)]
pub struct ImportGraph {
    /// Module → the modules it imports (never itself, its ancestors or its descendants).
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl ImportGraph {
    /// Read the crate whose sources are in `src_dir` (a crate's `src/`).
    pub fn of_crate(src_dir: &Path) -> std::io::Result<ImportGraph> {
        let modules = read_modules(src_dir)?;
        if modules.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no Rust sources under {}", src_dir.display()),
            ));
        }
        Ok(ImportGraph::of_modules(&modules))
    }

    /// The graph of modules given as module path → source text (tests of this module).
    fn of_modules(modules: &BTreeMap<String, String>) -> ImportGraph {
        let code: BTreeMap<&str, String> = modules
            .iter()
            .map(|(m, text)| (m.as_str(), strip(text)))
            .collect();
        let exports: BTreeMap<&str, BTreeMap<String, Vec<String>>> =
            code.iter().map(|(m, c)| (*m, reexports(m, c))).collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (m, c) in &code {
            let set = edges.entry((*m).to_owned()).or_default();
            for path in paths(m, c) {
                let Some(target) = resolve(&path, &code, &exports) else {
                    continue;
                };
                if !related(m, &target) {
                    set.insert(target);
                }
            }
        }
        ImportGraph { edges }
    }

    /// The modules read, in name order.
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.edges.keys().map(String::as_str)
    }

    /// True when module `from` imports module `to` directly.
    pub fn imports(&self, from: &str, to: &str) -> bool {
        self.edges.get(from).is_some_and(|s| s.contains(to))
    }

    /// An import circle, as the modules along it with the first repeated at the end
    /// (`["cli", "cmd::serve", "config", "cli"]`), or `None` when there is none.
    pub fn cycle(&self) -> Option<Vec<String>> {
        // Depth-first search; state 1 = on the current path, 2 = finished without a cycle.
        fn visit(
            m: &str,
            edges: &BTreeMap<String, BTreeSet<String>>,
            state: &mut BTreeMap<String, u8>,
            path: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            match state.get(m) {
                Some(2) => return None,
                Some(1) => {
                    let at = path.iter().position(|p| p == m).unwrap_or(0);
                    let mut cycle = path[at..].to_vec();
                    cycle.push(m.to_owned());
                    return Some(cycle);
                }
                _ => {}
            }
            state.insert(m.to_owned(), 1);
            path.push(m.to_owned());
            for t in edges.get(m).into_iter().flatten() {
                if let Some(c) = visit(t, edges, state, path) {
                    return Some(c);
                }
            }
            path.pop();
            state.insert(m.to_owned(), 2);
            None
        }
        let mut state = BTreeMap::new();
        self.edges
            .keys()
            .find_map(|m| visit(m, &self.edges, &mut state, &mut Vec::new()))
    }
}

/// A cycle as people read it: `cli -> cmd::serve -> config -> cli` (the root as `crate`).
pub fn describe_cycle(cycle: &[String]) -> String {
    cycle
        .iter()
        .map(|m| if m.is_empty() { "crate" } else { m.as_str() })
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// Fail (panic, naming the crate's sources and the modules of the circle) when a module of
/// the crate in `src_dir` imports one that imports it back; otherwise return the graph, for
/// checks of the crate's own layers.
pub fn assert_no_import_circle(src_dir: &Path) -> ImportGraph {
    let graph = match ImportGraph::of_crate(src_dir) {
        Ok(g) => g,
        Err(e) => panic!("cannot read the sources in {}: {e}", src_dir.display()),
    };
    if let Some(cycle) = graph.cycle() {
        panic!(
            "import circle in {}: {} (each module imports the next; move what they share \
             into a module below both)",
            src_dir.display(),
            describe_cycle(&cycle)
        );
    }
    graph
}

/// Module path → source text, for every `.rs` file of the crate in `src_dir`.
fn read_modules(src_dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let has_lib = src_dir.join("lib.rs").is_file();
    let mut out = BTreeMap::new();
    let mut stack = vec![src_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            if p.is_dir() {
                // src/bin holds other crates (one per binary).
                if p != src_dir.join("bin") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            // Beside a lib.rs, main.rs is the root of another crate that uses the library.
            if has_lib && p == src_dir.join("main.rs") {
                continue;
            }
            let Ok(rel) = p.strip_prefix(src_dir) else {
                continue;
            };
            let mut parts: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let is_root_file = parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main");
            if is_root_file || parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            out.insert(parts.join("::"), std::fs::read_to_string(&p)?);
        }
    }
    Ok(out)
}

/// The code without `//` comments (doc comments included) and without a file's unit tests
/// (from a `#[cfg(test)]` that stands before a `mod`).
fn strip(text: &str) -> String {
    let code: String = text
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n");
    let mut from = 0;
    while let Some(i) = code[from..].find("#[cfg(test)]") {
        let at = from + i;
        let after = code[at + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod ") || after.starts_with("pub mod ") {
            return code[..at].to_owned();
        }
        from = at + 1;
    }
    code
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `module`'s path as segments.
fn segments(module: &str) -> Vec<String> {
    module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Every path starting at `crate::` or `super::` in `module`'s code, as segments from the
/// crate root (`super` is the parent of the module, for a file and for a `mod.rs` alike).
fn paths(module: &str, code: &str) -> Vec<Vec<String>> {
    let here = segments(module);
    let mut starts: Vec<usize> = code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
        .map(|(i, _)| i)
        .filter(|&i| !code[..i].ends_with(|c: char| is_ident(c) || c == ':'))
        .collect();
    starts.sort_unstable();
    let mut found = Vec::new();
    for start in starts {
        let mut tail = &code[start..];
        let mut segs = here.clone();
        if let Some(t) = tail.strip_prefix("crate::") {
            segs.clear();
            tail = t;
        }
        while let Some(t) = tail.strip_prefix("super::") {
            segs.pop();
            tail = t;
        }
        found.extend(follow(segs, tail));
    }
    found
}

/// The path continuing `segs` in `tail` (`a::b::{c, d}` …), one or more of them for a group.
fn follow(mut segs: Vec<String>, mut tail: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    loop {
        let n = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        if n == 0 {
            break;
        }
        segs.push(tail[..n].to_owned());
        tail = &tail[n..];
        let Some(t) = tail.strip_prefix("::") else {
            break;
        };
        if let Some(group) = t.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| is_ident(*c)).collect();
                if !name.is_empty() && name != "self" {
                    let mut p = segs.clone();
                    p.push(name);
                    found.push(p);
                }
            }
            break;
        }
        tail = t;
    }
    found.push(segs);
    found
}

/// What `module` re-exports by name (`pub use a::b::Thing;`, `pub(crate) use a::{B, C as D};`):
/// the exported name → the path it stands for, from the crate root. A path starting at a
/// child module (`pub use inner::Thing`) or at `self::` is taken from `module`; paths into
/// other crates are kept too and simply resolve to nothing.
fn reexports(module: &str, code: &str) -> BTreeMap<String, Vec<String>> {
    let here = segments(module);
    let mut out = BTreeMap::new();
    let starts = code
        .match_indices("pub")
        .map(|(i, _)| i)
        .filter(|&i| !code[..i].ends_with(is_ident));
    for start in starts {
        let stmt = &code[start..];
        let stmt = &stmt[..stmt.find(';').unwrap_or(stmt.len())];
        let Some(rest) = stmt.strip_prefix("pub") else {
            continue;
        };
        // `pub use`, `pub(crate) use`, `pub(super) use`, `pub(in …) use`.
        let rest = match rest.trim_start().strip_prefix('(') {
            Some(r) => match r.find(')') {
                Some(i) => &r[i + 1..],
                None => continue,
            },
            None => rest,
        };
        let Some(path) = rest.trim_start().strip_prefix("use ") else {
            continue;
        };
        let path: String = path.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut segs = here.clone();
        let mut tail = path.as_str();
        if let Some(t) = tail.strip_prefix("crate::") {
            segs.clear();
            tail = t;
        } else if let Some(t) = tail.strip_prefix("self::") {
            tail = t;
        }
        while let Some(t) = tail.strip_prefix("super::") {
            segs.pop();
            tail = t;
        }
        // Names as exported: the last segment, or the name after `as`.
        let (prefix, items) = match tail.find("::{") {
            Some(i) => {
                let end = tail.rfind('}').unwrap_or(tail.len());
                (&tail[..i], tail[i + 3..end].split(',').collect::<Vec<_>>())
            }
            None => match tail.rfind("::") {
                Some(i) => (&tail[..i], vec![&tail[i + 2..]]),
                None => ("", vec![tail]),
            },
        };
        let mut base = segs;
        base.extend(
            prefix
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        for item in items {
            let mut words = item.split_whitespace();
            let Some(name) = words.next() else {
                continue;
            };
            let alias = match (words.next(), words.next()) {
                (Some("as"), Some(a)) => a,
                _ => name,
            };
            if name == "*" || name == "self" || !name.chars().all(is_ident) {
                continue;
            }
            let mut target = base.clone();
            target.push(name.to_owned());
            out.insert(alias.to_owned(), target);
        }
    }
    out
}

/// The module a path leads to: the longest prefix that is a module, followed through the
/// re-exports of the module it stops at.
fn resolve(
    path: &[String],
    modules: &BTreeMap<&str, String>,
    exports: &BTreeMap<&str, BTreeMap<String, Vec<String>>>,
) -> Option<String> {
    let mut path = path.to_vec();
    // Re-exports of re-exports are followed a few times; a re-export circle stops there.
    for _ in 0..8 {
        let (module, len) = (0..=path.len())
            .rev()
            .map(|i| (path[..i].join("::"), i))
            .find(|(m, _)| modules.contains_key(m.as_str()))?;
        let reexported = path
            .get(len)
            .and_then(|next| exports.get(module.as_str())?.get(next));
        match reexported {
            Some(target) if target.as_slice() != path.as_slice() => {
                let mut next = target.clone();
                next.extend(path[len + 1..].iter().cloned());
                path = next;
            }
            _ => return (len > 0 || !path.is_empty()).then_some(module),
        }
    }
    None
}

/// True when `a` and `b` are the same module or one contains the other.
fn related(a: &str, b: &str) -> bool {
    fn inside(child: &str, parent: &str) -> bool {
        parent.is_empty()
            || child
                .strip_prefix(parent)
                .is_some_and(|r| r.starts_with("::"))
    }
    a == b || inside(a, b) || inside(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(files: &[(&str, &str)]) -> ImportGraph {
        ImportGraph::of_modules(
            &files
                .iter()
                .map(|(m, t)| ((*m).to_owned(), (*t).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn a_circle_is_named() {
        let g = graph(&[
            ("", "mod cli; mod cmd; mod config;"),
            ("cli", "use crate::cmd::serve::ServeArgs;"),
            ("cmd", "pub mod serve;"),
            ("cmd::serve", "use crate::config::{Settings, read};"),
            ("config", "use crate::cli::{GlobalArgs, Route};"),
        ]);
        let cycle = g.cycle().expect("a cycle");
        assert_eq!(describe_cycle(&cycle), "cli -> cmd::serve -> config -> cli");
    }

    #[test]
    fn layers_pointing_down_are_no_circle() {
        let g = graph(&[
            ("", "mod cli; mod cmd; mod config;"),
            (
                "cli",
                "use crate::cmd::serve::ServeArgs; use crate::config::GlobalArgs;",
            ),
            ("cmd", "use crate::config::Settings; pub mod serve;"),
            (
                "cmd::serve",
                "use super::connect; use crate::config::Settings;",
            ),
            ("config", "// use crate::cli::Cli;\nuse crate::i18n::Lang;"),
        ]);
        assert_eq!(g.cycle(), None);
        assert!(g.imports("cli", "cmd::serve"));
        assert!(!g.imports("cmd::serve", "cmd"), "a parent is not an import");
        assert!(!g.imports("config", "cli"), "comments do not count");
    }

    #[test]
    fn a_reexport_does_not_hide_a_circle() {
        let g = graph(&[
            ("", "pub mod message; pub mod error;\npub use message::Message;\npub use error::{Error as BrokerError, Result};"),
            ("message", "fn f() -> crate::Result<()> { todo!() }"),
            ("error", "pub struct E(crate::Message);"),
        ]);
        assert!(g.imports("message", "error"));
        assert!(g.imports("error", "message"));
        assert!(g.cycle().is_some());
    }

    #[test]
    fn unit_tests_and_the_root_items_are_no_circle() {
        let g = graph(&[
            ("", "mod a; pub fn helper() {}"),
            (
                "a",
                "fn f() { crate::helper() }\n#[cfg(test)]\nmod tests { use crate::b::X; }",
            ),
            ("b", "use crate::a::f;"),
        ]);
        assert_eq!(g.cycle(), None);
        assert!(!g.imports("a", "b"));
    }
}
