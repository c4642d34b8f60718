//! Compressed ("packed") column chunks.
//!
//! A column with a compression setting keeps its full chunks packed: compressed (or, when a
//! chunk does not shrink enough, as it is) in `ambervault_column_packed`, with the code that
//! says how to read it (see [`kvault::codec`]). The chunk still being filled, and any chunk a
//! write in the middle of the column touches, is a plain row of `ambervault_column_chunks`,
//! written in place as in uncompressed columns; it is packed again when the operation that
//! filled or changed it saves the column. Every chunk is in exactly one of the two tables.
//!
//! Readers look a chunk up in both tables whatever the column's setting says, so a handle
//! that opened a column before another process compressed it still reads it right.

use kvault::codec::{decompress_into, Compression, Layout};
use rusqlite::{params, Connection};

use crate::error::{Error, Result};
use crate::stream::CHUNKS_TABLE;

/// Name of the table of packed chunks.
pub const PACKED_TABLE: &str = "ambervault_column_packed";

/// How a stream's full chunks are packed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Packing {
    /// The column's compression setting.
    pub compression: Compression,
    /// What the stream's bytes are (numbers of a type, offsets, bytes).
    pub layout: Layout,
}

impl Packing {
    /// Packs `raw` (a whole chunk): its code and the bytes to store.
    pub(crate) fn pack(&self, raw: &[u8]) -> Result<(i64, Vec<u8>)> {
        Ok(self
            .compression
            .compress(raw, self.layout)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?
            .unwrap_or_else(|| (kvault::codec::CODEC_NONE, raw.to_vec())))
    }
}

/// Fills `out` (the chunk's capacity) from packed chunk `rowid`; false when it is not packed.
/// Decompresses straight from SQLite's copy of the row.
pub(crate) fn read_into(conn: &Connection, rowid: i64, out: &mut [u8]) -> Result<bool> {
    let stmt = conn.prepare_cached(&format!(
        "SELECT codec, data FROM {PACKED_TABLE} WHERE id = ?1"
    ));
    let mut stmt = match stmt {
        Ok(stmt) => stmt,
        Err(e) if missing_table(&e) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let mut rows = stmt.query([rowid])?;
    let Some(row) = rows.next()? else {
        return Ok(false);
    };
    let code: i64 = row.get(0)?;
    let stored = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
    decompress_into(code, stored, out)
        .map_err(|e| Error::Corrupted(format!("packed column chunk {rowid:#x}: {e}")))?;
    Ok(true)
}

/// Fewest whole packed chunks a read must cover before their decompression is shared among
/// threads (below it, starting threads costs more than it saves).
pub(crate) const PARALLEL_MIN_CHUNKS: usize = 4;
/// Chunks fetched and decompressed per round, which bounds the compressed bytes held at once.
const PARALLEL_ROUND_CHUNKS: usize = 256;

/// Threads a long read decompresses on: the machine's cores, at most 8.
fn decode_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)))
}

/// Decompresses the packed chunks among `parts` (`(rowid, whole chunk's slice of the
/// caller's buffer)`, rowids ascending and consecutive) on every core: the stored bytes are
/// fetched on this thread, in rounds, then decoded in parallel. Returns which parts were
/// packed (and are now filled); the others are left to the caller.
pub(crate) fn read_many_into(
    conn: &Connection,
    parts: &mut [(i64, &mut [u8])],
) -> Result<Vec<bool>> {
    let mut filled = vec![false; parts.len()];
    if parts.len() < PARALLEL_MIN_CHUNKS || decode_threads() < 2 {
        return Ok(filled);
    }
    let mut stmt = match conn.prepare_cached(&format!(
        "SELECT id, codec, data FROM {PACKED_TABLE} WHERE id BETWEEN ?1 AND ?2"
    )) {
        Ok(stmt) => stmt,
        Err(e) if missing_table(&e) => return Ok(filled),
        Err(e) => return Err(e.into()),
    };
    let mut start = 0;
    for round in parts.chunks_mut(PARALLEL_ROUND_CHUNKS) {
        let first = round[0].0;
        let last = round[round.len() - 1].0;
        let mut stored: Vec<Option<(i64, Vec<u8>)>> = vec![None; round.len()];
        let mut rows = stmt.query(params![first, last])?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            if let Some(slot) = usize::try_from(rowid - first)
                .ok()
                .and_then(|i| stored.get_mut(i))
            {
                *slot = Some((row.get(1)?, row.get(2)?));
            }
        }
        let mut jobs: Vec<(i64, i64, &[u8], &mut [u8])> = Vec::with_capacity(round.len());
        for (i, ((rowid, part), slot)) in round.iter_mut().zip(&stored).enumerate() {
            if let Some((code, bytes)) = slot {
                jobs.push((*rowid, *code, bytes, &mut **part));
                filled[start + i] = true;
            }
        }
        decode_in_parallel(jobs)?;
        start += round.len();
    }
    Ok(filled)
}

