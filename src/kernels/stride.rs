//! Striding: each mip keeps the first voxel of every window, so mip k is the input
//! sampled every factor^k voxels, read straight from the input.

use ndarray::{ArrayViewD, ArrayViewMutD};
use rayon::prelude::*;

use crate::cascade::{prefetch, Sink};
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
        // Lines run along the output's smallest stride, so each is written whole, and
        // follow each other along the input's smallest strides. When both layouts
        // agree, every line is also read in address order; when they do not (a C-order
        // input into Fortran-order outputs), consecutive lines read the next elements
        // of the same cache lines, which are still in cache.
        let line_axis = sink.fastest_axis();
        let mut across: Vec<usize> = (0..MAX_NDIM).filter(|&a| a != line_axis).collect();
        across.sort_by_key(|&a| src.stride(a).unsigned_abs());
        let line_len = sink.shape[line_axis];
        let lines: usize = across.iter().map(|&a| sink.shape[a]).product();
        let tasks = lines.div_ceil(LINES_PER_TASK);
        // The input line of the output line at `origin`.
        let line_offset = |origin: &[usize; MAX_NDIM]| -> isize {
            across
                .iter()
                .map(|&axis| src.offset_of(axis, origin[axis] * step[axis]))
                .sum()
        };
        (0..tasks).into_par_iter().for_each_init(Vec::new, |scratch, task| {
            let first = task * LINES_PER_TASK;
            let mut origin = [0usize; MAX_NDIM];
            let mut rest = first;
            for &axis in &across {
                origin[axis] = rest % sink.shape[axis];
                rest /= sink.shape[axis];
            }
            let mut offset = line_offset(&origin);
            for line in first..(first + LINES_PER_TASK).min(lines) {
                let here = origin;
                // Next line: the axis of smallest input stride across lines fastest.
                for &axis in &across {
                    origin[axis] += 1;
                    if origin[axis] < sink.shape[axis] {
                        break;
                    }
                    origin[axis] = 0;
                }
                // Past the last line `origin` has wrapped to zeros: still a valid line.
                let next_offset = line_offset(&origin);
                if line + 1 < lines && src.stride(line_axis) == 1 {
                    // Lines of a stride of 2 or more lie apart: the hardware prefetcher
                    // starts afresh on each, so the next is asked for while this one
                    // is copied.
                    let span = (line_len - 1) * step[line_axis] + 1;
                    prefetch(src.address_of(next_offset), span);
                }
                sink.fill_line(&here, line_axis, line_len, scratch, |out| {
                    src.gather_every(offset, line_axis, step[line_axis], out)
                });
                offset = next_offset;
            }
        });
    }
}
