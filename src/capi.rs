//! The C ABI. Every function here checks pointers and sizes, builds ndarray views, calls
//! the safe core and maps errors to status codes; no pixel logic lives here.
//!
//! All arguments are C99 fixed-width or size types so that ctypes, Julia's `@ccall` and
//! MATLAB's `loadlibrary` can call these symbols directly.
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use ndarray::{ArrayViewD, ArrayViewMutD, Axis, IxDyn, ShapeBuilder};

use crate::api::{downsample_into, validate_request, Method};
use crate::dispatch_dtype;
use crate::dtype::{DType, Element};
use crate::error::{bail, Error, ErrorKind, Result};
use crate::shape::{check_shape, chunk_alignment, mip_shape, normalize_factor, pyramid_len, MAX_NDIM};

/// Status codes returned by every fallible call (declared `int32_t` in signatures).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tb_status {
    /// Success.
    TB_OK = 0,
    /// A required pointer argument is NULL.
    TB_ERR_NULL_POINTER = 1,
    /// The dtype code is not one of `tb_dtype`.
    TB_ERR_DTYPE = 2,
    /// ndim is outside 1..TB_MAX_NDIM, an axis has size 0, or the size overflows.
    TB_ERR_SHAPE = 3,
    /// A factor is 0 (or a factor array is otherwise unusable).
    TB_ERR_FACTOR = 4,
    /// Strides reach outside the address space, overlap an output with itself, or a
    /// pointer is not aligned to its element size.
    TB_ERR_STRIDES = 5,
    /// An output buffer has the wrong shape.
    TB_ERR_OUTPUT = 6,
    /// An output overlaps the input or another output.
    TB_ERR_OVERLAP = 7,
    /// A valid but unsupported combination (e.g. sparse with min pooling, unknown flags).
    TB_ERR_UNSUPPORTED = 8,
    /// Memory for temporaries could not be allocated.
    TB_ERR_OUT_OF_MEMORY = 9,
    /// A bug: an internal panic was caught. Nothing useful was written.
    TB_ERR_INTERNAL = 10,
}

/// Element types, with fixed codes (declared `int32_t` in signatures).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tb_dtype {
    TB_UINT8 = 1,
    TB_UINT16 = 2,
    TB_UINT32 = 3,
    TB_UINT64 = 4,
    TB_INT8 = 5,
    TB_INT16 = 6,
    TB_INT32 = 7,
    TB_INT64 = 8,
    TB_FLOAT32 = 9,
    TB_FLOAT64 = 10,
}

/// Flag: sparse mode. Averaging leaves zeros out of the mean; mode pooling treats 0 as
/// background. Only averaging and segmentation accept it.
pub const TB_SPARSE: u32 = 1;

/// The largest ndim the library accepts.
pub const TB_MAX_NDIM: usize = 8;
const _: () = assert!(TB_MAX_NDIM == MAX_NDIM);

impl From<ErrorKind> for tb_status {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::NullPointer => tb_status::TB_ERR_NULL_POINTER,
            ErrorKind::BadDtype => tb_status::TB_ERR_DTYPE,
            ErrorKind::BadShape => tb_status::TB_ERR_SHAPE,
            ErrorKind::BadFactor => tb_status::TB_ERR_FACTOR,
            ErrorKind::BadStrides => tb_status::TB_ERR_STRIDES,
            ErrorKind::BadOutput => tb_status::TB_ERR_OUTPUT,
            ErrorKind::Overlap => tb_status::TB_ERR_OVERLAP,
            ErrorKind::Unsupported => tb_status::TB_ERR_UNSUPPORTED,
            ErrorKind::OutOfMemory => tb_status::TB_ERR_OUT_OF_MEMORY,
            ErrorKind::Internal => tb_status::TB_ERR_INTERNAL,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let clean: Vec<u8> = message.bytes().filter(|&b| b != 0).collect();
    let c = CString::new(clean).expect("NUL bytes were removed");
    LAST_ERROR.with(|slot| *slot.borrow_mut() = c);
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Runs the body of an exported function: errors become status codes with a message for
/// `tb_last_error_message`, and a panic never unwinds into the caller.
fn boundary(function: &str, body: impl FnOnce() -> Result<()>) -> i32 {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        Err(Error::new(
            ErrorKind::Internal,
            format!("internal error (panic): {}", panic_message(payload.as_ref())),
        ))
    });
    match outcome {
        Ok(()) => tb_status::TB_OK as i32,
        Err(e) => {
            set_last_error(&format!("{function}: {}", e.message()));
            tb_status::from(e.kind()) as i32
        }
    }
}

