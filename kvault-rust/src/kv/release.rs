//! Releasing a chunked value's chunks once nothing holds its blob any more.
//!
//! A blob is held by a key row of the table, and, when the table has them, by a key row of one
//! of its branches (a fork copies rows, not chunks) or by a kept version in `T__history`. The
//! release triggers of each key table delete a blob's chunks when a row lets go of it and no
//! other holder has it; they are rebuilt whenever the set of holders changes (history turned
//! on or off, a branch created or deleted), so a table without history or branches keeps the
//! plain triggers, which look at nothing else.

use rusqlite::Connection;

use crate::error::Result;

/// All chunk rowids of blob `old.blob_id` (see `chunk_rowid`).
const OLD_BLOB_CHUNKS: &str = "BETWEEN (old.blob_id << 32) AND (old.blob_id << 32) + 4294967295";

/// The key table of branch `bid` of table `t` (the main branch, 0, is `t` itself).
pub(super) fn key_table(t: &str, bid: i64) -> String {
    if bid == 0 {
        t.to_string()
    } else {
        format!("{t}__b{bid}")
    }
}

/// The key tables of `t`'s branches other than the main one, in branch order.
pub(super) fn branch_key_tables(conn: &Connection, t: &str) -> Result<Vec<String>> {
    if !crate::table_exists(conn, &format!("{t}__branches"))? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT bid FROM \"{t}__branches\" WHERE bid != 0 ORDER BY bid"
    ))?;
    let bids = stmt
        .query_map([], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(bids.into_iter().map(|b| key_table(t, b)).collect())
}

/// `AND NOT EXISTS (...)` for each table in `holders`: no other holder names blob `blob`.
fn held_elsewhere(holders: &[String], blob: &str) -> String {
    holders
        .iter()
        .map(|h| format!(" AND NOT EXISTS (SELECT 1 FROM \"{h}\" WHERE blob_id = {blob})"))
        .collect()
}

/// Frees what only key table `table` of `t` holds (the blobs no other key table or kept
/// version names, its references to shared contents), before the table is dropped whole:
/// cheaper than deleting its rows one by one through the triggers.
///
/// # Errors
/// SQLite errors.
pub(super) fn release_table(conn: &Connection, t: &str, table: &str) -> Result<()> {
    let mut others: Vec<String> = std::iter::once(t.to_string())
        .chain(branch_key_tables(conn, t)?)
        .filter(|k| k != table)
        .collect();
    if crate::table_exists(conn, &format!("{t}__history"))? {
        others.push(format!("{t}__history"));
    }
    let elsewhere = held_elsewhere(&others, "k.blob_id");
    let blobs: Vec<i64> = conn
        .prepare(&format!(
            "SELECT blob_id FROM \"{table}\" k WHERE blob_id IS NOT NULL{elsewhere}"
        ))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut drop_chunks = conn.prepare(&format!(
        "DELETE FROM \"{t}__chunks\" WHERE id BETWEEN (?1 << 32) AND (?1 << 32) + 4294967295"
    ))?;
    for blob in blobs {
        drop_chunks.execute([blob])?;
    }
    conn.execute_batch(&format!(
        "UPDATE \"{t}__content\" SET refs = refs - s.n FROM \
            (SELECT content_hash AS cid, count(*) AS n FROM \"{table}\" \
             WHERE content_hash IS NOT NULL GROUP BY content_hash) AS s \
         WHERE \"{t}__content\".cid = s.cid;
         DELETE FROM \"{t}__content\" WHERE refs <= 0 AND cid IN \
            (SELECT content_hash FROM \"{table}\" WHERE content_hash IS NOT NULL);"
    ))?;
    Ok(())
}

/// Rebuilds the release triggers (and the blob-id indexes their checks use) of table `t` for
/// its current holders.
///
/// # Errors
/// SQLite errors.
pub(super) fn refresh(conn: &Connection, t: &str) -> Result<()> {
    let history = crate::table_exists(conn, &format!("{t}__history"))?;
    let mut key_tables = vec![t.to_string()];
    key_tables.extend(branch_key_tables(conn, t)?);
    let shared = history || key_tables.len() > 1;
    let mut sql = String::new();
    for table in &key_tables {
        let mut others: Vec<String> = key_tables.iter().filter(|k| *k != table).cloned().collect();
        if history {
            others.push(format!("{t}__history"));
        }
        let elsewhere = held_elsewhere(&others, "old.blob_id");
        if shared {
            sql.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS \"{table}__by_blob\" ON \"{table}\" (blob_id) \
                 WHERE blob_id IS NOT NULL;"
            ));
        } else {
            sql.push_str(&format!("DROP INDEX IF EXISTS \"{table}__by_blob\";"));
        }
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS \"{table}__release_on_switch\";
             DROP TRIGGER IF EXISTS \"{table}__release_on_delete\";
             CREATE TRIGGER \"{table}__release_on_switch\" AFTER UPDATE OF blob_id ON \"{table}\"
                WHEN old.blob_id IS NOT NULL AND old.blob_id IS NOT new.blob_id{elsewhere}
                BEGIN DELETE FROM \"{t}__chunks\" WHERE id {OLD_BLOB_CHUNKS}; END;
             CREATE TRIGGER \"{table}__release_on_delete\" AFTER DELETE ON \"{table}\"
                WHEN old.blob_id IS NOT NULL{elsewhere}
                BEGIN DELETE FROM \"{t}__chunks\" WHERE id {OLD_BLOB_CHUNKS}; END;"
        ));
    }
    if history {
        // A kept version may share its blob with another kept version (a value merged in
        // from a branch and replaced twice), so the history itself is a holder too.
        let mut others = key_tables.clone();
        others.push(format!("{t}__history"));
        let elsewhere = held_elsewhere(&others, "old.blob_id");
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS \"{t}__history_release\";
             CREATE TRIGGER \"{t}__history_release\" AFTER DELETE ON \"{t}__history\"
                BEGIN DELETE FROM \"{t}__chunks\" WHERE old.blob_id IS NOT NULL{elsewhere}
                        AND id {OLD_BLOB_CHUNKS};
                      UPDATE \"{t}__content\" SET refs = refs - 1 WHERE cid = old.content_hash;
                      DELETE FROM \"{t}__content\" WHERE cid = old.content_hash AND refs <= 0;
                END;"
        ));
    }
    conn.execute_batch(&sql)?;
    Ok(())
}
