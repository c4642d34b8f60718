//! Named, typed columns: the [`Column`] handle and every operation on columns (see
//! `docs/format.md`).
//!
//! Every operation is one transaction on the shared [`Store`]: it reloads the column's metadata
//! inside the transaction (so appends from other processes are never overwritten), changes the
//! streams, and writes the new length back. After a crash a column has the length and contents of
//! its last committed operation.

use kvault::codec::Compression;
use kvault::Store;
use rusqlite::params;

use crate::dtype::DType;
use crate::elements::{Elements, ReadOut};
use crate::error::{Error, Result};
use crate::meta::{self, ColumnMeta, INDEX_TAIL_BYTES, INDEX_WIDTH, TAIL_BYTES, VAR_TAIL_BYTES};
use crate::ops;
use crate::read_cache::{read_if_current, with_cache, Wanted, CACHED_READ};
use crate::schema::{self, COLUMNS_TABLE};
use crate::slice::{resolve_index, resolve_slice};
use crate::stream::{usize_of, ChunkPlan};
use crate::tail_room::{self, Room};

/// Column ids must fit in the upper bits of a chunk rowid.
const MAX_COLUMN_ID: i64 = (1 << 30) - 1;

/// A handle to one column of a vault file. Holds no connection: every call borrows a [`Store`].
///
/// The handle names the column by its stable `id`; `name` is the name it had when the handle
/// was made and is what not-found errors report (after [`Column::rename`], make a new handle).
/// Element operations read the current metadata in their own transaction, so a handle never
/// goes stale on length or contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Stable id (survives renames).
    pub id: i64,
    /// The column's name, as used in error messages.
    pub name: String,
    /// Element type.
    pub dtype: DType,
}

/// Whether the store's file is UTF-8 (`None` until looked up), for [`Column::append_to_tail`].
#[derive(Default)]
struct Utf8File(Option<bool>);

/// What a read outside any transaction found it should do with a slice.
enum DirectRead {
    /// The slice holds more bytes than the caller's limit: nothing was read.
    TooLarge,
    /// The slice is small enough for the block cache: left to the cached path.
    Small,
    /// The slice, read.
    Done(ReadOut),
}

/// Whether `||` joins blobs byte for byte on this store's file: it joins them as text, exact in
/// a UTF-8 file (all ambervault creates), not in a UTF-16 one, which takes the full paths.
fn joins_bytes_exactly(store: &mut Store) -> Result<bool> {
    if let Some(known) = store.extension::<Utf8File>().0 {
        return Ok(known);
    }
    let encoding: String =
        store.retry(|conn| Ok(conn.query_row("PRAGMA encoding", [], |r| r.get(0))?))?;
    let known = encoding == "UTF-8";
    store.extension::<Utf8File>().0 = Some(known);
    Ok(known)
}

/// [`Column::append_to_tail`]'s statement: `?1` the elements, `?2` their count, `?3` their
/// bytes, `?4` the time, `?5`-`?7` the column's id, name and dtype, `?8` the width, `?9` the
/// tail's limit. The new length is noted with `amber_note` (see `kvault::take_noted`), which
/// costs a third of what `RETURNING` did.
static APPEND_FIXED_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE {COLUMNS_TABLE} SET tail = CAST(coalesce(tail, x'') || ?1 AS BLOB), \
         length = amber_note(length + ?2), \
             data_bytes = data_bytes + ?3, updated_at = ?4 \
             WHERE col_id = ?5 AND name = ?6 AND dtype = ?7 AND typeof(tail) IN ('blob', 'null') \
             AND index_tail IS NULL AND length >= 0 AND data_bytes = length * ?8 \
             AND length(coalesce(tail, x'')) % ?8 = 0 AND length(coalesce(tail, x'')) <= data_bytes \
             AND length(coalesce(tail, x'')) + ?3 <= ?9"
    )
});