/// Makes a slice from a C array, refusing NULL (unless `len` is 0).
///
/// # Safety
/// Unless NULL, `ptr` must point to `len` readable values.
unsafe fn c_slice<'a, T>(ptr: *const T, len: usize, name: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        bail!(NullPointer, "{name} is NULL");
    }
    // SAFETY: non-null, and the caller promises `len` readable values.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

fn check_ndim(ndim: usize) -> Result<()> {
    if ndim == 0 || ndim > MAX_NDIM {
        bail!(BadShape, "ndim is {ndim}; it must be between 1 and {MAX_NDIM}");
    }
    Ok(())
}

fn dtype_from_code(code: i32) -> Result<DType> {
    DType::from_code(code).ok_or_else(|| {
        Error::new(
            ErrorKind::BadDtype,
            format!("dtype code {code} is not a tb_dtype (1 = TB_UINT8 .. 10 = TB_FLOAT64)"),
        )
    })
}

fn fortran_strides(shape: &[usize]) -> Vec<isize> {
    let mut step = 1isize;
    shape
        .iter()
        .map(|&s| {
            let here = step;
            step = step.saturating_mul(s as isize);
            here
        })
        .collect()
}

/// One array as the caller described it: base pointer, shape and strides in elements.
/// The base stays a pointer (not an address) so that the views keep its provenance: the
/// memory the caller handed over, which Miri then checks every access against.
struct RawArray {
    base: *mut u8,
    shape: Vec<usize>,
    strides: Vec<isize>,
    /// Lowest and one-past-highest byte address the array touches.
    span: (usize, usize),
}

impl RawArray {
    /// Checks that the strides keep every element inside the address space and that the
    /// base is aligned; `name` is used in messages.
    fn new(base: *mut u8, shape: &[usize], mut strides: Vec<isize>, elem: usize, name: &str) -> Result<Self> {
        // The stride of a size-1 axis is never used to move; normalise it so no
        // arithmetic (e.g. |isize::MIN|) is done with whatever the caller put there.
        for (stride, &size) in strides.iter_mut().zip(shape) {
            if size == 1 {
                *stride = 0;
            }
        }
        if base.addr() % elem != 0 {
            bail!(BadStrides, "{name} is not aligned to its {elem}-byte elements");
        }
        let (mut lo, mut hi) = (0i128, 0i128);
        for (&s, &st) in shape.iter().zip(&strides) {
            let reach = (s as i128 - 1) * st as i128;
            if reach < 0 {
                lo += reach;
            } else {
                hi += reach;
            }
        }
        let elem = elem as i128;
        let first = base.addr() as i128 + lo * elem;
        let end = base.addr() as i128 + (hi + 1) * elem;
        if first < 0 || end > usize::MAX as i128 || end - first > isize::MAX as i128 {
            bail!(BadStrides, "the strides of {name} reach outside the address space");
        }
        Ok(RawArray {
            base,
            shape: shape.to_vec(),
            strides,
            span: (first as usize, end as usize),
        })
    }

    /// An output may not write one element twice: sorted by stride, each axis must step
    /// past everything the smaller axes cover.
    fn check_no_self_overlap(&self, name: &str) -> Result<()> {
        let mut axes: Vec<(usize, usize)> = self
            .shape
            .iter()
            .zip(&self.strides)
            .filter(|(&s, _)| s > 1)
            .map(|(&s, &st)| (st.unsigned_abs(), s))
            .collect();
        axes.sort_unstable();
        let mut covered: u128 = 1;
        for (stride, size) in axes {
            if (stride as u128) < covered {
                bail!(BadStrides, "the strides of {name} make it overlap itself");
            }
            covered += stride as u128 * (size as u128 - 1);
        }
        Ok(())
    }

    /// The view, built from the lowest-address element so that ndarray only ever sees
    /// non-negative strides, then with the negative axes flipped back.
    ///
    /// # Safety
    /// The memory described must be valid for reads of `T` for the lifetime chosen.
    unsafe fn view<'a, T>(&self) -> ArrayViewD<'a, T> {
        let (low, strides) = self.low_pointer_and_strides::<T>();
        // SAFETY: `low` is the lowest element address of the array the caller described,
        // which RawArray::new checked stays inside the address space; strides are
        // non-negative by construction; validity of the memory is the caller's promise.
        let mut view =
            unsafe { ArrayViewD::from_shape_ptr(IxDyn(&self.shape).strides(IxDyn(&strides)), low.cast::<T>()) };
        for (axis, &st) in self.strides.iter().enumerate() {
            if st < 0 {
                view.invert_axis(Axis(axis));
            }
        }
        view
    }

