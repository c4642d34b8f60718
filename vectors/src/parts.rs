//! The graph snapshot's rows (`INDEX_PARTS`): written and read as one stream of bytes split
//! into parts, so that a graph of hundreds of MiB is never held twice in memory.

use std::io::{Read, Write};

use rusqlite::blob::Blob;
use rusqlite::{CachedStatement, Connection};

use kvault::{Error, Result};

use crate::schema::INDEX_PARTS;

/// Bytes per part row: small enough to insert without a large buffer, large enough that a
/// 1M-vector graph is a few hundred rows.
pub(crate) const PART_BYTES: usize = 4 << 20;

/// An SQLite error carried through `std::io` (see [`uncarried`]).
fn carried(e: rusqlite::Error) -> std::io::Error {
    std::io::Error::other(Error::from(e))
}

/// The vault's own error when `e` carries one (from [`carried`]), else an I/O error.
pub(crate) fn uncarried(e: std::io::Error) -> Error {
    match e.downcast::<Error>() {
        Ok(inner) => inner,
        Err(e) => Error::Io(e),
    }
}

/// Inserts what is written as `(name, part, data)` rows of [`PART_BYTES`], in order.
pub(crate) struct PartsWriter<'c> {
    insert: CachedStatement<'c>,
    name: &'c str,
    part: i64,
    buffer: Vec<u8>,
}

impl<'c> PartsWriter<'c> {
    /// A writer of `name`'s parts (the caller has deleted the old ones).
    pub(crate) fn new(conn: &'c Connection, name: &'c str) -> Result<Self> {
        Ok(Self {
            insert: conn.prepare_cached(&format!(
                "INSERT INTO {INDEX_PARTS} (name, part, data) VALUES (?1, ?2, ?3)"
            ))?,
            name,
            part: 0,
            buffer: Vec::with_capacity(PART_BYTES),
        })
    }

    fn insert_part(&mut self) -> rusqlite::Result<()> {
        self.insert
            .execute(rusqlite::params![self.name, self.part, &self.buffer])?;
        self.part += 1;
        self.buffer.clear();
        Ok(())
    }

    /// Inserts the last, partly filled part.
    pub(crate) fn finish(mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            self.insert_part()?;
        }
        Ok(())
    }
}

impl Write for PartsWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let take = bytes.len().min(PART_BYTES - self.buffer.len());
        self.buffer.extend_from_slice(&bytes[..take]);
        if self.buffer.len() == PART_BYTES {
            self.insert_part().map_err(carried)?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads `name`'s parts in order as one stream, straight from the rows' pages.
pub(crate) struct PartsReader<'c> {
    conn: &'c Connection,
    rowids: Vec<i64>,
    next: usize,
    blob: Option<Blob<'c>>,
}

impl<'c> PartsReader<'c> {
    /// A reader of `name`'s parts, or `None` when it has none.
    ///
    /// # Errors
    /// [`Error::Corrupted`] when a part number is missing.
    pub(crate) fn open(conn: &'c Connection, name: &str) -> Result<Option<Self>> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT part, rowid FROM {INDEX_PARTS} WHERE name = ?1 ORDER BY part"
        ))?;
        let parts = stmt
            .query_map([name], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if let Some(expected) = (0..)
            .zip(&parts)
            .find(|(i, (part, _))| i != part)
            .map(|(i, _)| i)
        {
            return Err(Error::Corrupted(format!(
                "vector table {name:?}: HNSW snapshot part {expected} is missing"
            )));
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            conn,
            rowids: parts.into_iter().map(|(_, rowid)| rowid).collect(),
            next: 0,
            blob: None,
        }))
    }
}

impl Read for PartsReader<'_> {
    fn read(&mut self, into: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.blob.is_none() {
                let Some(&rowid) = self.rowids.get(self.next) else {
                    return Ok(0);
                };
                self.next += 1;
                let blob = self
                    .conn
                    .blob_open(rusqlite::MAIN_DB, INDEX_PARTS, "data", rowid, true)
                    .map_err(carried)?;
                self.blob = Some(blob);
            }
            let n = self.blob.as_mut().expect("opened above").read(into)?;
            if n > 0 || into.is_empty() {
                return Ok(n);
            }
            self.blob = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(&format!(
            "CREATE TABLE {INDEX_PARTS} (name TEXT NOT NULL, part INTEGER NOT NULL,
                data BLOB NOT NULL, PRIMARY KEY (name, part))"
        ))
        .expect("table");
        conn
    }

    #[test]
    fn bytes_written_in_pieces_read_back_across_part_edges() {
        let conn = conn();
        let bytes: Vec<u8> = (0..2 * PART_BYTES + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut writer = PartsWriter::new(&conn, "g").expect("writer");
        for piece in bytes.chunks(999_983) {
            writer.write_all(piece).expect("written");
        }
        writer.finish().expect("finished");
        let parts: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {INDEX_PARTS}"), [], |r| {
                r.get(0)
            })
            .expect("count");
        assert_eq!(parts, 3);
        let mut reader = PartsReader::open(&conn, "g").expect("read").expect("parts");
        let mut back = Vec::new();
        let mut piece = vec![0u8; 1_000_003];
        loop {
            let n = reader.read(&mut piece).expect("read");
            if n == 0 {
                break;
            }
            back.extend_from_slice(&piece[..n]);
        }
        assert_eq!(back, bytes);
        assert!(PartsReader::open(&conn, "other").expect("read").is_none());
        conn.execute(&format!("DELETE FROM {INDEX_PARTS} WHERE part = 1"), [])
            .expect("deleted");
        assert!(matches!(
            PartsReader::open(&conn, "g"),
            Err(Error::Corrupted(m)) if m.contains("part 1")
        ));
    }
}
