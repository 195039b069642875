//! Hand-worked cases for every rule of SEMANTICS.md (the contract of the library).
//!
//! Each test is named after the rule it checks and shows the arithmetic that gives the
//! expected values. Expected values are derived by hand or by the small, independent
//! models at the top of this file (written from SEMANTICS.md alone); nothing here was
//! obtained by running the library and pasting its output.
//!
//! Conventions used below:
//! * Arrays are indexed [x, y, z, ...]. `fx(shape, data)` lists `data` x-fastest
//!   (Fortran order), so a 2D literal is written one y-row per source line.
//! * A 2x2 block is (a, b, c, d) = ((0,0), (1,0), (0,1), (1,1)), i.e. `fx(&[2, 2], &[a, b, c, d])`.
//! * A 2x2x2 block is listed in scan order (x fastest): (0,0,0), (1,0,0), (0,1,0), (1,1,0),
//!   (0,0,1), (1,0,1), (0,1,1), (1,1,1).

#![allow(clippy::needless_range_loop, clippy::excessive_precision, clippy::approx_constant)]

use std::fmt::Debug;

use ndarray::{s, ArrayD, ArrayViewD, ArrayViewMutD, Dimension, IxDyn, ShapeBuilder, Zip};
use tinybrain::{
    downsample, downsample_into, downsample_segmentation, downsample_with_averaging, downsample_with_max_pooling,
    downsample_with_min_pooling, downsample_with_striding, mip_shape, pyramid_len, set_num_threads, Element, ErrorKind,
    Method,
};

// ───────────────────────────── construction helpers ─────────────────────────────

/// An array of `shape` from `data` listed x-fastest (axis 0 fastest, Fortran order).
fn fx<T: Clone>(shape: &[usize], data: &[T]) -> ArrayD<T> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "fx: data does not fill {shape:?}"
    );
    ArrayD::from_shape_vec(IxDyn(shape).f(), data.to_vec()).unwrap()
}

/// The elements of `a` listed x-fastest (Fortran order).
fn fdata<T: Copy>(a: &ArrayD<T>) -> Vec<T> {
    a.t().iter().copied().collect()
}

/// A C-ordered array whose element at index i is f(i).
fn from_fn<T>(shape: &[usize], mut f: impl FnMut(&[usize]) -> T) -> ArrayD<T> {
    ArrayD::from_shape_fn(IxDyn(shape), |i: IxDyn| f(i.slice()))
}

/// splitmix64: a tiny deterministic generator for "random" volumes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn random<T>(shape: &[usize], seed: u64, mut g: impl FnMut(u64) -> T) -> ArrayD<T> {
    let mut rng = Rng(seed);
    from_fn(shape, |_| g(rng.next()))
}

/// Bit patterns, so that float comparisons are exact and NaN-safe.
trait Bits: Copy + Debug {
    fn bits(self) -> u64;
}
macro_rules! int_bits {
    ($($t:ty => $u:ty),*) => { $(impl Bits for $t { fn bits(self) -> u64 { self as $u as u64 } })* };
}
int_bits!(u8 => u8, i8 => u8, u16 => u16, i16 => u16, u32 => u32, i32 => u32, u64 => u64, i64 => u64);
impl Bits for f32 {
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
}
impl Bits for f64 {
    fn bits(self) -> u64 {
        self.to_bits()
    }
}

fn bits_of<T: Bits>(a: &ArrayD<T>) -> ArrayD<u64> {
    a.mapv(|v| v.bits())
}

/// Same number of mips, same shapes, same bits.
fn assert_same<T: Bits>(got: &[ArrayD<T>], want: &[ArrayD<T>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of mips");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.shape(), w.shape(), "{what}: shape of mip {}", k + 1);
        assert!(
            bits_of(g) == bits_of(w),
            "{what}: mip {} differs:\n got {g:?}\nwant {w:?}",
            k + 1
        );
    }
}

// ─────────────────────────────── library shorthands ───────────────────────────────

fn avg<T: Element>(a: &ArrayD<T>, f: &[usize], n: usize) -> Vec<ArrayD<T>> {
    downsample_with_averaging(a.view(), f, n, false).unwrap()
}
fn avg_sparse<T: Element>(a: &ArrayD<T>, f: &[usize], n: usize) -> Vec<ArrayD<T>> {
    downsample_with_averaging(a.view(), f, n, true).unwrap()
}
fn mode<T: Element>(a: &ArrayD<T>, f: &[usize], n: usize) -> Vec<ArrayD<T>> {
    downsample_segmentation(a.view(), f, n, false).unwrap()
}
fn mode_sparse<T: Element>(a: &ArrayD<T>, f: &[usize], n: usize) -> Vec<ArrayD<T>> {
    downsample_segmentation(a.view(), f, n, true).unwrap()
}
fn min_pool<T: Element>(a: &ArrayD<T>, f: &[usize], n: usize) -> Vec<ArrayD<T>> {
    downsample_with_min_pooling(a.view(), f, n).unwrap()
}
fn max_pool<T: Element>(a: &ArrayD<T>, f: &[usize], n: usize) -> Vec<ArrayD<T>> {
    downsample_with_max_pooling(a.view(), f, n).unwrap()
}
fn stride<T: Element>(a: &ArrayD<T>, f: &[usize], n: usize) -> Vec<ArrayD<T>> {
    downsample_with_striding(a.view(), f, n).unwrap()
}

/// Every (method, sparse) combination the API accepts.
const METHODS: [(Method, bool); 7] = [
    (Method::Average, false),
    (Method::Average, true),
    (Method::Mode, false),
    (Method::Mode, true),
    (Method::Min, false),
    (Method::Max, false),
    (Method::Stride, false),
];

// ─────────────────────── independent models (from SEMANTICS.md) ───────────────────────

/// Window offsets of a factor, axis 0 fastest (the contract's scan order).
fn offsets(f: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = f.iter().product();
    (0..n)
        .map(|mut lin| {
            f.iter()
                .map(|&fi| {
                    let o = lin % fi;
                    lin /= fi;
                    o
                })
                .collect()
        })
        .collect()
}

fn pad_factor(f: &[usize], ndim: usize) -> Vec<usize> {
    let mut p = vec![1; ndim];
    p[..f.len().min(ndim)].copy_from_slice(&f[..f.len().min(ndim)]);
    p
}

/// One level: g(window values, scan order) for every output voxel. `replicate`: indices
/// past the end repeat the last element (replicate padding); otherwise they are left out
/// (clipped window).
fn reduce<T: Copy, U>(a: &ArrayD<T>, f: &[usize], replicate: bool, g: impl Fn(&[T]) -> U) -> ArrayD<U> {
    let f = pad_factor(f, a.ndim());
    let shape = a.shape().to_vec();
    let out_shape: Vec<usize> = shape.iter().zip(&f).map(|(&s, &fi)| s.div_ceil(fi)).collect();
    let offs = offsets(&f);
    let mut idx = vec![0; shape.len()];
    let mut vals = Vec::with_capacity(offs.len());
    from_fn(&out_shape, |o| {
        vals.clear();
        'window: for off in &offs {
            for ax in 0..shape.len() {
                let i = o[ax] * f[ax] + off[ax];
                if i >= shape[ax] {
                    if !replicate {
                        continue 'window;
                    }
                    idx[ax] = shape[ax] - 1;
                } else {
                    idx[ax] = i;
                }
            }
            vals.push(a[idx.as_slice()]);
        }
        g(&vals)
    })
}

/// How many axes carry factor 2 when every factor is 1 or 2 (None otherwise).
fn twos(f: &[usize]) -> Option<usize> {
    f.iter()
        .all(|&x| x == 1 || x == 2)
        .then(|| f.iter().filter(|&&x| x == 2).count())
}

/// Non-sparse integer averaging: the accumulator scheme of the 2x2 / 2x2x2 families
/// (reset cycles per dtype width), the f64 clipped mean chain for other factors.
fn model_avg_int(img: &ArrayD<i128>, f: &[usize], n: usize, dtype_bits: u32) -> Vec<ArrayD<i128>> {
    let f = pad_factor(f, img.ndim());
    let mut out = Vec::new();
    match twos(&f) {
        Some(b @ (2 | 3)) => {
            let b = b as u32; // log2 of the block size
            let cycle: Option<u32> = match (b, dtype_bits) {
                (_, 32 | 64) => None,
                (2, _) => Some(4),
                (3, 8) => Some(8),
                (3, 16) => Some(5),
                _ => unreachable!(),
            };
            let mut acc = img.clone();
            for m in 0..n as u32 {
                acc = reduce(&acc, &f, true, |w| w.iter().sum::<i128>());
                let shift = match cycle {
                    Some(c) => b * (m % c + 1),
                    None => b * (m + 1),
                };
                out.push(acc.mapv(|v| v / (1i128 << shift))); // i128 '/' truncates toward zero
                if let Some(c) = cycle {
                    if m % c == c - 1 {
                        acc.mapv_inplace(|v| v >> shift); // arithmetic shift = floor
                    }
                }
            }
        }
        _ => {
            let mut cur = img.mapv(|v| v as f64);
            for _ in 0..n {
                cur = reduce(&cur, &f, false, |w| w.iter().sum::<f64>() / w.len() as f64);
                out.push(cur.mapv(|v| v.trunc() as i128));
            }
        }
    }
    out
}

/// Float averaging: f64 replicate-padded accumulator / blocks^k for the 2x2 / 2x2x2
/// families, f64 clipped mean chain otherwise.
fn model_avg_float(img: &ArrayD<f64>, f: &[usize], n: usize) -> Vec<ArrayD<f64>> {
    let f = pad_factor(f, img.ndim());
    let mut out = Vec::new();
    match twos(&f) {
        Some(b @ (2 | 3)) => {
            let mut acc = img.clone();
            for m in 0..n {
                acc = reduce(&acc, &f, true, |w| w.iter().sum::<f64>());
                let div = ((1u64 << b) as f64).powi(m as i32 + 1);
                out.push(acc.mapv(|v| v / div));
            }
        }
        _ => {
            let mut cur = img.clone();
            for _ in 0..n {
                cur = reduce(&cur, &f, false, |w| w.iter().sum::<f64>() / w.len() as f64);
                out.push(cur.clone());
            }
        }
    }
    out
}

/// Sparse averaging: sum and count of the nonzero input voxels under each output voxel,
/// with the same padding rule as the non-sparse path.
fn model_avg_sparse<V>(img: &ArrayD<V>, f: &[usize], n: usize, div: impl Fn(V, V) -> V) -> Vec<ArrayD<V>>
where
    V: Copy + PartialEq + Default + std::iter::Sum<V> + From<u8>,
{
    let f = pad_factor(f, img.ndim());
    let replicate = matches!(twos(&f), Some(2 | 3));
    let zero = V::default();
    let mut num = img.clone();
    let mut den = img.mapv(|v| V::from((v != zero) as u8));
    let mut out = Vec::new();
    for _ in 0..n {
        num = reduce(&num, &f, replicate, |w| w.iter().copied().sum::<V>());
        den = reduce(&den, &f, replicate, |w| w.iter().copied().sum::<V>());
        out.push(
            Zip::from(&num)
                .and(&den)
                .map_collect(|&a, &b| if b == zero { zero } else { div(a, b) }),
        );
    }
    out
}

/// The 2x2 mode rule on (a, b, c, d).
fn mode_rule_2x2(w: &[u64], sparse: bool) -> u64 {
    let (a, b, c, d) = (w[0], w[1], w[2], w[3]);
    if !sparse {
        return if a == b || a == c {
            a
        } else if b == c {
            b
        } else {
            d
        };
    }
    if a != 0 && (a == b || a == c) {
        a
    } else if b != 0 && b == c {
        b
    } else if d != 0 {
        d
    } else {
        [a, b, c].into_iter().find(|&v| v != 0).unwrap_or(0)
    }
}

/// Most frequent value, ties to the earliest first occurrence; sparse: zeros are not candidates.
fn most_frequent(w: &[u64], sparse: bool) -> u64 {
    let (mut best, mut best_count) = (0, 0);
    for (i, &v) in w.iter().enumerate() {
        if (sparse && v == 0) || w[..i].contains(&v) {
            continue;
        }
        let count = w.iter().filter(|&&u| u == v).count();
        if count > best_count {
            (best, best_count) = (v, count);
        }
    }
    best
}

/// Mode pooling on bit patterns, mode of modes.
fn model_mode(img: &ArrayD<u64>, f: &[usize], n: usize, sparse: bool) -> Vec<ArrayD<u64>> {
    let f = pad_factor(f, img.ndim());
    let mut cur = img.clone();
    let mut out = Vec::new();
    for _ in 0..n {
        cur = match twos(&f) {
            Some(2) => reduce(&cur, &f, true, |w| mode_rule_2x2(w, sparse)),
            Some(3) => reduce(&cur, &f, true, |w| most_frequent(w, sparse)),
            _ => reduce(&cur, &f, false, |w| most_frequent(w, sparse)),
        };
        out.push(cur.clone());
    }
    out
}

// ═══════════════════════════════════ Conventions ═══════════════════════════════════

#[test]
fn conventions_mip_shape_is_ceil_of_size_over_factor_to_the_k() {
    // 5 -> ceil(5/2)=3 -> ceil(5/4)=2 -> ceil(5/8)=1; 7 -> 4 -> 2 -> 1; factor 1 keeps 3.
    assert_eq!(mip_shape(&[5, 7, 3], &[2, 2, 1], 1), vec![3, 4, 3]);
    assert_eq!(mip_shape(&[5, 7, 3], &[2, 2, 1], 2), vec![2, 2, 3]);
    assert_eq!(mip_shape(&[5, 7, 3], &[2, 2, 1], 3), vec![1, 1, 3]);
    // 10 with factor 3: ceil(10/3)=4, ceil(10/9)=2, ceil(10/27)=1.
    assert_eq!(mip_shape(&[10], &[3], 1), vec![4]);
    assert_eq!(mip_shape(&[10], &[3], 2), vec![2]);
    assert_eq!(mip_shape(&[10], &[3], 3), vec![1]);
    // pyramid of 2 mips: 3*4*3 + 2*2*3 = 36 + 12 = 48 elements.
    assert_eq!(pyramid_len(&[5, 7, 3], &[2, 2, 1], 2).unwrap(), 48);

    // Every method returns exactly these shapes on odd, non-divisible sizes; a missing
    // trailing factor entry means 1 ([3, 2] on a 3D array is [3, 2, 1]).
    let a = from_fn(&[10, 5, 3], |i| (i[0] + 3 * i[1] + 7 * i[2]) as u8);
    for (method, sparse) in METHODS {
        let outs = downsample(method, a.view(), &[3, 2], 3, sparse).unwrap();
        // 10 -> 4 -> 2 -> 1 ; 5 -> 3 -> 2 -> 1 ; 3 stays 3
        let shapes: Vec<&[usize]> = outs.iter().map(|o| o.shape()).collect();
        assert_eq!(
            shapes,
            vec![&[4, 3, 3][..], &[2, 2, 3], &[1, 1, 3]],
            "{method:?} sparse={sparse}"
        );
    }
}

#[test]
fn conventions_num_mips_zero_returns_an_empty_list() {
    let a = from_fn(&[4, 4], |i| (i[0] * 4 + i[1]) as u16);
    for (method, sparse) in METHODS {
        let outs = downsample(method, a.view(), &[2, 2], 0, sparse).unwrap();
        assert!(outs.is_empty(), "{method:?} sparse={sparse}");
        // ... and downsample_into with no outputs writes nothing and succeeds.
        downsample_into(method, a.view(), &[2, 2], sparse, &mut []).unwrap();
    }
    assert!(avg(&a, &[2, 2], 0).is_empty());
    assert!(mode(
        &a.mapv(|v| v as u8).into_shape_with_order(IxDyn(&[4, 4, 1])).unwrap(),
        &[2, 2, 2],
        0
    )
    .is_empty());
    assert!(min_pool(&a, &[3], 0).is_empty());
    assert!(max_pool(&a, &[3], 0).is_empty());
    assert!(stride(&a, &[2, 2], 0).is_empty());
}