    /// # Safety
    /// The memory described must be valid for writes of `T` and not aliased.
    unsafe fn view_mut<'a, T>(&self) -> ArrayViewMutD<'a, T> {
        let (low, strides) = self.low_pointer_and_strides::<T>();
        // SAFETY: as in `view`; exclusivity was checked by the overlap tests.
        let mut view =
            unsafe { ArrayViewMutD::from_shape_ptr(IxDyn(&self.shape).strides(IxDyn(&strides)), low.cast::<T>()) };
        for (axis, &st) in self.strides.iter().enumerate() {
            if st < 0 {
                view.invert_axis(Axis(axis));
            }
        }
        view
    }

    fn low_pointer_and_strides<T>(&self) -> (*mut u8, Vec<usize>) {
        let mut low_offset = 0isize;
        let mut strides = Vec::with_capacity(self.strides.len());
        for (&s, &st) in self.shape.iter().zip(&self.strides) {
            if st < 0 {
                low_offset += (s as isize - 1) * st * std::mem::size_of::<T>() as isize;
            }
            strides.push(st.unsigned_abs());
        }
        // Wrapping: a pointer below `base` is in bounds of the caller's memory (checked by
        // `new` against the address space only; the caller promises the rest).
        (self.base.wrapping_offset(low_offset), strides)
    }
}

fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Refuses outputs that overlap the input or each other (by address range).
fn check_disjoint(input: &RawArray, outputs: &[RawArray]) -> Result<()> {
    for (i, out) in outputs.iter().enumerate() {
        if overlaps(out.span, input.span) {
            bail!(Overlap, "output {i} (mip {}) overlaps the input", i + 1);
        }
    }
    let mut order: Vec<usize> = (0..outputs.len()).collect();
    order.sort_unstable_by_key(|&i| outputs[i].span);
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if overlaps(outputs[a].span, outputs[b].span) {
            let (a, b) = (a.min(b), a.max(b));
            bail!(Overlap, "outputs {a} and {b} (mips {} and {}) overlap", a + 1, b + 1);
        }
    }
    Ok(())
}

/// Where the outputs go: one pointer per mip, or one packed buffer.
enum OutputSpec {
    PerMip {
        outputs: *const *mut c_void,
        output_strides: *const *const isize,
    },
    Packed(*mut c_void),
}

/// Everything the core needs, validated.
struct Request {
    dtype: DType,
    factor: Vec<usize>,
    sparse: bool,
    input: RawArray,
    outputs: Vec<RawArray>,
}

/// The input-side arguments every downsampling entry point takes, as the caller gave them.
struct CallArgs {
    input: *const c_void,
    dtype: i32,
    ndim: usize,
    shape: *const usize,
    strides: *const isize,
    factor: *const usize,
    num_mips: usize,
    flags: u32,
}

unsafe fn validate(method: Method, args: CallArgs, outputs: OutputSpec) -> Result<Request> {
    let CallArgs {
        input,
        dtype,
        ndim,
        shape,
        strides,
        factor,
        num_mips,
        flags,
    } = args;
    let dtype = dtype_from_code(dtype)?;
    check_ndim(ndim)?;
    if input.is_null() {
        bail!(NullPointer, "input is NULL");
    }
    // SAFETY: the header documents that shape and factor hold ndim values.
    let shape = unsafe { c_slice(shape, ndim, "shape")? };
    let factor = unsafe { c_slice(factor, ndim, "factor")? };
    if flags & !TB_SPARSE != 0 {
        bail!(Unsupported, "unknown flag bits 0x{:x}", flags & !TB_SPARSE);
    }
    let sparse = flags & TB_SPARSE != 0;
    let elem = dtype.size_in_bytes();
    let factor = validate_request(method, shape, elem, factor, sparse)?;

    let input_strides = if strides.is_null() {
        fortran_strides(shape)
    } else {
        // SAFETY: non-null strides hold ndim values (header contract).
        unsafe { c_slice(strides, ndim, "strides")? }.to_vec()
    };
    // Read only (`view`), never written through, though kept as `*mut` like the outputs.
    let input = RawArray::new(input.cast::<u8>().cast_mut(), shape, input_strides, elem, "input")?;

    let mut arrays = Vec::new();
    match outputs {
        OutputSpec::PerMip {
            outputs,
            output_strides,
        } => {
            // SAFETY: the header documents num_mips entries in both arrays.
            let pointers = unsafe { c_slice(outputs, num_mips, "outputs")? };
            let stride_arrays = if output_strides.is_null() {
                None
            } else {
                Some(unsafe { c_slice(output_strides, num_mips, "output_strides")? })
            };
            for (i, &ptr) in pointers.iter().enumerate() {
                let name = format!("outputs[{i}]");
                if ptr.is_null() {
                    bail!(NullPointer, "{name} is NULL");
                }
                let mip = mip_shape(shape, &factor, i + 1);
                let strides = match stride_arrays.map(|s| s[i]) {
                    Some(p) if !p.is_null() => unsafe { c_slice(p, ndim, "output_strides[i]")? }.to_vec(),
                    _ => fortran_strides(&mip),
                };
                check_shape(&mip, elem)?;
                let array = RawArray::new(ptr.cast::<u8>(), &mip, strides, elem, &name)?;
                array.check_no_self_overlap(&name)?;
                arrays.push(array);
            }
        }
        OutputSpec::Packed(ptr) => {
            if num_mips > 0 && ptr.is_null() {
                bail!(NullPointer, "output is NULL");
            }
            let total = pyramid_len(shape, &factor, num_mips)?;
            if total.checked_mul(elem).is_none_or(|b| b > isize::MAX as usize) {
                bail!(
                    BadShape,
                    "the packed pyramid of {num_mips} mips is larger than the address space"
                );
            }
            let mut offset = 0usize;
            for i in 0..num_mips {
                let mip = mip_shape(shape, &factor, i + 1);
                let len: usize = mip.iter().product();
                let base = ptr.cast::<u8>().wrapping_add(offset * elem);
                arrays.push(RawArray::new(base, &mip, fortran_strides(&mip), elem, "output")?);
                offset += len;
            }
        }
    }
    check_disjoint(&input, &arrays)?;
    Ok(Request {
        dtype,
        factor,
        sparse,
        input,
        outputs: arrays,
    })
}

