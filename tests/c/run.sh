#!/usr/bin/env bash
# The C side of the test suite: the C ABI seen from C and C++ compilers.
#
#   tests/c/run.sh            # builds the library (cargo build --release), then checks
#   TB_NO_CARGO_BUILD=1 tests/c/run.sh   # uses target/release as it is
#
# Against the build tree (-Iinclude, target/release):
#   - include/tinybrain.h alone compiles as C99, C11, C++11 and C++17 (strict flags);
#   - examples-c/pyramid.c (gcc -std=c99 -Wall -Wextra -Wpedantic -Werror) linked to the
#     shared library and, separately, to the static one, and run;
#   - examples-c/pyramid.cpp (g++ -std=c++17, same warnings) linked and run;
#   - libtinybrain.so exports tb_* symbols only, and exactly the functions of the header;
#   - valgrind (if installed) on the C and C++ examples.
# One line per check, then "N passed, M failed"; exit status 1 if anything failed.
# Everything is written under target/c-tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
LIBDIR="$ROOT/target/release"
OUT="$ROOT/target/c-tests"
LOGS="$OUT/logs"
CC="${CC:-gcc}"
CXX="${CXX:-g++}"
CFLAGS=(-Wall -Wextra -Wpedantic -Werror -I"$ROOT/include")

# Native libraries a static Rust library needs, as printed by
#   cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs
# (rustc 1.95, x86_64-unknown-linux-gnu; measured once and hard-coded because the
# command rebuilds the crate, about a minute). Without -lm, linking fails on log2.
NATIVE_STATIC_LIBS=(-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc)

passed=0
failed=0
start=$SECONDS
mkdir -p "$OUT" "$LOGS"
# Nothing from an earlier run may stand in for a build that fails now.
rm -f "$OUT"/pyramid_shared "$OUT"/pyramid_static "$OUT"/pyramid_cpp "$OUT"/*.o "$LOGS"/*.log

pass() {
    passed=$((passed + 1))
    echo "PASS $1"
}

fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    if [[ -n "${2:-}" && -s "$2" ]]; then
        sed -e 's/^/    | /' "$2" | tail -n 25
    fi
}

# check NAME LOGFILE COMMAND...: runs COMMAND with its output in LOGFILE.
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
    echo "target/c-tests: $((SECONDS - start)) s"
    echo "$passed passed, $failed failed"
    if [[ $failed -eq 0 ]]; then exit 0; else exit 1; fi
}

# --- the library -------------------------------------------------------------------
if [[ -z "${TB_NO_CARGO_BUILD:-}" ]]; then
    check "cargo build --release" "$LOGS/cargo-build.log" cargo build --release
fi
bash scripts/link-soname.sh
if [[ ! -f "$LIBDIR/libtinybrain.so" || ! -f "$LIBDIR/libtinybrain.a" ]]; then
    fail "target/release/libtinybrain.so and libtinybrain.a exist"
    finish
fi

# --- the header alone --------------------------------------------------------------
# Included twice: the include guard must work too.
printf '#include "tinybrain.h"\n#include "tinybrain.h"\n' >"$OUT/header_only.c"
check "header compiles as C99 ($CC -std=c99 strict)" "$LOGS/header-c99.log" \
    "$CC" -std=c99 "${CFLAGS[@]}" -x c -c "$OUT/header_only.c" -o "$OUT/header_c99.o"
check "header compiles as C11 ($CC -std=c11 strict)" "$LOGS/header-c11.log" \
    "$CC" -std=c11 "${CFLAGS[@]}" -x c -c "$OUT/header_only.c" -o "$OUT/header_c11.o"
check "header compiles as C++11 ($CXX -x c++ -std=c++11 strict)" "$LOGS/header-cxx11.log" \
    "$CXX" -x c++ -std=c++11 "${CFLAGS[@]}" -c "$OUT/header_only.c" -o "$OUT/header_cxx11.o"
check "header compiles as C++17 ($CXX -x c++ -std=c++17 strict)" "$LOGS/header-cxx17.log" \
    "$CXX" -x c++ -std=c++17 "${CFLAGS[@]}" -c "$OUT/header_only.c" -o "$OUT/header_cxx17.o"

# --- the C example, shared library -------------------------------------------------
run_clean() { env -u LD_LIBRARY_PATH "$@"; } # rpath (or static linking) must suffice

check "pyramid.c compiles, C99 strict, linked to libtinybrain.so" "$LOGS/c-shared-build.log" \
    "$CC" -std=c99 "${CFLAGS[@]}" examples-c/pyramid.c -o "$OUT/pyramid_shared" \
    -L"$LIBDIR" -ltinybrain -Wl,-rpath,"$LIBDIR"
if [[ -x "$OUT/pyramid_shared" ]]; then
    check "pyramid (shared) uses libtinybrain.so" "$LOGS/c-shared-needed.log" \
        bash -c "readelf -d '$OUT/pyramid_shared' | grep -E 'NEEDED.*\\[libtinybrain\\.so'"
    check "pyramid (shared) runs, all voxels match" "$LOGS/c-shared-run.log" \
        run_clean "$OUT/pyramid_shared"
    check "pyramid (shared) with TINYBRAIN_NUM_THREADS=1" "$LOGS/c-shared-run-1thread.log" \
        run_clean TINYBRAIN_NUM_THREADS=1 "$OUT/pyramid_shared"
fi

# --- the C example, static library -------------------------------------------------
check "pyramid.c compiles, C99 strict, linked to libtinybrain.a" "$LOGS/c-static-build.log" \
    "$CC" -std=c99 "${CFLAGS[@]}" examples-c/pyramid.c -o "$OUT/pyramid_static" \
    "$LIBDIR/libtinybrain.a" "${NATIVE_STATIC_LIBS[@]}"
if [[ -x "$OUT/pyramid_static" ]]; then
    check "pyramid (static) does not need libtinybrain.so" "$LOGS/c-static-needed.log" \
        bash -c "readelf -d '$OUT/pyramid_static' && ! readelf -d '$OUT/pyramid_static' | grep -q libtinybrain"
    check "pyramid (static) runs, all voxels match" "$LOGS/c-static-run.log" \
        run_clean "$OUT/pyramid_static"
fi

# --- the C++ example ---------------------------------------------------------------
check "pyramid.cpp compiles, C++17 strict" "$LOGS/cxx-build.log" \
    "$CXX" -std=c++17 "${CFLAGS[@]}" examples-c/pyramid.cpp -o "$OUT/pyramid_cpp" \
    -L"$LIBDIR" -ltinybrain -Wl,-rpath,"$LIBDIR"
if [[ -x "$OUT/pyramid_cpp" ]]; then
    check "pyramid_cpp runs, all voxels match" "$LOGS/cxx-run.log" run_clean "$OUT/pyramid_cpp"
fi

# --- exported symbols --------------------------------------------------------------
# Defined dynamic symbols, without version suffixes. The linker's own markers are not
# part of the API and are ignored if they ever show up (rustc's cdylib exports none of
# them today: the list is exactly the tb_* functions).
IGNORED_SYMBOLS='^(_init|_fini|__bss_start|_edata|_end)$'
nm -D --defined-only "$LIBDIR/libtinybrain.so" | awk '{print $NF}' | sed 's/@.*//' \
    | grep -Ev "$IGNORED_SYMBOLS" | sort -u >"$OUT/exported.txt" || true
