//! Every crate of the workspace reads top-down: no module imports one that imports it back.
//!
//! Walks every `crates/*/src` (so a new crate is checked as soon as it exists) and runs
//! [`charla_testkit::layering`] on each, failing with every circle found, named. A crate may
//! check its own layers further in a test of its own (`charla-server/tests/layering.rs`).

use std::path::{Path, PathBuf};

use charla_testkit::layering::{describe_cycle, ImportGraph};

/// Each crate's `src/` directory under the workspace's `crates/`, by crate directory name.
fn crate_sources() -> Vec<(String, PathBuf)> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("charla-testkit sits in crates/");
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(crates)
        .expect("read crates/")
        .map(|e| e.expect("entry of crates/").path())
        .filter(|p| p.join("src").is_dir())
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, p.join("src"))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn no_crate_has_an_import_circle() {
    let crates = crate_sources();
    // The walk must have found the workspace, or the test would pass on nothing.
    for expected in [
        "charla",
        "charla-core",
        "charla-i18n",
        "charla-server",
        "charla-testkit",
    ] {
        assert!(
            crates.iter().any(|(name, _)| name == expected),
            "crate {expected} not found among {crates:?}"
        );
    }
    let mut circles = Vec::new();
    for (name, src) in &crates {
        let graph = ImportGraph::of_crate(src)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", src.display()));
        assert!(graph.modules().next().is_some(), "{name}: no modules read");
        if let Some(cycle) = graph.cycle() {
            circles.push(format!("{name}: {}", describe_cycle(&cycle)));
        }
    }
    assert!(
        circles.is_empty(),
        "import circle(s), each module importing the next (move what they share into a \
         module below both):\n  {}",
        circles.join("\n  ")
    );
}

/// The catalogue crate is a leaf: every front end and the binary use it, so it may use none of
/// them (nor any other charla crate), or the languages would pull a front end into another.
#[test]
fn the_language_crate_is_a_leaf() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("charla-testkit sits in crates/")
        .join("charla-i18n/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read charla-i18n/Cargo.toml");
    let charla_deps: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("charla-"))
        .collect();
    assert!(
        charla_deps.is_empty(),
        "charla-i18n depends on {charla_deps:?}"
    );
}
