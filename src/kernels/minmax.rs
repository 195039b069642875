//! Min and max pooling over the clipped window; NaN propagates (the first NaN in scan
//! order wins), and among equal values (+0.0 and -0.0) the first in scan order is kept.

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::dtype::Element;
use crate::engine::{Edge, Reducer, Window};
use crate::shape::pad_dims;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extremum {
    Min,
    Max,
}

/// Max pooling when `MAX`, min pooling otherwise (a constant, so the row loop has no
/// branch on it).
#[derive(Clone)]
struct Pick<const MAX: bool>;

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

pub(crate) fn downsample<T: Element>(
    input: &ArrayViewD<'_, T>,
    factor: &[usize],
    which: Extremum,
    outputs: &mut [ArrayViewMutD<'_, T>],
) {
    let window = Window::pooling(&pad_dims(factor), Edge::Clip);
    match which {
        Extremum::Max => super::pyramid_from_previous_mip(input, outputs, |_| window, Pick::<true>),
        Extremum::Min => super::pyramid_from_previous_mip(input, outputs, |_| window, Pick::<false>),
    }
}
