//! A fuzzer for the C ABI that runs on stable Rust, inside `cargo test`.
//!
//! Each case is generated from one 64-bit seed (splitmix64), so a case is fully described
//! by its seed: a random operation (per-mip or `_packed` entry point), dtype (sometimes an
//! unknown code), ndim (sometimes 0 or > 8), shape (sometimes a 0 axis or an overflowing
//! size), input strides (Fortran, C, permuted, padded, reversed, zero, small random ones
//! that repeat memory, or ones that leave the address space), factor (2x2, 2x2x2, random,
//! huge, sometimes 0), num_mips (0 to 20), flags (sparse, unknown bits), and outputs with
//! their own layouts, some of them NULL, misaligned, overlapping themselves, the input or
//! each other. Every buffer lives in one sentinel-filled arena.
//!
//! An independent model of the validation rules (written from SEMANTICS.md "Errors" and
//! the header) says which errors apply. Then:
//! - if any applies, the call must fail with one of them (status, and a message that
//!   names the argument), and the arena must be byte-identical afterwards;
//! - otherwise it must succeed, every output element must equal what the safe Rust API
//!   (`tinybrain::downsample` on a Fortran copy of the same input) computes, bit for bit
//!   (for float averages, any NaN matches any NaN), and no other byte of the arena may
//!   change; for striding, min and max pooling the result must also equal a naive model
//!   written here from SEMANTICS.md, so kernel bugs the safe API shares are caught too.
//!
//! Environment:
//!   TB_FUZZ_ITERS    number of random cases (default 100000)
//!   TB_FUZZ_SECONDS  stop earlier after this many seconds (default 20)
//!   TB_FUZZ_SEED     first seed (default fixed; cases use seed, seed+1, ...)
//!   TB_FUZZ_VERBOSE  print every case before running it
//! e.g. `TB_FUZZ_ITERS=1000000 TB_FUZZ_SECONDS=3600 TB_FUZZ_SEED=$RANDOM cargo test --release --test fuzz_capi -- --nocapture`
//!
//! tests/fuzz_corpus.txt lists seeds worth replaying (cases that once found something, or
//! that cover a rare path); they run first, every time. A failing seed is printed; add it
//! to the corpus with a note.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tinybrain::Method;

const ARENA_FILL: u8 = 0xA5;
/// Keeps cases small and fast: at most this many input elements.
const MAX_ELEMENTS: usize = 2048;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ─────────────────────────────── generation ───────────────────────────────

