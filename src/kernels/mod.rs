//! One file per method. Each kernel says how to reduce a block or a window; the loops
//! over voxels, edges and threads live in [`crate::cascade`] (the 2x2 and 2x2x2
//! families) and [`crate::engine`] (every other factor).

pub(crate) mod average;
pub(crate) mod minmax;
pub(crate) mod mode;
pub(crate) mod stride;

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::cascade::{fold_line_pairs, fold_stacked_lines, BlockReducer, KeptAsIs, Levels, ReadAhead};
use crate::dtype::Element;
use crate::engine::{fill_output, Reducer, Source};
use crate::shape::{memory_order, Dims, MAX_NDIM};
use crate::sink::RenderedAsIs;

/// Runs `run` on `input`, `factor` and `outputs` with their axes reordered alike, so that
/// axis 0 is the input's nearest in memory and the others follow by stride (axes of one
/// voxel last). The general engine reads rows along axis 0: along a strided axis 0 (a
/// C-order input) every value cost a cache line of its own, since the rows that share
/// those lines came long after (max pooling 3x3x1 of a C-order 1024x1024x64 u8 volume:
/// 586 ms against 7.6 in Fortran order). Only for reductions whose result does not
/// depend on the order in which a window's values come (integer sums and extremes):
/// the order of the values within each window changes with the axes.
pub(crate) fn in_memory_order<T: Element>(
    input: &ArrayViewD<'_, T>,
    factor: &Dims,
    outputs: &mut [ArrayViewMutD<'_, T>],
    run: impl FnOnce(&ArrayViewD<'_, T>, &Dims, &mut [ArrayViewMutD<'_, T>]),
) {
    let order = memory_order(input.shape(), input.strides());
    if order.iter().enumerate().all(|(position, &axis)| position == axis) {
        return run(input, factor, outputs);
    }
    let mut reordered_factor = [1; MAX_NDIM];
    for (position, &axis) in order.iter().enumerate() {
        reordered_factor[position] = factor[axis];
    }
    let reordered_input = input.view().permuted_axes(order.clone());
    let mut reordered_outputs: Vec<_> = outputs
        .iter_mut()
        .map(|output| output.view_mut().permuted_axes(order.clone()))
        .collect();
    run(&reordered_input, &reordered_factor, &mut reordered_outputs);
}

