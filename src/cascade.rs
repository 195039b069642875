//! Every mip of a factor-2 pyramid (the 2x2 and 2x2x2 families) in one pass.
//!
//! The input is cut into tiles of 2^mips voxels along each factor axis (whole lines
//! along the "line axis", the one with the smallest stride) and 1 voxel along the
//! others. A tile holds exactly the voxels that its part of every mip depends on, so
//! each tile runs down all the levels on its own: level k+1 of the tile is reduced from
//! level k while that is still in cache, and no level is ever stored whole. Tiles run in
//! parallel, and each is always computed the same way, so results never depend on the
//! number of threads.
//!
//! Along a line, blocks are read in address order: a level is a set of lines, and every
//! output line is reduced from the 2 or 4 (2x2x2: 4 or 8) input lines of its blocks.

use std::sync::OnceLock;

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::engine::Source;
use crate::shape::{sort_by_stride, Dims, Family, MAX_NDIM};
use crate::sink::{RenderLine, Sink};
use crate::threads;

/// Reduces one block of `N` values (N = 4 for 2x2, 8 for 2x2x2) given in scan order,
/// axis 0 fastest. Blocks that run past the end of an axis are padded by repeating its
/// last voxel.
pub(crate) trait BlockReducer<S: Copy, const N: usize>: Sync {
    type Out: Copy + Default + Send;
    /// True when an edge block must say which of its values are copies (exact means weigh
    /// the real voxel by its number of copies instead of adding the copies one by one).
    const WEIGHTED: bool = false;
    /// True when the result does not depend on the order of the block's values (integer
    /// sums, the least or greatest integer): `reduce_line_pairs` then serves blocks
    /// whose lines run along any of their axes.
    const ORDER_FREE: bool = false;
    fn reduce(&self, block: &[S; N]) -> Self::Out;
    /// An edge block: `weights[i]` copies of `block[i]`, where weight 0 marks a padding
    /// copy. Only called when `WEIGHTED`.
    #[inline(always)]
    fn reduce_weighted(&self, block: &[S; N], weights: &[u32; N]) -> Self::Out {
        let _ = weights;
        self.reduce(block)
    }
    /// Interior blocks of whole lines when the line axis is the first factor axis:
    /// result x reduces the block lines[0][2x], lines[0][2x+1], lines[1][2x], ... (N/2
    /// lines, in scan order). Reducers that can fold one line at a time override this,
    /// so the lines are read one after the other, in address order. `ahead` says where
    /// reading goes on after these lines, for the overrides that read ahead.
    #[inline(always)]
    fn reduce_line_pairs(&self, lines: &[&[S]], ahead: &ReadAhead<S>, results: &mut [Self::Out]) {
        let _ = ahead;
        reduce_line_pairs_by_block(self, lines, results);
    }
    /// Interior blocks of whole lines when the line axis is the factor axis at `position`
    /// (not only the first: a C-order volume's 2x2x2 blocks have it last): result x
    /// reduces values 2x and 2x+1 of each of the N/2 lines, the line bit at `position` of
    /// the scan-order index. Order-free reducers fold as `reduce_line_pairs` does for any
    /// position; the others go block by block in scan order, unless they override this
    /// where it pays.
    #[inline(always)]
    fn reduce_line_pairs_at(&self, position: usize, lines: &[&[S]], ahead: &ReadAhead<S>, results: &mut [Self::Out]) {
        if position == 0 || Self::ORDER_FREE {
            self.reduce_line_pairs(lines, ahead, results);
        } else {
            reduce_line_pairs_at_by_block(self, position, lines, results);
        }
    }
    /// Interior blocks when the line axis is not a factor axis: result x reduces
    /// lines[0][x], lines[1][x], ... (N lines, in scan order).
    #[inline(always)]
    fn reduce_stacked_lines(&self, lines: &[&[S]; N], results: &mut [Self::Out]) {
        for line in lines {
            assert!(line.len() >= results.len());
        }
        for (x, result) in results.iter_mut().enumerate() {
            // SAFETY: every line has at least results.len() elements (asserted above).
            let block: [S; N] = std::array::from_fn(|i| unsafe { *lines.get_unchecked(i).get_unchecked(x) });
            *result = self.reduce(&block);
        }
    }
}

/// `reduce_line_pairs_at` one block at a time: the default, and the tail of rows that
/// overriding reducers do not take whole.
#[inline(always)]
pub(crate) fn reduce_line_pairs_at_by_block<S: Copy, R: BlockReducer<S, N> + ?Sized, const N: usize>(
    reducer: &R,
    position: usize,
    lines: &[&[S]],
    results: &mut [R::Out],
) {
    assert_eq!(lines.len(), N / 2);
    for line in lines {
        assert!(line.len() >= 2 * results.len());
    }
    for (x, result) in results.iter_mut().enumerate() {
        let block: [S; N] = std::array::from_fn(|i| {
            let (combo, b) = unslot(i, position);
            // SAFETY: combo < N/2 lines (asserted), each at least 2 * results.len()
            // long (asserted), and 2x + b < 2 * results.len().
            unsafe { *lines.get_unchecked(combo).get_unchecked(2 * x + b) }
        });
        *result = reducer.reduce(&block);
    }
}

/// `reduce_line_pairs` one block at a time: the default, and the tail of rows that
/// overriding reducers do not take whole.
#[inline(always)]
pub(crate) fn reduce_line_pairs_by_block<S: Copy, R: BlockReducer<S, N> + ?Sized, const N: usize>(
    reducer: &R,
    lines: &[&[S]],
    results: &mut [R::Out],
) {
    reduce_line_pairs_at_by_block(reducer, 0, lines, results);
}

/// How a level's results become the state the next level reduces.
pub(crate) trait KeepState<A, K> {
    fn keep(&self, result: &A) -> K;

    /// `kept` as the line the level's results go in, when keeping would copy them
    /// unchanged: the level then reduces straight into its kept state, and the copy is
    /// skipped (it was 8% of a 4-mip u8 pyramid). Otherwise `kept` back.
    #[inline(always)]
    fn results_in<'a>(&self, kept: &'a mut [K]) -> Result<&'a mut [A], &'a mut [K]> {
        Err(kept)
    }
}

impl<A, K, F: Fn(&A) -> K> KeepState<A, K> for F {
    #[inline(always)]
    fn keep(&self, result: &A) -> K {
        self(result)
    }
}

/// Keeps each result as it is.
pub(crate) struct KeptAsIs;

impl<A: Copy> KeepState<A, A> for KeptAsIs {
    #[inline(always)]
    fn keep(&self, result: &A) -> A {
        *result
    }
    #[inline(always)]
    fn results_in<'a>(&self, kept: &'a mut [A]) -> Result<&'a mut [A], &'a mut [A]> {
        Ok(kept)
    }
}

/// How one pyramid is reduced: `first` reduces the input, `next` the kept state of a
/// level; each result is rendered into its mip and kept for the next level.
pub(crate) struct Levels<First, Next, Keep, Render> {
    pub first: First,
    pub next: Next,
    /// mip index -> (result -> the value the next level reduces). Called once per level
    /// and tile, so the returned closure can hold per-mip constants by value, which
    /// keeps the voxel loops free of look-ups.
    pub keep: Keep,
    /// mip index -> (results -> the output voxels).
    pub render: Render,
}

/// Computes `outputs.len()` mips of `input` with factor 2 on `factor_axes` (2 or 3 of
/// them, ascending; N = 2^their number) and 1 elsewhere, into the caller's views.
pub(crate) fn run<T, K, A, First, Next, Keep, Render, KeepAt, RenderAt, const N: usize>(
    input: &ArrayViewD<'_, T>,
    factor_axes: &[usize],
    outputs: &mut [ArrayViewMutD<'_, T>],
    levels: &Levels<First, Next, Keep, Render>,
) where
    T: Copy + Default + Send + Sync,
    K: Copy + Default + Send + Sync,
    A: Copy + Default + Send,
    First: BlockReducer<T, N, Out = A>,
    Next: BlockReducer<K, N, Out = A>,
    Keep: Fn(usize) -> KeepAt + Sync,
    Render: Fn(usize) -> RenderAt + Sync,
    KeepAt: KeepState<A, K>,
    RenderAt: RenderLine<A, T>,
{
    assert_eq!(1 << factor_axes.len(), N);
    if outputs.is_empty() {
        return;
    }
    let src = Source::from_view(input);
    let sinks: Vec<Sink<T>> = outputs.iter_mut().map(Sink::new).collect();
    let plan = Plan::new(&src, factor_axes, &sinks);
    let tiles = plan.tile_count();
    let per_task = plan.tiles_per_task();
    let tasks = tiles.div_ceil(per_task);
    threads::for_each_init((0..tasks).collect(), Scratch::<T, K, A>::default, |scratch, task| {
        let tiles = task * per_task..((task + 1) * per_task).min(tiles);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { run_tiles_avx2(&plan, &src, tiles, &sinks, levels, scratch) };
        }
        run_tiles(&plan, &src, tiles, &sinks, levels, scratch);
    });
}

/// Runs a range of tiles; inlined into an AVX2 build and a portable one. Both do the
/// same operations per voxel in the same order, so they give identical results.
#[inline(always)]
fn run_tiles<T, K, A, First, Next, Keep, Render, KeepAt, RenderAt, const N: usize>(
    plan: &Plan,
    input: &Source<'_, T>,
    tiles: std::ops::Range<usize>,
    sinks: &[Sink<T>],
    levels: &Levels<First, Next, Keep, Render>,
    scratch: &mut Scratch<T, K, A>,
) where
    T: Copy + Default + Send + Sync,
    K: Copy + Default + Send + Sync,
    A: Copy + Default + Send,
    First: BlockReducer<T, N, Out = A>,
    Next: BlockReducer<K, N, Out = A>,
    Keep: Fn(usize) -> KeepAt + Sync,
    Render: Fn(usize) -> RenderAt + Sync,
    KeepAt: KeepState<A, K>,
    RenderAt: RenderLine<A, T>,
{
    for tile in tiles {
        run_tile(plan, input, tile, sinks, levels, scratch);
    }
}

