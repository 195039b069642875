//! Average pooling (SEMANTICS.md, "Average pooling"). Three schemes:
//! - 8/16-bit integers, 2x2 and 2x2x2 families, not sparse: tinybrain's shifted
//!   accumulator, including the precision it drops once per cycle of mips;
//! - exact weighted means (32/64-bit integers in the narrowest of i32/i64/i128 that
//!   cannot overflow, floats in f64, and every sparse average): sum / count. Dense
//!   2x2 / 2x2x2 means carry only the sum (the count is a constant of the mip); sparse
//!   8- to 32-bit ones pack the count above the sum in one integer, sparse 64-bit ones
//!   split the sum in two u64s with the count above the low part; the rest carry a
//!   (sum, count) pair per voxel;
//! - any other factor: the clipped mean of the previous mip, carried in f64.

use std::any::TypeId;
use std::ops::AddAssign;

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::cascade::{self, BlockReducer, KeepState, KeptAsIs, Levels, LineAhead, ReadAhead, LINE_CHUNK};
use crate::dtype::{AveragingClass, DType, Element};
use crate::engine::{fill_output, reduce_level_rendered, Edge, Reducer, Source, Window};
use crate::error::{bail, Result};
use crate::kernels::{BlockSum, Scale, Sum};
use crate::shape::{family, pad_dims, Dims, Family, MAX_NDIM};
use crate::sink::RenderLine;
use crate::tiles;

#[cfg(target_arch = "x86_64")]
mod x86;

/// Averages one validated request.
///
/// Every choice that depends on `T` alone is made by a `const { }` test that comes first
/// in its condition, here and in the functions below: rustc then leaves the branches that
/// `T` can never take out of its instance, where it compiled each of them (a whole
/// cascade, portable and AVX2) only for the optimiser to throw it away. (rustc 1.95 did
/// not prune on a plain `T::BITS <= 8` or `match T::AVERAGING`.) Each such test is implied
/// by the run-time test after it, so no branch that could run is lost. Measured: 380
/// cascade instances before, 152 after; the release build took 7.8 minutes instead of
/// 12.9 on the 2-core CI machine, and the library shrank from 34 to 24 MB.
pub(crate) fn downsample<T: Element>(
    input: &ArrayViewD<'_, T>,
    factor: &[usize],
    sparse: bool,
    outputs: &mut [ArrayViewMutD<'_, T>],
) -> Result<()> {
    let fam = family(factor);
    let factor = pad_dims(factor);
    let in_family = fam.factor_axes().is_some();
    if !in_family && !sparse {
        mean_of_means(input, &factor, outputs);
        return Ok(());
    }
    if const { matches!(T::AVERAGING, AveragingClass::Float) } {
        exact_mean::<T, f64>(input, &factor, fam, sparse, Division::Float, outputs);
        return Ok(());
    }
    if const { matches!(T::AVERAGING, AveragingClass::NarrowInt) } && in_family && !sparse {
        shifted_accumulator_mean(input, fam, outputs);
        return Ok(());
    }
    integer_mean(input, &factor, fam, sparse, outputs)
}

/// Whether `T` is an unsigned integer type, as a constant (see `downsample`).
const fn unsigned<T: Element>() -> bool {
    matches!(T::DTYPE, DType::U8 | DType::U16 | DType::U32 | DType::U64)
}

/// 8/16-bit integers, 2x2 and 2x2x2 families, not sparse: tinybrain's shifted scheme.
fn shifted_accumulator_mean<T: Element>(input: &ArrayViewD<'_, T>, fam: Family, outputs: &mut [ArrayViewMutD<'_, T>]) {
    // The accumulator peaks just before it is shifted at the end of a cycle: a
    // cycle of 2x2 mips fits i32 (at most 65535 * 4^4), and so does a 16-bit
    // 2x2x2 cycle (65535 * 8^5 < 2^31); an 8-bit 2x2x2 one only up to its 7th
    // mip (255 * 8^8 = 2^32 at the 8th), past which it needs i64.
    let (cycle, bits) = cadence::<T>(fam);
    // 16-bit lanes where the cycle's peak fits them (8-bit 2x2 pyramids, and
    // 8-bit 2x2x2 ones of up to 2 mips): twice the lanes of i32 per vector, and
    // half the kept state (measured: 4 mips of u8 2x2x1, 7.4-7.7 ms against
    // 10.3-11.5 in i32).
    let peak_bits = T::BITS + bits * outputs.len().min(cycle) as u32;
    if const { T::BITS <= 8 && unsigned::<T>() } && peak_bits <= 16 {
        shifted_accumulator::<T, u16>(input, fam, (cycle, bits), outputs)
    } else if const { T::BITS <= 8 && !unsigned::<T>() } && peak_bits <= 16 {
        shifted_accumulator::<T, i16>(input, fam, (cycle, bits), outputs)
    } else if const { T::BITS == 16 } || matches!(fam, Family::TwoByTwo(_)) || outputs.len() < cycle {
        shifted_accumulator::<T, i32>(input, fam, (cycle, bits), outputs)
    } else {
        shifted_accumulator::<T, i64>(input, fam, (cycle, bits), outputs)
    }
}

