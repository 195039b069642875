//! The general loop, for factors outside the 2x2 and 2x2x2 families (those run in
//! [`crate::cascade`]): for each output voxel, feed the voxels of its window (in scan
//! order, axis 0 fastest) to a reducer. Kernels only say what a window is and how to
//! reduce it.
//! Reductions that need a whole window at once (the mode) get it, in place, from
//! [`reduce_windows`].
//!
//! Work is split across rayon threads by whole output rows; each voxel is computed by one
//! thread from the same inputs in the same order, so results never depend on the thread count.

use std::marker::PhantomData;

use ndarray::{ArrayViewD, ArrayViewMutD, ShapeBuilder};

use crate::cascade::{prefetch, prefetch_run, CACHE_LINE_BYTES};
use crate::shape::{for_each_point, pad_dims, sort_in_memory_order, Dims, MAX_NDIM};
use crate::sink::{transpose_into, transpose_pays, Sink};
use crate::threads;

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
        Self::from_slice_axis_first(data, shape, 0)
    }

    /// A buffer of the given shape laid out with `first_axis` fastest, then the other
    /// axes in ascending order.
    pub fn from_slice_axis_first(data: &'a [T], shape: &Dims, first_axis: usize) -> Self {
        assert_eq!(data.len(), shape.iter().product::<usize>());
        let others = (0..MAX_NDIM).filter(|&a| a != first_axis);
        Source {
            ptr: data.as_ptr(),
            shape: *shape,
            strides: packed_strides(shape, std::iter::once(first_axis).chain(others)),
            _borrow: PhantomData,
        }
    }

    /// The sub-array `origin .. origin + shape` (which must lie inside this one).
    pub fn region(&self, origin: &Dims, shape: &Dims) -> Self {
        let mut offset = 0isize;
        for axis in 0..MAX_NDIM {
            assert!(origin[axis] + shape[axis] <= self.shape[axis]);
            offset += self.offset_of(axis, origin[axis]);
        }
        Source {
            // SAFETY: `offset` is the offset of the in-bounds element at `origin`
            // (asserted above), so the pointer stays inside the borrowed array.
            ptr: unsafe { self.ptr.offset(offset) },
            shape: *shape,
            strides: self.strides,
            _borrow: PhantomData,
        }
    }

    pub fn stride(&self, axis: usize) -> isize {
        self.strides[axis]
    }

    pub fn strides(&self) -> &[isize; MAX_NDIM] {
        &self.strides
    }

    /// The address of the element at `offset`, for prefetching: never read through.
    pub fn address_of(&self, offset: isize) -> *const T {
        self.ptr.wrapping_offset(offset)
    }

    pub fn fastest_axis(&self) -> usize {
        crate::shape::fastest_axis(&self.shape, &self.strides)
    }

    /// The `len` elements along `axis` that start at `offset` (a sum of `offset_of`
    /// terms of in-bounds coordinates, the coordinate on `axis` being 0), as a slice
    /// when they are contiguous; otherwise copied into `gathered`, which is returned.
    pub fn line<'b>(&self, offset: isize, axis: usize, len: usize, gathered: &'b mut Vec<T>) -> &'b [T]
    where
        'a: 'b,
    {
        assert!(len <= self.shape[axis]);
        let stride = self.strides[axis];
        if stride == 1 || len <= 1 {
            // SAFETY: elements offset + 0..len along a stride-1 axis (or a single
            // element) are in bounds of the borrowed array, as the offset names an
            // in-bounds element whose coordinate on `axis` is 0 and len <= shape[axis].
            return unsafe { std::slice::from_raw_parts(self.ptr.offset(offset), len) };
        }
        gathered.clear();
        gathered.extend((0..len).map(|i| self.read(offset + i as isize * stride)));
        gathered
    }

    /// Every `step`-th of the elements along `axis` from coordinate `first` of the line at
    /// `offset` (as for `line`), as many as `out` holds, copied into `out`: from one
    /// contiguous slice when the axis has stride 1, so the copy vectorises.
    pub fn gather_every(&self, offset: isize, axis: usize, first: usize, step: usize, out: &mut [T]) {
        let len = out.len();
        if len == 0 {
            return;
        }
        assert!(step >= 1 && first + (len - 1) * step < self.shape[axis]);
        let stride = self.strides[axis];
        let offset = offset + self.offset_of(axis, first);
        if stride == 1 {
            let span_len = (len - 1) * step + 1;
            // SAFETY: elements offset + 0..span_len along a stride-1 axis are in bounds:
            // the line's offset names an in-bounds element whose coordinate on `axis` is
            // 0, and first + span_len <= shape[axis] (asserted above).
            let span = unsafe { std::slice::from_raw_parts(self.ptr.offset(offset), span_len) };
            match step {
                1 => out.copy_from_slice(span),
                2 => every_other(span, out),
                _ => {
                    for (slot, chunk) in out.iter_mut().zip(span.chunks(step)) {
                        *slot = chunk[0];
                    }
                }
            }
        } else {
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = self.read(offset + (i * step) as isize * stride);
            }
        }
    }

    /// Copies the region `origin .. origin + shape` (inside this array) into `buffer`
    /// (grown to hold it, never shrunk) with axis 0 fastest, and returns the copy. After
    /// axis 0 come the region's densest other axis, then the rest in memory order. The
    /// copy reads a few rows of axis 0 at a time along all the rest of the region, so
    /// that each input line is read whole, in address order, and once; each plane of
    /// those rows and the densest axis is transposed in registers where that pays
    /// (`transpose_pays`). Read a plane at a time instead, the lines of a C-order
    /// volume's rows, a power of two apart, evicted each other before their second
    /// value was read.
    pub fn staged<'b>(&self, origin: &Dims, shape: &Dims, buffer: &'b mut Vec<T>) -> Source<'b, T> {
        let region = self.region(origin, shape);
        let dense = (1..MAX_NDIM)
            .filter(|&a| shape[a] > 1)
            .min_by_key(|&a| region.strides[a].unsigned_abs())
            .unwrap_or(1);
        let mut rest: Vec<usize> = (1..MAX_NDIM).filter(|&a| a != dense).collect();
        sort_in_memory_order(&mut rest, shape, &region.strides);
        let strides = packed_strides(shape, [0, dense].into_iter().chain(rest.iter().copied()));
        let len = shape.iter().product();
        if buffer.len() < len {
            buffer.resize(len, region.read(0));
        }
        let (rows, cols) = (shape[0], shape[dense]);
        let unit_stride = region.strides[dense] == 1;
        let in_registers = unit_stride && transpose_pays::<T>();
        // Copied element by element, a tile reads its rows side by side, and rows a
        // power of two apart share one set of the first-level cache: fewer of them
        // than it has ways.
        let tile_height = if in_registers { STAGED_ROWS } else { STAGED_ROWS / 2 };
        let (row_stride, dense_stride) = (region.strides[0], region.strides[dense]);
        for first_row in (0..rows).step_by(tile_height) {
            let tile_rows = tile_height.min(rows - first_row);
            let ahead = first_row + tile_height * STAGED_TILES_AHEAD;
            for_each_point(&rest, shape, |point| {
                let from: isize = rest.iter().map(|&a| region.offset_of(a, point[a])).sum();
                let to: usize = rest.iter().map(|&a| point[a] * strides[a] as usize).sum();
                let line = |r: usize| from + (first_row + r) as isize * row_stride;
                if unit_stride {
                    for r in ahead..rows.min(ahead + tile_height) {
                        prefetch_run(region.address_of(from + r as isize * row_stride), cols);
                    }
                }
                let tile = &mut buffer[to + first_row..];
                if in_registers {
                    let row = |r| region.contiguous_line(line(r), dense, cols);
                    transpose_into(tile_rows, cols, row, tile, rows);
                } else if unit_stride {
                    let mut lines: [&[T]; STAGED_ROWS] = [&[]; STAGED_ROWS];
                    for (r, slot) in lines[..tile_rows].iter_mut().enumerate() {
                        *slot = region.contiguous_line(line(r), dense, cols);
                    }
                    for (c, column) in tile.chunks_mut(rows).take(cols).enumerate() {
                        for (slot, line) in column.iter_mut().zip(&lines[..tile_rows]) {
                            *slot = line[c];
                        }
                    }
                } else {
                    for (c, column) in tile.chunks_mut(rows).take(cols).enumerate() {
                        let at = c as isize * dense_stride;
                        for (r, slot) in column[..tile_rows].iter_mut().enumerate() {
                            *slot = region.read(line(r) + at);
                        }
                    }
                }
            });
        }
        Source {
            ptr: buffer.as_ptr(),
            shape: *shape,
            strides,
            _borrow: PhantomData,
        }
    }

    /// The first `len` elements of the line along `axis` (of stride 1) at `offset`, which
    /// names an in-bounds element whose coordinate on `axis` is 0.
    fn contiguous_line(&self, offset: isize, axis: usize, len: usize) -> &'a [T] {
        assert!(self.strides[axis] == 1 && len <= self.shape[axis]);
        // SAFETY: `len` consecutive elements along a stride-1 axis from an in-bounds
        // element that leaves room for them (the caller's offset) lie inside the borrowed
        // array.
        unsafe { std::slice::from_raw_parts(self.ptr.offset(offset), len) }
    }

    #[inline(always)]
    pub fn offset_of(&self, axis: usize, coordinate: usize) -> isize {
        coordinate as isize * self.strides[axis]
    }

    /// The first `len` elements of the axis-0 row at `row_offset` as a slice, when axis 0
    /// is contiguous.
    #[inline(always)]
    fn contiguous_row(&self, row_offset: isize, len: usize) -> Option<&'a [T]> {
        if self.strides[0] != 1 && self.shape[0] > 1 {
            return None;
        }
        assert!(len <= self.shape[0]);
        // SAFETY: axis 0 has stride 1 (or a single element), so elements
        // row_offset + 0..len are `len` consecutive in-bounds elements of one row of the
        // borrowed array (row_offset is built from in-bounds coordinates on the other axes).
        Some(unsafe { std::slice::from_raw_parts(self.ptr.offset(row_offset), len) })
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

