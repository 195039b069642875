//! Shared by the hostile-input, fuzz, concurrency and scale tests: the table of C entry
//! points, a byte arena that calls point into, a description of one C call, and the
//! reference computation through the safe Rust API.
//!
//! Every test file uses a different part of this module.
#![allow(dead_code)]

use std::ffi::{c_void, CStr};

use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use tinybrain::capi;
use tinybrain::Method;

pub use tinybrain::capi::tb_status;

pub const OK: i32 = tb_status::TB_OK as i32;
pub const E_NULL: i32 = tb_status::TB_ERR_NULL_POINTER as i32;
pub const E_DTYPE: i32 = tb_status::TB_ERR_DTYPE as i32;
pub const E_SHAPE: i32 = tb_status::TB_ERR_SHAPE as i32;
pub const E_FACTOR: i32 = tb_status::TB_ERR_FACTOR as i32;
pub const E_STRIDES: i32 = tb_status::TB_ERR_STRIDES as i32;
pub const E_OUTPUT: i32 = tb_status::TB_ERR_OUTPUT as i32;
pub const E_OVERLAP: i32 = tb_status::TB_ERR_OVERLAP as i32;
pub const E_UNSUPPORTED: i32 = tb_status::TB_ERR_UNSUPPORTED as i32;
pub const E_OOM: i32 = tb_status::TB_ERR_OUT_OF_MEMORY as i32;
pub const E_INTERNAL: i32 = tb_status::TB_ERR_INTERNAL as i32;

pub const SPARSE: u32 = capi::TB_SPARSE;

pub type PerMipFn = unsafe extern "C" fn(
    *const c_void,
    i32,
    usize,
    *const usize,
    *const isize,
    *const usize,
    usize,
    u32,
    *const *mut c_void,
    *const *const isize,
) -> i32;

pub type PackedFn = unsafe extern "C" fn(
    *const c_void,
    i32,
    usize,
    *const usize,
    *const isize,
    *const usize,
    usize,
    u32,
    *mut c_void,
) -> i32;

/// One of the five operations, with both of its C entry points.
pub struct Op {
    pub name: &'static str,
    pub packed_name: &'static str,
    pub method: Method,
    pub per_mip: PerMipFn,
    pub packed: PackedFn,
    pub sparse_ok: bool,
}

impl Op {
    pub fn function_name(&self, packed: bool) -> &'static str {
        if packed {
            self.packed_name
        } else {
            self.name
        }
    }
}

pub static OPS: [Op; 5] = [
    Op {
        name: "tb_downsample_with_averaging",
        packed_name: "tb_downsample_with_averaging_packed",
        method: Method::Average,
        per_mip: capi::tb_downsample_with_averaging,
        packed: capi::tb_downsample_with_averaging_packed,
        sparse_ok: true,
    },
    Op {
        name: "tb_downsample_segmentation",
        packed_name: "tb_downsample_segmentation_packed",
        method: Method::Mode,
        per_mip: capi::tb_downsample_segmentation,
        packed: capi::tb_downsample_segmentation_packed,
        sparse_ok: true,
    },
    Op {
        name: "tb_downsample_with_min_pooling",
        packed_name: "tb_downsample_with_min_pooling_packed",
        method: Method::Min,
        per_mip: capi::tb_downsample_with_min_pooling,
        packed: capi::tb_downsample_with_min_pooling_packed,
        sparse_ok: false,
    },
    Op {
        name: "tb_downsample_with_max_pooling",
        packed_name: "tb_downsample_with_max_pooling_packed",
        method: Method::Max,
        per_mip: capi::tb_downsample_with_max_pooling,
        packed: capi::tb_downsample_with_max_pooling_packed,
        sparse_ok: false,
    },
    Op {
        name: "tb_downsample_with_striding",
        packed_name: "tb_downsample_with_striding_packed",
        method: Method::Stride,
        per_mip: capi::tb_downsample_with_striding,
        packed: capi::tb_downsample_with_striding_packed,
        sparse_ok: false,
    },
];

