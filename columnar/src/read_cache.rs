//! The per-connection read cache: column metadata and hot blocks of fixed-width data, valid
//! for one committed state of the file, so repeated point reads skip the read transaction.

use std::collections::HashMap;

use kvault::Store;
use rusqlite::Connection;

use crate::block_cache::BlockCache;
use crate::elements::ReadOut;
use crate::error::{Error, Result};
use crate::meta::{self, ColumnMeta};
use crate::slice::{resolve_index, resolve_slice};
use crate::stream::usize_of;

/// Point reads of fixed-width columns go through a cache of blocks of this many bytes.
const BLOCK: u64 = 4 << 10;
/// Largest read that goes through the block cache. Larger reads (windows, scans) are copied
/// straight from the chunks: filling cache blocks for them would cost more (fresh memory,
/// bytes they do not need) than the one blob read they take.
pub(crate) const CACHED_READ: u64 = 256;
/// Most bytes of blocks one connection keeps.
const CACHE_BYTES: usize = 64 << 20;

/// How a cache knows it is current: the commit token read before its snapshot was taken, or
/// (where no token can be read) the snapshot's `PRAGMA data_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    Token(kvault::CommitToken),
    DataVersion(i64),
}

/// Per-connection cache of column metadata and hot blocks of fixed-width data.
///
/// Valid for one `(Freshness, Store::local_write_count)` stamp: the first changes when any
/// connection commits, the second when this one writes, commits or rolls back. The stamp belongs
/// to the snapshot the contents were read in (see [`with_cache`]), so cached bytes always belong
/// to the snapshot being read.
pub(crate) struct ReadCache {
    /// Freshness and this connection's write count when the contents were read.
    stamp: Option<(Freshness, u64)>,
    metas: HashMap<i64, ColumnMeta>,
    blocks: BlockCache,
}

impl Default for ReadCache {
    fn default() -> Self {
        Self {
            stamp: None,
            metas: HashMap::new(),
            blocks: BlockCache::new(usize_of(BLOCK), CACHE_BYTES),
        }
    }
}

impl ReadCache {
    /// Drops everything unless it was filled under the snapshot's stamp. `token` must have been
    /// read before the snapshot was taken (outside any transaction), or be `None`.
    fn validate(
        &mut self,
        conn: &Connection,
        local_writes: u64,
        token: Option<kvault::CommitToken>,
    ) -> Result<()> {
        let fresh = match token {
            Some(token) => Freshness::Token(token),
            None => Freshness::DataVersion(data_version(conn)?),
        };
        let stamp = Some((fresh, local_writes));
        if self.stamp != stamp {
            self.metas.clear();
            self.blocks.clear();
            self.stamp = stamp;
        }
        Ok(())
    }

    /// The cached metadata of column `id`, if any, without checking that it is current
    /// ([`with_cache`] checks that after a hit).
    pub(crate) fn cached_meta(&self, id: i64) -> Option<&ColumnMeta> {
        self.metas.get(&id)
    }

    /// The metadata of column `id` (`name` for the not-found error), cached.
    pub(crate) fn meta(&mut self, conn: &Connection, id: i64, name: &str) -> Result<ColumnMeta> {
        if let Some(meta) = self.metas.get(&id) {
            return Ok(meta.clone());
        }
        let meta = meta::load_for_reading(conn, id, name)?;
        self.metas.insert(id, meta.clone());
        Ok(meta)
    }

    /// Copies data bytes `offset .. offset + out.len()` of a fixed-width column, block by block.
    pub(crate) fn read_fixed(
        &mut self,
        conn: &Connection,
        meta: &ColumnMeta,
        offset: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let stream = meta.data();
        let mut reader = meta.data_reader(conn);
        let mut done = 0usize;
        while done < out.len() {
            let pos = offset + done as u64;
            let index = pos / BLOCK;
            let within = pos - index * BLOCK;
            let block = match self.blocks.get(stream.id, index) {
                Some(block) => block,
                None => {
                    let start = index * BLOCK;
                    let len = BLOCK.min(meta.data_bytes.saturating_sub(start));
                    // Read straight into the cache's slot.
                    self.blocks
                        .insert_with(stream.id, index, usize_of(len), |slot| {
                            reader.read(start, slot)
                        })?
                }
            };
            done += copy_from_block(meta, block, within, &mut out[done..])?;
        }
        Ok(())
    }