grep -oE '\btb_[a-z0-9_]+\(' include/tinybrain.h | tr -d '(' | sort -u >"$OUT/declared.txt"
grep -v '^tb_' "$OUT/exported.txt" >"$LOGS/symbols-foreign.log" || true
if [[ -s "$OUT/exported.txt" && ! -s "$LOGS/symbols-foreign.log" ]]; then
    pass "libtinybrain.so exports tb_* symbols only ($(wc -l <"$OUT/exported.txt") symbols)"
else
    fail "libtinybrain.so exports tb_* symbols only (others listed below)" "$LOGS/symbols-foreign.log"
fi
check "libtinybrain.so exports exactly the functions include/tinybrain.h declares" \
    "$LOGS/symbols-vs-header.log" diff "$OUT/declared.txt" "$OUT/exported.txt"

# --- valgrind ----------------------------------------------------------------------
if command -v valgrind >/dev/null 2>&1; then
    VALGRIND=(valgrind --error-exitcode=1 --leak-check=full --num-callers=40
              --suppressions="$ROOT/tests/c/valgrind.supp")
    if [[ -x "$OUT/pyramid_shared" ]]; then
        check "valgrind: pyramid (shared), no errors or leaks" "$LOGS/valgrind-c.log" \
            run_clean "${VALGRIND[@]}" "$OUT/pyramid_shared"
    fi
    if [[ -x "$OUT/pyramid_cpp" ]]; then
        check "valgrind: pyramid_cpp, no errors or leaks" "$LOGS/valgrind-cxx.log" \
            run_clean "${VALGRIND[@]}" "$OUT/pyramid_cpp"
    fi
else
    echo "NOT RUN valgrind checks: valgrind is not installed (not counted as passed)"
fi

finish