/// Exact means of integers (every sparse average, and 32/64-bit dense ones).
fn integer_mean<T: Element>(
    input: &ArrayViewD<'_, T>,
    factor: &Dims,
    fam: Family,
    sparse: bool,
    outputs: &mut [ArrayViewMutD<'_, T>],
) -> Result<()> {
    let in_family = fam.factor_axes().is_some();
    // Exact means weigh replicated voxels instead of repeating them (see Edge).
    let edge = if in_family { Edge::ReplicateWeighted } else { Edge::Clip };
    // The narrowest accumulator that cannot overflow: i32 for 8-bit and most
    // 16-bit pyramids, i64 for 32-bit inputs over a reasonable pyramid, i128
    // beyond. Narrower lanes vectorise wider (and convert to f64 in SIMD).
    // `bits` is at least T::BITS, which the constant tests below rely on.
    let bits = sum_bits::<T>(input.shape(), factor, edge, outputs.len());
    // Signed integers too: against exact (sum, count) pairs (1024x1024x64 values of
    // 0-49, one thread, Zen 5, builds alternated in one process), 2x2x1 and 2x2x2 of
    // i8 3.74x and 3.30x as fast, i16 3.07x and 2.36x, i32 1.17x and 1.33x; the pairs
    // had left i8 and i16 at tinybrain's speed.
    if const { !matches!(T::AVERAGING, AveragingClass::Float) } && in_family && sparse {
        // Count and sum fit one integer: see `packed_sparse_mean`.
        let weight_bits = bits - T::BITS as f64;
        // One mip of u8 (sums to 2040, counts to 8): 16-bit lanes, twice as
        // many per vector (measured: u8 2x2x1, 6.2-6.7 ms against 6.9-10.5
        // packed in u32, on a noisy guest).
        if const { T::BITS <= 11 } && bits <= 11.0 && weight_bits <= 5.0 {
            packed_sparse_mean::<T, u16, 11>(input, fam, outputs);
            return Ok(());
        }
        if const { T::BITS <= 16 } && bits <= 16.0 && weight_bits <= 15.0 {
            packed_sparse_mean::<T, u32, 16>(input, fam, outputs);
            return Ok(());
        }
        // 8-bit values over five 2x2 mips or three 2x2x2 ones (counts up to 2^11). In
        // u64 before: 512x512x64, 30% zeros, one thread, builds alternated in one process
        // (Zen 5): 2x2x2 3 mips of u8 2.45x as fast, of i8 2.51x; 2x2x1 5 mips 2.89x.
        if const { T::BITS <= 20 } && bits <= 20.0 && weight_bits <= 11.0 {
            packed_sparse_mean::<T, u32, 20>(input, fam, outputs);
            return Ok(());
        }
        // u16 over up to three 2x2 mips or two 2x2x2 ones. In u64 (with f64 divisions)
        // before: 1024x1024x64 u16, 30% zeros, one thread, builds alternated in one
        // process (Zen 5): 2x2x1 3.15-3.17x as fast for 1-3 mips, 2x2x2 2.39-2.44x.
        if const { T::BITS <= 24 } && bits <= 24.0 && weight_bits <= 7.0 {
            packed_sparse_mean::<T, u32, 24>(input, fam, outputs);
            return Ok(());
        }
        if const { T::BITS <= 40 } && bits <= 40.0 && weight_bits <= 23.0 {
            packed_sparse_mean::<T, u64, 40>(input, fam, outputs);
            return Ok(());
        }
        if const { T::BITS >= 32 } && weight_bits <= SparseSplitSum::MAX_SPLIT as f64 {
            sparse_split_mean(input, fam, outputs);
            return Ok(());
        }
    }
    let division = if in_family && !sparse {
        Division::Shift
    } else if bits < f64::MANTISSA_DIGITS as f64 {
        Division::Float
    } else {
        Division::Integer
    };
    if const { T::BITS < 31 } && bits < 31.0 {
        exact_mean::<T, i32>(input, factor, fam, sparse, division, outputs);
    } else if const { T::BITS < 63 } && bits < 63.0 {
        exact_mean::<T, i64>(input, factor, fam, sparse, division, outputs);
    } else if const { matches!(T::AVERAGING, AveragingClass::WideInt) }
        && division == Division::Shift
        && bits - T::BITS as f64 <= SplitSum::MAX_SPLIT as f64
    {
        split_sum_mean(input, fam, outputs);
    } else if bits < 127.0 {
        exact_mean::<T, i128>(input, factor, fam, sparse, division, outputs);
    } else {
        bail!(
            Unsupported,
            "averaging {} mips of this shape could overflow the 128-bit accumulator",
            outputs.len()
        );
    }
    Ok(())
}

/// (mips per cycle, shift bits per mip): mip m is rendered as acc >> bits*((m % cycle) + 1).
fn cadence<T: Element>(fam: Family) -> (usize, u32) {
    match (fam, T::BITS) {
        (Family::TwoByTwo(_), _) => (4, 2),
        (_, 8) => (8, 3),
        _ => (5, 3),
    }
}

/// Accumulators of the shifted scheme: 16 bits where the cycle's peak fits (unsigned
/// for unsigned inputs: u8 over a 2x2 cycle peaks at 255 * 4^4 = 65280), else i32
/// where a whole cycle fits, i64 where it does not (u8 over the 8 mips of a 2x2x2 cycle
/// reaches 255 * 8^8 > 2^31).
trait ShiftedAccumulator:
    Copy + Default + Send + Sync + std::ops::AddAssign + std::ops::Shr<u32, Output = Self> + Scale + 'static
{
    fn widen<T: Element>(v: T) -> Self;
    /// Division by 2^shift truncated toward zero, as tinybrain renders signed sums.
    fn shift_toward_zero(self, shift: u32) -> Self;
    fn to_i128(self) -> i128;
}

macro_rules! impl_shifted_accumulator {
    ($($t:ty),*) => {$(
        impl ShiftedAccumulator for $t {
            #[inline(always)]
            fn widen<T: Element>(v: T) -> Self {
                v.to_i128() as $t
            }
            /// Branch-free, so the render loop vectorises: a negative sum gets
            /// 2^shift - 1 added before the (flooring) arithmetic shift.
            #[inline(always)]
            fn shift_toward_zero(self, shift: u32) -> Self {
                let bias = (self >> (<$t>::BITS - 1)) & ((1 << shift) - 1);
                (self + bias) >> shift
            }
            #[inline(always)]
            fn to_i128(self) -> i128 {
                self as i128
            }
        }
    )*};
}
// i128 only for exact means, which share the rounding toward zero.
impl_shifted_accumulator!(i16, i32, i64, i128);

impl ShiftedAccumulator for u16 {
    #[inline(always)]
    fn widen<T: Element>(v: T) -> Self {
        v.to_i128() as u16
    }
    /// Never negative: the plain shift already truncates toward zero.
    #[inline(always)]
    fn shift_toward_zero(self, shift: u32) -> Self {
        self >> shift
    }
    #[inline(always)]
    fn to_i128(self) -> i128 {
        self as i128
    }
}

/// tinybrain's multi-mip scheme: the accumulator is never divided, only shifted when a
/// mip is rendered, and itself shifted (floored) after the last mip of each cycle.
/// Replicate padding is applied at every level, including on axes of size 1.
fn shifted_accumulator<T: Element, A: ShiftedAccumulator>(
    input: &ArrayViewD<'_, T>,
    family: Family,
    (cycle, bits): (usize, u32),
    outputs: &mut [ArrayViewMutD<'_, T>],
) {
    // Per mip: (shift applied when rendering, shift applied to the kept accumulator).
    // Looked up rather than computed, so the voxel loops do no division.
    let shifts: Vec<(u32, u32)> = (0..outputs.len())
        .map(|mip| {
            let render_shift = bits * ((mip % cycle) as u32 + 1);
            // After the last mip of a cycle the accumulator itself drops the rendered
            // bits (a shift by 0 elsewhere: no branch in the voxel loop).
            let keep_shift = if mip % cycle == cycle - 1 { render_shift } else { 0 };
            (render_shift, keep_shift)
        })
        .collect();
    let levels = Levels {
        first: BytePairSums::<_, false, false>::new(BlockSum(A::widen::<T>), 0),
        next: KeptSums,
        keep: |mip: usize| KeptShifted { shift: shifts[mip].1 },
        render: |mip: usize| ShiftedRender { shift: shifts[mip].0 },
    };
    cascade::run_family(input, family, outputs, &levels);
}

/// The loop shared by the averaging schemes outside the 2x2 and 2x2x2 families: level 0
/// reduces the input with `first`, later levels reduce the kept state of the previous
/// level with `next`; each level's results are rendered into that mip's output and,
/// unless it is the last mip, kept (`keep`) in one of two buffers. A pyramid whose kept
/// state would outgrow the caches is built a box at a time (`tiles`), each thread
/// reusing its two buffers from box to box.
#[allow(clippy::too_many_arguments)]
fn accumulate_pyramid<T, A, K, First, Next>(
    input: &ArrayViewD<'_, T>,
    factor: &Dims,
    outputs: &mut [ArrayViewMutD<'_, T>],
    window_for: impl Fn(&Dims) -> Window + Sync,
    first: First,
    next: Next,
    keep: impl Fn(usize, &A) -> K + Sync,
    render: impl Fn(usize, &A) -> T + Sync,
) where
    T: Element,
    A: Clone + Default + Send,
    K: Copy + Default + Send + Sync,
    First: Reducer<T, Output = A>,
    Next: Reducer<K, Output = A>,
{
    let kept_bytes = std::mem::size_of::<K>();
    let buffers = || (Vec::new(), Vec::new());
    let levels = PyramidLevels {
        window_for,
        first,
        next,
        keep,
        render,
    };
    tiles::build_in_tiles(
        input,
        factor,
        outputs,
        kept_bytes,
        buffers,
        |buffers, input, outputs| levels.build(input, outputs, buffers),
    );
}

/// What `accumulate_pyramid` does at each level.
struct PyramidLevels<WindowFor, First, Next, Keep, Render> {
    window_for: WindowFor,
    first: First,
    next: Next,
    keep: Keep,
    render: Render,
}

impl<WindowFor, First, Next, Keep, Render> PyramidLevels<WindowFor, First, Next, Keep, Render> {
    /// The mips of `input` into `outputs`, each level's kept state in one of `buffers`.
    fn build<T, A, K>(
        &self,
        input: &ArrayViewD<'_, T>,
        outputs: &mut [ArrayViewMutD<'_, T>],
        (previous, current): &mut (Vec<K>, Vec<K>),
    ) where
        T: Element,
        A: Clone + Default + Send,
        K: Copy + Default + Send + Sync,
        WindowFor: Fn(&Dims) -> Window + Sync,
        First: Reducer<T, Output = A>,
        Next: Reducer<K, Output = A>,
        Keep: Fn(usize, &A) -> K + Sync,
        Render: Fn(usize, &A) -> T + Sync,
    {
        let num_mips = outputs.len();
        let mut shape = pad_dims(input.shape());
        for (mip, out) in outputs.iter_mut().enumerate() {
            let window = (self.window_for)(&shape);
            let out_shape = window.output_shape(&shape);
            let state = if mip + 1 < num_mips {
                let len = volume(&out_shape);
                if current.capacity() < len {
                    // A fresh zeroed allocation comes from the OS already zeroed (calloc),
                    // which skips the memset a resize would do over the whole level.
                    *current = vec![K::default(); len];
                } else {
                    current.truncate(len);
                    current.resize(len, K::default());
                }
                Some(current.as_mut_slice())
            } else {
                None
            };
            let keep = |a: &A| (self.keep)(mip, a);
            let render = |a: &A| (self.render)(mip, a);
            fill_output(out, |out| {
                if mip == 0 {
                    let src = Source::from_view(input);
                    reduce_level_rendered(src, &window, self.first.clone(), state, keep, out, render);
                } else {
                    let src = Source::from_fortran(previous, &shape);
                    reduce_level_rendered(src, &window, self.next.clone(), state, keep, out, render);
                }
            });
            std::mem::swap(previous, current);
            shape = out_shape;
        }
    }
}

/// A running (sum, count); a level of these is a level of exact means.
#[derive(Clone, Copy, Default, Debug)]
struct Weighted<A> {
    sum: A,
    count: A,
}

impl<A: Scale> Scale for Weighted<A> {
    const EXACT: bool = A::EXACT;
    #[inline(always)]
    fn times(self, copies: u32) -> Self {
        Weighted {
            sum: self.sum.times(copies),
            count: self.count.times(copies),
        }
    }
}

impl<A: AddAssign> AddAssign for Weighted<A> {
    #[inline(always)]
    fn add_assign(&mut self, other: Self) {
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// The accumulator types of exact means: i64 for 8/16-bit integers (cheaper, and
/// enough), i128 for 32/64-bit integers, f64 for floats.
trait MeanAccumulator: Copy + Default + Send + Sync + AddAssign + Scale + 'static {
    const ONE: Self;
    fn from_element<T: Element>(v: T) -> Self;
    /// sum / count in the output type (truncated toward zero for integers); 0 when the
    /// count is 0 (an all-zero sparse window).
    fn render<T: Element>(w: Weighted<Self>, division: Division) -> T;

    /// The mean of a dense block of the 2x2 or 2x2x2 family, whose count is a power of
    /// two and never 0: an integer sum is shifted, a float one multiplied.
    fn render_power_of_two<T: Element>(sum: Self, count: Self) -> T;
}

/// How an integer mean divides: every way gives sum / count truncated toward zero, but
/// a hardware integer division per voxel costs more than the rest of the pyramid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Division {
    /// The count is a power of two (non-sparse 2x2 and 2x2x2 families): a shift.
    Shift,
    /// |sum| < 2^53: a float division, whose truncation is then exact (an integer
    /// quotient is exact, and any other lies at least 1/count from the next integer,
    /// more than the rounding error |sum| / count * 2^-53).
    Float,
    Integer,
}

macro_rules! impl_integer_mean {
    ($($t:ty),*) => {$(
        impl MeanAccumulator for $t {
            const ONE: Self = 1;
            #[inline(always)]
            fn from_element<T: Element>(v: T) -> Self {
                v.to_i128() as $t
            }
            #[inline(always)]
            fn render<T: Element>(w: Weighted<Self>, division: Division) -> T {
                if w.count == 0 {
                    return T::default();
                }
                let mean = match division {
                    Division::Shift => w.sum.shift_toward_zero(w.count.trailing_zeros()),
                    Division::Float => (w.sum as f64 / w.count as f64) as $t,
                    Division::Integer => w.sum / w.count,
                };
                T::from_i128(mean as i128)
            }

            /// `render` with `Division::Shift`, without its per-voxel tests of the count
            /// and the division: the loop then runs without branches (2x2x1 i32, 4
            /// mips: the rendering loop was a third of the time).
            #[inline(always)]
            fn render_power_of_two<T: Element>(sum: Self, count: Self) -> T {
                debug_assert!(count > 0 && count.count_ones() == 1);
                T::from_i128(sum.shift_toward_zero(count.trailing_zeros()) as i128)
            }
        }
    )*};
}
impl_integer_mean!(i32, i64, i128);

impl MeanAccumulator for f64 {
    const ONE: Self = 1.0;
    #[inline(always)]
    fn from_element<T: Element>(v: T) -> Self {
        v.to_f64()
    }
    #[inline(always)]
    fn render<T: Element>(w: Weighted<Self>, _: Division) -> T {
        if w.count == 0.0 {
            T::default()
        } else {
            T::from_f64(w.sum / w.count)
        }
    }

    /// 1 / 2^k is exact, and a product, like a quotient, is the exact value rounded
    /// once: sum * (1 / count) is sum / count to the bit. The reciprocal is the same for
    /// every voxel, so it leaves the loop, and a division per voxel became a
    /// multiplication (float32 1024x1024x64 by 2x2x1, one thread: 30.3 -> 26.8 ms).
    #[inline(always)]
    fn render_power_of_two<T: Element>(sum: Self, count: Self) -> T {
        debug_assert!(count > 0.0 && (count.to_bits() & ((1 << 52) - 1)) == 0);
        T::from_f64(sum * (1.0 / count))
    }
}

/// The window of one level of exact means. An axis of size 1 would only be replicated
/// onto itself, which scales sum and count alike: it is left out so the counts (and
/// i128 sums) stay bounded by the real volume, however many mips are asked for.
fn exact_window(factor: &Dims, shape: &Dims, edge: Edge) -> Window {
    let mut window = Window::pooling(factor, edge);
    for axis in 0..MAX_NDIM {
        if shape[axis] == 1 {
            window.extent[axis] = 1;
        }
    }
    window
}

/// Exact means: over factor-2 blocks whose replicated voxels are weighed (the 2x2 and
/// 2x2x2 families), or over clipped windows (any other factor).
fn exact_mean<T: Element, A: MeanAccumulator>(
    input: &ArrayViewD<'_, T>,
    factor: &Dims,
    family: Family,
    sparse: bool,
    division: Division,
    outputs: &mut [ArrayViewMutD<'_, T>],
) {
    let weigh = move |v: T| {
        if sparse && v.is_zero() {
            Weighted::default()
        } else {
            Weighted {
                sum: A::from_element(v),
                count: A::ONE,
            }
        }
    };
    let same = |w: Weighted<A>| w;
    let family_axes = family.factor_axes();
    // Dense 8/16-bit pyramids of these families take the shifted scheme instead
    // (`downsample`), so their instances leave this branch out.
    if const { !matches!(T::AVERAGING, AveragingClass::NarrowInt) } && !sparse {
        if let Some(axes) = family_axes {
            // Without sparse zeros every block of a level weighs the same (an edge voxel
            // counts for its padding copy), so the count is a constant of the mip and only
            // the sums are carried: half the state, in plain integer lanes that vectorise.
            let counts = block_counts::<A>(input.shape(), axes, outputs.len());
            let levels = Levels {
                first: BlockSum::<_, true>(|v: T| A::from_element(v)),
                next: BlockSum::<_, true>(|sum: A| sum),
                keep: |_| KeptAsIs,
                render: |mip: usize| {
                    let count = counts[mip];
                    move |&sum: &A| A::render_power_of_two::<T>(sum, count)
                },
            };
            cascade::run_family(input, family, outputs, &levels);
            return;
        }
    }
    if family_axes.is_some() {
        let levels = Levels {
            first: BlockSum::<_, true>(weigh),
            next: BlockSum::<_, true>(same),
            keep: |_| KeptAsIs,
            render: |_| move |&w: &Weighted<A>| A::render::<T>(w, division),
        };
        cascade::run_family(input, family, outputs, &levels);
        return;
    }
    accumulate_pyramid(
        input,
        factor,
        outputs,
        |shape| exact_window(factor, shape, Edge::Clip),
        Sum::new(weigh, same),
        Sum::new(same, same),
        |_, &w| w,
        |_, &w| A::render::<T>(w, division),
    );
}

/// The total weight of a block of mip k+1 (k = 0..mips) of a dense 2x2 / 2x2x2 mean: each
/// level doubles it for every factor axis longer than one voxel (see `exact_window`).
fn block_counts<A: MeanAccumulator>(shape: &[usize], axes: &[usize], mips: usize) -> Vec<A> {
    let mut shape = pad_dims(shape);
    let mut count = A::ONE;
    let mut counts = Vec::with_capacity(mips);
    for _ in 0..mips {
        for &axis in axes {
            if shape[axis] > 1 {
                count = count.times(2);
            }
            shape[axis] = shape[axis].div_ceil(2);
        }
        counts.push(count);
    }
    counts
}

/// The sum of a dense 2x2 / 2x2x2 block of 64-bit integers in two 64-bit parts, for
/// the sums that could overflow i64: i128 additions do not vectorise, and cost 2x.
///
/// Each value v is split at bit K, the log2 of the last mip's block count 2^K, into
/// its high part v >> K (floored) and its low part v mod 2^K, so that
/// sum = high * 2^K + low. At most 2^K high parts, each below 2^(64-K) in magnitude,
/// add up exactly modulo 2^64 (which is all that is needed below), and low parts stay
/// below 2^(2K) <= 2^62.
#[derive(Clone, Copy, Default)]
struct SplitSum {
    high: u64,
    low: u64,
}

impl SplitSum {
    /// K <= 31 keeps the low parts exact in 64 bits.
    const MAX_SPLIT: u32 = 31;

    #[inline(always)]
    fn of<T: Element>(v: T, split: u32) -> Self {
        // 64-bit shifts (a floored one for signed types): an i128 shift by a runtime
        // amount stays scalar.
        let bits = v.to_i128() as u64;
        let high = if T::LOWEST != T::default() {
            ((bits as i64) >> split) as u64
        } else {
            bits >> split
        };
        SplitSum {
            high,
            low: bits & ((1 << split) - 1),
        }
    }

    /// The sum over a block of 2^shift voxels divided by 2^shift, truncated toward
    /// zero (shift <= split).
    #[inline(always)]
    fn mean<T: Element>(self, split: u32, shift: u32) -> T {
        // floor(sum / 2^shift) = high * 2^(split - shift) + floor(low / 2^shift): the
        // mean fits T, so the wrapping arithmetic gives it exactly.
        let floor = self.high.wrapping_shl(split - shift).wrapping_add(self.low >> shift);
        let signed = T::LOWEST != T::default();
        if signed {
            let inexact = self.low & ((1 << shift) - 1) != 0;
            let toward_zero = (floor as i64).wrapping_add(((floor as i64) < 0 && inexact) as i64);
            T::from_i128(toward_zero as i128)
        } else {
            T::from_i128(floor as i128)
        }
    }
}

/// The arithmetic of the two-part sums (`SplitSum`, `SparseSplitSum`): the high parts
/// wrap (their sums are exact modulo 2^64, which is all their means need), the low ones
/// never reach 2^64.
macro_rules! impl_split_sum_arithmetic {
    ($($t:ident),*) => {$(
        impl AddAssign for $t {
            #[inline(always)]
            fn add_assign(&mut self, other: Self) {
                self.high = self.high.wrapping_add(other.high);
                self.low += other.low;
            }
        }

        impl Scale for $t {
            const EXACT: bool = true;
            #[inline(always)]
            fn times(self, copies: u32) -> Self {
                $t {
                    high: self.high.wrapping_mul(copies as u64),
                    low: self.low * copies as u64,
                }
            }
        }
    )*};
}
impl_split_sum_arithmetic!(SplitSum, SparseSplitSum);

/// Dense 2x2 / 2x2x2 means whose sums need more than 63 bits, carried as `SplitSum`s
/// (the caller checks the last block count is at most 2^MAX_SPLIT).
fn split_sum_mean<T: Element>(input: &ArrayViewD<'_, T>, family: Family, outputs: &mut [ArrayViewMutD<'_, T>]) {
    let axes = family
        .factor_axes()
        .expect("split sums are for the 2x2 and 2x2x2 families");
    let shifts: Vec<u32> = block_counts::<i64>(input.shape(), axes, outputs.len())
        .iter()
        .map(|count| count.trailing_zeros())
        .collect();
    let Some(&split) = shifts.last() else {
        return;
    };
    assert!(split <= SplitSum::MAX_SPLIT);
    let split_mean = SplitMean { split };
    if let [_] = outputs {
        // One mip: no level follows, so the state is the mean itself.
        let levels = crate::kernels::same_type_levels(OneMipMean(split_mean));
        cascade::run_family(input, family, outputs, &levels);
        return;
    }
    let levels = Levels {
        first: split_mean.sums(),
        next: BlockSum::<_, true>(|sum: SplitSum| sum),
        keep: |_| KeptAsIs,
        render: |mip: usize| {
            let shift = shifts[mip];
            move |&sum: &SplitSum| sum.mean::<T>(split, shift)
        },
    };
    cascade::run_family(input, family, outputs, &levels);
}

/// What the one-mip means of 64-bit integers (`SplitMean`, `SparseSplitMean`) do their
/// own way; `OneMipMean` runs either. Each block's sum is made from all of its lines
/// at once and divided in registers, so the line buffers hold the means. Folded a line
/// at a time (`BlockSum`), the sums' two u64 halves were stored side by side in those
/// buffers, interleaved by shuffles on the way in and out. Measured on the Zen 3 guest
/// (one thread, 512x512x64): int64 2x2x2 15.0 -> 12.7 ms, uint64 2x2x1 15.7 -> 14.2,
/// int64 2x2x1 of a C-order input 29.7 -> 27.0; sparse u64 / i64 2x2x1 of 0-49 1.60x /
/// 1.66x as fast. Every method is inlined into the cascade's AVX2 instance: the
/// per-chunk work passed as a closure was compiled out of line without AVX2 (0.26x).
trait InRegisterMean: Copy + Sync {
    type Sum: Copy + Default + Send + AddAssign + Scale;
    /// A value's part of its block's sum.
    fn sum_of<T: Element>(&self, v: T) -> Self::Sum;
    /// A block's mean from its sum.
    fn mean_of<T: Element>(&self, sum: Self::Sum) -> T;

    /// A block's sum: the first level of a multi-mip pyramid, and the block-by-block
    /// fallback.
    #[inline(always)]
    fn sums<T: Element>(self) -> BlockSum<impl Fn(T) -> Self::Sum + Sync, true> {
        BlockSum(move |v: T| self.sum_of(v))
    }

    /// The sum of values 2x and 2x + 1 of every one of `pieces`.
    #[inline(always)]
    fn block_sum<T: Element, const L: usize>(&self, pieces: &[&[T]; L], x: usize) -> Self::Sum {
        let mut sum = Self::Sum::default();
        for piece in pieces {
            sum += self.sum_of(piece[2 * x]);
            sum += self.sum_of(piece[2 * x + 1]);
        }
        sum
    }

    /// `results[x]` = the mean of values 2x and 2x + 1 of every one of `pieces`: a
    /// chunk of at most `LINE_CHUNK` results.
    #[inline(always)]
    fn chunk<T: Element, const L: usize>(&self, pieces: [&[T]; L], results: &mut [T]) {
        for (x, result) in results.iter_mut().enumerate() {
            *result = self.mean_of(self.block_sum(&pieces, x));
        }
    }
}

/// Runs an `InRegisterMean` as the reducer of a one-mip cascade.
#[derive(Clone, Copy)]
struct OneMipMean<M>(M);

impl<M: InRegisterMean> OneMipMean<M> {
    /// `results[x]` = the mean of values 2x and 2x + 1 of every one of `lines`, the
    /// lines read side by side, in chunks of `LINE_CHUNK` results.
    #[inline(always)]
    fn line_pairs<T: Element, const L: usize>(&self, lines: [&[T]; L], ahead: &ReadAhead<T>, results: &mut [T]) {
        let lines = lines.map(|line| &line[..2 * results.len()]);
        let lines_ahead = mean_lines_ahead(&lines, ahead);
        for (chunk, results) in results.chunks_mut(LINE_CHUNK).enumerate() {
            let start = 2 * LINE_CHUNK * chunk;
            for line_ahead in lines_ahead.iter().flatten() {
                line_ahead.prefetch(start, 2 * LINE_CHUNK);
            }
            self.0
                .chunk(lines.map(|line| &line[start..start + 2 * results.len()]), results);
        }
    }
}

/// How the one-mip 64-bit means read a row's lines, side by side: ahead in software
/// (the lines to prefetch, chunk by chunk), or left to the hardware prefetcher (None),
/// with short upper lines loaded into cache first, as the 2x2 mode does.
///
/// Ahead in software where the CPU reads ahead so (Intel, Zen 5) and on Zen 3, where
/// it beat loading the upper lines first (one thread, 512x512x64, Fortran order,
/// builds alternated in one process: int64 2x2x1 14.0-15.2 ms -> 10.8-13.5, uint64
/// 2x2x1 11.8 -> 10.8-11.3). On the Zen 4 guest, the opposite: with lines of 4 KiB
/// (512x512x64, one thread, preallocated outputs, builds alternated in one process),
/// this way against reading ahead in software ran int64 / uint64 2x2x1 1.97x / 1.91x
/// as fast, 2x2x2 1.86x / 1.89x, sparse uint64 (0-49, 30% zeros) 2x2x1 1.63x and 2x2x2
/// 1.56x (full-range values, bound by their division, 1.02x); loading first won
/// 1.45-1.60x on two threads and with 8 KiB lines too. With lines of 16 and 64 KiB, not
/// loaded first, 2x2x1 ran 1.10-1.14x as fast read ahead in software as left to the
/// hardware, 2x2x2 1.40-1.52x as fast left to the hardware.
#[inline(always)]
fn mean_lines_ahead<T, const L: usize>(lines: &[&[T]; L], ahead: &ReadAhead<T>) -> Option<[LineAhead<T>; L]> {
    if ahead.reads_mean_lines_ahead() {
        return Some(ahead.all_side_by_side(lines));
    }
    if std::mem::size_of_val(lines[0]) <= cascade::LINES_READ_FIRST_BYTES {
        // Each upper line from its own copy of the loop, so that each stream has its
        // own load instruction: one loop over both lines (2 MiB apart in 512x512x64)
        // left the hardware prefetcher behind; this way ran 2x2x2 1.03-1.21x as fast
        // (Zen 4, one thread; 1.14-1.17x on two), 2x2x1 unchanged.
        cascade::read_into_cache(lines[0]);
        if L == 4 {
            cascade::read_into_cache(lines[2]);
        }
        return None;
    }
    (L == 2).then(|| ahead.all_side_by_side(lines))
}

impl<T: Element, const N: usize, M: InRegisterMean> BlockReducer<T, N> for OneMipMean<M> {
    type Out = T;
    const WEIGHTED: bool = true;
    const ORDER_FREE: bool = true;
    #[inline(always)]
    fn reduce(&self, block: &[T; N]) -> T {
        self.0.mean_of(BlockReducer::<T, N>::reduce(&self.0.sums(), block))
    }
    /// The weighted sum (`sums`), then its mean: every block of a dense level weighs
    /// 2^split in all (see `block_counts`), a sparse one counts its weighted nonzeros.
    #[inline(always)]
    fn reduce_weighted(&self, block: &[T; N], weights: &[u32; N]) -> T {
        self.0
            .mean_of(BlockReducer::<T, N>::reduce_weighted(&self.0.sums(), block, weights))
    }
    #[inline(always)]
    fn reduce_line_pairs(&self, lines: &[&[T]], ahead: &ReadAhead<T>, results: &mut [T]) {
        match *lines {
            [a, b] => self.line_pairs([a, b], ahead, results),
            [a, b, c, d] => self.line_pairs([a, b, c, d], ahead, results),
            _ => {
                for (x, result) in results.iter_mut().enumerate() {
                    let block: [T; N] = std::array::from_fn(|i| lines[i / 2][2 * x + i % 2]);
                    *result = BlockReducer::<T, N>::reduce(self, &block);
                }
            }
        }
    }
}

/// One mip of a dense 2x2 / 2x2x2 mean of 64-bit integers, from `SplitSum`s.
#[derive(Clone, Copy)]
struct SplitMean {
    /// log2 of the block's weight (see `SplitSum`).
    split: u32,
}

impl InRegisterMean for SplitMean {
    type Sum = SplitSum;
    #[inline(always)]
    fn sum_of<T: Element>(&self, v: T) -> SplitSum {
        SplitSum::of(v, self.split)
    }
    #[inline(always)]
    fn mean_of<T: Element>(&self, sum: SplitSum) -> T {
        sum.mean(self.split, self.split)
    }
}

/// A sparse mean's sum of 32/64-bit integers and its count, in two u64s that add as
/// plain integers (vectorised, where an i128 (sum, count) pair is two scalar 128-bit
/// additions): `high` is the sum of the values' high parts v >> K (floored), `low` the
/// sum of their low parts v mod 2^K with the count above bit 32, so that
/// sum = high * 2^K + (low mod 2^32). K is the log2 of the last mip's block weight:
/// at most 2^K high parts, each below 2^(64-K) in magnitude, sum exactly in 64 bits,
/// and K <= 16 keeps the low parts' sum below 2^(2K) <= 2^32 and the count below 2^32.
#[derive(Clone, Copy, Default)]
struct SparseSplitSum {
    high: u64,
    low: u64,
}

impl SparseSplitSum {
    const MAX_SPLIT: u32 = 16;
    const COUNT_SHIFT: u32 = 32;

    /// `SplitSum::of`, with the value counted above the low part unless it is 0.
    #[inline(always)]
    fn of<T: Element>(v: T, split: u32) -> Self {
        let SplitSum { high, low } = SplitSum::of(v, split);
        SparseSplitSum {
            high,
            low: low | ((v.to_i128() != 0) as u64) << Self::COUNT_SHIFT,
        }
    }

    /// (count, sum of the low parts).
    #[inline(always)]
    fn count_and_low(self) -> (u64, u64) {
        (self.low >> Self::COUNT_SHIFT, self.low & ((1 << Self::COUNT_SHIFT) - 1))
    }

    /// Whether |sum| < 2^51, as every realistic image's sums are: then `small_mean`.
    #[inline(always)]
    fn is_small<T: Element>(self, split: u32) -> bool {
        // |high| < 2^(50 - K) and low < 2^32.
        let bound = 1u64 << (50 - split);
        if const { unsigned::<T>() } {
            self.high < bound
        } else {
            self.high.wrapping_add(bound) < 2 * bound
        }
    }

    /// sum / count truncated toward zero (0 for an all-background block, whose sum is
    /// 0) of a small sum, without branches: the sum and the count are exact in f64, and
    /// so is the truncated quotient (see `Division::Float`).
    #[inline(always)]
    fn small_mean(self, split: u32) -> i64 {
        let (count, low) = self.count_and_low();
        let sum = ((self.high as i64) << split) + low as i64;
        small_f64::truncate(small_f64::from_i64(sum) / small_f64::from_i64(count.max(1) as i64))
    }

    /// sum / count truncated toward zero, or 0 for an all-background block.
    #[inline(always)]
    fn mean<T: Element>(self, split: u32) -> T {
        if self.is_small::<T>(split) {
            return T::from_i128(self.small_mean(split) as i128);
        }
        // The sum in 128 bits; a count of 0 has sum 0, which is small.
        let (count, low) = self.count_and_low();
        let sum = if const { unsigned::<T>() } {
            ((self.high as i128) << split) + low as i128
        } else {
            ((self.high as i64 as i128) << split) + low as i128
        };
        T::from_i128(narrow_quotient::<T>(sum, count))
    }
}

/// sum / count truncated toward zero, for a quotient that fits T (a mean of its
/// values) and a count > 0: on x86-64 one DIV/IDIV of a 128-bit dividend by a 64-bit
/// divisor, which Rust has no operator for (its i128 division is a library call).
/// Against a long division in base 2^K in two 64-bit divisions (512x512x64 int64 and
/// uint64 of magnitudes up to 2^60, 30% zeros, one thread, Zen 5, builds alternated in
/// one process): 2x2x1 1.28-1.33x as fast, 2x2x2 1.22-1.25x. An f64 estimate corrected
/// by its remainder, without a division, was 0.70-0.84x as fast as this. Where the
/// CPU has AVX2, whole chunks of sums (one mip's, and the render's of several) divide
/// in f64 lanes instead (`split_means_of_chunk`); this serves the rest.
#[inline(always)]
fn narrow_quotient<T: Element>(sum: i128, count: u64) -> i128 {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        // DIV and IDIV fault on a zero divisor and on a quotient that does not fit 64
        // bits (unsigned for DIV, signed for IDIV). A mean of values of T is neither;
        // testing it here, next to the instruction, costs a comparison.
        let fits = if const { unsigned::<T>() } {
            (sum as u128 >> 64) < count as u128
        } else {
            (sum.unsigned_abs() >> 63) < count as u128
        };
        if fits {
            let (mut quotient, high) = (sum as u64, (sum >> 64) as u64);
            // SAFETY: `fits` (count > 0 and |sum| < count * 2^64, resp. 2^63) excludes
            // both of the instructions' faults. Neither touches memory.
            unsafe {
                if const { unsigned::<T>() } {
                    std::arch::asm!("div {count}", count = in(reg) count, inout("rax") quotient,
                        inout("rdx") high => _, options(pure, nomem, nostack));
                } else {
                    std::arch::asm!("idiv {count}", count = in(reg) count, inout("rax") quotient,
                        inout("rdx") high => _, options(pure, nomem, nostack));
                }
            }
            return if const { unsigned::<T>() } {
                quotient as i128
            } else {
                quotient as i64 as i128
            };
        }
    }
    // Elsewhere, and for the few means the test above is too strict for (a signed
    // mean of exactly -2^63), Rust's i128 division.
    debug_assert!(count > 0, "a zero count has no mean");
    sum / count.max(1) as i128
}

/// A mean of T from the 64 bits the f64-lane means leave it in (as u64 for unsigned
/// T, as i64 for signed).
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline(always)]
fn mean_of_bits<T: Element>(bits: u64) -> T {
    T::from_i128(if const { unsigned::<T>() } {
        bits as i128
    } else {
        bits as i64 as i128
    })
}

/// Renders a line of `sparse_split_mean`'s sums a chunk of `LINE_CHUNK` at a time: a
/// chunk of small sums (`is_small`, as every realistic image's are) in f64 without a
/// branch per voxel, a chunk with a large one by `split_means_of_chunk` (as one mip's
/// means are), the line's last few sums by `means_by_runs`.
///
/// Against runs of 8 sums each tested and divided as `means_by_runs` does (512x512x64
/// and 256x256x16, 30% zeros, 3 mips of 2x2x1, one thread, Zen 4 guest, builds
/// alternated in one process): values of 0-49 1.13-1.19x as fast (int64), 1.06-1.19x
/// (uint64; once 0.86x by the median); full-range uint64 1.19-1.25x, int64 1.00-1.02x;
/// 2 mips of 2x2x2 1.04-1.08x. Chunks of small sums through `x86::small_split_means`
/// instead, as one mip's are: uint64 0.81-0.93x, not inlined into the cascade.
struct SparseSplitMeans {
    split: u32,
}

impl<T: Element> RenderLine<SparseSplitSum, T> for SparseSplitMeans {
    #[inline(always)]
    fn render_line(&self, values: &[SparseSplitSum], out: &mut [T]) {
        let mut sums = values.chunks_exact(LINE_CHUNK);
        let mut outs = out.chunks_exact_mut(LINE_CHUNK);
        for (sums, out) in (&mut sums).zip(&mut outs) {
            if sums.iter().all(|sum| sum.is_small::<T>(self.split)) {
                for (slot, sum) in out.iter_mut().zip(sums) {
                    *slot = T::from_i128(sum.small_mean(self.split) as i128);
                }
                continue;
            }
            let high: [u64; LINE_CHUNK] = std::array::from_fn(|x| sums[x].high);
            let low = std::array::from_fn(|x| sums[x].low);
            split_means_of_chunk(&high, &low, self.split, out.try_into().expect("a whole chunk"));
        }
        let last = sums.remainder();
        means_by_runs(|x| last[x], self.split, outs.into_remainder());
    }
}

/// `results[x]` = the mean of the split sum (`high[x]`, `low[x]`): where the CPU has
/// AVX2, the whole chunk in f64 lanes in one call, by `x86::small_split_means` where
/// every sum is small (`is_small`, as every realistic image's are), else by
/// `x86::split_means`; elsewhere by `means_by_runs`.
///
/// `split_means` against a DIV / IDIV per voxel (int64 / uint64 of the full range, 30%
/// zeros, one thread, Zen 4 guest, builds alternated in one process), one mip: 2x2x1
/// 1.37x / 1.66x as fast in cache (256x256x16), 1.39x / 1.51-1.64x from memory
/// (512x512x64); 2x2x2 1.27x / 1.48x and 1.31x / 1.52-1.56x; small values unchanged
/// (0.95-1.02x). Called on a run of 8 sums at a time, it ran 0.9-1.3x as fast as the
/// DIV, within the noise: perf put a third of the time in it, about 60 cycles a call,
/// the length of its two dependent divisions, which the next call's scalar work did not
/// overlap.
#[inline(always)]
fn split_means_of_chunk<T: Element, const N: usize>(high: &[u64; N], low: &[u64; N], split: u32, results: &mut [T; N]) {
    let sum = |x: usize| SparseSplitSum {
        high: high[x],
        low: low[x],
    };
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if std::arch::is_x86_feature_detected!("avx2") {
        let mut means = [0u64; N];
        let small = (0..N).all(|x| sum(x).is_small::<T>(split));
        // SAFETY: the CPU has AVX2.
        unsafe {
            if small {
                x86::small_split_means(high, low, split, &mut means)
            } else {
                x86::split_means::<T, N>(high, low, split, &mut means)
            }
        }
        for (result, mean) in results.iter_mut().zip(means) {
            *result = mean_of_bits(mean);
        }
        return;
    }
    means_by_runs(sum, split, results);
}

/// `results[x]` = the mean of `sum(x)`, a run of 8 at a time: runs of small sums in f64
/// (`small_mean`, without a branch per voxel), the others by `mean`'s DIV.
#[inline(always)]
fn means_by_runs<T: Element>(sum: impl Fn(usize) -> SparseSplitSum, split: u32, results: &mut [T]) {
    const RUN: usize = 8;
    for (run, results) in results.chunks_mut(RUN).enumerate() {
        let start = RUN * run;
        if (start..start + results.len()).all(|x| sum(x).is_small::<T>(split)) {
            for (x, result) in (start..).zip(results) {
                *result = T::from_i128(sum(x).small_mean(split) as i128);
            }
        } else {
            for (x, result) in (start..).zip(results) {
                *result = sum(x).mean::<T>(split);
            }
        }
    }
}

/// Sparse 2x2 / 2x2x2 means of integers wider than `packed_sparse_mean` holds, carried
/// as `SparseSplitSum`s (the caller checks the last block weight is at most
/// 2^MAX_SPLIT).
fn sparse_split_mean<T: Element>(input: &ArrayViewD<'_, T>, family: Family, outputs: &mut [ArrayViewMutD<'_, T>]) {
    let axes = family
        .factor_axes()
        .expect("sparse split sums are for the 2x2 and 2x2x2 families");
    let Some(split) = block_counts::<i64>(input.shape(), axes, outputs.len())
        .last()
        .map(|count| count.trailing_zeros())
    else {
        return;
    };
    assert!(split <= SparseSplitSum::MAX_SPLIT);
    let sparse_mean = SparseSplitMean { split };
    if let [_] = outputs {
        // One mip: no level follows, so the state is the mean itself.
        let levels = crate::kernels::same_type_levels(OneMipMean(sparse_mean));
        cascade::run_family(input, family, outputs, &levels);
        return;
    }
    let levels = Levels {
        first: sparse_mean.sums(),
        next: BlockSum::<_, true>(|sum: SparseSplitSum| sum),
        keep: |_| KeptAsIs,
        render: |_| SparseSplitMeans { split },
    };
    cascade::run_family(input, family, outputs, &levels);
}

/// One mip of a sparse 2x2 / 2x2x2 mean of 64-bit integers, from `SparseSplitSum`s
/// (see `InRegisterMean`).
#[derive(Clone, Copy)]
struct SparseSplitMean {
    /// log2 of the block's weight (see `SparseSplitSum`).
    split: u32,
}

impl InRegisterMean for SparseSplitMean {
    type Sum = SparseSplitSum;
    #[inline(always)]
    fn sum_of<T: Element>(&self, v: T) -> SparseSplitSum {
        SparseSplitSum::of(v, self.split)
    }
    #[inline(always)]
    fn mean_of<T: Element>(&self, sum: SparseSplitSum) -> T {
        sum.mean(self.split)
    }
    /// Whole chunks by `whole_chunk`, a line's last one block by block.
    #[inline(always)]
    fn chunk<T: Element, const L: usize>(&self, pieces: [&[T]; L], results: &mut [T]) {
        if let Ok(whole) = <&mut [T; LINE_CHUNK]>::try_from(&mut *results) {
            self.whole_chunk(pieces.map(|piece| piece.try_into().expect("a whole chunk")), whole);
        } else {
            for (x, result) in results.iter_mut().enumerate() {
                *result = self.mean_of(self.block_sum(&pieces, x));
            }
        }
    }
}

impl SparseSplitMean {
    /// `chunk` over a whole chunk: its sums' high and low parts go to two arrays, which
    /// `split_means_of_chunk` divides.
    ///
    /// Written the obvious way, LLVM left these loops scalar once inlined into the
    /// cascade: over chunks of any length, or with the sums kept as `SparseSplitSum`s
    /// side by side, the sums (one thread, 512x512x64 u64 of 0-49 with 30% zeros, Zen 3:
    /// 2x2x1 at 0.26x the speed of the two-pass way it replaces), and in every form
    /// tried the division (this function with it: 1.09-1.16x as fast as without).
    #[inline(always)]
    fn whole_chunk<T: Element, const L: usize>(
        &self,
        pieces: [&[T; 2 * LINE_CHUNK]; L],
        results: &mut [T; LINE_CHUNK],
    ) {
        let (mut high, mut low) = ([0u64; LINE_CHUNK], [0u64; LINE_CHUNK]);
        for x in 0..LINE_CHUNK {
            let sum = self.block_sum(&pieces.map(|piece| &piece[..]), x);
            (high[x], low[x]) = (sum.high, sum.low);
        }
        split_means_of_chunk(&high, &low, self.split, results);
    }
}

/// An unsigned integer holding a sparse mean's (sum, count) as `count << SUM_BITS | sum`.
/// Values of signed types are summed with the type's lowest value subtracted, so that
/// the sum stays non-negative; `mean` adds it back, once per counted value.
trait PackedMean: Copy + Default + Send + Sync + AddAssign + Scale + 'static {
    fn pack<T: Element>(v: T, sum_bits: u32) -> Self;
    /// sum / count truncated, or 0 when count is 0; divided in floats, exactly (see
    /// `packed_sparse_mean`).
    fn mean<T: Element>(self, sum_bits: u32) -> T;
}

