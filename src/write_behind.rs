//! `CacheState`: what a key-value write-back cache holds, and its background writer.
//!
//! Once the cache holds a batch's worth of writes, a put hands them to a thread that writes
//! them through the table's `put_many` (without the interpreter lock) while the caller goes on
//! putting: the Python loop and SQLite's inserts then run on two cores. One batch is in flight
//! at a time, and reads see it until it is written.
//!
//! Whatever must not interleave with the batch (a direct write of a key, a flush, a
//! transaction) first *settles* the cache: it waits for a batch being written, or takes back a
//! batch the thread has not started (its writes are then cached again, older than any written
//! since). The thread marks a batch as being written only once it holds the store, so a
//! settling thread that holds a transaction takes the batch back instead of waiting for a
//! thread that waits for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use kvault::Kv;
use pyo3::prelude::*;

use crate::cache_writes::{Entry, Writes};

/// The batch handed to the background writer, and what became of it.
#[derive(Default)]
struct Behind {
    /// The batch in flight: handed off and not yet written (readable meanwhile).
    batch: Option<Arc<Writes>>,
    /// Whether the writer thread holds the store and is writing `batch`.
    writing: bool,
    /// Set when a background write failed (the batch stays, to be taken back): batches are
    /// then written by the caller, who sees the error, until a flush succeeds.
    failed: bool,
    /// A written batch, dropped by the next caller holding the interpreter lock (its entries
    /// hold Python references).
    spent: Option<Arc<Writes>>,
}

/// The cached writes of a key-value write-back cache and the batch in flight.
///
/// Lock order: `writes` before `behind`; the writer thread takes the store, then `behind`.
#[derive(Default)]
pub(crate) struct CacheState {
    writes: Mutex<Writes>,
    behind: Mutex<Behind>,
    /// Signalled when the writer thread finishes a batch.
    written: Condvar,
    /// Bytes of the batch in flight, or written and not yet dropped (they count against the
    /// cache's cap).
    inflight_bytes: AtomicUsize,
    /// Writes the writer thread wrote since [`CacheState::take_written_behind`] last asked.
    written_behind: AtomicUsize,
}

impl CacheState {
    /// The writes not yet handed off.
    pub(crate) fn writes(&self) -> MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn behind(&self) -> MutexGuard<'_, Behind> {
        self.behind.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes of the batch in flight.
    pub(crate) fn inflight_bytes(&self) -> usize {
        self.inflight_bytes.load(Ordering::Relaxed)
    }

    /// `f` of the newest cached write of `raw`: the writes not handed off first, then the
    /// batch in flight.
    pub(crate) fn with_entry<T>(&self, raw: &[u8], f: impl FnOnce(&Entry) -> T) -> Option<T> {
        let writes = self.writes();
        if let Some(entry) = writes.get(raw) {
            return Some(f(entry));
        }
        let behind = self.behind();
        behind.batch.as_ref()?.get(raw).map(f)
    }

    /// `f` of every cached raw key, once each, in the order they will be written.
    pub(crate) fn each_key(&self, mut f: impl FnMut(&[u8])) {
        let writes = self.writes();
        let behind = self.behind();
        if let Some(batch) = &behind.batch {
            for entry in batch.entries() {
                if writes.get(&entry.raw).is_none() {
                    f(&entry.raw);
                }
            }
        }
        for entry in writes.entries() {
            f(&entry.raw);
        }
    }

    /// How many keys are cached (in flight or not).
    pub(crate) fn len(&self) -> usize {
        let writes = self.writes();
        let behind = self.behind();
        let in_flight_only = behind.batch.as_ref().map_or(0, |batch| {
            batch
                .entries()
                .filter(|e| writes.get(&e.raw).is_none())
                .count()
        });
        writes.len() + in_flight_only
    }

    /// How many writes the writer thread wrote since the last call.
    pub(crate) fn take_written_behind(&self) -> usize {
        self.written_behind.swap(0, Ordering::Relaxed)
    }

    /// Whether a batch can be handed off now: none in flight, and no background failure.
    pub(crate) fn can_hand_off(&self) -> bool {
        let behind = self.behind();
        behind.batch.is_none() && !behind.failed
    }

    /// Notes a flush by the caller that succeeded: batches go to the background again.
    pub(crate) fn clear_failure(&self) {
        self.behind().failed = false;
    }

    /// Hands the writes not yet handed off to a new writer thread for `kv`, unless a batch
    /// is in flight, a background write failed, or there is nothing to write. Whether it did.
    pub(crate) fn hand_off(self: &Arc<Self>, kv: &Kv) -> bool {
        let spent;
        {
            let mut writes = self.writes();
            let mut behind = self.behind();
            if behind.batch.is_some() || behind.failed || writes.len() == 0 {
                return false;
            }
            spent = behind.spent.take();
            let batch = std::mem::take(&mut *writes);
            self.inflight_bytes.store(batch.nbytes, Ordering::Relaxed);
            behind.batch = Some(Arc::new(batch));
        }
        drop(spent);
        let state = Arc::clone(self);
        let kv = kv.clone();
        let started = std::thread::Builder::new()
            .name("ambervault-cache-write".into())
            .spawn(move || state.write_batch(&kv));
        if started.is_err() {
            // No thread: the batch waits to be taken back and written by the caller.
            self.behind().failed = true;
        }
        true
    }

    /// The writer thread: writes the batch in flight in one transaction, unless it was taken
    /// back while this thread waited for the store.
    fn write_batch(&self, kv: &Kv) {
        let mut store = kv.vault().store();
        let batch = {
            let mut behind = self.behind();
            let batch = match &behind.batch {
                Some(batch) if !behind.writing && !behind.failed => Arc::clone(batch),
                _ => return,
            };
            behind.writing = true;
            batch
        };
        let result = kv.table().put_many(&mut store, &batch.items());
        drop(store);
        // Before `writing` is cleared: a settling caller then holds the only reference.
        drop(batch);
        let mut behind = self.behind();
        behind.writing = false;
        if result.is_ok() {
            // Its bytes stay counted until a caller drops it.
            behind.spent = behind.batch.take();
            let written = behind.spent.as_ref().map_or(0, |b| b.len());
            self.written_behind.fetch_add(written, Ordering::Relaxed);
        } else {
            // Kept; the caller's next flush writes it and reports the error if it recurs.
            behind.failed = true;
        }
        drop(behind);
        self.written.notify_all();
    }

    /// Afterwards no batch is in flight: waits (with the interpreter lock released) for one
    /// being written, and takes back one not started or whose write failed, as the oldest
    /// cached writes.
    pub(crate) fn settle(&self, py: Python<'_>) {
        loop {
            let spent;
            {
                let mut writes = self.writes();
                let mut behind = self.behind();
                spent = behind.spent.take();
                if !behind.writing {
                    let batch = behind.batch.take().map(Arc::try_unwrap);
                    match batch {
                        None => {
                            self.inflight_bytes.store(0, Ordering::Relaxed);
                            return;
                        }
                        Some(Ok(batch)) => {
                            self.inflight_bytes.store(0, Ordering::Relaxed);
                            drop(behind);
                            writes.absorb_older(batch);
                            return;
                        }
                        // The writer thread still holds it for a moment: wait below.
                        Some(Err(batch)) => behind.batch = Some(batch),
                    }
                }
            }
            drop(spent);
            py.detach(|| {
                let behind = self.behind();
                let _ = self
                    .written
                    .wait_timeout_while(behind, std::time::Duration::from_millis(10), |b| b.writing)
                    .unwrap_or_else(PoisonError::into_inner);
            });
        }
    }
}
