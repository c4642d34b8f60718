//! The store shared by a vault, its columns, readers and writers, and the rule that makes
//! explicit transactions safe with threads: while one thread has a transaction open, other
//! threads wait (with the GIL released) instead of slipping their operations into it.
//!
//! Stores opened here keep a read lease (`Store::read_latest_with`): reads in quick succession
//! share one read transaction instead of taking the WAL read lock each. A lease that outlives
//! [`READ_LEASE`] is ended by the next read, or, when the store goes idle, by a small thread per
//! store (the reaper), so an idle process never holds back other connections' checkpoints for
//! more than a few milliseconds.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, OnceLock, PoisonError, TryLockError, Weak};
use std::time::Duration;

use kvault::Store;

/// Longest a read lease is kept. Reads in quick succession share it (a lock and a snapshot
/// less each, about 0.6 µs of a 2 µs point read); an idle store's lease is ended after about
/// this long (up to twice it) by the reaper.
pub const READ_LEASE: Duration = Duration::from_millis(2);

/// A store plus the condition variable signalled when an explicit transaction ends.
pub struct Shared {
    store: Mutex<Store>,
    transaction_ended: Condvar,
    /// Whether the reaper was woken for the current lease; set and cleared with the store
    /// locked, so a new lease is never left unwatched.
    lease_watched: AtomicBool,
    /// The reaper thread, started on the first lease. A store inherited by a fork child never
    /// leases there (the child's connection has no commit token), so it needs none.
    reaper: Mutex<Option<std::thread::Thread>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Wake the reaper so it sees the store is gone and exits.
        let reaper = self
            .reaper
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(thread) = reaper.take() {
            thread.unpark();
        }
    }
}

/// A store shared by Python objects.
pub type SharedStore = Arc<Shared>;

/// Wraps a freshly opened store.
pub fn share(store: Store) -> SharedStore {
    Arc::new(Shared {
        store: Mutex::new(store),
        transaction_ended: Condvar::new(),
        lease_watched: AtomicBool::new(false),
        reaper: Mutex::new(None),
    })
}

/// The locked store. When it is unlocked with a read lease open, the reaper is told, so the
/// lease ends even if no other operation follows.
pub struct StoreGuard<'a> {
    shared: &'a SharedStore,
    guard: MutexGuard<'a, Store>,
}

impl Deref for StoreGuard<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.guard
    }
}

impl DerefMut for StoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.guard
    }
}

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        if self.guard.has_read_lease() && !self.shared.lease_watched.load(Ordering::Relaxed) {
            if wake_reaper(self.shared) {
                self.shared.lease_watched.store(true, Ordering::Relaxed);
            } else {
                // No thread to end it later: end it now.
                self.guard.end_read_lease();
            }
        }
    }
}

/// Set from just before a `fork()` until it returns: reapers keep off stores meanwhile.
static FORKING: AtomicBool = AtomicBool::new(false);
/// Reapers that may hold a store's lock right now.
static REAPING: AtomicUsize = AtomicUsize::new(0);

/// A fork child inherits every mutex in the state it had at the fork. If a reaper held a
/// store's lock at that moment, the child's first use of the store would wait forever (think of
/// data-loader workers forked right after the parent read something). So `fork()` first waits
/// for reapers to let go of stores (microseconds), and none takes one until it has returned.
fn install_fork_guard() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: the handlers only touch atomics and yield; registering them has no other
        // effect.
        unsafe {
            libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork));
        }
    });
}

extern "C" fn before_fork() {
    // With sequentially consistent operations on both sides, either the reaper sees FORKING
    // and keeps off, or this sees its REAPING count and waits for it to leave.
    FORKING.store(true, Ordering::SeqCst);
    while REAPING.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
}

extern "C" fn after_fork() {
    FORKING.store(false, Ordering::SeqCst);
}