/// Runs the decompression jobs (`(rowid, code, stored, out)`) on up to [`decode_threads`]
/// threads, this one included.
fn decode_in_parallel(mut jobs: Vec<(i64, i64, &[u8], &mut [u8])>) -> Result<()> {
    let decode = |group: &mut [(i64, i64, &[u8], &mut [u8])]| -> Result<()> {
        for (rowid, code, stored, out) in group.iter_mut() {
            decompress_into(*code, stored, out)
                .map_err(|e| Error::Corrupted(format!("packed column chunk {rowid:#x}: {e}")))?;
        }
        Ok(())
    };
    let per_thread = jobs.len().div_ceil(decode_threads()).max(1);
    std::thread::scope(|scope| {
        let mut groups = jobs.chunks_mut(per_thread);
        let mine = groups.next();
        let others: Vec<_> = groups
            .map(|group| scope.spawn(move || decode(group)))
            .collect();
        let mut result = mine.map_or(Ok(()), decode);
        for handle in others {
            let joined = handle.join().unwrap_or_else(|_| {
                Err(Error::Corrupted("a decompression thread panicked".into()))
            });
            result = result.and(joined);
        }
        result
    })
}

/// Whether chunk `rowid` is packed.
pub(crate) fn exists(conn: &Connection, rowid: i64) -> Result<bool> {
    let stmt = conn.prepare_cached(&format!(
        "SELECT EXISTS(SELECT 1 FROM {PACKED_TABLE} WHERE id = ?1)"
    ));
    match stmt {
        Ok(mut stmt) => Ok(stmt.query_row([rowid], |r| r.get(0))?),
        Err(e) if missing_table(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Moves packed chunk `rowid` (of `capacity` bytes) back to a plain row, so it can be written
/// in place; false when it is not packed.
pub(crate) fn unpack(conn: &Connection, rowid: i64, capacity: usize) -> Result<bool> {
    let mut raw = vec![0u8; capacity];
    if !read_into(conn, rowid, &mut raw)? {
        return Ok(false);
    }
    conn.prepare_cached(&format!("DELETE FROM {PACKED_TABLE} WHERE id = ?1"))?
        .execute([rowid])?;
    conn.prepare_cached(&format!(
        "INSERT INTO {CHUNKS_TABLE} (id, data) VALUES (?1, ?2)"
    ))?
    .execute(params![rowid, raw])?;
    Ok(true)
}

/// Stores a full chunk packed.
pub(crate) fn insert(conn: &Connection, rowid: i64, packing: &Packing, raw: &[u8]) -> Result<()> {
    let (code, stored) = packing.pack(raw)?;
    // A code older readers do not know raises the file's version first (a PRAGMA read when
    // it is already raised), so they refuse the file instead of failing on the chunk.
    let needed = kvault::codec::format_version_of(code);
    if needed > kvault::COMPRESSION_FORMAT_VERSION {
        kvault::require_format_version(conn, needed)?;
    }
    conn.prepare_cached(&format!(
        "INSERT INTO {PACKED_TABLE} (id, codec, data) VALUES (?1, ?2, ?3)"
    ))?
    .execute(params![rowid, code, stored])?;
    Ok(())
}

/// Packs every plain chunk row with a rowid in `first..=last` (full chunks of one stream).
pub(crate) fn pack_range(
    conn: &Connection,
    packing: &Packing,
    first: i64,
    last: i64,
) -> Result<()> {
    let plain: Vec<(i64, Vec<u8>)> = conn
        .prepare_cached(&format!(
            "SELECT id, data FROM {CHUNKS_TABLE} WHERE id BETWEEN ?1 AND ?2"
        ))?
        .query_map(params![first, last], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (rowid, raw) in plain {
        conn.prepare_cached(&format!("DELETE FROM {CHUNKS_TABLE} WHERE id = ?1"))?
            .execute([rowid])?;
        insert(conn, rowid, packing, &raw)?;
    }
    Ok(())
}

/// Deletes the packed chunks with a rowid in `first..=last`.
pub(crate) fn delete_range(conn: &Connection, first: i64, last: i64) -> Result<()> {
    let stmt = conn.prepare_cached(&format!(
        "DELETE FROM {PACKED_TABLE} WHERE id BETWEEN ?1 AND ?2"
    ));
    match stmt {
        Ok(mut stmt) => {
            stmt.execute(params![first, last])?;
            Ok(())
        }
        Err(e) if missing_table(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether an error says the packed table does not exist.
fn missing_table(e: &rusqlite::Error) -> bool {
    e.to_string().contains("no such table")
}
