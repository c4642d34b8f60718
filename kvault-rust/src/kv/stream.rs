//! Streaming: values written as chunks under a pending id and switched in at the end
//! ([`BlobWriter`]), and values read a chunk at a time ([`BlobReader`]).

use std::mem::MaybeUninit;

use rusqlite::{params, Connection, OptionalExtension};

use super::compression::PreparedChunk;
use super::types::{
    chunk_rowid, usize_of, BlobRef, Encoding, KeyKind, PutOptions, ValueLocation, MAX_BLOB_ID,
    MAX_CHUNKS_PER_BLOB,
};
use super::KvTable;
use crate::borrowed_insert::BorrowedBlobInsert;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::uninit::{as_unfilled, assume_filled, copy_into};

/// Chunks at least this large are inserted without copying their bytes into the binding.
const BORROWED_INSERT_MIN: usize = 256 << 10;

/// A value prepared for [`KvTable::commit_staged`]: either bytes to store inline or a blob whose
/// chunks are already written under a pending id.
#[derive(Debug)]
pub enum Staged<'a> {
    /// Stored inline in the key row.
    Inline(&'a [u8]),
    /// Chunks already written; the pending row is removed when the key switches to it.
    Chunked(BlobRef),
}

/// A staged value owned by a [`BlobWriter`].
#[derive(Debug, Clone)]
pub enum StagedOwned {
    /// Small enough to store inline.
    Inline(Vec<u8>),
    /// Chunks written under a pending blob id.
    Chunked(BlobRef),
}

impl StagedOwned {
    /// Borrowed view for [`KvTable::commit_staged`].
    #[must_use]
    pub fn as_staged(&self) -> Staged<'_> {
        match self {
            Self::Inline(bytes) => Staged::Inline(bytes),
            Self::Chunked(blob) => Staged::Chunked(*blob),
        }
    }
}

/// Writes a value of any size as chunks, each in its own short transaction, under a pending
/// blob id. Nothing is visible under a key until [`BlobWriter::finish`] switches it in.
#[derive(Debug)]
pub struct BlobWriter {
    table: KvTable,
    chunk_size: usize,
    buffer: Vec<u8>,
    blob_id: Option<i64>,
    chunks_written: u64,
    total: u64,
    done: bool,
}

impl BlobWriter {
    /// A writer for `table`; `chunk_size` overrides the table's (validated by the caller).
    #[must_use]
    pub fn new(table: KvTable, chunk_size: Option<usize>) -> Self {
        let chunk_size = chunk_size.unwrap_or(table.chunk_size);
        Self {
            table,
            chunk_size,
            buffer: Vec::new(),
            blob_id: None,
            chunks_written: 0,
            total: 0,
            done: false,
        }
    }

    /// Bytes accepted so far.
    #[must_use]
    pub fn bytes_written(&self) -> u64 {
        self.total
    }

    /// Appends bytes. Full chunks are written to the file as they fill.
    ///
    /// # Errors
    /// [`Error::Closed`] after finish/abort; SQLite errors (the upload can then only be aborted).
    pub fn write(&mut self, store: &mut Store, mut data: &[u8]) -> Result<()> {
        if self.done {
            return Err(Error::Closed("writer"));
        }
        store.check_writable()?;
        while !data.is_empty() {
            let more_follow = data.len() > self.chunk_size || self.chunks_written > 0;
            if self.buffer.is_empty() && data.len() >= self.chunk_size && more_follow {
                // Whole chunks straight from the caller's buffer, no copy into ours. The first
                // chunk is written only once more bytes follow it, so a value of exactly one
                // chunk is written in its finishing transaction; after it, a whole chunk goes
                // out at once (a reader handing over one chunk per call is never copied).
                let (chunk, rest) = data.split_at(self.chunk_size);
                self.flush_chunk(store, chunk)?;
                self.total += chunk.len() as u64;
                data = rest;
                continue;
            }
            if self.buffer.len() == self.chunk_size {
                let full = std::mem::take(&mut self.buffer);
                self.flush_chunk(store, &full)?;
                self.buffer = full;
                self.buffer.clear();
            }
            let room = self.chunk_size - self.buffer.len();
            let take = room.min(data.len());
            if self.buffer.capacity() == 0 {
                self.buffer
                    .reserve_exact(self.chunk_size.min(data.len().max(64 << 10)));
            }
            self.buffer.extend_from_slice(&data[..take]);
            self.total += take as u64;
            data = &data[take..];
        }
        Ok(())
    }

