//! `VaultCore`: the native half of the Python `VaultFile`, the one open vault file that
//! `KVault`, `ColumnVault` and every later table kind share. It carries the file-level
//! operations; table cores hold a clone of its `kvault::Vault`.

use std::sync::Arc;

use kvault::{Clock, Store, StoreOptions, Vault};
use pyo3::prelude::*;

use crate::convert::non_negative;
use crate::errors::BindingError;

/// Runs `op` on the locked store with the GIL released (the one place where binding calls
/// wait for the store).
pub fn run<T: Send, E: Into<BindingError> + Send>(
    py: Python<'_>,
    vault: &Vault,
    op: impl FnOnce(&mut Store) -> Result<T, E> + Send,
) -> Result<T, BindingError> {
    py.detach(|| vault.with(op)).map_err(Into::into)
}

/// The native open vault file.
#[pyclass(module = "ambervault._ambervault", name = "VaultCore", frozen)]
pub struct PyVault {
    vault: Vault,
}

#[pymethods]
impl PyVault {
    /// Opens (creating if needed) the vault file at `path` (or `":memory:"`).
    #[new]
    /// `key`: None, a str passphrase or 32 raw key bytes (an encrypted file; see `to_key`).
    #[pyo3(signature = (path, retries, backoff_base, enable_wal, page_size, mmap_size, cache_kb,
                        read_only, synchronous, checkpoints="auto", key=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: std::path::PathBuf,
        retries: i64,
        backoff_base: f64,
        enable_wal: bool,
        page_size: i64,
        mmap_size: i64,
        cache_kb: i64,
        read_only: bool,
        synchronous: &str,
        checkpoints: &str,
        key: Option<&Bound<'_, PyAny>>,
    ) -> Result<Self, BindingError> {
        let key = key.map(to_key).transpose()?;
        let options = StoreOptions {
            retries: non_negative("retries", retries)?,
            backoff_base,
            enable_wal,
            page_size: non_negative("page_size", page_size)?,
            mmap_size: non_negative("mmap_size", mmap_size)?,
            cache_kb: non_negative("cache_kb", cache_kb)?,
            read_only,
            synchronous: kvault::Synchronous::parse(synchronous)?,
            read_lease: Some(kvault::READ_LEASE),
            checkpoints: kvault::Checkpoints::parse(checkpoints)?,
            key,
        };
        let vault = py.detach(move || Vault::open_with(&path, options))?;
        // Every file may hold columns (written by another handle or process), so the file's
        // check covers them whichever table kinds this process opens.
        vault.attach(Arc::new(columnar::ColumnsKind));
        // Likewise text tables: their check is a registry lookup when the file has none.
        vault.attach(Arc::new(text::TextKind));
        Ok(Self { vault })
    }

    /// Opens an explicit transaction (or a nested savepoint); returns the depth.
    fn begin(&self, py: Python<'_>) -> Result<u32, BindingError> {
        Ok(py.detach(|| self.vault.begin())?)
    }

    /// Opens a read snapshot (ended by `commit`): every read sees the file as of now.
    fn begin_snapshot(&self, py: Python<'_>) -> Result<(), BindingError> {
        Ok(py.detach(|| self.vault.begin_snapshot())?)
    }

    /// Commits the innermost explicit transaction.
    fn commit(&self, py: Python<'_>) -> Result<(), BindingError> {
        Ok(py.detach(|| self.vault.commit())?)
    }

    /// Rolls back the innermost explicit transaction.
    fn rollback(&self, py: Python<'_>) -> Result<(), BindingError> {
        Ok(py.detach(|| self.vault.rollback())?)
    }

    /// Depth of open explicit transactions.
    fn transaction_depth(&self, py: Python<'_>) -> u32 {
        py.detach(|| self.vault.transaction_depth())
    }

    /// Problems found by SQLite's integrity check and every table kind's invariants (empty
    /// when healthy).
    fn check(&self, py: Python<'_>) -> Result<Vec<String>, BindingError> {
        Ok(py.detach(|| self.vault.check())?)
    }

    /// Writes a consistent copy of the file to `dest` (which must not exist).
    fn backup(&self, py: Python<'_>, dest: std::path::PathBuf) -> Result<(), BindingError> {
        Ok(py.detach(|| self.vault.backup_to(&dest))?)
    }

    /// Re-encrypts the file with `key` (a str passphrase or 32 raw bytes).
    fn rekey(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> Result<(), BindingError> {
        let key = to_key(key)?;
        Ok(py.detach(|| self.vault.rekey(key))?)
    }

    /// Reclaims abandoned uploads of every table, then VACUUMs the file.
    fn optimize(&self, py: Python<'_>) -> Result<(), BindingError> {
        Ok(py.detach(|| self.vault.optimize())?)
    }

    /// Copies the WAL into the main file and truncates it.
    fn checkpoint(&self, py: Python<'_>) -> Result<(), BindingError> {
        Ok(py.detach(|| self.vault.checkpoint())?)
    }

    /// `(page_size, page_count, freelist_count)` of the main file.
    fn page_stats(&self, py: Python<'_>) -> Result<(i64, i64, i64), BindingError> {
        Ok(py.detach(|| self.vault.page_stats())?)
    }

    /// Uses `now_ms` as the current time for timestamps and expiry (None: the system clock).
    #[pyo3(signature = (now_ms=None))]
    fn set_clock(&self, py: Python<'_>, now_ms: Option<i64>) {
        let clock = now_ms.map_or(Clock::system(), Clock::fixed);
        py.detach(|| self.vault.set_clock(clock));
    }

    /// The current time in ms as the vault sees it.
    fn now_ms(&self, py: Python<'_>) -> i64 {
        py.detach(|| self.vault.now_ms())
    }

    /// Closes the file for every table on it (idempotent).
    fn close(&self, py: Python<'_>) -> Result<(), BindingError> {
        Ok(py.detach(|| self.vault.close())?)
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.vault.is_closed())
    }

    /// Whether writes are refused.
    #[getter]
    fn read_only(&self, py: Python<'_>) -> bool {
        py.detach(|| self.vault.is_read_only())
    }
}

impl PyVault {
    /// The shared open file, for table cores.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }
}

/// Adds this file's classes to the module.
/// A key argument: a `str` is a passphrase, `bytes` a raw 256-bit key (exactly 32 bytes).
/// Refused before any file is touched; a build without encryption refuses any key when the file
/// is opened ([`kvault::Error::EncryptionUnavailable`]).
pub fn to_key(key: &Bound<'_, PyAny>) -> Result<kvault::Key, BindingError> {
    if let Ok(text) = key.cast::<pyo3::types::PyString>() {
        return Ok(kvault::Key::passphrase(&text.to_cow()?)?);
    }
    if let Ok(bytes) = key.cast::<pyo3::types::PyBytes>() {
        return Ok(kvault::Key::raw(bytes.as_bytes())?);
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "key must be a str (a passphrase) or 32 bytes (a raw key), not {}",
        key.get_type().name()?
    ))
    .into())
}

/// Whether this build can open encrypted vaults (built with the `encryption` feature).
#[pyfunction]
fn encryption_available() -> bool {
    kvault::encryption_available()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyVault>()?;
    m.add_function(wrap_pyfunction!(encryption_available, m)?)?;
    Ok(())
}
