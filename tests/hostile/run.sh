#!/usr/bin/env bash
# Hostile input, memory safety and scale: the checks of issue 3 that `cargo test` alone
# cannot make. (The table-driven C ABI test, the fuzzer and the concurrency test are
# Rust integration tests that `cargo test --release` runs: tests/capi_hostile.rs,
# tests/fuzz_capi.rs, tests/concurrency.rs.)
#
#   tests/hostile/run.sh                       # builds the library if needed, then checks
#   TB_NO_CARGO_BUILD=1 tests/hostile/run.sh   # uses target/release as it is
#
#   - AddressSanitizer + UndefinedBehaviorSanitizer (clang): examples-c/pyramid.c and
#     tests/c/hostile.c (error paths, odd strides, thread-count changes) built with
#     -fsanitize=address,undefined against libtinybrain.so, run with zero reports;
#   - valgrind memcheck on tests/c/hostile.c (exactly-sized buffers, so the library's own
#     accesses are checked too), zero errors and no leaks;
#   - the >2^32-element volume (tests/scale.rs), when MemAvailable allows; otherwise it is
#     reported as NOT RUN, which is not a pass (TB_SCALE_REQUIRED=1 makes it a failure).
# clang (with its sanitizer runtime) and valgrind are installed with apt-get when missing.
# One line per check, then "N passed, M failed"; exit status 1 if anything failed.
# Everything is written under target/hostile-tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
LIBDIR="$ROOT/target/release"
OUT="$ROOT/target/hostile-tests"
LOGS="$OUT/logs"
CFLAGS=(-std=c99 -Wall -Wextra -Wpedantic -Werror -I"$ROOT/include")
SANITIZE=(-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all)

