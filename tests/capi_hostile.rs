//! Hostile input through the C ABI, table-driven.
//!
//! Every row of `ROWS` changes one thing in a valid call (u16 5x4x3 volume, factor 2x2x1,
//! two mips, every buffer inside one sentinel-filled arena) and says what must come back:
//! the status, and words of the message (`tb_last_error_message`) that name the
//! offending argument. Each row runs against all five operations, through the per-mip
//! entry point and/or the `_packed` one, for three dtypes. After an error the whole arena
//! (input, outputs, the gaps between them) must be byte-identical to before the call;
//! after a success every output element must equal the safe Rust API's result and every
//! other byte must be untouched.
//!
//! Further tables cover the shape helpers (tb_mip_shape, tb_mip_len, tb_pyramid_len,
//! tb_chunk_alignment).
//!
//! No test here provokes a panic inside the library end to end: no valid or invalid call
//! reaches one in a release build (the boundary itself is unit-tested in src/capi.rs).
//! Every call in these tables returns a status, which also shows that nothing unwinds
//! across the ABI (an unwinding `extern "C"` function aborts the process).

mod common;

use std::ptr::{null, null_mut};

use common::*;
use tinybrain::capi;

/// Byte offsets of the baseline call's buffers in its arena.
#[derive(Clone, Copy, Debug)]
struct Layout {
    elem: usize,
    input: usize,
    input_bytes: usize,
    /// Offset of the slot of output `i` is `outputs + i * slot`.
    outputs: usize,
    slot: usize,
    packed: usize,
}

impl Layout {
    fn output(&self, i: usize) -> usize {
        self.outputs + i * self.slot
    }
}

const SHAPE: [usize; 3] = [5, 4, 3];
const FACTOR: [usize; 3] = [2, 2, 1];
const SENTINEL: u8 = 0xA5;

fn align64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// A valid call of `op` with `num_mips` mips, and its arena (input filled with varied
/// values, everything else with SENTINEL).
fn baseline(op: usize, packed: bool, dtype: i32, num_mips: usize) -> (Call, Arena, Layout) {
    let elem = elem_size(dtype);
    let input_len: usize = SHAPE.iter().product();
    let mip1_len: usize = model_mip_shape(&SHAPE, &FACTOR, 1).iter().product();
    let pyramid: usize = (1..=num_mips)
        .map(|m| model_mip_shape(&SHAPE, &FACTOR, m).iter().product::<usize>())
        .sum();
    // Room before the input for outputs placed just below it.
    let input = 512;
    let input_bytes = input_len * elem;
    let outputs = align64(input + input_bytes + 64);
    // Room for padded output strides (up to 64 elements per mip).
    let slot = align64(64.max(mip1_len) * elem) + 64;
    let packed_at = outputs + num_mips.max(2) * slot + 64;
    let layout = Layout {
        elem,
        input,
        input_bytes,
        outputs,
        slot,
        packed: packed_at,
    };
    let mut arena = Arena::new(packed_at + pyramid * elem + 256, SENTINEL);
    // Varied, but sparse-friendly values (some zeros) with repeats for mode pooling.
    let mut rng = Rng(0x5EED ^ dtype as u64);
    for i in 0..input_len {
        let v = rng.below(7);
        let bytes = &mut arena.bytes_mut()[input + i * elem..input + (i + 1) * elem];
        bytes.fill(0);
        match dtype {
            9 => bytes.copy_from_slice(&(v as f32 * 1.5).to_ne_bytes()),
            10 => bytes.copy_from_slice(&(v as f64 * 1.5).to_ne_bytes()),
            _ => bytes[0] = (v * 37) as u8,
        }
    }
    let call = Call {
        op,
        packed,
        dtype,
        ndim: 3,
        shape: Some(SHAPE.to_vec()),
        strides: None,
        factor: Some(FACTOR.to_vec()),
        num_mips,
        flags: 0,
        input: Ptr::Arena(input as isize),
        outputs: Some((0..num_mips).map(|i| Ptr::Arena(layout.output(i) as isize)).collect()),
        output_strides: None,
        packed_output: Ptr::Arena(packed_at as isize),
    };
    (call, arena, layout)
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    Ok,
    /// The status and words the message must contain (besides the function name).
    Err(i32, &'static [&'static str]),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variants {
    Both,
    PerMip,
    Packed,
}

struct Row {
    name: &'static str,
    variants: Variants,
    /// Number of mips of the baseline.
    num_mips: usize,
    /// Changes the baseline; returns false when the row does not apply (e.g. misalignment
    /// of a 1-byte dtype).
    mutate: fn(&mut Call, &Layout) -> bool,
    expect: fn(&Op) -> Expect,
}

fn ok(_: &Op) -> Expect {
    Expect::Ok
}

/// Sparse is valid for averaging and segmentation only.
fn sparse_expect(op: &Op) -> Expect {
    if op.sparse_ok {
        Expect::Ok
    } else {
        Expect::Err(E_UNSUPPORTED, &["sparse"])
    }
}

