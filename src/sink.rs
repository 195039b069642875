//! Where a mip is written: the caller's output view, whatever its strides, filled by
//! several threads at once in disjoint parts, a line or a region at a time.

use ndarray::ArrayViewMutD;

use crate::shape::{for_each_point, pad_dims, sort_in_memory_order, Dims, MAX_NDIM};

mod transpose;

use transpose::{gather_run, gathers_wide, transpose};
pub(crate) use transpose::{transpose_into, transpose_pays};

/// The most a transposed plane's pass through `scratch` takes at a time (see
/// `Sink::write_region`).
const SCRATCH_BYTES: usize = 32 * 1024;

/// Turns a line of a level's results into output values. Every closure `Fn(&A) -> T`
/// renders value by value; a kernel with a faster way to render a whole line
/// implements this on a type of its own.
pub(crate) trait RenderLine<A, T> {
    fn render_line(&self, values: &[A], out: &mut [T]);

    /// `out` as the line results go in, when rendering would copy them unchanged: the
    /// results are then written there directly. Otherwise `out` back.
    #[inline(always)]
    fn results_in<'a>(&self, out: &'a mut [T]) -> Result<&'a mut [A], &'a mut [T]> {
        Err(out)
    }
}

/// Renders each result as it is.
pub(crate) struct RenderedAsIs;

impl<A: Copy> RenderLine<A, A> for RenderedAsIs {
    #[inline(always)]
    fn render_line(&self, values: &[A], out: &mut [A]) {
        out.copy_from_slice(values);
    }

    #[inline(always)]
    fn results_in<'a>(&self, out: &'a mut [A]) -> Result<&'a mut [A], &'a mut [A]> {
        Ok(out)
    }
}

impl<A, T, F: Fn(&A) -> T> RenderLine<A, T> for F {
    #[inline(always)]
    fn render_line(&self, values: &[A], out: &mut [T]) {
        for (slot, v) in out.iter_mut().zip(values) {
            *slot = self(v);
        }
    }
}

/// Where one mip is written: the caller's view, any strides. Tiles write disjoint parts
/// of it from several threads.
pub(crate) struct Sink<T> {
    ptr: *mut T,
    pub shape: Dims,
    strides: [isize; MAX_NDIM],
}

// SAFETY: a Sink is an exclusive borrow of the output view (taken in `run`, which holds
// `&mut` to the views until every task has finished); threads write through it only to
// the disjoint regions of distinct tiles, and `T: Send` values may move across threads.
unsafe impl<T: Send> Send for Sink<T> {}
// SAFETY: as above: no two threads ever write the same element, and nothing reads.
unsafe impl<T: Send> Sync for Sink<T> {}

impl<T> Sink<T> {
    pub fn new(view: &mut ArrayViewMutD<'_, T>) -> Self {
        let mut strides = [0isize; MAX_NDIM];
        strides[..view.ndim()].copy_from_slice(view.strides());
        Sink {
            ptr: view.as_mut_ptr(),
            shape: pad_dims(view.shape()),
            strides,
        }
    }

    pub fn fastest_axis(&self) -> usize {
        crate::shape::fastest_axis(&self.shape, &self.strides)
    }

    pub fn stride(&self, axis: usize) -> isize {
        self.strides[axis]
    }

    /// The address of the element at `origin`, for prefetching: never written through.
    pub fn address_of(&self, origin: &Dims) -> *const T {
        let offset: isize = (0..MAX_NDIM).map(|a| origin[a] as isize * self.strides[a]).sum();
        self.ptr.cast_const().wrapping_offset(offset)
    }