/// The message of the last failed call on this thread.
pub fn last_error() -> String {
    // SAFETY: tb_last_error_message returns a NUL-terminated string owned by the library,
    // valid until the next call on this thread; it is copied at once.
    unsafe { CStr::from_ptr(capi::tb_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

pub fn status_name(status: i32) -> String {
    // SAFETY: static NUL-terminated strings.
    unsafe { CStr::from_ptr(capi::tb_status_name(status)) }
        .to_string_lossy()
        .into_owned()
}

/// Element size of a dtype code, 0 if unknown.
pub fn elem_size(dtype: i32) -> usize {
    capi::tb_dtype_size(dtype)
}

/// splitmix64: small, fast, and the same sequence everywhere.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn range(&mut self, lo: usize, hi_inclusive: usize) -> usize {
        lo + self.below((hi_inclusive - lo + 1) as u64) as usize
    }
    /// True with probability num/den.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Fortran (axis 0 fastest) strides in elements.
pub fn fortran_strides(shape: &[usize]) -> Vec<isize> {
    let mut step = 1isize;
    shape
        .iter()
        .map(|&s| {
            let here = step;
            step = step.wrapping_mul(s as isize);
            here
        })
        .collect()
}

/// Lowest and highest element offset (in elements, relative to element 0) an array
/// touches, in i128 so that hostile strides cannot overflow here.
pub fn element_span(shape: &[usize], strides: &[isize]) -> (i128, i128) {
    let (mut lo, mut hi) = (0i128, 0i128);
    for (&s, &st) in shape.iter().zip(strides) {
        let reach = (s as i128 - 1) * st as i128;
        if reach < 0 {
            lo += reach;
        } else {
            hi += reach;
        }
    }
    (lo, hi)
}

/// Visits every multi-index of `shape` in Fortran order (axis 0 fastest).
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut index = vec![0usize; shape.len()];
    loop {
        f(&index);
        let mut axis = 0;
        loop {
            if axis == shape.len() {
                return;
            }
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
            axis += 1;
        }
    }
}

pub fn offset_of(index: &[usize], strides: &[isize]) -> isize {
    index.iter().zip(strides).map(|(&i, &s)| i as isize * s).sum()
}

/// The shape of mip `mip`, computed here independently of the library: ceil(s / f) per
/// step, stopping at 1.
pub fn model_mip_shape(shape: &[usize], factor: &[usize], mip: usize) -> Vec<usize> {
    shape
        .iter()
        .zip(factor)
        .map(|(&s, &f)| {
            let mut s = s;
            for _ in 0..mip {
                if s == 1 || f == 1 {
                    break;
                }
                s = s.div_ceil(f);
            }
            s
        })
        .collect()
}

/// A block of 8-byte-aligned memory that calls point into; tests compare it byte for byte
/// before and after a call.
pub struct Arena {
    words: Vec<u64>,
}

impl Arena {
    /// `bytes` usable bytes plus a 4 KiB guard band (also compared by the checks), so an
    /// overrun shows up as a changed byte rather than as heap corruption.
    pub fn new(bytes: usize, fill: u8) -> Self {
        let mut arena = Arena {
            words: vec![0; (bytes + 4096).div_ceil(8)],
        };
        arena.bytes_mut().fill(fill);
        arena
    }

    /// An arena holding a copy of `bytes` (a snapshot taken with `bytes()`).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Arena {
            words: bytes
                .chunks(8)
                .map(|c| {
                    let mut w = [0u8; 8];
                    w[..c.len()].copy_from_slice(c);
                    u64::from_ne_bytes(w)
                })
                .collect(),
        }
    }

    /// Grows the arena to at least `bytes` usable bytes, new bytes set to `fill`.
    pub fn grow(&mut self, bytes: usize, fill: u8) {
        let words = (bytes + 4096).div_ceil(8);
        if words > self.words.len() {
            let fill_word = u64::from_ne_bytes([fill; 8]);
            self.words.resize(words, fill_word);
        }
    }
    pub fn len(&self) -> usize {
        self.words.len() * 8
    }
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: u64 storage viewed as bytes; u8 has no alignment or validity requirement.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len()) }
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        // SAFETY: as above, with exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), len) }
    }
    pub fn base(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast::<u8>()
    }
    pub fn address(&self) -> usize {
        self.words.as_ptr().addr()
    }
}