/// How an array's strides are chosen.
fn layout_strides(rng: &mut Rng, shape: &[usize], allow_repeats: bool) -> Vec<isize> {
    let ndim = shape.len();
    let mut order: Vec<usize> = (0..ndim).collect();
    let kind = rng.below(100);
    match kind {
        // Fortran
        0..=29 => {}
        // C order
        30..=44 => order.reverse(),
        // any permutation (possibly with padding below)
        _ => {
            for i in (1..ndim).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
    }
    let pad = (60..80).contains(&kind);
    let mut strides = vec![0isize; ndim];
    let mut step = 1isize;
    for &axis in &order {
        strides[axis] = step;
        // Wrapping: overflowing shapes (refused calls) make nonsense strides, harmlessly.
        step = step.wrapping_mul((shape[axis] as isize).wrapping_add(if pad { rng.below(3) as isize } else { 0 }));
        if pad {
            step = step.wrapping_add(rng.below(2) as isize);
        }
    }
    // Reverse some axes.
    if rng.chance(1, 4) {
        for s in strides.iter_mut() {
            if rng.chance(1, 2) {
                *s = s.wrapping_neg();
            }
        }
    }
    if allow_repeats {
        match rng.below(10) {
            // zero strides (broadcast)
            0 => {
                for s in strides.iter_mut() {
                    if rng.chance(1, 2) {
                        *s = 0;
                    }
                }
            }
            // small random strides that may repeat memory
            1 => {
                for s in strides.iter_mut() {
                    *s = rng.range(0, 8) as isize - 4;
                }
            }
            _ => {}
        }
    } else if rng.chance(1, 40) {
        // An output that may overlap itself.
        for s in strides.iter_mut() {
            *s = rng.range(0, 6) as isize - 3;
        }
    }
    strides
}

/// Strides that leave the address space on an axis of size > 1 (when there is one).
fn wild_strides(rng: &mut Rng, strides: &mut [isize]) {
    let i = rng.below(strides.len() as u64) as usize;
    strides[i] = *rng.pick(&[isize::MAX, -isize::MAX, isize::MIN]);
}

fn write_value(bytes: &mut [u8], dtype: i32, v: i64) {
    match dtype {
        1 | 5 => bytes.copy_from_slice(&(v as u8).to_ne_bytes()),
        2 | 6 => bytes.copy_from_slice(&(v as u16).to_ne_bytes()),
        3 | 7 => bytes.copy_from_slice(&(v as u32).to_ne_bytes()),
        4 | 8 => bytes.copy_from_slice(&(v as u64).to_ne_bytes()),
        9 => bytes.copy_from_slice(&(v as f32).to_ne_bytes()),
        10 => bytes.copy_from_slice(&(v as f64).to_ne_bytes()),
        _ => {}
    }
}

fn fill_value(rng: &mut Rng, bytes: &mut [u8], dtype: i32, style: u64) {
    match style {
        // few distinct small values: ties, zeros (sparse), mode pooling
        0 => write_value(bytes, dtype, rng.below(4) as i64),
        1 => write_value(bytes, dtype, rng.below(256) as i64 - 64),
        // extremes of the type: all-ones, sign bit, max
        2 => {
            let b = *rng.pick(&[0x00u8, 0xFF, 0x7F, 0x80, 0x01]);
            bytes.fill(b);
            if rng.chance(1, 2) {
                let last = bytes.len() - 1;
                bytes[last] = *rng.pick(&[0x00u8, 0xFF, 0x7F, 0x80]);
            }
        }
        // any bit pattern (NaNs, infinities, subnormals for floats)
        _ => {
            for b in bytes.iter_mut() {
                *b = rng.next_u64() as u8;
            }
        }
    }
}

/// A generated case: the call, its arena, and what it was meant to exercise.
struct Case {
    call: Call,
    arena: Arena,
    notes: Vec<&'static str>,
}

fn generate(seed: u64) -> Case {
    let mut rng = Rng(seed);
    let mut notes = Vec::new();
    let op = rng.below(5) as usize;
    let packed = rng.chance(1, 3);

    let dtype = if rng.chance(95, 100) {
        rng.range(1, 10) as i32
    } else {
        notes.push("bad dtype");
        let random = rng.next_u64() as i32;
        *rng.pick(&[0, 11, -1, i32::MIN, i32::MAX, random])
    };
    let elem = elem_size(dtype);
    let elem_or_1 = elem.max(1);

    let ndim = if rng.chance(97, 100) {
        *rng.pick(&[1, 2, 2, 3, 3, 3, 4, 4, 5, 6, 7, 8])
    } else {
        notes.push("bad ndim");
        *rng.pick(&[0, 9, 12])
    };
    let axes = ndim.clamp(1, 12);

    // Factor first: shapes are then chosen so that the factor has work to do.
    let mut factor = vec![1usize; axes];
    match rng.below(10) {
        0..=2 => {
            // 2x2 family on two random axes
            let a = rng.below(axes as u64) as usize;
            let b = rng.below(axes as u64) as usize;
            factor[a] = 2;
            factor[b] = 2;
        }
        3..=4 => {
            for _ in 0..3 {
                let a = rng.below(axes as u64) as usize;
                factor[a] = 2;
            }
        }
        5..=8 => {
            for f in factor.iter_mut() {
                *f = *rng.pick(&[1, 1, 2, 2, 3, 4]);
            }
        }
        _ => {
            for f in factor.iter_mut() {
                *f = rng.range(1, 9);
            }
        }
    }
    if rng.chance(1, 30) {
        let a = rng.below(axes as u64) as usize;
        factor[a] = *rng.pick(&[usize::MAX, 1 << 40, 1000]);
        notes.push("huge factor");
    }
    if rng.chance(1, 40) {
        let a = rng.below(axes as u64) as usize;
        factor[a] = 0;
        notes.push("zero factor");
    }

    let mut shape: Vec<usize> = (0..axes)
        .map(|a| {
            if factor[a] == 1 && rng.chance(1, 2) {
                rng.range(1, 3)
            } else {
                rng.range(1, 13)
            }
        })
        .collect();
    while shape.iter().product::<usize>() > MAX_ELEMENTS {
        let a = rng.below(axes as u64) as usize;
        shape[a] = shape[a].div_ceil(2);
    }
    let mut shape_ok = true;
    if rng.chance(1, 40) {
        let a = rng.below(axes as u64) as usize;
        shape[a] = 0;
        notes.push("zero axis");
        shape_ok = false;
    } else if rng.chance(1, 40) {
        let a = rng.below(axes as u64) as usize;
        // At least 2^63 elements: more than isize::MAX bytes for every dtype, so the
        // call is invalid whatever else is chosen (a valid one would read that much).
        shape[a] = *rng.pick(&[usize::MAX, 1 << 63, isize::MAX as usize + 1, usize::MAX - 1]);
        notes.push("overflowing shape");
        shape_ok = false;
    }

    let num_mips = match rng.below(20) {
        0..=2 => 0,
        3..=14 => rng.range(1, 3),
        15..=18 => rng.range(4, 10),
        _ => rng.range(11, 20),
    };
    let flags = match rng.below(20) {
        0..=12 => 0,
        // sparse mostly where it is defined
        13..=18 if OPS[op].sparse_ok || rng.chance(1, 4) => SPARSE,
        13..=18 => 0,
        _ => {
            notes.push("unknown flags");
            let random = (rng.next_u64() as u32) | 2;
            *rng.pick(&[2, 4, 1 << 31, u32::MAX, SPARSE | 8, random])
        }
    };

    // Input strides.
    let mut input_strides = layout_strides(&mut rng, &shape, true);
    let strides_null = rng.chance(1, 4) && !input_strides.iter().any(|&s| s < 0);
    if rng.chance(1, 40) {
        wild_strides(&mut rng, &mut input_strides);
        notes.push("wild input strides");
    }
    let input_strides_used = if strides_null {
        fortran_strides(&shape)
    } else {
        input_strides.clone()
    };

    // Arena layout: regions one after another, sometimes back to back.
    let mut cursor = 256usize;
    let mut place = |rng: &mut Rng, shape: &[usize], strides: &[isize], ok: bool| -> (usize, usize, usize) {
        // Returns (region start, region bytes, base offset of element 0).
        let gap = match rng.below(4) {
            0 => 0,
            1 => elem_or_1,
            _ => 64 * rng.range(1, 3),
        };
        let start = (cursor + gap).div_ceil(elem_or_1) * elem_or_1;
        let (lo, hi) = if ok && shape.iter().all(|&s| s > 0) {
            element_span(shape, strides)
        } else {
            (0, 0)
        };
        let span = hi - lo + 1;
        // Strides that leave the address space: the call is refused, so one element will do.
        let (lo, span) = if span > 1 << 22 { (0, 1) } else { (lo, span) };
        let bytes = span as usize * elem_or_1;
        let base = start + (-lo) as usize * elem_or_1;
        cursor = start + bytes;
        (start, bytes, base)
    };

    let ndim_ok = (1..=8).contains(&ndim);
    let sizes_ok = ndim_ok && shape_ok && factor.iter().all(|&f| f > 0) && elem > 0;
    let (input_start, input_bytes, input_base) = place(&mut rng, &shape, &input_strides_used, sizes_ok);
    let mut input = Ptr::Arena(input_base as isize);

    // Outputs.
    let mip_shapes: Vec<Vec<usize>> = if sizes_ok {
        (1..=num_mips).map(|m| model_mip_shape(&shape, &factor, m)).collect()
    } else {
        vec![vec![1; axes]; num_mips]
    };
    let mut outputs = Vec::new();
    let mut output_strides = Vec::new();
    let mut regions = vec![(input_start, input_bytes)];
    let strides_table_null = rng.chance(2, 5);
    let mut packed_output = Ptr::Null;
    if packed {
        let total: usize = mip_shapes.iter().map(|s| s.iter().product::<usize>()).sum();
        let (start, bytes, _) = place(&mut rng, &[total.max(1)], &[1], true);
        packed_output = Ptr::Arena(start as isize);
        regions.push((start, bytes));
    } else {
        for mip_shape in &mip_shapes {
            let mut strides = layout_strides(&mut rng, mip_shape, false);
            if rng.chance(1, 60) {
                wild_strides(&mut rng, &mut strides);
                notes.push("wild output strides");
            }
            let entry_null = strides_table_null || (rng.chance(1, 4) && !strides.iter().any(|&s| s < 0));
            let used = if entry_null {
                fortran_strides(mip_shape)
            } else {
                strides.clone()
            };
            let (start, bytes, base) = place(&mut rng, mip_shape, &used, sizes_ok);
            outputs.push(Ptr::Arena(base as isize));
            output_strides.push(if entry_null { None } else { Some(strides) });
            regions.push((start, bytes));
        }
    }

    // Hostile pointers.
    if rng.chance(1, 50) {
        input = Ptr::Null;
        notes.push("NULL input");
    } else if rng.chance(1, 50) && elem > 1 {
        input = Ptr::Arena(input_base as isize + rng.range(1, elem - 1) as isize);
        notes.push("misaligned input");
    } else if rng.chance(1, 80) {
        input = Ptr::Raw(usize::MAX);
        notes.push("wild input pointer");
    }
    for (i, output) in outputs.iter_mut().enumerate() {
        match rng.below(120) {
            0 => {
                *output = Ptr::Null;
                notes.push("NULL output");
            }
            1 if elem > 1 => {
                if let Ptr::Arena(b) = *output {
                    *output = Ptr::Arena(b + rng.range(1, elem - 1) as isize);
                    notes.push("misaligned output");
                }
            }
            2..=4 => {
                // Alias: into another array's region (or the input's); regions[0] is the
                // input's, regions[i + 1] this output's own.
                let mut k = rng.below(regions.len() as u64 - 1) as usize;
                if k == i + 1 {
                    k = 0;
                }
                let (start, bytes) = regions[k];
                let at = start + rng.below((bytes / elem_or_1).max(1) as u64) as usize * elem_or_1;
                *output = Ptr::Arena(at as isize);
                notes.push("aliased output");
            }
            _ => {}
        }
    }
    if packed {
        match rng.below(60) {
            0 => {
                packed_output = Ptr::Null;
                notes.push("NULL packed output");
            }
            1 if elem > 1 => {
                if let Ptr::Arena(b) = packed_output {
                    packed_output = Ptr::Arena(b + rng.range(1, elem - 1) as isize);
                    notes.push("misaligned packed output");
                }
            }
            2 | 3 => {
                let at = input_start + rng.below((input_bytes / elem_or_1).max(1) as u64) as usize * elem_or_1;
                packed_output = Ptr::Arena(at as isize);
                notes.push("packed output overlaps input");
            }
            _ => {}
        }
    }
    let outputs_null = !packed && rng.chance(1, 80);
    if outputs_null {
        notes.push("NULL outputs array");
    }

    let mut arena = Arena::new(cursor + 256, ARENA_FILL);
    // Input values: fill the whole input region (elements and gaps alike).
    let style = rng.below(4);
    let fill_elem = elem_or_1;
    for chunk in arena.bytes_mut()[input_start..input_start + input_bytes].chunks_exact_mut(fill_elem) {
        fill_value(&mut rng, chunk, dtype, style);
    }

    let shape_null = rng.chance(1, 100);
    let factor_null = rng.chance(1, 100);
    if shape_null {
        notes.push("NULL shape");
    }
    if factor_null {
        notes.push("NULL factor");
    }
    let call = Call {
        op,
        packed,
        dtype,
        ndim,
        shape: if shape_null { None } else { Some(shape) },
        strides: if strides_null { None } else { Some(input_strides) },
        factor: if factor_null { None } else { Some(factor) },
        num_mips,
        flags,
        input,
        outputs: if outputs_null { None } else { Some(outputs) },
        output_strides: if strides_table_null { None } else { Some(output_strides) },
        packed_output,
    };
    Case { call, arena, notes }
}

// ─────────────────────────────── the model ───────────────────────────────

/// What the validation rules say about a call.
#[derive(Default, Debug)]
struct Verdict {
    /// Errors that apply: the call must fail with one of these (status, message word).
    errors: Vec<(i32, String)>,
    /// Errors the library may also report although the call is valid (its overlap test
    /// for output strides is deliberately conservative).
    allowed: Vec<(i32, String)>,
}

/// Byte range [first, end) of an array, or None if it leaves the address space.
fn byte_range(address: usize, shape: &[usize], strides: &[isize], elem: usize) -> Option<(u128, u128)> {
    let (lo, hi) = element_span(shape, strides);
    let first = address as i128 + lo * elem as i128;
    let end = address as i128 + (hi + 1) * elem as i128;
    if first < 0 || end > usize::MAX as i128 || end - first > isize::MAX as i128 {
        None
    } else {
        Some((first as u128, end as u128))
    }
}

/// Whether two elements of the array share an address (exact, by enumeration).
fn overlaps_itself(shape: &[usize], strides: &[isize]) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut dup = false;
    for_each_index(shape, |index| {
        if !seen.insert(offset_of(index, strides)) {
            dup = true;
        }
    });
    dup
}

