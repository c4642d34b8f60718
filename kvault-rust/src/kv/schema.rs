//! Names and schema: validation of what is spliced into SQL or sizes chunks, the list of
//! tables in a file, opening a table and its DDL.

use rusqlite::Connection;

use super::policy::create_policy_table;
use super::runtime::Runtimes;
use super::sql::Sql;
use super::types::{MAX_CHUNK_SIZE, MAX_KEY_LEN};
use super::KvTable;
use crate::error::{Error, Result};
use crate::store::Store;

/// Checks a table name: identifier characters only, so it can never inject SQL.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the rule that was broken.
pub fn validate_table_name(name: &str) -> Result<()> {
    let ok_chars = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !ok_chars {
        return Err(Error::InvalidArgument(format!(
            "table name must be 1-64 ASCII letters, digits or underscores, not starting with a \
             digit; got {name:?}"
        )));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("sqlite_") || lower.starts_with("ambervault_") || name.contains("__") {
        return Err(Error::InvalidArgument(format!(
            "table name {name:?} is reserved (names may not start with 'sqlite_' or \
             'ambervault_' or contain '__')"
        )));
    }
    Ok(())
}

/// Checks a chunk size.
///
/// # Errors
/// [`Error::InvalidArgument`] unless `1 <= size <= MAX_CHUNK_SIZE`.
pub fn validate_chunk_size(size: usize) -> Result<()> {
    if size == 0 || size > MAX_CHUNK_SIZE {
        return Err(Error::InvalidArgument(format!(
            "chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes, not {size}"
        )));
    }
    Ok(())
}

/// Checks a key's length.
///
/// # Errors
/// [`Error::InvalidArgument`] for keys longer than [`MAX_KEY_LEN`].
pub fn validate_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "key is {} bytes; keys may be at most {MAX_KEY_LEN} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Names of the key-value tables in a store's file.
///
/// # Errors
/// SQLite errors.
pub fn kv_table_names(store: &mut Store) -> Result<Vec<String>> {
    store.retry(|conn| {
        let mut stmt = conn.prepare(
            "SELECT substr(name, 1, length(name) - 9) FROM sqlite_master \
             WHERE type = 'table' AND name LIKE '%\\_\\_content' ESCAPE '\\' ORDER BY name",
        )?;
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(names
            .into_iter()
            .filter(|n| validate_table_name(n).is_ok())
            .collect())
    })
}

impl KvTable {
    /// Opens table `name` in `store`, creating it if the store is writable.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name or chunk size; [`Error::ReadOnly`] if the table
    /// does not exist in a read-only store; SQLite errors.
    pub fn open(store: &mut Store, name: &str, chunk_size: usize) -> Result<Self> {
        validate_table_name(name)?;
        validate_chunk_size(chunk_size)?;
        let runtime = store
            .extension::<Runtimes>()
            .0
            .entry(name.to_string())
            .or_default()
            .clone();
        let table = Self {
            name: name.to_string(),
            rows: name.to_string(),
            branch: 0,
            branch_name: super::branches::MAIN_BRANCH.to_string(),
            // What a page holds: its size less the bytes reserved at its end (SQLCipher keeps
            // each page's IV and MAC there; plain files reserve none).
            inline_max: super::types::inline_max_for_page(
                store
                    .retry(|conn| {
                        let page = crate::store::page_size(conn)?;
                        Ok(page - crate::store::reserved_page_bytes(conn))
                    })?
                    .try_into()
                    .unwrap_or(4096),
            ),
            chunk_size,
            sql: std::sync::Arc::new(Sql::new(name, name)),
            runtime,
        };
        if store.is_read_only() {
            let exists = store.retry(|conn| crate::table_exists(conn, name))?;
            if !exists {
                return Err(Error::ReadOnly(format!(
                    "table {name:?} does not exist and the vault cannot be written"
                )));
            }
        } else {
            // Opening must not need the write lock when the schema is already there (another
            // process may be in the middle of a long write).
            if !store.retry(|conn| table.schema_present(conn))? {
                store.write(|conn| {
                    table.create_schema(conn)?;
                    create_policy_table(conn, name)
                })?;
            }
            table.reclaim_orphans(store)?;
        }
        store.retry(|conn| table.load_compression(conn))?;
        let (policy, _) = store.retry(|conn| super::policy::read_policy(conn, name))?;
        table.runtime.adopt(&policy);
        let branched = store.retry(|conn| super::branches::branching_on(conn, name))?;
        table.runtime.set_branched(branched);
        Ok(table)
    }

    fn schema_present(&self, conn: &Connection) -> Result<bool> {
        let t = &self.name;
        let names = [
            t.clone(),
            format!("{t}__chunks"),
            format!("{t}__pending"),
            format!("{t}__release_on_switch"),
            format!("{t}__release_on_delete"),
            format!("{t}__content"),
            format!("{t}__ref_content"),
            format!("{t}__unref_content"),
            format!("{t}__cache"),
        ];
        let found: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params_from_iter(names.iter()),
            |r| r.get(0),
        )?;
        Ok(found == 9)
    }

    fn create_schema(&self, conn: &Connection) -> Result<()> {
        let t = &self.name;
        // The text below is stored in the file's schema: change nothing in it, whitespace
        // included. `content_hash` is unused (only ever NULL), kept so the format is unchanged;
        // `encoding` is reserved for typed values (see `Encoding`).
        conn.execute_batch(&format!(
            "{key_table}
             CREATE TABLE IF NOT EXISTS \"{t}__content\" (
                cid INTEGER PRIMARY KEY,
                hash BLOB NOT NULL UNIQUE,
                refs INTEGER NOT NULL,
                data BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS \"{t}__chunks\" (id INTEGER PRIMARY KEY, cid INTEGER NOT NULL);
             CREATE TRIGGER IF NOT EXISTS \"{t}__ref_content\"
                AFTER INSERT ON \"{t}__chunks\"
                BEGIN UPDATE \"{t}__content\" SET refs = refs + 1 WHERE cid = new.cid; END;
             CREATE TRIGGER IF NOT EXISTS \"{t}__unref_content\"
                AFTER DELETE ON \"{t}__chunks\"
                BEGIN UPDATE \"{t}__content\" SET refs = refs - 1 WHERE cid = old.cid;
                      DELETE FROM \"{t}__content\" WHERE cid = old.cid AND refs <= 0;
                END;
             CREATE TABLE IF NOT EXISTS \"{t}__pending\" (
                blob_id INTEGER PRIMARY KEY AUTOINCREMENT,
                pid INTEGER NOT NULL,
                started_at INTEGER NOT NULL);
             CREATE TRIGGER IF NOT EXISTS \"{t}__release_on_switch\"
                AFTER UPDATE OF blob_id ON \"{t}\"
                WHEN old.blob_id IS NOT NULL AND old.blob_id IS NOT new.blob_id
                BEGIN DELETE FROM \"{t}__chunks\"
                      WHERE id BETWEEN (old.blob_id << 32) AND (old.blob_id << 32) + 4294967295;
                END;
             CREATE TRIGGER IF NOT EXISTS \"{t}__release_on_delete\"
                AFTER DELETE ON \"{t}\"
                WHEN old.blob_id IS NOT NULL
                BEGIN DELETE FROM \"{t}__chunks\"
                      WHERE id BETWEEN (old.blob_id << 32) AND (old.blob_id << 32) + 4294967295;
                END;",
            key_table = key_table_ddl(t)
        ))?;
        Ok(())
    }
}

/// The DDL of a key table named `t` (a table's own, or a branch's: the same text, so that a
/// fork's bulk copy can move rows without decoding them).
pub(super) fn key_table_ddl(t: &str) -> String {
    // The text is stored in the file's schema: change nothing in it, whitespace included.
    format!(
        "CREATE TABLE IF NOT EXISTS \"{t}\" (
                key BLOB PRIMARY KEY NOT NULL,
                key_kind INTEGER NOT NULL,
                encoding INTEGER NOT NULL DEFAULT 0,
                size INTEGER NOT NULL,
                inline_data BLOB,
                blob_id INTEGER,
                chunk_size INTEGER,
                version INTEGER NOT NULL DEFAULT 1,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                expires_at INTEGER,
                content_hash BLOB
             ) WITHOUT ROWID;"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_identifiers_only() {
        for good in ["kvault", "media_2", "_x", "A"] {
            assert!(validate_table_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "a b",
            "x\"; DROP TABLE kvault; --",
            "sqlite_master",
            "ambervault_meta",
            "a__chunks",
            "é",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(validate_table_name(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
    }
}
