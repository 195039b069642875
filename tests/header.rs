//! The committed C header must be exactly what cbindgen generates from the current source.

/// What build.rs generated from the current source on this build: cargo reruns it when
/// src/capi.rs or cbindgen.toml change, and recompiles this test when the file changes.
/// Reading its output, rather than running cbindgen here again, keeps cbindgen and syn
/// out of the dev-dependencies, which compiled them a second time, optimised.
const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/tinybrain.h"));

#[test]
fn committed_header_matches_the_rust_source() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(crate_dir.join("include/tinybrain.h")).expect("include/tinybrain.h exists");
    assert!(
        GENERATED == committed,
        "include/tinybrain.h is out of date with the Rust source; run `TINYBRAIN_BLESS_HEADER=1 cargo build` and commit it"
    );
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/tinybrain.h")).expect("header exists");
    for (name, value) in [
        ("MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        let line = format!("#define TINYBRAIN_VERSION_{name} {value}\n");
        assert!(committed.contains(&line), "missing `{}`", line.trim());
    }
}
