//! Keeping a table under its byte limit, and pruning by age and idleness.
//!
//! Every write transaction of a table first reads its policy row (one indexed row), writes the
//! reads recorded since the last write when reads are tracked, and, after its own rows, evicts
//! in policy order until the table is back under its limit. Expired keys go first. Keys the
//! write itself stored, and chunked values an open reader of this vault is reading, are never
//! evicted. Inside an explicit transaction nothing is evicted until it commits (the vault then
//! calls [`KvTable::enforce_limit`]), so a transaction never loses what it wrote or read.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::policy::{read_policy, CachePolicy, Eviction};
use super::KvTable;
use crate::error::Result;
use crate::store::Store;

/// Candidates read per step of an eviction.
const EVICTION_BATCH: i64 = 64;

impl KvTable {
    /// Inside a write transaction, before writing: the current policy (adopted by this
    /// table's runtime) with the recorded reads written.
    pub(super) fn begin_write(&self, conn: &Connection) -> Result<CachePolicy> {
        let (policy, _) = read_policy(conn, &self.name)?;
        self.runtime.adopt(&policy);
        if policy.eviction.tracks_reads() {
            self.runtime.flush_reads(conn, &self.name)?;
        }
        Ok(policy)
    }

    /// Whether a write may take the plain path: no limit, no small-value dedup and no read
    /// tracking in the stored policy. One small statement on `conn` (every single put runs
    /// it); the flags it implies are adopted, the others are adopted by [`Self::begin_write`]
    /// on the full path.
    pub(super) fn plain_writes_in(&self, conn: &Connection) -> Result<bool> {
        let mode: Option<i64> = match conn.prepare_cached(&self.sql.write_mode) {
            Ok(mut stmt) => stmt.query_row([], |r| r.get(0)).optional()?,
            // A file from before cache policies, opened read-only: nothing to apply.
            Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("no such table") => {
                Some(0)
            }
            Err(err) => return Err(err.into()),
        };
        match mode {
            None | Some(0) => self.runtime.adopt_plain(false),
            Some(1) => self.runtime.adopt_plain(true),
            Some(_) => return Ok(false),
        }
        Ok(true)
    }

    /// Evicts until the table is under its limit, inside the caller's write transaction,
    /// never touching `protected` keys or pinned blobs. Returns how many keys went.
    pub(super) fn evict_in(
        &self,
        conn: &Connection,
        policy: &CachePolicy,
        protected: &HashSet<&[u8]>,
        now: i64,
    ) -> Result<u64> {
        let Some(max) = policy.max_bytes else {
            return Ok(0);
        };
        let t = &self.name;
        let stored = |conn: &Connection| -> Result<u64> {
            let bytes: i64 = conn
                .prepare_cached(&format!(
                    "SELECT stored_bytes FROM \"{t}__cache\" WHERE id = 0"
                ))?
                .query_row([], |r| r.get(0))?;
            Ok(u64::try_from(bytes).unwrap_or(0))
        };
        if stored(conn)? <= max || policy.eviction == Eviction::None {
            return Ok(0);
        }
        // Expired keys are free to go and are not counted as evictions.
        conn.prepare_cached(&format!(
            "DELETE FROM \"{t}\" WHERE expires_at IS NOT NULL AND expires_at <= ?1"
        ))?
        .execute([now])?;
        let order = match policy.eviction {
            Eviction::None => return Ok(0),
            Eviction::LeastRecentlyStored => format!(
                "SELECT key, blob_id FROM \"{t}\" ORDER BY updated_at, key LIMIT ?1 OFFSET ?2"
            ),
            Eviction::LeastRecentlyUsed => format!(
                "SELECT a.key, k.blob_id FROM \"{t}__access\" a JOIN \"{t}\" k ON k.key = a.key \
                 ORDER BY a.used_at, a.key LIMIT ?1 OFFSET ?2"
            ),
            Eviction::LeastFrequentlyUsed => format!(
                "SELECT a.key, k.blob_id FROM \"{t}__access\" a JOIN \"{t}\" k ON k.key = a.key \
                 ORDER BY a.uses, a.used_at, a.key LIMIT ?1 OFFSET ?2"
            ),
        };
        let delete = format!("DELETE FROM \"{t}\" WHERE key = ?1");
        let mut evicted = 0u64;
        // Kept keys stay at the front of the order: the next batch starts after them.
        let mut kept = 0i64;
        'steps: while stored(conn)? > max {
            let batch: Vec<(Vec<u8>, Option<i64>)> = conn
                .prepare_cached(&order)?
                .query_map(params![EVICTION_BATCH, kept], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            if batch.is_empty() {
                break;
            }
            for (key, blob_id) in batch {
                let pinned = blob_id.is_some_and(|b| self.runtime.is_pinned(b));
                if pinned || protected.contains(key.as_slice()) {
                    kept += 1;
                    continue;
                }
                conn.prepare_cached(&delete)?.execute([&key])?;
                evicted += 1;
                if stored(conn)? <= max {
                    break 'steps;
                }
            }
        }
        if evicted > 0 {
            conn.prepare_cached(&format!(
                "UPDATE \"{t}__cache\" SET evictions = evictions + ?1 WHERE id = 0"
            ))?
            .execute([i64::try_from(evicted).unwrap_or(i64::MAX)])?;
        }
        Ok(evicted)
    }

