//! Value history: with `history` set in the table's policy, every value a write replaces and
//! every key a delete (or expiry) removes is kept in `T__history`, newest last per key, up to
//! the policy's count.
//!
//! Triggers do the keeping, so no write path can forget it: a `BEFORE` trigger copies the old
//! row before an update or delete, so that the version's storage changes owner before the
//! `AFTER` triggers that would release it run. A kept chunked value keeps its chunks (the
//! release triggers skip a blob that history holds) and so shares content with every other
//! version through deduplication; a kept shared small value counts as a reference of its
//! content. Dropping a history row releases what it held. Deletes record their time from
//! `T__cache.clock_ms`, which every delete path stamps with the store's clock first.

use rusqlite::{params, Connection, OptionalExtension};

use super::policy::History;
use super::types::{usize_of, BlobRef, Encoding, StoredValue, MAX_CHUNKS_PER_BLOB};
use super::KvTable;
use crate::error::{Error, Result};
use crate::store::Store;

/// How a kept version ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionEnd {
    /// It is the current value.
    Current,
    /// A write replaced it.
    Replaced,
    /// The key was deleted.
    Deleted,
    /// It expired.
    Expired,
}

/// One entry of a key's history, newest first (see [`KvTable::history`]).
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryEntry {
    /// A version of the value, written at `written_at_ms`.
    Value {
        /// Its version number (restarts at 1 after a delete).
        version: i64,
        /// When it was written (ms).
        written_at_ms: i64,
        /// How it ended.
        end: VersionEnd,
        /// Its bytes and encoding.
        value: StoredValue,
    },
    /// The key was deleted (or expired) at `at_ms`, ending `version`.
    Tombstone {
        /// The version that ended.
        version: i64,
        /// When (ms).
        at_ms: i64,
        /// Deleted or expired.
        end: VersionEnd,
    },
}

/// Creates the history table, its indexes and the triggers that keep versions, then rebuilds
/// the release triggers so that they leave a kept version's chunks alone.
pub(super) fn install(conn: &Connection, t: &str) -> Result<()> {
    // One trigger program per write (each program run costs a VDBE frame): keep the old
    // version, count its shared content, drop the key's versions beyond the count. Rows are
    // appended in `hid` (rowid) order, so a write adds to the table's last page and the
    // versions it drops, written together earlier, sit together too; only the small
    // `(key, hid)` index is touched at random.
    let keep = |ended: &str, how: &str| {
        format!(
            "INSERT INTO \"{t}__history\" (key, version, key_kind, encoding, size,
                 inline_data, blob_id, chunk_size, content_hash, written_at, ended_at, ended_by)
             VALUES (old.key, old.version, old.key_kind, old.encoding, old.size,
                 old.inline_data, old.blob_id, old.chunk_size, old.content_hash, old.updated_at,
                 CASE WHEN old.expires_at IS NOT NULL AND old.expires_at <= {ended}
                      THEN old.expires_at ELSE {ended} END,
                 CASE WHEN old.expires_at IS NOT NULL AND old.expires_at <= {ended}
                      THEN 2 ELSE {how} END);
             UPDATE \"{t}__content\" SET refs = refs + 1 WHERE cid = old.content_hash;
             DELETE FROM \"{t}__history\" WHERE key = old.key
                 AND (SELECT history_keep FROM \"{t}__cache\" WHERE id = 0) > 0
                 AND hid <= (SELECT hid FROM \"{t}__history\" WHERE key = old.key
                             ORDER BY hid DESC LIMIT 1
                             OFFSET (SELECT history_keep FROM \"{t}__cache\" WHERE id = 0));"
        )
    };
    let delete_time =
        format!("max(old.updated_at, (SELECT clock_ms FROM \"{t}__cache\" WHERE id = 0))");
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{t}__history\" (
            hid INTEGER PRIMARY KEY,
            key BLOB NOT NULL,
            version INTEGER NOT NULL,
            key_kind INTEGER NOT NULL,
            encoding INTEGER NOT NULL,
            size INTEGER NOT NULL,
            inline_data BLOB,
            blob_id INTEGER,
            chunk_size INTEGER,
            content_hash BLOB,
            written_at INTEGER NOT NULL,
            ended_at INTEGER NOT NULL,
            ended_by INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS \"{t}__history_by_key\" ON \"{t}__history\" (key, hid);
         CREATE INDEX IF NOT EXISTS \"{t}__history_by_blob\" ON \"{t}__history\" (blob_id)
            WHERE blob_id IS NOT NULL;
         CREATE TRIGGER IF NOT EXISTS \"{t}__history_update\" BEFORE UPDATE OF updated_at ON \"{t}\"
            BEGIN {keep_update} END;
         CREATE TRIGGER IF NOT EXISTS \"{t}__history_delete\" BEFORE DELETE ON \"{t}\"
            BEGIN {keep_delete} END;",
        keep_update = keep("new.updated_at", "0"),
        keep_delete = keep(&delete_time, "1"),
    ))?;
    super::release::refresh(conn, t)
}

