#!/usr/bin/env bash
# The whole test suite, as CI runs it: Rust unit and integration tests (incl. the header
# drift check), lint, the C and C++ programs against the built library, and the Python
# conformance suite against tinybrain 1.7.0 in a repo-local virtualenv (.venv), and the
# library installed into a prefix as its C, C++, Julia and MATLAB/Octave users meet it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step prints the wall time so far, so a slow CI run shows where its time went.
step() { printf '\n==> %s [%s, %dm%02ds in]\n' "$*" "$(date -u +%H:%M:%S)" $((SECONDS / 60)) $((SECONDS % 60)); }

step "Python virtualenv (.venv: numpy, tinybrain 1.7.0, pytest, hypothesis)"
bash tests/python/setup_venv.sh

step "cargo build --release"
cargo build --release
bash scripts/link-soname.sh

step "cargo fmt --check, cargo clippy"
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings

# The unit tests inside src/ need the library compiled once more, with cfg(test); an
# optimised build of it took 15 minutes on the CI machine (as long as the release build),
# an unoptimised one 1.5. So they run in the `unit` profile (Cargo.toml), with debug
# assertions and overflow checks on. The integration tests run there too, for those
# checks (the release build wraps on overflow: a factor near usize::MAX overflowed a
# window's size in the mode kernel, unseen), and then against the release build.
step "cargo test --profile unit --tests (unit and integration tests, unoptimised, overflow checks on)"
cargo test --profile unit --tests

step "cargo test --release --test '*' (integration tests)"
cargo test --release --test '*'

step "Hostile input: ASan+UBSan and valgrind on C programs, a >2^32-element volume (tests/hostile/run.sh)"
TB_NO_CARGO_BUILD=1 bash tests/hostile/run.sh

step "C and C++ programs (tests/c/run.sh)"
bash tests/c/run.sh

step "Python conformance suite (pytest tests/python)"
.venv/bin/python -m pytest tests/python -q -p no:cacheprovider

# Line loops read ahead in software on Intel CPUs (2 KiB ahead) and on AMD Zen 5 (7 KiB),
# elsewhere not (src/cascade.rs, reads_ahead_in_software); the suite above ran this
# machine's way, these the Intel way and then the hardware's.
step "The 2x2 and 2x2x2 families with lines read ahead in software and not (TINYBRAIN_READ_AHEAD=1, =0)"
for choice in 1 0; do
    TINYBRAIN_READ_AHEAD=$choice .venv/bin/python -m pytest tests/python/test_cascade.py tests/python/test_properties.py -q -p no:cacheprovider
done

step "Installed into a prefix: C/C++ via CMake and pkg-config, Julia/MATLAB mirrors, MEX under Octave (tests/packaging/run.sh)"
TB_NO_CARGO_BUILD=1 bash tests/packaging/run.sh

step "all passed"