/// The strides of a buffer holding every element of `shape` once, the axes of `order`
/// (each axis once) from fastest to slowest.
fn packed_strides(shape: &Dims, order: impl IntoIterator<Item = usize>) -> [isize; MAX_NDIM] {
    let mut strides = [0isize; MAX_NDIM];
    let mut step = 1isize;
    for axis in order {
        strides[axis] = step;
        step *= shape[axis] as isize;
    }
    strides
}

/// How windows past the end of an axis are filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Edge {
    /// Coordinates past the end are dropped: the window shrinks.
    Clip,
    /// Coordinates past the end read the last element, which is pushed once with the
    /// weight of its copies, so a sum over a padded window is an exact power-of-two
    /// multiple of the sum without the padding (floats included): what makes edge
    /// chunks exact. (The factor-2 families, where tinybrain pads, run in
    /// [`crate::cascade`], which weighs its edge blocks the same way.)
    ReplicateWeighted,
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
///
/// The state of one window lives in a `Lane`; the engine keeps one lane per voxel of an
/// output row and feeds whole input rows to them, so the input is read in address order
/// and the inner loop over a row is free to vectorise across lanes.
pub(crate) trait Reducer<S: Copy>: Clone + Send + Sync {
    type Lane: Default + Clone + Send;
    type Output: Send;
    /// The state of a window before its first value.
    #[inline(always)]
    fn new_lane(&self) -> Self::Lane {
        Self::Lane::default()
    }
    fn push(&self, lane: &mut Self::Lane, value: S);
    /// Pushes a value that stands for `weight` copies of itself (replicate padding of
    /// weighted windows). By default it is pushed that many times.
    #[inline(always)]
    fn push_weighted(&self, lane: &mut Self::Lane, value: S, weight: u32) {
        for _ in 0..weight {
            self.push(lane, value);
        }
    }
    /// Returns the result of the window and leaves the lane ready for the next one.
    fn finish(&self, lane: &mut Self::Lane) -> Self::Output;
}

/// Rows of axis 0 `Source::staged` copies at a time: a whole block of the byte
/// transpose, and two cache lines of u64 values in the copy.
const STAGED_ROWS: usize = 16;

/// How many such tiles ahead `Source::staged` asks for the input.
const STAGED_TILES_AHEAD: usize = 2;

/// Output elements per parallel task, so small mips are not split into useless tasks.
const MIN_ELEMENTS_PER_TASK: usize = 1 << 15;

/// Computes one level: `out[o] = reduce(window(o))` for every output voxel `o`, with `out`
/// Fortran-ordered of shape `window.output_shape(src.shape)`.
pub(crate) fn reduce_level<S, R>(src: Source<'_, S>, window: &Window, reducer: R, out: &mut [R::Output])
where
    S: Copy + Send + Sync,
    R: Reducer<S>,
    R::Output: Clone + Default,
{
    reduce_level_rendered(src, window, reducer, None::<&mut [()]>, |_| (), out, |v| v.clone());
}

/// One level in one pass: each window's result `v` is rendered as `render(&v)` into
/// `rendered` and, when `state` is given, kept as `keep(&v)` for the next level, so no
/// separate pass (and no state at all for a pyramid's last mip) is needed.
pub(crate) fn reduce_level_rendered<S, R, K, T>(
    src: Source<'_, S>,
    window: &Window,
    reducer: R,
    state: Option<&mut [K]>,
    keep: impl Fn(&R::Output) -> K + Sync,
    rendered: &mut [T],
    render: impl Fn(&R::Output) -> T + Sync,
) where
    S: Copy + Send + Sync,
    R: Reducer<S>,
    R::Output: Clone + Default,
    K: Clone + Default + Send,
    T: Clone + Default + Send,
{
    let out_shape = window.output_shape(&src.shape);
    let process = |job: &RowJob<'_, '_, S, R, _, _>,
                   scratch: &mut RowScratch<R::Lane, R::Output>,
                   first: usize,
                   out: &mut [T],
                   kept: Option<&mut [K]>| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { process_rows_avx2(job, scratch, first, out, kept) };
        }
        process_rows(job, scratch, first, out, kept)
    };
    if let Some(slabs) = Slabs::plan(&src, window, &out_shape) {
        slabs.run(
            &src,
            window,
            &out_shape,
            rendered,
            state,
            RowScratch::default,
            |scratch, slab, out, kept| {
                let job = RowJob {
                    src: &slab.src,
                    window,
                    out_shape: &slab.out_shape,
                    reducer: &reducer,
                    keep: &keep,
                    render: &render,
                };
                process(&job, scratch, 0, out, kept)
            },
        );
        return;
    }
    let chunk_len = elements_per_task(&out_shape, rendered.len());
    let rows = RowJob {
        src: &src,
        window,
        out_shape: &out_shape,
        reducer: &reducer,
        keep: &keep,
        render: &render,
    };
    match state {
        Some(state) => {
            assert_eq!(state.len(), rendered.len());
            let tasks: Vec<_> = rendered
                .chunks_mut(chunk_len)
                .zip(state.chunks_mut(chunk_len))
                .enumerate()
                .collect();
            threads::for_each_init(tasks, RowScratch::default, |scratch, (task, (out, kept))| {
                process(&rows, scratch, task * chunk_len, out, Some(kept))
            });
        }
        None => {
            let tasks: Vec<_> = rendered.chunks_mut(chunk_len).enumerate().collect();
            threads::for_each_init(tasks, RowScratch::default, |scratch, (task, out)| {
                process(&rows, scratch, task * chunk_len, out, None)
            });
        }
    }
}

/// Computes one level like `reduce_level`, for reductions that need all the values of a
/// window at once (the mode): each window, clipped at the edges, is handed to `reduce`
/// as the pieces of the input rows it covers, with a buffer to gather them into if it
/// must. An output row's windows are taken in order, so the input rows under it are
/// read side by side, each in address order, and a reduction that decides from a first
/// look (one label filling half the window) copies nothing. Where windows do not
/// overlap, each output row's (or chunk's) whole windows are first offered to
/// `reduce_run`, several at once (see `WindowRun`); `reduce` takes the rest.
pub(crate) fn reduce_windows<S, T>(
    src: Source<'_, S>,
    window: &Window,
    out: &mut [T],
    reduce: impl Fn(&WindowRows<'_, S>, &mut Vec<S>) -> T + Sync,
    reduce_run: impl Fn(&WindowRun<'_, S>, &mut [T]) -> usize + Sync,
) where
    S: Copy + Send + Sync,
    T: Clone + Default + Send,
{
    assert_eq!(window.edge, Edge::Clip, "gathered windows are clipped, never padded");
    let out_shape = window.output_shape(&src.shape);
    let process = |job: &WindowJob<'_, '_, S, T, _>, scratch: &mut WindowScratch<S>, first: usize, out: &mut [T]| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { gather_and_reduce_rows_avx2(job, first, out, scratch) };
        }
        gather_and_reduce_rows(job, first, out, scratch)
    };
    if let Some(slabs) = Slabs::plan(&src, window, &out_shape) {
        let no_state = None::<&mut [()]>;
        slabs.run(
            &src,
            window,
            &out_shape,
            out,
            no_state,
            WindowScratch::default,
            |scratch, slab, out, _| {
                let job = WindowJob {
                    src: &slab.src,
                    window,
                    out_shape: &slab.out_shape,
                    reduce: &reduce,
                    reduce_run: &reduce_run,
                };
                process(&job, scratch, 0, out)
            },
        );
        return;
    }
    let chunk_len = elements_per_task(&out_shape, out.len());
    let job = WindowJob {
        src: &src,
        window,
        out_shape: &out_shape,
        reduce: &reduce,
        reduce_run: &reduce_run,
    };
    let tasks: Vec<_> = out.chunks_mut(chunk_len).enumerate().collect();
    threads::for_each_init(tasks, WindowScratch::default, |scratch, (task, out)| {
        process(&job, scratch, task * chunk_len, out)
    });
}

