//! A column's metadata row: validated on load, written back by every write, and the tails it
//! carries (the last data and index bytes, kept in the row instead of the chunks).

use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::packed::Packing;
use crate::schema::{tables_exist, COLUMNS_TABLE};
use crate::stream::{usize_of, ChunkPlan, Stream, StreamReader};
use kvault::codec::{Compression, Layout};

/// Bytes per index entry of a variable-width column (little-endian u64 end offset).
pub(crate) const INDEX_WIDTH: u64 = 8;
/// Most data bytes a column keeps in its metadata row's `tail` (see [`ColumnMeta::tail`]).
/// The row must stay inside one page next to other columns' rows: 1 KiB is a quarter of the
/// default page, and one move of the tail into the chunks serves 128 f64 appends.
pub const TAIL_BYTES: u64 = 1 << 10;
/// Most data bytes a variable-width column keeps in its `tail`. Log lines of 60-120 bytes
/// filled a 1 KiB tail every 11 lines, and the move into the chunks (a transaction of several
/// pages) was 40% of the time of one-by-one durable appends; 3 KiB plus a full index tail
/// (3.5 KiB) still fits the row in one 4 KiB page.
pub const VAR_TAIL_BYTES: u64 = 3 << 10;
/// Most index bytes (64 end offsets) a variable-width column keeps in `index_tail`.
pub const INDEX_TAIL_BYTES: u64 = 64 * INDEX_WIDTH;

/// A column's metadata.
#[derive(Debug, Clone, PartialEq)]
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
    /// The last `tail.len()` data bytes (at most [`TAIL_BYTES`], [`VAR_TAIL_BYTES`] for
    /// variable-width columns), stored in the metadata row
    /// instead of the chunks. An append that fits writes only this row, so a durable
    /// one-element append commits one page instead of two or three (the chunk pages and the
    /// length). The chunks hold the bytes before the tail (`data_bytes - tail.len()`,
    /// "sealed"); any other write first moves the tails into the chunks.
    pub tail: Arc<[u8]>,
    /// For variable-width columns, the index entries of the last `index_tail.len() / 8`
    /// elements (at most [`INDEX_TAIL_BYTES`]): exactly the elements whose bytes `tail` holds.
    /// Always empty for fixed-width columns.
    pub index_tail: Arc<[u8]>,
    /// How full chunks are compressed (`None`: stored as they are).
    pub compression: Option<Compression>,
}

impl ColumnMeta {
    /// The stream of element bytes.
    pub(crate) fn data(&self) -> Stream {
        Stream {
            id: self.id << 1,
            plan: self.plan,
            packing: self.compression.map(|compression| Packing {
                compression,
                layout: self.dtype.layout(),
            }),
        }
    }

    /// The stream of end offsets (variable-width columns only).
    pub(crate) fn index(&self) -> Stream {
        Stream {
            id: (self.id << 1) | 1,
            plan: self.plan,
            packing: self.compression.map(|compression| Packing {
                compression,
                layout: Layout::Offsets,
            }),
        }
    }

    /// Bytes per element, `None` for variable-width columns.
    pub(crate) fn width(&self) -> Option<u64> {
        self.dtype.fixed_width().map(|w| w as u64)
    }

    /// Data bytes held by the chunks: everything before the tail.
    pub(crate) fn sealed(&self) -> u64 {
        self.data_bytes - self.tail.len() as u64
    }

    /// Index bytes held by the chunks: everything before the index tail.
    pub(crate) fn index_sealed(&self) -> u64 {
        // Saturating: a damaged length must give an error later, not an overflow here.
        self.len
            .saturating_mul(INDEX_WIDTH)
            .saturating_sub(self.index_tail.len() as u64)
    }

    /// A reader of the data bytes, chunks and tail alike.
    pub(crate) fn data_reader<'c, 'm>(&'m self, conn: &'c Connection) -> TailedReader<'c, 'm> {
        TailedReader {
            chunks: self.data().reader(conn),
            sealed: self.sealed(),
            tail: &self.tail,
        }
    }