fn execute<T: Element>(method: Method, request: &Request) -> Result<()> {
    // SAFETY: `validate` checked pointers, alignment, address ranges, and that no output
    // overlaps the input, another output or itself; the caller promises the described
    // memory exists for the duration of the call.
    let input = unsafe { request.input.view::<T>() };
    let mut outputs: Vec<ArrayViewMutD<'_, T>> = request.outputs.iter().map(|o| unsafe { o.view_mut::<T>() }).collect();
    downsample_into(method, input, &request.factor, request.sparse, &mut outputs)
}

unsafe fn run(function: &str, method: Method, args: CallArgs, outputs: OutputSpec) -> i32 {
    boundary(function, || {
        // SAFETY: forwarded caller contract of the exported function.
        let request = unsafe { validate(method, args, outputs)? };
        dispatch_dtype!(request.dtype, T => execute::<T>(method, &request))
    })
}

/// Average pooling (tinybrain's downsample_with_averaging). Flags: TB_SPARSE leaves zeros
/// out of the mean.
///
/// `input` points to element (0, 0, ...) of an array of `ndim` axes (axis 0 first) with
/// sizes `shape` and `strides` in elements (any sign; NULL = Fortran-contiguous, axis 0
/// fastest). `factor` holds `ndim` factors >= 1. `outputs` holds `num_mips`
/// caller-allocated buffers, mip 1 first, of the input's dtype and the shapes
/// `tb_mip_shape` gives; `output_strides` is NULL (all Fortran-contiguous) or holds
/// `num_mips` entries, each NULL or `ndim` strides. No pointer is kept after the call.
///
/// Returns TB_OK, or an error status with nothing written (see `tb_status`);
/// `tb_last_error_message` then names the offending argument.
#[no_mangle]
pub unsafe extern "C" fn tb_downsample_with_averaging(
    input: *const c_void,
    dtype: i32,
    ndim: usize,
    shape: *const usize,
    strides: *const isize,
    factor: *const usize,
    num_mips: usize,
    flags: u32,
    outputs: *const *mut c_void,
    output_strides: *const *const isize,
) -> i32 {
    let spec = OutputSpec::PerMip {
        outputs,
        output_strides,
    };
    let args = CallArgs {
        input,
        dtype,
        ndim,
        shape,
        strides,
        factor,
        num_mips,
        flags,
    };
    // SAFETY: the caller upholds the contract documented above.
    unsafe { run("tb_downsample_with_averaging", Method::Average, args, spec) }
}

/// Average pooling (tinybrain's downsample_with_averaging). Flags: TB_SPARSE leaves zeros
/// out of the mean.
///
/// Packed variant: all `num_mips` mips are written one after another (mip 1 first), each
/// Fortran-contiguous, into the single buffer `output` of `tb_pyramid_len` elements.
/// Other arguments and statuses as in `tb_downsample_with_averaging`.
#[no_mangle]
pub unsafe extern "C" fn tb_downsample_with_averaging_packed(
    input: *const c_void,
    dtype: i32,
    ndim: usize,
    shape: *const usize,
    strides: *const isize,
    factor: *const usize,
    num_mips: usize,
    flags: u32,
    output: *mut c_void,
) -> i32 {
    let args = CallArgs {
        input,
        dtype,
        ndim,
        shape,
        strides,
        factor,
        num_mips,
        flags,
    };
    // SAFETY: the caller upholds the contract documented above.
    unsafe {
        run(
            "tb_downsample_with_averaging_packed",
            Method::Average,
            args,
            OutputSpec::Packed(output),
        )
    }
}

