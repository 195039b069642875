#!/usr/bin/env bash
# Builds the library and runs the C example end to end: a grayscale and a label pyramid,
# each voxel checked against an independent loop.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
mkdir -p target/demo
gcc -std=c99 -O2 -Wall -Wextra -Iinclude examples-c/pyramid.c -o target/demo/pyramid \
    -Ltarget/release -ltinybrain -Wl,-rpath,"$PWD/target/release"
./target/demo/pyramid