/// [`Column::append_item_to_tail`]'s statement: `?1` the item, `?2` its length, `?3` the time,
/// `?4`-`?6` the column's id, name and dtype, `?7`/`?8` the tails' limits. The end offset is
/// `data_bytes + ?2` of the row before the update (SQLite evaluates every `SET` expression on
/// the old row), as 8 little-endian bytes (`amber_le64`); the new length is noted with
/// `amber_note`. The `WHERE` clause admits only rows whose tails are as the loader requires
/// (`MetaRow::into_meta`).
static APPEND_ITEM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE {COLUMNS_TABLE} SET tail = CAST(coalesce(tail, x'') || ?1 AS BLOB), \
         index_tail = CAST(coalesce(index_tail, x'') || amber_le64(data_bytes + ?2) AS BLOB), \
         length = amber_note(length + 1), data_bytes = data_bytes + ?2, updated_at = ?3 \
         WHERE col_id = ?4 AND name = ?5 AND dtype = ?6 \
         AND typeof(tail) IN ('blob', 'null') AND typeof(index_tail) IN ('blob', 'null') \
         AND length >= 0 AND data_bytes >= 0 \
         AND length(coalesce(tail, x'')) <= data_bytes \
         AND length(coalesce(index_tail, x'')) % 8 = 0 \
         AND length(coalesce(index_tail, x'')) <= length * 8 \
         AND (length(coalesce(index_tail, x'')) > 0 OR length(coalesce(tail, x'')) = 0) \
         AND length(coalesce(tail, x'')) + ?2 <= ?7 \
         AND length(coalesce(index_tail, x'')) + 8 <= ?8"
    )
});