#[test]
fn conventions_all_ones_factor_copies_the_input_into_every_mip() {
    // u16 with zeros (sparse must not change anything either) and f32 with NaN, -0.0, inf.
    let a = from_fn(&[5, 3, 2], |i| ((i[0] * 7 + i[1] * 3 + i[2]) % 5) as u16);
    let fl = fx(&[2, 3], &[1.5f32, f32::NAN, -0.0, 0.0, f32::INFINITY, -7.25]);
    for factor in [&[1usize, 1, 1][..], &[1], &[]] {
        for (method, sparse) in METHODS {
            let outs = downsample(method, a.view(), factor, 3, sparse).unwrap();
            assert_same(
                &outs,
                &[a.clone(), a.clone(), a.clone()],
                &format!("{method:?} {sparse} {factor:?}"),
            );
            let outs = downsample(method, fl.view(), factor, 2, sparse).unwrap();
            assert_same(
                &outs,
                &[fl.clone(), fl.clone()],
                &format!("f32 {method:?} {sparse} {factor:?}"),
            );
        }
    }
}

// ═══════════════════════════ Average pooling: the 2x2 family ═══════════════════════════

#[test]
fn avg_2x2_even_blocks_are_truncated_block_means() {
    let a = fx(
        &[4, 2],
        &[
            10, 20, 1, 2, // y = 0
            30, 40, 3, 5, // y = 1
        ],
    );
    // block (0,0): (10+20+30+40)/4 = 25 ; block (1,0): (1+2+3+5)/4 = 11/4 = 2.75 -> 2
    assert_eq!(avg(&a, &[2, 2], 1), vec![fx(&[2, 1], &[25u8, 2])]);

    // Mip 2 is the accumulator / 16, not the mean of the truncated mip 1.
    let b = fx(
        &[4, 4],
        &[
            0, 1, 1, 1, // y = 0
            1, 1, 1, 0, // y = 1
            1, 0, 2, 2, // y = 2
            1, 1, 2, 1, // y = 3
        ],
    );
    // block sums: (0,0) 0+1+1+1 = 3 ; (1,0) 1+1+1+0 = 3 ; (0,1) 1+0+1+1 = 3 ; (1,1) 2+2+2+1 = 7
    // mip 1 = [3/4, 3/4, 3/4, 7/4] -> [0, 0, 0, 1]
    // mip 2 = 16/16 = 1   (the mean of the written mip 1 would be 1/4 -> 0)
    assert_eq!(
        avg(&b, &[2, 2], 2),
        vec![fx(&[2, 2], &[0u8, 0, 0, 1]), fx(&[1, 1], &[1u8])]
    );
    // The same with the 2x2 factor spelled (2,2,1) on a 3D array and (2,2,1,1) on 4D.
    let b3 = fx(&[4, 4, 1], &fdata(&b));
    assert_eq!(avg(&b3, &[2, 2, 1], 2)[1], fx(&[1, 1, 1], &[1u8]));
    let b4 = fx(&[4, 4, 1, 1], &fdata(&b));
    assert_eq!(avg(&b4, &[2, 2, 1, 1], 2)[1], fx(&[1, 1, 1, 1], &[1u8]));
}

#[test]
fn avg_2x2_odd_edges_use_replicate_padding() {
    let a = fx(
        &[3, 3],
        &[
            10, 20, 30, // y = 0
            40, 50, 61, // y = 1
            70, 80, 91, // y = 2
        ],
    );
    // (0,0): 10+20+40+50 = 120/4 = 30
    // (1,0): x=2 repeated: 30+30+61+61 = 182/4 = 45.5 -> 45   (= mean of the 2 real voxels)
    // (0,1): y=2 repeated: 70+80+70+80 = 300/4 = 75
    // (1,1): corner 91*4/4 = 91
    // mip 2: accumulator 120+182+300+364 = 966, /16 = 60.375 -> 60
    let want = vec![fx(&[2, 2], &[30u8, 45, 75, 91]), fx(&[1, 1], &[60u8])];
    assert_eq!(avg(&a, &[2, 2], 2), want);
    assert_eq!(avg(&a, &[2, 2], 1), want[..1].to_vec());

    // Replicate padding also weights the edge at later mips (mip k+1 sums the padded
    // accumulator of mip k):
    let e = fx(
        &[3, 2],
        &[
            0, 0, 100, // y = 0
            0, 0, 100, // y = 1
        ],
    );
    // mip 1: [0, (100*4)/4 = 100]; accumulators [0, 400]
    // mip 2: y has size 1 -> repeated: 0 + 400 + 0 + 400 = 800, /16 = 50
    //        (the mean of the 6 real voxels would be 200/6 = 33)
    assert_eq!(
        avg(&e, &[2, 2], 2),
        vec![fx(&[2, 1], &[0u8, 100]), fx(&[1, 1], &[50u8])]
    );

    // Signed odd edge along x with y of size 1: [-3, -4, -5]
    // (0): 2*(-3-4) = -14, /4 = -3.5 -> -3 ; (1): 4*(-5)/4 = -5
    let s = fx(&[3, 1], &[-3i8, -4, -5]);
    assert_eq!(avg(&s, &[2, 2], 1), vec![fx(&[2, 1], &[-3i8, -5])]);
}

#[test]
fn avg_2x2_signed_rounding_truncates_toward_zero() {
    // -1-2-3-5 = -11, /4 = -2.75 -> -2 (floor would give -3)
    let a = fx(&[2, 2], &[-1i8, -2, -3, -5]);
    assert_eq!(avg(&a, &[2, 2], 1), vec![fx(&[1, 1], &[-2i8])]);
    assert_eq!(avg(&a.mapv(|v| v as i16), &[2, 2], 2)[0], fx(&[1, 1], &[-2i16]));

    // A lone -100 in a 32x32 int8 zero image, 5 mips:
    //   mip 1: -100/4 = -25 ; mip 2: -100/16 = -6.25 -> -6 ; mip 3: -100/64 = -1.56 -> -1 ;
    //   mip 4: -100/256 = -0.39 -> 0 ; reset: -100 >> 8 = -1 (floor) ;
    //   mip 5: accumulator -1 + 0 + 0 + 0 = -1, /4 = -0.25 -> 0
    let (px, py) = (17, 5);
    let mut img = ArrayD::<i8>::zeros(IxDyn(&[32, 32]));
    img[[px, py]] = -100;
    let outs = avg(&img, &[2, 2], 5);
    for (k, want) in [-25i8, -6, -1, 0, 0].into_iter().enumerate() {
        let n = 32 >> (k + 1);
        let mut expected = ArrayD::<i8>::zeros(IxDyn(&[n, n]));
        expected[[px >> (k + 1), py >> (k + 1)]] = want;
        assert_eq!(outs[k], expected, "mip {}", k + 1);
    }
    // 32/64-bit ints: -100 / 4^k truncated: -25, -6, -1, 0, 0 as well.
    let at = |k: usize| [px >> (k + 1), py >> (k + 1)];
    let wide: Vec<i32> = avg(&img.mapv(i32::from), &[2, 2], 5)
        .iter()
        .enumerate()
        .map(|(k, o)| o[at(k)])
        .collect();
    assert_eq!(wide, vec![-25, -6, -1, 0, 0]);
    let wide: Vec<i64> = avg(&img.mapv(i64::from), &[2, 2], 5)
        .iter()
        .enumerate()
        .map(|(k, o)| o[at(k)])
        .collect();
    assert_eq!(wide, vec![-25, -6, -1, 0, 0]);
}

#[test]
fn avg_2x2_accumulator_reset_floors_toward_minus_infinity() {
    // int8 32x32 zeros with a -1 in each 16x16 quadrant.
    let mut img = ArrayD::<i8>::zeros(IxDyn(&[32, 32]));
    for (x, y) in [(0, 0), (16, 0), (0, 16), (16, 16)] {
        img[[x, y]] = -1;
    }
    // mips 1..4: -1 / 4^k truncates to 0 everywhere.
    // after mip 4 each quadrant's accumulator -1 is shifted: -1 >> 8 = -1 (floor, not 0);
    // mip 5: -1-1-1-1 = -4, rendered -4/4 = -1.  The exact mean -4/1024 would give 0.
    let outs = avg(&img, &[2, 2], 5);
    for k in 0..4 {
        assert!(outs[k].iter().all(|&v| v == 0), "mip {}", k + 1);
    }
    assert_eq!(outs[4], fx(&[1, 1], &[-1i8]));
    // Same cadence for int16 (2x2 cycle is 4 mips for 8- and 16-bit types) ...
    assert_eq!(avg(&img.mapv(i16::from), &[2, 2], 5)[4], fx(&[1, 1], &[-1i16]));
    // ... while 32/64-bit ints never reset: -4/1024 -> 0.
    assert_eq!(avg(&img.mapv(i32::from), &[2, 2], 5)[4], fx(&[1, 1], &[0i32]));
    assert_eq!(avg(&img.mapv(i64::from), &[2, 2], 5)[4], fx(&[1, 1], &[0i64]));
}

/// 512x512 tiled with period 32: in every 32x32 tile the quadrant "D" (x%32 >= 16 and
/// y%32 >= 16) is a 0/1 checkerboard (mean 0.5), the other three quadrants a 1/2
/// checkerboard (mean 1.5).
fn cadence_image() -> ArrayD<u8> {
    from_fn(&[512, 512], |i| {
        let cb = ((i[0] + i[1]) % 2) as u8;
        if i[0] % 32 >= 16 && i[1] % 32 >= 16 {
            cb
        } else {
            1 + cb
        }
    })
}

#[test]
fn avg_2x2_truncation_cadence_over_9_mips_u8() {
    let img = cadence_image();
    let lib = avg(&img, &[2, 2], 9);
    // Mips 1..4 (block 2^k <= 16 lies in one quadrant): accumulator = 1.5*4^k or 0.5*4^k,
    //   rendered >> 2k: 1 or 0. E.g. mip 1: 1+2+2+1 = 6, 6>>2 = 1 ; 0+1+1+0 = 2, 2>>2 = 0.
    // After mip 4 (shift 8) the accumulator is reset: 384>>8 = 1, 128>>8 = 0.
    // Mip 5 (a tile): 1+1+1+0 = 3, 3>>2 = 0 ; mip 6: 12>>4 = 0 ; mip 7: 48>>6 = 0 ;
    // mip 8: 192>>8 = 0 (reset to 0) ; mip 9: 0.
    // The exact mean of every tile is (3*384 + 128)/1024 = 1.25 -> 1 at mips 5..9.
    let u32_img = img.mapv(u32::from);
    for k in 1..=9usize {
        let (b, n) = (1usize << k, 512usize >> k);
        let want = from_fn(&[n, n], |o| {
            let d = (o[0] * b) % 32 >= 16 && (o[1] * b) % 32 >= 16;
            u8::from(k <= 4 && !d)
        });
        assert_eq!(lib[k - 1], want, "mip {k}");
        // independent exact floor mean of each 2^k x 2^k block
        let exact = reduce(&u32_img, &[b, b], false, |w| w.iter().sum::<u32>() / w.len() as u32);
        if k <= 4 {
            assert_eq!(exact.mapv(|v| v as u8), want, "exact mean, mip {k}");
        } else {
            assert!(exact.iter().all(|&v| v == 1), "exact mean is 1 at mip {k}");
            assert!(
                lib[k - 1].iter().all(|&v| v == 0),
                "but the 4-mip cadence gives 0 at mip {k}"
            );
        }
    }
    // u16 follows the same 4-mip cycle: identical values.
    let lib16 = avg(&img.mapv(u16::from), &[2, 2], 9);
    for k in 0..9 {
        assert_eq!(lib16[k].mapv(|v| v as u8), lib[k], "u16 mip {}", k + 1);
    }
    // u32 and u64 never reset: mip k = accumulator/4^k, i.e. the exact floor mean (1 at mips 5..9).
    let lib32 = avg(&u32_img, &[2, 2], 9);
    let lib64 = avg(&img.mapv(u64::from), &[2, 2], 9);
    for k in 4..9 {
        assert!(lib32[k].iter().all(|&v| v == 1), "u32 mip {}", k + 1);
        assert!(lib64[k].iter().all(|&v| v == 1), "u64 mip {}", k + 1);
    }
    // A constant image is not affected: 255*4^4 = 65280 >> 8 = 255, and so on; -128 likewise.
    let c = ArrayD::<u8>::from_elem(IxDyn(&[512, 512]), 255);
    assert!(avg(&c, &[2, 2], 9).iter().all(|o| o.iter().all(|&v| v == 255)));
    let c = ArrayD::<i8>::from_elem(IxDyn(&[512, 512]), -128);
    assert!(avg(&c, &[2, 2], 9).iter().all(|o| o.iter().all(|&v| v == -128)));
    let c = ArrayD::<u16>::from_elem(IxDyn(&[512, 512]), 65535);
    assert!(avg(&c, &[2, 2], 9).iter().all(|o| o.iter().all(|&v| v == 65535)));
}

#[test]
fn avg_2x2_num_mips_1_equals_first_mip_of_num_mips_3_on_odd_shapes() {
    // 5x4 with values 1..20 x-fastest: v[x,y] = 1 + x + 5y.
    let a = fx(&[5, 4], &(1u8..=20).collect::<Vec<_>>());
    // (0,0): 1+2+6+7 = 16/4 = 4 ; (1,0): 3+4+8+9 = 24/4 = 6 ; (2,0): 5+5+10+10 = 30/4 = 7.5 -> 7
    // (0,1): 11+12+16+17 = 56/4 = 14 ; (1,1): 13+14+18+19 = 64/4 = 16 ; (2,1): 15+15+20+20 = 70/4 -> 17
    // (tinybrain's single-mip kernel gives [[4,14],[7,17],[0,0]] here; we do not.)
    let want = fx(&[3, 2], &[4u8, 6, 7, 14, 16, 17]);
    assert_eq!(avg(&a, &[2, 2], 1)[0], want);
    assert_eq!(avg(&a, &[2, 2], 3)[0], want);

    fn check<T: Element + Bits>(a: &ArrayD<T>, f: &[usize]) {
        let one = downsample_with_averaging(a.view(), f, 1, false).unwrap();
        let three = downsample_with_averaging(a.view(), f, 3, false).unwrap();
        assert_same(&one, &three[..1], &format!("{:?} {f:?} {:?}", T::DTYPE, a.shape()));
    }
    for (i, shape) in [&[13usize, 11][..], &[5, 7, 3], &[9, 9, 2], &[3, 3, 1, 2]]
        .into_iter()
        .enumerate()
    {
        let seed = 100 + i as u64;
        check(&random(shape, seed, |r| r as u8), &[2, 2]);
        check(&random(shape, seed, |r| r as i8), &[2, 2]);
        check(&random(shape, seed, |r| r as u16), &[2, 2]);
        check(&random(shape, seed, |r| r as i16), &[2, 2]);
        check(&random(shape, seed, |r| r as u32), &[2, 2]);
        check(&random(shape, seed, |r| r as i64), &[2, 2]);
        check(&random(shape, seed, |r| r), &[2, 2]);
        check(&random(shape, seed, |r| (r % 100_000) as f32 / 7.0), &[2, 2]);
        check(&random(shape, seed, |r| (r % 100_000) as f64 / 7.0), &[2, 2]);
    }
    for shape in [&[5usize, 7, 3][..], &[9, 8, 7]] {
        check(&random(shape, 7, |r| r as u8), &[2, 2, 2]);
        check(&random(shape, 7, |r| r as i16), &[2, 2, 2]);
        check(&random(shape, 7, |r| r), &[2, 2, 2]);
        check(&random(shape, 7, |r| (r % 1000) as f32 * 0.25), &[2, 2, 2]);
    }
}

