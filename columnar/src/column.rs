//! Named, typed columns: metadata rows plus chunked streams (see `docs/format.md`).
//!
//! Every operation is one transaction on the shared [`Store`]: it reloads the column's metadata
//! inside the transaction (so appends from other processes are never overwritten), changes the
//! streams, and writes the new length back. After a crash a column has the length and contents of
//! its last committed operation.

use std::sync::Arc;

use kvault::{now_ms, Store};
use rusqlite::{params, Connection, OptionalExtension};

use crate::block_cache::BlockCache;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::stream::{usize_of, ChunkPlan, Stream, StreamReader, CHUNKS_TABLE};

/// Name of the table holding one row per column.
pub const COLUMNS_TABLE: &str = "ambervault_columns";
/// Bytes per index entry of a variable-width column (little-endian u64 end offset).
const INDEX_WIDTH: u64 = 8;
/// Column ids must fit in the upper bits of a chunk rowid.
const MAX_COLUMN_ID: i64 = (1 << 30) - 1;
/// Point reads of fixed-width columns go through a cache of blocks of this many bytes.
const BLOCK: u64 = 4 << 10;
/// Largest read that goes through the block cache. Larger reads (windows, scans) are copied
/// straight from the chunks: filling cache blocks for them would cost more (fresh memory,
/// bytes they do not need) than the one blob read they take.
const CACHED_READ: u64 = 256;
/// Most bytes of blocks one connection keeps.
const CACHE_BYTES: usize = 64 << 20;
/// Most data bytes a column keeps in its metadata row's `tail` (see [`ColumnMeta::tail`]).
/// The row must stay inside one page next to other columns' rows: 1 KiB is a quarter of the
/// default page, and one move of the tail into the chunks serves 128 f64 appends.
pub const TAIL_BYTES: u64 = 1 << 10;
/// Most index bytes (64 end offsets) a variable-width column keeps in `index_tail`.
pub const INDEX_TAIL_BYTES: u64 = 64 * INDEX_WIDTH;

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
struct ReadCache {
    /// Freshness and this connection's write count when the contents were read.
    stamp: Option<(Freshness, u64)>,
    metas: std::collections::HashMap<i64, ColumnMeta>,
    blocks: BlockCache,
}

