//! The fork guard: no lock of ours or of SQLite's is held across `fork()`.
//!
//! A fork child inherits every mutex in the state it had at the fork, but only the forking
//! thread. If another thread held a store's lock, or was inside SQLite's VFS (which takes a
//! process-wide mutex to open shared memory), the child's first use of a vault waits forever:
//! data-loader workers forked while a parent thread reads or writes hung that way (29 of 40
//! children reusing the parent's vault, 7 of 300 opening their own, before this guard).
//!
//! So every thread counts itself in ([`StoreUse`]) before it takes a store's lock and out after
//! it released it, and a pending fork (`before_fork`, from `pthread_atfork`) stops new entries,
//! waits until only the forking thread's own uses remain, and then takes SQLite's VFS and
//! memory mutexes itself, releasing them on both sides after the fork. A counted thread
//! blocked on the lock gets it from a counted holder that finishes its operation; a thread
//! waiting for another thread's explicit transaction (whose owner may be the one forking) lets
//! go of both while a fork is pending.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// Set from just before a `fork()` until it returns.
static FORKING: AtomicBool = AtomicBool::new(false);
/// Store uses in progress, in every thread.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's uses in progress (a thread that forks while holding a store does not
    /// wait for itself).
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// One thread's use of a store (or of a connection of its own, such as the checkpoint
/// thread's), counted while it lasts.
#[derive(Debug)]
pub(crate) struct StoreUse(());

impl StoreUse {
    /// Counts a use in, waiting out a pending fork (for callers that hold nothing yet).
    pub(crate) fn enter() -> Self {
        loop {
            if let Some(used) = Self::try_enter() {
                return used;
            }
            wait_for_fork();
        }
    }

    /// Counts a use in, unless a fork is pending (then the caller lets go of what it holds,
    /// waits with [`wait_for_fork`], and tries again).
    pub(crate) fn try_enter() -> Option<Self> {
        install();
        IN_USE.fetch_add(1, Ordering::SeqCst);
        // Sequentially consistent on both sides: either this sees FORKING, or the forking
        // thread sees this count and waits for it.
        if FORKING.load(Ordering::SeqCst) {
            IN_USE.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        HELD.with(|held| held.set(held.get() + 1));
        Some(Self(()))
    }
}

impl Drop for StoreUse {
    fn drop(&mut self) {
        HELD.with(|held| held.set(held.get().saturating_sub(1)));
        IN_USE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a fork is pending.
pub(crate) fn pending() -> bool {
    FORKING.load(Ordering::SeqCst)
}

/// Waits while a fork is pending.
pub(crate) fn wait_for_fork() {
    while FORKING.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
}

fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: the handlers touch atomics and SQLite's static mutexes only.
        unsafe {
            libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork));
        }
    });
}

/// SQLite's process-wide mutexes a child could find locked, in SQLite's own order (the VFS
/// mutex is held while allocating, never the other way round).
fn sqlite_mutexes() -> [*mut rusqlite::ffi::sqlite3_mutex; 2] {
    // SAFETY: static mutexes exist once SQLite is initialized, which opening a store did
    // before any use could be counted; alloc of a static id only returns its address.
    unsafe {
        [
            rusqlite::ffi::sqlite3_mutex_alloc(rusqlite::ffi::SQLITE_MUTEX_STATIC_VFS1),
            rusqlite::ffi::sqlite3_mutex_alloc(rusqlite::ffi::SQLITE_MUTEX_STATIC_MEM),
        ]
    }
}

extern "C" fn before_fork() {
    FORKING.store(true, Ordering::SeqCst);
    let own = HELD.with(Cell::get);
    while IN_USE.load(Ordering::SeqCst) > own {
        std::thread::yield_now();
    }
    for mutex in sqlite_mutexes() {
        if !mutex.is_null() {
            // SAFETY: a valid static mutex; released in `after_fork` by this same thread.
            unsafe { rusqlite::ffi::sqlite3_mutex_enter(mutex) };
        }
    }
}

extern "C" fn after_fork() {
    for mutex in sqlite_mutexes().into_iter().rev() {
        if !mutex.is_null() {
            // SAFETY: entered by this thread in `before_fork` (in the child, the same thread
            // continues).
            unsafe { rusqlite::ffi::sqlite3_mutex_leave(mutex) };
        }
    }
    FORKING.store(false, Ordering::SeqCst);
}