/// Mode pooling of segmentation labels (tinybrain's downsample_segmentation). Flags:
/// TB_SPARSE makes label 0 background.
///
/// `input` points to element (0, 0, ...) of an array of `ndim` axes (axis 0 first) with
/// sizes `shape` and `strides` in elements (any sign; NULL = Fortran-contiguous, axis 0
/// fastest). `factor` holds `ndim` factors >= 1. `outputs` holds `num_mips`
/// caller-allocated buffers, mip 1 first, of the input's dtype and the shapes
/// `tb_mip_shape` gives; `output_strides` is NULL (all Fortran-contiguous) or holds
/// `num_mips` entries, each NULL or `ndim` strides. No pointer is kept after the call.
///
/// Returns TB_OK, or an error status with nothing written (see `tb_status`);
/// `tb_last_error_message` then names the offending argument.
#[no_mangle]
pub unsafe extern "C" fn tb_downsample_segmentation(
    input: *const c_void,
    dtype: i32,
    ndim: usize,
    shape: *const usize,
    strides: *const isize,
    factor: *const usize,
    num_mips: usize,
    flags: u32,
    outputs: *const *mut c_void,
    output_strides: *const *const isize,
) -> i32 {
    let spec = OutputSpec::PerMip {
        outputs,
        output_strides,
    };
    let args = CallArgs {
        input,
        dtype,
        ndim,
        shape,
        strides,
        factor,
        num_mips,
        flags,
    };
    // SAFETY: the caller upholds the contract documented above.
    unsafe { run("tb_downsample_segmentation", Method::Mode, args, spec) }
}

/// Mode pooling of segmentation labels (tinybrain's downsample_segmentation). Flags:
/// TB_SPARSE makes label 0 background.
///
/// Packed variant: all `num_mips` mips are written one after another (mip 1 first), each
/// Fortran-contiguous, into the single buffer `output` of `tb_pyramid_len` elements.
/// Other arguments and statuses as in `tb_downsample_segmentation`.
#[no_mangle]
pub unsafe extern "C" fn tb_downsample_segmentation_packed(
    input: *const c_void,
    dtype: i32,
    ndim: usize,
    shape: *const usize,
    strides: *const isize,
    factor: *const usize,
    num_mips: usize,
    flags: u32,
    output: *mut c_void,
) -> i32 {
    let args = CallArgs {
        input,
        dtype,
        ndim,
        shape,
        strides,
        factor,
        num_mips,
        flags,
    };
    // SAFETY: the caller upholds the contract documented above.
    unsafe {
        run(
            "tb_downsample_segmentation_packed",
            Method::Mode,
            args,
            OutputSpec::Packed(output),
        )
    }
}

/// Min pooling over clipped windows; NaN propagates. Flags must be 0.
///
/// `input` points to element (0, 0, ...) of an array of `ndim` axes (axis 0 first) with
/// sizes `shape` and `strides` in elements (any sign; NULL = Fortran-contiguous, axis 0
/// fastest). `factor` holds `ndim` factors >= 1. `outputs` holds `num_mips`
/// caller-allocated buffers, mip 1 first, of the input's dtype and the shapes
/// `tb_mip_shape` gives; `output_strides` is NULL (all Fortran-contiguous) or holds
/// `num_mips` entries, each NULL or `ndim` strides. No pointer is kept after the call.
///
/// Returns TB_OK, or an error status with nothing written (see `tb_status`);
/// `tb_last_error_message` then names the offending argument.
#[no_mangle]
pub unsafe extern "C" fn tb_downsample_with_min_pooling(
    input: *const c_void,
    dtype: i32,
    ndim: usize,
    shape: *const usize,
    strides: *const isize,
    factor: *const usize,
    num_mips: usize,
    flags: u32,
    outputs: *const *mut c_void,
    output_strides: *const *const isize,
) -> i32 {
    let spec = OutputSpec::PerMip {
        outputs,
        output_strides,
    };
    let args = CallArgs {
        input,
        dtype,
        ndim,
        shape,
        strides,
        factor,
        num_mips,
        flags,
    };
    // SAFETY: the caller upholds the contract documented above.
    unsafe { run("tb_downsample_with_min_pooling", Method::Min, args, spec) }
}