/// Input a slab holds, at most (unless one output coordinate needs more): a few
/// hundred KiB, so that it stays in the second-level cache while its rows are reduced.
const SLAB_BYTES: usize = 1 << 19;

/// How a level whose input rows (axis 0) are not contiguous is computed: a slab of
/// output coordinates along `axis` at a time, from a copy of the input under it with
/// axis 0 contiguous (`Source::staged`). Read where they lie, such rows cost a cache
/// line per value: in a C-order volume, axis 0 is the one farthest apart in memory and
/// the output rows that share those lines come a plane of rows later (exact 3x3x3 mode
/// of C-order 512x512x64 u64 labels took 146 ms against 17 in Fortran order). The
/// copy reads the input along its lines; each window then sees the same values in the
/// same order as without it, so results do not change.
#[derive(Clone, Copy)]
struct Slabs {
    /// The output axis the slabs split: the one farthest apart in the input.
    axis: usize,
    /// Output coordinates along `axis` per slab.
    width: usize,
}

/// One slab's input, staged, and the shape of its output.
struct Slab<'b, S> {
    src: Source<'b, S>,
    out_shape: Dims,
}

impl Slabs {
    /// Slabs for a level from `src`, if its rows are not contiguous and there are
    /// output rows to split.
    fn plan<S: Copy>(src: &Source<'_, S>, window: &Window, out_shape: &Dims) -> Option<Slabs> {
        if src.stride(0) == 1 || src.shape[0] == 1 {
            return None;
        }
        let axis = (1..MAX_NDIM)
            .filter(|&a| out_shape[a] > 1)
            .max_by_key(|&a| src.stride(a).unsigned_abs())?;
        let others: usize = (0..MAX_NDIM).filter(|&a| a != axis).map(|a| src.shape[a]).product();
        let slab_bytes = others * window.step[axis] * size_of::<S>();
        let by_size = (SLAB_BYTES / slab_bytes.max(1)).max(1);
        let by_balance = out_shape[axis].div_ceil(threads::current_threads() * 4);
        Some(Slabs {
            axis,
            width: by_size.min(by_balance).max(1),
        })
    }

    /// Computes the level into `out` (Fortran-ordered, of `out_shape`), and `state` when
    /// given: `level` fills one slab's output (Fortran-ordered, of the slab's output
    /// shape) from the slab's input, with a state from `init` per thread.
    #[allow(clippy::too_many_arguments)]
    fn run<S, T, K, Scratch>(
        &self,
        src: &Source<'_, S>,
        window: &Window,
        out_shape: &Dims,
        out: &mut [T],
        state: Option<&mut [K]>,
        init: impl Fn() -> Scratch + Sync + Send,
        level: impl Fn(&mut Scratch, &Slab<'_, S>, &mut [T], Option<&mut [K]>) + Sync + Send,
    ) where
        S: Copy + Send + Sync,
        T: Clone + Default + Send,
        K: Clone + Default + Send,
    {
        let Slabs { axis, width } = *self;
        let mut kept = state.map(|state| self.pieces(out_shape, state).into_iter());
        let tasks: Vec<_> = (self.pieces(out_shape, out).into_iter())
            .map(|pieces| (pieces, kept.as_mut().and_then(Iterator::next)))
            .enumerate()
            .collect();
        let init = || (init(), Vec::new(), Vec::new(), Vec::new());
        threads::for_each_init(
            tasks,
            init,
            |(scratch, staged, out, kept), (slab, (mut pieces, kept_pieces))| {
                let first = slab * width;
                let last = (first + width).min(out_shape[axis]);
                let (mut origin, mut shape) = ([0; MAX_NDIM], src.shape);
                origin[axis] = first * window.step[axis];
                let end = ((last - 1) * window.step[axis] + window.extent[axis]).min(src.shape[axis]);
                shape[axis] = end - origin[axis];
                let mut slab_shape = *out_shape;
                slab_shape[axis] = last - first;
                let len = slab_shape.iter().product();
                let slab = Slab {
                    src: src.staged(&origin, &shape, staged),
                    out_shape: slab_shape,
                };
                out.resize(len, T::default());
                let kept = kept_pieces.map(|pieces| {
                    kept.resize(len, K::default());
                    (&mut kept[..len], pieces)
                });
                match kept {
                    Some((kept, mut kept_pieces)) => {
                        level(scratch, &slab, out, Some(&mut *kept));
                        scatter(kept, &mut kept_pieces);
                    }
                    None => level(scratch, &slab, out, None),
                }
                scatter(out, &mut pieces);
            },
        );
    }

    /// `out` (Fortran-ordered, of `out_shape`) cut into the parts of each slab: one
    /// contiguous piece per point of the axes after `axis`.
    fn pieces<'o, T>(&self, out_shape: &Dims, out: &'o mut [T]) -> Vec<Vec<&'o mut [T]>> {
        let inner: usize = out_shape[..self.axis].iter().product();
        let slabs = out_shape[self.axis].div_ceil(self.width);
        let mut pieces: Vec<Vec<&mut [T]>> = (0..slabs).map(|_| Vec::new()).collect();
        for block in out.chunks_mut(inner * out_shape[self.axis]) {
            for (slab, piece) in pieces.iter_mut().zip(block.chunks_mut(inner * self.width)) {
                slab.push(piece);
            }
        }
        pieces
    }
}

/// Copies a slab's output (Fortran-ordered) into its pieces, in order.
fn scatter<T: Clone>(slab_out: &[T], pieces: &mut [&mut [T]]) {
    let mut rest = slab_out;
    for piece in pieces.iter_mut() {
        let (head, tail) = rest.split_at(piece.len());
        piece.clone_from_slice(head);
        rest = tail;
    }
}

/// What every output row of one level of `reduce_windows` needs.
struct WindowJob<'j, 'a, S, T, Reduce> {
    src: &'j Source<'a, S>,
    window: &'j Window,
    out_shape: &'j Dims,
    reduce: &'j Reduce,
    /// Takes a run of whole windows at once, if it can (see `WindowRun`); called once
    /// per output row or chunk.
    reduce_run: &'j (dyn Fn(&WindowRun<'_, S>, &mut [T]) -> usize + Sync),
}

/// Per-thread buffers of `reduce_windows`.
struct WindowScratch<S> {
    /// Offsets of the input rows under an output row, in scan order (axis 1 fastest).
    row_offsets: Vec<isize>,
    /// The same for the output row after it, read ahead into at the end of this one.
    next_row_offsets: Vec<isize>,
    expanded: Vec<isize>,
    axis_offsets: Vec<(isize, u32)>,
    /// Copies of input rows whose axis 0 is not contiguous.
    gathered_rows: Vec<Vec<S>>,
    /// Where a window's values are gathered when the reduction asks for them.
    window_values: Vec<S>,
    /// A chunk of every input row under an output row, copied side by side (see
    /// `reduce_row_in_chunks`).
    chunk: Vec<S>,
}

impl<S> Default for WindowScratch<S> {
    fn default() -> Self {
        WindowScratch {
            row_offsets: Vec::new(),
            next_row_offsets: Vec::new(),
            expanded: Vec::new(),
            axis_offsets: Vec::new(),
            gathered_rows: Vec::new(),
            window_values: Vec::new(),
            chunk: Vec::new(),
        }
    }
}

