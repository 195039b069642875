#!/usr/bin/env bash
# The installed library, as its users meet it.
#
#   tests/packaging/run.sh                        # builds the library first (cargo build --release)
#   TB_NO_CARGO_BUILD=1 tests/packaging/run.sh    # uses target/release as it is
#
# 1. scripts/install.sh into target/packaging-tests/prefix; the layout, soname, symlinks,
#    exported symbols, .pc files and CMake files are checked.
# 2. examples-c/make (pkg-config) and examples-c/cmake (find_package) build the C and the
#    C++ (tinybrain.hpp) examples against the prefix, linked to libtinybrain.so and to
#    libtinybrain.a (by path); every program runs with no LD_LIBRARY_PATH and checks its
#    own voxels. CMake's version rules and a relocated prefix are checked too, and the
#    PNG demo is built against the prefix and its pictures decoded and checked.
# 3. The Julia and MATLAB-loadlibrary mirrors (pytest tests/packaging, on the installed
#    library) and the MEX gateway built with `mkoctfile --mex`, run under GNU Octave.
# 4. scripts/uninstall.sh leaves the prefix empty; a DESTDIR install too.
# Missing tools (cmake, patchelf, pkg-config, make, octave) are installed with apt-get.
# One line per check, then "N passed, M failed"; exit status 1 if anything failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/packaging-tests"
PREFIX="$OUT/prefix"
LOGS="$OUT/logs"
VERSION="$(sed -n 's/^#define TINYBRAIN_VERSION "\(.*\)"$/\1/p' include/tinybrain.h)"
SONAME="libtinybrain.so.0.$(echo "$VERSION" | cut -d. -f2)" # while the major version is 0
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

passed=0
failed=0
start=$SECONDS
rm -rf "$OUT"
mkdir -p "$LOGS"

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    [[ -n "${2:-}" && -s "$2" ]] && sed -e 's/^/    | /' "$2" | tail -n 25
    return 0
}
check() { # check NAME LOGFILE COMMAND...
    local name="$1" log="$2"
    shift 2
    if "$@" >"$log" 2>&1; then pass "$name"; else fail "$name" "$log"; fi
}
finish() {
    echo "target/packaging-tests: $((SECONDS - start)) s"
    echo "$passed passed, $failed failed"
    [[ $failed -eq 0 ]]
    exit
}
run_clean() { env -u LD_LIBRARY_PATH "$@"; } # rpath or static linking must suffice
needs_soname() { readelf -d "$1" | grep -q "NEEDED.*\[$SONAME\]"; }
no_libtinybrain() { readelf -d "$1" >/dev/null && ! readelf -d "$1" | grep -q libtinybrain; }

# --- tools and the library -------------------------------------------------------------
for tool in "cmake cmake" "patchelf patchelf" "pkg-config pkg-config" "make make"; do
    set -- $tool
    check "tool: $1" "$LOGS/tool-$1.log" bash scripts/ensure-tool.sh "$1" "$2"
done
if [[ -z "${TB_NO_CARGO_BUILD:-}" ]]; then
    check "cargo build --release" "$LOGS/cargo-build.log" cargo build --release
fi

# --- 1. install ------------------------------------------------------------------------
check "scripts/install.sh --prefix $PREFIX" "$LOGS/install.log" \
    bash scripts/install.sh --no-build --prefix "$PREFIX"
[[ -f "$PREFIX/share/tinybrain/install_manifest.txt" ]] || finish
L="$PREFIX/lib"
layout() {
    local f
    for f in lib/libtinybrain.so.$VERSION lib/$SONAME lib/libtinybrain.so lib/libtinybrain.a \
        include/tinybrain.h include/tinybrain.hpp lib/pkgconfig/tinybrain.pc \
        lib/pkgconfig/tinybrain-static.pc lib/cmake/tinybrain/tinybrainConfig.cmake \
        lib/cmake/tinybrain/tinybrainConfigVersion.cmake; do
        [[ -f "$PREFIX/$f" ]] || { echo "missing $f"; return 1; }
    done
    [[ "$(readlink "$L/$SONAME")" == "libtinybrain.so.$VERSION" &&
        "$(readlink "$L/libtinybrain.so")" == "libtinybrain.so.$VERSION" ]]
}
check "layout: lib/libtinybrain.so.$VERSION, $SONAME and .so symlinks, .a, headers, .pc, CMake files" \
    "$LOGS/layout.log" layout
check "soname of the installed library is $SONAME" "$LOGS/soname.log" \
    bash -c "readelf -d '$L/libtinybrain.so.$VERSION' | grep 'SONAME.*\[$SONAME\]'"
