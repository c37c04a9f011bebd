//! Loads and their figures, for the bench and the soak: closed-loop
//! keep-alive clients, the relay's peak memory meanwhile, percentiles and a
//! table of results.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::procfs::{fd_count, reset_peak, status_kib, thread_count};
use crate::{lock, Client};

/// What `run` measured.
pub struct Load<T> {
    /// Each call's latency and result, in no particular order.
    pub calls: Vec<(Duration, T)>,
    pub elapsed: Duration,
    /// The relay's peak RSS in bytes: the kernel's `VmHWM` where it can be
    /// reset (root), else the highest of samples every 50 ms.
    pub peak_rss: u64,
    /// The relay's most threads and open descriptors, of the samples.
    pub peak_threads: u64,
    pub peak_fds: usize,
}

impl<T> Load<T> {
    pub fn per_second(&self) -> f64 {
        self.calls.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latencies, sorted, for `percentile`.
    pub fn latencies(&self) -> Vec<Duration> {
        let mut times: Vec<Duration> = self.calls.iter().map(|(t, _)| *t).collect();
        times.sort();
        times
    }
}

/// `clients` threads for `length`, each calling `call(&mut client, n)` in a
/// loop on a keep-alive client of its own (made by `client`); `n` counts
/// the calls of all threads, so that a call can make its request unique.
/// The relay's memory, threads and descriptors are sampled every 50 ms.
pub fn run<T: Send>(
    pid: u32,
    clients: usize,
    length: Duration,
    client: impl Fn() -> Client + Sync,
    call: impl Fn(&mut Client, u64) -> T + Sync,
) -> Load<T> {
    let (stop, count) = (AtomicBool::new(false), AtomicU64::new(0));
    let results = Mutex::new(vec![]);
    let (exact, started, mut sampled) = (reset_peak(pid), Instant::now(), 0);
    let (mut peak_threads, mut peak_fds) = (0, 0);
    thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let (mut client, mut mine) = (client(), Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let result = call(&mut client, count.fetch_add(1, Ordering::Relaxed));
                    mine.push((t.elapsed(), result));
                }
                lock(&results).append(&mut mine);
            });
        }
        while started.elapsed() < length {
            thread::sleep(Duration::from_millis(50));
            sampled = sampled.max(status_kib(pid, "VmRSS").unwrap_or(0));
            peak_threads = peak_threads.max(thread_count(pid).unwrap_or(0));
            peak_fds = peak_fds.max(fd_count(pid).unwrap_or(0));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let hwm = exact.then(|| status_kib(pid, "VmHWM")).flatten();
    Load {
        calls: results.into_inner().unwrap_or_else(|p| p.into_inner()),
        elapsed: started.elapsed(),
        peak_rss: hwm.unwrap_or(0).max(sampled) * 1024,
        peak_threads,
        peak_fds,
    }
}

/// The `q` quantile (0..=1) of `sorted`, by the nearest-rank method.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or_default()
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// `f` run up to `n` times, and no more once `limit` has passed: the
/// latencies, sorted.
pub fn timed(n: usize, limit: Duration, mut f: impl FnMut(usize)) -> Vec<Duration> {
    let started = Instant::now();
    let mut times: Vec<Duration> = (0..n)
        .take_while(|_| started.elapsed() < limit)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect();
    times.sort();
    times
}

/// Rows of metric, value, goal and whether the goal holds, printed as a
/// Markdown table.
#[derive(Default)]
pub struct Table {
    rows: RefCell<Vec<[String; 4]>>,
    failed: Cell<bool>,
}

impl Table {
    /// A figure with no goal.
    pub fn note(&self, metric: &str, value: String) {
        self.row([metric, &value, "", ""]);
    }

    /// A figure, its goal and whether it holds.
    pub fn goal(&self, metric: &str, value: String, goal: &str, holds: bool) {
        self.row([metric, &value, goal, if holds { "yes" } else { "NO" }]);
    }

    /// A goal that must hold: `failed` tells whether one did not.
    pub fn check(&self, metric: &str, value: String, goal: &str, holds: bool) {
        self.goal(metric, value, goal, holds);
        self.failed.set(self.failed.get() || !holds);
    }

    pub fn failed(&self) -> bool {
        self.failed.get()
    }

    fn row(&self, row: [&str; 4]) {
        self.rows.borrow_mut().push(row.map(String::from));
    }

    pub fn print(&self) {
        let mut rows = vec![["metric", "value", "goal", "ok?"].map(String::from)];
        rows.extend(self.rows.borrow().iter().cloned());
        let widths: [usize; 4] =
            std::array::from_fn(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0));
        rows.insert(1, widths.map(|w| "-".repeat(w)));
        for row in rows {
            let cells = row.iter().zip(widths).map(|(cell, w)| format!("{cell:w$}"));
            println!("| {} |", cells.collect::<Vec<_>>().join(" | "));
        }
    }
}
