//! The connection layer: one [`Store`] is one SQLite connection to a vault file plus the settings
//! it was opened with. Its concerns live in the submodules: `options` (what it is opened with),
//! `open` (opening and the format markers), `run` (transactions, snapshots, retries), `lease`
//! (read leases), `txn` (explicit transactions), `fork` (fork safety), `maintenance` (backup,
//! check, checkpoints, vacuum).
//!
//! One [`Store`] is one SQLite connection. Key-value tables ([`crate::KvTable`]) and columns
//! borrow it, so several stores of data can share one file, one connection and one transaction.

use std::sync::atomic::Ordering;
use std::time::Instant;

use rusqlite::Connection;

use crate::checkpoint::Checkpointer;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::wal_index::{CommitToken, WalIndexView};
use file_watch::FileWatch;

mod file_watch;
pub(crate) mod fork;
mod lease;
mod maintenance;
mod open;
mod options;
mod run;
mod txn;

pub(crate) use fork::*;
pub use open::require_format_version;
pub(crate) use open::*;
pub use options::{
    Checkpoints, Key, Location, StoreOptions, Synchronous, APPLICATION_ID, BASE_FORMAT_VERSION,
    COMPRESSION_FORMAT_VERSION, EXTERNAL_MIN_RETRIES, FORMAT_VERSION,
    NUMERIC_CODECS_FORMAT_VERSION,
};
pub use run::StoreError;
pub(crate) use run::*;

/// An open vault file: one SQLite connection plus the settings it was opened with.
#[derive(Debug)]
pub struct Store {
    conn: Option<Connection>,
    location: Location,
    options: StoreOptions,
    fork_generation: u64,
    read_only: bool,
    /// Depth of explicit transactions opened with [`Store::begin`] (0 = none).
    txn_depth: u32,
    /// Thread that opened the explicit transaction; other threads must wait for it to end.
    txn_owner: Option<std::thread::ThreadId>,
    /// The one source of "now" for timestamps and expiry decisions.
    clock: Clock,
    /// Counts writes, commits and rollbacks made through this connection, so read caches
    /// built on it can tell when they went stale (other connections' commits show up in
    /// `PRAGMA data_version` instead).
    local_writes: u64,
    /// Per-connection state of the layers above (e.g. the column read cache), by type.
    extensions: std::collections::HashMap<std::any::TypeId, Box<dyn std::any::Any + Send>>,
    /// Runs WAL checkpoints off the writing thread (writable WAL files only).
    checkpointer: Option<Checkpointer>,
    /// The WAL index header, mapped read-only (writable WAL files only): see [`Store::commit_token`].
    wal_index: Option<WalIndexView>,
    /// The read transaction kept open between reads, if any (see [`StoreOptions::read_lease`]).
    lease: Option<ReadLease>,
    /// Tells writes whether the file was deleted or replaced (see `file_watch.rs`).
    file_watch: FileWatch,
}

/// A read transaction kept open between reads.
#[derive(Debug, Clone, Copy)]
struct ReadLease {
    /// The commit token read just before the snapshot was taken. While the token is unchanged
    /// nothing was committed, so the snapshot is still the latest state.
    token: CommitToken,
    began: Instant,
}

impl Store {
    /// Opens (creating if needed) the vault file at `location`.
    ///
    /// # Errors
    /// [`Error::Io`] when the parent directory is missing or the path is a directory,
    /// [`Error::Corrupted`] for a file that is not a SQLite database,
    /// [`Error::IncompatibleFormat`] for a file written by a newer ambervault,
    /// [`Error::InvalidArgument`] for bad options, [`Error::WrongKey`] when the key (or the
    /// lack of one) does not open the file, [`Error::EncryptionUnavailable`] for a key in a build
    /// without the `encryption` feature. Nothing is written in any of these cases.
    pub fn open(location: Location, mut options: StoreOptions) -> Result<Self> {
        options.validate()?;
        check_key(&location, &options)?;
        if options.checkpoints == Checkpoints::External {
            options.retries = options.retries.max(EXTERNAL_MIN_RETRIES);
        }
        install_fork_hook();
        let fork_generation = FORK_GENERATION.load(Ordering::SeqCst);
        // Opening is idempotent: if another process holds a lock at the wrong moment (WAL
        // recovery, a checkpoint, a schema change), open again after a backoff.
        with_retries(options.retries, options.backoff_base, || {
            let conn = open_connection(&location, &options)?;
            let read_only = options.read_only || conn.is_readonly(rusqlite::MAIN_DB)?;
            let file_watch = watch(&location);
            let mut store = Self {
                conn: Some(conn),
                location: location.clone(),
                options: options.clone(),
                fork_generation,
                read_only,
                txn_depth: 0,
                txn_owner: None,
                clock: Clock::system(),
                local_writes: 0,
                extensions: std::collections::HashMap::new(),
                checkpointer: None,
                wal_index: None,
                lease: None,
                file_watch,
            };
            store.initialize()?;
            store.start_checkpointer()?;
            Ok(store)
        })
    }

    /// Opens an in-memory store with default options (handy in tests and examples).
    ///
    /// # Errors
    /// Only if SQLite cannot allocate the database.
    pub fn open_in_memory() -> Result<Self> {
        Self::open(Location::Memory, StoreOptions::default())
    }

    /// Where this store lives.
    #[must_use]
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The options this store was opened with.
    #[must_use]
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Whether writes are refused (opened read-only, or the file is not writable).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether [`Store::close`] has been called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.conn.is_none()
    }

    /// The live connection, reopened first if this process is a fork child of the one that
    /// opened it. A read lease is ended first, so the connection is in autocommit mode unless
    /// an explicit transaction is open.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`Store::close`]; open errors when reopening after a fork.
    pub fn conn(&mut self) -> Result<&Connection> {
        self.end_read_lease();
        self.live_conn()
    }

    /// [`Store::conn`] without ending a read lease.
    fn live_conn(&mut self) -> Result<&Connection> {
        let generation = FORK_GENERATION.load(Ordering::SeqCst);
        if generation != self.fork_generation && self.conn.is_some() {
            self.reopen_after_fork(generation)?;
        }
        self.conn.as_ref().ok_or(Error::Closed("vault"))
    }

    /// The current time in ms as the store's clock reads it: every timestamp written and
    /// every expiry decision uses it.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Sets the store's clock (the system clock, or a fixed instant).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Closes the connection. Idempotent. After a fork, the inherited connection is leaked
    /// rather than closed (see [`Store::conn`]).
    ///
    /// # Errors
    /// SQLite errors while closing (the store is closed regardless).
    pub fn close(&mut self) -> Result<()> {
        self.end_read_lease();
        let Some(conn) = self.conn.take() else {
            return Ok(());
        };
        // The view is the connection's own mapping: gone with it.
        self.wal_index = None;
        // Closing with a transaction open rolls it back (SQLite does this on close).
        self.txn_depth = 0;
        self.txn_owner = None;
        if FORK_GENERATION.load(Ordering::SeqCst) != self.fork_generation
            && self.location != Location::Memory
        {
            std::mem::forget(conn);
            if let Some(checkpointer) = self.checkpointer.take() {
                checkpointer.abandon();
            }
            return Ok(());
        }
        // The checkpoint thread's connection closes first, so the main connection is the last
        // one and SQLite copies back and removes the WAL as it closes.
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
        conn.close().map_err(|(_, err)| Error::from(err))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The watch of `location`'s file (none for an in-memory store).
fn watch(location: &Location) -> FileWatch {
    match location {
        Location::File(path) => FileWatch::new(path),
        Location::Memory => FileWatch::default(),
    }
}
