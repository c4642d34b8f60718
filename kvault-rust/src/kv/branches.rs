//! Branches: named copies of a key-value table that share its stored values.
//!
//! The main branch is the table itself (every file has it; nothing changes until the first
//! fork). A branch `b` is a second key table `T__b<id>` with the same columns, created by
//! copying the key rows of the branch it was forked from in one statement (SQLite copies the
//! rows' records without decoding them). Chunks and contents are not copied: the rows name the
//! same blobs, and the release triggers (`release.rs`) free a blob only when no key table and
//! no kept version holds it. A fork costs one copied row per key, never the value bytes of a
//! chunked value.
//!
//! To tell changes from conflicts, every write to a key table of a branched table records the
//! key in `T__touched` with the table's current *epoch*, a counter that each fork and merge
//! advances. A branch forked at epoch `e` changed a key since the fork when its touch epoch is
//! at least `e`; a merge remembers its epoch per (source, target) pair in `T__merges`, so the
//! next merge between them looks only at later changes.
//!
//! Tables: `T__branches` (id, name, parent, fork epoch, creation time), `T__branch_epoch` (one
//! row), `T__merges`, `T__touched` (branch, key, epoch of the last write, its time).

use rusqlite::{params, Connection};

use super::release::{self, key_table};
use super::schema::key_table_ddl;
use super::sql::Sql;
use super::KvTable;
use crate::error::{Error, Result};
use crate::store::Store;

/// The name of the branch every table has: the table itself.
pub const MAIN_BRANCH: &str = "main";

/// Longest branch name, in bytes.
const MAX_BRANCH_NAME: usize = 128;

/// A branch of a key-value table (see [`KvTable::branches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchInfo {
    /// Its name.
    pub name: String,
    /// Its id (0 for the main branch; ids are never reused).
    pub id: i64,
    /// The branch it was forked from (None for the main branch).
    pub parent: Option<String>,
    /// When it was forked (ms; the first fork's time for the main branch).
    pub created_at_ms: i64,
    /// The table's epoch at the fork.
    pub fork_epoch: i64,
}

/// Checks a branch name: 1 to 128 bytes of printable text.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the rule that was broken.
pub fn validate_branch_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_BRANCH_NAME || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "a branch name is 1 to {MAX_BRANCH_NAME} bytes of printable text; got {name:?}"
        )));
    }
    if name.trim() != name {
        return Err(Error::InvalidArgument(format!(
            "a branch name may not start or end with white space; got {name:?}"
        )));
    }
    Ok(())
}

/// Whether table `t` has branches (its branch tables exist).
pub(super) fn branching_on(conn: &Connection, t: &str) -> Result<bool> {
    crate::table_exists(conn, &format!("{t}__branches"))
}

