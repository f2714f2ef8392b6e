//! The crate's modules read top-down: no module imports one that (directly or through others)
//! imports it back. This reads the sources, finds every `crate::…` and `super::…` path (also
//! inside `use …::{a, b}` groups), resolves each to the module that defines it, and fails on
//! any cycle, naming it. A test, not a lint, so a circle cannot come back unnoticed
//! (ARCHITECTURE.md explains the layers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path ("cmd::apply", "" for the crate root) → file text without comments and tests.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                if !p.ends_with("bin") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(&root).expect("under src").with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&p).expect("read source");
            out.insert(parts.join("::"), strip(&text));
        }
    }
    out
}

/// The text without `//` comments and without the unit tests at the end of a file.
fn strip(text: &str) -> String {
    let code: String = text
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n");
    match code.find("#[cfg(test)]") {
        Some(i) => code[..i].to_string(),
        None => code,
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path starting at `crate::` or `super::` in `module`'s code, as segments from the
/// crate root (`super` is the parent of the module, for a file and for a `mod.rs` alike).
fn paths(module: &str, code: &str) -> Vec<Vec<String>> {
    let here: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
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
        loop {
            let n = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
            if n == 0 {
                break;
            }
            segs.push(tail[..n].to_string());
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
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mods = modules();
    assert!(
        mods.contains_key("cmd::apply") && mods.contains_key("exec"),
        "sources not found"
    );
    let resolve = |segs: &[String]| -> Option<String> {
        (1..=segs.len())
            .rev()
            .map(|i| segs[..i].join("::"))
            .find(|m| mods.contains_key(m))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in &mods {
        let set = edges.entry(m.clone()).or_default();
        for p in paths(m, code) {
            if let Some(t) = resolve(&p) {
                // A module's own children and itself are not imports of it.
                if &t != m && !t.starts_with(&format!("{m}::")) && !m.starts_with(&format!("{t}::"))
                {
                    set.insert(t);
                }
            }
        }
    }
    // Depth-first search for a cycle, reporting its path.
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
                cycle.push(m.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for t in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(t, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        if let Some(cycle) = visit(m, &edges, &mut state, &mut Vec::new()) {
            panic!("import circle: {}", cycle.join(" -> "));
        }
    }
    // The layers ARCHITECTURE.md describes: commands do not reach the request path, the socket
    // or the accept loop; the shared state does not reach the commands.
    for (low, high) in [
        ("cmd::apply", "exec"),
        ("cmd::spec", "connection"),
        ("shared", "cmd::spec"),
        ("db", "shared"),
    ] {
        assert!(
            !edges[low].contains(high),
            "{low} imports {high}, which sits above it"
        );
    }
}
