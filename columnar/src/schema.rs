//! The two tables columns live in: one metadata row per column, and the chunk rows of every
//! column's streams (see `docs/format.md`).

use kvault::Store;
use rusqlite::Connection;

use crate::error::Result;
use crate::packed::PACKED_TABLE;
use crate::stream::CHUNKS_TABLE;

/// Name of the table holding one row per column.
pub const COLUMNS_TABLE: &str = "ambervault_columns";

/// Creates the column tables if the store is writable and they are missing.
pub(crate) fn ensure_schema(store: &mut Store) -> Result<()> {
    if store.is_read_only() {
        return Ok(());
    }
    // Checked outside a write transaction so opening an existing file takes no write lock.
    let present: i64 = store.retry_with(|conn| -> Result<i64> {
        Ok(conn.query_row(
            "SELECT (SELECT count(*) FROM sqlite_master WHERE name IN (?1, ?2, ?3)) + \
             (SELECT count(*) FROM pragma_table_info(?1) WHERE name = 'compression')",
            [COLUMNS_TABLE, CHUNKS_TABLE, PACKED_TABLE],
            |r| r.get(0),
        )?)
    })?;
    if present == 4 {
        return Ok(());
    }
    store.write_with(|conn| -> Result<()> {
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {COLUMNS_TABLE} (
                col_id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL UNIQUE,
                dtype TEXT NOT NULL,
                length INTEGER NOT NULL DEFAULT 0,
                data_bytes INTEGER NOT NULL DEFAULT 0,
                min_chunk INTEGER NOT NULL,
                max_chunk INTEGER NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                tail BLOB,
                index_tail BLOB);
             CREATE TABLE IF NOT EXISTS {CHUNKS_TABLE} (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS {PACKED_TABLE} (
                id INTEGER PRIMARY KEY, codec INTEGER NOT NULL, data BLOB NOT NULL);"
        ))?;
        // Files written before compression existed gain the setting's column.
        let has_setting: bool = conn.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = 'compression'",
            [COLUMNS_TABLE],
            |r| r.get(0),
        )?;
        if !has_setting {
            conn.execute_batch(&format!(
                "ALTER TABLE {COLUMNS_TABLE} ADD COLUMN compression TEXT;"
            ))?;
        }
        Ok(())
    })
}

/// Whether the columns table exists (a vault that never had a column has none).
pub(crate) fn tables_exist(conn: &Connection) -> Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = ?1",
        [COLUMNS_TABLE],
        |r| r.get(0),
    )?;
    Ok(n == 1)
}

/// Whether table `name` exists.
pub(crate) fn table_exists(conn: &Connection, name: &str) -> Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get(0),
    )?;
    Ok(n == 1)
}
