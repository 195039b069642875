#!/usr/bin/env bash
# The whole test suite, as CI runs it: Rust unit and integration tests (incl. the header
# drift check), lint, the C and C++ programs against the built library, and the Python
# conformance suite against tinybrain 1.7.0 in a repo-local virtualenv (.venv).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Python virtualenv (.venv: numpy, tinybrain 1.7.0, pytest, hypothesis)"
bash tests/python/setup_venv.sh

step "cargo build --release"
cargo build --release

step "cargo fmt --check, cargo clippy"
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings

step "cargo test --release"
cargo test --release

step "C and C++ programs (tests/c/run.sh)"
bash tests/c/run.sh

step "Python conformance suite (pytest tests/python)"
.venv/bin/python -m pytest tests/python -q -p no:cacheprovider
