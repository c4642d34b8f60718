//! [`TextTable`]: the handle of one text table, and its writes and reads. Every write is one
//! transaction that changes the rows and the FTS5 index together; searches are in
//! `search.rs`.

use kvault::{Encoding, Error, Result, Store};
use rusqlite::types::{ToSqlOutput, Value};
use rusqlite::Connection;

use crate::schema::{self, ident, Names, Registry, TABLES};
use crate::tokenizer::Tokenizer;

/// The largest value stored beside a document (larger media belong in a key-value table,
/// referenced from the value or metadata).
pub const MAX_VALUE_BYTES: usize = 256 << 20;

/// A document to insert.
#[derive(Debug, Clone, Copy)]
pub struct NewDoc<'a> {
    /// One text per column of the table, in the table's column order.
    pub texts: &'a [&'a str],
    /// The value's bytes.
    pub value: &'a [u8],
    /// How the layer above reads the value.
    pub encoding: Encoding,
    /// Metadata as JSON text (filterable with `where`).
    pub metadata: Option<&'a str>,
}

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// Its id (assigned on insert, never reused).
    pub id: i64,
    /// Its texts, in the table's column order.
    pub texts: Vec<String>,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The value's encoding.
    pub encoding: Encoding,
    /// Metadata JSON text.
    pub metadata: Option<String>,
}

/// What [`TextTable::update`] changes (None: keep).
#[derive(Debug, Clone, Copy, Default)]
pub struct DocUpdate<'a> {
    /// New texts, one per column.
    pub texts: Option<&'a [&'a str]>,
    /// A new value and its encoding.
    pub value: Option<(&'a [u8], Encoding)>,
    /// New metadata (`Some(None)` clears it).
    pub metadata: Option<Option<&'a str>>,
}

/// A text table in a vault file: documents of (texts, value, optional metadata), searched
/// with FTS5 and ranked by BM25. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TextTable {
    pub(crate) names: Names,
    pub(crate) uid: i64,
    pub(crate) columns: Vec<String>,
    pub(crate) tokenizer: Tokenizer,
    /// `"c1", "c2"`: the text columns as an SQL list.
    pub(crate) column_list: String,
}