    /// A reader of the index bytes, chunks and tail alike.
    pub(crate) fn index_reader<'c, 'm>(&'m self, conn: &'c Connection) -> TailedReader<'c, 'm> {
        TailedReader {
            chunks: self.index().reader(conn),
            sealed: self.index_sealed(),
            tail: &self.index_tail,
        }
    }

    /// Fails with [`Error::Corrupted`] unless the chunks hold the last byte the metadata
    /// claims for each stream (two indexed lookups): a damaged length is refused when the
    /// column is loaded, before `len()` reports it (a caller such as `list()` sizes memory by
    /// it).
    pub(crate) fn ensure_streams(&self, conn: &Connection) -> Result<()> {
        let data = self.sealed();
        let index = if self.width().is_some() {
            0
        } else {
            self.index_sealed()
        };
        let overflow = self.width().is_none() && self.len.checked_mul(INDEX_WIDTH).is_none();
        if overflow
            || (data > 0 && !self.data().holds(conn, data - 1)?)
            || (index > 0 && !self.index().holds(conn, index - 1)?)
        {
            return Err(Error::Corrupted(format!(
                "column {:?} claims {} elements its chunks do not hold",
                self.name, self.len
            )));
        }
        Ok(())
    }

    /// Bytes a read may allocate before the stream is asked whether it holds them.
    const CHECKED_READ_BYTES: u64 = 1 << 20;

    /// Fails with [`Error::Corrupted`] unless the data stream (`index` false) or the index
    /// stream holds bytes up to `end`: called before a large read allocates `end - offset`
    /// bytes, so a damaged length is refused instead of exhausting memory.
    pub(crate) fn ensure_readable(
        &self,
        conn: &Connection,
        index: bool,
        offset: u64,
        end: u64,
    ) -> Result<()> {
        if end.saturating_sub(offset) <= Self::CHECKED_READ_BYTES {
            return Ok(());
        }
        let (stream, sealed, tail) = if index {
            (
                self.index(),
                self.index_sealed(),
                self.index_tail.len() as u64,
            )
        } else {
            (self.data(), self.sealed(), self.tail.len() as u64)
        };
        let held = if end > sealed {
            end - sealed <= tail && (sealed == 0 || stream.holds(conn, sealed - 1)?)
        } else {
            stream.holds(conn, end - 1)?
        };
        if !held {
            return Err(Error::Corrupted(format!(
                "column {:?} claims {} bytes its chunks do not hold",
                self.name,
                if index { "index" } else { "data" }
            )));
        }
        Ok(())
    }

    /// Reads data bytes `offset .. offset + out.len()` (chunks and tail alike).
    pub(crate) fn read_data(&self, conn: &Connection, offset: u64, out: &mut [u8]) -> Result<()> {
        self.data_reader(conn).read(offset, out)
    }

