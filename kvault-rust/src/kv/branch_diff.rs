//! Comparing two branches: which keys one has that the other lacks, and which differ.
//!
//! Only keys written since the branches' common fork point can differ (see `branches`), so a
//! diff reads the touch records of the branches on the path between the two and their common
//! ancestor, not every key: its cost is the number of changed keys, not the table's size.
//! Each candidate is then compared row against row; values stored by the same blob or
//! content are equal without reading their bytes.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::branches::{list, require, BranchInfo};
use super::types::{chunk_rowid, KeyKind, MAX_CHUNKS_PER_BLOB};
use super::KvTable;
use crate::error::{Error, Result};
use crate::store::Store;

/// How a key differs between two branches `a` and `b` (see [`KvTable::diff`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// In `b`, not in `a`.
    Added,
    /// In `a`, not in `b`.
    Removed,
    /// In both, with different values.
    Changed,
}

/// One key of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// How the key was given.
    pub kind: KeyKind,
    /// How it differs.
    pub change: Change,
}

/// Counts of a whole diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffSummary {
    /// Keys only in `b`.
    pub added: u64,
    /// Keys only in `a`.
    pub removed: u64,
    /// Keys in both with different values.
    pub changed: u64,
}

/// A live key row as far as comparing values goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RowState {
    pub(super) kind: i64,
    pub(super) encoding: i64,
    pub(super) size: i64,
    pub(super) inline: Option<Vec<u8>>,
    pub(super) blob_id: Option<i64>,
    pub(super) chunk_size: Option<i64>,
    pub(super) content: Option<i64>,
}

impl KvTable {
    /// The live row of `key` in key table `rows` at `now`.
    pub(super) fn row_state(
        conn: &Connection,
        rows: &str,
        key: &[u8],
        now: i64,
    ) -> Result<Option<RowState>> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT key_kind, encoding, size, inline_data, blob_id, chunk_size, content_hash \
                 FROM \"{rows}\" WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)"
            ))?
            .query_row(params![key, now], |r| {
                Ok(RowState {
                    kind: r.get(0)?,
                    encoding: r.get(1)?,
                    size: r.get(2)?,
                    inline: r.get(3)?,
                    blob_id: r.get(4)?,
                    chunk_size: r.get(5)?,
                    content: r.get(6)?,
                })
            })
            .optional()?)
    }

    /// The content ids of a blob's chunks, in order.
    fn chunk_contents(&self, conn: &Connection, blob_id: i64) -> Result<Vec<i64>> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT cid FROM \"{}__chunks\" WHERE id BETWEEN ?1 AND ?2 ORDER BY id",
            self.name
        ))?;
        let cids = stmt
            .query_map(
                [
                    chunk_rowid(blob_id, 0),
                    chunk_rowid(blob_id, MAX_CHUNKS_PER_BLOB - 1),
                ],
                |r| r.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(cids)
    }

    /// A row's value bytes (only used when two rows store equal-sized values differently, so
    /// at most one of them is chunked and both are small in practice).
    fn row_bytes(&self, conn: &Connection, row: &RowState) -> Result<Vec<u8>> {
        match (&row.inline, row.content, row.blob_id) {
            (Some(bytes), None, None) => Ok(bytes.clone()),
            (None, Some(cid), None) => Ok(conn
                .prepare_cached(&format!(
                    "SELECT data FROM \"{}__content\" WHERE cid = ?1",
                    self.name
                ))?
                .query_row([cid], |r| r.get(0))?),
            (None, None, Some(blob_id)) => {
                self.whole_blob(conn, blob_id, row.size, row.chunk_size, "key row")
            }
            _ => Err(Error::Corrupted(
                "key row names no storage, or more than one".into(),
            )),
        }
    }

    /// Whether two live rows hold the same value (same kind of key, encoding and bytes).
    pub(super) fn same_value(&self, conn: &Connection, a: &RowState, b: &RowState) -> Result<bool> {
        if a.kind != b.kind || a.encoding != b.encoding || a.size != b.size {
            return Ok(false);
        }
        match (a.blob_id, b.blob_id, a.content, b.content) {
            (Some(x), Some(y), _, _) if x == y => return Ok(true),
            (Some(x), Some(y), _, _) => {
                // Deduplicated chunks: equal contents have equal content ids.
                return Ok(a.chunk_size == b.chunk_size
                    && self.chunk_contents(conn, x)? == self.chunk_contents(conn, y)?);
            }
            (None, None, Some(x), Some(y)) => return Ok(x == y),
            (None, None, None, None) => return Ok(a.inline == b.inline),
            _ => {}
        }
        Ok(self.row_bytes(conn, a)? == self.row_bytes(conn, b)?)
    }

    /// The keys that may differ between branches `a` and `b`, sorted: those written on the
    /// branches between each of them and their common ancestor, and those written on that
    /// ancestor since the earlier of the two forks that lead away from it.
    pub(super) fn diff_candidates(
        &self,
        conn: &Connection,
        a: &BranchInfo,
        b: &BranchInfo,
    ) -> Result<Vec<Vec<u8>>> {
        if a.id == b.id {
            return Ok(Vec::new());
        }
        let t = &self.name;
        let branches: HashMap<String, BranchInfo> = list(conn, t)?
            .into_iter()
            .map(|b| (b.name.clone(), b))
            .collect();
        let path = |from: &BranchInfo| -> Vec<BranchInfo> {
            let mut path = vec![from.clone()];
            while let Some(parent) = path.last().and_then(|b| b.parent.clone()) {
                match branches.get(&parent) {
                    Some(p) if path.len() <= branches.len() => path.push(p.clone()),
                    _ => break,
                }
            }
            path
        };
        let (path_a, path_b) = (path(a), path(b));
        let Some(common) = path_a.iter().find(|x| path_b.iter().any(|y| y.id == x.id)) else {
            return Err(Error::Corrupted(format!(
                "table {t}: branches {:?} and {:?} have no common ancestor",
                a.name, b.name
            )));
        };
        let mut clauses = Vec::new();
        let mut since_common = i64::MAX;
        for side in [&path_a, &path_b] {
            for (i, branch) in side.iter().enumerate() {
                if branch.id == common.id {
                    if i > 0 {
                        since_common = since_common.min(side[i - 1].fork_epoch);
                    }
                    break;
                }
                clauses.push(format!("bid = {}", branch.id));
            }
        }
        if since_common != i64::MAX {
            clauses.push(format!("(bid = {} AND epoch >= {since_common})", common.id));
        }
        let mut stmt = conn.prepare(&format!(
            "SELECT DISTINCT key FROM \"{t}__touched\" WHERE {} ORDER BY key",
            clauses.join(" OR ")
        ))?;
        let keys = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(keys)
    }

    /// Compares the rows of `key` on branches `a` and `b` (their key tables) at `now`.
    fn compare_key(
        &self,
        conn: &Connection,
        a_rows: &str,
        b_rows: &str,
        key: &[u8],
        now: i64,
    ) -> Result<Option<DiffEntry>> {
        let left = Self::row_state(conn, a_rows, key, now)?;
        let right = Self::row_state(conn, b_rows, key, now)?;
        let (change, kind) = match (&left, &right) {
            (None, None) => return Ok(None),
            (None, Some(r)) => (Change::Added, r.kind),
            (Some(l), None) => (Change::Removed, l.kind),
            (Some(l), Some(r)) => {
                if self.same_value(conn, l, r)? {
                    return Ok(None);
                }
                (Change::Changed, r.kind)
            }
        };
        Ok(Some(DiffEntry {
            key: key.to_vec(),
            kind: KeyKind::from_i64(kind)?,
            change,
        }))
    }

    /// Starts a diff of branch `a` against branch `b`: what it would take to turn `a` into
    /// `b`. Read the entries with [`DiffCursor::next_page`] (or count them with
    /// [`DiffCursor::summary`]); run it inside a snapshot for one consistent view.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown branch; SQLite errors.
    pub fn diff(&self, store: &mut Store, a: &str, b: &str) -> Result<DiffCursor> {
        super::branches::validate_branch_name(a)?;
        super::branches::validate_branch_name(b)?;
        let t = &self.name;
        store.read(|conn| {
            let a = require(conn, t, a)?;
            let b = require(conn, t, b)?;
            let candidates = self.diff_candidates(conn, &a, &b)?;
            Ok(DiffCursor {
                table: self.clone(),
                a_rows: self.key_table_of(a.id),
                b_rows: self.key_table_of(b.id),
                candidates,
                next: 0,
            })
        })
    }
}

