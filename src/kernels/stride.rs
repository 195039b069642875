//! Striding: each mip keeps the first voxel of every window, so mip k is the input
//! sampled every factor^k voxels, read straight from the input.

use ndarray::{ArrayViewD, ArrayViewMutD};
use rayon::prelude::*;

use crate::cascade::Sink;
use crate::dtype::Element;
use crate::engine::Source;
use crate::shape::{pad_dims, MAX_NDIM};

/// Output lines per parallel task.
const LINES_PER_TASK: usize = 64;

pub(crate) fn downsample<T: Element>(
    input: &ArrayViewD<'_, T>,
    factor: &[usize],
    outputs: &mut [ArrayViewMutD<'_, T>],
) {
    let src = Source::from_view(input);
    let factor = pad_dims(factor);
    let mut step = [1usize; MAX_NDIM];
    for out in outputs.iter_mut() {
        for axis in 0..MAX_NDIM {
            // Past the axis's size only voxel 0 is sampled, whatever the step.
            step[axis] = step[axis].saturating_mul(factor[axis]).min(src.shape[axis]);
        }
        let sink = Sink::new(out);
        let line_len = sink.shape[0];
        let lines: usize = sink.shape[1..].iter().product();
        let tasks = lines.div_ceil(LINES_PER_TASK);
        (0..tasks).into_par_iter().for_each_init(Vec::new, |gathered, task| {
            let first = task * LINES_PER_TASK;
            let mut origin = [0usize; MAX_NDIM];
            let mut rest = first;
            for axis in 1..MAX_NDIM {
                origin[axis] = rest % sink.shape[axis];
                rest /= sink.shape[axis];
            }
            for _ in first..(first + LINES_PER_TASK).min(lines) {
                let offset: isize = (1..MAX_NDIM)
                    .map(|axis| src.offset_of(axis, origin[axis] * step[axis]))
                    .sum();
                let values = src.line_every(offset, 0, line_len, step[0], gathered);
                sink.write_line(&origin, 0, values, |&v| v);
                // Next line: axis 1 fastest.
                for axis in 1..MAX_NDIM {
                    origin[axis] += 1;
                    if origin[axis] < sink.shape[axis] {
                        break;
                    }
                    origin[axis] = 0;
                }
            }
        });
    }
}