/// Where a pointer argument points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ptr {
    Null,
    /// A byte offset into the arena (may be negative or past the end only for calls the
    /// library must refuse before reading).
    Arena(isize),
    /// A raw address (wild pointers, for calls that must be refused).
    Raw(usize),
}

impl Ptr {
    pub fn resolve(self, base: *mut u8) -> *mut c_void {
        match self {
            Ptr::Null => std::ptr::null_mut(),
            Ptr::Arena(offset) => base.wrapping_offset(offset).cast(),
            // No provenance: the library must refuse the call without reading it, and
            // under Miri a read through it would be reported.
            Ptr::Raw(address) => std::ptr::without_provenance_mut(address),
        }
    }
    pub fn address(self, arena_address: usize) -> Option<usize> {
        match self {
            Ptr::Null => None,
            Ptr::Arena(offset) => Some(arena_address.wrapping_add_signed(offset)),
            Ptr::Raw(address) => Some(address),
        }
    }
}

/// Every argument of one downsampling call, as the caller gives it. `None` for an array
/// argument means a NULL pointer.
#[derive(Clone, Debug)]
pub struct Call {
    pub op: usize,
    pub packed: bool,
    pub dtype: i32,
    pub ndim: usize,
    pub shape: Option<Vec<usize>>,
    pub strides: Option<Vec<isize>>,
    pub factor: Option<Vec<usize>>,
    pub num_mips: usize,
    pub flags: u32,
    pub input: Ptr,
    pub outputs: Option<Vec<Ptr>>,
    pub output_strides: Option<Vec<Option<Vec<isize>>>>,
    pub packed_output: Ptr,
}

impl Call {
    pub fn op(&self) -> &'static Op {
        &OPS[self.op]
    }

    pub fn function_name(&self) -> &'static str {
        self.op().function_name(self.packed)
    }

    /// Makes the call with pointers into `arena`.
    ///
    /// # Safety
    /// Every pointer the library may dereference for this call must lie inside the arena
    /// (the tests only make calls whose validity they know).
    pub unsafe fn run(&self, arena: &mut Arena) -> i32 {
        let base = arena.base();
        let shape = self.shape.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        let strides = self.strides.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        let factor = self.factor.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        let input = self.input.resolve(base).cast_const();
        let op = self.op();
        if self.packed {
            // SAFETY: forwarded contract.
            unsafe {
                (op.packed)(
                    input,
                    self.dtype,
                    self.ndim,
                    shape,
                    strides,
                    factor,
                    self.num_mips,
                    self.flags,
                    self.packed_output.resolve(base),
                )
            }
        } else {
            let outputs: Option<Vec<*mut c_void>> = self
                .outputs
                .as_ref()
                .map(|v| v.iter().map(|p| p.resolve(base)).collect());
            let output_strides: Option<Vec<*const isize>> = self.output_strides.as_ref().map(|v| {
                v.iter()
                    .map(|s| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()))
                    .collect()
            });
            // SAFETY: forwarded contract.
            unsafe {
                (op.per_mip)(
                    input,
                    self.dtype,
                    self.ndim,
                    shape,
                    strides,
                    factor,
                    self.num_mips,
                    self.flags,
                    outputs.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
                    output_strides.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
                )
            }
        }
    }

    /// The input strides as the library reads them (NULL = Fortran).
    pub fn input_strides(&self) -> Vec<isize> {
        match &self.strides {
            Some(s) => s.clone(),
            None => fortran_strides(self.shape.as_ref().expect("shape")),
        }
    }

    /// Output arrays of a valid call: (byte offset of element 0 in the arena, shape, strides).
    pub fn output_arrays(&self, arena_address: usize) -> Vec<(usize, Vec<usize>, Vec<isize>)> {
        let shape = self.shape.as_ref().expect("shape");
        let factor = self.factor.as_ref().expect("factor");
        let elem = elem_size(self.dtype);
        let mut arrays = Vec::new();
        let mut packed_offset = 0usize;
        for mip in 1..=self.num_mips {
            let mip_shape = model_mip_shape(shape, factor, mip);
            let (address, strides) = if self.packed {
                let base = self.packed_output.address(arena_address).expect("packed output");
                let a = base + packed_offset * elem;
                packed_offset += mip_shape.iter().product::<usize>();
                (a, fortran_strides(&mip_shape))
            } else {
                let a = self.outputs.as_ref().expect("outputs")[mip - 1]
                    .address(arena_address)
                    .expect("output");
                let strides = self
                    .output_strides
                    .as_ref()
                    .and_then(|v| v[mip - 1].clone())
                    .unwrap_or_else(|| fortran_strides(&mip_shape));
                (a, strides)
            };
            arrays.push((address - arena_address, mip_shape, strides));
        }
        arrays
    }
}

