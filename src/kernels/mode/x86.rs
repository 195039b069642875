//! The 2x2x2 mode of 32- and 64-bit labels in AVX2 registers, one block per lane.
//!
//! A scalar block costs up to 64 compares and a branch per label that mispredicts on
//! cell walls, which held random labels to a third of the memory bandwidth. Here a
//! vector holds value i of as many blocks as it has lanes, and every block runs the same
//! 28 compares without a branch.
//!
//! The count of value i is taken over values i..8 only. The first occurrence of a label
//! then carries its full count and later occurrences less, so the first value with the
//! highest count is the first occurrence of the earliest most frequent label: the same
//! winner as the scalar rule, voxel for voxel.

use crate::cascade::ReadAhead;
use std::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_add_epi64, _mm256_andnot_si256, _mm256_blendv_epi8, _mm256_castps_si256,
    _mm256_castsi256_ps, _mm256_cmpeq_epi32, _mm256_cmpeq_epi64, _mm256_cmpgt_epi32, _mm256_cmpgt_epi64,
    _mm256_loadu_si256, _mm256_permute4x64_epi64, _mm256_set1_epi32, _mm256_set1_epi64x, _mm256_setzero_si256,
    _mm256_shuffle_ps, _mm256_storeu_si256, _mm256_unpackhi_epi64, _mm256_unpacklo_epi64,
};

/// A label width the kernel handles: its lane operations, for AVX2 only.
pub(super) trait Lanes: Copy {
    /// Blocks reduced per vector: lanes of this width in 256 bits.
    const BLOCKS: usize;
    /// The first and second values of `BLOCKS` consecutive pairs at `pairs`, each as
    /// one vector, with the blocks in the order `restore_order` undoes.
    ///
    /// # Safety
    /// AVX2 is available and `pairs` is valid for reading 2 * BLOCKS values.
    unsafe fn load_pairs(pairs: *const Self) -> (__m256i, __m256i);
    /// # Safety
    /// AVX2 is available (for this and the methods below).
    unsafe fn equal(a: __m256i, b: __m256i) -> __m256i;
    unsafe fn greater(a: __m256i, b: __m256i) -> __m256i;
    unsafe fn add(a: __m256i, b: __m256i) -> __m256i;
    unsafe fn minus_one() -> __m256i;
    unsafe fn restore_order(v: __m256i) -> __m256i;
}