    /// Writes the region `origin .. origin + shape` from `values`, which holds it with
    /// `first_axis` fastest, then the other axes ascending. The writes run along this
    /// view's densest axis, so that each of its cache lines is written whole. When that
    /// axis is not `first_axis` (values in C order, outputs in Fortran order), values of
    /// up to 4 bytes are transposed in registers into `scratch` first, a plane of the
    /// two axes at a time, and copied out in whole runs. Element by element, that
    /// transpose cost two cycles per element, 15-17% of averaging a C-order u8 volume;
    /// transposed straight into the view, 1.3x as long as through `scratch` (each block
    /// leaves partial cache lines in 16 output lines), and for u32 and u64 in AVX2
    /// blocks 1.4-2x as long (4 or 8 output lines a plane apart, 32 bytes at a time).
    pub fn write_region(&self, origin: &Dims, shape: &Dims, first_axis: usize, values: &[T], scratch: &mut Vec<T>)
    where
        T: Copy + Default,
    {
        assert_eq!(values.len(), shape.iter().product::<usize>());
        let mut offset = 0isize;
        for a in 0..MAX_NDIM {
            assert!(shape[a] >= 1 && origin[a] + shape[a] <= self.shape[a]);
            offset += origin[a] as isize * self.strides[a];
        }
        let mut value_strides = [0usize; MAX_NDIM];
        value_strides[first_axis] = 1;
        let mut step = shape[first_axis];
        for a in (0..MAX_NDIM).filter(|&a| a != first_axis) {
            value_strides[a] = step;
            step *= shape[a];
        }
        let mut order: [usize; MAX_NDIM] = std::array::from_fn(|a| a);
        sort_in_memory_order(&mut order, shape, &self.strides);
        // Axes of extent 1 add nothing to any position: the runs count over the others.
        let counted = shape.iter().filter(|&&extent| extent > 1).count().max(1);
        let (inner, outer) = (order[0], &order[1..counted]);
        let (len, stride) = (shape[inner], self.strides[inner]);
        // Where the run at `coords` (over the outer axes) starts, in the view and in `values`.
        let run_start = |coords: &Dims| {
            outer.iter().fold((offset, 0), |(at, from), &a| {
                (
                    at + coords[a] as isize * self.strides[a],
                    from + coords[a] * value_strides[a],
                )
            })
        };
        // Which element sizes gain: see `transpose_pays`.
        if stride == 1 && inner != first_axis && shape[first_axis] > 1 && transpose_pays::<T>() {
            let mut planes = [0usize; MAX_NDIM];
            let mut plane_axes = 0;
            for &a in outer.iter().filter(|&&a| a != first_axis) {
                planes[plane_axes] = a;
                plane_axes += 1;
            }
            let (columns, column_stride) = (shape[first_axis], self.strides[first_axis]);
            // A plane goes through `scratch` a few columns at a time, so that it stays
            // in the L1 cache between the transpose and the copy out: a 2D C-order
            // image's plane spans whole output lines (2048 u32 columns of 128 for
            // 4096x4096), and through a scratch plane that large, the copy read it back
            // from L2 or beyond.
            let chunk = (SCRATCH_BYTES / (len * std::mem::size_of::<T>())).max(16) / 16 * 16;
            let chunk = chunk.min(columns);
            // Only grown: the transpose overwrites every element it hands back.
            if scratch.len() < len * chunk {
                scratch.resize(len * chunk, T::default());
            }
            for_each_point(&planes[..plane_axes], shape, |coords| {
                let (at, from) = run_start(coords);
                for first_column in (0..columns).step_by(chunk) {
                    let width = chunk.min(columns - first_column);
                    let scratch = &mut scratch[..len * width];
                    // Row r of the plane is the values at coordinate r along `inner`.
                    let row = |r| &values[from + r * value_strides[inner] + first_column..];
                    transpose(len, width, row, scratch);
                    for (column, run) in (first_column..).zip(scratch.chunks_exact(len)) {
                        // SAFETY: the run's `len` elements along the stride-1 axis
                        // `inner`, from a point inside the region, lie inside the view
                        // (asserted above); exclusive as for `write_line`.
                        let target = unsafe {
                            std::slice::from_raw_parts_mut(self.ptr.offset(at + column as isize * column_stride), len)
                        };
                        target.copy_from_slice(run);
                    }
                }
            });
            return;
        }
        let value_stride = value_strides[inner];
        let gathers = stride == 1 && gathers_wide::<T>();
        for_each_point(outer, shape, |coords| {
            let (at, from) = run_start(coords);
            if stride == 1 && value_stride == 1 {
                // SAFETY: as below, for the `len` consecutive elements of this run.
                let run = unsafe { std::slice::from_raw_parts_mut(self.ptr.offset(at), len) };
                run.copy_from_slice(&values[from..from + len]);
            } else if gathers {
                // SAFETY: as below, for the `len` consecutive elements of this run;
                // `values` is the caller's buffer, not this view.
                unsafe { gather_run(&values[from..], value_stride, len, self.ptr.offset(at)) };
            } else {
                for i in 0..len {
                    // SAFETY: the region lies inside the view (asserted above) and every
                    // coordinate stays below its extent; exclusive as for `write_line`.
                    unsafe { *self.ptr.offset(at + i as isize * stride) = values[from + i * value_stride] };
                }
            }
        });
    }