    fn flush_chunk(&mut self, store: &mut Store, chunk: &[u8]) -> Result<()> {
        if self.chunks_written >= MAX_CHUNKS_PER_BLOB {
            return Err(Error::InvalidArgument(
                "value has too many chunks; use a larger chunk_size".into(),
            ));
        }
        let blob_id = match self.blob_id {
            Some(id) => id,
            None => {
                let sql = &self.table.sql.new_pending;
                let now = store.now_ms();
                let id = store.write(|conn| {
                    conn.prepare_cached(sql)?
                        .execute(params![i64::from(std::process::id()), now])?;
                    Ok(conn.last_insert_rowid())
                })?;
                if id > MAX_BLOB_ID {
                    return Err(Error::InvalidArgument(
                        "the vault ran out of blob ids".into(),
                    ));
                }
                self.blob_id = Some(id);
                id
            }
        };
        let rowid = chunk_rowid(blob_id, self.chunks_written);
        let table = &self.table;
        // Hashed and compressed before the transaction: the lock is held only to insert.
        let prepared = table.prepare_chunk(rowid, chunk)?;
        store.write(|conn| table.store_prepared(conn, rowid, &prepared))?;
        self.chunks_written += 1;
        Ok(())
    }

    /// Writes out what is buffered and returns the value ready to be switched in. Afterwards
    /// the writer only accepts [`BlobWriter::abort`] (to drop the staged chunks if the switch
    /// fails).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn stage(&mut self, store: &mut Store) -> Result<StagedOwned> {
        if self.done {
            return Err(Error::Closed("writer"));
        }
        self.done = true;
        if self.chunks_written == 0 && self.buffer.len() <= self.table.inline_limit() {
            return Ok(StagedOwned::Inline(std::mem::take(&mut self.buffer)));
        }
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            self.flush_chunk(store, &last)?;
        }
        Ok(StagedOwned::Chunked(BlobRef {
            blob_id: self.blob_id.expect("chunks were written"),
            size: self.total,
            chunk_size: self.chunk_size as u64,
        }))
    }

    /// Finishes the upload and switches `key` to it in one short transaction. Returns the
    /// value's length.
    ///
    /// # Errors
    /// SQLite errors; on error the upload is discarded and the old value stays.
    pub fn finish(self, store: &mut Store, key: &[u8], kind: KeyKind) -> Result<u64> {
        self.finish_with(store, key, kind, PutOptions::default())
    }

    /// [`BlobWriter::finish`] with an expiry time and/or a precondition checked in the switch
    /// transaction.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the condition does not hold (the upload is discarded); as
    /// [`BlobWriter::finish`].
    pub fn finish_with(
        mut self,
        store: &mut Store,
        key: &[u8],
        kind: KeyKind,
        options: PutOptions,
    ) -> Result<u64> {
        let result = self.stage(store).and_then(|staged| {
            let table = self.table.clone();
            table.commit_upload(store, key, kind, &staged.as_staged(), options)
        });
        match result {
            Ok(()) => Ok(self.total),
            Err(err) => {
                let _ = self.abort(store);
                Err(err)
            }
        }
    }

    /// Discards the upload: its chunks and pending row are deleted. Idempotent.
    ///
    /// # Errors
    /// SQLite errors (the chunks are then reclaimed when the vault is next opened).
    pub fn abort(&mut self, store: &mut Store) -> Result<()> {
        self.done = true;
        self.buffer = Vec::new();
        if let Some(blob_id) = self.blob_id.take() {
            let table = self.table.clone();
            store.write(|conn| table.drop_blob(conn, blob_id))?;
        }
        Ok(())
    }
}

impl KvTable {
    /// Stores one chunk's bytes under chunk rowid `rowid`, inside the caller's write
    /// transaction. Content-addressed: a chunk whose bytes are already stored only gains a
    /// reference. Without deduplication the address also names the chunk's own rowid (never
    /// reused), so no two chunks share a content.
    pub(super) fn store_chunk(&self, conn: &Connection, rowid: i64, chunk: &[u8]) -> Result<()> {
        let prepared = self.prepare_chunk(rowid, chunk)?;
        self.store_prepared(conn, rowid, &prepared)
    }

