//! `PendingWrites` and `CacheLock`: the native half of the key-value write-back cache (the
//! Python `WriteBackCache`). A cached put converts its key once, keeps the latest value per key
//! in insertion order and, when a threshold is crossed, writes everything through the table's
//! `put_many` with the GIL released, without building a Python object per item.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use hashbrown::{DefaultHashBuilder, HashTable};
use kvault::{Encoding, KeyKind, Kv};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::convert::{key_from_py, value_from_py};
use crate::errors::BindingError;
use crate::kvault_py::PyKVault;

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
#[pyclass(module = "ambervault._ambervault", name = "CacheLock", frozen)]
pub struct PyCacheLock {
    state: Mutex<LockState>,
    freed: Condvar,
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
        }
    }

    /// As `threading.RLock.acquire`.
    #[pyo3(signature = (blocking=true, timeout=-1.0))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: f64) -> bool {
        if !blocking {
            return self.try_take();
        }
        self.take(py, (timeout >= 0.0).then_some(timeout))
    }

    /// As `threading.RLock.release`.
    fn release(&self) -> PyResult<()> {
        self.give()
    }

    fn __enter__(&self, py: Python<'_>) -> bool {
        self.take(py, None)
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

/// One cached write.
struct Entry {
    raw: Box<[u8]>,
    kind: KeyKind,
    /// The key as the user gave it (handed back by `entry`).
    key: Py<PyAny>,
    value: PyBackedBytes,
    expires_at_ms: Option<i64>,
    encoding: u8,
}

impl Entry {
    fn size(&self) -> usize {
        self.raw.len() + self.value.len()
    }
}

/// The latest write per key, in the order the keys were (last) written.
#[derive(Default)]
struct Writes {
    /// Insertion order; `None` where a key was rewritten or discarded since.
    slots: Vec<Option<Entry>>,
    /// `(hash of the raw key, its slot)`: the hash is kept so that growing the table never
    /// reads (or hashes) a key again.
    index: HashTable<(u64, usize)>,
    hasher: DefaultHashBuilder,
    nbytes: usize,
}

impl Writes {
    fn hash(&self, raw: &[u8]) -> u64 {
        self.hasher.hash_one(raw)
    }

    fn find(&self, raw: &[u8]) -> Option<usize> {
        let hash = self.hash(raw);
        let slots = &self.slots;
        self.index
            .find(hash, |&(h, at)| {
                h == hash && slots[at].as_ref().is_some_and(|e| &*e.raw == raw)
            })
            .map(|&(_, at)| at)
    }

    fn remove(&mut self, raw: &[u8]) -> Option<Entry> {
        let hash = self.hash(raw);
        let slots = &self.slots;
        let found = self.index.find_entry(hash, |&(h, at)| {
            h == hash && slots[at].as_ref().is_some_and(|e| &*e.raw == raw)
        });
        let at = found.ok()?.remove().0 .1;
        let entry = self.slots[at].take()?;
        self.nbytes -= entry.size();
        if self.index.is_empty() {
            self.slots.clear();
        } else if self.slots.len() > 64 && self.index.len() * 2 < self.slots.len() {
            self.compact();
        }
        Some(entry)
    }

    /// Drops the holes left by rewritten and discarded keys.
    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        self.index.clear();
        for at in 0..self.slots.len() {
            let hash = self.hash(&self.slots[at].as_ref().expect("kept").raw);
            self.index.insert_unique(hash, (hash, at), |&(h, _)| h);
        }
    }

    /// Adds a write of a key not held.
    fn insert(&mut self, entry: Entry) {
        self.nbytes += entry.size();
        let hash = self.hash(&entry.raw);
        let at = self.slots.len();
        self.index.insert_unique(hash, (hash, at), |&(h, _)| h);
        self.slots.push(Some(entry));
    }

    fn get(&self, raw: &[u8]) -> Option<&Entry> {
        self.find(raw).and_then(|at| self.slots[at].as_ref())
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().flatten()
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
    cap: usize,
    threshold: usize,
    auto_flush: bool,
    /// Called (with no argument) before a flush that `put` starts, if set.
    before_flush: Option<Py<PyAny>>,
    writes: Mutex<Writes>,
    /// How many `acquire()`s (transactions, `lock_cache()`) hold automatic flushes off.
    locks: AtomicUsize,
    /// Set by `disable_cache` after its last flush: nothing more is cached.
    closed: AtomicBool,
    /// Counts puts, for the idle-flush thread.
    puts: AtomicU64,
}

impl PyPendingWrites {
    fn writes(&self) -> MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `flush` from `put` (the caller holds the cache lock).
    fn flush_from_put(&self, py: Python<'_>) -> Result<usize, BindingError> {
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
        Self {
            kv: kv.kv().clone(),
            lock,
            cap: cap_bytes,
            threshold: flush_threshold,
            auto_flush,
            before_flush,
            writes: Mutex::new(Writes::default()),
            locks: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            puts: AtomicU64::new(0),
        }
    }

    /// Caches a write of `value` (bytes-like, encoded as `encoding` says) under `key`; the
    /// latest write of a key wins. Flushes first when it would pass the cap, and after it when
    /// it reaches the threshold (unless automatic flushes are off or held). Returns False,
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
            if size <= self.cap && writes.nbytes + size <= self.cap {
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
                    // Nothing written: the older write stays cached (last, as if rewritten).
                    if let Some(old) = old {
                        self.writes().insert(old);
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
        if self.auto_flush && self.locks.load(Ordering::Relaxed) == 0 && nbytes >= self.threshold {
            self.flush_from_put(py)?;
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
        let writes = self.writes();
        let entry = writes.get(raw_key)?;
        let value = (&entry.value)
            .into_pyobject(py)
            .map(Bound::unbind)
            .unwrap_or_else(|e| match e {});
        Some((
            entry.key.clone_ref(py),
            value,
            entry.expires_at_ms,
            entry.encoding,
        ))
    }

    fn __contains__(&self, raw_key: &[u8]) -> bool {
        self.writes().get(raw_key).is_some()
    }

    fn __len__(&self) -> usize {
        self.writes().len()
    }

    /// The raw keys cached, in the order they will be written.
    fn keys<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.writes()
            .entries()
            .map(|e| PyBytes::new(py, &e.raw))
            .collect()
    }

    /// Bytes held (keys plus values).
    #[getter]
    fn nbytes(&self) -> usize {
        self.writes().nbytes
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

    /// Forgets the cached write of `raw_key`; whether there was one.
    fn discard(&self, raw_key: &[u8]) -> bool {
        let old = self.writes().remove(raw_key);
        old.is_some()
    }

    /// Forgets every cached write.
    fn clear(&self) {
        let old = std::mem::take(&mut *self.writes());
        drop(old);
    }

    /// Writes every cached write in one transaction (the table's `put_many`) and empties the
    /// cache; returns how many were written. On an error nothing is written and everything
    /// stays cached.
    fn flush(&self, py: Python<'_>) -> Result<usize, BindingError> {
        // The mutex is taken with the GIL released: a reader waiting for it holds the GIL, so
        // this thread must not need the GIL while holding it.
        let written = py.detach(|| -> kvault::Result<Option<Writes>> {
            let mut writes = self.writes();
            if writes.len() == 0 {
                return Ok(None);
            }
            let items: Vec<kvault::PutItem<'_>> = writes
                .entries()
                .map(|e| {
                    kvault::PutItem::new(&e.raw, e.kind, &e.value)
                        .expiring(e.expires_at_ms)
                        .encoded(Encoding(e.encoding))
                })
                .collect();
            let table = self.kv.table();
            self.kv.vault().with(|s| table.put_many(s, &items))?;
            drop(items);
            // Handed back to be dropped with the GIL held (it holds Python references).
            Ok(Some(std::mem::take(&mut *writes)))
        })?;
        Ok(written.map_or(0, |w| w.len()))
    }
}

/// Adds this file's classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCacheLock>()?;
    m.add_class::<PyPendingWrites>()?;
    Ok(())
}