/// The triggers that record writes to key table `table` (branch `bid`) in `T__touched`.
fn touch_triggers(t: &str, table: &str, bid: i64) -> String {
    let touch = |key: &str, at: &str| {
        format!(
            "INSERT INTO \"{t}__touched\" (bid, key, epoch, at_ms)
                VALUES ({bid}, {key},
                        (SELECT epoch FROM \"{t}__branch_epoch\" WHERE id = 0), {at})
                ON CONFLICT (bid, key) DO UPDATE SET epoch = excluded.epoch,
                                                     at_ms = excluded.at_ms;"
        )
    };
    format!(
        "CREATE TRIGGER IF NOT EXISTS \"{table}__touch_insert\" AFTER INSERT ON \"{table}\"
            BEGIN {insert} END;
         CREATE TRIGGER IF NOT EXISTS \"{table}__touch_update\"
            AFTER UPDATE OF updated_at ON \"{table}\"
            BEGIN {insert} END;
         CREATE TRIGGER IF NOT EXISTS \"{table}__touch_delete\" AFTER DELETE ON \"{table}\"
            BEGIN {delete} END;",
        insert = touch("new.key", "new.updated_at"),
        delete = touch(
            "old.key",
            &format!("max(old.updated_at, (SELECT clock_ms FROM \"{t}__cache\" WHERE id = 0))")
        ),
    )
}

fn drop_touch_triggers(table: &str) -> String {
    format!(
        "DROP TRIGGER IF EXISTS \"{table}__touch_insert\";
         DROP TRIGGER IF EXISTS \"{table}__touch_update\";
         DROP TRIGGER IF EXISTS \"{table}__touch_delete\";"
    )
}

/// Creates the branch tables of `t` (its first fork), with the main branch as branch 0.
fn install(conn: &Connection, t: &str, now: i64) -> Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{t}__branches\" (
            bid INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            parent INTEGER,
            fork_epoch INTEGER NOT NULL,
            created_at INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS \"{t}__branch_epoch\" (
            id INTEGER PRIMARY KEY CHECK (id = 0),
            epoch INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS \"{t}__merges\" (
            source INTEGER NOT NULL,
            target INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            PRIMARY KEY (source, target)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS \"{t}__touched\" (
            bid INTEGER NOT NULL,
            key BLOB NOT NULL,
            epoch INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            PRIMARY KEY (bid, key)) WITHOUT ROWID;
         INSERT OR IGNORE INTO \"{t}__branch_epoch\" (id, epoch) VALUES (0, 0);
         {touch}",
        touch = touch_triggers(t, t, 0),
    ))?;
    conn.execute(
        &format!(
            "INSERT OR IGNORE INTO \"{t}__branches\" (bid, name, parent, fork_epoch, created_at) \
             VALUES (0, ?1, NULL, 0, ?2)"
        ),
        params![MAIN_BRANCH, now],
    )?;
    Ok(())
}

/// Drops the branch tables of `t` (its last branch is gone): the table is plain again.
fn uninstall(conn: &Connection, t: &str) -> Result<()> {
    conn.execute_batch(&format!(
        "{touch}
         DROP TABLE IF EXISTS \"{t}__touched\";
         DROP TABLE IF EXISTS \"{t}__merges\";
         DROP TABLE IF EXISTS \"{t}__branch_epoch\";
         DROP TABLE IF EXISTS \"{t}__branches\";",
        touch = drop_touch_triggers(t),
    ))?;
    Ok(())
}

/// Advances the table's epoch and returns the new one.
pub(super) fn next_epoch(conn: &Connection, t: &str) -> Result<i64> {
    Ok(conn.query_row(
        &format!("UPDATE \"{t}__branch_epoch\" SET epoch = epoch + 1 WHERE id = 0 RETURNING epoch"),
        [],
        |r| r.get(0),
    )?)
}

/// Every branch of `t`, by id (empty when it has none).
pub(super) fn list(conn: &Connection, t: &str) -> Result<Vec<BranchInfo>> {
    if !branching_on(conn, t)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT b.bid, b.name, p.name, b.fork_epoch, b.created_at FROM \"{t}__branches\" b \
         LEFT JOIN \"{t}__branches\" p ON p.bid = b.parent ORDER BY b.bid"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(BranchInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            parent: r.get(2)?,
            fork_epoch: r.get(3)?,
            created_at_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Branch `name` of `t`, if it exists (the main branch always does).
pub(super) fn find(conn: &Connection, t: &str, name: &str) -> Result<Option<BranchInfo>> {
    if !branching_on(conn, t)? {
        return Ok((name == MAIN_BRANCH).then(|| BranchInfo {
            name: MAIN_BRANCH.to_string(),
            id: 0,
            parent: None,
            created_at_ms: 0,
            fork_epoch: 0,
        }));
    }
    Ok(list(conn, t)?.into_iter().find(|b| b.name == name))
}

/// Branch `name` of `t`, or [`Error::InvalidArgument`] naming it.
pub(super) fn require(conn: &Connection, t: &str, name: &str) -> Result<BranchInfo> {
    find(conn, t, name)?
        .ok_or_else(|| Error::InvalidArgument(format!("table {t:?} has no branch named {name:?}")))
}

/// Whether table `t` counts the references of shared small values (`dedup = "all"` was set
/// at some time), so a branch's key table needs the same triggers.
fn shares_small_values(conn: &Connection, t: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?1)",
        )?
        .query_row([format!("{t}__share_insert")], |r| r.get(0))?)
}

