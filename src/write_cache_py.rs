//! `PendingWrites` and `CacheLock`: the native half of the key-value write-back cache (the
//! Python `WriteBackCache`). A cached put converts its key once, keeps the latest value per key
//! in insertion order (`cache_writes.rs`) and, as the cache fills, hands batches to the
//! background writer (`write_behind.rs`), which writes them through the table's `put_many` with
//! the GIL released, without building a Python object per item.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use kvault::Kv;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::cache_writes::{Entry, Writes};
use crate::convert::{key_from_py, value_from_py};
use crate::errors::BindingError;
use crate::kvault_py::PyKVault;
use crate::write_behind::CacheState;

/// Who holds a [`PyCacheLock`] and how many times.
#[derive(Default)]
struct LockState {
    owner: Option<ThreadId>,
    count: usize,
    /// Threads waiting for the lock (a release wakes one only if there is one: a wake is a
    /// system call).
    waiting: usize,
}

thread_local! {
    static THIS_THREAD: ThreadId = std::thread::current().id();
}

/// This thread's id, kept per thread (`thread::current()` clones a handle each time: about 1%
/// of a cached put's profile).
fn this_thread() -> ThreadId {
    THIS_THREAD.with(|id| *id)
}

/// A reentrant lock, the Python `threading.RLock` of a key-value write cache, made native so a
/// cached put takes it without calling into Python. Waiting for it releases the GIL.
///
/// It also carries the cache's writes ([`CacheState`]): taking it from Python settles the
/// batch in flight (see `write_behind.rs`), so whatever Python does under the lock (a direct
/// write, a flush, a transaction) never interleaves with the background writer.
#[pyclass(module = "ambervault._ambervault", name = "CacheLock", frozen)]
pub struct PyCacheLock {
    state: Mutex<LockState>,
    freed: Condvar,
    cache: Arc<CacheState>,
}

impl PyCacheLock {
    fn state(&self) -> MutexGuard<'_, LockState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the lock at once if it is free or already this thread's.
    fn try_take(&self) -> bool {
        let me = this_thread();
        let mut state = self.state();
        match state.owner {
            Some(owner) if owner != me => false,
            _ => {
                state.owner = Some(me);
                state.count += 1;
                true
            }
        }
    }

    /// Takes the lock, waiting with the GIL released (up to `timeout` seconds if given);
    /// whether it was taken.
    fn take(&self, py: Python<'_>, timeout: Option<f64>) -> bool {
        if self.try_take() {
            return true;
        }
        let me = this_thread();
        py.detach(|| {
            let deadline =
                timeout.map(|t| std::time::Instant::now() + std::time::Duration::from_secs_f64(t));
            let mut state = self.state();
            while state.owner.is_some() {
                state.waiting += 1;
                state = match deadline {
                    None => self
                        .freed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner),
                    Some(deadline) => {
                        let now = std::time::Instant::now();
                        if now >= deadline {
                            state.waiting -= 1;
                            return false;
                        }
                        self.freed
                            .wait_timeout(state, deadline - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                };
                state.waiting -= 1;
            }
            state.owner = Some(me);
            state.count = 1;
            true
        })
    }

    /// Undoes one `take` by this thread.
    fn give(&self) -> PyResult<()> {
        let me = this_thread();
        let mut state = self.state();
        if state.owner != Some(me) {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "cannot release un-acquired lock",
            ));
        }
        state.count -= 1;
        if state.count == 0 {
            state.owner = None;
            let waiting = state.waiting > 0;
            drop(state);
            if waiting {
                self.freed.notify_one();
            }
        }
        Ok(())
    }
}

#[pymethods]
impl PyCacheLock {
    #[new]
    fn new() -> Self {
        Self {
            state: Mutex::new(LockState::default()),
            freed: Condvar::new(),
            cache: Arc::default(),
        }
    }

    /// As `threading.RLock.acquire`; once taken, waits for (or takes back) the cache's batch
    /// in flight.
    #[pyo3(signature = (blocking=true, timeout=-1.0))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: f64) -> bool {
        let taken = if blocking {
            self.take(py, (timeout >= 0.0).then_some(timeout))
        } else {
            self.try_take()
        };
        if taken {
            self.cache.settle(py);
        }
        taken
    }

    /// As `threading.RLock.release`.
    fn release(&self) -> PyResult<()> {
        self.give()
    }

    fn __enter__(&self, py: Python<'_>) -> bool {
        self.take(py, None);
        self.cache.settle(py);
        true
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.give()?;
        Ok(false)
    }
}

/// Holds a [`PyCacheLock`] until dropped.
struct Held<'a>(&'a PyCacheLock);

impl<'a> Held<'a> {
    fn new(py: Python<'_>, lock: &'a PyCacheLock) -> Self {
        lock.take(py, None);
        Self(lock)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.0.give();
    }
}

