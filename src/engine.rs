//! The loop every kernel shares: for each output voxel, feed the voxels of its window
//! (in scan order, axis 0 fastest) to a reducer. Kernels only say what a window is and
//! how to reduce it.
//!
//! Work is split across rayon threads by whole output rows; each voxel is computed by one
//! thread from the same inputs in the same order, so results never depend on the thread count.

use std::marker::PhantomData;

use ndarray::{ArrayViewD, ArrayViewMutD, ShapeBuilder};
use rayon::prelude::*;

use crate::shape::{pad_dims, Dims, MAX_NDIM};

/// A read-only n-d array of any layout (negative and zero strides included), padded to
/// `MAX_NDIM` axes.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a, T> {
    ptr: *const T,
    pub shape: Dims,
    strides: [isize; MAX_NDIM],
    _borrow: PhantomData<&'a T>,
}

// SAFETY: a Source is a shared borrow of `T` values (it only ever reads), so it may cross
// threads exactly when `&T` may.
unsafe impl<T: Sync> Send for Source<'_, T> {}
// SAFETY: as above; reads through a shared borrow.
unsafe impl<T: Sync> Sync for Source<'_, T> {}

impl<'a, T: Copy> Source<'a, T> {
    pub fn from_view(view: &ArrayViewD<'a, T>) -> Self {
        let mut strides = [0isize; MAX_NDIM];
        strides[..view.ndim()].copy_from_slice(view.strides());
        Source {
            ptr: view.as_ptr(),
            shape: pad_dims(view.shape()),
            strides,
            _borrow: PhantomData,
        }
    }

    /// A Fortran-ordered (axis 0 fastest) buffer of the given shape.
    pub fn from_fortran(data: &'a [T], shape: &Dims) -> Self {
        assert_eq!(data.len(), shape.iter().product::<usize>());
        let mut strides = [0isize; MAX_NDIM];
        let mut step = 1isize;
        for axis in 0..MAX_NDIM {
            strides[axis] = step;
            step *= shape[axis] as isize;
        }
        Source {
            ptr: data.as_ptr(),
            shape: *shape,
            strides,
            _borrow: PhantomData,
        }
    }

    #[inline(always)]
    fn offset_of(&self, axis: usize, coordinate: usize) -> isize {
        coordinate as isize * self.strides[axis]
    }

    /// Reads the element at a sum of `offset_of` terms, one per axis.
    #[inline(always)]
    fn read(&self, offset: isize) -> T {
        // SAFETY: every offset passed here is a sum of `offset_of(axis, c)` with
        // `c < shape[axis]` for each axis (the window code clamps or clips coordinates
        // before calling), i.e. the offset of an in-bounds element of the view or slice
        // this Source was built from, which stays borrowed for 'a.
        unsafe { *self.ptr.offset(offset) }
    }
}

/// How windows past the end of an axis are filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Edge {
    /// Coordinates past the end are dropped: the window shrinks.
    Clip,
    /// Coordinates past the end read the last element: the window keeps its size.
    Replicate,
}

/// The window of output voxel `o` on axis `a`: coordinates `o*step[a] .. o*step[a]+extent[a]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub step: Dims,
    pub extent: Dims,
    pub edge: Edge,
}

impl Window {
    /// The usual pooling window: as wide as the step.
    pub fn pooling(factor: &Dims, edge: Edge) -> Self {
        Window {
            step: *factor,
            extent: *factor,
            edge,
        }
    }

    pub fn output_shape(&self, input: &Dims) -> Dims {
        let mut out = [1; MAX_NDIM];
        for axis in 0..MAX_NDIM {
            out[axis] = input[axis].div_ceil(self.step[axis]);
        }
        out
    }
}

/// Folds the values of one window, fed in scan order, into one result.
pub(crate) trait Reducer<S>: Clone + Send + Sync {
    type Output: Send;
    fn push(&mut self, value: S);
    /// Returns the result and resets the reducer for the next window.
    fn finish(&mut self) -> Self::Output;
}

/// Largest precomputed list of interior-window offsets; bigger windows walk coordinates.
const MAX_PRECOMPUTED_WINDOW: usize = 1 << 16;
/// Output elements per parallel task, so small mips are not split into useless tasks.
const MIN_ELEMENTS_PER_TASK: usize = 1 << 15;

