//! Mode pooling for segmentation labels. Labels compare by their bits; in sparse mode
//! the label whose bits are all zero is background and never wins over a real label.

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::cascade::{self, BlockReducer, ReadAhead, LINE_CHUNK};
use crate::dtype::Element;
use crate::engine::{reduce_windows, Edge, Window, WindowRows, WindowRun};
use crate::kernels::same_type_levels;
use crate::shape::{family, pad_dims, Family};

#[cfg(target_arch = "x86_64")]
mod x86;

/// tinybrain's 2x2 rule over a, b (+1 on the first axis), c (+1 on the second), d (both).
#[derive(Clone)]
struct TwoByTwoRule {
    sparse: bool,
}

impl<T: Element> BlockReducer<T, 4> for TwoByTwoRule {
    type Out = T;
    #[inline(always)]
    fn reduce(&self, block: &[T; 4]) -> T {
        let [a, b, c, d] = *block;
        if !self.sparse {
            Self::dense(a, b, c, d)
        } else {
            let (a_bits, b_bits, c_bits) = (a.to_bits(), b.to_bits(), c.to_bits());
            let zero = T::Bits::default();
            if a_bits != zero && (a_bits == b_bits || a_bits == c_bits) {
                a
            } else if b_bits != zero && b_bits == c_bits {
                b
            } else if d.to_bits() != zero {
                d
            } else {
                [a, b, c].into_iter().find(|v| v.to_bits() != zero).unwrap_or_default()
            }
        }
    }
    /// A short upper line is read whole before the pair is reduced, and the lower line
    /// is then read beside it from cache: two lines read side by side from memory, each
    /// in a 4 KiB page of its own on 512-wide u64 labels, ran at half the bandwidth. On
    /// 512x512x64 labels (preallocated outputs, builds alternated in one process) this
    /// ran 1.6-1.9x as fast on u64 labels and 1.5-2.2x on u32 labels (realistic and
    /// random) as reading both lines side by side with software prefetch. In a C model
    /// of the u64 kernel, reading the upper line whole won up to 8 KiB lines (2 KiB:
    /// 1.3x, 4 KiB: 1.6x, 8 KiB: 1.4x), tied at 16 KiB and lost at 32 KiB and 256 KiB,
    /// where the old way already ran near the read bandwidth; reading it in 2-4 KiB
    /// pieces lost on lines up to 8 KiB. All that on an AMD EPYC: where lines are read
    /// ahead in software (Intel; Zen 5; see
    /// `cascade::reads_ahead_in_software`), both lines are read side by side and ahead,
    /// 1.2-1.39x as fast there as reading first (Zen 5: 1.47-2.16x).
    #[inline(always)]
    fn reduce_line_pairs(&self, lines: &[&[T]], ahead: &ReadAhead<T>, results: &mut [T]) {
        self.reduce_line_pairs_at(0, lines, ahead, results);
    }
    /// The same with the line along either axis of the block (a 2D C-order image's
    /// lines run along its second axis). Block by block before: 2x2 mode of C-order
    /// 4096x4096 labels, one thread, preallocated outputs, builds alternated (Intel
    /// Xeon guest): u64 18.4-18.5 -> 15.6-15.9 ms, u32 10.0-10.4 -> 8.7-8.9 (Fortran
    /// order 8.9-9.7 and 3.3-3.5: the rest is the transposed write).
    #[inline(always)]
    fn reduce_line_pairs_at(&self, position: usize, lines: &[&[T]], ahead: &ReadAhead<T>, results: &mut [T]) {
        let [upper, _] = lines else {
            unreachable!("a 2x2 block spans two lines")
        };
        if !ahead.in_software() && std::mem::size_of_val(*upper) <= cascade::LINES_READ_FIRST_BYTES {
            cascade::read_into_cache(upper);
            self.reduce_rows(position, lines, None, results);
        } else {
            self.reduce_rows(position, lines, Some(ahead), results);
        }
    }
}