macro_rules! impl_packed_mean {
    ($($t:ty => $q:ty, $signed:ty, $to_float:expr, $truncate:expr),*) => {$(
        impl PackedMean for $t {
            #[inline(always)]
            fn pack<T: Element>(v: T, sum_bits: u32) -> Self {
                let counted = !v.is_zero() as $t;
                let value = if const { unsigned::<T>() } {
                    v.to_i128() as $t
                } else {
                    // 0 for background, as an unsigned 0 is.
                    ((v.to_i128() - T::LOWEST.to_i128()) as $t) * counted
                };
                value | (counted << sum_bits)
            }
            #[inline(always)]
            fn mean<T: Element>(self, sum_bits: u32) -> T {
                let field = $to_float(self & ((1 << sum_bits) - 1));
                let counted = $to_float(self >> sum_bits);
                // Exact: every term is an integer, and so is their sum, below 2^24 (f32)
                // or 2^53 (f64) in magnitude, as the caller checks of the field.
                let sum = if const { unsigned::<T>() } {
                    field
                } else {
                    field + T::LOWEST.to_i128() as $q * counted
                };
                // An all-background block has sum 0: 0 / 1 is its mean, 0.
                let quotient = sum / counted.max(1.0);
                // `$truncate` is pasted here as a closure: it only ever sees this quotient.
                let mean: $signed = ($truncate)(quotient);
                T::from_i128(mean as i128)
            }
        }
    )*};
}
// Conversions that vectorise: AVX2 converts between f32 and i32, not between f64 and
// 64-bit integers, for which `as` took a scalar conversion per voxel each way; the u64
// tier's fields and means are below 2^51 (see `small_f64`). Measured against `as`
// (512x512x64, 30% zeros, one thread, builds alternated in one process, Zen 5): the
// u64 tier's i32 2x2x1 1.85x as fast, u32 2x2x2 1.27x, u16 2x2x1 4 mips 1.65x, u16
// 2x2x2 3 mips 1.43x, u8 2x2x2 4 mips 1.48x; the u16 and u32 tiers unchanged.
//
// SAFETY (both `to_int_unchecked`): the quotient `mean` gives it is finite and a mean of
// values of T (truncated toward zero), which i32 holds. The checked cast would clamp
// each voxel on its own, unvectorised: measured 2.3x slower for u8 2x2.
impl_packed_mean!(
    u16 => f32, i32, |x: u16| x as f32, |q: f32| unsafe { q.to_int_unchecked() },
    u32 => f32, i32, |x: u32| x as f32, |q: f32| unsafe { q.to_int_unchecked() },
    u64 => f64, i64, |x: u64| small_f64::from_i64(x as i64), small_f64::truncate
);

