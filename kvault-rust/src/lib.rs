//! # kvault: ambervault's key-value blob store
//!
//! One SQLite file holds keys mapped to byte values of any size. Small values live inline in the
//! key row; values larger than the chunk size are written as ordered chunks, each in its own
//! short transaction under a pending id, and become visible in one final switch, so a reader
//! never sees half a value and a crash leaves nothing partial behind.
//!
//! The crate has no Python dependency. The Python package `ambervault` is a thin layer over it.
//!
//! ```
//! use kvault::{KeyKind, Vault};
//!
//! # fn main() -> kvault::Result<()> {
//! let mut vault = Vault::open_in_memory()?;
//! vault.put(b"greeting", b"hello")?;
//! assert_eq!(vault.get(b"greeting")?.as_deref(), Some(&b"hello"[..]));
//!
//! // Values larger than the chunk size are streamed in chunks.
//! let mut writer = vault.writer();
//! for _ in 0..4 {
//!     writer.write(vault.store_mut(), &[7u8; 1000])?;
//! }
//! let written = writer.finish(vault.store_mut(), b"big", KeyKind::Bytes)?;
//! assert_eq!(written, 4000);
//! assert!(vault.delete(b"greeting")?);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod borrowed_insert;
mod checkpoint;
mod error;
mod kv;
mod store;
mod wal_index;
mod wal_vfs;

pub use borrowed_insert::BorrowedBlobInsert;
pub use checkpoint::{BULK_COMMIT_FRAMES, CHECKPOINT_FRAMES, INLINE_CHECKPOINT_FRAMES};
pub use error::{Error, Result};
pub use kv::{
    kv_table_names, validate_chunk_size, validate_key, validate_table_name, BlobReader, BlobRef,
    BlobWriter, Condition, Encoding, EntryInfo, KeyKind, KeyRange, KvTable, PutItem, PutOptions,
    Staged, StagedOwned, TableStats, ValueLocation, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE,
    MAX_KEY_LEN,
};
pub use store::{
    now_ms, Location, Store, StoreError, StoreOptions, Synchronous, APPLICATION_ID, FORMAT_VERSION,
};
pub use wal_index::CommitToken;

use std::path::Path;

/// A store plus one key-value table: the convenient entry point for Rust users.
#[derive(Debug)]
pub struct Vault {
    store: Store,
    table: KvTable,
}

