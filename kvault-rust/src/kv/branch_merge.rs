//! Merging one branch into another, in one write transaction.
//!
//! A merge works between a branch and the branch it was forked from, in either direction. Its
//! base is the fork, or the last merge in the same direction: a key the source wrote since then
//! is a change; if the target wrote it too, and their values now differ, it is a conflict,
//! which the strategy settles. Applying a change copies the source's key row (a chunked value
//! is shared, not copied) or deletes the target's; the target's triggers keep its history,
//! release what it no longer holds and record the write like any other.

use rusqlite::{params, Connection, OptionalExtension};

use super::branch_diff::RowState;
use super::branches::{next_epoch, require, validate_branch_name, BranchInfo};
use super::types::KeyKind;
use super::KvTable;
use crate::error::{Error, Result};
use crate::store::Store;

/// How a merge settles a key that both branches changed to different values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeStrategy {
    /// The later write wins (ties go to the source); a delete counts as a write at its time.
    LastWriterWins,
    /// The source's state wins.
    SourceWins,
    /// Any conflict fails the merge, which then changes nothing.
    FailOnConflict,
    /// Conflicts are left as the target has them and reported (for a caller that settles
    /// them itself, in the same transaction).
    Report,
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// Keys the target gained.
    pub added: u64,
    /// Keys whose value the target took from the source.
    pub changed: u64,
    /// Keys the target lost (deleted on the source).
    pub deleted: u64,
    /// Conflicts settled by the strategy (kept in the target's favour or the source's).
    pub conflicts: u64,
    /// Conflicts left to the caller ([`MergeStrategy::Report`]), in key order, with the
    /// key's kind.
    pub unresolved: Vec<(Vec<u8>, KeyKind)>,
}

impl KvTable {
    /// Merges branch `source` into branch `target` (see the module docs) in one write
    /// transaction, or inside the caller's.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for unknown branches, the same branch twice, or branches
    /// that are not parent and child; [`Error::Conflict`] listing the first conflicting keys
    /// with [`MergeStrategy::FailOnConflict`] (nothing is changed); [`Error::ReadOnly`];
    /// SQLite errors.
    pub fn merge(
        &self,
        store: &mut Store,
        source: &str,
        target: &str,
        strategy: MergeStrategy,
    ) -> Result<MergeReport> {
        validate_branch_name(source)?;
        validate_branch_name(target)?;
        let t = &self.name;
        let now = store.now_ms();
        store.write(|conn| {
            let src = require(conn, t, source)?;
            let dst = require(conn, t, target)?;
            let base = merge_base(conn, t, &src, &dst)?;
            self.merge_in(conn, &src, &dst, base, strategy, now)
        })
    }

