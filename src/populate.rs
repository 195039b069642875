//! Fresh output buffers backed by memory on every thread of a call at once.
//!
//! A buffer the caller has just allocated (numpy's large arrays, a large `malloc`) is
//! mapped but not yet backed: the OS backs each page on its first write and zeroes it
//! there (2 MiB at a time with transparent huge pages). Left to the kernels, those first
//! writes come from the tiles, which every thread takes in turn across the same region,
//! so two threads fault on the same huge page and one waits while the other zeroes it.
//! Measured on the Intel guest (family 6 model 167, one call per array, medians of 9):
//! the first writes cost f32 2x2x1 averaging (64 MiB of output) 8.0 ms on one thread and
//! still 7.6 ms on two, u64 2x2x1 mode (32 MiB) 3.8 ms on one and 5.7 on two.
//!
//! So before the kernels run on more than one thread, each thread asks the OS to back
//! its own runs of 2 MiB-aligned pages (`MADV_POPULATE_WRITE`, which faults pages in as
//! a write would, without writing), and the zeroing runs on all of them side by side.
//! The contents are left as they are, so a call that fails later has still written
//! nothing. One thread gains nothing from it, and outputs already backed (written
//! before) are left alone: asking again would walk their pages for nothing.

use ndarray::ArrayViewMutD;

use crate::threads;

/// Outputs smaller than this in all are left to fault in as they are written: their
/// faults (about 0.1 ms per MiB on one thread) come near the cost of handing work to
/// the pool and back (50-100 us), and below 32 MiB glibc mostly hands out heap memory
/// that earlier calls have backed already. Not measured below 16 MiB.
const MIN_BYTES: usize = 8 << 20;

/// Runs that go to one thread: a transparent huge page, so that two threads never fault
/// on the same one.
const RUN_BYTES: usize = 2 << 20;

/// Backs the unbacked memory of `outputs` on all of the call's threads, where that pays:
/// more than one thread, outputs in contiguous memory, `MIN_BYTES` or more. Best effort:
/// where the OS cannot (another OS, an older Linux, memory it refuses), the kernels'
/// writes fault the pages in as before.
pub(crate) fn fresh_outputs<T>(outputs: &mut [ArrayViewMutD<'_, T>]) {
    if threads::current_threads() < 2 {
        return;
    }
    let spans: Vec<(usize, usize)> = outputs
        .iter_mut()
        .filter_map(|out| out.as_slice_memory_order_mut())
        .map(|slice| (slice.as_mut_ptr() as usize, std::mem::size_of_val(slice)))
        .collect();
    back_spans(&spans);
}

/// The work of `fresh_outputs` on (address, bytes) spans; not generic, so compiled once.
fn back_spans(spans: &[(usize, usize)]) {
    if spans.iter().map(|&(_, bytes)| bytes).sum::<usize>() < MIN_BYTES {
        return;
    }
    // Outputs written before (backed whole, nearly always) are told apart by their
    // first page, here on the calling thread: handing work to the pool for nothing
    // would cost two thread wake-ups.
    let fresh = spans
        .iter()
        .filter_map(|&(start, bytes)| runs_of(start, bytes).next())
        .any(|(start, _)| !os::is_backed(start));
    if !fresh {
        return;
    }
    let runs: Vec<(usize, usize)> = spans.iter().flat_map(|&(start, bytes)| runs_of(start, bytes)).collect();
    threads::for_each_init(runs, || (), |_, (start, bytes)| os::back_if_unbacked(start, bytes));
}

/// `start .. start + bytes` cut at multiples of `RUN_BYTES`, trimmed to whole pages (a
/// partial page at either end is shared with memory that is not the output's).
fn runs_of(start: usize, bytes: usize) -> impl Iterator<Item = (usize, usize)> {
    let page = os::page_size();
    let first = start.next_multiple_of(page);
    let end = (start + bytes) / page * page;
    let mut at = first;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let next = (at + 1).next_multiple_of(RUN_BYTES).min(end);
        let run = (at, next - at);
        at = next;
        Some(run)
    })
}

#[cfg(target_os = "linux")]
mod os {
    use std::sync::OnceLock;