/// The offsets of the input rows under output row `out_row` (its coordinates on axes
/// 1.. in `out_shape`), in scan order, into `offsets`.
fn window_row_offsets<S: Copy>(
    src: &Source<'_, S>,
    window: &Window,
    out_shape: &Dims,
    out_row: usize,
    offsets: &mut Vec<isize>,
    expanded: &mut Vec<isize>,
    axis_offsets: &mut Vec<(isize, u32)>,
) {
    let mut rest = out_row;
    offsets.clear();
    offsets.push(0);
    for axis in 1..MAX_NDIM {
        let coordinate = rest % out_shape[axis];
        rest /= out_shape[axis];
        axis_window_offsets(src, window, axis, coordinate, axis_offsets);
        // Every offset so far, once per coordinate on this (slower) axis.
        expanded.clear();
        for &(offset, _) in axis_offsets.iter() {
            expanded.extend(offsets.iter().map(|&o| o + offset));
        }
        std::mem::swap(offsets, expanded);
    }
}

/// The output rows of one task of `reduce_windows` (`out` starts at output element `first`).
#[inline(always)]
fn gather_and_reduce_rows<S: Copy, T>(
    job: &WindowJob<'_, '_, S, T, impl Fn(&WindowRows<'_, S>, &mut Vec<S>) -> T>,
    first: usize,
    out: &mut [T],
    scratch: &mut WindowScratch<S>,
) {
    let WindowJob {
        src,
        window,
        out_shape,
        reduce,
        reduce_run: _,
    } = *job;
    let row_len = out_shape[0];
    let (step, extent, size) = (window.step[0], window.extent[0], src.shape[0]);
    let ahead = WINDOW_PREFETCH_BYTES / size_of::<S>().max(1);
    let first_row = first / row_len;
    let task_rows = out.len() / row_len;
    let WindowScratch {
        row_offsets,
        next_row_offsets,
        expanded,
        axis_offsets,
        gathered_rows,
        window_values,
        chunk,
    } = scratch;
    // Only rows that are read in place can be read ahead into from their offsets.
    let rows_in_place = src.stride(0) == 1;
    window_row_offsets(src, window, out_shape, first_row, row_offsets, expanded, axis_offsets);
    for (r, out_row) in out.chunks_mut(row_len).enumerate() {
        next_row_offsets.clear();
        if r + 1 < task_rows {
            let next = first_row + r + 1;
            window_row_offsets(src, window, out_shape, next, next_row_offsets, expanded, axis_offsets);
        }
        let row_count = row_offsets.len();
        if gathered_rows.len() < row_count {
            gathered_rows.resize_with(row_count, Vec::new);
        }
        let rows: Vec<&[S]> = row_offsets
            .iter()
            .zip(gathered_rows.iter_mut())
            .map(|(&offset, gathered)| src.line(offset, 0, size, gathered))
            .collect();
        if row_count <= MAX_CHUNKED_ROWS && most_rows_in_one_cache_set(&rows) >= ROWS_IN_ONE_SET_TO_CHUNK {
            let next_rows = rows_in_place.then_some(&next_row_offsets[..]);
            reduce_row_in_chunks(job, &rows, next_rows, out_row, chunk, window_values);
            std::mem::swap(row_offsets, next_row_offsets);
            continue;
        }
        let next_rows: &[isize] = if rows_in_place { next_row_offsets } else { &[] };
        let whole = reduce_whole_windows(job, &rows, Some((ahead, next_rows)), out_row);
        for (x, result) in out_row.iter_mut().enumerate().skip(whole) {
            let start = x * step;
            // The rows are read side by side, which no hardware prefetcher follows into
            // L1: ask for each row's line a little ahead, and near a row's end for the
            // head of the next output row's rows, which otherwise all begin with a wait
            // on memory (exact 3x3x3 mode of 16.8 M u64 labels took 30 ms in rows of 1
            // KiB and 16 ms in rows of 32 KiB; now 17 ms and 15 ms).
            read_rows_ahead(&rows, src, next_rows, start + ahead, 1);
            let window = WindowRows {
                rows: &rows,
                start,
                width: extent.min(size - start),
            };
            *result = reduce(&window, window_values);
        }
        std::mem::swap(row_offsets, next_row_offsets);
    }
}

/// How far ahead of a window its rows are read into cache.
const WINDOW_PREFETCH_BYTES: usize = 1024;

/// Rows that start a multiple of this apart share their first-level cache sets: 32 KiB
/// in 8 ways on AMD Zen 4, 48 KiB in 12 on Intel's recent cores.
const CACHE_WAY_BYTES: usize = 4096;

/// Windows whose rows put this many in one cache set are copied a chunk at a time.
/// Exact mode of 512x512x64 u64 labels (one thread, AMD Zen 4, builds alternated),
/// where all the rows of a window share one set: 4x4x4 (16 rows) 16.1 -> 11.3-11.5 ms,
/// 4x4x8 32.5 -> 14.6-14.7, 2x2x8 26.5 -> 22.0-22.1, sparse 4x4x4 19.7 -> 16.9. Copied
/// whatever the rows (a switch in a trial build): 12 rows in one set (4x4x3, 3x3x4)
/// within 8% either way, 9 (3x3x3) 1.33x slower, 4x4x4 of u32 labels (8 rows per set)
/// 1.33x slower, of u64 labels 500 wide (no two rows in one set) 1.48x slower.
const ROWS_IN_ONE_SET_TO_CHUNK: usize = 16;

/// Chunks are handed to the reduction as slices on the stack, at most this many.
const MAX_CHUNKED_ROWS: usize = 64;

/// Bytes of each row in one chunk (4x4x4 u64 windows: 12 of them). At 256 bytes
/// (a 4 KiB chunk for 16 rows), exact 4x4x4 mode of the bench's realistic labels on Zen 5
/// (one thread) ran at one of two speeds, about 9 or 14 ms per call, flipping between
/// them within one process, its addresses unchanged, after a fraction of a second or
/// after tens of seconds, for minutes at a time and then not at all; the cause was not
/// found. Where 256 took the slow speed in 26 of 39, 18 of 53 and 16 of 52 periods of
/// five calls (three stretches, the sizes alternated period by period in one process),
/// 384 took it in 0 of 105 periods and 512 in 2 of 144 (1 and 2 KiB in 0 of 39, but
/// 1.17x and 1.36x slower throughout). Outside those stretches, 384 against 256,
/// medians over 12-15 s: one thread, 4x4x4 realistic 1.02-1.04x as fast, random 1.00x,
/// sparse 1.02x, 2x2x8 1.02x, 4x4x8 0.98x; two threads 1.00x, 0.99x, 0.98x (4x4x4,
/// sparse, 4x4x8).
const CHUNK_BYTES: usize = 384;

/// The largest number of `rows` whose first values share a first-level cache set.
fn most_rows_in_one_cache_set<S>(rows: &[&[S]]) -> usize {
    let mut per_set = [0usize; CACHE_WAY_BYTES / CACHE_LINE_BYTES];
    for row in rows {
        per_set[row.as_ptr() as usize % CACHE_WAY_BYTES / CACHE_LINE_BYTES] += 1;
    }
    per_set.into_iter().max().unwrap_or(0)
}

/// The windows of one output row, with a chunk of every input row copied side by side
/// before the windows in it are reduced. Read where they are, rows that share a cache
/// set evict each other's lines between the window that loads a line and the next one,
/// which needs it again: a 4x4x4 window of u64 labels 512 wide reads its 16 rows from
/// one set of eight ways. In the copy each row's chunk is read once, whole, and the
/// windows then find their rows in cache.
#[inline(always)]
fn reduce_row_in_chunks<S: Copy, T>(
    job: &WindowJob<'_, '_, S, T, impl Fn(&WindowRows<'_, S>, &mut Vec<S>) -> T>,
    rows: &[&[S]],
    next_rows: Option<&[isize]>,
    out_row: &mut [T],
    chunk: &mut Vec<S>,
    window_values: &mut Vec<S>,
) {
    let (src, reduce) = (job.src, job.reduce);
    let (step, extent, size) = (job.window.step[0], job.window.extent[0], job.src.shape[0]);
    let ahead = WINDOW_PREFETCH_BYTES / size_of::<S>().max(1);
    let windows_per_chunk = (CHUNK_BYTES / (step * size_of::<S>()).max(1)).max(1);
    let chunk_len = windows_per_chunk * step;
    let Some(&first_row) = rows.first() else {
        return;
    };
    if chunk.len() < rows.len() * chunk_len {
        chunk.resize(rows.len() * chunk_len, first_row[0]);
    }
    for (chunk_index, out_chunk) in out_row.chunks_mut(windows_per_chunk).enumerate() {
        let from = chunk_index * chunk_len;
        let len = (out_chunk.len() * step).min(size - from);
        let position = from + ahead;
        for (r, row) in rows.iter().enumerate() {
            if position < size {
                prefetch(row.as_ptr().wrapping_add(position), len);
            } else if let Some(&next) = next_rows.and_then(|next| next.get(r)) {
                prefetch(src.address_of(next).wrapping_add(position - size), len);
            }
            copy_inline(&mut chunk[r * chunk_len..r * chunk_len + len], &row[from..from + len]);
        }
        let mut chunk_rows: [&[S]; MAX_CHUNKED_ROWS] = [&[]; MAX_CHUNKED_ROWS];
        for (r, chunk_row) in chunk_rows[..rows.len()].iter_mut().enumerate() {
            *chunk_row = &chunk[r * chunk_len..r * chunk_len + len];
        }
        let whole = reduce_whole_windows(job, &chunk_rows[..rows.len()], None, out_chunk);
        for (x, result) in out_chunk.iter_mut().enumerate().skip(whole) {
            let start = x * step;
            let window = WindowRows {
                rows: &chunk_rows[..rows.len()],
                start,
                width: extent.min(len - start),
            };
            *result = reduce(&window, window_values);
        }
    }
}

/// `dst.copy_from_slice(src)` in pieces of 32 bytes, which compile to vector moves in
/// line. A copy of a length known only at run time is a call to memmove: 16% of exact
/// 4x4x4 mode of realistic u64 labels in perf, for chunk rows of 384 bytes. Against
/// it, alternated call by call in one process (Zen 5, 512x512x64 labels, preallocated
/// outputs; one thread / two): 4x4x4 realistic 1.11-1.12x / 1.15-1.19x as fast, sparse
/// 1.08-1.09x / 1.09-1.15x, 4x4x8 1.08-1.09x / 1.08-1.10x, 2x2x8 1.08x / 1.06x, 4x4x4
/// of random labels 1.02-1.03x; 3x3x3 (not chunked) and 2x2x2 mode unchanged.
#[inline(always)]
fn copy_inline<S: Copy>(dst: &mut [S], src: &[S]) {
    assert_eq!(dst.len(), src.len());
    let piece = (32 / size_of::<S>().max(1)).max(1);
    let (mut dst_pieces, mut src_pieces) = (dst.chunks_exact_mut(piece), src.chunks_exact(piece));
    for (to, from) in (&mut dst_pieces).zip(&mut src_pieces) {
        to.copy_from_slice(from);
    }
    for (to, from) in dst_pieces.into_remainder().iter_mut().zip(src_pieces.remainder()) {
        *to = *from;
    }
}

/// Hands the whole windows of `rows` to the job's `reduce_run`, when windows do not
/// overlap, and returns how many it reduced (into the first results of `out`). The
/// rows are read ahead by `ahead` values, past their ends into the next rows, if given.
#[inline(always)]
fn reduce_whole_windows<S: Copy, T>(
    job: &WindowJob<'_, '_, S, T, impl Fn(&WindowRows<'_, S>, &mut Vec<S>) -> T>,
    rows: &[&[S]],
    ahead: Option<(usize, &[isize])>,
    out: &mut [T],
) -> usize {
    let (step, extent) = (job.window.step[0], job.window.extent[0]);
    let Some(first_row) = rows.first() else {
        return 0;
    };
    if step != extent || step == 0 {
        return 0;
    }
    let run = WindowRun {
        rows,
        width: step,
        windows: first_row.len() / step,
        ahead: ahead.map(|(values, next_rows)| (values, job.src, next_rows)),
    };
    (job.reduce_run)(&run, out)
}

/// Windows side by side along an output row, for a reduction that takes several at
/// once: window x covers values `x * width .. (x + 1) * width` of each row (rows in
/// scan order), whole for x < `windows`. The reduction writes the results of the
/// leading windows it takes and returns how many; the caller reduces the rest one by
/// one.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct WindowRun<'r, S> {
    pub rows: &'r [&'r [S]],
    pub width: usize,
    /// Whole windows in the rows.
    pub windows: usize,
    /// Values read ahead, the input, and the next output row's rows (empty if they
    /// are not read in place): what `read_ahead` needs, if the caller reads ahead.
    ahead: Option<(usize, &'r Source<'r, S>, &'r [isize])>,
}

impl<'r, S: Copy> WindowRun<'r, S> {
    /// `windows` whole windows of `width` values in each of `rows`, not read ahead.
    #[cfg(test)]
    pub fn new(rows: &'r [&'r [S]], width: usize, windows: usize) -> Self {
        assert!(rows.iter().all(|row| row.len() >= windows * width));
        WindowRun {
            rows,
            width,
            windows,
            ahead: None,
        }
    }

    /// Asks for `len` values of every row ahead of `position`, or past a row's end, of
    /// the next output row's rows (as the window loop of `reduce_windows` does).
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub fn read_ahead(&self, position: usize, len: usize) {
        if let Some((ahead, src, next_rows)) = self.ahead {
            read_rows_ahead(self.rows, src, next_rows, position + ahead, len);
        }
    }
}

/// Asks for `len` values at `position` of every one of `rows` (rows of the input, all
/// as long), or where that lies past their end, of the rows at `next_rows` (offsets
/// into `src`; empty when they are not read in place).
#[inline(always)]
fn read_rows_ahead<S: Copy>(rows: &[&[S]], src: &Source<'_, S>, next_rows: &[isize], position: usize, len: usize) {
    let size = rows.first().map_or(0, |row| row.len());
    if position < size {
        for row in rows {
            prefetch(row.as_ptr().wrapping_add(position), len);
        }
    } else {
        for &offset in next_rows {
            prefetch(src.address_of(offset).wrapping_add(position - size), len);
        }
    }
}

/// One window of `reduce_windows`: values `start .. start + width` of each row, the
/// rows in scan order.
pub(crate) struct WindowRows<'r, S> {
    rows: &'r [&'r [S]],
    start: usize,
    width: usize,
}