/// Drops every kept version (releasing what they hold), then the history objects, and
/// rebuilds the release triggers without the history.
pub(super) fn uninstall(conn: &Connection, t: &str) -> Result<()> {
    conn.execute_batch(&format!(
        "DROP TRIGGER IF EXISTS \"{t}__history_update\";
         DROP TRIGGER IF EXISTS \"{t}__history_delete\";
         DELETE FROM \"{t}__history\";
         DROP TRIGGER IF EXISTS \"{t}__history_release\";
         DROP TABLE IF EXISTS \"{t}__history\";"
    ))?;
    super::release::refresh(conn, t)
}

/// Keeps at most `history`'s count of versions per key (after the count was lowered).
pub(super) fn trim_all(conn: &Connection, t: &str, history: History) -> Result<()> {
    if let History::Last(n) = history {
        conn.execute(
            &format!(
                "DELETE FROM \"{t}__history\" WHERE hid IN (SELECT hid FROM \
                 (SELECT hid, row_number() OVER (PARTITION BY key ORDER BY hid DESC) AS r \
                  FROM \"{t}__history\") WHERE r > ?1)"
            ),
            [i64::from(n)],
        )?;
    }
    Ok(())
}

/// Whether table `t` has its history table (history is or was on).
fn history_table_in(conn: &Connection, t: &str) -> Result<bool> {
    crate::table_exists(conn, &format!("{t}__history"))
}

/// The columns read for a kept version, in [`stored_from_row`]'s order.
const VERSION_COLUMNS: &str =
    "version, written_at, ended_at, ended_by, encoding, size, inline_data, blob_id, chunk_size, \
     content_hash";

fn end_of(code: i64) -> Result<VersionEnd> {
    match code {
        0 => Ok(VersionEnd::Replaced),
        1 => Ok(VersionEnd::Deleted),
        2 => Ok(VersionEnd::Expired),
        CURRENT_END => Ok(VersionEnd::Current),
        other => Err(Error::Corrupted(format!(
            "unknown history end code {other}"
        ))),
    }
}

/// The end code [`CURRENT_COLUMNS`] gives the current row (never stored).
const CURRENT_END: i64 = 3;

/// The current row of `T` read as a version, in [`VERSION_COLUMNS`]' order (an expiry is its
/// end; without one it never ends).
const CURRENT_COLUMNS: &str =
    "version, updated_at, coalesce(expires_at, 9223372036854775807), 3, encoding, size, \
     inline_data, blob_id, chunk_size, content_hash";

/// A kept (or the current) version's row: (version, written_at, ended_at, end, value
/// location).
struct VersionRow {
    version: i64,
    written_at: i64,
    ended_at: i64,
    end: VersionEnd,
    encoding: Encoding,
    size: i64,
    inline: Option<Vec<u8>>,
    blob_id: Option<i64>,
    chunk_size: Option<i64>,
    shared: Option<i64>,
}

