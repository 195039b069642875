//! Striding: each mip keeps the first voxel of every window.

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::dtype::Element;
use crate::engine::{Edge, Reducer, Window};
use crate::shape::{pad_dims, MAX_NDIM};

/// Keeps the one value its window holds.
#[derive(Clone, Default)]
struct Only<T>(Option<T>);

impl<T: Element> Reducer<T> for Only<T> {
    type Output = T;
    #[inline(always)]
    fn push(&mut self, value: T) {
        self.0 = Some(value);
    }
    #[inline(always)]
    fn finish(&mut self) -> T {
        self.0.take().expect("a striding window holds exactly one voxel")
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
    super::pyramid_from_previous_mip(input, outputs, |_| window, Only::default());
}
