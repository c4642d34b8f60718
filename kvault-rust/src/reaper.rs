//! The read-lease reaper: a small thread per [`crate::Vault`] that ends the read lease of an
//! idle store.
//!
//! A lease (see `store/lease.rs`) lets reads in quick succession share one read transaction.
//! An idle lease would hold back other connections' checkpoints, so once the store is unlocked
//! with a lease open, the reaper is woken; it ends the lease when it is older than the store's
//! limit, checking again later while the store is in use.
//!
//! Like every holder of a store, the reaper counts itself in with the fork guard
//! (`fork_guard.rs`), so a fork never finds the store's lock held by it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, TryLockError, Weak};
use std::time::Duration;

use crate::fork_guard::StoreUse;
use crate::store::Store;
use crate::vault::Shared;

/// Longest a read lease is kept by default when a binding turns leases on: reads in quick
/// succession share it, and an idle store's lease is ended after about this long (up to
/// twice it) by the reaper.
pub const READ_LEASE: Duration = Duration::from_millis(2);

/// Wakes the vault's reaper, starting it first if needed; false if no thread could be started
/// (the caller then ends the lease itself).
pub(crate) fn wake(shared: &Arc<Shared>) -> bool {
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

/// The reaper's loop: parked until a lease is taken, then ends it once it is older than the
/// store's limit (a store in use is simply checked again later). Exits when the vault is
/// dropped.
fn reap(weak: &Weak<Shared>) {
    loop {
        std::thread::park();
        loop {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let limit = shared.lease_limit;
            drop(shared);
            std::thread::sleep(limit);
            let Some(shared) = weak.upgrade() else {
                return;
            };
            // Counted in first, so a pending fork waits for this to let go of the store.
            let settled = match StoreUse::try_enter() {
                None => false,
                Some(_used) => match shared.store.try_lock() {
                    Ok(mut store) => settle(&shared, &mut store),
                    Err(TryLockError::Poisoned(poisoned)) => {
                        settle(&shared, &mut poisoned.into_inner())
                    }
                    Err(TryLockError::WouldBlock) => false,
                },
            };
            if settled {
                break;
            }
        }
    }
}

/// Ends the store's lease if it is old enough; true when no lease is left to watch.
fn settle(shared: &Shared, store: &mut Store) -> bool {
    let still_open = store.end_read_lease_older_than(shared.lease_limit);
    test_hooks::hold_store();
    if still_open {
        return false;
    }
    shared.lease_watched.store(false, Ordering::Relaxed);
    true
}

/// Hooks compiled only with the `test-hooks` feature (the Python test build turns it on).
#[cfg(feature = "test-hooks")]
mod test_hooks {
    use std::sync::OnceLock;
    use std::time::Duration;

    /// Keeps the store locked after ending its lease for `AMBERVAULT_TEST_REAPER_HOLD_MS`, so a
    /// test can fork while a reaper holds the lock.
    pub(super) fn hold_store() {
        static HOLD: OnceLock<Duration> = OnceLock::new();
        let hold = *HOLD.get_or_init(|| {
            std::env::var("AMBERVAULT_TEST_REAPER_HOLD_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(Duration::ZERO, Duration::from_millis)
        });
        if !hold.is_zero() {
            std::thread::sleep(hold);
        }
    }
}

#[cfg(not(feature = "test-hooks"))]
mod test_hooks {
    /// No hook in normal builds.
    #[inline(always)]
    pub(super) fn hold_store() {}
}
