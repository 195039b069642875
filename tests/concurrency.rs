//! Many threads calling different C entry points at once, while another thread keeps
//! changing the worker-pool size with tb_set_num_threads and a third makes failing calls,
//! must give exactly the results of serial calls, and each thread must see only its own
//! error messages.
//!
//! This is the only test in this binary, because tb_set_num_threads is process-wide.
//! TB_CONCURRENCY_ROUNDS sets how many times each worker runs the whole job list
//! (default 20).

mod common;

use std::ffi::c_void;
use std::ptr::null;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use tinybrain::capi;

/// One call to make: operation, entry point, dtype, layout and pyramid.
#[derive(Clone, Debug)]
struct Job {
    op: usize,
    packed: bool,
    dtype: i32,
    shape: Vec<usize>,
    /// Input strides; the input is stored with these (C order or Fortran).
    c_order: bool,
    factor: Vec<usize>,
    num_mips: usize,
    flags: u32,
    input: Vec<u8>,
}

fn c_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![0isize; shape.len()];
    let mut step = 1isize;
    for axis in (0..shape.len()).rev() {
        strides[axis] = step;
        step *= shape[axis] as isize;
    }
    strides
}

impl Job {
    fn elem(&self) -> usize {
        elem_size(self.dtype)
    }

    fn mip_shapes(&self) -> Vec<Vec<usize>> {
        (1..=self.num_mips)
            .map(|m| model_mip_shape(&self.shape, &self.factor, m))
            .collect()
    }

    /// Runs the job; returns every mip as Fortran-ordered bytes.
    fn run(&self) -> Result<Vec<Vec<u8>>, String> {
        let elem = self.elem();
        let strides = if self.c_order {
            c_strides(&self.shape)
        } else {
            fortran_strides(&self.shape)
        };
        // u64 storage keeps every dtype aligned.
        let mut input = vec![0u64; self.input.len().div_ceil(8)];
        // SAFETY: byte copy into storage at least as large.
        unsafe {
            std::ptr::copy_nonoverlapping(self.input.as_ptr(), input.as_mut_ptr().cast::<u8>(), self.input.len())
        };
        let shapes = self.mip_shapes();
        let op = &OPS[self.op];
        let status;
        let mut mips: Vec<Vec<u64>> = Vec::new();
        if self.packed {
            let total: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
            let mut out = vec![0x5A5A_5A5A_5A5A_5A5Au64; (total * elem).div_ceil(8)];
            // SAFETY: input and output sized for the described arrays.
            status = unsafe {
                (op.packed)(
                    input.as_ptr().cast(),
                    self.dtype,
                    self.shape.len(),
                    self.shape.as_ptr(),
                    strides.as_ptr(),
                    self.factor.as_ptr(),
                    self.num_mips,
                    self.flags,
                    out.as_mut_ptr().cast(),
                )
            };
            mips.push(out);
        } else {
            // Odd mips are written in C order, to exercise the strided output path too.
            let out_strides: Vec<Vec<isize>> = shapes
                .iter()
                .enumerate()
                .map(|(m, s)| if m % 2 == 1 { c_strides(s) } else { fortran_strides(s) })
                .collect();
            for s in &shapes {
                mips.push(vec![
                    0x5A5A_5A5A_5A5A_5A5Au64;
                    (s.iter().product::<usize>() * elem).div_ceil(8)
                ]);
            }
            let pointers: Vec<*mut c_void> = mips.iter_mut().map(|m| m.as_mut_ptr().cast()).collect();
            let stride_pointers: Vec<*const isize> = out_strides.iter().map(|s| s.as_ptr()).collect();
            // SAFETY: as above, one buffer per mip.
            status = unsafe {
                (op.per_mip)(
                    input.as_ptr().cast(),
                    self.dtype,
                    self.shape.len(),
                    self.shape.as_ptr(),
                    strides.as_ptr(),
                    self.factor.as_ptr(),
                    self.num_mips,
                    self.flags,
                    pointers.as_ptr(),
                    stride_pointers.as_ptr(),
                )
            };
            // Back to Fortran order for comparison.
            for (m, buffer) in mips.iter_mut().enumerate() {
                if m % 2 == 1 {
                    let shape = &shapes[m];
                    let bytes = to_bytes(buffer);
                    let fortran = {
                        let strides = c_strides(shape);
                        let mut out = Vec::with_capacity(bytes.len());
                        for_each_index(shape, |index| {
                            let at = offset_of(index, &strides) as usize * elem;
                            out.extend_from_slice(&bytes[at..at + elem]);
                        });
                        out
                    };
                    *buffer = from_bytes(&fortran);
                }
            }
        }
        if status != OK {
            return Err(format!("{}: {}", status_name(status), last_error()));
        }
        if self.packed {
            let bytes = to_bytes(&mips[0]);
            let mut out = Vec::new();
            let mut at = 0;
            for s in &shapes {
                let n = s.iter().product::<usize>() * elem;
                out.push(bytes[at..at + n].to_vec());
                at += n;
            }
            Ok(out)
        } else {
            Ok(mips
                .iter()
                .zip(&shapes)
                .map(|(m, s)| to_bytes(m)[..s.iter().product::<usize>() * elem].to_vec())
                .collect())
        }
    }
}

