//! The worker pool. rayon's global pool cannot be resized, so the library keeps its own,
//! one per size asked for (the last four sizes), and switches when the caller asks for
//! another size. A call's own thread works next to the pool's workers, so a pool for
//! N threads starts N - 1 of them.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{Error, ErrorKind, Result};

/// A thread count and the workers that run next to a call's own thread: `threads - 1`
/// of them (none for one thread), since the calling thread takes work too (see
/// `for_each_init`).
struct Pool {
    threads: usize,
    workers: Option<ThreadPool>,
}

/// The pools built so far and the one calls use now.
static POOLS: RwLock<PoolCache> = RwLock::new(PoolCache::new());

/// Pools of other sizes kept alive for a switch back (their threads sleep).
const KEPT_POOLS: usize = 4;

/// Environment variable read once for the default thread count.
pub const NUM_THREADS_ENV: &str = "TINYBRAIN_NUM_THREADS";

fn default_threads() -> usize {
    std::env::var(NUM_THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build(threads: usize) -> Result<Arc<Pool>> {
    let workers = if threads > 1 {
        let pool = ThreadPoolBuilder::new()
            .num_threads(threads - 1)
            .thread_name(|i| format!("tinybrain-{i}"))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("cannot start {} worker threads: {e}", threads - 1),
                )
            })?;
        Some(pool)
    } else {
        None
    };
    Ok(Arc::new(Pool { threads, workers }))
}

/// The pools of the last few sizes asked for, the one in use last. Switching back to a
/// size used before reuses its sleeping threads instead of starting new ones, so a
/// program (or a benchmark) that alternates thread counts does not time each call on
/// threads that have just been started.
struct PoolCache {
    pools: Vec<Arc<Pool>>,
}

impl PoolCache {
    const fn new() -> Self {
        PoolCache { pools: Vec::new() }
    }

    fn current(&self) -> Option<&Arc<Pool>> {
        self.pools.last()
    }

    /// Makes the pool of `threads` workers the current one, building it if no kept pool
    /// has that size, and drops the least recently used pools beyond `KEPT_POOLS`.
    fn select(&mut self, threads: usize, build: impl FnOnce(usize) -> Result<Arc<Pool>>) -> Result<()> {
        let pool = match self.pools.iter().position(|p| p.threads == threads) {
            Some(i) => self.pools.remove(i),
            None => build(threads)?,
        };
        self.pools.push(pool);
        if self.pools.len() > KEPT_POOLS {
            self.pools.remove(0);
        }
        Ok(())
    }
}

fn pool() -> Result<Arc<Pool>> {
    if let Some(pool) = POOLS.read().unwrap_or_else(|e| e.into_inner()).current() {
        return Ok(pool.clone());
    }
    let mut pools = POOLS.write().unwrap_or_else(|e| e.into_inner());
    if pools.current().is_none() {
        pools.select(default_threads(), build)?;
    }
    Ok(pools.current().expect("just selected").clone())
}

/// Sets the number of worker threads for later calls (0 = the default: the
/// `TINYBRAIN_NUM_THREADS` environment variable, else one per core). Calls already
/// running keep the pool they started with.
pub fn set_num_threads(threads: usize) -> Result<()> {
    let threads = if threads == 0 { default_threads() } else { threads };
    POOLS.write().unwrap_or_else(|e| e.into_inner()).select(threads, build)
}

/// The number of worker threads calls use now.
pub fn num_threads() -> usize {
    pool().map_or(1, |p| p.threads)
}

thread_local! {
    /// The pool of the call this thread is running (see `install`).
    static CALL_POOL: RefCell<Option<Arc<Pool>>> = const { RefCell::new(None) };
}

/// Puts back the pool a thread had before, when dropped.
struct Restore(Option<Arc<Pool>>);

impl Drop for Restore {
    fn drop(&mut self) {
        CALL_POOL.set(self.0.take());
    }
}

/// Runs one call's work on the calling thread, with the pool of the moment for its
/// parallel parts (`for_each_init`): the call keeps that pool to its end, whatever
/// `set_num_threads` does meanwhile.
pub(crate) fn install<R>(work: impl FnOnce() -> Result<R>) -> Result<R> {
    let _restore = Restore(CALL_POOL.replace(Some(pool()?)));
    work()
}