/// Sparse means of 8- to 32-bit integer images in the 2x2 and 2x2x2 families, with the
/// count packed above the sum in one integer `P`: a voxel adds `v + (v != 0) << SUM_BITS`
/// (v - T::LOWEST for signed types, 0 for background), so a
/// block is plain integer additions, which vectorise (a (sum, count) pair does not). The
/// caller checks that sums stay below 2^SUM_BITS and counts below 2^(P bits - SUM_BITS).
/// The division (in f32 for u32, f64 for u64) truncates exactly: sums are below
/// 2^24 (resp. 2^53), so a quotient rounds by less than its distance 1/count to the next
/// integer, and an integer quotient is exact.
fn packed_sparse_mean<T: Element, P: PackedMean, const SUM_BITS: u32>(
    input: &ArrayViewD<'_, T>,
    family: Family,
    outputs: &mut [ArrayViewMutD<'_, T>],
) {
    let levels = Levels {
        first: BytePairSums::<_, true, true>::new(BlockSum(|v: T| P::pack(v, SUM_BITS)), SUM_BITS),
        next: BlockSum::<_, true>(|p: P| p),
        keep: |_| KeptAsIs,
        render: |_| PackedMeans::<SUM_BITS>,
    };
    cascade::run_family(input, family, outputs, &levels);
}

/// The first level of a u8 pyramid summed in u16 lanes, or of an i8 one in i16 lanes:
/// `sum`, whose conversion must be `v as u16` (`v as i16`), plus `(v != 0) <<
/// count_shift` when `COUNTING`, for u8 only (`ShiftedAccumulator::widen` and
/// `PackedMean::pack`, the two constructions below). Rows of byte pairs go through
/// AVX2 where the CPU has it, bit-identical; everything else, and every other type,
/// through `sum`. (Through `sum`, 2x2x1 averaging of a 1024x1024x64 i8 volume ran at
/// 20,200 MVx/s, 1.75x tinybrain, against 34,300 for u8; one thread, Zen 5.)
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct BytePairSums<Convert, const WEIGHTED: bool, const COUNTING: bool> {
    sum: BlockSum<Convert, WEIGHTED>,
    count_shift: u32,
}

impl<Convert, const WEIGHTED: bool, const COUNTING: bool> BytePairSums<Convert, WEIGHTED, COUNTING> {
    fn new(sum: BlockSum<Convert, WEIGHTED>, count_shift: u32) -> Self {
        BytePairSums { sum, count_shift }
    }
}

impl<S, A, Convert, const N: usize, const WEIGHTED: bool, const COUNTING: bool> BlockReducer<S, N>
    for BytePairSums<Convert, WEIGHTED, COUNTING>
where
    S: Copy + 'static,
    A: Copy + Default + Send + AddAssign + Scale + 'static,
    Convert: Fn(S) -> A + Sync,
{
    type Out = A;
    const WEIGHTED: bool = WEIGHTED;
    const ORDER_FREE: bool = A::EXACT;
    #[inline(always)]
    fn reduce(&self, block: &[S; N]) -> A {
        BlockReducer::<S, N>::reduce(&self.sum, block)
    }
    #[inline(always)]
    fn reduce_weighted(&self, block: &[S; N], weights: &[u32; N]) -> A {
        self.sum.reduce_weighted(block, weights)
    }
    #[inline(always)]
    fn reduce_stacked_lines(&self, lines: &[&[S]; N], results: &mut [A]) {
        self.sum.reduce_stacked_lines(lines, results)
    }
    #[inline(always)]
    fn reduce_line_pairs(&self, lines: &[&[S]], ahead: &ReadAhead<S>, results: &mut [A]) {
        #[cfg(target_arch = "x86_64")]
        let done = if !std::arch::is_x86_feature_detected!("avx2") {
            0
        } else if let (Some(bytes), Some(words)) = (as_slices_of::<S, u8, N>(lines), as_mut_slice_of::<A, u16>(results))
        {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe {
                x86::byte_pair_sums::<false, COUNTING>(&bytes[..lines.len()], &ahead.cast(), words, self.count_shift)
            }
        } else if let (false, Some(bytes), Some(words)) = (
            COUNTING,
            as_slices_of::<S, i8, N>(lines),
            as_mut_slice_of::<A, i16>(results),
        ) {
            let bytes = bytes.map(same_width::<i8>);
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe {
                x86::byte_pair_sums::<true, false>(&bytes[..lines.len()], &ahead.cast(), same_width_mut(words), 0)
            }
        } else {
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { self.widened_line_pairs::<S, A, N>(lines, ahead, results) }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        let rest: [&[S]; N] = tails_from(lines, 2 * done);
        BlockReducer::<S, N>::reduce_line_pairs(&self.sum, &rest[..lines.len()], ahead, &mut results[done..]);
    }
}

impl<Convert, const WEIGHTED: bool, const COUNTING: bool> BytePairSums<Convert, WEIGHTED, COUNTING> {
    /// The first level of a pyramid whose later levels need wider sums than 16 bits (u8
    /// and i8 2x2x2 pyramids of 3 mips or more, sparse u8 ones of 2 or more): a block
    /// of 2x2x2 bytes still sums in 16 bits (at most 2040, with a count of at most 8
    /// above bit 11 when `COUNTING`), so it goes through the byte kernel all the same,
    /// and each result is widened into `A` (the count moved up to `count_shift`).
    /// Returns the number of results written, 0 for the types this does not serve.
    ///
    /// # Safety
    /// AVX2 is available.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn widened_line_pairs<S: 'static, A: 'static, const N: usize>(
        &self,
        lines: &[&[S]],
        ahead: &ReadAhead<S>,
        results: &mut [A],
    ) -> usize {
        const NARROW_SUM_BITS: u32 = 11;
        let shift = self.count_shift;
        let narrow_sum = |word: u16| word & ((1 << NARROW_SUM_BITS) - 1);
        let narrow_count = |word: u16| word >> NARROW_SUM_BITS;
        // SAFETY (every call below): AVX2 is available (this function's contract).
        unsafe {
            if let Some(bytes) = as_slices_of::<S, u8, N>(lines) {
                let (bytes, ahead) = (&bytes[..lines.len()], &ahead.cast());
                if COUNTING {
                    if let Some(out) = as_mut_slice_of::<A, u32>(results) {
                        let widen = |w: u16| narrow_sum(w) as u32 | (narrow_count(w) as u32) << shift;
                        return widened_byte_pair_sums::<_, false, true>(bytes, ahead, out, NARROW_SUM_BITS, widen);
                    }
                    if let Some(out) = as_mut_slice_of::<A, u64>(results) {
                        let widen = |w: u16| narrow_sum(w) as u64 | (narrow_count(w) as u64) << shift;
                        return widened_byte_pair_sums::<_, false, true>(bytes, ahead, out, NARROW_SUM_BITS, widen);
                    }
                } else {
                    if let Some(out) = as_mut_slice_of::<A, i32>(results) {
                        return widened_byte_pair_sums::<_, false, false>(bytes, ahead, out, 0, |w| w as i32);
                    }
                    if let Some(out) = as_mut_slice_of::<A, i64>(results) {
                        return widened_byte_pair_sums::<_, false, false>(bytes, ahead, out, 0, |w| w as i64);
                    }
                }
            } else if let (false, Some(bytes)) = (COUNTING, as_slices_of::<S, i8, N>(lines)) {
                // Wrapping i16 sums of bytes taken as i8, sign-extended.
                let bytes = bytes.map(same_width::<i8>);
                let (bytes, ahead) = (&bytes[..lines.len()], &ahead.cast());
                if let Some(out) = as_mut_slice_of::<A, i32>(results) {
                    return widened_byte_pair_sums::<_, true, false>(bytes, ahead, out, 0, |w| w as i16 as i32);
                }
                if let Some(out) = as_mut_slice_of::<A, i64>(results) {
                    return widened_byte_pair_sums::<_, true, false>(bytes, ahead, out, 0, |w| w as i16 as i64);
                }
            }
        }
        0
    }
}

/// `x86::byte_pair_sums` into `results` of a wider type, through a buffer of u16 sums
/// that stays in L1: the lines are summed a piece of `WIDENED_PIECE` results at a
/// time, each line of a piece in address order. Returns the number of results written.
///
/// # Safety
/// AVX2 is available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn widened_byte_pair_sums<W, const SIGNED: bool, const COUNTING: bool>(
    lines: &[&[u8]],
    ahead: &ReadAhead<u8>,
    results: &mut [W],
    count_shift: u32,
    widen: impl Fn(u16) -> W,
) -> usize {
    /// 4 KiB of sums, 8 KiB of each line: pieces as long as a DRAM page, so that the
    /// lines read a piece at a time still stream.
    const WIDENED_PIECE: usize = 2048;
    thread_local! {
        /// Kept from line to line: a fresh zeroed array on the stack was a 4 KiB
        /// memset per line, more than the work of a line of 256 results.
        static WORDS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    WORDS.with_borrow_mut(|words| {
        if words.len() < WIDENED_PIECE {
            words.resize(WIDENED_PIECE, 0);
        }
        // SAFETY: AVX2 is available (this function's contract).
        unsafe { widened_byte_pair_sums_into::<W, SIGNED, COUNTING>(lines, ahead, results, count_shift, widen, words) }
    })
}

/// `widened_byte_pair_sums` with its buffer of u16 sums (`words`, at least 2048 long).
/// Compiled for AVX2 on its own: inlined into the thread-local access, which is not,
/// its widening loop ran in SSE2 (16% of 2 mips of sparse u8 2x2x1).
///
/// # Safety
/// AVX2 is available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn widened_byte_pair_sums_into<W, const SIGNED: bool, const COUNTING: bool>(
    lines: &[&[u8]],
    ahead: &ReadAhead<u8>,
    results: &mut [W],
    count_shift: u32,
    widen: impl Fn(u16) -> W,
    words: &mut [u16],
) -> usize {
    let mut done = 0;
    while done < results.len() {
        let piece = (results.len() - done).min(words.len());
        let mut pieces: [&[u8]; 8] = [&[]; 8];
        for (piece, line) in pieces.iter_mut().zip(lines) {
            *piece = &line[2 * done..];
        }
        // Past a piece that is not the last, reading goes on in the first line's next piece.
        let next_piece;
        let ahead = if done + piece == results.len() {
            ahead
        } else {
            next_piece = ReadAhead::at([lines[0][2 * (done + piece)..].as_ptr()]);
            &next_piece
        };
        // SAFETY: AVX2 is available (this function's contract).
        let summed = unsafe {
            x86::byte_pair_sums::<SIGNED, COUNTING>(&pieces[..lines.len()], ahead, &mut words[..piece], count_shift)
        };
        for (result, &word) in results[done..done + summed].iter_mut().zip(&words[..summed]) {
            *result = widen(word);
        }
        done += summed;
        if summed < piece {
            break;
        }
    }
    done
}