/// The library's documented sufficient test: sorted by |stride|, each axis of size > 1
/// steps past everything the smaller ones cover.
fn nested_strides(shape: &[usize], strides: &[isize]) -> bool {
    let mut axes: Vec<(u128, u128)> = shape
        .iter()
        .zip(strides)
        .filter(|(&s, _)| s > 1)
        .map(|(&s, &st)| (st.unsigned_abs() as u128, s as u128))
        .collect();
    axes.sort_unstable();
    let mut covered = 1u128;
    for (stride, size) in axes {
        if stride < covered {
            return false;
        }
        covered += stride * (size - 1);
    }
    true
}

fn judge(call: &Call, arena_address: usize) -> Verdict {
    let mut errors: Vec<(i32, String)> = Vec::new();
    let mut allowed: Vec<(i32, String)> = Vec::new();
    macro_rules! err {
        ($status:expr, $word:expr) => {
            errors.push(($status, $word.to_string()))
        };
    }
    macro_rules! done {
        () => {
            return Verdict { errors, allowed }
        };
    }
    let op = call.op();
    let elem = elem_size(call.dtype);
    if elem == 0 {
        err!(E_DTYPE, "dtype");
    }
    if !(1..=8).contains(&call.ndim) {
        err!(E_SHAPE, "ndim");
    }
    if call.input == Ptr::Null {
        err!(E_NULL, "input");
    }
    if call.shape.is_none() {
        err!(E_NULL, "shape");
    }
    if call.factor.is_none() {
        err!(E_NULL, "factor");
    }
    if call.flags & !SPARSE != 0 {
        err!(E_UNSUPPORTED, "flag");
    }
    if call.flags & SPARSE != 0 && !op.sparse_ok {
        err!(E_UNSUPPORTED, "sparse");
    }
    if !(1..=8).contains(&call.ndim) {
        done!();
    }
    let mut shape_ok = false;
    if let Some(shape) = &call.shape {
        let mut count = Some(1usize);
        for (axis, &s) in shape.iter().enumerate() {
            if s == 0 {
                err!(E_SHAPE, format!("shape[{axis}]"));
            }
            count = count.and_then(|c| c.checked_mul(s));
        }
        let zero = shape.contains(&0);
        let bytes = count.and_then(|c| c.checked_mul(elem.max(1)));
        if !zero && bytes.is_none_or(|b| b > isize::MAX as usize) {
            err!(E_SHAPE, "shape");
        }
        shape_ok = !zero && bytes.is_some_and(|b| b <= isize::MAX as usize);
    }
    let mut factor_ok = false;
    if let Some(factor) = &call.factor {
        for (axis, &f) in factor.iter().enumerate() {
            if f == 0 {
                err!(E_FACTOR, format!("factor[{axis}]"));
            }
        }
        factor_ok = !factor.contains(&0);
    }
    if !(shape_ok && factor_ok && elem > 0) {
        done!();
    }
    let shape = call.shape.as_ref().unwrap();
    let factor = call.factor.as_ref().unwrap();

    // The input.
    let mut input_range = None;
    if let Some(address) = call.input.address(arena_address) {
        if address % elem != 0 {
            err!(E_STRIDES, "input");
        }
        input_range = byte_range(address, shape, &call.input_strides(), elem);
        if input_range.is_none() {
            err!(E_STRIDES, "input");
        }
    }

    // The outputs.
    if call.num_mips == 0 {
        done!();
    }
    let mut ranges: Vec<Option<(u128, u128)>> = Vec::new();
    if call.packed {
        let Some(address) = call.packed_output.address(arena_address) else {
            err!(E_NULL, "output");
            done!();
        };
        let total: Option<usize> = (1..=call.num_mips)
            .map(|m| model_mip_shape(shape, factor, m).iter().product::<usize>())
            .try_fold(0usize, |a, n| a.checked_add(n));
        if total
            .and_then(|t| t.checked_mul(elem))
            .is_none_or(|b| b > isize::MAX as usize)
        {
            err!(E_SHAPE, "mips");
            done!();
        }
        if address % elem != 0 {
            err!(E_STRIDES, "output");
        }
        let mut offset = 0usize;
        for m in 1..=call.num_mips {
            let mip = model_mip_shape(shape, factor, m);
            let r = byte_range(address.wrapping_add(offset * elem), &mip, &fortran_strides(&mip), elem);
            if r.is_none() {
                err!(E_STRIDES, "output");
            }
            ranges.push(r);
            offset += mip.iter().product::<usize>();
        }
    } else {
        let Some(outputs) = &call.outputs else {
            err!(E_NULL, "outputs");
            done!();
        };
        for (i, ptr) in outputs.iter().enumerate() {
            let name = format!("outputs[{i}]");
            let Some(address) = ptr.address(arena_address) else {
                err!(E_NULL, name);
                ranges.push(None);
                continue;
            };
            let mip = model_mip_shape(shape, factor, i + 1);
            let strides = call
                .output_strides
                .as_ref()
                .and_then(|t| t[i].clone())
                .unwrap_or_else(|| fortran_strides(&mip));
            if address % elem != 0 {
                err!(E_STRIDES, name);
            }
            let r = byte_range(address, &mip, &strides, elem);
            if r.is_none() {
                err!(E_STRIDES, name);
            } else if mip.iter().product::<usize>() > 1 << 16 {
                // Too many elements to enumerate (only in calls refused for other reasons):
                // the library's own sufficient test decides.
                if !nested_strides(&mip, &strides) {
                    err!(E_STRIDES, name);
                }
            } else if overlaps_itself(&mip, &strides) {
                err!(E_STRIDES, name);
            } else if !nested_strides(&mip, &strides) {
                allowed.push((E_STRIDES, name.clone()));
            }
            ranges.push(r);
        }
    }
    // Overlap, by byte range (the documented rule).
    if let Some((a0, a1)) = input_range {
        for r in ranges.iter().flatten() {
            if r.0 < a1 && a0 < r.1 {
                err!(E_OVERLAP, "overlaps the input");
            }
        }
    }
    for i in 0..ranges.len() {
        for j in i + 1..ranges.len() {
            if let (Some(a), Some(b)) = (ranges[i], ranges[j]) {
                if a.0 < b.1 && b.0 < a.1 {
                    err!(E_OVERLAP, "overlap");
                }
            }
        }
    }
    done!();
}