impl<'r, S: Copy> WindowRows<'r, S> {
    /// Values `start .. start + width` of each row; every row must hold them.
    #[cfg(test)]
    pub fn new(rows: &'r [&'r [S]], start: usize, width: usize) -> Self {
        assert!(width > 0 && rows.iter().all(|row| row.len() >= start + width));
        WindowRows { rows, start, width }
    }

    pub fn len(&self) -> usize {
        self.rows.len() * self.width
    }

    pub fn first(&self) -> S {
        self.rows[0][self.start]
    }

    /// How many values satisfy `matches`.
    #[inline(always)]
    pub fn count(&self, matches: impl Fn(S) -> bool) -> usize {
        // Fixed widths for the usual factors, so each piece is a few compares.
        match self.width {
            2 => self.count_pieces::<2>(matches),
            3 => self.count_pieces::<3>(matches),
            4 => self.count_pieces::<4>(matches),
            width => self
                .rows
                .iter()
                .map(|row| {
                    row[self.start..self.start + width]
                        .iter()
                        .filter(|&&v| matches(v))
                        .count()
                })
                .sum(),
        }
    }

    /// Counted per position across the rows, which vectorises across positions.
    #[inline(always)]
    fn count_pieces<const WIDTH: usize>(&self, matches: impl Fn(S) -> bool) -> usize {
        let mut counts = [0usize; WIDTH];
        for row in self.rows {
            let piece: &[S; WIDTH] = row[self.start..self.start + WIDTH].try_into().expect("WIDTH values");
            for (count, &v) in counts.iter_mut().zip(piece) {
                *count += usize::from(matches(v));
            }
        }
        counts.iter().sum()
    }

    /// The first value in scan order that satisfies `matches`.
    #[inline(always)]
    pub fn find(&self, matches: impl Fn(S) -> bool) -> Option<S> {
        self.rows
            .iter()
            .flat_map(|row| &row[self.start..self.start + self.width])
            .copied()
            .find(|&v| matches(v))
    }

    /// The values in scan order, copied into `buffer` (grown to hold them, never shrunk).
    #[inline(always)]
    pub fn gather<'b>(&self, buffer: &'b mut Vec<S>) -> &'b [S] {
        let len = self.len();
        if buffer.len() < len {
            buffer.resize(len, self.first());
        }
        let values = &mut buffer[..len];
        // Fixed widths for the usual factors: moves of a few values each, inlined. Out
        // of line, appending each row's piece with `Vec::extend_from_slice`, this was
        // 11% of exact 3x3x3 mode of random labels in perf, and exact 4x4x4 mode of
        // random u64 labels took 71-73 ms against 62 now.
        match self.width {
            2 => self.gather_pieces::<2>(values),
            3 => self.gather_pieces::<3>(values),
            4 => self.gather_pieces::<4>(values),
            width => {
                for (row, piece) in self.rows.iter().zip(values.chunks_exact_mut(width)) {
                    piece.copy_from_slice(&row[self.start..self.start + width]);
                }
            }
        }
        values
    }

    #[inline(always)]
    fn gather_pieces<const WIDTH: usize>(&self, values: &mut [S]) {
        for (row, piece) in self.rows.iter().zip(values.chunks_exact_mut(WIDTH)) {
            let from: &[S; WIDTH] = row[self.start..self.start + WIDTH].try_into().expect("WIDTH values");
            let to: &mut [S; WIDTH] = piece.try_into().expect("WIDTH values");
            *to = *from;
        }
    }
}