    /// [`Error::IndexOutOfRange`] unless `index < len`.
    pub(crate) fn check_index(&self, index: u64) -> Result<()> {
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
pub(crate) struct TailedReader<'c, 'm> {
    chunks: StreamReader<'c>,
    sealed: u64,
    tail: &'m [u8],
}

impl TailedReader<'_, '_> {
    /// Reads bytes `offset .. offset + out.len()` of the stream.
    pub(crate) fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<()> {
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
pub(crate) fn seal(conn: &Connection, meta: &mut ColumnMeta) -> Result<()> {
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

/// The metadata columns every query selects, in [`MetaRow::from_row`]'s order.
const META_COLUMNS: &str =
    "col_id, name, dtype, length, data_bytes, min_chunk, max_chunk, tail, index_tail, compression";
/// [`META_COLUMNS`] of a file written before columns had a compression setting (opened
/// read-only, so the column could not be added).
const META_COLUMNS_V1: &str =
    "col_id, name, dtype, length, data_bytes, min_chunk, max_chunk, tail, index_tail, NULL";

/// Prepares `SELECT <metadata columns> FROM ambervault_columns <rest>`, without the
/// compression column in a file that lacks it.
fn select_meta<'c>(conn: &'c Connection, rest: &str) -> Result<rusqlite::CachedStatement<'c>> {
    match conn.prepare_cached(&format!(
        "SELECT {META_COLUMNS} FROM {COLUMNS_TABLE} {rest}"
    )) {
        Ok(stmt) => Ok(stmt),
        Err(e) if e.to_string().contains("no such column: compression") => Ok(conn
            .prepare_cached(&format!(
                "SELECT {META_COLUMNS_V1} FROM {COLUMNS_TABLE} {rest}"
            ))?),
        Err(e) => Err(e.into()),
    }
}

/// One metadata row as stored, before validation.
pub(crate) struct MetaRow {
    /// `col_id`: known even when the rest of the row fails validation.
    pub(crate) id: i64,
    name: String,
    dtype: String,
    length: i64,
    data_bytes: i64,
    min_chunk: i64,
    max_chunk: i64,
    tail: Option<Vec<u8>>,
    index_tail: Option<Vec<u8>>,
    compression: Option<String>,
}

impl MetaRow {
    /// Reads a row selected with [`META_COLUMNS`].
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: row.get(1)?,
            dtype: row.get(2)?,
            length: row.get(3)?,
            data_bytes: row.get(4)?,
            min_chunk: row.get(5)?,
            max_chunk: row.get(6)?,
            tail: row.get(7)?,
            index_tail: row.get(8)?,
            compression: row.get(9)?,
        })
    }

    /// The validated metadata.
    ///
    /// # Errors
    /// [`Error::Corrupted`] when a field is out of range or the fields disagree.
    pub(crate) fn into_meta(self) -> Result<ColumnMeta> {
        let Self {
            id,
            name,
            dtype,
            length,
            data_bytes,
            min_chunk,
            max_chunk,
            tail,
            index_tail,
            compression,
        } = self;
        let compression = match compression {
            None => None,
            Some(text) => Compression::parse(&text).map_err(|_| {
                Error::Corrupted(format!(
                    "column {name:?} has an unreadable compression setting {text:?}"
                ))
            })?,
        };
        let tail = tail.unwrap_or_default();
        let index_tail = index_tail.unwrap_or_default();
        let non_negative = |v: i64, what: &str| {
            u64::try_from(v)
                .map_err(|_| Error::Corrupted(format!("column {name:?} has negative {what}")))
        };
        let parsed = DType::parse(&dtype).map_err(|_| {
            Error::Corrupted(format!("column {name:?} has unknown dtype {dtype:?}"))
        })?;
        let len = non_negative(length, "length")?;
        let bytes = non_negative(data_bytes, "data size")?;
        if let Some(w) = parsed.fixed_width() {
            if len.checked_mul(w as u64) != Some(bytes) {
                return Err(Error::Corrupted(format!(
                    "column {name:?} claims {len} elements of {w} bytes in {bytes} bytes"
                )));
            }
        }
        let tail_fits = tail.len() as u64 <= bytes
            && match parsed.fixed_width() {
                Some(w) => tail.len() % w == 0 && index_tail.is_empty(),
                None => {
                    (index_tail.len() as u64).is_multiple_of(INDEX_WIDTH)
                        && index_tail.len() as u64 <= len.saturating_mul(INDEX_WIDTH)
                        && (!index_tail.is_empty() || tail.is_empty())
                }
            };
        if !tail_fits {
            return Err(Error::Corrupted(format!(
                "column {name:?} has a {}-byte tail and a {}-byte index tail that do not fit its \
                 {len} elements and {bytes} data bytes of dtype {dtype}",
                tail.len(),
                index_tail.len()
            )));
        }
        let plan = ChunkPlan::new(
            non_negative(min_chunk, "chunk size")?,
            non_negative(max_chunk, "chunk size")?,
        )
        .map_err(|e| Error::Corrupted(format!("column {name:?}: {e}")))?;
        Ok(ColumnMeta {
            id,
            name,
            dtype: parsed,
            len,
            data_bytes: bytes,
            plan,
            tail: tail.into(),
            index_tail: index_tail.into(),
            compression,
        })
    }
}

