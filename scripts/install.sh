#!/usr/bin/env bash
# Installs tinybrain as a C library into a prefix.
#
#   scripts/install.sh --prefix DIR [--libdir lib] [--keep-debug] [--no-build]
#   DESTDIR=/tmp/stage scripts/install.sh --prefix /usr     # staged, for packagers
#   scripts/uninstall.sh --prefix DIR                        # removes exactly what was installed
#
# Layout (version 0.1.0; while the major version is 0 the soname carries the minor):
#   lib/libtinybrain.so.0.1.0           the cdylib cargo built, DT_SONAME libtinybrain.so.0.1
#   lib/libtinybrain.so.0.1 -> libtinybrain.so.0.1.0   what programs load at run time
#   lib/libtinybrain.so     -> libtinybrain.so.0.1.0   what -ltinybrain finds at link time
#   lib/libtinybrain.a                  the staticlib cargo built
#   include/tinybrain.h, include/tinybrain.hpp
#   lib/pkgconfig/tinybrain.pc          -ltinybrain; Libs.private = rustc's native-static-libs
#   lib/pkgconfig/tinybrain-static.pc   names libtinybrain.a by path (static linking)
#   lib/cmake/tinybrain/tinybrainConfig.cmake, tinybrainConfigVersion.cmake
#                                       tinybrain::tinybrain (shared), tinybrain::tinybrain_static
#   share/tinybrain/install_manifest.txt  every file and directory this script created
#
# --keep-debug builds with debug info (line tables and function names, which the release
# profile leaves out to build faster) and installs it; by default the installed
# libraries carry none (strip --strip-debug: symbols stay).
# --no-build uses target/release as it is instead of running `cargo build --release`.
#
# Tools: cargo/rustc; cmake (writes the .pc and CMake package files with its own
# helpers); patchelf when the built library has no soname yet (see README, "Installing").
# Missing tools are installed with apt-get when run as root (scripts/ensure-tool.sh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit "${1:-0}"
}
prefix="" libdir="lib" strip=1 build=1
while [[ $# -gt 0 ]]; do
    case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --libdir) libdir="${2:?--libdir needs a directory relative to the prefix}"; shift 2 ;;
    --libdir=*) libdir="${1#*=}"; shift ;;
    --keep-debug) strip=0; shift ;;
    --no-build) build=0; shift ;;
    -h | --help) usage ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage 2 >&2 ;;
    esac