/// `run_tiles` compiled for AVX2: the line loops vectorise across voxels, which
/// baseline x86-64 code does not do for byte pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_tiles_avx2<T, K, A, First, Next, Keep, Render, KeepAt, RenderAt, const N: usize>(
    plan: &Plan,
    input: &Source<'_, T>,
    tiles: std::ops::Range<usize>,
    sinks: &[Sink<T>],
    levels: &Levels<First, Next, Keep, Render>,
    scratch: &mut Scratch<T, K, A>,
) where
    T: Copy + Default + Send + Sync,
    K: Copy + Default + Send + Sync,
    A: Copy + Default + Send,
    First: BlockReducer<T, N, Out = A>,
    Next: BlockReducer<K, N, Out = A>,
    Keep: Fn(usize) -> KeepAt + Sync,
    Render: Fn(usize) -> RenderAt + Sync,
    KeepAt: KeepState<A, K>,
    RenderAt: RenderLine<A, T>,
{
    run_tiles(plan, input, tiles, sinks, levels, scratch)
}

/// Input bytes a tile should have at least, where the axes allow: the per-tile and
/// per-line set-up of later levels is then small against the tile's work, and the
/// kept state of a tile's first level (a quarter or an eighth of it, in wider values:
/// 512 KiB for u8 2x2) still stays in a 1 MiB L2. Measured on 1024x1024x64 u8, 4 mips,
/// one thread (builds alternated in one process, AMD EPYC Zen 4): 5.6-5.7 ms against
/// 6.9-7.0 ms with 256 KiB tiles and 8.5 with 32 KiB, 4096x4096x4 4.9 against 6.3;
/// one mip and 2x2x2 ran 1.05-1.1x faster, u64 labels (mode) and f32 no slower.
/// Tiles that outgrow L2 lose again (the whole 4096x4096 plane: 5.8 ms).
const TILE_BYTES: usize = 1 << 20;

/// Bytes of output a tile writes contiguously along the outputs' fastest axis, when
/// that is not the line axis (C-order input, Fortran-order outputs): the tile's level,
/// rendered in the input's order, is written out in runs this long (or the whole axis).
/// Measured on C-order volumes, one thread, preallocated outputs, one build with the
/// length switched and settings alternated in one process (Intel Xeon guest), 512
/// against 64 bytes: 1024x1024x64 u8 2x2x1 averaging 16.6-18.0 against 24.7-32.2 ms, 4
/// mips 21.3-24.2 against 47.7-48.4, u16 27.7-28.5 against 56-57, 512x512x64 u64 2x2x2
/// mode 32.9-33.1 against 36.4-36.9; but u8 2x2x2 averaging 17.5-18.0 against
/// 15.5-16.4. (256 bytes: between the two on every path.)
const OUTPUT_RUN_BYTES: usize = 512;

pub(crate) const CACHE_LINE_BYTES: usize = 64;

/// Input lines up to this long, stacked on each other, are read ahead in software (see
/// `reduce_level`); longer ones are left to the hardware prefetcher (not measured
/// with this read-ahead).
const SHORT_LINE_BYTES: usize = 512;

/// The shape of the work: levels, tiles and the line axis.
struct Plan {
    /// The factor axes, ascending.
    axes: Vec<usize>,
    /// Lines run along this axis (the input's smallest stride).
    line_axis: usize,
    /// The factor axes other than the line axis: each splits a block across two lines.
    across: Vec<usize>,
    /// Where the line axis stands among the factor axes, if it is one.
    line_factor_position: Option<usize>,
    /// Global shape of level k, k = 0..=mips.
    shapes: Vec<Dims>,
    /// Tile extent at level 0 on each axis, and the number of tiles along it.
    tile_extent: Dims,
    tile_counts: Dims,
    /// Per mip: laid out along another axis than the lines, so each tile's level is
    /// rendered into a copy and written out in the mip's own order.
    staged: Vec<bool>,
}

impl Plan {
    fn new<T: Copy>(src: &Source<'_, T>, axes: &[usize], sinks: &[Sink<T>]) -> Self {
        let shape = src.shape;
        let mips = sinks.len();
        let line_axis = src.fastest_axis();
        let mut shapes = vec![shape];
        for _ in 0..mips {
            let mut next = *shapes.last().expect("level 0 is there");
            for &a in axes {
                next[a] = next[a].div_ceil(2);
            }
            shapes.push(next);
        }
        let mut tile_extent = [1; MAX_NDIM];
        let mut tile_counts = shape;
        for &a in axes {
            // Enough halvings to bring the axis to one voxel, or the number of mips.
            let halvings = (usize::BITS - (shape[a] - 1).leading_zeros()).min(mips as u32);
            tile_extent[a] = 1 << halvings;
            tile_counts[a] = shape[a].div_ceil(tile_extent[a]);
        }
        tile_extent[line_axis] = shape[line_axis];
        tile_counts[line_axis] = 1;
        // Grows tiles along `axis` by whole multiples, to at least `extent` voxels.
        let grow = |tile_extent: &mut Dims, tile_counts: &mut Dims, axis: usize, extent: usize| {
            let growth = extent.div_ceil(tile_extent[axis]).min(tile_counts[axis]).max(1);
            tile_extent[axis] *= growth;
            tile_counts[axis] = shape[axis].div_ceil(tile_extent[axis]);
        };
        // When the outputs are laid out along another axis than the input's lines (C-order
        // input, Fortran-order outputs), a tile must span long runs of output along the
        // outputs' fastest axis: the tile's mip is written out in the outputs' order (see
        // `Sink::write_region`), each run whole.
        let output_fastest = sinks[0].fastest_axis();
        if output_fastest != line_axis && axes.contains(&output_fastest) {
            let per_cache_line = (OUTPUT_RUN_BYTES / std::mem::size_of::<T>().max(1)).max(1);
            grow(&mut tile_extent, &mut tile_counts, output_fastest, 2 * per_cache_line);
        }
        // Tiles of few mips are small (two lines for one mip): grow them by whole
        // multiples, to amortise the per-tile set-up, along the axis across lines with
        // the smallest stride, so that consecutive lines of a tile lie close together in
        // memory (along a large stride every line would be a fresh cache miss).
        if let Some(a) = axes
            .iter()
            .copied()
            .filter(|&a| a != line_axis && tile_counts[a] > 1)
            .min_by_key(|&a| src.stride(a).unsigned_abs())
        {
            let volume: usize = tile_extent.iter().product();
            let others = volume / tile_extent[a];
            grow(
                &mut tile_extent,
                &mut tile_counts,
                a,
                (TILE_BYTES / std::mem::size_of::<T>().max(1)).div_ceil(others.max(1)),
            );
        }
        Plan {
            axes: axes.to_vec(),
            line_axis,
            across: axes.iter().copied().filter(|&a| a != line_axis).collect(),
            line_factor_position: axes.iter().position(|&a| a == line_axis),
            staged: sinks.iter().map(|sink| sink.fastest_axis() != line_axis).collect(),
            shapes,
            tile_extent,
            tile_counts,
        }
    }

    fn mips(&self) -> usize {
        self.shapes.len() - 1
    }

    fn tile_count(&self) -> usize {
        self.tile_counts.iter().product()
    }

    /// Enough tiles per parallel task that a task is not dominated by its set-up, and
    /// enough tasks to balance the threads.
    fn tiles_per_task(&self) -> usize {
        let tile_volume: usize = self.tile_extent.iter().product();
        let by_size = (1usize << 16).div_ceil(tile_volume.max(1));
        let threads = threads::current_threads();
        let by_balance = self.tile_count().div_ceil(threads * 8);
        by_size.min(by_balance).max(1)
    }

    /// The tile's coordinates in the tile grid (line axis excluded, axis order ascending).
    fn tile_coords(&self, mut tile: usize) -> Dims {
        let mut coords = [0; MAX_NDIM];
        for axis in 0..MAX_NDIM {
            coords[axis] = tile % self.tile_counts[axis];
            tile /= self.tile_counts[axis];
        }
        coords
    }

    /// Origin (in level k's global coordinates) and shape of a tile at level k.
    fn tile_at_level(&self, coords: &Dims, k: usize) -> (Dims, Dims) {
        let mut origin = [0; MAX_NDIM];
        let mut shape = [1; MAX_NDIM];
        for axis in 0..MAX_NDIM {
            if axis == self.line_axis {
                shape[axis] = self.shapes[k][axis];
                continue;
            }
            let extent = if self.axes.contains(&axis) {
                (self.tile_extent[axis] >> k.min(63)).max(1)
            } else {
                self.tile_extent[axis]
            };
            origin[axis] = coords[axis] * extent;
            shape[axis] = extent.min(self.shapes[k][axis] - origin[axis]);
        }
        (origin, shape)
    }
}

/// Per-thread buffers, reused from tile to tile.
struct Scratch<T, K, A> {
    /// Kept state of the level being read and of the level being written.
    previous: Vec<K>,
    current: Vec<K>,
    /// Copies of input lines that are not contiguous.
    gathered: [Vec<T>; 8],
    /// Unused: state lines are always contiguous.
    gathered_state: [Vec<K>; 8],
    /// The results of one output line.
    results: Vec<A>,
    /// A level of the tile, rendered, when it is written out in the outputs' order.
    staged: Vec<T>,
    /// Planes of `staged` transposed into the outputs' order.
    transposed: Vec<T>,
}

impl<T, K, A> Default for Scratch<T, K, A> {
    fn default() -> Self {
        Scratch {
            previous: Vec::new(),
            current: Vec::new(),
            gathered: Default::default(),
            gathered_state: Default::default(),
            results: Vec::new(),
            staged: Vec::new(),
            transposed: Vec::new(),
        }
    }
}