/// The metadata of the column called `name`, if any (also when the tables do not exist yet).
pub(crate) fn find(conn: &Connection, name: &str) -> Result<Option<ColumnMeta>> {
    if !tables_exist(conn)? {
        return Ok(None);
    }
    let row = select_meta(conn, "WHERE name = ?1")?
        .query_row([name], MetaRow::from_row)
        .optional()?;
    row.map(MetaRow::into_meta).transpose()
}

/// Every metadata row, unvalidated, ordered by name. The tables must exist.
pub(crate) fn rows(conn: &Connection) -> Result<Vec<MetaRow>> {
    let mut stmt = select_meta(conn, "ORDER BY name")?;
    let rows = stmt
        .query_map([], MetaRow::from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// The metadata of column `id`, which a handle knows as `name`. A row with that id under
/// another name is not the handle's column: ids are not unique over time, since a column
/// created in a transaction that rolled back gives its id back (the id sequence rolls back
/// with it) and the next column created gets it. So a handle whose column was deleted,
/// renamed by another handle or process, or never committed, finds nothing instead of
/// reading or writing an unrelated column.
pub(crate) fn load(conn: &Connection, id: i64, name: &str) -> Result<ColumnMeta> {
    let row = select_meta(conn, "WHERE col_id = ?1 AND name = ?2")?
        .query_row(rusqlite::params![id, name], MetaRow::from_row)
        .optional()?;
    match row {
        Some(row) => row.into_meta(),
        None => Err(Error::ColumnNotFound(name.to_string())),
    }
}

/// [`load`] for readers: also checks that the chunks hold what the metadata claims (see
/// [`ColumnMeta::ensure_streams`]). Writes load without it: they never size memory by the
/// length, and the check's two lookups would fall on every durable append.
pub(crate) fn load_for_reading(conn: &Connection, id: i64, name: &str) -> Result<ColumnMeta> {
    let meta = load(conn, id, name)?;
    meta.ensure_streams(conn)?;
    Ok(meta)
}

/// The metadata for a write other than an append, with the tails moved into the chunks
/// first (only appends and readers deal with tails).
pub(crate) fn load_sealed(conn: &Connection, id: i64, name: &str) -> Result<ColumnMeta> {
    let mut meta = load(conn, id, name)?;
    seal(conn, &mut meta)?;
    Ok(meta)
}

/// Writes back what operations change: length, data size, tails, and `updated_at = now_ms`.
/// A compressed column's chunks that the operation filled or changed are packed first.
pub(crate) fn save(conn: &Connection, meta: &ColumnMeta, now_ms: i64) -> Result<()> {
    if meta.compression.is_some() {
        meta.data().pack_full(conn, meta.sealed())?;
        if meta.width().is_none() {
            meta.index().pack_full(conn, meta.index_sealed())?;
        }
    }
    conn.prepare_cached(&format!(
        "UPDATE {COLUMNS_TABLE} SET length = ?1, data_bytes = ?2, updated_at = ?3, tail = ?4, \
         index_tail = ?5 WHERE col_id = ?6"
    ))?
    .execute(params![
        i64::try_from(meta.len).unwrap_or(i64::MAX),
        i64::try_from(meta.data_bytes).unwrap_or(i64::MAX),
        now_ms,
        (!meta.tail.is_empty()).then_some(&meta.tail[..]),
        (!meta.index_tail.is_empty()).then_some(&meta.index_tail[..]),
        meta.id
    ])?;
    Ok(())
}
