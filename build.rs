// Generates include/tinybrain.h from the Rust source with the pinned cbindgen.
//
// The header is committed. A normal build writes it to $OUT_DIR only (and creates
// include/tinybrain.h if it is missing); `TINYBRAIN_BLESS_HEADER=1 cargo build` updates
// the committed copy. The drift test in tests/header.rs fails when the two differ.

use std::path::Path;

/// The header text for the crate at `crate_dir`, with version macros from Cargo.toml.
fn header_text(crate_dir: &Path) -> String {
    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml is readable and valid");
    config.after_includes = Some(format!(
        "\n#define TINYBRAIN_VERSION_MAJOR {}\n#define TINYBRAIN_VERSION_MINOR {}\n#define TINYBRAIN_VERSION_PATCH {}\n#define TINYBRAIN_VERSION \"{}\"",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
    ));
    let mut text = Vec::new();
    // Every exported item lives in src/capi.rs; parsing that file alone avoids running a
    // nested `cargo metadata` from inside the build (which once failed on a fresh clone).
    cbindgen::Builder::new()
        .with_src(crate_dir.join("src").join("capi.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen can parse the C ABI")
        .write(&mut text);
    String::from_utf8(text).expect("the header is UTF-8")
}

fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let crate_dir = Path::new(&crate_dir);
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rerun-if-changed=src/capi.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=TINYBRAIN_BLESS_HEADER");

    // A versioned soname, as cargo-c sets it: libtinybrain.so.0.MINOR while 0.x, then
    // libtinybrain.so.MAJOR. Builds in target/ get a matching symlink from the scripts.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let (major, minor) = (env!("CARGO_PKG_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MINOR"));
        let soname = if major == "0" {
            format!("libtinybrain.so.0.{minor}")
        } else {
            format!("libtinybrain.so.{major}")
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }

    let text = header_text(crate_dir);
    std::fs::write(Path::new(&out_dir).join("tinybrain.h"), &text).expect("OUT_DIR is writable");
    let committed = crate_dir.join("include").join("tinybrain.h");
    let bless = std::env::var("TINYBRAIN_BLESS_HEADER").is_ok_and(|v| v == "1");
    if bless || !committed.exists() {
        std::fs::create_dir_all(committed.parent().unwrap()).expect("include/ can be created");
        if std::fs::read_to_string(&committed).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&committed, &text).expect("include/tinybrain.h is writable");
        }
    }
}