/// A diff being read in pages (see [`KvTable::diff`]): holds the sorted keys that may differ,
/// and compares them a page at a time.
#[derive(Debug)]
pub struct DiffCursor {
    table: KvTable,
    a_rows: String,
    b_rows: String,
    candidates: Vec<Vec<u8>>,
    next: usize,
}

impl DiffCursor {
    /// Keys still to compare (an upper bound on the entries still to come).
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.candidates.len() - self.next
    }

    /// The next entries, in key order, comparing at most `max_keys` candidate keys; empty
    /// once the diff is done.
    ///
    /// # Errors
    /// SQLite errors (a branch deleted meanwhile shows as one).
    pub fn next_page(&mut self, store: &mut Store, max_keys: usize) -> Result<Vec<DiffEntry>> {
        let now = store.now_ms();
        let end = self.candidates.len().min(self.next + max_keys.max(1));
        let page = &self.candidates[self.next..end];
        let entries = store.read(|conn| {
            let mut entries = Vec::new();
            for key in page {
                if let Some(entry) =
                    self.table
                        .compare_key(conn, &self.a_rows, &self.b_rows, key, now)?
                {
                    entries.push(entry);
                }
            }
            Ok(entries)
        })?;
        self.next = end;
        Ok(entries)
    }

    /// Reads the rest of the diff and counts it.
    ///
    /// # Errors
    /// As [`DiffCursor::next_page`].
    pub fn summary(&mut self, store: &mut Store) -> Result<DiffSummary> {
        let mut summary = DiffSummary::default();
        while self.remaining() > 0 {
            for entry in self.next_page(store, 4096)? {
                match entry.change {
                    Change::Added => summary.added += 1,
                    Change::Removed => summary.removed += 1,
                    Change::Changed => summary.changed += 1,
                }
            }
        }
        Ok(summary)
    }
}
