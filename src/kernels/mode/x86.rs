//! The 2x2 and 2x2x2 modes in AVX2 registers (2x2 not of u16 labels, see the mode
//! kernel's `TwoByTwoRule::reduce_rows`), one block per lane: a vector holds value i of
//! as many blocks as it has lanes, and every block runs the same compares and selects
//! without a branch.
//!
//! 2x2x2: a scalar block costs up to 64 compares and a branch per label that
//! mispredicts on cell walls, which held random labels to a third of the memory
//! bandwidth. The count of value i is taken over values i..8 only. The first occurrence
//! of a label then carries its full count and later occurrences less, so the first
//! value with the highest count is the first occurrence of the earliest most frequent
//! label: the same winner as the scalar rule, voxel for voxel. Labels of one and two
//! bytes have lanes of their width, 32 and 16 blocks per vector (block by block before,
//! 512x512x64 u8 labels of 50 ids ran at 690 MVx/s, a fortieth of the memory's speed).
//!
//! 2x2: three compares and two selects per vector (five and four in sparse mode). On
//! 512x512x64 u64 labels with preallocated outputs this ran 1.06-1.10x as fast as the
//! scalar rule the compiler built on random labels and 1.03-1.14x on realistic ones
//! (one and two threads, four runs); u32 labels ran the same either way.
//!
//! Exact mode of other windows: up to 32 values, one window per lane (`windows`), as the
//! 2x2x2 blocks are; larger windows, or a row's last few, one at a time, every value
//! counted against the others at once, lanes holding values of the window
//! (`first_most_frequent`).

use crate::cascade::{reads_rows_ahead_line_by_line, slot, ReadAhead};
use std::arch::x86_64::{
    __m256i, _mm256_add_epi16, _mm256_add_epi32, _mm256_add_epi64, _mm256_add_epi8, _mm256_and_si256,
    _mm256_andnot_si256, _mm256_blend_epi32, _mm256_blendv_epi8, _mm256_castps_si256, _mm256_castsi256_ps,
    _mm256_cmpeq_epi16, _mm256_cmpeq_epi32, _mm256_cmpeq_epi64, _mm256_cmpeq_epi8, _mm256_cmpgt_epi16,
    _mm256_cmpgt_epi32, _mm256_cmpgt_epi64, _mm256_cmpgt_epi8, _mm256_i32gather_epi32, _mm256_i64gather_epi64,
    _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256, _mm256_packus_epi16, _mm256_packus_epi32,
    _mm256_permute4x64_epi64, _mm256_permutevar8x32_epi32, _mm256_set1_epi16, _mm256_set1_epi32, _mm256_set1_epi64x,
    _mm256_set1_epi8, _mm256_set_epi32, _mm256_set_epi64x, _mm256_setr_epi32, _mm256_setzero_si256, _mm256_shuffle_ps,
    _mm256_slli_epi32, _mm256_slli_epi64, _mm256_srli_epi16, _mm256_srli_epi32, _mm256_storeu_si256, _mm256_sub_epi16,
    _mm256_sub_epi32, _mm256_sub_epi64, _mm256_sub_epi8, _mm256_testz_si256, _mm256_unpackhi_epi32,
    _mm256_unpackhi_epi64, _mm256_unpacklo_epi32, _mm256_unpacklo_epi64, _mm256_xor_si256,
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
    /// The blocks of a `load_pairs` vector put back in order. Every width's loads leave
    /// each 128-bit half holding blocks of the first load's half, then of the second's
    /// (u64: blocks 0, 2 | 1, 3; u32: 0, 1, 4, 5 | 2, 3, 6, 7; u16 and u8 the same in
    /// quarters of 4 and 8 blocks), so one permute of the 64-bit quarters, 0, 2, 1, 3,
    /// serves them all.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn restore_order(v: __m256i) -> __m256i {
        _mm256_permute4x64_epi64::<0b11_01_10_00>(v)
    }
    unsafe fn splat(self) -> __m256i;
    unsafe fn sub(a: __m256i, b: __m256i) -> __m256i;
    /// A number as a lane value (`n` is at most 64 here).
    fn of(n: usize) -> Self;
}

/// The further lane operations of the window kernels (`windows`, `first_most_frequent`),
/// which take 32- and 64-bit labels (narrower ones are widened to 32 bits for them).
pub(super) trait WindowLanes: Lanes {
    /// Each lane times 64.
    ///
    /// # Safety
    /// AVX2 is available (for this and the methods below).
    unsafe fn times_64(a: __m256i) -> __m256i;
    /// The lane numbers, 0 in the lowest lane.
    unsafe fn lane_numbers() -> __m256i;
    /// Lane i: i * stride, the offsets `gather` reads at.
    unsafe fn strided(stride: usize) -> __m256i;
    /// Lane i: the value at `at` plus lane i of `offsets` (in values).
    ///
    /// # Safety
    /// AVX2 is available and every value read is valid for reading.
    unsafe fn gather(at: *const Self, offsets: __m256i) -> __m256i;
    /// Vector k, lane i: the value at `at + 3i + k`, for k = 0, 1, 2 (`gather` at
    /// offsets 3i, from three plain loads).
    ///
    /// # Safety
    /// AVX2 is available and `at` is valid for reading 3 * BLOCKS values.
    unsafe fn load_thirds(at: *const Self) -> [__m256i; 3];
}