#[inline(always)]
fn run_tile<T, K, A, First, Next, Keep, Render, KeepAt, RenderAt, const N: usize>(
    plan: &Plan,
    input: &Source<'_, T>,
    tile: usize,
    sinks: &[Sink<T>],
    levels: &Levels<First, Next, Keep, Render>,
    scratch: &mut Scratch<T, K, A>,
) where
    T: Copy + Default + Send + Sync,
    K: Copy + Default + Send + Sync,
    A: Copy + Default + Send,
    First: BlockReducer<T, N, Out = A>,
    Next: BlockReducer<K, N, Out = A>,
    Keep: Fn(usize) -> KeepAt + Sync,
    Render: Fn(usize) -> RenderAt + Sync,
    KeepAt: KeepState<A, K>,
    RenderAt: RenderLine<A, T>,
{
    let coords = plan.tile_coords(tile);
    let mips = plan.mips();
    for k in 0..mips {
        let (in_origin, in_shape) = plan.tile_at_level(&coords, k);
        let (out_origin, out_shape) = plan.tile_at_level(&coords, k + 1);
        let last = k + 1 == mips;
        let Scratch {
            previous,
            current,
            gathered,
            gathered_state,
            results,
            staged,
            transposed,
        } = scratch;
        let kept = if last {
            None
        } else {
            // Every slot is written before it is read: grown, never cleared (clearing
            // was 13% of a 4-mip u8 pyramid).
            let len: usize = out_shape.iter().product();
            if current.len() < len {
                current.resize(len, K::default());
            }
            Some(&mut current[..len])
        };
        let target = Target {
            sink: &sinks[k],
            origin: out_origin,
            shape: out_shape,
            kept,
            keep: (levels.keep)(k),
            render: (levels.render)(k),
            staged,
            transposed,
        };
        if k == 0 {
            let src = input.region(&in_origin, &in_shape);
            reduce_level(plan, k, &src, &levels.first, target, gathered, results);
        } else {
            let len: usize = in_shape.iter().product();
            let src = Source::from_slice_axis_first(&previous[..len], &in_shape, plan.line_axis);
            reduce_level(plan, k, &src, &levels.next, target, gathered_state, results);
        }
        std::mem::swap(&mut scratch.previous, &mut scratch.current);
    }
}

/// Where the results of one level of one tile go.
struct Target<'s, T, K, KeepFn, RenderFn> {
    sink: &'s Sink<T>,
    /// The tile's region of the mip.
    origin: Dims,
    shape: Dims,
    /// The next level's state (line axis fastest over `shape`), unless this is the last mip.
    kept: Option<&'s mut [K]>,
    keep: KeepFn,
    render: RenderFn,
    /// The level rendered whole, when the mip is written out in its own order.
    staged: &'s mut Vec<T>,
    transposed: &'s mut Vec<T>,
}

/// Reduces level `k` of one tile (`src`) into the next.
#[inline(always)]
fn reduce_level<S, R, T, K, KeepFn, RenderFn, const N: usize>(
    plan: &Plan,
    k: usize,
    src: &Source<'_, S>,
    reducer: &R,
    mut target: Target<'_, T, K, KeepFn, RenderFn>,
    gathered: &mut [Vec<S>; 8],
    results: &mut Vec<R::Out>,
) where
    T: Copy + Default,
    S: Copy,
    R: BlockReducer<S, N>,
    KeepFn: KeepState<R::Out, K>,
    RenderFn: RenderLine<R::Out, T>,
{
    let line_axis = plan.line_axis;
    let in_len = src.shape[line_axis];
    let out_len = target.shape[line_axis];
    let global = &plan.shapes[k];
    let across = &plan.across;
    let line_count = 1usize << across.len();
    // A real voxel standing for its padding copy counts twice, unless the whole level
    // is one voxel thick there (exact means leave such axes out of the window).
    let doubled = |axis: usize| if global[axis] > 1 { 2 } else { 1 };
    results.resize(out_len, R::Out::default());

    let lines_out: usize = target.shape.iter().product::<usize>() / out_len;
    let staging = plan.staged[k];
    // Only grown: every line of it is rendered into before it is written out.
    if staging && target.staged.len() < lines_out * out_len {
        target.staged.resize(lines_out * out_len, T::default());
    }
    let layout = LineLayout::new(src, &target.shape, line_axis, across, &doubled);
    let (tile_origin, tile_shape) = (target.origin, target.shape);
    // Output lines are taken in the order of the input's strides, smallest first, so
    // that each one reads input next to the last one's. In a C-order volume the lines
    // (along z) are one cache line long; taken in axis order, consecutive output lines
    // read lines 128 KiB apart (along x), which no prefetcher follows. In stride order
    // (along y) they read on where the last ones stopped: 2x2x1 averaging of a C-order
    // 1024x1024x64 u8 volume ran 1.5x as fast (one thread, preallocated outputs). A
    // Fortran-order input's order is the axis order.
    let mut order: [usize; MAX_NDIM] = [0, 1, 2, 3, 4, 5, 6, 7];
    sort_by_stride(&mut order, src.strides());
    // The kept state and the staged level hold the tile's lines in axis order, whatever
    // the order they are computed in: the line at tile coordinates c is line
    // sum(c[axis] * line_strides[axis]) there.
    let mut line_strides = [0usize; MAX_NDIM];
    let mut lines_before = 1;
    for axis in (0..MAX_NDIM).filter(|&a| a != line_axis) {
        line_strides[axis] = lines_before;
        lines_before *= tile_shape[axis];
    }
    // The axes output lines step along, in `order`: (axis, extent in the tile, line
    // index step). Axes one line thick are left out (stepping one wraps straight back).
    let mut stepping = [(0usize, 0usize, 0usize); MAX_NDIM];
    let mut stepping_axes = 0;
    for axis in order.into_iter().filter(|&a| a != line_axis && tile_shape[a] > 1) {
        stepping[stepping_axes] = (axis, tile_shape[axis], line_strides[axis]);
        stepping_axes += 1;
    }
    let stepping = &stepping[..stepping_axes];
    // Steps `coords` (which start at `first`) to the next output line, in `order`, and
    // `line` (that line's index in axis order) with it. Updated in place, element by
    // element, and never copied whole: a whole copy is loaded in vectors, which cannot
    // be forwarded from these 8-byte stores while output stores that miss hold up the
    // store buffer.
    let advance = |coords: &mut Dims, first: &Dims, line: &mut usize| {
        for &(axis, extent, line_step) in stepping {
            coords[axis] += 1;
            *line += line_step;
            if coords[axis] < first[axis] + extent {
                break;
            }
            coords[axis] = first[axis];
            *line -= extent * line_step;
        }
    };
    let contiguous = src.stride(line_axis) == 1;
    let tile_start = [0usize; MAX_NDIM];
    // The output line's start in the mip, and the next line's coordinates in the tile.
    let mut origin = tile_origin;
    let mut next_coords = tile_start;
    // Line indices in axis order of this output line and the next; `origin` and
    // `ahead_coords` need none (`unused`).
    let (mut line, mut next_line, mut unused) = (0, 0, 0);
    advance(&mut next_coords, &tile_start, &mut next_line);
    // Lines stacked on each other (no pairs along them) and short, as a C-order
    // volume's lines along z are, where reading ahead is done in software
    // (`reads_stacked_lines_ahead`): the input lines of the output line
    // `read_ahead_bytes` of input further on are asked for, `ahead_coords`. Read in
    // stride order, such lines run on in memory but only a few cache lines at a time,
    // in two or four streams far apart. One thread,
    // preallocated outputs, settings alternated in one process (Intel Xeon guest), 2 KiB
    // ahead against none: C-order 1024x1024x64 u8 2x2x1 averaging 20.5-21.2 against
    // 24.0-25.7 ms, 4 mips 25.4-26.9 against 36.0-36.8, u16 27.8-28.8 against
    // 32.5-32.9, u8 max pooling 17.7-19.0 against 20.0-23.9, 512x512x64 u64 2x2x1 mode
    // 20.0-20.7 against 21.3-21.8, f32 the same; 1 KiB ahead less, 4-8 KiB no more.
    let line_bytes = in_len * std::mem::size_of::<S>();
    let lines_ahead = if plan.line_factor_position.is_none()
        && contiguous
        && line_bytes <= SHORT_LINE_BYTES
        && reads_stacked_lines_ahead(std::mem::size_of::<S>())
    {
        read_ahead_bytes().div_ceil(line_count * line_bytes)
    } else {
        0
    };
    let mut ahead_coords = tile_start;
    for _ in 0..lines_ahead {
        advance(&mut ahead_coords, &tile_start, &mut unused);
    }
    let (mut offsets, mut line_weights, mut all_real) = layout.lines_of::<N>(&tile_start);
    let mut previous_offsets: Option<[isize; N]> = None;
    for line_number in 0..lines_out {
        // Not `bool::then`: its closure was compiled out of line, and the arrays it
        // returned through memory stalled store forwarding (a fifth of a 4-mip u8
        // pyramid).
        let next = if line_number + 1 < lines_out {
            Some(layout.lines_of::<N>(&next_coords))
        } else {
            None
        };
        let mut lines: [&[S]; N] = [&[]; N];
        let [g0, g1, g2, g3, g4, g5, g6, g7] = &mut *gathered;
        let mut buffers = [g0, g1, g2, g3, g4, g5, g6, g7].into_iter();
        for (line, &offset) in lines.iter_mut().zip(&offsets).take(line_count) {
            *line = src.line(offset, line_axis, in_len, buffers.next().expect("8 buffers"));
        }
        // A kept state that is the results unchanged is reduced into directly.
        let line_start = line * out_len;
        let kept_line = target
            .kept
            .as_deref_mut()
            .map(|kept| &mut kept[line_start..line_start + out_len]);
        // The last level of an as-is render is reduced straight into a contiguous
        // output line. Reduced into `results` and copied out, the copy's stores burst
        // out in one go, all missing the cache, and held up the store buffer: a quarter
        // of 2x2x2 mode of u64 labels.
        let direct_output = if kept_line.is_none() && !staging && writes_directly::<T>(out_len) {
            // SAFETY: this tile is the only writer of its lines, and the slice is
            // dropped at the end of this iteration, before the line is touched again.
            unsafe { target.sink.line_mut(&origin, line_axis, out_len) }
                .and_then(|line| target.render.results_in(line).ok())
        } else {
            None
        };
        let wrote_directly = direct_output.is_some();
        let (line_results, keep_into) = match kept_line {
            None => (direct_output.unwrap_or(&mut results[..]), None),
            Some(line) => match target.keep.results_in(line) {
                Ok(direct) => (direct, None),
                Err(line) => (&mut results[..], Some(line)),
            },
        };
        // A line whose pair partner is missing was weighed above; the weights only
        // matter at edges, so interior lines take the plain loops.
        let weights = (R::WEIGHTED && !all_real).then_some(&line_weights);
        match plan.line_factor_position {
            Some(position) => {
                // Reading goes on in the next output line's input lines; after the
                // tile's last one, a step further the same way, which is where the next
                // tile starts when tiles follow each other along the same axis (a guess
                // is harmless: it is only ever prefetched, so wrapping is right too).
                let next_offsets = match (&next, previous_offsets) {
                    (Some((next_offsets, _, _)), _) => Some(*next_offsets),
                    (None, Some(previous)) => Some(std::array::from_fn(|j| {
                        offsets[j].wrapping_mul(2).wrapping_sub(previous[j])
                    })),
                    (None, None) => None,
                };
                let ahead = match next_offsets {
                    Some(next_offsets) if contiguous => {
                        ReadAhead::at(next_offsets.map(|offset| src.address_of(offset)))
                    }
                    _ => ReadAhead::past_ends(&lines[..line_count]),
                };
                let x_weight = doubled(line_axis);
                if position == 0 {
                    reduce_pairs::<S, R, N, true>(&lines, &ahead, weights, x_weight, position, reducer, line_results);
                } else {
                    reduce_pairs::<S, R, N, false>(&lines, &ahead, weights, x_weight, position, reducer, line_results);
                }
            }
            None => {
                if lines_ahead > 0 && line_number + lines_ahead < lines_out {
                    let (ahead_offsets, _, _) = layout.lines_of::<N>(&ahead_coords);
                    for &offset in &ahead_offsets[..line_count] {
                        prefetch(src.address_of(offset), in_len);
                    }
                    advance(&mut ahead_coords, &tile_start, &mut unused);
                }
                reduce_stacked(&lines, weights, reducer, line_results)
            }
        }
        if staging {
            target
                .render
                .render_line(line_results, &mut target.staged[line_start..line_start + out_len]);
        } else if !wrote_directly {
            target.sink.write_line(&origin, line_axis, line_results, &target.render);
        }
        if let Some(line) = keep_into {
            for (slot, a) in line.iter_mut().zip(line_results.iter()) {
                *slot = target.keep.keep(a);
            }
        }
        previous_offsets = Some(offsets);
        if let Some(next) = next {
            (offsets, line_weights, all_real) = next;
        }
        advance(&mut origin, &tile_origin, &mut unused);
        line = next_line;
        advance(&mut next_coords, &tile_start, &mut next_line);
    }
    if staging {
        target.sink.write_region(
            &target.origin,
            &target.shape,
            line_axis,
            &target.staged[..lines_out * out_len],
            target.transposed,
        );
    }
}