impl Lanes for u64 {
    const BLOCKS: usize = 4;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_pairs(pairs: *const u64) -> (__m256i, __m256i) {
        // SAFETY: 8 values readable (the caller's contract); loadu has no alignment need.
        let (low, high) = unsafe {
            (
                _mm256_loadu_si256(pairs.cast()),
                _mm256_loadu_si256(pairs.add(4).cast()),
            )
        };
        // Within each 128-bit half: blocks 0 and 2, then 1 and 3.
        (_mm256_unpacklo_epi64(low, high), _mm256_unpackhi_epi64(low, high))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn equal(a: __m256i, b: __m256i) -> __m256i {
        _mm256_cmpeq_epi64(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn greater(a: __m256i, b: __m256i) -> __m256i {
        _mm256_cmpgt_epi64(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn add(a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi64(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn minus_one() -> __m256i {
        _mm256_set1_epi64x(-1)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn restore_order(v: __m256i) -> __m256i {
        // Lanes hold blocks 0, 2, 1, 3.
        _mm256_permute4x64_epi64::<0b11_01_10_00>(v)
    }
}

impl Lanes for u32 {
    const BLOCKS: usize = 8;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_pairs(pairs: *const u32) -> (__m256i, __m256i) {
        // SAFETY: 16 values readable (the caller's contract); loadu has no alignment need.
        let (low, high) = unsafe {
            (
                _mm256_castsi256_ps(_mm256_loadu_si256(pairs.cast())),
                _mm256_castsi256_ps(_mm256_loadu_si256(pairs.add(8).cast())),
            )
        };
        // Within each 128-bit half: blocks 0, 1, 4, 5, then 2, 3, 6, 7.
        (
            _mm256_castps_si256(_mm256_shuffle_ps::<0b10_00_10_00>(low, high)),
            _mm256_castps_si256(_mm256_shuffle_ps::<0b11_01_11_01>(low, high)),
        )
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn equal(a: __m256i, b: __m256i) -> __m256i {
        _mm256_cmpeq_epi32(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn greater(a: __m256i, b: __m256i) -> __m256i {
        _mm256_cmpgt_epi32(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn add(a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn minus_one() -> __m256i {
        _mm256_set1_epi32(-1)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn restore_order(v: __m256i) -> __m256i {
        // 64-bit lanes hold block pairs (0, 1), (4, 5), (2, 3), (6, 7).
        _mm256_permute4x64_epi64::<0b11_01_10_00>(v)
    }
}

/// Reduces the leading whole vectors' worth of blocks of a row of 2x2x2 blocks (result
/// x reduces lines[j][2x] and lines[j][2x + 1] for j = 0..4, in scan order) and returns
/// how many it did: none without AVX2, so the caller finishes the rest.
pub(super) fn most_frequent_of_eight<L: Lanes>(
    lines: &[&[L]],
    ahead: &ReadAhead<L>,
    results: &mut [L],
    sparse: bool,
) -> usize {
    if !std::arch::is_x86_feature_detected!("avx2") {
        return 0;
    }
    let [l0, l1, l2, l3] = lines else {
        unreachable!("a 2x2x2 block spans four lines")
    };
    let done = results.len() / L::BLOCKS * L::BLOCKS;
    let lines = [*l0, *l1, *l2, *l3];
    for line in lines {
        assert!(line.len() >= 2 * done);
    }
    // SAFETY: AVX2 is available (checked above) and every line holds 2 * done values
    // (asserted above).
    unsafe {
        if sparse {
            rows::<L, true>(lines, ahead, &mut results[..done]);
        } else {
            rows::<L, false>(lines, ahead, &mut results[..done]);
        }
    }
    done
}

/// # Safety
/// AVX2 is available; every line holds at least 2 * results.len() values, and
/// results.len() is a multiple of L::BLOCKS.
#[target_feature(enable = "avx2")]
unsafe fn rows<L: Lanes, const SPARSE: bool>(lines: [&[L]; 4], ahead: &ReadAhead<L>, results: &mut [L]) {
    // Four lines are read side by side, which the hardware prefetcher alone does not
    // keep fed.
    let lines_ahead: [_; 4] = std::array::from_fn(|j| ahead.side_by_side(&lines, j));
    for (group, out) in results.chunks_exact_mut(L::BLOCKS).enumerate() {
        let mut values = [_mm256_setzero_si256(); 8];
        for line_ahead in &lines_ahead {
            line_ahead.prefetch(2 * L::BLOCKS * group, 2 * L::BLOCKS);
        }
        for (j, line) in lines.iter().enumerate() {
            // SAFETY: the pairs of this group end at 2 * L::BLOCKS * (group + 1) <=
            // 2 * results.len() <= line.len() (the caller's contract).
            (values[2 * j], values[2 * j + 1]) = unsafe { L::load_pairs(line.as_ptr().add(2 * L::BLOCKS * group)) };
        }
        // Counts are kept negative (each match adds an all-ones -1), so "more" is "less".
        let mut counts = [unsafe { L::minus_one() }; 8];
        for i in 0..8 {
            for j in i + 1..8 {
                // SAFETY (this and the lane calls below): AVX2 is available.
                counts[i] = unsafe { L::add(counts[i], L::equal(values[i], values[j])) };
            }
        }
        let zero = _mm256_setzero_si256();
        // Sparse: background counts zero and wins only when nothing else is there.
        let (mut best, mut best_count, first) = if SPARSE {
            (zero, zero, 0)
        } else {
            (values[0], counts[0], 1)
        };
        for i in first..8 {
            let count = if SPARSE {
                _mm256_andnot_si256(unsafe { L::equal(values[i], zero) }, counts[i])
            } else {
                counts[i]
            };
            let more = unsafe { L::greater(best_count, count) };
            best = _mm256_blendv_epi8(best, values[i], more);
            best_count = _mm256_blendv_epi8(best_count, count, more);
        }
        // SAFETY: out holds L::BLOCKS values, 256 bits; storeu has no alignment need.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), L::restore_order(best)) };
    }
}
