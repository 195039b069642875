//! 8-bit averaging in 16-bit lanes, in AVX2.
//!
//! Sums of byte pairs with `vpmaddubsw`, which adds each pair of bytes into a 16-bit
//! lane in one instruction. The compiler's code for the same loop first splits even and
//! odd bytes apart with shuffles and masks, and for sparse means tests and packs every
//! voxel on its own (measured on 1024x1024x64 u8, one sparse mip: packing was 1.9 of
//! 9.4 ms).
//!
//! Sparse means of 64-bit integers in f64 lanes: small sums (`SparseSplitSum::small_mean`),
//! which LLVM left scalar where the chunk's loops were inlined into the cascade, and
//! sums of the full range in two exact divisions, where `SparseSplitSum::mean` takes a
//! DIV / IDIV per voxel.
//!
//! Sparse means of bytes by a multiply-high with the count's reciprocal, looked up with
//! `vpshufb`: the f32 division widens each value to 32 bits and back and converts it
//! twice (2.5 ms of the same 9.4).

use super::SparseSplitSum;
use crate::cascade::ReadAhead;
use crate::dtype::Element;
use std::arch::x86_64::{
    __m128i, __m256d, __m256i, _mm256_add_epi16, _mm256_add_epi64, _mm256_add_pd, _mm256_and_si256, _mm256_blendv_epi8,
    _mm256_broadcastsi128_si256, _mm256_castpd_si256, _mm256_castsi256_pd, _mm256_cmp_pd, _mm256_cmpeq_epi64,
    _mm256_cmpgt_epi16, _mm256_cmpgt_epi64, _mm256_div_pd, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16,
    _mm256_min_epu8, _mm256_mul_pd, _mm256_mulhi_epu16, _mm256_or_si256, _mm256_packus_epi16, _mm256_packus_epi32,
    _mm256_permute4x64_epi64, _mm256_round_pd, _mm256_set1_epi16, _mm256_set1_epi32, _mm256_set1_epi64x,
    _mm256_set1_epi8, _mm256_set1_pd, _mm256_setzero_pd, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_sll_epi16,
    _mm256_sll_epi64, _mm256_slli_epi16, _mm256_sra_epi16, _mm256_srai_epi16, _mm256_srl_epi16, _mm256_srl_epi64,
    _mm256_srli_epi64, _mm256_storeu_si256, _mm256_sub_epi64, _mm256_sub_pd, _mm256_testz_si256, _mm256_xor_si256,
    _mm_cvtsi32_si128, _mm_loadu_si128, _CMP_NEQ_OQ, _MM_FROUND_NO_EXC, _MM_FROUND_TO_NEG_INF, _MM_FROUND_TO_ZERO,
};

/// Results per vector: 16 lanes of 16 bits, from 32 bytes of each line.
const LANES: usize = 16;