/// Computes one level: `out[o] = reduce(window(o))` for every output voxel `o`, with `out`
/// Fortran-ordered of shape `window.output_shape(src.shape)`.
pub(crate) fn reduce_level<S, R>(src: Source<'_, S>, window: &Window, reducer: R, out: &mut [R::Output])
where
    S: Copy + Send + Sync,
    R: Reducer<S>,
{
    let out_shape = window.output_shape(&src.shape);
    assert_eq!(out.len(), out_shape.iter().product::<usize>());
    let row_len = out_shape[0];
    let rows = out.len() / row_len;

    let interior_offsets = interior_window_offsets(&src, window);
    let rows_per_task = rows_per_task(rows, row_len);

    out.par_chunks_mut(row_len * rows_per_task).enumerate().for_each_init(
        || (reducer.clone(), EdgeScratch::default()),
        |(reducer, scratch), (task, chunk)| {
            let first_row = task * rows_per_task;
            for (r, row) in chunk.chunks_mut(row_len).enumerate() {
                let mut outer = [0usize; MAX_NDIM];
                let mut rest = first_row + r;
                for axis in 1..MAX_NDIM {
                    outer[axis] = rest % out_shape[axis];
                    rest /= out_shape[axis];
                }
                reduce_row(&src, window, &outer, interior_offsets.as_deref(), reducer, scratch, row);
            }
        },
    );
}

fn rows_per_task(rows: usize, row_len: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_size = MIN_ELEMENTS_PER_TASK.div_ceil(row_len);
    let by_balance = rows.div_ceil(threads * 8);
    by_size.max(by_balance).clamp(1, rows.max(1))
}

/// Offsets (relative to the window origin) of a window that lies wholly inside the
/// source, in scan order; `None` when no window can be interior or the list would be huge.
fn interior_window_offsets<S: Copy>(src: &Source<'_, S>, window: &Window) -> Option<Vec<isize>> {
    let mut count = 1usize;
    for axis in 0..MAX_NDIM {
        if window.extent[axis] > src.shape[axis] {
            return None;
        }
        count = count.checked_mul(window.extent[axis])?;
    }
    if count > MAX_PRECOMPUTED_WINDOW {
        return None;
    }
    let mut offsets = vec![0isize];
    for axis in 0..MAX_NDIM {
        let extent = window.extent[axis];
        if extent == 1 {
            continue;
        }
        let base = std::mem::take(&mut offsets);
        offsets.reserve(base.len() * extent);
        for t in 0..extent {
            let shift = src.offset_of(axis, t);
            // Earlier axes vary fastest: the new axis is the outer loop.
            offsets.extend(base.iter().map(|o| o + shift));
        }
    }
    Some(offsets)
}

/// Per-thread buffers for windows that touch an edge.
#[derive(Default)]
struct EdgeScratch {
    axis_offsets: [Vec<isize>; MAX_NDIM],
}

fn reduce_row<S, R>(
    src: &Source<'_, S>,
    window: &Window,
    outer: &Dims,
    interior_offsets: Option<&[isize]>,
    reducer: &mut R,
    scratch: &mut EdgeScratch,
    row: &mut [R::Output],
) where
    S: Copy,
    R: Reducer<S>,
{
    let mut row_base = 0isize;
    let mut row_interior = interior_offsets.is_some();
    for axis in 1..MAX_NDIM {
        let start = outer[axis] * window.step[axis];
        row_base += src.offset_of(axis, start);
        row_interior &= start + window.extent[axis] <= src.shape[axis];
    }
    let (step0, extent0, size0) = (window.step[0], window.extent[0], src.shape[0]);
    for (x, value) in row.iter_mut().enumerate() {
        let start = x * step0;
        *value = match interior_offsets {
            Some(offsets) if row_interior && start + extent0 <= size0 => {
                let base = row_base + src.offset_of(0, start);
                for &o in offsets {
                    reducer.push(src.read(base + o));
                }
                reducer.finish()
            }
            _ => {
                let mut origin = *outer;
                origin[0] = x;
                reduce_edge_window(src, window, &origin, reducer, scratch)
            }
        };
    }
}

/// The slow path: builds each axis' list of (clamped or clipped) coordinates and walks
/// their product in scan order.
fn reduce_edge_window<S, R>(
    src: &Source<'_, S>,
    window: &Window,
    origin: &Dims,
    reducer: &mut R,
    scratch: &mut EdgeScratch,
) -> R::Output
where
    S: Copy,
    R: Reducer<S>,
{
    for axis in 0..MAX_NDIM {
        let list = &mut scratch.axis_offsets[axis];
        list.clear();
        let start = origin[axis] * window.step[axis];
        let size = src.shape[axis];
        for t in 0..window.extent[axis] {
            let c = start + t;
            if c < size {
                list.push(src.offset_of(axis, c));
            } else if window.edge == Edge::Replicate {
                list.push(src.offset_of(axis, size - 1));
            } else {
                break;
            }
        }
    }
    let lists = &scratch.axis_offsets;
    let mut index = [0usize; MAX_NDIM];
    loop {
        let offset: isize = (0..MAX_NDIM).map(|a| lists[a][index[a]]).sum();
        reducer.push(src.read(offset));
        let mut axis = 0;
        loop {
            index[axis] += 1;
            if index[axis] < lists[axis].len() {
                break;
            }
            index[axis] = 0;
            axis += 1;
            if axis == MAX_NDIM {
                return reducer.finish();
            }
        }
    }
}

/// Applies `f` element-wise from one Fortran buffer to another, in parallel.
pub(crate) fn map_level<A: Sync, B: Send>(input: &[A], out: &mut [B], f: impl Fn(&A) -> B + Sync) {
    assert_eq!(input.len(), out.len());
    out.par_chunks_mut(MIN_ELEMENTS_PER_TASK)
        .zip(input.par_chunks(MIN_ELEMENTS_PER_TASK))
        .for_each(|(o, i)| {
            for (o, i) in o.iter_mut().zip(i) {
                *o = f(i);
            }
        });
}

/// True when the view's memory is exactly a Fortran-ordered slice of its shape.
pub(crate) fn is_fortran_contiguous(strides: &[isize], shape: &[usize]) -> bool {
    let mut expected = 1isize;
    for (&stride, &size) in strides.iter().zip(shape) {
        if size != 1 && stride != expected {
            return false;
        }
        expected *= size as isize;
    }
    true
}

/// Runs `fill` on a Fortran-ordered buffer for `dst`: `dst`'s own memory when it is
/// Fortran-contiguous (no copy), otherwise a temporary that is then copied into `dst`.
pub(crate) fn fill_output<T: Copy + Default>(dst: &mut ArrayViewMutD<'_, T>, fill: impl FnOnce(&mut [T])) {
    if is_fortran_contiguous(dst.strides(), dst.shape()) {
        let slice = dst
            .as_slice_memory_order_mut()
            .expect("a Fortran-contiguous view is a slice in memory order");
        fill(slice);
    } else {
        let mut temp = vec![T::default(); dst.len()];
        fill(&mut temp);
        let temp_view = ArrayViewD::from_shape(dst.shape().f(), &temp).expect("shape matches its own length");
        dst.assign(&temp_view);
    }
}
