//! [`Vault`]: one open vault file, shared by every table and thread that uses it.
//!
//! A [`Store`] is one SQLite connection and is used by one thread at a time. A `Vault` wraps it
//! for sharing (`Clone + Send + Sync`) and owns what sharing needs:
//!
//! - **The transaction rule.** While one thread has an explicit transaction open, other threads
//!   wait for it to end instead of slipping their operations into it.
//! - **Read leases.** With [`StoreOptions::read_lease`] set, reads in quick succession share
//!   one read transaction; the vault's reaper thread (see `reaper.rs`) ends an idle lease, so
//!   nobody has to end leases by hand.
//! - **Fork safety.** A fork child reopens the connection (see `store/fork.rs`), and `fork()`
//!   waits for a reaper to let go of the store first.
//! - **File-level operations**: transactions, checkpoint, backup, check, stats, optimize,
//!   close. `check` and `optimize` also run over every table kind attached to the vault
//!   ([`TableKind`]), so a new kind of data joins them by attaching itself once.
//!
//! Table kinds are handles on a vault: a key-value table ([`crate::Kv`]), a column
//! (`columnar::Column`), and the kinds to come.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use crate::clock::Clock;
use crate::error::Result;
use crate::fork_guard::{self, StoreUse};

/// How often a thread waiting for another thread's transaction checks for a pending fork.
const FORK_CHECK_INTERVAL: Duration = Duration::from_millis(10);
use crate::store::{Location, Store, StoreError, StoreOptions};

/// A kind of table attached to a vault: what the file-level `check` and `optimize` must also
/// cover. Implemented by each table kind's crate (key-value tables here, columns in
/// `columnar`).
pub trait TableKind: Send + Sync {
    /// A stable identity: attaching a second kind with the same key replaces nothing.
    fn key(&self) -> String;
    /// Where the kind's problems are listed in [`Vault::check`]: lower first, then by key.
    fn check_order(&self) -> u32;
    /// The kind's invariant problems (empty when healthy).
    ///
    /// # Errors
    /// SQLite errors.
    fn check(&self, store: &mut Store) -> Result<Vec<String>>;
    /// Frees what crashed writers left behind, before [`Vault::optimize`] vacuums the file;
    /// returns how many items were reclaimed.
    ///
    /// # Errors
    /// SQLite errors.
    fn reclaim(&self, _store: &mut Store) -> Result<u64> {
        Ok(0)
    }
    /// Runs after the outermost explicit transaction commits (e.g. eviction deferred while it
    /// was open). Errors are not reported to the committer: the commit stands, and the work is
    /// done again by the next write or maintenance run.
    ///
    /// # Errors
    /// SQLite errors.
    fn after_commit(&self, _store: &mut Store) -> Result<()> {
        Ok(())
    }
    /// How often the vault's maintenance thread should call [`TableKind::maintain`] (`None`:
    /// never).
    fn maintenance_interval(&self) -> Option<Duration> {
        None
    }
    /// Periodic work on the maintenance thread (see `maintenance_thread.rs`).
    ///
    /// # Errors
    /// SQLite errors (the thread tries again on its next run).
    fn maintain(&self, _store: &mut Store) -> Result<()> {
        Ok(())
    }
}

/// The state shared by every clone of a [`Vault`].
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    transaction_ended: Condvar,
    /// Whether the reaper was woken for the current lease; set and cleared with the store
    /// locked, so a new lease is never left unwatched.
    pub(crate) lease_watched: AtomicBool,
    /// The reaper thread, started on the first lease. A store inherited by a fork child never
    /// leases there (the child's connection has no commit token), so it needs none.
    pub(crate) reaper: Mutex<Option<std::thread::Thread>>,
    /// Age at which the reaper ends an idle lease.
    pub(crate) lease_limit: Duration,
    /// The fork generation the maintenance thread was started in (see
    /// `maintenance_thread.rs`), `None` before it is first needed.
    pub(crate) maintenance: Mutex<Option<u64>>,
    kinds: Mutex<Vec<Arc<dyn TableKind>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Wake the reaper so it sees the vault is gone and exits.
        let reaper = self
            .reaper
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(thread) = reaper.take() {
            thread.unpark();
        }
    }
}