/// Writes results 0 .. 16 * (results.len() / 16): result x is the sum over `lines`, in
/// wrapping u16 arithmetic, of pack(line[2x]) + pack(line[2x + 1]), where pack(v) is v
/// (the byte taken as an i8 when `SIGNED`, for the i16 sums of an i8 pyramid, whose
/// wrapping sums are the same bits), plus (v != 0) << count_shift when `COUNTING`
/// (`PackedMean::pack` for u16; unsigned bytes only). The
/// first line starts the totals from zero. Integer sums do not depend on their order,
/// so the totals are those of adding the values one by one. Returns the number of
/// results written; the caller does the rest.
///
/// The lines are read one after the other, in address order, and read ahead in
/// software where `ahead` says so (`cascade::reads_ahead_in_software`): one cache line
/// per pass of two vectors.
///
/// # Safety
/// AVX2 is available.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn byte_pair_sums<const SIGNED: bool, const COUNTING: bool>(
    lines: &[&[u8]],
    ahead: &ReadAhead<u8>,
    results: &mut [u16],
    count_shift: u32,
) -> usize {
    const { assert!(!(SIGNED && COUNTING), "counts are packed into unsigned sums only") };
    let done = results.len() / LANES * LANES;
    for (index, line) in lines.iter().enumerate() {
        let results = &mut results[..done];
        // A loop of its own for each way, as in `cascade::fold_line_pairs`.
        // SAFETY: AVX2 is available (this function's contract).
        unsafe {
            match (index == 0, ahead.in_turn(lines, index)) {
                (true, Some(line_ahead)) => {
                    add_byte_pairs::<SIGNED, COUNTING, true>(line, results, count_shift, |at| {
                        line_ahead.prefetch(at, 4 * LANES)
                    })
                }
                (false, Some(line_ahead)) => {
                    add_byte_pairs::<SIGNED, COUNTING, false>(line, results, count_shift, |at| {
                        line_ahead.prefetch(at, 4 * LANES)
                    })
                }
                (true, None) => add_byte_pairs::<SIGNED, COUNTING, true>(line, results, count_shift, |_| {}),
                (false, None) => add_byte_pairs::<SIGNED, COUNTING, false>(line, results, count_shift, |_| {}),
            }
        }
    }
    done
}

/// One line of `byte_pair_sums` (`results.len()` a multiple of 16, the line at least
/// twice as long): starts the results when `FIRST`, else adds to them, calling
/// `read_ahead` with each pass's first byte before it reads from there. Two vectors (a
/// cache line of input) per pass, with the first-line test outside the loop: one
/// vector per pass, counted by a `step_by` iterator, took 13 instructions per vector
/// against 7 (callgrind), and the line loop ran 1.06-1.10x slower.
///
/// # Safety
/// AVX2 is available.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn add_byte_pairs<const SIGNED: bool, const COUNTING: bool, const FIRST: bool>(
    line: &[u8],
    results: &mut [u16],
    count_shift: u32,
    read_ahead: impl Fn(usize),
) {
    let done = results.len();
    assert!(done % LANES == 0 && line.len() >= 2 * done);
    let ones = _mm256_set1_epi8(1);
    let shift = _mm_cvtsi32_si128(count_shift as i32);
    let sums_of = |x: usize| {
        // SAFETY: callers pass x + 16 <= done, so 2x + 32 <= line.len() (asserted);
        // loadu has no alignment need.
        let bytes = unsafe { _mm256_loadu_si256(line.as_ptr().add(2 * x).cast()) };
        // The multiply-add takes its first operand unsigned, its second signed: the
        // bytes with ones, v0 + v1 <= 510, or ones with signed bytes, -256..=254; far
        // from saturating either way.
        let sums = if SIGNED {
            _mm256_maddubs_epi16(ones, bytes)
        } else {
            _mm256_maddubs_epi16(bytes, ones)
        };
        if COUNTING {
            let nonzero = _mm256_min_epu8(bytes, ones);
            let counts = _mm256_maddubs_epi16(nonzero, ones);
            _mm256_add_epi16(sums, _mm256_sll_epi16(counts, shift))
        } else {
            sums
        }
    };
    let slots = results.as_mut_ptr();
    let add = |x: usize, sums: __m256i| {
        // SAFETY: callers pass x + 16 <= done = results.len(); loadu and storeu have no
        // alignment need.
        unsafe {
            let slot = slots.add(x).cast::<__m256i>();
            let total = if FIRST {
                sums
            } else {
                _mm256_add_epi16(_mm256_loadu_si256(slot), sums)
            };
            _mm256_storeu_si256(slot, total);
        }
    };
    let mut x = 0;
    while x + 2 * LANES <= done {
        read_ahead(2 * x);
        let (first, second) = (sums_of(x), sums_of(x + LANES));
        add(x, first);
        add(x + LANES, second);
        x += 2 * LANES;
    }
    if x < done {
        add(x, sums_of(x));
    }
}

