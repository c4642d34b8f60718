//! The tables a text table lives in, and its registry row.
//!
//! - `ambervault_text_tables`: one row per text table: its columns (a JSON array), tokenizer
//!   and item count. Its rowid identifies this incarnation of the table (a dropped and
//!   recreated table of the same name gets another).
//! - `<name>__text`: one row per document: `__id` (never reused), `__hash` (the exact-text
//!   lookup key), `__encoding`, `__metadata` (JSON), one `TEXT` column per text column, and
//!   `__value` last, so reading texts or metadata never walks a large value's overflow pages.
//!   The internal columns start with `__`, which text column names may not.
//! - `<name>__text_fts`: the FTS5 index over the text columns, with `<name>__text` as its
//!   external content (the texts are stored once; snippets and highlights read them there).
//!   It is written in the same transaction as the rows, and can be rebuilt from them.

use kvault::{Error, Result, Store};
use rusqlite::{Connection, OptionalExtension};

use crate::tokenizer::Tokenizer;

/// The registry of text tables.
pub const TABLES: &str = "ambervault_text_tables";
/// Most text columns a table may have.
pub const MAX_COLUMNS: usize = 64;

/// The registry row of one text table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Identity of this incarnation of the table.
    pub uid: i64,
    /// The text columns, in order.
    pub columns: Vec<String>,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// Number of documents.
    pub items: u64,
}

/// SQL names of a text table.
#[derive(Debug, Clone)]
pub struct Names {
    /// The table's name.
    pub name: String,
    /// `<name>__text`, the documents.
    pub items: String,
    /// `<name>__text_fts`, the FTS5 index.
    pub fts: String,
}

impl Names {
    /// The names for text table `name` (validated as a table name).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for names that are not plain identifiers.
    pub fn new(name: &str) -> Result<Self> {
        kvault::validate_table_name(name)?;
        Ok(Self {
            name: name.to_string(),
            items: format!("{name}__text"),
            fts: format!("{name}__text_fts"),
        })
    }
}