macro_rules! err {
    ($status:expr, $($word:expr),+) => {
        |_: &Op| Expect::Err($status, &[$($word),+])
    };
}

fn set_output_strides(call: &mut Call, mip: usize, strides: Vec<isize>) {
    let n = call.num_mips;
    let table = call.output_strides.get_or_insert_with(|| vec![None; n]);
    table[mip] = Some(strides);
}

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    vec![
        // ── NULL pointers ───────────────────────────────────────────────────────────
        Row { name: "input NULL", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.input = Ptr::Null; true }, expect: err!(E_NULL, "input is NULL") },
        Row { name: "shape NULL", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.shape = None; true }, expect: err!(E_NULL, "shape is NULL") },
        Row { name: "factor NULL", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.factor = None; true }, expect: err!(E_NULL, "factor is NULL") },
        Row { name: "outputs array NULL", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { c.outputs = None; true }, expect: err!(E_NULL, "outputs is NULL") },
        Row { name: "outputs[1] NULL", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { c.outputs.as_mut().unwrap()[1] = Ptr::Null; true },
              expect: err!(E_NULL, "outputs[1] is NULL") },
        Row { name: "outputs[0] NULL", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { c.outputs.as_mut().unwrap()[0] = Ptr::Null; true },
              expect: err!(E_NULL, "outputs[0] is NULL") },
        Row { name: "packed output NULL", variants: Variants::Packed, num_mips: 2,
              mutate: |c, _| { c.packed_output = Ptr::Null; true }, expect: err!(E_NULL, "output is NULL") },
        // NULL strides mean Fortran order and NULL output_strides all-Fortran: valid.
        Row { name: "output_strides array given, entries NULL", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { c.output_strides = Some(vec![None, None]); true }, expect: ok },

        // ── dtype codes ─────────────────────────────────────────────────────────────
        Row { name: "dtype 0", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.dtype = 0; true }, expect: err!(E_DTYPE, "dtype code 0") },
        Row { name: "dtype 11", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.dtype = 11; true }, expect: err!(E_DTYPE, "dtype code 11") },
        Row { name: "dtype -1", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.dtype = -1; true }, expect: err!(E_DTYPE, "dtype code -1") },
        Row { name: "dtype i32::MIN", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.dtype = i32::MIN; true }, expect: err!(E_DTYPE, "dtype code -2147483648") },
        Row { name: "dtype i32::MAX", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.dtype = i32::MAX; true }, expect: err!(E_DTYPE, "dtype code 2147483647") },

        // ── ndim ────────────────────────────────────────────────────────────────────
        Row { name: "ndim 0", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.ndim = 0; true }, expect: err!(E_SHAPE, "ndim is 0") },
        Row { name: "ndim 9 (arrays of 9)", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| {
                  c.ndim = 9;
                  c.shape = Some(vec![1; 9]);
                  c.factor = Some(vec![1; 9]);
                  true
              },
              expect: err!(E_SHAPE, "ndim is 9") },
        // The library must look at ndim before it reads ndim values from shape.
        Row { name: "ndim usize::MAX", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.ndim = usize::MAX; true }, expect: err!(E_SHAPE, "ndim is 18446744073709551615") },
        Row { name: "ndim 8 (the maximum) is valid", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| {
                  c.ndim = 8;
                  c.shape = Some(vec![5, 4, 3, 1, 1, 1, 1, 1]);
                  c.factor = Some(vec![2, 2, 1, 1, 1, 1, 1, 1]);
                  true
              },
              expect: ok },

        // ── factor ──────────────────────────────────────────────────────────────────
        Row { name: "factor[1] = 0", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.factor = Some(vec![2, 0, 1]); true }, expect: err!(E_FACTOR, "factor[1]") },
        Row { name: "factor[0] = 0", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.factor = Some(vec![0, 2, 1]); true }, expect: err!(E_FACTOR, "factor[0]") },
        Row { name: "factor[2] = 0 on an axis of size > 1", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.factor = Some(vec![2, 2, 0]); true }, expect: err!(E_FACTOR, "factor[2]") },
        Row { name: "factor larger than the shape is valid", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.factor = Some(vec![1000, 3, 1]); true }, expect: ok },
        Row { name: "factor usize::MAX is valid", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.factor = Some(vec![usize::MAX, 2, usize::MAX]); true }, expect: ok },

        // ── shapes that overflow ────────────────────────────────────────────────────
        Row { name: "shape[0] = 0", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.shape = Some(vec![0, 4, 3]); true }, expect: err!(E_SHAPE, "shape[0] is 0") },
        Row { name: "shape[2] = 0", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.shape = Some(vec![5, 4, 0]); true }, expect: err!(E_SHAPE, "shape[2] is 0") },
        Row { name: "element count overflows usize", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.shape = Some(vec![usize::MAX, 2, 1]); true }, expect: err!(E_SHAPE, "shape") },
        Row { name: "element count overflows usize (2^32 x 2^32)", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.shape = Some(vec![1 << 32, 1 << 32, 1]); true }, expect: err!(E_SHAPE, "shape") },
        // Fits usize as a count, but not as bytes (elements of 2 bytes or more).
        Row { name: "byte size overflows (count 2^62 of >= 2 bytes)", variants: Variants::Both, num_mips: 2,
              mutate: |c, l| { c.shape = Some(vec![1 << 62, 1, 1]); l.elem >= 2 },
              expect: err!(E_SHAPE, "shape", "address space") },
        Row { name: "byte size exceeds isize::MAX (count 2^63)", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.shape = Some(vec![1 << 31, 1 << 32, 1]); true },
              expect: err!(E_SHAPE, "shape") },

        // ── input strides that leave the address space ──────────────────────────────
        Row { name: "input strides reach past the top of the address space", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.strides = Some(vec![1, isize::MAX, 1]); true },
              expect: err!(E_STRIDES, "strides of input", "address space") },
        Row { name: "input strides reach below address 0", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.strides = Some(vec![1, 5, -(1 << 60)]); true },
              expect: err!(E_STRIDES, "strides of input", "address space") },
        Row { name: "input strides isize::MIN", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.strides = Some(vec![isize::MIN, 5, 20]); true },
              expect: err!(E_STRIDES, "strides of input") },
        Row { name: "input span larger than isize::MAX bytes", variants: Variants::Both, num_mips: 2,
              // first byte 2^61 and last below 2^64, but 1.25 * 2^63 bytes apart.
              mutate: |c, l| {
                  let e = l.elem as isize;
                  c.strides = Some(vec![(1 << 60) / e, -(1 << 61) / e, 1]);
                  c.input = Ptr::Raw(1 << 63);
                  true
              },
              expect: err!(E_STRIDES, "strides of input") },
        Row { name: "input pointer near the top, Fortran strides", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.input = Ptr::Raw(usize::MAX - 15); true },
              expect: err!(E_STRIDES, "strides of input", "address space") },
        Row { name: "input pointer near 0, negative strides", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.input = Ptr::Raw(8); c.strides = Some(vec![-1, -5, -20]); true },
              expect: err!(E_STRIDES, "strides of input", "address space") },
        // Valid unusual input layouts.
        Row { name: "input strides all 0 (one repeated element) are valid", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.strides = Some(vec![0, 0, 0]); true }, expect: ok },
        Row { name: "input negative strides (reversed view) are valid", variants: Variants::Both, num_mips: 2,
              mutate: |c, l| {
                  c.strides = Some(vec![-1, -5, -20]);
                  c.input = Ptr::Arena((l.input + l.input_bytes - l.elem) as isize);
                  true
              },
              expect: ok },
        Row { name: "input stride isize::MIN on an axis of size 1 is valid", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.shape = Some(vec![5, 4, 1]); c.strides = Some(vec![1, 5, isize::MIN]); true },
              expect: ok },
        Row { name: "input stride isize::MAX on an axis of size 1 is valid", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.shape = Some(vec![5, 1, 3]); c.strides = Some(vec![1, isize::MAX, 5]); true },
              expect: ok },
        Row { name: "input C-order strides are valid", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.strides = Some(vec![12, 3, 1]); true }, expect: ok },

        // ── output strides ──────────────────────────────────────────────────────────
        Row { name: "output strides reach past the top of the address space", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { set_output_strides(c, 0, vec![1, isize::MAX, 1]); true },
              expect: err!(E_STRIDES, "strides of outputs[0]", "address space") },
        Row { name: "output strides reach below address 0", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { set_output_strides(c, 1, vec![1, 2, -(1 << 61)]); true },
              expect: err!(E_STRIDES, "strides of outputs[1]", "address space") },
        Row { name: "output strides overlap the output itself (1,1,6)", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { set_output_strides(c, 0, vec![1, 1, 6]); true },
              expect: err!(E_STRIDES, "outputs[0]", "overlap itself") },
        Row { name: "output strides with a 0 on an axis of size 3", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { set_output_strides(c, 0, vec![0, 3, 6]); true },
              expect: err!(E_STRIDES, "outputs[0]", "overlap itself") },
        Row { name: "output strides all 0", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { set_output_strides(c, 1, vec![0, 0, 0]); true },
              expect: err!(E_STRIDES, "outputs[1]", "overlap itself") },
        Row { name: "output strides (1,-1,6) overlap", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { set_output_strides(c, 0, vec![1, -1, 6]); true },
              expect: err!(E_STRIDES, "outputs[0]", "overlap itself") },
        // Valid output layouts: C order, padded, reversed. (mip 1 is 3x2x3.)
        Row { name: "output strides C order are valid", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { set_output_strides(c, 0, vec![6, 3, 1]); true }, expect: ok },
        Row { name: "output strides padded are valid", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { set_output_strides(c, 0, vec![2, 7, 15]); true }, expect: ok },
        Row { name: "output strides negative are valid", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| {
                  set_output_strides(c, 0, vec![-1, -3, -6]);
                  c.outputs.as_mut().unwrap()[0] = Ptr::Arena((l.output(0) + 17 * l.elem) as isize);
                  true
              },
              expect: ok },
        Row { name: "output stride isize::MIN on an axis of size 1 is valid", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { set_output_strides(c, 1, vec![1, isize::MIN, 2]); true }, expect: ok },
        Row { name: "output stride 0 on an axis of size 1 is valid", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, _| { set_output_strides(c, 1, vec![1, 0, 2]); true }, expect: ok },

        // ── outputs that alias the input or each other ──────────────────────────────
        Row { name: "outputs[0] is the input", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[0] = Ptr::Arena(l.input as isize); true },
              expect: err!(E_OVERLAP, "output 0", "overlaps the input") },
        Row { name: "outputs[1] inside the input", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[1] = Ptr::Arena((l.input + 4 * l.elem) as isize); true },
              expect: err!(E_OVERLAP, "output 1", "overlaps the input") },
        Row { name: "outputs[0] ends one element into the input", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[0] = Ptr::Arena((l.input - 17 * l.elem) as isize); true },
              expect: err!(E_OVERLAP, "output 0", "overlaps the input") },
        Row { name: "outputs[0] ends exactly where the input starts (valid)", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[0] = Ptr::Arena((l.input - 18 * l.elem) as isize); true },
              expect: ok },
        Row { name: "outputs[0] starts exactly where the input ends (valid)", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[0] = Ptr::Arena((l.input + l.input_bytes) as isize); true },
              expect: ok },
        Row { name: "negative output strides reach back into the input", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| {
                  set_output_strides(c, 0, vec![-1, -3, -6]);
                  c.outputs.as_mut().unwrap()[0] = Ptr::Arena((l.input + l.input_bytes + 16 * l.elem) as isize);
                  true
              },
              expect: err!(E_OVERLAP, "output 0", "overlaps the input") },
        Row { name: "outputs[1] is outputs[0]", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[1] = Ptr::Arena(l.output(0) as isize); true },
              expect: err!(E_OVERLAP, "outputs 0 and 1") },
        Row { name: "outputs[1] starts inside outputs[0]", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[1] = Ptr::Arena((l.output(0) + 17 * l.elem) as isize); true },
              expect: err!(E_OVERLAP, "outputs 0 and 1") },
        Row { name: "outputs[0] starts inside outputs[1]", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[0] = Ptr::Arena((l.output(1) + 5 * l.elem) as isize); true },
              expect: err!(E_OVERLAP, "outputs 0 and 1") },
        Row { name: "outputs back to back (valid)", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[1] = Ptr::Arena((l.output(0) + 18 * l.elem) as isize); true },
              expect: ok },
        Row { name: "outputs[2] aliases outputs[0] among 5", variants: Variants::PerMip, num_mips: 5,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[2] = Ptr::Arena(l.output(0) as isize); true },
              expect: err!(E_OVERLAP, "outputs 0 and 2") },
        Row { name: "packed output is the input", variants: Variants::Packed, num_mips: 2,
              mutate: |c, l| { c.packed_output = Ptr::Arena(l.input as isize); true },
              expect: err!(E_OVERLAP, "overlaps the input") },
        Row { name: "packed output overlaps the end of the input", variants: Variants::Packed, num_mips: 2,
              mutate: |c, l| { c.packed_output = Ptr::Arena((l.input + l.input_bytes - 2 * l.elem) as isize); true },
              expect: err!(E_OVERLAP, "overlaps the input") },
        Row { name: "packed output: only mip 2 overlaps the input", variants: Variants::Packed, num_mips: 2,
              mutate: |c, l| { c.packed_output = Ptr::Arena((l.input - 20 * l.elem) as isize); true },
              expect: err!(E_OVERLAP, "output 1", "overlaps the input") },
        Row { name: "packed output ends exactly where the input starts (valid)", variants: Variants::Packed, num_mips: 2,
              mutate: |c, l| { c.packed_output = Ptr::Arena((l.input - 24 * l.elem) as isize); true },
              expect: ok },
        Row { name: "packed output overlaps a repeated (stride 0) input", variants: Variants::Packed, num_mips: 2,
              mutate: |c, l| {
                  c.strides = Some(vec![0, 0, 0]);
                  c.packed_output = Ptr::Arena((l.input - 23 * l.elem) as isize);
                  true
              },
              expect: err!(E_OVERLAP, "overlaps the input") },

        // ── num_mips ────────────────────────────────────────────────────────────────
        Row { name: "num_mips 0 with NULL outputs is valid and writes nothing", variants: Variants::Both, num_mips: 0,
              mutate: |c, _| { c.outputs = None; c.packed_output = Ptr::Null; true }, expect: ok },
        Row { name: "num_mips 40: shapes stay at 1x1x3 (valid)", variants: Variants::Both, num_mips: 40,
              mutate: |_, _| true, expect: ok },
        Row { name: "num_mips 40 with factor 2x2x2 (valid)", variants: Variants::Both, num_mips: 40,
              mutate: |c, _| { c.factor = Some(vec![2, 2, 2]); true }, expect: ok },
        Row { name: "num_mips 12 with an all-ones factor: copies (valid)", variants: Variants::Both, num_mips: 12,
              mutate: |c, _| { c.factor = Some(vec![1, 1, 1]); true }, expect: ok },
        Row { name: "num_mips so large the packed buffer overflows", variants: Variants::Packed, num_mips: 2,
              mutate: |c, _| { c.num_mips = usize::MAX; true }, expect: err!(E_SHAPE, "mips") },
        Row { name: "num_mips so large the packed buffer passes isize::MAX bytes", variants: Variants::Packed, num_mips: 2,
              mutate: |c, l| { c.num_mips = (isize::MAX as usize / l.elem) / 3 + 1; true }, expect: err!(E_SHAPE, "mips") },

        // ── flags ───────────────────────────────────────────────────────────────────
        Row { name: "TB_SPARSE", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.flags = SPARSE; true }, expect: sparse_expect },
        Row { name: "unknown flag bit 2", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.flags = 2; true }, expect: err!(E_UNSUPPORTED, "flag") },
        Row { name: "unknown flag bit 31", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.flags = 1 << 31; true }, expect: err!(E_UNSUPPORTED, "flag") },
        Row { name: "TB_SPARSE with an unknown bit", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.flags = SPARSE | 4; true }, expect: err!(E_UNSUPPORTED, "flag") },
        Row { name: "all flag bits", variants: Variants::Both, num_mips: 2,
              mutate: |c, _| { c.flags = u32::MAX; true }, expect: err!(E_UNSUPPORTED, "flag") },

        // ── misaligned data pointers ────────────────────────────────────────────────
        Row { name: "input misaligned by 1 byte", variants: Variants::Both, num_mips: 2,
              mutate: |c, l| { c.input = Ptr::Arena(l.input as isize + 1); l.elem > 1 },
              expect: err!(E_STRIDES, "input is not aligned") },
        Row { name: "input misaligned by elem/2 bytes", variants: Variants::Both, num_mips: 2,
              mutate: |c, l| { c.input = Ptr::Arena((l.input + l.elem / 2) as isize); l.elem > 2 },
              expect: err!(E_STRIDES, "input is not aligned") },
        Row { name: "outputs[0] misaligned", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[0] = Ptr::Arena(l.output(0) as isize + 1); l.elem > 1 },
              expect: err!(E_STRIDES, "outputs[0] is not aligned") },
        Row { name: "outputs[1] misaligned", variants: Variants::PerMip, num_mips: 2,
              mutate: |c, l| { c.outputs.as_mut().unwrap()[1] = Ptr::Arena(l.output(1) as isize + 1); l.elem > 1 },
              expect: err!(E_STRIDES, "outputs[1] is not aligned") },
        Row { name: "packed output misaligned", variants: Variants::Packed, num_mips: 2,
              mutate: |c, l| { c.packed_output = Ptr::Arena(l.packed as isize + 1); l.elem > 1 },
              expect: err!(E_STRIDES, "output is not aligned") },
    ]
}