/// Writes results 0 .. 16 * (results.len() / 16): result x is the sum, in wrapping u16
/// arithmetic, of words 2x and 2x + 1 of every line (the later levels of a u8 pyramid,
/// whose 16-bit accumulators `BlockSum` adds up in scan order: wrapping sums do not
/// depend on their order, so the totals are the same). The lines are a level's kept
/// state, in L2: they are added up side by side, then pairwise, and each result is
/// stored once. The compiler's code for the same loop split even and odd words apart
/// with five shuffles per vector, and stored and reloaded the totals line by line.
/// Returns the number of results written; the caller does the rest.
///
/// # Safety
/// AVX2 is available.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn word_pair_sums(lines: &[&[u16]], results: &mut [u16]) -> usize {
    let Some((first, rest)) = lines.split_first() else {
        return 0;
    };
    let done = results.len() / LANES * LANES;
    for line in lines {
        assert!(line.len() >= 2 * done);
    }
    let ones = _mm256_set1_epi16(1);
    let low_words = _mm256_set1_epi32(0xFFFF);
    let mut x = 0;
    while x < done {
        // SAFETY: 2x + 32 <= 2 * done <= the length of every line (asserted); loadu has
        // no alignment need.
        let load = |line: &[u16], half: usize| unsafe { _mm256_loadu_si256(line.as_ptr().add(2 * x + half).cast()) };
        let (mut low, mut high) = (load(first, 0), load(first, LANES));
        for line in rest {
            low = _mm256_add_epi16(low, load(line, 0));
            high = _mm256_add_epi16(high, load(line, LANES));
        }
        // Each 32-bit lane: word 0 + word 1, taken as signed; its low 16 bits are the
        // wrapping u16 sum, which the mask keeps in range of the unsigned pack.
        let low = _mm256_and_si256(_mm256_madd_epi16(low, ones), low_words);
        let high = _mm256_and_si256(_mm256_madd_epi16(high, ones), low_words);
        // The pack interleaves the two vectors' halves; the permute puts them in order.
        let sums = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(low, high));
        // SAFETY: x + 16 <= done <= results.len().
        unsafe { _mm256_storeu_si256(results.as_mut_ptr().add(x).cast(), sums) };
        x += LANES;
    }
    done
}

/// Writes out[x] = (values[x] >> shift) as u8 for x in 0 .. 32 * (len / 32) and returns
/// that count: a u8 pyramid's accumulators rendered into a mip. With `SIGNED`, the
/// values are an i8 pyramid's i16 accumulators, divided by 2^shift truncated toward
/// zero (`ShiftedAccumulator::shift_toward_zero`), the bytes its i8 mip. The compiler's
/// code packed 128-bit halves, with twice the packs and stores.
///
/// # Safety
/// AVX2 is available.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn shifted_words_to_bytes<const SIGNED: bool>(values: &[u16], out: &mut [u8], shift: u32) -> usize {
    let len = values.len().min(out.len()) / (2 * LANES) * (2 * LANES);
    // Negative sums get 2^shift - 1 added before the (flooring) arithmetic shift.
    let bias = _mm256_set1_epi16(((1u32 << shift) - 1) as i16);
    let shifted = |v: __m256i, shift: __m128i| {
        if SIGNED {
            let v = _mm256_add_epi16(v, _mm256_and_si256(_mm256_srai_epi16::<15>(v), bias));
            _mm256_sra_epi16(v, shift)
        } else {
            _mm256_srl_epi16(v, shift)
        }
    };
    let shift = _mm_cvtsi32_si128(shift as i32);
    // `as u8` keeps the low byte; the mask makes the saturating pack do the same.
    let low_bytes = _mm256_set1_epi16(0xFF);
    let mut x = 0;
    while x < len {
        // SAFETY: x + 32 <= len <= values.len(); loadu has no alignment need.
        let (first, second) = unsafe {
            let at = values.as_ptr().add(x);
            (_mm256_loadu_si256(at.cast()), _mm256_loadu_si256(at.add(LANES).cast()))
        };
        let first = _mm256_and_si256(shifted(first, shift), low_bytes);
        let second = _mm256_and_si256(shifted(second, shift), low_bytes);
        let bytes = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi16(first, second));
        // SAFETY: x + 32 <= len <= out.len().
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(x).cast(), bytes) };
        x += 2 * LANES;
    }
    len
}

