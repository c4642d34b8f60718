//! [`Kv`]: a key-value table of an open [`Vault`], the convenient entry point for Rust users,
//! with `std::io` adapters for streaming values in and out.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kv::{
    BlobReader, BlobWriter, CachePolicy, KeyKind, KvTable, PolicyChange, DEFAULT_CHUNK_SIZE,
};
use crate::store::{Store, StoreOptions};
use crate::vault::{StoreGuard, TableKind, Vault};

/// A key-value table on a shared [`Vault`]: `Clone + Send + Sync`, every call locks the vault
/// for its duration. Several tables (and columns) can share one vault and its transactions.
///
/// ```
/// # fn main() -> kvault::Result<()> {
/// let kv = kvault::Kv::open_in_memory()?;
/// kv.put(b"greeting", b"hello")?;
/// assert_eq!(kv.get(b"greeting")?.as_deref(), Some(&b"hello"[..]));
///
/// // Values larger than the chunk size are streamed in chunks.
/// let mut writer = kv.writer();
/// for _ in 0..4 {
///     writer.write(&mut kv.store(), &[7u8; 1000])?;
/// }
/// assert_eq!(writer.finish(&mut kv.store(), b"big", kvault::KeyKind::Bytes)?, 4000);
/// assert!(kv.delete(b"greeting")?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Kv {
    vault: Vault,
    table: KvTable,
}

impl Vault {
    /// The key-value table `name` of this vault (created if missing) with the default chunk
    /// size.
    ///
    /// # Errors
    /// See [`KvTable::open`].
    pub fn kv(&self, name: &str) -> Result<Kv> {
        self.kv_with(name, DEFAULT_CHUNK_SIZE)
    }

    /// The key-value table `name` with values chunked at `chunk_size` bytes.
    ///
    /// # Errors
    /// See [`KvTable::open`].
    pub fn kv_with(&self, name: &str, chunk_size: usize) -> Result<Kv> {
        let table = KvTable::open(&mut self.store(), name, chunk_size)?;
        self.attach(Arc::new(table.clone()));
        if table.maintenance_interval().is_some() {
            self.ensure_maintenance();
        }
        Ok(Kv {
            vault: self.clone(),
            table,
        })
    }
}

impl Kv {
    /// Opens (or creates) the vault file at `path` with default options and its table
    /// `kvault`.
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
        Vault::open_with(path, options)?.kv_with(table, chunk_size)
    }

    /// The table `kvault` of a private in-memory vault.
    ///
    /// # Errors
    /// Only if SQLite cannot allocate it.
    pub fn open_in_memory() -> Result<Self> {
        Self::open(":memory:")
    }

    /// The vault this table lives in.
    #[must_use]
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The table's description (name, chunk size, statements).
    #[must_use]
    pub fn table(&self) -> &KvTable {
        &self.table
    }

    /// The vault's store, locked (see [`Vault::store`]): for the table's lower-level
    /// operations and for streaming.
    pub fn store(&self) -> StoreGuard<'_> {
        self.vault.store()
    }

    /// This table on branch `name` (see [`KvTable::open_branch`]); it shares the vault and its
    /// transactions.
    ///
    /// # Errors
    /// See [`KvTable::open_branch`].
    pub fn branch(&self, name: &str) -> Result<Kv> {
        let table = self.table.open_branch(&mut self.store(), name)?;
        Ok(Kv {
            vault: self.vault.clone(),
            table,
        })
    }

    /// Forks branch `name` from this handle's branch and returns it.
    ///
    /// # Errors
    /// See [`KvTable::create_branch`].
    pub fn create_branch(&self, name: &str) -> Result<Kv> {
        self.table.create_branch(&mut self.store(), name, None)?;
        self.branch(name)
    }

    /// Stores `value` under a byte key.
    ///
    /// # Errors
    /// See [`KvTable::put`].
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.table
            .put(&mut self.store(), key, KeyKind::Bytes, value)
    }

    /// Reads a whole value.
    ///
    /// # Errors
    /// See [`KvTable::get`].
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.table.get(&mut self.store(), key)
    }

    /// Deletes a key; returns whether it existed.
    ///
    /// # Errors
    /// See [`KvTable::delete`].
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.table.delete(&mut self.store(), key)
    }

    /// Number of keys.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn len(&self) -> Result<u64> {
        self.table.len(&mut self.store())
    }

    /// Whether the table has no keys.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn is_empty(&self) -> Result<bool> {
        self.table.is_empty(&mut self.store())
    }

    /// Changes the table's stored cache policy (see [`KvTable::set_cache_policy`]) and starts
    /// the vault's maintenance thread when the policy records reads.
    ///
    /// # Errors
    /// As [`KvTable::set_cache_policy`].
    pub fn set_cache_policy(&self, change: PolicyChange) -> Result<CachePolicy> {
        let policy = self.table.set_cache_policy(&mut self.store(), change)?;
        if self.table.maintenance_interval().is_some() {
            self.vault.ensure_maintenance();
        }
        Ok(policy)
    }

    /// Prunes expired keys every `interval` on the vault's maintenance thread (`None`: stop),
    /// for as long as this vault is open in this process.
    pub fn set_auto_prune(&self, interval: Option<std::time::Duration>) {
        let now = self.vault.now_ms();
        self.table.set_auto_prune(interval, now);
        if interval.is_some() {
            self.vault.ensure_maintenance();
        }
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
    pub fn reader(&self, key: &[u8]) -> Result<Option<BlobReader>> {
        BlobReader::open(&self.table, &mut self.store(), key)
    }

    /// A reader implementing [`std::io::Read`] and [`std::io::Seek`] over `key`'s value, or
    /// `None` if the key is absent.
    ///
    /// ```
    /// use std::io::{Read, Seek, SeekFrom};
    /// # fn main() -> kvault::Result<()> {
    /// let kv = kvault::Kv::open_in_memory()?;
    /// kv.put(b"clip", b"0123456789")?;
    /// let mut reader = kv.open_reader(b"clip")?.expect("stored above");
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
    pub fn open_reader(&self, key: &[u8]) -> Result<Option<ValueReader>> {
        let reader = self.reader(key)?;
        Ok(reader.map(|reader| ValueReader {
            vault: self.vault.clone(),
            reader,
        }))
    }

    /// A writer implementing [`std::io::Write`] whose bytes become `key`'s value when
    /// [`ValueWriter::commit`] is called; dropping it uncommitted discards them.
    ///
    /// ```
    /// use std::io::Write;
    /// # fn main() -> kvault::Result<()> {
    /// let kv = kvault::Kv::open_in_memory()?;
    /// let mut writer = kv.open_writer(b"log");
    /// writer.write_all(b"hello ")?;
    /// writer.write_all(b"world")?;
    /// assert_eq!(writer.commit()?, 11);
    /// assert_eq!(kv.get(b"log")?.as_deref(), Some(&b"hello world"[..]));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn open_writer(&self, key: &[u8]) -> ValueWriter {
        ValueWriter {
            vault: self.vault.clone(),
            writer: Some(self.writer()),
            key: key.to_vec(),
        }
    }

    /// Closes the vault file (for every handle on it). Idempotent.
    ///
    /// # Errors
    /// SQLite errors while closing.
    pub fn close(&self) -> Result<()> {
        self.vault.close()
    }
}