    fn merge_in(
        &self,
        conn: &Connection,
        src: &BranchInfo,
        dst: &BranchInfo,
        base: i64,
        strategy: MergeStrategy,
        now: i64,
    ) -> Result<MergeReport> {
        let t = &self.name;
        let (src_rows, dst_rows) = (self.key_table_of(src.id), self.key_table_of(dst.id));
        let changed_since = |bid: i64| -> Result<Vec<(Vec<u8>, i64)>> {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT key, at_ms FROM \"{t}__touched\" WHERE bid = ?1 AND epoch >= ?2 \
                 ORDER BY key"
            ))?;
            let rows = stmt
                .query_map(params![bid, base], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        };
        let source_changes = changed_since(src.id)?;
        let target_changes: std::collections::HashMap<Vec<u8>, i64> =
            changed_since(dst.id)?.into_iter().collect();
        conn.prepare_cached(&format!(
            "UPDATE \"{t}__cache\" SET clock_ms = ?1 WHERE id = 0"
        ))?
        .execute([now])?;
        let mut report = MergeReport::default();
        let mut failed = Vec::new();
        for (key, source_at) in source_changes {
            let theirs = Self::row_state(conn, &src_rows, &key, now)?;
            let ours = Self::row_state(conn, &dst_rows, &key, now)?;
            let same = match (&theirs, &ours) {
                (None, None) => true,
                (Some(a), Some(b)) => self.same_value(conn, a, b)?,
                _ => false,
            };
            if same {
                continue;
            }
            if let Some(&target_at) = target_changes.get(&key) {
                report.conflicts += 1;
                let source_wins = match strategy {
                    MergeStrategy::LastWriterWins => source_at >= target_at,
                    MergeStrategy::SourceWins => true,
                    MergeStrategy::FailOnConflict => {
                        failed.push(key);
                        continue;
                    }
                    MergeStrategy::Report => {
                        report.conflicts -= 1;
                        let kind = theirs.as_ref().or(ours.as_ref()).map_or(0, |r| r.kind);
                        report.unresolved.push((key, KeyKind::from_i64(kind)?));
                        continue;
                    }
                };
                if !source_wins {
                    continue;
                }
            }
            self.apply_change(
                conn,
                &src_rows,
                &dst_rows,
                &key,
                theirs.as_ref(),
                ours.as_ref(),
                now,
                &mut report,
            )?;
        }
        if !failed.is_empty() {
            let shown: Vec<String> = failed
                .iter()
                .take(10)
                .map(|k| format!("{:?}", String::from_utf8_lossy(k)))
                .collect();
            return Err(Error::Conflict(format!(
                "merging {:?} into {:?}: {} keys changed on both branches ({}{})",
                src.name,
                dst.name,
                failed.len(),
                shown.join(", "),
                if failed.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            )));
        }
        // The merge's own writes carry the epoch before this one, so the next merge in the
        // same direction does not take them for the target's changes.
        let epoch = next_epoch(conn, t)?;
        conn.execute(
            &format!(
                "INSERT INTO \"{t}__merges\" (source, target, epoch) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (source, target) DO UPDATE SET epoch = excluded.epoch"
            ),
            params![src.id, dst.id, epoch],
        )?;
        Ok(report)
    }

    /// Makes the target's row of `key` the source's: a copy of the source's row (its value
    /// shared), or a delete.
    #[allow(clippy::too_many_arguments)]
    fn apply_change(
        &self,
        conn: &Connection,
        src_rows: &str,
        dst_rows: &str,
        key: &[u8],
        theirs: Option<&RowState>,
        ours: Option<&RowState>,
        now: i64,
        report: &mut MergeReport,
    ) -> Result<()> {
        if theirs.is_none() {
            conn.prepare_cached(&format!("DELETE FROM \"{dst_rows}\" WHERE key = ?1"))?
                .execute([key])?;
            report.deleted += 1;
            return Ok(());
        }
        // An expired target row is replaced as if it were absent, as a put would.
        conn.prepare_cached(&format!(
            "INSERT INTO \"{dst_rows}\" (key, key_kind, encoding, size, inline_data, blob_id, \
             chunk_size, version, created_at, updated_at, expires_at, content_hash) \
             SELECT key, key_kind, encoding, size, inline_data, blob_id, chunk_size, 1, ?2, ?2, \
             expires_at, content_hash FROM \"{src_rows}\" WHERE key = ?1 \
             ON CONFLICT (key) DO UPDATE SET key_kind = excluded.key_kind, \
             encoding = excluded.encoding, size = excluded.size, \
             inline_data = excluded.inline_data, blob_id = excluded.blob_id, \
             chunk_size = excluded.chunk_size, \
             version = CASE WHEN expires_at IS NOT NULL AND expires_at <= ?2 \
                       THEN 1 ELSE version + 1 END, \
             created_at = CASE WHEN expires_at IS NOT NULL AND expires_at <= ?2 \
                          THEN ?2 ELSE created_at END, \
             updated_at = ?2, expires_at = excluded.expires_at, \
             content_hash = excluded.content_hash"
        ))?
        .execute(params![key, now])?;
        if ours.is_some() {
            report.changed += 1;
        } else {
            report.added += 1;
        }
        Ok(())
    }
}

/// The epoch since which changes count when merging `src` into `dst`: the child's fork, or
/// the last merge from `src` into `dst` if later.
fn merge_base(conn: &Connection, t: &str, src: &BranchInfo, dst: &BranchInfo) -> Result<i64> {
    if src.id == dst.id {
        return Err(Error::InvalidArgument(format!(
            "cannot merge branch {:?} into itself",
            src.name
        )));
    }
    let fork = if src.parent.as_deref() == Some(dst.name.as_str()) {
        src.fork_epoch
    } else if dst.parent.as_deref() == Some(src.name.as_str()) {
        dst.fork_epoch
    } else {
        return Err(Error::InvalidArgument(format!(
            "branches {:?} and {:?}: a merge works between a branch and the branch it was \
             forked from",
            src.name, dst.name
        )));
    };
    let last: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT epoch FROM \"{t}__merges\" WHERE source = ?1 AND target = ?2"
        ))?
        .query_row(params![src.id, dst.id], |r| r.get(0))
        .optional()?;
    Ok(last.map_or(fork, |l| l.max(fork)))
}