/// Builds the pyramid of methods whose mip k+1 is a function of mip k alone
/// (mode, min, max): `level` computes each mip from the previous output (the input for
/// mip 1) into a Fortran-ordered buffer.
pub(crate) fn pyramid_from_previous_mip<T: Element>(
    input: &ArrayViewD<'_, T>,
    outputs: &mut [ArrayViewMutD<'_, T>],
    level: impl Fn(Source<'_, T>, &mut [T]),
) {
    for mip in 0..outputs.len() {
        let (done, rest) = outputs.split_at_mut(mip);
        let previous = match done.last() {
            Some(view) => view.view(),
            None => input.view(),
        };
        fill_output(&mut rest[0], |out| level(Source::from_view(&previous), out));
    }
}

/// A reducer that converts each value, adds them up, and maps the total.
#[derive(Clone)]
pub(crate) struct Sum<Convert, Finish> {
    convert: Convert,
    finish: Finish,
}

impl<Convert, Finish> Sum<Convert, Finish> {
    pub fn new(convert: Convert, finish: Finish) -> Self {
        Sum { convert, finish }
    }
}

/// Accumulators that can stand for several copies of one value.
pub(crate) trait Scale {
    /// Whether sums of these are the same in any order (integers, not floats).
    const EXACT: bool;
    fn times(self, copies: u32) -> Self;
}

macro_rules! impl_scale {
    ($exact:literal: $($t:ty),*) => {$(
        impl Scale for $t {
            const EXACT: bool = $exact;
            #[inline(always)]
            fn times(self, copies: u32) -> Self {
                self * copies as $t
            }
        }
    )*};
}
impl_scale!(true: i16, u16, i32, i64, i128, u32, u64);
impl_scale!(false: f64);

impl<S: Copy, A, Out, Convert, Finish> Reducer<S> for Sum<Convert, Finish>
where
    A: Copy + Default + Send + Sync + std::ops::AddAssign + Scale,
    Out: Send,
    Convert: Fn(S) -> A + Clone + Send + Sync,
    Finish: Fn(A) -> Out + Clone + Send + Sync,
{
    type Lane = A;
    type Output = Out;
    #[inline(always)]
    fn push(&self, total: &mut A, value: S) {
        *total += (self.convert)(value);
    }
    #[inline(always)]
    fn push_weighted(&self, total: &mut A, value: S, weight: u32) {
        *total += (self.convert)(value).times(weight);
    }
    #[inline(always)]
    fn finish(&self, total: &mut A) -> Out {
        (self.finish)(std::mem::take(total))
    }
}

/// A block reducer that converts each value and adds them up in scan order; when
/// `WEIGHTED`, an edge block's real voxels count as many times as they are repeated.
#[derive(Clone)]
pub(crate) struct BlockSum<Convert, const WEIGHTED: bool>(pub Convert);

impl<S, A, Convert, const N: usize, const WEIGHTED: bool> BlockReducer<S, N> for BlockSum<Convert, WEIGHTED>
where
    S: Copy,
    A: Copy + Default + Send + std::ops::AddAssign + Scale,
    Convert: Fn(S) -> A + Sync,
{
    type Out = A;
    const WEIGHTED: bool = WEIGHTED;
    const ORDER_FREE: bool = A::EXACT;
    #[inline(always)]
    fn reduce(&self, block: &[S; N]) -> A {
        // From zero, in scan order: the same sum, to the bit, as the general engine's.
        let mut total = A::default();
        for &v in block {
            total += (self.0)(v);
        }
        total
    }
    /// Line by line, in the same order as `reduce`: identical sums, but each line is
    /// read once, in address order, into accumulators that stay in cache.
    #[inline(always)]
    fn reduce_line_pairs(&self, lines: &[&[S]], ahead: &ReadAhead<S>, results: &mut [A]) {
        let convert = &self.0;
        let add = |total: &mut A, a: S, b: S| {
            *total += convert(a);
            *total += convert(b);
        };
        fold_line_pairs(lines, ahead, results, A::default, add);
    }
    /// Starts each sum from zero plus the first line's value, not from the value
    /// itself: for floats 0.0 + -0.0 is +0.0, and `reduce` gives that.
    #[inline(always)]
    fn reduce_stacked_lines(&self, lines: &[&[S]; N], results: &mut [A]) {
        let convert = &self.0;
        let start = |v: S| {
            let mut total = A::default();
            total += convert(v);
            total
        };
        fold_stacked_lines(lines, results, start, |total: &mut A, v: S| *total += convert(v));
    }
    #[inline(always)]
    fn reduce_weighted(&self, block: &[S; N], weights: &[u32; N]) -> A {
        let mut total = A::default();
        for (&v, &weight) in block.iter().zip(weights) {
            if weight != 0 {
                total += (self.0)(v).times(weight);
            }
        }
        total
    }
}

/// The levels of methods whose mip k+1 is the same reduction of mip k (mode, min, max):
/// the state kept between levels is the mip itself.
#[allow(clippy::type_complexity)]
pub(crate) fn same_type_levels<R: Clone>(
    reducer: R,
) -> Levels<R, R, impl Fn(usize) -> KeptAsIs, impl Fn(usize) -> RenderedAsIs> {
    Levels {
        first: reducer.clone(),
        next: reducer,
        keep: |_| KeptAsIs,
        render: |_| RenderedAsIs,
    }
}

/// The kernels' unit tests draw their inputs from this 64-bit LCG (Knuth's MMIX
/// constants): reproducible, and no dependency for a few random numbers.
#[cfg(test)]
pub(crate) struct TestRandom(pub u64);

#[cfg(test)]
impl TestRandom {
    /// The next state; callers take the high bits, which cycle slowest.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cascade::{reduce_line_pairs_at_by_block, BlockReducer, ReadAhead};
    use crate::kernels::minmax::Pick;

    /// A reducer that says its results do not depend on the order of a block's values
    /// (`ORDER_FREE`) gives through `reduce_line_pairs_at`, which then folds a block's
    /// values as if the line ran along its first axis, what each block gives in scan
    /// order with the line along its second or third (a C-order volume's 2x2x2 blocks).
    fn check_order_free<T: Copy, R: BlockReducer<T, N>, const N: usize>(
        reducer: &R,
        order_free: bool,
        value: impl Fn(u64) -> T,
    ) where
        R::Out: PartialEq + std::fmt::Debug,
    {
        assert_eq!(R::ORDER_FREE, order_free);
        if !order_free {
            return;
        }
        let mut rng = TestRandom(31);
        for blocks in [1, 2, 5, 16, 33, 100] {
            let lines: Vec<Vec<T>> = (0..N / 2)
                .map(|_| (0..2 * blocks).map(|_| value(rng.next() >> 40)).collect())
                .collect();
            let lines: Vec<&[T]> = lines.iter().map(Vec::as_slice).collect();
            for position in 1..N.trailing_zeros() as usize {
                let mut folded = vec![R::Out::default(); blocks];
                reducer.reduce_line_pairs_at(position, &lines, &ReadAhead::past_ends(&lines), &mut folded);
                let mut by_block = vec![R::Out::default(); blocks];
                reduce_line_pairs_at_by_block(reducer, position, &lines, &mut by_block);
                assert_eq!(folded, by_block, "position {position}, {blocks} blocks");
            }
        }
    }

    #[test]
    fn integer_sums_and_extrema_fold_blocks_along_any_axis_and_floats_do_not_claim_to() {
        check_order_free::<u8, _, 8>(&BlockSum::<_, false>(|v: u8| v as u32), true, |r| r as u8);
        check_order_free::<i64, _, 8>(&BlockSum::<_, false>(|v: i64| v as i128), true, |r| (r as i64) << 40);
        check_order_free::<u16, _, 4>(&BlockSum::<_, false>(|v: u16| v as u64), true, |r| r as u16);
        check_order_free::<f32, _, 8>(&BlockSum::<_, false>(|v: f32| v as f64), false, |r| r as f32);
        check_order_free::<i16, _, 8>(&Pick::<true>, true, |r| r as i16);
        check_order_free::<u64, _, 8>(&Pick::<false>, true, |r| r << 24);
        check_order_free::<f64, _, 8>(&Pick::<true>, false, |r| r as f64);
    }
}