done
[[ -n "$prefix" ]] || { echo "install.sh: --prefix DIR is required" >&2; usage 2 >&2; }
[[ "$libdir" != /* && "$libdir" != *..* ]] || { echo "install.sh: --libdir must be relative to the prefix" >&2; exit 2; }
prefix="$(realpath -m "$prefix")"
root="${DESTDIR:-}$prefix"
manifest_rel="share/tinybrain/install_manifest.txt"

# --- what to install ---------------------------------------------------------------
if [[ $build -eq 1 && $strip -eq 0 ]]; then
    CARGO_PROFILE_RELEASE_DEBUG=1 CARGO_PROFILE_RELEASE_STRIP=none cargo build --release
elif [[ $build -eq 1 ]]; then
    cargo build --release
fi
built=target/release
for f in "$built/libtinybrain.so" "$built/libtinybrain.a" "$built/libtinybrain.rlib"; do
    [[ -f "$f" ]] || { echo "install.sh: $f is missing (run cargo build --release)" >&2; exit 1; }
done
version="$(sed -n 's/^#define TINYBRAIN_VERSION "\(.*\)"$/\1/p' include/tinybrain.h)"
[[ "$version" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || { echo "install.sh: no version in include/tinybrain.h" >&2; exit 1; }
major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
if [[ $major -eq 0 ]]; then soname="libtinybrain.so.0.$minor"; else soname="libtinybrain.so.$major"; fi
real="libtinybrain.so.$version"
description="$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"

# rustc's own list of the native libraries a static build needs, for the dependency
# graph cargo just built: a one-line staticlib crate over the built rlib (no rebuild).
nsl_dir="$(mktemp -d)"
trap 'rm -rf "$nsl_dir"' EXIT
echo 'pub use tinybrain as _tinybrain;' >"$nsl_dir/stub.rs"
native_static_libs="$("${RUSTC:-rustc}" --edition 2021 --crate-type staticlib --crate-name tinybrain_nsl \
    --extern tinybrain="$built/libtinybrain.rlib" -L dependency="$built/deps" \
    --print native-static-libs -o "$nsl_dir/libstub.a" "$nsl_dir/stub.rs" 2>&1 |
    sed -n 's/^note: native-static-libs: //p')"
rm -f "$nsl_dir/libstub.a"
[[ -n "$native_static_libs" ]] || { echo "install.sh: rustc printed no native-static-libs" >&2; exit 1; }

current_soname="$(readelf -d "$built/libtinybrain.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
bash scripts/ensure-tool.sh cmake cmake
if [[ "$current_soname" != "$soname" ]]; then
    bash scripts/ensure-tool.sh patchelf patchelf
fi

# --- install, recording every file and every directory created ----------------------
if [[ -f "$root/$manifest_rel" ]]; then
    echo "install.sh: replacing the tinybrain already installed in $prefix"
    bash scripts/uninstall.sh --prefix "$prefix"
fi
mkdir -p "$root"
manifest=()
make_dir() { # make_dir REL: mkdir -p under the root, recording each directory it creates
    local part path="" IFS=/
    for part in $1; do
        path="${path:+$path/}$part"
        if [[ ! -d "$root/$path" ]]; then
            mkdir "$root/$path"
            manifest+=("$path/")
        fi
    done
}
put() { # put MODE SRC REL
    make_dir "$(dirname "$3")"
    install -m "$1" "$2" "$root/$3"
    manifest+=("$3")
}
link() { # link TARGET REL
    ln -sfn "$1" "$root/$2"
    manifest+=("$2")
}

put 755 "$built/libtinybrain.so" "$libdir/$real"
put 644 "$built/libtinybrain.a" "$libdir/libtinybrain.a"
if [[ $strip -eq 1 ]]; then
    strip --strip-debug "$root/$libdir/$real" "$root/$libdir/libtinybrain.a"
fi
if [[ "$current_soname" != "$soname" ]]; then
    patchelf --set-soname "$soname" "$root/$libdir/$real"
fi
link "$real" "$libdir/$soname"
link "$real" "$libdir/libtinybrain.so"
put 644 include/tinybrain.h include/tinybrain.h
put 644 include/tinybrain.hpp include/tinybrain.hpp

# The .pc and CMake files, filled in by CMake (configure_file and its package helpers).
make_dir "$libdir/pkgconfig"
make_dir "$libdir/cmake/tinybrain"
cmake -DPREFIX="$prefix" -DDESTDIR="${DESTDIR:-}" -DLIBDIR="$libdir" -DVERSION="$version" \
    -DDESCRIPTION="$description" -DSONAME="$soname" -DSHARED_FILE="$real" \
    -DNATIVE_STATIC_LIBS="$native_static_libs" -DSIZEOF_VOID_P="$(($(getconf LONG_BIT) / 8))" \
    -P packaging/write-package-files.cmake
manifest+=("$libdir/pkgconfig/tinybrain.pc" "$libdir/pkgconfig/tinybrain-static.pc"
    "$libdir/cmake/tinybrain/tinybrainConfig.cmake" "$libdir/cmake/tinybrain/tinybrainConfigVersion.cmake")

make_dir "$(dirname "$manifest_rel")"
manifest+=("$manifest_rel")
printf '%s\n' "${manifest[@]}" >"$root/$manifest_rel"

echo "installed tinybrain $version into $root (soname $soname; $(grep -vc '/$' "$root/$manifest_rel") files, listed in $manifest_rel)"
echo "  pkg-config: PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig pkg-config --cflags --libs tinybrain"
echo "  CMake:      -DCMAKE_PREFIX_PATH=$prefix, then find_package(tinybrain $major.$minor CONFIG REQUIRED)"