impl Default for ReadCache {
    fn default() -> Self {
        Self {
            stamp: None,
            metas: std::collections::HashMap::new(),
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

    fn meta(&mut self, conn: &Connection, id: i64, name: &str) -> Result<ColumnMeta> {
        if let Some(meta) = self.metas.get(&id) {
            return Ok(meta.clone());
        }
        let meta = Columns::load(conn, id, name)?;
        self.metas.insert(id, meta.clone());
        Ok(meta)
    }

    /// Copies data bytes `offset .. offset + out.len()` of a fixed-width column, block by block.
    fn read_fixed(
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
    fn fixed_range_cached(&mut self, id: i64, want: Wanted) -> Option<Result<ReadOut>> {
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
enum Wanted {
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
fn with_cache<T>(
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
fn read_if_current<T>(
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

fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?)
}

/// Python slice bounds (`None` = open end, negatives count from the end) resolved against
/// `len` and clamped, with `stop >= start`.
fn resolve_slice(start: Option<i64>, stop: Option<i64>, len: u64) -> (u64, u64) {
    let resolve = |bound: i64| -> u64 {
        if bound < 0 {
            len.saturating_sub(bound.unsigned_abs())
        } else {
            u64::try_from(bound).unwrap_or(0).min(len)
        }
    };
    let begin = start.map_or(0, resolve);
    let end = stop.map_or(len, resolve);
    (begin, end.max(begin))
}

/// A column's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMeta {
    /// Stable id (survives renames).
    pub id: i64,
    /// Current name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Number of elements.
    pub len: u64,
    /// Bytes of element data (for variable-width columns, the data stream's length).
    pub data_bytes: u64,
    /// Chunk capacities of its streams.
    pub plan: ChunkPlan,
    /// The last `tail.len()` data bytes (at most [`TAIL_BYTES`]), stored in the metadata row
    /// instead of the chunks. An append that fits writes only this row, so a durable
    /// one-element append commits one page instead of two or three (the chunk pages and the
    /// length). The chunks hold the bytes before the tail (`data_bytes - tail.len()`,
    /// "sealed"); any other write first moves the tails into the chunks.
    pub tail: Arc<[u8]>,
    /// For variable-width columns, the index entries of the last `index_tail.len() / 8`
    /// elements (at most [`INDEX_TAIL_BYTES`]): exactly the elements whose bytes `tail` holds.
    /// Always empty for fixed-width columns.
    pub index_tail: Arc<[u8]>,
}

impl ColumnMeta {
    fn data(&self) -> Stream {
        Stream {
            id: self.id << 1,
            plan: self.plan,
        }
    }

    fn index(&self) -> Stream {
        Stream {
            id: (self.id << 1) | 1,
            plan: self.plan,
        }
    }

    fn width(&self) -> Option<u64> {
        self.dtype.fixed_width().map(|w| w as u64)
    }

    /// Data bytes held by the chunks: everything before the tail.
    fn sealed(&self) -> u64 {
        self.data_bytes - self.tail.len() as u64
    }

    /// Index bytes held by the chunks: everything before the index tail.
    fn index_sealed(&self) -> u64 {
        // Saturating: a damaged length must give an error later, not an overflow here.
        self.len
            .saturating_mul(INDEX_WIDTH)
            .saturating_sub(self.index_tail.len() as u64)
    }

    /// A reader of the data bytes, chunks and tail alike.
    fn data_reader<'c, 'm>(&'m self, conn: &'c Connection) -> TailedReader<'c, 'm> {
        TailedReader {
            chunks: self.data().reader(conn),
            sealed: self.sealed(),
            tail: &self.tail,
        }
    }

    /// A reader of the index bytes, chunks and tail alike.
    fn index_reader<'c, 'm>(&'m self, conn: &'c Connection) -> TailedReader<'c, 'm> {
        TailedReader {
            chunks: self.index().reader(conn),
            sealed: self.index_sealed(),
            tail: &self.index_tail,
        }
    }

    /// Reads data bytes `offset .. offset + out.len()` (chunks and tail alike).
    fn read_data(&self, conn: &Connection, offset: u64, out: &mut [u8]) -> Result<()> {
        self.data_reader(conn).read(offset, out)
    }

    fn check_index(&self, index: u64) -> Result<()> {
        if index >= self.len {
            return Err(Error::IndexOutOfRange {
                index,
                len: self.len,
            });
        }
        Ok(())
    }
}

/// Reads one of a column's streams: bytes before `sealed` from the chunks, the rest from the
/// stream's tail in the metadata row.
struct TailedReader<'c, 'm> {
    chunks: StreamReader<'c>,
    sealed: u64,
    tail: &'m [u8],
}

impl TailedReader<'_, '_> {
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<()> {
        let in_chunks = usize_of(self.sealed.saturating_sub(offset).min(out.len() as u64));
        if in_chunks > 0 {
            self.chunks.read(offset, &mut out[..in_chunks])?;
        }
        if in_chunks < out.len() {
            let from = usize_of(offset + in_chunks as u64 - self.sealed);
            let rest = &mut out[in_chunks..];
            let part = from
                .checked_add(rest.len())
                .and_then(|end| self.tail.get(from..end))
                .ok_or_else(|| {
                    Error::Corrupted("a read ran past the end of a column's data".into())
                })?;
            rest.copy_from_slice(part);
        }
        Ok(())
    }
}

/// Moves a column's tails into its chunks (before any write other than an append that fits in
/// them). The caller saves the metadata.
fn seal(conn: &Connection, meta: &mut ColumnMeta) -> Result<()> {
    if !meta.tail.is_empty() {
        meta.data().append(conn, meta.sealed(), &meta.tail)?;
        meta.tail = Arc::default();
    }
    if !meta.index_tail.is_empty() {
        meta.index()
            .append(conn, meta.index_sealed(), &meta.index_tail)?;
        meta.index_tail = Arc::default();
    }
    Ok(())
}

/// Elements to write, already encoded.
#[derive(Debug, Clone, Copy)]
pub enum Elements<'a> {
    /// Fixed-width elements back to back (length a multiple of the width).
    Fixed(&'a [u8]),
    /// Variable-width elements.
    Var(&'a [&'a [u8]]),
    /// Variable-width elements packed back to back: element `k` is `data[ends[k-1]..ends[k]]`
    /// (with `ends[-1] = 0`); `ends` never decrease and the last is `data.len()`. Appends write
    /// `data` as it is, without gathering the items.
    Packed {
        /// The elements' bytes back to back.
        data: &'a [u8],
        /// End offset of each element within `data`.
        ends: &'a [usize],
    },
}

impl<'a> Elements<'a> {
    /// Variable-width elements one by one (packed ones checked and split; no bytes copied),
    /// for the operations that replace or insert items individually.
    fn items(&self) -> Result<std::borrow::Cow<'_, [&'a [u8]]>> {
        match *self {
            Elements::Var(items) => Ok(std::borrow::Cow::Borrowed(items)),
            Elements::Packed { data, ends } => {
                check_packed(data, ends)?;
                let mut start = 0;
                Ok(std::borrow::Cow::Owned(
                    ends.iter()
                        .map(|&end| {
                            let item = &data[start..end];
                            start = end;
                            item
                        })
                        .collect(),
                ))
            }
            Elements::Fixed(_) => Err(Error::InvalidArgument(
                "fixed-width elements have no variable-width items".into(),
            )),
        }
    }

    fn count(&self, meta: &ColumnMeta) -> Result<u64> {
        match (self, meta.width()) {
            (Elements::Packed { data, ends }, None) => {
                check_packed(data, ends)?;
                Ok(ends.len() as u64)
            }
            (Elements::Fixed(raw), Some(w)) => {
                if raw.len() as u64 % w != 0 {
                    return Err(Error::InvalidArgument(format!(
                        "{} bytes is not a whole number of {w}-byte {} elements",
                        raw.len(),
                        meta.dtype.name()
                    )));
                }
                Ok(raw.len() as u64 / w)
            }
            (Elements::Var(items), None) => Ok(items.len() as u64),
            _ => Err(Error::InvalidArgument(format!(
                "element layout does not match column {:?} of dtype {}",
                meta.name,
                meta.dtype.name()
            ))),
        }
    }
}

fn check_packed(data: &[u8], ends: &[usize]) -> Result<()> {
    if ends.windows(2).any(|w| w[1] < w[0]) || ends.last().copied().unwrap_or(0) != data.len() {
        return Err(Error::InvalidArgument(
            "packed elements need non-decreasing ends, the last equal to the data length".into(),
        ));
    }
    Ok(())
}

/// Elements read from a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOut {
    /// Fixed-width elements back to back.
    Fixed(Vec<u8>),
    /// Variable-width elements: `data[ends[k-1]..ends[k]]` is element k (`ends[-1]` = 0).
    Var {
        /// End offset of each element within `data`.
        ends: Vec<u64>,
        /// The elements' bytes back to back.
        data: Vec<u8>,
    },
}

impl ReadOut {
    /// Number of elements, given the fixed width (ignored for variable-width output).
    #[must_use]
    pub fn count(&self, width: Option<usize>) -> usize {
        match self {
            ReadOut::Fixed(raw) => raw.len() / width.unwrap_or(1).max(1),
            ReadOut::Var { ends, .. } => ends.len(),
        }
    }
}

/// The column store of one vault file. Holds no connection: every call borrows a [`Store`].
#[derive(Debug, Clone, Copy)]
pub struct Columns;

/// One metadata row as stored: id, name, dtype, length, data bytes, min and max chunk, tail,
/// index tail.
type RawMeta = (
    i64,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

fn meta_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawMeta> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

fn build_meta(raw: RawMeta) -> Result<ColumnMeta> {
    let (id, name, dtype, len, data_bytes, min, max, tail, index_tail) = raw;
    let tail = tail.unwrap_or_default();
    let index_tail = index_tail.unwrap_or_default();
    let non_negative = |v: i64, what: &str| {
        u64::try_from(v)
            .map_err(|_| Error::Corrupted(format!("column {name:?} has negative {what}")))
    };
    let parsed = DType::parse(&dtype)
        .map_err(|_| Error::Corrupted(format!("column {name:?} has unknown dtype {dtype:?}")))?;
    let (len_u, bytes_u) = (
        non_negative(len, "length")?,
        non_negative(data_bytes, "data size")?,
    );
    if let Some(w) = parsed.fixed_width() {
        if len_u.checked_mul(w as u64) != Some(bytes_u) {
            return Err(Error::Corrupted(format!(
                "column {name:?} claims {len_u} elements of {w} bytes in {bytes_u} bytes"
            )));
        }
    }
    let tail_fits = tail.len() as u64 <= bytes_u
        && match parsed.fixed_width() {
            Some(w) => tail.len() % w == 0 && index_tail.is_empty(),
            None => {
                index_tail.len() as u64 % INDEX_WIDTH == 0
                    && index_tail.len() as u64 <= len_u.saturating_mul(INDEX_WIDTH)
                    && (!index_tail.is_empty() || tail.is_empty())
            }
        };
    if !tail_fits {
        return Err(Error::Corrupted(format!(
            "column {name:?} has a {}-byte tail and a {}-byte index tail that do not fit its \
             {len_u} elements and {bytes_u} data bytes of dtype {dtype}",
            tail.len(),
            index_tail.len()
        )));
    }
    Ok(ColumnMeta {
        id,
        dtype: DType::parse(&dtype).map_err(|_| {
            Error::Corrupted(format!("column {name:?} has unknown dtype {dtype:?}"))
        })?,
        len: non_negative(len, "length")?,
        data_bytes: non_negative(data_bytes, "data size")?,
        plan: ChunkPlan::new(
            non_negative(min, "chunk size")?,
            non_negative(max, "chunk size")?,
        )
        .map_err(|e| Error::Corrupted(format!("column {name:?}: {e}")))?,
        name,
        tail: tail.into(),
        index_tail: index_tail.into(),
    })
}

const META_COLUMNS: &str =
    "col_id, name, dtype, length, data_bytes, min_chunk, max_chunk, tail, index_tail";

impl Columns {
    /// Creates the column tables if the store is writable and they are missing.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn ensure_schema(store: &mut Store) -> Result<()> {
        if store.is_read_only() {
            return Ok(());
        }
        let present: i64 = store.retry_with(|conn| -> Result<i64> {
            Ok(conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN (?1, ?2)",
                [COLUMNS_TABLE, CHUNKS_TABLE],
                |r| r.get(0),
            )?)
        })?;
        if present == 2 {
            return Self::add_tail_columns(store);
        }
        store.write_with(|conn| -> Result<()> {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {COLUMNS_TABLE} (
                    col_id INTEGER PRIMARY KEY AUTOINCREMENT,
                    name TEXT NOT NULL UNIQUE,
                    dtype TEXT NOT NULL,
                    length INTEGER NOT NULL DEFAULT 0,
                    data_bytes INTEGER NOT NULL DEFAULT 0,
                    min_chunk INTEGER NOT NULL,
                    max_chunk INTEGER NOT NULL,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    tail BLOB,
                    index_tail BLOB);
                 CREATE TABLE IF NOT EXISTS {CHUNKS_TABLE} (id INTEGER PRIMARY KEY, data BLOB NOT NULL);"
            ))?;
            Ok(())
        })?;
        Ok(())
    }

    /// Adds the `tail` and `index_tail` columns to a columns table created by a development
    /// build before they existed (such a table has no tails, so no data moves).
    fn add_tail_columns(store: &mut Store) -> Result<()> {
        const TAIL_COLUMNS: [&str; 2] = ["tail", "index_tail"];
        let has = |conn: &Connection, column: &str| -> Result<bool> {
            Ok(conn.query_row(
                "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
                [COLUMNS_TABLE, column],
                |r| r.get::<_, i64>(0),
            )? == 1)
        };
        let complete = store.retry_with(|conn| -> Result<bool> {
            Ok(has(conn, TAIL_COLUMNS[0])? && has(conn, TAIL_COLUMNS[1])?)
        })?;
        if complete {
            return Ok(());
        }
        store.write_with(|conn| {
            for column in TAIL_COLUMNS {
                if !has(conn, column)? {
                    conn.execute_batch(&format!(
                        "ALTER TABLE {COLUMNS_TABLE} ADD COLUMN {column} BLOB"
                    ))?;
                }
            }
            Ok(())
        })
    }

    fn tables_exist(conn: &Connection) -> Result<bool> {
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = ?1",
            [COLUMNS_TABLE],
            |r| r.get(0),
        )?;
        Ok(n == 1)
    }

    /// Creates column `name` of `dtype`.
    ///
    /// # Errors
    /// [`Error::ColumnExists`]; [`Error::InvalidArgument`] for an empty name.
    pub fn create(
        store: &mut Store,
        name: &str,
        dtype: DType,
        plan: ChunkPlan,
    ) -> Result<ColumnMeta> {
        validate_name(name)?;
        Self::ensure_schema(store)?;
        // The stored plan is the one every later access uses, so files stay self-describing.
        let plan = plan.row_limited();
        let result = store.write_with(|conn| {
            if Self::find_in(conn, name)?.is_some() {
                return Err(Error::ColumnExists(name.to_string()));
            }
            let now = now_ms();
            conn.execute(
                &format!(
                    "INSERT INTO {COLUMNS_TABLE} (name, dtype, min_chunk, max_chunk, created_at, \
                     updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)"
                ),
                params![
                    name,
                    dtype.name(),
                    i64::try_from(plan.min()).unwrap_or(i64::MAX),
                    i64::try_from(plan.max()).unwrap_or(i64::MAX),
                    now
                ],
            )?;
            let id = conn.last_insert_rowid();
            if id > MAX_COLUMN_ID {
                return Err(Error::InvalidArgument(
                    "the vault ran out of column ids".into(),
                ));
            }
            Ok(ColumnMeta {
                id,
                name: name.to_string(),
                dtype,
                len: 0,
                data_bytes: 0,
                plan,
                tail: Arc::default(),
                index_tail: Arc::default(),
            })
        });
        result
    }

    /// The column called `name`, if any.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn find(store: &mut Store, name: &str) -> Result<Option<ColumnMeta>> {
        store.retry_with(|conn| Self::find_in(conn, name))
    }

    fn find_in(conn: &Connection, name: &str) -> Result<Option<ColumnMeta>> {
        if !Self::tables_exist(conn)? {
            return Ok(None);
        }
        let raw = conn
            .prepare_cached(&format!(
                "SELECT {META_COLUMNS} FROM {COLUMNS_TABLE} WHERE name = ?1"
            ))?
            .query_row([name], meta_from_row)
            .optional()?;
        raw.map(build_meta).transpose()
    }

    fn load(conn: &Connection, id: i64, name: &str) -> Result<ColumnMeta> {
        let raw = conn
            .prepare_cached(&format!(
                "SELECT {META_COLUMNS} FROM {COLUMNS_TABLE} WHERE col_id = ?1"
            ))?
            .query_row([id], meta_from_row)
            .optional()?;
        match raw {
            Some(raw) => build_meta(raw),
            None => Err(Error::ColumnNotFound(name.to_string())),
        }
    }

    /// The metadata for a write other than an append, with the tails moved into the chunks
    /// first (only appends and readers deal with tails).
    fn load_sealed(conn: &Connection, id: i64, name: &str) -> Result<ColumnMeta> {
        let mut meta = Self::load(conn, id, name)?;
        seal(conn, &mut meta)?;
        Ok(meta)
    }

    fn save(conn: &Connection, meta: &ColumnMeta) -> Result<()> {
        conn.prepare_cached(&format!(
            "UPDATE {COLUMNS_TABLE} SET length = ?1, data_bytes = ?2, updated_at = ?3, tail = ?4, \
             index_tail = ?5 WHERE col_id = ?6"
        ))?
        .execute(params![
            i64::try_from(meta.len).unwrap_or(i64::MAX),
            i64::try_from(meta.data_bytes).unwrap_or(i64::MAX),
            now_ms(),
            (!meta.tail.is_empty()).then_some(&meta.tail[..]),
            (!meta.index_tail.is_empty()).then_some(&meta.index_tail[..]),
            meta.id
        ])?;
        Ok(())
    }

    /// Every column, ordered by name.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn list(store: &mut Store) -> Result<Vec<ColumnMeta>> {
        store.retry_with(|conn| {
            if !Self::tables_exist(conn)? {
                return Ok(Vec::new());
            }
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {META_COLUMNS} FROM {COLUMNS_TABLE} ORDER BY name"
            ))?;
            let rows = stmt.query_map([], meta_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(build_meta(row?)?);
            }
            Ok(out)
        })
    }

    /// Deletes column `name` and its data; returns whether it existed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn delete(store: &mut Store, name: &str) -> Result<bool> {
        if Self::find(store, name)?.is_none() {
            return Ok(false);
        }
        store.write_with(|conn| {
            let Some(meta) = Self::find_in(conn, name)? else {
                return Ok(false);
            };
            meta.data().drop_all(conn)?;
            meta.index().drop_all(conn)?;
            conn.execute(
                &format!("DELETE FROM {COLUMNS_TABLE} WHERE col_id = ?1"),
                [meta.id],
            )?;
            Ok(true)
        })
    }

    /// Renames a column; its id and data stay.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`] for `old`, [`Error::ColumnExists`] for `new`.
    pub fn rename(store: &mut Store, old: &str, new: &str) -> Result<()> {
        validate_name(new)?;
        store.write_with(|conn| {
            let Some(meta) = Self::find_in(conn, old)? else {
                return Err(Error::ColumnNotFound(old.to_string()));
            };
            if old == new {
                return Ok(());
            }
            if Self::find_in(conn, new)?.is_some() {
                return Err(Error::ColumnExists(new.to_string()));
            }
            conn.execute(
                &format!("UPDATE {COLUMNS_TABLE} SET name = ?1 WHERE col_id = ?2"),
                params![new, meta.id],
            )?;
            Ok(())
        })
    }

    /// Current metadata of column `id` (its `name` is used in the not-found message).
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`] if it was deleted.
    pub fn meta(store: &mut Store, id: i64, name: &str) -> Result<ColumnMeta> {
        with_cache(
            store,
            |cache| cache.metas.get(&id).cloned().map(Ok),
            |conn, cache| cache.meta(conn, id, name),
        )
    }

    /// Reads elements `start..stop` (clamped to the length) from one snapshot.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`]; [`Error::Corrupted`].
    pub fn read(store: &mut Store, id: i64, name: &str, start: u64, stop: u64) -> Result<ReadOut> {
        let bound = |v: u64| Some(i64::try_from(v).unwrap_or(i64::MAX));
        Self::read_slice(store, id, name, bound(start), bound(stop))
    }

    /// Reads the elements of the Python-style slice `start:stop` (`None` = open end, negative
    /// bounds count from the end, clamped to the length) from one snapshot.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`]; [`Error::Corrupted`].
    pub fn read_slice(
        store: &mut Store,
        id: i64,
        name: &str,
        start: Option<i64>,
        stop: Option<i64>,
    ) -> Result<ReadOut> {
        Self::read_slice_upto(store, id, name, start, stop, u64::MAX)
            .map(|out| out.expect("no size limit"))
    }

    /// [`Columns::read_slice`], unless the slice of a fixed-width column holds more than
    /// `max_bytes`: then `None`, and nothing is copied (the caller reads it into its own buffer
    /// with [`Columns::read_slice_into`]).
    ///
    /// # Errors
    /// As [`Columns::read_slice`].
    pub fn read_slice_upto(
        store: &mut Store,
        id: i64,
        name: &str,
        start: Option<i64>,
        stop: Option<i64>,
        max_bytes: u64,
    ) -> Result<Option<ReadOut>> {
        // Reads too large for the block cache (windows) skip the read transaction when the
        // cached metadata is current.
        let direct = read_if_current(store, id, |conn, meta| {
            let (start, stop) = resolve_slice(start, stop, meta.len);
            match meta.width() {
                Some(w) if (stop - start) * w > max_bytes => Ok(Some(None)),
                Some(w) if (stop - start) * w <= CACHED_READ => Ok(None),
                _ => read_range(conn, meta, start, stop).map(|out| Some(Some(out))),
            }
        });
        match direct {
            Some(Ok(Some(out))) => return Ok(out),
            Some(Err(err)) => return Err(err),
            Some(Ok(None)) | None => {}
        }
        with_cache(
            store,
            |cache| {
                cache
                    .fixed_range_cached(id, Wanted::Slice(start, stop))
                    .map(|r| r.map(Some))
            },
            |conn, cache| {
                let meta = cache.meta(conn, id, name)?;
                let (start, stop) = resolve_slice(start, stop, meta.len);
                match meta.width() {
                    Some(w) if (stop - start) * w > max_bytes => Ok(None),
                    Some(w) if (stop - start) * w <= CACHED_READ => {
                        let mut out = vec![0u8; usize_of((stop - start) * w)];
                        cache.read_fixed(conn, &meta, start * w, &mut out)?;
                        Ok(Some(ReadOut::Fixed(out)))
                    }
                    _ => read_range(conn, &meta, start, stop).map(Some),
                }
            },
        )
    }

    /// Reads the raw bytes of the fixed-width slice `start:stop` (as in [`Columns::read_slice`])
    /// into a buffer from `alloc`, which gets the exact byte size. Sizing and reading happen in
    /// one snapshot, so a concurrent append can neither tear the result nor make the caller
    /// retry. Large reads use this to fill their final buffer (memory numpy will wrap) without
    /// an intermediate copy.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for variable-width columns; as [`Columns::read_slice`].
    pub fn read_slice_into<B: AsMut<[u8]>>(
        store: &mut Store,
        id: i64,
        name: &str,
        start: Option<i64>,
        stop: Option<i64>,
        mut alloc: impl FnMut(usize) -> B,
    ) -> Result<B> {
        with_cache(
            store,
            |_| None,
            |conn, cache| {
                let meta = cache.meta(conn, id, name)?;
                let w = meta.width().ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "column {:?} of dtype {} has no fixed-width raw bytes",
                        meta.name,
                        meta.dtype.name()
                    ))
                })?;
                let (start, stop) = resolve_slice(start, stop, meta.len);
                let mut out = alloc(usize_of((stop - start) * w));
                meta.read_data(conn, start * w, out.as_mut())?;
                Ok(out)
            },
        )
    }

    /// Reads element `index` (negative counts from the end, as in Python).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`]; [`Error::ColumnNotFound`].
    pub fn read_index(store: &mut Store, id: i64, name: &str, index: i64) -> Result<ReadOut> {
        with_cache(
            store,
            |cache| cache.fixed_range_cached(id, Wanted::Index(index)),
            |conn, cache| {
                let meta = cache.meta(conn, id, name)?;
                let resolved = resolve_index(index, meta.len)?;
                match meta.width() {
                    Some(w) => {
                        let mut out = vec![0u8; usize_of(w)];
                        cache.read_fixed(conn, &meta, resolved * w, &mut out)?;
                        Ok(ReadOut::Fixed(out))
                    }
                    None => read_range(conn, &meta, resolved, resolved + 1),
                }
            },
        )
    }

    /// Overwrites the elements at the given (non-negative, in range) indices in one transaction.
    /// `elements` holds one element per index, in the same order.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`]; [`Error::InvalidArgument`] when counts differ.
    pub fn set_at(
        store: &mut Store,
        id: i64,
        name: &str,
        indices: &[u64],
        elements: Elements<'_>,
    ) -> Result<()> {
        store.write_with(|conn| {
            let mut meta = Self::load_sealed(conn, id, name)?;
            if elements.count(&meta)? != indices.len() as u64 {
                return Err(Error::InvalidArgument(
                    "length mismatch between indices and values".into(),
                ));
            }
            for &i in indices {
                meta.check_index(i)?;
            }
            if let Elements::Fixed(raw) = elements {
                let w = usize_of(meta.width().unwrap_or(1));
                for (k, &i) in indices.iter().enumerate() {
                    meta.data()
                        .write(conn, i * w as u64, &raw[k * w..(k + 1) * w])?;
                }
            } else {
                for (&i, item) in indices.iter().zip(elements.items()?.iter()) {
                    replace_var(conn, &mut meta, i, item)?;
                }
            }
            Self::save(conn, &meta)
        })
    }

    /// Deletes the elements at the given indices (any order, duplicates ignored) in one
    /// transaction.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`].
    pub fn delete_at(store: &mut Store, id: i64, name: &str, indices: &[u64]) -> Result<()> {
        let mut sorted = indices.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        store.write_with(|conn| {
            let mut meta = Self::load_sealed(conn, id, name)?;
            for &i in &sorted {
                meta.check_index(i)?;
            }
            for &i in sorted.iter().rev() {
                delete_range(conn, &mut meta, i, i + 1)?;
            }
            Self::save(conn, &meta)
        })
    }

    /// Appends elements to each listed column in one transaction (all or nothing); returns the
    /// new lengths.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for mismatched element layouts; store errors.
    pub fn append_many(
        store: &mut Store,
        batches: &[(i64, &str, Elements<'_>)],
    ) -> Result<Vec<u64>> {
        store.write_with(|conn| {
            let mut lengths = Vec::with_capacity(batches.len());
            for (id, name, elements) in batches {
                let mut meta = Self::load(conn, *id, name)?;
                append(conn, &mut meta, *elements)?;
                Self::save(conn, &meta)?;
                lengths.push(meta.len);
            }
            Ok(lengths)
        })
    }

    /// Appends elements to one column; returns the new length.
    ///
    /// # Errors
    /// As [`Columns::append_many`].
    pub fn append(store: &mut Store, id: i64, name: &str, elements: Elements<'_>) -> Result<u64> {
        Ok(Self::append_many(store, &[(id, name, elements)])?[0])
    }

    /// Overwrites elements starting at `start` (they must all exist already).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] if the range runs past the end.
    pub fn set(
        store: &mut Store,
        id: i64,
        name: &str,
        start: u64,
        elements: Elements<'_>,
    ) -> Result<()> {
        store.write_with(|conn| {
            let mut meta = Self::load_sealed(conn, id, name)?;
            let count = elements.count(&meta)?;
            if count == 0 {
                return Ok(());
            }
            meta.check_index(start + count - 1)?;
            match elements {
                Elements::Fixed(raw) => {
                    let w = meta.width().unwrap_or(1);
                    meta.data().write(conn, start * w, raw)?;
                }
                Elements::Var(_) | Elements::Packed { .. } => {
                    for (k, item) in elements.items()?.iter().enumerate() {
                        replace_var(conn, &mut meta, start + k as u64, item)?;
                    }
                }
            }
            Self::save(conn, &meta)?;
            Ok(())
        })
    }

    /// Inserts elements before index `at` (`at == len` appends).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] if `at > len`.
    pub fn insert(
        store: &mut Store,
        id: i64,
        name: &str,
        at: u64,
        elements: Elements<'_>,
    ) -> Result<()> {
        store.write_with(|conn| {
            let mut meta = Self::load_sealed(conn, id, name)?;
            if at > meta.len {
                return Err(Error::IndexOutOfRange {
                    index: at,
                    len: meta.len,
                });
            }
            insert(conn, &mut meta, at, elements)?;
            Self::save(conn, &meta)?;
            Ok(())
        })
    }

    /// Deletes elements `start..stop` (clamped), shifting later ones down; returns how many went.
    ///
    /// # Errors
    /// Store errors.
    pub fn delete_range(
        store: &mut Store,
        id: i64,
        name: &str,
        start: u64,
        stop: u64,
    ) -> Result<u64> {
        store.write_with(|conn| {
            let mut meta = Self::load_sealed(conn, id, name)?;
            let stop = stop.min(meta.len);
            let start = start.min(stop);
            delete_range(conn, &mut meta, start, stop)?;
            Self::save(conn, &meta)?;
            Ok(stop - start)
        })
    }

    /// Removes and returns element `index`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`].
    pub fn pop(store: &mut Store, id: i64, name: &str, index: u64) -> Result<ReadOut> {
        store.write_with(|conn| {
            let mut meta = Self::load_sealed(conn, id, name)?;
            meta.check_index(index)?;
            let out = read_range(conn, &meta, index, index + 1)?;
            delete_range(conn, &mut meta, index, index + 1)?;
            Self::save(conn, &meta)?;
            Ok(out)
        })
    }
}

impl Columns {
    /// Checks every column's invariants: chunk rows exactly as many and as long as its streams
    /// need, fixed-width data size = length × width, variable-width end offsets non-decreasing
    /// and ending at the data size, no chunk rows of deleted columns. One message per problem.
    ///
    /// # Errors
    /// SQLite errors (a problem in the data is a message, not an error).
    pub fn check(store: &mut Store) -> Result<Vec<String>> {
        store.read_with(|conn| {
            let mut problems = Vec::new();
            if !Self::tables_exist(conn)? {
                return Ok(problems);
            }
            // Metadata that fails validation is a problem to report, not an error to raise.
            let mut columns = Vec::new();
            let mut known = std::collections::HashSet::new();
            let mut stmt = conn.prepare(&format!(
                "SELECT {META_COLUMNS} FROM {COLUMNS_TABLE} ORDER BY name"
            ))?;
            let rows: Vec<_> = stmt
                .query_map([], meta_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            for raw in rows {
                known.insert(raw.0);
                match build_meta(raw) {
                    Ok(meta) => columns.push(meta),
                    Err(err) => problems.push(err.to_string()),
                }
            }
            for meta in &columns {
                match meta.width() {
                    Some(w) => {
                        if meta.data_bytes != meta.len * w {
                            problems.push(format!(
                                "column {:?}: {} data bytes for {} elements of {w} bytes",
                                meta.name, meta.data_bytes, meta.len
                            ));
                        }
                        problems.extend(stream_problems(
                            conn,
                            meta,
                            meta.data(),
                            meta.sealed(),
                            "data",
                        )?);
                    }
                    None => {
                        let mut own =
                            stream_problems(conn, meta, meta.data(), meta.sealed(), "data")?;
                        own.extend(stream_problems(
                            conn,
                            meta,
                            meta.index(),
                            meta.index_sealed(),
                            "index",
                        )?);
                        // Offsets are only readable when the index stream itself is sound.
                        let streams_sound = own.is_empty();
                        problems.extend(own);
                        if meta.len > 0 && streams_sound {
                            let mut previous = 0u64;
                            let mut at = 0u64;
                            while at < meta.len {
                                let n = (256u64 << 10).min(meta.len - at);
                                for end in read_ends(conn, meta, at, n)? {
                                    if end < previous {
                                        problems.push(format!(
                                            "column {:?}: end offsets decrease near element {at}",
                                            meta.name
                                        ));
                                        break;
                                    }
                                    previous = end;
                                }
                                at += n;
                            }
                            if previous != meta.data_bytes {
                                problems.push(format!(
                                    "column {:?}: last end offset {previous} != data size {}",
                                    meta.name, meta.data_bytes
                                ));
                            }
                            // The tail holds the bytes of exactly the index tail's elements.
                            let tailed = meta.index_tail.len() as u64 / INDEX_WIDTH;
                            if tailed > 0 {
                                let first_tailed = start_of(conn, meta, meta.len - tailed)?;
                                if first_tailed != meta.sealed() {
                                    problems.push(format!(
                                        "column {:?}: its last {tailed} elements start at byte \
                                         {first_tailed}, but its tail starts at byte {}",
                                        meta.name,
                                        meta.sealed()
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            let mut stmt =
                conn.prepare(&format!("SELECT DISTINCT id >> 33 FROM {CHUNKS_TABLE}"))?;
            let owners: Vec<i64> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let orphans = owners.iter().filter(|id| !known.contains(id)).count();
            if orphans > 0 {
                problems.push(format!("chunks of {orphans} deleted columns remain"));
            }
            Ok(problems)
        })
    }
}

/// Problems of one stream: wrong chunk count, or a chunk of the wrong length or position.
fn stream_problems(
    conn: &Connection,
    meta: &ColumnMeta,
    stream: Stream,
    used: u64,
    what: &str,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id & 4294967295, length(data) FROM {CHUNKS_TABLE} WHERE id BETWEEN ?1 AND ?2 ORDER BY id"
    ))?;
    let rows: Vec<(i64, i64)> = stmt
        .query_map(
            params![stream.id << 32, (stream.id << 32) | 0xFFFF_FFFF],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let need = meta.plan.chunks_for(used);
    if rows.len() as u64 != need {
        problems.push(format!(
            "column {:?}: {what} stream has {} chunks, {need} expected for {used} bytes",
            meta.name,
            rows.len()
        ));
    }
    for (k, (chunk, len)) in rows.iter().enumerate() {
        let cap = meta.plan.capacity(k as u64);
        if *chunk != k as i64 || u64::try_from(*len).unwrap_or(0) != cap {
            problems.push(format!(
                "column {:?}: {what} chunk {chunk} is {len} bytes at position {k}, expected {cap}",
                meta.name
            ));
            break;
        }
    }
    Ok(problems)
}

/// Resolves a Python-style index (negative counts from the end) against `len`.
fn resolve_index(index: i64, len: u64) -> Result<u64> {
    let resolved = if index < 0 {
        i128::from(len) + i128::from(index)
    } else {
        i128::from(index)
    };
    if resolved < 0 || resolved >= i128::from(len) {
        return Err(Error::IndexOutOfRange {
            index: index.unsigned_abs(),
            len,
        });
    }
    Ok(u64::try_from(resolved).unwrap_or(0))
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 1024 || name.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "column names must be 1-1024 bytes of text without NUL, got {name:?}"
        )));
    }
    Ok(())
}

fn read_ends(conn: &Connection, meta: &ColumnMeta, first: u64, count: u64) -> Result<Vec<u64>> {
    let mut raw = vec![0u8; usize_of(count * INDEX_WIDTH)];
    meta.index_reader(conn)
        .read(first * INDEX_WIDTH, &mut raw)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
        .collect())
}

fn encode_ends(ends: &[u64]) -> Vec<u8> {
    ends.iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// End offset of element `i - 1`, i.e. where element `i` starts (0 for the first).
fn start_of(conn: &Connection, meta: &ColumnMeta, i: u64) -> Result<u64> {
    if i == 0 {
        Ok(0)
    } else {
        Ok(read_ends(conn, meta, i - 1, 1)?[0])
    }
}

/// `(start, end)` byte offsets of variable-width element `i`, checked against the metadata.
fn element_bounds(conn: &Connection, meta: &ColumnMeta, i: u64) -> Result<(u64, u64)> {
    let start = start_of(conn, meta, i)?;
    let end = read_ends(conn, meta, i, 1)?[0];
    if start > end || end > meta.data_bytes {
        return Err(Error::Corrupted(format!(
            "column {:?} has inconsistent offsets at element {i}",
            meta.name
        )));
    }
    Ok((start, end))
}

fn read_range(conn: &Connection, meta: &ColumnMeta, start: u64, stop: u64) -> Result<ReadOut> {
    let stop = stop.max(start);
    match meta.width() {
        Some(w) => {
            let mut out = vec![0u8; usize_of((stop - start) * w)];
            meta.read_data(conn, start * w, &mut out)?;
            Ok(ReadOut::Fixed(out))
        }
        None => {
            if stop == start {
                return Ok(ReadOut::Var {
                    ends: Vec::new(),
                    data: Vec::new(),
                });
            }
            // One index read covers the previous element's end (this range's base) too.
            let first = start.saturating_sub(1);
            let mut ends = read_ends(conn, meta, first, stop - first)?;
            let base = if start == 0 { 0 } else { ends.remove(0) };
            let last = *ends.last().expect("non-empty range");
            if ends[0] < base
                || last > meta.data_bytes
                || base > meta.data_bytes
                || ends.windows(2).any(|w| w[1] < w[0])
            {
                return Err(Error::Corrupted(format!(
                    "column {:?} has inconsistent offsets",
                    meta.name
                )));
            }
            let mut data = vec![0u8; usize_of(last - base)];
            meta.read_data(conn, base, &mut data)?;
            for end in &mut ends {
                *end -= base;
            }
            Ok(ReadOut::Var { ends, data })
        }
    }
}

fn append(conn: &Connection, meta: &mut ColumnMeta, elements: Elements<'_>) -> Result<()> {
    let count = elements.count(meta)?;
    match elements {
        Elements::Fixed(raw) => {
            if (meta.tail.len() + raw.len()) as u64 <= TAIL_BYTES {
                // Only the metadata row changes: one page for the whole commit.
                meta.tail = [&meta.tail[..], raw].concat().into();
            } else {
                seal(conn, meta)?;
                meta.data().append(conn, meta.data_bytes, raw)?;
            }
            meta.data_bytes += raw.len() as u64;
        }
        Elements::Var(items) => {
            let mut ends = Vec::with_capacity(items.len());
            let mut data = Vec::with_capacity(items.iter().map(|i| i.len()).sum());
            let mut end = meta.data_bytes;
            for item in items {
                end += item.len() as u64;
                ends.push(end);
                data.extend_from_slice(item);
            }
            append_var(conn, meta, &encode_ends(&ends), &data)?;
        }
        Elements::Packed { data, ends } => {
            let base = meta.data_bytes;
            let index: Vec<u8> = ends
                .iter()
                .flat_map(|&e| (base + e as u64).to_le_bytes())
                .collect();
            append_var(conn, meta, &index, data)?;
        }
    }
    meta.len += count;
    Ok(())
}

/// Appends encoded index entries (absolute end offsets) and their bytes to a variable-width
/// column: into the tails when both fit, otherwise (after moving the tails) into the chunks.
/// The caller adds the element count to `len`.
fn append_var(conn: &Connection, meta: &mut ColumnMeta, index: &[u8], data: &[u8]) -> Result<()> {
    let fits = (meta.tail.len() + data.len()) as u64 <= TAIL_BYTES
        && (meta.index_tail.len() + index.len()) as u64 <= INDEX_TAIL_BYTES;
    if fits {
        meta.index_tail = [&meta.index_tail[..], index].concat().into();
        meta.tail = [&meta.tail[..], data].concat().into();
    } else {
        seal(conn, meta)?;
        meta.index().append(conn, meta.len * INDEX_WIDTH, index)?;
        meta.data().append(conn, meta.data_bytes, data)?;
    }
    meta.data_bytes += data.len() as u64;
    Ok(())
}

/// Replaces variable-width element `i`, moving later bytes if the length changes.
fn replace_var(conn: &Connection, meta: &mut ColumnMeta, i: u64, item: &[u8]) -> Result<()> {
    let (start, end) = element_bounds(conn, meta, i)?;
    let new_end = start + item.len() as u64;
    if new_end != end {
        let tail = meta.data_bytes - end;
        let new_total = meta.data_bytes - end + new_end;
        let data = meta.data();
        if new_end > end {
            data.resize(conn, meta.data_bytes, new_total)?;
            data.copy_within(conn, end, new_end, tail)?;
        } else {
            data.copy_within(conn, end, new_end, tail)?;
            data.resize(conn, meta.data_bytes, new_total)?;
        }
        shift_ends(conn, meta, i + 1, new_end.wrapping_sub(end))?;
        meta.index()
            .write(conn, i * INDEX_WIDTH, &new_end.to_le_bytes())?;
        meta.data_bytes = new_total;
    }
    meta.data().write(conn, start, item)?;
    Ok(())
}

/// Adds `delta` (two's complement, so it can be negative) to end offsets `from..len`.
fn shift_ends(conn: &Connection, meta: &ColumnMeta, from: u64, delta: u64) -> Result<()> {
    if from >= meta.len || delta == 0 {
        return Ok(());
    }
    const BLOCK: u64 = 512 << 10;
    let mut at = from;
    while at < meta.len {
        let n = BLOCK.min(meta.len - at);
        let ends: Vec<u64> = read_ends(conn, meta, at, n)?
            .into_iter()
            .map(|e| e.wrapping_add(delta))
            .collect();
        meta.index()
            .write(conn, at * INDEX_WIDTH, &encode_ends(&ends))?;
        at += n;
    }
    Ok(())
}

fn insert(conn: &Connection, meta: &mut ColumnMeta, at: u64, elements: Elements<'_>) -> Result<()> {
    let count = elements.count(meta)?;
    if at == meta.len {
        return append(conn, meta, elements);
    }
    match elements {
        Elements::Fixed(raw) => {
            let w = meta.width().unwrap_or(1);
            let data = meta.data();
            let old = meta.data_bytes;
            data.resize(conn, old, old + raw.len() as u64)?;
            data.copy_within(conn, at * w, at * w + raw.len() as u64, old - at * w)?;
            data.write(conn, at * w, raw)?;
            meta.data_bytes += raw.len() as u64;
        }
        Elements::Var(_) | Elements::Packed { .. } => {
            let items = elements.items()?;
            let added: u64 = items.iter().map(|i| i.len() as u64).sum();
            let (start, _) = element_bounds(conn, meta, at)?;
            // Data: open a gap of `added` bytes at `start`.
            let data = meta.data();
            data.resize(conn, meta.data_bytes, meta.data_bytes + added)?;
            data.copy_within(conn, start, start + added, meta.data_bytes - start)?;
            let mut joined = Vec::with_capacity(usize_of(added));
            let mut new_ends = Vec::with_capacity(items.len());
            let mut end = start;
            for item in items.iter() {
                joined.extend_from_slice(item);
                end += item.len() as u64;
                new_ends.push(end);
            }
            data.write(conn, start, &joined)?;
            // Index: shift later entries up by `count`, adding `added` to each.
            let index = meta.index();
            let old_index = meta.len * INDEX_WIDTH;
            index.resize(conn, old_index, old_index + count * INDEX_WIDTH)?;
            index.copy_within(
                conn,
                at * INDEX_WIDTH,
                (at + count) * INDEX_WIDTH,
                old_index - at * INDEX_WIDTH,
            )?;
            index.write(conn, at * INDEX_WIDTH, &encode_ends(&new_ends))?;
            let shifted = ColumnMeta {
                len: meta.len + count,
                ..meta.clone()
            };
            shift_ends(conn, &shifted, at + count, added)?;
            meta.data_bytes += added;
        }
    }
    meta.len += count;
    Ok(())
}

fn delete_range(conn: &Connection, meta: &mut ColumnMeta, start: u64, stop: u64) -> Result<()> {
    if start >= stop {
        return Ok(());
    }
    let count = stop - start;
    match meta.width() {
        Some(w) => {
            let data = meta.data();
            data.copy_within(conn, stop * w, start * w, meta.data_bytes - stop * w)?;
            data.resize(conn, meta.data_bytes, meta.data_bytes - count * w)?;
            meta.data_bytes -= count * w;
        }
        None => {
            let (first, _) = element_bounds(conn, meta, start)?;
            let (_, last) = element_bounds(conn, meta, stop - 1)?;
            if first > last {
                return Err(Error::Corrupted(format!(
                    "column {:?} has inconsistent offsets",
                    meta.name
                )));
            }
            let removed = last - first;
            let data = meta.data();
            data.copy_within(conn, last, first, meta.data_bytes - last)?;
            data.resize(conn, meta.data_bytes, meta.data_bytes - removed)?;
            let index = meta.index();
            let old_index = meta.len * INDEX_WIDTH;
            index.copy_within(
                conn,
                stop * INDEX_WIDTH,
                start * INDEX_WIDTH,
                old_index - stop * INDEX_WIDTH,
            )?;
            index.resize(conn, old_index, old_index - count * INDEX_WIDTH)?;
            let shrunk = ColumnMeta {
                len: meta.len - count,
                ..meta.clone()
            };
            shift_ends(conn, &shrunk, start, removed.wrapping_neg())?;
            meta.data_bytes -= removed;
        }
    }
    meta.len -= count;
    Ok(())
}