// ─────────────────────── a naive model of striding, min and max ───────────────────────

/// One element, decoded for comparison.
#[derive(Clone, Copy)]
enum Value {
    Int(i128),
    Float(f64),
}

fn decode(bytes: &[u8], dtype: i32) -> Value {
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    let u = u64::from_ne_bytes(b);
    match dtype {
        1..=4 => Value::Int(u as i128),
        5 => Value::Int(u as u8 as i8 as i128),
        6 => Value::Int(u as u16 as i16 as i128),
        7 => Value::Int(u as u32 as i32 as i128),
        8 => Value::Int(u as i64 as i128),
        9 => Value::Float(f32::from_bits(u as u32) as f64),
        _ => Value::Float(f64::from_bits(u)),
    }
}

fn is_nan(v: Value) -> bool {
    matches!(v, Value::Float(f) if f.is_nan())
}

/// `a` is strictly greater than `b` (neither is NaN).
fn greater(a: Value, b: Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x > y,
        (Value::Float(x), Value::Float(y)) => x > y,
        _ => unreachable!(),
    }
}

/// SEMANTICS.md "Min / max pooling, striding", written out naively on Fortran-ordered
/// bytes: mip k+1 from mip k; striding keeps the first element of each window; min and
/// max take the clipped window in scan order (axis 0 fastest), a NaN wins (the first one
/// met), and among equal values the first met is kept.
fn naive_pyramid(
    method: tinybrain::Method,
    dtype: i32,
    shape: &[usize],
    input: &[u8],
    factor: &[usize],
    num_mips: usize,
) -> Vec<Vec<u8>> {
    let elem = elem_size(dtype);
    let mut previous = input.to_vec();
    let mut previous_shape = shape.to_vec();
    let mut mips = Vec::new();
    for _ in 0..num_mips {
        let out_shape: Vec<usize> = previous_shape
            .iter()
            .zip(factor)
            .map(|(&s, &f)| s.div_ceil(f))
            .collect();
        let in_strides = fortran_strides(&previous_shape);
        let mut out = Vec::with_capacity(out_shape.iter().product::<usize>() * elem);
        for_each_index(&out_shape, |o| {
            let origin: Vec<usize> = o.iter().zip(factor).map(|(&i, &f)| i * f).collect();
            let extent: Vec<usize> = if method == Method::Stride {
                vec![1; o.len()]
            } else {
                origin
                    .iter()
                    .zip(factor)
                    .zip(&previous_shape)
                    .map(|((&start, &f), &s)| f.min(s - start))
                    .collect()
            };
            let mut best: Option<usize> = None;
            for_each_index(&extent, |w| {
                let index: Vec<usize> = origin.iter().zip(w).map(|(&a, &b)| a + b).collect();
                let at = offset_of(&index, &in_strides) as usize * elem;
                let Some(b) = best else {
                    best = Some(at);
                    return;
                };
                let (vb, v) = (
                    decode(&previous[b..b + elem], dtype),
                    decode(&previous[at..at + elem], dtype),
                );
                let better = if is_nan(vb) {
                    false
                } else if is_nan(v) {
                    true
                } else if method == Method::Max {
                    greater(v, vb)
                } else {
                    greater(vb, v)
                };
                if better {
                    best = Some(at);
                }
            });
            let b = best.expect("a window is never empty");
            out.extend_from_slice(&previous[b..b + elem]);
        });
        mips.push(out.clone());
        previous = out;
        previous_shape = out_shape;
    }
    mips
}