impl TwoByTwoRule {
    /// The row of blocks; the lines are read ahead in software only with `ahead`.
    /// Labels of one, four and eight bytes go through the AVX2 kernel, a vector of
    /// blocks at a time; whatever it leaves (the row's tail, u16 labels, other CPUs)
    /// pair by pair, in code the compiler vectorises. Against that, in lanes of their
    /// width (1024x1024x64 labels, preallocated outputs, builds alternated in one
    /// process, Zen 5): u8 1.30-1.34x as fast on one thread, 0.90-1.03x on two; u16
    /// 0.88-0.91x on one (sparse 1.18-1.24x) and 0.97-1.03x on two (sparse 0.87-0.88x).
    #[inline(always)]
    fn reduce_rows<T: Element>(
        &self,
        position: usize,
        lines: &[&[T]],
        ahead: Option<&ReadAhead<T>>,
        results: &mut [T],
    ) {
        #[cfg(target_arch = "x86_64")]
        let done = {
            #[inline(always)]
            fn kernel<T: Element, W: x86::Lanes>(
                position: usize,
                lines: &[&[T]],
                ahead: Option<&ReadAhead<T>>,
                results: &mut [T],
                sparse: bool,
            ) -> usize {
                with_label_words::<T, W, 2>(lines, results, |lines, results| {
                    x86::two_by_two(position, lines, ahead.map(ReadAhead::cast).as_ref(), results, sparse)
                })
            }
            match std::mem::size_of::<T>() {
                1 => kernel::<T, u8>(position, lines, ahead, results, self.sparse),
                4 => kernel::<T, u32>(position, lines, ahead, results, self.sparse),
                8 => kernel::<T, u64>(position, lines, ahead, results, self.sparse),
                _ => 0,
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        if done == results.len() {
            return;
        }
        let [upper, lower] = lines else {
            unreachable!("a 2x2 block spans two lines")
        };
        let (upper, lower) = (&upper[2 * done..], &lower[2 * done..]);
        let results = &mut results[done..];
        // In chunks, so both lines can be read ahead: they are read side by side, which
        // the hardware prefetcher alone does not keep fed.
        let lines = [upper, lower];
        let lines_ahead = ahead.map(|ahead| ahead.all_side_by_side(&lines));
        for (chunk, results) in results.chunks_mut(LINE_CHUNK).enumerate() {
            let start = 2 * LINE_CHUNK * chunk;
            for line_ahead in lines_ahead.iter().flatten() {
                line_ahead.prefetch(start, 2 * LINE_CHUNK);
            }
            let pairs = upper[start..].chunks_exact(2).zip(lower[start..].chunks_exact(2));
            // The block in scan order: along the line first (position 0), or across the
            // lines first. The dense loops stay apart, branch-free, so that they vectorise.
            if self.sparse {
                for (result, (up, low)) in results.iter_mut().zip(pairs) {
                    let block = if position == 0 {
                        [up[0], up[1], low[0], low[1]]
                    } else {
                        [up[0], low[0], up[1], low[1]]
                    };
                    *result = BlockReducer::<T, 4>::reduce(self, &block);
                }
            } else if position == 0 {
                for (result, (up, low)) in results.iter_mut().zip(pairs) {
                    *result = Self::dense(up[0], up[1], low[0], low[1]);
                }
            } else {
                for (result, (up, low)) in results.iter_mut().zip(pairs) {
                    *result = Self::dense(up[0], low[0], up[1], low[1]);
                }
            }
        }
    }

    /// The dense rule written with selects only, so a line of blocks vectorises.
    #[inline(always)]
    fn dense<T: Element>(a: T, b: T, c: T, d: T) -> T {
        let (a_bits, b_bits, c_bits) = (a.to_bits(), b.to_bits(), c.to_bits());
        let b_or_d = if b_bits == c_bits { b } else { d };
        if (a_bits == b_bits) | (a_bits == c_bits) {
            a
        } else {
            b_or_d
        }
    }
}

/// The 2x2x2 rule: the most frequent of the 8 values, ties to the earliest.
#[derive(Clone)]
struct MostFrequentOfEight {
    sparse: bool,
}

impl<T: Element> BlockReducer<T, 8> for MostFrequentOfEight {
    type Out = T;
    #[inline(always)]
    fn reduce(&self, block: &[T; 8]) -> T {
        let bits = block.map(|v| v.to_bits());
        // Most blocks of real segmentations hold one label, and most others two: the
        // first label wins outright when it fills half the block (no other can have
        // more, and a tie goes to the earliest).
        let first_count = bits.iter().filter(|&&b| b == bits[0]).count();
        let first_is_label = !(self.sparse && bits[0] == T::Bits::default());
        if first_count >= 4 && first_is_label {
            return block[0];
        }
        if first_count == 8 {
            return T::default(); // all background
        }
        // The first index with the highest count is the earliest occurrence of the
        // earliest of the most frequent labels.
        let mut best = (0usize, 0usize);
        for (i, &b) in bits.iter().enumerate() {
            if self.sparse && b == T::Bits::default() {
                continue;
            }
            let count = bits.iter().filter(|&&other| other == b).count();
            if count > best.0 {
                best = (count, i);
            }
        }
        if best.0 == 0 {
            T::default()
        } else {
            block[best.1]
        }
    }
    #[inline(always)]
    fn reduce_line_pairs(&self, lines: &[&[T]], ahead: &ReadAhead<T>, results: &mut [T]) {
        self.reduce_line_pairs_at(0, lines, ahead, results);
    }
    /// Labels of every width go through the AVX2 kernel, a vector of blocks at a time,
    /// with the line along any of the three axes (a C-order volume's lines run along
    /// the last); whatever it leaves (the row's tail, other CPUs) block by block. Block
    /// by block, 2x2x2 mode of u8 and u16 labels ran at a tenth of u32's speed or less
    /// (512x512x64, 50 ids, one thread, Zen 5: 690 and 790 MVx/s against 8,600; in
    /// lanes of their width 26,800 and 14,200). Block by block before: 2x2x2 mode of
    /// C-order 512x512x64 labels (lines along the third axis), one thread, preallocated
    /// outputs, builds alternated in one process (Intel Xeon guest): u64 38.1-38.5 ->
    /// 17.6-18.2 ms, u32 34.4-35.2 -> 11.4-11.7.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn reduce_line_pairs_at(&self, position: usize, lines: &[&[T]], ahead: &ReadAhead<T>, results: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        let done = {
            #[inline(always)]
            fn kernel<T: Element, W: x86::Lanes>(
                position: usize,
                lines: &[&[T]],
                ahead: &ReadAhead<T>,
                results: &mut [T],
                sparse: bool,
            ) -> usize {
                with_label_words::<T, W, 4>(lines, results, |lines, results| {
                    x86::most_frequent_of_eight(position, lines, &ahead.cast(), results, sparse)
                })
            }
            match std::mem::size_of::<T>() {
                1 => kernel::<T, u8>(position, lines, ahead, results, self.sparse),
                2 => kernel::<T, u16>(position, lines, ahead, results, self.sparse),
                4 => kernel::<T, u32>(position, lines, ahead, results, self.sparse),
                8 => kernel::<T, u64>(position, lines, ahead, results, self.sparse),
                _ => 0,
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        let tail: [&[T]; 4] = std::array::from_fn(|j| &lines[j][2 * done..]);
        cascade::reduce_line_pairs_at_by_block(self, position, &tail, &mut results[done..]);
    }
}

/// Runs `kernel` on the lines and results of a row of blocks seen as the unsigned
/// integers `W` of the labels' width, which compare as the labels do (by their bits).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn with_label_words<T: Element, W: x86::Lanes, const LINES: usize>(
    lines: &[&[T]],
    results: &mut [T],
    kernel: impl FnOnce(&[&[W]], &mut [W]) -> usize,
) -> usize {
    assert!(
        std::mem::size_of::<T>() == std::mem::size_of::<W>() && std::mem::align_of::<T>() == std::mem::align_of::<W>()
    );
    assert!(lines.len() == LINES);
    // SAFETY: Element is sealed; its types of W's size (u8, i8 for u8; u16, i16 for u16;
    // u32, i32, f32 for u32; u64, i64, f64 for u64) are plain data with W's size and
    // alignment (asserted), valid for every bit pattern, and their `to_bits` is the
    // reinterpretation as W. So the words compare as the labels' bits do, and every
    // word the kernel writes, a copy of an input word, is a valid T. The views cover
    // the same memory as the slices.
    let words: [&[W]; LINES] =
        std::array::from_fn(|j| unsafe { std::slice::from_raw_parts(lines[j].as_ptr().cast::<W>(), lines[j].len()) });
    let results = unsafe { std::slice::from_raw_parts_mut(results.as_mut_ptr().cast::<W>(), results.len()) };
    kernel(&words, results)
}

/// The most frequent labels of the leading whole windows of a run, as many at once as
/// a vector has lanes (`x86::windows`), for labels of every width (u8 and u16 widened
/// to u32) of windows of up to `x86::MAX_WINDOW_VALUES` where the CPU has AVX2; returns
/// how many it did.
fn most_frequent_of_windows<T: Element>(run: &WindowRun<'_, T>, out: &mut [T], sparse: bool) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        // Saturating: a factor near usize::MAX is valid (its one window per row is
        // clipped to the volume), but the run's width is the factor itself, so rows
        // times width can overflow; such a run has no whole windows to count.
        let values = run.rows.len().saturating_mul(run.width);
        if !(1..=x86::MAX_WINDOW_VALUES).contains(&values) || !std::arch::is_x86_feature_detected!("avx2") {
            return 0;
        }
        match std::mem::size_of::<T>() {
            1 => widened_rows::<T, u8>(run, out, sparse),
            2 => widened_rows::<T, u16>(run, out, sparse),
            4 => rows_as_words::<T, u32>(run, out, sparse),
            8 => rows_as_words::<T, u64>(run, out, sparse),
            _ => 0,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (run, out, sparse);
        0
    }
}

/// `x86::windows` for labels of one or two bytes (seen as the unsigned integers `B` of
/// their width), zero-extended to u32 first: one-to-one on their bits, so the counts,
/// the ties and the background are those of the labels. Counted a window at a time
/// instead, exact 3x3x1 mode of a 1024x1024x64 u8 volume took 215 ms, against 16 for
/// 3x3x3 of 512x512x64 u64 labels here.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn widened_rows<T: Element, B: Copy + Into<u32> + TryFrom<u32>>(
    run: &WindowRun<'_, T>,
    out: &mut [T],
    sparse: bool,
) -> usize {
    assert!(
        std::mem::size_of::<T>() == std::mem::size_of::<B>() && std::mem::align_of::<T>() == std::mem::align_of::<B>()
    );
    let done = run.windows.min(out.len()) / <u32 as x86::Lanes>::BLOCKS * <u32 as x86::Lanes>::BLOCKS;
    if done == 0 {
        return 0;
    }
    let len = done * run.width;
    thread_local! {
        /// The widened rows and their results, kept from run to run: two fresh vectors
        /// per run (one output line's windows) were allocated and zeroed, then filled.
        static WIDENED: std::cell::RefCell<(Vec<u32>, Vec<u32>)> = const {
            std::cell::RefCell::new((Vec::new(), Vec::new()))
        };
    }
    WIDENED.with_borrow_mut(|(wide, results)| {
        wide.clear();
        for row in run.rows {
            // SAFETY: Element is sealed; its types of B's size (u8 and i8 for u8, u16
            // and i16 for u16) are plain integers of B's size and alignment (asserted),
            // valid for every bit pattern, and their `to_bits` is the reinterpretation
            // as B.
            let bytes = unsafe { std::slice::from_raw_parts(row.as_ptr().cast::<B>(), len) };
            wide.extend(bytes.iter().map(|&b| b.into()));
        }
        let mut words: [&[u32]; x86::MAX_WINDOW_VALUES] = [&[]; x86::MAX_WINDOW_VALUES];
        for (word_row, wide_row) in words.iter_mut().zip(wide.chunks_exact(len)) {
            *word_row = wide_row;
        }
        let words = &words[..run.rows.len()];
        results.clear();
        results.resize(done, 0);
        count_windows(run, words, results, sparse);
        // SAFETY: as above; every result is a copy of one of the widened labels, so it
        // narrows back to a B that is a valid T.
        let narrow = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<B>(), done) };
        for (slot, &word) in narrow.iter_mut().zip(results.iter()) {
            *slot = B::try_from(word).unwrap_or_else(|_| unreachable!("a result is one of the labels"));
        }
    });
    done
}