passed=0
failed=0
not_run=0
start=$SECONDS
mkdir -p "$OUT" "$LOGS"
rm -f "$OUT"/pyramid_asan "$OUT"/hostile_asan "$OUT"/hostile "$LOGS"/*.log

pass() {
    passed=$((passed + 1))
    echo "PASS $1"
}

fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    if [[ -n "${2:-}" && -s "$2" ]]; then
        sed -e 's/^/    | /' "$2" | tail -n 30
    fi
}

skip() {
    not_run=$((not_run + 1))
    echo "NOT RUN $1 (not counted as passed)"
}

check() {
    local name="$1" log="$2"
    shift 2
    if "$@" >"$log" 2>&1; then
        pass "$name"
    else
        fail "$name" "$log"
    fi
}

finish() {
    echo "target/hostile-tests: $((SECONDS - start)) s"
    if [[ $not_run -gt 0 ]]; then
        echo "$not_run check(s) NOT RUN"
    fi
    echo "$passed passed, $failed failed"
    if [[ $failed -eq 0 ]]; then exit 0; else exit 1; fi
}

apt_install() {
    echo "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "$@" >"$LOGS/apt-$1.log" 2>&1; then
        apt-get update >>"$LOGS/apt-$1.log" 2>&1 || true
        apt-get install -y --no-install-recommends "$@" >>"$LOGS/apt-$1.log" 2>&1
    fi
}

sanitizers_work() {
    printf 'int main(void) { return 0; }\n' >"$OUT/probe.c"
    clang -fsanitize=address,undefined "$OUT/probe.c" -o "$OUT/probe" >/dev/null 2>&1
}

# --- tools -------------------------------------------------------------------------
if ! command -v clang >/dev/null 2>&1; then
    apt_install clang || true
fi
if command -v clang >/dev/null 2>&1 && ! sanitizers_work; then
    # Debian ships the sanitizer runtimes in libclang-rt-N-dev, a recommendation of clang.
    version="$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)"
    apt_install "libclang-rt-$version-dev" || true
fi
if ! command -v valgrind >/dev/null 2>&1; then
    apt_install valgrind || true
fi

# --- the library -------------------------------------------------------------------
if [[ -z "${TB_NO_CARGO_BUILD:-}" ]]; then
    check "cargo build --release" "$LOGS/cargo-build.log" cargo build --release
fi
if [[ ! -f "$LIBDIR/libtinybrain.so" ]]; then
    fail "target/release/libtinybrain.so exists"
    finish
fi
run_clean() { env -u LD_LIBRARY_PATH "$@"; }
LINK=(-L"$LIBDIR" -ltinybrain -Wl,-rpath,"$LIBDIR")

# --- AddressSanitizer + UBSan ------------------------------------------------------
if command -v clang >/dev/null 2>&1 && sanitizers_work; then
    export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
    check "clang ASan+UBSan: pyramid.c compiles (C99 strict)" "$LOGS/pyramid-asan-build.log" \
        clang "${CFLAGS[@]}" "${SANITIZE[@]}" examples-c/pyramid.c -o "$OUT/pyramid_asan" "${LINK[@]}"
    if [[ -x "$OUT/pyramid_asan" ]]; then
        check "ASan+UBSan: pyramid runs clean, all voxels match" "$LOGS/pyramid-asan.log" \
            run_clean "$OUT/pyramid_asan"
    fi
    check "clang ASan+UBSan: tests/c/hostile.c compiles (C99 strict)" "$LOGS/hostile-asan-build.log" \
        clang "${CFLAGS[@]}" "${SANITIZE[@]}" tests/c/hostile.c -o "$OUT/hostile_asan" "${LINK[@]}"
    if [[ -x "$OUT/hostile_asan" ]]; then
        check "ASan+UBSan: hostile runs clean (error paths, odd strides, thread changes)" \
            "$LOGS/hostile-asan.log" run_clean "$OUT/hostile_asan"
    fi
    unset ASAN_OPTIONS UBSAN_OPTIONS
else
    fail "clang with sanitizer runtimes is available (apt-get install clang libclang-rt-N-dev)" \
        "$(ls "$LOGS"/apt-*.log 2>/dev/null | head -n 1)"
fi

# --- valgrind ----------------------------------------------------------------------
check "tests/c/hostile.c compiles with gcc (C99 strict)" "$LOGS/hostile-build.log" \
    gcc "${CFLAGS[@]}" -g tests/c/hostile.c -o "$OUT/hostile" "${LINK[@]}"
if command -v valgrind >/dev/null 2>&1; then
    if [[ -x "$OUT/hostile" ]]; then
        check "valgrind: hostile, no errors or leaks" "$LOGS/hostile-valgrind.log" \
            run_clean valgrind --error-exitcode=1 --leak-check=full --num-callers=40 \
            --suppressions="$ROOT/tests/c/valgrind.supp" \
            --suppressions="$ROOT/tests/hostile/valgrind.supp" "$OUT/hostile"
    fi
else
    fail "valgrind is available (apt-get install valgrind)" "$LOGS/apt-valgrind.log"
fi

# --- a volume of more than 2^32 elements -------------------------------------------
scale_log="$LOGS/scale.log"
if cargo test --release --test scale -- --ignored --nocapture >"$scale_log" 2>&1; then
    if grep -q "NOT RUN" "$scale_log"; then
        skip "$(grep -m1 -o 'NOT RUN.*' "$scale_log" | sed 's/^NOT RUN: //')"
    elif grep -q "scale: PASS" "$scale_log"; then
        pass "$(grep -m1 -o 'scale: PASS.*' "$scale_log" | sed 's/^scale: PASS: //') [$(grep -E '^scale: (striding|2x2)' "$scale_log" | sed 's/^scale: //; s/, [0-9]* voxels checked//' | paste -sd ';' -)]"
    else
        fail "the >2^32-element scale test printed neither PASS nor NOT RUN" "$scale_log"
    fi
else
    fail "the >2^32-element scale test (cargo test --release --test scale -- --ignored)" "$scale_log"
fi

finish
