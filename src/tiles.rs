//! A pyramid cut into boxes that are built whole, one box at a time.
//!
//! A mip of a mean over any factor outside the 2x2 and 2x2x2 families is computed from
//! the previous mip's exact means (f64, or a wide sum and count), which were kept for
//! the whole level: 8 to 32 bytes per voxel of the first mip, written to memory and read
//! back. A box of the last mip depends only on the box of the input under it, and boxes
//! that start at multiples of factor^mips (`chunk_alignment`) give every mip exactly the
//! values of the whole volume's (SEMANTICS.md's windows are aligned to the origin and
//! clipped or padded only at the volume's end, which the last box keeps). So the
//! pyramid is built a box at a time, each box's kept state small enough to stay in the
//! caches.

use ndarray::{ArrayViewD, ArrayViewMutD, Axis};

use crate::shape::{memory_order, pad_dims, Dims, MAX_NDIM};
use crate::threads;

/// Kept state of the first mip that one box may hold: half the 512 KiB second-level
/// cache of the smallest CPU measured (Zen 3), so the state and the input lines being
/// read fit beside each other. Not tuned: other sizes were not timed.
const TILE_KEPT_BYTES: usize = 256 << 10;

/// Boxes per thread, at least, on more than one thread when the volume has that many:
/// tasks are taken from one queue in order, so a few per thread keep the shares even.
const TILES_PER_THREAD: usize = 4;

/// A box in coordinates of the last mip, and what it covers in every other.
#[derive(Debug, PartialEq)]
pub(crate) struct TilePlan {
    /// The axes cut into pieces, outermost in memory first.
    axes: Vec<usize>,
    /// Per cut axis, where pieces start in the last mip (0 first).
    starts: Vec<Vec<usize>>,
    /// factor[axis]^(mips - mip) per cut axis and mip (0 = the input): a coordinate of
    /// the last mip times this is the matching coordinate of that mip.
    scale: Vec<Vec<usize>>,
}

impl TilePlan {
    /// Cuts a pyramid of the mip shapes `mips` (mip 0 = the input) along the outermost
    /// axes of `order` (the input's memory order, densest first) until one box of mip 1
    /// times `kept_bytes` per voxel fits `TILE_KEPT_BYTES`, or no axis is left to cut, and
    /// into at least `TILES_PER_THREAD` boxes per thread. None when the pyramid stays
    /// one box.
    pub fn new(mips: &[Dims], factor: &Dims, order: &[usize], kept_bytes: usize, threads: usize) -> Option<TilePlan> {
        let levels = mips.len() - 1;
        if levels < 2 {
            return None;
        }
        let (first, last) = (&mips[1], &mips[levels]);
        // Sizes of a box in mip 1 per unit of the last mip: factor^(levels - 1), which
        // cannot overflow where the last mip is longer than one voxel (the factor^levels
        // then lies below the input's size).
        let unit = |axis: usize| factor[axis].pow(levels as u32 - 1);
        let box_bytes = |tile: &Dims| -> usize {
            (0..MAX_NDIM)
                .map(|axis| match last[axis] {
                    1 => first[axis],
                    _ => (tile[axis] * unit(axis)).min(first[axis]),
                })
                .fold(kept_bytes, usize::saturating_mul)
        };
        // Never cut the input's densest axis (a box would read part of every line it
        // touches) nor axis 0, the one the engine's rows and the kept state run along
        // (short rows cost a loop's set-up per few voxels).
        let densest = order[0];
        let cuttable: Vec<usize> = (order.iter().rev().copied())
            .filter(|&axis| last[axis] > 1 && axis != densest && axis != 0)
            .collect();
        let mut tile = *last;
        for &axis in &cuttable {
            if box_bytes(&tile) <= TILE_KEPT_BYTES {
                break;
            }
            let mut one = tile;
            one[axis] = 1;
            tile[axis] = (TILE_KEPT_BYTES / box_bytes(&one).max(1)).clamp(1, last[axis]);
        }
        let count = |tile: &Dims| {
            (0..MAX_NDIM)
                .map(|axis| last[axis].div_ceil(tile[axis]))
                .product::<usize>()
        };
        let wanted = if threads > 1 { threads * TILES_PER_THREAD } else { 1 };
        for &axis in &cuttable {
            while count(&tile) < wanted && tile[axis] > 1 {
                tile[axis] = tile[axis].div_ceil(2);
            }
        }
        let axes: Vec<usize> = cuttable.into_iter().filter(|&axis| tile[axis] < last[axis]).collect();
        if axes.is_empty() {
            return None;
        }
        let starts = axes
            .iter()
            .map(|&axis| (0..last[axis]).step_by(tile[axis]).collect())
            .collect();
        let scale = axes
            .iter()
            .map(|&axis| {
                (0..=levels)
                    .map(|mip| factor[axis].pow((levels - mip) as u32))
                    .collect()
            })
            .collect();
        Some(TilePlan { axes, starts, scale })
    }