/// Each line from element `start` on, in an array of `N` (empty past the lines given).
///
/// Called once per line pair, so always inlined: built with `std::array::from_fn`, the
/// compiler once left it a call of its own (4% of the time of 2x2x1 u8 averaging in
/// cache, seen when the library's other code shrank and its inlining choices moved).
#[inline(always)]
fn tails_from<'a, S, const N: usize>(lines: &[&'a [S]], start: usize) -> [&'a [S]; N] {
    let mut tails: [&[S]; N] = [&[]; N];
    for (tail, line) in tails.iter_mut().zip(lines) {
        *tail = &line[start..];
    }
    tails
}

/// The later levels of a shifted-accumulator pyramid: sums of the kept accumulators as
/// they are (`BlockSum` of the identity). Rows of u16 and i16 pairs, those of u8 and i8
/// pyramids, go through AVX2 where the CPU has it, bit-identical; everything else
/// through the sum.
struct KeptSums;

impl<A, const N: usize> BlockReducer<A, N> for KeptSums
where
    A: Copy + Default + Send + AddAssign + Scale + 'static,
{
    type Out = A;
    const WEIGHTED: bool = false;
    const ORDER_FREE: bool = A::EXACT;
    #[inline(always)]
    fn reduce(&self, block: &[A; N]) -> A {
        BlockReducer::<A, N>::reduce(&BlockSum::<_, false>(|a: A| a), block)
    }
    #[inline(always)]
    fn reduce_stacked_lines(&self, lines: &[&[A]; N], results: &mut [A]) {
        BlockSum::<_, false>(|a: A| a).reduce_stacked_lines(lines, results)
    }
    #[inline(always)]
    fn reduce_line_pairs(&self, lines: &[&[A]], ahead: &ReadAhead<A>, results: &mut [A]) {
        #[cfg(target_arch = "x86_64")]
        let done = if !std::arch::is_x86_feature_detected!("avx2") {
            0
        } else if let (Some(words), Some(totals)) =
            (as_slices_of::<A, u16, N>(lines), as_mut_slice_of::<A, u16>(results))
        {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { x86::word_pair_sums(&words[..lines.len()], totals) }
        } else if let (Some(words), Some(totals)) =
            (as_slices_of::<A, i16, N>(lines), as_mut_slice_of::<A, i16>(results))
        {
            let words = words.map(same_width::<i16>);
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { x86::word_pair_sums(&words[..lines.len()], same_width_mut(totals)) }
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        let rest: [&[A]; N] = tails_from(lines, 2 * done);
        let sum = BlockSum::<_, false>(|a: A| a);
        BlockReducer::<A, N>::reduce_line_pairs(&sum, &rest[..lines.len()], ahead, &mut results[done..]);
    }
}

/// Keeps a shifted accumulator for the next level: shifted right after the last mip of
/// a cycle, as it is (and reduced into directly) otherwise.
struct KeptShifted {
    shift: u32,
}

impl<A: ShiftedAccumulator> KeepState<A, A> for KeptShifted {
    #[inline(always)]
    fn keep(&self, &acc: &A) -> A {
        acc >> self.shift
    }
    #[inline(always)]
    fn results_in<'a>(&self, kept: &'a mut [A]) -> std::result::Result<&'a mut [A], &'a mut [A]> {
        if self.shift == 0 {
            Ok(kept)
        } else {
            Err(kept)
        }
    }
}

/// Renders a line of shifted accumulators into a mip: each divided by 2^shift,
/// truncated toward zero. u16 into u8 and i16 into i8 go through AVX2 where the CPU
/// has it, bit-identical; the rest value by value.
struct ShiftedRender {
    shift: u32,
}

impl<A: ShiftedAccumulator, T: Element> RenderLine<A, T> for ShiftedRender {
    #[inline(always)]
    fn render_line(&self, values: &[A], out: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        let done = if !std::arch::is_x86_feature_detected!("avx2") {
            0
        } else if let (Some(words), Some(bytes)) = (as_slice_of::<A, u16>(values), as_mut_slice_of::<T, u8>(out)) {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { x86::shifted_words_to_bytes::<false>(words, bytes, self.shift) }
        } else if let (Some(words), Some(bytes)) = (as_slice_of::<A, i16>(values), as_mut_slice_of::<T, i8>(out)) {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { x86::shifted_words_to_bytes::<true>(same_width(words), same_width_mut(bytes), self.shift) }
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        for (slot, &acc) in out[done..].iter_mut().zip(&values[done..]) {
            *slot = T::from_i128(acc.shift_toward_zero(self.shift).to_i128());
        }
    }
}

/// `slice` as a slice of `To`, when `From` is `To`: how a generic path hands its lines
/// to a kernel written for one concrete type.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn as_slice_of<From: 'static, To: 'static>(slice: &[From]) -> Option<&[To]> {
    // SAFETY: the same TypeId is the same type: the same memory, type and length.
    (TypeId::of::<From>() == TypeId::of::<To>())
        .then(|| unsafe { std::slice::from_raw_parts(slice.as_ptr().cast::<To>(), slice.len()) })
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn as_mut_slice_of<From: 'static, To: 'static>(slice: &mut [From]) -> Option<&mut [To]> {
    // SAFETY: as for `as_slice_of`; the view borrows `slice` mutably for its lifetime.
    (TypeId::of::<From>() == TypeId::of::<To>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(slice.as_mut_ptr().cast::<To>(), slice.len()) })
}

/// A slice of signed integers seen as the unsigned ones of their width (i8 as u8, i16
/// as u16), for the AVX2 kernels written for the unsigned: wrapping sums of two's
/// complement values are the same bits either way.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn same_width<Signed: SignedInteger>(slice: &[Signed]) -> &[Signed::Unsigned] {
    const { Signed::SAME_LAYOUT };
    // SAFETY: `SignedInteger` is implemented for i8 and i16 only, whose `Unsigned` is
    // the integer of the same size and alignment (checked above, at compile time);
    // every bit pattern is valid for both.
    unsafe { std::slice::from_raw_parts(slice.as_ptr().cast(), slice.len()) }
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn same_width_mut<Signed: SignedInteger>(slice: &mut [Signed]) -> &mut [Signed::Unsigned] {
    const { Signed::SAME_LAYOUT };
    // SAFETY: as for `same_width`; the view borrows `slice` mutably for its lifetime.
    unsafe { std::slice::from_raw_parts_mut(slice.as_mut_ptr().cast(), slice.len()) }
}

/// The signed integers `same_width` takes, and their unsigned twins.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
trait SignedInteger: Copy {
    type Unsigned: Copy;
    /// Evaluated where a slice is reinterpreted: fails the build unless both types
    /// have one size and alignment.
    const SAME_LAYOUT: () = assert!(
        std::mem::size_of::<Self>() == std::mem::size_of::<Self::Unsigned>()
            && std::mem::align_of::<Self>() == std::mem::align_of::<Self::Unsigned>()
    );
}

impl SignedInteger for i8 {
    type Unsigned = u8;
}

impl SignedInteger for i16 {
    type Unsigned = u16;
}

/// Up to `N` lines, each `as_slice_of`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn as_slices_of<'a, From: 'static, To: 'static, const N: usize>(lines: &[&'a [From]]) -> Option<[&'a [To]; N]> {
    let mut views: [&[To]; N] = [&[]; N];
    for (view, line) in views.iter_mut().zip(lines) {
        *view = as_slice_of(line)?;
    }
    Some(views)
}