/// `x86::windows` on a run's rows seen as the unsigned integers `W` of the labels'
/// width (see `with_label_words`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn rows_as_words<T: Element, W: x86::WindowLanes>(run: &WindowRun<'_, T>, out: &mut [T], sparse: bool) -> usize {
    assert!(
        std::mem::size_of::<T>() == std::mem::size_of::<W>() && std::mem::align_of::<T>() == std::mem::align_of::<W>()
    );
    let done = run.windows.min(out.len()) / W::BLOCKS * W::BLOCKS;
    let mut words: [&[W]; x86::MAX_WINDOW_VALUES] = [&[]; x86::MAX_WINDOW_VALUES];
    for (word_row, row) in words.iter_mut().zip(run.rows) {
        // SAFETY: as in `with_label_words`.
        *word_row = unsafe { std::slice::from_raw_parts(row.as_ptr().cast::<W>(), row.len()) };
    }
    let words = &words[..run.rows.len()];
    // SAFETY: as in `with_label_words`.
    let results = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<W>(), done) };
    count_windows(run, words, results, sparse);
    done
}

/// `x86::windows` over `words`, a run's rows as words, into `results`, reading the
/// run's next rows ahead.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn count_windows<T: Element, W: x86::WindowLanes>(
    run: &WindowRun<'_, T>,
    words: &[&[W]],
    results: &mut [W],
    sparse: bool,
) {
    let read_ahead = |position: usize| run.read_ahead(position, W::BLOCKS * run.width);
    // SAFETY: the CPU has AVX2 (checked by `most_frequent_of_windows`' caller).
    unsafe {
        if sparse {
            x86::windows::<W, true>(words, run.width, results, read_ahead)
        } else {
            x86::windows::<W, false>(words, run.width, results, read_ahead)
        }
    }
}

