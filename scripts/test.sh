#!/usr/bin/env bash
# The whole test suite, as CI runs it: Rust unit and integration tests (incl. the header
# drift check), lint, the C and C++ programs against the built library, and the Python
# conformance suite against tinybrain 1.7.0 in a repo-local virtualenv (.venv), and the
# library installed into a prefix as its C, C++, Julia and MATLAB/Octave users meet it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Runs a cargo command; if it failed because cargo cached a failed rustc probe in
# target/.rustc_info.json (seen twice on fresh clones, never reproduced by hand:
# "failed to run `rustc` to learn about target-specific information"), drops that cache
# and tries once more. Any other failure fails the suite as it is.
cargo_retry() {
    local log
    log="$(mktemp)"
    if "$@" 2>&1 | tee "$log"; [[ ${PIPESTATUS[0]} -eq 0 ]]; then
        rm -f "$log"
        return 0
    fi
    if grep -q "to learn about target-specific information" "$log"; then
        rm -f "$log" target/.rustc_info.json
        echo "test.sh: dropping a cached failed rustc probe and retrying: $*"
        "$@"
        return
    fi
    rm -f "$log"
    return 1
}

step "Python virtualenv (.venv: numpy, tinybrain 1.7.0, pytest, hypothesis)"
bash tests/python/setup_venv.sh

step "cargo build --release"
cargo_retry cargo build --release
bash scripts/link-soname.sh

step "cargo fmt --check, cargo clippy"
cargo fmt --check
# Own target dir: on a fresh clone, clippy's check of the dependencies (rustix's build
# script probes rustc) left target/release in a state where cargo's next rustc probe
# failed; kept apart, both work (reproduced and verified on fresh clones).
cargo_retry cargo clippy --release --all-targets --target-dir target/clippy -- -D warnings

step "cargo test --release"
cargo_retry cargo test --release

step "Hostile input: ASan+UBSan and valgrind on C programs, a >2^32-element volume (tests/hostile/run.sh)"
TB_NO_CARGO_BUILD=1 bash tests/hostile/run.sh

step "C and C++ programs (tests/c/run.sh)"
bash tests/c/run.sh

step "Python conformance suite (pytest tests/python)"
.venv/bin/python -m pytest tests/python -q -p no:cacheprovider

step "Installed into a prefix: C/C++ via CMake and pkg-config, Julia/MATLAB mirrors, MEX under Octave (tests/packaging/run.sh)"
TB_NO_CARGO_BUILD=1 bash tests/packaging/run.sh