/// Whether a last level's output line of `len` elements (rendered as they are) is
/// reduced into directly. Measured on one thread into preallocated outputs (cause of
/// the exception not known): on 512x512x64 u64 labels 2x2x2 mode ran 1.18-1.20x as
/// fast and 2x2x1 1.15-1.18x, on 1024x1024x64 u8 labels 1.10x; but 2x2x1 mode of u32
/// labels with output lines of 512 and 768 bytes ran 1.10-1.13x slower (1 KiB: within
/// 6% either way over four runs).
fn writes_directly<T>(len: usize) -> bool {
    std::mem::size_of::<T>() != 4 || len * 4 >= SHORTEST_DIRECT_LINE_OF_WORDS
}

/// In bytes; see `writes_directly`.
const SHORTEST_DIRECT_LINE_OF_WORDS: usize = 1024;

/// Where the input lines of each output line of a level's tile start, and how much
/// each weighs.
struct LineLayout<'a> {
    /// The axes output lines step along, with the input step of one output voxel on each.
    steps: [(usize, isize); MAX_NDIM],
    step_count: usize,
    /// The factor axes across lines, the input's shape and strides on them, and the
    /// weight of a real voxel standing for its missing partner.
    across: &'a [usize],
    shape: Dims,
    strides: [isize; MAX_NDIM],
    doubled: [u32; MAX_NDIM],
    /// Where each of the block's lines starts from its lower corner, when every one is
    /// real (one stride further along each across axis whose bit is set).
    interior: [isize; 8],
}

impl<'a> LineLayout<'a> {
    fn new<S: Copy>(
        src: &Source<'_, S>,
        out_shape: &Dims,
        line_axis: usize,
        across: &'a [usize],
        doubled: &impl Fn(usize) -> u32,
    ) -> Self {
        let mut steps = [(0usize, 0isize); MAX_NDIM];
        let mut step_count = 0;
        for axis in (0..MAX_NDIM).filter(|&a| a != line_axis && out_shape[a] > 1) {
            let voxels = if across.contains(&axis) { 2 } else { 1 };
            steps[step_count] = (axis, src.offset_of(axis, voxels));
            step_count += 1;
        }
        LineLayout {
            steps,
            step_count,
            across,
            shape: src.shape,
            strides: *src.strides(),
            doubled: std::array::from_fn(doubled),
            interior: std::array::from_fn(|combo| {
                across
                    .iter()
                    .enumerate()
                    .filter(|&(bit, _)| combo >> bit & 1 == 1)
                    .map(|(_, &axis)| src.stride(axis))
                    .sum()
            }),
        }
    }

    /// The offsets and weights of the input lines of the output line at `coords`: the
    /// lower corner of its blocks, one stride further along each across axis whose bit
    /// is set in the line's index. Past the end of an axis the last voxel stands in for
    /// the missing one. And whether every line is real.
    #[inline(always)]
    fn lines_of<const N: usize>(&self, coords: &Dims) -> ([isize; N], [u32; N], bool) {
        let corner: isize = self.steps[..self.step_count]
            .iter()
            .map(|&(axis, step)| coords[axis] as isize * step)
            .sum();
        // Interior lines, nearly all of them, take their offsets from `interior`: built
        // up in place, one store per line and axis, the array was then copied out in a
        // vector load that waited for those stores (store forwarding fails). That wait
        // was a tenth of 2x2x1 averaging of a C-order u8 volume, with its 64-byte lines.
        let interior = self.across.iter().all(|&axis| 2 * coords[axis] + 1 < self.shape[axis]);
        if interior {
            return (std::array::from_fn(|combo| corner + self.interior[combo]), [1; N], true);
        }
        let mut offsets = [corner; N];
        let mut weights = [1u32; N];
        let mut all_real = true;
        let line_count = 1usize << self.across.len();
        for (bit, &axis) in self.across.iter().enumerate() {
            let has_upper = 2 * coords[axis] + 1 < self.shape[axis];
            all_real &= has_upper;
            for combo in 0..line_count.min(N) {
                let upper = combo >> bit & 1 == 1;
                if has_upper {
                    offsets[combo] += if upper { self.strides[axis] } else { 0 };
                } else {
                    weights[combo] *= if upper { 0 } else { self.doubled[axis] };
                }
            }
        }
        (offsets, weights, all_real)
    }
}

/// The line axis is a factor axis, at `position` among them: output voxel x reduces
/// voxels 2x and 2x+1 of each of the N/2 lines. `ROW_FIRST` is `position == 0`.
#[inline(always)]
fn reduce_pairs<S: Copy, R: BlockReducer<S, N>, const N: usize, const ROW_FIRST: bool>(
    lines: &[&[S]; N],
    ahead: &ReadAhead<S>,
    line_weights: Option<&[u32; N]>,
    x_weight: u32,
    position: usize,
    reducer: &R,
    results: &mut [R::Out],
) {
    let half = N / 2;
    let in_len = lines[0].len();
    let pairs = in_len / 2;
    for line in &lines[..half] {
        assert_eq!(line.len(), in_len);
    }
    match line_weights {
        None if ROW_FIRST => reducer.reduce_line_pairs(&lines[..half], ahead, &mut results[..pairs]),
        None => reducer.reduce_line_pairs_at(position, &lines[..half], ahead, &mut results[..pairs]),
        Some(weights) => {
            for (x, result) in results[..pairs].iter_mut().enumerate() {
                let mut block: [S; N] = [lines[0][0]; N];
                let mut block_weights = [0u32; N];
                for combo in 0..half {
                    for b in 0..2 {
                        block[slot(combo, b, position)] = lines[combo][2 * x + b];
                        block_weights[slot(combo, b, position)] = weights[combo];
                    }
                }
                *result = reducer.reduce_weighted(&block, &block_weights);
            }
        }
    }
    if in_len % 2 == 1 {
        // The last voxel of each line has no partner: it is repeated.
        let mut block: [S; N] = [lines[0][0]; N];
        let mut block_weights = [0u32; N];
        for combo in 0..half {
            let v = lines[combo][in_len - 1];
            let w = line_weights.map_or(1, |w| w[combo]);
            block[slot(combo, 0, position)] = v;
            block[slot(combo, 1, position)] = v;
            block_weights[slot(combo, 0, position)] = w * x_weight;
        }
        results[pairs] = if R::WEIGHTED {
            reducer.reduce_weighted(&block, &block_weights)
        } else {
            reducer.reduce(&block)
        };
    }
}