/// For striding, min and max: the safe API's result (which the C call matched) must also
/// match the naive model above.
fn check_against_naive_model(call: &Call, before: &[u8], arena_address: usize) -> Result<(), String> {
    let method = call.op().method;
    if !matches!(method, Method::Stride | Method::Min | Method::Max) {
        return Ok(());
    }
    let shape = call.shape.as_ref().unwrap();
    let factor = call.factor.as_ref().unwrap();
    let elem = elem_size(call.dtype);
    let input_offset = call.input.address(arena_address).unwrap() - arena_address;
    let input = gather(
        &Arena::from_bytes(before),
        input_offset,
        shape,
        &call.input_strides(),
        elem,
    );
    let api = reference(method, call.dtype, shape, &input, factor, call.num_mips, false)
        .map_err(|e| format!("the safe API failed: {e}"))?;
    let model = naive_pyramid(method, call.dtype, shape, &input, factor, call.num_mips);
    for (k, (a, m)) in api.iter().zip(&model).enumerate() {
        if a != m {
            let at = a.iter().zip(m).position(|(x, y)| x != y).unwrap_or(0) / elem;
            return Err(format!(
                "mip {} differs from the naive model at Fortran index {at}: {:?} vs model {:?}",
                k + 1,
                &a[at * elem..(at + 1) * elem],
                &m[at * elem..(at + 1) * elem]
            ));
        }
    }
    Ok(())
}

