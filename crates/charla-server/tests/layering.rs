//! The server's modules read top-down (ARCHITECTURE.md explains the layers): no import
//! circle, as in every crate of the workspace (`charla-testkit/tests/layering.rs` checks them
//! all with [`charla_testkit::layering`]), and, particular to this crate, no lower layer
//! importing one above it.

use std::path::Path;

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = charla_testkit::layering::assert_no_import_circle(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    );
    let modules: Vec<&str> = graph.modules().collect();
    assert!(
        modules.contains(&"cmd::apply") && modules.contains(&"exec"),
        "sources not found: {modules:?}"
    );
    // The layers ARCHITECTURE.md describes: commands do not reach the request path, the socket
    // or the accept loop; the shared state does not reach the commands.
    for (low, high) in [
        ("cmd::apply", "exec"),
        ("cmd::spec", "connection"),
        ("shared", "cmd::spec"),
        ("db", "shared"),
    ] {
        assert!(
            !graph.imports(low, high),
            "{low} imports {high}, which sits above it"
        );
    }
}
