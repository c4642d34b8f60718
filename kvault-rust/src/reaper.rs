//! The read-lease reaper: a small thread per [`crate::Vault`] that ends the read lease of an
//! idle store, and the fork guard that keeps reapers off stores while the process forks.
//!
//! A lease (see `store/lease.rs`) lets reads in quick succession share one read transaction.
//! An idle lease would hold back other connections' checkpoints, so once the store is unlocked
//! with a lease open, the reaper is woken; it ends the lease when it is older than the store's
//! limit, checking again later while the store is in use.
//!
//! A fork child inherits every mutex in the state it had at the fork. If a reaper held a store's
//! lock at that moment, the child's first use of the store would wait forever (think of
//! data-loader workers forked right after the parent read something). So `fork()` first waits
//! for reapers to let go of stores (microseconds), and none takes one until it has returned.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once, PoisonError, TryLockError, Weak};
use std::time::Duration;

use crate::store::Store;
use crate::vault::Shared;

/// Longest a read lease is kept by default when a binding turns leases on: reads in quick
/// succession share it, and an idle store's lease is ended after about this long (up to
/// twice it) by the reaper.
pub const READ_LEASE: Duration = Duration::from_millis(2);

/// Set from just before a `fork()` until it returns: reapers keep off stores meanwhile.
static FORKING: AtomicBool = AtomicBool::new(false);
/// Reapers that may hold a store's lock right now.
static REAPING: AtomicUsize = AtomicUsize::new(0);

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

/// Wakes the vault's reaper, starting it first if needed; false if no thread could be started
/// (the caller then ends the lease itself).
pub(crate) fn wake(shared: &Arc<Shared>) -> bool {
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
