//! Explicit transactions: `BEGIN IMMEDIATE` at depth 1, savepoints below it, and the thread that
//! owns them (other threads sharing the vault wait for it; see `vault.rs`).

use super::{with_retries, Store};
use crate::error::{Error, Result};

impl Store {
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

    /// Opens a read snapshot as an explicit transaction (`BEGIN` plus a first read, which
    /// fixes the snapshot): every read on this store until [`Store::commit`] sees the file as
    /// it was now, while other connections keep writing. Allowed on read-only stores; a write
    /// inside it takes the write lock (and fails if another connection wrote since).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] inside a transaction; [`Error::Busy`].
    pub fn begin_snapshot(&mut self) -> Result<()> {
        if self.txn_depth > 0 {
            return Err(Error::InvalidArgument(
                "a snapshot cannot start inside a transaction".into(),
            ));
        }
        self.end_read_lease();
        let retries = self.options.retries;
        let backoff = self.options.backoff_base;
        let conn = self.conn()?;
        with_retries(retries, backoff, || -> Result<()> {
            conn.execute_batch("BEGIN")?;
            let fixed = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            });
            if let Err(err) = fixed {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(err.into());
            }
            Ok(())
        })?;
        self.txn_owner = Some(std::thread::current().id());
        self.txn_depth = 1;
        Ok(())
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

    pub(crate) fn end_level(&mut self) {
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
}