/// Test hook: how long a reaper keeps a store locked after ending its lease
/// (`AMBERVAULT_TEST_REAPER_HOLD_MS`, unset in normal use), so that tests can fork while it
/// holds the lock.
fn test_hold() -> Duration {
    static HOLD: OnceLock<Duration> = OnceLock::new();
    *HOLD.get_or_init(|| {
        std::env::var("AMBERVAULT_TEST_REAPER_HOLD_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::ZERO, Duration::from_millis)
    })
}

/// Wakes the store's reaper, starting it first if needed; false if no thread could be
/// started.
fn wake_reaper(shared: &SharedStore) -> bool {
    install_fork_guard();
    let mut reaper = shared.reaper.lock().unwrap_or_else(PoisonError::into_inner);
    if reaper.is_none() {
        let weak = Arc::downgrade(shared);
        let started = std::thread::Builder::new()
            .name("amber-lease".into())
            .spawn(move || reap(&weak));
        match started {
            Ok(handle) => *reaper = Some(handle.thread().clone()),
            Err(_) => return false,
        }
    }
    if let Some(thread) = &*reaper {
        thread.unpark();
    }
    true
}

/// The reaper's loop: parked until a lease is taken, then ends it once it is older than
/// [`READ_LEASE`] (a store in use is simply checked again later). Exits when the store is
/// dropped.
fn reap(weak: &Weak<Shared>) {
    loop {
        std::thread::park();
        loop {
            std::thread::sleep(READ_LEASE);
            let Some(shared) = weak.upgrade() else {
                return;
            };
            REAPING.fetch_add(1, Ordering::SeqCst);
            let settled = if FORKING.load(Ordering::SeqCst) {
                false
            } else {
                match shared.store.try_lock() {
                    Ok(mut store) => settle(&shared, &mut store),
                    Err(TryLockError::Poisoned(poisoned)) => {
                        settle(&shared, &mut poisoned.into_inner())
                    }
                    Err(TryLockError::WouldBlock) => false,
                }
            };
            REAPING.fetch_sub(1, Ordering::SeqCst);
            if settled {
                break;
            }
        }
    }
}

/// Ends the store's lease if it is old enough; true when no lease is left to watch.
fn settle(shared: &Shared, store: &mut Store) -> bool {
    let still_open = store.end_read_lease_older_than(READ_LEASE);
    let hold = test_hold();
    if !hold.is_zero() {
        std::thread::sleep(hold);
    }
    if still_open {
        return false;
    }
    shared.lease_watched.store(false, Ordering::Relaxed);
    true
}

/// Locks the store for the calling thread, first waiting for another thread's explicit
/// transaction to end. Call it only with the GIL released.
pub fn lock(shared: &SharedStore) -> StoreGuard<'_> {
    // A panic while holding the lock cannot leave SQLite inconsistent (every operation is a
    // transaction), so a poisoned lock is still safe to use.
    let mut guard = shared.store.lock().unwrap_or_else(PoisonError::into_inner);
    while in_another_threads_transaction(&guard) {
        guard = shared
            .transaction_ended
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner);
    }
    StoreGuard { shared, guard }
}

/// The store, if it can be had at once: unlocked, and no other thread's transaction open.
///
/// For short reads that are cheaper done while holding the GIL than with it released and
/// taken back (about 0.2 µs). Never blocks, so it cannot deadlock against a thread that holds
/// the store and waits for the GIL; callers fall back to [`lock`] with the GIL released.
fn try_lock_now(shared: &SharedStore) -> Option<StoreGuard<'_>> {
    let guard = match shared.store.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    if in_another_threads_transaction(&guard) {
        return None;
    }
    Some(StoreGuard { shared, guard })
}

/// Whether another thread has an explicit transaction open on the store.
fn in_another_threads_transaction(store: &Store) -> bool {
    let me = std::thread::current().id();
    store.transaction_owner().is_some_and(|owner| owner != me)
}

/// Runs a short read under the GIL when the store can be had at once ([`try_lock_now`]).
/// `None` when it cannot, or when SQLite reported the database busy: the caller then takes the
/// usual path, which releases the GIL and backs off.
pub fn try_now<T, E: kvault::StoreError>(
    shared: &SharedStore,
    op: impl FnOnce(&mut Store) -> Result<T, E>,
) -> Option<Result<T, E>> {
    let mut store = try_lock_now(shared)?;
    match op(&mut store) {
        Err(err) if err.is_busy() => None,
        other => Some(other),
    }
}

/// Runs `end` (commit or rollback) and wakes waiting threads if that closed the outermost
/// transaction.
pub fn end_transaction<T>(
    shared: &SharedStore,
    end: impl FnOnce(&mut Store) -> kvault::Result<T>,
) -> kvault::Result<T> {
    let mut guard = lock(shared);
    let result = end(&mut guard);
    if guard.transaction_depth() == 0 {
        shared.transaction_ended.notify_all();
    }
    result
}