impl KvTable {
    /// The handle of this table on branch `name`: reads and writes go to that branch's keys.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the branch does not exist; SQLite errors.
    pub fn open_branch(&self, store: &mut Store, name: &str) -> Result<Self> {
        validate_branch_name(name)?;
        let info = store.retry(|conn| require(conn, &self.name, name))?;
        Ok(self.on_branch(store, &info))
    }

    /// This table's handle for branch `info`.
    fn on_branch(&self, store: &mut Store, info: &BranchInfo) -> Self {
        let rows = key_table(&self.name, info.id);
        let runtime = store
            .extension::<super::runtime::Runtimes>()
            .0
            .entry(rows.clone())
            .or_default()
            .clone();
        runtime.set_branched(self.runtime.branched());
        runtime.set_compression(self.runtime.compression());
        runtime.set_coded(self.runtime.coded());
        Self {
            name: self.name.clone(),
            sql: std::sync::Arc::new(Sql::new(&self.name, &rows)),
            rows,
            branch: info.id,
            branch_name: info.name.clone(),
            inline_max: self.inline_max,
            chunk_size: self.chunk_size,
            runtime,
        }
    }

    /// The table's branches, main first then in creation order (only `main` before the
    /// first fork).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn branches(&self, store: &mut Store) -> Result<Vec<BranchInfo>> {
        let t = &self.name;
        store.read(|conn| {
            let found = list(conn, t)?;
            if found.is_empty() {
                return Ok(find(conn, t, MAIN_BRANCH)?.into_iter().collect());
            }
            Ok(found)
        })
    }

    /// Forks branch `name` from branch `from` (this handle's branch when None) in one write
    /// transaction: one copied key row per key of `from`; chunked values are shared, not
    /// copied. Returns the new branch.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad or taken name, an unknown `from`, or a table with
    /// a byte limit (eviction would delete one branch's values under another);
    /// [`Error::ReadOnly`]; SQLite errors.
    pub fn create_branch(
        &self,
        store: &mut Store,
        name: &str,
        from: Option<&str>,
    ) -> Result<BranchInfo> {
        validate_branch_name(name)?;
        if let Some(from) = from {
            validate_branch_name(from)?;
        }
        let t = &self.name;
        let now = store.now_ms();
        let info = store.write(|conn| {
            let (policy, _) = super::policy::read_policy(conn, t)?;
            if policy.max_bytes.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "table {t:?} has a byte limit: a cache cannot have branches (eviction \
                     would drop values other branches still show); remove the limit first"
                )));
            }
            let source = require(conn, t, from.unwrap_or(&self.branch_name))?;
            if find(conn, t, name)?.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "table {t:?} already has a branch named {name:?}"
                )));
            }
            install(conn, t, now)?;
            let epoch = next_epoch(conn, t)?;
            let bid: i64 = conn.query_row(
                &format!(
                    "INSERT INTO \"{t}__branches\" (name, parent, fork_epoch, created_at) \
                     VALUES (?1, ?2, ?3, ?4) RETURNING bid"
                ),
                params![name, source.id, epoch, now],
                |r| r.get(0),
            )?;
            let rows = key_table(t, bid);
            let from_rows = key_table(t, source.id);
            // The plain `INSERT INTO .. SELECT *` into an empty table without triggers or
            // secondary indexes is SQLite's transfer path: records are copied undecoded.
            conn.execute_batch(&format!(
                "{ddl}
                 INSERT INTO \"{rows}\" SELECT * FROM \"{from_rows}\";",
                ddl = key_table_ddl(&rows),
            ))?;
            if shares_small_values(conn, t)? {
                conn.execute(
                    &format!(
                        "UPDATE \"{t}__content\" SET refs = refs + s.n FROM \
                         (SELECT content_hash AS cid, count(*) AS n FROM \"{rows}\" \
                          WHERE content_hash IS NOT NULL GROUP BY content_hash) AS s \
                         WHERE \"{t}__content\".cid = s.cid"
                    ),
                    [],
                )?;
                conn.execute_batch(&super::shared_values::reference_triggers(t, &rows))?;
            }
            conn.execute_batch(&touch_triggers(t, &rows, bid))?;
            release::refresh(conn, t)?;
            Ok(BranchInfo {
                name: name.to_string(),
                id: bid,
                parent: Some(source.name),
                created_at_ms: now,
                fork_epoch: epoch,
            })
        })?;
        self.runtime.set_branched(true);
        Ok(info)
    }

    /// Deletes branch `name` and releases the values only it held. The main branch, and a
    /// branch that others were forked from, cannot be deleted. Deleting the last branch makes
    /// the table plain again.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for the main branch, an unknown branch or one with child
    /// branches; [`Error::ReadOnly`]; SQLite errors.
    pub fn delete_branch(&self, store: &mut Store, name: &str) -> Result<()> {
        validate_branch_name(name)?;
        let t = &self.name;

        let left = store.write(|conn| {
            let info = require(conn, t, name)?;
            if info.id == 0 {
                return Err(Error::InvalidArgument(
                    "the main branch cannot be deleted".into(),
                ));
            }
            let children: Vec<String> = list(conn, t)?
                .into_iter()
                .filter(|b| b.parent.as_deref() == Some(name))
                .map(|b| b.name)
                .collect();
            if !children.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "branch {name:?} has branches forked from it ({}): delete them first",
                    children.join(", ")
                )));
            }
            let rows = key_table(t, info.id);
            // What only this branch held is freed first; then the table goes whole (its
            // triggers with it), without a delete per row.
            conn.execute_batch(&drop_touch_triggers(&rows))?;
            release::release_table(conn, t, &rows)?;
            conn.execute_batch(&format!("DROP TABLE \"{rows}\";"))?;
            conn.execute(
                &format!("DELETE FROM \"{t}__touched\" WHERE bid = ?1"),
                [info.id],
            )?;
            conn.execute(
                &format!("DELETE FROM \"{t}__merges\" WHERE source = ?1 OR target = ?1"),
                [info.id],
            )?;
            conn.execute(
                &format!("DELETE FROM \"{t}__branches\" WHERE bid = ?1"),
                [info.id],
            )?;
            let left: i64 = conn.query_row(
                &format!("SELECT count(*) FROM \"{t}__branches\" WHERE bid != 0"),
                [],
                |r| r.get(0),
            )?;
            if left == 0 {
                uninstall(conn, t)?;
            }
            release::refresh(conn, t)?;
            Ok(left)
        })?;
        self.runtime.set_branched(left > 0);
        Ok(())
    }

    /// The key tables of this table's branches other than this handle's.
    pub(super) fn other_branch_tables(&self, store: &mut Store) -> Result<Vec<String>> {
        let t = &self.name;
        let mut all = vec![t.clone()];
        all.extend(store.retry(|conn| release::branch_key_tables(conn, t))?);
        Ok(all.into_iter().filter(|k| *k != self.rows).collect())
    }

    /// The key table of branch `bid` of this table (for diffs and merges).
    pub(super) fn key_table_of(&self, bid: i64) -> String {
        key_table(&self.name, bid)
    }

    /// Refuses calls that only the main branch supports (history, cache policy).
    pub(super) fn main_branch_only(&self, what: &str) -> Result<()> {
        if self.branch != 0 {
            return Err(Error::InvalidArgument(format!(
                "{what} is kept for the main branch of table {:?} only; this handle is on \
                 branch {:?}",
                self.name, self.branch_name
            )));
        }
        Ok(())
    }
}
