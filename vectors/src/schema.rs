//! The tables a vector collection lives in, and its registry row.
//!
//! - `ambervault_vector_tables`: one row per collection: its spec, index settings, the change
//!   sequence (`seq`, bumped by every write), `pruned_seq` (deletions up to it are no longer
//!   logged) and which sequence the stored HNSW snapshot includes.
//! - `<name>__vectors`: one row per item (`id`, `seq` of its last change, optional user key,
//!   metadata JSON, value encoding, vector, value). Small columns come first, so a metadata scan
//!   never reads a large value's overflow pages.
//! - `<name>__vector_deletes`: `(seq, id)` of each deletion, so another process's in-memory
//!   index can replay what it missed.
//! - `ambervault_vector_index`: the serialized HNSW graph of each collection, in parts.

use kvault::{Error, Result, Store};
use rusqlite::{Connection, OptionalExtension};

use crate::spec::{Metric, Spec, VectorType};

/// The registry of vector collections.
pub const TABLES: &str = "ambervault_vector_tables";
/// Serialized HNSW snapshots, in parts.
pub const INDEX_PARTS: &str = "ambervault_vector_index";

/// How a collection answers searches that do not ask for exact results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// Exact search below [`AUTO_HNSW_MIN`] items, HNSW from there on.
    Auto,
    /// Always exact search.
    Flat,
    /// Always the HNSW graph.
    Hnsw,
}

/// The item count from which `IndexKind::Auto` searches through the HNSW graph.
pub const AUTO_HNSW_MIN: u64 = 20_000;

impl IndexKind {
    /// Parses `"auto"`, `"flat"` or `"hnsw"`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "auto" => Ok(Self::Auto),
            "flat" | "exact" => Ok(Self::Flat),
            "hnsw" => Ok(Self::Hnsw),
            _ => Err(Error::InvalidArgument(format!(
                "unknown index {text:?}: use 'auto', 'flat' or 'hnsw'"
            ))),
        }
    }

    /// The canonical name stored in the file.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Flat => "flat",
            Self::Hnsw => "hnsw",
        }
    }
}

/// HNSW graph parameters (0 = the library's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexConfig {
    /// Which engine answers approximate searches.
    pub kind: IndexKind,
    /// Edges per node (`M`).
    pub connectivity: usize,
    /// Candidate list size while building (`ef_construction`).
    pub ef_construction: usize,
    /// Candidate list size while searching (`ef_search`).
    pub ef_search: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            kind: IndexKind::Auto,
            connectivity: 16,
            ef_construction: 200,
            ef_search: 64,
        }
    }
}

/// The registry row of one collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    /// Identity of this incarnation of the collection (a dropped and recreated collection of
    /// the same name gets another), so in-memory state never outlives it.
    pub uid: i64,
    /// The vectors' shape.
    pub spec: Spec,
    /// Search engine settings.
    pub index: IndexConfig,
    /// Number of items.
    pub items: u64,
    /// Sequence of the last committed change.
    pub seq: i64,
    /// Deletions with a sequence up to this were pruned from the log.
    pub pruned_seq: i64,
    /// Sequence the stored HNSW snapshot includes (None: no snapshot).
    pub index_seq: Option<i64>,
}

/// SQL table names of a collection.
#[derive(Debug, Clone)]
pub struct Names {
    /// The collection's name.
    pub name: String,
    /// `<name>__vectors`.
    pub items: String,
    /// `<name>__vector_deletes`.
    pub deletes: String,
}

impl Names {
    /// The names for collection `name` (validated as a table name).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for names that are not plain identifiers.
    pub fn new(name: &str) -> Result<Self> {
        kvault::validate_table_name(name)?;
        Ok(Self {
            name: name.to_string(),
            items: format!("{name}__vectors"),
            deletes: format!("{name}__vector_deletes"),
        })
    }
}

pub(crate) fn registry_exists(conn: &Connection) -> Result<bool> {
    kvault::table_exists(conn, TABLES)
}