/// The pending writes of a key-value write-back cache, held natively (the Python
/// `WriteBackCache` keeps the idle thread and the cache controls around it).
///
/// Every method that changes what is held runs under the cache's [`PyCacheLock`] (taken here
/// for `put`, by the Python caller for the rest), as every write of the old Python cache ran
/// under its lock. `flush` is atomic: if the table's `put_many` fails nothing is dropped.
#[pyclass(module = "ambervault._ambervault", name = "PendingWrites", frozen)]
pub struct PyPendingWrites {
    kv: Kv,
    lock: Py<PyCacheLock>,
    /// The lock's [`CacheState`]: the writes and the batch in flight.
    cache: Arc<CacheState>,
    cap: usize,
    threshold: usize,
    /// From this many bytes, a put hands the writes to the background writer.
    hand_off_at: usize,
    auto_flush: bool,
    /// Called (with no argument) before a flush that `put` starts, if set.
    before_flush: Option<Py<PyAny>>,
    /// How many `acquire()`s (transactions, `lock_cache()`) hold automatic flushes off.
    locks: AtomicUsize,
    /// Set by `disable_cache` after its last flush: nothing more is cached.
    closed: AtomicBool,
    /// Counts puts, for the idle-flush thread.
    puts: AtomicU64,
}

impl PyPendingWrites {
    fn writes(&self) -> MutexGuard<'_, Writes> {
        self.cache.writes()
    }

    /// Hands the writes to the background writer (the caller holds the cache lock), after
    /// the `before_flush` hook; whether it did (not after a background failure).
    fn hand_off(&self, py: Python<'_>) -> Result<bool, BindingError> {
        if !self.cache.can_hand_off() {
            return Ok(false);
        }
        if let Some(hook) = &self.before_flush {
            hook.call0(py)?;
        }
        Ok(self.cache.hand_off(&self.kv))
    }

    /// `flush` from `put` (the caller holds the cache lock).
    fn flush_from_put(&self, py: Python<'_>) -> Result<usize, BindingError> {
        self.cache.settle(py);
        if self.writes().len() == 0 {
            return Ok(0);
        }
        if let Some(hook) = &self.before_flush {
            hook.call0(py)?;
        }
        self.flush(py)
    }
}

#[pymethods]
impl PyPendingWrites {
    /// An empty cache in front of `kv`, guarded by `lock`.
    #[new]
    #[pyo3(signature = (kv, lock, cap_bytes, flush_threshold, auto_flush, before_flush=None))]
    fn new(
        kv: &PyKVault,
        lock: Py<PyCacheLock>,
        cap_bytes: usize,
        flush_threshold: usize,
        auto_flush: bool,
        before_flush: Option<Py<PyAny>>,
    ) -> Self {
        let cache = Arc::clone(&lock.get().cache);
        Self {
            kv: kv.kv().clone(),
            lock,
            cache,
            cap: cap_bytes,
            threshold: flush_threshold,
            hand_off_at: hand_off_at(flush_threshold),
            auto_flush,
            before_flush,
            locks: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            puts: AtomicU64::new(0),
        }
    }

