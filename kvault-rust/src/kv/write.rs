//! Writing: single and batched puts, conditions, expiry, deletes.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::sql::{
    ABANDON_GROUP, GROUP_ROW_PARAMS, INSERT_GROUP_ROWS, RELEASE_GROUP, ROLLBACK_GROUP,
    SAVEPOINT_GROUP,
};
use super::stream::{BlobWriter, Staged, StagedOwned};
use super::types::{BlobRef, Condition, KeyKind, PutItem, PutOptions, RowMeta};
use super::{validate_key, KvTable};
use crate::error::{Error, Result};
use crate::store::Store;

/// The prepared statements of one upsert.
pub(super) struct UpsertStatements<'c> {
    insert: rusqlite::CachedStatement<'c>,
    /// `insert` for the common case, an inline value without expiry: fewer parameters to bind.
    insert_inline: rusqlite::CachedStatement<'c>,
    update: rusqlite::CachedStatement<'c>,
}

impl KvTable {
    /// Stores `value` under `key`, replacing any old value atomically. Values larger than the
    /// chunk size are written as chunks first (in short transactions) and switched in at the end.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an oversized key; [`Error::ReadOnly`]; [`Error::Busy`].
    pub fn put(&self, store: &mut Store, key: &[u8], kind: KeyKind, value: &[u8]) -> Result<()> {
        self.put_with(store, key, kind, value, PutOptions::default())
    }

    /// [`KvTable::put`] with an expiry time and/or a precondition.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the condition does not hold (nothing is written); as
    /// [`KvTable::put`] otherwise.
    pub fn put_with(
        &self,
        store: &mut Store,
        key: &[u8],
        kind: KeyKind,
        value: &[u8],
        options: PutOptions,
    ) -> Result<()> {
        validate_key(key)?;
        let now = store.now_ms();
        let meta = RowMeta {
            kind,
            encoding: options.encoding,
            now,
            expires_at_ms: options.expires_at_ms,
        };
        let in_transaction = store.transaction_depth() > 0;
        let protected = HashSet::from([key]);
        if value.len() <= self.inline_limit() {
            let staged = Staged::Inline(value);
            if options.condition == Condition::Always {
                // The plain path when the policy allows it: one statement, no transaction.
                let done = store.write_one(|conn| {
                    if !self.plain_writes_in(conn)? {
                        return Ok(false);
                    }
                    self.upsert(conn, key, &staged, meta)?;
                    Ok(true)
                })?;
                if done {
                    return Ok(());
                }
            }
            return store.write(|conn| {
                let policy = self.begin_write(conn)?;
                self.check_condition(conn, key, options.condition, now)?;
                self.upsert(conn, key, &staged, meta)?;
                self.settle_after_write(conn, &policy, in_transaction, &protected, now)
            });
        }
        if value.len() <= self.chunk_size {
            // One chunk: written and switched in one transaction.
            return store.write(|conn| {
                let policy = self.begin_write(conn)?;
                self.check_condition(conn, key, options.condition, now)?;
                let blob = self.store_single_chunk(conn, value, now)?;
                self.commit_staged_row(conn, key, &Staged::Chunked(blob), meta)?;
                self.settle_after_write(conn, &policy, in_transaction, &protected, now)
            });
        }
        let mut writer = BlobWriter::new(self.clone(), None);
        let staged = writer
            .write(store, value)
            .and_then(|()| writer.stage(store));
        let staged = match staged {
            Ok(s) => s,
            Err(err) => {
                let _ = writer.abort(store);
                return Err(err);
            }
        };
        let result = store.write(|conn| {
            let policy = self.begin_write(conn)?;
            self.check_condition(conn, key, options.condition, now)?;
            self.commit_staged_row(conn, key, &staged.as_staged(), meta)?;
            self.settle_after_write(conn, &policy, in_transaction, &protected, now)
        });
        if result.is_err() {
            let _ = writer.abort(store);
        }
        result
    }

    /// Switches `key` to a finished upload in one write transaction (with the policy's
    /// eviction after it): the last step of [`super::BlobWriter::finish_with`].
    pub(super) fn commit_upload(
        &self,
        store: &mut Store,
        key: &[u8],
        kind: KeyKind,
        staged: &Staged<'_>,
        options: PutOptions,
    ) -> Result<()> {
        let now = store.now_ms();
        let in_transaction = store.transaction_depth() > 0;
        let protected = HashSet::from([key]);
        store.write(|conn| {
            let policy = self.begin_write(conn)?;
            self.check_condition(conn, key, options.condition, now)?;
            self.commit_staged(conn, key, kind, staged, now, options)?;
            self.settle_after_write(conn, &policy, in_transaction, &protected, now)
        })
    }

