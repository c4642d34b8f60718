//! Deduplicated small values (`dedup = "all"`): a small value is stored once per content in
//! the table's content store (the same one chunk contents use, keyed by BLAKE3 hash) and its
//! key row holds the content's id in the `content_hash` column instead of the bytes.
//!
//! Triggers on the key table count key rows as references of the content, beside the chunk
//! rows that reference it, and delete a content row with its last reference, in the same
//! transaction as the write that dropped it: the same crash guarantees as chunk dedup.

use rusqlite::{params, Connection};

use super::KvTable;
use crate::error::Result;

/// The reference-counting triggers of shared small values on key table `r` of table `t` (its
/// own or a branch's; created when `dedup = "all"` is first set, and kept: rows written then
/// refer to contents for as long as they live).
pub(super) fn reference_triggers(t: &str, r: &str) -> String {
    let unref = |cid: &str| {
        format!(
            "UPDATE \"{t}__content\" SET refs = refs - 1 WHERE cid = {cid};
             DELETE FROM \"{t}__content\" WHERE cid = {cid} AND refs <= 0;"
        )
    };
    let reference =
        |cid: &str| format!("UPDATE \"{t}__content\" SET refs = refs + 1 WHERE cid = {cid};");
    format!(
        "CREATE TRIGGER IF NOT EXISTS \"{r}__share_insert\" AFTER INSERT ON \"{r}\"
            WHEN new.content_hash IS NOT NULL BEGIN {ref_new} END;
         CREATE TRIGGER IF NOT EXISTS \"{r}__share_update\" AFTER UPDATE OF content_hash ON \"{r}\"
            WHEN old.content_hash IS NOT new.content_hash BEGIN {ref_new} {unref_old} END;
         CREATE TRIGGER IF NOT EXISTS \"{r}__share_delete\" AFTER DELETE ON \"{r}\"
            WHEN old.content_hash IS NOT NULL BEGIN {unref_old} END;",
        ref_new = reference("new.content_hash"),
        unref_old = unref("old.content_hash"),
    )
}

impl KvTable {
    /// Stores `bytes` in the content store (once per content) inside the caller's write
    /// transaction and returns its content id; the key row that refers to it counts the
    /// reference.
    pub(super) fn store_shared(&self, conn: &Connection, bytes: &[u8]) -> Result<i64> {
        let hash = blake3::hash(bytes);
        conn.prepare_cached(&self.sql.insert_content)?
            .execute(params![hash.as_bytes().as_slice(), bytes])?;
        let cid: i64 = conn
            .prepare_cached(&self.sql.find_content)?
            .query_row([hash.as_bytes().as_slice()], |r| r.get(0))?;
        Ok(cid)
    }
}
