//! Shape arithmetic: factors, mip shapes, and which kernel family a factor selects.

use crate::error::{bail, Result};

/// Most axes an array may have.
pub const MAX_NDIM: usize = 8;

/// A shape or factor padded with 1s to `MAX_NDIM` axes, so kernels loop over fixed arrays.
pub(crate) type Dims = [usize; MAX_NDIM];

/// Checks an input shape: 1..=8 axes, no zero-size axis, element count fits `usize`
/// and the byte size fits `isize`.
pub fn check_shape(shape: &[usize], elem_size: usize) -> Result<usize> {
    if shape.is_empty() || shape.len() > MAX_NDIM {
        bail!(BadShape, "ndim is {}; it must be between 1 and {MAX_NDIM}", shape.len());
    }
    let mut count: usize = 1;
    for (axis, &s) in shape.iter().enumerate() {
        if s == 0 {
            bail!(BadShape, "shape[{axis}] is 0; every axis needs at least one element");
        }
        count = match count.checked_mul(s) {
            Some(c) => c,
            None => bail!(BadShape, "shape {shape:?} has more elements than fit in size_t"),
        };
    }
    match count.checked_mul(elem_size) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(count),
        _ => bail!(
            BadShape,
            "shape {shape:?} is larger than the address space ({count} elements of {elem_size} bytes)"
        ),
    }
}

/// Pads a factor to `ndim` axes (missing trailing entries mean 1) and checks it.
pub fn normalize_factor(factor: &[usize], ndim: usize) -> Result<Vec<usize>> {
    if factor.len() > ndim && factor[ndim..].iter().any(|&f| f != 1) {
        bail!(BadFactor, "factor {factor:?} has more axes than the input's {ndim}");
    }
    let mut padded = vec![1; ndim];
    for (axis, &f) in factor.iter().take(ndim).enumerate() {
        if f == 0 {
            bail!(BadFactor, "factor[{axis}] is 0; factors must be at least 1");
        }
        padded[axis] = f;
    }
    Ok(padded)
}

/// One downsampling step on one axis: ceil(size / factor).
#[inline]
pub fn reduce_size(size: usize, factor: usize) -> usize {
    size.div_ceil(factor)
}

/// The shape of mip `mip` (0 = the input). Iterates so that factor^mip never overflows.
pub fn mip_shape(shape: &[usize], factor: &[usize], mip: usize) -> Vec<usize> {
    shape
        .iter()
        .zip(factor)
        .map(|(&s, &f)| {
            let mut s = s;
            for _ in 0..mip {
                if s == 1 || f == 1 {
                    break;
                }
                s = reduce_size(s, f);
            }
            s
        })
        .collect()
}

/// Element count of the mips 1..=num_mips together (the `_packed` buffer), checked.
pub fn pyramid_len(shape: &[usize], factor: &[usize], num_mips: usize) -> Result<usize> {
    let mut total: usize = 0;
    let mut current = shape.to_vec();
    for mip in 1..=num_mips {
        let next: Vec<usize> = current.iter().zip(factor).map(|(&s, &f)| reduce_size(s, f)).collect();
        let len: usize = next.iter().product();
        if next == current {
            // Every later mip has this same shape: multiply instead of looping (num_mips may be huge).
            let remaining = num_mips - mip + 1;
            return match len.checked_mul(remaining).and_then(|r| total.checked_add(r)) {
                Some(t) => Ok(t),
                None => bail!(BadShape, "{num_mips} mips of shape {next:?} overflow size_t"),
            };
        }
        total = match total.checked_add(len) {
            Some(t) => t,
            None => bail!(BadShape, "the pyramid of {num_mips} mips overflows size_t"),
        };
        current = next;
    }
    Ok(total)
}

/// The alignment that makes chunks independent: a chunk that starts at a multiple of
/// factor^num_mips on every axis, and whose size is a multiple of it (or that ends at the
/// volume's edge), has exactly the mips of the same region of the whole volume.
pub fn chunk_alignment(factor: &[usize], num_mips: usize) -> Result<Vec<usize>> {
    factor
        .iter()
        .enumerate()
        .map(|(axis, &f)| {
            let exponent = u32::try_from(num_mips).ok();
            match exponent.and_then(|e| f.checked_pow(e)).or((f == 1).then_some(1)) {
                Some(a) => Ok(a),
                None => bail!(BadShape, "factor[{axis}]^{num_mips} overflows size_t"),
            }
        })
        .collect()
}