/// Min pooling over clipped windows; NaN propagates. Flags must be 0.
///
/// Packed variant: all `num_mips` mips are written one after another (mip 1 first), each
/// Fortran-contiguous, into the single buffer `output` of `tb_pyramid_len` elements.
/// Other arguments and statuses as in `tb_downsample_with_min_pooling`.
#[no_mangle]
pub unsafe extern "C" fn tb_downsample_with_min_pooling_packed(
    input: *const c_void,
    dtype: i32,
    ndim: usize,
    shape: *const usize,
    strides: *const isize,
    factor: *const usize,
    num_mips: usize,
    flags: u32,
    output: *mut c_void,
) -> i32 {
    let args = CallArgs {
        input,
        dtype,
        ndim,
        shape,
        strides,
        factor,
        num_mips,
        flags,
    };
    // SAFETY: the caller upholds the contract documented above.
    unsafe {
        run(
            "tb_downsample_with_min_pooling_packed",
            Method::Min,
            args,
            OutputSpec::Packed(output),
        )
    }
}

/// Max pooling over clipped windows; NaN propagates. Flags must be 0.
///
/// `input` points to element (0, 0, ...) of an array of `ndim` axes (axis 0 first) with
/// sizes `shape` and `strides` in elements (any sign; NULL = Fortran-contiguous, axis 0
/// fastest). `factor` holds `ndim` factors >= 1. `outputs` holds `num_mips`
/// caller-allocated buffers, mip 1 first, of the input's dtype and the shapes
/// `tb_mip_shape` gives; `output_strides` is NULL (all Fortran-contiguous) or holds
/// `num_mips` entries, each NULL or `ndim` strides. No pointer is kept after the call.
///
/// Returns TB_OK, or an error status with nothing written (see `tb_status`);
/// `tb_last_error_message` then names the offending argument.
#[no_mangle]
pub unsafe extern "C" fn tb_downsample_with_max_pooling(
    input: *const c_void,
    dtype: i32,
    ndim: usize,
    shape: *const usize,
    strides: *const isize,
    factor: *const usize,
    num_mips: usize,
    flags: u32,
    outputs: *const *mut c_void,
    output_strides: *const *const isize,
) -> i32 {
    let spec = OutputSpec::PerMip {
        outputs,
        output_strides,
    };
    let args = CallArgs {
        input,
        dtype,
        ndim,
        shape,
        strides,
        factor,
        num_mips,
        flags,
    };
    // SAFETY: the caller upholds the contract documented above.
    unsafe { run("tb_downsample_with_max_pooling", Method::Max, args, spec) }
}

/// Max pooling over clipped windows; NaN propagates. Flags must be 0.
///
/// Packed variant: all `num_mips` mips are written one after another (mip 1 first), each
/// Fortran-contiguous, into the single buffer `output` of `tb_pyramid_len` elements.
/// Other arguments and statuses as in `tb_downsample_with_max_pooling`.
#[no_mangle]
pub unsafe extern "C" fn tb_downsample_with_max_pooling_packed(
    input: *const c_void,
    dtype: i32,
    ndim: usize,
    shape: *const usize,
    strides: *const isize,
    factor: *const usize,
    num_mips: usize,
    flags: u32,
    output: *mut c_void,
) -> i32 {
    let args = CallArgs {
        input,
        dtype,
        ndim,
        shape,
        strides,
        factor,
        num_mips,
        flags,
    };
    // SAFETY: the caller upholds the contract documented above.
    unsafe {
        run(
            "tb_downsample_with_max_pooling_packed",
            Method::Max,
            args,
            OutputSpec::Packed(output),
        )
    }
}

/// Striding: each mip keeps the first voxel of every window. Flags must be 0.
///
/// `input` points to element (0, 0, ...) of an array of `ndim` axes (axis 0 first) with
/// sizes `shape` and `strides` in elements (any sign; NULL = Fortran-contiguous, axis 0
/// fastest). `factor` holds `ndim` factors >= 1. `outputs` holds `num_mips`
/// caller-allocated buffers, mip 1 first, of the input's dtype and the shapes
/// `tb_mip_shape` gives; `output_strides` is NULL (all Fortran-contiguous) or holds
/// `num_mips` entries, each NULL or `ndim` strides. No pointer is kept after the call.
///
/// Returns TB_OK, or an error status with nothing written (see `tb_status`);
/// `tb_last_error_message` then names the offending argument.
#[no_mangle]
pub unsafe extern "C" fn tb_downsample_with_striding(
    input: *const c_void,
    dtype: i32,
    ndim: usize,
    shape: *const usize,
    strides: *const isize,
    factor: *const usize,
    num_mips: usize,
    flags: u32,
    outputs: *const *mut c_void,
    output_strides: *const *const isize,
) -> i32 {
    let spec = OutputSpec::PerMip {
        outputs,
        output_strides,
    };
    let args = CallArgs {
        input,
        dtype,
        ndim,
        shape,
        strides,
        factor,
        num_mips,
        flags,
    };
    // SAFETY: the caller upholds the contract documented above.
    unsafe { run("tb_downsample_with_striding", Method::Stride, args, spec) }
}