/// The lane operations that differ from width to width only in their intrinsics: each
/// `Lanes` impl names its width's compare, add, subtract and broadcast.
macro_rules! lane_arithmetic {
    ($equal:ident, $greater:ident, $add:ident, $sub:ident, $set1:ident, $signed:ty) => {
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn equal(a: __m256i, b: __m256i) -> __m256i {
            $equal(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn greater(a: __m256i, b: __m256i) -> __m256i {
            $greater(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn add(a: __m256i, b: __m256i) -> __m256i {
            $add(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn minus_one() -> __m256i {
            $set1(-1)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn splat(self) -> __m256i {
            $set1(self as $signed)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn sub(a: __m256i, b: __m256i) -> __m256i {
            $sub(a, b)
        }
        fn of(n: usize) -> Self {
            n as Self
        }
    };
}

impl Lanes for u64 {
    lane_arithmetic!(
        _mm256_cmpeq_epi64,
        _mm256_cmpgt_epi64,
        _mm256_add_epi64,
        _mm256_sub_epi64,
        _mm256_set1_epi64x,
        i64
    );
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
}

impl WindowLanes for u64 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn times_64(a: __m256i) -> __m256i {
        _mm256_slli_epi64::<6>(a)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lane_numbers() -> __m256i {
        _mm256_set_epi64x(3, 2, 1, 0)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn strided(stride: usize) -> __m256i {
        let s = stride as i64;
        _mm256_set_epi64x(3 * s, 2 * s, s, 0)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn gather(at: *const u64, offsets: __m256i) -> __m256i {
        // SAFETY: the caller's contract; scale 8 makes the offsets counts of values.
        unsafe { _mm256_i64gather_epi64::<8>(at.cast(), offsets) }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_thirds(at: *const u64) -> [__m256i; 3] {
        // SAFETY: 12 values readable (the caller's contract); loadu has no alignment need.
        let [a, b, c] = unsafe { [0, 4, 8].map(|i| _mm256_loadu_si256(at.add(i).cast())) };
        // Value 3i + k sits in lane (3i + k) % 4 of a, b or c: blends put each vector's
        // four in distinct lanes (a blend mask has two bits per 64-bit lane), and a
        // permute puts them in order.
        let first = _mm256_blend_epi32::<0b0000_1100>(_mm256_blend_epi32::<0b0011_0000>(a, b), c);
        let second = _mm256_blend_epi32::<0b0011_0000>(_mm256_blend_epi32::<0b1100_0011>(a, b), c);
        let third = _mm256_blend_epi32::<0b1100_0011>(_mm256_blend_epi32::<0b0000_1100>(a, b), c);
        [
            _mm256_permute4x64_epi64::<0b01_10_11_00>(first),
            _mm256_permute4x64_epi64::<0b10_11_00_01>(second),
            _mm256_permute4x64_epi64::<0b11_00_01_10>(third),
        ]
    }
}

impl Lanes for u32 {
    lane_arithmetic!(
        _mm256_cmpeq_epi32,
        _mm256_cmpgt_epi32,
        _mm256_add_epi32,
        _mm256_sub_epi32,
        _mm256_set1_epi32,
        i32
    );
    const BLOCKS: usize = 8;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_pairs(pairs: *const u32) -> (__m256i, __m256i) {
        // SAFETY: 16 values readable (the caller's contract); loadu has no alignment need.
        let (low, high) = unsafe {
            (
                _mm256_loadu_si256(pairs.cast()),
                _mm256_loadu_si256(pairs.add(8).cast()),
            )
        };
        // Blocks 0, 1, 4, 5, then 2, 3, 6, 7.
        // SAFETY: AVX2 is available.
        unsafe { even_and_odd_words(low, high) }
    }
}

impl WindowLanes for u32 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn times_64(a: __m256i) -> __m256i {
        _mm256_slli_epi32::<6>(a)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lane_numbers() -> __m256i {
        _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn strided(stride: usize) -> __m256i {
        let s = stride as i32;
        _mm256_set_epi32(7 * s, 6 * s, 5 * s, 4 * s, 3 * s, 2 * s, s, 0)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn gather(at: *const u32, offsets: __m256i) -> __m256i {
        // SAFETY: the caller's contract; scale 4 makes the offsets counts of values.
        unsafe { _mm256_i32gather_epi32::<4>(at.cast(), offsets) }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_thirds(at: *const u32) -> [__m256i; 3] {
        // SAFETY: 24 values readable (the caller's contract); loadu has no alignment need.
        let [a, b, c] = unsafe { [0, 8, 16].map(|i| _mm256_loadu_si256(at.add(i).cast())) };
        // As for u64, with eight lanes: value 3i + k sits in lane (3i + k) % 8.
        let first = _mm256_blend_epi32::<0b0010_0100>(_mm256_blend_epi32::<0b1001_0010>(a, b), c);
        let second = _mm256_blend_epi32::<0b0100_1001>(_mm256_blend_epi32::<0b0010_0100>(a, b), c);
        let third = _mm256_blend_epi32::<0b1001_0010>(_mm256_blend_epi32::<0b0100_1001>(a, b), c);
        [
            _mm256_permutevar8x32_epi32(first, _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5)),
            _mm256_permutevar8x32_epi32(second, _mm256_setr_epi32(1, 4, 7, 2, 5, 0, 3, 6)),
            _mm256_permutevar8x32_epi32(third, _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7)),
        ]
    }
}

impl Lanes for u16 {
    lane_arithmetic!(
        _mm256_cmpeq_epi16,
        _mm256_cmpgt_epi16,
        _mm256_add_epi16,
        _mm256_sub_epi16,
        _mm256_set1_epi16,
        i16
    );
    const BLOCKS: usize = 16;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_pairs(pairs: *const u16) -> (__m256i, __m256i) {
        // SAFETY: 32 values readable (the caller's contract); loadu has no alignment need.
        let (low, high) = unsafe {
            (
                _mm256_loadu_si256(pairs.cast()),
                _mm256_loadu_si256(pairs.add(16).cast()),
            )
        };
        // Each pair is a 32-bit word: its first value the low half, its second the high
        // half. Packed, both halves below 2^16, within each 128-bit half: blocks 0-3,
        // 8-11, then 4-7, 12-15.
        let low_halves = _mm256_set1_epi32(0xFFFF);
        (
            _mm256_packus_epi32(_mm256_and_si256(low, low_halves), _mm256_and_si256(high, low_halves)),
            _mm256_packus_epi32(_mm256_srli_epi32::<16>(low), _mm256_srli_epi32::<16>(high)),
        )
    }
}

impl Lanes for u8 {
    lane_arithmetic!(
        _mm256_cmpeq_epi8,
        _mm256_cmpgt_epi8,
        _mm256_add_epi8,
        _mm256_sub_epi8,
        _mm256_set1_epi8,
        i8
    );
    const BLOCKS: usize = 32;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_pairs(pairs: *const u8) -> (__m256i, __m256i) {
        // SAFETY: 64 values readable (the caller's contract); loadu has no alignment need.
        let (low, high) = unsafe {
            (
                _mm256_loadu_si256(pairs.cast()),
                _mm256_loadu_si256(pairs.add(32).cast()),
            )
        };
        // As for u16, a pair to a 16-bit word: within each 128-bit half, blocks 0-7,
        // 16-23, then 8-15, 24-31.
        let low_halves = _mm256_set1_epi16(0xFF);
        (
            _mm256_packus_epi16(_mm256_and_si256(low, low_halves), _mm256_and_si256(high, low_halves)),
            _mm256_packus_epi16(_mm256_srli_epi16::<8>(low), _mm256_srli_epi16::<8>(high)),
        )
    }
}

/// The even and the odd 32-bit words of `a` and `b`: within each 128-bit half, those
/// of a's half, then b's (words 0, 2 of a, 0, 2 of b, 4, 6 of a, 4, 6 of b for the
/// even ones). Of 64-bit lanes, the even words are the low halves and the odd ones the
/// high halves.
///
/// # Safety
/// AVX2 is available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn even_and_odd_words(a: __m256i, b: __m256i) -> (__m256i, __m256i) {
    let (a, b) = (_mm256_castsi256_ps(a), _mm256_castsi256_ps(b));
    (
        _mm256_castps_si256(_mm256_shuffle_ps::<0b10_00_10_00>(a, b)),
        _mm256_castps_si256(_mm256_shuffle_ps::<0b11_01_11_01>(a, b)),
    )
}

/// Reduces the leading whole vectors' worth of blocks of a row of 2x2x2 blocks (result
/// x reduces lines[j][2x] and lines[j][2x + 1] for j = 0..4, the line bit at `position`
/// (0, 1 or 2) of the scan-order index) and returns how many it did: none without AVX2,
/// so the caller finishes the rest.
pub(super) fn most_frequent_of_eight<L: Lanes>(
    position: usize,
    lines: &[&[L]],
    ahead: &ReadAhead<L>,
    results: &mut [L],
    sparse: bool,
) -> usize {
    whole_vectors::<L, 4>(lines, results, |lines, results| {
        // SAFETY: AVX2 is available and every line holds 2 * results.len() values, a
        // multiple of L::BLOCKS (`whole_vectors`' contract).
        unsafe {
            match (position, sparse) {
                (0, false) => rows::<L, false, 0>(lines, ahead, results),
                (0, true) => rows::<L, true, 0>(lines, ahead, results),
                (1, false) => rows::<L, false, 1>(lines, ahead, results),
                (1, true) => rows::<L, true, 1>(lines, ahead, results),
                (2, false) => rows::<L, false, 2>(lines, ahead, results),
                (2, true) => rows::<L, true, 2>(lines, ahead, results),
                _ => unreachable!("a 2x2x2 block has three axes"),
            }
        }
    })
}

/// The index of the first of the most frequent values of `values[..len]` (compared
/// bitwise), or None when all of them are background (0, in sparse mode). `values`
/// holds at least `len` rounded up to a pair of vectors, and `len` is at most 64.
///
/// Each pair of vectors is counted in registers against every value from its own start
/// on, a broadcast, two compares and two subtractions per value. Counting value i only
/// against values from where its pair starts (not from 0) still gives a label's first
/// occurrence its full count and a later one no more than that, so the first value
/// with the highest count is the first occurrence of the earliest most frequent label,
/// and half the compares are saved.
///
/// That value is picked without a branch: each lane's count becomes the key
/// `64 * count + 63 - i`, so the largest key is the highest count at the lowest index,
/// and the keys of padding lanes and of background are 0. (Picked by a scalar loop over
/// the counts, whose compares mispredicted on mixed labels, exact 3x3x3 mode of random
/// labels spent a third of its time there. 512x512x64 labels, one thread, builds
/// alternated: random u64 3x3x3 62-65 -> 49-54 ms, random u32 3x3x3 50.8 -> 38.6-38.9,
/// random u64 4x4x4 79-81 -> 73-78, realistic u64 3x3x3 12.54-12.56 -> 12.37-12.39.)
///
/// Out of line: inlined into the window loop, exact 4x4x4 mode of random u64 labels
/// ran 1.3x slower (256x256x32, 50 labels, 23.4 against 17.7 ms, Zen 3; seen when a
/// change elsewhere moved LLVM's inlining, a298088).
///
/// # Safety
/// AVX2 is available.
#[inline(never)]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn first_most_frequent<L: WindowLanes + Into<u64> + Eq + Default>(
    values: &[L],
    len: usize,
    sparse: bool,
) -> Option<usize> {
    const LAST_INDEX: usize = 63;
    let pair = 2 * L::BLOCKS;
    assert!(pair <= 16 && len <= LAST_INDEX + 1 && values.len() >= len.div_ceil(pair) * pair);
    let zero = _mm256_setzero_si256();
    let lane_numbers = L::lane_numbers();
    let (mut best_low, mut best_high) = (zero, zero);
    for start in (0..len).step_by(pair) {
        // SAFETY: values holds start + pair values (asserted); loadu has no alignment need.
        let (low, high) = unsafe {
            let at = values.as_ptr().add(start);
            (
                _mm256_loadu_si256(at.cast()),
                _mm256_loadu_si256(at.add(L::BLOCKS).cast()),
            )
        };
        let (mut low_counts, mut high_counts) = (zero, zero);
        for &label in &values[start..len] {
            let label = label.splat();
            low_counts = L::sub(low_counts, L::equal(low, label));
            high_counts = L::sub(high_counts, L::equal(high, label));
        }
        // Lane j of the low vector holds value start + j, of the high one start + BLOCKS + j.
        let low_lanes = L::sub(L::of(len - start).splat(), lane_numbers);
        let high_lanes = L::sub(low_lanes, L::of(L::BLOCKS).splat());
        let low_ranks = L::sub(L::of(LAST_INDEX - start).splat(), lane_numbers);
        let high_ranks = L::sub(low_ranks, L::of(L::BLOCKS).splat());
        let key = |counts: __m256i, labels: __m256i, lanes_left: __m256i, ranks: __m256i| {
            let mut keep = L::greater(lanes_left, zero);
            if sparse {
                keep = _mm256_andnot_si256(L::equal(labels, zero), keep);
            }
            _mm256_and_si256(keep, L::add(L::times_64(counts), ranks))
        };
        let low_keys = key(low_counts, low, low_lanes, low_ranks);
        let high_keys = key(high_counts, high, high_lanes, high_ranks);
        best_low = _mm256_blendv_epi8(best_low, low_keys, L::greater(low_keys, best_low));
        best_high = _mm256_blendv_epi8(best_high, high_keys, L::greater(high_keys, best_high));
    }
    let best = _mm256_blendv_epi8(best_low, best_high, L::greater(best_high, best_low));
    let mut keys = [L::default(); 8];
    // SAFETY: keys holds 8 >= BLOCKS lanes.
    unsafe { _mm256_storeu_si256(keys.as_mut_ptr().cast(), best) };
    let top: u64 = keys[..L::BLOCKS].iter().map(|&k| k.into()).max().unwrap_or(0);
    (top > 0).then(|| LAST_INDEX - (top % 64) as usize)
}

/// The most values in a window `windows` takes. The count grows with their square, and
/// gathering a larger window costs more than testing it where it lies: exact 4x4x4
/// mode (64 values) of realistic u64 labels took 17-19 ms against 11-13 window by
/// window, even with the windows the early tests left undecided handed back to be
/// counted label by label; of random labels, 46 ms against 62 (85 handed back).
pub(super) const MAX_WINDOW_VALUES: usize = 32;

/// Exact mode of whole windows, one window per lane: window x holds values
/// `x * width .. (x + 1) * width` of each row, in scan order row by row,
/// and result x is its most frequent value (compared bitwise), ties to the one seen
/// first; in sparse mode 0 is background, which wins only a window of nothing else.
/// `read_ahead` is called with each group's first position in the rows, before they
/// are read there.
///
/// Value i of as many windows as a vector has lanes is gathered into one vector, and
/// counted against values i + 1.. as the 2x2x2 blocks are (`rows`): n(n - 1)/2
/// compares for n values, shared by the lanes, and no reduction across lanes. Counted
/// window by window (`first_most_frequent`), each value is compared against the
/// window's values in vectors, and the counts are then keyed and reduced across lanes.
///
/// 64-bit labels go two groups at a time: where the high halves of every window of
/// both say that the low halves alone tell its labels apart (`narrow_halves`), the
/// eight windows are counted on their low halves in 32-bit lanes, twice as many per
/// compare, as u32 labels are. Labels below 2^32 always are, and so are the windows
/// inside one cell of a segmentation whose ids are 64-bit.
///
/// # Safety
/// AVX2 is available.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn windows<L: WindowLanes, const SPARSE: bool>(
    rows: &[&[L]],
    width: usize,
    results: &mut [L],
    read_ahead: impl Fn(usize),
) {
    let len = rows.len() * width;
    assert!((1..=MAX_WINDOW_VALUES).contains(&len) && results.len() % L::BLOCKS == 0);
    for row in rows {
        assert!(row.len() >= results.len() * width);
    }
    let offsets = L::strided(width);
    let group_len = L::BLOCKS * width;
    let gather = |group: usize, values: &mut [__m256i; MAX_WINDOW_VALUES]| {
        let start = group * group_len;
        read_ahead(start);
        // SAFETY: AVX2 is available; every row holds (group + 1) * group_len values
        // (asserted).
        unsafe { gather_group(rows, width, start, offsets, values) };
    };
    let mut tests = EarlyTests::default();
    let zero = _mm256_setzero_si256();
    let (mut values, mut next_values, mut low_halves) = (
        [zero; MAX_WINDOW_VALUES],
        [zero; MAX_WINDOW_VALUES],
        [zero; MAX_WINDOW_VALUES],
    );
    let groups = results.len() / L::BLOCKS;
    let pairs = if L::BLOCKS == 4 && len >= NARROW_FROM_VALUES {
        groups / 2
    } else {
        0
    };
    let mut narrow_tries = NARROW_TRIES.get();
    for pair in 0..pairs {
        let [first, second] = [2 * pair, 2 * pair + 1];
        gather(first, &mut values);
        gather(second, &mut next_values);
        let out = &mut results[first * L::BLOCKS..(second + 1) * L::BLOCKS];
        let wide = [&values[..len], &next_values[..len]];
        if narrow_tries.due() {
            // SAFETY: AVX2 is available; L is u64 (four lanes).
            let high = unsafe { narrow_halves::<SPARSE>(wide[0], wide[1], &mut low_halves) };
            if let Some(high) = high {
                // SAFETY: AVX2 is available.
                let (best, by_first) = unsafe { most_frequent_in_lanes::<u32, SPARSE>(&low_halves[..len], &mut tests) };
                narrow_tries.record(!by_first);
                // Lanes hold windows 0, 1, 4, 5 | 2, 3, 6, 7 (`narrow_halves`);
                // interleaved with their high halves they are windows 0..4 and 4..8.
                // SAFETY: out holds 8 u64 values, two vectors; storeu has no alignment
                // need.
                unsafe {
                    _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm256_unpacklo_epi32(best, high));
                    _mm256_storeu_si256(
                        out.as_mut_ptr().add(L::BLOCKS).cast(),
                        _mm256_unpackhi_epi32(best, high),
                    );
                }
                continue;
            }
            narrow_tries.record(false);
        }
        for (values, out) in wide.into_iter().zip(out.chunks_exact_mut(L::BLOCKS)) {
            // SAFETY: AVX2 is available.
            let (best, _) = unsafe { most_frequent_in_lanes::<L, SPARSE>(values, &mut tests) };
            // SAFETY: out holds L::BLOCKS values, 256 bits; storeu has no alignment need.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), best) };
        }
    }
    NARROW_TRIES.set(narrow_tries);
    for group in 2 * pairs..groups {
        gather(group, &mut values);
        // SAFETY: AVX2 is available.
        let (best, _) = unsafe { most_frequent_in_lanes::<L, SPARSE>(&values[..len], &mut tests) };
        let out = &mut results[group * L::BLOCKS..(group + 1) * L::BLOCKS];
        // SAFETY: out holds L::BLOCKS values, 256 bits; storeu has no alignment need.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), best) };
    }
}

/// Value i of the windows of a group starting at `start` of each row, one window per
/// lane, into `values[i]`.
///
/// Windows three values wide (3x3x3, 3x3x1) take three plain loads per row, sorted
/// into lanes by blends and permutes (`load_thirds`), instead of three gathers: the
/// gathers were two fifths of exact 3x3x3 mode on Zen 5. 512x512x64 u64 labels, one
/// thread (two), preallocated outputs, builds alternated in one process: random
/// 12.98 -> 9.17 ms, 1.41x (1.40x), realistic 10.48 -> 7.16 ms, 1.46x (1.47x).
///
/// # Safety
/// AVX2 is available; every row holds start + L::BLOCKS * width values.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn gather_group<L: WindowLanes>(
    rows: &[&[L]],
    width: usize,
    start: usize,
    offsets: __m256i,
    values: &mut [__m256i; MAX_WINDOW_VALUES],
) {
    let mut i = 0;
    if width == 3 {
        for row in rows {
            // SAFETY: reads values start .. start + 3 * BLOCKS (the caller's contract);
            // AVX2 is available.
            let thirds = unsafe { L::load_thirds(row.as_ptr().add(start)) };
            values[i..i + 3].copy_from_slice(&thirds);
            i += 3;
        }
        return;
    }
    for row in rows {
        for k in 0..width {
            // SAFETY: lane l reads value start + k + l * width < start + BLOCKS * width
            // (the caller's contract); AVX2 is available.
            values[i] = unsafe { L::gather(row.as_ptr().add(start + k), offsets) };
            i += 1;
        }
    }
}

/// The fewest values in a window for which `windows` tries the low halves of 64-bit
/// labels: 3x3x1 mode (9 values) of the bench's labels ran 4-8% slower with them,
/// random and realistic; 2x2x4 (16) of random labels 5% faster, 3x3x3 (27) 15%.
const NARROW_FROM_VALUES: usize = 16;

/// The low halves of value i of two groups of four 64-bit windows (`first`, `second`)
/// as one vector of eight 32-bit lanes, in `low_halves[i]`, with the lanes in the
/// order windows 0, 1, 4, 5 | 2, 3, 6, 7; and the high half of each window's labels,
/// in that order, when every one of the eight windows is told apart by its low halves
/// alone: all its values share one high half (in sparse mode, every value is either 0
/// or a label with that high half and a low half other than 0, so that background is
/// still the 0 of the low halves). None where some window is not.
///
/// # Safety
/// AVX2 is available; both hold the same number of values, at least one and at most
/// low_halves.len().
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn narrow_halves<const SPARSE: bool>(
    first: &[__m256i],
    second: &[__m256i],
    low_halves: &mut [__m256i],
) -> Option<__m256i> {
    let zero = _mm256_setzero_si256();
    // What each window's labels may share: the first value, or in sparse mode all of
    // them or'd (the high half of each label where they have one; neither where two).
    let shared = [first, second].map(|values| {
        if SPARSE {
            values.iter().fold(zero, |all, &value| _mm256_or_si256(all, value))
        } else {
            values[0]
        }
    });
    // Where the high halves differ from the shared one, before any is split off (most
    // windows across the walls of 64-bit ids stop here).
    let mut differ = zero;
    for (values, shared) in [first, second].into_iter().zip(shared) {
        for &value in values {
            let mut high_differs = _mm256_xor_si256(value, shared);
            if SPARSE {
                // SAFETY: AVX2 is available.
                high_differs = _mm256_andnot_si256(unsafe { u64::equal(value, zero) }, high_differs);
            }
            differ = _mm256_or_si256(differ, high_differs);
        }
    }
    let high_bits = _mm256_set1_epi64x(0xFFFF_FFFF_0000_0000_u64 as i64);
    if _mm256_testz_si256(differ, high_bits) == 0 {
        return None;
    }
    // Sparse: labels whose low half is 0 but not their high half.
    let mut hidden = zero;
    for (i, (&a, &b)) in first.iter().zip(second).enumerate() {
        // SAFETY: AVX2 is available.
        let (low, high) = unsafe { even_and_odd_words(a, b) };
        low_halves[i] = low;
        if SPARSE {
            let high_is_zero = _mm256_cmpeq_epi32(high, zero);
            hidden = _mm256_or_si256(
                hidden,
                _mm256_andnot_si256(high_is_zero, _mm256_cmpeq_epi32(low_halves[i], zero)),
            );
        }
    }
    if _mm256_testz_si256(hidden, hidden) == 0 {
        return None;
    }
    // A window of background in sparse mode is 0 in both halves.
    // SAFETY: AVX2 is available.
    Some(unsafe { even_and_odd_words(shared[0], shared[1]) }.1)
}

/// What the early tests of `most_frequent_in_lanes` have seen so far in a run.
#[derive(Default)]
struct EarlyTests {
    /// Groups reduced.
    groups: usize,
    /// Groups in a row that the two-label test left undecided: random labels skip it,
    /// but for every eighth group.
    undecided_by_two: usize,
}

/// When `narrow_halves` is tried on a pair of groups. It pays only where the
/// first-label test leaves windows to count (random labels); inside the cells of a
/// segmentation that test settles them as fast in 64-bit lanes, and windows across the
/// walls between cells of 64-bit ids fail it. Tried on every pair, it cost exact 3x3x3
/// mode of the bench's realistic labels 5-10% (sparse 10-15%). After a try that did not
/// pay it waits for twice as many pairs as last time, up to 64; one that paid starts
/// over. Kept per thread from run to run, as a volume's labels are alike throughout
/// (the results do not depend on it).
#[derive(Clone, Copy, Default)]
struct NarrowTries {
    /// Pairs to pass over after the last try that did not pay.
    interval: u8,
    /// Pairs still to pass over.
    wait: u8,
}

impl NarrowTries {
    const LONGEST_WAIT: u8 = 64;

    /// Whether to try this pair (counted as passed over if not).
    #[inline(always)]
    fn due(&mut self) -> bool {
        if self.wait > 0 {
            self.wait -= 1;
            return false;
        }
        true
    }

    /// A try's outcome.
    #[inline(always)]
    fn record(&mut self, paid: bool) {
        *self = if paid {
            NarrowTries::default()
        } else {
            let interval = (2 * self.interval).clamp(1, Self::LONGEST_WAIT);
            NarrowTries {
                interval,
                wait: interval,
            }
        };
    }
}

thread_local! {
    static NARROW_TRIES: std::cell::Cell<NarrowTries> = const { std::cell::Cell::new(NarrowTries { interval: 0, wait: 0 }) };
}

/// Matches of `label` in `values[from..]`, as a negative count (each adds an all-ones
/// -1), minus one more: the count of value `from - 1` from itself on when that is
/// `label`.
///
/// # Safety
/// AVX2 is available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn count_from<L: Lanes>(values: &[__m256i], from: usize, label: __m256i) -> __m256i {
    // SAFETY (the lane calls): AVX2 is available.
    let ones = unsafe { L::minus_one() };
    values[from..]
        .iter()
        .fold(ones, |count, &other| unsafe { L::add(count, L::equal(label, other)) })
}

/// Every value that equals `label`, as a negative count.
///
/// # Safety
/// AVX2 is available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn count_all<L: Lanes>(values: &[__m256i], label: __m256i) -> __m256i {
    // SAFETY: AVX2 is available.
    unsafe { L::sub(count_from::<L>(values, 0, label), L::minus_one()) }
}

/// The first-label test, lane by lane: the label it starts from, and whether that wins.
#[derive(Clone, Copy)]
struct Lead {
    /// The first value, or in sparse mode the first real label (background where the
    /// window holds nothing else, which then wins).
    label: __m256i,
    /// Its count (negative).
    count: __m256i,
    /// All ones where it is a real label (always, but in sparse mode).
    real: __m256i,
    /// All ones where it is the window's most frequent label: it fills half the window
    /// (no label can have more, and a tie goes to the label seen first), or the window
    /// is background.
    decided: __m256i,
}

impl Lead {
    /// The test on value i of each lane's window in `values[i]`.
    ///
    /// # Safety
    /// AVX2 is available.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn of<L: Lanes, const SPARSE: bool>(values: &[__m256i]) -> Lead {
        let zero = _mm256_setzero_si256();
        // SAFETY (the lane calls from here on): AVX2 is available.
        let ones = unsafe { L::minus_one() };
        let first = values[0];
        let mut label = first;
        if SPARSE {
            let mut found = _mm256_andnot_si256(unsafe { L::equal(first, zero) }, ones);
            if _mm256_movemask_epi8(found) != -1 {
                for &value in &values[1..] {
                    let new = _mm256_andnot_si256(found, _mm256_andnot_si256(unsafe { L::equal(value, zero) }, ones));
                    label = _mm256_blendv_epi8(label, value, new);
                    found = _mm256_or_si256(found, new);
                }
            }
        }
        // Where the first value leads, its count from itself on, as `most_frequent_in_lanes`
        // counts every value.
        let count = unsafe {
            if SPARSE {
                count_all::<L>(values, label)
            } else {
                count_from::<L>(values, 1, first)
            }
        };
        let real = if SPARSE {
            _mm256_andnot_si256(unsafe { L::equal(label, zero) }, ones)
        } else {
            ones
        };
        // A count of at most -ceil(len / 2) is half the window or more.
        let below_half = unsafe { L::sub(zero, L::of(values.len().div_ceil(2) - 1).splat()) };
        let decided = _mm256_or_si256(
            _mm256_and_si256(unsafe { L::greater(below_half, count) }, real),
            _mm256_andnot_si256(real, ones),
        );
        Lead {
            label,
            count,
            real,
            decided,
        }
    }

    /// Whether every lane is decided.
    ///
    /// # Safety
    /// AVX2 is available.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn decides_all(&self) -> bool {
        _mm256_movemask_epi8(self.decided) == -1
    }
}

/// The most frequent of `values`, lane by lane: value i of each lane's window in
/// `values[i]` (see `windows`); and whether the first-label test settled every lane.
///
/// Real segmentations' windows mostly lie inside one cell, which the first-label test
/// settles. Most of the others lie across the wall between two cells, which the
/// two-label test of `most_frequent_of_window` settles; the rest are counted in full
/// (`most_frequent_past_lead`).
///
/// This and `most_frequent_past_lead` are `#[inline(always)]` with no target feature
/// of their own (a function cannot have both), so that they are compiled into each
/// AVX2 loop over groups that calls them, with the lane operations inlined there. Left
/// to the compiler they were a call per group (it inlines large functions into one
/// call site only), and exact 3x3x1 mode of u64 labels ran 6-10% slower than with the
/// same logic written out in the loop (before 64-bit windows went two groups at a
/// time); inlined, 3-5% (512x512x64, one thread, builds alternated).
///
/// # Safety
/// AVX2 is available.
#[inline(always)]
unsafe fn most_frequent_in_lanes<L: Lanes, const SPARSE: bool>(
    values: &[__m256i],
    tests: &mut EarlyTests,
) -> (__m256i, bool) {
    // SAFETY: AVX2 is available.
    let lead = unsafe { Lead::of::<L, SPARSE>(values) };
    if lead.decides_all() {
        return (lead.label, true);
    }
    // SAFETY: AVX2 is available.
    (
        unsafe { most_frequent_past_lead::<L, SPARSE>(values, lead, tests) },
        false,
    )
}

/// `most_frequent_in_lanes` where the first-label test left lanes undecided.
///
/// # Safety
/// AVX2 is available.
#[inline(always)]
unsafe fn most_frequent_past_lead<L: Lanes, const SPARSE: bool>(
    values: &[__m256i],
    lead: Lead,
    tests: &mut EarlyTests,
) -> __m256i {
    let len = values.len();
    let group = tests.groups;
    tests.groups += 1;
    let zero = _mm256_setzero_si256();
    // SAFETY (the lane calls from here on): AVX2 is available.
    let ones = unsafe { L::minus_one() };
    let len_lanes = L::of(len).splat();
    let one = L::of(1).splat();
    let Lead {
        label: lead,
        count: lead_count,
        real: lead_real,
        decided,
    } = lead;
    let count_all = |label: __m256i| unsafe { count_all::<L>(values, label) };
    let count_from = |from: usize, label: __m256i| unsafe { count_from::<L>(values, from, label) };
    // The two-label test of `most_frequent_of_window`: every real value before the
    // second label's first occurrence is the lead, so a third label beats the
    // leader of the two only with more values than it has.
    if tests.undecided_by_two < 2 || group % 8 == 0 {
        let (mut second, mut seen) = (zero, zero);
        for &value in &values[1..] {
            let mut other = _mm256_or_si256(unsafe { L::equal(value, lead) }, seen);
            if SPARSE {
                other = _mm256_or_si256(other, unsafe { L::equal(value, zero) });
            }
            let new = _mm256_andnot_si256(other, ones);
            second = _mm256_blendv_epi8(second, value, new);
            seen = _mm256_or_si256(seen, new);
        }
        // 0 where there is no second label.
        let second_count = _mm256_and_si256(count_all(second), seen);
        let second_leads = unsafe { L::greater(lead_count, second_count) };
        let (leader, leader_count) = (
            _mm256_blendv_epi8(lead, second, second_leads),
            _mm256_blendv_epi8(lead_count, second_count, second_leads),
        );
        // What the two (and background) leave is len + lead_count + second_count
        // (+ zero_count); the leader's count is -leader_count.
        let mut rest_and_leader = unsafe { L::add(L::add(len_lanes, lead_count), L::add(second_count, leader_count)) };
        if SPARSE {
            rest_and_leader = unsafe { L::add(rest_and_leader, count_all(zero)) };
        }
        let by_two = _mm256_and_si256(unsafe { L::greater(one, rest_and_leader) }, lead_real);
        if _mm256_movemask_epi8(_mm256_or_si256(decided, by_two)) == -1 {
            tests.undecided_by_two = 0;
            return _mm256_blendv_epi8(leader, lead, decided);
        }
        tests.undecided_by_two += 1;
    }
    let first = values[0];
    let first_real = if SPARSE {
        _mm256_andnot_si256(unsafe { L::equal(first, zero) }, ones)
    } else {
        ones
    };
    // Where the first value is real it is the lead, and `lead_count` its count.
    let first_count = lead_count;
    // Sparse: background counts zero and wins only when nothing else is there.
    let mut best = _mm256_and_si256(first, first_real);
    let mut best_count = _mm256_and_si256(first_count, first_real);
    let mut consider = |value: __m256i, count: __m256i| {
        let count = if SPARSE {
            _mm256_andnot_si256(unsafe { L::equal(value, zero) }, count)
        } else {
            count
        };
        let more = unsafe { L::greater(best_count, count) };
        best = _mm256_blendv_epi8(best, value, more);
        best_count = _mm256_blendv_epi8(best_count, count, more);
    };
    // Four values at a time, each load shared by four compares in four chains (one
    // chain of adds ran at one compare per cycle).
    let mut i = 1;
    while i + 4 <= len {
        let [a, b, c, d] = [values[i], values[i + 1], values[i + 2], values[i + 3]];
        let mut counts = unsafe {
            [
                L::add(L::add(ones, L::equal(a, b)), L::add(L::equal(a, c), L::equal(a, d))),
                L::add(L::add(ones, L::equal(b, c)), L::equal(b, d)),
                L::add(ones, L::equal(c, d)),
                ones,
            ]
        };
        for &other in &values[i + 4..] {
            for (count, label) in counts.iter_mut().zip([a, b, c, d]) {
                *count = unsafe { L::add(*count, L::equal(label, other)) };
            }
        }
        for (count, label) in counts.into_iter().zip([a, b, c, d]) {
            consider(label, count);
        }
        i += 4;
    }
    for j in i..len {
        consider(values[j], count_from(j + 1, values[j]));
    }
    best
}

/// The 2x2 rule (`TwoByTwoRule`) for the leading whole vectors' worth of blocks of a
/// row (result x reduces upper[2x], upper[2x + 1], lower[2x], lower[2x + 1] with the
/// line along the block's first axis, `position` 0; upper[2x], lower[2x], upper[2x + 1],
/// lower[2x + 1] along its second, 1); returns how many it did, none without AVX2.
pub(super) fn two_by_two<L: Lanes>(
    position: usize,
    lines: &[&[L]],
    ahead: Option<&ReadAhead<L>>,
    results: &mut [L],
    sparse: bool,
) -> usize {
    whole_vectors::<L, 2>(lines, results, |lines, results| {
        // SAFETY: as in `most_frequent_of_eight`.
        unsafe {
            match (position, sparse) {
                (0, false) => two_by_two_rows::<L, false, 0>(lines, ahead, results),
                (0, true) => two_by_two_rows::<L, true, 0>(lines, ahead, results),
                (1, false) => two_by_two_rows::<L, false, 1>(lines, ahead, results),
                (1, true) => two_by_two_rows::<L, true, 1>(lines, ahead, results),
                _ => unreachable!("a 2x2 block has two axes"),
            }
        }
    })
}

/// Runs `rows` on the `LINES` lines and the leading whole vectors' worth of results,
/// if the CPU has AVX2, and returns how many results that was (0 without AVX2). Inside
/// `rows`, AVX2 is available and every line holds at least 2 * results.len() values.
#[inline(always)]
fn whole_vectors<L: Lanes, const LINES: usize>(
    lines: &[&[L]],
    results: &mut [L],
    rows: impl FnOnce([&[L]; LINES], &mut [L]),
) -> usize {
    if !std::arch::is_x86_feature_detected!("avx2") {
        return 0;
    }
    let lines: [&[L]; LINES] = lines.try_into().expect("a line per block row");
    let done = results.len() / L::BLOCKS * L::BLOCKS;
    for line in lines {
        assert!(line.len() >= 2 * done);
    }
    rows(lines, &mut results[..done]);
    done
}

/// # Safety
/// AVX2 is available; both lines hold at least 2 * results.len() values, and
/// results.len() is a multiple of L::BLOCKS.
#[target_feature(enable = "avx2")]
unsafe fn two_by_two_rows<L: Lanes, const SPARSE: bool, const POSITION: usize>(
    lines: [&[L]; 2],
    ahead: Option<&ReadAhead<L>>,
    results: &mut [L],
) {
    // Two lines read side by side from memory, which the hardware prefetcher alone does
    // not keep fed, unless the caller has read the upper one already.
    let lines_ahead = ahead.map(|ahead| ahead.all_side_by_side(&lines));
    let [upper, lower] = lines;
    let zero = _mm256_setzero_si256();
    for (group, out) in results.chunks_exact_mut(L::BLOCKS).enumerate() {
        let start = 2 * L::BLOCKS * group;
        for line_ahead in lines_ahead.iter().flatten() {
            line_ahead.prefetch(start, 2 * L::BLOCKS);
        }
        // SAFETY (the loads): the pairs of this group end at 2 * L::BLOCKS * (group + 1)
        // <= 2 * results.len() <= line.len() (the caller's contract). The lane calls:
        // AVX2 is available.
        let ((upper_even, upper_odd), (lower_even, lower_odd)) = unsafe {
            (
                L::load_pairs(upper.as_ptr().add(start)),
                L::load_pairs(lower.as_ptr().add(start)),
            )
        };
        // The block in scan order: along the line first, or across the lines first.
        let (a, b, c, d) = if POSITION == 0 {
            (upper_even, upper_odd, lower_even, lower_odd)
        } else {
            (upper_even, lower_even, upper_odd, lower_odd)
        };
        let (a_is_b, a_is_c, b_is_c) = unsafe { (L::equal(a, b), L::equal(a, c), L::equal(b, c)) };
        let a_wins = _mm256_or_si256(a_is_b, a_is_c);
        // Later selects take precedence: they are the rule's earlier cases.
        let best = if SPARSE {
            let [a_zero, b_zero, d_zero] = [a, b, d].map(|v| unsafe { L::equal(v, zero) });
            let first_real = _mm256_blendv_epi8(a, _mm256_blendv_epi8(b, c, b_zero), a_zero);
            let best = _mm256_blendv_epi8(d, first_real, d_zero);
            let best = _mm256_blendv_epi8(best, b, _mm256_andnot_si256(b_zero, b_is_c));
            _mm256_blendv_epi8(best, a, _mm256_andnot_si256(a_zero, a_wins))
        } else {
            _mm256_blendv_epi8(_mm256_blendv_epi8(d, b, b_is_c), a, a_wins)
        };
        // SAFETY: out holds L::BLOCKS values, 256 bits; storeu has no alignment need.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), L::restore_order(best)) };
    }
}

/// Where lines are read ahead in software but rows in pairs (Zen 5,
/// `cascade::reads_rows_ahead_line_by_line`), rows of lines up to this long are read
/// ahead line by line all the same. Against pairs, on Zen 5, one thread (two),
/// preallocated outputs: 512x512x64 labels in C order (lines along z of 256 and 512
/// bytes) u32 1.64x (1.31x) and u64 1.42x (1.27x) as fast; 512-byte lines in Fortran
/// order (64x4096x64 u64, 128x4096x64 u32) 0.91-0.94x (0.89-0.96x). Longer lines
/// went both ways: in C order (1 KiB along z) 1.13-1.34x on one thread and 0.88-1.06x
/// on two, in Fortran order (128x2048x64 u64) 0.83-0.85x (0.88x).
const EACH_LINE_AHEAD_BYTES: usize = 512;

/// The longest lines of 2x2x2 blocks whose next row is read ahead in pairs of lines,
/// where the hardware prefetcher is left to read lines in turn (AMD, see `rows`).
/// Measured on an AMD EPYC (Zen 4) with both read-aheads in one build (one thread,
/// preallocated outputs, 2x2x2 mode of 4 random labels in 16-32 MiB volumes): u64
/// lines of 1 KiB 1.84x as fast, 2 KiB 1.94x, 8 KiB 0.95x, 16 KiB 0.87x, 32 KiB 0.82x;
/// u32 lines of 512 bytes 1.09x, 1 KiB 2.1x, 4 KiB 1.03x, 8 KiB 0.90x, 16 KiB 0.83x.
/// The bench's 512x512x64 u64 labels (4 KiB lines): 1.12-1.16x.
const PAIRED_READ_AHEAD_BYTES: usize = 4096;

/// The longest lines whose next row, read ahead in pairs, is asked for in the
/// first-level cache; longer ones only into the second (a row read a row ahead, four
/// lines, would take half of a 32 KiB L1 or more, presumably evicting lines in use).
/// Into L2 against into L1 (as above): 4 KiB u64 lines of the bench's labels 1.21x as
/// fast (sparse 1.12x), 4 KiB u32 lines of 4 random labels 1.15x; but 1-2 KiB lines
/// 0.70-0.89x (u64 and u32).
const PAIRED_INTO_L1_BYTES: usize = 2048;

/// How the next row of 2x2x2 blocks is read ahead.
#[derive(Clone, Copy)]
enum RowAhead {
    EachLine,
    PairsIntoL1,
    PairsIntoL2,
}

/// # Safety
/// AVX2 is available; every line holds at least 2 * results.len() values, and
/// results.len() is a multiple of L::BLOCKS.
#[target_feature(enable = "avx2")]
unsafe fn rows<L: Lanes, const SPARSE: bool, const POSITION: usize>(
    lines: [&[L]; 4],
    ahead: &ReadAhead<L>,
    results: &mut [L],
) {
    // Four lines are read side by side, which the hardware prefetcher alone does not
    // keep fed. Lines up to `PAIRED_READ_AHEAD_BYTES` long read the next row ahead a
    // pair of lines at a time (lines 0 and 1 lie in one plane, usually one after the
    // other, and so do 2 and 3): in address order, as two streams instead of four.
    // Not on the CPUs that read every width ahead in software (Intel,
    // `reads_rows_ahead_line_by_line`), where each line read its own next line ahead
    // into L1 ran faster at every width (u64 labels of the bench, 4 KiB lines:
    // 1.31-1.34x, random, realistic and sparse; 1 KiB 1.22x; 2 KiB and u32 1 KiB within
    // 5%; one thread, preallocated outputs, Intel Xeon family 6 model 167).
    let lines_ahead = ahead.all_side_by_side(&lines);
    let pairs_ahead: [_; 2] = ahead.next_in_pairs(&lines);
    let row_ahead = match std::mem::size_of_val(lines[0]) {
        bytes if ahead.in_software() && (reads_rows_ahead_line_by_line() || bytes <= EACH_LINE_AHEAD_BYTES) => {
            RowAhead::EachLine
        }
        bytes if bytes <= PAIRED_INTO_L1_BYTES => RowAhead::PairsIntoL1,
        bytes if bytes <= PAIRED_READ_AHEAD_BYTES => RowAhead::PairsIntoL2,
        _ => RowAhead::EachLine,
    };
    for (group, out) in results.chunks_exact_mut(L::BLOCKS).enumerate() {
        let mut values = [_mm256_setzero_si256(); 8];
        let (start, len) = (2 * L::BLOCKS * group, 2 * L::BLOCKS);
        match row_ahead {
            RowAhead::PairsIntoL1 => pairs_ahead.iter().for_each(|pair| pair.prefetch::<true>(start, len)),
            RowAhead::PairsIntoL2 => pairs_ahead.iter().for_each(|pair| pair.prefetch::<false>(start, len)),
            RowAhead::EachLine => lines_ahead.iter().for_each(|line| line.prefetch(start, len)),
        }
        for (j, line) in lines.iter().enumerate() {
            // Values 2x and 2x+1 of line j go to their places in the block's scan order.
            // SAFETY: the pairs of this group end at 2 * L::BLOCKS * (group + 1) <=
            // 2 * results.len() <= line.len() (the caller's contract).
            (values[slot(j, 0, POSITION)], values[slot(j, 1, POSITION)]) =
                unsafe { L::load_pairs(line.as_ptr().add(2 * L::BLOCKS * group)) };
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