/// ceil(2^16 / count) for counts 2..=15 (0 and 1 are taken as they are): a sum below
/// 2^12 times it, shifted right by 16, is the sum divided by the count, truncated
/// (with e = magic * count - 2^16 <= count - 1, the error sum * e / 2^16 stays below
/// 1 for sums below 2^16 / 14), in split bytes for `vpshufb`.
const fn magic_bytes(high: bool) -> [i8; 16] {
    let mut bytes = [0i8; 16];
    let mut count = 2;
    while count < 16 {
        let magic = 65536usize.div_ceil(count);
        bytes[count] = (if high { magic >> 8 } else { magic & 0xFF }) as u8 as i8;
        count += 1;
    }
    bytes
}

/// Writes out[x] = sum / count, truncated (the sum where the count is 0 or 1), for the
/// packed `count << sum_bits | sum` values of `values`, x in 0 .. 32 * (len / 32) or up
/// to the first vector holding a count above 15, which it leaves to the caller with
/// everything after it; returns the number written. The means of u8 voxels
/// (`PackedMean::mean` for u16 into u8) in 16-bit integer lanes: the f32 division
/// widens each value to 32 bits and back, and converts it twice.
///
/// # Safety
/// AVX2 is available.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn packed_byte_means(values: &[u16], out: &mut [u8], sum_bits: u32) -> usize {
    // Sums below 2^12 keep the multiply-high exact (see `magic_bytes`).
    assert!(sum_bits <= 12);
    let len = values.len().min(out.len()) / (2 * LANES) * (2 * LANES);
    let sum_mask = _mm256_set1_epi16(((1u32 << sum_bits) - 1) as i16);
    let shift = _mm_cvtsi32_si128(sum_bits as i32);
    let (low, high) = (magic_bytes(false), magic_bytes(true));
    // SAFETY: each table is 16 bytes, read unaligned.
    let (low, high) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(low.as_ptr().cast())),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(high.as_ptr().cast())),
        )
    };
    // The high byte of each index word selects 0 (bit 7 set).
    let high_byte_zero = _mm256_set1_epi16(0x8000u16 as i16);
    let fifteen = _mm256_set1_epi16(15);
    let two = _mm256_set1_epi16(2);
    let means = |packed: __m256i| {
        let sums = _mm256_and_si256(packed, sum_mask);
        let counts = _mm256_srl_epi16(packed, shift);
        let index = _mm256_or_si256(counts, high_byte_zero);
        let magic = _mm256_or_si256(
            _mm256_shuffle_epi8(low, index),
            _mm256_slli_epi16::<8>(_mm256_shuffle_epi8(high, index)),
        );
        let quotients = _mm256_mulhi_epu16(sums, magic);
        let by_one = _mm256_cmpgt_epi16(two, counts);
        (
            _mm256_blendv_epi8(quotients, sums, by_one),
            _mm256_cmpgt_epi16(counts, fifteen),
        )
    };
    let mut x = 0;
    while x < len {
        // SAFETY: x + 32 <= len <= values.len(); loadu has no alignment need.
        let (first, second) = unsafe {
            let at = values.as_ptr().add(x);
            (_mm256_loadu_si256(at.cast()), _mm256_loadu_si256(at.add(LANES).cast()))
        };
        let (first, first_over) = means(first);
        let (second, second_over) = means(second);
        if _mm256_testz_si256(_mm256_or_si256(first_over, second_over), _mm256_set1_epi8(-1)) == 0 {
            break;
        }
        // Means of bytes fit a byte, so the saturating pack is exact; it interleaves
        // the two vectors' halves, which the permute puts back in order.
        let bytes = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi16(first, second));
        // SAFETY: x + 32 <= len <= out.len().
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(x).cast(), bytes) };
        x += 2 * LANES;
    }
    x
}

