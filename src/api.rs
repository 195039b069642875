//! The safe Rust API: ndarray views in, owned arrays or caller views out. The C ABI is a
//! thin layer over [`downsample_into`].

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn, ShapeBuilder};

use crate::dtype::Element;
use crate::error::{bail, Result};
use crate::kernels::{average, minmax, mode, stride};
use crate::shape::{check_shape, family, mip_shape, normalize_factor, Family};
use crate::threads;

/// The five downsampling methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Average pooling for grayscale images (`downsample_with_averaging`).
    Average,
    /// Mode pooling for segmentation labels (`downsample_segmentation`).
    Mode,
    /// Minimum over each window.
    Min,
    /// Maximum over each window.
    Max,
    /// The first voxel of each window.
    Stride,
}

impl Method {
    /// Whether the method has a sparse mode (zeros are background).
    pub fn supports_sparse(self) -> bool {
        matches!(self, Method::Average | Method::Mode)
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Average => "averaging",
            Method::Mode => "segmentation (mode pooling)",
            Method::Min => "min pooling",
            Method::Max => "max pooling",
            Method::Stride => "striding",
        }
    }
}

/// Checks everything about a call except the outputs; returns the padded factor.
pub fn validate_request(
    method: Method,
    shape: &[usize],
    elem_size: usize,
    factor: &[usize],
    sparse: bool,
) -> Result<Vec<usize>> {
    check_shape(shape, elem_size)?;
    let factor = normalize_factor(factor, shape.len())?;
    if sparse && !method.supports_sparse() {
        bail!(Unsupported, "sparse mode is not defined for {}", method.name());
    }
    Ok(factor)
}

/// Computes `outputs.len()` mips of `input` into caller-provided views (mip 1 first).
///
/// Each output must have the shape of its mip ([`mip_shape`]); any
/// layout works. Nothing is written unless the whole request is valid.
pub fn downsample_into<T: Element>(
    method: Method,
    input: ArrayViewD<'_, T>,
    factor: &[usize],
    sparse: bool,
    outputs: &mut [ArrayViewMutD<'_, T>],
) -> Result<()> {
    let factor = validate_request(method, input.shape(), std::mem::size_of::<T>(), factor, sparse)?;
    for (i, out) in outputs.iter().enumerate() {
        let expected = mip_shape(input.shape(), &factor, i + 1);
        if out.shape() != expected.as_slice() {
            bail!(
                BadOutput,
                "output {i} (mip {}) has shape {:?}; expected {expected:?}",
                i + 1,
                out.shape()
            );
        }
    }
    threads::install(|| {
        crate::populate::fresh_outputs(outputs);
        T::run_kernels(method, &input, &factor, sparse, outputs)
    })
}

/// The kernels of one call, which `downsample_into` has validated. Reached only through
/// `Element::run_kernels`, so it is instantiated in this crate alone.
pub(crate) fn run_kernels<T: Element>(
    method: Method,
    input: &ArrayViewD<'_, T>,
    factor: &[usize],
    sparse: bool,
    outputs: &mut [ArrayViewMutD<'_, T>],
) -> Result<()> {
    if family(factor) == Family::Identity {
        for out in outputs.iter_mut() {
            out.assign(input);
        }
        return Ok(());
    }
    match method {
        Method::Average => average::downsample(input, factor, sparse, outputs)?,
        Method::Mode => mode::downsample(input, factor, sparse, outputs),
        Method::Min => minmax::downsample(input, factor, minmax::Extremum::Min, outputs),
        Method::Max => minmax::downsample(input, factor, minmax::Extremum::Max, outputs),
        Method::Stride => stride::downsample(input, factor, outputs),
    }
    Ok(())
}

/// Computes `num_mips` mips of `input` into new Fortran-ordered arrays (mip 1 first).
pub fn downsample<T: Element>(
    method: Method,
    input: ArrayViewD<'_, T>,
    factor: &[usize],
    num_mips: usize,
    sparse: bool,
) -> Result<Vec<ArrayD<T>>> {
    let padded = validate_request(method, input.shape(), std::mem::size_of::<T>(), factor, sparse)?;
    let mut owned: Vec<ArrayD<T>> = (1..=num_mips)
        .map(|mip| ArrayD::default(IxDyn(&mip_shape(input.shape(), &padded, mip)).f()))
        .collect();
    let mut views: Vec<ArrayViewMutD<'_, T>> = owned.iter_mut().map(|a| a.view_mut()).collect();
    downsample_into(method, input, &padded, sparse, &mut views)?;
    drop(views);
    Ok(owned)
}

/// Average pooling (tinybrain's `downsample_with_averaging`).
pub fn downsample_with_averaging<T: Element>(
    input: ArrayViewD<'_, T>,
    factor: &[usize],
    num_mips: usize,
    sparse: bool,
) -> Result<Vec<ArrayD<T>>> {
    downsample(Method::Average, input, factor, num_mips, sparse)
}

/// Mode pooling of labels (tinybrain's `downsample_segmentation`).
pub fn downsample_segmentation<T: Element>(
    input: ArrayViewD<'_, T>,
    factor: &[usize],
    num_mips: usize,
    sparse: bool,
) -> Result<Vec<ArrayD<T>>> {
    downsample(Method::Mode, input, factor, num_mips, sparse)
}

/// Min pooling over clipped windows.
pub fn downsample_with_min_pooling<T: Element>(
    input: ArrayViewD<'_, T>,
    factor: &[usize],
    num_mips: usize,
) -> Result<Vec<ArrayD<T>>> {
    downsample(Method::Min, input, factor, num_mips, false)
}

/// Max pooling over clipped windows.
pub fn downsample_with_max_pooling<T: Element>(
    input: ArrayViewD<'_, T>,
    factor: &[usize],
    num_mips: usize,
) -> Result<Vec<ArrayD<T>>> {
    downsample(Method::Max, input, factor, num_mips, false)
}

/// Striding: the first voxel of every window.
pub fn downsample_with_striding<T: Element>(
    input: ArrayViewD<'_, T>,
    factor: &[usize],
    num_mips: usize,
) -> Result<Vec<ArrayD<T>>> {
    downsample(Method::Stride, input, factor, num_mips, false)
}