    /// Evicts until the table is under its limit, in a write transaction of its own (after
    /// an explicit transaction commits, or after the limit is lowered). Returns how many keys
    /// went.
    ///
    /// # Errors
    /// [`crate::Error::ReadOnly`], [`crate::Error::Busy`].
    pub fn enforce_limit(&self, store: &mut Store, protected: &[&[u8]]) -> Result<u64> {
        if store.is_read_only() {
            return Ok(0);
        }
        let now = store.now_ms();
        let protected: HashSet<&[u8]> = protected.iter().copied().collect();
        store.write(|conn| {
            let policy = self.begin_write(conn)?;
            self.evict_in(conn, &policy, &protected, now)
        })
    }

    /// After a write inside `store.write`: evicts unless an explicit transaction is open
    /// (`in_transaction`, read before the write began).
    pub(super) fn settle_after_write(
        &self,
        conn: &Connection,
        policy: &CachePolicy,
        in_transaction: bool,
        protected: &HashSet<&[u8]>,
        now: i64,
    ) -> Result<()> {
        if !in_transaction {
            self.evict_in(conn, policy, protected, now)?;
        }
        Ok(())
    }

    /// Deletes keys that expired, were written more than `max_age_ms` ago, or were not used
    /// (read or written) for `max_idle_ms`; returns how many. Without read tracking (an
    /// eviction policy other than least-recently/frequently-used), a key's last use is its
    /// last write.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] for a negative age; [`crate::Error::ReadOnly`];
    /// [`crate::Error::Busy`].
    pub fn prune_by(
        &self,
        store: &mut Store,
        max_age_ms: Option<i64>,
        max_idle_ms: Option<i64>,
    ) -> Result<u64> {
        for (name, value) in [("max_age", max_age_ms), ("max_idle", max_idle_ms)] {
            if value.is_some_and(|v| v < 0) {
                return Err(crate::Error::InvalidArgument(format!(
                    "{name} must be >= 0 seconds"
                )));
            }
        }
        let now = store.now_ms();
        let t = &self.name;
        let r = &self.rows;
        store.write(|conn| {
            let policy = self.begin_write(conn)?;
            self.stamp_clock(conn, now)?;
            let mut removed = conn.prepare_cached(&self.sql.prune)?.execute([now])? as u64;
            if let Some(age) = max_age_ms {
                removed += conn
                    .prepare_cached(&format!("DELETE FROM \"{r}\" WHERE updated_at <= ?1"))?
                    .execute([now.saturating_sub(age)])? as u64;
            }
            if let Some(idle) = max_idle_ms {
                let cutoff = now.saturating_sub(idle);
                // Reads are tracked for the main branch only.
                let sql = if policy.eviction.tracks_reads() && !self.is_branch() {
                    format!(
                        "DELETE FROM \"{t}\" WHERE key IN \
                         (SELECT key FROM \"{t}__access\" WHERE used_at <= ?1)"
                    )
                } else {
                    format!("DELETE FROM \"{r}\" WHERE updated_at <= ?1")
                };
                removed += conn.prepare_cached(&sql)?.execute([cutoff])? as u64;
            }
            Ok(removed)
        })
    }

    /// Prunes expired keys every `interval` on the vault's maintenance thread (`None`: stop);
    /// see [`crate::Kv::set_auto_prune`], which also starts the thread.
    pub fn set_auto_prune(&self, interval: Option<std::time::Duration>, now: i64) {
        self.runtime.set_auto_prune(interval, now);
    }