/// The most frequent label of a window (ties to the label seen first in scan order),
/// counted in place for the early-outs, gathered only for the full count.
#[inline(always)]
fn most_frequent_of_window<T: Element>(window: &WindowRows<'_, T>, buffer: &mut Vec<T>, sparse: bool) -> T {
    let zero = T::Bits::default();
    let first = window.first();
    let first_bits = first.to_bits();
    if !(sparse && first_bits == zero) {
        // Windows of real segmentations mostly hold one label: the first label wins
        // outright when it fills half the window (no other can have more, and a tie
        // goes to the label seen first).
        let first_count = window.count(|v| v.to_bits() == first_bits);
        if 2 * first_count >= window.len() {
            return first;
        }
        // Most of the others lie across the wall between two cells. Every value before
        // the second label's first occurrence is the first label, so any third label
        // is seen after both and beats the leader only with more values than the
        // leader has: when the two leave no more than that, the leader wins. (Exact
        // 3x3x3 mode of realistic labels gathered a third of its windows without this.)
        // These are the first two rounds of `most_frequent_of_few`, written out: that
        // loop run in place on the window through a trait over both (with a limit of
        // two labels) took 3x3x3 mode from 15.2 to 19.5 ms, 4x4x4 from 13.6 to 15.0.
        let second = window
            .find(|v| v.to_bits() != first_bits)
            .expect("another label, or it had won");
        let second_bits = second.to_bits();
        if !(sparse && second_bits == zero) {
            let second_count = window.count(|v| v.to_bits() == second_bits);
            let rest = window.len() - first_count - second_count;
            let (leader, leader_count) = if second_count > first_count {
                (second, second_count)
            } else {
                (first, first_count)
            };
            if leader_count >= rest {
                return leader;
            }
        }
    }
    let len = window.len();
    window.gather(buffer);
    // Padded to whole vector pairs, so that the all-pairs count reads the values where
    // they are (what the padding holds is never counted).
    let padded = len.next_multiple_of(PAIR_LANES);
    if len <= ALL_PAIRS_LIMIT && buffer.len() < padded {
        buffer.resize(padded, first);
    }
    most_frequent_counted(buffer, len, sparse)
}

/// The most frequent label of the values; ties go to the label seen first.
///
/// Windows of up to `ALL_PAIRS_LIMIT` values are counted all pairs at once, which costs
/// the same whatever the labels; counting label by label (`most_frequent_of_few`) costs
/// a pass per label, less for a few labels, far more for many. Exact mode of 512x512x64
/// labels, one thread, against counting label by label first and sorting what that
/// left (AMD Zen 4, builds alternated in one process): random u64 labels (50 ids)
/// 3x3x3 62 against 400 ms, 4x4x4 76-80 against 404-406, 2x2x4 66 against 226, random
/// u32 3x3x3 52 against 267; realistic sparse 3x3x3 15.1 against 16.7, 4x4x4 13.1
/// against 16.0; realistic 4x4x4 11.0-11.7 against 11.6-12.1, u32 7.2-7.3 against 7.7;
/// but realistic 3x3x3 12.8-13.0 against 12.2-12.4 (1.04x slower) and 2x2x4 14.7
/// against 14.2 (1.03x). Sparse windows, mostly background and a cell or two, and
/// windows of more than 32 values are first counted label by label as far as
/// `LABELS_BEFORE_ALL_PAIRS`: counted all pairs straight away, sparse 3x3x3 took 28
/// against 17 ms and 4x4x4 12.1 against 10.6. Counting 3x3x3 label by label first too
/// won back at most 2% on realistic labels and cost random ones 1.2-1.3x.
///
/// Inlined, so that the window loop compiled for AVX2 (`gather_and_reduce_rows_avx2`)
/// counts in AVX2 too. Called out of line, realistic 3x3x3 ran 1.07x slower, for no
/// reason found: 2% of its windows come here.
#[inline(always)]
fn most_frequent_counted<T: Element>(padded: &[T], len: usize, sparse: bool) -> T {
    let values = &padded[..len];
    if len <= ALL_PAIRS_LIMIT {
        if sparse || len > 32 {
            if let Some(winner) = most_frequent_of_few(values, sparse, LABELS_BEFORE_ALL_PAIRS) {
                return winner;
            }
        }
        return if len <= 16 {
            most_frequent_all_pairs::<T, 16>(padded, len, sparse)
        } else if len <= 32 {
            most_frequent_all_pairs::<T, 32>(padded, len, sparse)
        } else {
            most_frequent_all_pairs::<T, 64>(padded, len, sparse)
        };
    }
    if let Some(winner) = most_frequent_of_few(values, sparse, FEW_LABELS) {
        return winner;
    }
    most_frequent_sorted(values, sparse, &mut vec![(T::Bits::default(), 0u32); len])
}

/// Windows up to this size (4x4x4) are counted all pairs at once; larger ones are sorted.
const ALL_PAIRS_LIMIT: usize = 64;

/// Labels counted one at a time before a window goes to the all-pairs count (background
/// included, in sparse mode).
const LABELS_BEFORE_ALL_PAIRS: usize = 4;

/// Values in the widest pair of vectors the all-pairs count reads at once (two AVX2
/// vectors of 32-bit labels): windows are padded to a multiple of this for it to read
/// them in place.
const PAIR_LANES: usize = 16;

/// Windows larger than `ALL_PAIRS_LIMIT` are counted label by label up to this many
/// labels (background included, in sparse mode), then sorted.
const FEW_LABELS: usize = 9;