/// A version row as read, before its end and encoding codes are checked.
type RawVersion = (VersionRow, i64, i64);

impl VersionRow {
    /// Reads a row selected as [`VERSION_COLUMNS`] (or [`CURRENT_COLUMNS`]).
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawVersion> {
        Ok((
            Self {
                version: r.get(0)?,
                written_at: r.get(1)?,
                ended_at: r.get(2)?,
                end: VersionEnd::Current,
                encoding: Encoding::RAW,
                size: r.get(5)?,
                inline: r.get(6)?,
                blob_id: r.get(7)?,
                chunk_size: r.get(8)?,
                shared: r.get(9)?,
            },
            r.get(3)?,
            r.get(4)?,
        ))
    }

    /// The row with its end and encoding codes checked (a damaged code is an error).
    fn checked((mut row, end, encoding): RawVersion) -> Result<Self> {
        row.end = end_of(end)?;
        row.encoding = Encoding::from_i64(encoding)?;
        Ok(row)
    }
}

impl KvTable {
    /// The bytes of a chunked value named by a row (`what` names the row in errors): its size
    /// and chunk size checked, its extent verified, then read whole.
    pub(super) fn whole_blob(
        &self,
        conn: &Connection,
        blob_id: i64,
        size: i64,
        chunk_size: Option<i64>,
        what: &str,
    ) -> Result<Vec<u8>> {
        let (Ok(size), Ok(chunk_size)) =
            (u64::try_from(size), u64::try_from(chunk_size.unwrap_or(0)))
        else {
            return Err(Error::Corrupted(format!("{what} has a negative size")));
        };
        if chunk_size == 0 || size.div_ceil(chunk_size) > MAX_CHUNKS_PER_BLOB {
            return Err(Error::Corrupted(format!(
                "{what} has an impossible chunk size"
            )));
        }
        let blob = BlobRef {
            blob_id,
            size,
            chunk_size,
        };
        self.verify_extent(conn, &blob)?;
        let mut bytes = vec![0u8; usize_of(size)?];
        self.read_blob_range(conn, &blob, 0, &mut bytes)?;
        Ok(bytes)
    }

    /// Inside a write transaction that may delete rows: records the store's clock where the
    /// history and branch delete triggers read it (nothing without history or branches).
    pub(super) fn stamp_clock(&self, conn: &Connection, now: i64) -> Result<()> {
        if self.runtime.history() || self.runtime.branched() {
            conn.prepare_cached(&format!(
                "UPDATE \"{}__cache\" SET clock_ms = ?1 WHERE id = 0",
                self.name
            ))?
            .execute([now])?;
        }
        Ok(())
    }

    /// The bytes of a kept version.
    fn version_value(&self, conn: &Connection, row: &VersionRow) -> Result<StoredValue> {
        let bytes = match (&row.inline, row.blob_id, row.shared) {
            (Some(bytes), None, None) => bytes.clone(),
            (None, None, Some(cid)) => conn
                .prepare_cached(&format!(
                    "SELECT data FROM \"{}__content\" WHERE cid = ?1",
                    self.name
                ))?
                .query_row([cid], |r| r.get(0))
                .optional()?
                .ok_or_else(|| {
                    Error::Corrupted(format!("kept version's content {cid} is missing"))
                })?,
            (None, Some(blob_id), None) => {
                self.whole_blob(conn, blob_id, row.size, row.chunk_size, "kept version")?
            }
            _ => {
                return Err(Error::Corrupted(
                    "kept version names no storage, or more than one".into(),
                ))
            }
        };
        if bytes.len() as i64 != row.size {
            return Err(Error::Corrupted(format!(
                "kept version has {} bytes; its row records {}",
                bytes.len(),
                row.size
            )));
        }
        Ok(StoredValue {
            bytes,
            encoding: row.encoding,
        })
    }

