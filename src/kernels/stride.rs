//! Striding: each mip keeps the first voxel of every window, so mip k is the input
//! sampled every factor^k voxels, read straight from the input.

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::cascade::{prefetch, prefetch_run};
use crate::dtype::Element;
use crate::engine::Source;
use crate::shape::{pad_dims, sort_by_stride, Dims, MAX_NDIM};
use crate::sink::Sink;
use crate::threads;

/// Output lines per parallel task.
const LINES_PER_TASK: usize = 64;

/// Output bytes per parallel task of a transposing copy (counted as whole tiles). Large,
/// because the tasks that run at once on two cores are neighbours in memory: with tasks
/// of 64K elements, one output plane of a 1024x1024x64 C-order u8 volume each, the two
/// cores worked on adjacent lines of the same pages all the time, and two threads ran
/// the call only 1.3-1.4x as fast as one.
/// Two threads, builds alternated, 1024x1024x64 u8 2x2x1: 5.3-5.8 ms against 3.4-3.6
/// with 512 KiB tasks; u16 1.3x and two mips of u8 2x2x2 1.4x as fast; u64 (whose
/// tasks were 512 KiB already) and one thread unchanged.
const BYTES_PER_TRANSPOSING_TASK: usize = 1 << 19;

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
        match transposing_axes(&src, &sink, &step) {
            Some(axes) => copy_transposed(&src, &sink, &step, axes),
            None => copy_lines(&src, &sink, &step),
        }
    }
}

/// The output's line axis and the input's, when they differ: the input is then read
/// densest along `in_axis`, but the output must be written along `out_axis`.
#[derive(Clone, Copy)]
struct TransposingAxes {
    out_axis: usize,
    in_axis: usize,
}

/// Whether the input is read more densely along another axis than the output's lines.
fn transposing_axes<T: Copy>(src: &Source<'_, T>, sink: &Sink<T>, step: &Dims) -> Option<TransposingAxes> {
    let out_axis = sink.fastest_axis();
    let read_stride = |axis: usize| src.stride(axis).unsigned_abs().saturating_mul(step[axis]);
    let in_axis = (0..MAX_NDIM)
        .filter(|&a| a != out_axis && sink.shape[a] > 1)
        .min_by_key(|&a| read_stride(a))?;
    (sink.shape[out_axis] > 1 && read_stride(in_axis) < read_stride(out_axis))
        .then_some(TransposingAxes { out_axis, in_axis })
}

/// Copies the samples a line along the output's fastest axis at a time. Fast when the
/// input is read densest along that axis too.
fn copy_lines<T: Element>(src: &Source<'_, T>, sink: &Sink<T>, step: &Dims) {
    // Lines run along the output's smallest stride, so each is written whole, and
    // follow each other along the input's smallest strides.
    let line_axis = sink.fastest_axis();
    let mut across: Vec<usize> = (0..MAX_NDIM).filter(|&a| a != line_axis).collect();
    sort_by_stride(&mut across, src.strides());
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
    threads::for_each_init((0..tasks).collect(), Vec::new, |scratch, task| {
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
                src.gather_every(offset, line_axis, 0, step[line_axis], out)
            });
            offset = next_offset;
        }
    });
}

