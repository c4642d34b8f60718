//! The store shared by a vault, its columns, readers and writers, and the rule that makes
//! explicit transactions safe with threads: while one thread has a transaction open, other
//! threads wait (with the GIL released) instead of slipping their operations into it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use kvault::Store;

/// A store plus the condition variable signalled when an explicit transaction ends.
pub struct Shared {
    store: Mutex<Store>,
    transaction_ended: Condvar,
}

/// A store shared by Python objects.
pub type SharedStore = Arc<Shared>;

/// Wraps a freshly opened store.
pub fn share(store: Store) -> SharedStore {
    Arc::new(Shared {
        store: Mutex::new(store),
        transaction_ended: Condvar::new(),
    })
}

/// Locks the store for the calling thread, first waiting for another thread's explicit
/// transaction to end. Call it only with the GIL released.
pub fn lock(shared: &SharedStore) -> MutexGuard<'_, Store> {
    // A panic while holding the lock cannot leave SQLite inconsistent (every operation is a
    // transaction), so a poisoned lock is still safe to use.
    let mut guard = shared.store.lock().unwrap_or_else(PoisonError::into_inner);
    while in_another_threads_transaction(&guard) {
        guard = shared
            .transaction_ended
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner);
    }
    guard
}

/// The store, if it can be had at once: unlocked, and no other thread's transaction open.
///
/// For short reads that are cheaper done while holding the GIL than with it released and
/// taken back (about 0.2 µs). Never blocks, so it cannot deadlock against a thread that holds
/// the store and waits for the GIL; callers fall back to [`lock`] with the GIL released.
fn try_lock_now(shared: &SharedStore) -> Option<MutexGuard<'_, Store>> {
    let guard = match shared.store.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return None,
    };
    if in_another_threads_transaction(&guard) {
        return None;
    }
    Some(guard)
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