/// u16 (misalignment by 1 byte), f64 (by 1..7 bytes), u8 (never misaligned).
const DTYPES: [i32; 3] = [2, 10, 1];

/// The safe Rust API's result, for the dtypes of the table only (each dtype compiles the
/// library's kernels once more into this test binary).
fn reference_for_table_dtypes(
    method: tinybrain::Method,
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
        10 => reference_typed::<f64>,
        other => panic!("dtype {other} is not one of the table's"),
    };
    f(method, shape, bytes, factor, num_mips, sparse)
}

/// Under Miri (`scripts/miri.sh`), which takes seconds for a call that succeeds, the
/// sweep takes every `MIRI_SAMPLE`th of its calls: each row in a few of its dtypes,
/// functions and buffer kinds, the choice moving on from row to row (a prime, so it
/// does not fall into step with the 2 x 5 x 3 of them).
const MIRI_SAMPLE: usize = 17;

#[test]
fn every_hostile_call_is_refused_or_correct_and_errors_write_nothing() {
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut candidates = 0;
    for row in rows() {
        for &dtype in &DTYPES {
            for (op_index, op) in OPS.iter().enumerate() {
                for packed in [false, true] {
                    let applies = match row.variants {
                        Variants::Both => true,
                        Variants::PerMip => !packed,
                        Variants::Packed => packed,
                    };
                    if !applies {
                        continue;
                    }
                    let (mut call, mut arena, layout) = baseline(op_index, packed, dtype, row.num_mips);
                    if !(row.mutate)(&mut call, &layout) {
                        continue;
                    }
                    candidates += 1;
                    if cfg!(miri) && candidates % MIRI_SAMPLE != 0 {
                        continue;
                    }
                    // A row may change the pyramid's size: give the packed buffer room.
                    if let (true, Some(shape), Some(factor)) = (packed, &call.shape, &call.factor) {
                        if shape.len() == call.ndim && factor.iter().all(|&f| f > 0) && call.num_mips <= 64 {
                            let len: Option<usize> = (1..=call.num_mips)
                                .map(|m| {
                                    model_mip_shape(shape, factor, m)
                                        .iter()
                                        .try_fold(1usize, |a, &s| a.checked_mul(s))
                                })
                                .sum();
                            if let Some(len) = len.filter(|&n| n < 1 << 20) {
                                arena.grow(layout.packed + len * layout.elem + 256, SENTINEL);
                            }
                        }
                    }
                    ran += 1;
                    let what = format!("[{}] {} dtype {dtype}", row.name, call.function_name());
                    if std::env::var_os("TB_HOSTILE_VERBOSE").is_some() {
                        eprintln!("{what}");
                    }
                    let before = arena.bytes().to_vec();
                    // A stale message from an earlier row must not satisfy this one.
                    // SAFETY: a NULL shape pointer with ndim 0 is refused before any read.
                    let reset = unsafe { capi::tb_mip_len(0, null(), null(), 0, null_mut()) };
                    assert_ne!(reset, OK);
                    // SAFETY: every pointer the library may read or write for an accepted
                    // call is inside the arena (the layout above); rejected calls are
                    // refused before any access, which is what this test checks.
                    let status = unsafe { call.run(&mut arena) };
                    match (row.expect)(op) {
                        Expect::Ok => {
                            if status != OK {
                                failures.push(format!(
                                    "{what}: expected TB_OK, got {} ({})",
                                    status_name(status),
                                    last_error()
                                ));
                            } else if let Err(e) = check_success(&call, &before, &arena, reference_for_table_dtypes) {
                                failures.push(format!("{what}: TB_OK but {e}"));
                            }
                        }
                        Expect::Err(want, words) => {
                            let message = last_error();
                            if status != want {
                                failures.push(format!(
                                    "{what}: expected {}, got {} ({message})",
                                    status_name(want),
                                    status_name(status)
                                ));
                            } else if !message.starts_with(call.function_name()) {
                                failures.push(format!(
                                    "{what}: message does not start with the function name: {message}"
                                ));
                            } else if let Some(w) = words.iter().find(|w| !message.contains(*w)) {
                                failures.push(format!("{what}: message lacks `{w}`: {message}"));
                            }
                            if let Some(at) = before.iter().zip(arena.bytes()).position(|(a, b)| a != b) {
                                failures.push(format!(
                                    "{what}: failed with {} but byte {at} of the buffers changed",
                                    status_name(status)
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    println!("{ran} hostile calls checked");
    assert!(
        ran > 1000 / if cfg!(miri) { MIRI_SAMPLE } else { 1 },
        "only {ran} calls ran"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Messages are per thread and start empty; a success leaves an earlier message alone or
/// clears it, but never produces a misleading one.
#[test]
fn a_fresh_thread_has_an_empty_message() {
    std::thread::spawn(|| assert_eq!(last_error(), "")).join().unwrap();
}

#[test]
fn status_names_and_dtype_sizes_of_unknown_codes() {
    for code in [-1, 11, 12, 100, i32::MIN, i32::MAX] {
        assert_eq!(status_name(code), "TB_UNKNOWN_STATUS", "status {code}");
    }
    for code in [0, 11, -1, i32::MIN, i32::MAX] {
        assert_eq!(elem_size(code), 0, "dtype {code}");
    }
    for (code, size) in [
        (1, 1),
        (2, 2),
        (3, 4),
        (4, 8),
        (5, 1),
        (6, 2),
        (7, 4),
        (8, 8),
        (9, 4),
        (10, 8),
    ] {
        assert_eq!(elem_size(code), size, "dtype {code}");
    }
}

// ─────────────────────────────── the shape helpers ───────────────────────────────

type HelperCall = unsafe extern "C" fn(usize, *const usize, *const usize, usize, *mut usize) -> i32;

struct HelperRow {
    name: &'static str,
    ndim: usize,
    shape: Option<Vec<usize>>,
    factor: Option<Vec<usize>>,
    mips: usize,
    out: bool,
    /// (status, words) per helper: mip_shape, mip_len, pyramid_len.
    expect: [(i32, &'static str); 3],
}

#[test]
fn shape_helpers_refuse_hostile_arguments_without_writing() {
    let helpers: [(&str, HelperCall); 3] = [
        ("tb_mip_shape", capi::tb_mip_shape),
        ("tb_mip_len", capi::tb_mip_len),
        ("tb_pyramid_len", capi::tb_pyramid_len),
    ];
    let s = |v: &[usize]| Some(v.to_vec());
    #[rustfmt::skip]
    let rows = vec![
        HelperRow { name: "valid", ndim: 3, shape: s(&[5, 4, 3]), factor: s(&[2, 2, 1]), mips: 2, out: true,
                    expect: [(OK, ""), (OK, ""), (OK, "")] },
        HelperRow { name: "ndim 0", ndim: 0, shape: None, factor: None, mips: 1, out: true,
                    expect: [(E_SHAPE, "ndim"), (E_SHAPE, "ndim"), (E_SHAPE, "ndim")] },
        HelperRow { name: "ndim 9", ndim: 9, shape: s(&[1; 9]), factor: s(&[1; 9]), mips: 1, out: true,
                    expect: [(E_SHAPE, "ndim"), (E_SHAPE, "ndim"), (E_SHAPE, "ndim")] },
        HelperRow { name: "shape NULL", ndim: 3, shape: None, factor: s(&[2, 2, 1]), mips: 1, out: true,
                    expect: [(E_NULL, "shape"), (E_NULL, "shape"), (E_NULL, "shape")] },
        HelperRow { name: "factor NULL", ndim: 3, shape: s(&[5, 4, 3]), factor: None, mips: 1, out: true,
                    expect: [(E_NULL, "factor"), (E_NULL, "factor"), (E_NULL, "factor")] },
        HelperRow { name: "out NULL", ndim: 3, shape: s(&[5, 4, 3]), factor: s(&[2, 2, 1]), mips: 1, out: false,
                    expect: [(E_NULL, "out_shape"), (E_NULL, "out_len"), (E_NULL, "out_len")] },
        HelperRow { name: "factor 0", ndim: 3, shape: s(&[5, 4, 3]), factor: s(&[2, 0, 1]), mips: 1, out: true,
                    expect: [(E_FACTOR, "factor[1]"), (E_FACTOR, "factor[1]"), (E_FACTOR, "factor[1]")] },
        HelperRow { name: "shape 0", ndim: 3, shape: s(&[5, 0, 3]), factor: s(&[2, 2, 1]), mips: 1, out: true,
                    expect: [(E_SHAPE, "shape[1]"), (E_SHAPE, "shape[1]"), (E_SHAPE, "shape[1]")] },
        HelperRow { name: "count overflows", ndim: 2, shape: s(&[usize::MAX, 3]), factor: s(&[2, 2]), mips: 1, out: true,
                    expect: [(E_SHAPE, "shape"), (E_SHAPE, "shape"), (E_SHAPE, "shape")] },
        HelperRow { name: "pyramid of usize::MAX mips overflows", ndim: 2, shape: s(&[4, 4]), factor: s(&[2, 2]),
                    mips: usize::MAX, out: true, expect: [(OK, ""), (OK, ""), (E_SHAPE, "overflow")] },
        HelperRow { name: "huge mip index stays at 1", ndim: 2, shape: s(&[4, 4]), factor: s(&[2, 2]),
                    mips: usize::MAX - 1, out: true, expect: [(OK, ""), (OK, ""), (E_SHAPE, "overflow")] },
    ];
    let mut failures = Vec::new();
    for row in &rows {
        for (k, (name, helper)) in helpers.iter().enumerate() {
            let mut out = [0xDEAD_BEEFusize; 12];
            let shape = row.shape.as_ref().map_or(null(), |v| v.as_ptr());
            let factor = row.factor.as_ref().map_or(null(), |v| v.as_ptr());
            let out_ptr = if row.out { out.as_mut_ptr() } else { null_mut() };
            // SAFETY: the arrays hold ndim values (or are NULL); out has room for 12.
            let status = unsafe { helper(row.ndim, shape, factor, row.mips, out_ptr) };
            let (want, word) = row.expect[k];
            let message = last_error();
            if status != want {
                failures.push(format!(
                    "[{}] {name}: expected {}, got {} ({message})",
                    row.name,
                    status_name(want),
                    status_name(status)
                ));
                continue;
            }
            let written = match (status, k) {
                (OK, 0) => row.ndim,
                (OK, _) => 1,
                _ => 0,
            };
            if out[written..].iter().any(|&v| v != 0xDEAD_BEEF) {
                failures.push(format!("[{}] {name}: wrote past its output: {out:?}", row.name));
            }
            if status != OK && !(message.starts_with(name) && message.contains(word)) {
                failures.push(format!("[{}] {name}: message lacks `{word}`: {message}", row.name));
            }
            if status == OK && k == 0 {
                let want = model_mip_shape(row.shape.as_ref().unwrap(), row.factor.as_ref().unwrap(), row.mips);
                if out[..row.ndim] != want[..] {
                    failures.push(format!(
                        "[{}] {name}: {:?}, expected {want:?}",
                        row.name,
                        &out[..row.ndim]
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn chunk_alignment_refuses_hostile_arguments_without_writing() {
    let mut out = [7usize; 4];
    // SAFETY: NULL factor with ndim 2: refused before reading.
    let status = unsafe { capi::tb_chunk_alignment(2, null(), 1, out.as_mut_ptr()) };
    assert_eq!(status, E_NULL, "{}", last_error());
    assert!(last_error().contains("factor"));
    // SAFETY: factor holds 2 values; out has room for 4.
    let status = unsafe { capi::tb_chunk_alignment(2, [2usize, 2].as_ptr(), 64, out.as_mut_ptr()) };
    assert_eq!(status, E_SHAPE, "2^64 overflows: {}", last_error());
    assert!(last_error().contains("factor[0]"), "{}", last_error());
    let status = unsafe { capi::tb_chunk_alignment(2, [2usize, 0].as_ptr(), 1, out.as_mut_ptr()) };
    assert_eq!(status, E_FACTOR, "{}", last_error());
    let status = unsafe { capi::tb_chunk_alignment(0, [2usize].as_ptr(), 1, out.as_mut_ptr()) };
    assert_eq!(status, E_SHAPE, "{}", last_error());
    let status = unsafe { capi::tb_chunk_alignment(2, [2usize, 3].as_ptr(), 2, null_mut()) };
    assert_eq!(status, E_NULL, "{}", last_error());
    assert!(last_error().contains("out_alignment"));
    assert_eq!(out, [7; 4], "failed calls wrote");
    let status = unsafe { capi::tb_chunk_alignment(2, [1usize, 3].as_ptr(), usize::MAX, out.as_mut_ptr()) };
    assert_ne!(status, OK, "3^usize::MAX overflows");
    let status = unsafe { capi::tb_chunk_alignment(2, [1usize, 3].as_ptr(), 3, out.as_mut_ptr()) };
    assert_eq!(status, OK, "{}", last_error());
    assert_eq!(out, [1, 27, 7, 7]);
}

// ─────────────────────────────── regressions ───────────────────────────────

/// Regression test for a library bug found while writing these tests (and fixed in
/// src/ meanwhile, commit f2b38b8 "Fix u8 2x2x2 averaging past mip 7").
///
/// SEMANTICS.md: u8 2x2x2 averaging keeps tinybrain's accumulator for a cycle of 8 mips
/// and renders mip m as acc >> 3*((m % 8) + 1). By mip 8 (m = 7) the accumulator holds
/// the sum of 8^8 replicate-padded voxels, up to 255 * 2^24 > i32::MAX; it was an i32
/// (tinybrain uses uint32). A release build wrapped and gave mip 8 one too high wherever
/// the exact mean is not an integer (255 instead of 254 here; 203 instead of tinybrain's
/// 202 on a random 256^3 volume); a debug build panicked (TB_ERR_INTERNAL). Tiny inputs
/// reach it, because replicate padding keeps summing 8 copies per mip once axes are 1.
///
/// Input 2x1x1 = [255, 254], factor 2x2x2, 10 mips: acc_0 = 4 * (255 + 254) = 2036 and
/// every later mip multiplies it by 8, so mip k = floor(2036 * 8^(k-1) / 8^k) = 254 for
/// every k (after the cycle's reset at mip 8 too: (2036 * 8^7) >> 24 = 254).
#[test]
fn u8_2x2x2_averaging_mip_8_does_not_overflow() {
    let input = [255u8, 254];
    let mut out = [0u8; 10];
    // One pointer, offset: a fresh borrow of `out` per output would invalidate the
    // pointers taken before it (Stacked Borrows; Miri reports the writes through them).
    let base = out.as_mut_ptr();
    let outputs: Vec<*mut std::ffi::c_void> = (0..10).map(|i| base.wrapping_add(i).cast()).collect();
    // SAFETY: a 2x1x1 u8 input; 10 one-byte outputs (every mip is 1x1x1).
    let status = unsafe {
        capi::tb_downsample_with_averaging(
            input.as_ptr().cast(),
            1,
            3,
            [2usize, 1, 1].as_ptr(),
            null(),
            [2usize, 2, 2].as_ptr(),
            10,
            0,
            outputs.as_ptr(),
            null(),
        )
    };
    assert_eq!(status, OK, "{}", last_error());
    assert_eq!(out, [254; 10], "mips 1..10");
}

/// The most negative i8 volume through a whole 2x2x2 cycle: the accumulator reaches
/// -128 * 8^8 = -2^31 at mip 8, where negating an i32 to truncate toward zero would
/// overflow (a panic in debug builds). Every mip of a constant volume is the constant.
#[test]
fn i8_2x2x2_averaging_of_minus_128_stays_minus_128() {
    let input = [-128i8; 1];
    let mut out = [0i8; 12];
    // One pointer, offset: a fresh borrow of `out` per output would invalidate the
    // pointers taken before it (Stacked Borrows; Miri reports the writes through them).
    let base = out.as_mut_ptr();
    let outputs: Vec<*mut std::ffi::c_void> = (0..12).map(|i| base.wrapping_add(i).cast()).collect();
    // SAFETY: a 1x1x1 i8 input; 12 one-byte outputs.
    let status = unsafe {
        capi::tb_downsample_with_averaging(
            input.as_ptr().cast(),
            5,
            3,
            [1usize, 1, 1].as_ptr(),
            null(),
            [2usize, 2, 2].as_ptr(),
            12,
            0,
            outputs.as_ptr(),
            null(),
        )
    };
    assert_eq!(status, OK, "{}", last_error());
    assert_eq!(out, [-128; 12]);
}