/// Where value b (0 or 1 along the line) of line `combo` of a block goes in the block's
/// scan order when the line axis is the factor axis at `position`: the line bit goes in
/// at `position` of the scan-order index (2 * combo + b at position 0).
#[inline(always)]
pub(crate) fn slot(combo: usize, b: usize, position: usize) -> usize {
    let low = combo & ((1 << position) - 1);
    ((combo >> position) << (position + 1)) | (b << position) | low
}

/// Inverse of `slot`: scan-order index -> (line, b).
#[inline(always)]
fn unslot(i: usize, position: usize) -> (usize, usize) {
    let low = i & ((1 << position) - 1);
    ((i >> (position + 1) << position) | low, i >> position & 1)
}

/// The line axis is not a factor axis: output voxel x reduces voxel x of each of the N
/// lines, which come in scan order.
#[inline(always)]
fn reduce_stacked<S: Copy, R: BlockReducer<S, N>, const N: usize>(
    lines: &[&[S]; N],
    line_weights: Option<&[u32; N]>,
    reducer: &R,
    results: &mut [R::Out],
) {
    let len = results.len();
    for line in lines {
        assert_eq!(line.len(), len);
    }
    match line_weights {
        None => reducer.reduce_stacked_lines(lines, results),
        Some(weights) => {
            for (x, result) in results.iter_mut().enumerate() {
                let block: [S; N] = std::array::from_fn(|i| lines[i][x]);
                *result = reducer.reduce_weighted(&block, weights);
            }
        }
    }
}

/// `run` for a factor of the 2x2 or 2x2x2 family, with reducers that take blocks of
/// either size.
pub(crate) fn run_family<T, K, A, First, Next, Keep, Render, KeepAt, RenderAt>(
    input: &ArrayViewD<'_, T>,
    family: Family,
    outputs: &mut [ArrayViewMutD<'_, T>],
    levels: &Levels<First, Next, Keep, Render>,
) where
    T: Copy + Default + Send + Sync,
    K: Copy + Default + Send + Sync,
    A: Copy + Default + Send,
    First: BlockReducer<T, 4, Out = A> + BlockReducer<T, 8, Out = A>,
    Next: BlockReducer<K, 4, Out = A> + BlockReducer<K, 8, Out = A>,
    Keep: Fn(usize) -> KeepAt + Sync,
    Render: Fn(usize) -> RenderAt + Sync,
    KeepAt: KeepState<A, K>,
    RenderAt: RenderLine<A, T>,
{
    match family {
        Family::TwoByTwo(axes) => {
            run::<T, K, A, First, Next, Keep, Render, KeepAt, RenderAt, 4>(input, &axes, outputs, levels)
        }
        Family::TwoByTwoByTwo(axes) => {
            run::<T, K, A, First, Next, Keep, Render, KeepAt, RenderAt, 8>(input, &axes, outputs, levels)
        }
        Family::Identity | Family::General => unreachable!("not a factor-2 family: {family:?}"),
    }
}

/// Results per chunk of a line loop (see `ReadAhead`).
pub(crate) const LINE_CHUNK: usize = 32;

/// Folds voxels 2x and 2x + 1 of every line into result x, line after line in address
/// order: each result starts as `empty()`, and `add` takes in each line's pair, so each
/// result sees its values in scan order. The first line starts the results in the same
/// pass, not in a clearing pass of its own, and each line is read in chunks: measured
/// 2x faster for f32 sums (the chunk's loop vectorises) than one plain loop. The lines
/// are read ahead in software where `ahead` says so (see `reads_ahead_in_software`).
#[inline(always)]
pub(crate) fn fold_line_pairs<S: Copy, A>(
    lines: &[&[S]],
    ahead: &ReadAhead<S>,
    results: &mut [A],
    empty: impl Fn() -> A,
    add: impl Fn(&mut A, S, S),
) {
    /// A loop of its own for each way, so the one without read-ahead is the loop timed
    /// on the AMD guest, with nothing tested per chunk. (A test of the `Option` per
    /// chunk measured 1-4% slower on u8 max pooling and i64 averaging in one run on the
    /// Intel guest, and not in the next: within its noise.)
    #[inline(always)]
    fn fold<S: Copy, A>(line: &[S], line_ahead: Option<LineAhead<S>>, results: &mut [A], add: impl Fn(&mut A, S, S)) {
        match line_ahead {
            Some(line_ahead) => fold_chunks(line, results, add, |first| line_ahead.prefetch(first, 2 * LINE_CHUNK)),
            None => fold_chunks(line, results, add, |_| {}),
        }
    }
    #[inline(always)]
    fn fold_chunks<S: Copy, A>(line: &[S], results: &mut [A], add: impl Fn(&mut A, S, S), read_ahead: impl Fn(usize)) {
        // Chunks of results slicing the line, not zipped with chunks of it: the compiler
        // did not inline the set-up of that zip in the cascade's large AVX2 function,
        // which left it dividing by the chunk sizes at run time (4.5% of a 4-mip u8
        // pyramid).
        for (chunk, results) in results.chunks_mut(LINE_CHUNK).enumerate() {
            let first = 2 * LINE_CHUNK * chunk;
            read_ahead(first);
            for (result, pair) in results.iter_mut().zip(line[first..].chunks_exact(2)) {
                add(result, pair[0], pair[1]);
            }
        }
    }
    if let Some((first, rest)) = lines.split_first() {
        fold(first, ahead.in_turn(lines, 0), results, |result, a, b| {
            let mut started = empty();
            add(&mut started, a, b);
            *result = started;
        });
        for (j, line) in rest.iter().enumerate() {
            fold(line, ahead.in_turn(lines, j + 1), results, &add);
        }
    }
}

/// Folds voxel x of every line into result x, line after line in address order: the
/// first line starts each result with `start`, and `add` takes in the other lines, so
/// each result sees its values in scan order. Starting from the first line, not from an
/// "empty" value in a clearing pass of its own, saves one pass over the results:
/// measured 3-6% for u8 max pooling by (1,2,2).
#[inline(always)]
pub(crate) fn fold_stacked_lines<S: Copy, A>(
    lines: &[&[S]],
    results: &mut [A],
    start: impl Fn(S) -> A,
    add: impl Fn(&mut A, S),
) {
    let (first, rest) = lines.split_first().expect("at least one line");
    for (result, &v) in results.iter_mut().zip(first.iter()) {
        *result = start(v);
    }
    for line in rest {
        for (result, &v) in results.iter_mut().zip(line.iter()) {
            add(result, v);
        }
    }
}

/// The environment variable that overrides `reads_ahead_in_software`: `1` reads ahead
/// in software, `0` leaves it to the hardware prefetcher. Read once.
pub const READ_AHEAD_ENV: &str = "TINYBRAIN_READ_AHEAD";

/// Whether this CPU's line loops ask for lines ahead with prefetch instructions
/// (`read_ahead_bytes` ahead), or leave what they can to the hardware prefetcher:
/// `READ_AHEAD_ENV` if set, else on Intel CPUs and AMD Zen 5. Where set, loops that
/// read lines one after the other (sums, min and max) read them ahead, the 2x2 mode
/// rule reads its two lines side by side and ahead, 2x2x2 mode reads each line's next
/// line ahead (on Zen 5 only short lines, see `reads_rows_ahead_line_by_line`), and
/// short lines stacked on each other (C-order volumes) are read ahead by output line
/// (on Zen 5 not bytes, see `reads_stacked_lines_ahead`). Where not, the first read
/// ahead nothing, the 2x2 rule reads a short upper line whole first, and 2x2x2 mode
/// reads short lines' next row ahead in pairs of lines. The same code measured both
/// ways (1024x1024x64 u8, 512x512x64 labels, one thread, preallocated outputs, builds
/// or settings alternated in one process) went opposite ways on the bench's CPUs:
/// - AMD EPYC (Zen 4), without: u8 2x2x1 averaging 1.2-1.27x as fast, 2x2x2
///   1.08-1.12x, u16 1.06-1.09x, i32 1.08-1.12x, u8 max pooling 1.05-1.07x; 2x2 mode
///   of u64 labels 1.6-1.9x, 2x2x2 mode 1.12-1.25x.
/// - Intel Xeon (family 6 model 167), with: u8 2x2x1 averaging 1.38-1.45x as fast,
///   4 mips 1.3-1.35x, sparse 1.3-1.5x, u8 min and max pooling 1.3-1.6x, u16
///   1.13-1.14x, i32 1.2-1.3x, f32 within 2%; 2x2 mode of u64 and u32 labels
///   1.2-1.39x, 2x2x2 mode of u64 labels 1.31-1.34x.
/// - AMD EPYC (Zen 5, family 26 model 2), with, for values wider than a byte (2 KiB
///   ahead): u16 2x2x1 averaging 1.65-1.72x as fast (2x2x2 2.1x, 4 mips 1.5x, C order
///   1.15x), f32 1.07-1.20x (C order 1.3x), i32 1.07-1.19x, u16 max and f32 min
///   pooling 2.1x and 1.5x; 2x2 mode of u64 labels 1.47-1.57x and of u32 labels
///   1.72-2.16x, 2x2x2 mode 1.00-1.07x. Bytes read 2 KiB ahead ran 0.88-0.97x as fast;
///   7 KiB ahead (`FAR_PREFETCH_DISTANCE`), they gain too.
///
/// Other x86 vendors and older AMD CPUs take the Zen 4 way; Zen 3 too, but for the
/// one-mip 64-bit means' lines (`reads_mean_lines_ahead`: it measured mixed, and only
/// those gained). Elsewhere there is no prefetch.
pub(crate) fn reads_ahead_in_software() -> bool {
    read_ahead_choice().in_software()
}

/// How far ahead of its use a line loop asks for a line, in bytes: further on Zen 5
/// (`FAR_PREFETCH_DISTANCE`).
pub(crate) fn read_ahead_bytes() -> usize {
    read_ahead_choice().distance()
}

/// Whether short lines stacked on each other (see `reduce_level`) of `element_bytes`-wide
/// values are read ahead in software: where lines are, except bytes on Zen 5. There,
/// 2x2x1 averaging of C-order 1024x1024x64 volumes (lines of 64 values along z, one
/// thread, preallocated outputs, settings alternated in separate processes) ran 7.3-7.8
/// ms on u8 left to the hardware, 8.3-9.1 read ahead 1-8 KiB; u16 17.2-17.8 left to
/// the hardware, 15.0 read 2 KiB ahead, 11.6-12.2 4-8 KiB ahead; f32 37-38, 27, 18-21.
pub(crate) fn reads_stacked_lines_ahead(element_bytes: usize) -> bool {
    read_ahead_choice().reads_stacked_lines_ahead(element_bytes)
}

/// Whether the one-mip 64-bit means (`average::mean_lines_ahead`) read their lines
/// ahead in software: where every line loop does, and on Zen 3.
pub(crate) fn reads_mean_lines_ahead() -> bool {
    read_ahead_choice().reads_mean_lines_ahead()
}

/// Whether 2x2x2 mode, where it reads ahead in software, asks for each line's next
/// line (the Intel way) rather than for the next row in pairs of lines, as where it
/// leaves reading to the hardware: on the CPUs that read every width ahead in
/// software. On Zen 5 the pairs ran 2 threads 1.08-1.16x as fast (512x512x64 u64
/// labels, random, realistic and sparse, preallocated outputs), each line one thread
/// 1.00-1.07x; there, only rows of short lines go line by line
/// (`mode::x86::EACH_LINE_AHEAD_BYTES`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn reads_rows_ahead_line_by_line() -> bool {
    read_ahead_choice() == ReadAheadChoice::Always
}

