//! Mode pooling for segmentation labels. Labels compare by their bits; in sparse mode
//! the label whose bits are all zero is background and never wins over a real label.

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::dtype::Element;
use crate::engine::{Edge, Reducer, Window};
use crate::shape::{family, pad_dims, Family};

/// tinybrain's 2x2 rule over a, b (+1 on the first axis), c (+1 on the second), d (both).
#[derive(Clone)]
struct TwoByTwoRule {
    sparse: bool,
}

/// The four values of a 2x2 block, in scan order, and how many have arrived.
#[derive(Clone, Default)]
struct Block<T> {
    seen: usize,
    values: [T; 4],
}

impl<T: Element> Reducer<T> for TwoByTwoRule {
    type Lane = Block<T>;
    type Output = T;
    #[inline(always)]
    fn push(&self, block: &mut Block<T>, value: T) {
        block.values[block.seen] = value;
        block.seen += 1;
    }
    #[inline(always)]
    fn finish(&self, block: &mut Block<T>) -> T {
        debug_assert_eq!(block.seen, 4);
        block.seen = 0;
        let [a, b, c, d] = block.values;
        let (a_bits, b_bits, c_bits) = (a.to_bits(), b.to_bits(), c.to_bits());
        if !self.sparse {
            if a_bits == b_bits || a_bits == c_bits {
                a
            } else if b_bits == c_bits {
                b
            } else {
                d
            }
        } else {
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
    let padded = pad_dims(factor);
    match family(factor) {
        Family::TwoByTwo(_) => {
            let window = Window::pooling(&padded, Edge::Replicate);
            let reducer = TwoByTwoRule { sparse };
            super::pyramid_from_previous_mip(input, outputs, |_| window, reducer);
        }
        fam => {
            let edge = if matches!(fam, Family::TwoByTwoByTwo(_)) {
                Edge::Replicate
            } else {
                Edge::Clip
            };
            let window = Window::pooling(&padded, edge);
            let reducer = MostFrequent { sparse };
            super::pyramid_from_previous_mip(input, outputs, |_| window, reducer);
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