#[test]
fn avg_2x2_family_on_axes_1_and_2() {
    // factor [1,2,2] on (2,3,3): v[x,y,z] = 10x + y + 3z.
    let a = from_fn(&[2, 3, 3], |i| (10 * i[0] + i[1] + 3 * i[2]) as u8);
    // x = 0 plane g[y,z] = y + 3z:   z=0: 0 1 2 ; z=1: 3 4 5 ; z=2: 6 7 8
    // (0,0): 0+1+3+4 = 8/4 = 2 ; (1,0): y=2 repeated: 2+2+5+5 = 14/4 = 3.5 -> 3
    // (0,1): z=2 repeated: 6+7+6+7 = 26/4 = 6.5 -> 6 ; (1,1): 8
    // x = 1 plane: every value + 10 -> 12, 13, 16, 18.
    let want = from_fn(&[2, 2, 2], |o| [[2u8, 6], [3, 8]][o[1]][o[2]] + 10 * o[0] as u8);
    assert_eq!(avg(&a, &[1, 2, 2], 1)[0], want);

    // The whole cadence: [1,2,2] on (x,y,z) equals [2,2,1] on the (y,z,x) permutation,
    // and both match the accumulator model. Same for [2,1,2].
    let v = random(&[3, 70, 45], 11, |r| r as u8);
    let lib = avg(&v, &[1, 2, 2], 7);
    let perm = v.view().permuted_axes(IxDyn(&[1, 2, 0])).to_owned();
    let lib_perm = avg(&perm, &[2, 2, 1], 7);
    for k in 0..7 {
        assert_eq!(
            lib[k].view().permuted_axes(IxDyn(&[1, 2, 0])),
            lib_perm[k],
            "mip {}",
            k + 1
        );
    }
    check_avg_int(&v, &[1, 2, 2], 7, false);
    check_avg_int(&random(&[40, 3, 33], 12, |r| r as i8), &[2, 1, 2], 6, false);
}

/// Library vs the independent integer model (exact, except for later mips of non-dyadic
/// general factors, where the f64 chain may legitimately differ by one at an integer
/// boundary depending on summation order).
fn check_avg_int<T: Element + Into<i128>>(img: &ArrayD<T>, f: &[usize], n: usize, sparse: bool) {
    let lib = downsample_with_averaging(img.view(), f, n, sparse).unwrap();
    let x = img.mapv(Into::into);
    let model = if sparse {
        model_avg_sparse(&x, f, n, |a, b| a / b)
    } else {
        model_avg_int(&x, f, n, 8 * std::mem::size_of::<T>() as u32)
    };
    let fp = pad_factor(f, img.ndim());
    let general = !matches!(twos(&fp), Some(2 | 3));
    let dyadic = fp.iter().all(|f| f.is_power_of_two())
        && img
            .shape()
            .iter()
            .zip(&fp)
            .all(|(&s, &f)| s % f.pow(n as u32) == 0 || f == 1);
    for k in 0..n {
        let got = lib[k].mapv(Into::into);
        let what = format!(
            "{:?} {:?} factor {f:?} sparse={sparse} mip {}",
            T::DTYPE,
            img.shape(),
            k + 1
        );
        assert_eq!(got.shape(), model[k].shape(), "{what}");
        if sparse || !general || dyadic || k == 0 {
            if got != model[k] {
                let bad = got.indexed_iter().zip(model[k].iter()).find(|((_, g), m)| g != m);
                panic!("{what}: first difference (index, got, want) {bad:?}");
            }
        } else {
            assert!(Zip::from(&got).and(&model[k]).all(|g, m| (g - m).abs() <= 1), "{what}");
        }
    }
}

#[test]
fn avg_2x2_narrow_ints_match_the_accumulator_model() {
    check_avg_int(&random(&[515, 601], 1, |r| r as u8), &[2, 2], 9, false);
    check_avg_int(&random(&[301, 257], 2, |r| r as i8), &[2, 2], 9, false);
    check_avg_int(&random(&[129, 130], 3, |r| r as u16), &[2, 2], 8, false);
    check_avg_int(&random(&[129, 130], 4, |r| r as i16), &[2, 2], 8, false);
    check_avg_int(&random(&[37, 23, 3], 5, |r| r as i8), &[2, 2, 1], 6, false);
    check_avg_int(&random(&[23, 17, 2, 3], 6, |r| r as u16), &[2, 2, 1, 1], 5, false);
    check_avg_int(&random(&[7, 3, 19, 2], 7, |r| r as i16), &[2, 1, 2], 5, false);
    // low-contrast data makes the truncation visible at every mip
    check_avg_int(&random(&[300, 70], 8, |r| (r % 3) as u8), &[2, 2], 9, false);
    check_avg_int(&random(&[300, 70], 9, |r| (r % 3) as i8 - 1), &[2, 2], 9, false);
}

// ═══════════════════════════ Average pooling: the 2x2x2 family ═══════════════════════════