    /// The offset of the element at `origin`, checking that it and the `len` elements
    /// from it along `axis` lie inside the view.
    fn line_offset(&self, origin: &Dims, axis: usize, len: usize) -> isize {
        let mut offset = 0isize;
        for a in 0..MAX_NDIM {
            assert!(origin[a] < self.shape[a]);
            offset += origin[a] as isize * self.strides[a];
        }
        assert!(origin[axis] + len <= self.shape[axis]);
        offset
    }

    /// The `len` elements from `origin` along `axis`, when they are contiguous.
    ///
    /// # Safety
    /// No other reference to these elements exists while the slice lives, and no other
    /// thread writes them (each tile writes only its own lines).
    // Shared: every tile of every thread writes through the one Sink, each only its
    // own lines (as `write_line` does).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn line_mut(&self, origin: &Dims, axis: usize, len: usize) -> Option<&mut [T]> {
        let offset = self.line_offset(origin, axis, len);
        // SAFETY: `offset` is the in-bounds element at `origin`, the next `len` elements
        // along a stride-1 axis are in bounds (asserted in `line_offset`), and the
        // caller guarantees exclusive access.
        (self.strides[axis] == 1 || len == 1)
            .then(|| unsafe { std::slice::from_raw_parts_mut(self.ptr.offset(offset), len) })
    }

    /// Fills the `len` elements from `origin` along `axis` with `fill`: in place when
    /// they are contiguous, else through `scratch`.
    pub fn fill_line(&self, origin: &Dims, axis: usize, len: usize, scratch: &mut Vec<T>, fill: impl FnOnce(&mut [T]))
    where
        T: Copy + Default,
    {
        // SAFETY: the caller's task is the only writer of this line, and the slice lives
        // only while `fill` runs.
        if let Some(line) = unsafe { self.line_mut(origin, axis, len) } {
            fill(line);
        } else {
            scratch.clear();
            scratch.resize(len, T::default());
            fill(scratch);
            self.write_line(origin, axis, scratch, &|&v: &T| v);
        }
    }

    /// Writes `values`, rendered, along `axis` from `origin`.
    #[inline(always)]
    pub fn write_line<A>(&self, origin: &Dims, axis: usize, values: &[A], render: &impl RenderLine<A, T>)
    where
        T: Copy + Default,
    {
        let len = values.len();
        let offset = self.line_offset(origin, axis, len);
        let stride = self.strides[axis];
        if stride == 1 || len == 1 {
            // SAFETY: `offset` is the in-bounds element at `origin` and the next `len`
            // elements along a stride-1 axis are in bounds (asserted in `line_offset`). The view
            // is exclusively borrowed for the whole call (see the Send/Sync impls) and
            // this tile is the only writer of this line.
            let line = unsafe { std::slice::from_raw_parts_mut(self.ptr.offset(offset), len) };
            render.render_line(values, line);
        } else {
            const CHUNK: usize = 64;
            let mut rendered = [T::default(); CHUNK];
            for (chunk_index, chunk) in values.chunks(CHUNK).enumerate() {
                let rendered = &mut rendered[..chunk.len()];
                render.render_line(chunk, rendered);
                for (i, &v) in rendered.iter().enumerate() {
                    let at = offset + (chunk_index * CHUNK + i) as isize * stride;
                    // SAFETY: element chunk_index * CHUNK + i < len along `axis` of the
                    // line at `origin` is in bounds (asserted in `line_offset`); exclusive
                    // as for the contiguous case.
                    unsafe { *self.ptr.offset(at) = v };
                }
            }
        }
    }
}