/// An SQL identifier in double quotes (column names may be any Unicode letters).
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks text column names: 1-64 letters, digits or underscores each, not starting with
/// `__`, not one of FTS5's reserved names or operators, no two equal ignoring case.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the first bad column.
pub fn validate_columns(columns: &[String]) -> Result<()> {
    if columns.is_empty() || columns.len() > MAX_COLUMNS {
        return Err(Error::InvalidArgument(format!(
            "a text table needs 1 to {MAX_COLUMNS} columns, got {}",
            columns.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for column in columns {
        let lower = column.to_lowercase();
        let well_formed = !column.is_empty()
            && column.chars().count() <= 64
            && column.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !well_formed {
            return Err(Error::InvalidArgument(format!(
                "invalid column name {column:?}: use 1-64 letters, digits or underscores"
            )));
        }
        if column.starts_with("__")
            || ["rank", "rowid", "oid", "_rowid_"].contains(&lower.as_str())
            || ["AND", "OR", "NOT", "NEAR"].contains(&column.as_str())
        {
            return Err(Error::InvalidArgument(format!(
                "column name {column:?} is reserved (rank, rowid, oid, _rowid_, AND, OR, NOT, \
                 NEAR and names starting with '__')"
            )));
        }
        if !seen.insert(lower) {
            return Err(Error::InvalidArgument(format!(
                "column {column:?} is listed twice (names are compared ignoring case)"
            )));
        }
    }
    Ok(())
}

pub(crate) fn registry_exists(conn: &Connection) -> Result<bool> {
    kvault::table_exists(conn, TABLES)
}

/// Reads the registry row of `name` (None when there is no such table).
pub(crate) fn load(conn: &Connection, name: &str) -> Result<Option<Registry>> {
    if !registry_exists(conn)? {
        return Ok(None);
    }
    let row = conn
        .prepare_cached(&format!(
            "SELECT rowid, columns, tokenizer, items FROM {TABLES} WHERE name = ?1"
        ))?
        .query_row([name], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((uid, columns, tokenizer, items)) = row else {
        return Ok(None);
    };
    let corrupted = |what: &str| Error::Corrupted(format!("text table {name:?}: {what}"));
    let columns = parse_columns(&columns).ok_or_else(|| corrupted("unreadable column list"))?;
    validate_columns(&columns).map_err(|e| corrupted(&e.to_string()))?;
    Ok(Some(Registry {
        uid,
        columns,
        tokenizer: Tokenizer::parse(&tokenizer).map_err(|_| corrupted("unknown tokenizer"))?,
        items: u64::try_from(items).map_err(|_| corrupted("negative item count"))?,
    }))
}

/// The column list as stored: a JSON array of strings. Column names hold only letters,
/// digits and underscores, so no escaping is needed.
fn columns_json(columns: &[String]) -> String {
    let quoted: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    format!("[{}]", quoted.join(","))
}

fn parse_columns(json: &str) -> Option<Vec<String>> {
    let inner = json.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    if inner.is_empty() {
        return Some(Vec::new());
    }
    inner
        .split(',')
        .map(|part| {
            let part = part.trim().strip_prefix('"')?.strip_suffix('"')?;
            (!part.contains('"') && !part.contains('\\')).then(|| part.to_string())
        })
        .collect()
}

/// Creates the registry (if missing) and the table's tables, inside a write.
pub(crate) fn create(
    conn: &Connection,
    names: &Names,
    columns: &[String],
    tokenizer: Tokenizer,
    now_ms: i64,
) -> Result<()> {
    let text_columns: Vec<String> = columns
        .iter()
        .map(|c| format!("{} TEXT NOT NULL", ident(c)))
        .collect();
    let fts_columns: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {TABLES} (
            name TEXT PRIMARY KEY,
            columns TEXT NOT NULL,
            tokenizer TEXT NOT NULL,
            items INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL);
         CREATE TABLE {items} (
            __id INTEGER PRIMARY KEY AUTOINCREMENT,
            __hash INTEGER NOT NULL,
            __encoding INTEGER NOT NULL,
            __metadata TEXT,
            {text_columns},
            __value BLOB NOT NULL);
         CREATE INDEX {hash_index} ON {items} (__hash);
         CREATE VIRTUAL TABLE {fts} USING fts5({fts_columns}, content='{items_name}',
            content_rowid='__id', tokenize='{tokenize}');",
        items = ident(&names.items),
        items_name = names.items,
        hash_index = ident(&format!("{}_hash", names.items)),
        fts = ident(&names.fts),
        text_columns = text_columns.join(", "),
        fts_columns = fts_columns.join(", "),
        tokenize = tokenizer.fts5_spec(),
    ))?;
    conn.execute(
        &format!(
            "INSERT INTO {TABLES} (name, columns, tokenizer, created_at) VALUES (?1, ?2, ?3, ?4)"
        ),
        rusqlite::params![names.name, columns_json(columns), tokenizer.name(), now_ms],
    )?;
    Ok(())
}

/// Names of the text tables in a store's file.
///
/// # Errors
/// SQLite errors.
pub fn text_table_names(store: &mut Store) -> Result<Vec<String>> {
    kvault::registry_names(store, TABLES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn column_names_are_checked() {
        assert!(validate_columns(&cols(&["content"])).is_ok());
        assert!(validate_columns(&cols(&["title", "body", "日本"])).is_ok());
        for bad in [
            vec![],
            vec!["invalid column"],
            vec![""],
            vec!["__id"],
            vec!["rank"],
            vec!["RowId"],
            vec!["NEAR"],
            vec!["a", "A"],
            vec!["a\"b"],
        ] {
            assert!(validate_columns(&cols(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn column_lists_round_trip() {
        let list = cols(&["title", "body_2", "日本"]);
        assert_eq!(parse_columns(&columns_json(&list)).unwrap(), list);
        assert!(parse_columns("[\"a\\\"\"]").is_none());
        assert!(parse_columns("nonsense").is_none());
    }
}