/// `gather_and_reduce_rows` compiled for AVX2, so the reduction's counting loops
/// vectorise; the same operations in the same order, so identical results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gather_and_reduce_rows_avx2<S: Copy, T>(
    job: &WindowJob<'_, '_, S, T, impl Fn(&WindowRows<'_, S>, &mut Vec<S>) -> T>,
    first: usize,
    out: &mut [T],
    scratch: &mut WindowScratch<S>,
) {
    gather_and_reduce_rows(job, first, out, scratch)
}

/// What every output row of one level needs, bundled for the row loop.
struct RowJob<'j, 'a, S, R, KeepFn, RenderFn> {
    src: &'j Source<'a, S>,
    window: &'j Window,
    out_shape: &'j Dims,
    reducer: &'j R,
    keep: &'j KeepFn,
    render: &'j RenderFn,
}

/// Reduces the rows of one parallel task (`out` starts at output element `first`),
/// rendering each result and keeping it in `kept` when given.
#[inline(always)]
fn process_rows<S, R, K, T, KeepFn, RenderFn>(
    job: &RowJob<'_, '_, S, R, KeepFn, RenderFn>,
    scratch: &mut RowScratch<R::Lane, R::Output>,
    first: usize,
    out: &mut [T],
    mut kept: Option<&mut [K]>,
) where
    S: Copy,
    R: Reducer<S>,
    R::Output: Clone + Default,
    KeepFn: Fn(&R::Output) -> K,
    RenderFn: Fn(&R::Output) -> T,
{
    let row_len = job.out_shape[0];
    let first_row = first / row_len;
    for (r, out_row) in out.chunks_mut(row_len).enumerate() {
        let mut outer = [0usize; MAX_NDIM];
        let mut rest = first_row + r;
        for axis in 1..MAX_NDIM {
            outer[axis] = rest % job.out_shape[axis];
            rest /= job.out_shape[axis];
        }
        reduce_row(job.src, job.window, &outer, job.reducer, scratch);
        for (o, v) in out_row.iter_mut().zip(&scratch.results) {
            *o = (job.render)(v);
        }
        if let Some(kept) = kept.as_deref_mut() {
            let kept_row = &mut kept[r * row_len..(r + 1) * row_len];
            for (k, v) in kept_row.iter_mut().zip(&scratch.results) {
                *k = (job.keep)(v);
            }
        }
    }
}

/// `process_rows` compiled for AVX2: the same operations in the same order per voxel
/// (so identical results), but the row loops vectorise across voxels, which baseline
/// x86-64 code does not do for byte pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn process_rows_avx2<S, R, K, T, KeepFn, RenderFn>(
    job: &RowJob<'_, '_, S, R, KeepFn, RenderFn>,
    scratch: &mut RowScratch<R::Lane, R::Output>,
    first: usize,
    out: &mut [T],
    kept: Option<&mut [K]>,
) where
    S: Copy,
    R: Reducer<S>,
    R::Output: Clone + Default,
    KeepFn: Fn(&R::Output) -> K,
    RenderFn: Fn(&R::Output) -> T,
{
    process_rows(job, scratch, first, out, kept)
}

/// Output elements per parallel task of a level whose `out_len` outputs have shape
/// `out_shape`: whole rows (axis 0), at least `MIN_ELEMENTS_PER_TASK`, and few enough
/// that every thread gets several tasks.
fn elements_per_task(out_shape: &Dims, out_len: usize) -> usize {
    assert_eq!(out_len, out_shape.iter().product::<usize>());
    let row_len = out_shape[0];
    let rows = out_len / row_len;
    let threads = threads::current_threads();
    let by_size = MIN_ELEMENTS_PER_TASK.div_ceil(row_len);
    let by_balance = rows.div_ceil(threads * 8);
    row_len * by_size.max(by_balance).clamp(1, rows.max(1))
}

/// Per-thread buffers: one lane and one result per output voxel of a row, and per-axis
/// offset lists.
struct RowScratch<L, V> {
    lanes: Vec<L>,
    results: Vec<V>,
    axis_offsets: [Vec<(isize, u32)>; MAX_NDIM],
}

impl<L, V> Default for RowScratch<L, V> {
    fn default() -> Self {
        RowScratch {
            lanes: Vec::new(),
            results: Vec::new(),
            axis_offsets: Default::default(),
        }
    }
}

/// The source coordinates (as offsets, with weights) that window position `origin`
/// covers on `axis`: past the end they are clamped and merged into the last real
/// coordinate's weight (ReplicateWeighted), or dropped (Clip).
fn axis_window_offsets<S: Copy>(
    src: &Source<'_, S>,
    window: &Window,
    axis: usize,
    origin: usize,
    list: &mut Vec<(isize, u32)>,
) {
    list.clear();
    let start = origin * window.step[axis];
    let size = src.shape[axis];
    for t in 0..window.extent[axis] {
        let c = start + t;
        if c < size {
            list.push((src.offset_of(axis, c), 1));
        } else {
            match window.edge {
                Edge::Clip => break,
                Edge::ReplicateWeighted => {
                    let last = list.last_mut().expect("a window starts inside its axis");
                    last.1 += 1;
                }
            }
        }
    }
}

/// One output row (all x for fixed outer coordinates) into `scratch.results`: walks the
/// input rows of the window in scan order and feeds each to the lanes.
#[inline(always)]
fn reduce_row<S, R>(
    src: &Source<'_, S>,
    window: &Window,
    outer: &Dims,
    reducer: &R,
    scratch: &mut RowScratch<R::Lane, R::Output>,
) where
    S: Copy,
    R: Reducer<S>,
    R::Output: Default + Clone,
{
    let RowScratch {
        lanes,
        results: out,
        axis_offsets,
    } = scratch;
    let row_len = window.output_shape(&src.shape)[0];
    lanes.resize(row_len, reducer.new_lane());
    out.resize(row_len, R::Output::default());
    for axis in 1..MAX_NDIM {
        axis_window_offsets(src, window, axis, outer[axis], &mut axis_offsets[axis]);
    }
    // Windows wholly inside axis 0 take the fast loop; the rest walk their coordinates.
    let (step0, extent0, size0) = (window.step[0], window.extent[0], src.shape[0]);
    let interior = if size0 >= extent0 {
        (size0 - extent0) / step0 + 1
    } else {
        0
    }
    .min(out.len());

    let mut index = [0usize; MAX_NDIM];
    loop {
        let (mut row_offset, mut row_weight) = (0isize, 1u32);
        for a in 1..MAX_NDIM {
            let (offset, weight) = axis_offsets[a][index[a]];
            row_offset += offset;
            row_weight *= weight;
        }
        if row_weight == 1 {
            push_row(src, row_offset, step0, extent0, &mut lanes[..interior], reducer);
        } else {
            push_row_weighted(
                src,
                row_offset,
                row_weight,
                step0,
                extent0,
                &mut lanes[..interior],
                reducer,
            );
        }
        for (x, lane) in lanes.iter_mut().enumerate().skip(interior) {
            let list = &mut axis_offsets[0];
            axis_window_offsets(src, window, 0, x, list);
            for &(o, weight) in list.iter() {
                reducer.push_weighted(lane, src.read(row_offset + o), weight * row_weight);
            }
        }
        // Next input row of the window, axis 1 fastest.
        let mut axis = 1;
        loop {
            if axis == MAX_NDIM {
                for (o, lane) in out.iter_mut().zip(lanes.iter_mut()) {
                    *o = reducer.finish(lane);
                }
                return;
            }
            index[axis] += 1;
            if index[axis] < axis_offsets[axis].len() {
                break;
            }
            index[axis] = 0;
            axis += 1;
        }
    }
}