// ─────────────────────────────── running ───────────────────────────────

#[derive(Default)]
struct Tally {
    ok: usize,
    refused: usize,
    conservative: usize,
    conservative_seeds: Vec<u64>,
    /// Successful striding/min/max calls also checked against the naive model.
    naive_checked: usize,
    /// Seeds whose float averages were NaN with other bits than the safe API's.
    nan_seeds: Vec<u64>,
    /// First seed of each kind of hostile input (the generator's notes).
    first_of_note: std::collections::BTreeMap<&'static str, u64>,
    by_status: std::collections::BTreeMap<String, usize>,
}

/// Runs one case; returns a description of what went wrong, if anything.
fn run_case(seed: u64, tally: &mut Tally, verbose: bool) -> Result<(), String> {
    let Case { call, mut arena, notes } = generate(seed);
    let describe = || format!("seed {seed} ({}) {:?} notes {notes:?}", call.function_name(), call);
    if verbose {
        eprintln!("{}", describe());
    }
    for note in &notes {
        tally.first_of_note.entry(note).or_insert(seed);
    }
    let verdict = judge(&call, arena.address());
    let before = arena.bytes().to_vec();
    // SAFETY: calls the model finds valid touch only the arena (their arrays were placed
    // there); every other call carries an error the library must find before any access.
    let status = unsafe { call.run(&mut arena) };
    let message = last_error();
    *tally.by_status.entry(status_name(status)).or_default() += 1;
    let fail = |what: String| Err(format!("{what}\n    case: {}", describe()));
    if status == OK {
        tally.ok += 1;
        if !verdict.errors.is_empty() {
            return fail(format!("TB_OK, but these errors apply: {:?}", verdict.errors));
        }
        if !verdict.allowed.is_empty() {
            tally.conservative += 1;
            tally.conservative_seeds.push(seed);
        }
        return match check_success(&call, &before, &arena, reference) {
            Ok(nan) => {
                if nan {
                    tally.nan_seeds.push(seed);
                }
                tally.naive_checked += matches!(call.op().method, Method::Stride | Method::Min | Method::Max) as usize;
                check_against_naive_model(&call, &before, arena.address()).or_else(fail)
            }
            Err(e) => fail(format!("TB_OK, but {e}")),
        };
    }
    tally.refused += 1;
    if let Some(at) = before.iter().zip(arena.bytes()).position(|(a, b)| a != b) {
        return fail(format!("{} but byte {at} of the arena changed", status_name(status)));
    }
    if !message.starts_with(call.function_name()) {
        return fail(format!("message does not name the function: {message}"));
    }
    let matches = |list: &[(i32, String)]| list.iter().any(|(s, w)| *s == status && message.contains(w.as_str()));
    if matches(&verdict.errors) {
        return Ok(());
    }
    // The conservative self-overlap refusal is a legitimate reason in any case.
    if matches(&verdict.allowed) {
        tally.conservative += 1;
        tally.conservative_seeds.push(seed);
        return Ok(());
    }
    fail(format!(
        "{} ({message}) is not among the errors that apply: {:?} (allowed: {:?})",
        status_name(status),
        verdict.errors,
        verdict.allowed
    ))
}

