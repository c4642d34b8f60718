//! Running work on the connection: write transactions (or savepoints inside an open one), read
//! snapshots, single statements, and the busy retries with backoff under all of them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use super::*;
use crate::error::{Error, Result};

/// Runs `f` in a read transaction of its own (`BEGIN` ... `COMMIT`): one snapshot for all its
/// statements.
pub(crate) fn snapshot_read<T, E: StoreError>(
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
pub(crate) fn write_transaction_open(conn: &Connection) -> bool {
    // SAFETY: the handle is valid while `conn` lives; a null schema asks for the highest state
    // over all attached databases.
    let state = unsafe { rusqlite::ffi::sqlite3_txn_state(conn.handle(), std::ptr::null()) };
    state == rusqlite::ffi::SQLITE_TXN_WRITE
}

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
pub(crate) fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

impl Store {
    /// Refuses writes on a read-only store.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] when the store cannot be written.
    pub fn check_writable(&self) -> Result<()> {
        if self.conn.is_none() {
            return Err(Error::Closed("vault"));
        }
        if let (Location::File(path), Some(conn)) = (&self.location, self.conn.as_ref()) {
            if self.file_watch.has_moved(conn) {
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
}
