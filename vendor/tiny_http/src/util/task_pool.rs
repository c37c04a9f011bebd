use std::collections::VecDeque;
use std::io::Write; // otx-relay patch: for the spawn failure message
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// Manages a collection of threads.
///
/// A new thread is created every time all the existing threads are full.
/// Any idle thread will automatically die after a few seconds.
pub struct TaskPool {
    sharing: Arc<Sharing>,
}

struct Sharing {
    // list of the tasks to be done by worker threads
    todo: Mutex<VecDeque<Box<dyn FnMut() + Send>>>,

    // condvar that will be notified whenever a task is added to `todo`
    condvar: Condvar,

    // number of total worker threads running
    active_tasks: AtomicUsize,

    // number of idle worker threads
    waiting_tasks: AtomicUsize,
}

/// otx-relay patch: locks the task queue even if a thread panicked while
/// holding it (upstream unwrapped, so one panic poisoned the pool, and with
/// it the accept loop, for good). The queue itself is always consistent:
/// nothing panics between its pushes and pops.
fn lock_todo(
    todo: &Mutex<VecDeque<Box<dyn FnMut() + Send>>>,
) -> MutexGuard<'_, VecDeque<Box<dyn FnMut() + Send>>> {
    todo.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Minimum number of active threads.
static MIN_THREADS: usize = 4;

struct Registration<'a> {
    nb: &'a AtomicUsize,
}

impl<'a> Registration<'a> {
    fn new(nb: &'a AtomicUsize) -> Registration<'a> {
        nb.fetch_add(1, Ordering::Release);
        Registration { nb }
    }
}

impl<'a> Drop for Registration<'a> {
    fn drop(&mut self) {
        self.nb.fetch_sub(1, Ordering::Release);
    }
}

impl TaskPool {
    pub fn new() -> TaskPool {
        let pool = TaskPool {
            sharing: Arc::new(Sharing {
                todo: Mutex::new(VecDeque::new()),
                condvar: Condvar::new(),
                active_tasks: AtomicUsize::new(0),
                waiting_tasks: AtomicUsize::new(0),
            }),
        };

        for _ in 0..MIN_THREADS {
            pool.add_thread(None)
        }

        pool
    }

    /// Executes a function in a thread.
    /// If no thread is available, spawns a new one.
    pub fn spawn(&self, code: Box<dyn FnMut() + Send>) {
        let mut queue = lock_todo(&self.sharing.todo); // otx-relay patch: poison-tolerant

        // otx-relay patch: queue a task only for an idle thread that no task
        // already queued has claimed. Upstream queued whenever one thread was
        // idle, so a burst of connections could queue several tasks for that
        // one thread; each task serves a keep-alive connection for its whole
        // life, so the others waited until some connection closed (a client
        // got no answer for the whole of a 60 s soak).
        if self.sharing.waiting_tasks.load(Ordering::Acquire) <= queue.len() {
            // otx-relay patch: no thread is created while the queue is
            // locked (a slow or failed spawn must not block the workers).
            drop(queue);
            self.add_thread(Some(code));
        } else {
            queue.push_back(code);
            self.sharing.condvar.notify_one();
        }
    }

    fn add_thread(&self, initial_fn: Option<Box<dyn FnMut() + Send>>) {
        let sharing = self.sharing.clone();

        // otx-relay patch: `thread::spawn` panics when the OS refuses a
        // thread (RLIMIT_NPROC, memory); that panic ran in the accept
        // thread and ended the listener for good while the process lived
        // on. Now the task is dropped instead (for a connection: it is
        // closed) and the pool, and the accept loop, go on.
        let spawned = thread::Builder::new().spawn(move || {
            let sharing = sharing;
            let _active_guard = Registration::new(&sharing.active_tasks);

            if let Some(mut f) = initial_fn {
                f();
            }

            loop {
                let mut task: Box<dyn FnMut() + Send> = {
                    let mut todo = lock_todo(&sharing.todo); // otx-relay patch

                    let task;
                    loop {
                        if let Some(poped_task) = todo.pop_front() {
                            task = poped_task;
                            break;
                        }
                        let _waiting_guard = Registration::new(&sharing.waiting_tasks);

                        let received =
                            if sharing.active_tasks.load(Ordering::Acquire) <= MIN_THREADS {
                                // otx-relay patch: poison-tolerant.
                                todo = sharing
                                    .condvar
                                    .wait(todo)
                                    .unwrap_or_else(PoisonError::into_inner);
                                true
                            } else {
                                let (new_lock, waitres) = sharing
                                    .condvar
                                    .wait_timeout(todo, Duration::from_millis(5000))
                                    // otx-relay patch: poison-tolerant.
                                    .unwrap_or_else(PoisonError::into_inner);
                                todo = new_lock;
                                !waitres.timed_out()
                            };

                        if !received && todo.is_empty() {
                            return;
                        }
                    }

                    task
                };

                task();
            }
        });
        if let Err(e) = spawned {
            // The closure, and with it `initial_fn`, has been dropped.
            log::error!("cannot start a connection thread, dropping its task: {}", e);
            // Written to stderr too, since the relay installs no `log`
            // backend; never `eprintln!`, which panics if stderr fails.
            let _ = writeln!(
                std::io::stderr(),
                "ERROR cannot start a connection thread ({}): a connection was closed unanswered",
                e
            );
        }
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.sharing
            .active_tasks
            .store(999_999_999, Ordering::Release);
        self.sharing.condvar.notify_all();
    }
}