fn read_ahead_choice() -> ReadAheadChoice {
    static CHOICE: OnceLock<ReadAheadChoice> = OnceLock::new();
    *CHOICE.get_or_init(|| match std::env::var(READ_AHEAD_ENV).as_deref().map(str::trim) {
        Ok("1") => ReadAheadChoice::Always,
        Ok("0") => ReadAheadChoice::Never,
        _ => ReadAheadChoice::of_this_cpu(),
    })
}

/// How this CPU reads lines ahead (`reads_ahead_in_software`, `read_ahead_bytes`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(any(not(target_arch = "x86_64"), miri), allow(dead_code))]
enum ReadAheadChoice {
    /// In software, `PREFETCH_DISTANCE` ahead (Intel, and `READ_AHEAD_ENV=1`).
    Always,
    /// Left to the hardware prefetcher where it can be (Zen 4, and `READ_AHEAD_ENV=0`).
    Never,
    /// As `Never`, but for the one-mip 64-bit means' lines, in software `PREFETCH_DISTANCE`
    /// ahead (Zen 3).
    MeanLinesOnly,
    /// In software, `FAR_PREFETCH_DISTANCE` ahead (Zen 5).
    FarAhead,
}

impl ReadAheadChoice {
    fn in_software(self) -> bool {
        matches!(self, ReadAheadChoice::Always | ReadAheadChoice::FarAhead)
    }

    fn reads_mean_lines_ahead(self) -> bool {
        self != ReadAheadChoice::Never
    }

    fn distance(self) -> usize {
        match self {
            ReadAheadChoice::FarAhead => FAR_PREFETCH_DISTANCE,
            ReadAheadChoice::Always | ReadAheadChoice::Never | ReadAheadChoice::MeanLinesOnly => PREFETCH_DISTANCE,
        }
    }

    fn reads_stacked_lines_ahead(self, element_bytes: usize) -> bool {
        match self {
            ReadAheadChoice::Always => true,
            ReadAheadChoice::FarAhead => element_bytes > 1,
            ReadAheadChoice::Never | ReadAheadChoice::MeanLinesOnly => false,
        }
    }

    fn of_this_cpu() -> Self {
        // Miri cannot run cpuid (inline assembly): under it, reading is left to the
        // hardware.
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            // SAFETY: every x86_64 CPU has cpuid leaves 0 (the vendor) and 1 (the
            // family). Unsafe before Rust 1.87, a safe function since.
            #[allow(unused_unsafe)]
            let (id, signature) = unsafe { (std::arch::x86_64::__cpuid(0), std::arch::x86_64::__cpuid(1)) };
            let vendor: Vec<u8> = [id.ebx, id.edx, id.ecx].iter().flat_map(|w| w.to_le_bytes()).collect();
            Self::of(&vendor, signature.eax)
        }
        #[cfg(any(not(target_arch = "x86_64"), miri))]
        ReadAheadChoice::Never
    }

    /// The choice for a CPU of this vendor string and cpuid leaf 1 signature.
    #[cfg_attr(any(not(target_arch = "x86_64"), miri), allow(dead_code))]
    fn of(vendor: &[u8], signature: u32) -> Self {
        // The family as x86 defines it: the base family, plus the extended family
        // where the base one is 15.
        let base_family = (signature >> 8) & 0xf;
        let family = if base_family == 0xf {
            base_family + ((signature >> 20) & 0xff)
        } else {
            base_family
        };
        // The model as x86 defines it for families 6 and 15 up: the extended model
        // above the base one.
        let model = (signature >> 4) & 0xf | ((signature >> 16) & 0xf) << 4;
        match vendor {
            b"GenuineIntel" => ReadAheadChoice::Always,
            b"AuthenticAMD" if family >= ZEN5_FAMILY => ReadAheadChoice::FarAhead,
            b"AuthenticAMD" if family == ZEN3_FAMILY && ZEN3_MODELS.iter().any(|models| models.contains(&model)) => {
                ReadAheadChoice::MeanLinesOnly
            }
            _ => ReadAheadChoice::Never,
        }
    }
}

/// AMD's CPU family of Zen 5 (26, 0x1a).
#[cfg_attr(any(not(target_arch = "x86_64"), miri), allow(dead_code))]
const ZEN5_FAMILY: u32 = 0x1a;

/// AMD's CPU family of Zen 3 and Zen 4 (25, 0x19), and the models in it that are Zen 3
/// (EPYC 7003, Ryzen 5000 and 6000); Zen 4 has 0x10-0x1f and 0x60-0xaf.
#[cfg_attr(any(not(target_arch = "x86_64"), miri), allow(dead_code))]
const ZEN3_FAMILY: u32 = 0x19;
#[cfg_attr(any(not(target_arch = "x86_64"), miri), allow(dead_code))]
const ZEN3_MODELS: [std::ops::RangeInclusive<u32>; 3] = [0x00..=0x0f, 0x20..=0x2f, 0x40..=0x5f];

/// How far ahead of its use a line is read into cache, in bytes.
const PREFETCH_DISTANCE: usize = 2048;

/// `PREFETCH_DISTANCE` on Zen 5, where 2 KiB ahead was not far enough: settings
/// alternated in separate processes, one thread, preallocated outputs, the same
/// distance for every line loop (ms, 2 KiB / 7 KiB / 8 KiB ahead): u16 2x2x1 averaging
/// 6.2-6.6 / 4.6-4.7 / 4.5-4.8, u8 4 mips 4.3-4.5 / 3.3-3.4 / 3.3-3.4, u8 2x2x1
/// 2.4-2.6 / - / 2.0-2.1, f32 10.8-10.9 / - / 9.3-9.5, i64 5.7-5.8 / 4.7 / 4.4-4.6,
/// 2x2 mode of u32 labels 3.0-3.1 / 2.1-2.2 / 1.9-2.0, but of u64 labels 5.8-6.1 /
/// 5.0-5.2 / 5.3-5.8 (6 KiB 4.9-5.4): 7 KiB, not 8, for those. 12-16 KiB gained no
/// more and 32 KiB lost again.
const FAR_PREFETCH_DISTANCE: usize = 7168;

/// Where reading goes on after the input lines of one output line: the start of each
/// of the next output line's input lines, in the same order. Line loops read
/// `read_ahead_bytes` ahead, and near the end of a line that is where the next
/// reads are. The memory right after a line is often not that: the lower line of a 2x2
/// block follows the upper one in memory, but it is read side by side with it, and the
/// memory after it is read only by the next output line's upper line. Asking for the
/// wrong lines there left the head of every lower line to demand misses: 2x2x2 u64
/// mode ran at 60% of the read bandwidth.
///
/// The addresses are only ever prefetched, never read, so a wrong guess costs time only.
///
/// It also carries this CPU's choice of how to read ahead: whether in software
/// (`reads_ahead_in_software`) and how far (`read_ahead_bytes`).
pub(crate) struct ReadAhead<S> {
    next: [*const S; MAX_LINES],
    in_software: bool,
    /// `reads_mean_lines_ahead`.
    mean_lines_in_software: bool,
    /// `read_ahead_bytes`.
    distance: usize,
}

/// Input lines of one output line, at most (2x2x2 blocks across lines).
const MAX_LINES: usize = 8;

impl<S> ReadAhead<S> {
    /// Reading goes on at `next[j]` after line j.
    pub(crate) fn at<const L: usize>(next: [*const S; L]) -> Self {
        let mut all = [std::ptr::null(); MAX_LINES];
        all[..L].copy_from_slice(&next);
        Self::going_on_at(all)
    }

    /// Reading goes on right after each line, in memory: the guess when nothing better
    /// is known.
    pub(crate) fn past_ends(lines: &[&[S]]) -> Self {
        let mut next = [std::ptr::null(); MAX_LINES];
        for (next, line) in next.iter_mut().zip(lines) {
            *next = line.as_ptr_range().end;
        }
        Self::going_on_at(next)
    }

    /// Reading goes on at `next[j]` after line j, in the way and as far ahead as this
    /// CPU reads.
    fn going_on_at(next: [*const S; MAX_LINES]) -> Self {
        ReadAhead {
            next,
            in_software: reads_ahead_in_software(),
            mean_lines_in_software: reads_mean_lines_ahead(),
            distance: read_ahead_bytes(),
        }
    }