/// Feeds lane x the values `row[x*step + t]`, t < extent, of one input row whose
/// windows are all inside the row.
#[inline(always)]
fn push_row<S: Copy, R: Reducer<S>>(
    src: &Source<'_, S>,
    row_offset: isize,
    step: usize,
    extent: usize,
    lanes: &mut [R::Lane],
    reducer: &R,
) {
    if lanes.is_empty() {
        return;
    }
    let needed = (lanes.len() - 1) * step + extent;
    if let Some(row) = src.contiguous_row(row_offset, needed) {
        // Windows of a constant width side by side are a loop the compiler vectorises;
        // a width known only at run time left a loop per window (1024x1024x64 u8,
        // 3x3x1 averaging, one thread: 121-153 ms against 47-49).
        match (step, extent) {
            (2, 2) => push_runs::<S, R, 2>(row, lanes, reducer),
            (3, 3) => push_runs::<S, R, 3>(row, lanes, reducer),
            (4, 4) => push_runs::<S, R, 4>(row, lanes, reducer),
            // `step_by(1)` kept a scalar loop with a bounds test per value (1024x1024x64
            // u8, 1x1x2 averaging: about half of its time).
            (1, 1) => push_runs::<S, R, 1>(row, lanes, reducer),
            (_, 1) => {
                for (lane, v) in lanes.iter_mut().zip(row.iter().step_by(step)) {
                    reducer.push(lane, *v);
                }
            }
            _ => {
                for (x, lane) in lanes.iter_mut().enumerate() {
                    for &v in &row[x * step..x * step + extent] {
                        reducer.push(lane, v);
                    }
                }
            }
        }
    } else {
        let stride = src.strides[0];
        for (x, lane) in lanes.iter_mut().enumerate() {
            let base = row_offset + (x * step) as isize * stride;
            for t in 0..extent {
                reducer.push(lane, src.read(base + t as isize * stride));
            }
        }
    }
}

/// Feeds lane x the `WIDTH` values from `row[x * WIDTH]`, in order.
#[inline(always)]
fn push_runs<S: Copy, R: Reducer<S>, const WIDTH: usize>(row: &[S], lanes: &mut [R::Lane], reducer: &R) {
    for (lane, run) in lanes.iter_mut().zip(row.chunks_exact(WIDTH)) {
        for &v in run {
            reducer.push(lane, v);
        }
    }
}

