//! The committed C header must be exactly what cbindgen generates from the current source.

mod build_script {
    include!("../build.rs");
}

#[test]
fn committed_header_matches_the_rust_source() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fresh = build_script::header_text(crate_dir);
    let committed = std::fs::read_to_string(crate_dir.join("include/tinybrain.h")).expect("include/tinybrain.h exists");
    assert!(
        fresh == committed,
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