/// Reads the input of a call from the arena into Fortran-ordered bytes.
pub fn gather(arena: &Arena, base_offset: usize, shape: &[usize], strides: &[isize], elem: usize) -> Vec<u8> {
    let bytes = arena.bytes();
    let mut out = Vec::with_capacity(shape.iter().product::<usize>() * elem);
    for_each_index(shape, |index| {
        let at = (base_offset as isize + offset_of(index, strides) * elem as isize) as usize;
        out.extend_from_slice(&bytes[at..at + elem]);
    });
    out
}

/// Signature of a reference computation: (method, dtype, shape, Fortran-ordered input
/// bytes, factor, num_mips, sparse) -> each mip as Fortran-ordered bytes.
pub type ReferenceFn = fn(Method, i32, &[usize], &[u8], &[usize], usize, bool) -> tinybrain::Result<Vec<Vec<u8>>>;

/// The mips the safe Rust API computes for Fortran-ordered input bytes of element type
/// T (an ndarray built from the bytes), each as Fortran-ordered bytes.
pub fn reference_typed<T: tinybrain::Element>(
    method: Method,
    shape: &[usize],
    bytes: &[u8],
    factor: &[usize],
    num_mips: usize,
    sparse: bool,
) -> tinybrain::Result<Vec<Vec<u8>>> {
    let elem = std::mem::size_of::<T>();
    let values: Vec<T> = bytes
        .chunks_exact(elem)
        // SAFETY: each chunk holds exactly one T's bytes, and every bit pattern is a
        // valid value of the integer and float types T can be.
        .map(|c| unsafe { c.as_ptr().cast::<T>().read_unaligned() })
        .collect();
    let input = ArrayD::from_shape_vec(IxDyn(shape).f(), values).expect("shape matches");
    let mips = tinybrain::downsample(method, input.view(), factor, num_mips, sparse)?;
    Ok(mips
        .iter()
        .map(|m| {
            let mut out = Vec::with_capacity(m.len() * elem);
            // Fortran order: iterate the transposed view in logical (C) order.
            for v in m.t().iter() {
                // SAFETY: reading the bytes of a plain-old-data value.
                out.extend_from_slice(unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), elem) });
            }
            out
        })
        .collect())
}