/// Copies the samples a tile at a time when the input's dense axis is not the output's
/// (a C-order input into Fortran-order outputs). A line-by-line copy would read one
/// element per cache line and per page; a tile reads `tile` elements of each of
/// `tile` input lines, in address order, and `Sink::write_region` writes them out,
/// transposed, as `tile` output lines from cache.
fn copy_transposed<T: Element>(src: &Source<'_, T>, sink: &Sink<T>, step: &Dims, axes: TransposingAxes) {
    let TransposingAxes { out_axis, in_axis } = axes;
    // A tile spans at least two cache lines on both sides; the gathered tile and its
    // transposed copy take 16-32 KiB each. Measured on C-order inputs against tiles
    // half as long: u8 1.12x, u16 1.22x and u64 1.35x as fast (fewer, longer copies
    // out of each tile); u32 at 128 was 1.1x slower than at 64.
    let tile = (256 / std::mem::size_of::<T>()).clamp(64, 128);
    let (out_len, in_len) = (sink.shape[out_axis], sink.shape[in_axis]);
    // Planes (one per point of the other axes) follow each other along the input's
    // smallest strides; a strip is `tile` lines of a plane along the input's axis, cut
    // into tiles of `tile` elements of each line.
    let mut across: Vec<usize> = (0..MAX_NDIM).filter(|&a| a != out_axis && a != in_axis).collect();
    sort_by_stride(&mut across, src.strides());
    let strips_per_plane = out_len.div_ceil(tile);
    let tiles_per_strip = in_len.div_ceil(tile);
    let planes: usize = across.iter().map(|&a| sink.shape[a]).product();
    let tiles = planes * strips_per_plane * tiles_per_strip;
    let tiles_per_task = (BYTES_PER_TRANSPOSING_TASK / std::mem::size_of::<T>()).div_ceil(tile * tile);
    // Tile `index`: its first output element, its extents along the two axes, and the
    // input offset of its first line (coordinate 0 on `in_axis`).
    let tile_at = |index: usize| {
        let mut origin = [0usize; MAX_NDIM];
        origin[in_axis] = index % tiles_per_strip * tile;
        let strip = index / tiles_per_strip;
        origin[out_axis] = strip % strips_per_plane * tile;
        let mut plane = strip / strips_per_plane;
        for &axis in &across {
            origin[axis] = plane % sink.shape[axis];
            plane /= sink.shape[axis];
        }
        let first_line: isize = (0..MAX_NDIM)
            .filter(|&axis| axis != in_axis)
            .map(|axis| src.offset_of(axis, origin[axis] * step[axis]))
            .sum();
        let mut extent = [1usize; MAX_NDIM];
        extent[out_axis] = tile.min(out_len - origin[out_axis]);
        extent[in_axis] = tile.min(in_len - origin[in_axis]);
        (origin, extent, first_line)
    };
    let line_step = src.offset_of(out_axis, step[out_axis]);
    threads::for_each_init(
        (0..tiles.div_ceil(tiles_per_task)).collect(),
        || (vec![T::default(); tile * tile], Vec::new()),
        |(gathered, transposed), task| {
            let (first, end) = (task * tiles_per_task, ((task + 1) * tiles_per_task).min(tiles));
            let mut next = tile_at(first);
            for index in first..end {
                let (origin, extent, first_line) = next;
                let (lines, len) = (extent[out_axis], extent[in_axis]);
                // The next tile's input pieces and output lines lie apart (a plane
                // apart in a C-order input and a Fortran-order mip), each a cache line
                // or two: too many streams for the hardware prefetcher, and each piece
                // a fresh miss. Asked for now (into L2), they are in cache when that
                // tile is copied. C-order 1024x1024x64 u8 volume, one thread, builds
                // alternated: 15.9 ms with only the output lines asked for, into L1;
                // 9.2 with the input too, into L2 (16.7 into L1); 8.4 without the
                // output lines, 7.7 with them into L2. Asking two or four tiles ahead
                // instead of one: 9.0-9.1 ms against 9.2.
                if index + 1 < tiles {
                    next = tile_at(index + 1);
                    let (next_origin, next_extent, next_first_line) = next;
                    if src.stride(in_axis) == 1 {
                        let first_sample = src.offset_of(in_axis, next_origin[in_axis] * step[in_axis]);
                        let span = (next_extent[in_axis] - 1) * step[in_axis] + 1;
                        for line in 0..next_extent[out_axis] {
                            let offset = next_first_line + line as isize * line_step + first_sample;
                            prefetch_run(src.address_of(offset), span);
                        }
                    }
                    if sink.stride(out_axis) == 1 {
                        let start = sink.address_of(&next_origin);
                        for line in 0..next_extent[in_axis] {
                            let address = start.wrapping_offset(line as isize * sink.stride(in_axis));
                            prefetch_run(address, next_extent[out_axis]);
                        }
                    }
                }
                // Gathered first, even where the input lines are contiguous: one copy
                // of each piece keeps more of its cache misses in flight than the
                // transpose's loads do (measured: transposing straight from the input
                // took 1.1x as long for u8, 1.25x for u64).
                let first_sample = origin[in_axis] * step[in_axis];
                for (line, piece) in gathered[..lines * len].chunks_exact_mut(len).enumerate() {
                    let offset = first_line + line as isize * line_step;
                    src.gather_every(offset, in_axis, first_sample, step[in_axis], piece);
                }
                sink.write_region(&origin, &extent, in_axis, &gathered[..lines * len], transposed);
            }
        },
    );
}