/// Which rule set a factor selects (SEMANTICS.md: "2x2" and "2x2x2" families).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// Every factor is 1: outputs are copies of the input.
    Identity,
    /// Factor 2 on exactly two axes (these), 1 elsewhere.
    TwoByTwo([usize; 2]),
    /// Factor 2 on exactly three axes (these), 1 elsewhere.
    TwoByTwoByTwo([usize; 3]),
    /// Anything else: clipped windows.
    General,
}

impl Family {
    /// The factor-2 axes of the 2x2 and 2x2x2 families (which run in the cascade);
    /// None for the others.
    pub(crate) fn factor_axes(&self) -> Option<&[usize]> {
        match self {
            Family::TwoByTwo(axes) => Some(axes),
            Family::TwoByTwoByTwo(axes) => Some(axes),
            Family::Identity | Family::General => None,
        }
    }
}

pub(crate) fn family(factor: &[usize]) -> Family {
    if factor.iter().all(|&f| f == 1) {
        return Family::Identity;
    }
    if factor.iter().any(|&f| f != 1 && f != 2) {
        return Family::General;
    }
    let twos: Vec<usize> = (0..factor.len()).filter(|&a| factor[a] == 2).collect();
    match twos.len() {
        2 => Family::TwoByTwo([twos[0], twos[1]]),
        3 => Family::TwoByTwoByTwo([twos[0], twos[1], twos[2]]),
        _ => Family::General,
    }
}

/// The axis of smallest |stride| among those longer than one voxel (0 when none is):
/// the axis a view's lines run along, for reading or writing in address order.
pub(crate) fn fastest_axis(shape: &Dims, strides: &[isize; MAX_NDIM]) -> usize {
    (0..MAX_NDIM)
        .filter(|&a| shape[a] > 1)
        .min_by_key(|&a| strides[a].unsigned_abs())
        .unwrap_or(0)
}

/// The axes by the memory distance between neighbours along them (|stride| ascending),
/// axes of one voxel last; ties keep the axis order.
pub(crate) fn memory_order(shape: &[usize], strides: &[isize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..shape.len()).collect();
    sort_in_memory_order(&mut order, shape, strides);
    order
}

/// Sorts `axes` as `memory_order` orders them, in place (no allocation).
pub(crate) fn sort_in_memory_order(axes: &mut [usize], shape: &[usize], strides: &[isize]) {
    axes.sort_by_key(|&axis| (shape[axis] == 1, strides[axis].unsigned_abs()));
}

/// Sorts `axes` by |stride|, ascending; ties keep their order.
///
/// Kernels call this rather than sorting with a closure of their own: a closure is a
/// new type in every instance of a generic kernel, and each type compiled the standard
/// library's stable sort once more (274 copies, 15% of the library's LLVM IR).
pub(crate) fn sort_by_stride(axes: &mut [usize], strides: &[isize]) {
    axes.sort_by_key(|&axis| strides[axis].unsigned_abs());
}

/// Calls `visit` with every point of the box `0..extent` over `axes`, the first of them
/// counting fastest, like an odometer; the other coordinates stay 0.
#[inline(always)]
pub(crate) fn for_each_point(axes: &[usize], extent: &Dims, mut visit: impl FnMut(&Dims)) {
    let mut coords = [0usize; MAX_NDIM];
    loop {
        visit(&coords);
        let mut wrapped = true;
        for &axis in axes {
            coords[axis] += 1;
            if coords[axis] < extent[axis] {
                wrapped = false;
                break;
            }
            coords[axis] = 0;
        }
        if wrapped {
            return;
        }
    }
}