    /// The same, with lines read one after the other read ahead in software or not,
    /// whatever this CPU's choice (for tests of both ways).
    #[cfg(test)]
    pub(crate) fn with_software(self, in_software: bool) -> Self {
        ReadAhead { in_software, ..self }
    }

    /// Whether this CPU reads ahead in software (`reads_ahead_in_software`).
    #[inline(always)]
    pub(crate) fn in_software(&self) -> bool {
        self.in_software
    }

    /// Whether this CPU reads the one-mip 64-bit means' lines ahead in software
    /// (`reads_mean_lines_ahead`).
    #[inline(always)]
    pub(crate) fn reads_mean_lines_ahead(&self) -> bool {
        self.mean_lines_in_software
    }

    /// The same addresses, for a kernel that sees the lines as another type of the
    /// same size.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn cast<W>(&self) -> ReadAhead<W> {
        assert_eq!(std::mem::size_of::<S>(), std::mem::size_of::<W>());
        ReadAhead {
            next: self.next.map(|p| p.cast::<W>()),
            in_software: self.in_software,
            mean_lines_in_software: self.mean_lines_in_software,
            distance: self.distance,
        }
    }

    /// Line `j` of `lines`, read side by side with the others: past its end, reading
    /// goes on in line j of the next output line.
    #[inline(always)]
    pub(crate) fn side_by_side(&self, lines: &[&[S]], j: usize) -> LineAhead<S> {
        LineAhead::new(lines[j], self.next[j], self.distance)
    }

    /// Line `j` of `lines`, read after line j - 1: past its end, reading goes on in line
    /// j + 1, and after the last line in the next output line's first. None when lines
    /// read in turn are left to the hardware prefetcher.
    #[inline(always)]
    pub(crate) fn in_turn(&self, lines: &[&[S]], j: usize) -> Option<LineAhead<S>> {
        self.in_software.then(|| {
            LineAhead::new(
                lines[j],
                lines.get(j + 1).map_or(self.next[0], |line| line.as_ptr()),
                self.distance,
            )
        })
    }

    /// `side_by_side` for every one of `lines`, in order.
    #[inline(always)]
    pub(crate) fn all_side_by_side<const L: usize>(&self, lines: &[&[S]; L]) -> [LineAhead<S>; L] {
        std::array::from_fn(|j| self.side_by_side(lines, j))
    }

    /// For lines read side by side in pairs (2i and 2i + 1 of `lines`): each pair of
    /// the next output line is read ahead as one run, its first line and then its
    /// second, at twice the pace the pair is read. When a pair's lines follow each
    /// other in memory, that is address order.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn next_in_pairs<const P: usize>(&self, lines: &[&[S]]) -> [PairAhead<S>; P] {
        std::array::from_fn(|i| PairAhead {
            first: self.next[2 * i],
            len: lines[2 * i].len(),
            second_from_start: self.next[2 * i + 1].wrapping_sub(lines[2 * i].len()),
        })
    }
}

/// The next output line's two lines of a pair, read ahead while the pair is reduced.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct PairAhead<S> {
    first: *const S,
    len: usize,
    second_from_start: *const S,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl<S> PairAhead<S> {
    /// Asks for the next pair's `2 * len` elements that correspond to `len` elements
    /// from `position` of the pair being reduced (see `prefetch_into`).
    #[inline(always)]
    pub(crate) fn prefetch<const INTO_L1: bool>(&self, position: usize, len: usize) {
        prefetch_into::<S, INTO_L1>(self.ahead_of(position), 2 * len);
    }

    /// Where the next pair is read while element `position` of this pair is.
    #[inline(always)]
    fn ahead_of(&self, position: usize) -> *const S {
        let at = 2 * position;
        let base = if at < self.len {
            self.first
        } else {
            self.second_from_start
        };
        base.wrapping_add(at)
    }
}

/// One line and where reading goes on after it, set up once per line so a line loop
/// pays a compare and a select per prefetch.
pub(crate) struct LineAhead<S> {
    line: *const S,
    len: usize,
    /// How far ahead it is read, in elements.
    distance: usize,
    /// Where reading goes on, less the line's length: element i past the line's start
    /// lies here + i once i reaches the length.
    then_from_start: *const S,
}

impl<S> LineAhead<S> {
    #[inline(always)]
    fn new(line: &[S], then: *const S, distance_bytes: usize) -> Self {
        LineAhead {
            line: line.as_ptr(),
            len: line.len(),
            distance: distance_bytes / std::mem::size_of::<S>().max(1),
            then_from_start: then.wrapping_sub(line.len()),
        }
    }

    /// The element `distance` elements past element `position`.
    #[inline(always)]
    fn ahead_of(&self, position: usize) -> *const S {
        let ahead = position + self.distance;
        let base = if ahead < self.len {
            self.line
        } else {
            self.then_from_start
        };
        base.wrapping_add(ahead)
    }

    /// Asks for the `len` elements `distance` elements past element `position`,
    /// into L1: a short way ahead of loads that follow soon. Into L2, as `prefetch`
    /// asks, mode of u32 labels ran 1.06-1.08x slower (and so did 2x2x1 averaging of
    /// f32, when its line fold still read ahead here).
    #[inline(always)]
    pub(crate) fn prefetch(&self, position: usize, len: usize) {
        prefetch_into::<S, true>(self.ahead_of(position), len);
    }
}

/// The most bytes of a block row's lines, all but its last, that a kernel reading the
/// lines side by side loads into cache first (`read_into_cache`) on CPUs that leave
/// reading ahead to the hardware (the 2x2 mode's upper line).
pub(crate) const LINES_READ_FIRST_BYTES: usize = 8192;

/// Reads an element of every cache line of `line`, in address order, so the line is
/// in cache before a kernel reads it beside another. Loads, not prefetches: on an AMD
/// EPYC, the 2x2 mode of u64 labels ran at 2,418 MVx/s after loads, 2,217 after a
/// loop of prefetches, and 1,108, as if nothing had been read, after `prefetch` (the
/// same prefetches, unrolled by the compiler).
#[inline(always)]
pub(crate) fn read_into_cache<S>(line: &[S]) {
    let step = (CACHE_LINE_BYTES / std::mem::size_of::<S>().max(1)).max(1);
    for value in line.iter().step_by(step) {
        // SAFETY: `value` refers to an element of the line: valid and aligned for reads.
        // Volatile, so the load is kept although its value is not used.
        unsafe { std::ptr::read_volatile(value) };
    }
}

/// Asks for every cache line of the `len` elements from `start` (which need not be
/// valid: a prefetch is only a hint), as far as the second-level cache. Into L2 rather
/// than L1 for these far reads (the next line, tile or row): on an AMD EPYC (Zen 4,
/// one thread, builds alternated) the same prefetches into L1 left striding of a
/// Fortran-order 1024x1024x64 u8 volume 1.25x slower, 2x2x1 averaging of a C-order one
/// 1.10x, exact 4x4x4 mode of u64 labels 1.05x, and made no path faster. (Presumably
/// a prefetch into L1 holds one of its few miss buffers until the line arrives; not
/// measured, no counters in that guest.) `LineAhead::prefetch` stays on L1.
#[inline(always)]
pub(crate) fn prefetch<S>(start: *const S, len: usize) {
    prefetch_into::<S, false>(start, len);
}

/// `prefetch` of a run that may start anywhere in a cache line, down to the line its
/// last byte falls in (`prefetch` counts whole lines from `start`). Short runs at
/// numpy's usual 16-byte offset otherwise lose their last line: a 64-byte run is two.
#[inline(always)]
pub(crate) fn prefetch_run<S>(start: *const S, len: usize) {
    let (back, bytes) = run_from_line_start(start as usize, len * std::mem::size_of::<S>());
    prefetch(start.cast::<u8>().wrapping_sub(back), bytes);
}

/// For `bytes` bytes at `address`: how far back their first cache line starts, and how
/// many bytes from there reach their last byte.
#[inline(always)]
fn run_from_line_start(address: usize, bytes: usize) -> (usize, usize) {
    let back = address % CACHE_LINE_BYTES;
    (back, back + bytes)
}

