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

#[derive(Clone)]
struct Pick {
    which: Extremum,
}

impl<T: Element> Reducer<T> for Pick {
    type Lane = Option<T>;
    type Output = T;
    #[inline(always)]
    fn push(&self, best: &mut Option<T>, value: T) {
        *best = Some(match *best {
            None => value,
            Some(best) if best.is_nan() => best,
            Some(_) if value.is_nan() => value,
            Some(best) => match self.which {
                Extremum::Max if value > best => value,
                Extremum::Min if value < best => value,
                _ => best,
            },
        });
    }
    #[inline(always)]
    fn finish(&self, best: &mut Option<T>) -> T {
        best.take().expect("a pooling window is never empty")
    }
}

pub(crate) fn downsample<T: Element>(
    input: &ArrayViewD<'_, T>,
    factor: &[usize],
    which: Extremum,
    outputs: &mut [ArrayViewMutD<'_, T>],
) {
    let window = Window::pooling(&pad_dims(factor), Edge::Clip);
    let reducer = Pick { which };
    super::pyramid_from_previous_mip(input, outputs, |_| window, reducer);
}
