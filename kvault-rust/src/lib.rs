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

mod error;
mod kv;
mod store;

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