/// `prefetch` into the first-level cache, or only as far as the second.
#[inline(always)]
pub(crate) fn prefetch_into<S, const INTO_L1: bool>(start: *const S, len: usize) {
    // A plain count, which folds to straight-line code when `len` is a constant.
    let cache_lines = (len * std::mem::size_of::<S>()).div_ceil(CACHE_LINE_BYTES);
    for line in 0..cache_lines {
        let offset = line * CACHE_LINE_BYTES;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint; it never faults, whatever the address.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
            let address = start.cast::<i8>().wrapping_add(offset);
            if INTO_L1 {
                _mm_prefetch::<_MM_HINT_T0>(address)
            } else {
                _mm_prefetch::<_MM_HINT_T1>(address)
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (start, offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn, ShapeBuilder};
    use std::sync::Mutex;

    #[test]
    fn slots_put_the_line_bit_at_its_position_and_unslot_inverts_them() {
        for position in 0..3 {
            let mut seen = [false; 8];
            for combo in 0..4 {
                for b in 0..2 {
                    let i = slot(combo, b, position);
                    assert_eq!(i >> position & 1, b, "position {position}");
                    assert_eq!(unslot(i, position), (combo, b), "position {position}");
                    seen[i] = true;
                }
            }
            assert!(seen.iter().all(|&s| s), "position {position}: every slot used once");
        }
        for (combo, b) in [(0, 0), (0, 1), (1, 0), (3, 1)] {
            assert_eq!(slot(combo, b, 0), 2 * combo + b);
        }
    }

    /// Records, for every row it is handed, where its lines start and where it is told
    /// reading goes on; reduces nothing.
    struct RowRecorder {
        rows: Mutex<Vec<([*const u64; 2], [*const u64; 2])>>,
    }

    // SAFETY: the pointers are only compared, never read.
    unsafe impl Sync for RowRecorder {}

    impl BlockReducer<u64, 4> for RowRecorder {
        type Out = u64;
        fn reduce(&self, _block: &[u64; 4]) -> u64 {
            0
        }
        fn reduce_line_pairs(&self, lines: &[&[u64]], ahead: &ReadAhead<u64>, _results: &mut [u64]) {
            let starts = [lines[0].as_ptr(), lines[1].as_ptr()];
            self.rows.lock().unwrap().push((starts, [ahead.next[0], ahead.next[1]]));
        }
    }

    #[test]
    fn zen_5_reads_far_ahead_zen_3_only_mean_lines_zen_4_leaves_it_to_the_hardware_intel_reads_near() {
        // cpuid leaf 1 signatures: family 26 model 2 (Zen 5) as read off the bench's
        // guest; family 25 model 1 (Zen 3) and 17 (Zen 4), as read off the bench's
        // guests, and models 0x21 (Zen 3) and 0x61 (Zen 4) of the desktop parts; Intel
        // family 6 model 167.
        let amd = b"AuthenticAMD";
        assert_eq!(ReadAheadChoice::of(amd, 0x00b0_0f21), ReadAheadChoice::FarAhead);
        assert_eq!(ReadAheadChoice::of(amd, 0x00a0_0f11), ReadAheadChoice::MeanLinesOnly);
        assert_eq!(ReadAheadChoice::of(amd, 0x00a2_0f10), ReadAheadChoice::MeanLinesOnly);
        assert_eq!(ReadAheadChoice::of(amd, 0x00a1_0f11), ReadAheadChoice::Never);
        assert_eq!(ReadAheadChoice::of(amd, 0x00a6_0f12), ReadAheadChoice::Never);
        assert_eq!(
            ReadAheadChoice::of(b"GenuineIntel", 0x000a_0671),
            ReadAheadChoice::Always
        );
        assert_eq!(
            ReadAheadChoice::of(b"HygonGenuine", 0x0090_0f01),
            ReadAheadChoice::Never
        );
    }

    #[test]
    fn each_choice_reads_its_own_distance_ahead_and_zen_5_leaves_stacked_bytes_to_the_hardware() {
        use ReadAheadChoice::{Always, FarAhead, MeanLinesOnly, Never};
        assert_eq!(
            [Always, FarAhead, Never, MeanLinesOnly].map(ReadAheadChoice::in_software),
            [true, true, false, false]
        );
        assert_eq!(
            [Always, FarAhead, Never, MeanLinesOnly].map(ReadAheadChoice::reads_mean_lines_ahead),
            [true, true, false, true]
        );
        assert_eq!(MeanLinesOnly.distance(), PREFETCH_DISTANCE);
        assert_eq!(Always.distance(), PREFETCH_DISTANCE);
        assert_eq!(FarAhead.distance(), FAR_PREFETCH_DISTANCE);
        for width in [1, 2, 4, 8] {
            assert!(Always.reads_stacked_lines_ahead(width));
            assert_eq!(FarAhead.reads_stacked_lines_ahead(width), width > 1);
            assert!(!Never.reads_stacked_lines_ahead(width));
            assert!(!MeanLinesOnly.reads_stacked_lines_ahead(width));
        }
        // A line loop asks for what lies the choice's distance ahead.
        let data = [0u16; 8192];
        let lines: [&[u16]; 1] = [&data[..]];
        let ahead = ReadAhead {
            distance: FAR_PREFETCH_DISTANCE,
            ..ReadAhead::past_ends(&lines)
        };
        let far = FAR_PREFETCH_DISTANCE / 2;
        assert_eq!(ahead.side_by_side(&lines, 0).ahead_of(3), data[3 + far..].as_ptr());
    }

    /// The line fold gives the same results whether it reads its lines ahead in software
    /// or not, on lines that end inside a chunk and past it.
    #[test]
    fn line_pairs_fold_alike_read_ahead_in_software_or_not() {
        let data: Vec<u32> = (0..3 * 301).map(|i| (i * 7919 % 1000) as u32).collect();
        let lines: Vec<&[u32]> = data.chunks(301).collect();
        for len in [0, 1, LINE_CHUNK - 1, LINE_CHUNK, LINE_CHUNK + 1, 150] {
            let fold = |software: bool| {
                let ahead = ReadAhead::past_ends(&lines).with_software(software);
                let mut results = vec![u64::MAX; len];
                fold_line_pairs(
                    &lines,
                    &ahead,
                    &mut results,
                    || 0u64,
                    |total, a, b| {
                        *total = 3 * *total + u64::from(a) + 2 * u64::from(b);
                    },
                );
                results
            };
            let want: Vec<u64> = (0..len)
                .map(|x| {
                    lines.iter().fold(0, |total, line| {
                        3 * total + u64::from(line[2 * x]) + 2 * u64::from(line[2 * x + 1])
                    })
                })
                .collect();
            assert_eq!(fold(true), want, "{len} results, read ahead in software");
            assert_eq!(fold(false), want, "{len} results, not");
        }
    }

    #[test]
    fn runs_are_prefetched_from_the_start_of_their_first_cache_line_to_their_last_byte() {
        let lines = |address: usize, bytes: usize| {
            let (back, span) = run_from_line_start(address, bytes);
            ((address - back) / CACHE_LINE_BYTES, span.div_ceil(CACHE_LINE_BYTES))
        };
        // numpy's arrays start 16 bytes into a cache line: 64 bytes from there touch two.
        assert_eq!(lines(16, 64), (0, 2));
        assert_eq!(lines(64, 64), (1, 1));
        assert_eq!(lines(127, 1), (1, 1));
        assert_eq!(lines(127, 2), (1, 2));
        assert_eq!(lines(130, 128), (2, 3));
    }

    /// Every row is told that reading goes on in the lines of the row handed over next:
    /// within a tile, and from a tile's last row to the next tile's first, on a volume
    /// split into several tiles along y and z (one thread, so tiles come in order).
    #[test]
    fn each_row_reads_ahead_into_the_next_rows_lines() {
        // 512 u64 per line: a tile (TILE_BYTES) holds 256 of the 1024 lines of a plane.
        let shape = [512, 1024, 3];
        assert_eq!(TILE_BYTES / (512 * 8), 256);
        let input = ArrayD::<u64>::zeros(IxDyn(&shape).f());
        let mut output = ArrayD::<u64>::zeros(IxDyn(&[256, 512, 3]).f());
        let recorder = || RowRecorder {
            rows: Mutex::new(Vec::new()),
        };
        let levels = Levels {
            first: recorder(),
            next: recorder(),
            keep: |_| |&v: &u64| v,
            render: |_| |&v: &u64| v,
        };
        run::<u64, u64, u64, _, _, _, _, _, _, 4>(&input.view(), &[0, 1], &mut [output.view_mut()], &levels);
        let rows = levels.first.rows.into_inner().unwrap();
        assert_eq!(rows.len(), 512 * 3);
        for pair in rows.windows(2) {
            let ((_, ahead), (next_lines, _)) = (pair[0], pair[1]);
            assert_eq!(ahead, next_lines);
        }
    }

    #[test]
    fn pairs_read_the_next_pair_ahead_first_line_then_second_at_twice_the_pace() {
        let data = [0u16; 4096];
        let lines: [&[u16]; 4] = [&data[0..100], &data[100..200], &data[200..300], &data[300..400]];
        // The next pairs: one contiguous (as in a plane), one not.
        let next = [
            data[1000..].as_ptr(),
            data[1100..].as_ptr(),
            data[2000..].as_ptr(),
            data[3000..].as_ptr(),
        ];
        let [contiguous, apart]: [PairAhead<u16>; 2] = ReadAhead::at(next).next_in_pairs(&lines);
        for position in [0, 1, 49, 50, 51, 99] {
            let (first, second) = if 2 * position < 100 {
                (next[0].wrapping_add(2 * position), next[2].wrapping_add(2 * position))
            } else {
                (
                    next[1].wrapping_add(2 * position - 100),
                    next[3].wrapping_add(2 * position - 100),
                )
            };
            assert_eq!(contiguous.ahead_of(position), first, "{position}");
            assert_eq!(contiguous.ahead_of(position), data[1000 + 2 * position..].as_ptr());
            assert_eq!(apart.ahead_of(position), second, "{position}");
        }
    }

    #[test]
    fn lines_read_side_by_side_go_on_in_their_own_next_line_and_lines_read_in_turn_in_the_following_one() {
        // Long enough for the farthest distance.
        let data = vec![0u8; 4096 + FAR_PREFETCH_DISTANCE];
        let lines: [&[u8]; 2] = [&data[0..100], &data[100..200]];
        let next = [data[1000..].as_ptr(), data[2000..].as_ptr()];
        let ahead = ReadAhead::at(next);
        let distance = read_ahead_bytes();
        // Inside the line: ahead in the line itself.
        let long = [&data[..]];
        assert_eq!(
            ahead.side_by_side(&long, 0).ahead_of(10),
            data[10 + distance..].as_ptr()
        );
        // Past the end of a line read side by side: as far on in its next line.
        let past = 50 + distance - 100;
        assert_eq!(ahead.side_by_side(&lines, 0).ahead_of(50), next[0].wrapping_add(past));
        assert_eq!(ahead.side_by_side(&lines, 1).ahead_of(50), next[1].wrapping_add(past));
        // Read in turn (where that is done in software): line 0 goes on in line 1, line
        // 1 in the next row's line 0.
        let ahead = ahead.with_software(true);
        let in_turn = |j| ahead.in_turn(&lines, j).expect("read ahead in software").ahead_of(50);
        assert_eq!(in_turn(0), lines[1].as_ptr().wrapping_add(past));
        assert_eq!(in_turn(1), next[0].wrapping_add(past));
        assert!(ahead.with_software(false).in_turn(&lines, 0).is_none());
        // Past the ends, when nothing better is known.
        let guess = ReadAhead::past_ends(&lines);
        assert_eq!(guess.next[0], lines[1].as_ptr());
        assert_eq!(guess.next[1], data[200..].as_ptr());
    }
}