/// Striding: each mip keeps the first voxel of every window. Flags must be 0.
///
/// Packed variant: all `num_mips` mips are written one after another (mip 1 first), each
/// Fortran-contiguous, into the single buffer `output` of `tb_pyramid_len` elements.
/// Other arguments and statuses as in `tb_downsample_with_striding`.
#[no_mangle]
pub unsafe extern "C" fn tb_downsample_with_striding_packed(
    input: *const c_void,
    dtype: i32,
    ndim: usize,
    shape: *const usize,
    strides: *const isize,
    factor: *const usize,
    num_mips: usize,
    flags: u32,
    output: *mut c_void,
) -> i32 {
    let args = CallArgs {
        input,
        dtype,
        ndim,
        shape,
        strides,
        factor,
        num_mips,
        flags,
    };
    // SAFETY: the caller upholds the contract documented above.
    unsafe {
        run(
            "tb_downsample_with_striding_packed",
            Method::Stride,
            args,
            OutputSpec::Packed(output),
        )
    }
}

/// Reads and checks the shape and factor arguments shared by the shape helpers.
unsafe fn shape_and_factor(ndim: usize, shape: *const usize, factor: *const usize) -> Result<(Vec<usize>, Vec<usize>)> {
    check_ndim(ndim)?;
    // SAFETY: the header documents ndim values behind each pointer.
    let shape = unsafe { c_slice(shape, ndim, "shape")? };
    let factor = unsafe { c_slice(factor, ndim, "factor")? };
    check_shape(shape, 1)?;
    Ok((shape.to_vec(), normalize_factor(factor, ndim)?))
}

fn write_out<T>(out: *mut T, value: T, name: &str) -> Result<()> {
    if out.is_null() {
        bail!(NullPointer, "{name} is NULL");
    }
    // SAFETY: non-null, and the caller provides room for one value.
    unsafe { out.write(value) };
    Ok(())
}

/// Writes the shape of mip `mip` (0 = the input) into `out_shape` (ndim values):
/// ceil(shape / factor^mip) per axis. Returns TB_OK or TB_ERR_NULL_POINTER,
/// TB_ERR_SHAPE, TB_ERR_FACTOR.
#[no_mangle]
pub unsafe extern "C" fn tb_mip_shape(
    ndim: usize,
    shape: *const usize,
    factor: *const usize,
    mip: usize,
    out_shape: *mut usize,
) -> i32 {
    boundary("tb_mip_shape", || {
        // SAFETY: forwarded caller contract.
        let (shape, factor) = unsafe { shape_and_factor(ndim, shape, factor)? };
        if out_shape.is_null() {
            bail!(NullPointer, "out_shape is NULL");
        }
        let result = mip_shape(&shape, &factor, mip);
        // SAFETY: non-null; the caller provides room for ndim values.
        unsafe { std::ptr::copy_nonoverlapping(result.as_ptr(), out_shape, ndim) };
        Ok(())
    })
}

/// Writes the number of elements of mip `mip` (0 = the input) into `*out_len`.
#[no_mangle]
pub unsafe extern "C" fn tb_mip_len(
    ndim: usize,
    shape: *const usize,
    factor: *const usize,
    mip: usize,
    out_len: *mut usize,
) -> i32 {
    boundary("tb_mip_len", || {
        // SAFETY: forwarded caller contract.
        let (shape, factor) = unsafe { shape_and_factor(ndim, shape, factor)? };
        write_out(out_len, mip_shape(&shape, &factor, mip).iter().product(), "out_len")
    })
}

/// Writes the number of elements of mips 1..num_mips together (the size of a `_packed`
/// output buffer, in elements) into `*out_len`. TB_ERR_SHAPE if it overflows size_t.
#[no_mangle]
pub unsafe extern "C" fn tb_pyramid_len(
    ndim: usize,
    shape: *const usize,
    factor: *const usize,
    num_mips: usize,
    out_len: *mut usize,
) -> i32 {
    boundary("tb_pyramid_len", || {
        // SAFETY: forwarded caller contract.
        let (shape, factor) = unsafe { shape_and_factor(ndim, shape, factor)? };
        write_out(out_len, pyramid_len(&shape, &factor, num_mips)?, "out_len")
    })
}

