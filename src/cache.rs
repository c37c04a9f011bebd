//! A TTL + LRU cache with single-flight, for OTX answers.
//!
//! [`Memo::get_or_fetch`] answers from the cache when it can; otherwise the
//! first caller for a key fetches while every concurrent caller for the same
//! key waits for that one result (single-flight). Successes are cached,
//! errors are handed to the waiters but never cached. Keys are SHA-256
//! digests that the caller builds from the tenant (a hash of its OTX key)
//! and the request, so one tenant's answers never serve another.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use crate::metrics::Lookup;

/// A cache key: SHA-256 of tenant and request.
pub type Key = [u8; 32];

/// A cache of `V` with single-flight fetches.
pub struct Memo<V> {
    ttl: Duration,
    max_entries: usize,
    lru: Mutex<Lru<V>>,
    flights: Mutex<HashMap<Key, Arc<Flight<V>>>>,
}

struct Lru<V> {
    entries: HashMap<Key, (V, Instant, u64)>,
    /// Last-use tick → key; the smallest tick is evicted first.
    order: BTreeMap<u64, Key>,
    tick: u64,
}

type Outcome<V, E> = Option<Result<V, E>>;

struct Flight<V> {
    // The error is carried as a boxed Any so one map serves every error type.
    result: Mutex<Outcome<V, Arc<dyn std::any::Any + Send + Sync>>>,
    done: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent in a
    // way that matters more than serving on, so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<V: Clone + Send + Sync + 'static> Memo<V> {
    /// A zero `ttl` or `max_entries` turns caching off; single-flight
    /// still applies.
    pub fn new(ttl: Duration, max_entries: usize) -> Memo<V> {
        Memo {
            ttl,
            max_entries,
            lru: Mutex::new(Lru {
                entries: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
            }),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The cached value of `key`, fresh, if any.
    pub fn get(&self, key: &Key) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut lru = lock(&self.lru);
        let lru = &mut *lru;
        let (value, stored, last) = lru.entries.get_mut(key)?;
        if stored.elapsed() >= self.ttl {
            let last = *last;
            lru.order.remove(&last);
            lru.entries.remove(key);
            return None;
        }
        lru.tick += 1;
        lru.order.remove(last);
        *last = lru.tick;
        lru.order.insert(lru.tick, *key);
        Some(value.clone())
    }

    fn put(&self, key: Key, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut lru = lock(&self.lru);
        let lru = &mut *lru;
        lru.tick += 1;
        if let Some((_, _, last)) = lru.entries.insert(key, (value, Instant::now(), lru.tick)) {
            lru.order.remove(&last);
        }
        lru.order.insert(lru.tick, key);
        while lru.entries.len() > self.max_entries {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            lru.entries.remove(&oldest);
        }
    }

    /// Number of cached entries (fresh or not yet evicted).
    pub fn len(&self) -> usize {
        lock(&self.lru).entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached value, or the result of one shared `fetch`.
    pub fn get_or_fetch<E>(&self, key: Key, fetch: impl FnOnce() -> Result<V, E>) -> Result<V, E>
    where
        E: Clone + Send + Sync + 'static,
    {
        self.lookup(key, fetch).0
    }

    /// [`Memo::get_or_fetch`], and how the answer came: from the cache,
    /// from this caller's fetch, or from another caller's.
    pub fn lookup<E>(
        &self,
        key: Key,
        fetch: impl FnOnce() -> Result<V, E>,
    ) -> (Result<V, E>, Lookup)
    where
        E: Clone + Send + Sync + 'static,
    {
        if let Some(v) = self.get(&key) {
            return (Ok(v), Lookup::Hit);
        }
        let (flight, leader) = {
            let mut flights = lock(&self.flights);
            match flights.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    // A leader may have stored its value and left between our
                    // cache miss above and this lock: do not fetch again.
                    if let Some(v) = self.get(&key) {
                        return (Ok(v), Lookup::Hit);
                    }
                    let f = Arc::new(Flight {
                        result: Mutex::new(None),
                        done: Condvar::new(),
                    });
                    flights.insert(key, f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            let mut result = lock(&flight.result);
            while result.is_none() {
                result = flight
                    .done
                    .wait(result)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            return match result.as_ref() {
                Some(Ok(v)) => (Ok(v.clone()), Lookup::Shared),
                Some(Err(e)) => match e.downcast_ref::<E>() {
                    Some(e) => (Err(e.clone()), Lookup::Shared),
                    // Another error type under the same key cannot happen
                    // (keys are per request kind); fetch ourselves if it does.
                    None => (fetch(), Lookup::Miss),
                },
                None => (fetch(), Lookup::Miss),
            };
        }

        // The leader. A guard finishes the flight even if `fetch` panics, so
        // waiters are never stranded.
        struct Finish<'a, V: Clone + Send + Sync + 'static> {
            memo: &'a Memo<V>,
            key: Key,
            flight: Arc<Flight<V>>,
            outcome: Outcome<V, Arc<dyn std::any::Any + Send + Sync>>,
        }
        impl<V: Clone + Send + Sync + 'static> Drop for Finish<'_, V> {
            fn drop(&mut self) {
                lock(&self.memo.flights).remove(&self.key);
                let outcome = self.outcome.take().unwrap_or_else(|| {
                    Err(Arc::new("the fetch panicked") as Arc<dyn std::any::Any + Send + Sync>)
                });
                *lock(&self.flight.result) = Some(outcome);
                // Out of the map, the flight can gain no waiter: with none
                // holding it, the wake-up (a futex call on every fetch)
                // is skipped.
                if Arc::strong_count(&self.flight) > 1 {
                    self.flight.done.notify_all();
                }
            }
        }
        let mut finish = Finish {
            memo: self,
            key,
            flight,
            outcome: None,
        };
        let result = fetch();
        match &result {
            Ok(v) => {
                self.put(key, v.clone());
                finish.outcome = Some(Ok(v.clone()));
            }
            Err(e) => finish.outcome = Some(Err(Arc::new(e.clone()))),
        }
        drop(finish);
        (result, Lookup::Miss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(n: u8) -> Key {
        [n; 32]
    }

    #[test]
    fn caches_successes_not_errors() {
        let memo: Memo<u32> = Memo::new(Duration::from_secs(60), 10);
        let calls = AtomicUsize::new(0);
        let fetch = |v: Result<u32, String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            v
        };
        assert_eq!(
            memo.get_or_fetch(key(1), || fetch(Err("boom".into()))),
            Err("boom".into())
        );
        assert_eq!(memo.get_or_fetch(key(1), || fetch(Ok(7))), Ok(7));
        assert_eq!(memo.get_or_fetch(key(1), || fetch(Ok(8))), Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn ttl_zero_disables() {
        let memo: Memo<u32> = Memo::new(Duration::ZERO, 10);
        assert_eq!(memo.get_or_fetch::<()>(key(1), || Ok(1)), Ok(1));
        assert_eq!(memo.get_or_fetch::<()>(key(1), || Ok(2)), Ok(2));
        assert!(memo.is_empty());
    }

    #[test]
    fn expires() {
        let memo: Memo<u32> = Memo::new(Duration::from_millis(30), 10);
        assert_eq!(memo.get_or_fetch::<()>(key(1), || Ok(1)), Ok(1));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(memo.get_or_fetch::<()>(key(1), || Ok(2)), Ok(2));
    }

    #[test]
    fn least_recently_used_goes_first() {
        let memo: Memo<u32> = Memo::new(Duration::from_secs(60), 2);
        for n in 1..=2 {
            memo.get_or_fetch::<()>(key(n), || Ok(n.into())).unwrap();
        }
        assert_eq!(memo.get(&key(1)), Some(1)); // 1 is now newer than 2
        memo.get_or_fetch::<()>(key(3), || Ok(3)).unwrap();
        assert_eq!(memo.len(), 2);
        assert_eq!(memo.get(&key(2)), None);
        assert_eq!(memo.get(&key(1)), Some(1));
        assert_eq!(memo.get(&key(3)), Some(3));
    }

    #[test]
    fn single_flight() {
        let memo: Arc<Memo<u32>> = Arc::new(Memo::new(Duration::ZERO, 10));
        let calls = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (memo, calls) = (memo.clone(), calls.clone());
                std::thread::spawn(move || {
                    memo.get_or_fetch::<()>(key(9), || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(42)
                    })
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), Ok(42));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panicking_leader_does_not_strand_waiters() {
        let memo: Arc<Memo<u32>> = Arc::new(Memo::new(Duration::ZERO, 10));
        let m = memo.clone();
        let leader = std::thread::spawn(move || {
            m.get_or_fetch::<String>(key(5), || {
                std::thread::sleep(Duration::from_millis(100));
                panic!("leader fails");
            })
        });
        std::thread::sleep(Duration::from_millis(20));
        let waiter = memo.get_or_fetch::<String>(key(5), || Ok(3));
        assert!(leader.join().is_err());
        assert_eq!(waiter, Ok(3));
    }
}