#[test]
fn avg_2x2x2_blocks_and_odd_edges() {
    // 1+2+...+8 = 36, /8 = 4.5 -> 4 (u8) ; 4.5 (f64)
    let a = fx(&[2, 2, 2], &[1u8, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(avg(&a, &[2, 2, 2], 1), vec![fx(&[1, 1, 1], &[4u8])]);
    assert_eq!(avg(&a.mapv(f64::from), &[2, 2, 2], 1), vec![fx(&[1, 1, 1], &[4.5f64])]);
    // -1*7 - 2 = -9, /8 = -1.125 -> -1 (toward zero)
    let n = fx(&[2, 2, 2], &[-1i8, -1, -1, -1, -1, -1, -1, -2]);
    assert_eq!(avg(&n, &[2, 2, 2], 1), vec![fx(&[1, 1, 1], &[-1i8])]);
    // The 2x2x2 family on axes 1, 2, 3 of a 4D array: same block -> 4.
    let a4 = fx(&[1, 2, 2, 2], &fdata(&a));
    assert_eq!(avg(&a4, &[1, 2, 2, 2], 1)[0], fx(&[1, 1, 1, 1], &[4u8]));

    // Odd x: (3,2,2). x=0..1 block = values 1..8 as above -> 4 ; the x=2 voxels
    // (2,0,0)=10, (2,1,0)=20, (2,0,1)=30, (2,1,1)=41 are each repeated:
    // 2*(10+20+30+41) = 202, /8 = 25.25 -> 25.
    let e = fx(&[3, 2, 2], &[1u8, 2, 10, 3, 4, 20, 5, 6, 30, 7, 8, 41]);
    assert_eq!(avg(&e, &[2, 2, 2], 1), vec![fx(&[2, 1, 1], &[4u8, 25])]);
    // mip 2 (1x1x1, y and z of size 1 repeated): accumulators [36, 202] -> 4*(36+202) = 952, /64 = 14.875 -> 14
    assert_eq!(avg(&e, &[2, 2, 2], 2)[1], fx(&[1, 1, 1], &[14u8]));
}

/// (len,1,1): x < len/2 alternates 1,2 (mean 1.5), x >= len/2 alternates 0,1 (mean 0.5).
fn halves<T: From<u8>>(len: usize) -> ArrayD<T> {
    from_fn(&[len, 1, 1], |i| {
        T::from(if i[0] < len / 2 {
            1 + (i[0] % 2) as u8
        } else {
            (i[0] % 2) as u8
        })
    })
}

#[test]
fn avg_2x2x2_cadence_u8_resets_after_8_mips() {
    // (512,1,1) u8. y and z have size 1, so each block holds an x pair (a,b), each value
    // repeated 4 times: acc_0 = 4(a+b). Mip k <= 8: acc = 4^k * S_k (S_k = sum of 2^k x values
    // = 1.5*2^k or 0.5*2^k), rendered >> 3k: 1.5 -> 1 or 0.5 -> 0.
    // Mip 8 (index 7, shift 24) = [1, 0]; reset: [4^8*384 >> 24, 4^8*128 >> 24] = [1, 0].
    // Mip 9 (index 8, shift 3): acc = 4*(1+0) = 4, 4 >> 3 = 0.  Exact mean (384+128)/512 = 1.
    let img: ArrayD<u8> = halves(512);
    let lib = avg(&img, &[2, 2, 2], 9);
    for k in 1..=8usize {
        let n = 512 >> k;
        assert_eq!(lib[k - 1], from_fn(&[n, 1, 1], |o| u8::from(o[0] < n / 2)), "mip {k}");
    }
    assert_eq!(lib[8], fx(&[1, 1, 1], &[0u8]));
    let i8_img: ArrayD<i8> = img.mapv(|v| v as i8);
    assert_eq!(avg(&i8_img, &[2, 2, 2], 9)[8], fx(&[1, 1, 1], &[0i8]));
    // 32/64-bit: no reset, mip 9 = 4^9*512 / 8^9 = 1 (the exact mean).
    assert_eq!(avg(&img.mapv(u32::from), &[2, 2, 2], 9)[8], fx(&[1, 1, 1], &[1u32]));
    assert_eq!(avg(&img.mapv(i64::from), &[2, 2, 2], 9)[8], fx(&[1, 1, 1], &[1i64]));
    // int8 at the bottom of its range: alternating -128, -127 (mean -127.5) on (256,1,1).
    // Mip k: acc = -127.5 * 8^k, rendered toward zero: -127 at every mip; at mip 8 the
    // accumulator is -127.5 * 2^24 = -2139095040 (fits the signed 32-bit accumulator).
    // All -128: acc = -128 * 8^8 = -2^31 at mip 8, still -128.
    let n = from_fn(&[256, 1, 1], |i| -128 + (i[0] % 2) as i8);
    for (k, out) in avg(&n, &[2, 2, 2], 8).iter().enumerate() {
        assert_eq!(
            out.iter().copied().collect::<Vec<_>>(),
            vec![-127i8; 128 >> k],
            "mip {}",
            k + 1
        );
    }
    let n = ArrayD::from_elem(IxDyn(&[256, 2, 2]), -128i8);
    assert!(avg(&n, &[2, 2, 2], 9).iter().all(|o| o.iter().all(|&v| v == -128)));
    // u8 over 6 mips of (64,1,1): index 5, shift 18: 4^6 * 64 = 262144 >> 18 = 1 (no reset yet).
    assert_eq!(avg(&halves::<u8>(64), &[2, 2, 2], 6)[5], fx(&[1, 1, 1], &[1u8]));
}

#[test]
fn avg_2x2x2_cadence_16_bit_resets_after_5_mips() {
    // (64,1,1) u16, halves of 32: mips 1..5 = 1 on the first half, 0 on the second.
    // Mip 5 (index 4, shift 15): 4^5*48 = 49152 >> 15 = 1 ; 4^5*16 = 16384 >> 15 = 0 ; reset -> [1, 0].
    // Mip 6 (index 5, shift 3): 4*(1+0) = 4 >> 3 = 0.   Exact mean: (48+16)/64 = 1.
    let img: ArrayD<u16> = halves(64);
    let lib = avg(&img, &[2, 2, 2], 6);
    for k in 1..=5usize {
        let n = 64 >> k;
        assert_eq!(lib[k - 1], from_fn(&[n, 1, 1], |o| u16::from(o[0] < n / 2)), "mip {k}");
    }
    assert_eq!(lib[5], fx(&[1, 1, 1], &[0u16]));
    let i16_img: ArrayD<i16> = img.mapv(|v| v as i16);
    assert_eq!(avg(&i16_img, &[2, 2, 2], 6)[5], fx(&[1, 1, 1], &[0i16]));
    // u8 (8-mip cycle) and u32 (no reset) give the exact 1 at mip 6.
    assert_eq!(avg(&img.mapv(|v| v as u8), &[2, 2, 2], 6)[5], fx(&[1, 1, 1], &[1u8]));
    assert_eq!(avg(&img.mapv(u32::from), &[2, 2, 2], 6)[5], fx(&[1, 1, 1], &[1u32]));
}

#[test]
fn avg_2x2x2_u8_accumulator_holds_mip_8_means_above_127() {
    // (256,1,1) u8 alternating 128, 129 (mean 128.5). y and z have size 1: acc_0 = 4(128+129) = 1028.
    // Mip k: acc = 4^k * 128.5 * 2^k = 128.5 * 8^k, rendered >> 3k: 128.5 -> 128 at every mip.
    // Mip 8: acc = 128.5 * 2^24 = 2155872256 (> 2^31 - 1, < 2^32: fits the unsigned 32-bit
    // accumulator), >> 24 = 128.
    let a = from_fn(&[256, 1, 1], |i| 128 + (i[0] % 2) as u8);
    let outs = avg(&a, &[2, 2, 2], 8);
    for (k, out) in outs.iter().enumerate() {
        assert!(out.iter().all(|&v| v == 128), "mip {}: {out:?}", k + 1);
    }
    // Random full-range u8 over 10 mips (the second cycle starts at mip 9) against the model.
    check_avg_int(&random(&[600, 3, 2], 22, |r| r as u8), &[2, 2, 2], 10, false);
}

#[test]
fn avg_8_bit_sums_at_the_top_of_their_16_bit_accumulators() {
    // 8-bit 2x2 cycles peak at 255 * 4^4 = 65280 (u8) and -128 * 4^4 = -32768 (i8), and
    // 2x2x2 pyramids of 1 or 2 mips at 255 * 8^2 and -128 * 8^2: the library sums these
    // in 16 bits, so values at the ends of the range must not wrap. 5 mips of 2x2 run
    // past the end of a cycle; 3 mips of 2x2x2 take the 32-bit path (the same model).
    for (seed, n) in [(1u64, 1usize), (2, 4), (3, 5)] {
        check_avg_int(&random(&[37, 32, 3], seed, |r| 254 + (r % 2) as u8), &[2, 2], n, false);
        check_avg_int(&random(&[37, 32, 3], seed, |r| -128 + (r % 2) as i8), &[2, 2], n, false);
        check_avg_int(&random(&[37, 32, 3], seed, |r| 126 + (r % 2) as i8), &[2, 2], n, false);
        check_avg_int(
            &random(&[3, 37, 32], seed, |r| 254 + (r % 2) as u8),
            &[1, 2, 2],
            n,
            false,
        );
    }
    for (seed, n) in [(4u64, 1usize), (5, 2), (6, 3)] {
        check_avg_int(
            &random(&[17, 16, 19], seed, |r| 254 + (r % 2) as u8),
            &[2, 2, 2],
            n,
            false,
        );
        check_avg_int(
            &random(&[17, 16, 19], seed, |r| -128 + (r % 2) as i8),
            &[2, 2, 2],
            n,
            false,
        );
    }
    // Sparse means of one u8 mip pack (sum, count) into 16 bits: sums to 8 * 255 and
    // counts to 8, with zeros among the values and odd edges.
    // Rows of 33 and 50 pairs also cover the 16-pair vectors of the AVX2 path and their tails.
    for (seed, f) in [(7u64, [2, 2, 1]), (8, [2, 2, 2]), (9, [1, 2, 2])] {
        let top_or_zero = |r: u64| if r % 4 == 0 { 0 } else { 254 + (r % 2) as u8 };
        for shape in [[17, 16, 19], [67, 6, 5], [100, 3, 4]] {
            check_avg_int(&random(&shape, seed, top_or_zero), &f, 1, true);
            check_avg_int(&random(&shape, seed, |r| 254 + (r % 2) as u8), &f, 1, true);
        }
    }
    let full = ArrayD::from_elem(IxDyn(&[32, 32, 2]), 255u8);
    assert!(avg(&full, &[2, 2], 5).iter().all(|o| o.iter().all(|&v| v == 255)));
    let bottom = ArrayD::from_elem(IxDyn(&[32, 32, 2]), -128i8);
    assert!(avg(&bottom, &[2, 2], 5).iter().all(|o| o.iter().all(|&v| v == -128)));
    let cube = ArrayD::from_elem(IxDyn(&[4, 4, 4]), 255u8);
    assert!(avg(&cube, &[2, 2, 2], 2).iter().all(|o| o.iter().all(|&v| v == 255)));
}

#[test]
fn avg_2x2x2_narrow_ints_match_the_accumulator_model() {
    check_avg_int(&random(&[33, 47, 35], 21, |r| r as u8), &[2, 2, 2], 6, false);
    check_avg_int(&random(&[600, 3, 2], 23, |r| (r % 3) as i8 - 1), &[2, 2, 2], 10, false);
    check_avg_int(&random(&[300, 5, 3], 24, |r| r as u16), &[2, 2, 2], 9, false);
    check_avg_int(&random(&[300, 5, 3], 25, |r| (r % 3) as i16 - 1), &[2, 2, 2], 9, false);
    check_avg_int(&random(&[17, 15, 9, 2], 26, |r| r as i8), &[2, 2, 2, 1], 5, false);
    check_avg_int(&random(&[9, 10, 11], 27, |r| r as i16), &[2, 2, 2], 4, false);
}

// ═════════════════════════ Average pooling: wide integers, floats ═════════════════════════

#[test]
fn avg_32_and_64_bit_integers_are_exact_and_do_not_wrap() {
    let m = u64::MAX;
    // (4m - 6)/4 = m - 1.5 -> m - 2  (a u64 sum would wrap)
    let a = fx(&[2, 2], &[m, m - 1, m - 2, m - 3]);
    assert_eq!(avg(&a, &[2, 2], 1), vec![fx(&[1, 1], &[m - 2])]);
    let full = ArrayD::from_elem(IxDyn(&[4, 4]), m);
    assert_eq!(
        avg(&full, &[2, 2], 2),
        vec![ArrayD::from_elem(IxDyn(&[2, 2]), m), fx(&[1, 1], &[m])]
    );
    let full3 = ArrayD::from_elem(IxDyn(&[4, 4, 4]), m);
    assert_eq!(avg(&full3, &[2, 2, 2], 2)[1], fx(&[1, 1, 1], &[m]));
    // i64: (4*MIN + 1)/4 = MIN + 0.25 -> toward zero: MIN + 1 ; (4*MAX - 1)/4 -> MAX - 1
    let (lo, hi) = (i64::MIN, i64::MAX);
    assert_eq!(
        avg(&fx(&[2, 2], &[lo, lo, lo, lo + 1]), &[2, 2], 1)[0],
        fx(&[1, 1], &[lo + 1])
    );
    assert_eq!(
        avg(&fx(&[2, 2], &[hi, hi, hi, hi - 1]), &[2, 2], 1)[0],
        fx(&[1, 1], &[hi - 1])
    );
    assert_eq!(avg(&fx(&[2, 2, 2], &[lo; 8]), &[2, 2, 2], 3)[2], fx(&[1, 1, 1], &[lo]));
    // u32 / i32 at the extremes, over 3 mips.
    let u = ArrayD::from_elem(IxDyn(&[8, 8]), u32::MAX);
    assert!(avg(&u, &[2, 2], 3).iter().all(|o| o.iter().all(|&v| v == u32::MAX)));
    let i = ArrayD::from_elem(IxDyn(&[8, 8, 8]), i32::MIN);
    assert!(avg(&i, &[2, 2, 2], 3).iter().all(|o| o.iter().all(|&v| v == i32::MIN)));

    // random full-range values against the exact model (acc/4^k, acc/8^k)
    check_avg_int(&random(&[65, 63, 2], 31, |r| r), &[2, 2], 6, false);
    check_avg_int(&random(&[65, 63, 2], 32, |r| r as i64), &[2, 2], 6, false);
    check_avg_int(&random(&[65, 63, 2], 33, |r| r as u32), &[2, 2], 6, false);
    check_avg_int(&random(&[65, 63, 2], 34, |r| r as i32), &[2, 2], 6, false);
    check_avg_int(&random(&[17, 15, 19], 35, |r| r), &[2, 2, 2], 5, false);
    check_avg_int(&random(&[17, 15, 19], 36, |r| r as i32), &[2, 2, 2], 5, false);
    check_avg_int(&random(&[515, 9], 37, |r| r as u32), &[2, 2], 10, false);
}

#[test]
fn avg_floats_accumulate_in_f64() {
    // 4 x 3e38 overflows a float32 sum; in f64 the mean is 3e38 again (4v/4 = v exactly).
    let v = 3e38f32;
    let big = ArrayD::from_elem(IxDyn(&[4, 4]), v);
    for out in avg(&big, &[2, 2], 2) {
        assert!(out.iter().all(|&x| x == v), "{out:?}");
    }
    let big3 = ArrayD::from_elem(IxDyn(&[4, 4, 4]), -v);
    for out in avg(&big3, &[2, 2, 2], 2) {
        assert!(out.iter().all(|&x| x == -v), "{out:?}");
    }
    // 2^24 + 1 + 1 + 1 = 16777219 in f64 (f32 would drop each +1), /4 = 4194304.75,
    // which rounds (tie, to even) to the f32 4194305.0 (a float32 sum would give 4194304).
    let a = fx(&[2, 2], &[16777216.0f32, 1.0, 1.0, 1.0]);
    assert_eq!(avg(&a, &[2, 2], 1)[0], fx(&[1, 1], &[4194305.0f32]));
    // f64: (1 + 2 + 4 + 8.5)/4 = 3.875 ; odd edge [1, 2, 5] -> [1.5, 5]
    assert_eq!(
        avg(&fx(&[2, 2], &[1.0f64, 2.0, 4.0, 8.5]), &[2, 2], 1)[0],
        fx(&[1, 1], &[3.875])
    );
    assert_eq!(
        avg(&fx(&[3, 1], &[1.0f32, 2.0, 5.0]), &[2, 2], 1)[0],
        fx(&[2, 1], &[1.5f32, 5.0])
    );
    // IEEE specials: NaN propagates, inf + -inf = NaN, inf stays inf.
    let sp = fx(
        &[6, 2],
        &[
            f32::NAN,
            1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::INFINITY,
            1.0, // y = 0
            2.0,
            3.0,
            0.0,
            0.0,
            1.0,
            1.0, // y = 1
        ],
    );
    let out = &avg(&sp, &[2, 2], 1)[0];
    assert!(out[[0, 0]].is_nan() && out[[1, 0]].is_nan());
    assert_eq!(out[[2, 0]], f32::INFINITY);

    // random data against the f64 model: within 1e-6 relative (f32), 1e-12 (f64)
    check_avg_float(
        &random(&[65, 63, 2], 41, |r| (r % 1_000_000) as f32 / 997.0),
        &[2, 2],
        6,
        false,
    );
    check_avg_float(
        &random(&[33, 17, 9], 42, |r| (r % 1_000_000) as f32 / 997.0),
        &[2, 2, 2],
        4,
        false,
    );
    check_avg_float(
        &random(&[65, 63, 2], 43, |r| (r % 1_000_000) as f64 / 997.0),
        &[2, 2],
        6,
        false,
    );
    check_avg_float(
        &random(&[33, 17, 9], 44, |r| (r % 1_000_000) as f64 / 997.0),
        &[2, 2, 2],
        4,
        false,
    );
    check_avg_float(
        &random(&[31, 29, 5], 45, |r| (r % 1_000_000) as f32 / 997.0),
        &[3, 3, 1],
        3,
        false,
    );
    check_avg_float(
        &random(&[31, 29, 5], 46, |r| (r % 1_000_000) as f64 / 997.0),
        &[4, 2, 3],
        2,
        false,
    );
}

fn check_avg_float<T: Element + Into<f64>>(img: &ArrayD<T>, f: &[usize], n: usize, sparse: bool) {
    let lib = downsample_with_averaging(img.view(), f, n, sparse).unwrap();
    let x = img.mapv(Into::into);
    let model = if sparse {
        model_avg_sparse(&x, f, n, |a, b| a / b)
    } else {
        model_avg_float(&x, f, n)
    };
    let tol = if std::mem::size_of::<T>() == 4 { 1e-6 } else { 1e-12 };
    for k in 0..n {
        let got = lib[k].mapv(Into::into);
        assert_eq!(got.shape(), model[k].shape());
        let ok = Zip::from(&got)
            .and(&model[k])
            .all(|&g, &m| (g - m).abs() <= tol * m.abs() + 1e-30);
        assert!(
            ok,
            "{:?} {:?} factor {f:?} sparse={sparse} mip {}",
            T::DTYPE,
            img.shape(),
            k + 1
        );
    }
}

// ═════════════════════════ Average pooling: other factors ═════════════════════════

#[test]
fn avg_other_factors_clipped_window_mean_3x3x1() {
    let a = fx(
        &[4, 4, 1],
        &[
            1, 2, 3, 40, // y = 0
            4, 5, 6, 50, // y = 1
            7, 8, 9, 60, // y = 2
            100, 110, 120, 200, // y = 3
        ],
    );
    // (0,0): 45/9 = 5 ; (1,0): x=3 only: (40+50+60)/3 = 50 ; (0,1): y=3 only: 330/3 = 110 ; (1,1): 200
    // mip 2: mean of the 4 real mip-1 values (5+50+110+200)/4 = 91.25 -> 91
    //        (the mean of the whole 4x4 block would be 725/16 = 45.3 -> 45)
    let outs = avg(&a.mapv(|v: i32| v as u8), &[3, 3, 1], 2);
    assert_eq!(
        outs,
        vec![fx(&[2, 2, 1], &[5u8, 50, 110, 200]), fx(&[1, 1, 1], &[91u8])]
    );
    assert_eq!(
        avg(&a.mapv(|v: i32| v as f32), &[3, 3, 1], 2)[1],
        fx(&[1, 1, 1], &[91.25f32])
    );
}

#[test]
fn avg_other_factors_mean_of_means_4x1() {
    // [0,0,0,0,8] with factor 4: mip 1 = [0/4 = 0, 8/1 = 8] ; mip 2 = (0 + 8)/2 = 4.
    // The mean of the whole block would be 8/5 = 1.6 -> 1.
    let a = fx(&[5, 1], &[0u8, 0, 0, 0, 8]);
    assert_eq!(avg(&a, &[4, 1], 2), vec![fx(&[2, 1], &[0u8, 8]), fx(&[1, 1], &[4u8])]);
}

#[test]
fn avg_other_factors_are_carried_in_f64_between_mips() {
    // windows of 4: sums 3, 3, 3, 7 -> means 0.75, 0.75, 0.75, 1.75 -> written [0, 0, 0, 1]
    // mip 2 = (0.75 + 0.75 + 0.75 + 1.75)/4 = 1.0 -> 1   (the written mip 1 would give 1/4 -> 0)
    let a = fx(&[16, 1], &[1u8, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 2, 2, 2, 1]);
    assert_eq!(
        avg(&a, &[4, 1], 2),
        vec![fx(&[4, 1], &[0u8, 0, 0, 1]), fx(&[1, 1], &[1u8])]
    );
    // factor (4,) on a 1D array: same.
    let a1 = fx(&[16], &[1u16, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 2, 2, 2, 1]);
    assert_eq!(avg(&a1, &[4], 2)[1], fx(&[1], &[1u16]));
}

#[test]
fn avg_other_factors_truncate_toward_zero() {
    // [-1,-1,-2 | -7] with factor 3: (-4/3 = -1.33 -> -1), -7 ; mip 2: (-1.333.. - 7)/2 = -4.17 -> -4
    let a = fx(&[4, 1], &[-1i16, -1, -2, -7]);
    assert_eq!(
        avg(&a, &[3, 1], 2),
        vec![fx(&[2, 1], &[-1i16, -7]), fx(&[1, 1], &[-4i16])]
    );
    // i32 near the top: (3*MAX - 1)/3 = MAX - 1/3 -> MAX - 1 (stays in range)
    let m = i32::MAX;
    assert_eq!(avg(&fx(&[3], &[m, m, m - 1]), &[3], 1)[0], fx(&[1], &[m - 1]));
    // floats are rounded, not truncated: (1 + 2 + 2)/3 = 1.6666666666666667 in f64 -> f32 nearest
    assert_eq!(
        avg(&fx(&[3], &[1.0f32, 2.0, 2.0]), &[3], 1)[0],
        fx(&[1], &[(5.0f64 / 3.0) as f32])
    );
}

#[test]
fn avg_other_factors_2x1x1_and_3x3x3() {
    // 2x1x1 on (3,2,1): (10+21)/2 = 15.5 -> 15, 7 | (100+101)/2 = 100.5 -> 100, 255
    let a = fx(&[3, 2, 1], &[10u8, 21, 7, 100, 101, 255]);
    assert_eq!(avg(&a, &[2, 1, 1], 1)[0], fx(&[2, 2, 1], &[15u8, 7, 100, 255]));
    // 3x3x3 on (4,4,4) with v = x + 10y + 100z: the mean over a product window is
    // m(i) + 10 m(j) + 100 m(k), m(0) = mean(0,1,2) = 1, m(1) = 3 (x = 3 alone).
    let v = from_fn(&[4, 4, 4], |i| (i[0] + 10 * i[1] + 100 * i[2]) as i16);
    let m = [1i16, 3];
    let want = from_fn(&[2, 2, 2], |o| m[o[0]] + 10 * m[o[1]] + 100 * m[o[2]]);
    let outs = avg(&v, &[3, 3, 3], 2);
    assert_eq!(outs[0], want);
    // mip 2: the mean of the 8 mip-1 values = 2 + 20 + 200 = 222 (whole-block mean 166.5 -> 166)
    assert_eq!(outs[1], fx(&[1, 1, 1], &[222i16]));
}

#[test]
fn avg_other_factors_match_the_clipped_mean_model() {
    check_avg_int(&random(&[31, 29, 5], 51, |r| r as u8), &[3, 3, 1], 3, false);
    check_avg_int(&random(&[31, 29, 5], 52, |r| r as i8), &[3, 3, 1], 3, false);
    check_avg_int(&random(&[16, 8, 4], 53, |r| r as u16), &[4, 2, 1], 2, false);
    check_avg_int(&random(&[23, 9, 13], 54, |r| r as i16), &[4, 4, 4], 2, false);
    check_avg_int(
        &random(&[23, 9, 13], 55, |r| (r % (1 << 40)) as i64 - (1 << 39)),
        &[2, 1, 1],
        4,
        false,
    );
    check_avg_int(&random(&[23, 9, 13], 56, |r| r as u32), &[2, 3], 3, false);
    check_avg_int(&random(&[6, 5, 4, 3], 57, |r| r as u8), &[2, 2, 2, 2], 2, false);
}

// ═════════════════════════════ Average pooling: sparse ═════════════════════════════

#[test]
fn sparse_avg_leaves_zeros_out() {
    // (10+20)/2 = 15 ; (7)/1 = 7 ; (1+2)/2 = 1.5 -> 1 ; all zero -> 0
    assert_eq!(
        avg_sparse(&fx(&[2, 2], &[0u8, 10, 0, 20]), &[2, 2], 1)[0],
        fx(&[1, 1], &[15u8])
    );
    assert_eq!(
        avg_sparse(&fx(&[2, 2], &[0u8, 0, 0, 7]), &[2, 2], 1)[0],
        fx(&[1, 1], &[7u8])
    );
    assert_eq!(
        avg_sparse(&fx(&[2, 2], &[1u8, 2, 0, 0]), &[2, 2], 1)[0],
        fx(&[1, 1], &[1u8])
    );
    // negatives are nonzero: (-4-7)/2 = -5.5 -> -5 (toward zero)
    assert_eq!(
        avg_sparse(&fx(&[2, 2], &[-4i8, 0, 0, -7]), &[2, 2], 1)[0],
        fx(&[1, 1], &[-5i8])
    );
    // floats: (1.5 + 2)/2 = 1.75 ; -0.0 is a zero: (4)/1 = 4
    assert_eq!(
        avg_sparse(&fx(&[2, 2], &[0.0f32, 1.5, 0.0, 2.0]), &[2, 2], 1)[0],
        fx(&[1, 1], &[1.75f32])
    );
    assert_eq!(
        avg_sparse(&fx(&[2, 2], &[-0.0f64, 4.0, 0.0, 0.0]), &[2, 2], 1)[0],
        fx(&[1, 1], &[4.0f64])
    );
    // 2x2x2, any dtype: (-3-4)/2 = -3.5 -> -3 ; u64 (m + m-2)/2 = m - 1
    assert_eq!(
        avg_sparse(&fx(&[2, 2, 2], &[-3i8, 0, 0, 0, 0, 0, 0, -4]), &[2, 2, 2], 1)[0],
        fx(&[1, 1, 1], &[-3i8])
    );
    let m = u64::MAX;
    assert_eq!(
        avg_sparse(&fx(&[2, 2, 2], &[m, 0, 0, 0, 0, 0, 0, m - 2]), &[2, 2, 2], 1)[0],
        fx(&[1, 1, 1], &[m - 1])
    );
    // other factors: (3+0+5)/... nonzero only: (3+5)/2 = 4 ; 3x3x1 all zero -> 0
    assert_eq!(avg_sparse(&fx(&[3], &[3u16, 0, 5]), &[3], 1)[0], fx(&[1], &[4u16]));
    assert_eq!(
        avg_sparse(&ArrayD::<u8>::zeros(IxDyn(&[3, 3, 1])), &[3, 3, 1], 2)[1],
        fx(&[1, 1, 1], &[0u8])
    );
}

#[test]
fn sparse_avg_all_zero_window_is_zero() {
    // (4,2): left block all zero -> 0 ; right block (9+0+0+3)/2 = 6
    let a = fx(&[4, 2], &[0u8, 0, 9, 0, 0, 0, 0, 3]);
    assert_eq!(avg_sparse(&a, &[2, 2], 1)[0], fx(&[2, 1], &[0u8, 6]));
    // mip 2 takes all nonzero input voxels under it: (9+3)/2 = 6
    assert_eq!(avg_sparse(&a, &[2, 2], 2)[1], fx(&[1, 1], &[6u8]));
    let z = ArrayD::<f32>::zeros(IxDyn(&[5, 3, 3]));
    for f in [&[2usize, 2][..], &[2, 2, 2], &[3, 1, 2]] {
        for out in avg_sparse(&z, f, 3) {
            assert!(out.iter().all(|&v| v.to_bits() == 0), "{f:?}: {out:?}");
        }
    }
}

#[test]
fn sparse_avg_odd_edges_are_not_doubled() {
    // u8 5x4 all 100: every output 100 (tinybrain: the x edge becomes 200).
    let a = ArrayD::from_elem(IxDyn(&[5, 4]), 100u8);
    assert_eq!(
        avg_sparse(&a, &[2, 2], 2),
        vec![
            ArrayD::from_elem(IxDyn(&[3, 2]), 100u8),
            ArrayD::from_elem(IxDyn(&[2, 1]), 100u8)
        ]
    );
    // all 200: stays 200 (tinybrain: 400 wraps to 144)
    let a = ArrayD::from_elem(IxDyn(&[5, 4]), 200u8);
    assert_eq!(avg_sparse(&a, &[2, 2], 1)[0], ArrayD::from_elem(IxDyn(&[3, 2]), 200u8));
    // odd y, several z slices: 100 everywhere (tinybrain doubles the y edge of z = 0 only)
    let a = ArrayD::from_elem(IxDyn(&[4, 5, 2]), 100u8);
    assert_eq!(
        avg_sparse(&a, &[2, 2], 1)[0],
        ArrayD::from_elem(IxDyn(&[2, 3, 2]), 100u8)
    );
    // 2x2x2 (3,2,2) all 100 -> [100, 100] (tinybrain: [100, 200])
    let a = ArrayD::from_elem(IxDyn(&[3, 2, 2]), 100u8);
    assert_eq!(avg_sparse(&a, &[2, 2, 2], 1)[0], fx(&[2, 1, 1], &[100u8, 100]));

    // Edge with zeros: x=2 column (0, 30). Replicated: N = 0+0+30+30 = 60, count 2 -> 30.
    let e = fx(
        &[3, 2],
        &[
            10, 0, 0, // y = 0
            0, 0, 30, // y = 1
        ],
    );
    // mip 1: [10/1 = 10, 60/2 = 30]
    // mip 2 (same replicate padding as non-sparse; y of size 1 repeated):
    //   N = 2*(10 + 60) = 140, count = 2*(1 + 2) = 6 -> 23.3 -> 23
    assert_eq!(
        avg_sparse(&e.mapv(|v: i32| v as u8), &[2, 2], 2),
        vec![fx(&[2, 1], &[10u8, 30]), fx(&[1, 1], &[23u8])]
    );
}

#[test]
fn sparse_avg_mips_5_and_later_are_not_darkened() {
    // 32x32 checkerboard of 100 and 0: sparse gives 100 at every mip (tinybrain: 0 at mip 5);
    // non-sparse gives (100+0+0+100)/4 = 50 at every mip.
    let cb = from_fn(&[32, 32], |i| if (i[0] + i[1]) % 2 == 0 { 100u8 } else { 0 });
    for (k, out) in avg_sparse(&cb, &[2, 2], 5).iter().enumerate() {
        assert!(out.iter().all(|&v| v == 100), "sparse mip {}: {out:?}", k + 1);
    }
    for (k, out) in avg(&cb, &[2, 2], 5).iter().enumerate() {
        assert!(out.iter().all(|&v| v == 50), "mip {}: {out:?}", k + 1);
    }
    // 512x512 all 200, 9 mips: 200 everywhere (tinybrain's u16 count wraps to 0 at mip 9).
    let c = ArrayD::from_elem(IxDyn(&[512, 512]), 200u8);
    for (k, out) in avg_sparse(&c, &[2, 2], 9).iter().enumerate() {
        assert!(out.iter().all(|&v| v == 200), "mip {}", k + 1);
    }
    // a single 7 at (300, 45): mip k is 7 at (300>>k, 45>>k) and 0 elsewhere.
    let mut one = ArrayD::<u8>::zeros(IxDyn(&[512, 512]));
    one[[300, 45]] = 7;
    for (k, out) in avg_sparse(&one, &[2, 2], 9).iter().enumerate() {
        let k = k + 1;
        let mut want = ArrayD::<u8>::zeros(IxDyn(&[512 >> k, 512 >> k]));
        want[[300 >> k, 45 >> k]] = 7;
        assert_eq!(out, &want, "mip {k}");
    }
    // 2x2x2 on 64^3 with 8-bit: a sparse 255 lattice stays 255 for 6 mips
    let l = from_fn(&[64, 64, 64], |i| if i.iter().all(|&c| c % 2 == 0) { 255u8 } else { 0 });
    for out in avg_sparse(&l, &[2, 2, 2], 6) {
        assert!(out.iter().all(|&v| v == 255));
    }
}

#[test]
fn sparse_avg_other_factors_average_the_input_block_not_the_means() {
    // [0,0,3,2 | 8] with factor 4: mip 1 = [(3+2)/2 = 2.5 -> 2, 8]
    // mip 2 = nonzero input voxels 3, 2, 8 -> 13/3 = 4.33 -> 4   (mean of means: 5.25 -> 5)
    let a = fx(&[5, 1], &[0u8, 0, 3, 2, 8]);
    assert_eq!(
        avg_sparse(&a, &[4, 1], 2),
        vec![fx(&[2, 1], &[2u8, 8]), fx(&[1, 1], &[4u8])]
    );
    assert_eq!(
        avg_sparse(&a.mapv(f32::from), &[4, 1], 2)[1],
        fx(&[1, 1], &[(13.0f64 / 3.0) as f32])
    );
}

#[test]
fn sparse_avg_matches_the_model() {
    let sparse_u8 = |r: u64| if r % 10 < 3 { 0 } else { (r >> 8) as u8 };
    check_avg_int(&random(&[515, 301], 61, sparse_u8), &[2, 2], 9, true);
    check_avg_int(
        &random(&[129, 130], 62, |r| if r % 20 == 0 { (r >> 8) as i8 } else { 0 }),
        &[2, 2],
        8,
        true,
    );
    check_avg_int(
        &random(&[65, 63, 3], 63, |r| if r % 3 == 0 { 0 } else { (r >> 8) as u16 }),
        &[2, 2, 1],
        6,
        true,
    );
    check_avg_int(&random(&[33, 47, 35], 64, sparse_u8), &[2, 2, 2], 6, true);
    check_avg_int(&random(&[600, 3, 2], 71, sparse_u8), &[2, 2, 2], 10, true);
    check_avg_int(
        &random(&[300, 5, 3], 72, |r| if r % 10 < 3 { 0 } else { (r >> 8) as u16 }),
        &[2, 2, 2],
        9,
        true,
    );
    check_avg_int(
        &random(&[33, 17, 9], 73, |r| if r % 10 < 3 { 0 } else { r }),
        &[2, 2, 2],
        5,
        true,
    );
    check_avg_int(
        &random(&[65, 63, 2], 74, |r| if r % 10 < 3 { 0 } else { r as i64 }),
        &[2, 2],
        6,
        true,
    );
    check_avg_int(
        &random(&[31, 29, 5], 75, |r| if r % 10 < 3 { 0 } else { r }),
        &[3, 3, 1],
        3,
        true,
    );
    check_avg_int(
        &random(&[17, 15, 9, 2], 65, |r| if r % 2 == 0 { 0 } else { r as i32 }),
        &[2, 2, 2],
        4,
        true,
    );
    check_avg_int(&random(&[31, 29, 5], 66, sparse_u8), &[3, 3, 1], 3, true);
    check_avg_int(
        &random(&[23, 9, 13], 67, |r| if r % 4 == 0 { r as i64 } else { 0 }),
        &[4, 4, 4],
        2,
        true,
    );
    check_avg_int(
        &random(&[23, 9, 13], 68, |r| if r % 4 == 0 { r } else { 0 }),
        &[2, 1, 1],
        3,
        true,
    );
    check_avg_float(
        &random(&[65, 63, 2], 69, |r| {
            if r % 3 == 0 {
                0.0
            } else {
                (r % 100_000) as f32 / 7.0
            }
        }),
        &[2, 2],
        6,
        true,
    );
    check_avg_float(
        &random(&[21, 19, 7], 70, |r| {
            if r % 3 == 0 {
                0.0
            } else {
                (r % 100_000) as f64 / 7.0
            }
        }),
        &[3, 2, 2],
        3,
        true,
    );
}

// ═════════════════════════════ Mode pooling: 2x2 ═════════════════════════════

fn block2<T: Clone>(a: T, b: T, c: T, d: T) -> ArrayD<T> {
    fx(&[2, 2], &[a, b, c, d])
}

#[test]
fn mode_2x2_tie_patterns() {
    let one = |a: u32, b, c, d| mode(&block2(a, b, c, d), &[2, 2], 1)[0][[0, 0]];
    assert_eq!(one(1, 2, 3, 4), 4); // all distinct -> d
    assert_eq!(one(1, 1, 2, 2), 1); // a==b -> a
    assert_eq!(one(1, 2, 1, 2), 1); // a==c -> a
    assert_eq!(one(1, 2, 2, 1), 2); // a!=b, a!=c, b==c -> b
    assert_eq!(one(2, 1, 1, 2), 1); // b==c -> b
    assert_eq!(one(5, 6, 7, 5), 5); // only a==d -> d (= a)
    assert_eq!(one(1, 2, 3, 3), 3); // only c==d -> d
    assert_eq!(one(1, 2, 2, 2), 2); // three of a kind
    assert_eq!(one(7, 7, 7, 7), 7);
    // the same rules with factor 2 on axes 0 and 2 of a 3D array: a=(0,*,0), b=(1,*,0), c=(0,*,1), d=(1,*,1)
    let a = fx(&[2, 1, 2], &[1i64, 2, 2, 1]);
    assert_eq!(mode(&a, &[2, 1, 2], 1)[0], fx(&[1, 1, 1], &[2i64]));
    let a = fx(&[2, 1, 2], &[1i64, 2, 3, 4]);
    assert_eq!(mode(&a, &[2, 1, 2], 1)[0], fx(&[1, 1, 1], &[4i64]));
}

#[test]
fn mode_2x2_odd_edges_return_the_first_real_voxel() {
    // 5x7 with v[x,y] = 7x + y.  Full blocks have 4 distinct values -> d = v(2i+1, 2j+1) = 14i + 7 + 2j + 1.
    // x edge (x=4): v(4, 2j) = 28 + 2j ; y edge (y=6): v(2i, 6) = 14i + 6 ; corner v(4,6) = 34.
    let a = from_fn(&[5, 7], |i| (7 * i[0] + i[1]) as u32);
    let want = from_fn(&[3, 4], |o| {
        let (i, j) = (o[0] as u32, o[1] as u32);
        match (i == 2, j == 3) {
            (false, false) => 14 * i + 8 + 2 * j,
            (true, _) => 28 + 2 * j,
            (false, true) => 14 * i + 6,
        }
    });
    // i.e. [[8,10,12,6],[22,24,26,20],[28,30,32,34]] indexed [x][y]
    assert_eq!(want, fx(&[3, 4], &[8u32, 22, 28, 10, 24, 30, 12, 26, 32, 6, 20, 34]));
    assert_eq!(mode(&a, &[2, 2], 1)[0], want);
}

#[test]
fn mode_2x2_sparse_rules() {
    let one = |a: u16, b, c, d| mode_sparse(&block2(a, b, c, d), &[2, 2], 1)[0][[0, 0]];
    // tinybrain's examples, written [[a, c], [b, d]]: [[1,2],[3,4]] -> 4 ; [[0,0],[3,0]] -> 3 ; [[1,0],[3,0]] -> 1
    assert_eq!(one(1, 3, 2, 4), 4); // no pair -> d (nonzero)
    assert_eq!(one(0, 3, 0, 0), 3); // d == 0 -> first nonzero of a,b,c
    assert_eq!(one(1, 3, 0, 0), 1); // first nonzero of a,b,c = a
    assert_eq!(one(0, 0, 0, 0), 0); // all zero -> 0
    assert_eq!(one(0, 0, 5, 5), 5); // a==b but a is 0 -> not a; b!=c; d=5 (non-sparse: 0)
    assert_eq!(mode(&block2(0u16, 0, 5, 5), &[2, 2], 1)[0][[0, 0]], 0);
    assert_eq!(one(7, 0, 7, 0), 7); // a!=0, a==c
    assert_eq!(one(0, 6, 6, 0), 6); // b!=0, b==c
    assert_eq!(one(0, 0, 0, 9), 9); // d
    assert_eq!(one(0, 0, 4, 0), 4); // first nonzero is c
    assert_eq!(one(0, 2, 3, 0), 2); // first nonzero is b
    assert_eq!(one(2, 2, 0, 0), 2); // a==b, nonzero
                                    // odd edge: x = 2 column (0, 6), replicated: a=b=0, c=d=6 -> d = 6
    let e = fx(&[3, 2], &[1u8, 1, 0, 1, 1, 6]);
    assert_eq!(mode_sparse(&e, &[2, 2], 1)[0], fx(&[2, 1], &[1u8, 6]));
    assert_eq!(mode(&e, &[2, 2], 1)[0], fx(&[2, 1], &[1u8, 0]));
}

#[test]
fn mode_2x2_floats_compare_by_bits() {
    let nan = f32::NAN;
    // NaN == NaN (same bits): a==b -> NaN
    let r = mode(&block2(nan, nan, 1.0, 2.0), &[2, 2], 1)[0][[0, 0]];
    assert_eq!(r.to_bits(), nan.to_bits());
    // +0 != -0: a=+0, b=-0, c=1, d=-0 -> no pair among a,b,c -> d = -0.0
    let r = mode(&block2(0.0f32, -0.0, 1.0, -0.0), &[2, 2], 1)[0][[0, 0]];
    assert_eq!(r.to_bits(), (-0.0f32).to_bits());
    // a=-0, c=-0 -> a (bits of -0.0)
    let r = mode(&block2(-0.0f32, 5.0, -0.0, 7.0), &[2, 2], 1)[0][[0, 0]];
    assert_eq!(r.to_bits(), 0x8000_0000);
    // two different NaN payloads do not match -> d
    let (n1, n2) = (
        f64::from_bits(0x7ff8_0000_0000_0001),
        f64::from_bits(0x7ff8_0000_0000_0002),
    );
    assert_eq!(mode(&block2(n1, n2, 3.0, 4.0), &[2, 2], 1)[0][[0, 0]], 4.0);
    let r = mode(&block2(n1, 3.0, n1, 4.0), &[2, 2], 1)[0][[0, 0]];
    assert_eq!(r.to_bits(), n1.to_bits());
}

#[test]
fn mode_2x2_channels_are_independent() {
    // (2,2,1,2): channel 0 = (1,2,3,4) -> 4 ; channel 1 = (5,5,6,7) -> 5
    let a = fx(&[2, 2, 1, 2], &[1i32, 2, 3, 4, 5, 5, 6, 7]);
    assert_eq!(mode(&a, &[2, 2, 1, 1], 1)[0], fx(&[1, 1, 1, 2], &[4i32, 5]));
    assert_eq!(mode(&a, &[2, 2], 1)[0], fx(&[1, 1, 1, 2], &[4i32, 5]));
    // z slices too: (2,2,3): (1,2,3,4) -> 4 ; (2,1,1,2) -> 1 ; (9,9,8,8) -> 9
    let b = fx(&[2, 2, 3], &[1u8, 2, 3, 4, 2, 1, 1, 2, 9, 9, 8, 8]);
    assert_eq!(mode(&b, &[2, 2, 1], 1)[0], fx(&[1, 1, 3], &[4u8, 1, 9]));
}

#[test]
fn mode_2x2_mode_of_modes_over_2_mips() {
    let a = fx(
        &[4, 4],
        &[
            1, 1, 2, 2, // y = 0
            9, 9, 9, 9, // y = 1
            3, 3, 4, 4, // y = 2
            9, 9, 9, 9, // y = 3
        ],
    );
    // blocks: (1,1,9,9) -> 1 ; (2,2,9,9) -> 2 ; (3,3,9,9) -> 3 ; (4,4,9,9) -> 4 (a==b each time)
    // mip 2: (1,2,3,4) all distinct -> d = 4, although 9 fills half of the 4x4 block.
    assert_eq!(
        mode(&a.mapv(|v: i32| v as u8), &[2, 2], 2),
        vec![fx(&[2, 2], &[1u8, 2, 3, 4]), fx(&[1, 1], &[4u8])]
    );
}

// ═════════════════════════════ Mode pooling: 2x2x2 ═════════════════════════════

#[test]
fn mode_2x2x2_most_frequent_with_earliest_first_occurrence_ties() {
    let one = |v: [u16; 8]| mode(&fx(&[2, 2, 2], &v), &[2, 2, 2], 1)[0][[0, 0, 0]];
    assert_eq!(one([1, 2, 3, 4, 5, 6, 7, 8]), 1); // all distinct -> first (2x2 would give d)
    assert_eq!(one([1, 2, 2, 1, 3, 3, 4, 4]), 1); // four pairs -> 1 occurs first
    assert_eq!(one([3, 4, 5, 6, 7, 8, 9, 9]), 9); // the only pair
    assert_eq!(one([5, 6, 6, 5, 5, 6, 6, 5]), 5); // 4 vs 4 -> 5 first
    assert_eq!(one([2, 1, 1, 3, 4, 5, 6, 2]), 2); // 2 and 1 twice; 2 first
    assert_eq!(one([0, 0, 0, 0, 7, 7, 3, 3]), 0); // 0 four times
    assert_eq!(one([9, 0, 0, 0, 0, 0, 0, 0]), 0);
    assert_eq!(one([1, 2, 3, 3, 2, 3, 2, 4]), 2); // 2 and 3 three times; 2 first (index 1)
                                                  // z of size 1 (e.g. 2D data as (2,2,1)): z+1 repeats z, each value counts twice -> tie -> a
    assert_eq!(
        mode(&fx(&[2, 2, 1], &[1u8, 2, 3, 4]), &[2, 2, 2], 1)[0],
        fx(&[1, 1, 1], &[1u8])
    );
    // odd x: (3,2,2), the x=2 voxels 7,8,9,8 are each repeated -> 8 counts 4 -> 8 ;
    // all distinct x edge 7,8,9,6 -> first real voxel 7
    let e = fx(&[3, 2, 2], &[1u8, 1, 7, 1, 1, 8, 1, 1, 9, 1, 1, 8]);
    assert_eq!(mode(&e, &[2, 2, 2], 1)[0], fx(&[2, 1, 1], &[1u8, 8]));
    let e = fx(&[3, 2, 2], &[1u8, 1, 7, 1, 1, 8, 1, 1, 9, 1, 1, 6]);
    assert_eq!(mode(&e, &[2, 2, 2], 1)[0], fx(&[2, 1, 1], &[1u8, 7]));
}

#[test]
fn mode_2x2x2_sparse() {
    let one = |v: [u64; 8]| mode_sparse(&fx(&[2, 2, 2], &v), &[2, 2, 2], 1)[0][[0, 0, 0]];
    assert_eq!(one([0, 0, 0, 0, 7, 7, 3, 3]), 7); // zeros are not candidates; 7 and 3 tie, 7 first
    assert_eq!(one([9, 0, 0, 0, 0, 0, 0, 0]), 9);
    assert_eq!(one([0, 0, 0, 0, 0, 0, 0, 0]), 0);
    assert_eq!(one([0, 5, 0, 4, 0, 4, 0, 5]), 5);
    assert_eq!(one([0, 0, 0, 0, 0, 0, 0, u64::MAX]), u64::MAX);
}

#[test]
fn mode_2x2x2_c_order_gives_the_same_result_as_f_order() {
    // A non-cubic volume with low-cardinality labels (ties everywhere).
    let c_order = random(&[6, 5, 7], 81, |r| (r % 3) as u32 + 1);
    let mut f_order = ArrayD::from_elem(IxDyn(&[6, 5, 7]).f(), 0u32);
    f_order.assign(&c_order);
    assert!(c_order.is_standard_layout() && f_order.t().is_standard_layout());
    let from_c = mode(&c_order, &[2, 2, 2], 3);
    let from_f = mode(&f_order, &[2, 2, 2], 3);
    assert_same(&from_c, &from_f, "C vs F order");
    let model = model_mode(&c_order.mapv(u64::from), &[2, 2, 2], 3, false);
    for k in 0..3 {
        assert_eq!(from_c[k].mapv(u64::from), model[k], "mip {}", k + 1);
    }
    // Hand case: (2,2,3) C-ordered where the transposed reading would differ.
    // z=0 block (x,y): (1,2,3,4); z=1: (5,6,7,4); z=2 (odd, repeated): (8,8,1,2)
    // mip 1 (1,1,2): [0] values 1,2,3,4,5,6,7,4 -> 4 (twice) ; [1] 8,8,1,2,8,8,1,2 -> 8
    let h = fx(&[2, 2, 3], &[1u8, 2, 3, 4, 5, 6, 7, 4, 8, 8, 1, 2]);
    let h_c = h.as_standard_layout().into_owned();
    assert_eq!(mode(&h_c, &[2, 2, 2], 1)[0], fx(&[1, 1, 2], &[4u8, 8]));
}

#[test]
fn mode_2x2x2_channels_are_independent() {
    // (2,2,2,2): channel 0 = 1..8 -> 1 ; channel 1 = (3,4,5,6,7,8,9,9) -> 9
    let a = fx(&[2, 2, 2, 2], &[1u8, 2, 3, 4, 5, 6, 7, 8, 3, 4, 5, 6, 7, 8, 9, 9]);
    assert_eq!(mode(&a, &[2, 2, 2], 1)[0], fx(&[1, 1, 1, 2], &[1u8, 9]));
    assert_eq!(mode(&a, &[2, 2, 2, 1], 1)[0], fx(&[1, 1, 1, 2], &[1u8, 9]));
    // random 2-channel volume, C order: each channel equals its own single-channel pyramid.
    let v = random(&[7, 6, 5, 2], 82, |r| (r % 4) as i16);
    for sparse in [false, true] {
        let both = downsample_segmentation(v.view(), &[2, 2, 2], 2, sparse).unwrap();
        for c in 0..2 {
            let alone = v.index_axis(ndarray::Axis(3), c).to_owned();
            let single = downsample_segmentation(alone.view(), &[2, 2, 2], 2, sparse).unwrap();
            let model = model_mode(&alone.mapv(|x| x as u16 as u64), &[2, 2, 2], 2, sparse);
            for k in 0..2 {
                let got = both[k].index_axis(ndarray::Axis(3), c).to_owned();
                assert_eq!(got, single[k], "channel {c} mip {} sparse={sparse}", k + 1);
                assert_eq!(
                    got.mapv(|x| x as u16 as u64),
                    model[k],
                    "channel {c} mip {} sparse={sparse}",
                    k + 1
                );
            }
        }
    }
}

// ═════════════════════════════ Mode pooling: other factors ═════════════════════════════

#[test]
fn mode_other_factors_exact_mode_over_clipped_window() {
    let one = |v: [u32; 9]| mode(&fx(&[3, 3, 1], &v), &[3, 3, 1], 1)[0][[0, 0, 0]];
    assert_eq!(one([5, 6, 6, 5, 7, 7, 8, 8, 9]), 5); // 5,6,7,8 twice each -> 5 first
    assert_eq!(one([1, 2, 3, 4, 5, 6, 7, 8, 9]), 1); // all distinct -> first
    assert_eq!(one([1, 2, 2, 3, 3, 3, 2, 1, 1]), 1); // 1,2,3 three times each -> 1 first
    assert_eq!(one([4, 2, 2, 3, 3, 3, 2, 1, 1]), 2); // 2 and 3 three times -> 2 (index 1) before 3 (index 3)
    assert_eq!(one([4, 2, 9, 3, 9, 3, 9, 1, 1]), 9); // 9 three times

    // Clipped (not replicated) edges: (5,5,1), x=3 column all 1, x=4 column all 2, rest 0.
    // (1,0): window x in {3,4}, y in {0,1,2}: 1,2,1,2,1,2 -> tie 3:3 -> 1 (first)
    //        (replicate padding would count x=4 twice -> 2)
    // (1,1): x in {3,4}, y in {3,4}: 1,2,1,2 -> 1 ; (0,*) all 0.
    // mip 2: clipped 2x2 window of mip 1 (0,1,0,1) -> tie -> 0 ; sparse -> 1
    let a = from_fn(&[5, 5, 1], |i| [0u8, 0, 0, 1, 2][i[0]]);
    assert_eq!(
        mode(&a, &[3, 3, 1], 2),
        vec![fx(&[2, 2, 1], &[0u8, 1, 0, 1]), fx(&[1, 1, 1], &[0u8])]
    );
    assert_eq!(mode_sparse(&a, &[3, 3, 1], 2)[1], fx(&[1, 1, 1], &[1u8]));

    // 4x4x1 on (4,4,1): 7 x3, 3 x3, 5 x5, 1 x5 -> 5 (first at index 6) beats 1 (index 11)
    let b = fx(&[4, 4, 1], &[7u64, 3, 3, 7, 3, 7, 5, 5, 5, 5, 5, 1, 1, 1, 1, 1]);
    assert_eq!(mode(&b, &[4, 4, 1], 1)[0], fx(&[1, 1, 1], &[5u64]));
    // (8,4,1) with 4x4x1 over 2 mips: mip 1 = [mode of left, mode of right] ; mip 2 = tie -> first
    let c = from_fn(&[8, 4, 1], |i| {
        if i[0] < 4 {
            6i8
        } else if i[1] == 0 {
            -3
        } else {
            -4
        }
    });
    assert_eq!(
        mode(&c, &[4, 4, 1], 2),
        vec![fx(&[2, 1, 1], &[6i8, -4]), fx(&[1, 1, 1], &[6i8])]
    );

    // 2x1x1 on (3,2,1): (4,9) tie -> 4 ; 6 ; (8,8) -> 8 ; 0
    let d = fx(&[3, 2, 1], &[4u8, 9, 6, 8, 8, 0]);
    assert_eq!(mode(&d, &[2, 1, 1], 1)[0], fx(&[2, 2, 1], &[4u8, 6, 8, 0]));
    // sparse 2x1x1: (0,5) -> 5 ; lone 0 -> 0 ; non-sparse (0,5) -> 0
    let e = fx(&[3, 1, 1], &[0u8, 5, 0]);
    assert_eq!(mode_sparse(&e, &[2, 1, 1], 1)[0], fx(&[2, 1, 1], &[5u8, 0]));
    assert_eq!(mode(&e, &[2, 1, 1], 1)[0], fx(&[2, 1, 1], &[0u8, 0]));
    // 2x2x2x2: 16 distinct values -> the first; floats bitwise here too
    let g = fx(&[2, 2, 2, 2], &(1..=16).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(mode(&g, &[2, 2, 2, 2], 1)[0], fx(&[1, 1, 1, 1], &[1.0f32]));
}

#[test]
fn mode_matches_the_model() {
    /// The C-order volume and its Fortran-order copy (where axis 0, the row axis of
    /// the general engine, is contiguous) against the model.
    fn check<T: Element + Bits>(img: &ArrayD<T>, f: &[usize], n: usize) {
        let fortran = ArrayD::from_shape_fn(img.raw_dim().f(), |i| img[i]);
        for sparse in [false, true] {
            let model = model_mode(&bits_of(img), f, n, sparse);
            for (layout, input) in [("C", img), ("F", &fortran)] {
                let lib = downsample_segmentation(input.view(), f, n, sparse).unwrap();
                for k in 0..n {
                    assert_eq!(
                        bits_of(&lib[k]),
                        model[k],
                        "{:?} {:?} {layout} {f:?} sparse={sparse} mip {}",
                        T::DTYPE,
                        img.shape(),
                        k + 1
                    );
                }
            }
        }
    }
    for (i, f) in [
        &[2usize, 2][..],
        &[2, 2, 1],
        &[1, 2, 2],
        &[2, 2, 2],
        &[3, 3, 1],
        &[4, 4, 1],
        &[2, 1, 1],
        &[4, 4, 4],
        &[2, 3],
        &[3, 3, 3],
        &[5, 5, 3],
    ]
    .into_iter()
    .enumerate()
    {
        let s = 90 + i as u64 * 10;
        check(&random(&[33, 31, 6], s, |r| (r % 3) as u8), f, 3);
        check(&random(&[9, 8, 7], s + 1, |r| (r % 4) as i32 - 1), f, 3);
        check(&random(&[17, 9, 5, 2], s + 2, |r| (r % 2) * u64::MAX), f, 2);
        check(
            &random(&[10, 11, 4], s + 3, |r| [0.0f32, -0.0, f32::NAN, 1.5][(r % 4) as usize]),
            f,
            2,
        );
        check(&random(&[10, 11, 4], s + 4, |r| (r % 5) as i16 * 1000), f, 2);
        // Many labels, so windows hold from one to dozens of them.
        check(&random(&[21, 19, 9], s + 5, |r| r % 40 + 7), f, 2);
        // Mostly one label with a few others: the first-label early-out, taken or not.
        check(
            &random(&[21, 19, 9], s + 6, |r| [5u32, 5, 5, 0, 9][(r % 5) as usize]),
            f,
            2,
        );
    }
}

// ═════════════════════════════ Min / max pooling, striding ═════════════════════════════

#[test]
fn min_max_over_clipped_windows() {
    // (3,4) with v[x,y] = 4x + y:  y=0: 0 4 8 ; y=1: 1 5 9 ; y=2: 2 6 10 ; y=3: 3 7 11
    let a = from_fn(&[3, 4], |i| (4 * i[0] + i[1]) as u8);
    // max: (0,0) max{0,4,1,5} = 5 ; (1,0) x=2 only: max{8,9} = 9 ; (0,1) max{2,6,3,7} = 7 ; (1,1) max{10,11} = 11
    assert_eq!(max_pool(&a, &[2, 2], 1)[0], fx(&[2, 2], &[5u8, 9, 7, 11]));
    // min: 0 ; 8 ; 2 ; 10
    assert_eq!(min_pool(&a, &[2, 2], 1)[0], fx(&[2, 2], &[0u8, 8, 2, 10]));
    // factor 3 on 7: windows [9,8,7] [6,5,4] [3] -> min [7,4,3] max [9,6,3]
    let b = fx(&[7], &[9i32, 8, 7, 6, 5, 4, 3]);
    assert_eq!(min_pool(&b, &[3], 1)[0], fx(&[3], &[7i32, 4, 3]));
    assert_eq!(max_pool(&b, &[3], 1)[0], fx(&[3], &[9i32, 6, 3]));
    // signed extremes, (5,) factor 2: [-5,3 | -128,127 | 0]
    let c = fx(&[5], &[-5i8, 3, -128, 127, 0]);
    assert_eq!(min_pool(&c, &[2], 1)[0], fx(&[3], &[-5i8, -128, 0]));
    assert_eq!(max_pool(&c, &[2], 1)[0], fx(&[3], &[3i8, 127, 0]));
    // (4,2,1) on (5,3,2): max over clipped boxes of v = x + 10y + 100z: the window's last voxel
    let d = from_fn(&[5, 3, 2], |i| (i[0] + 10 * i[1] + 100 * i[2]) as u16);
    let want = from_fn(&[2, 2, 2], |o| {
        let x = (4 * o[0] + 3).min(4);
        let y = (2 * o[1] + 1).min(2);
        (x + 10 * y + 100 * o[2]) as u16
    });
    assert_eq!(max_pool(&d, &[4, 2, 1], 1)[0], want);
    let want_min = from_fn(&[2, 2, 2], |o| (4 * o[0] + 20 * o[1] + 100 * o[2]) as u16);
    assert_eq!(min_pool(&d, &[4, 2, 1], 1)[0], want_min);
}

#[test]
fn min_max_nan_propagates() {
    let nan = f32::NAN;
    // [1, NaN | 3, 4] factor 2: max [NaN, 4], min [NaN, 3] ; mip 2: NaN, NaN
    let a = fx(&[4], &[1.0f32, nan, 3.0, 4.0]);
    let mx = max_pool(&a, &[2], 2);
    let mn = min_pool(&a, &[2], 2);
    assert!(mx[0][[0]].is_nan() && mx[0][[1]] == 4.0 && mx[1][[0]].is_nan());
    assert!(mn[0][[0]].is_nan() && mn[0][[1]] == 3.0 && mn[1][[0]].is_nan());
    // NaN first in the window, and in a 2x2x2 block of f64
    let b = fx(&[2], &[f64::NAN, 1.0]);
    assert!(max_pool(&b, &[2], 1)[0][[0]].is_nan() && min_pool(&b, &[2], 1)[0][[0]].is_nan());
    let c = fx(&[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, f64::NAN]);
    assert!(max_pool(&c, &[2, 2, 2], 1)[0][[0, 0, 0]].is_nan());
    // infinities are ordinary values
    let d = fx(&[3], &[f64::NEG_INFINITY, 0.0, f64::INFINITY]);
    assert_eq!(min_pool(&d, &[3], 1)[0], fx(&[1], &[f64::NEG_INFINITY]));
    assert_eq!(max_pool(&d, &[3], 1)[0], fx(&[1], &[f64::INFINITY]));
}

#[test]
fn min_max_each_mip_from_the_previous_mip() {
    // [5,3,8,1,9] factor 2: min [3,1,9] -> [1,9] -> [1] ; max [5,8,9] -> [8,9] -> [9]
    let a = fx(&[5], &[5i16, 3, 8, 1, 9]);
    assert_eq!(
        min_pool(&a, &[2], 3),
        vec![fx(&[3], &[3i16, 1, 9]), fx(&[2], &[1i16, 9]), fx(&[1], &[1i16])]
    );
    assert_eq!(
        max_pool(&a, &[2], 3),
        vec![fx(&[3], &[5i16, 8, 9]), fx(&[2], &[8i16, 9]), fx(&[1], &[9i16])]
    );
    // random 3D against a clipped-window model, 3 mips, several factors
    for f in [&[2usize, 2, 2][..], &[3, 1, 2], &[4, 4, 1]] {
        let v = random(&[13, 11, 9], 7, |r| r as i32);
        let (mut lo, mut hi) = (v.clone(), v.clone());
        let (mins, maxs) = (min_pool(&v, f, 3), max_pool(&v, f, 3));
        for k in 0..3 {
            lo = reduce(&lo, f, false, |w| *w.iter().min().unwrap());
            hi = reduce(&hi, f, false, |w| *w.iter().max().unwrap());
            assert_eq!(mins[k], lo, "{f:?} min mip {}", k + 1);
            assert_eq!(maxs[k], hi, "{f:?} max mip {}", k + 1);
        }
    }
}

#[test]
fn striding_takes_the_first_voxel_of_each_window() {
    // (5,7), v = 7x + y, factor (2,2): mip 1 = v(2i, 2j) = 14i + 2j ; mip 2 = v(4i, 4j) = 28i + 4j
    let a = from_fn(&[5, 7], |i| (7 * i[0] + i[1]) as u32);
    let outs = stride(&a, &[2, 2], 2);
    assert_eq!(outs[0], fx(&[3, 4], &[0u32, 14, 28, 2, 16, 30, 4, 18, 32, 6, 20, 34]));
    assert_eq!(outs[1], fx(&[2, 2], &[0u32, 28, 4, 32]));
    // factor 3 on 10: indices 0,3,6,9 then 0,9 (= i * 3^2)
    let b = fx(&[10], &(0..10).map(|v| v as f64 * 1.5).collect::<Vec<_>>());
    assert_eq!(
        stride(&b, &[3], 2),
        vec![fx(&[4], &[0.0, 4.5, 9.0, 13.5]), fx(&[2], &[0.0, 13.5])]
    );
    // 5D, factor (2,2,2,1,2), 2 mips: out[i] = in[i * f^k]
    let c = random(&[4, 5, 4, 2, 3], 5, |r| r as i8);
    let f = [2usize, 2, 2, 1, 2];
    for (k, out) in stride(&c, &f, 2).iter().enumerate() {
        let want = from_fn(&mip_shape(c.shape(), &f, k + 1), |o| {
            let idx: Vec<usize> = o.iter().zip(&f).map(|(&i, &fi)| i * fi.pow(k as u32 + 1)).collect();
            c[idx.as_slice()]
        });
        assert_eq!(out, &want, "mip {}", k + 1);
    }
}

/// Striding between layouts runs through tiles transposed in registers (a C-order
/// input into Fortran-order outputs, and the reverse): volumes wider than a tile on
/// both axes, with ragged edges, for each element size, against the definition
/// out_k[i] = in[i * f^k].
#[test]
fn striding_between_layouts_matches_the_definition() {
    fn run<T: Element + Bits + Default>(make: impl Fn(u64) -> T + Copy) {
        let factors: [&[usize]; 4] = [&[2, 2, 1], &[1, 1, 2], &[3, 1, 1], &[2, 1, 3]];
        for shape in [[133usize, 5, 150], [70, 131, 2], [17, 3, 33]] {
            let c_order = random(&shape, 7, make);
            let mut f_order = ArrayD::from_elem(IxDyn(&shape).f(), T::default());
            f_order.assign(&c_order);
            for f in factors {
                let what = format!("{:?} {shape:?} factor {f:?}", T::DTYPE);
                let want: Vec<ArrayD<T>> = (1..=2u32)
                    .map(|k| {
                        from_fn(&mip_shape(&shape, f, k as usize), |o| {
                            let index: Vec<usize> = o.iter().zip(f).map(|(&i, &fa)| i * fa.pow(k)).collect();
                            c_order[index.as_slice()]
                        })
                    })
                    .collect();
                let got = stride(&c_order, f, 2);
                assert!(
                    got.iter().all(|g| g.t().is_standard_layout()),
                    "{what}: outputs in Fortran order"
                );
                assert_same(&got, &want, &format!("{what}: C-order input"));
                let mut c_outputs: Vec<ArrayD<T>> = want
                    .iter()
                    .map(|w| ArrayD::from_elem(w.raw_dim(), T::default()))
                    .collect();
                let mut views: Vec<ArrayViewMutD<'_, T>> = c_outputs.iter_mut().map(|o| o.view_mut()).collect();
                downsample_into(Method::Stride, f_order.view(), f, false, &mut views).unwrap();
                assert_same(
                    &c_outputs,
                    &want,
                    &format!("{what}: Fortran-order input, C-order outputs"),
                );
            }
        }
    }
    run(|r| r as u8);
    run(|r| r as i16);
    run(|r| (r >> 40) as f32 - 1e6);
    run(|r| r);
}

/// A C-order input into the library's Fortran-order outputs: the 2x2 and 2x2x2
/// families write each level of a tile in the outputs' order, transposed in registers
/// for 1- and 2-byte values. These volumes span several register blocks and tiles on
/// every axis, with ragged edges; each method's pyramid must equal that of the same
/// volume in Fortran order, whose output lines are written as they are computed.
#[test]
fn c_order_inputs_match_fortran_inputs_across_tiles() {
    fn run<T: Element + Bits + Default>(make: impl Fn(u64) -> T + Copy) {
        for shape in [[133usize, 37, 70], [300, 3, 19]] {
            let c_order = random(&shape, 11, make);
            let mut f_order = ArrayD::from_elem(IxDyn(&shape).f(), T::default());
            f_order.assign(&c_order);
            assert!(c_order.is_standard_layout() && f_order.t().is_standard_layout());
            for f in [&[2usize, 2, 1][..], &[2, 2, 2], &[1, 2, 2], &[2, 1, 2]] {
                for (method, sparse) in METHODS {
                    let what = format!("{:?} {shape:?} {method:?} sparse={sparse} factor {f:?}", T::DTYPE);
                    let want = downsample(method, f_order.view(), f, 3, sparse).unwrap();
                    let got = downsample(method, c_order.view(), f, 3, sparse).unwrap();
                    assert!(
                        got.iter().all(|g| g.t().is_standard_layout()),
                        "{what}: outputs in Fortran order"
                    );
                    assert_same(&got, &want, &what);
                }
            }
        }
    }
    // Few distinct values as well as many: mode ties, and zeros for the sparse modes.
    run(|r| (r % 7) as u8);
    run(|r| r as u8);
    run(|r| r as i16);
    run(|r| (r % 5) as u16);
    run(|r| (r % 1000) as f32 - 500.0);
    run(|r| r % 9);
}

// ═════════════════════════════ Layout independence ═════════════════════════════

/// The number of layouts `for_each_layout` makes.
const LAYOUTS: usize = 6;

/// Calls `check` with the same 3D data as: C order, F order, reversed axes 0 and 1
/// (negative strides), permuted storage, a stepped (non-contiguous) view, the
/// transpose of a transpose.
fn for_each_layout<T: Bits + Default>(d: &ArrayD<T>, mut check: impl FnMut(&str, ArrayViewD<'_, T>)) {
    assert_eq!(d.ndim(), 3);
    let sh = d.shape().to_vec();
    let c = d.as_standard_layout().into_owned();
    check("C order", c.view());

    let mut f = ArrayD::from_elem(IxDyn(&sh).f(), T::default());
    f.assign(d);
    check("F order", f.view());

    let rev = from_fn(&sh, |i| d[[sh[0] - 1 - i[0], sh[1] - 1 - i[1], i[2]]]);
    let rv = rev.slice(s![..;-1, ..;-1, ..]).into_dyn();
    assert!(bits_of(&rv.to_owned()) == bits_of(d));
    check("negative strides", rv);

    let p = d
        .view()
        .permuted_axes(IxDyn(&[2, 0, 1]))
        .as_standard_layout()
        .into_owned();
    let pv = p.view().permuted_axes(IxDyn(&[1, 2, 0]));
    assert!(bits_of(&pv.to_owned()) == bits_of(d));
    check("permuted storage", pv);

    let mut big = ArrayD::from_elem(IxDyn(&[2 * sh[0], sh[1], 2 * sh[2] + 1]), T::default());
    big.slice_mut(s![..;2, .., 1..;2]).assign(d);
    let bv = big.slice(s![..;2, .., 1..;2]).into_dyn();
    assert!(bits_of(&bv.to_owned()) == bits_of(d));
    check("stepped view", bv);

    let t = d.t().to_owned();
    check("transpose of transpose", t.t());
}

fn all_results<T: Element>(v: ArrayViewD<'_, T>, factors: &[&[usize]], n: usize) -> Vec<Vec<ArrayD<T>>> {
    let mut out = Vec::new();
    for f in factors {
        for (method, sparse) in METHODS {
            out.push(downsample(method, v.clone(), f, n, sparse).unwrap());
        }
    }
    out
}

/// Where a call writes its mips: new Fortran-ordered arrays (`downsample`), or the
/// caller's views (`downsample_into`) of C-ordered buffers, or stepped views with axis 1
/// reversed inside larger buffers.
#[derive(Clone, Copy, Debug)]
enum Outputs {
    Owned,
    COrder,
    SteppedReversed,
}

const OUTPUTS: [Outputs; 3] = [Outputs::Owned, Outputs::COrder, Outputs::SteppedReversed];

/// Buffers, one per shape, filled with `fill`, each holding a view of that shape
/// (`stepped_reversed_mut`): every second element along axis 0, axis 1 reversed, axis 2
/// from 1 on.
fn stepped_reversed_buffers<T: Clone>(shapes: &[Vec<usize>], fill: T) -> Vec<ArrayD<T>> {
    shapes
        .iter()
        .map(|sh| ArrayD::from_elem(IxDyn(&[2 * sh[0], sh[1], sh[2] + 1]), fill.clone()))
        .collect()
}

fn stepped_reversed_mut<T>(big: &mut ArrayD<T>) -> ArrayViewMutD<'_, T> {
    big.slice_mut(s![..;2, ..;-1, 1..]).into_dyn()
}

fn stepped_reversed<T: Clone>(big: &ArrayD<T>) -> ArrayD<T> {
    big.slice(s![..;2, ..;-1, 1..]).into_dyn().to_owned()
}

/// `n` mips of one call written as `outputs` says, returned as owned arrays.
fn mips_into<T: Element + Default>(
    (method, sparse): (Method, bool),
    v: ArrayViewD<'_, T>,
    f: &[usize],
    n: usize,
    outputs: Outputs,
) -> Vec<ArrayD<T>> {
    let shapes: Vec<Vec<usize>> = (1..=n).map(|k| mip_shape(v.shape(), f, k)).collect();
    match outputs {
        Outputs::Owned => downsample(method, v, f, n, sparse).unwrap(),
        Outputs::COrder => {
            let mut mips: Vec<ArrayD<T>> = shapes.iter().map(|sh| ArrayD::default(IxDyn(sh))).collect();
            let mut views: Vec<ArrayViewMutD<'_, T>> = mips.iter_mut().map(|m| m.view_mut()).collect();
            downsample_into(method, v, f, sparse, &mut views).unwrap();
            mips
        }
        Outputs::SteppedReversed => {
            let mut bigs = stepped_reversed_buffers(&shapes, T::default());
            let mut views: Vec<ArrayViewMutD<'_, T>> = bigs.iter_mut().map(stepped_reversed_mut).collect();
            downsample_into(method, v, f, sparse, &mut views).unwrap();
            bigs.iter().map(stepped_reversed).collect()
        }
    }
}

/// Two mips of every method by each factor, in every layout of `for_each_layout` and
/// into each kind of `Outputs` in turn, equal those of `d` itself into new arrays.
///
/// Under Miri, which takes 1-3 s per call even on volumes of a few hundred voxels, each
/// method and factor runs in one input layout only, the layouts taken in turn, so that
/// the test still reads through every layout and writes through every kind of output.
fn assert_every_layout_agrees<T: Element + Bits + Default>(d: &ArrayD<T>, factors: &[&[usize]]) {
    let want = all_results(d.view(), factors, 2);
    let mut layout = 0;
    for_each_layout(d, |name, v| {
        assert!(layout != 0 || name == "C order");
        for (i, w) in want.iter().enumerate() {
            if cfg!(miri) && i % LAYOUTS != layout {
                continue;
            }
            let (f, combo) = (factors[i / METHODS.len()], METHODS[i % METHODS.len()]);
            // The C-order input (layout 0) into new arrays would repeat the reference call.
            let choices = if layout == 0 { &OUTPUTS[1..] } else { &OUTPUTS[..] };
            let outputs = choices[(i / LAYOUTS + layout) % choices.len()];
            let got = mips_into(combo, v.clone(), f, 2, outputs);
            let what = format!("{name} into {outputs:?}: {:?} {combo:?} factor {f:?}", T::DTYPE);
            assert_same(&got, w, &what);
        }
        layout += 1;
    });
    assert_eq!(layout, LAYOUTS);
}

const LAYOUT_FACTORS: [&[usize]; 7] = [
    &[2, 2, 1],
    &[2, 2, 2],
    &[1, 2, 2],
    &[2, 1, 2],
    &[3, 3, 1],
    &[2, 1, 3],
    &[4, 4, 4],
];

#[test]
fn layout_independence_for_every_method() {
    fn run<T: Element + Bits + Default>(d: &ArrayD<T>) {
        assert_every_layout_agrees(d, &LAYOUT_FACTORS);
    }
    run(&random(&[7, 6, 5], 201, |r| (r % 4) as u16));
    run(&random(&[7, 6, 5], 202, |r| r as i8));
    run(&random(&[9, 5, 6], 203, |r| {
        if r % 3 == 0 {
            0.0
        } else {
            (r % 1000) as f32 / 3.0
        }
    }));
    run(&random(&[9, 5, 6], 204, |r| r));

    // An input that repeats memory with stride 0 (a broadcast along z) equals its copy.
    let base = random(&[7, 6, 1], 205, |r| (r % 5) as u8);
    let bc = base.broadcast(IxDyn(&[7, 6, 4])).unwrap();
    assert_eq!(bc.strides()[2], 0);
    let owned = bc.to_owned();
    let (a, b) = (
        all_results(bc, &LAYOUT_FACTORS, 2),
        all_results(owned.view(), &LAYOUT_FACTORS, 2),
    );
    for (g, w) in a.iter().zip(&b) {
        assert_same(g, w, "stride-0 input");
    }
}

/// Every dtype through every method, two mips, in every layout of `for_each_layout`: each
/// kernel's instance for each type reads through strided, reversed and stepped memory.
/// 34 voxels along axis 0 make whole AVX2 vectors of every width in the layouts whose
/// lines run along it, the tails elsewhere. (`layout_independence_for_every_method`
/// covers four dtypes and more factors on larger volumes.) Sized for Miri too, where
/// `scripts/miri.sh` runs it on one thread and on two, each combination in one layout.
#[test]
fn tiny_volumes_of_every_dtype_agree_across_layouts() {
    const FACTORS: [&[usize]; 3] = [&[2, 2, 1], &[2, 2, 2], &[3, 1, 2]];
    fn run<T: Element + Bits + Default>(make: impl FnMut(u64) -> T) {
        assert_every_layout_agrees(&random(&[34, 3, 3], 601, make), &FACTORS);
    }
    // Few distinct values, zeros among them: mode ties and sparse windows.
    run(|r| (r % 3) as u8);
    run(|r| (r % 3) as i8 - 1);
    run(|r| (r % 3) as u16);
    run(|r| r as i16);
    run(|r| (r % 3) as u32);
    run(|r| r as i32);
    run(|r| r % 3);
    run(|r| r as i64);
    run(|r| (r % 7) as f32 - 3.0);
    run(|r| (r % 7) as f64 / 3.0);
}

#[test]
fn downsample_into_noncontiguous_outputs_equal_the_owned_results() {
    fn run<T: Element + Bits + Default>(d: &ArrayD<T>, sentinel: T) {
        for f in LAYOUT_FACTORS {
            for (method, sparse) in METHODS {
                let what = format!("{:?} {method:?} sparse={sparse} {f:?}", T::DTYPE);
                let want = downsample(method, d.view(), f, 3, sparse).unwrap();
                // (1) stepped + reversed views into bigger buffers
                let shapes: Vec<Vec<usize>> = want.iter().map(|w| w.shape().to_vec()).collect();
                let mut bigs = stepped_reversed_buffers(&shapes, sentinel);
                {
                    let mut views: Vec<ArrayViewMutD<'_, T>> = bigs.iter_mut().map(stepped_reversed_mut).collect();
                    downsample_into(method, d.view(), f, sparse, &mut views).unwrap();
                }
                for (k, (big, w)) in bigs.iter().zip(&want).enumerate() {
                    let got = stepped_reversed(big);
                    assert_same(
                        &[got],
                        std::slice::from_ref(w),
                        &format!("{what} stepped view mip {}", k + 1),
                    );
                    let untouched = big
                        .slice(s![1..;2, .., ..])
                        .iter()
                        .chain(big.slice(s![.., .., ..1]).iter())
                        .all(|v| v.bits() == sentinel.bits());
                    assert!(untouched, "{what}: wrote outside the output view (mip {})", k + 1);
                }
                // (2) transposed (Fortran-like) views of C-ordered buffers
                let mut ts: Vec<ArrayD<T>> = want
                    .iter()
                    .map(|w| {
                        let rs: Vec<usize> = w.shape().iter().rev().copied().collect();
                        ArrayD::from_elem(IxDyn(&rs), sentinel)
                    })
                    .collect();
                {
                    let mut views: Vec<ArrayViewMutD<'_, T>> =
                        ts.iter_mut().map(|t| t.view_mut().reversed_axes()).collect();
                    downsample_into(method, d.view(), f, sparse, &mut views).unwrap();
                }
                for (k, (t, w)) in ts.iter().zip(&want).enumerate() {
                    assert_same(
                        &[t.t().to_owned()],
                        std::slice::from_ref(w),
                        &format!("{what} transposed mip {}", k + 1),
                    );
                }
            }
        }
    }
    run(&random(&[9, 7, 6], 301, |r| (r % 3) as u8), 77);
    run(&random(&[9, 7, 6], 302, |r| (r % 1000) as f64 - 500.0), -1234.5);
}

// ═════════════════════════════ Thread-count independence ═════════════════════════════

#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    // set_num_threads is global: every thread-count assertion lives in this one test.
    const FACTORS: [&[usize]; 7] = [
        &[2, 2, 1],
        &[2, 2, 2],
        &[1, 2, 2],
        &[3, 3, 1],
        &[2, 1, 1],
        &[4, 4, 2],
        &[2, 2, 2, 1],
    ];
    fn all<T: Element>(v: &ArrayD<T>) -> Vec<Vec<ArrayD<T>>> {
        all_results(v.view(), &FACTORS, 4)
    }
    fn compare<T: Element + Bits>(a: &[Vec<ArrayD<T>>], b: &[Vec<ArrayD<T>>], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let (f, (m, sp)) = (FACTORS[i / METHODS.len()], METHODS[i % METHODS.len()]);
            assert_same(x, y, &format!("{what}: {m:?} sparse={sp} {f:?}"));
        }
    }
    let shape = [129, 67, 9];
    let u8s = random(&shape, 401, |r| if r % 4 == 0 { 0 } else { r as u8 });
    let u16s = random(&shape, 402, |r| (r % 4) as u16);
    let i16s = random(&shape, 403, |r| r as i16);
    let f32s = random(
        &shape,
        404,
        |r| if r % 5 == 0 { 0.0 } else { (r % 100_000) as f32 / 7.0 },
    );
    let u64s = random(&shape, 405, |r| r);
    let c4 = random(&[65, 33, 5, 3], 406, |r| (r % 3) as i32);

    // Mode for other factors over enough output rows for several tasks (3x3x1 and 5x2x1
    // mip 1: three each) of many rows, where each row reads ahead into the next one's
    // input rows. Label 0 fills half the voxels, so windows are settled both by a first
    // look and by counts, and sparse mode has background to leave out.
    let runs = random(&[400, 300, 6], 408, |r| ((r >> 61) as u32).saturating_sub(3));
    let big_mode = |sparse| {
        [&[3usize, 3, 1][..], &[3, 3, 3], &[5, 2, 1]]
            .map(|f| (downsample_segmentation(runs.view(), f, 2, sparse).unwrap(), f))
    };

    set_num_threads(1).unwrap();
    let one = (all(&u8s), all(&u16s), all(&i16s), all(&f32s), all(&u64s), all(&c4));
    let one_big = [false, true].map(big_mode);
    for (results, sparse) in one_big.iter().zip([false, true]) {
        for (got, f) in results {
            let model = model_mode(&bits_of(&runs), f, 2, sparse);
            for (k, (g, m)) in got.iter().zip(&model).enumerate() {
                assert_eq!(&bits_of(g), m, "{f:?} sparse={sparse} mip {}", k + 1);
            }
        }
    }
    for threads in [2, 3, 8] {
        set_num_threads(threads).unwrap();
        let many = (all(&u8s), all(&u16s), all(&i16s), all(&f32s), all(&u64s), all(&c4));
        compare(&one.0, &many.0, &format!("u8, {threads} threads"));
        compare(&one.1, &many.1, &format!("u16, {threads} threads"));
        compare(&one.2, &many.2, &format!("i16, {threads} threads"));
        compare(&one.3, &many.3, &format!("f32, {threads} threads"));
        compare(&one.4, &many.4, &format!("u64, {threads} threads"));
        compare(&one.5, &many.5, &format!("4D i32, {threads} threads"));
        for (one, many) in one_big.iter().zip([false, true].map(big_mode)) {
            for ((x, f), (y, _)) in one.iter().zip(&many) {
                assert_same(x, y, &format!("{f:?} mode of 400x300x6 labels, {threads} threads"));
            }
        }
    }
    set_num_threads(0).unwrap();
}

// ═════════════════════════════════════ Errors ═════════════════════════════════════

#[test]
fn errors_zero_factor_is_bad_factor() {
    let a = ArrayD::<u8>::zeros(IxDyn(&[4, 4]));
    for (method, sparse) in METHODS {
        let e = downsample(method, a.view(), &[2, 0], 1, sparse).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadFactor, "{method:?}");
        assert!(!e.message().is_empty());
        let e = downsample(method, a.view(), &[0], 0, sparse).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadFactor, "{method:?}, even with num_mips = 0");
    }
    // a factor with more (non-1) entries than the input has axes is not a valid factor either
    assert_eq!(
        downsample_with_averaging(a.view(), &[2, 2, 2], 1, false)
            .unwrap_err()
            .kind(),
        ErrorKind::BadFactor
    );
}