    /// Fails with [`Error::Conflict`] unless `condition` holds for `key` at `now`.
    pub(super) fn check_condition(
        &self,
        conn: &Connection,
        key: &[u8],
        condition: Condition,
        now: i64,
    ) -> Result<()> {
        if condition == Condition::Always {
            return Ok(());
        }
        let current = self.version_in(conn, key, now)?;
        match (condition, current) {
            (Condition::IfAbsent, Some(found)) => Err(Error::Conflict(format!(
                "the key already exists (version {found}) and if_absent was given"
            ))),
            (Condition::IfVersion(expected), Some(found)) if found != expected => {
                Err(Error::Conflict(format!(
                    "expected version {expected}, found version {found}"
                )))
            }
            (Condition::IfVersion(expected), None) => Err(Error::Conflict(format!(
                "expected version {expected}, but the key does not exist"
            ))),
            _ => Ok(()),
        }
    }

    fn version_in(&self, conn: &Connection, key: &[u8], now: i64) -> Result<Option<i64>> {
        Ok(conn
            .prepare_cached(&self.sql.version)?
            .query_row(params![key, now], |r| r.get(0))
            .optional()?)
    }

    /// The key's version (1 after its first write, +1 per write), or `None` when absent.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn version(&self, store: &mut Store, key: &[u8]) -> Result<Option<i64>> {
        let now = store.now_ms();
        store.read_latest(|conn| self.version_in(conn, key, now))
    }

    /// Sets (or with `None` removes) the key's expiry time; returns whether the key exists.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Busy`].
    pub fn touch(&self, store: &mut Store, key: &[u8], expires_at_ms: Option<i64>) -> Result<bool> {
        let now = store.now_ms();
        let sql = &self.sql.touch;
        store.write_one(|conn| {
            Ok(conn
                .prepare_cached(sql)?
                .execute(params![key, now, expires_at_ms])?
                > 0)
        })
    }

    /// Deletes every expired key (and its chunks); returns how many.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Busy`].
    pub fn prune(&self, store: &mut Store) -> Result<u64> {
        let now = store.now_ms();
        let sql = &self.sql.prune;
        store.write(|conn| {
            self.begin_write(conn)?;
            self.stamp_clock(conn, now)?;
            Ok(conn.prepare_cached(sql)?.execute([now])? as u64)
        })
    }

    fn upsert(
        &self,
        conn: &Connection,
        key: &[u8],
        value: &Staged<'_>,
        meta: RowMeta,
    ) -> Result<()> {
        let mut statements = self.upsert_statements(conn)?;
        let shared = self.share_if_asked(conn, value)?;
        Self::upsert_with(&mut statements, key, value, shared, meta)
    }

    /// The content id under which a small value is stored when the policy deduplicates every
    /// value (see `shared_values.rs`); `None` keeps it inline.
    fn share_if_asked(&self, conn: &Connection, value: &Staged<'_>) -> Result<Option<i64>> {
        match value {
            Staged::Inline(bytes) if self.runtime.dedup_all() => {
                Ok(Some(self.store_shared(conn, bytes)?))
            }
            _ => Ok(None),
        }
    }

    /// The two prepared statements of an upsert (batches prepare them once).
    fn upsert_statements<'c>(&self, conn: &'c Connection) -> Result<UpsertStatements<'c>> {
        Ok(UpsertStatements {
            insert: conn.prepare_cached(&self.sql.insert_new)?,
            insert_inline: conn.prepare_cached(&self.sql.insert_inline)?,
            update: conn.prepare_cached(&self.sql.update_existing)?,
        })
    }

    /// [`KvTable::upsert`] with already prepared statements. `shared`: the content id of a
    /// deduplicated small value, whose bytes then stay out of the key row.
    fn upsert_with(
        statements: &mut UpsertStatements<'_>,
        key: &[u8],
        value: &Staged<'_>,
        shared: Option<i64>,
        meta: RowMeta,
    ) -> Result<()> {
        let RowMeta {
            kind,
            encoding,
            now,
            expires_at_ms,
        } = meta;
        let (size, inline, blob_id, chunk_size) = match value {
            Staged::Inline(bytes) => (
                bytes.len() as i64,
                shared.is_none().then_some(*bytes),
                None,
                None,
            ),
            Staged::Chunked(blob) => (
                i64::try_from(blob.size).unwrap_or(i64::MAX),
                None,
                Some(blob.blob_id),
                Some(i64::try_from(blob.chunk_size).unwrap_or(i64::MAX)),
            ),
        };
        let values = params![
            key,
            kind as i64,
            size,
            inline,
            blob_id,
            chunk_size,
            now,
            expires_at_ms,
            encoding.code(),
            shared
        ];
        let inserted =
            match (value, expires_at_ms, shared) {
                (Staged::Inline(bytes), None, None) => statements
                    .insert_inline
                    .execute(params![key, kind as i64, size, bytes, now, encoding.code()])?,
                _ => statements.insert.execute(values)?,
            };
        if inserted == 0 {
            statements.update.execute(values)?;
        }
        Ok(())
    }

    /// Upserts inline values one by one, in order.
    fn upsert_each(
        &self,
        conn: &Connection,
        statements: &mut UpsertStatements<'_>,
        items: &[PutItem<'_>],
        now: i64,
    ) -> Result<()> {
        for item in items {
            let meta = RowMeta {
                kind: item.kind,
                encoding: item.encoding,
                now,
                expires_at_ms: item.expires_at_ms,
            };
            let value = Staged::Inline(item.value);
            let shared = self.share_if_asked(conn, &value)?;
            Self::upsert_with(statements, item.key, &value, shared, meta)?;
        }
        Ok(())
    }

    /// Writes [`INSERT_GROUP_ROWS`] inline values without expiry with one statement. It only
    /// inserts: if a key already exists (or comes twice in the group), the statement's work is
    /// rolled back to a savepoint and the group is upserted one by one, so every key ends as
    /// the same sequence of single puts would leave it (versions included).
    fn insert_group(
        &self,
        conn: &Connection,
        statements: &mut UpsertStatements<'_>,
        group: &[PutItem<'_>],
        now: i64,
    ) -> Result<()> {
        debug_assert_eq!(group.len(), INSERT_GROUP_ROWS);
        conn.prepare_cached(SAVEPOINT_GROUP)?.execute([])?;
        let result = (|| -> Result<()> {
            let mut insert = conn.prepare_cached(&self.sql.insert_inline_group)?;
            insert.raw_bind_parameter(1, now)?;
            for (slot, item) in group.iter().enumerate() {
                let first = 2 + GROUP_ROW_PARAMS * slot;
                insert.raw_bind_parameter(first, item.key)?;
                insert.raw_bind_parameter(first + 1, item.kind as i64)?;
                insert.raw_bind_parameter(first + 2, item.encoding.code())?;
                insert.raw_bind_parameter(first + 3, item.value.len() as i64)?;
                insert.raw_bind_parameter(first + 4, item.value)?;
            }
            if insert.raw_execute()? < group.len() {
                conn.prepare_cached(ROLLBACK_GROUP)?.execute([])?;
                self.upsert_each(conn, statements, group, now)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                conn.prepare_cached(RELEASE_GROUP)?.execute([])?;
                Ok(())
            }
            Err(err) => {
                // The caller rolls its transaction back as a whole; this only closes the
                // savepoint, and the first error is the one reported.
                let _ = conn.execute_batch(ABANDON_GROUP);
                Err(err)
            }
        }
    }

    /// Points `key` at a staged value inside the caller's write transaction. A chunked value's
    /// pending row must still exist (it is removed here); if maintenance reclaimed it, the
    /// switch is refused rather than pointing at missing chunks. `now` is the store's clock
    /// ([`Store::now_ms`], taken before the transaction): it decides whether an old value has
    /// expired and becomes the write time.
    ///
    /// # Errors
    /// [`Error::Corrupted`] if the pending upload was reclaimed; SQLite errors.
    pub fn commit_staged(
        &self,
        conn: &Connection,
        key: &[u8],
        kind: KeyKind,
        value: &Staged<'_>,
        now: i64,
        options: PutOptions,
    ) -> Result<()> {
        let meta = RowMeta {
            kind,
            encoding: options.encoding,
            now,
            expires_at_ms: options.expires_at_ms,
        };
        self.commit_staged_row(conn, key, value, meta)
    }

    /// [`KvTable::commit_staged`] with the row's metadata gathered.
    pub(super) fn commit_staged_row(
        &self,
        conn: &Connection,
        key: &[u8],
        value: &Staged<'_>,
        meta: RowMeta,
    ) -> Result<()> {
        validate_key(key)?;
        if let Staged::Chunked(blob) = value {
            let removed = conn
                .prepare_cached(&self.sql.drop_pending)?
                .execute([blob.blob_id])?;
            if removed != 1 {
                return Err(Error::Corrupted(format!(
                    "upload {} was reclaimed before it finished; write the value again",
                    blob.blob_id
                )));
            }
        }
        self.upsert(conn, key, value, meta)
    }

    /// Stores many values in one transaction: after it, either all are visible or none.
    ///
    /// # Errors
    /// As [`KvTable::put`]; on error nothing of the batch is visible.
    pub fn put_many<'a>(&self, store: &mut Store, items: &[PutItem<'a>]) -> Result<()> {
        for item in items {
            validate_key(item.key)?;
        }
        // Values of several chunks are staged first, each in short transactions, so the final
        // transaction only switches them in and the lock is never held for a whole large value.
        let mut writers: Vec<Option<BlobWriter>> = Vec::with_capacity(items.len());
        let mut staged: Vec<Option<BlobRef>> = Vec::with_capacity(items.len());
        let mut failure = None;
        for PutItem { value, .. } in items {
            // Values of one chunk are written inside the batch's transaction below.
            if value.len() <= self.chunk_size {
                writers.push(None);
                staged.push(None);
                continue;
            }
            let mut writer = BlobWriter::new(self.clone(), None);
            let result = writer
                .write(store, value)
                .and_then(|()| writer.stage(store));
            match result {
                Ok(StagedOwned::Chunked(blob)) => staged.push(Some(blob)),
                Ok(StagedOwned::Inline(_)) => staged.push(None),
                Err(err) => {
                    failure = Some(err);
                    writers.push(Some(writer));
                    break;
                }
            }
            writers.push(Some(writer));
        }
        // The store's clock, not the system's: an injected clock must decide expiry here as it
        // does for reads.
        let now = store.now_ms();
        let in_transaction = store.transaction_depth() > 0;
        let result = match failure {
            Some(err) => Err(err),
            None => store.write(|conn| {
                let policy = self.begin_write(conn)?;
                // Shared small values take the row-by-row path (each needs its content id).
                let grouped = !self.runtime.dedup_all();
                let mut statements = self.upsert_statements(conn)?;
                // Runs of inline values without expiry go in groups of INSERT_GROUP_ROWS through
                // one multi-row insert; the batch is still applied in order. `run` is where the
                // pending run starts.
                let mut run = 0;
                for (i, (item, blob)) in items.iter().zip(&staged).enumerate() {
                    let meta = RowMeta {
                        kind: item.kind,
                        encoding: item.encoding,
                        now,
                        expires_at_ms: item.expires_at_ms,
                    };
                    let inline = item.value.len() <= self.inline_limit();
                    if grouped && inline && blob.is_none() && item.expires_at_ms.is_none() {
                        if i + 1 - run == INSERT_GROUP_ROWS {
                            self.insert_group(conn, &mut statements, &items[run..=i], now)?;
                            run = i + 1;
                        }
                        continue;
                    }
                    self.upsert_each(conn, &mut statements, &items[run..i], now)?;
                    run = i + 1;
                    match blob {
                        Some(blob) => {
                            let chunked = Staged::Chunked(*blob);
                            self.commit_staged_row(conn, item.key, &chunked, meta)?;
                        }
                        None if inline => {
                            let inline = Staged::Inline(item.value);
                            let shared = self.share_if_asked(conn, &inline)?;
                            Self::upsert_with(&mut statements, item.key, &inline, shared, meta)?;
                        }
                        None => {
                            let blob = self.store_single_chunk(conn, item.value, now)?;
                            let chunked = Staged::Chunked(blob);
                            self.commit_staged_row(conn, item.key, &chunked, meta)?;
                        }
                    }
                }
                self.upsert_each(conn, &mut statements, &items[run..], now)?;
                let protected: HashSet<&[u8]> = items.iter().map(|i| i.key).collect();
                self.settle_after_write(conn, &policy, in_transaction, &protected, now)
            }),
        };
        if result.is_err() {
            for writer in writers.iter_mut().flatten() {
                let _ = writer.abort(store);
            }
        }
        result
    }

    /// Removes `key`; returns whether it existed. A chunked value's chunks go in the same
    /// transaction.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Busy`].
    pub fn delete(&self, store: &mut Store, key: &[u8]) -> Result<bool> {
        let now = store.now_ms();
        let sql = &self.sql.delete;
        // RETURNING tells whether the removed row was live (an expired row is removed too, but
        // it did not exist as far as readers were concerned).
        let delete = |conn: &Connection| -> Result<bool> {
            Ok(conn
                .prepare_cached(sql)?
                .query_row(params![key, now], |r| r.get::<_, bool>(0))
                .optional()?
                .unwrap_or(false))
        };
        // With branches, a delete stamps the clock for the trigger that records it.
        if !self.runtime.branched() && store.retry(|conn| self.plain_writes_in(conn))? {
            return store.write_one(delete);
        }
        store.write(|conn| {
            self.begin_write(conn)?;
            self.stamp_clock(conn, now)?;
            delete(conn)
        })
    }

    /// Removes every key of the table.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Busy`].
    pub fn clear(&self, store: &mut Store) -> Result<u64> {
        let now = store.now_ms();
        store.write(|conn| {
            self.begin_write(conn)?;
            self.stamp_clock(conn, now)?;
            let removed = conn.prepare_cached(&self.sql.clear)?.execute([])?;
            Ok(removed as u64)
        })
    }
}
