//! What the table kinds whose items carry a value and metadata share (vector collections,
//! text tables): finding a table in the schema, listing a kind's registry, and the checks on
//! an item's value and metadata. Key-value tables use the schema lookup too.

use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::store::Store;

/// Whether the file has a table named `name`.
///
/// # Errors
/// SQLite errors.
pub fn table_exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        )?
        .query_row([name], |r| r.get(0))?)
}

/// The `name` column of a kind's registry table `registry`, sorted (none when the registry
/// does not exist yet). `registry` must be a trusted identifier: it is spliced into the SQL.
///
/// # Errors
/// SQLite errors.
pub fn registry_names(store: &mut Store, registry: &str) -> Result<Vec<String>> {
    store.retry(|conn| {
        if !table_exists(conn, registry)? {
            return Ok(Vec::new());
        }
        let mut stmt = conn.prepare(&format!("SELECT name FROM {registry} ORDER BY name"))?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    })
}

/// Refuses an item value over `max` bytes; `items` names what the value sits beside
/// ("vectors", "texts") in the message.
///
/// # Errors
/// [`Error::InvalidArgument`] for a value over `max` bytes.
pub fn check_item_value(value: &[u8], max: usize, items: &str) -> Result<()> {
    if value.len() > max {
        return Err(Error::InvalidArgument(format!(
            "value is {} bytes; values beside {items} may be at most {max} bytes (keep large \
             media in a key-value table and store its key)",
            value.len()
        )));
    }
    Ok(())
}

/// SQLite's `json()` refusing an item's metadata is the caller's mistake: an
/// [`Error::InvalidArgument`]; other errors pass through.
#[must_use]
pub fn metadata_json_error(err: Error) -> Error {
    match err {
        Error::Sqlite(e) if e.to_string().contains("JSON") => {
            Error::InvalidArgument(format!("metadata is not valid JSON: {e}"))
        }
        other => other,
    }
}