/// [`reference_typed`] for every dtype. Each instantiation compiles the whole library's
/// kernels for one type into the test binary, so test files that need only a few
/// dtypes dispatch to `reference_typed` themselves.
pub fn reference(
    method: Method,
    dtype: i32,
    shape: &[usize],
    bytes: &[u8],
    factor: &[usize],
    num_mips: usize,
    sparse: bool,
) -> tinybrain::Result<Vec<Vec<u8>>> {
    let f = match dtype {
        1 => reference_typed::<u8>,
        2 => reference_typed::<u16>,
        3 => reference_typed::<u32>,
        4 => reference_typed::<u64>,
        5 => reference_typed::<i8>,
        6 => reference_typed::<i16>,
        7 => reference_typed::<i32>,
        8 => reference_typed::<i64>,
        9 => reference_typed::<f32>,
        10 => reference_typed::<f64>,
        other => panic!("reference: dtype {other} is not valid"),
    };
    f(method, shape, bytes, factor, num_mips, sparse)
}

/// After a successful call: every output element holds the reference value, and every
/// other byte of the arena is as it was. Returns a description of the first difference,
/// or whether a NaN had to be matched to a NaN with other bits.
pub fn check_success(call: &Call, before: &[u8], arena: &Arena, reference: ReferenceFn) -> Result<bool, String> {
    let elem = elem_size(call.dtype);
    let shape = call.shape.as_ref().expect("shape");
    let factor = call.factor.as_ref().expect("factor");
    let input_offset = call.input.address(arena.address()).expect("input") - arena.address();
    // The input as it was before the call (from the snapshot).
    let snapshot = Arena::from_bytes(before);
    let input_bytes = gather(&snapshot, input_offset, shape, &call.input_strides(), elem);
    let want = reference(
        call.op().method,
        call.dtype,
        shape,
        &input_bytes,
        factor,
        call.num_mips,
        call.flags & SPARSE != 0,
    )
    .map_err(|e| format!("the safe API refused a call the C ABI accepted: {e}"))?;
    // Averages are arithmetic: a NaN result may carry any payload or sign (LLVM does not
    // keep NaN payloads through `+`, and different code paths may order operands
    // differently), so for float averaging any NaN matches any NaN. Everywhere else
    // (mode, min, max, striding copy input values) the bits must be identical.
    let average_float = call.op().method == tinybrain::Method::Average && matches!(call.dtype, 9 | 10);
    let mut written = vec![false; arena.len()];
    let mut nan_tolerated = false;
    let bytes = arena.bytes();
    for (mip, (offset, mip_shape, strides)) in call.output_arrays(arena.address()).into_iter().enumerate() {
        let mut i = 0usize;
        let mut error = None;
        for_each_index(&mip_shape, |index| {
            let at = (offset as isize + offset_of(index, &strides) * elem as isize) as usize;
            let got = &bytes[at..at + elem];
            let expected = &want[mip][i * elem..(i + 1) * elem];
            let nan_pair = got != expected && average_float && both_nan(got, expected);
            nan_tolerated |= nan_pair;
            if got != expected && error.is_none() && !nan_pair {
                error = Some(format!(
                    "mip {} element {index:?}: got bytes {got:?}, the safe API gives {expected:?}",
                    mip + 1
                ));
            }
            written[at..at + elem].iter_mut().for_each(|w| *w = true);
            i += 1;
        });
        if let Some(e) = error {
            return Err(e);
        }
    }
    for (at, (&b, &a)) in before.iter().zip(bytes).enumerate() {
        if !written[at] && a != b {
            return Err(format!(
                "byte {at} of the arena, which is no output element, changed from {b:#04x} to {a:#04x}"
            ));
        }
    }
    Ok(nan_tolerated)
}

/// Both byte strings are float NaNs (4 or 8 bytes).
fn both_nan(a: &[u8], b: &[u8]) -> bool {
    match a.len() {
        4 => f32::from_ne_bytes(a.try_into().unwrap()).is_nan() && f32::from_ne_bytes(b.try_into().unwrap()).is_nan(),
        8 => f64::from_ne_bytes(a.try_into().unwrap()).is_nan() && f64::from_ne_bytes(b.try_into().unwrap()).is_nan(),
        _ => false,
    }
}

/// Reads MemAvailable from /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