/// One open vault file, shared by tables, columns, readers, writers and threads. Cloning is
/// cheap and every clone uses the same connection.
///
/// ```
/// # fn main() -> kvault::Result<()> {
/// let vault = kvault::Vault::open_in_memory()?;
/// let kv = vault.kv("media")?;
/// kv.put(b"k", b"v")?;
/// let tx = vault.transaction()?;
/// kv.put(b"k", b"w")?;
/// tx.rollback()?;
/// assert_eq!(kv.get(b"k")?.as_deref(), Some(&b"v"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Vault {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens (or creates) the vault file at `path` with default options.
    ///
    /// # Errors
    /// See [`Store::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the vault at `path` (`":memory:"` for a private in-memory one).
    ///
    /// # Errors
    /// See [`Store::open`].
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let store = Store::open(Location::from_path(path.as_ref()), options)?;
        Ok(Self::from_store(store))
    }

    /// A private in-memory vault.
    ///
    /// # Errors
    /// Only if SQLite cannot allocate it.
    pub fn open_in_memory() -> Result<Self> {
        Self::open(":memory:")
    }

    /// Shares an already opened store.
    #[must_use]
    pub fn from_store(store: Store) -> Self {
        let lease_limit = store.options().read_lease.unwrap_or_default();
        Self {
            shared: Arc::new(Shared {
                store: Mutex::new(store),
                transaction_ended: Condvar::new(),
                lease_watched: AtomicBool::new(false),
                reaper: Mutex::new(None),
                lease_limit,
                maintenance: Mutex::new(None),
                kinds: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A handle on already shared state (the maintenance thread's view of its vault).
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Starts the vault's maintenance thread if it is not running in this process; table kinds
    /// with periodic work (a [`TableKind::maintenance_interval`]) need it. Idempotent.
    pub fn ensure_maintenance(&self) {
        crate::maintenance_thread::ensure(&self.shared);
    }

    /// The shortest maintenance interval any attached kind asks for.
    pub(crate) fn maintenance_interval(&self) -> Option<Duration> {
        self.kinds()
            .iter()
            .filter_map(|k| k.maintenance_interval())
            .min()
    }

    /// Runs every attached kind's periodic work once (the maintenance thread's step).
    pub(crate) fn run_maintenance(&self) {
        let kinds: Vec<_> = self
            .kinds()
            .into_iter()
            .filter(|k| k.maintenance_interval().is_some())
            .collect();
        if kinds.is_empty() {
            return;
        }
        let mut store = self.store();
        for kind in kinds {
            // A failure (the file busy, read-only or closed) is retried on the next run.
            let _ = kind.maintain(&mut store);
        }
    }

    /// Whether two handles use the same open file.
    #[must_use]
    pub fn same_file(&self, other: &Vault) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The store, locked for the calling thread, after waiting for another thread's explicit
    /// transaction to end. Blocks: bindings call it with their interpreter lock released.
    pub fn store(&self) -> StoreGuard<'_> {
        loop {
            // Counted in before the lock is taken and out after it is released, so a pending
            // fork never finds the lock held by an uncounted thread (see `fork_guard.rs`).
            let used = StoreUse::enter();
            // A panic while holding the lock cannot leave SQLite inconsistent (every operation
            // is a transaction), so a poisoned lock is still safe to use.
            let mut guard = self
                .shared
                .store
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut fork_pending = false;
            while in_another_threads_transaction(&guard) {
                // The transaction's owner may be the thread that forks: stop waiting for it
                // (and let go of everything) while a fork is pending.
                if fork_guard::pending() {
                    fork_pending = true;
                    break;
                }
                guard = self
                    .shared
                    .transaction_ended
                    .wait_timeout(guard, FORK_CHECK_INTERVAL)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if !fork_pending {
                return StoreGuard {
                    shared: &self.shared,
                    guard,
                    _used: used,
                };
            }
            drop(guard);
            drop(used);
            fork_guard::wait_for_fork();
        }
    }

    /// Runs `f` on the locked store (see [`Vault::store`]).
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn with<T, E>(&self, f: impl FnOnce(&mut Store) -> Result<T, E>) -> Result<T, E> {
        f(&mut self.store())
    }

    /// Runs a short operation at once if the store can be had without waiting (unlocked, and
    /// no other thread's transaction open); `None` when it cannot, or when SQLite reported the
    /// database busy. For reads cheaper done while holding an interpreter lock than by
    /// releasing and retaking it: never blocks, so it cannot deadlock against a thread that
    /// holds the store and waits for that lock. Callers fall back to [`Vault::with`].
    pub fn try_with<T, E: StoreError>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, E>,
    ) -> Option<Result<T, E>> {
        // Counted in first (see `Vault::store`).
        let used = StoreUse::try_enter()?;
        let guard = match self.shared.store.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if in_another_threads_transaction(&guard) {
            return None;
        }
        let mut store = StoreGuard {
            shared: &self.shared,
            guard,
            _used: used,
        };
        match f(&mut store) {
            Err(err) if err.is_busy() => None,
            other => Some(other),
        }
    }

    /// Attaches a table kind, so [`Vault::check`] and [`Vault::optimize`] cover it. Attaching
    /// a kind whose [`TableKind::key`] is already attached does nothing.
    pub fn attach(&self, kind: Arc<dyn TableKind>) {
        let mut kinds = self
            .shared
            .kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = kind.key();
        if kinds.iter().any(|k| k.key() == key) {
            return;
        }
        kinds.push(kind);
        kinds.sort_by_key(|k| (k.check_order(), k.key()));
    }

    fn kinds(&self) -> Vec<Arc<dyn TableKind>> {
        self.shared
            .kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Opens an explicit transaction guard: every operation of this thread on the vault until
    /// [`Transaction::commit`] is part of it; dropping the guard uncommitted rolls it back.
    /// Opened inside another transaction, it is a savepoint of it.
    ///
    /// # Errors
    /// [`crate::Error::Busy`] when the write lock stays taken; [`crate::Error::ReadOnly`].
    pub fn transaction(&self) -> Result<Transaction<'_>> {
        let depth = self.begin()?;
        Ok(Transaction {
            vault: self,
            depth,
            open: true,
        })
    }

    /// Opens an explicit transaction level without a guard (for bindings whose transactions
    /// are not lexically scoped); returns the new depth. Prefer [`Vault::transaction`].
    ///
    /// # Errors
    /// As [`Vault::transaction`].
    pub fn begin(&self) -> Result<u32> {
        self.store().begin()
    }

    /// Opens a read snapshot on this vault's connection (see [`Store::begin_snapshot`]); end
    /// it with [`Vault::commit`]. Meant for a connection opened for the snapshot alone: until
    /// it ends, other threads on this vault wait as for any explicit transaction.
    ///
    /// # Errors
    /// As [`Store::begin_snapshot`].
    pub fn begin_snapshot(&self) -> Result<()> {
        self.store().begin_snapshot()
    }

    /// Commits the innermost explicit transaction level (see [`Vault::begin`]).
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] when none is open; SQLite errors (it is then rolled back).
    pub fn commit(&self) -> Result<()> {
        self.end_transaction(Store::commit, true)
    }

    /// Rolls back the innermost explicit transaction level (see [`Vault::begin`]).
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] when none is open; SQLite errors.
    pub fn rollback(&self) -> Result<()> {
        self.end_transaction(Store::rollback, false)
    }

    /// Runs `end` and wakes waiting threads if that closed the outermost transaction; after
    /// an outermost commit, every attached kind's [`TableKind::after_commit`] runs.
    fn end_transaction(
        &self,
        end: impl FnOnce(&mut Store) -> Result<()>,
        commit: bool,
    ) -> Result<()> {
        let committed_outermost = {
            let mut store = self.store();
            let before = store.transaction_depth();
            let result = end(&mut store);
            if store.transaction_depth() == 0 {
                self.shared.transaction_ended.notify_all();
            }
            result?;
            commit && before == 1 && store.transaction_depth() == 0
        };
        if committed_outermost {
            let kinds = self.kinds();
            let mut store = self.store();
            if store.transaction_depth() == 0 {
                for kind in kinds {
                    let _ = kind.after_commit(&mut store);
                }
            }
        }
        Ok(())
    }

    /// Depth of open explicit transactions (0 = none).
    #[must_use]
    pub fn transaction_depth(&self) -> u32 {
        self.store().transaction_depth()
    }

    /// Problems found by SQLite's integrity check and by every attached table kind (empty when
    /// healthy). Never an error for a problem in the data.
    ///
    /// # Errors
    /// SQLite errors while reading.
    pub fn check(&self) -> Result<Vec<String>> {
        let kinds = self.kinds();
        let mut store = self.store();
        let mut problems = store.integrity_problems()?;
        for kind in kinds {
            problems.extend(kind.check(&mut store)?);
        }
        Ok(problems)
    }

    /// Reclaims what crashed writers left in every attached table kind, then rebuilds the file
    /// to return free pages (`VACUUM`) and checkpoints.
    ///
    /// # Errors
    /// [`crate::Error::ReadOnly`], [`crate::Error::Busy`], [`crate::Error::InvalidArgument`] inside a transaction,
    /// I/O errors.
    pub fn optimize(&self) -> Result<()> {
        let kinds = self.kinds();
        let mut store = self.store();
        for kind in kinds {
            kind.reclaim(&mut store)?;
        }
        store.vacuum()
    }

    /// Writes a consistent copy of the file to `dest`, which must not exist (see
    /// [`Store::backup_to`]).
    ///
    /// # Errors
    /// As [`Store::backup_to`].
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        self.store().backup_to(dest)
    }

    /// Re-encrypts the file with a new key (see [`Store::rekey`]).
    ///
    /// # Errors
    /// As [`Store::rekey`].
    pub fn rekey(&self, key: crate::Key) -> Result<()> {
        self.store().rekey(key)
    }

    /// Copies the WAL into the main file and truncates it.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn checkpoint(&self) -> Result<()> {
        self.store().checkpoint()
    }

    /// `(page_size, page_count, freelist_count)` of the main file.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn page_stats(&self) -> Result<(i64, i64, i64)> {
        self.store().page_stats()
    }

    /// The current time in ms, as the vault's clock reads it.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.store().now_ms()
    }

    /// Sets the vault's clock (see [`Clock`]).
    pub fn set_clock(&self, clock: Clock) {
        self.store().set_clock(clock);
    }

    /// Whether writes are refused.
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.store().is_read_only()
    }

    /// Whether [`Vault::close`] was called (on any clone).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.store().is_closed()
    }

    /// Closes the file for every clone. Idempotent.
    ///
    /// # Errors
    /// SQLite errors while closing (the file is closed regardless).
    pub fn close(&self) -> Result<()> {
        self.store().close()
    }
}

