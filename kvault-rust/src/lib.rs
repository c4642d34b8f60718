//! # kvault: ambervault's vault file and key-value table kind
//!
//! One SQLite file holds everything a vault has. [`Vault`] is the open file, shared by every
//! table and thread (`Clone + Send + Sync`): it owns the connection ([`Store`]), explicit
//! transactions, read leases and their reaper, fork safety, the clock and the file-level
//! operations (check, backup, checkpoint, optimize, close). Tables are handles on it: the
//! key-value table kind lives here ([`Kv`], [`KvTable`]); typed columns live in the `columnar`
//! crate.
//!
//! In a key-value table, small values live inline in the key row; values larger than the
//! chunk size are written as ordered chunks, each in its own short transaction under a
//! pending id, and become visible in one final switch, so a reader never sees half a value and
//! a crash leaves nothing partial behind.
//!
//! The crate has no Python dependency. The Python package `ambervault` is a thin layer over it.
//!
//! ```
//! use kvault::{KeyKind, Vault};
//!
//! # fn main() -> kvault::Result<()> {
//! let vault = Vault::open_in_memory()?;
//! let kv = vault.kv("media")?;
//! kv.put(b"greeting", b"hello")?;
//! assert_eq!(kv.get(b"greeting")?.as_deref(), Some(&b"hello"[..]));
//!
//! // Values larger than the chunk size are streamed in chunks.
//! let mut writer = kv.writer();
//! for _ in 0..4 {
//!     writer.write(&mut vault.store(), &[7u8; 1000])?;
//! }
//! let written = writer.finish(&mut vault.store(), b"big", KeyKind::Bytes)?;
//! assert_eq!(written, 4000);
//!
//! // One transaction spans every table of the vault.
//! let tx = vault.transaction()?;
//! assert!(kv.delete(b"greeting")?);
//! tx.commit()?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod borrowed_insert;
mod checkpoint;
mod clock;
pub mod codec;
mod error;
mod filter;
mod fork_guard;
mod item_tables;
mod kv;
mod kv_handle;
mod maintenance_thread;
#[cfg(feature = "test-hooks")]
mod powerloss_vfs;
mod reaper;
mod sql_functions;
mod store;
mod uninit;
mod vault;
mod vfs;
mod wal_index;

pub use borrowed_insert::BorrowedBlobInsert;
pub use checkpoint::{BULK_COMMIT_FRAMES, CHECKPOINT_FRAMES, INLINE_CHECKPOINT_FRAMES};
pub use clock::Clock;
pub use error::{Error, Result};
pub use filter::{Filter, FilterValue};
pub use item_tables::{check_item_value, metadata_json_error, registry_names, table_exists};
pub use kv::{
    decode_tuple, encode_tuple, inline_max_for_page, kv_table_names, validate_branch_name,
    validate_chunk_size, validate_key, validate_table_name, BlobReader, BlobRef, BlobWriter,
    BranchInfo, CacheCounters, CachePolicy, Change, Condition, Dedup, DiffCursor, DiffEntry,
    DiffSummary, Encoding, EntryInfo, Eviction, History, HistoryEntry, KeyKind, KeyRange, KvTable,
    Located, MergeReport, MergeStrategy, PolicyChange, PutItem, PutOptions, ScanPage, Staged,
    StagedOwned, StoredValue, TableStats, TupleItem, ValueLocation, VersionEnd,
    ACCESS_FLUSH_INTERVAL, DEFAULT_CHUNK_SIZE, INLINE_MAX, MAIN_BRANCH, MAX_CHUNK_SIZE,
    MAX_INT_BYTES, MAX_KEY_LEN, MAX_RECORDED_KEYS, MAX_TUPLE_DEPTH,
};
pub use kv_handle::{Kv, ValueReader, ValueWriter};
pub use reaper::READ_LEASE;
pub use sql_functions::take_noted;
pub use store::{
    require_format_version, Checkpoints, Key, Location, Store, StoreError, StoreOptions,
    Synchronous, APPLICATION_ID, BASE_FORMAT_VERSION, COMPRESSION_FORMAT_VERSION,
    EXTERNAL_MIN_RETRIES, FORMAT_VERSION, NUMERIC_CODECS_FORMAT_VERSION,
};
pub use vault::{StoreGuard, TableKind, Transaction, Vault};
pub use wal_index::CommitToken;

/// Makes every sync of a database file fail while `on`, in the power-loss test VFS (test
/// builds with `AMBERVAULT_TEST_POWERLOSS_LOG` set); false when that VFS is not installed
/// (always in builds without the `test-hooks` feature).
#[must_use]
pub fn powerloss_fail_db_syncs(on: bool) -> bool {
    #[cfg(feature = "test-hooks")]
    {
        powerloss_vfs::fail_db_syncs(on)
    }
    #[cfg(not(feature = "test-hooks"))]
    {
        let _ = on;
        false
    }
}

/// Adds application event `n` (an acknowledged operation) to the power-loss test log; false
/// when nothing is recorded (always in builds without the `test-hooks` feature). See the
/// `AMBERVAULT_TEST_POWERLOSS_LOG` variable in `docs/reliability.md`.
#[must_use]
pub fn powerloss_mark(n: u64) -> bool {
    #[cfg(feature = "test-hooks")]
    {
        powerloss_vfs::mark(n)
    }
    #[cfg(not(feature = "test-hooks"))]
    {
        let _ = n;
        false
    }
}

/// Whether this build can open encrypted vaults (the `encryption` feature: SQLCipher in place
/// of SQLite). Without it, a [`StoreOptions::key`] is refused with
/// [`Error::EncryptionUnavailable`].
#[must_use]
pub fn encryption_available() -> bool {
    cfg!(feature = "encryption")
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
