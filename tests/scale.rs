//! A volume of more than 2^32 elements (u8, 65542 x 32771 x 2 = 4,295,753,764, about
//! 4.3 GB) downsampled in one call each by striding (2 mips) and by 2x2 averaging (1 mip)
//! through the C ABI, checked at every corner, along the edges and at 200,000 random
//! voxels against values computed here from a closed form.
//!
//! The volume is constant on every 2x2 block in x and y (v = h(x/2, y/2, z) for a hash h),
//! so mip 1 of both striding and 2x2 averaging is h(i, j, z) exactly, and mip 2 of
//! striding is h(2i, 2j, z). The odd y size exercises the replicate-padded edge.
//!
//! It needs about 6 GB (input 4.3 GB, outputs 1.4 GB) and runs only when
//! /proc/meminfo's MemAvailable is at least 8 GiB (TB_SCALE_MIN_GIB); otherwise it prints "NOT RUN" and
//! returns (TB_SCALE_REQUIRED=1 makes that a failure). It is #[ignore]d so that a plain
//! `cargo test` neither allocates 6 GB nor reports a skipped run as passed; run it with
//!     cargo test --release --test scale -- --ignored --nocapture
//! (tests/hostile/run.sh does, and reports NOT RUN separately from PASS).

mod common;

use std::ffi::c_void;
use std::ptr::null;
use std::time::Instant;

use common::*;

const X: usize = 65542; // even, > 2^16
const Y: usize = 32771; // odd: the last 2x2 block row is replicate-padded
const Z: usize = 2;
/// MemAvailable needed to run, in GiB (TB_SCALE_MIN_GIB overrides, e.g. to see the skip).
fn needed() -> u64 {
    std::env::var("TB_SCALE_MIN_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8u64)
        << 30
}

/// The value of every voxel of 2x2 block (i, j) of slice z: a cheap 32-bit hash, so that
/// a voxel read from the wrong place is very likely to differ.
#[inline(always)]
fn h(i: usize, j: usize, z: usize) -> u8 {
    let mut v = (i as u32).wrapping_mul(0x9E37_79B1)
        ^ (j as u32).wrapping_mul(0x85EB_CA77)
        ^ (z as u32).wrapping_mul(0xC2B2_AE3D);
    v ^= v >> 15;
    v = v.wrapping_mul(0x2C1B_3C6D);
    (v >> 24) as u8
}

fn fill(volume: &mut [u8]) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    // Tasks of whole (y, z) row pairs: rows 2j and 2j+1 of a slice are identical.
    let pairs_per_slice = Y.div_ceil(2);
    let pairs_per_thread = (pairs_per_slice * Z).div_ceil(threads);
    std::thread::scope(|scope| {
        let mut rest: &mut [u8] = volume;
        for t in 0..threads {
            let first = t * pairs_per_thread;
            let last = ((t + 1) * pairs_per_thread).min(pairs_per_slice * Z);
            // Rows covered by pairs first..last (a slice's last pair has one row: Y is odd).
            let rows_before = |p: usize| (p / pairs_per_slice) * Y + (2 * (p % pairs_per_slice)).min(Y);
            let rows = rows_before(last) - rows_before(first);
            let (mine, others) = rest.split_at_mut(rows * X);
            rest = others;
            scope.spawn(move || {
                let mut at = 0;
                for p in first..last {
                    let (j, z) = (p % pairs_per_slice, p / pairs_per_slice);
                    let row = &mut mine[at..at + X];
                    for (i, pair) in row.chunks_exact_mut(2).enumerate() {
                        pair.fill(h(i, j, z));
                    }
                    at += X;
                    if 2 * j + 1 < Y {
                        mine.copy_within(at - X..at, at);
                        at += X;
                    }
                }
            });
        }
    });
}

fn call(op: &Op, input: &[u8], shape: &[usize], factor: &[usize], outputs: &mut [Vec<u8>]) -> i32 {
    let pointers: Vec<*mut c_void> = outputs.iter_mut().map(|o| o.as_mut_ptr().cast()).collect();
    // SAFETY: the input holds the Fortran-ordered volume; each output holds its mip.
    unsafe {
        (op.per_mip)(
            input.as_ptr().cast(),
            1,
            shape.len(),
            shape.as_ptr(),
            null(),
            factor.as_ptr(),
            outputs.len(),
            0,
            pointers.as_ptr(),
            null(),
        )
    }
}