fn to_bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

fn from_bytes(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_ne_bytes(w)
        })
        .collect()
}

/// (op, packed, dtype, shape, C-order input, factor, num_mips, flags)
type Spec = (usize, bool, i32, &'static [usize], bool, &'static [usize], usize, u32);

fn jobs() -> Vec<Job> {
    let mut rng = Rng(0xC0DE);
    #[rustfmt::skip]
    let specs: [Spec; 12] = [
        (0, false, 1, &[190, 170, 4], false, &[2, 2, 1], 3, 0),       // average u8 2x2 (shifted accumulator)
        (0, true, 2, &[64, 60, 18], true, &[2, 2, 2], 2, 0),          // average u16 2x2x2, C order input
        (0, false, 9, &[150, 130, 3], false, &[2, 2, 1], 3, 0),       // average f32 (exact mean in f64)
        (0, false, 7, &[99, 77, 5], true, &[3, 3, 1], 2, 0),          // average i32, mean of means
        (0, true, 1, &[128, 100, 4], false, &[2, 2, 1], 2, SPARSE),   // sparse average
        (1, false, 3, &[180, 160, 3], false, &[2, 2, 1], 3, 0),       // mode u32 2x2 rule
        (1, true, 8, &[60, 50, 20], true, &[2, 2, 2], 2, SPARSE),     // mode i64 2x2x2 sparse
        (1, false, 2, &[90, 81, 4], false, &[3, 3, 1], 2, 0),         // mode, general (exact counts)
        (2, false, 10, &[200, 150, 2], false, &[2, 2, 1], 3, 0),      // min f64
        (3, true, 6, &[170, 90, 6], true, &[2, 3, 2], 2, 0),          // max i16
        (4, false, 4, &[256, 200, 2], false, &[2, 2, 1], 4, 0),       // striding u64
        (4, true, 5, &[100, 100, 9], true, &[3, 2, 3], 2, 0),         // striding i8
    ];
    specs
        .iter()
        .map(|&(op, packed, dtype, shape, c_order, factor, num_mips, flags)| {
            let elem = elem_size(dtype);
            let n: usize = shape.iter().product();
            let mut input = vec![0u8; n * elem];
            let labels = op == 1;
            for chunk in input.chunks_exact_mut(elem) {
                // Labels: few distinct values (with zeros); images: finite, varied values.
                let v = if labels {
                    rng.below(5) as i64
                } else {
                    rng.below(250) as i64 - 20
                };
                match dtype {
                    9 => chunk.copy_from_slice(&(v as f32 * 0.37).to_ne_bytes()),
                    10 => chunk.copy_from_slice(&(v as f64 * 0.37).to_ne_bytes()),
                    1 if flags & SPARSE != 0 => chunk[0] = if rng.chance(1, 3) { 0 } else { v as u8 },
                    _ => chunk.copy_from_slice(&v.to_ne_bytes()[..elem]),
                }
            }
            Job {
                op,
                packed,
                dtype,
                shape: shape.to_vec(),
                c_order,
                factor: factor.to_vec(),
                num_mips,
                flags,
                input,
            }
        })
        .collect()
}

