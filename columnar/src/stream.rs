//! Growable byte streams stored as chunk rows.
//!
//! A column is one stream (fixed-width elements) or two (variable-width: an index of end
//! offsets and the data). A stream's chunk `i` holds `min(min_chunk << i, max_chunk)` bytes, so a
//! small stream stays small and a large one uses large chunks. Chunks are preallocated at their
//! capacity (zero-filled) and written in place with incremental BLOB I/O, so an append touches
//! only the pages it writes. Invariant: a stream of `used` bytes has exactly
//! `ChunkPlan::chunks_for(used)` chunk rows.

use kvault::BorrowedBlobInsert;
use rusqlite::blob::ZeroBlob;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::packed::{self, Packing};

/// Name of the table holding every column chunk.
pub const CHUNKS_TABLE: &str = "ambervault_column_chunks";
/// Largest accepted chunk capacity.
pub const MAX_CHUNK_BYTES: u64 = 256 << 20;
/// Largest chunk row new columns get, whatever `max_chunk` asks for. SQLite reaches an offset
/// inside a row by walking the row's overflow-page chain from its start, so an access at a deep
/// offset of a 16 MiB row visits up to 4096 pages (measured: ~32 µs per random 64 KiB read,
/// against ~3 µs in 1 MiB rows). Rows of this size keep every access's walk short while a
/// column of many gigabytes still needs only thousands of rows.
pub const MAX_ROW_BYTES: u64 = 64 << 10;
/// Appends of at least this many bytes insert their chunk rows through [`BorrowedBlobInsert`].
const BORROWED_INSERT_BYTES: usize = 1 << 20;
/// Bytes moved per step when elements are shifted (insert/delete in the middle).
const SHIFT_BLOCK: u64 = 4 << 20;

/// Chunk capacities of a stream: doubling from `min` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    min: u64,
    max: u64,
}

impl ChunkPlan {
    /// A plan with chunks growing from `min` to `max` bytes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `1 <= min <= max <= MAX_CHUNK_BYTES`.
    pub fn new(min: u64, max: u64) -> Result<Self> {
        if min == 0 || min > max || max > MAX_CHUNK_BYTES {
            return Err(Error::InvalidArgument(format!(
                "chunk sizes must satisfy 1 <= min_chunk_bytes <= max_chunk_bytes <= \
                 {MAX_CHUNK_BYTES}; got min {min}, max {max}"
            )));
        }
        Ok(Self { min, max })
    }

    /// Smallest chunk capacity.
    #[must_use]
    pub fn min(&self) -> u64 {
        self.min
    }

    /// Largest chunk capacity.
    #[must_use]
    pub fn max(&self) -> u64 {
        self.max
    }

    /// This plan with both capacities capped at [`MAX_ROW_BYTES`]: the plan new columns store.
    #[must_use]
    pub fn row_limited(&self) -> Self {
        Self {
            min: self.min.min(MAX_ROW_BYTES),
            max: self.max.min(MAX_ROW_BYTES),
        }
    }

    /// Capacity of chunk `i`.
    #[must_use]
    pub fn capacity(&self, i: u64) -> u64 {
        if i >= 40 {
            return self.max;
        }
        self.min.saturating_mul(1u64 << i).min(self.max)
    }

    /// Byte offset where chunk `i` starts.
    #[must_use]
    pub fn start(&self, i: u64) -> u64 {
        let mut offset = 0;
        for j in 0..i {
            let cap = self.capacity(j);
            if cap == self.max {
                return offset + (i - j) * self.max;
            }
            offset += cap;
        }
        offset
    }

    /// `(chunk, offset within chunk)` of byte `offset`.
    #[must_use]
    pub fn locate(&self, offset: u64) -> (u64, u64) {
        let mut start = 0;
        let mut j = 0;
        loop {
            let cap = self.capacity(j);
            if cap == self.max {
                let k = (offset - start) / self.max;
                return (j + k, (offset - start) % self.max);
            }
            if offset < start + cap {
                return (j, offset - start);
            }
            start += cap;
            j += 1;
        }
    }

    /// Number of chunks holding `used` bytes.
    #[must_use]
    pub fn chunks_for(&self, used: u64) -> u64 {
        if used == 0 {
            0
        } else {
            self.locate(used - 1).0 + 1
        }
    }
}