/// `push_row` for a row that stands for `weight` replicated rows (edges only).
fn push_row_weighted<S: Copy, R: Reducer<S>>(
    src: &Source<'_, S>,
    row_offset: isize,
    weight: u32,
    step: usize,
    extent: usize,
    lanes: &mut [R::Lane],
    reducer: &R,
) {
    let stride = src.strides[0];
    for (x, lane) in lanes.iter_mut().enumerate() {
        let base = row_offset + (x * step) as isize * stride;
        for t in 0..extent {
            reducer.push_weighted(lane, src.read(base + t as isize * stride), weight);
        }
    }
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
/// Elements the sink transposes in registers (`transpose_pays`) are copied along
/// `dst`'s densest axis that way: ndarray's `assign` took 220 ms to copy 32M bytes
/// from the Fortran temporary into a C-order view (a 1x1x2 average of a C-order
/// 1024x1024x64 u8 volume, in `in_memory_order`), the sink 15-22 (a quarter of the
/// call's 98 ms under perf). For u64 the sink was 1.5x slower than `assign` (3x3x1
/// max pooling of C-order 512x512x64 labels).
pub(crate) fn fill_output<T: Copy + Default>(dst: &mut ArrayViewMutD<'_, T>, fill: impl FnOnce(&mut [T])) {
    if is_fortran_contiguous(dst.strides(), dst.shape()) {
        let slice = dst
            .as_slice_memory_order_mut()
            .expect("a Fortran-contiguous view is a slice in memory order");
        fill(slice);
        return;
    }
    let mut temp = vec![T::default(); dst.len()];
    fill(&mut temp);
    if transpose_pays::<T>() {
        let shape = pad_dims(dst.shape());
        Sink::new(dst).write_region(&[0; MAX_NDIM], &shape, 0, &temp, &mut Vec::new());
    } else {
        let temp_view = ArrayViewD::from_shape(dst.shape().f(), &temp).expect("shape matches its own length");
        dst.assign(&temp_view);
    }
}

/// `out[i] = span[2 * i]` for every slot of `out` (`span` holds 2 * out.len() - 1
/// elements or more): the common case of striding, as a loop of fixed-size chunks that
/// vectorises, and in SSE2 for bytes.
fn every_other<T: Copy>(span: &[T], out: &mut [T]) {
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::mem::size_of::<T>() == 1 {
        done = every_other_byte_sse2(span, out);
    }
    let (span, out) = (&span[2 * done..], &mut out[done..]);
    for (slot, pair) in out.iter_mut().zip(span.chunks_exact(2)) {
        *slot = pair[0];
    }
    if span.len() % 2 == 1 && !out.is_empty() {
        let last = out.len() - 1;
        out[last] = span[2 * last];
    }
}

/// `every_other` for one-byte elements, 16 at a time, returning how many it wrote.
/// The compiler's own vectorisation of the byte loop gathers byte by byte, which held
/// the striding of a u8 volume to 74% of the memcpy roofline; masking and packing pairs
/// of registers is 8x faster.
#[cfg(target_arch = "x86_64")]
fn every_other_byte_sse2<T: Copy>(span: &[T], out: &mut [T]) -> usize {
    use std::arch::x86_64::{_mm_and_si128, _mm_loadu_si128, _mm_packus_epi16, _mm_set1_epi16, _mm_storeu_si128};
    assert_eq!(std::mem::size_of::<T>(), 1);
    let blocks = out.len().min(span.len() / 2) / 16;
    for (pairs, slots) in span.chunks_exact(32).zip(out.chunks_exact_mut(16)).take(blocks) {
        // SAFETY: SSE2 is part of the x86_64 baseline. `T` is one byte, so `pairs` is 32
        // bytes, read as two unaligned 16-byte loads, and `slots` is 16 bytes, written
        // by one unaligned store; any bit pattern of a byte is moved unchanged (the
        // mask keeps the low byte of each 16-bit pair, and packus of 0..=255 is exact).
        unsafe {
            let low_bytes = _mm_set1_epi16(0x00ff);
            let first = _mm_and_si128(_mm_loadu_si128(pairs.as_ptr().cast()), low_bytes);
            let second = _mm_and_si128(_mm_loadu_si128(pairs.as_ptr().add(16).cast()), low_bytes);
            _mm_storeu_si128(slots.as_mut_ptr().cast(), _mm_packus_epi16(first, second));
        }
    }
    blocks * 16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows whose 16 rows share a cache set (u64 rows 512 wide, 4 KiB apart) are
    /// reduced from chunks copied side by side; each must see exactly its own values in
    /// scan order, whole, clipped at the end of a row, and past a chunk's end.
    #[test]
    fn windows_of_rows_in_one_cache_set_see_their_own_values_in_scan_order() {
        let (width, height, depth) = (512usize, 6, 8);
        let data: Vec<u64> = (0..width * height * depth)
            .map(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let whole = ArrayViewD::from_shape(vec![width, height, depth].f(), &data).expect("shape");
        let rows: Vec<&[u64]> = (0..16).map(|r| &data[(r % 4 + r / 4 * height) * width..]).collect();
        assert!(most_rows_in_one_cache_set(&rows) >= ROWS_IN_ONE_SET_TO_CHUNK);
        let spread: Vec<&[u64]> = (0..16).map(|r| &data[r * 500..]).collect();
        assert!(most_rows_in_one_cache_set(&spread) < ROWS_IN_ONE_SET_TO_CHUNK);
        let window = Window::pooling(&pad_dims(&[4, 4, 4]), Edge::Clip);
        for used in [width, width - 2, 37] {
            let view = whole.slice_axis(ndarray::Axis(0), (0..used).into());
            let out_shape = window.output_shape(&pad_dims(view.shape()));
            let mut out = vec![Vec::new(); out_shape.iter().product()];
            reduce_windows(
                Source::from_view(&view),
                &window,
                &mut out,
                |values, buffer| values.gather(buffer).to_vec(),
                |_, _| 0,
            );
            for (o, got) in out.iter().enumerate() {
                let (ox, oy, oz) = (
                    o % out_shape[0],
                    o / out_shape[0] % out_shape[1],
                    o / out_shape[0] / out_shape[1],
                );
                let mut want = Vec::new();
                for z in 4 * oz..(4 * oz + 4).min(depth) {
                    for y in 4 * oy..(4 * oy + 4).min(height) {
                        want.extend((4 * ox..(4 * ox + 4).min(used)).map(|x| data[x + width * (y + height * z)]));
                    }
                }
                assert_eq!(got, &want, "window {o} of rows {used} long");
            }
        }
    }

    #[test]
    fn inline_copies_move_every_value_of_any_width_and_length() {
        fn check<S: Copy + PartialEq + std::fmt::Debug>(value: impl Fn(usize) -> S) {
            let src: Vec<S> = (0..70).map(&value).collect();
            for len in 0..=src.len() {
                let mut dst: Vec<S> = (0..len).map(|i| value(i + 1000)).collect();
                copy_inline(&mut dst, &src[..len]);
                assert_eq!(dst, &src[..len], "{len} values of {} bytes", size_of::<S>());
            }
        }
        check(|i| i as u8);
        check(|i| i as u16);
        check(|i| i as u32 * 3);
        check(|i| ((i as u64) << 40) | i as u64);
        check(|i| [i as u8; 3]);
    }

    /// The same 4-D volume stored in several memory layouts (each element holds its
    /// Fortran-order index), with whether to read it through reversed axes.
    fn layouts_of(shape: &[usize]) -> Vec<(&'static str, ndarray::ArrayD<u32>, bool)> {
        use ndarray::{ArrayD, IxDyn};
        let len = shape.iter().product::<usize>() as u32;
        let fortran = ArrayD::from_shape_vec(IxDyn(shape).f(), (0..len).collect()).expect("shape");
        let c_order = fortran.as_standard_layout().into_owned();
        let permuted = fortran
            .view()
            .permuted_axes(vec![2, 0, 3, 1])
            .as_standard_layout()
            .into_owned()
            .permuted_axes(vec![1, 3, 0, 2]);
        let reversed = reversed(fortran.view()).as_standard_layout().into_owned();
        vec![
            ("C order", c_order, false),
            ("permuted", permuted, false),
            ("reversed", reversed, true),
        ]
    }

    /// The view with every axis reversed (negative strides).
    fn reversed<T>(mut view: ArrayViewD<'_, T>) -> ArrayViewD<'_, T> {
        view.slice_each_axis_inplace(|_| ndarray::Slice::new(0, None, -1));
        view
    }

    /// A layout of `layouts_of` as a view equal to the Fortran volume.
    fn view_of<T>(array: &ndarray::ArrayD<T>, read_reversed: bool) -> ArrayViewD<'_, T> {
        if read_reversed {
            reversed(array.view())
        } else {
            array.view()
        }
    }

    /// The values of window `o` (an output coordinate) of a volume whose elements hold
    /// their Fortran-order index, clipped at the edges, in scan order.
    fn scan_order_window(shape: &[usize], factor: &[usize], o: &[usize]) -> Vec<u32> {
        let mut values = vec![0u32];
        let mut pitch = 1;
        for (axis, &size) in shape.iter().enumerate() {
            let first = o[axis] * factor[axis];
            let coords = first..(first + factor[axis]).min(size);
            values = coords
                .flat_map(|c| values.iter().map(move |&v| v + (c * pitch) as u32))
                .collect();
            pitch *= size;
        }
        // Built slowest axis last, each coordinate of an axis repeating the faster ones.
        values
    }

    /// A reduction that keeps every value it is fed, in order.
    #[derive(Clone)]
    struct Record;

    impl Reducer<u32> for Record {
        type Lane = Vec<u32>;
        type Output = Vec<u32>;
        fn push(&self, lane: &mut Vec<u32>, value: u32) {
            lane.push(value);
        }
        fn finish(&self, lane: &mut Vec<u32>) -> Vec<u32> {
            std::mem::take(lane)
        }
    }

    /// Inputs whose rows are not contiguous are reduced from staged slabs: every
    /// window, through either loop, must see exactly its own values in scan order, and
    /// results kept for a next level must land beside them.
    #[test]
    fn windows_of_staged_slabs_see_their_own_values_in_scan_order() {
        let shape = [23usize, 7, 10, 3];
        for (name, array, read_reversed) in layouts_of(&shape) {
            let view = view_of(&array, read_reversed);
            let src = Source::from_view(&view);
            for factor in [[3, 2, 4, 1], [1, 3, 1, 2], [5, 1, 3, 3], [2, 2, 2, 2]] {
                let window = Window::pooling(&pad_dims(&factor), Edge::Clip);
                assert!(Slabs::plan(&src, &window, &window.output_shape(&src.shape)).is_some());
                let out_shape = window.output_shape(&src.shape);
                let out_len = out_shape.iter().product();
                let mut gathered = vec![Vec::new(); out_len];
                reduce_windows(
                    src,
                    &window,
                    &mut gathered,
                    |values, buffer| values.gather(buffer).to_vec(),
                    |_, _| 0,
                );
                let mut fed = vec![Vec::new(); out_len];
                let mut kept = vec![0usize; out_len];
                let keep = |values: &Vec<u32>| values.len();
                reduce_level_rendered(src, &window, Record, Some(&mut kept), keep, &mut fed, |v| v.clone());
                for o in 0..out_len {
                    let mut coords = [0; 4];
                    let mut rest = o;
                    for (axis, coord) in coords.iter_mut().enumerate() {
                        *coord = rest % out_shape[axis];
                        rest /= out_shape[axis];
                    }
                    let want = scan_order_window(&shape, &factor, &coords);
                    assert_eq!(gathered[o], want, "{name}, {factor:?}: gathered window {coords:?}");
                    assert_eq!(fed[o], want, "{name}, {factor:?}: window {coords:?} fed to lanes");
                    assert_eq!(kept[o], want.len(), "{name}, {factor:?}: kept result of {coords:?}");
                }
            }
        }
    }

    /// A staged region holds the input's values at the same coordinates, axis 0
    /// contiguous, whatever the element size (transposed in registers or not) and
    /// layout (a unit-stride axis or none).
    #[test]
    fn staged_regions_hold_the_same_values_with_axis_0_contiguous() {
        fn check<T: Copy + PartialEq + std::fmt::Debug + Default>(convert: impl Fn(u32) -> T) {
            let shape = [37usize, 6, 19, 3];
            let region = pad_dims(&[37, 3, 11, 2]);
            let mut origin = [0; MAX_NDIM];
            origin[..4].copy_from_slice(&[0, 2, 5, 1]);
            for (name, array, read_reversed) in layouts_of(&shape) {
                let array = array.mapv(&convert);
                let view = view_of(&array, read_reversed);
                // Every other element of each layout: no axis of unit stride.
                let every_other = view.slice_each_axis(|_| ndarray::Slice::new(0, None, 2));
                for (what, view) in [(name, view.view()), ("every other", every_other)] {
                    let src = Source::from_view(&view);
                    let region: Dims = std::array::from_fn(|a| region[a].min(src.shape[a] - origin[a]));
                    let mut buffer = Vec::new();
                    let staged = src.staged(&origin, &region, &mut buffer);
                    assert_eq!(staged.stride(0), 1, "{what}");
                    for_each_point(&[0, 1, 2, 3], &region, |point| {
                        let at = |s: &Source<'_, T>, from: &Dims| {
                            (0..MAX_NDIM).map(|a| s.offset_of(a, from[a] + point[a])).sum()
                        };
                        let input = src.read(at(&src, &origin));
                        assert_eq!(staged.read(at(&staged, &[0; MAX_NDIM])), input, "{what} at {point:?}");
                    });
                }
            }
        }
        check(|v| v as u8);
        check(|v| v as u16);
        check(|v| v as f32);
        check(|v| u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }

    fn check<T: Copy + PartialEq + std::fmt::Debug>(make: impl Fn(usize) -> T) {
        for len in 0..80usize {
            // A span of exactly 2 * len - 1 elements (the last output has no partner),
            // and one of a pair more.
            for span_len in [(2 * len).saturating_sub(1), 2 * len + 1] {
                let span: Vec<T> = (0..span_len).map(&make).collect();
                let mut out = vec![make(usize::MAX); len];
                every_other(&span, &mut out);
                let want: Vec<T> = (0..len).map(|i| span[2 * i]).collect();
                assert_eq!(out, want, "{len} outputs from {span_len}");
            }
        }
    }

    #[test]
    fn every_other_takes_the_even_elements() {
        check(|i| (i.wrapping_mul(37) >> 1) as u8);
        check(|i| i as i8);
        check(|i| i as u16);
        check(|i| i as f64);
    }
}
