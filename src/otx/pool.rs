//! The OTX pool: the `AVOTX_CONCURRENCY` threads of a dedicated rayon pool,
//! taking OTX exchanges from one queue per tenant, in turn.
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
//!
//! Fairness (SPEC §8): with one first-come-first-served queue, a tenant's
//! 20 000-observable `/observe` put 20 000 exchanges ahead of any other
//! tenant's lookup, which then waited for all of them (22.9 s measured).
//! So each tenant (a hash of its OTX key, never the key) has its own FIFO
//! queue, and a free thread takes the next job of the next tenant in turn
//! (round robin by jobs, a job being one exchange): a tenant's lookup waits
//! for at most one job of each other busy tenant, and a huge request costs
//! its own tenant time, not everyone's. Jobs of one tenant keep their order.
//!
//! No job may wait for another job that is still queued: with fewer threads
//! than waiting jobs that would deadlock. None does: the caches'
//! single-flight makes a job wait only for a fetch already running on
//! another thread (its leader is the job that fetches), and only the HTTP
//! workers wait for pool jobs ([`Pool::run`], the fan-out's collection).

use std::collections::hash_map::{Entry, HashMap};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::log;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Whose work a job is: a hash of the tenant's OTX key (the `Session`'s
/// tenant), so that the pool never holds the key itself.
pub type Tenant = [u8; 32];

/// The queued jobs: each tenant's FIFO, and the tenants in turn.
#[derive(Default)]
struct Jobs {
    /// The tenants with queued jobs, each once, the next to serve first.
    turns: VecDeque<Tenant>,
    /// Each tenant's jobs; a tenant is here exactly when it is in `turns`
    /// (an emptied queue is removed, so idle tenants cost nothing).
    queues: HashMap<Tenant, VecDeque<Job>>,
}

impl Jobs {
    fn push(&mut self, tenant: &Tenant, job: Job) {
        match self.queues.entry(*tenant) {
            Entry::Occupied(mut queue) => queue.get_mut().push_back(job),
            Entry::Vacant(vacant) => {
                vacant.insert(VecDeque::from([job]));
                self.turns.push_back(*tenant);
            }
        }
    }

    /// The next tenant's oldest job; that tenant goes to the back of the
    /// turns if it has more.
    fn pop(&mut self) -> Option<Job> {
        while let Some(tenant) = self.turns.pop_front() {
            let Entry::Occupied(mut queue) = self.queues.entry(tenant) else {
                continue;
            };
            let job = queue.get_mut().pop_front();
            if queue.get().is_empty() {
                queue.remove();
            } else {
                self.turns.push_back(tenant);
            }
            if job.is_some() {
                return job;
            }
        }
        None
    }
}

#[derive(Default)]
struct Queue {
    jobs: Mutex<Jobs>,
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
                    if let Some(job) = jobs.pop() {
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

    /// Runs `job` on a pool thread, when one is free and `tenant`'s turn
    /// has come.
    pub fn spawn(&self, tenant: &Tenant, job: impl FnOnce() + Send + 'static) {
        lock(&self.queue.jobs).push(tenant, Box::new(job));
        self.queue.ready.notify_one();
    }

    /// Runs `work` for `tenant` on a pool thread and waits for its result;
    /// `None` if it panicked. Never from a pool job (see the module docs).
    pub fn run<T: Send + 'static>(
        &self,
        tenant: &Tenant,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        self.spawn(tenant, move || {
            let _ = tx.send(work());
        });
        rx.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const A: Tenant = [b'a'; 32];
    const B: Tenant = [b'b'; 32];
    const C: Tenant = [b'c'; 32];

    #[test]
    fn jobs_run_at_most_n_at_a_time_and_panics_are_contained() {
        let pool = Pool::new(2).expect("a pool");
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (tx, rx) = mpsc::channel();
        for _ in 0..6 {
            let (running, peak, tx) = (running.clone(), peak.clone(), tx.clone());
            pool.spawn(&A, move || {
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
        assert_eq!(pool.run(&A, || -> u8 { panic!("a job panics") }), None);
        assert_eq!(pool.run(&B, || 7), Some(7), "and the pool serves on");
    }

    /// The order in which one pool thread runs `queued` (tenant, label)
    /// jobs, all queued while the thread is busy with another job.
    fn order(queued: &[(Tenant, &'static str)]) -> Vec<&'static str> {
        let pool = Pool::new(1).expect("a pool");
        let (started, gate) = (mpsc::channel(), mpsc::channel::<()>());
        let (started_tx, gate_rx) = (started.0, gate.1);
        pool.spawn(&A, move || {
            let _ = started_tx.send(());
            let _ = gate_rx.recv();
        });
        started.1.recv().expect("the first job runs");
        let (ran_tx, ran_rx) = mpsc::channel();
        for &(tenant, label) in queued {
            let ran_tx = ran_tx.clone();
            pool.spawn(&tenant, move || ran_tx.send(label).expect("the test waits"));
        }
        drop(gate.0);
        queued
            .iter()
            .map(|_| ran_rx.recv().expect("each job ran"))
            .collect()
    }

    #[test]
    fn a_tenant_queued_behind_another_tenants_hundred_jobs_runs_second() {
        let mut queued = vec![(A, "a"); 100];
        queued.push((B, "b"));
        let ran = order(&queued);
        assert_eq!(ran.iter().position(|l| *l == "b"), Some(1), "{ran:?}");
        assert_eq!(ran.len(), 101);
    }

    #[test]
    fn tenants_take_turns_and_each_keeps_its_order() {
        let queued = [
            (A, "a1"),
            (A, "a2"),
            (A, "a3"),
            (B, "b1"),
            (B, "b2"),
            (C, "c1"),
            (A, "a4"),
        ];
        let ran = order(&queued);
        assert_eq!(ran, ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]);
    }

    #[test]
    fn an_emptied_tenant_queues_again_at_the_back() {
        let mut jobs = Jobs::default();
        let job = || -> Job { Box::new(|| {}) };
        jobs.push(&A, job());
        jobs.push(&B, job());
        assert!(jobs.pop().is_some());
        assert_eq!(jobs.turns, [B]);
        assert!(!jobs.queues.contains_key(&A), "an empty queue is dropped");
        jobs.push(&A, job());
        assert_eq!(jobs.turns, [B, A]);
        assert!(jobs.pop().is_some() && jobs.pop().is_some());
        assert!(jobs.pop().is_none());
        assert!(jobs.turns.is_empty() && jobs.queues.is_empty());
    }
}
