//! File-level maintenance: online backup, integrity check, page figures, checkpoints (with the
//! background checkpoint thread and the commit token), and VACUUM.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::*;
use crate::checkpoint::Checkpointer;
use crate::error::{Error, Result};
use crate::wal_index::{CommitToken, WalIndexView};

impl Store {
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
        let key = self.options.key.clone();
        let conn = self.conn()?;
        if !conn.is_autocommit() {
            return Err(Error::InvalidArgument(
                "backup() cannot run inside a transaction".into(),
            ));
        }
        let mut target = Connection::open(dest)?;
        // The copy of an encrypted vault is encrypted with the same key (SQLCipher copies pages
        // between two keyed files only).
        if let Some(key) = &key {
            if let Err(err) = apply_key(&target, key) {
                drop(target);
                let _ = std::fs::remove_file(dest);
                return Err(err);
            }
        }
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

    /// Re-encrypts the file with `key` (SQLCipher's rekey): every page is rewritten, encrypted
    /// with the new key, in one transaction through the WAL, so the cost is a write of the
    /// whole file. Connections of other handles or processes still holding the old key fail
    /// on their next read; this store, its checkpoint thread and a reopen after `fork()` use
    /// the new key.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a store opened without a key (an unencrypted file cannot
    /// be encrypted in place) or inside a transaction; [`Error::ReadOnly`];
    /// [`Error::EncryptionUnavailable`] without the `encryption` feature; [`Error::Busy`].
    pub fn rekey(&mut self, key: Key) -> Result<()> {
        if !cfg!(feature = "encryption") {
            return Err(Error::EncryptionUnavailable);
        }
        self.check_writable()?;
        if self.options.key.is_none() {
            return Err(Error::InvalidArgument(
                "rekey() changes the key of an encrypted vault; this one was opened without a \
                 key (an unencrypted file cannot be encrypted in place: copy it into a new \
                 vault opened with key=)"
                    .into(),
            ));
        }
        if self.location == Location::Memory {
            return Err(Error::InvalidArgument(
                "an in-memory vault has no key".into(),
            ));
        }
        let retries = self.options.retries;
        let backoff = self.options.backoff_base;
        if !self.conn()?.is_autocommit() {
            return Err(Error::InvalidArgument(
                "rekey() cannot run inside a transaction".into(),
            ));
        }
        // The checkpoint thread's connection holds the old key: it ends first and starts again
        // (with the new key) on the next bulk commit.
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
        let conn = self.conn()?;
        let result = with_retries(retries, backoff, || rekey_connection(conn, &key));
        if result.is_ok() {
            self.options.key = Some(key);
            self.local_writes += 1;
        }
        let restarted = self.start_checkpointer();
        result.and(restarted)
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
            Ok((page_size(conn)?, get("page_count")?, get("freelist_count")?))
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

    /// Moves WAL checkpoints to a background thread (see `checkpoint.rs`) when this is a
    /// writable WAL file; otherwise SQLite's autocheckpoint stays.
    pub(crate) fn start_checkpointer(&mut self) -> Result<()> {
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
            if self.options.checkpoints == Checkpoints::Auto {
                let key = self.options.key.clone();
                self.checkpointer = Some(Checkpointer::install(conn, &path, synchronous, key)?);
            } else {
                // Left to the program that follows the WAL: SQLite's own autocheckpoint off.
                conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
            }
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
}

#[cfg(feature = "encryption")]
fn rekey_connection(conn: &Connection, key: &Key) -> Result<()> {
    key_call(conn, key, rusqlite::ffi::sqlite3_rekey_v2)
}

#[cfg(not(feature = "encryption"))]
fn rekey_connection(_conn: &Connection, _key: &Key) -> Result<()> {
    Err(Error::EncryptionUnavailable)
}