/// Renders a line of `packed_sparse_mean`'s totals (`PackedMean::mean`). Bytes packed
/// in u16 go through AVX2 where the CPU has it, bit-identical; the rest value by value.
struct PackedMeans<const SUM_BITS: u32>;

impl<T: Element, P: PackedMean, const SUM_BITS: u32> RenderLine<P, T> for PackedMeans<SUM_BITS> {
    #[inline(always)]
    fn render_line(&self, values: &[P], out: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        let done = match (as_slice_of::<P, u16>(values), as_mut_slice_of::<T, u8>(out)) {
            (Some(words), Some(bytes)) if std::arch::is_x86_feature_detected!("avx2") => {
                // SAFETY: the CPU has AVX2 (checked just above).
                unsafe { x86::packed_byte_means(words, bytes, SUM_BITS) }
            }
            _ => 0,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        for (slot, p) in out[done..].iter_mut().zip(&values[done..]) {
            *slot = p.mean::<T>(SUM_BITS);
        }
    }
}

/// log2 of the largest |sum| an exact mean can reach: the dtype's bits plus those of
/// the largest total weight.
fn sum_bits<T: Element>(shape: &[usize], factor: &Dims, edge: Edge, num_mips: usize) -> f64 {
    let mut shape = pad_dims(shape);
    let mut weight_bits = 0f64;
    for _ in 0..num_mips {
        let window = exact_window(factor, &shape, edge);
        for axis in 0..MAX_NDIM {
            weight_bits += (window.extent[axis].min(match edge {
                Edge::Clip => shape[axis],
                Edge::ReplicateWeighted => usize::MAX,
            }) as f64)
                .log2();
        }
        let next = window.output_shape(&shape);
        if next == shape {
            break;
        }
        shape = next;
    }
    weight_bits + T::BITS as f64
}

/// Any other factor: each mip is the clipped mean of the previous one, carried in f64.
fn mean_of_means<T: Element>(input: &ArrayViewD<'_, T>, factor: &Dims, outputs: &mut [ArrayViewMutD<'_, T>]) {
    let window = Window::pooling(factor, Edge::Clip);
    let mean = |w: Weighted<f64>| w.sum / w.count;
    let next = Sum::new(|v: f64| Weighted { sum: v, count: 1.0 }, mean);
    let keep = |_, &v: &f64| v;
    let render = |_, &v: &f64| {
        if const { !matches!(T::AVERAGING, AveragingClass::Float) && T::BITS <= 32 } {
            // A mean of values of T: in range, so `from_f64`'s saturation never acts.
            T::from_i128(small_f64::truncate(v) as i128)
        } else {
            T::from_f64(v)
        }
    };
    let shape = pad_dims(input.shape());
    let window_volume: usize = (0..MAX_NDIM).map(|axis| factor[axis].min(shape[axis])).product();
    if const { !matches!(T::AVERAGING, AveragingClass::Float) && T::BITS <= 32 } && CountedSum::fits::<T>(window_volume)
    {
        if let [_] = outputs {
            // Exact integer sums: any order of a window's values gives the same mean.
            crate::kernels::in_memory_order(input, factor, outputs, |input, factor, outputs| {
                let window = Window::pooling(factor, Edge::Clip);
                one_truncated_mean(input, &window, window_volume, &mut outputs[0]);
            });
            return;
        }
        let first = Sum::new(CountedSum::of::<T>, CountedSum::mean);
        accumulate_pyramid(input, factor, outputs, |_| window, first, next, keep, render);
    } else {
        let first = Sum::new(
            |v: T| Weighted {
                sum: v.to_f64(),
                count: 1.0,
            },
            mean,
        );
        accumulate_pyramid(input, factor, outputs, |_| window, first, next, keep, render);
    }
}

/// A single mip of `mean_of_means` over integers: no next mip starts from its f64 means,
/// so each window's sum is divided only as far as its truncated quotient needs: in f32,
/// in lanes of i32, where that is exact (`NarrowCountedSum`). The division was most of
/// the time of 1x1x2 and 3x3x1 averaging of u8 (f64 divisions run four to a vector, f32
/// ones eight).
fn one_truncated_mean<T: Element>(
    input: &ArrayViewD<'_, T>,
    window: &Window,
    window_volume: usize,
    output: &mut ArrayViewMutD<'_, T>,
) {
    let src = Source::from_view(input);
    fill_output(output, |out| {
        if NarrowCountedSum::fits::<T>(window_volume) {
            let quotients = Sum::new(NarrowCountedSum::of::<T>, NarrowCountedSum::truncated_mean);
            let render = |&quotient: &i32| T::from_i128(quotient as i128);
            reduce_level_rendered(src, window, quotients, None::<&mut [()]>, |_| (), out, render);
        } else {
            let quotients = Sum::new(CountedSum::of::<T>, CountedSum::truncated_mean);
            let render = |&quotient: &i64| T::from_i128(quotient as i128);
            reduce_level_rendered(src, window, quotients, None::<&mut [()]>, |_| (), out, render);
        }
    });
}

/// The first mip of an integer `mean_of_means`: sum and count of a window in one i64,
/// the count from bit `SUM_BITS` up. Each value is then one integer add, where a
/// `Weighted<f64>` took two float adds and a conversion in lanes twice as wide
/// (measured on 1024x1024x64 u8, 3x3x1, one thread: 47-49 ms against 30-33). Every
/// partial sum is an integer below 2^39 in magnitude, which f64 holds exactly in any
/// order, so the mean is the one the f64 sums give, to the bit.
struct CountedSum;

impl CountedSum {
    const SUM_BITS: u32 = 40;

    /// Whether windows of up to `volume` values of `T` keep the sum inside its signed
    /// field (|sum| < 2^39) and the count below the sign bit.
    fn fits<T: Element>(volume: usize) -> bool {
        let volume_bits = usize::BITS - volume.saturating_sub(1).leading_zeros();
        T::BITS + volume_bits < Self::SUM_BITS && volume_bits < 64 - Self::SUM_BITS - 1
    }

    #[inline(always)]
    fn of<T: Element>(v: T) -> i64 {
        // An integer of at most 32 bits (see `mean_of_means`): exact in i128 and in i64.
        v.to_i128() as i64 + (1 << Self::SUM_BITS)
    }

    #[inline(always)]
    fn sum_and_count(packed: i64) -> (i64, i64) {
        // The sum lies in [-2^39, 2^39): adding 2^39 carries nothing into the count.
        let count = (packed + (1 << (Self::SUM_BITS - 1))) >> Self::SUM_BITS;
        (packed - (count << Self::SUM_BITS), count)
    }

    #[inline(always)]
    fn mean(packed: i64) -> f64 {
        let (sum, count) = Self::sum_and_count(packed);
        small_f64::from_i64(sum) / small_f64::from_i64(count)
    }

    /// sum / count, truncated toward zero.
    #[inline(always)]
    fn truncated_mean(packed: i64) -> i64 {
        let (sum, count) = Self::sum_and_count(packed);
        small_f64::truncate(small_f64::from_i64(sum) / small_f64::from_i64(count))
    }
}

/// `CountedSum` in an i32, the count from bit 24 up, for windows of fewer than 128 values
/// of 8- and 16-bit integers: twice as many lanes to a vector. |sum| < 2^23, so the f32
/// quotient of sum and count truncates to the exact one: a quotient that is not an
/// integer lies at least 1/count from the next integer, and rounding moves it by at most
/// |sum| / count * 2^-24, less than that.
struct NarrowCountedSum;

impl NarrowCountedSum {
    const SUM_BITS: u32 = 24;

    /// Whether windows of up to `volume` values of `T` keep the sum inside its signed
    /// field (|sum| < 2^23) and the count below the sign bit.
    fn fits<T: Element>(volume: usize) -> bool {
        let volume_bits = usize::BITS - volume.saturating_sub(1).leading_zeros();
        T::BITS + volume_bits < Self::SUM_BITS && volume < 1 << (32 - Self::SUM_BITS - 1)
    }

    #[inline(always)]
    fn of<T: Element>(v: T) -> i32 {
        // At most 16 bits (`fits`): exact in i32.
        v.to_i128() as i32 + (1 << Self::SUM_BITS)
    }

    /// sum / count, truncated toward zero.
    #[inline(always)]
    fn truncated_mean(packed: i32) -> i32 {
        // The sum lies in [-2^23, 2^23): adding 2^23 carries nothing into the count.
        let count = (packed + (1 << (Self::SUM_BITS - 1))) >> Self::SUM_BITS;
        let sum = packed - (count << Self::SUM_BITS);
        small_f32::truncate(sum as f32 / count as f32)
    }
}

/// `v as i32` for |v| < 2^22 in operations that vectorise: a saturating `as` took a
/// scalar conversion and two compares per voxel. See `small_f64`.
mod small_f32 {
    /// 2^23 + 2^22 (see `small_f64::MAGIC`).
    const MAGIC: f32 = 12_582_912.0;

    #[inline(always)]
    pub fn truncate(v: f32) -> i32 {
        (v.trunc() + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
    }
}

/// Conversions between f64 and integers of magnitude below 2^51 in operations that
/// vectorise. AVX2 has no conversion between f64 and 64-bit integers, and `as` took a
/// scalar conversion per voxel (two for a mean, and a clamp for a saturating `as u8`):
/// with the division, most of the time of 1x1x2 and 3x3x1 averaging of u8.
mod small_f64 {
    /// 2^52 + 2^51: the f64s from here to 2^52 + 2^52 are the integers, one per unit
    /// in the last place, so an integer added to its bits (as a signed offset from
    /// 2^52 + 2^51) is that f64, and back.
    pub(super) const MAGIC: f64 = 6_755_399_441_055_744.0;

    /// `v as f64`, exactly, for |v| < 2^51.
    #[inline(always)]
    pub fn from_i64(v: i64) -> f64 {
        f64::from_bits((v + MAGIC.to_bits() as i64) as u64) - MAGIC
    }

