//! What the handles of one table in one open vault share in memory: the last policy seen,
//! reads recorded for least-recently/frequently-used eviction (written in batches, so a read
//! never becomes a write transaction), the blobs open readers are using (never evicted), and
//! the auto-prune schedule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection};

use super::policy::{CachePolicy, Dedup};
use crate::codec::Compression;
use crate::error::Result;

/// Most distinct keys whose reads are held in memory between flushes; reads of further keys
/// are counted as hits but not recorded until the next flush (a bound on memory, not on
/// correctness: the eviction order is then a little staler).
pub const MAX_RECORDED_KEYS: usize = 100_000;

/// How often the vault's maintenance thread writes recorded reads while reads are tracked.
pub const ACCESS_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Reads recorded since the last flush.
#[derive(Debug, Default)]
pub(super) struct AccessLog {
    /// key -> (latest read time in ms, reads).
    reads: HashMap<Vec<u8>, (i64, u32)>,
    hits: u64,
    misses: u64,
}

impl AccessLog {
    fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.hits == 0 && self.misses == 0
    }
}

/// The shared in-memory state of one table (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct TableRuntime {
    tracking: AtomicBool,
    dedup_all: AtomicBool,
    dedup_none: AtomicBool,
    history: AtomicBool,
    limited: AtomicBool,
    /// The table has branches (deletes record their time for merges); see `branches`.
    branched: AtomicBool,
    log: Mutex<AccessLog>,
    pinned: Mutex<HashMap<i64, usize>>,
    /// (interval, time of the last run in ms).
    auto_prune: Mutex<Option<(Duration, i64)>>,
    /// How new chunks are compressed (see `compression`).
    compression: Mutex<Option<Compression>>,
    /// Whether the content table has the `codec` and `raw_size` columns (compressed contents
    /// may exist); see `compression`.
    coded: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TableRuntime {
    /// Remembers what a policy asks of reads and writes.
    pub(super) fn adopt(&self, policy: &CachePolicy) {
        self.tracking
            .store(policy.eviction.tracks_reads(), Ordering::Relaxed);
        self.dedup_all
            .store(policy.dedup == Dedup::All, Ordering::Relaxed);
        self.dedup_none
            .store(policy.dedup == Dedup::None, Ordering::Relaxed);
        self.history
            .store(policy.history.is_on(), Ordering::Relaxed);
        self.limited
            .store(policy.max_bytes.is_some(), Ordering::Relaxed);
    }

    /// Remembers whether the table has branches.
    pub(super) fn set_branched(&self, branched: bool) {
        self.branched.store(branched, Ordering::Relaxed);
    }

    /// Whether the table had branches when this vault last looked (at open, or when it
    /// created or deleted one).
    pub(super) fn branched(&self) -> bool {
        self.branched.load(Ordering::Relaxed)
    }

    /// Whether the last policy seen sets a byte limit.
    pub(super) fn limited(&self) -> bool {
        self.limited.load(Ordering::Relaxed)
    }

    /// Whether the last policy seen keeps earlier versions.
    pub(super) fn history(&self) -> bool {
        self.history.load(Ordering::Relaxed)
    }

    /// Remembers a policy that needs nothing of writes and reads beyond, possibly, chunks
    /// stored without deduplication.
    pub(super) fn adopt_plain(&self, dedup_none: bool) {
        self.tracking.store(false, Ordering::Relaxed);
        self.dedup_all.store(false, Ordering::Relaxed);
        self.dedup_none.store(dedup_none, Ordering::Relaxed);
        self.history.store(false, Ordering::Relaxed);
        self.limited.store(false, Ordering::Relaxed);
    }

    /// Whether reads are recorded.
    pub(super) fn tracking(&self) -> bool {
        self.tracking.load(Ordering::Relaxed)
    }

    /// Whether the last policy seen deduplicates small values.
    pub(super) fn dedup_all(&self) -> bool {
        self.dedup_all.load(Ordering::Relaxed)
    }

    /// Whether the last policy seen stores every chunk on its own.
    pub(super) fn dedup_none(&self) -> bool {
        self.dedup_none.load(Ordering::Relaxed)
    }

    /// Records a read of `key` at `now` (a hit when it was found).
    pub(super) fn note_read(&self, key: &[u8], found: bool, now: i64) {
        if !self.tracking() {
            return;
        }
        let mut log = lock(&self.log);
        if !found {
            log.misses += 1;
            return;
        }
        log.hits += 1;
        if let Some(entry) = log.reads.get_mut(key) {
            entry.0 = entry.0.max(now);
            entry.1 = entry.1.saturating_add(1);
        } else if log.reads.len() < MAX_RECORDED_KEYS {
            log.reads.insert(key.to_vec(), (now, 1));
        }
    }

    /// Whether reads wait to be written.
    pub(super) fn has_recorded_reads(&self) -> bool {
        !lock(&self.log).is_empty()
    }

    /// Writes the recorded reads into table `t`'s access table and counters, inside the
    /// caller's write transaction. Taken out of memory first: if the transaction rolls back,
    /// those reads are forgotten (they only order evictions).
    pub(super) fn flush_reads(&self, conn: &Connection, t: &str) -> Result<()> {
        let log = std::mem::take(&mut *lock(&self.log));
        if log.is_empty() {
            return Ok(());
        }
        if !log.reads.is_empty() {
            let mut update = conn.prepare_cached(&format!(
                "UPDATE \"{t}__access\" SET used_at = max(used_at, ?2), uses = uses + ?3 \
                 WHERE key = ?1"
            ))?;
            for (key, (at, reads)) in &log.reads {
                update.execute(params![key, at, reads])?;
            }
        }
        conn.prepare_cached(&format!(
            "UPDATE \"{t}__cache\" SET hits = hits + ?1, misses = misses + ?2 WHERE id = 0"
        ))?
        .execute(params![
            i64::try_from(log.hits).unwrap_or(i64::MAX),
            i64::try_from(log.misses).unwrap_or(i64::MAX)
        ])?;
        Ok(())
    }

    /// Hits and misses recorded but not yet written.
    pub(super) fn unwritten_counts(&self) -> (u64, u64) {
        let log = lock(&self.log);
        (log.hits, log.misses)
    }

    /// Marks a blob as being read (an open reader): eviction leaves its key alone.
    pub(super) fn pin(&self, blob_id: i64) {
        *lock(&self.pinned).entry(blob_id).or_default() += 1;
    }

    /// Ends one [`TableRuntime::pin`].
    pub(super) fn unpin(&self, blob_id: i64) {
        let mut pinned = lock(&self.pinned);
        if let Some(count) = pinned.get_mut(&blob_id) {
            *count -= 1;
            if *count == 0 {
                pinned.remove(&blob_id);
            }
        }
    }

    /// Whether an open reader uses the blob.
    pub(super) fn is_pinned(&self, blob_id: i64) -> bool {
        lock(&self.pinned).contains_key(&blob_id)
    }

    /// The compression of new chunks.
    pub(super) fn compression(&self) -> Option<Compression> {
        *lock(&self.compression)
    }

    /// Sets the compression of new chunks.
    pub(super) fn set_compression(&self, compression: Option<Compression>) {
        *lock(&self.compression) = compression;
    }

    /// Whether the content table was last seen with its codec columns.
    pub(super) fn coded(&self) -> bool {
        self.coded.load(Ordering::Relaxed)
    }

    /// Remembers whether the content table has its codec columns.
    pub(super) fn set_coded(&self, coded: bool) {
        self.coded.store(coded, Ordering::Relaxed);
    }

    /// Sets (or with `None` stops) pruning expired keys every `interval`.
    pub(super) fn set_auto_prune(&self, interval: Option<Duration>, now: i64) {
        *lock(&self.auto_prune) = interval.map(|i| (i, now));
    }

    /// The auto-prune interval, if set.
    pub(super) fn auto_prune_interval(&self) -> Option<Duration> {
        lock(&self.auto_prune).map(|(i, _)| i)
    }

    /// Whether an auto-prune is due at `now`; if so, records `now` as its time.
    pub(super) fn take_prune_due(&self, now: i64) -> bool {
        let mut slot = lock(&self.auto_prune);
        match &mut *slot {
            Some((interval, last))
                if now.saturating_sub(*last)
                    >= i64::try_from(interval.as_millis()).unwrap_or(0) =>
            {
                *last = now;
                true
            }
            _ => false,
        }
    }
}

/// The runtimes of one store's tables, by table name (a [`crate::Store`] extension, so every
/// handle on the same table in one open vault shares one).
#[derive(Default)]
pub(super) struct Runtimes(pub(super) HashMap<String, std::sync::Arc<TableRuntime>>);