    fn kept_versions(
        &self,
        conn: &Connection,
        key: &[u8],
        limit: Option<usize>,
    ) -> Result<Vec<VersionRow>> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM \"{}__history\" WHERE key = ?1 ORDER BY hid DESC \
             LIMIT ?2",
            self.name
        );
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        // Branches keep no history: only the main branch's writes reach `T__history`.
        if self.is_branch() || !history_table_in(conn, &self.name)? {
            return Ok(Vec::new());
        }
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params![key, limit], VersionRow::read)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(VersionRow::checked).collect()
    }

    /// The current row as a version (live or expired-not-pruned), if any.
    fn current_version(&self, conn: &Connection, key: &[u8]) -> Result<Option<VersionRow>> {
        let sql = format!(
            "SELECT {CURRENT_COLUMNS} FROM \"{}\" WHERE key = ?1",
            self.rows
        );
        let row = conn
            .prepare_cached(&sql)?
            .query_row([key], VersionRow::read)
            .optional()?;
        row.map(VersionRow::checked).transpose()
    }

    /// The key's history, newest first: its current value (if any), then each kept version,
    /// with a tombstone before a version that a delete or expiry ended. `limit` counts value
    /// entries. Empty when history is off and the key is absent.
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupted`] for a damaged row.
    pub fn history(
        &self,
        store: &mut Store,
        key: &[u8],
        limit: Option<usize>,
    ) -> Result<Vec<HistoryEntry>> {
        let now = store.now_ms();
        store.read(|conn| {
            let mut rows = Vec::new();
            if let Some(mut current) = self.current_version(conn, key)? {
                if current.ended_at <= now {
                    current.end = VersionEnd::Expired;
                }
                rows.push(current);
            }
            rows.extend(self.kept_versions(conn, key, limit)?);
            let mut entries = Vec::new();
            for row in rows.into_iter().take(limit.unwrap_or(usize::MAX)) {
                if matches!(row.end, VersionEnd::Deleted | VersionEnd::Expired) {
                    entries.push(HistoryEntry::Tombstone {
                        version: row.version,
                        at_ms: row.ended_at,
                        end: row.end,
                    });
                }
                let value = self.version_value(conn, &row)?;
                entries.push(HistoryEntry::Value {
                    version: row.version,
                    written_at_ms: row.written_at,
                    end: row.end,
                    value,
                });
            }
            Ok(entries)
        })
    }

    /// The value of `key` at `version` (the newest version with that number: numbers restart
    /// after a delete), or `None` when it is neither current nor kept.
    ///
    /// # Errors
    /// As [`KvTable::history`].
    pub fn get_version(
        &self,
        store: &mut Store,
        key: &[u8],
        version: i64,
    ) -> Result<Option<StoredValue>> {
        let now = store.now_ms();
        store.read(|conn| {
            if let Some(current) = self.current_version(conn, key)? {
                if current.version == version && current.ended_at > now {
                    return self.version_value(conn, &current).map(Some);
                }
            }
            let sql = format!(
                "SELECT {VERSION_COLUMNS} FROM \"{}__history\" WHERE key = ?1 AND version = ?2 \
                 ORDER BY hid DESC LIMIT 1",
                self.name
            );
            if !history_table_in(conn, &self.name)? {
                return Ok(None);
            }
            let row = conn
                .prepare_cached(&sql)?
                .query_row(params![key, version], VersionRow::read)
                .optional()?;
            match row {
                Some(row) => self
                    .version_value(conn, &VersionRow::checked(row)?)
                    .map(Some),
                None => Ok(None),
            }
        })
    }

    /// The value `key` had at `at_ms` (as the vault's clock read then), or `None` when it did
    /// not exist then or that version is no longer kept.
    ///
    /// # Errors
    /// As [`KvTable::history`].
    pub fn get_as_of(
        &self,
        store: &mut Store,
        key: &[u8],
        at_ms: i64,
    ) -> Result<Option<StoredValue>> {
        self.main_branch_only("value history")?;
        store.read(|conn| {
            if let Some(current) = self.current_version(conn, key)? {
                if current.written_at <= at_ms {
                    return if current.ended_at > at_ms {
                        self.version_value(conn, &current).map(Some)
                    } else {
                        Ok(None)
                    };
                }
            }
            for row in self.kept_versions(conn, key, None)? {
                if row.written_at <= at_ms {
                    return if row.ended_at > at_ms {
                        self.version_value(conn, &row).map(Some)
                    } else {
                        Ok(None)
                    };
                }
            }
            Ok(None)
        })
    }

    /// Keys (with their kinds) that existed at `at_ms`, in key order, strictly after `after`,
    /// at most `limit`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn keys_as_of(
        &self,
        store: &mut Store,
        at_ms: i64,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, super::KeyKind)>> {
        self.main_branch_only("value history")?;
        let t = &self.name;
        let history = self.has_history_table(store)?;
        let kept = if history {
            format!(
                " UNION SELECT key, key_kind FROM \"{t}__history\" \
                 WHERE written_at <= ?1 AND ended_at > ?1 AND key > ?2"
            )
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT key, key_kind FROM (SELECT key, key_kind FROM \"{t}\" WHERE updated_at <= ?1 \
             AND (expires_at IS NULL OR expires_at > ?1) AND key > ?2{kept}) \
             ORDER BY key LIMIT ?3"
        );
        let after = after.unwrap_or(&[]).to_vec();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        store.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(params![at_ms, after, limit], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(k, kind)| Ok((k, super::KeyKind::from_i64(kind)?)))
                .collect()
        })
    }

    pub(super) fn has_history_table(&self, store: &mut Store) -> Result<bool> {
        store.retry(|conn| history_table_in(conn, &self.name))
    }

    /// Drops kept versions beyond the newest `keep` per key and those that ended more than
    /// `older_than_ms` ago; returns how many went.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a negative age; [`Error::ReadOnly`], [`Error::Busy`].
    pub fn prune_history(
        &self,
        store: &mut Store,
        keep: Option<u32>,
        older_than_ms: Option<i64>,
    ) -> Result<u64> {
        self.main_branch_only("value history")?;
        if older_than_ms.is_some_and(|a| a < 0) {
            return Err(Error::InvalidArgument(
                "older_than must be >= 0 seconds".into(),
            ));
        }
        if !self.has_history_table(store)? {
            return Ok(0);
        }
        let t = &self.name;
        let now = store.now_ms();
        store.write(|conn| {
            let mut removed = 0u64;
            if let Some(keep) = keep {
                let before: i64 =
                    conn.query_row(&format!("SELECT count(*) FROM \"{t}__history\""), [], |r| {
                        r.get(0)
                    })?;
                trim_all(conn, t, History::Last(keep.max(1)))?;
                if keep == 0 {
                    conn.execute(&format!("DELETE FROM \"{t}__history\""), [])?;
                }
                let after: i64 =
                    conn.query_row(&format!("SELECT count(*) FROM \"{t}__history\""), [], |r| {
                        r.get(0)
                    })?;
                removed += u64::try_from(before - after).unwrap_or(0);
            }
            if let Some(age) = older_than_ms {
                removed += conn.execute(
                    &format!("DELETE FROM \"{t}__history\" WHERE ended_at <= ?1"),
                    [now.saturating_sub(age)],
                )? as u64;
            }
            Ok(removed)
        })
    }

    /// `(kept versions, their bytes)` of the table (0, 0 without history).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn history_stats(&self, store: &mut Store) -> Result<(u64, u64)> {
        if !self.has_history_table(store)? {
            return Ok((0, 0));
        }
        let sql = format!(
            "SELECT count(*), total(size) FROM \"{}__history\"",
            self.name
        );
        store.read(|conn| {
            Ok(conn.query_row(&sql, [], |r| {
                Ok((
                    u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    r.get::<_, f64>(1)? as u64,
                ))
            })?)
        })
    }
}