pub(crate) fn pad_dims(values: &[usize]) -> Dims {
    let mut dims = [1; MAX_NDIM];
    dims[..values.len()].copy_from_slice(values);
    dims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_order_puts_the_densest_axis_first_and_single_voxel_axes_last() {
        // C order, Fortran order, negative and zero (broadcast) strides, an axis of one.
        assert_eq!(memory_order(&[4, 5, 6], &[30, 6, 1]), [2, 1, 0]);
        assert_eq!(memory_order(&[4, 5, 6], &[1, 4, 20]), [0, 1, 2]);
        assert_eq!(memory_order(&[4, 5, 6], &[-30, 6, -1]), [2, 1, 0]);
        assert_eq!(memory_order(&[4, 5, 6], &[6, 0, 1]), [1, 2, 0]);
        assert_eq!(memory_order(&[1, 5, 6], &[1, 6, 1]), [2, 1, 0]);
        assert_eq!(memory_order(&[3, 3], &[2, 2]), [0, 1]);
    }

    #[test]
    fn for_each_point_visits_the_box_once_in_odometer_order() {
        let extent = pad_dims(&[3, 1, 2, 4]);
        let mut seen = Vec::new();
        for_each_point(&[3, 0], &extent, |coords| seen.push(*coords));
        // Axis 3 counts fastest; axis 2 is not counted and stays 0.
        let point = |x: usize, w: usize| {
            let mut coords = [0; MAX_NDIM];
            (coords[0], coords[3]) = (x, w);
            coords
        };
        let want: Vec<Dims> = (0..3).flat_map(|x| (0..4).map(move |w| point(x, w))).collect();
        assert_eq!(seen, want);
        let mut visits = 0;
        for_each_point(&[], &extent, |coords| {
            assert_eq!(*coords, [0; MAX_NDIM]);
            visits += 1;
        });
        assert_eq!(visits, 1);
    }

    #[test]
    fn mip_shapes_round_up_and_stop_at_one() {
        assert_eq!(mip_shape(&[5, 7, 3], &[2, 2, 1], 1), vec![3, 4, 3]);
        assert_eq!(mip_shape(&[5, 7, 3], &[2, 2, 1], 2), vec![2, 2, 3]);
        assert_eq!(mip_shape(&[5, 7, 3], &[2, 2, 1], 1000), vec![1, 1, 3]);
        assert_eq!(mip_shape(&[10], &[3], 2), vec![2]);
    }

    #[test]
    fn pyramid_len_handles_huge_mip_counts() {
        assert_eq!(pyramid_len(&[4, 4], &[2, 2], 3).unwrap(), 4 + 1 + 1);
        assert_eq!(pyramid_len(&[4, 4], &[2, 2], 1 << 40).unwrap(), 4 + (1 << 40) - 1);
        assert!(pyramid_len(&[4, 4], &[2, 2], usize::MAX).is_err());
        assert_eq!(pyramid_len(&[3], &[1], 2).unwrap(), 6);
    }

    #[test]
    fn bad_shapes_and_factors_are_named() {
        assert!(check_shape(&[], 1).is_err());
        assert!(check_shape(&[1; 9], 1).is_err());
        assert!(check_shape(&[3, 0], 1).unwrap_err().message().contains("shape[1]"));
        assert!(check_shape(&[usize::MAX, 2], 1).is_err());
        assert!(check_shape(&[usize::MAX / 4], 8).is_err());
        assert!(normalize_factor(&[2, 0], 2)
            .unwrap_err()
            .message()
            .contains("factor[1]"));
        assert_eq!(normalize_factor(&[2], 3).unwrap(), vec![2, 1, 1]);
        assert!(normalize_factor(&[2, 2, 2], 2).is_err());
    }

    #[test]
    fn chunk_alignment_is_factor_to_the_mips() {
        assert_eq!(chunk_alignment(&[2, 3, 1], 3).unwrap(), vec![8, 27, 1]);
        assert_eq!(chunk_alignment(&[2, 2], 0).unwrap(), vec![1, 1]);
        assert!(chunk_alignment(&[2, 1], 64).is_err());
        assert_eq!(chunk_alignment(&[1], usize::MAX).unwrap(), vec![1]);
    }

    #[test]
    fn families() {
        assert_eq!(family(&[1, 1]), Family::Identity);
        assert_eq!(family(&[2, 2, 1]), Family::TwoByTwo([0, 1]));
        assert_eq!(family(&[1, 2, 2]), Family::TwoByTwo([1, 2]));
        assert_eq!(family(&[2, 2, 2, 1]), Family::TwoByTwoByTwo([0, 1, 2]));
        assert_eq!(family(&[2, 1, 1]), Family::General);
        assert_eq!(family(&[2, 2, 2, 2]), Family::General);
        assert_eq!(family(&[4, 4, 1]), Family::General);
    }
}
