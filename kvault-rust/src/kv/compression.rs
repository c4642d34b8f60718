//! Compressed chunks of a key-value table: the table's setting (a row of `ambervault_meta`),
//! the content table's codec columns, and chunk contents compressed on write and decompressed
//! on read.
//!
//! A content row records how its bytes are stored (`codec`, see [`crate::codec`]) and, when
//! compressed, its length before compression (`raw_size`). The columns are added the first
//! time a table is given a compression setting; a table that never had one keeps the schema
//! older versions wrote. The setting only decides how new chunks are written: every chunk is
//! read by its own code, so changing the setting leaves old values readable.
//! Inline values (at most a page's worth) are never compressed.

use rusqlite::{params, Connection, OptionalExtension};

use super::KvTable;
use crate::codec::{decompress_into, Compression, Layout, CODEC_NONE};
use crate::error::{Error, Result};
use crate::store::{require_format_version, Store, COMPRESSION_FORMAT_VERSION};

/// A chunk ready to be stored: its content address and, if it shrank enough, its compressed
/// bytes and their code.
pub(super) struct PreparedChunk<'a> {
    pub(super) hash: blake3::Hash,
    pub(super) raw: &'a [u8],
    pub(super) compressed: Option<(i64, Vec<u8>)>,
}

impl KvTable {
    /// The compression of new chunks (`None`: stored as they are).
    #[must_use]
    pub fn compression(&self) -> Option<Compression> {
        self.runtime.compression()
    }

    /// Sets and records how this table compresses new chunks (values larger than the inline
    /// limit), for this and every later opening. Values already stored keep their form.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; [`Error::InvalidArgument`] for a bad setting.
    pub fn set_compression(
        &self,
        store: &mut Store,
        compression: Option<Compression>,
    ) -> Result<()> {
        store.check_writable()?;
        if let Some(c) = &compression {
            c.validate()?;
            c.check_layout(Layout::Bytes)?;
        }
        let name = setting_name(&self.name);
        let text = compression.map_or_else(|| "none".to_string(), |c| c.to_setting());
        store.write(|conn| {
            if compression.is_some() {
                add_codec_columns(conn, &self.name)?;
                require_format_version(conn, COMPRESSION_FORMAT_VERSION)?;
            }
            conn.execute(
                "INSERT INTO ambervault_meta (name, value) VALUES (?1, ?2) \
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, text],
            )?;
            Ok(())
        })?;
        if compression.is_some() {
            self.runtime.set_coded(true);
        }
        self.runtime.set_compression(compression);
        Ok(())
    }

    /// Reads the recorded setting and whether the codec columns exist (at open).
    pub(super) fn load_compression(&self, conn: &Connection) -> Result<()> {
        self.runtime
            .set_coded(codec_columns_present(conn, &self.name)?);
        let meta = crate::table_exists(conn, "ambervault_meta")?;
        let text: Option<String> = if meta {
            conn.query_row(
                "SELECT CAST(value AS TEXT) FROM ambervault_meta WHERE name = ?1",
                [setting_name(&self.name)],
                |r| r.get(0),
            )
            .optional()?
        } else {
            None
        };
        let setting = match text {
            None => None,
            Some(text) => Compression::parse(&text).map_err(|_| {
                Error::Corrupted(format!(
                    "table {:?} records an unreadable compression setting {text:?}",
                    self.name
                ))
            })?,
        };
        self.runtime.set_compression(setting);
        Ok(())
    }

    /// Looks again whether the codec columns exist (another process may have added them since
    /// this one opened the table); returns whether they do.
    pub(super) fn probe_coded(&self, conn: &Connection) -> Result<bool> {
        let coded = codec_columns_present(conn, &self.name)?;
        self.runtime.set_coded(coded);
        Ok(coded)
    }

    /// Hashes a chunk for its content address and compresses it if the table asks to. Done
    /// before the chunk's write transaction, so the lock is not held while compressing.
    pub(super) fn prepare_chunk<'a>(
        &self,
        rowid: i64,
        chunk: &'a [u8],
    ) -> Result<PreparedChunk<'a>> {
        let hash = if self.runtime.dedup_none() {
            let mut hasher = blake3::Hasher::new();
            hasher.update(&rowid.to_le_bytes()).update(chunk);
            hasher.finalize()
        } else {
            blake3::hash(chunk)
        };
        let compressed = match self.runtime.compression() {
            Some(c) => c.compress(chunk, Layout::Bytes)?,
            None => None,
        };
        Ok(PreparedChunk {
            hash,
            raw: chunk,
            compressed,
        })
    }

    /// Reads the whole stored content `cid` under `code` into `out` (the chunk's length).
    pub(super) fn read_compressed_chunk(
        &self,
        conn: &Connection,
        cid: i64,
        code: i64,
        out: &mut [u8],
    ) -> Result<()> {
        let mut stmt = conn.prepare_cached(&self.sql.content_data)?;
        let mut rows = stmt.query([cid])?;
        let row = rows
            .next()?
            .ok_or_else(|| Error::Corrupted(format!("content {cid} is missing")))?;
        // Decompressed straight from SQLite's copy of the row.
        let stored = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
        decompress_into(code, stored, out)
    }

    /// The content and how it is stored (`(cid, code)`) of chunk `rowid`, or `None` when the
    /// chunk row is gone.
    pub(super) fn chunk_content(
        &self,
        conn: &Connection,
        rowid: i64,
    ) -> Result<Option<(i64, i64)>> {
        if self.runtime.coded() {
            Ok(conn
                .prepare_cached(&self.sql.chunk_content_coded)?
                .query_row([rowid], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        } else {
            Ok(conn
                .prepare_cached(&self.sql.chunk_content)?
                .query_row([rowid], |r| Ok((r.get(0)?, CODEC_NONE)))
                .optional()?)
        }
    }
}

/// The `ambervault_meta` row holding table `t`'s setting.
fn setting_name(t: &str) -> String {
    format!("kv_compression:{t}")
}

/// Whether `T__content` has the codec columns.
fn codec_columns_present(conn: &Connection, t: &str) -> Result<bool> {
    let found: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info(?1) WHERE name IN ('codec', 'raw_size')",
        [format!("{t}__content")],
        |r| r.get(0),
    )?;
    Ok(found == 2)
}

/// Adds the codec columns to `T__content` unless they are there.
fn add_codec_columns(conn: &Connection, t: &str) -> Result<()> {
    if codec_columns_present(conn, t)? {
        return Ok(());
    }
    conn.execute_batch(&format!(
        "ALTER TABLE \"{t}__content\" ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE \"{t}__content\" ADD COLUMN raw_size INTEGER;"
    ))?;
    Ok(())
}
