//! The OTX pool: the `AVOTX_CONCURRENCY` threads of a dedicated rayon pool,
//! taking OTX exchanges from one queue.
//!
//! Every exchange blocks on the network for most of its life. Handed to
//! rayon one job each, every job's end left its thread spinning through
//! rayon's idle rounds (yielding and trying to steal from every other
//! thread) before it slept, and the cost grew with the pool. So each pool
//! thread runs one long-lived job that sleeps on a condition variable
//! between exchanges: no thread is ever idle in rayon's sense, nothing
//! spins, and the pool stays a bounded rayon pool (its threads and names).
//! Measured with `make bench` (cold phase, 32 threads, 2026-11-30): relay
//! CPU per cold `/observe` 7.8 / 8.4 / 8.6 ms with one rayon job per
//! exchange, 4.8 / 4.9 / 5.8 ms this way.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::log;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Queue {
    /// What each pool thread does, for the life of the process.
    fn serve(&self) {
        loop {
            let job = {
                let mut jobs = lock(&self.jobs);
                loop {
                    if let Some(job) = jobs.pop_front() {
                        break job;
                    }
                    jobs = self
                        .ready
                        .wait(jobs)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            // A panicking job costs its own result, not the thread.
            if catch_unwind(AssertUnwindSafe(job)).is_err() {
                log::error(format_args!("an OTX job panicked"));
            }
        }
    }
}

/// The pool.
pub struct Pool {
    queue: Arc<Queue>,
    // Owns the threads; never waited on (they serve until the process ends).
    _threads: rayon::ThreadPool,
}

impl Pool {
    pub fn new(threads: usize) -> Result<Pool, String> {
        let rayon = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("otx-{i}"))
            .build()
            .map_err(|e| format!("cannot start the OTX thread pool: {e}"))?;
        let queue = Arc::new(Queue::default());
        for _ in 0..threads {
            let queue = queue.clone();
            rayon.spawn(move || queue.serve());
        }
        Ok(Pool {
            queue,
            _threads: rayon,
        })
    }

    /// Runs `job` on a pool thread, when one is free.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        lock(&self.queue.jobs).push_back(Box::new(job));
        self.queue.ready.notify_one();
    }

    /// Runs `work` on a pool thread and waits for its result; `None` if it
    /// panicked.
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        self.spawn(move || {
            let _ = tx.send(work());
        });
        rx.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn jobs_run_at_most_n_at_a_time_and_panics_are_contained() {
        let pool = Pool::new(2).expect("a pool");
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (tx, rx) = mpsc::channel();
        for _ in 0..6 {
            let (running, peak, tx) = (running.clone(), peak.clone(), tx.clone());
            pool.spawn(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(());
            });
        }
        for _ in 0..6 {
            rx.recv().expect("each job ran");
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(pool.run(|| -> u8 { panic!("a job panics") }), None);
        assert_eq!(pool.run(|| 7), Some(7), "and the pool serves on");
    }
}
