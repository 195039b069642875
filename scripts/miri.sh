#!/usr/bin/env bash
# The library's unsafe code under Miri, Rust's interpreter that stops at undefined
# behaviour: pointer arithmetic out of its allocation, reads of uninitialised or freed
# memory, misaligned or aliasing-violating accesses, data races between threads.
#
#     scripts/miri.sh                  # both builds, one after the other
#     scripts/miri.sh baseline         # or one of them (two runs side by side on 2 cores)
#     scripts/miri.sh avx2
#
# Not part of CI (scripts/test.sh): it needs a nightly toolchain with the miri component
#     rustup toolchain install nightly --component miri
# and Miri runs this code thousands of times slower than the release build (1-3 s for
# one call on a volume of 306 voxels), so only tests sized for it run here.
#
# Two builds: for any x86_64, where the kernels take their portable loops, and with AVX2
# enabled at compile time, where they take their AVX2 paths, which Miri emulates. Each
# runs on one thread (Miri reports one CPU unless told otherwise), under Stacked Borrows
# and strict provenance: its unit tests and the end-to-end test, and in the baseline
# build samples of the C ABI's hostile-input sweep and fuzzer; then the end-to-end test
# again on two threads (see TWO_THREADS).
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo-miri runs a test binary with the environment it was built in, where a variable
# was set then (seen: a fuzzer built with TB_FUZZ_ITERS=30 by hand later ran 30 cases
# when this script asked for 20). Unset, so that the binaries this script builds carry
# none of them from the caller's shell and the values below apply.
unset TINYBRAIN_READ_AHEAD TB_FUZZ_ITERS TB_FUZZ_SECONDS

# Unit tests of the raw-pointer helpers: the C boundary, line read-ahead, strided sources.
POINTER_TESTS=(
    capi::tests::
    cascade::tests::
    dtype::tests::
    engine::tests::every_other_takes_the_even_elements
)
# Unit tests of the AVX2 kernels against their scalar folds, for the AVX2 build (built
# without AVX2 they compare the portable loops with themselves).
AVX2_TESTS=(
    kernels::average::tests::avx2_byte_pairs_add_every_byte_value
    kernels::average::tests::byte_pair_sums_match_the_scalar_fold
    kernels::average::tests::shifted_render_of_u16_into_u8_matches_the_scalar_rendering
    kernels::average::tests::shifted_render_of_i16_into_i8_matches_the_scalar_rendering
    kernels::average::tests::kept_sums_match_sums_added_one_by_one
    kernels::average::tests::packed_byte_means_match_the_scalar_division
    kernels::mode::tests::the_avx2_kernels_take_whole_vectors_where_the_cpu_has_avx2
    kernels::mode::tests::thirds_hold_every_third_value_in_lane_order
    sink::transpose::tests::gathers_wide_only_8_byte_elements_with_avx2
)
# Every 17th call of the hostile-input sweep, the C ABI's other hostile tests, and the
# fuzzer's corpus and first FUZZ_CASES random cases (tests/capi_hostile.rs,
# tests/fuzz_capi.rs): the boundary's pointer checks and the views it builds.
FUZZ_CASES=20

# End to end: every dtype and method, by factors 2x2x1, 2x2x2 and 3x1x2, two mips, read
# through C-order, Fortran-order, reversed, permuted and stepped inputs and written into
# new, C-order and stepped reversed outputs (tests/semantics.rs; under Miri each
# combination runs in one of the layouts, in turn).
END_TO_END=tiny_volumes_of_every_dtype_agree_across_layouts

# One thread: Stacked Borrows (Miri's default) and no pointers made from integers, which
# would hide their provenance from Miri's bounds checks.
ONE_THREAD="-Zmiri-strict-provenance"

# Two threads: `-Zmiri-num-cpus=2` gives the pool a second thread, which takes tiles
# beside the calling one, so Miri's data-race detector sees the shared sources and the
# outputs written from both. Without an aliasing model, because rayon's pool breaks both
# of Miri's on its own: crossbeam-epoch a Stacked Borrows rule (crossbeam-rs/crossbeam
# #545, rayon-rs/rayon#1185), and rayon-core 1.13's `in_place_scope` a Tree Borrows
# protector (seen here: the scope is freed once the helper's job has set its latch, while
# that job's call, which holds a reference to the scope, has yet to return). The one-
# thread runs check this library's aliasing; every other check stays on. The pool's
# threads outlive the test, which `-Zmiri-ignore-leaks` allows. TINYBRAIN_READ_AHEAD=1
# takes the software read-ahead (the Intel way); the one-thread runs take the other, as
# Miri has no cpuid.
TWO_THREADS="-Zmiri-num-cpus=2 -Zmiri-disable-stacked-borrows -Zmiri-ignore-leaks -Zmiri-env-forward=TINYBRAIN_READ_AHEAD"

builds=("$@")
[[ ${#builds[@]} -gt 0 ]] || builds=(baseline avx2)
for build in "${builds[@]}"; do
    if [[ $build != baseline && $build != avx2 ]]; then
        echo "usage: scripts/miri.sh [baseline|avx2]" >&2
        exit 2
    fi
done
for build in "${builds[@]}"; do
    if [[ $build == baseline ]]; then
        features="" unit=("${POINTER_TESTS[@]}")
    else
        features="+avx2" unit=("${AVX2_TESTS[@]}")
    fi
    # Each build in its own target directory: the flags change every artifact.
    export CARGO_TARGET_DIR=target/miri${features:+-avx2}
    export RUSTFLAGS=${features:+-C target-feature=$features}
    printf '\n==> Miri, %s build: unit tests, one thread\n' "$build"
    MIRIFLAGS="$ONE_THREAD" cargo +nightly miri test --lib -- "${unit[@]}"
    printf '\n==> Miri, %s build: %s, one thread\n' "$build" "$END_TO_END"
    MIRIFLAGS="$ONE_THREAD" cargo +nightly miri test --test semantics -- --exact "$END_TO_END"
    if [[ $build == baseline ]]; then
        printf '\n==> Miri, %s build: the C ABI, hostile calls and fuzzing, one thread\n' "$build"
        MIRIFLAGS="$ONE_THREAD" cargo +nightly miri test --test capi_hostile
        TB_FUZZ_ITERS=$FUZZ_CASES TB_FUZZ_SECONDS=1000000 \
            MIRIFLAGS="$ONE_THREAD -Zmiri-env-forward=TB_FUZZ_ITERS -Zmiri-env-forward=TB_FUZZ_SECONDS" \
            cargo +nightly miri test --test fuzz_capi -- --nocapture
    fi
    printf '\n==> Miri, %s build: %s, two threads, read-ahead on\n' "$build" "$END_TO_END"
    TINYBRAIN_READ_AHEAD=1 MIRIFLAGS="$TWO_THREADS" cargo +nightly miri test --test semantics -- --exact "$END_TO_END"
done
printf '\n==> Miri: no undefined behaviour found in these tests\n'
