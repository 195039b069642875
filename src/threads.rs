//! The worker pool. rayon's global pool cannot be resized, so the library keeps its own
//! and replaces it when the caller asks for another size.

use std::sync::{Arc, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{Error, ErrorKind, Result};

static POOL: RwLock<Option<Arc<ThreadPool>>> = RwLock::new(None);

/// Environment variable read once for the default thread count.
pub const NUM_THREADS_ENV: &str = "TINYBRAIN_NUM_THREADS";

fn default_threads() -> usize {
    std::env::var(NUM_THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build(threads: usize) -> Result<Arc<ThreadPool>> {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("tinybrain-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot start {threads} worker threads: {e}"),
            )
        })
}

fn pool() -> Result<Arc<ThreadPool>> {
    if let Some(pool) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return Ok(pool.clone());
    }
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(build(default_threads())?);
    }
    Ok(slot.as_ref().expect("just filled").clone())
}

/// Sets the number of worker threads for later calls (0 = the default: the
/// `TINYBRAIN_NUM_THREADS` environment variable, else one per core). Calls already
/// running keep the pool they started with.
pub fn set_num_threads(threads: usize) -> Result<()> {
    let threads = if threads == 0 { default_threads() } else { threads };
    let new_pool = build(threads)?;
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = Some(new_pool);
    Ok(())
}

/// The number of worker threads calls use now.
pub fn num_threads() -> usize {
    pool().map_or(1, |p| p.current_num_threads())
}

pub(crate) fn install<R: Send>(work: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    pool()?.install(work)
}