    /// How many boxes there are.
    pub fn len(&self) -> usize {
        self.starts.iter().map(Vec::len).product()
    }

    /// Cuts `view`, a view of mip `mip`, into its boxes, in the order of `split` for
    /// every mip: the first cut axis counting slowest.
    fn split<V>(&self, view: V, mip: usize, split_at: impl Fn(V, Axis, usize) -> (V, V)) -> Vec<V> {
        let mut pieces = vec![view];
        for ((&axis, starts), scale) in self.axes.iter().zip(&self.starts).zip(&self.scale) {
            let mut cut = Vec::with_capacity(pieces.len() * starts.len());
            for piece in pieces {
                let mut rest = piece;
                let mut taken = 0;
                for &start in &starts[1..] {
                    let at = start * scale[mip];
                    let (head, tail) = split_at(rest, Axis(axis), at - taken);
                    cut.push(head);
                    rest = tail;
                    taken = at;
                }
                cut.push(rest);
            }
            pieces = cut;
        }
        pieces
    }
}

/// Runs `build` on every box of `input` with the matching boxes of `outputs` (mip 1 up),
/// as tasks over the call's threads, each with a state from `init` per thread; or once on
/// the whole, when no cut is worth it. Each box's mips are its share of the whole
/// pyramid's, for any `factor` windows aligned to the origin (see the module).
pub(crate) fn build_in_tiles<T, State>(
    input: &ArrayViewD<'_, T>,
    factor: &Dims,
    outputs: &mut [ArrayViewMutD<'_, T>],
    kept_bytes: usize,
    init: impl Fn() -> State + Sync + Send,
    build: impl Fn(&mut State, &ArrayViewD<'_, T>, &mut [ArrayViewMutD<'_, T>]) + Sync + Send,
) where
    T: Copy + Send + Sync,
{
    let mips: Vec<Dims> = std::iter::once(input.shape())
        .chain(outputs.iter().map(|output| output.shape()))
        .map(pad_dims)
        .collect();
    // Cut along the input's outermost axes, so that each box of the input is read along
    // its lines. (Cut along a Fortran-ordered output's instead, a C-order input's box was
    // one z slice, a 64th of each line it touched: 3 mips of 3x3x1 of 1024x1024x64 u8
    // took 311 ms against 113 uncut; cut along x too, its staged rows were a few voxels
    // long: 199 ms.) A box that is not contiguous in an output is written through a copy.
    let mut order = memory_order(input.shape(), input.strides());
    order.extend(order.len()..MAX_NDIM);
    let threads = threads::current_threads();
    let Some(plan) = TilePlan::new(&mips, factor, &order, kept_bytes, threads) else {
        return build(&mut init(), input, outputs);
    };
    let inputs = plan.split(input.view(), 0, |view, axis, at| view.split_at(axis, at));
    debug_assert_eq!(inputs.len(), plan.len());
    let mut per_mip: Vec<_> = outputs
        .iter_mut()
        .enumerate()
        .map(|(mip, output)| {
            let pieces = plan.split(output.view_mut(), mip + 1, |view, axis, at| view.split_at(axis, at));
            pieces.into_iter()
        })
        .collect();
    let tasks: Vec<(ArrayViewD<'_, T>, Vec<ArrayViewMutD<'_, T>>)> = inputs
        .into_iter()
        .map(|input| {
            let outputs = per_mip
                .iter_mut()
                .map(|pieces| pieces.next().expect("one piece per box"))
                .collect();
            (input, outputs)
        })
        .collect();
    threads::for_each_init(tasks, init, |state, (input, mut outputs)| {
        build(state, &input, &mut outputs)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::mip_shape;
    use ndarray::ShapeBuilder;

    fn mips_of(shape: &[usize], factor: &[usize], levels: usize) -> Vec<Dims> {
        (0..=levels)
            .map(|mip| pad_dims(&mip_shape(shape, factor, mip)))
            .collect()
    }

    #[test]
    fn boxes_cover_every_mip_once_at_multiples_of_factor_to_the_remaining_mips() {
        let shape = [1000, 301, 7];
        let factor = pad_dims(&[3, 3, 1]);
        let mips = mips_of(&shape, &factor[..3], 3);
        let order: Vec<usize> = (0..MAX_NDIM).collect();
        let plan = TilePlan::new(&mips, &factor, &order, 8, 2).expect("a volume this size is cut");
        // Cut along z first (one slice per box: 334x101 f64 are over the budget), then y.
        assert_eq!(plan.axes, [2, 1]);
        assert_eq!(plan.starts[0], (0..7).collect::<Vec<_>>());
        for (mip, shape) in mips.iter().enumerate() {
            let data: Vec<u32> = (0..shape.iter().product::<usize>() as u32).collect();
            let view = ArrayViewD::from_shape(ndarray::IxDyn(&shape[..3]).f(), &data).unwrap();
            let pieces = plan.split(view.view(), mip, |v, axis, at| v.split_at(axis, at));
            assert_eq!(pieces.len(), plan.len());
            let mut seen: Vec<u32> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
            seen.sort_unstable();
            assert_eq!(seen, data, "mip {mip}: every voxel in exactly one box");
            for piece in &pieces {
                // A box starts where the last mip's box starts, scaled to this mip.
                let origin = piece[&[0usize, 0, 0][..]] as usize;
                let (y, z) = ((origin / shape[0]) % shape[1], origin / (shape[0] * shape[1]));
                assert_eq!(origin % shape[0], 0);
                assert_eq!(y % 3usize.pow(3 - mip as u32), 0, "mip {mip}: box at y {y}");
                assert!(z < shape[2]);
            }
        }
    }

    #[test]
    fn neither_the_inputs_densest_axis_nor_axis_0_is_cut() {
        let factor = pad_dims(&[3, 3, 1]);
        let mips = mips_of(&[1000, 301, 64], &factor[..3], 3);
        let c_order: Vec<usize> = [2, 1, 0].into_iter().chain(3..MAX_NDIM).collect();
        let plan = TilePlan::new(&mips, &factor, &c_order, 8, 1).unwrap();
        assert_eq!(plan.axes, [1]);
        // Each box is over budget, as far as it can be cut: one unit of the last mip.
        assert_eq!(plan.len(), mips[3][1]);
        let y_last: Vec<usize> = [1, 0, 2].into_iter().chain(3..MAX_NDIM).collect();
        assert_eq!(TilePlan::new(&mips, &factor, &y_last, 8, 1).unwrap().axes, [2]);
        let two_d = mips_of(&[4001, 131], &[5, 3], 2);
        let c_order: Vec<usize> = [1, 0].into_iter().chain(2..MAX_NDIM).collect();
        assert_eq!(TilePlan::new(&two_d, &pad_dims(&[5, 3]), &c_order, 8, 2), None);
    }

    #[test]
    fn small_pyramids_and_single_mips_stay_whole() {
        let order: Vec<usize> = (0..MAX_NDIM).collect();
        let factor = pad_dims(&[3, 3, 1]);
        assert_eq!(
            TilePlan::new(&mips_of(&[100, 100, 4], &factor[..3], 1), &factor, &order, 8, 1),
            None
        );
        // The last mip is one voxel: nothing to cut at.
        assert_eq!(
            TilePlan::new(&mips_of(&[9, 9, 1], &factor[..3], 2), &factor, &order, 8, 2),
            None
        );
        // Small enough and one thread: one box.
        assert_eq!(
            TilePlan::new(&mips_of(&[90, 90, 1], &factor[..3], 2), &factor, &order, 8, 1),
            None
        );
        // The same on four threads: cut for balance.
        let plan = TilePlan::new(&mips_of(&[90, 90, 1], &factor[..3], 2), &factor, &order, 8, 4).unwrap();
        assert!(plan.len() >= 10, "{plan:?}");
    }
}