    /// [`KvTable::store_chunk`] for a chunk hashed (and compressed) beforehand.
    pub(super) fn store_prepared(
        &self,
        conn: &Connection,
        rowid: i64,
        chunk: &PreparedChunk<'_>,
    ) -> Result<()> {
        let sql = &self.sql;
        let hash = chunk.hash.as_bytes().as_slice();
        let raw_len = chunk.raw.len();
        let find = if self.runtime.coded() {
            &sql.find_content_coded
        } else {
            &sql.find_content
        };
        let stored: Option<(i64, i64)> = conn
            .prepare_cached(find)?
            .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((cid, len)) = stored {
            // Stored before (deduplicated): the chunk row's trigger counts one more reference.
            if usize::try_from(len).ok() != Some(raw_len) {
                return Err(Error::Corrupted(format!(
                    "stored content {cid} has {len} bytes but its hash names {raw_len} bytes"
                )));
            }
            conn.prepare_cached(&sql.insert_chunk)?
                .execute(params![rowid, cid])?;
            return Ok(());
        }
        // New content: the chunk row goes in first, naming the id the content row then gets,
        // so its reference-count trigger finds no row to update, and the content row is
        // inserted with its reference counted. Inserted after the content, the chunk row's
        // trigger rewrote the whole content row to add one to `refs`: SQLite re-reads and
        // re-encodes every column of a row it updates, a megabyte per 1 MiB chunk, and that was
        // a quarter of a streaming writer's time.
        let cid: i64 = conn
            .prepare_cached(&sql.next_content_id)?
            .query_row([], |r| r.get(0))?;
        conn.prepare_cached(&sql.insert_chunk)?
            .execute(params![rowid, cid])?;
        match &chunk.compressed {
            Some((code, bytes)) => {
                conn.prepare_cached(&sql.insert_content_coded)?
                    .execute(params![
                        hash,
                        bytes,
                        code,
                        i64::try_from(raw_len).unwrap_or(i64::MAX)
                    ])?;
            }
            // A large chunk is bound without the copy rusqlite's binding makes (a statement
            // prepared per chunk costs far less than copying a megabyte).
            None if raw_len >= BORROWED_INSERT_MIN => {
                BorrowedBlobInsert::prepare(conn, &sql.insert_new_content)?
                    .execute_keyed(hash, chunk.raw)?;
            }
            None => {
                conn.prepare_cached(&sql.insert_new_content)?
                    .execute(params![hash, chunk.raw])?;
            }
        }
        // Both statements chose the id inside this write transaction, so they agree; a
        // mismatch would leave a chunk naming missing content, so it fails the write.
        if conn.last_insert_rowid() != cid {
            return Err(Error::Corrupted(format!(
                "new content was stored under id {} instead of {cid}",
                conn.last_insert_rowid()
            )));
        }
        Ok(())
    }

    /// Writes a value of one chunk (longer than the inline limit, at most the chunk size)
    /// inside the caller's write transaction, under a new pending blob id that the switch
    /// ([`KvTable::commit_staged`]) removes in the same transaction. One transaction instead
    /// of a stream's three: a value this small never needs the lock released halfway.
    pub(super) fn store_single_chunk(
        &self,
        conn: &Connection,
        value: &[u8],
        now: i64,
    ) -> Result<BlobRef> {
        conn.prepare_cached(&self.sql.new_pending)?
            .execute(params![i64::from(std::process::id()), now])?;
        let blob_id = conn.last_insert_rowid();
        if blob_id > MAX_BLOB_ID {
            return Err(Error::InvalidArgument(
                "the vault ran out of blob ids".into(),
            ));
        }
        self.store_chunk(conn, chunk_rowid(blob_id, 0), value)?;
        Ok(BlobRef {
            blob_id,
            size: value.len() as u64,
            chunk_size: self.chunk_size as u64,
        })
    }
}

/// Reads one value sequentially or at random offsets, a chunk at a time.
///
/// Inline values are held in memory. Chunked values are read through the connection on demand.
/// A read that continues the previous one keeps the chunk it reads from, so small sequential
/// reads cost one chunk read per chunk; a read after a seek reads only the bytes asked for
/// (a 64 KiB range read used to copy its whole 1 MiB chunk). Because
/// blob ids are never reused, a reader returns the bytes of the value it was opened on or fails
/// with [`Error::ValueChanged`], never a mix of two values.
#[derive(Debug)]
pub struct BlobReader {
    table: KvTable,
    source: ValueLocation,
    encoding: Encoding,
    position: u64,
    /// Where the previous read ended: a read from there is sequential.
    read_end: u64,
    cached_seq: Option<u64>,
    cached: Vec<u8>,
}