fn corpus() -> Vec<(u64, String)> {
    let text = include_str!("fuzz_corpus.txt");
    text.lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (seed, note) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (
                seed.parse().expect("corpus lines start with a decimal seed"),
                note.trim().to_string(),
            )
        })
        .collect()
}

#[test]
fn fuzz_the_c_abi() {
    let iterations = env_u64("TB_FUZZ_ITERS", 100_000);
    let budget = Duration::from_secs(env_u64("TB_FUZZ_SECONDS", 20));
    let first_seed = env_u64("TB_FUZZ_SEED", 0x7B_F022);
    let verbose = std::env::var_os("TB_FUZZ_VERBOSE").is_some();
    let start = Instant::now();
    let mut tally = Tally::default();
    let mut failures = Vec::new();

    let corpus = corpus();
    for (seed, note) in &corpus {
        if let Err(e) = run_case(*seed, &mut tally, verbose) {
            failures.push(format!("corpus seed {seed} [{note}]: {e}"));
        }
    }
    let mut ran = 0u64;
    while ran < iterations && start.elapsed() < budget {
        let seed = first_seed.wrapping_add(ran);
        if let Err(e) = run_case(seed, &mut tally, verbose) {
            failures.push(e);
        }
        ran += 1;
    }
    println!(
        "fuzz: {} corpus + {ran} random cases (seeds {first_seed}..) in {:.1} s: {} TB_OK (checked against the safe API; {} striding/min/max also against a naive model), {} refused, {} where the conservative overlap test applied",
        corpus.len(),
        start.elapsed().as_secs_f64(),
        tally.ok,
        tally.naive_checked,
        tally.refused,
        tally.conservative
    );
    println!("fuzz: statuses {:?}", tally.by_status);
    println!(
        "fuzz: first seeds where the conservative overlap test applied: {:?}",
        &tally.conservative_seeds[..tally.conservative_seeds.len().min(8)]
    );
    println!(
        "fuzz: {} float averages were NaN with other NaN bits than the safe API's (tolerated), first seeds {:?}",
        tally.nan_seeds.len(),
        &tally.nan_seeds[..tally.nan_seeds.len().min(8)]
    );
    println!(
        "fuzz: first seed of each kind of hostile input: {:?}",
        tally.first_of_note
    );
    assert!(
        failures.is_empty(),
        "{} failing cases (add their seeds to tests/fuzz_corpus.txt once understood):\n{}",
        failures.len(),
        failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    // The generator must keep producing both outcomes, or it has silently degenerated.
    assert!(ran < 200 || (tally.ok * 5 > tally.ok + tally.refused && tally.refused * 20 > tally.ok + tally.refused));
}