/// The number of threads the running call's work is spread over.
pub(crate) fn current_threads() -> usize {
    CALL_POOL.with_borrow(|pool| pool.as_ref().map_or(1, |pool| pool.threads))
}

/// `task` on every item, with a state from `init` per thread, on the running call's
/// pool; a single item, or a pool of one worker, runs on the calling thread. Handing
/// work to a pool and waiting for it costs two thread wake-ups (50-100 us measured on a
/// 2-vCPU VM, the time one thread takes to average a 1 MiB mip), so calls too small to
/// split stay on the caller's thread. Where an item runs never changes its result.
///
/// The calling thread takes items too, next to the pool's `threads - 1` workers, all
/// from one queue in order. Had it handed all the work over and slept (rayon's
/// `install`), the scheduler often woke the second worker on the first one's core, and
/// on a 2-vCPU VM a third to a half of 2-thread calls then ran on one core (measured:
/// 9 ms where two cores take 5). A caller that keeps running leaves the woken worker
/// only the idle core.
pub(crate) fn for_each_init<Item: Send, State>(
    items: Vec<Item>,
    init: impl Fn() -> State + Sync + Send,
    task: impl Fn(&mut State, Item) + Sync + Send,
) {
    let count = items.len();
    let queue = Mutex::new(items.into_iter());
    let work = || {
        let mut state = init();
        loop {
            // Its own statement, so the lock is let go before the task runs.
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some(item) = next else { break };
            task(&mut state, item);
        }
    };
    run_on_call_pool(count, &work);
}