/// Key-value tables are covered by the vault's `check` (their invariants) and `optimize`
/// (uploads abandoned by crashed writers).
impl TableKind for KvTable {
    fn key(&self) -> String {
        format!("kv table {}", self.name())
    }

    fn check_order(&self) -> u32 {
        0
    }

    fn check(&self, store: &mut Store) -> Result<Vec<String>> {
        KvTable::check(self, store)
    }

    fn reclaim(&self, store: &mut Store) -> Result<u64> {
        self.reclaim_orphans(store)
    }

    fn after_commit(&self, store: &mut Store) -> Result<()> {
        // Only a table whose policy (as its writes last read it) has a limit needs a write
        // transaction here.
        if !self.has_limit() {
            return Ok(());
        }
        self.enforce_limit(store, &[]).map(drop)
    }

    fn maintenance_interval(&self) -> Option<std::time::Duration> {
        KvTable::maintenance_interval(self)
    }

    fn maintain(&self, store: &mut Store) -> Result<()> {
        KvTable::maintain(self, store).map(drop)
    }
}

/// [`std::io::Read`] + [`std::io::Seek`] over one stored value (see [`Kv::open_reader`]).
#[derive(Debug)]
pub struct ValueReader {
    vault: Vault,
    reader: BlobReader,
}

impl ValueReader {
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

impl std::io::Read for ValueReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(self.reader.read(&mut self.vault.store(), buf)?)
    }
}

impl std::io::Seek for ValueReader {
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

/// [`std::io::Write`] into a new value (see [`Kv::open_writer`]).
#[derive(Debug)]
pub struct ValueWriter {
    vault: Vault,
    writer: Option<BlobWriter>,
    key: Vec<u8>,
}

impl ValueWriter {
    /// Makes the written bytes the key's value, atomically; returns the length.
    ///
    /// # Errors
    /// As [`BlobWriter::finish`]; the upload is discarded on error.
    pub fn commit(mut self) -> Result<u64> {
        let writer = self.writer.take().ok_or(Error::Closed("writer"))?;
        writer.finish(&mut self.vault.store(), &self.key, KeyKind::Bytes)
    }
}

impl std::io::Write for ValueWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let writer = self.writer.as_mut().ok_or(Error::Closed("writer"))?;
        writer.write(&mut self.vault.store(), buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ValueWriter {
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = writer.abort(&mut self.vault.store());
        }
    }
}
