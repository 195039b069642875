//! Transposes a small matrix held in cache: how a region is written into outputs whose
//! lines run along another axis than the values' (a C-order input striding or averaging
//! into Fortran-order outputs).
//!
//! Element by element, a transpose reads or writes across rows and costs about two
//! cycles per element, which held a C-order input's striding to a third of the memory
//! bandwidth. On x86_64 it runs in SSE2 registers (part of the x86_64 baseline, so no
//! detection is needed), one square block of 16 bytes by 16/size rows at a time, and
//! 4-byte elements in AVX2 registers where there is AVX2, 8 rows of 8; the ragged edges
//! go element by element.

/// Whether a region transposed through `transpose` and copied out in runs is written
/// faster than element by element. Measured on C-order inputs into Fortran-order
/// outputs (one thread, builds alternated): u8 averaging 1.6x as fast, u16 1.15x; u32
/// in AVX2 8x8 blocks: 2x2x1 mode 1.1-1.25x, f32 averaging 1.15x, striding 1.3x. u64
/// stays element by element: in SSE2 2x2 blocks 1.1x slower, in AVX2 4x4 blocks
/// 1.05-1.15x slower (2x2 mode of C-order 4096x4096 labels 15.6 -> 18.1 ms).
pub(crate) fn transpose_pays<T>() -> bool {
    match std::mem::size_of::<T>() {
        1 | 2 => true,
        #[cfg(target_arch = "x86_64")]
        4 => std::arch::is_x86_feature_detected!("avx2"),
        _ => false,
    }
}

/// Whether `gather_run` takes `T` on this CPU: 8-byte elements, with AVX2.
pub(crate) fn gathers_wide<T>() -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::mem::size_of::<T>() == 8 {
        return std::arch::is_x86_feature_detected!("avx2");
    }
    false
}