/// Reads the registry row of `name` (None when there is no such collection).
pub(crate) fn load(conn: &Connection, name: &str) -> Result<Option<Registry>> {
    if !registry_exists(conn)? {
        return Ok(None);
    }
    let row = conn
        .prepare_cached(&format!(
            "SELECT rowid, dimensions, vector_type, metric, index_kind, connectivity,
                    ef_construction, ef_search, seq, pruned_seq, index_seq, items
             FROM {TABLES} WHERE name = ?1"
        ))?
        .query_row([name], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, Option<i64>>(10)?,
                r.get::<_, i64>(11)?,
            ))
        })
        .optional()?;
    let Some((uid, dims, vtype, metric, kind, m, efc, efs, seq, pruned_seq, index_seq, items)) =
        row
    else {
        return Ok(None);
    };
    let corrupted = |what: &str| Error::Corrupted(format!("vector table {name:?}: {what}"));
    let dims = usize::try_from(dims).map_err(|_| corrupted("negative dimensions"))?;
    let spec = Spec::new(
        dims,
        VectorType::parse(&vtype).map_err(|_| corrupted("unknown vector type"))?,
        Metric::parse(&metric).map_err(|_| corrupted("unknown metric"))?,
    )
    .map_err(|e| corrupted(&e.to_string()))?;
    let param = |v: i64| usize::try_from(v).map_err(|_| corrupted("negative index parameter"));
    Ok(Some(Registry {
        uid,
        spec,
        index: IndexConfig {
            kind: IndexKind::parse(&kind).map_err(|_| corrupted("unknown index kind"))?,
            connectivity: param(m)?,
            ef_construction: param(efc)?,
            ef_search: param(efs)?,
        },
        items: u64::try_from(items).map_err(|_| corrupted("negative item count"))?,
        seq,
        pruned_seq,
        index_seq,
    }))
}

/// Creates the registry (if missing) and the collection's tables, inside a write.
pub(crate) fn create(
    conn: &Connection,
    names: &Names,
    spec: &Spec,
    index: &IndexConfig,
    now_ms: i64,
) -> Result<()> {
    let Names {
        name,
        items,
        deletes,
    } = names;
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {TABLES} (
            name TEXT PRIMARY KEY,
            dimensions INTEGER NOT NULL,
            vector_type TEXT NOT NULL,
            metric TEXT NOT NULL,
            index_kind TEXT NOT NULL,
            connectivity INTEGER NOT NULL,
            ef_construction INTEGER NOT NULL,
            ef_search INTEGER NOT NULL,
            items INTEGER NOT NULL DEFAULT 0,
            seq INTEGER NOT NULL DEFAULT 0,
            pruned_seq INTEGER NOT NULL DEFAULT 0,
            index_seq INTEGER,
            created_at INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS {INDEX_PARTS} (
            name TEXT NOT NULL,
            part INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (name, part));
         CREATE TABLE IF NOT EXISTS {items} (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            seq INTEGER NOT NULL,
            key BLOB UNIQUE,
            key_kind INTEGER,
            metadata TEXT,
            encoding INTEGER NOT NULL,
            vector BLOB NOT NULL,
            value BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS {items}_seq ON {items} (seq);
         CREATE TABLE IF NOT EXISTS {deletes} (seq INTEGER NOT NULL, id INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS {deletes}_seq ON {deletes} (seq);"
    ))?;
    conn.execute(
        &format!(
            "INSERT INTO {TABLES} (name, dimensions, vector_type, metric, index_kind,
                 connectivity, ef_construction, ef_search, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        rusqlite::params![
            name,
            spec.dimensions as i64,
            spec.vector_type.name(),
            spec.metric.name(),
            index.kind.name(),
            index.connectivity as i64,
            index.ef_construction as i64,
            index.ef_search as i64,
            now_ms,
        ],
    )?;
    Ok(())
}

/// Names of the vector collections in a store's file.
///
/// # Errors
/// SQLite errors.
pub fn vector_table_names(store: &mut Store) -> Result<Vec<String>> {
    kvault::registry_names(store, TABLES)
}

/// Column `index` of `row` as a blob; any other type means a damaged row.
pub(crate) fn blob_at<'a>(row: &'a rusqlite::Row<'_>, index: usize) -> Result<&'a [u8]> {
    row.get_ref(index)?
        .as_blob()
        .map_err(|e| Error::Corrupted(format!("expected a blob: {e}")))
}