    /// Fixed-width elements `start..stop` (clamped to the length of the cached metadata)
    /// through the cache only; `None` when the metadata or a block is not cached.
    pub(crate) fn fixed_range_cached(&mut self, id: i64, want: Wanted) -> Option<Result<ReadOut>> {
        let meta = self.metas.get(&id)?;
        let w = meta.width()?;
        let (start, stop) = match want {
            Wanted::Index(index) => match resolve_index(index, meta.len) {
                Ok(i) => (i, i + 1),
                Err(err) => return Some(Err(err)),
            },
            Wanted::Slice(start, stop) => resolve_slice(start, stop, meta.len),
        };
        if (stop - start) * w > CACHED_READ {
            return None;
        }
        let (offset, len) = (start * w, usize_of((stop - start) * w));
        let stream_id = meta.data().id;
        // Probe first so a miss costs no allocation.
        let first = offset / BLOCK;
        let last = (offset + len as u64).saturating_sub(1) / BLOCK;
        if len > 0 && (first..=last).any(|b| !self.blocks.contains(stream_id, b)) {
            return None;
        }
        let mut out = vec![0u8; len];
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let index = pos / BLOCK;
            let block = self.blocks.get(stream_id, index)?;
            match copy_from_block(meta, block, pos - index * BLOCK, &mut out[done..]) {
                Ok(n) => done += n,
                Err(err) => return Some(Err(err)),
            }
        }
        Some(Ok(ReadOut::Fixed(out)))
    }
}

/// Which elements a cached read wants: one index, or Python slice bounds.
#[derive(Clone, Copy)]
pub(crate) enum Wanted {
    Index(i64),
    Slice(Option<i64>, Option<i64>),
}

/// Copies from `block` at `within` into `out` as far as both go; returns the bytes copied.
fn copy_from_block(meta: &ColumnMeta, block: &[u8], within: u64, out: &mut [u8]) -> Result<usize> {
    let within = usize_of(within);
    let take = block.len().saturating_sub(within).min(out.len());
    if take == 0 {
        return Err(Error::Corrupted(format!(
            "column {:?} is shorter than its length",
            meta.name
        )));
    }
    out[..take].copy_from_slice(&block[within..within + take]);
    Ok(take)
}

/// Runs a read with this connection's cache (taken out of the store for the duration).
///
/// Outside a transaction, `hit` is tried first when the cache is still current. Checking that
/// needs only the store's commit token (the WAL index header, no lock), or where there is none,
/// `PRAGMA data_version` (one statement in its own snapshot) instead of a read transaction.
/// The token is read before any snapshot is taken, so a cache stamped with it holds a state at
/// least as new as the token says; equal tokens later mean nothing was committed since.
pub(crate) fn with_cache<T>(
    store: &mut Store,
    mut hit: impl FnMut(&mut ReadCache) -> Option<Result<T>>,
    mut f: impl FnMut(&Connection, &mut ReadCache) -> Result<T>,
) -> Result<T> {
    let local = store.local_write_count();
    // Outside explicit transactions reads see the latest commit (a read lease is kept current).
    let autocommit = store.transaction_depth() == 0;
    // Inside a transaction the snapshot is older than any token read now: no token then.
    let token = if autocommit {
        store.commit_token()
    } else {
        None
    };
    if autocommit {
        // Try the cache as it stands; only if it has the answer is it worth checking that it
        // is current (a miss goes straight to the read transaction, which checks anyway).
        let stamp = store.extension::<ReadCache>().stamp;
        if let Some(result) = hit(store.extension::<ReadCache>()) {
            let now = match token {
                Some(token) => Freshness::Token(token),
                None => Freshness::DataVersion(store.retry_with(data_version)?),
            };
            if stamp == Some((now, local)) {
                return result;
            }
        }
    }
    let mut cache = std::mem::take(store.extension::<ReadCache>());
    let result = store.read_with(|conn| {
        cache.validate(conn, local, token)?;
        f(conn, &mut cache)
    });
    *store.extension::<ReadCache>() = cache;
    result
}

/// A read outside any explicit transaction, with the cached metadata of column `id` and no
/// `BEGIN`/`COMMIT` of its own, when the cache is current by the store's commit token. The read
/// runs in the store's read lease when there is a current one (`Store::read_latest_once`);
/// otherwise its statements and blob handles take their own snapshots. Reading the token again afterwards, like
/// a sequence lock, proves no commit happened from before the metadata check to after the
/// read, so every part of it saw the state the metadata describes. `None` when this does not
/// apply (no token, a transaction open, metadata not cached or stale) or a commit intervened:
/// the caller then reads in a transaction.
pub(crate) fn read_if_current<T>(
    store: &mut Store,
    id: i64,
    read: impl FnOnce(&Connection, &ColumnMeta) -> Result<T>,
) -> Option<Result<T>> {
    let token = store.commit_token()?;
    let local = store.local_write_count();
    if store.transaction_depth() > 0 || store.is_closed() {
        return None;
    }
    let cache = store.extension::<ReadCache>();
    if cache.stamp != Some((Freshness::Token(token), local)) {
        return None;
    }
    let meta = cache.metas.get(&id)?.clone();
    let result = store.read_latest_once(|conn| read(conn, &meta));
    if store.commit_token() != Some(token) {
        return None;
    }
    match result {
        Err(err) if kvault::StoreError::is_busy(&err) => None,
        other => Some(other),
    }
}

/// SQLite's counter of commits by other connections, as seen by this one.
fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?)
}