/// Copies `len` elements `value_stride` apart in `values` into the `len` consecutive
/// elements from `dst`, four at a time in one 32-byte store: a u64 run written element
/// by element took one store buffer entry per element, and the entries wait for the
/// output lines that miss the cache.
///
/// # Safety
///
/// `gathers_wide::<T>()`, and the `len` elements from `dst` lie in one allocation, may
/// be written and overlap none of `values`.
pub(crate) unsafe fn gather_run<T: Copy>(values: &[T], value_stride: usize, len: usize, dst: *mut T) {
    assert!(gathers_wide::<T>(), "no wide gather for this element size or CPU");
    assert!(len == 0 || (len - 1) * value_stride < values.len());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX2 and 8-byte T (asserted), every element read inside `values`
    // (asserted), `dst` the caller's promise.
    unsafe {
        avx2::gather_quads(values, value_stride, len, dst)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = dst;
}

/// Writes the `rows x cols` matrix whose row `r` is `row(r)` (at least `cols` long)
/// transposed into `dst`, as the `cols x rows` row-major matrix.
pub(crate) fn transpose<'r, T: Copy + 'r>(rows: usize, cols: usize, row: impl Fn(usize) -> &'r [T], dst: &mut [T]) {
    transpose_into(rows, cols, row, dst, rows);
}

/// `transpose` into the rows of a wider matrix: column `c` of the matrix goes to the
/// `rows` elements from `c * dst_stride` of `dst`.
pub(crate) fn transpose_into<'r, T: Copy + 'r>(
    rows: usize,
    cols: usize,
    row: impl Fn(usize) -> &'r [T],
    dst: &mut [T],
    dst_stride: usize,
) {
    assert!(rows <= dst_stride);
    if rows == 0 || cols == 0 {
        return;
    }
    let dst = &mut dst[..(cols - 1).checked_mul(dst_stride).expect("a tile fits in memory") + rows];
    #[cfg(target_arch = "x86_64")]
    if std::mem::size_of::<T>() == 4 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is there and T is 4 bytes (checked just above); column c of the
        // transposed matrix, `rows` elements from c * dst_stride, lies in `dst` (sliced
        // to (cols - 1) * dst_stride + rows above), a buffer of its own.
        unsafe { avx2::transpose_words(rows, cols, &row, dst.as_mut_ptr(), dst_stride) };
        return;
    }
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let (mut blocked_rows, mut blocked_cols) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if let Some(n) = sse2::block_side::<T>() {
        (blocked_rows, blocked_cols) = (rows - rows % n, cols - cols % n);
        for first_row in (0..blocked_rows).step_by(n) {
            for first_col in (0..blocked_cols).step_by(n) {
                // SAFETY: the transposed block's n rows of n elements from
                // (first_col, first_row), dst_stride apart, lie inside `dst`, which holds
                // (cols - 1) * dst_stride + rows elements (sliced above):
                // first_col + n <= cols, first_row + n <= rows.
                unsafe {
                    sse2::transpose_block(
                        &row,
                        first_row,
                        first_col,
                        dst.as_mut_ptr().add(first_col * dst_stride + first_row),
                        dst_stride,
                    )
                };
            }
        }
    }
    // The edges: rows past the blocked ones, and the columns right of the blocks.
    for r in 0..rows {
        let (values, first_col) = (row(r), if r < blocked_rows { blocked_cols } else { 0 });
        for (c, &value) in values[..cols].iter().enumerate().skip(first_col) {
            dst[c * dst_stride + r] = value;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_loadu_si256, _mm256_permute2x128_si256, _mm256_set_epi64x, _mm256_setzero_si256,
        _mm256_storeu_si256, _mm256_unpackhi_epi32, _mm256_unpackhi_epi64, _mm256_unpacklo_epi32,
        _mm256_unpacklo_epi64,
    };

    /// `super::transpose` for 4-byte `T`: blocks of 8 rows of 8, transposed in AVX2
    /// registers, against 4x4 in SSE2 registers.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2, `T` is 4 bytes, rows <= dst_stride, and the
    /// `(cols - 1) * dst_stride + rows` elements from `dst` lie in one allocation that
    /// none of `row`'s slices overlaps.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose_words<'r, T: Copy + 'r>(
        rows: usize,
        cols: usize,
        row: &impl Fn(usize) -> &'r [T],
        dst: *mut T,
        dst_stride: usize,
    ) {
        const N: usize = 8;
        let (blocked_rows, blocked_cols) = (rows - rows % N, cols - cols % N);
        for first_col in (0..blocked_cols).step_by(N) {
            for first_row in (0..blocked_rows).step_by(N) {
                let mut block = [_mm256_setzero_si256(); N];
                for (i, register) in block.iter_mut().enumerate() {
                    let values = &row(first_row + i)[first_col..first_col + N];
                    // SAFETY: the 32 bytes loaded are the 8 elements of `values`.
                    *register = unsafe { _mm256_loadu_si256(values.as_ptr().cast()) };
                }
                for (c, column) in eights(&block).iter().enumerate() {
                    // SAFETY: column first_col + c < cols, its elements first_row ..
                    // first_row + 8 <= rows <= dst_stride: inside the caller's elements.
                    unsafe { _mm256_storeu_si256(dst.add((first_col + c) * dst_stride + first_row).cast(), *column) };
                }
            }
        }
        // The edges: columns right of the blocks, in full, then the rows below them.
        for r in 0..rows {
            let values = row(r);
            let first_col = if r < blocked_rows { blocked_cols } else { 0 };
            for (c, &value) in values[..cols].iter().enumerate().skip(first_col) {
                // SAFETY: c < cols, r < rows <= dst_stride: inside the caller's elements.
                unsafe { *dst.add(c * dst_stride + r) = value };
            }
        }
    }

    /// `super::gather_run`.
    ///
    /// # Safety
    ///
    /// AVX2, 8-byte `T`, (len - 1) * stride < values.len(), and `dst` as for `gather_run`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn gather_quads<T: Copy>(values: &[T], stride: usize, len: usize, dst: *mut T) {
        let at = |i: usize| {
            // SAFETY: i < len, so i * stride < values.len() (the caller's promise); an
            // 8-byte T read as the i64 of its bits.
            unsafe { values.as_ptr().add(i * stride).cast::<i64>().read_unaligned() }
        };
        let quads = len / 4;
        for q in 0..quads {
            let i = 4 * q;
            let quad = _mm256_set_epi64x(at(i + 3), at(i + 2), at(i + 1), at(i));
            // SAFETY: elements i .. i + 4 <= len of `dst` (the caller's promise).
            unsafe { _mm256_storeu_si256(dst.add(i).cast(), quad) };
        }
        for i in 4 * quads..len {
            // SAFETY: i < len, inside `values` and `dst` as above.
            unsafe { *dst.add(i) = *values.get_unchecked(i * stride) };
        }
    }

    /// The 8x8 transpose of eight rows of 32-bit values.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn eights(r: &[__m256i; 8]) -> [__m256i; 8] {
        let (t0, t1) = (_mm256_unpacklo_epi32(r[0], r[1]), _mm256_unpackhi_epi32(r[0], r[1]));
        let (t2, t3) = (_mm256_unpacklo_epi32(r[2], r[3]), _mm256_unpackhi_epi32(r[2], r[3]));
        let (t4, t5) = (_mm256_unpacklo_epi32(r[4], r[5]), _mm256_unpackhi_epi32(r[4], r[5]));
        let (t6, t7) = (_mm256_unpacklo_epi32(r[6], r[7]), _mm256_unpackhi_epi32(r[6], r[7]));
        // Per 128-bit half, u0 holds columns 0 (low half) and 4 (high half) of rows
        // 0-3, u1 columns 1 and 5, and so on; u4-u7 the same for rows 4-7.
        let (u0, u1) = (_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2));
        let (u2, u3) = (_mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3));
        let (u4, u5) = (_mm256_unpacklo_epi64(t4, t6), _mm256_unpackhi_epi64(t4, t6));
        let (u6, u7) = (_mm256_unpacklo_epi64(t5, t7), _mm256_unpackhi_epi64(t5, t7));
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_setzero_si128, _mm_storeu_si128, _mm_unpackhi_epi16, _mm_unpackhi_epi32,
        _mm_unpackhi_epi64, _mm_unpackhi_epi8, _mm_unpacklo_epi16, _mm_unpacklo_epi32, _mm_unpacklo_epi64,
        _mm_unpacklo_epi8,
    };

    const REGISTER_BYTES: usize = 16;

    /// The side of the square block one register per row holds, for element sizes
    /// that divide a register.
    pub(super) fn block_side<T>() -> Option<usize> {
        let size = std::mem::size_of::<T>();
        matches!(size, 1 | 2 | 4 | 8).then_some(REGISTER_BYTES / size)
    }

    /// Transposes the n x n block (n = `block_side::<T>()`) of rows `first_row..` and
    /// columns `first_col..` of the matrix whose rows are `row(r)` into the block at
    /// `dst`, rows `dst_stride` apart.
    ///
    /// # Safety
    ///
    /// `T` has size 1, 2, 4 or 8, and each of the n rows of n elements written from
    /// `dst`, `dst_stride` apart, lies inside one allocation.
    #[inline(always)]
    pub(super) unsafe fn transpose_block<'r, T: Copy + 'r>(
        row: &impl Fn(usize) -> &'r [T],
        first_row: usize,
        first_col: usize,
        dst: *mut T,
        dst_stride: usize,
    ) {
        // SAFETY: passed on from the caller.
        unsafe {
            match std::mem::size_of::<T>() {
                1 => transpose_rows::<T, 16, 4>(row, first_row, first_col, dst, dst_stride),
                2 => transpose_rows::<T, 8, 3>(row, first_row, first_col, dst, dst_stride),
                4 => transpose_rows::<T, 4, 2>(row, first_row, first_col, dst, dst_stride),
                _ => transpose_rows::<T, 2, 1>(row, first_row, first_col, dst, dst_stride),
            }
        }
    }

    /// `transpose_block` for N = 16 / size of `T` rows, in log2(N) `PASSES`.
    ///
    /// Interleaving the registers in pairs, at a grain that doubles on each pass,
    /// leaves after the last pass column c of the block in register bit_reverse(c).
    #[inline(always)]
    unsafe fn transpose_rows<'r, T: Copy + 'r, const N: usize, const PASSES: usize>(
        row: &impl Fn(usize) -> &'r [T],
        first_row: usize,
        first_col: usize,
        dst: *mut T,
        dst_stride: usize,
    ) {
        let mut rows: [__m128i; N] = [zero(); N];
        for (i, register) in rows.iter_mut().enumerate() {
            let values = &row(first_row + i)[first_col..first_col + N];
            // SAFETY: SSE2 is part of the x86_64 baseline, and the 16 bytes loaded are
            // the N elements of `values` (N * size = 16).
            *register = unsafe { _mm_loadu_si128(values.as_ptr().cast()) };
        }
        for pass in 0..PASSES {
            let grain = (REGISTER_BYTES / N) << pass;
            let mut next = [zero(); N];
            for i in 0..N / 2 {
                (next[i], next[i + N / 2]) = interleave(grain, rows[2 * i], rows[2 * i + 1]);
            }
            rows = next;
        }
        // A table: the store loop is not unrolled, and `reverse_bits` computed in it
        // (x86 has no instruction for it) took 28% of `Sink::write_region` when
        // averaging a C-order u8 volume.
        let columns: [usize; N] = const { bit_reversed::<N>(PASSES) };
        for (register, &column) in rows.iter().zip(&columns) {
            // SAFETY: SSE2 is part of the x86_64 baseline; row `column` (< N) of the
            // destination block is N elements (16 bytes) the caller vouches for.
            unsafe { _mm_storeu_si128(dst.add(column * dst_stride).cast(), *register) };
        }
    }

    /// Each index below N with its low `bits` bits in reverse order.
    const fn bit_reversed<const N: usize>(bits: usize) -> [usize; N] {
        let mut table = [0; N];
        let mut i = 0;
        while i < N {
            table[i] = i.reverse_bits() >> (usize::BITS - bits as u32);
            i += 1;
        }
        table
    }

    #[inline(always)]
    fn zero() -> __m128i {
        // SAFETY: SSE2 is part of the x86_64 baseline.
        unsafe { _mm_setzero_si128() }
    }

    /// The low and high halves of `a` and `b` interleaved in units of `grain` bytes.
    #[inline(always)]
    fn interleave(grain: usize, a: __m128i, b: __m128i) -> (__m128i, __m128i) {
        // SAFETY: SSE2 is part of the x86_64 baseline; these only move register bits.
        unsafe {
            match grain {
                1 => (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b)),
                2 => (_mm_unpacklo_epi16(a, b), _mm_unpackhi_epi16(a, b)),
                4 => (_mm_unpacklo_epi32(a, b), _mm_unpackhi_epi32(a, b)),
                _ => (_mm_unpacklo_epi64(a, b), _mm_unpackhi_epi64(a, b)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{gather_run, gathers_wide, transpose, transpose_into};

    fn check<T: Copy + PartialEq + std::fmt::Debug>(make: impl Fn(usize) -> T) {
        for rows in [1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 64, 70] {
            for cols in [1, 2, 5, 8, 13, 16, 18, 32, 47, 64, 65] {
                // Rows 3 elements longer than the matrix, as in a plane of a larger region.
                let pitch = cols + 3;
                let src: Vec<T> = (0..rows * pitch).map(&make).collect();
                let mut dst = vec![make(usize::MAX); rows * cols];
                transpose(rows, cols, |r| &src[r * pitch..], &mut dst);
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(dst[c * rows + r], src[r * pitch + c], "{rows}x{cols} at ({r}, {c})");
                    }
                }
                // Into a wider matrix (a tile of rows of a staged plane): the elements
                // between its columns stay as they were.
                let dst_stride = rows + 5;
                let untouched = make(usize::MAX - 1);
                let mut wide = vec![untouched; (cols - 1) * dst_stride + rows + 2];
                transpose_into(rows, cols, |r| &src[r * pitch..], &mut wide, dst_stride);
                for (i, &value) in wide.iter().enumerate() {
                    let (c, r) = (i / dst_stride, i % dst_stride);
                    let want = if c < cols && r < rows {
                        src[r * pitch + c]
                    } else {
                        untouched
                    };
                    assert_eq!(value, want, "{rows}x{cols} into rows {dst_stride} apart, at {i}");
                }
            }
        }
    }

    #[test]
    fn gathers_strided_runs_of_wide_elements() {
        if !gathers_wide::<u64>() {
            return; // nothing to check: write_region does not call it here
        }
        for (len, stride) in [(0, 1), (1, 3), (3, 2), (4, 5), (9, 1), (16, 7), (33, 64)] {
            let values: Vec<u64> = (0..(len.max(1) * stride) as u64)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect();
            let mut run = vec![7u64; len + 2];
            // SAFETY: u64 with AVX2 (checked); `run` holds len + 2 elements, apart from `values`.
            unsafe { gather_run(&values, stride, len, run.as_mut_ptr().add(1)) };
            let expected: Vec<u64> = [7]
                .into_iter()
                .chain((0..len).map(|i| values[i * stride]))
                .chain([7])
                .collect();
            assert_eq!(run, expected, "{len} elements {stride} apart");
        }
    }

    #[test]
    fn gathers_wide_only_8_byte_elements_with_avx2() {
        assert!(!gathers_wide::<u32>() && !gathers_wide::<u16>());
        #[cfg(target_arch = "x86_64")]
        assert_eq!(gathers_wide::<f64>(), std::arch::is_x86_feature_detected!("avx2"));
    }

    #[test]
    fn transposes_every_element_size_and_shape() {
        // Distinct values (mod the type's range) so that a misplaced element shows.
        check(|i| i as u8);
        check(|i| i as u16 ^ 0xa5a5);
        check(|i| i as f32 * 0.5);
        check(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        check(|i| [i as u8, (i >> 8) as u8, 7]);
    }
}