/// Whether another thread has an explicit transaction open on the store.
fn in_another_threads_transaction(store: &Store) -> bool {
    let me = std::thread::current().id();
    store.transaction_owner().is_some_and(|owner| owner != me)
}

/// The locked store of a [`Vault`]. Unlocking it with a read lease open tells the vault's
/// reaper, so the lease ends even if no other operation follows.
pub struct StoreGuard<'v> {
    shared: &'v Arc<Shared>,
    guard: MutexGuard<'v, Store>,
    // Declared last: counted out only after the lock above is released.
    _used: StoreUse,
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
            if crate::reaper::wake(self.shared) {
                self.shared.lease_watched.store(true, Ordering::Relaxed);
            } else {
                // No thread to end it later: end it now.
                self.guard.end_read_lease();
            }
        }
    }
}

/// An explicit transaction on a [`Vault`] (see [`Vault::transaction`]): commit it, or it is
/// rolled back when dropped.
#[must_use = "a transaction is rolled back when dropped; call commit()"]
pub struct Transaction<'v> {
    vault: &'v Vault,
    depth: u32,
    open: bool,
}

impl Transaction<'_> {
    /// Makes every write of the transaction visible (or, nested, part of the enclosing one).
    ///
    /// # Errors
    /// SQLite errors; the transaction is then rolled back.
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        self.vault.commit()
    }

    /// Discards every write of the transaction.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn rollback(mut self) -> Result<()> {
        self.open = false;
        self.vault.rollback()
    }

    /// Nesting depth of this transaction (1 = outermost).
    #[must_use]
    pub fn depth(&self) -> u32 {
        self.depth
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.vault.rollback();
        }
    }
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("depth", &self.depth)
            .field("open", &self.open)
            .finish()
    }
}