/// The most frequent value (ties to the one seen first), with every value counted
/// against the window at once: in AVX2 registers (see `x86::first_most_frequent`),
/// labels of one and two bytes widened to u32; value by value in the same order
/// without AVX2. Of `values[..len]`: when `values` runs on to a whole number of vector
/// pairs past `len`, 32- and 64-bit labels are read where they are; otherwise they are
/// copied to the stack, in an array of `CAP` (a multiple of `PAIR_LANES`, at least
/// `len`). (The copy, of a length known only at run time, was a call to memmove: a
/// tenth of exact 3x3x3 mode of random labels.) Counted value by value, exact 4x4x4
/// mode of random u8 and u16 labels ran 2.3-2.7x and 3.3-3.5x slower (512x512x64, 50
/// ids, one thread, Zen 5, dense and sparse).
#[inline(always)]
fn most_frequent_all_pairs<T: Element, const CAP: usize>(values: &[T], len: usize, sparse: bool) -> T {
    let zero = T::Bits::default();
    assert!(len <= CAP && CAP % PAIR_LANES == 0 && len <= values.len());
    let padded = len.next_multiple_of(PAIR_LANES);
    if values.len() >= padded {
        // SAFETY: Element is sealed: its types of 8 bytes (u64, i64, f64) and of 4 (u32,
        // i32, f32) are plain data with the size and alignment of u64 and u32, whose
        // `to_bits` is that reinterpretation.
        if let Some(first) = unsafe { first_most_frequent_in_lanes(&values[..padded], len, sparse) } {
            return first.map_or_else(T::default, |i| values[i]);
        }
    }
    let values = &values[..len];
    if std::mem::size_of::<T>() < 4 {
        // Labels of one or two bytes (integers: every float type is wider) are counted
        // as u32, value by value otherwise: their values map one-to-one into u32, 0 to
        // 0, so the counts, the ties and the background are the labels'.
        let mut words = [0u32; CAP];
        for (w, v) in words.iter_mut().zip(values) {
            *w = v.to_i128() as u32;
        }
        // SAFETY: the words are u32.
        if let Some(first) = unsafe { first_most_frequent_in_lanes(&words, len, sparse) } {
            return first.map_or_else(T::default, |i| values[i]);
        }
    }
    let mut bits = [zero; CAP];
    for (b, v) in bits.iter_mut().zip(values) {
        *b = v.to_bits();
    }
    // SAFETY: `Bits` is u32 or u64 where it has their size (Element is sealed).
    if let Some(first) = unsafe { first_most_frequent_in_lanes(&bits, len, sparse) } {
        return first.map_or_else(T::default, |i| values[i]);
    }
    first_most_frequent(&bits[..len], sparse).map_or_else(T::default, |i| values[i])
}

/// `x86::first_most_frequent` of `words[..len]` (`words` runs on to whole vector
/// pairs), when the words are 32 or 64 bits wide and the CPU has AVX2; None otherwise.
///
/// # Safety
/// A `W` of 4 or 8 bytes is plain data with the size and alignment of u32 or u64, every
/// bit pattern valid, whose labels are equal exactly when those words are.
#[inline(always)]
unsafe fn first_most_frequent_in_lanes<W: Copy>(words: &[W], len: usize, sparse: bool) -> Option<Option<usize>> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above); the words are u64 or u32 as the
        // caller guarantees, and the views cover the same memory as `words`.
        return unsafe {
            match std::mem::size_of::<W>() {
                8 => Some(x86::first_most_frequent(
                    std::slice::from_raw_parts(words.as_ptr().cast::<u64>(), words.len()),
                    len,
                    sparse,
                )),
                4 => Some(x86::first_most_frequent(
                    std::slice::from_raw_parts(words.as_ptr().cast::<u32>(), words.len()),
                    len,
                    sparse,
                )),
                _ => None,
            }
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (words, len, sparse);
    None
}

/// `x86::first_most_frequent`, value by value: each value counted against the values
/// from itself on (the first occurrence of a label sees all of them).
fn first_most_frequent<B: Copy + Eq + Default>(bits: &[B], sparse: bool) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, &label) in bits.iter().enumerate() {
        if sparse && label == B::default() {
            continue;
        }
        let count = bits[i..].iter().filter(|&&b| b == label).count();
        if best.is_none_or(|(most, _)| count > most) {
            best = Some((count, i));
        }
    }
    best.map(|(_, i)| i)
}

/// The winner, counted one label at a time in order of first occurrence (each count a
/// compare over the window, which vectorises), stopping as soon as the values left
/// uncounted are too few to beat the leader: a window across two or three cells is
/// done in two or three counts. None when more than `max_labels` labels (at most
/// `FEW_LABELS`, background included in sparse mode) would have to be counted.
/// (Marking counted values instead of searching the counted labels was measured 5-10%
/// slower on realistic labels.)
#[inline(always)]
fn most_frequent_of_few<T: Element>(values: &[T], sparse: bool, max_labels: usize) -> Option<T> {
    assert!(max_labels <= FEW_LABELS);
    let zero = T::Bits::default();
    // Labels counted so far; in sparse mode background is counted away from the start.
    let mut counted = [zero; FEW_LABELS];
    let mut labels = 0;
    let mut uncounted = values.len();
    if sparse {
        labels = 1;
        uncounted -= values.iter().filter(|v| v.to_bits() == zero).count();
    }
    let mut best: Option<(usize, T)> = None;
    let mut search_from = 0;
    // Every label left first occurs after the leader's first occurrence, so it wins
    // only with a strictly higher count, which `uncounted` bounds.
    while best.map_or(0, |(count, _)| count) < uncounted {
        if labels == max_labels {
            return None;
        }
        // Every value before the last label's first occurrence has a counted label.
        let (first, label) = values[search_from..]
            .iter()
            .enumerate()
            .map(|(i, v)| (search_from + i, v.to_bits()))
            .find(|(_, bits)| !counted[..labels].contains(bits))
            .expect("an uncounted value remains");
        let count = values[first..].iter().filter(|v| v.to_bits() == label).count();
        counted[labels] = label;
        labels += 1;
        uncounted -= count;
        search_from = first + 1;
        if best.is_none_or(|(c, _)| count > c) {
            best = Some((count, values[first]));
        }
    }
    Some(best.map(|(_, v)| v).unwrap_or_default())
}

/// The plain count the tests hold every other path to: each label counted once, at its
/// first occurrence.
#[cfg(test)]
fn most_frequent_pairwise<T: Element>(values: &[T], sparse: bool) -> T {
    let zero = T::Bits::default();
    let mut best: Option<(usize, T)> = None;
    for (i, v) in values.iter().enumerate() {
        let bits = v.to_bits();
        if (sparse && bits == zero) || values[..i].iter().any(|u| u.to_bits() == bits) {
            continue;
        }
        let count = values[i..].iter().filter(|u| u.to_bits() == bits).count();
        if best.is_none_or(|(c, _)| count > c) {
            best = Some((count, *v));
        }
    }
    best.map(|(_, v)| v).unwrap_or_default()
}