/// Runs `work` on the calling thread and on as many of the call's pool's workers as
/// `items` can keep busy, all at once, and returns when every one has returned.
///
/// Not generic, so that rayon's scope and job code is compiled into the library once:
/// inside `for_each_init`, every caller's closures made a copy of it (549 copies; with
/// the thread-local and unwinding code around them, 10% of the library's LLVM IR). A
/// dynamic call per thread costs nothing next to the work.
fn run_on_call_pool(items: usize, work: &(dyn Fn() + Sync)) {
    let pool = CALL_POOL.with_borrow(|pool| pool.clone());
    let (workers, helpers) = match pool.as_deref() {
        Some(Pool {
            threads,
            workers: Some(workers),
        }) => (Some(workers), (threads - 1).min(items.saturating_sub(1))),
        _ => (None, 0),
    };
    let serial_work = || {
        // A task that starts parallel work of its own runs it on its own thread: the
        // pool's threads are already busy with this call's other items.
        let _serial = Restore(CALL_POOL.take());
        work();
    };
    match workers {
        Some(workers) if helpers > 0 => workers.in_place_scope(|scope| {
            for _ in 0..helpers {
                scope.spawn(|_| serial_work());
            }
            serial_work();
        }),
        _ => serial_work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};
    use std::thread::ThreadId;
    use std::time::Duration;

    /// Runs `f` as a call on a private pool of `threads` workers (the global pool is
    /// left alone: other tests run calls at the same time).
    fn on_pool<R>(threads: usize, f: impl FnOnce() -> R) -> R {
        let previous = CALL_POOL.replace(Some(build(threads).unwrap()));
        let result = f();
        CALL_POOL.set(previous);
        result
    }

    /// (item, thread it ran on, that thread's name) for every item, in the order run.
    fn record(items: usize) -> Vec<(usize, ThreadId, Option<String>)> {
        let seen = Mutex::new(Vec::new());
        for_each_init(
            (0..items).collect(),
            || (),
            |_, item| {
                let me = std::thread::current();
                seen.lock().unwrap().push((item, me.id(), me.name().map(str::to_owned)));
            },
        );
        seen.into_inner().unwrap()
    }

    #[test]
    fn many_items_on_a_pool_of_several_run_once_each_on_the_caller_and_its_workers() {
        for threads in [2, 3] {
            many_items_run_once_each_on_the_caller_and_workers(threads);
        }
    }

    fn many_items_run_once_each_on_the_caller_and_workers(threads: usize) {
        let caller = std::thread::current().id();
        // The first two items wait for each other, so two threads must take items at once.
        let arrived = (Mutex::new(0), Condvar::new());
        let seen = Mutex::new(Vec::new());
        on_pool(threads, || {
            for_each_init(
                (0..100).collect(),
                || (),
                |_, item: usize| {
                    if item < 2 {
                        let (count, wake) = &arrived;
                        let mut count = count.lock().unwrap();
                        *count += 1;
                        wake.notify_all();
                        let (_count, waited) = wake
                            .wait_timeout_while(count, Duration::from_secs(10), |count| *count < 2)
                            .unwrap();
                        assert!(!waited.timed_out(), "no second thread took an item");
                    }
                    let me = std::thread::current();
                    seen.lock().unwrap().push((item, me.id(), me.name().map(str::to_owned)));
                },
            )
        });
        let seen = seen.into_inner().unwrap();
        let mut items: Vec<usize> = seen.iter().map(|s| s.0).collect();
        items.sort_unstable();
        assert_eq!(items, (0..100).collect::<Vec<_>>());
        for (item, thread, name) in &seen {
            let name = name.as_deref().unwrap_or("");
            assert!(
                *thread == caller || name.starts_with("tinybrain-"),
                "item {item} ran on {name:?}"
            );
        }
        assert_eq!(on_pool(threads, current_threads), threads);
    }

    #[test]
    fn a_task_runs_its_own_parallel_work_on_its_own_thread() {
        let inner = Mutex::new(Vec::new());
        on_pool(2, || {
            for_each_init(
                (0..8).collect(),
                || (),
                |_, item: usize| {
                    assert_eq!(current_threads(), 1, "item {item}");
                    let me = std::thread::current().id();
                    for_each_init(
                        (0..4).collect(),
                        || (),
                        |_, _: usize| inner.lock().unwrap().push((me, std::thread::current().id())),
                    );
                },
            );
            // Outside the tasks, the call's pool is back.
            assert_eq!(current_threads(), 2);
        });
        let inner = inner.into_inner().unwrap();
        assert_eq!(inner.len(), 32);
        assert!(inner.iter().all(|(task, item)| task == item));
    }

    #[test]
    fn a_pool_for_n_threads_starts_n_minus_one_workers() {
        assert!(build(1).unwrap().workers.is_none());
        for threads in [2, 3, 5] {
            let pool = build(threads).unwrap();
            assert_eq!(pool.threads, threads);
            assert_eq!(
                pool.workers.as_ref().map(|w| w.current_num_threads()),
                Some(threads - 1)
            );
        }
    }

    #[test]
    fn one_item_or_one_worker_runs_in_order_on_the_calling_thread() {
        let caller = std::thread::current().id();
        for (threads, items) in [(3, 1), (1, 1), (1, 50), (2, 0)] {
            let seen = on_pool(threads, || record(items));
            let order: Vec<usize> = seen.iter().map(|s| s.0).collect();
            assert_eq!(
                order,
                (0..items).collect::<Vec<_>>(),
                "{threads} threads, {items} items"
            );
            assert!(seen.iter().all(|s| s.1 == caller), "{threads} threads, {items} items");
        }
        assert_eq!(on_pool(1, current_threads), 1);
    }

    #[test]
    fn switching_back_to_a_size_reuses_its_pool_and_only_the_last_few_are_kept() {
        let mut cache = PoolCache::new();
        let mut built = Vec::new();
        let mut select = |cache: &mut PoolCache, threads| {
            cache
                .select(threads, |n| {
                    built.push(n);
                    build(n)
                })
                .unwrap();
            cache.current().unwrap().clone()
        };
        let two = select(&mut cache, 2);
        select(&mut cache, 1);
        assert!(Arc::ptr_eq(&select(&mut cache, 2), &two));
        for threads in [3, 4, 5] {
            assert_eq!(select(&mut cache, threads).threads, threads);
        }
        // 1 was used least recently and has gone; 2 is still kept.
        assert!(Arc::ptr_eq(&select(&mut cache, 2), &two));
        select(&mut cache, 1);
        assert_eq!(built, [2, 1, 3, 4, 5, 1]);
        assert_eq!(cache.pools.len(), KEPT_POOLS);
    }

    #[test]
    fn outside_a_call_work_stays_on_the_calling_thread() {
        let caller = std::thread::current().id();
        let seen = record(10);
        assert_eq!(seen.len(), 10);
        assert!(seen.iter().all(|s| s.1 == caller));
        assert_eq!(current_threads(), 1);
    }
}
