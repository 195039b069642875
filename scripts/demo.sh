#!/usr/bin/env bash
# The demo: builds the library, then
#   1. the C example (examples-c/pyramid.c): a grayscale and a label pyramid, each voxel
#      checked against an independent loop;
#   2. the picture demo (examples-c/demo/pyramid_png.c): an EM-like 512x512x24 stack and
#      its uint64 label volume, 5 mips each, written as PNGs (one per mip, plus
#      contact_sheet.png) into demo-out/ (git-ignored), with shapes and time per mip.
# Needs only cargo and a C compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
bash scripts/link-soname.sh
mkdir -p target/demo demo-out
rpath=(-Ltarget/release -ltinybrain -Wl,-rpath,"$PWD/target/release")
gcc -std=c99 -O2 -Wall -Wextra -Iinclude examples-c/pyramid.c -o target/demo/pyramid "${rpath[@]}"
gcc -std=c99 -O2 -Wall -Wextra -Iinclude examples-c/demo/pyramid_png.c -o target/demo/pyramid_png \
    "${rpath[@]}" -lm
echo "== examples-c/pyramid.c"
./target/demo/pyramid
echo
echo "== examples-c/demo/pyramid_png.c"
./target/demo/pyramid_png demo-out