/// Checks `out` (Fortran order, shape `s`) against `want` at the corners, along every
/// edge of each slice, and at `samples` random voxels; returns the number checked.
fn check(name: &str, out: &[u8], s: [usize; 3], want: impl Fn(usize, usize, usize) -> u8, samples: usize) -> usize {
    let at = |x: usize, y: usize, z: usize| out[x + s[0] * (y + s[1] * z)];
    let mut checked = 0;
    let mut probe = |x: usize, y: usize, z: usize| {
        assert_eq!(
            at(x, y, z),
            want(x, y, z),
            "{name}: voxel ({x}, {y}, {z}) of a {s:?} mip"
        );
        checked += 1;
    };
    for z in 0..s[2] {
        for &y in &[0, 1, s[1] / 2, s[1] - 2, s[1] - 1] {
            for x in 0..s[0] {
                probe(x, y, z);
            }
        }
        for &x in &[0, 1, s[0] / 2, s[0] - 2, s[0] - 1] {
            for y in 0..s[1] {
                probe(x, y, z);
            }
        }
    }
    let mut rng = Rng(0x5CA1E);
    for _ in 0..samples {
        let (x, y, z) = (
            rng.below(s[0] as u64) as usize,
            rng.below(s[1] as u64) as usize,
            rng.below(s[2] as u64) as usize,
        );
        probe(x, y, z);
    }
    // The very last byte: the element whose linear index is past 2^32 / 4 on mip 1.
    probe(s[0] - 1, s[1] - 1, s[2] - 1);
    checked
}

#[test]
#[ignore = "allocates ~6 GB; run with --ignored (tests/hostile/run.sh does)"]
fn a_volume_of_more_than_2_pow_32_elements_in_one_call() {
    let elements = X * Y * Z;
    assert!(elements > 1 << 32);
    let available = mem_available().unwrap_or(0);
    if available < needed() {
        let message = format!(
            "NOT RUN: the >2^32-element scale test needs {} GiB of MemAvailable, this machine has {:.1} GiB",
            needed() >> 30,
            available as f64 / (1u64 << 30) as f64
        );
        if std::env::var_os("TB_SCALE_REQUIRED").is_some() {
            panic!("{message} (TB_SCALE_REQUIRED is set)");
        }
        println!("{message}");
        return;
    }
    let total = Instant::now();
    let mut volume = vec![0u8; elements];
    let t = Instant::now();
    fill(&mut volume);
    println!(
        "scale: filled {elements} voxels ({:.2} GB) in {:.1} s",
        elements as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );

    let shape = [X, Y, Z];
    let factor = [2usize, 2, 1];
    let m1 = model_mip_shape(&shape, &factor, 1);
    let m2 = model_mip_shape(&shape, &factor, 2);
    let (s1, s2) = ([m1[0], m1[1], m1[2]], [m2[0], m2[1], m2[2]]);
    let len = |s: [usize; 3]| s[0] * s[1] * s[2];

    // Striding, 2 mips.
    let mut outputs = vec![vec![0xA5u8; len(s1)], vec![0xA5u8; len(s2)]];
    let t = Instant::now();
    let status = call(&OPS[4], &volume, &shape, &factor, &mut outputs);
    assert_eq!(status, OK, "striding: {}", last_error());
    let striding_s = t.elapsed().as_secs_f64();
    let n1 = check("striding mip 1", &outputs[0], s1, h, 200_000);
    let n2 = check("striding mip 2", &outputs[1], s2, |i, j, z| h(2 * i, 2 * j, z), 200_000);
    println!(
        "scale: striding (2 mips) in {striding_s:.1} s, {} voxels checked",
        n1 + n2
    );

    // 2x2 averaging, 1 mip, into the same buffer (overwritten with a sentinel first).
    outputs.truncate(1);
    outputs[0].fill(0xA5);
    let t = Instant::now();
    let status = call(&OPS[0], &volume, &shape, &factor, &mut outputs);
    assert_eq!(status, OK, "averaging: {}", last_error());
    let averaging_s = t.elapsed().as_secs_f64();
    let n = check("averaging mip 1", &outputs[0], s1, h, 200_000);
    println!("scale: 2x2 averaging (1 mip) in {averaging_s:.1} s, {n} voxels checked");
    println!(
        "scale: PASS: {elements} elements (> 2^32 = {}) in one call, {:.1} s in all",
        1u64 << 32,
        total.elapsed().as_secs_f64()
    );
    drop(volume);
}
