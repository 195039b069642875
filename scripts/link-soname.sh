#!/usr/bin/env bash
# Programs linked against target/release ask for the library by its soname
# (libtinybrain.so.0.1 while 0.x): give the build tree that name too.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=target/release/libtinybrain.so
soname="$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
if [[ -n "$soname" && "$soname" != libtinybrain.so ]]; then
    ln -sf libtinybrain.so "target/release/$soname"
fi