check "the installed library exports exactly the functions tinybrain.h declares" "$LOGS/symbols.log" \
    diff <(grep -oE '\btb_[a-z0-9_]+\(' include/tinybrain.h | tr -d '(' | sort -u) \
    <(nm -D --defined-only "$L/libtinybrain.so.$VERSION" | awk '{print $NF}' | sed 's/@.*//' | sort -u)
export PKG_CONFIG_PATH="$L/pkgconfig"
check "pkg-config --modversion tinybrain = $VERSION" "$LOGS/pc-version.log" \
    test "$(pkg-config --modversion tinybrain)" = "$VERSION"
check "pkg-config --static tinybrain lists rustc's native-static-libs (-lpthread -lm -ldl)" \
    "$LOGS/pc-static.log" grep -- '-lpthread.*-lm.*-ldl' <<<"$(pkg-config --libs --static tinybrain)"
hpp_alone() {
    local std
    for std in c++17 c++20; do
        g++ -x c++ -std=$std -Wall -Wextra -Wpedantic -Werror -Wconversion -Wshadow \
            $(pkg-config --cflags tinybrain) -fsyntax-only - <<<'#include <tinybrain.hpp>' || return 1
    done
}
check "tinybrain.hpp compiles alone, C++17 and C++20, strict with -Wconversion" "$LOGS/hpp-alone.log" hpp_alone

# --- 2. the examples through pkg-config (make) and CMake -------------------------------
check "examples-c/make: pyramid, pyramid_hpp; shared and static (pkg-config)" "$LOGS/make.log" \
    make -C examples-c/make BUILD="$OUT/make"
check "examples-c/cmake: the same four, find_package(tinybrain 0.1 CONFIG REQUIRED)" "$LOGS/cmake.log" \
    bash -c "cmake -S examples-c/cmake -B '$OUT/cmake' -DCMAKE_PREFIX_PATH='$PREFIX' && cmake --build '$OUT/cmake' -j 2"
for dir in make cmake; do
    for program in pyramid pyramid_hpp; do
        bin="$OUT/$dir/$program"
        [[ -x "$bin" ]] && {
            check "$dir: $program needs $SONAME" "$LOGS/$dir-$program-needed.log" needs_soname "$bin"
            check "$dir: $program runs (shared), all voxels match" "$LOGS/$dir-$program.log" run_clean "$bin"
        }
        bin="$OUT/$dir/${program}_static"
        [[ -x "$bin" ]] && {
            check "$dir: ${program}_static does not need libtinybrain.so" "$LOGS/$dir-$program-static-needed.log" \
                no_libtinybrain "$bin"
            check "$dir: ${program}_static runs, all voxels match" "$LOGS/$dir-$program-static.log" run_clean "$bin"
        }
    done
done

check "demo: examples-c/demo/pyramid_png.c builds strict against the prefix and runs" "$LOGS/demo.log" bash -c "
    gcc -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror \$(pkg-config --cflags tinybrain) examples-c/demo/pyramid_png.c \
        -o '$OUT/pyramid_png' \$(pkg-config --libs tinybrain) -Wl,-rpath,'$L' -lm &&
    mkdir -p '$OUT/demo' && env -u LD_LIBRARY_PATH '$OUT/pyramid_png' '$OUT/demo'"
check "demo: its PNGs decode (CRC, zlib) and each image mip is the 2x2 mean of the one above" \
    "$LOGS/demo-png.log" "$PYTHON" tests/packaging/check_png.py "$OUT/demo"

find_version() { # find_version WANT PREFIX: "found VERSION at LIBRARY" or "not found"
    rm -rf "$OUT/cmake-version"
    cmake -S tests/packaging/cmake-version -B "$OUT/cmake-version" -DWANT="$1" -DCMAKE_PREFIX_PATH="$2" \
        2>>"$LOGS/cmake-find.log" | sed -n 's/^-- \(found .*\|not found\)$/\1/p'
}
versions=""
for want in 0.1 "$VERSION" 0.2 1.0; do
    found="$(find_version "$want" "$PREFIX")"
    versions+="$want: ${found%% at *}; "
done
check "CMake versions (SameMinorVersion): $versions" "$LOGS/cmake-versions.log" \
    grep -x "0.1: found $VERSION; $VERSION: found $VERSION; 0.2: not found; 1.0: not found; " <<<"$versions"
cp -a "$PREFIX" "$OUT/moved"
check "CMake: a copied prefix is found where it now is (relocatable config)" "$LOGS/cmake-relocated.log" \
    grep -x "found $VERSION at $OUT/moved/lib/libtinybrain.so.$VERSION" <<<"$(find_version 0.1 "$OUT/moved")"