impl BlobReader {
    /// Opens `key` for reading, or `None` if it is absent.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn open(table: &KvTable, store: &mut Store, key: &[u8]) -> Result<Option<Self>> {
        let now = store.now_ms();
        Ok(store
            .retry(|conn| {
                let found = table.locate(conn, key, now)?;
                if let Some((ValueLocation::Chunked(blob), _)) = &found {
                    table.verify_extent(conn, blob)?;
                }
                Ok(found)
            })?
            .map(|(source, encoding)| {
                // An open reader pins its blob: eviction leaves the key alone until it closes.
                if let ValueLocation::Chunked(blob) = &source {
                    table.runtime.pin(blob.blob_id);
                }
                table.runtime.note_read(key, true, now);
                Self {
                    table: table.clone(),
                    source,
                    encoding,
                    position: 0,
                    read_end: 0,
                    cached_seq: None,
                    cached: Vec::new(),
                }
            }))
    }

    /// The encoding stored beside the value (its bytes are read as stored).
    #[must_use]
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Total length in bytes.
    #[must_use]
    pub fn size(&self) -> u64 {
        match &self.source {
            ValueLocation::Inline(bytes) => bytes.len() as u64,
            ValueLocation::Chunked(blob) => blob.size,
        }
    }

    /// Current position.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Moves to absolute position `pos` (may be past the end; reads there return nothing).
    pub fn seek(&mut self, pos: u64) {
        self.position = pos;
    }

    /// Reads up to `out.len()` bytes at the current position; returns how many were read
    /// (0 at the end).
    ///
    /// # Errors
    /// [`Error::ValueChanged`] if the value was replaced or deleted meanwhile; SQLite errors.
    pub fn read(&mut self, store: &mut Store, out: &mut [u8]) -> Result<usize> {
        // SAFETY: the reader writes only bytes of the value.
        Ok(self.read_uninit(store, unsafe { as_unfilled(out) })?.len())
    }

    /// [`BlobReader::read`] into memory that need not be initialised (a new bytes object,
    /// say): returns the part of `out` it filled.
    ///
    /// # Errors
    /// As [`BlobReader::read`].
    pub fn read_uninit<'a>(
        &mut self,
        store: &mut Store,
        out: &'a mut [MaybeUninit<u8>],
    ) -> Result<&'a mut [u8]> {
        let size = self.size();
        if self.position >= size || out.is_empty() {
            return Ok(copy_into(out, &[]));
        }
        let n = usize_of((size - self.position).min(out.len() as u64))?;
        let out = &mut out[..n];
        match &self.source {
            ValueLocation::Inline(bytes) => {
                let start = usize_of(self.position)?;
                copy_into(out, &bytes[start..start + n]);
            }
            ValueLocation::Chunked(blob) => {
                let blob = *blob;
                let sequential = self.position == self.read_end;
                let mut done = 0;
                while done < n {
                    let pos = self.position + done as u64;
                    let seq = pos / blob.chunk_size;
                    let within = usize_of(pos % blob.chunk_size)?;
                    let chunk_len = usize_of((size - seq * blob.chunk_size).min(blob.chunk_size))?;
                    let want = (chunk_len - within).min(n - done);
                    let target = &mut out[done..done + want];
                    if self.cached_seq == Some(seq) {
                        copy_into(target, &self.cached[within..within + want]);
                    } else if want == chunk_len || !sequential {
                        // A whole chunk, or a range after a seek, goes straight into the
                        // caller's buffer.
                        let table = &self.table;
                        store.read_latest(|conn| {
                            table.read_blob_range_uninit(conn, &blob, pos, target)?;
                            Ok(())
                        })?;
                    } else {
                        self.cached.resize(chunk_len, 0);
                        let table = &self.table;
                        let cached = &mut self.cached;
                        store.read_latest(|conn| {
                            table.read_blob_range(conn, &blob, seq * blob.chunk_size, cached)
                        })?;
                        self.cached_seq = Some(seq);
                        copy_into(target, &self.cached[within..within + want]);
                    }
                    done += want;
                }
            }
        }
        self.position += n as u64;
        self.read_end = self.position;
        // SAFETY: every byte of `out` (cut to `n`) was filled above: the inline copy, or the
        // loop, which ends once `done` reaches `n`.
        Ok(unsafe { assume_filled(out) })
    }
}

impl Drop for BlobReader {
    fn drop(&mut self) {
        if let ValueLocation::Chunked(blob) = &self.source {
            self.table.runtime.unpin(blob.blob_id);
        }
    }
}
