//! Striding: each mip keeps the first voxel of every window.

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::dtype::Element;
use crate::engine::{Edge, Reducer, Window};
use crate::shape::{pad_dims, MAX_NDIM};

/// Keeps the one value its window holds.
#[derive(Clone, Default)]
struct Only;

impl<T: Element> Reducer<T> for Only {
    type Lane = T;
    type Output = T;
    #[inline(always)]
    fn push(&self, lane: &mut T, value: T) {
        *lane = value;
    }
    #[inline(always)]
    fn finish(&self, lane: &mut T) -> T {
        *lane
    }
}

pub(crate) fn downsample<T: Element>(
    input: &ArrayViewD<'_, T>,
    factor: &[usize],
    outputs: &mut [ArrayViewMutD<'_, T>],
) {
    let factor = pad_dims(factor);
    let window = Window {
        step: factor,
        extent: [1; MAX_NDIM],
        edge: Edge::Clip,
    };
    super::pyramid_from_previous_mip(input, outputs, |_| window, Only);
}