    /// How often this table needs the maintenance thread: to write recorded reads while
    /// reads are tracked, and to auto-prune when asked.
    #[must_use]
    pub fn maintenance_interval(&self) -> Option<std::time::Duration> {
        let flush = self
            .runtime
            .tracking()
            .then_some(super::runtime::ACCESS_FLUSH_INTERVAL);
        match (flush, self.runtime.auto_prune_interval()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the policy this table's handles last read sets a byte limit.
    #[must_use]
    pub fn has_limit(&self) -> bool {
        self.runtime.limited()
    }

    /// Hits and misses recorded in memory and not yet written to the file.
    #[must_use]
    pub fn unwritten_counts(&self) -> (u64, u64) {
        self.runtime.unwritten_counts()
    }

    /// The maintenance thread's work for this table: write recorded reads, run a due
    /// auto-prune and enforce the limit. Returns whether anything was written.
    pub(crate) fn maintain(&self, store: &mut Store) -> Result<bool> {
        if store.is_read_only() || store.is_closed() || store.transaction_depth() > 0 {
            return Ok(false);
        }
        let now = store.now_ms();
        let prune_due = self.runtime.take_prune_due(now);
        let flush_due = self.runtime.tracking() && self.runtime.has_recorded_reads();
        if !prune_due && !flush_due {
            return Ok(false);
        }
        store.write(|conn| {
            let policy = self.begin_write(conn)?;
            self.stamp_clock(conn, now)?;
            if prune_due {
                conn.prepare_cached(&self.sql.prune)?.execute([now])?;
                self.evict_in(conn, &policy, &HashSet::new(), now)?;
            }
            Ok(true)
        })
    }

    /// Counts of distinct stored values among live keys (values stored the same way with the
    /// same bytes count once).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn count_unique_values(&self, store: &mut Store) -> Result<u64> {
        let t = &self.name;
        let now = store.now_ms();
        let sql = format!(
            "SELECT count(DISTINCT v) FROM (SELECT CASE \
               WHEN blob_id IS NOT NULL THEN (SELECT group_concat(cid) FROM \
                 (SELECT cid FROM \"{t}__chunks\" WHERE id BETWEEN (blob_id << 32) \
                  AND (blob_id << 32) + 4294967295 ORDER BY id)) \
               WHEN content_hash IS NOT NULL THEN CAST(content_hash AS TEXT) \
               ELSE inline_data END AS v \
             FROM \"{r}\" WHERE expires_at IS NULL OR expires_at > ?1)",
            r = self.rows
        );
        store.read(|conn| {
            let n: i64 = conn.query_row(&sql, [now], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    /// Drops stored contents no key or chunk refers to (left by an interrupted write of an
    /// older version, or by a damaged count); returns how many.
    ///
    /// # Errors
    /// [`crate::Error::ReadOnly`], [`crate::Error::Busy`].
    pub fn sweep(&self, store: &mut Store) -> Result<u64> {
        let t = &self.name;
        let mut holders = self.other_branch_tables(store)?;
        holders.push(self.rows.clone());
        if self.has_history_table(store)? {
            holders.push(format!("{t}__history"));
        }
        let kept: String = holders
            .iter()
            .map(|h| {
                format!(
                    " UNION ALL SELECT content_hash FROM \"{h}\" WHERE content_hash IS NOT NULL"
                )
            })
            .collect();
        store.write(|conn| {
            // Recount from the references themselves, then drop what nothing refers to.
            conn.execute_batch(&format!(
                "WITH counted AS MATERIALIZED (SELECT cid, count(*) AS n FROM \
                   (SELECT cid FROM \"{t}__chunks\" UNION ALL \
                    SELECT NULL WHERE 0{kept}) \
                   GROUP BY cid) \
                 UPDATE \"{t}__content\" SET refs = coalesce( \
                   (SELECT n FROM counted WHERE counted.cid = \"{t}__content\".cid), 0)"
            ))?;
            let removed = conn
                .prepare(&format!("DELETE FROM \"{t}__content\" WHERE refs <= 0"))?
                .execute([])?;
            Ok(removed as u64)
        })
    }

    /// Whether the key is in the access table (tests and `check`).
    #[doc(hidden)]
    pub fn access_row(&self, store: &mut Store, key: &[u8]) -> Result<Option<(i64, i64)>> {
        let sql = format!(
            "SELECT used_at, uses FROM \"{}__access\" WHERE key = ?1",
            self.name
        );
        store.retry(|conn| {
            Ok(conn
                .query_row(&sql, [key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })
    }
}