/// `out[i]` = `SparseSplitSum { high: high[i], low: low[i] }.small_mean(split)` (as
/// i64 bits) for sums the caller has found small (`is_small`: |sum| < 2^51): the same
/// f64 operations (`small_f64`'s conversions, one division, truncation), four lanes at
/// a time.
///
/// # Safety
/// AVX2 is available.
// Its callers are compiled out under Miri.
#[cfg_attr(miri, allow(dead_code))]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn small_split_means<const N: usize>(
    high: &[u64; N],
    low: &[u64; N],
    split: u32,
    out: &mut [u64; N],
) {
    const { assert!(N % 4 == 0) };
    let magic_bits = _mm256_set1_epi64x(super::small_f64::MAGIC.to_bits() as i64);
    let magic = _mm256_set1_pd(super::small_f64::MAGIC);
    let low_mask = _mm256_set1_epi64x((1 << SparseSplitSum::COUNT_SHIFT) - 1);
    let split = _mm_cvtsi32_si128(split as i32);
    // small_f64::from_i64, lane by lane.
    let to_f64 = |v: __m256i| _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(v, magic_bits)), magic);
    for at in (0..N).step_by(4) {
        // SAFETY: at + 4 <= N, the arrays' length; loadu and storeu have no alignment need.
        unsafe {
            let high = _mm256_loadu_si256(high.as_ptr().add(at).cast());
            let low = _mm256_loadu_si256(low.as_ptr().add(at).cast());
            let sum = _mm256_add_epi64(_mm256_sll_epi64(high, split), _mm256_and_si256(low, low_mask));
            let count = _mm256_srli_epi64::<{ SparseSplitSum::COUNT_SHIFT as i32 }>(low);
            // count.max(1): comparing gives -1 where the count is 0.
            let count = _mm256_sub_epi64(count, _mm256_cmpeq_epi64(count, _mm256_setzero_si256()));
            let quotient = _mm256_div_pd(to_f64(sum), to_f64(count));
            let truncated = _mm256_round_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(quotient);
            // small_f64::truncate's way back to an integer.
            let mean = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(truncated, magic)), magic_bits);
            _mm256_storeu_si256(out.as_mut_ptr().add(at).cast(), mean);
        }
    }
}