#[test]
fn errors_bad_shapes() {
    // a zero-size axis
    let z = ArrayD::<u16>::zeros(IxDyn(&[0, 3]));
    for (method, sparse) in METHODS {
        assert_eq!(
            downsample(method, z.view(), &[2, 2], 1, sparse).unwrap_err().kind(),
            ErrorKind::BadShape
        );
    }
    // 9 axes (8 is the maximum and works)
    let nine = ArrayD::<u8>::zeros(IxDyn(&[1; 9]));
    for (method, sparse) in METHODS {
        assert_eq!(
            downsample(method, nine.view(), &[2, 2], 1, sparse).unwrap_err().kind(),
            ErrorKind::BadShape
        );
    }
    let eight = ArrayD::<u8>::from_elem(IxDyn(&[2; 8]), 3);
    let outs = avg(&eight, &[2, 2, 2, 2, 2, 2, 2, 2], 1);
    assert_eq!(outs[0], ArrayD::from_elem(IxDyn(&[1; 8]), 3u8));
}

#[test]
fn errors_sparse_where_unsupported() {
    let a = ArrayD::<f32>::zeros(IxDyn(&[4, 4]));
    for method in [Method::Min, Method::Max, Method::Stride] {
        let e = downsample(method, a.view(), &[2, 2], 1, true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{method:?}");
        let mut out = ArrayD::<f32>::from_elem(IxDyn(&[2, 2]), 5.0);
        let e = downsample_into(method, a.view(), &[2, 2], true, &mut [out.view_mut()]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(out.iter().all(|&v| v == 5.0), "output written despite the error");
    }
}

#[test]
fn errors_wrong_output_shape_is_bad_output_and_nothing_is_written() {
    let a = from_fn(&[4, 4], |i| (i[0] + i[1]) as u8);
    for (method, sparse) in METHODS {
        // mip 1 has the right shape (2,2); mip 2 should be (1,1) but is (2,2)
        let mut o1 = ArrayD::<u8>::from_elem(IxDyn(&[2, 2]), 99);
        let mut o2 = ArrayD::<u8>::from_elem(IxDyn(&[2, 2]), 99);
        let e = downsample_into(method, a.view(), &[2, 2], sparse, &mut [o1.view_mut(), o2.view_mut()]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadOutput, "{method:?}");
        assert!(!e.message().is_empty());
        assert!(
            o1.iter().chain(o2.iter()).all(|&v| v == 99),
            "{method:?}: partial result written"
        );
        // wrong number of axes
        let mut o3 = ArrayD::<u8>::from_elem(IxDyn(&[2, 2, 1]), 99);
        let e = downsample_into(method, a.view(), &[2, 2], sparse, &mut [o3.view_mut()]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadOutput);
        assert!(o3.iter().all(|&v| v == 99));
        // a bad factor is reported before anything is written, too
        let mut o4 = ArrayD::<u8>::from_elem(IxDyn(&[2, 2]), 99);
        assert!(downsample_into(method, a.view(), &[2, 0], sparse, &mut [o4.view_mut()]).is_err());
        assert!(o4.iter().all(|&v| v == 99));
    }
}