impl Vault {
    /// Opens (or creates) the vault file at `path` with default options and table `kvault`.
    ///
    /// # Errors
    /// See [`Store::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreOptions::default(), "kvault", DEFAULT_CHUNK_SIZE)
    }

    /// Opens with explicit options, table name and chunk size.
    ///
    /// # Errors
    /// See [`Store::open`] and [`KvTable::open`].
    pub fn open_with(
        path: impl AsRef<Path>,
        options: StoreOptions,
        table: &str,
        chunk_size: usize,
    ) -> Result<Self> {
        let mut store = Store::open(Location::from_path(path.as_ref()), options)?;
        let table = KvTable::open(&mut store, table, chunk_size)?;
        Ok(Self { store, table })
    }

    /// An in-memory vault.
    ///
    /// # Errors
    /// Only if SQLite cannot allocate it.
    pub fn open_in_memory() -> Result<Self> {
        Self::open(":memory:")
    }

    /// The underlying store (for sharing the connection with other tables).
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The key-value table.
    #[must_use]
    pub fn table(&self) -> &KvTable {
        &self.table
    }

    /// Stores `value` under a byte key.
    ///
    /// # Errors
    /// See [`KvTable::put`].
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.table.put(&mut self.store, key, KeyKind::Bytes, value)
    }

    /// Reads a whole value.
    ///
    /// # Errors
    /// See [`KvTable::get`].
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.table.get(&mut self.store, key)
    }

    /// Deletes a key; returns whether it existed.
    ///
    /// # Errors
    /// See [`KvTable::delete`].
    pub fn delete(&mut self, key: &[u8]) -> Result<bool> {
        self.table.delete(&mut self.store, key)
    }

    /// Number of keys.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn len(&mut self) -> Result<u64> {
        self.table.len(&mut self.store)
    }

    /// Whether the vault has no keys.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn is_empty(&mut self) -> Result<bool> {
        self.table.is_empty(&mut self.store)
    }

    /// A streaming writer; finish it with [`BlobWriter::finish`].
    #[must_use]
    pub fn writer(&self) -> BlobWriter {
        BlobWriter::new(self.table.clone(), None)
    }

    /// A streaming reader, or `None` if the key is absent.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn reader(&mut self, key: &[u8]) -> Result<Option<BlobReader>> {
        BlobReader::open(&self.table, &mut self.store, key)
    }

    /// A reader implementing [`std::io::Read`] and [`std::io::Seek`] over `key`'s value, or
    /// `None` if the key is absent.
    ///
    /// ```
    /// use std::io::{Read, Seek, SeekFrom};
    /// # fn main() -> kvault::Result<()> {
    /// let mut vault = kvault::Vault::open_in_memory()?;
    /// vault.put(b"clip", b"0123456789")?;
    /// let mut reader = vault.open_reader(b"clip")?.expect("stored above");
    /// reader.seek(SeekFrom::Start(4))?;
    /// let mut buf = [0u8; 3];
    /// reader.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"456");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// SQLite errors.
    pub fn open_reader(&mut self, key: &[u8]) -> Result<Option<ValueReader<'_>>> {
        let reader = BlobReader::open(&self.table, &mut self.store, key)?;
        Ok(reader.map(|reader| ValueReader {
            store: &mut self.store,
            reader,
        }))
    }

    /// A writer implementing [`std::io::Write`] whose bytes become `key`'s value when
    /// [`ValueWriter::commit`] is called; dropping it uncommitted discards them.
    ///
    /// ```
    /// use std::io::Write;
    /// # fn main() -> kvault::Result<()> {
    /// let mut vault = kvault::Vault::open_in_memory()?;
    /// let mut writer = vault.open_writer(b"log");
    /// writer.write_all(b"hello ")?;
    /// writer.write_all(b"world")?;
    /// assert_eq!(writer.commit()?, 11);
    /// assert_eq!(vault.get(b"log")?.as_deref(), Some(&b"hello world"[..]));
    /// # Ok(())
    /// # }
    /// ```
    pub fn open_writer(&mut self, key: &[u8]) -> ValueWriter<'_> {
        ValueWriter {
            writer: Some(BlobWriter::new(self.table.clone(), None)),
            store: &mut self.store,
            key: key.to_vec(),
        }
    }

    /// Closes the file. Idempotent.
    ///
    /// # Errors
    /// SQLite errors while closing.
    pub fn close(&mut self) -> Result<()> {
        self.store.close()
    }
}

/// Version of the SQLite library compiled into this build.
#[must_use]
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::Io(io) => io,
            other => std::io::Error::other(other),
        }
    }
}

/// [`std::io::Read`] + [`std::io::Seek`] over one stored value (see [`Vault::open_reader`]).
#[derive(Debug)]
pub struct ValueReader<'v> {
    store: &'v mut Store,
    reader: BlobReader,
}

impl ValueReader<'_> {
    /// Length of the value in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.reader.size()
    }

    /// Whether the value is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.reader.size() == 0
    }
}

impl std::io::Read for ValueReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(self.reader.read(self.store, buf)?)
    }
}

impl std::io::Seek for ValueReader<'_> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::End(d) => self.reader.size().checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.reader.position().checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the value",
            )
        })?;
        self.reader.seek(target);
        Ok(target)
    }
}

/// [`std::io::Write`] into a new value (see [`Vault::open_writer`]).
#[derive(Debug)]
pub struct ValueWriter<'v> {
    store: &'v mut Store,
    writer: Option<BlobWriter>,
    key: Vec<u8>,
}

impl ValueWriter<'_> {
    /// Makes the written bytes the key's value, atomically; returns the length.
    ///
    /// # Errors
    /// As [`BlobWriter::finish`]; the upload is discarded on error.
    pub fn commit(mut self) -> Result<u64> {
        let writer = self.writer.take().ok_or(Error::Closed("writer"))?;
        writer.finish(self.store, &self.key, KeyKind::Bytes)
    }
}

impl std::io::Write for ValueWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let writer = self.writer.as_mut().ok_or(Error::Closed("writer"))?;
        writer.write(self.store, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ValueWriter<'_> {
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = writer.abort(self.store);
        }
    }
}