/// Runs a one-row `UPDATE` that notes a value with `amber_note`; the value if it changed the
/// row, `None` if it changed none.
fn run_noting(
    statement: &mut rusqlite::CachedStatement<'_>,
    params: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Option<i64>> {
    kvault::take_noted();
    let changed = statement.execute(params)?;
    let noted = kvault::take_noted();
    Ok(if changed == 1 { noted } else { None })
}

impl Column {
    /// The handle of the column `meta` describes.
    #[must_use]
    pub fn from_meta(meta: &ColumnMeta) -> Self {
        Self {
            id: meta.id,
            name: meta.name.clone(),
            dtype: meta.dtype,
        }
    }

    /// Creates the column tables if the store is writable and they are missing.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn ensure_schema(store: &mut Store) -> Result<()> {
        schema::ensure_schema(store)
    }

    /// Creates column `name` of `dtype`.
    ///
    /// # Errors
    /// [`Error::ColumnExists`]; [`Error::InvalidArgument`] for an empty name.
    pub fn create(store: &mut Store, name: &str, dtype: DType, plan: ChunkPlan) -> Result<Self> {
        validate_name(name)?;
        Self::ensure_schema(store)?;
        // The stored plan is the one every later access uses, so files stay self-describing.
        let plan = plan.row_limited();
        let now = store.now_ms();
        store.write_with(|conn| {
            if meta::find(conn, name)?.is_some() {
                return Err(Error::ColumnExists(name.to_string()));
            }
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
            Ok(Self {
                id,
                name: name.to_string(),
                dtype,
            })
        })
    }

    /// Sets how the column compresses its full chunks from now on (`None`: stores new chunks
    /// as they are), and repacks the chunks already written to match, in one transaction.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`]; [`Error::InvalidArgument`] for a bad setting; store errors.
    pub fn set_compression(
        &self,
        store: &mut Store,
        compression: Option<Compression>,
    ) -> Result<()> {
        if let Some(c) = &compression {
            c.validate()
                .and_then(|()| c.check_layout(self.dtype.layout()))
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        Self::ensure_schema(store)?;
        let now = store.now_ms();
        store.write_with(|conn| {
            let mut meta = meta::load_sealed(conn, self.id, &self.name)?;
            if compression.is_some() {
                kvault::require_format_version(conn, kvault::COMPRESSION_FORMAT_VERSION)?;
            }
            // Every chunk back to a plain row, then packed by the new setting (if any).
            for (stream, used) in [
                (meta.data(), meta.sealed()),
                (meta.index(), meta.index_sealed()),
            ] {
                stream.unpack_all(conn, used)?;
            }
            meta.compression = compression;
            conn.execute(
                &format!("UPDATE {COLUMNS_TABLE} SET compression = ?1 WHERE col_id = ?2"),
                params![compression.map(|c| c.to_setting()), self.id],
            )?;
            meta::save(conn, &meta, now)
        })
    }

    /// The column called `name`, if any.
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupted`] for a damaged metadata row.
    pub fn find(store: &mut Store, name: &str) -> Result<Option<Self>> {
        let meta = store.retry_with(|conn| meta::find(conn, name))?;
        Ok(meta.as_ref().map(Self::from_meta))
    }

    /// Every column's metadata, ordered by name.
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupted`] for a damaged metadata row.
    pub fn list(store: &mut Store) -> Result<Vec<ColumnMeta>> {
        store.retry_with(|conn| {
            if !schema::tables_exist(conn)? {
                return Ok(Vec::new());
            }
            meta::rows(conn)?
                .into_iter()
                .map(meta::MetaRow::into_meta)
                .collect()
        })
    }

    /// Deletes column `name` and its data; returns whether it existed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn delete(store: &mut Store, name: &str) -> Result<bool> {
        // Checked first without a write transaction: deleting what is not there takes no lock.
        if Self::find(store, name)?.is_none() {
            return Ok(false);
        }
        store.write_with(|conn| {
            let Some(meta) = meta::find(conn, name)? else {
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

    /// Renames a column; its id and data stay (handles of it keep working, but report the old
    /// name in errors).
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`] for `old`, [`Error::ColumnExists`] for `new`.
    pub fn rename(store: &mut Store, old: &str, new: &str) -> Result<()> {
        validate_name(new)?;
        store.write_with(|conn| {
            let Some(meta) = meta::find(conn, old)? else {
                return Err(Error::ColumnNotFound(old.to_string()));
            };
            if old == new {
                return Ok(());
            }
            if meta::find(conn, new)?.is_some() {
                return Err(Error::ColumnExists(new.to_string()));
            }
            conn.execute(
                &format!("UPDATE {COLUMNS_TABLE} SET name = ?1 WHERE col_id = ?2"),
                params![new, meta.id],
            )?;
            Ok(())
        })
    }

    /// Checks every column's invariants: chunk rows exactly as many and as long as its streams
    /// need, fixed-width data size = length × width, variable-width end offsets non-decreasing
    /// and ending at the data size, no chunk rows of deleted columns. One message per problem.
    ///
    /// # Errors
    /// SQLite errors (a problem in the data is a message, not an error).
    pub fn check(store: &mut Store) -> Result<Vec<String>> {
        crate::check::check(store)
    }

    /// Appends elements to each listed column in one transaction (all or nothing); returns the
    /// new lengths, in the order of `batches`.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`]; [`Error::InvalidArgument`] for mismatched element layouts;
    /// store errors.
    pub fn append_many(store: &mut Store, batches: &[(&Column, Elements<'_>)]) -> Result<Vec<u64>> {
        let now = store.now_ms();
        let fast = match batches {
            [(column, Elements::Fixed(raw))] => column.append_to_tail(store, raw, now)?,
            [(column, Elements::Var([item]))] => column.append_item_to_tail(store, item, now)?,
            [(column, Elements::Packed { data, ends: [end] })] if *end == data.len() => {
                column.append_item_to_tail(store, data, now)?
            }
            _ => None,
        };
        if let Some(len) = fast {
            return Ok(vec![len]);
        }
        let appended = store.write_with(|conn| {
            let mut appended = Vec::with_capacity(batches.len());
            for (column, elements) in batches {
                let mut meta = meta::load(conn, column.id, &column.name)?;
                ops::append(conn, &mut meta, *elements)?;
                meta::save(conn, &meta, now)?;
                appended.push((meta.len, Room::left_in(&meta)));
            }
            Ok::<_, Error>(appended)
        })?;
        for ((column, _), (_, room)) in batches.iter().zip(&appended) {
            tail_room::note(store, column.id, *room);
        }
        Ok(appended.into_iter().map(|(len, _)| len).collect())
    }

    /// The common durable append, of a few fixed-width elements that fit the column's tail:
    /// one `UPDATE` of the metadata row in its own implicit transaction (no `BEGIN`, metadata
    /// read or `COMMIT` statement), as a plain SQLite insert would cost. `None` when the
    /// elements do not fit the tail or the row is not one this path may touch (another dtype,
    /// a tail the elements would overflow, fields that disagree: the full path then decides,
    /// with its errors).
    fn append_to_tail(&self, store: &mut Store, raw: &[u8], now: i64) -> Result<Option<u64>> {
        let Some(width) = self.dtype.fixed_width() else {
            return Ok(None);
        };
        if raw.is_empty() || !raw.len().is_multiple_of(width) || raw.len() as u64 > TAIL_BYTES {
            return Ok(None);
        }
        if !joins_bytes_exactly(store)?
            || tail_room::known_full(store, self.id, raw.len() as u64, 0)
        {
            return Ok(None);
        }
        let (w, added) = (width as i64, raw.len() as i64);
        let name = self.dtype.name();
        let appended = store.write_one(|conn| {
            let mut statement = conn.prepare_cached(&APPEND_FIXED_SQL)?;
            let params = params![
                raw,
                added / w,
                added,
                now,
                self.id,
                self.name,
                name,
                w,
                TAIL_BYTES as i64
            ];
            Ok(run_noting(&mut statement, params)?)
        })?;
        if appended.is_some() {
            tail_room::take(store, self.id, raw.len() as u64, 0);
        }
        Ok(appended.and_then(|len| u64::try_from(len).ok()))
    }

    /// [`Column::append_to_tail`] for one element of a variable-width column: its bytes join
    /// the data tail and its end offset (the old data size plus its length, as 8 little-endian
    /// bytes, computed in SQL from the row itself) joins the index tail, in one `UPDATE`.
    /// `None` when it does not fit the tails or the row is not one this path may touch.
    fn append_item_to_tail(&self, store: &mut Store, item: &[u8], now: i64) -> Result<Option<u64>> {
        if self.dtype.fixed_width().is_some()
            || item.len() as u64 > VAR_TAIL_BYTES
            || !joins_bytes_exactly(store)?
            || tail_room::known_full(store, self.id, item.len() as u64, INDEX_WIDTH)
        {
            return Ok(None);
        }
        let name = self.dtype.name();
        let appended = store.write_one(|conn| {
            let mut statement = conn.prepare_cached(&APPEND_ITEM_SQL)?;
            let params = params![
                item,
                item.len() as i64,
                now,
                self.id,
                self.name,
                name,
                VAR_TAIL_BYTES as i64,
                INDEX_TAIL_BYTES as i64
            ];
            Ok(run_noting(&mut statement, params)?)
        })?;
        if appended.is_some() {
            tail_room::take(store, self.id, item.len() as u64, INDEX_WIDTH);
        }
        Ok(appended.and_then(|len| u64::try_from(len).ok()))
    }

    /// Current metadata of this column.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`] if it was deleted.
    pub fn meta(&self, store: &mut Store) -> Result<ColumnMeta> {
        with_cache(
            store,
            |cache| cache.cached_meta(self.id).cloned().map(Ok),
            |conn, cache| cache.meta(conn, self.id, &self.name),
        )
    }

    /// Reads elements `start..stop` (clamped to the length) from one snapshot.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`]; [`Error::Corrupted`].
    pub fn read(&self, store: &mut Store, start: u64, stop: u64) -> Result<ReadOut> {
        let bound = |v: u64| Some(i64::try_from(v).unwrap_or(i64::MAX));
        self.read_slice(store, bound(start), bound(stop))
    }

    /// Reads the elements of the Python-style slice `start:stop` (`None` = open end, negative
    /// bounds count from the end, clamped to the length) from one snapshot.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`]; [`Error::Corrupted`].
    pub fn read_slice(
        &self,
        store: &mut Store,
        start: Option<i64>,
        stop: Option<i64>,
    ) -> Result<ReadOut> {
        self.read_slice_if_within(store, start, stop, u64::MAX)
            .map(|out| out.expect("no size limit"))
    }

    /// [`Column::read_slice`] if the slice holds at most `max_bytes` bytes; `None`, with nothing
    /// copied, if it is a larger slice of a fixed-width column (the caller then reads it into
    /// its own buffer with [`Column::read_slice_into`]). Slices of variable-width columns are
    /// always read.
    ///
    /// # Errors
    /// As [`Column::read_slice`].
    pub fn read_slice_if_within(
        &self,
        store: &mut Store,
        start: Option<i64>,
        stop: Option<i64>,
        max_bytes: u64,
    ) -> Result<Option<ReadOut>> {
        // Reads too large for the block cache (windows) skip the read transaction when the
        // cached metadata is current.
        let direct = read_if_current(store, self.id, |conn, meta| {
            let (start, stop) = resolve_slice(start, stop, meta.len);
            match meta.width() {
                Some(w) if (stop - start) * w > max_bytes => Ok(DirectRead::TooLarge),
                Some(w) if (stop - start) * w <= CACHED_READ => Ok(DirectRead::Small),
                _ => ops::read_range(conn, meta, start, stop).map(DirectRead::Done),
            }
        });
        match direct {
            Some(Ok(DirectRead::TooLarge)) => return Ok(None),
            Some(Ok(DirectRead::Done(out))) => return Ok(Some(out)),
            Some(Err(err)) => return Err(err),
            // Small reads, and reads the cache could not vouch for, go the cached way.
            Some(Ok(DirectRead::Small)) | None => {}
        }
        with_cache(
            store,
            |cache| {
                cache
                    .fixed_range_cached(self.id, Wanted::Slice(start, stop))
                    .map(|r| r.map(Some))
            },
            |conn, cache| {
                let meta = cache.meta(conn, self.id, &self.name)?;
                let (start, stop) = resolve_slice(start, stop, meta.len);
                match meta.width() {
                    Some(w) if (stop - start) * w > max_bytes => Ok(None),
                    Some(w) if (stop - start) * w <= CACHED_READ => {
                        let mut out = vec![0u8; usize_of((stop - start) * w)];
                        cache.read_fixed(conn, &meta, start * w, &mut out)?;
                        Ok(Some(ReadOut::Fixed(out)))
                    }
                    _ => ops::read_range(conn, &meta, start, stop).map(Some),
                }
            },
        )
    }

    /// Reads the raw bytes of the fixed-width slice `start:stop` (as in [`Column::read_slice`])
    /// into a buffer from `alloc`, which gets the exact byte size. Sizing and reading happen in
    /// one snapshot, so a concurrent append can neither tear the result nor make the caller
    /// retry. Large reads use this to fill their final buffer (memory numpy will wrap) without
    /// an intermediate copy.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for variable-width columns; as [`Column::read_slice`].
    pub fn read_slice_into<B: AsMut<[u8]>>(
        &self,
        store: &mut Store,
        start: Option<i64>,
        stop: Option<i64>,
        mut alloc: impl FnMut(usize) -> B,
    ) -> Result<B> {
        with_cache(
            store,
            |_| None,
            |conn, cache| {
                let meta = cache.meta(conn, self.id, &self.name)?;
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
    pub fn read_index(&self, store: &mut Store, index: i64) -> Result<ReadOut> {
        with_cache(
            store,
            |cache| cache.fixed_range_cached(self.id, Wanted::Index(index)),
            |conn, cache| {
                let meta = cache.meta(conn, self.id, &self.name)?;
                let resolved = resolve_index(index, meta.len)?;
                match meta.width() {
                    Some(w) => {
                        let mut out = vec![0u8; usize_of(w)];
                        cache.read_fixed(conn, &meta, resolved * w, &mut out)?;
                        Ok(ReadOut::Fixed(out))
                    }
                    None => ops::read_range(conn, &meta, resolved, resolved + 1),
                }
            },
        )
    }

    /// Overwrites the elements at the given (non-negative, in range) indices in one transaction.
    /// `elements` holds one element per index, in the same order.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`]; [`Error::InvalidArgument`] when counts differ.
    pub fn set_at(&self, store: &mut Store, indices: &[u64], elements: Elements<'_>) -> Result<()> {
        let now = store.now_ms();
        store.write_with(|conn| {
            let mut meta = meta::load_sealed(conn, self.id, &self.name)?;
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
                    ops::replace_var(conn, &mut meta, i, item)?;
                }
            }
            meta::save(conn, &meta, now)
        })
    }

    /// Deletes the elements at the given indices (any order, duplicates ignored) in one
    /// transaction.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`].
    pub fn delete_at(&self, store: &mut Store, indices: &[u64]) -> Result<()> {
        let mut sorted = indices.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let now = store.now_ms();
        store.write_with(|conn| {
            let mut meta = meta::load_sealed(conn, self.id, &self.name)?;
            for &i in &sorted {
                meta.check_index(i)?;
            }
            // From the back, so each deletion leaves the lower indices in place.
            for &i in sorted.iter().rev() {
                ops::delete_range(conn, &mut meta, i, i + 1)?;
            }
            meta::save(conn, &meta, now)
        })
    }

    /// Appends elements; returns the new length.
    ///
    /// # Errors
    /// As [`Column::append_many`].
    pub fn append(&self, store: &mut Store, elements: Elements<'_>) -> Result<u64> {
        Ok(Self::append_many(store, &[(self, elements)])?[0])
    }

    /// Overwrites elements starting at `start` (they must all exist already).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] if the range runs past the end.
    pub fn set(&self, store: &mut Store, start: u64, elements: Elements<'_>) -> Result<()> {
        let now = store.now_ms();
        store.write_with(|conn| {
            let mut meta = meta::load_sealed(conn, self.id, &self.name)?;
            let count = elements.count(&meta)?;
            if count == 0 {
                // Loading sealed the tails into the chunks: the metadata must say so too.
                return meta::save(conn, &meta, now);
            }
            meta.check_index(start + count - 1)?;
            match elements {
                Elements::Fixed(raw) => {
                    let w = meta.width().unwrap_or(1);
                    meta.data().write(conn, start * w, raw)?;
                }
                Elements::Var(_) | Elements::Packed { .. } => {
                    for (k, item) in elements.items()?.iter().enumerate() {
                        ops::replace_var(conn, &mut meta, start + k as u64, item)?;
                    }
                }
            }
            meta::save(conn, &meta, now)
        })
    }

    /// Inserts elements before index `at` (`at == len` appends).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] if `at > len`.
    pub fn insert(&self, store: &mut Store, at: u64, elements: Elements<'_>) -> Result<()> {
        let now = store.now_ms();
        store.write_with(|conn| {
            let mut meta = meta::load_sealed(conn, self.id, &self.name)?;
            if at > meta.len {
                return Err(Error::IndexOutOfRange {
                    index: at,
                    len: meta.len,
                });
            }
            ops::insert(conn, &mut meta, at, elements)?;
            meta::save(conn, &meta, now)
        })
    }

    /// Deletes elements `start..stop` (clamped), shifting later ones down; returns how many went.
    ///
    /// # Errors
    /// Store errors.
    pub fn delete_range(&self, store: &mut Store, start: u64, stop: u64) -> Result<u64> {
        let now = store.now_ms();
        store.write_with(|conn| {
            let mut meta = meta::load_sealed(conn, self.id, &self.name)?;
            let stop = stop.min(meta.len);
            let start = start.min(stop);
            ops::delete_range(conn, &mut meta, start, stop)?;
            meta::save(conn, &meta, now)?;
            Ok(stop - start)
        })
    }

    /// Removes and returns element `index`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`].
    pub fn pop(&self, store: &mut Store, index: u64) -> Result<ReadOut> {
        let now = store.now_ms();
        store.write_with(|conn| {
            let mut meta = meta::load_sealed(conn, self.id, &self.name)?;
            meta.check_index(index)?;
            let out = ops::read_range(conn, &meta, index, index + 1)?;
            ops::delete_range(conn, &mut meta, index, index + 1)?;
            meta::save(conn, &meta, now)?;
            Ok(out)
        })
    }
}

/// Names are stored as SQLite text and shown in messages: non-empty, bounded, no NUL.
fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 1024 || name.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "column names must be 1-1024 bytes of text without NUL, got {name:?}"
        )));
    }
    Ok(())
}