/// `keyed` is scratch space as long as `values`.
fn most_frequent_sorted<T: Element>(values: &[T], sparse: bool, keyed: &mut [(T::Bits, u32)]) -> T {
    let zero = T::Bits::default();
    assert!(values.len() <= keyed.len() && values.len() <= u32::MAX as usize);
    let mut len = 0;
    for (i, v) in values.iter().enumerate() {
        let bits = v.to_bits();
        if !(sparse && bits == zero) {
            keyed[len] = (bits, i as u32);
            len += 1;
        }
    }
    let sorted = &mut keyed[..len];
    sorted.sort_unstable();
    // (count, first index) of the winner: larger count, then smaller first index.
    let mut best: Option<(usize, u32)> = None;
    for group in sorted.chunk_by(|x, y| x.0 == y.0) {
        let (count, first) = (group.len(), group[0].1);
        if best.is_none_or(|(c, f)| count > c || (count == c && first < f)) {
            best = Some((count, first));
        }
    }
    best.map(|(_, first)| values[first as usize]).unwrap_or_default()
}

pub(crate) fn downsample<T: Element>(
    input: &ArrayViewD<'_, T>,
    factor: &[usize],
    sparse: bool,
    outputs: &mut [ArrayViewMutD<'_, T>],
) {
    match family(factor) {
        Family::TwoByTwo(axes) => cascade::run::<T, T, T, _, _, _, _, _, _, 4>(
            input,
            &axes,
            outputs,
            &same_type_levels(TwoByTwoRule { sparse }),
        ),
        Family::TwoByTwoByTwo(axes) => cascade::run::<T, T, T, _, _, _, _, _, _, 8>(
            input,
            &axes,
            outputs,
            &same_type_levels(MostFrequentOfEight { sparse }),
        ),
        Family::Identity | Family::General => {
            let window = Window::pooling(&pad_dims(factor), Edge::Clip);
            super::pyramid_from_previous_mip(input, outputs, |src, out| {
                reduce_windows(
                    src,
                    &window,
                    out,
                    // Inlined, so it is compiled for the engine's AVX2 loop too.
                    #[inline(always)]
                    |values, buffer| most_frequent_of_window(values, buffer, sparse),
                    |run, out| most_frequent_of_windows(run, out, sparse),
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::TestRandom;

    /// Rows of 2x2 or 2x2x2 blocks drawn from a few labels (so ties and repeats are
    /// common), through `reduce_line_pairs` and `reduce_line_pairs_at` with the line
    /// along each axis of the block (the AVX2 kernels and their tails) and block by
    /// block. The labels include bit patterns only a bitwise compare tells apart: 0.0
    /// and -0.0, NaNs with two payloads, and all ones.
    fn rows_agree_with_block_rule<T: Element, R: BlockReducer<T, N, Out = T>, const N: usize>(
        pool: &[T],
        rule: impl Fn(bool) -> R,
    ) {
        let mut rng = TestRandom(99);
        let mut next = |n: usize| (rng.next() >> 33) as usize % n;
        for sparse in [false, true] {
            for blocks in [0, 1, 3, 4, 5, 7, 8, 9, 16, 17, 33, 100, 4099] {
                for labels in [1, 2, 3, 8, pool.len()] {
                    let lines: Vec<Vec<T>> = (0..N / 2)
                        .map(|_| (0..2 * blocks).map(|_| pool[next(labels)]).collect())
                        .collect();
                    let lines: Vec<&[T]> = lines.iter().map(Vec::as_slice).collect();
                    let rule = rule(sparse);
                    let ahead = ReadAhead::past_ends(&lines);
                    let bits = |v: &[T]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    for position in 0..N.trailing_zeros() as usize {
                        let mut fast = vec![T::default(); blocks];
                        let mut by_block = vec![T::default(); blocks];
                        if position == 0 {
                            rule.reduce_line_pairs(&lines, &ahead, &mut fast);
                            cascade::reduce_line_pairs_by_block(&rule, &lines, &mut by_block);
                        } else {
                            rule.reduce_line_pairs_at(position, &lines, &ahead, &mut fast);
                            cascade::reduce_line_pairs_at_by_block(&rule, position, &lines, &mut by_block);
                        }
                        assert_eq!(
                            bits(&fast),
                            bits(&by_block),
                            "{lines:?} sparse={sparse} position={position}"
                        );
                    }
                }
            }
        }
    }

    /// Both rules, on every label type.
    fn all_rows_agree_with_block_rules<T: Element>(pool: &[T]) {
        rows_agree_with_block_rule(pool, |sparse| TwoByTwoRule { sparse });
        rows_agree_with_block_rule(pool, |sparse| MostFrequentOfEight { sparse });
    }

    #[test]
    fn rows_of_blocks_agree_with_block_rules() {
        all_rows_agree_with_block_rules::<u64>(&[0, 1, 2, 3, 1 << 63, u64::MAX, 5, 6, 7, 8, 9, 10]);
        all_rows_agree_with_block_rules::<i64>(&[0, -1, 1, i64::MIN, i64::MAX, 2, 3, 4, 5, 6, 7, 8]);
        all_rows_agree_with_block_rules::<u32>(&[0, 1, 2, 3, 1 << 31, u32::MAX, 5, 6, 7, 8, 9, 10]);
        all_rows_agree_with_block_rules::<i32>(&[0, -1, 1, i32::MIN, i32::MAX, 2, 3, 4, 5, 6, 7, 8]);
        let nan_f32 = [f32::NAN, f32::from_bits(0x7fc0_0001)];
        all_rows_agree_with_block_rules::<f32>(&[0.0, -0.0, nan_f32[0], nan_f32[1], 1.0, -1.0, 2.5, 3.0, 4.0, 5.0]);
        let nan_f64 = [f64::NAN, f64::from_bits(0x7ff8_0000_0000_0001)];
        all_rows_agree_with_block_rules::<f64>(&[0.0, -0.0, nan_f64[0], nan_f64[1], 1.0, -1.0, 2.5, 3.0, 4.0, 5.0]);
        all_rows_agree_with_block_rules::<u8>(&[0, 1, 2, 3, 255, 5, 6, 7, 8, 9]);
        all_rows_agree_with_block_rules::<u16>(&[0, 1, 2, 3, u16::MAX, 5, 6, 7, 8, 9]);
        all_rows_agree_with_block_rules::<i8>(&[0, -1, 1, i8::MIN, i8::MAX, 2, 3, 4, 5, 6]);
        all_rows_agree_with_block_rules::<i16>(&[0, -1, 1, i16::MIN, i16::MAX, 2, 3, 4, 5, 6]);
    }

    /// The test above compares the kernels with the block rules only where the kernels run.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_kernels_take_whole_vectors_where_the_cpu_has_avx2() {
        // The 2x2 kernel does not run on u16 labels (`TwoByTwoRule::reduce_rows`).
        fn check<L: x86::Lanes + From<u8> + PartialEq>(two_by_two: bool) {
            // Two vectors' worth of blocks and one more.
            let blocks = 2 * L::BLOCKS + 1;
            let line = vec![L::from(7); 2 * blocks];
            let lines: [&[L]; 4] = [&line; 4];
            let expected = if std::arch::is_x86_feature_detected!("avx2") {
                2 * L::BLOCKS
            } else {
                0
            };
            for sparse in [false, true] {
                let mut results = vec![L::from(0); blocks];
                let done = x86::most_frequent_of_eight(0, &lines, &ReadAhead::past_ends(&lines), &mut results, sparse);
                assert_eq!(done, expected);
                assert!(results[..done].iter().all(|&v| v == L::from(7)));
                if !two_by_two {
                    continue;
                }
                for ahead in [None, Some(&ReadAhead::past_ends(&lines[..2]))] {
                    let mut results = vec![L::from(0); blocks];
                    let done = x86::two_by_two(0, &lines[..2], ahead, &mut results, sparse);
                    assert_eq!(done, expected);
                    assert!(results[..done].iter().all(|&v| v == L::from(7)));
                }
            }
        }
        check::<u64>(true);
        check::<u32>(true);
        check::<u16>(false);
        check::<u8>(true);
    }

    /// `load_thirds`, the loads `x86::windows` reads windows three values wide with:
    /// lane i of vector k is value 3i + k, as a gather at offsets 3i reads it.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn thirds_hold_every_third_value_in_lane_order() {
        use std::arch::x86_64::{__m256i, _mm256_storeu_si256};
        fn lanes<L: x86::WindowLanes + Default>(v: __m256i) -> Vec<L> {
            let mut out = vec![L::default(); 32 / std::mem::size_of::<L>()];
            // SAFETY: `out` holds 32 bytes; storeu has no alignment need.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
            out
        }
        fn check<L: x86::WindowLanes + Default + From<u8> + PartialEq + std::fmt::Debug>() {
            let values: Vec<L> = (0..3 * L::BLOCKS as u8 + 4).map(|v| L::from(v * 7 + 1)).collect();
            for start in 0..4 {
                // SAFETY: AVX2 is available (checked below); 3 * BLOCKS values follow
                // `start`.
                let thirds = unsafe { L::load_thirds(values[start..].as_ptr()) };
                for (k, third) in thirds.into_iter().enumerate() {
                    let expected: Vec<L> = (0..L::BLOCKS).map(|i| values[start + 3 * i + k]).collect();
                    assert_eq!(lanes::<L>(third), expected, "vector {k} from {start}");
                    // SAFETY: as above; the gather reads the same values.
                    let gathered = unsafe { L::gather(values[start + k..].as_ptr(), L::strided(3)) };
                    assert_eq!(lanes::<L>(gathered), expected);
                }
            }
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            check::<u64>();
            check::<u32>();
        }
    }

    /// Runs of windows counted side by side (`most_frequent_of_windows`) against the
    /// plain pairwise count of each window, for every label width the kernel takes
    /// (bit patterns only a bitwise compare tells apart among the floats), windows of
    /// 1 to 32 values from 1, 2, 3, 5 or 40 labels (0 among them: background in sparse
    /// mode), so that groups are decided by the first label, by two labels or by the
    /// full count, runs long enough for the two-label test to be skipped and tried again,
    /// and ragged tails left to the caller (checked untouched).
    #[test]
    fn runs_of_windows_agree_with_pairwise_counting() {
        runs_agree::<u64>(|l| l as u64 * 0x0101_0101_0101_0101);
        // 64-bit labels below 2^32, which `x86::windows` counts on their low halves.
        runs_agree::<u64>(u64::from);
        // Labels of different high halves that share a low half, and labels whose low
        // half is 0 (background, to a count of low halves alone).
        runs_agree::<u64>(|l| (u64::from(l % 3) << 32) | u64::from(l / 3));
        runs_agree::<u32>(|l| l as u32 * 0x0101_0101);
        runs_agree::<i64>(|l| -(l as i64));
        let f64s = [0.0, f64::NAN, f64::from_bits(0x7ff8_0000_0000_0001), -0.0];
        runs_agree::<f64>(|l| f64s.get(l as usize).copied().unwrap_or(l as f64));
        let f32s = [0.0, f32::NAN, f32::from_bits(0x7fc0_0001), -0.0];
        runs_agree::<f32>(|l| f32s.get(l as usize).copied().unwrap_or(l as f32));
    }

    fn runs_agree<T: Element>(label: impl Fn(u8) -> T) {
        let mut rng = TestRandom(777);
        let lanes = 32 / std::mem::size_of::<T>();
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        let sentinel = label(200);
        for labels in [1u8, 2, 3, 5, 40] {
            for row_count in 1..=8usize {
                for width in (1..=5usize).filter(|w| row_count * w <= 32) {
                    for windows in [0, 1, lanes - 1, lanes, 2 * lanes + 1, 9 * lanes + 3] {
                        // Runs of one label over several windows, as in a segmentation.
                        let mut current = 0u8;
                        let rows: Vec<Vec<T>> = (0..row_count)
                            .map(|_| {
                                (0..windows * width + 2)
                                    .map(|_| {
                                        if rng.next() >> 61 == 0 {
                                            current = (rng.next() >> 56) as u8 % labels;
                                        }
                                        label(current)
                                    })
                                    .collect()
                            })
                            .collect();
                        let rows: Vec<&[T]> = rows.iter().map(Vec::as_slice).collect();
                        for sparse in [false, true] {
                            let mut out = vec![sentinel; windows + 1];
                            let done =
                                most_frequent_of_windows(&WindowRun::new(&rows, width, windows), &mut out, sparse);
                            assert_eq!(done, if avx2 { windows / lanes * lanes } else { 0 });
                            for (x, found) in out.iter().enumerate() {
                                let values: Vec<T> = rows
                                    .iter()
                                    .flat_map(|row| &row[(x * width).min(row.len())..((x + 1) * width).min(row.len())])
                                    .copied()
                                    .collect();
                                let expected = if x < done {
                                    most_frequent_pairwise(&values, sparse)
                                } else {
                                    sentinel
                                };
                                assert_eq!(
                                    found.to_bits(),
                                    expected.to_bits(),
                                    "window {x} of {windows}: {values:?} sparse={sparse}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Windows counted in place against the plain pairwise count of their values, on
    /// windows of 1 to 5 rows of 1 to 5 values from 1 to 5 labels (so one, two and more
    /// labels, with and without background first or second).
    #[test]
    fn windows_counted_in_place_agree_with_pairwise_counting() {
        let mut rng = TestRandom(4242);
        let mut buffer = Vec::new();
        for labels in 1u16..=5 {
            for row_count in 1..=5 {
                for width in 1..=5 {
                    for _ in 0..200 {
                        let start = (rng.next() >> 62) as usize;
                        let rows: Vec<Vec<u16>> = (0..row_count)
                            .map(|_| (0..start + width).map(|_| (rng.next() >> 48) as u16 % labels).collect())
                            .collect();
                        let rows: Vec<&[u16]> = rows.iter().map(Vec::as_slice).collect();
                        let window = WindowRows::new(&rows, start, width);
                        let values: Vec<u16> = rows
                            .iter()
                            .flat_map(|row| &row[start..start + width])
                            .copied()
                            .collect();
                        for sparse in [false, true] {
                            assert_eq!(
                                most_frequent_of_window(&window, &mut buffer, sparse),
                                most_frequent_pairwise(&values, sparse),
                                "{values:?} sparse={sparse}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Every counting path against the plain pairwise count, on windows of 1 to 80
    /// values drawn from 2 to 40 labels (so both sides of FEW_LABELS, early and late
    /// stops, the all-pairs counts of every capacity, and the sort are all reached),
    /// as u8, i8, u16, i16, u32 and u64 labels (the AVX2 all-pairs count takes them all,
    /// the narrow ones widened to u32) and as f64 labels (-0.0 is a label of its own, not
    /// background).
    #[test]
    fn every_counting_path_agrees_with_pairwise_counting() {
        counting_paths_agree(|k| k);
        counting_paths_agree(|k| u16::from(k) * 0x0101);
        // Negative labels, which reach the AVX2 count as u32 values past 2^31.
        counting_paths_agree(|k| (k as i8).wrapping_neg());
        counting_paths_agree(|k| -(i16::from(k) * 0x0101));
        counting_paths_agree(|k| u32::from(k).wrapping_mul(0x9E37_79B9));
        counting_paths_agree(|k| u64::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        counting_paths_agree(|k| if k == 1 { -0.0 } else { f64::from(k) });
    }

    fn counting_paths_agree<T: Element>(label: impl Fn(u8) -> T) {
        let mut rng = TestRandom(12345);
        let mut paths = [0usize; 2];
        for labels in [2u8, 4, 9, 40] {
            for len in 1..=80usize {
                for _ in 0..20 {
                    let values: Vec<T> = (0..len).map(|_| label((rng.next() >> 56) as u8 % labels)).collect();
                    // Run on with more labels to a whole number of vector pairs, which
                    // the counts must not see.
                    let mut padded = values.clone();
                    padded.resize_with(len.next_multiple_of(PAIR_LANES), || {
                        label((rng.next() >> 56) as u8 % labels)
                    });
                    for sparse in [false, true] {
                        let expected = most_frequent_pairwise(&values, sparse).to_bits();
                        let same = |found: T, path: &str| {
                            assert_eq!(expected, found.to_bits(), "{path}: {values:?} sparse={sparse}");
                        };
                        let mut keyed = vec![(T::Bits::default(), 0u32); len];
                        same(most_frequent_sorted(&values, sparse, &mut keyed), "sorted");
                        same(most_frequent_counted(&values, len, sparse), "counted");
                        same(most_frequent_counted(&padded, len, sparse), "counted, padded");
                        if len <= 16 {
                            same(
                                most_frequent_all_pairs::<T, 16>(&values, len, sparse),
                                "all pairs in 16",
                            );
                        }
                        if len <= 32 {
                            same(
                                most_frequent_all_pairs::<T, 32>(&values, len, sparse),
                                "all pairs in 32",
                            );
                        }
                        if len <= 64 {
                            same(
                                most_frequent_all_pairs::<T, 64>(&values, len, sparse),
                                "all pairs in 64",
                            );
                            same(
                                most_frequent_all_pairs::<T, 64>(&padded, len, sparse),
                                "all pairs, padded",
                            );
                        }
                        let bits: Vec<T::Bits> = values.iter().map(|v| v.to_bits()).collect();
                        let first = first_most_frequent(&bits, sparse);
                        same(first.map_or_else(T::default, |i| values[i]), "value by value");
                        match most_frequent_of_few(&values, sparse, FEW_LABELS) {
                            Some(few) => {
                                same(few, "few");
                                paths[0] += 1;
                            }
                            None => paths[1] += 1,
                        }
                    }
                }
            }
        }
        assert!(paths[0] > 1000 && paths[1] > 1000, "{paths:?}");
    }
}