    /// `v as i64` (truncated toward zero) for |v| < 2^51.
    #[inline(always)]
    pub fn truncate(v: f64) -> i64 {
        (v.trunc() + MAGIC).to_bits() as i64 - MAGIC.to_bits() as i64
    }
}

fn volume(shape: &Dims) -> usize {
    shape.iter().product()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::TestRandom;

    /// Blocks of extreme and random 64-bit values, weighted to a total of 2^shift,
    /// against the i128 sum divided toward zero, for every split and shift it allows.
    fn split_sums_agree_with_i128<T: Element>(pool: &[T], random: impl Fn(u64) -> T) {
        let mut rng = TestRandom(7);
        let mut next = || rng.next();
        for split in 0..=SplitSum::MAX_SPLIT {
            for shift in [0, split / 2, split.saturating_sub(1), split] {
                for _ in 0..50 {
                    // Up to 16 voxels whose weights add up to 2^shift, some doubled as
                    // an edge voxel is for its padding copy.
                    let parts = 1u64 << (next() % (shift.min(4) as u64 + 1));
                    let part = (1u64 << shift) / parts;
                    let mut remaining = 1u64 << shift;
                    let (mut sum, mut exact) = (SplitSum::default(), 0i128);
                    while remaining > 0 {
                        let doubled = remaining >= 2 * part && next() % 4 == 0;
                        let weight = if doubled { 2 * part } else { part };
                        let r = next();
                        let v = if r % 3 == 0 {
                            random(next())
                        } else {
                            pool[(r >> 8) as usize % pool.len()]
                        };
                        sum += SplitSum::of(v, split).times(weight as u32);
                        exact += v.to_i128() * weight as i128;
                        remaining -= weight;
                    }
                    let expected = T::from_i128(exact / (1i128 << shift));
                    assert_eq!(sum.mean::<T>(split, shift), expected, "split {split} shift {shift}");
                }
            }
        }
    }

    /// Sparse blocks (zeros left out) of extreme, small and random values, weighted to
    /// a total of at most 2^split, against the i128 mean of the counted values truncated
    /// toward zero: both of `SparseSplitSum::mean`'s divisions, at every split it allows.
    fn sparse_split_sums_agree_with_i128<T: Element>(pool: &[T], random: impl Fn(u64) -> T) {
        let mut rng = TestRandom(11);
        let mut next = || rng.next();
        for split in 0..=SparseSplitSum::MAX_SPLIT {
            let (mut sums, mut means) = (Vec::new(), Vec::new());
            for trial in 0..200 {
                let parts = 1u64 << (next() % (split.min(4) as u64 + 1));
                let part = (1u64 << split) / parts;
                let mut remaining = 1u64 << split;
                let (mut sum, mut exact, mut count) = (SparseSplitSum::default(), 0i128, 0i128);
                while remaining > 0 {
                    let doubled = remaining >= 2 * part && next() % 4 == 0;
                    let weight = if doubled { 2 * part } else { part };
                    let r = next();
                    let v = match trial % 4 {
                        // Small values (the f64 division) and background: in every
                        // fourth block, and in every block of stretches of 40, so that
                        // some whole chunks of the rendered line have only small sums.
                        _ if trial % 4 == 0 || trial / 40 % 2 == 0 => {
                            T::from_i128((r % 3) as i128 * (r >> 40) as i128 % 1000 - 500 * (r % 2) as i128)
                        }
                        1 if r % 3 == 0 => T::default(),
                        _ if r % 3 == 0 => random(next()),
                        _ => pool[(r >> 8) as usize % pool.len()],
                    };
                    sum += SparseSplitSum::of(v, split).times(weight as u32);
                    if !v.is_zero() {
                        exact += v.to_i128() * weight as i128;
                        count += weight as i128;
                    }
                    remaining -= weight;
                }
                let expected = T::from_i128(if count == 0 { 0 } else { exact / count });
                assert_eq!(sum.mean::<T>(split), expected, "split {split} trial {trial}");
                sums.push(sum);
                means.push(expected);
            }
            // Chunks and runs of small sums, and ones with a large sum, rendered as a
            // line (200 sums: 6 whole chunks of LINE_CHUNK, the last 8 a run).
            let mut rendered = vec![T::default(); sums.len()];
            SparseSplitMeans { split }.render_line(&sums, &mut rendered);
            assert_eq!(rendered, means, "split {split}");
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            if std::arch::is_x86_feature_detected!("avx2") {
                for (sums, means) in sums.chunks_exact(8).zip(means.chunks_exact(8)) {
                    let high = std::array::from_fn(|i| sums[i].high);
                    let low = std::array::from_fn(|i| sums[i].low);
                    let mut got = [0u64; 8];
                    // SAFETY: the CPU has AVX2.
                    unsafe { x86::split_means::<T, 8>(&high, &low, split, &mut got) };
                    assert_eq!(got.map(mean_of_bits::<T>), means, "split {split}, in f64 lanes");
                }
            }
        }
    }

    /// One mip's sparse means made a run at a time from 2 and 4 lines
    /// (`SparseSplitMean::line_pairs`) against each block's exact i128 mean: lengths
    /// around the runs of 8 and the chunks of `LINE_CHUNK`, zeros, and stretches of
    /// 20 blocks of small values (whole runs of them go to f64 lanes) and of full-range
    /// ones (DIV), which some runs straddle.
    fn sparse_split_line_pairs_agree<T: Element, const N: usize>(full: impl Fn(u64) -> T, small: impl Fn(u64) -> T) {
        let mut rng = TestRandom(5);
        let split = (N as u32).trailing_zeros();
        for len in [0usize, 1, 7, 8, 9, 12, 31, 32, 33, 70] {
            let lines: Vec<Vec<T>> = (0..N / 2)
                .map(|_| {
                    (0..2 * len)
                        .map(|x| match rng.next() >> 32 {
                            r if r % 5 == 0 => T::default(),
                            r if (x / 40) % 2 == 0 => small(r),
                            _ => full(rng.next()),
                        })
                        .collect()
                })
                .collect();
            let line_refs: Vec<&[T]> = lines.iter().map(Vec::as_slice).collect();
            let got = row_sums::<T, T, _, N>(
                &OneMipMean(SparseSplitMean { split }),
                &line_refs,
                len,
                T::from_i128(77),
            );
            let expected: Vec<T> = (0..len)
                .map(|x| {
                    let block = lines.iter().flat_map(|line| [line[2 * x], line[2 * x + 1]]);
                    let counted: Vec<i128> = block.map(|v| v.to_i128()).filter(|&v| v != 0).collect();
                    let count = counted.len() as i128;
                    T::from_i128(if count == 0 {
                        0
                    } else {
                        counted.iter().sum::<i128>() / count
                    })
                })
                .collect();
            assert_eq!(got, expected, "len {len}, {} lines", N / 2);
        }
    }

    #[test]
    fn sparse_split_line_pairs_give_the_exact_truncated_mean() {
        let small_signed = |r: u64| (r % 2001) as i64 - 1000;
        sparse_split_line_pairs_agree::<i64, 4>(|r| r as i64, small_signed);
        sparse_split_line_pairs_agree::<i64, 8>(|r| r as i64, small_signed);
        sparse_split_line_pairs_agree::<u64, 4>(|r| r, |r| r % 1000);
        sparse_split_line_pairs_agree::<u64, 8>(|r| r, |r| r % 1000);
    }

    fn row_sums<S: Copy, A: Copy, R: BlockReducer<S, N, Out = A>, const N: usize>(
        reducer: &R,
        lines: &[&[S]],
        len: usize,
        garbage: A,
    ) -> Vec<A> {
        // Garbage first: the first line must start each total from zero.
        let mut results = vec![garbage; len];
        reducer.reduce_line_pairs(lines, &ReadAhead::past_ends(lines), &mut results);
        results
    }

    /// Rows of byte pairs through `BytePairSums` (AVX2 where the CPU has it) against
    /// the scalar `BlockSum` fold, dense and packed with counts, and dense as i8 into
    /// i16: lengths around the 16-lane vector (tails), the ends of the byte range, zeros,
    /// 2 and 4 lines.
    fn byte_pair_rows_agree<const N: usize>() {
        let mut rng = TestRandom(11);
        let mut next = || (rng.next() >> 33) as u8;
        // 2047-4133: `widened_byte_pair_sums`'s pieces of 2048 results.
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 64, 100, 515, 2047, 2048, 2049, 4133] {
            for odd in [0, 1] {
                let rows: Vec<Vec<u8>> = (0..N / 2)
                    .map(|_| {
                        (0..2 * len + odd)
                            .map(|_| match next() % 4 {
                                0 => 0,
                                1 => 255,
                                _ => next(),
                            })
                            .collect()
                    })
                    .collect();
                let lines: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
                let dense = BytePairSums::<_, false, false>::new(BlockSum(<u16 as ShiftedAccumulator>::widen::<u8>), 0);
                let plain = BlockSum::<_, false>(<u16 as ShiftedAccumulator>::widen::<u8>);
                assert_eq!(
                    row_sums::<_, _, _, N>(&dense, &lines, len, 0xAAAA),
                    row_sums::<_, _, _, N>(&plain, &lines, len, 0xAAAA),
                    "dense, {len} results, N = {N}"
                );
                let signed_rows: Vec<Vec<i8>> = rows.iter().map(|r| r.iter().map(|&v| v as i8).collect()).collect();
                let signed_lines: Vec<&[i8]> = signed_rows.iter().map(Vec::as_slice).collect();
                let widen = <i16 as ShiftedAccumulator>::widen::<i8>;
                let dense = BytePairSums::<_, false, false>::new(BlockSum(widen), 0);
                let plain = BlockSum::<_, false>(widen);
                assert_eq!(
                    row_sums::<_, _, _, N>(&dense, &signed_lines, len, -0x5556),
                    row_sums::<_, _, _, N>(&plain, &signed_lines, len, -0x5556),
                    "signed, {len} results, N = {N}"
                );
                let pack = |v: u8| u16::pack(v, 11);
                let packed = BytePairSums::<_, true, true>::new(BlockSum(pack), 11);
                let plain = BlockSum::<_, true>(pack);
                assert_eq!(
                    row_sums::<_, _, _, N>(&packed, &lines, len, 0xAAAA),
                    row_sums::<_, _, _, N>(&plain, &lines, len, 0xAAAA),
                    "packed, {len} results, N = {N}"
                );
                // The same sums widened into the wider accumulators of longer pyramids.
                fn agree<S: Copy + 'static, A, const N: usize, const C: bool>(
                    convert: impl Fn(S) -> A + Sync + Copy,
                    count_shift: u32,
                    lines: &[&[S]],
                    len: usize,
                    garbage: A,
                ) where
                    A: Copy + Default + Send + AddAssign + Scale + PartialEq + std::fmt::Debug + 'static,
                {
                    let widened = BytePairSums::<_, C, C>::new(BlockSum(convert), count_shift);
                    let plain = BlockSum::<_, C>(convert);
                    assert_eq!(
                        row_sums::<_, _, _, N>(&widened, lines, len, garbage),
                        row_sums::<_, _, _, N>(&plain, lines, len, garbage),
                        "widened to {}, {len} results, N = {N}",
                        std::any::type_name::<A>()
                    );
                }
                agree::<_, _, N, false>(<i32 as ShiftedAccumulator>::widen::<u8>, 0, &lines, len, -0x5556);
                agree::<_, _, N, false>(<i64 as ShiftedAccumulator>::widen::<u8>, 0, &lines, len, -0x5556);
                agree::<_, _, N, false>(<i32 as ShiftedAccumulator>::widen::<i8>, 0, &signed_lines, len, 0x5556);
                agree::<_, _, N, false>(<i64 as ShiftedAccumulator>::widen::<i8>, 0, &signed_lines, len, 0x5556);
                agree::<_, _, N, true>(|v: u8| u32::pack(v, 16), 16, &lines, len, 0xAAAA_AAAA);
                agree::<_, _, N, true>(|v: u8| u32::pack(v, 24), 24, &lines, len, 0xAAAA_AAAA);
                agree::<_, _, N, true>(|v: u8| u64::pack(v, 40), 40, &lines, len, 0xAAAA_AAAA_AAAA);
            }
        }
    }

    /// The packed first mip of `mean_of_means` against the (sum, count) pair in f64 it
    /// stands for: windows of every volume `fits` allows at the edge of its bounds, of
    /// extreme and random values.
    fn counted_sums_match_f64<T: Element>(extremes: [T; 2], random: impl Fn(u64) -> T) {
        let mut rng = TestRandom(11);
        let largest = (1usize..1 << 24)
            .rev()
            .find(|&v| CountedSum::fits::<T>(v))
            .expect("some volume fits");
        assert!(!CountedSum::fits::<T>(largest + 1));
        for volume in [1, 2, 9, 27, 64, 256, 1 << 16, largest / 2 + 1, largest]
            .into_iter()
            .filter(|&v| v <= largest)
        {
            // Fewer trials of the millions-of-values windows, which are slow unoptimised.
            for trial in 0..if volume > 4096 { 3 } else { 8 } {
                let (mut packed, mut exact) = (0i64, Weighted::<f64>::default());
                for v in window_values(&mut rng, trial, volume, extremes, &random) {
                    packed += CountedSum::of(v);
                    exact += Weighted {
                        sum: v.to_f64(),
                        count: 1.0,
                    };
                }
                let want = exact.sum / exact.count;
                assert_eq!(CountedSum::mean(packed).to_bits(), want.to_bits(), "volume {volume}");
                // The truncated quotient, in i128 (Rust's division truncates toward zero).
                let quotient = (exact.sum as i128 / exact.count as i128) as i64;
                assert_eq!(CountedSum::truncated_mean(packed), quotient, "volume {volume}");
            }
        }
    }

    /// Sums of every binade (subnormal and near-overflow ones too) over counts of 2^0 to
    /// 2^60, rendered into f32 and f64: the product by the reciprocal must give the
    /// quotient's bits.
    #[test]
    fn float_means_of_power_of_two_counts_multiply_to_the_quotient() {
        fn agree<T: Element>(sum: f64, count: f64) {
            let quotient: T = <f64 as MeanAccumulator>::render(Weighted { sum, count }, Division::Float);
            let product: T = f64::render_power_of_two(sum, count);
            assert_eq!(
                quotient.to_f64().to_bits(),
                product.to_f64().to_bits(),
                "{sum:e} / {count}"
            );
        }
        let mut rng = TestRandom(11);
        let mut next = || rng.next() >> 32;
        let edges = [f64::MIN_POSITIVE, 5e-324, 3e-308, f64::MAX, 1.5, -0.0, 1e-40, 3e38];
        for i in 0..200_000 {
            let sum = match edges.get(i) {
                Some(&edge) => edge,
                None => f64::from_bits(next() << 32 | next()),
            };
            if !sum.is_finite() {
                continue;
            }
            for k in [0, 1, 2, 3, 6, 9, 12, 24, 30, 60] {
                let count = (1u64 << k) as f64;
                agree::<f32>(sum, count);
                agree::<f64>(sum, count);
            }
        }
    }

    /// The `volume` values of a test window: trials 0 and 1 all of one extreme, later
    /// ones a quarter extremes and the rest random.
    fn window_values<T: Element>(
        rng: &mut TestRandom,
        trial: usize,
        volume: usize,
        extremes: [T; 2],
        random: impl Fn(u64) -> T,
    ) -> Vec<T> {
        (0..volume)
            .map(|_| {
                let r = rng.next();
                match trial {
                    0 | 1 => extremes[trial],
                    _ if r % 4 == 0 => extremes[(r >> 8) as usize % 2],
                    _ => random(rng.next()),
                }
            })
            .collect()
    }

    /// Windows of every volume `NarrowCountedSum` takes, all extremes, mixed extremes or
    /// random values: its quotient against the i64 sum divided toward zero.
    fn narrow_counted_sums_match_the_quotient<T: Element>(extremes: [T; 2], random: impl Fn(u64) -> T) {
        let mut rng = TestRandom(13);
        for volume in 1..128 {
            assert!(NarrowCountedSum::fits::<T>(volume), "volume {volume}");
            for trial in 0..6 {
                let (mut packed, mut sum) = (0i32, 0i64);
                for v in window_values(&mut rng, trial, volume, extremes, &random) {
                    packed += NarrowCountedSum::of(v);
                    sum += v.to_i128() as i64;
                }
                let want = sum / volume as i64;
                assert_eq!(NarrowCountedSum::truncated_mean(packed) as i64, want, "volume {volume}");
            }
        }
        assert!(!NarrowCountedSum::fits::<T>(128));
    }

    #[test]
    fn narrow_counted_sums_are_the_truncated_quotients() {
        narrow_counted_sums_match_the_quotient([u8::MIN, u8::MAX], |r| r as u8);
        narrow_counted_sums_match_the_quotient([i8::MIN, i8::MAX], |r| r as i8);
        narrow_counted_sums_match_the_quotient([u16::MIN, u16::MAX], |r| r as u16);
        narrow_counted_sums_match_the_quotient([i16::MIN, i16::MAX], |r| r as i16);
        // 32-bit values never fit, whatever the window.
        assert!(!NarrowCountedSum::fits::<u32>(1) && !NarrowCountedSum::fits::<i32>(2));
    }

    /// `PackedMean::mean` of the packed tiers against the truncated quotient: every count
    /// a tier holds, sums at its limit (2^SUM_BITS - 1) and around every multiple of
    /// the count near there and near 0, and random ones.
    #[test]
    fn packed_means_are_the_truncated_quotients() {
        fn agree<P: PackedMean + TryFrom<u64>, const SUM_BITS: u32>(max_count: u64) {
            let mut rng = TestRandom(17);
            let limit = (1u64 << SUM_BITS) - 1;
            for count in 0..=max_count {
                let mut sums = vec![0, 1, limit, limit - 1, limit / 2];
                for k in [1, 2, 3, limit / count.max(1) - 1, limit / count.max(1)] {
                    let multiple = k * count;
                    sums.extend([multiple.saturating_sub(1), multiple, multiple + 1]);
                }
                sums.extend((0..200).map(|_| rng.next() % (limit + 1)));
                for sum in sums.into_iter().filter(|&s| s <= limit && (count > 0 || s == 0)) {
                    let packed = P::try_from(count << SUM_BITS | sum).unwrap_or_else(|_| unreachable!("fits"));
                    let want = sum / count.max(1);
                    assert_eq!(packed.mean::<u64>(SUM_BITS), want, "{sum} / {count}");
                }
            }
        }
        agree::<u16, 11>(31);
        agree::<u32, 16>(65535);
        agree::<u32, 20>(4095);
        agree::<u32, 24>(255);
        // Counts to 2^23 fit, the first 4096 are tried.
        agree::<u64, 40>(4096);
    }

    /// Windows of values packed one by one (`PackedMean::pack`, zeros among them as
    /// background) against the truncated mean of their non-zero values, for each type a
    /// tier takes at the most values whose sum fits it: signed types too, packed with
    /// their lowest value subtracted.
    #[test]
    fn packed_windows_give_the_truncated_mean_of_their_values() {
        fn agree<T: Element, P: PackedMean, const SUM_BITS: u32>(
            extremes: [T; 2],
            random: impl Fn(u64) -> T,
            most_values: usize,
        ) {
            let mut rng = TestRandom(19);
            for volume in 1..=most_values {
                for trial in 0..12 {
                    let mut values = window_values(&mut rng, trial, volume, extremes, &random);
                    // A third of the later windows hold zeros, one all of them.
                    if trial == 2 {
                        values.fill(T::default());
                    } else if trial % 3 == 0 {
                        values.iter_mut().step_by(2).for_each(|v| *v = T::default());
                    }
                    let packed = values.iter().fold(P::default(), |mut total, &v| {
                        total += P::pack(v, SUM_BITS);
                        total
                    });
                    let counted: Vec<i128> = values.iter().filter(|v| !v.is_zero()).map(|v| v.to_i128()).collect();
                    let want = counted.iter().sum::<i128>() / (counted.len().max(1) as i128);
                    let got: T = packed.mean(SUM_BITS);
                    assert_eq!(got.to_i128(), want, "{values:?}");
                }
            }
        }
        agree::<u8, u16, 11>([1, u8::MAX], |r| r as u8, 8);
        agree::<i8, u16, 11>([i8::MIN, i8::MAX], |r| r as i8, 8);
        agree::<i8, u32, 16>([i8::MIN, i8::MAX], |r| r as i8, 256);
        agree::<i8, u32, 20>([i8::MIN, i8::MAX], |r| r as i8, 2048);
        agree::<u16, u32, 24>([1, u16::MAX], |r| r as u16, 128);
        agree::<i16, u32, 24>([i16::MIN, i16::MAX], |r| r as i16, 128);
        agree::<i32, u64, 40>([i32::MIN, i32::MAX], |r| r as i32, 256);
        agree::<u32, u64, 40>([1, u32::MAX], |r| r as u32, 256);
    }

    #[test]
    fn counted_sums_are_the_f64_means() {
        counted_sums_match_f64([u8::MIN, u8::MAX], |r| r as u8);
        counted_sums_match_f64([i8::MIN, i8::MAX], |r| r as i8);
        counted_sums_match_f64([i16::MIN, i16::MAX], |r| r as i16);
        counted_sums_match_f64([u32::MIN, u32::MAX], |r| r as u32);
        counted_sums_match_f64([i32::MIN, i32::MAX], |r| r as i32);
        // The bounds themselves: 2^39 for the sum, 2^23 for the count.
        assert!(CountedSum::fits::<u32>(128) && !CountedSum::fits::<u32>(129));
        assert!(CountedSum::fits::<u8>(1 << 22) && !CountedSum::fits::<u8>((1 << 22) + 1));
    }

    /// Where truncation toward zero differs from rounding or flooring.
    const NEAR_ZERO: [f64; 8] = [0.0, -0.0, 0.5, -0.5, 0.999_999, -0.999_999, 2.5, -2.5];

    /// Against `as`, at the ends of the range (2^22 excluded), around zero and at random.
    #[test]
    fn small_f32_truncation_is_the_cast() {
        let mut rng = TestRandom(5);
        let limit = ((1 << 22) - 1) as f32;
        let mut floats: Vec<f32> = NEAR_ZERO.iter().map(|&v| v as f32).collect();
        floats.extend([limit, -limit, limit - 0.5]);
        floats.extend(
            (0..10_000).map(|_| ((rng.next() >> 41) as f32 - (1 << 22) as f32) / (2 + rng.next() % 1000) as f32),
        );
        for v in floats {
            assert_eq!(small_f32::truncate(v), v as i32, "{v}");
        }
    }

    /// Against `as`, at the ends of the range (2^51 excluded), around zero and at random.
    #[test]
    fn small_f64_conversions_are_the_casts() {
        let mut rng = TestRandom(3);
        let limit = (1i64 << 51) - 1;
        let mut integers = vec![0, 1, -1, limit, -limit, 1 << 32, -(1 << 32) - 1];
        integers.extend((0..10_000).map(|_| (rng.next() as i64) >> (13 + rng.next() % 50)));
        for v in integers {
            assert_eq!(small_f64::from_i64(v).to_bits(), (v as f64).to_bits(), "{v}");
        }
        let mut floats = NEAR_ZERO.to_vec();
        floats.extend([limit as f64, -limit as f64]);
        floats.extend(
            (0..10_000).map(|_| ((rng.next() >> 12) as f64 - (1u64 << 51) as f64) / (2 + rng.next() % 1000) as f64),
        );
        for v in floats {
            assert_eq!(small_f64::truncate(v), v as i64, "{v}");
        }
    }

    #[test]
    fn byte_pair_sums_match_the_scalar_fold() {
        byte_pair_rows_agree::<4>();
        byte_pair_rows_agree::<8>();
    }

    /// The AVX2 kernel itself, where the CPU has it: every byte value in each position.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_byte_pairs_add_every_byte_value() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let first: Vec<u8> = (0..=255).collect();
        let second: Vec<u8> = (0..=255u8).rev().map(|v| v.rotate_left(3)).collect();
        let lines = [first.as_slice(), second.as_slice()];
        // Whole passes of 32 results, a last vector of 16, and a tail left to the caller;
        // lines read ahead in software and not.
        // Bytes taken as u8, as u8 with counts, and as i8.
        let cases = [(false, false), (false, true), (true, false)]
            .into_iter()
            .flat_map(|(signed, counting)| {
                [false, true]
                    .into_iter()
                    .flat_map(move |software| [16, 48, 112, 120, 128].map(|len| (signed, counting, software, len)))
            });
        for (signed, counting, software, len) in cases {
            let mut results = vec![0xAAAAu16; len];
            let ahead = ReadAhead::past_ends(&lines).with_software(software);
            // SAFETY: the CPU has AVX2 (checked above).
            let done = unsafe {
                match (signed, counting) {
                    (false, true) => x86::byte_pair_sums::<false, true>(&lines, &ahead, &mut results, 11),
                    (false, false) => x86::byte_pair_sums::<false, false>(&lines, &ahead, &mut results, 11),
                    _ => x86::byte_pair_sums::<true, false>(&lines, &ahead, &mut results, 11),
                }
            };
            assert_eq!(done, len / 16 * 16);
            assert!(results[done..].iter().all(|&v| v == 0xAAAA), "the tail is left alone");
            for (x, &got) in results[..done].iter().enumerate() {
                let pack = |v: u8| {
                    let value = if signed { v as i8 as u16 } else { v as u16 };
                    value.wrapping_add(if counting && v != 0 { 1 << 11 } else { 0 })
                };
                let want = lines
                    .iter()
                    .map(|l| pack(l[2 * x]).wrapping_add(pack(l[2 * x + 1])))
                    .fold(0u16, u16::wrapping_add);
                assert_eq!(
                    got, want,
                    "result {x}, signed {signed}, counting {counting}, read ahead in software {software}"
                );
            }
        }
    }

    /// Every reachable packed u16 of one sparse u8 mip (counts to 15, sums to 255 per
    /// count and below 2^11) through `PackedMeans` (AVX2 where the CPU has it) against
    /// `PackedMean::mean`, and counts past 15 left to the scalar path.
    #[test]
    fn packed_byte_means_match_the_scalar_division() {
        let mut values: Vec<u16> = (0..=15u16)
            .flat_map(|count| (0..=(255 * count).min(2047)).map(move |sum| count << 11 | sum))
            .collect();
        // Pad to whole 32-value vectors with the tail of the scalar path after them.
        values.extend((0..37).map(|i| ((i % 9) << 11) | (7 * (i % 9))));
        let expected: Vec<u8> = values.iter().map(|p| p.mean::<u8>(11)).collect();
        let mut got = vec![0xAAu8; values.len()];
        PackedMeans::<11>.render_line(&values, &mut got);
        if let Some(x) = (0..values.len()).find(|&x| got[x] != expected[x]) {
            panic!("packed {:#06x}: got {} want {}", values[x], got[x], expected[x]);
        }
        // A count above 15 (only reachable with wider counts) stops the vector path.
        let mut beyond: Vec<u16> = (0..64).map(|i| 4 << 11 | i).collect();
        beyond[40] = 20 << 11 | 400;
        let expected: Vec<u8> = beyond.iter().map(|p| p.mean::<u8>(11)).collect();
        let mut got = vec![0u8; beyond.len()];
        PackedMeans::<11>.render_line(&beyond, &mut got);
        assert_eq!(got, expected);
    }

    /// Rows of u16 pairs through `KeptSums` (AVX2 where the CPU has it) against sums
    /// added one by one: lengths around the 16-lane vector, 2 and 4 lines, values up to
    /// 65535 (signed in the kernel's multiply-add) in blocks whose totals fit, as a
    /// pyramid's accumulators do.
    fn kept_rows_agree<const N: usize>() {
        let mut rng = TestRandom(5);
        let mut next = || (rng.next() >> 33) as u32;
        let lines_per_row = N / 2;
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100, 515] {
            let mut rows = vec![vec![0u16; 2 * len]; lines_per_row];
            for x in 0..len {
                // One value anywhere in the range, the rest sharing what is left.
                let big = next() % 65536;
                let share = (65535 - big) / (N as u32 - 1) + 1;
                for i in 0..N {
                    let v = if i == (x % N) { big } else { next() % share };
                    rows[i / 2][2 * x + i % 2] = v as u16;
                }
            }
            let lines: Vec<&[u16]> = rows.iter().map(Vec::as_slice).collect();
            let mut got = vec![0xAAAAu16; len];
            BlockReducer::<u16, N>::reduce_line_pairs(&KeptSums, &lines, &ReadAhead::past_ends(&lines), &mut got);
            let want: Vec<u16> = (0..len)
                .map(|x| (0..N).map(|i| u32::from(rows[i / 2][2 * x + i % 2])).sum::<u32>() as u16)
                .collect();
            assert_eq!(got, want, "{len} results, N = {N}");
        }
    }

    #[test]
    fn kept_sums_match_sums_added_one_by_one() {
        kept_rows_agree::<4>();
        kept_rows_agree::<8>();
        signed_kept_rows_agree::<4>();
        signed_kept_rows_agree::<8>();
    }

    /// The same for i16 accumulators (an i8 pyramid's), seen by the kernel as u16:
    /// values of either sign whose block totals fit.
    fn signed_kept_rows_agree<const N: usize>() {
        let mut rng = TestRandom(6);
        let mut next = || (rng.next() >> 33) as i32;
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100, 515] {
            let rows: Vec<Vec<i16>> = (0..N / 2)
                .map(|_| {
                    (0..2 * len)
                        .map(|_| (next() % 65536 / N as i32 - 32768 / N as i32) as i16)
                        .collect()
                })
                .collect();
            let lines: Vec<&[i16]> = rows.iter().map(Vec::as_slice).collect();
            let mut got = vec![-0x5556i16; len];
            BlockReducer::<i16, N>::reduce_line_pairs(&KeptSums, &lines, &ReadAhead::past_ends(&lines), &mut got);
            let want: Vec<i16> = (0..len)
                .map(|x| (0..N).map(|i| i32::from(rows[i / 2][2 * x + i % 2])).sum::<i32>() as i16)
                .collect();
            assert_eq!(got, want, "{len} results, N = {N}");
        }
    }

    /// Every u16 accumulator through `ShiftedRender` into u8 (AVX2 where the CPU has
    /// it), for every shift a pyramid uses, against the scalar rendering, with a tail.
    #[test]
    fn shifted_render_of_u16_into_u8_matches_the_scalar_rendering() {
        let values: Vec<u16> = (0..=u16::MAX).chain(0..21).collect();
        for shift in 0..=8 {
            let expected: Vec<u8> = values.iter().map(|&acc| (acc >> shift) as u8).collect();
            let mut got = vec![0xAAu8; values.len()];
            ShiftedRender { shift }.render_line(&values, &mut got);
            if let Some(x) = (0..values.len()).find(|&x| got[x] != expected[x]) {
                panic!("shift {shift}: {} gave {} want {}", values[x], got[x], expected[x]);
            }
        }
    }

    /// Every i16 accumulator through `ShiftedRender` into i8 (AVX2 where the CPU has
    /// it), for every shift a pyramid uses: truncated toward zero, as the scalar
    /// rendering does, with a tail.
    #[test]
    fn shifted_render_of_i16_into_i8_matches_the_scalar_rendering() {
        let values: Vec<i16> = (i16::MIN..=i16::MAX).chain(-10..11).collect();
        for shift in 0..=8 {
            let expected: Vec<i8> = values.iter().map(|&acc| acc.shift_toward_zero(shift) as i8).collect();
            let mut got = vec![-0x56i8; values.len()];
            ShiftedRender { shift }.render_line(&values, &mut got);
            if let Some(x) = (0..values.len()).find(|&x| got[x] != expected[x]) {
                panic!("shift {shift}: {} gave {} want {}", values[x], got[x], expected[x]);
            }
        }
    }

    #[test]
    fn split_sums_give_the_exact_truncated_mean() {
        split_sums_agree_with_i128::<i64>(&[i64::MIN, i64::MAX, i64::MAX - 1, -1, 0, 1, i64::MIN + 1], |r| {
            r as i64
        });
        split_sums_agree_with_i128::<u64>(&[u64::MAX, u64::MAX - 1, 0, 1, 1 << 63], |r| r);
        split_sums_agree_with_i128::<i32>(&[i32::MIN, i32::MAX, -1, 0, 1], |r| r as i32);
    }

    #[test]
    fn sparse_split_sums_give_the_exact_truncated_mean() {
        sparse_split_sums_agree_with_i128::<i64>(&[i64::MIN, i64::MAX, i64::MAX - 1, -1, 1, i64::MIN + 1], |r| {
            r as i64
        });
        sparse_split_sums_agree_with_i128::<u64>(&[u64::MAX, u64::MAX - 1, 1, 1 << 63, 1 << 53], |r| r);
        sparse_split_sums_agree_with_i128::<i32>(&[i32::MIN, i32::MAX, -1, 1], |r| r as i32);
        sparse_split_sums_agree_with_i128::<u32>(&[u32::MAX, 1], |r| r as u32);
    }
}
