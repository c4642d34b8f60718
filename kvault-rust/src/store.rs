//! The connection layer: opening a vault file, PRAGMAs, format version, write transactions with
//! busy retries, and reopening after `fork()`.
//!
//! One [`Store`] is one SQLite connection. Key-value tables ([`crate::KvTable`]) and columns
//! borrow it, so several stores of data can share one file, one connection and one transaction.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

use crate::checkpoint::Checkpointer;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::wal_index::{CommitToken, WalIndexView};

/// `PRAGMA application_id` of every ambervault file: the bytes "AMBV".
pub const APPLICATION_ID: i32 = 0x414D_4256;
/// The on-disk format version this build writes (`PRAGMA user_version` and the meta table).
pub const FORMAT_VERSION: i64 = 1;

/// How hard SQLite syncs on commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// No syncs: fastest; an OS crash or power loss may corrupt the file.
    Off,
    /// WAL default: a commit survives a process crash; the last commits may be lost on power loss.
    Normal,
    /// Sync the WAL on every commit: commits survive power loss too.
    Full,
    /// Like `Full`, and also sync the directory after deleting a journal.
    Extra,
}

impl Synchronous {
    /// Parses `"off" | "normal" | "full" | "extra"` (any case).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for any other string.
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            "extra" => Ok(Self::Extra),
            _ => Err(Error::InvalidArgument(format!(
                "synchronous must be one of 'off', 'normal', 'full', 'extra', not {text:?}"
            ))),
        }
    }

    pub(crate) fn pragma_value(self) -> &'static str {
        match self {
            Self::Off => "OFF",
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
            Self::Extra => "EXTRA",
        }
    }
}

/// Settings for opening a [`Store`]. Defaults follow the Python API.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Retries after SQLite reports the database busy, each after an exponential backoff.
    pub retries: u32,
    /// First backoff delay in seconds; each retry doubles it (with jitter).
    pub backoff_base: f64,
    /// Use write-ahead logging (readers never block writers).
    pub enable_wal: bool,
    /// SQLite page size in bytes; only takes effect when the file is created.
    pub page_size: u32,
    /// Bytes of the file SQLite may memory-map for reads (0 disables mmap).
    pub mmap_size: u64,
    /// SQLite page cache size in KiB.
    pub cache_kb: u32,
    /// Open without write access; every write is refused with [`Error::ReadOnly`].
    pub read_only: bool,
    /// Sync mode; `Normal` by default.
    pub synchronous: Synchronous,
    /// Keep a read transaction open between reads for at most this long (`None`: every read
    /// takes and releases its own snapshot). See [`Store::read_latest_with`]. Whoever enables
    /// it must also end idle leases ([`Store::end_read_lease_older_than`]): an idle lease holds
    /// back other connections' checkpoints.
    pub read_lease: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            retries: 4,
            backoff_base: 0.02,
            enable_wal: true,
            page_size: 4096,
            mmap_size: 256 << 20,
            cache_kb: 20_000,
            read_only: false,
            synchronous: Synchronous::Normal,
            read_lease: None,
        }
    }
}

impl StoreOptions {
    fn validate(&self) -> Result<()> {
        if !self.page_size.is_power_of_two() || !(512..=65536).contains(&self.page_size) {
            return Err(Error::InvalidArgument(format!(
                "page_size must be a power of two between 512 and 65536, not {}",
                self.page_size
            )));
        }
        if !(self.backoff_base.is_finite() && self.backoff_base >= 0.0 && self.backoff_base <= 60.0)
        {
            return Err(Error::InvalidArgument(format!(
                "backoff_base must be between 0 and 60 seconds, not {}",
                self.backoff_base
            )));
        }
        if self.retries > 1000 {
            return Err(Error::InvalidArgument(format!(
                "retries must be at most 1000, not {}",
                self.retries
            )));
        }
        Ok(())
    }
}

/// Where the vault lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A private in-memory database (`":memory:"`), gone when the store closes.
    Memory,
    /// A file on disk.
    File(PathBuf),
}

impl Location {
    /// `":memory:"` means in-memory; anything else is a file path.
    #[must_use]
    pub fn from_path(path: &Path) -> Self {
        if path.as_os_str() == ":memory:" {
            Self::Memory
        } else {
            Self::File(path.to_path_buf())
        }
    }
}