/// `out[i]` = `SparseSplitSum { high: high[i], low: low[i] }.mean::<T>(split)` for any
/// sums of a T, as u64 bits (`mean_of_bits`), four lanes at a time: the 128-bit
/// division by the count that `mean` does with one DIV / IDIV per voxel, here as two
/// exact f64 divisions, the long division of sum = high * 2^split + low in base
/// 2^(m + split), m = 50 - 2 * split. With a = high >> m (floored), b = high mod 2^m,
///
/// ```text
/// a = qa * count + ra,  ra * 2^(m + split) + b * 2^split + low = qb * count + rb,
/// ```
///
/// both floored, remainders in [0, count), floor(sum / count) is
/// qa * 2^(m + split) + qb in wrapping 64-bit arithmetic (the mean fits 64 bits; the
/// terms need not), plus 1 where it is negative and rb is not 0, to truncate toward
/// zero.
///
/// Both dividends are integers below 2^51 in magnitude: |a| <= 2^(64 - m) <= 2^46
/// for split <= 16 (`SparseSplitSum::MAX_SPLIT`), and the second is below 2^50 + 2^32
/// (ra < count <= 2^split, b < 2^m, low < 2^32). So each is exact in f64, and its
/// rounded quotient by count is within |x| / count * 2^-53 < 1 / count of the true
/// one: no nearer to the next integer than a quotient with a remainder can be, so the
/// floor of the rounded quotient is the floored quotient, and the remainder computed
/// from it is exact.
///
/// # Safety
/// AVX2 is available.
// Its callers are compiled out under Miri.
#[cfg_attr(miri, allow(dead_code))]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn split_means<T: Element, const N: usize>(
    high: &[u64; N],
    low: &[u64; N],
    split: u32,
    out: &mut [u64; N],
) {
    const { assert!(N % 4 == 0) };
    assert!(split <= SparseSplitSum::MAX_SPLIT);
    let signed = const { !super::unsigned::<T>() };
    let magic_bits = _mm256_set1_epi64x(super::small_f64::MAGIC.to_bits() as i64);
    let magic = _mm256_set1_pd(super::small_f64::MAGIC);
    let low_mask = _mm256_set1_epi64x((1 << SparseSplitSum::COUNT_SHIFT) - 1);
    let lower_bits = 50 - 2 * split;
    let lower_mask = _mm256_set1_epi64x((1 << lower_bits) - 1);
    let sign_bit = _mm256_set1_epi64x(1 << (63 - lower_bits));
    let upper_base = _mm256_set1_pd((1u64 << (lower_bits + split)) as f64);
    let split_base = _mm256_set1_pd((1u64 << split) as f64);
    let lower_shift = _mm_cvtsi32_si128(lower_bits as i32);
    let upper_shift = _mm_cvtsi32_si128((lower_bits + split) as i32);
    // small_f64's conversions, lane by lane, for integers below 2^51 in magnitude.
    let to_f64 = |v: __m256i| _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(v, magic_bits)), magic);
    let to_i64 = |v: __m256d| _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(v, magic)), magic_bits);
    // (floor(x / count), x - that * count).
    let divide = |x: __m256d, count: __m256d| {
        let quotient = _mm256_round_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm256_div_pd(x, count));
        (quotient, _mm256_sub_pd(x, _mm256_mul_pd(quotient, count)))
    };
    for at in (0..N).step_by(4) {
        // SAFETY: at + 4 <= N, the arrays' length; loadu and storeu have no alignment need.
        unsafe {
            let high = _mm256_loadu_si256(high.as_ptr().add(at).cast());
            let low = _mm256_loadu_si256(low.as_ptr().add(at).cast());
            let count = _mm256_srli_epi64::<{ SparseSplitSum::COUNT_SHIFT as i32 }>(low);
            // count.max(1): comparing gives -1 where the count is 0 (whose sum is 0).
            let count = to_f64(_mm256_sub_epi64(
                count,
                _mm256_cmpeq_epi64(count, _mm256_setzero_si256()),
            ));
            let mut upper = _mm256_srl_epi64(high, lower_shift);
            if signed {
                // Sign-extended: AVX2 has no 64-bit arithmetic shift.
                upper = _mm256_sub_epi64(_mm256_xor_si256(upper, sign_bit), sign_bit);
            }
            let (qa, ra) = divide(to_f64(upper), count);
            let lower = _mm256_mul_pd(to_f64(_mm256_and_si256(high, lower_mask)), split_base);
            let rest = _mm256_add_pd(lower, to_f64(_mm256_and_si256(low, low_mask)));
            let (qb, rb) = divide(_mm256_add_pd(_mm256_mul_pd(ra, upper_base), rest), count);
            let mut mean = _mm256_add_epi64(_mm256_sll_epi64(to_i64(qa), upper_shift), to_i64(qb));
            if signed {
                let negative = _mm256_cmpgt_epi64(_mm256_setzero_si256(), mean);
                let inexact = _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_NEQ_OQ>(rb, _mm256_setzero_pd()));
                // Adding 1 is subtracting the all-ones mask.
                mean = _mm256_sub_epi64(mean, _mm256_and_si256(negative, inexact));
            }
            _mm256_storeu_si256(out.as_mut_ptr().add(at).cast(), mean);
        }
    }
}
