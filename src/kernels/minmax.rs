//! Min and max pooling over the clipped window; NaN propagates (the first NaN in scan
//! order wins), and among equal values (+0.0 and -0.0) the first in scan order is kept.

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::cascade::{self, fold_line_pairs, fold_stacked_lines, BlockReducer, ReadAhead};
use crate::dtype::{AveragingClass, Element};
use crate::engine::{reduce_level, Edge, Reducer, Window};
use crate::kernels::same_type_levels;
use crate::shape::{family, pad_dims, Dims, Family};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extremum {
    Min,
    Max,
}

/// Max pooling when `MAX`, min pooling otherwise (a constant, so the row loop has no
/// branch on it).
#[derive(Clone)]
pub(crate) struct Pick<const MAX: bool>;

impl<const MAX: bool> Pick<MAX> {
    /// The value every other value replaces (so no "empty" state is needed): the lowest
    /// value for max, the highest for min; infinities for floats.
    #[inline(always)]
    fn identity<T: Element>() -> T {
        if MAX {
            T::LOWEST
        } else {
            T::HIGHEST
        }
    }
}

impl<T: Element, const MAX: bool> Reducer<T> for Pick<MAX> {
    type Lane = T;
    type Output = T;
    #[inline(always)]
    fn new_lane(&self) -> T {
        Self::identity()
    }
    /// A select, not a branch: for integers (is_nan is constant false) this is a
    /// vectorisable max/min.
    #[inline(always)]
    fn push(&self, best: &mut T, value: T) {
        let better = if MAX { value > *best } else { value < *best };
        let take = !best.is_nan() && (value.is_nan() || better);
        *best = if take { value } else { *best };
    }
    #[inline(always)]
    fn finish(&self, best: &mut T) -> T {
        std::mem::replace(best, Self::identity())
    }
}

impl<T: Element, const N: usize, const MAX: bool> BlockReducer<T, N> for Pick<MAX> {
    type Out = T;
    /// The least or greatest of a set of integers is one value whatever the order (of
    /// floats, which NaN or which zero comes first can matter).
    const ORDER_FREE: bool = !matches!(T::AVERAGING, AveragingClass::Float);
    /// Replicated voxels come after their originals in scan order and equal them, so
    /// they never win: the padded block gives the clipped window's result.
    #[inline(always)]
    fn reduce(&self, block: &[T; N]) -> T {
        let mut best = Self::identity();
        for &v in block {
            Reducer::push(self, &mut best, v);
        }
        best
    }
    /// Folds a line at a time, in scan order as `reduce` does: the same result.
    #[inline(always)]
    fn reduce_line_pairs(&self, lines: &[&[T]], ahead: &ReadAhead<T>, results: &mut [T]) {
        let push_pair = |best: &mut T, a: T, b: T| {
            Reducer::push(self, best, a);
            Reducer::push(self, best, b);
        };
        fold_line_pairs(lines, ahead, results, Self::identity, push_pair);
    }
    /// Starts from the first line: the identity loses to any value but itself (a NaN
    /// replaces it, and an equal value leaves the same bits), so copying the first line
    /// gives what pushing it onto the identity would.
    #[inline(always)]
    fn reduce_stacked_lines(&self, lines: &[&[T]; N], results: &mut [T]) {
        fold_stacked_lines(
            lines,
            results,
            |v: T| v,
            |best: &mut T, v: T| Reducer::push(self, best, v),
        );
    }
}

pub(crate) fn downsample<T: Element>(
    input: &ArrayViewD<'_, T>,
    factor: &[usize],
    which: Extremum,
    outputs: &mut [ArrayViewMutD<'_, T>],
) {
    match (family(factor), which) {
        (Family::TwoByTwo(axes), Extremum::Max) => {
            cascade::run::<T, T, T, _, _, _, _, _, _, 4>(input, &axes, outputs, &same_type_levels(Pick::<true>))
        }
        (Family::TwoByTwo(axes), Extremum::Min) => {
            cascade::run::<T, T, T, _, _, _, _, _, _, 4>(input, &axes, outputs, &same_type_levels(Pick::<false>))
        }
        (Family::TwoByTwoByTwo(axes), Extremum::Max) => {
            cascade::run::<T, T, T, _, _, _, _, _, _, 8>(input, &axes, outputs, &same_type_levels(Pick::<true>))
        }
        (Family::TwoByTwoByTwo(axes), Extremum::Min) => {
            cascade::run::<T, T, T, _, _, _, _, _, _, 8>(input, &axes, outputs, &same_type_levels(Pick::<false>))
        }
        (_, which) => {
            let pool = |input: &ArrayViewD<'_, T>, factor: &Dims, outputs: &mut [ArrayViewMutD<'_, T>]| {
                let window = Window::pooling(factor, Edge::Clip);
                match which {
                    Extremum::Max => super::pyramid_from_previous_mip(input, outputs, |src, out| {
                        reduce_level(src, &window, Pick::<true>, out)
                    }),
                    Extremum::Min => super::pyramid_from_previous_mip(input, outputs, |src, out| {
                        reduce_level(src, &window, Pick::<false>, out)
                    }),
                }
            };
            if const { matches!(T::AVERAGING, AveragingClass::Float) } {
                // Which of +0.0 and -0.0, or of two NaNs, is kept depends on the order.
                pool(input, &pad_dims(factor), outputs);
            } else {
                super::in_memory_order(input, &pad_dims(factor), outputs, pool);
            }
        }
    }
}