    /// Caches a write of `value` (bytes-like, encoded as `encoding` says) under `key`; the
    /// latest write of a key wins. Flushes first when it would pass the cap. Unless automatic
    /// flushes are off or held: from `hand_off_at` bytes on, hands the writes to the
    /// background writer when it is free; at the threshold, waits for it and hands them off
    /// (or writes them itself after a background failure). Returns False,
    /// caching nothing, when the write is larger than the whole cache (after flushing the
    /// rest) or the cache is closed: the caller then writes it directly. A bad key or value
    /// raises, with nothing cached.
    #[pyo3(signature = (key, value, expires_at_ms=None, encoding=0))]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expires_at_ms: Option<i64>,
        encoding: u8,
    ) -> Result<bool, BindingError> {
        let (raw, kind) = key_from_py(key)?;
        let value: PyBackedBytes = match value.cast_exact::<PyBytes>() {
            Ok(bytes) => bytes.clone().into(),
            Err(_) => PyBytes::new(py, &value_from_py(value)?).into(),
        };
        let entry = Entry {
            raw: raw.into_owned().into_boxed_slice(),
            kind,
            key: key.clone().unbind(),
            value,
            expires_at_ms,
            encoding,
        };
        let size = entry.size();
        let _held = Held::new(py, self.lock.get());
        if self.closed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.puts.fetch_add(1, Ordering::Relaxed);
        // One lock in the common case: the write fits, replacing any older one of its key.
        let (old, fitted) = {
            let mut writes = self.writes();
            let old = writes.remove(&entry.raw);
            if size <= self.cap && writes.nbytes + self.cache.inflight_bytes() + size <= self.cap {
                writes.insert(entry);
                (old, Ok(writes.nbytes))
            } else {
                (old, Err(entry))
            }
        };
        let nbytes = match fitted {
            Ok(nbytes) => nbytes,
            Err(entry) => {
                // Over the cap: the rest is written first.
                if let Err(err) = self.flush_from_put(py) {
                    // Nothing written: the older write stays cached (last, as if rewritten;
                    // over any of its key taken back from the batch in flight, older still).
                    if let Some(old) = old {
                        let mut writes = self.writes();
                        writes.remove(&old.raw);
                        writes.insert(old);
                    }
                    return Err(err);
                }
                if size > self.cap {
                    return Ok(false);
                }
                let mut writes = self.writes();
                writes.insert(entry);
                writes.nbytes
            }
        };
        drop(old);
        if self.auto_flush && self.locks.load(Ordering::Relaxed) == 0 {
            if nbytes >= self.threshold {
                // The caller outran the writer: wait for it, then hand everything off.
                self.cache.settle(py);
                if !self.hand_off(py)? {
                    self.flush_from_put(py)?;
                }
            } else if nbytes >= self.hand_off_at && self.cache.can_hand_off() {
                self.hand_off(py)?;
            }
        }
        Ok(true)
    }

    /// The cached `(key, value, expires_at_ms, encoding)` of `raw_key`, or None.
    #[allow(clippy::type_complexity)]
    fn entry(
        &self,
        py: Python<'_>,
        raw_key: &[u8],
    ) -> Option<(Py<PyAny>, Py<PyBytes>, Option<i64>, u8)> {
        self.cache.with_entry(raw_key, |entry| {
            let value = (&entry.value)
                .into_pyobject(py)
                .map(Bound::unbind)
                .unwrap_or_else(|e| match e {});
            (
                entry.key.clone_ref(py),
                value,
                entry.expires_at_ms,
                entry.encoding,
            )
        })
    }

    fn __contains__(&self, raw_key: &[u8]) -> bool {
        self.cache.with_entry(raw_key, |_| ()).is_some()
    }

    fn __len__(&self) -> usize {
        self.cache.len()
    }

    /// The raw keys cached (the batch in flight included), in the order they will be written.
    fn keys<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        let mut keys = Vec::new();
        self.cache.each_key(|raw| keys.push(PyBytes::new(py, raw)));
        keys
    }

    /// Bytes held (keys plus values, the batch in flight included).
    #[getter]
    fn nbytes(&self) -> usize {
        self.writes().nbytes + self.cache.inflight_bytes()
    }

    /// How many puts were made (the idle thread watches it change).
    #[getter]
    fn puts(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    /// How many holds keep automatic flushes off.
    #[getter]
    fn get_locks(&self) -> usize {
        self.locks.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_locks(&self, locks: usize) {
        self.locks.store(locks, Ordering::Relaxed);
    }

    /// Whether the cache is closed (puts return False).
    #[getter]
    fn get_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_closed(&self, closed: bool) {
        self.closed.store(closed, Ordering::Relaxed);
    }

    /// Forgets the cached write of `raw_key` (after settling the batch in flight); whether
    /// there was one.
    fn discard(&self, py: Python<'_>, raw_key: &[u8]) -> bool {
        self.cache.settle(py);
        let old = self.writes().remove(raw_key);
        old.is_some()
    }

    /// Forgets every cached write (after settling the batch in flight: one being written is
    /// written).
    fn clear(&self, py: Python<'_>) {
        self.cache.settle(py);
        let old = std::mem::take(&mut *self.writes());
        drop(old);
    }

    /// Writes every cached write in one transaction (the table's `put_many`) and empties the
    /// cache, after settling the batch in flight; returns how many were written by this call
    /// and by the background writer since the last flush. On an error nothing more is written
    /// and everything not written stays cached.
    fn flush(&self, py: Python<'_>) -> Result<usize, BindingError> {
        self.cache.settle(py);
        // The mutex is taken with the GIL released: a reader waiting for it holds the GIL, so
        // this thread must not need the GIL while holding it.
        let written = py.detach(|| -> kvault::Result<Option<Writes>> {
            let mut writes = self.writes();
            if writes.len() == 0 {
                return Ok(None);
            }
            let items = writes.items();
            let table = self.kv.table();
            self.kv.vault().with(|s| table.put_many(s, &items))?;
            drop(items);
            // Handed back to be dropped with the GIL held (it holds Python references).
            Ok(Some(std::mem::take(&mut *writes)))
        })?;
        self.cache.clear_failure();
        Ok(written.map_or(0, |w| w.len()) + self.cache.take_written_behind())
    }
}

/// The size from which a put hands the cache's writes to the background writer: a sixteenth
/// of the flush threshold, at least 1 MiB (batches of thousands of small values, where a
/// transaction's fixed costs no longer show), at most the threshold.
fn hand_off_at(flush_threshold: usize) -> usize {
    (flush_threshold / 16).max(1 << 20).min(flush_threshold)
}

/// Adds this file's classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCacheLock>()?;
    m.add_class::<PyPendingWrites>()?;
    Ok(())
}