#[test]
fn concurrent_calls_with_pool_resizes_match_serial_results() {
    let rounds = std::env::var("TB_CONCURRENCY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20usize);
    let jobs = Arc::new(jobs());

    // Serial results, with one worker thread.
    assert_eq!(capi::tb_set_num_threads(1), OK);
    assert_eq!(capi::tb_get_num_threads(), 1);
    let expected: Vec<Vec<Vec<u8>>> = jobs
        .iter()
        .map(|j| j.run().unwrap_or_else(|e| panic!("{j:?}: {e}")))
        .collect();
    // Serial again with more threads than cores: the same bytes.
    assert_eq!(capi::tb_set_num_threads(5), OK);
    for (j, want) in jobs.iter().zip(&expected) {
        assert!(j.run().unwrap() == *want, "5 threads differ from 1 on {j:?}");
    }
    let expected = Arc::new(expected);

    let stop = Arc::new(AtomicBool::new(false));
    let resizes = Arc::new(AtomicUsize::new(0));
    let error_calls = Arc::new(AtomicUsize::new(0));

    // Resizes the pool while the workers run.
    let resizer = {
        let stop = stop.clone();
        let resizes = resizes.clone();
        std::thread::spawn(move || {
            let sizes = [2usize, 1, 4, 0, 3, 8, 1, 2];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = sizes[i % sizes.len()];
                assert_eq!(capi::tb_set_num_threads(n), OK, "{}", last_error());
                let now = capi::tb_get_num_threads();
                assert!(now >= 1, "tb_get_num_threads() = {now}");
                resizes.fetch_add(1, Ordering::Relaxed);
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(3));
            }
        })
    };

    // Fails on purpose, over and over, and checks its messages are its own.
    let failer = {
        let stop = stop.clone();
        let error_calls = error_calls.clone();
        std::thread::spawn(move || {
            let shape = [4usize, 4];
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let bad_factor = [2usize, 0];
                let byte = [0u8; 16];
                let op = &OPS[k % OPS.len()];
                // SAFETY: refused (factor[1] is 0) before any buffer is touched.
                let status = unsafe {
                    (op.per_mip)(
                        byte.as_ptr().cast(),
                        1,
                        2,
                        shape.as_ptr(),
                        null(),
                        bad_factor.as_ptr(),
                        1,
                        0,
                        null(),
                        null(),
                    )
                };
                assert_eq!(status, E_FACTOR);
                let message = last_error();
                assert!(
                    message.starts_with(op.name) && message.contains("factor[1]"),
                    "another thread's message leaked in: {message}"
                );
                error_calls.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
        })
    };

    let workers = 8;
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let jobs = jobs.clone();
            let expected = expected.clone();
            std::thread::spawn(move || {
                let mut done = 0;
                for round in 0..rounds {
                    for k in 0..jobs.len() {
                        // Each worker walks the list from its own starting point, so
                        // different operations run at the same moment.
                        let j = (k + w * 5 + round) % jobs.len();
                        let got = jobs[j].run().unwrap_or_else(|e| panic!("worker {w}, job {j}: {e}"));
                        assert!(
                            got == expected[j],
                            "worker {w}, round {round}: job {j} ({:?}) differs from the serial result",
                            &jobs[j].shape
                        );
                        done += 1;
                    }
                }
                // This thread never failed a call: its message must still be empty.
                assert_eq!(last_error(), "", "worker {w} sees a message it did not cause");
                done
            })
        })
        .collect();
    let calls: usize = handles.into_iter().map(|h| h.join().expect("worker")).sum();
    stop.store(true, Ordering::Relaxed);
    resizer.join().expect("resizer");
    failer.join().expect("failer");
    assert_eq!(capi::tb_set_num_threads(0), OK);

    let resizes = resizes.load(Ordering::Relaxed);
    let failures = error_calls.load(Ordering::Relaxed);
    println!(
        "{calls} concurrent calls from {workers} threads matched the serial results, during {resizes} pool resizes and {failures} failing calls on another thread"
    );
    assert_eq!(calls, workers * rounds * jobs.len());
    assert!(resizes >= 5, "the pool was resized only {resizes} times during the run");
    assert!(failures >= 5);
}