/// The exact-text lookup key: the first 8 bytes of the BLAKE3 hash of the texts, each
/// preceded by its length (so `["ab", "c"]` and `["a", "bc"]` differ).
pub(crate) fn text_hash<S: AsRef<str>>(texts: &[S]) -> i64 {
    let mut hasher = blake3::Hasher::new();
    for text in texts {
        let text = text.as_ref().as_bytes();
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    i64::from_le_bytes(first)
}

impl TextTable {
    fn from_registry(names: Names, reg: Registry) -> Self {
        let column_list = reg
            .columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            names,
            uid: reg.uid,
            columns: reg.columns,
            tokenizer: reg.tokenizer,
            column_list,
        }
    }

    /// Opens text table `name`, creating it with `create` (columns and tokenizer) if it does
    /// not exist. An existing table keeps its columns and tokenizer; if `create` is given and
    /// differs, that is an error rather than a silent reinterpretation.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name or column, a mismatch with the stored table,
    /// or a missing table without `create`; SQLite errors.
    pub fn open(
        store: &mut Store,
        name: &str,
        create: Option<(Vec<String>, Tokenizer)>,
    ) -> Result<Self> {
        let names = Names::new(name)?;
        if let Some((columns, _)) = &create {
            schema::validate_columns(columns)?;
        }
        let existing = store.retry(|conn| schema::load(conn, name))?;
        let registry = match (existing, create) {
            (Some(reg), Some((columns, tokenizer)))
                if reg.columns != columns || reg.tokenizer != tokenizer =>
            {
                return Err(Error::InvalidArgument(format!(
                    "text table {name:?} has columns {:?} and tokenizer {:?}; it was opened with \
                     columns {columns:?} and tokenizer {:?}",
                    reg.columns,
                    reg.tokenizer.name(),
                    tokenizer.name()
                )))
            }
            (Some(reg), _) => reg,
            (None, None) => {
                return Err(Error::InvalidArgument(format!(
                    "there is no text table {name:?}"
                )))
            }
            (None, Some((columns, tokenizer))) => {
                let now = store.now_ms();
                store.write(|conn| {
                    if schema::load(conn, name)?.is_none() {
                        schema::create(conn, &names, &columns, tokenizer, now)?;
                    }
                    Ok(())
                })?;
                store
                    .retry(|conn| schema::load(conn, name))?
                    .ok_or_else(|| Error::Corrupted(format!("text table {name:?} vanished")))?
            }
        };
        Ok(Self::from_registry(names, registry))
    }

    /// Opens text table `name` if it exists.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name; SQLite errors.
    pub fn find(store: &mut Store, name: &str) -> Result<Option<Self>> {
        let names = Names::new(name)?;
        let registry = store.retry(|conn| schema::load(conn, name))?;
        Ok(registry.map(|reg| Self::from_registry(names, reg)))
    }

    /// Deletes text table `name` with its documents and index; whether it existed.
    ///
    /// # Errors
    /// SQLite errors; [`Error::InvalidArgument`] for a bad name.
    pub fn drop_table(store: &mut Store, name: &str) -> Result<bool> {
        let names = Names::new(name)?;
        store.write(|conn| {
            if schema::load(conn, name)?.is_none() {
                return Ok(false);
            }
            conn.execute_batch(&format!(
                "DROP TABLE IF EXISTS {fts}; DROP TABLE IF EXISTS {items};",
                fts = ident(&names.fts),
                items = ident(&names.items),
            ))?;
            conn.execute(&format!("DELETE FROM {TABLES} WHERE name = ?1"), [name])?;
            Ok(true)
        })
    }

    /// The table's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.names.name
    }

    /// The text columns, in order.
    #[must_use]
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The tokenizer.
    #[must_use]
    pub fn tokenizer(&self) -> Tokenizer {
        self.tokenizer
    }

    /// The registry row, checked to be this handle's table.
    pub(crate) fn registry(&self, conn: &Connection) -> Result<Registry> {
        match schema::load(conn, &self.names.name)? {
            Some(reg) if reg.uid == self.uid => Ok(reg),
            _ => Err(self.dropped()),
        }
    }

    fn dropped(&self) -> Error {
        Error::InvalidArgument(format!("text table {:?} was dropped", self.names.name))
    }

    /// Adds `added` to the item count, checking the table still exists.
    fn count_in(&self, conn: &Connection, added: i64) -> Result<()> {
        let found = conn
            .prepare_cached(&format!(
                "UPDATE {TABLES} SET items = items + ?3 WHERE name = ?1 AND rowid = ?2"
            ))?
            .execute(rusqlite::params![&self.names.name, self.uid, added])?;
        if found == 1 {
            Ok(())
        } else {
            Err(self.dropped())
        }
    }

    pub(crate) fn check_texts(&self, texts: &[&str]) -> Result<()> {
        if texts.len() != self.columns.len() {
            return Err(Error::InvalidArgument(format!(
                "text table {:?} has {} columns {:?}; got {} texts",
                self.names.name,
                self.columns.len(),
                self.columns,
                texts.len()
            )));
        }
        Ok(())
    }

    fn check_doc(&self, doc: &NewDoc<'_>) -> Result<()> {
        self.check_texts(doc.texts)?;
        check_value(doc.value)
    }

    /// Inserts documents in one transaction and returns their ids (consecutive when nobody
    /// else writes the table meanwhile). Every document is checked before anything is
    /// written.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a document with the wrong number of texts, a value over
    /// [`MAX_VALUE_BYTES`] or metadata that is not JSON; nothing is written then.
    pub fn insert_many(&self, store: &mut Store, docs: &[NewDoc<'_>]) -> Result<Vec<i64>> {
        for (row, doc) in docs.iter().enumerate() {
            self.check_doc(doc).map_err(|err| match err {
                Error::InvalidArgument(msg) if docs.len() > 1 => {
                    Error::InvalidArgument(format!("document {row}: {msg}"))
                }
                other => other,
            })?;
        }
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        store
            .write(|conn| {
                let ids = self.insert_in(conn, docs)?;
                self.count_in(conn, docs.len() as i64)?;
                Ok(ids)
            })
            .map_err(kvault::metadata_json_error)
    }

    fn insert_in(&self, conn: &Connection, docs: &[NewDoc<'_>]) -> Result<Vec<i64>> {
        let n = self.columns.len();
        let placeholders = |from: usize| {
            (from..from + n)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut insert_row = conn.prepare_cached(&format!(
            "INSERT INTO {} (__hash, __encoding, __metadata, {}, __value)
             VALUES (?1, ?2, json(?3), {}, ?{})",
            ident(&self.names.items),
            self.column_list,
            placeholders(4),
            n + 4
        ))?;
        let mut insert_index = conn.prepare_cached(&format!(
            "INSERT INTO {} (rowid, {}) VALUES (?1, {})",
            ident(&self.names.fts),
            self.column_list,
            placeholders(2)
        ))?;
        let mut ids = Vec::with_capacity(docs.len());
        for doc in docs {
            insert_row.raw_bind_parameter(1, text_hash(doc.texts))?;
            insert_row.raw_bind_parameter(2, doc.encoding.code())?;
            insert_row.raw_bind_parameter(3, doc.metadata)?;
            for (i, text) in doc.texts.iter().enumerate() {
                insert_row.raw_bind_parameter(4 + i, *text)?;
            }
            insert_row.raw_bind_parameter(n + 4, doc.value)?;
            insert_row.raw_execute()?;
            let id = conn.last_insert_rowid();
            insert_index.raw_bind_parameter(1, id)?;
            for (i, text) in doc.texts.iter().enumerate() {
                insert_index.raw_bind_parameter(2 + i, *text)?;
            }
            insert_index.raw_execute()?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Stores `doc` under its exact texts: the first document with these texts gets the new
    /// value and metadata (its id is kept), or the document is inserted. Returns the id.
    ///
    /// # Errors
    /// As [`TextTable::insert_many`].
    pub fn put(&self, store: &mut Store, doc: &NewDoc<'_>) -> Result<i64> {
        self.check_doc(doc)?;
        store
            .write(|conn| {
                if let Some(id) = self.find_text_in(conn, doc.texts)? {
                    conn.prepare_cached(&format!(
                        "UPDATE {} SET __encoding = ?2, __metadata = json(?3), __value = ?4
                         WHERE __id = ?1",
                        ident(&self.names.items)
                    ))?
                    .execute(rusqlite::params![
                        id,
                        doc.encoding.code(),
                        doc.metadata,
                        doc.value
                    ])?;
                    return Ok(id);
                }
                let ids = self.insert_in(conn, std::slice::from_ref(doc))?;
                self.count_in(conn, 1)?;
                Ok(ids[0])
            })
            .map_err(kvault::metadata_json_error)
    }

    /// Changes a document's texts, value or metadata; whether it exists. New texts replace
    /// the old ones in the index in the same transaction.
    ///
    /// # Errors
    /// As [`TextTable::insert_many`]; nothing is written on error.
    pub fn update(&self, store: &mut Store, id: i64, update: DocUpdate<'_>) -> Result<bool> {
        if let Some(texts) = update.texts {
            self.check_texts(texts)?;
        }
        if let Some((value, _)) = update.value {
            check_value(value)?;
        }
        store
            .write(|conn| {
                self.registry(conn)?;
                if let Some(texts) = update.texts {
                    if !self.unindex(conn, id)? {
                        return Ok(false);
                    }
                    let mut params: Vec<Value> = vec![Value::Integer(id)];
                    params.push(Value::Integer(text_hash(texts)));
                    params.extend(texts.iter().map(|t| Value::Text((*t).to_string())));
                    let sets: Vec<String> = self
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| format!("{} = ?{}", ident(c), i + 3))
                        .collect();
                    conn.prepare_cached(&format!(
                        "UPDATE {} SET __hash = ?2, {} WHERE __id = ?1",
                        ident(&self.names.items),
                        sets.join(", ")
                    ))?
                    .execute(rusqlite::params_from_iter(params))?;
                    self.index(conn, id, texts)?;
                }
                let changed = conn
                    .prepare_cached(&format!(
                        "UPDATE {} SET
                             __value = CASE WHEN ?2 THEN ?3 ELSE __value END,
                             __encoding = CASE WHEN ?2 THEN ?4 ELSE __encoding END,
                             __metadata = CASE WHEN ?5 THEN json(?6) ELSE __metadata END
                         WHERE __id = ?1",
                        ident(&self.names.items)
                    ))?
                    .execute(rusqlite::params![
                        id,
                        update.value.is_some(),
                        update.value.map(|(v, _)| v),
                        update.value.map(|(_, e)| e.code()),
                        update.metadata.is_some(),
                        update.metadata.flatten(),
                    ])?;
                Ok(changed == 1)
            })
            .map_err(kvault::metadata_json_error)
    }

    /// Removes document `id`'s texts from the index (FTS5 needs the old texts to do so);
    /// whether the document exists.
    fn unindex(&self, conn: &Connection, id: i64) -> Result<bool> {
        let mut read = conn.prepare_cached(&format!(
            "SELECT {} FROM {} WHERE __id = ?1",
            self.column_list,
            ident(&self.names.items)
        ))?;
        let mut rows = read.query([id])?;
        let Some(row) = rows.next()? else {
            return Ok(false);
        };
        let mut delete = conn.prepare_cached(&format!(
            "INSERT INTO {fts} ({fts}, rowid, {cols}) VALUES ('delete', ?1, {params})",
            fts = ident(&self.names.fts),
            cols = self.column_list,
            params = (0..self.columns.len())
                .map(|i| format!("?{}", i + 2))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
        delete.raw_bind_parameter(1, id)?;
        for i in 0..self.columns.len() {
            delete.raw_bind_parameter(i + 2, ToSqlOutput::Borrowed(row.get_ref(i)?))?;
        }
        delete.raw_execute()?;
        Ok(true)
    }

    fn index(&self, conn: &Connection, id: i64, texts: &[&str]) -> Result<()> {
        let mut insert = conn.prepare_cached(&format!(
            "INSERT INTO {} (rowid, {}) VALUES (?1, {})",
            ident(&self.names.fts),
            self.column_list,
            (0..self.columns.len())
                .map(|i| format!("?{}", i + 2))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
        insert.raw_bind_parameter(1, id)?;
        for (i, text) in texts.iter().enumerate() {
            insert.raw_bind_parameter(i + 2, *text)?;
        }
        insert.raw_execute()?;
        Ok(())
    }

    /// Deletes documents by id in one transaction; how many existed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn delete(&self, store: &mut Store, ids: &[i64]) -> Result<u64> {
        store.write(|conn| {
            self.registry(conn)?;
            let mut delete = conn.prepare_cached(&format!(
                "DELETE FROM {} WHERE __id = ?1",
                ident(&self.names.items)
            ))?;
            let mut removed = 0u64;
            for &id in ids {
                if self.unindex(conn, id)? {
                    delete.execute([id])?;
                    removed += 1;
                }
            }
            if removed > 0 {
                self.count_in(conn, -(removed as i64))?;
            }
            Ok(removed)
        })
    }

    /// Deletes every document; how many there were.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn clear(&self, store: &mut Store) -> Result<u64> {
        store.write(|conn| {
            let count = self.registry(conn)?.items;
            conn.execute_batch(&format!(
                "DELETE FROM {items}; INSERT INTO {fts} ({fts}) VALUES ('delete-all');",
                items = ident(&self.names.items),
                fts = ident(&self.names.fts),
            ))?;
            conn.execute(
                &format!("UPDATE {TABLES} SET items = 0 WHERE name = ?1"),
                [&self.names.name],
            )?;
            Ok(count)
        })
    }

    /// Rebuilds the FTS5 index from the stored texts (after damage, or to compact it).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn rebuild(&self, store: &mut Store) -> Result<()> {
        store.write(|conn| {
            self.registry(conn)?;
            self.fts_command(conn, "rebuild")
        })
    }

    /// Merges the index's segments into one, which makes later searches faster.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn optimize(&self, store: &mut Store) -> Result<()> {
        store.write(|conn| {
            self.registry(conn)?;
            self.fts_command(conn, "optimize")
        })
    }

    pub(crate) fn fts_command(&self, conn: &Connection, command: &str) -> Result<()> {
        let fts = ident(&self.names.fts);
        conn.execute(&format!("INSERT INTO {fts} ({fts}) VALUES (?1)"), [command])?;
        Ok(())
    }

    fn doc_select(&self) -> String {
        format!(
            "SELECT __id, {}, __value, __encoding, __metadata FROM {}",
            self.column_list,
            ident(&self.names.items)
        )
    }

    fn doc_from_row(&self, row: &rusqlite::Row<'_>) -> Result<Doc> {
        let n = self.columns.len();
        let mut texts = Vec::with_capacity(n);
        for i in 0..n {
            texts.push(row.get::<_, String>(1 + i)?);
        }
        Ok(Doc {
            id: row.get(0)?,
            texts,
            value: row.get(n + 1)?,
            encoding: Encoding::from_i64(row.get(n + 2)?)?,
            metadata: row.get(n + 3)?,
        })
    }

    /// The document with this id.
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupted`] for a damaged row.
    pub fn get(&self, store: &mut Store, id: i64) -> Result<Option<Doc>> {
        store.read(|conn| {
            self.registry(conn)?;
            let mut stmt =
                conn.prepare_cached(&format!("{} WHERE __id = ?1", self.doc_select()))?;
            let mut rows = stmt.query([id])?;
            rows.next()?.map(|row| self.doc_from_row(row)).transpose()
        })
    }

    /// The first document (lowest id) whose texts equal `texts` exactly.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for the wrong number of texts; SQLite errors.
    pub fn get_by_text(&self, store: &mut Store, texts: &[&str]) -> Result<Option<Doc>> {
        self.check_texts(texts)?;
        store.read(|conn| {
            self.registry(conn)?;
            let Some(id) = self.find_text_in(conn, texts)? else {
                return Ok(None);
            };
            let mut stmt =
                conn.prepare_cached(&format!("{} WHERE __id = ?1", self.doc_select()))?;
            let mut rows = stmt.query([id])?;
            rows.next()?.map(|row| self.doc_from_row(row)).transpose()
        })
    }

    fn find_text_in(&self, conn: &Connection, texts: &[&str]) -> Result<Option<i64>> {
        let equal: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = ?{}", ident(c), i + 2))
            .collect();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT __id FROM {} WHERE __hash = ?1 AND {} ORDER BY __id LIMIT 1",
            ident(&self.names.items),
            equal.join(" AND ")
        ))?;
        stmt.raw_bind_parameter(1, text_hash(texts))?;
        for (i, text) in texts.iter().enumerate() {
            stmt.raw_bind_parameter(i + 2, *text)?;
        }
        let mut rows = stmt.raw_query();
        Ok(rows.next()?.map(|r| r.get(0)).transpose()?)
    }

    /// Number of documents.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn count(&self, store: &mut Store) -> Result<u64> {
        store.read(|conn| Ok(self.registry(conn)?.items))
    }

    /// Whether a document with this id exists.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn exists(&self, store: &mut Store, id: i64) -> Result<bool> {
        store.read(|conn| {
            self.registry(conn)?;
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT 1 FROM {} WHERE __id = ?1",
                    ident(&self.names.items)
                ))?
                .exists([id])?)
        })
    }

    /// Up to `limit` document ids after skipping `offset`, ascending.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn ids(&self, store: &mut Store, limit: usize, offset: usize) -> Result<Vec<i64>> {
        store.read(|conn| {
            self.registry(conn)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT __id FROM {} ORDER BY __id LIMIT ?1 OFFSET ?2",
                ident(&self.names.items)
            ))?;
            let ids = stmt
                .query_map(
                    [
                        i64::try_from(limit).unwrap_or(i64::MAX),
                        i64::try_from(offset).unwrap_or(i64::MAX),
                    ],
                    |r| r.get(0),
                )?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            Ok(ids)
        })
    }

    /// Up to `limit` ids of documents with ids above `after`, ascending (for paging through a
    /// large table without an offset).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn ids_after(&self, store: &mut Store, after: i64, limit: usize) -> Result<Vec<i64>> {
        store.read(|conn| {
            self.registry(conn)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT __id FROM {} WHERE __id > ?1 ORDER BY __id LIMIT ?2",
                ident(&self.names.items)
            ))?;
            let ids = stmt
                .query_map([after, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    r.get(0)
                })?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            Ok(ids)
        })
    }

    /// The registry row (columns, tokenizer, count).
    ///
    /// # Errors
    /// SQLite errors; [`Error::InvalidArgument`] when the table was dropped.
    pub fn info(&self, store: &mut Store) -> Result<Registry> {
        store.read(|conn| self.registry(conn))
    }
}

fn check_value(value: &[u8]) -> Result<()> {
    kvault::check_item_value(value, MAX_VALUE_BYTES, "texts")
}