# --- 3. bindings: the Julia and MATLAB mirrors, the MEX gateway under Octave ------------
if [[ -x "$PYTHON" ]] && "$PYTHON" -c 'import numpy, pytest' 2>/dev/null; then
    check "Julia and MATLAB-loadlibrary mirrors (pytest tests/packaging, installed library)" \
        "$LOGS/pytest.log" env TINYBRAIN_LIB="$L/$SONAME" "$PYTHON" -m pytest -q -p no:cacheprovider \
        --rootdir tests/packaging tests/packaging
else
    fail "Julia and MATLAB mirrors: no Python with numpy and pytest at $PYTHON (run tests/python/setup_venv.sh)"
fi

# mkoctfile comes with octave-dev. When apt cannot install it (Debian images whose
# libraries are newer than their package lists: octave-dev -> libhdf5-dev -> libcurl4-*-dev
# pins an older libcurl), unpack the same version's .deb into .cache/ (not registered
# with dpkg): a MEX file needs only its headers and mkoctfile.
mkoctfile_cmd() {
    local dir="$ROOT/.cache/octave-dev" version
    version="$(dpkg-query -W -f '${Version}' octave 2>/dev/null)"
    if command -v mkoctfile >/dev/null ||
        { [[ "$(cat "$dir/version" 2>/dev/null)" != "$version" ]] && bash scripts/ensure-tool.sh mkoctfile octave-dev; }; then
        echo mkoctfile
        return
    fi
    if [[ "$(cat "$dir/version" 2>/dev/null)" != "$version" ]]; then
        rm -rf "$dir" && mkdir -p "$dir" &&
            (cd "$dir" && apt-get download "octave-dev=$version" >&2 && dpkg-deb -x octave-dev_*.deb root) || return 1
        echo "$version" >"$dir/version"
    fi
    echo env OCTINCLUDEDIR="$(echo "$dir"/root/usr/include/octave-*/octave)" INCLUDEDIR="$dir/root/usr/include" \
        "$dir/root/usr/bin/mkoctfile"
}
check "tool: octave-cli" "$LOGS/tool-octave.log" bash scripts/ensure-tool.sh octave-cli octave
if command -v octave-cli >/dev/null && MKOCTFILE="$(mkoctfile_cmd 2>"$LOGS/mkoctfile.log")"; then
    for linkage in shared static; do
        if [[ $linkage == shared ]]; then
            libs=($(pkg-config --libs tinybrain) -Wl,-rpath,"$L")
        else
            libs=($(pkg-config --libs tinybrain-static))
        fi
        mex="$OUT/mex-$linkage/tinybrain_mex.mex"
        mkdir -p "$(dirname "$mex")"
        check "mkoctfile --mex examples-c/matlab/tinybrain_mex.c, $linkage" "$LOGS/mex-$linkage-build.log" \
            $MKOCTFILE --mex -Wall -Wextra $(pkg-config --cflags tinybrain) examples-c/matlab/tinybrain_mex.c \
            "${libs[@]}" -o "$mex"
        [[ -f "$mex" ]] || continue
        check "Octave: tinybrain_mex ($linkage) values and errors (tests/packaging/test_tinybrain_mex.m)" \
            "$LOGS/octave-$linkage.log" run_clean TINYBRAIN_VERSION="$VERSION" octave-cli -q --no-window-system \
            --path "$(dirname "$mex")" --path tests/packaging \
            --eval "if test_tinybrain_mex(), error('tinybrain:test', 'checks failed'), end"
        echo "     $(grep -c '^PASS' "$LOGS/octave-$linkage.log") Octave checks passed"
    done
else
    fail "mkoctfile (octave-dev) is not available" "$LOGS/mkoctfile.log"
fi

# --- 4. uninstall ------------------------------------------------------------------------
check "scripts/uninstall.sh leaves the prefix empty" "$LOGS/uninstall.log" bash -c \
    "bash scripts/uninstall.sh --prefix '$PREFIX' && test -z \"\$(find '$PREFIX' -mindepth 1 | tee /dev/stderr)\""
check "DESTDIR install: files under DESTDIR, .pc names the real prefix; uninstall cleans" "$LOGS/destdir.log" bash -c "
    export DESTDIR='$OUT/stage'
    bash scripts/install.sh --no-build --prefix /opt/tinybrain-test &&
    grep -qx 'prefix=/opt/tinybrain-test' \$DESTDIR/opt/tinybrain-test/lib/pkgconfig/tinybrain.pc &&
    test ! -e /opt/tinybrain-test &&
    bash scripts/uninstall.sh --prefix /opt/tinybrain-test &&
    test -z \"\$(find \$DESTDIR/opt/tinybrain-test -mindepth 1)\""

finish
