//! Mode pooling for segmentation labels. Labels compare by their bits; in sparse mode
//! the label whose bits are all zero is background and never wins over a real label.

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::cascade::{self, BlockReducer};
use crate::dtype::Element;
use crate::engine::{Edge, Reducer, Window};
use crate::kernels::same_type_levels;
use crate::shape::{family, pad_dims, Family};

/// tinybrain's 2x2 rule over a, b (+1 on the first axis), c (+1 on the second), d (both).
#[derive(Clone)]
struct TwoByTwoRule {
    sparse: bool,
}

impl<T: Element> BlockReducer<T, 4> for TwoByTwoRule {
    type Out = T;
    #[inline(always)]
    fn reduce(&self, block: &[T; 4]) -> T {
        let [a, b, c, d] = *block;
        if !self.sparse {
            Self::dense(a, b, c, d)
        } else {
            let (a_bits, b_bits, c_bits) = (a.to_bits(), b.to_bits(), c.to_bits());
            let zero = T::Bits::default();
            if a_bits != zero && (a_bits == b_bits || a_bits == c_bits) {
                a
            } else if b_bits != zero && b_bits == c_bits {
                b
            } else if d.to_bits() != zero {
                d
            } else {
                [a, b, c].into_iter().find(|v| v.to_bits() != zero).unwrap_or_default()
            }
        }
    }
    /// The two lines of a row of blocks side by side, pair by pair.
    #[inline(always)]
    fn reduce_line_pairs(&self, lines: &[&[T]], results: &mut [T]) {
        let [upper, lower] = lines else {
            unreachable!("a 2x2 block spans two lines")
        };
        let pairs = upper.chunks_exact(2).zip(lower.chunks_exact(2));
        if self.sparse {
            for (result, (ab, cd)) in results.iter_mut().zip(pairs) {
                *result = self.reduce(&[ab[0], ab[1], cd[0], cd[1]]);
            }
        } else {
            for (result, (ab, cd)) in results.iter_mut().zip(pairs) {
                *result = Self::dense(ab[0], ab[1], cd[0], cd[1]);
            }
        }
    }
}

impl TwoByTwoRule {
    /// The dense rule written with selects only, so a line of blocks vectorises.
    #[inline(always)]
    fn dense<T: Element>(a: T, b: T, c: T, d: T) -> T {
        let (a_bits, b_bits, c_bits) = (a.to_bits(), b.to_bits(), c.to_bits());
        let b_or_d = if b_bits == c_bits { b } else { d };
        if (a_bits == b_bits) | (a_bits == c_bits) {
            a
        } else {
            b_or_d
        }
    }
}

/// The 2x2x2 rule: the most frequent of the 8 values, ties to the earliest.
#[derive(Clone)]
struct MostFrequentOfEight {
    sparse: bool,
}

impl<T: Element> BlockReducer<T, 8> for MostFrequentOfEight {
    type Out = T;
    #[inline(always)]
    fn reduce(&self, block: &[T; 8]) -> T {
        let bits = block.map(|v| v.to_bits());
        // Most blocks of real segmentations hold one label, and most others two: the
        // first label wins outright when it fills half the block (no other can have
        // more, and a tie goes to the earliest).
        let first_count = bits.iter().filter(|&&b| b == bits[0]).count();
        let first_is_label = !(self.sparse && bits[0] == T::Bits::default());
        if first_count >= 4 && first_is_label {
            return block[0];
        }
        if first_count == 8 {
            return T::default(); // all background
        }
        // The first index with the highest count is the earliest occurrence of the
        // earliest of the most frequent labels.
        let mut best = (0usize, 0usize);
        for (i, &b) in bits.iter().enumerate() {
            if self.sparse && b == T::Bits::default() {
                continue;
            }
            let count = bits.iter().filter(|&&other| other == b).count();
            if count > best.0 {
                best = (count, i);
            }
        }
        if best.0 == 0 {
            T::default()
        } else {
            block[best.1]
        }
    }
}

/// The most frequent label of the window; ties go to the label seen first in scan order.
#[derive(Clone)]
struct MostFrequent {
    sparse: bool,
}

/// Windows up to this size are counted pairwise; larger ones are sorted.
const PAIRWISE_LIMIT: usize = 16;

impl<T: Element> Reducer<T> for MostFrequent {
    type Lane = Vec<T>;
    type Output = T;
    #[inline(always)]
    fn push(&self, values: &mut Vec<T>, value: T) {
        values.push(value);
    }
    fn finish(&self, values: &mut Vec<T>) -> T {
        let result = if values.len() <= PAIRWISE_LIMIT {
            most_frequent_pairwise(values, self.sparse)
        } else {
            most_frequent_sorted(values, self.sparse, &mut Vec::new())
        };
        values.clear();
        result
    }
}

fn most_frequent_pairwise<T: Element>(values: &[T], sparse: bool) -> T {
    let zero = T::Bits::default();
    let mut best: Option<(usize, T)> = None;
    for (i, v) in values.iter().enumerate() {
        let bits = v.to_bits();
        if (sparse && bits == zero) || values[..i].iter().any(|u| u.to_bits() == bits) {
            continue;
        }
        let count = values[i..].iter().filter(|u| u.to_bits() == bits).count();
        if best.is_none_or(|(c, _)| count > c) {
            best = Some((count, *v));
        }
    }
    best.map(|(_, v)| v).unwrap_or_default()
}

fn most_frequent_sorted<T: Element>(values: &[T], sparse: bool, sorted: &mut Vec<(T::Bits, usize)>) -> T {
    let zero = T::Bits::default();
    sorted.clear();
    sorted.extend(
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (v.to_bits(), i))
            .filter(|(b, _)| !(sparse && *b == zero)),
    );
    sorted.sort_unstable();
    // (count, first index) of the winner: larger count, then smaller first index.
    let mut best: Option<(usize, usize)> = None;
    for group in sorted.chunk_by(|x, y| x.0 == y.0) {
        let (count, first) = (group.len(), group[0].1);
        if best.is_none_or(|(c, f)| count > c || (count == c && first < f)) {
            best = Some((count, first));
        }
    }
    best.map(|(_, first)| values[first]).unwrap_or_default()
}

pub(crate) fn downsample<T: Element>(
    input: &ArrayViewD<'_, T>,
    factor: &[usize],
    sparse: bool,
    outputs: &mut [ArrayViewMutD<'_, T>],
) {
    match family(factor) {
        Family::TwoByTwo(axes) => cascade::run::<T, T, T, _, _, _, _, _, _, 4>(
            input,
            &axes,
            outputs,
            &same_type_levels(TwoByTwoRule { sparse }),
        ),
        Family::TwoByTwoByTwo(axes) => cascade::run::<T, T, T, _, _, _, _, _, _, 8>(
            input,
            &axes,
            outputs,
            &same_type_levels(MostFrequentOfEight { sparse }),
        ),
        Family::Identity | Family::General => {
            let window = Window::pooling(&pad_dims(factor), Edge::Clip);
            super::pyramid_from_previous_mip(input, outputs, |_| window, MostFrequent { sparse });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_and_sorted_counting_agree() {
        let mut state = 12345u64;
        let mut sorted = Vec::new();
        for len in 1..=40 {
            for _ in 0..50 {
                let values: Vec<u8> = (0..len)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (state >> 60) as u8 % 4
                    })
                    .collect();
                for sparse in [false, true] {
                    assert_eq!(
                        most_frequent_pairwise(&values, sparse),
                        most_frequent_sorted(&values, sparse, &mut sorted),
                        "{values:?} sparse={sparse}"
                    );
                }
            }
        }
    }
}
