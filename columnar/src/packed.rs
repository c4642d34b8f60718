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

use kvault::codec::{decompress_into, Compression};
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
    /// Width of the numbers inside an element, for the byte shuffle (0: none).
    pub shuffle: usize,
}

impl Packing {
    /// Packs `raw` (a whole chunk): its code and the bytes to store.
    pub(crate) fn pack(&self, raw: &[u8]) -> Result<(i64, Vec<u8>)> {
        Ok(self
            .compression
            .compress(raw, self.shuffle)
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
