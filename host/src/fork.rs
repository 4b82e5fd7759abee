//! Fork safety: a forked child never inherits a lock another thread held.
//!
//! `fork()` copies only the calling thread. Had another thread been inside
//! the store (holding its connection mutex, the hit buffer, SQLite's own
//! mutexes) or inside the core (its instance pool), the child would find
//! those locked forever and hang at its first call. So every such section
//! is *entered* ([`enter`], or [`lock`] for a mutex), and a `pthread_atfork`
//! prepare handler stops new entries and waits (up to [`PREPARE_WAIT`]) for
//! the sections in flight to leave before the fork proceeds; both sides then
//! carry on. Sections are short (microseconds to a SQLite transaction) and
//! never call back into the program, so the wait is short and cannot
//! deadlock. Entering is reentrant per thread.
//!
//! [`generation`] changes in every child, so per-process resources (the
//! SQLite connection, the hit writer and cloud threads, the HTTP client) are
//! rebuilt there instead of used.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bumped in every forked child.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Threads inside a section (outermost entries only).
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// A fork is being prepared: no new entries.
static FORKING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// How deep this thread is in sections.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// How long a fork waits for sections in flight before it goes ahead anyway.
pub const PREPARE_WAIT: Duration = Duration::from_secs(5);

fn inside() -> usize {
    DEPTH.with(|depth| usize::from(depth.get() > 0))
}

extern "C" fn prepare() {
    FORKING.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + PREPARE_WAIT;
    // The forking thread's own section (if it forks from inside one) is not waited for.
    let own = inside();
    while ACTIVE.load(Ordering::SeqCst) > own && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(50));
    }
}

extern "C" fn parent() {
    FORKING.store(false, Ordering::SeqCst);
}

extern "C" fn child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    // Only this thread exists here.
    ACTIVE.store(inside(), Ordering::SeqCst);
    FORKING.store(false, Ordering::SeqCst);
}

fn register() {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // SAFETY: the handlers touch only atomics, this thread's TLS and the clock.
        #[cfg(unix)]
        unsafe {
            libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
        }
    });
}

/// This process's fork generation: it changes in every forked child.
pub fn generation() -> u64 {
    register();
    GENERATION.load(Ordering::SeqCst)
}

/// A section a fork waits for; left when dropped (on the same thread).
pub struct Entered {
    _not_send: PhantomData<*const ()>,
}

/// Enters a section (waiting while a fork is being prepared).
pub fn enter() -> Entered {
    register();
    DEPTH.with(|depth| {
        if depth.get() == 0 {
            loop {
                while FORKING.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_micros(50));
                }
                ACTIVE.fetch_add(1, Ordering::SeqCst);
                if !FORKING.load(Ordering::SeqCst) {
                    break;
                }
                ACTIVE.fetch_sub(1, Ordering::SeqCst);
            }
        }
        depth.set(depth.get() + 1);
    });
    Entered { _not_send: PhantomData }
}

impl Drop for Entered {
    fn drop(&mut self) {
        DEPTH.with(|depth| {
            let left = depth.get() - 1;
            depth.set(left);
            if left == 0 {
                ACTIVE.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
}

/// A mutex guard inside a section: the mutex is released before the section is left.
pub struct Locked<'a, T> {
    guard: MutexGuard<'a, T>,
    _entered: Entered,
}

impl<T> Deref for Locked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// Locks `mutex` inside a section (a poisoned mutex is used as it is: the
/// data it guards stays consistent at every await-free step here).
pub fn lock<T>(mutex: &Mutex<T>) -> Locked<'_, T> {
    let entered = enter();
    Locked { guard: mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner()), _entered: entered }
}