    pub fn page_size() -> usize {
        static SIZE: OnceLock<usize> = OnceLock::new();
        // SAFETY: sysconf has no preconditions.
        *SIZE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            size if size > 0 => size as usize,
            _ => 4096,
        })
    }

    /// Whether the page at `start` (page-aligned, inside an output) is backed by memory.
    pub fn is_backed(start: usize) -> bool {
        let mut resident = 0u8;
        // SAFETY: `start` is page-aligned and its page lies inside the caller's output
        // (see `runs_of`); mincore writes one byte per page asked about, here one.
        let known = unsafe { libc::mincore(start as *mut libc::c_void, page_size(), &mut resident) } == 0;
        known && resident & 1 == 1
    }

    /// Backs the page-aligned run `start .. start + bytes` unless its first page is backed
    /// already (outputs are backed whole or not at all, nearly always: written before, or
    /// freshly mapped).
    pub fn back_if_unbacked(start: usize, bytes: usize) {
        if is_backed(start) {
            return;
        }
        // SAFETY: the run lies inside an output the call holds exclusively; populating
        // faults its pages in without changing their contents. Errors (an OS without
        // MADV_POPULATE_WRITE, memory it refuses) leave the pages to fault in later.
        unsafe {
            libc::madvise(start as *mut libc::c_void, bytes, libc::MADV_POPULATE_WRITE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    pub fn page_size() -> usize {
        4096
    }

    pub fn is_backed(_start: usize) -> bool {
        true
    }

    pub fn back_if_unbacked(_start: usize, _bytes: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_the_whole_pages_of_a_span_and_end_at_run_boundaries() {
        let page = os::page_size();
        let start = 3 * RUN_BYTES - 5 * page + 16;
        let bytes = 2 * RUN_BYTES + 7 * page;
        let runs: Vec<_> = runs_of(start, bytes).collect();
        let first = start.next_multiple_of(page);
        let end = (start + bytes) / page * page;
        assert_eq!(runs.first().unwrap().0, first);
        let mut at = first;
        for &(run_start, run_bytes) in &runs {
            assert_eq!(run_start, at, "runs follow each other");
            assert!(run_bytes > 0 && run_bytes <= RUN_BYTES);
            at += run_bytes;
            assert!(
                at == end || at % RUN_BYTES == 0,
                "a run ends at a run boundary or the end"
            );
        }
        assert_eq!(at, end);
        assert_eq!(runs.len(), 4);
        assert!(runs_of(page + 1, page).next().is_none(), "no whole page");
    }

    /// A fresh anonymous mapping, as a large numpy array or `malloc` gets: backed after
    /// `back_spans`, its contents unchanged (a page written before keeps its bytes, and
    /// the runs whose first page was unbacked are backed whole).
    #[cfg(target_os = "linux")]
    #[test]
    fn fresh_memory_is_backed_with_its_contents_unchanged() {
        let bytes = 4 * RUN_BYTES;
        let page = os::page_size();
        // SAFETY: an anonymous private mapping, unmapped at the end of the test.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let resident = |at: usize| {
            let mut flag = 0u8;
            // SAFETY: `at` is a page of the mapping; one byte out.
            assert_eq!(
                unsafe { libc::mincore((base as usize + at) as *mut libc::c_void, page, &mut flag) },
                0
            );
            flag & 1 == 1
        };
        // SAFETY: inside the mapping, which nothing else uses.
        let memory = unsafe { std::slice::from_raw_parts_mut(base.cast::<u8>(), bytes) };
        let marked = RUN_BYTES + 3 * page + 5;
        memory[marked] = 0xA5;
        assert!(!resident(0) && !resident(2 * RUN_BYTES), "fresh pages start unbacked");
        back_spans(&[(base as usize, bytes)]);
        for at in (0..bytes).step_by(page) {
            assert!(resident(at), "page at {at} backed");
        }
        assert_eq!(memory[marked], 0xA5);
        assert_eq!(memory.iter().filter(|&&b| b != 0).count(), 1, "nothing else written");
        // SAFETY: the mapping made above, no longer used.
        assert_eq!(unsafe { libc::munmap(base, bytes) }, 0);
    }
}