// Incremented in the child after every fork(). A store remembers the value it was opened under;
// a mismatch means this process is a fork child whose inherited SQLite connection must not be used.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static FORK_HOOK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

fn install_fork_hook() {
    #[cfg(unix)]
    FORK_HOOK.call_once(|| {
        // SAFETY: registering a handler that only touches an atomic is async-signal-safe.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

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
    /// [`Error::InvalidArgument`] for bad options. Nothing is written in any of these cases.
    pub fn open(location: Location, options: StoreOptions) -> Result<Self> {
        options.validate()?;
        install_fork_hook();
        let fork_generation = FORK_GENERATION.load(Ordering::SeqCst);
        // Opening is idempotent: if another process holds a lock at the wrong moment (WAL
        // recovery, a checkpoint, a schema change), open again after a backoff.
        with_retries(options.retries, options.backoff_base, || {
            let conn = open_connection(&location, &options)?;
            let read_only = options.read_only || conn.is_readonly(rusqlite::MAIN_DB)?;
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

    /// Makes sure a current read lease is open, if leases are enabled and one can be; returns
    /// whether the connection is now inside one. A lease is current while its commit token is
    /// unchanged (nothing was committed since it began) and it is younger than the limit.
    fn enter_lease(&mut self) -> Result<bool> {
        let Some(limit) = self.options.read_lease else {
            return Ok(false);
        };
        if self.txn_depth > 0 {
            return Ok(false);
        }
        // A fork child reopens its connection first, which drops a lease inherited with it.
        self.live_conn()?;
        let token = self.commit_token();
        if let (Some(lease), Some(token)) = (self.lease, token) {
            let open = self.conn.as_ref().is_some_and(|c| !c.is_autocommit());
            if lease.token == token && open && lease.began.elapsed() < limit {
                return Ok(true);
            }
        }
        self.end_read_lease();
        let Some(token) = token else {
            return Ok(false);
        };
        let conn = self.live_conn()?;
        if !conn.is_autocommit() {
            return Ok(false);
        }
        // A deferred BEGIN: the snapshot is taken by the first read, after the token was read,
        // so it holds at least the state the token names.
        conn.prepare_cached("BEGIN")?.execute([])?;
        self.lease = Some(ReadLease {
            token,
            began: Instant::now(),
        });
        Ok(true)
    }

    /// Runs `f` inside the open read lease (`leased`, see [`Store::enter_lease`]) or else in
    /// autocommit mode. The lease is ended at once if `f` fails or left a write open, so
    /// nothing is left uncommitted in it.
    fn read_on<T, E: StoreError>(
        &mut self,
        leased: bool,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        // One call site for `f` (a branch per mode cost 0.2 µs per point read, measured).
        let conn = if leased {
            self.live_conn()?
        } else {
            self.conn()?
        };
        let result = f(conn);
        let wrote = write_transaction_open(conn);
        if result.is_err() || wrote {
            self.end_read_lease();
        }
        result
    }

    /// Runs a read that must see the latest commit, retrying while the database is busy. With
    /// leases enabled ([`StoreOptions::read_lease`]) it runs in the current read lease, taken
    /// first if needed: a lease saves each read the WAL read lock and snapshot set-up (about
    /// 0.6 µs of a 2 µs point read), and is only used while the commit token shows it current.
    /// Otherwise (and where no lease can be taken) it runs in autocommit mode, each statement
    /// with its own snapshot; inside an explicit transaction, in the transaction.
    ///
    /// # Errors
    /// [`Error::Busy`] after the retries; whatever `f` returns.
    pub fn read_latest_with<T, E: StoreError>(
        &mut self,
        mut f: impl FnMut(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let retries = self.options.retries;
        let backoff = self.options.backoff_base;
        with_retries(retries, backoff, || self.read_latest_once(&mut f))
    }

    /// One attempt of [`Store::read_latest_with`], without retries: for reads made where
    /// waiting is not allowed (e.g. while holding Python's GIL); a busy error is returned.
    ///
    /// # Errors
    /// SQLite errors; whatever `f` returns.
    pub fn read_latest_once<T, E: StoreError>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let leased = self.enter_lease()?;
        self.read_on(leased, f)
    }

    /// [`Store::read_latest_with`] with this crate's error type.
    ///
    /// # Errors
    /// As [`Store::read_latest_with`].
    pub fn read_latest<T>(&mut self, f: impl FnMut(&Connection) -> Result<T>) -> Result<T> {
        self.read_latest_with(f)
    }

    /// Whether a read lease is open.
    #[must_use]
    pub fn has_read_lease(&self) -> bool {
        self.lease.is_some()
    }

    /// Ends the read lease if it is at least `age` old; returns whether a lease is still open.
    /// A [`crate::Vault`] calls this from its reaper thread when the store goes idle, so an
    /// idle process never holds a snapshot for long; code using a bare `Store` with leases
    /// calls it itself.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> kvault::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let limit = Duration::from_millis(2);
    /// let options = kvault::StoreOptions { read_lease: Some(limit), ..Default::default() };
    /// let location = kvault::Location::File(dir.path().join("v.db"));
    /// let mut store = kvault::Store::open(location, options)?;
    /// let table = kvault::KvTable::open(&mut store, "kv", 1 << 20)?;
    /// table.put(&mut store, b"k", kvault::KeyKind::Bytes, b"v")?;
    /// for _ in 0..1000 {
    ///     table.get(&mut store, b"k")?; // one read transaction for reads in quick succession
    /// }
    /// assert!(store.has_read_lease());
    /// // When the reads stop: let other connections checkpoint.
    /// std::thread::sleep(limit);
    /// assert!(!store.end_read_lease_older_than(limit));
    /// # Ok(())
    /// # }
    /// ```
    pub fn end_read_lease_older_than(&mut self, age: Duration) -> bool {
        if self.lease.is_some_and(|lease| lease.began.elapsed() >= age) {
            self.end_read_lease();
        }
        self.lease.is_some()
    }

    /// Ends the read lease, if any: the read transaction is committed (which only releases
    /// its snapshot).
    pub fn end_read_lease(&mut self) {
        if self.lease.take().is_none() {
            return;
        }
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        if conn.is_autocommit() {
            return;
        }
        let ended = conn
            .prepare_cached("COMMIT")
            .and_then(|mut c| c.execute([]));
        if ended.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }

    fn reopen_after_fork(&mut self, generation: u64) -> Result<()> {
        if self.location == Location::Memory {
            // The child owns a private copy of an in-memory database: keep using it.
            self.fork_generation = generation;
            return Ok(());
        }
        // The inherited connection shares file locks and WAL state with the parent. Closing it
        // could checkpoint or unlink the parent's WAL, so it is deliberately leaked.
        if let Some(inherited) = self.conn.take() {
            std::mem::forget(inherited);
        }
        self.lease = None;
        // The parent's checkpoint thread does not exist here. The child's new connection keeps
        // SQLite's own autocheckpoint and reads commit tokens through `PRAGMA data_version`.
        self.wal_index = None;
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.abandon();
        }
        self.conn = Some(open_connection(&self.location, &self.options)?);
        self.fork_generation = generation;
        Ok(())
    }

    /// Refuses writes on a read-only store.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] when the store cannot be written.
    pub fn check_writable(&self) -> Result<()> {
        if self.conn.is_none() {
            return Err(Error::Closed("vault"));
        }
        if let (Location::File(path), Some(conn)) = (&self.location, self.conn.as_ref()) {
            if file_has_moved(conn) {
                // Writing on would go to a file nobody can open any more: acknowledged writes
                // would be lost. Refuse instead.
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "vault file {} was deleted or replaced while open; writes are refused \
                         (reopen the vault)",
                        path.display()
                    ),
                )));
            }
        }
        if self.read_only {
            return Err(Error::ReadOnly(match &self.location {
                Location::File(p) if !self.options.read_only => {
                    format!("{} is not writable", p.display())
                }
                _ => "opened with read_only=True".to_string(),
            }));
        }
        Ok(())
    }

    /// Runs `f` inside a write transaction (`BEGIN IMMEDIATE` ... `COMMIT`), retrying the lock
    /// acquisition with exponential backoff. If a transaction is already open on this
    /// connection, `f` runs inside a savepoint of it instead. Any error rolls back everything
    /// `f` did.
    ///
    /// # Errors
    /// [`Error::Busy`] when the lock stays taken through all retries; whatever `f` returns.
    pub fn write<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.write_with(f)
    }

    /// [`Store::write`] for callers with their own error type (e.g. the column store), so their
    /// error variants pass through unchanged.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn write_with<T, E: StoreError>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        self.check_writable()?;
        self.local_writes += 1;
        let retries = self.options.retries;
        let backoff = self.options.backoff_base;
        let conn = self.conn()?;
        if !conn.is_autocommit() {
            conn.execute_batch("SAVEPOINT ambervault_op")
                .map_err(Error::from)?;
            return match f(conn) {
                Ok(value) => {
                    conn.execute_batch("RELEASE ambervault_op")
                        .map_err(Error::from)?;
                    Ok(value)
                }
                Err(err) => {
                    let _ = conn.execute_batch("ROLLBACK TO ambervault_op; RELEASE ambervault_op");
                    Err(err)
                }
            };
        }
        with_retries(retries, backoff, || -> Result<()> {
            conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            Ok(())
        })?;
        match f(conn) {
            Ok(value) => {
                let committed = with_retries(retries, backoff, || -> Result<()> {
                    conn.prepare_cached("COMMIT")?.execute([])?;
                    Ok(())
                });
                match committed {
                    Ok(()) => Ok(value),
                    Err(err) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        Err(err.into())
                    }
                }
            }
            Err(err) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Err(err)
            }
        }
    }

    /// Runs `f` inside a read transaction so everything it reads comes from one snapshot.
    /// Inside an already open transaction `f` simply runs in it.
    ///
    /// # Errors
    /// [`Error::Busy`] if the snapshot cannot be taken; whatever `f` returns.
    pub fn read<T>(&mut self, f: impl FnMut(&Connection) -> Result<T>) -> Result<T> {
        self.read_with(f)
    }

    /// [`Store::read`] for callers with their own error type.
    ///
    /// # Errors
    /// As [`Store::read`].
    pub fn read_with<T, E: StoreError>(
        &mut self,
        mut f: impl FnMut(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let retries = self.options.retries;
        let backoff = self.options.backoff_base;
        if self.options.read_lease.is_some() && self.txn_depth == 0 {
            // Reads are idempotent, so a busy snapshot is simply retried from the start.
            return with_retries(retries, backoff, || {
                if self.enter_lease()? {
                    // The lease is one snapshot too.
                    self.read_on(true, &mut f)
                } else {
                    snapshot_read(self.conn()?, &mut f)
                }
            });
        }
        let conn = self.conn()?;
        if !conn.is_autocommit() {
            return f(conn);
        }
        with_retries(retries, backoff, || snapshot_read(conn, &mut f))
    }

    /// Runs a read of one or more independent statements, retrying while the database is busy
    /// (e.g. during another connection's WAL recovery or checkpoint).
    ///
    /// # Errors
    /// [`Error::Busy`] after the retries; whatever `f` returns.
    pub fn retry<T>(&mut self, f: impl FnMut(&Connection) -> Result<T>) -> Result<T> {
        self.retry_with(f)
    }

    /// [`Store::retry`] for callers with their own error type.
    ///
    /// # Errors
    /// As [`Store::retry`].
    pub fn retry_with<T, E: StoreError>(
        &mut self,
        mut f: impl FnMut(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let retries = self.options.retries;
        let backoff = self.options.backoff_base;
        let conn = self.conn()?;
        with_retries(retries, backoff, || f(conn))
    }

    /// Runs a single self-contained statement (already atomic in autocommit mode) with
    /// busy retries.
    ///
    /// # Errors
    /// [`Error::Busy`] after the retries; whatever `f` returns.
    pub fn write_one<T>(&mut self, mut f: impl FnMut(&Connection) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        self.local_writes += 1;
        let retries = self.options.retries;
        let backoff = self.options.backoff_base;
        let conn = self.conn()?;
        with_retries(retries, backoff, || f(conn))
    }

    /// How many writes, commits and rollbacks went through this connection so far.
    #[must_use]
    pub fn local_write_count(&self) -> u64 {
        self.local_writes
    }

    /// This connection's instance of `T` (created on first use), for per-connection state of
    /// the layers above, such as read caches.
    pub fn extension<T: Default + Send + 'static>(&mut self) -> &mut T {
        self.extensions
            .entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut::<T>()
            .expect("extension stored under its own type id")
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

    /// Opens an explicit transaction (`BEGIN IMMEDIATE`), or a savepoint inside the one already
    /// open. Every operation on this store until the matching [`Store::commit`] or
    /// [`Store::rollback`] is part of it. Returns the new depth.
    ///
    /// # Errors
    /// [`Error::Busy`] when the write lock stays taken; [`Error::ReadOnly`].
    pub fn begin(&mut self) -> Result<u32> {
        self.check_writable()?;
        let retries = self.options.retries;
        let backoff = self.options.backoff_base;
        let depth = self.txn_depth;
        let conn = self.conn()?;
        if depth == 0 {
            if !conn.is_autocommit() {
                return Err(Error::InvalidArgument(
                    "a transaction is already open".into(),
                ));
            }
            with_retries(retries, backoff, || -> Result<()> {
                conn.execute_batch("BEGIN IMMEDIATE")?;
                Ok(())
            })?;
            self.txn_owner = Some(std::thread::current().id());
        } else {
            conn.execute_batch(&format!("SAVEPOINT ambervault_txn_{depth}"))?;
        }
        self.txn_depth = depth + 1;
        Ok(self.txn_depth)
    }

    /// Commits the innermost explicit transaction (or releases its savepoint).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when no transaction is open; SQLite errors (the transaction is
    /// then rolled back).
    pub fn commit(&mut self) -> Result<()> {
        let depth = self.txn_depth;
        if depth == 0 {
            return Err(Error::InvalidArgument("no transaction is open".into()));
        }
        let retries = self.options.retries;
        let backoff = self.options.backoff_base;
        let conn = self.conn()?;
        let result = if depth == 1 {
            with_retries(retries, backoff, || -> Result<()> {
                conn.execute_batch("COMMIT")?;
                Ok(())
            })
        } else {
            conn.execute_batch(&format!("RELEASE ambervault_txn_{}", depth - 1))
                .map_err(Error::from)
        };
        if result.is_err() && depth == 1 && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        self.end_level();
        result
    }

    /// Rolls back the innermost explicit transaction (or its savepoint).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when no transaction is open; SQLite errors.
    pub fn rollback(&mut self) -> Result<()> {
        let depth = self.txn_depth;
        if depth == 0 {
            return Err(Error::InvalidArgument("no transaction is open".into()));
        }
        let conn = self.conn()?;
        let result = if depth == 1 {
            if conn.is_autocommit() {
                Ok(())
            } else {
                conn.execute_batch("ROLLBACK").map_err(Error::from)
            }
        } else {
            let sp = format!("ambervault_txn_{}", depth - 1);
            conn.execute_batch(&format!("ROLLBACK TO {sp}; RELEASE {sp}"))
                .map_err(Error::from)
        };
        self.end_level();
        result
    }

    fn end_level(&mut self) {
        self.local_writes += 1;
        self.txn_depth -= 1;
        if self.txn_depth == 0 {
            self.txn_owner = None;
        }
    }

    /// Depth of explicit transactions (0 = none open).
    #[must_use]
    pub fn transaction_depth(&self) -> u32 {
        self.txn_depth
    }

    /// The thread that owns the open explicit transaction, if any. Other threads sharing this
    /// store must not run operations until it ends.
    #[must_use]
    pub fn transaction_owner(&self) -> Option<std::thread::ThreadId> {
        self.txn_owner
    }

    /// Writes a consistent copy of the whole file to `dest` with SQLite's online backup API,
    /// while other connections keep writing (the copy is one snapshot). `dest` must not exist.
    ///
    /// # Errors
    /// [`Error::Io`] if `dest` exists or cannot be created; [`Error::InvalidArgument`] inside a
    /// transaction; [`Error::Busy`].
    pub fn backup_to(&mut self, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} already exists; backup() never overwrites",
                    dest.display()
                ),
            )));
        }
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("directory {} does not exist", parent.display()),
                )));
            }
        }
        let retries = self.options.retries;
        let backoff = self.options.backoff_base;
        let conn = self.conn()?;
        if !conn.is_autocommit() {
            return Err(Error::InvalidArgument(
                "backup() cannot run inside a transaction".into(),
            ));
        }
        let mut target = Connection::open(dest)?;
        let result = with_retries(retries, backoff, || -> Result<()> {
            let backup = rusqlite::backup::Backup::new(conn, &mut target)?;
            // All pages in one step: one read snapshot of the source, so the copy is consistent
            // however busy the writers are.
            match backup.step(-1)? {
                rusqlite::backup::StepResult::Done => Ok(()),
                _ => Err(Error::Busy {
                    retries: 0,
                    detail: "backup was interrupted".into(),
                }),
            }
        });
        drop(target);
        if result.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        result
    }

    /// SQLite's `PRAGMA integrity_check`: an empty list when the file is sound.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn integrity_problems(&mut self) -> Result<Vec<String>> {
        self.retry(|conn| {
            let mut stmt = conn.prepare("PRAGMA integrity_check")?;
            let rows: Vec<String> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows.into_iter().filter(|r| r != "ok").collect())
        })
    }

    /// The format version recorded in the file (`PRAGMA user_version`).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn format_version(&mut self) -> Result<i64> {
        self.retry(|conn| Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?))
    }

    /// `(page_size, page_count, freelist_count)` of the main file.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn page_stats(&mut self) -> Result<(i64, i64, i64)> {
        self.retry(|conn| {
            let get = |pragma: &str| {
                conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get::<_, i64>(0))
            };
            Ok((
                get("page_size")?,
                get("page_count")?,
                get("freelist_count")?,
            ))
        })
    }

    /// Copies the WAL back into the main file and truncates it.
    ///
    /// # Errors
    /// SQLite errors; a busy checkpoint is not an error (it simply does less).
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.end_read_lease();
        // A pass of the checkpoint thread would make this one busy (and skipped); none can
        // start meanwhile, since only this connection's commits request them.
        let _ = self.wait_for_checkpoints(Duration::from_secs(60));
        let conn = self.conn()?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Rebuilds the file to reclaim free pages (`VACUUM`), then checkpoints.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Busy`], I/O errors.
    pub fn vacuum(&mut self) -> Result<()> {
        self.check_writable()?;
        let retries = self.options.retries;
        let backoff = self.options.backoff_base;
        let conn = self.conn()?;
        if !conn.is_autocommit() {
            return Err(Error::InvalidArgument(
                "optimize() cannot run inside a transaction".into(),
            ));
        }
        with_retries(retries, backoff, || -> Result<()> {
            Ok(conn.execute_batch("VACUUM")?)
        })?;
        self.checkpoint()
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

    /// Moves WAL checkpoints to a background thread (see `checkpoint.rs`) when this is a
    /// writable WAL file; otherwise SQLite's autocheckpoint stays.
    fn start_checkpointer(&mut self) -> Result<()> {
        let Location::File(path) = &self.location else {
            return Ok(());
        };
        if self.read_only || !self.options.enable_wal {
            return Ok(());
        }
        let path = path.clone();
        let synchronous = self.options.synchronous;
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if mode.eq_ignore_ascii_case("wal") {
            self.checkpointer = Some(Checkpointer::install(conn, &path, synchronous)?);
            self.wal_index = WalIndexView::open(conn);
        }
        Ok(())
    }

    /// A token that changes whenever any connection, in any process, commits to this file,
    /// read without a transaction or lock (the WAL index header, see `wal_index.rs`). Equal
    /// tokens read at two moments mean nothing was committed in between, so a cache filled in
    /// a snapshot taken after the first read is still current at the second.
    ///
    /// `None` when this store cannot tell cheaply (read-only, in-memory or non-WAL stores, or a
    /// writer is mid-update): use `PRAGMA data_version` in a read transaction instead.
    #[must_use]
    pub fn commit_token(&self) -> Option<CommitToken> {
        self.conn.as_ref()?;
        self.wal_index.as_ref()?.token()
    }

    /// Waits until no background checkpoint is due or running, at most `timeout`; returns
    /// whether that happened. Stores without a checkpoint thread are always settled.
    ///
    /// Checkpoints never affect what a reader sees or what survives a crash; this is for tests
    /// and for measuring the file as it will stay.
    #[must_use]
    pub fn wait_for_checkpoints(&self, timeout: Duration) -> bool {
        self.checkpointer
            .as_ref()
            .is_none_or(|c| c.wait_until_idle(timeout))
    }

    fn initialize(&mut self) -> Result<()> {
        let read_only = self.read_only;
        let created_at = self.now_ms();
        let conn = self.conn()?;
        // The first read of the header: fails with NOTADB on a file that is not SQLite.
        let application_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let user_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if application_id == APPLICATION_ID && user_version > FORMAT_VERSION {
            return Err(Error::IncompatibleFormat {
                found: user_version,
                supported: FORMAT_VERSION,
            });
        }
        if application_id != 0 && application_id != APPLICATION_ID {
            return Err(Error::Corrupted(format!(
                "this SQLite file belongs to another application (application_id {application_id:#x})"
            )));
        }
        if read_only || application_id == APPLICATION_ID {
            // Already a vault: opening needs no write (and so no write lock).
            return Ok(());
        }
        self.write(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS ambervault_meta (\
                   name TEXT PRIMARY KEY NOT NULL, value ANY) WITHOUT ROWID;",
            )?;
            if application_id == 0 {
                conn.execute_batch(&format!(
                    "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {FORMAT_VERSION};"
                ))?;
                conn.execute(
                    "INSERT OR IGNORE INTO ambervault_meta(name, value) VALUES \
                     ('format_version', ?1), ('created_at_ms', ?2)",
                    (FORMAT_VERSION, created_at),
                )?;
            }
            Ok(())
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Process-wide SQLite settings, applied once before SQLite initializes (afterwards SQLite
/// refuses them, which is harmless: it keeps its defaults).
fn configure_sqlite() {
    static CONFIGURED: Once = Once::new();
    CONFIGURED.call_once(|| {
        // Memory statistics make every SQLite allocation take a process-wide mutex; nothing
        // here reads them.
        // SAFETY: sqlite3_config is called before any connection exists in this library; if
        // SQLite is already initialized it returns SQLITE_MISUSE and changes nothing.
        unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            );
        }
    });
}

fn open_connection(location: &Location, options: &StoreOptions) -> Result<Connection> {
    configure_sqlite();
    let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
    flags |= if options.read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    };
    let conn = match location {
        Location::Memory => Connection::open_in_memory_with_flags(flags)?,
        Location::File(path) => {
            check_path(path, options.read_only)?;
            let conn = open_file(path, flags)?;
            if options.read_only || conn.is_readonly(rusqlite::MAIN_DB)? {
                // A WAL file needs its -shm index; in a directory we cannot write, SQLite can
                // neither create nor use it. Such a file cannot change under us (no writer could
                // create the WAL either), so it is opened as immutable, without locking.
                match conn.query_row("PRAGMA schema_version", [], |_| Ok(())) {
                    Ok(()) => conn,
                    Err(err) => match err.sqlite_error_code() {
                        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen) => {
                            drop(conn);
                            open_immutable(path)?
                        }
                        _ => return Err(err.into()),
                    },
                }
            } else {
                conn
            }
        }
    };
    configure(&conn, location, options)?;
    Ok(conn)
}

/// Runs `f` in a read transaction of its own (`BEGIN` ... `COMMIT`): one snapshot for all its
/// statements.
fn snapshot_read<T, E: StoreError>(
    conn: &Connection,
    f: &mut impl FnMut(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    conn.prepare_cached("BEGIN")
        .and_then(|mut b| b.execute([]))
        .map_err(Error::from)?;
    let result = f(conn);
    // COMMIT of a read transaction only releases the snapshot; it cannot lose anything.
    let ended = conn
        .prepare_cached("COMMIT")
        .and_then(|mut c| c.execute([]));
    if ended.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let value = result?;
    ended.map_err(Error::from)?;
    Ok(value)
}

/// Whether `conn` has a write transaction open on any of its databases.
fn write_transaction_open(conn: &Connection) -> bool {
    // SAFETY: the handle is valid while `conn` lives; a null schema asks for the highest state
    // over all attached databases.
    let state = unsafe { rusqlite::ffi::sqlite3_txn_state(conn.handle(), std::ptr::null()) };
    state == rusqlite::ffi::SQLITE_TXN_WRITE
}

/// Whether the main database file was unlinked or replaced since it was opened (SQLite's
/// `SQLITE_FCNTL_HAS_MOVED`: one `stat` of the path).
fn file_has_moved(conn: &Connection) -> bool {
    let mut moved: std::os::raw::c_int = 0;
    // SAFETY: the handle is valid while `conn` lives; HAS_MOVED writes one int through the
    // pointer and has no other effect.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_HAS_MOVED,
            std::ptr::from_mut(&mut moved).cast(),
        )
    };
    rc == rusqlite::ffi::SQLITE_OK && moved != 0
}

/// Opens a vault file through the WAL-batching VFS (see `wal_vfs`), or SQLite's default VFS
/// where it could not be registered.
pub(crate) fn open_file(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    match crate::wal_vfs::register() {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        None => Connection::open_with_flags(path, flags),
    }
}

fn open_immutable(path: &Path) -> Result<Connection> {
    let absolute = std::fs::canonicalize(path)?;
    let uri = format!(
        "file:{}?immutable=1",
        percent_encode_path(&absolute.to_string_lossy())
    );
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Ok(Connection::open_with_flags(uri, flags)?)
}

fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn check_path(path: &Path, read_only: bool) -> Result<()> {
    if path.is_dir() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            format!("{} is a directory, not a vault file", path.display()),
        )));
    }
    if read_only && !path.exists() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{} does not exist (read_only=True never creates a file)",
                path.display()
            ),
        )));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        if !parent.is_dir() {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("directory {} does not exist", parent.display()),
            )));
        }
    }
    Ok(())
}

fn configure(conn: &Connection, location: &Location, options: &StoreOptions) -> Result<()> {
    // SQLite's own busy handler absorbs short waits; `with_retries` adds the backoff on top.
    let first_wait = Duration::from_secs_f64(options.backoff_base.max(0.001));
    conn.busy_timeout(first_wait)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{}; PRAGMA mmap_size = {}; PRAGMA temp_store = MEMORY;",
        options.cache_kb, options.mmap_size
    ))?;
    let writable = !options.read_only && !conn.is_readonly(rusqlite::MAIN_DB)?;
    if writable {
        // Reading the header first turns a non-SQLite file into a clean NOTADB error before any
        // PRAGMA that could write.
        conn.query_row("PRAGMA schema_version", [], |_| Ok(()))?;
        conn.execute_batch(&format!("PRAGMA page_size = {};", options.page_size))?;
        if options.enable_wal && *location != Location::Memory {
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
            // Keep the WAL file from staying huge after a burst of writes.
            conn.execute_batch("PRAGMA journal_size_limit = 67108864;")?;
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {};",
            options.synchronous.pragma_value()
        ))?;
    }
    Ok(())
}

/// Runs `op`, retrying while SQLite reports the database busy: `retries` more attempts, the
/// n-th after sleeping `backoff_base * 2^n` seconds plus up to 50% jitter.
/// An error type that can carry the store's errors and says whether it means "busy".
pub trait StoreError: From<Error> + std::fmt::Display {
    /// Whether the operation failed only because another connection held a lock.
    fn is_busy(&self) -> bool;
}

impl StoreError for Error {
    fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }
}

/// Runs `op`, retrying while SQLite reports the database busy: `retries` more attempts, the
/// n-th after sleeping `backoff_base * 2^n` seconds plus up to 50% jitter.
pub(crate) fn with_retries<T, E: StoreError>(
    retries: u32,
    backoff_base: f64,
    mut op: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut attempt: u32 = 0;
    loop {
        match op() {
            Err(err) if err.is_busy() => {
                if attempt >= retries {
                    let detail = err.to_string();
                    let detail = detail
                        .strip_prefix("database is busy: gave up after 0 retries (")
                        .and_then(|d| d.strip_suffix(')'))
                        .map_or(detail.clone(), str::to_string);
                    return Err(Error::Busy { retries, detail }.into());
                }
                let base = backoff_base * f64::from(1u32 << attempt.min(20));
                std::thread::sleep(Duration::from_secs_f64(base * (1.0 + 0.5 * jitter())));
                attempt += 1;
            }
            other => return other,
        }
    }
}

// Cheap jitter in [0, 1) without a RNG dependency: sub-second clock noise is enough to keep
// competing processes from retrying in lockstep.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}