/// Writes into `out_alignment` (ndim values) the chunk alignment for `num_mips` mips:
/// factor^num_mips per axis. A chunk that starts at a multiple of it on every axis and
/// whose size is a multiple of it (or that ends at the volume's edge) gives exactly the
/// mips of the same region of the whole volume, for every method, so chunks can be
/// downsampled independently. TB_ERR_SHAPE if a power overflows size_t.
#[no_mangle]
pub unsafe extern "C" fn tb_chunk_alignment(
    ndim: usize,
    factor: *const usize,
    num_mips: usize,
    out_alignment: *mut usize,
) -> i32 {
    boundary("tb_chunk_alignment", || {
        check_ndim(ndim)?;
        // SAFETY: the header documents ndim values behind factor.
        let factor = normalize_factor(unsafe { c_slice(factor, ndim, "factor")? }, ndim)?;
        let alignment = chunk_alignment(&factor, num_mips)?;
        if out_alignment.is_null() {
            bail!(NullPointer, "out_alignment is NULL");
        }
        // SAFETY: non-null; the caller provides room for ndim values.
        unsafe { std::ptr::copy_nonoverlapping(alignment.as_ptr(), out_alignment, ndim) };
        Ok(())
    })
}

/// The message of the last failed call on this thread ("" if none). The string is
/// owned by the library and valid until the next failed call on this thread.
#[no_mangle]
pub extern "C" fn tb_last_error_message() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

/// A static name for a status code ("TB_OK", "TB_ERR_SHAPE", ...; "TB_UNKNOWN_STATUS").
#[no_mangle]
pub extern "C" fn tb_status_name(status: i32) -> *const c_char {
    let name: &'static CStr = match status {
        0 => c"TB_OK",
        1 => c"TB_ERR_NULL_POINTER",
        2 => c"TB_ERR_DTYPE",
        3 => c"TB_ERR_SHAPE",
        4 => c"TB_ERR_FACTOR",
        5 => c"TB_ERR_STRIDES",
        6 => c"TB_ERR_OUTPUT",
        7 => c"TB_ERR_OVERLAP",
        8 => c"TB_ERR_UNSUPPORTED",
        9 => c"TB_ERR_OUT_OF_MEMORY",
        10 => c"TB_ERR_INTERNAL",
        _ => c"TB_UNKNOWN_STATUS",
    };
    name.as_ptr()
}

/// The library version, "MAJOR.MINOR.PATCH" (static string).
#[no_mangle]
pub extern "C" fn tb_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Size in bytes of one element of `dtype`, or 0 for an unknown code.
#[no_mangle]
pub extern "C" fn tb_dtype_size(dtype: i32) -> usize {
    DType::from_code(dtype).map_or(0, |d| d.size_in_bytes())
}

/// Sets the number of threads later calls run on: the calling thread and n - 1 workers
/// (0 = the default: the TINYBRAIN_NUM_THREADS environment variable, else one per
/// core). Results never depend on it. Returns TB_OK or TB_ERR_INTERNAL if the threads
/// cannot be started.
#[no_mangle]
pub extern "C" fn tb_set_num_threads(threads: usize) -> i32 {
    boundary("tb_set_num_threads", || crate::threads::set_num_threads(threads))
}

/// The number of threads later calls will run on (the calling thread included).
#[no_mangle]
pub extern "C" fn tb_get_num_threads() -> usize {
    catch_unwind(crate::threads::num_threads).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_message() -> String {
        // SAFETY: tb_last_error_message returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(tb_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_inside_the_boundary_becomes_an_internal_error() {
        let status = boundary("test_function", || panic!("boom {}", 42));
        assert_eq!(status, tb_status::TB_ERR_INTERNAL as i32);
        let message = last_message();
        assert!(
            message.contains("test_function") && message.contains("boom 42"),
            "{message}"
        );
    }

    #[test]
    fn self_overlapping_output_strides_are_refused() {
        let ok = RawArray::new(std::ptr::without_provenance_mut(64), &[4, 3], vec![1, 4], 1, "o").unwrap();
        assert!(ok.check_no_self_overlap("o").is_ok());
        let interleaved = RawArray::new(std::ptr::without_provenance_mut(64), &[2, 3], vec![3, 1], 1, "o").unwrap();
        assert!(interleaved.check_no_self_overlap("o").is_ok());
        let overlapping = RawArray::new(std::ptr::without_provenance_mut(64), &[4, 3], vec![1, 2], 1, "o").unwrap();
        assert!(overlapping.check_no_self_overlap("o").is_err());
        let zero = RawArray::new(std::ptr::without_provenance_mut(64), &[4, 3], vec![0, 4], 1, "o").unwrap();
        assert!(zero.check_no_self_overlap("o").is_err());
    }

    #[test]
    fn status_names_cover_every_code() {
        for code in 0..=10 {
            // SAFETY: static NUL-terminated strings.
            let name = unsafe { CStr::from_ptr(tb_status_name(code)) }.to_str().unwrap();
            assert!(name.starts_with("TB_") && name != "TB_UNKNOWN_STATUS");
        }
    }
}