/// One byte stream of a column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stream {
    /// `col_id << 1 | kind` (kind 0 = data, 1 = index).
    pub id: i64,
    /// Chunk capacities.
    pub plan: ChunkPlan,
    /// How full chunks are packed (`None`: the column is not compressed; chunks packed by an
    /// earlier setting are still read, see `packed`).
    pub packing: Option<Packing>,
}

impl Stream {
    fn rowid(&self, chunk: u64) -> i64 {
        // id < 2^31 and chunk < 2^32 (checked where chunks are allocated).
        (self.id << 32) | i64::try_from(chunk).unwrap_or(0)
    }

    fn open_chunk<'c>(
        &self,
        conn: &'c Connection,
        chunk: u64,
        read_only: bool,
    ) -> Result<rusqlite::blob::Blob<'c>> {
        let open = || {
            conn.blob_open(
                rusqlite::MAIN_DB,
                CHUNKS_TABLE,
                "data",
                self.rowid(chunk),
                read_only,
            )
        };
        match open() {
            Ok(blob) => Ok(blob),
            // A packed chunk is moved back to a plain row before it is written in place.
            Err(e)
                if !read_only
                    && is_missing_row(&e)
                    && packed::unpack(
                        conn,
                        self.rowid(chunk),
                        usize_of(self.plan.capacity(chunk)),
                    )? =>
            {
                open().map_err(|e| self.missing(chunk, e))
            }
            Err(e) => Err(self.missing(chunk, e)),
        }
    }

    /// The last chunk whose every byte is below `used` (so it can be packed), if any.
    fn full_chunks(&self, used: u64) -> u64 {
        let n = self.plan.chunks_for(used);
        if n > 0 && self.plan.start(n - 1) + self.plan.capacity(n - 1) == used {
            n
        } else {
            n.saturating_sub(1)
        }
    }

    /// Moves every packed chunk of the stream's `used` bytes back to a plain row (before its
    /// column's compression setting changes).
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupted`] for a chunk that does not decompress.
    pub fn unpack_all(&self, conn: &Connection, used: u64) -> Result<()> {
        for chunk in 0..self.plan.chunks_for(used) {
            packed::unpack(conn, self.rowid(chunk), usize_of(self.plan.capacity(chunk)))?;
        }
        Ok(())
    }

    /// Packs the stream's full chunks that are plain rows (a compressed column's chunk that an
    /// append filled or a write changed); nothing for an uncompressed column.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn pack_full(&self, conn: &Connection, used: u64) -> Result<()> {
        let Some(packing) = &self.packing else {
            return Ok(());
        };
        let full = self.full_chunks(used);
        if full == 0 {
            return Ok(());
        }
        packed::pack_range(conn, packing, self.rowid(0), self.rowid(full - 1))
    }

    /// The error for a failed open of chunk `chunk`: a missing row means a damaged stream.
    fn missing(&self, chunk: u64, e: rusqlite::Error) -> Error {
        match e.sqlite_error_code() {
            None | Some(rusqlite::ErrorCode::Unknown) => {
                Error::Corrupted(format!("chunk {chunk} of stream {} is missing", self.id))
            }
            _ => Error::from(e),
        }
    }

    /// Reads `out.len()` bytes starting at `offset` (which must be within the used bytes).
    ///
    /// # Errors
    /// [`Error::Corrupted`] if a chunk is missing or short; SQLite errors.
    pub fn read(&self, conn: &Connection, offset: u64, out: &mut [u8]) -> Result<()> {
        self.reader(conn).read(offset, out)
    }

    /// Whether the chunk holding byte `offset` exists and is long enough to hold it: one
    /// indexed lookup, so a read can refuse a damaged length before allocating for it.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn holds(&self, conn: &Connection, offset: u64) -> Result<bool> {
        let (chunk, within) = self.plan.locate(offset);
        if chunk >= 1 << 32 {
            return Ok(false);
        }
        let len: Option<i64> = conn
            .prepare_cached(&format!(
                "SELECT length(data) FROM {CHUNKS_TABLE} WHERE id = ?1"
            ))?
            .query_row([self.rowid(chunk)], |r| r.get(0))
            .optional()?;
        match len {
            Some(l) => Ok(u64::try_from(l).is_ok_and(|l| l > within)),
            // Packed chunks are full: their length is checked when they are decompressed.
            None => packed::exists(conn, self.rowid(chunk)),
        }
    }

    /// A reader that keeps its blob handle between reads (see [`StreamReader`]).
    #[must_use]
    pub fn reader<'c>(&self, conn: &'c Connection) -> StreamReader<'c> {
        StreamReader {
            stream: *self,
            conn,
            open: None,
            unpacked: None,
        }
    }

    /// Overwrites bytes starting at `offset`; the chunks must already exist.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn write(&self, conn: &Connection, offset: u64, data: &[u8]) -> Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let (chunk, within) = self.plan.locate(offset + done as u64);
            let cap = self.plan.capacity(chunk);
            let take = usize_of((cap - within).min((data.len() - done) as u64));
            let mut blob = self.open_chunk(conn, chunk, false)?;
            blob.write_at(&data[done..done + take], usize_of(within))?;
            done += take;
        }
        Ok(())
    }

    /// Grows or shrinks the stream from `old_used` to `new_used` bytes, allocating zero-filled
    /// chunks or deleting chunks that are no longer needed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] past the addressable size; SQLite errors.
    pub fn resize(&self, conn: &Connection, old_used: u64, new_used: u64) -> Result<()> {
        let have = self.plan.chunks_for(old_used);
        let need = self.plan.chunks_for(new_used);
        if need > u64::from(u32::MAX) {
            return Err(Error::InvalidArgument(
                "column too large for its chunk sizes; use a larger max_chunk_bytes".into(),
            ));
        }
        if need > have {
            let mut stmt = conn.prepare_cached(&format!(
                "INSERT INTO {CHUNKS_TABLE} (id, data) VALUES (?1, ?2)"
            ))?;
            for chunk in have..need {
                let cap = self.plan.capacity(chunk);
                stmt.execute(params![self.rowid(chunk), ZeroBlob(cap)])?;
            }
        } else if need < have {
            conn.prepare_cached(&format!(
                "DELETE FROM {CHUNKS_TABLE} WHERE id BETWEEN ?1 AND ?2"
            ))?
            .execute(params![self.rowid(need), self.rowid(u64::from(u32::MAX))])?;
            packed::delete_range(conn, self.rowid(need), self.rowid(u64::from(u32::MAX)))?;
        }
        Ok(())
    }

    /// Appends `data` after `used` bytes (allocating chunks as needed).
    ///
    /// The free tail of the last chunk is written in place; new chunks are inserted with their
    /// contents (zero-padded to capacity) rather than as zero blobs written afterwards, so each
    /// page is written once even when a large append spills SQLite's page cache.
    ///
    /// # Errors
    /// As [`Stream::resize`] and [`Stream::write`].
    pub fn append(&self, conn: &Connection, used: u64, data: &[u8]) -> Result<()> {
        let have = self.plan.chunks_for(used);
        let need = self.plan.chunks_for(used + data.len() as u64);
        if need > u64::from(u32::MAX) {
            return Err(Error::InvalidArgument(
                "column too large for its chunk sizes; use a larger max_chunk_bytes".into(),
            ));
        }
        let in_place = usize_of((self.plan.start(have) - used).min(data.len() as u64));
        if in_place > 0 {
            self.write(conn, used, &data[..in_place])?;
        }
        if have == need {
            return Ok(());
        }
        let sql = format!("INSERT INTO {CHUNKS_TABLE} (id, data) VALUES (?1, ?2)");
        // Bulk appends bind their bytes without SQLite's copy; the statement is prepared per
        // call, which only pays off for large appends.
        let mut borrowed = if data.len() >= BORROWED_INSERT_BYTES {
            Some(BorrowedBlobInsert::prepare(conn, &sql)?)
        } else {
            None
        };
        let mut done = in_place;
        for chunk in have..need {
            let cap = usize_of(self.plan.capacity(chunk));
            let piece = &data[done..data.len().min(done + cap)];
            // Every chunk row is its full capacity: the last one is zero-padded.
            if let (Some(packing), true) = (&self.packing, piece.len() == cap) {
                // A full chunk of a compressed column goes straight to its packed row.
                packed::insert(conn, self.rowid(chunk), packing, piece)?;
                done += piece.len();
                continue;
            }
            let row: std::borrow::Cow<'_, [u8]> = if piece.len() == cap {
                piece.into()
            } else {
                let mut padded = piece.to_vec();
                padded.resize(cap, 0);
                padded.into()
            };
            match borrowed.as_mut() {
                Some(insert) => insert.execute(self.rowid(chunk), &row)?,
                None => {
                    conn.prepare_cached(&sql)?
                        .execute(params![self.rowid(chunk), &row[..]])?;
                }
            }
            done += piece.len();
        }
        Ok(())
    }

    /// Moves `len` bytes from `src` to `dst` (ranges may overlap), in bounded blocks.
    ///
    /// # Errors
    /// As [`Stream::read`] and [`Stream::write`].
    pub fn copy_within(&self, conn: &Connection, src: u64, dst: u64, len: u64) -> Result<()> {
        if len == 0 || src == dst {
            return Ok(());
        }
        let mut buf = vec![0u8; usize_of(SHIFT_BLOCK.min(len))];
        if dst < src {
            let mut done = 0;
            while done < len {
                let n = SHIFT_BLOCK.min(len - done);
                let part = &mut buf[..usize_of(n)];
                self.read(conn, src + done, part)?;
                self.write(conn, dst + done, part)?;
                done += n;
            }
        } else {
            let mut remaining = len;
            while remaining > 0 {
                let n = SHIFT_BLOCK.min(remaining);
                remaining -= n;
                let part = &mut buf[..usize_of(n)];
                self.read(conn, src + remaining, part)?;
                self.write(conn, dst + remaining, part)?;
            }
        }
        Ok(())
    }

    /// Deletes every chunk of the stream.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn drop_all(&self, conn: &Connection) -> Result<()> {
        conn.prepare_cached(&format!(
            "DELETE FROM {CHUNKS_TABLE} WHERE id BETWEEN ?1 AND ?2"
        ))?
        .execute(params![self.rowid(0), self.rowid(u64::from(u32::MAX))])?;
        packed::delete_range(conn, self.rowid(0), self.rowid(u64::from(u32::MAX)))
    }
}

/// Reads of one stream within one transaction through a single blob handle.
///
/// Opening a blob handle compiles a statement, and reaching an offset walks the row's
/// overflow-page chain; SQLite caches that walk on the handle. Keeping the handle (and moving
/// it to the next chunk with `reopen`) makes later reads of the same or the next chunk cheap.
pub struct StreamReader<'c> {
    stream: Stream,
    conn: &'c Connection,
    open: Option<(u64, rusqlite::blob::Blob<'c>)>,
    /// The last packed chunk read, decompressed.
    unpacked: Option<(u64, Vec<u8>)>,
}

impl StreamReader<'_> {
    /// Reads `out.len()` bytes starting at `offset` (which must be within the used bytes).
    ///
    /// # Errors
    /// As [`Stream::read`].
    pub fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<()> {
        let stream = self.stream;
        // A long read of a compressed stream decompresses its whole packed chunks on every
        // core first; the loop below then skips them.
        let decoded = if stream.packing.is_some() {
            self.decode_whole_chunks(offset, out)?
        } else {
            None
        };
        let mut done = 0usize;
        while done < out.len() {
            let (chunk, within) = stream.plan.locate(offset + done as u64);
            let cap = stream.plan.capacity(chunk);
            let take = usize_of((cap - within).min((out.len() - done) as u64));
            if let Some((first, filled)) = &decoded {
                if chunk >= *first && filled.get(usize_of(chunk - first)) == Some(&true) {
                    done += take;
                    continue;
                }
            }
            let part = &mut out[done..done + take];
            // A compressed column's chunks are mostly packed: look there first.
            if stream.packing.is_some() && self.read_packed(chunk, within, part)? {
                done += take;
                continue;
            }
            let blob = match self.open.take() {
                Some((open, blob)) if open == chunk => Ok(blob),
                Some((_, mut blob)) => blob.reopen(stream.rowid(chunk)).map(|()| blob),
                None => self.conn.blob_open(
                    rusqlite::MAIN_DB,
                    CHUNKS_TABLE,
                    "data",
                    stream.rowid(chunk),
                    true,
                ),
            };
            let blob = match blob {
                Ok(blob) => blob,
                Err(e) if is_missing_row(&e) => {
                    if self.read_packed(chunk, within, part)? {
                        done += take;
                        continue;
                    }
                    return Err(stream.missing(chunk, e));
                }
                Err(e) => return Err(stream.missing(chunk, e)),
            };
            let blob = &self.open.insert((chunk, blob)).1;
            blob.read_at_exact(part, usize_of(within)).map_err(|_| {
                Error::Corrupted(format!("chunk {chunk} of stream {} is short", stream.id))
            })?;
            done += take;
        }
        Ok(())
    }

    /// Decompresses, in parallel, the packed chunks that `out` (read from `offset`) covers
    /// whole, when there are at least [`packed::PARALLEL_MIN_CHUNKS`]: returns the first such
    /// chunk and which of the chunks from it were filled, or `None` for a shorter read.
    fn decode_whole_chunks(
        &mut self,
        offset: u64,
        out: &mut [u8],
    ) -> Result<Option<(u64, Vec<bool>)>> {
        let stream = self.stream;
        if (out.len() as u64) < stream.plan.min() * packed::PARALLEL_MIN_CHUNKS as u64 {
            return Ok(None);
        }
        let mut parts: Vec<(i64, &mut [u8])> = Vec::new();
        let mut first = None;
        let mut rest = out;
        let mut at = offset;
        while !rest.is_empty() {
            let (chunk, within) = stream.plan.locate(at);
            let cap = stream.plan.capacity(chunk);
            let take = usize_of((cap - within).min(rest.len() as u64));
            let (part, tail) = rest.split_at_mut(take);
            if within == 0 && take as u64 == cap {
                first.get_or_insert(chunk);
                parts.push((stream.rowid(chunk), part));
            }
            rest = tail;
            at += take as u64;
        }
        let Some(first) = first else {
            return Ok(None);
        };
        let filled = packed::read_many_into(self.conn, &mut parts)?;
        Ok(Some((first, filled)))
    }

    /// Copies bytes `within ..` of chunk `chunk` into `part` if the chunk is packed (keeping it
    /// decompressed for the next read); false when it is not packed.
    fn read_packed(&mut self, chunk: u64, within: u64, part: &mut [u8]) -> Result<bool> {
        let stream = self.stream;
        let hit = matches!(&self.unpacked, Some((c, _)) if *c == chunk);
        if !hit && within == 0 && part.len() as u64 == stream.plan.capacity(chunk) {
            // A read of the whole chunk (a scan): decompressed straight into the caller's buffer.
            return packed::read_into(self.conn, stream.rowid(chunk), part);
        }
        if !hit {
            let mut raw = self.unpacked.take().map(|(_, b)| b).unwrap_or_default();
            raw.resize(usize_of(stream.plan.capacity(chunk)), 0);
            if !packed::read_into(self.conn, stream.rowid(chunk), &mut raw)? {
                self.unpacked = None;
                return Ok(false);
            }
            self.unpacked = Some((chunk, raw));
        }
        let raw = &self.unpacked.as_ref().expect("filled above").1;
        let from = usize_of(within);
        part.copy_from_slice(&raw[from..from + part.len()]);
        Ok(true)
    }
}

/// Whether a failed blob open means the row does not exist.
fn is_missing_row(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        None | Some(rusqlite::ErrorCode::Unknown)
    )
}

pub(crate) fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_double_then_stay_at_max() {
        let plan = ChunkPlan::new(16, 100).unwrap();
        let caps: Vec<u64> = (0..6).map(|i| plan.capacity(i)).collect();
        assert_eq!(caps, vec![16, 32, 64, 100, 100, 100]);
        assert_eq!(plan.start(0), 0);
        assert_eq!(plan.start(3), 112);
        assert_eq!(plan.start(5), 312);
        for offset in 0..1000u64 {
            let (chunk, within) = plan.locate(offset);
            assert!(within < plan.capacity(chunk));
            assert_eq!(plan.start(chunk) + within, offset);
        }
        assert_eq!(plan.chunks_for(0), 0);
        assert_eq!(plan.chunks_for(16), 1);
        assert_eq!(plan.chunks_for(17), 2);
        assert_eq!(plan.chunks_for(112), 3);
        assert_eq!(plan.chunks_for(113), 4);
    }

    #[test]
    fn plans_are_validated() {
        assert!(ChunkPlan::new(0, 10).is_err());
        assert!(ChunkPlan::new(20, 10).is_err());
        assert!(ChunkPlan::new(1, MAX_CHUNK_BYTES + 1).is_err());
        assert!(ChunkPlan::new(7, 7).is_ok());
    }

    #[test]
    fn row_limited_caps_both_capacities() {
        let big = ChunkPlan::new(4 << 20, 16 << 20).unwrap().row_limited();
        assert_eq!((big.min(), big.max()), (MAX_ROW_BYTES, MAX_ROW_BYTES));
        let usual = ChunkPlan::new(16 << 10, 16 << 20).unwrap().row_limited();
        assert_eq!((usual.min(), usual.max()), (16 << 10, MAX_ROW_BYTES));
        let small = ChunkPlan::new(16, 100).unwrap();
        assert_eq!(small.row_limited(), small);
    }
}
