//! [`VectorTable`]: the handle of one vector collection, and its reads and writes. Every write
//! is one transaction that bumps the collection's change sequence; searches are in
//! `search.rs`.

use std::sync::{Arc, Mutex, MutexGuard};

use kvault::{Encoding, Error, KeyKind, Result, Store};
use rusqlite::{Connection, OptionalExtension};

use crate::schema::{self, IndexConfig, Names, Registry, INDEX_PARTS, TABLES};
use crate::spec::Spec;
use crate::state::{self, State};

/// The largest value stored beside a vector (larger media belong in a key-value table,
/// referenced from the value or metadata).
pub const MAX_VALUE_BYTES: usize = 256 << 20;

/// An item to insert.
#[derive(Debug, Clone, Copy)]
pub struct NewItem<'a> {
    /// The user's key: an item with the same key is replaced (keeping its id).
    pub key: Option<(&'a [u8], KeyKind)>,
    /// The vector in the collection's stored form (little-endian elements).
    pub vector: &'a [u8],
    /// The value's bytes.
    pub value: &'a [u8],
    /// How the layer above reads the value.
    pub encoding: Encoding,
    /// Metadata as a JSON object text (filterable).
    pub metadata: Option<&'a str>,
}

/// A stored item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Its id (assigned on insert, never reused).
    pub id: i64,
    /// The user's key, if it has one.
    pub key: Option<(Vec<u8>, KeyKind)>,
    /// The vector in stored form.
    pub vector: Vec<u8>,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The value's encoding.
    pub encoding: Encoding,
    /// Metadata JSON text.
    pub metadata: Option<String>,
}

/// What [`VectorTable::update`] changes (None: keep).
#[derive(Debug, Clone, Copy, Default)]
pub struct ItemUpdate<'a> {
    /// A new vector.
    pub vector: Option<&'a [u8]>,
    /// A new value and its encoding.
    pub value: Option<(&'a [u8], Encoding)>,
    /// New metadata (`Some(None)` clears it).
    pub metadata: Option<Option<&'a str>>,
}

/// A summary of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// The registry row.
    pub registry: Registry,
    /// Bytes of the stored HNSW snapshot (0: none).
    pub index_bytes: u64,
    /// Bytes of memory this handle's loaded engines use.
    pub memory_bytes: u64,
    /// Which engines this handle has loaded: `"flat"`, `"hnsw"`.
    pub loaded: Vec<&'static str>,
}

/// A vector collection in a vault file: items of (vector, value, optional key, optional
/// metadata), searched by distance. Cheap to clone; clones share the in-memory engines.
#[derive(Debug, Clone)]
pub struct VectorTable {
    pub(crate) names: Names,
    pub(crate) uid: i64,
    pub(crate) spec: Spec,
    pub(crate) index: IndexConfig,
    pub(crate) state: Arc<Mutex<State>>,
}

impl VectorTable {
    /// Opens collection `name`, creating it with `create` (spec and index settings) if it does
    /// not exist. An existing collection keeps its stored spec; if `create` is given and differs
    /// in dimensions, type or metric, that is an error rather than a silent reinterpretation.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name, a spec mismatch, or a missing collection
    /// without `create` (or in a read-only vault); SQLite errors.
    pub fn open(
        store: &mut Store,
        name: &str,
        create: Option<(Spec, IndexConfig)>,
    ) -> Result<Self> {
        let names = Names::new(name)?;
        let existing = store.retry(|conn| schema::load(conn, name))?;
        let registry = match (existing, create) {
            (Some(reg), Some((spec, _))) if reg.spec != spec => {
                return Err(Error::InvalidArgument(format!(
                    "vector table {name:?} holds {} {} vectors compared by {}; it was opened with \
                     {} {} by {}",
                    reg.spec.dimensions,
                    reg.spec.vector_type.name(),
                    reg.spec.metric.name(),
                    spec.dimensions,
                    spec.vector_type.name(),
                    spec.metric.name()
                )))
            }
            (Some(reg), _) => reg,
            (None, None) => {
                return Err(Error::InvalidArgument(format!(
                    "there is no vector table {name:?}"
                )))
            }
            (None, Some((spec, index))) => {
                let now = store.now_ms();
                store.write(|conn| {
                    if schema::load(conn, name)?.is_none() {
                        schema::create(conn, &names, &spec, &index, now)?;
                    }
                    Ok(())
                })?;
                store
                    .retry(|conn| schema::load(conn, name))?
                    .ok_or_else(|| Error::Corrupted(format!("vector table {name:?} vanished")))?
            }
        };
        Ok(Self {
            names,
            uid: registry.uid,
            spec: registry.spec,
            index: registry.index,
            state: Arc::new(Mutex::new(State::default())),
        })
    }

    /// Opens collection `name` if it exists.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name; SQLite errors.
    pub fn find(store: &mut Store, name: &str) -> Result<Option<Self>> {
        let names = Names::new(name)?;
        let Some(registry) = store.retry(|conn| schema::load(conn, name))? else {
            return Ok(None);
        };
        Ok(Some(Self {
            names,
            uid: registry.uid,
            spec: registry.spec,
            index: registry.index,
            state: Arc::new(Mutex::new(State::default())),
        }))
    }

    /// Deletes collection `name` with its items and index; whether it existed.
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
                "DROP TABLE IF EXISTS {items}; DROP TABLE IF EXISTS {deletes};",
                items = names.items,
                deletes = names.deletes
            ))?;
            conn.execute(
                &format!("DELETE FROM {INDEX_PARTS} WHERE name = ?1"),
                [name],
            )?;
            conn.execute(&format!("DELETE FROM {TABLES} WHERE name = ?1"), [name])?;
            Ok(true)
        })
    }

    /// The collection's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.names.name
    }

    /// The vectors' shape.
    #[must_use]
    pub fn spec(&self) -> Spec {
        self.spec
    }

    /// The index settings as stored when the handle was opened.
    #[must_use]
    pub fn index_config(&self) -> IndexConfig {
        self.index
    }

    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        // The engines are rebuilt from the file when in doubt, so a poisoned lock is reset.
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                guard.forget();
                self.state.clear_poison();
                guard
            }
        }
    }

    /// The registry row, checked to be this handle's collection.
    pub(crate) fn registry(&self, conn: &Connection) -> Result<Registry> {
        match schema::load(conn, &self.names.name)? {
            Some(reg) if reg.uid == self.uid => Ok(reg),
            _ => Err(Error::InvalidArgument(format!(
                "vector table {:?} was dropped",
                self.names.name
            ))),
        }
    }

    /// Bumps the change sequence by one and the item count by `added`; returns the new
    /// sequence.
    fn bump(&self, conn: &Connection, added: i64) -> Result<i64> {
        let seq: Option<i64> = conn
            .prepare_cached(&format!(
                "UPDATE {TABLES} SET seq = seq + 1, items = items + ?3
                 WHERE name = ?1 AND rowid = ?2 RETURNING seq"
            ))?
            .query_row(rusqlite::params![&self.names.name, self.uid, added], |r| {
                r.get(0)
            })
            .optional()?;
        seq.ok_or_else(|| {
            Error::InvalidArgument(format!("vector table {:?} was dropped", self.names.name))
        })
    }

    fn check_item(&self, item: &NewItem<'_>) -> Result<()> {
        self.spec.check_vectors(item.vector, self.spec.metric)?;
        if item.vector.len() != self.spec.vector_bytes() {
            return Err(Error::InvalidArgument(format!(
                "expected one vector of {} {} dimensions ({} bytes), got {} bytes",
                self.spec.dimensions,
                self.spec.vector_type.name(),
                self.spec.vector_bytes(),
                item.vector.len()
            )));
        }
        check_value(item.value)?;
        if let Some((key, _)) = item.key {
            kvault::validate_key(key)?;
        }
        Ok(())
    }

    /// Inserts items in one transaction and returns their ids. An item whose key is already
    /// in the collection replaces that item's vector, value and metadata and keeps its id.
    /// Every item is checked before anything is written.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a vector of the wrong size, a NaN or infinite element, a
    /// zero vector under cosine, a value over [`MAX_VALUE_BYTES`], malformed metadata JSON or
    /// a too long key; nothing is written then.
    pub fn insert_many(&self, store: &mut Store, items: &[NewItem<'_>]) -> Result<Vec<i64>> {
        for (row, item) in items.iter().enumerate() {
            self.check_item(item).map_err(|err| match err {
                Error::InvalidArgument(msg) if items.len() > 1 => {
                    Error::InvalidArgument(format!("item {row}: {msg}"))
                }
                other => other,
            })?;
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let result = store.write(|conn| {
            let seq = self.bump(conn, 0)?;
            let mut insert = conn.prepare_cached(&format!(
                "INSERT INTO {} (seq, key, key_kind, metadata, encoding, vector, value)
                 VALUES (?1, ?2, ?3, json(?4), ?5, ?6, ?7)",
                self.names.items
            ))?;
            let mut find = conn.prepare_cached(&format!(
                "SELECT id FROM {} WHERE key = ?1",
                self.names.items
            ))?;
            let mut replace = conn.prepare_cached(&format!(
                "UPDATE {} SET seq = ?2, key_kind = ?3, metadata = json(?4), encoding = ?5,
                     vector = ?6, value = ?7 WHERE id = ?1",
                self.names.items
            ))?;
            let mut ids = Vec::with_capacity(items.len());
            let mut added = 0i64;
            for item in items {
                let (key, kind) = item
                    .key
                    .map_or((None, None), |(k, kind)| (Some(k), Some(kind as i64)));
                let existing: Option<i64> = match key {
                    Some(k) => find.query_row([k], |r| r.get(0)).optional()?,
                    None => None,
                };
                let id = if let Some(id) = existing {
                    replace.execute(rusqlite::params![
                        id,
                        seq,
                        kind,
                        item.metadata,
                        item.encoding.code(),
                        item.vector,
                        item.value
                    ])?;
                    id
                } else {
                    insert.execute(rusqlite::params![
                        seq,
                        key,
                        kind,
                        item.metadata,
                        item.encoding.code(),
                        item.vector,
                        item.value
                    ])?;
                    added += 1;
                    conn.last_insert_rowid()
                };
                ids.push(id);
            }
            if added != 0 {
                conn.execute(
                    &format!("UPDATE {TABLES} SET items = items + ?2 WHERE name = ?1"),
                    rusqlite::params![&self.names.name, added],
                )?;
            }
            Ok(ids)
        });
        let ids = result.map_err(kvault::metadata_json_error)?;
        self.after_write(store)?;
        Ok(ids)
    }

    /// Changes an item's vector, value or metadata; whether the item exists.
    ///
    /// # Errors
    /// As [`VectorTable::insert_many`]; nothing is written on error.
    pub fn update(&self, store: &mut Store, id: i64, update: ItemUpdate<'_>) -> Result<bool> {
        if let Some(vector) = update.vector {
            self.check_item(&NewItem {
                key: None,
                vector,
                value: &[],
                encoding: Encoding::RAW,
                metadata: None,
            })?;
        }
        if let Some((value, _)) = update.value {
            check_value(value)?;
        }
        let found = store
            .write(|conn| {
                let exists: bool = conn
                    .prepare_cached(&format!("SELECT 1 FROM {} WHERE id = ?1", self.names.items))?
                    .exists([id])?;
                if !exists {
                    return Ok(false);
                }
                let seq = self.bump(conn, 0)?;
                conn.prepare_cached(&format!(
                    "UPDATE {} SET seq = ?2,
                         vector = coalesce(?3, vector),
                         value = CASE WHEN ?4 THEN ?5 ELSE value END,
                         encoding = CASE WHEN ?4 THEN ?6 ELSE encoding END,
                         metadata = CASE WHEN ?7 THEN json(?8) ELSE metadata END
                     WHERE id = ?1",
                    self.names.items
                ))?
                .execute(rusqlite::params![
                    id,
                    seq,
                    update.vector,
                    update.value.is_some(),
                    update.value.map(|(v, _)| v),
                    update.value.map(|(_, e)| e.code()),
                    update.metadata.is_some(),
                    update.metadata.flatten(),
                ])?;
                Ok(true)
            })
            .map_err(kvault::metadata_json_error)?;
        if found {
            self.after_write(store)?;
        }
        Ok(found)
    }

    /// Deletes items by id in one transaction; how many existed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn delete(&self, store: &mut Store, ids: &[i64]) -> Result<u64> {
        let removed = store.write(|conn| self.delete_in(conn, ids))?;
        if removed > 0 {
            self.after_write(store)?;
        }
        Ok(removed)
    }

    fn delete_in(&self, conn: &Connection, ids: &[i64]) -> Result<u64> {
        let mut delete =
            conn.prepare_cached(&format!("DELETE FROM {} WHERE id = ?1", self.names.items))?;
        let mut gone = Vec::new();
        for &id in ids {
            if delete.execute([id])? > 0 {
                gone.push(id);
            }
        }
        if gone.is_empty() {
            return Ok(0);
        }
        let seq = self.bump(conn, -(gone.len() as i64))?;
        let mut log = conn.prepare_cached(&format!(
            "INSERT INTO {} (seq, id) VALUES (?1, ?2)",
            self.names.deletes
        ))?;
        for id in &gone {
            log.execute([seq, *id])?;
        }
        // Deletions the stored graph already has (or all, without a graph) can be pruned.
        let reg = self.registry(conn)?;
        state::prune_deletions(conn, &self.names, reg.index_seq.unwrap_or(reg.seq))?;
        Ok(gone.len() as u64)
    }

    /// Deletes the items with these keys; how many existed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn delete_keys(&self, store: &mut Store, keys: &[&[u8]]) -> Result<u64> {
        let removed = store.write(|conn| {
            let mut find = conn.prepare_cached(&format!(
                "SELECT id FROM {} WHERE key = ?1",
                self.names.items
            ))?;
            let mut ids = Vec::new();
            for key in keys {
                if let Some(id) = find.query_row([key], |r| r.get(0)).optional()? {
                    ids.push(id);
                }
            }
            self.delete_in(conn, &ids)
        })?;
        if removed > 0 {
            self.after_write(store)?;
        }
        Ok(removed)
    }

    /// Deletes every item (and the stored graph); how many there were.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn clear(&self, store: &mut Store) -> Result<u64> {
        let removed = store.write(|conn| {
            let count = self.registry(conn)?.items;
            let seq = self.bump(conn, 0)?;
            conn.execute_batch(&format!(
                "DELETE FROM {}; DELETE FROM {};",
                self.names.items, self.names.deletes
            ))?;
            conn.execute(
                &format!("DELETE FROM {INDEX_PARTS} WHERE name = ?1"),
                [&self.names.name],
            )?;
            // Every engine in any process is older than `seq`, so each reloads (empty).
            conn.execute(
                &format!(
                    "UPDATE {TABLES} SET items = 0, pruned_seq = ?2, index_seq = NULL
                     WHERE name = ?1"
                ),
                rusqlite::params![&self.names.name, seq],
            )?;
            Ok(count)
        })?;
        self.lock_state().forget();
        Ok(removed)
    }

    /// After a committed write outside an explicit transaction: a loaded graph follows at once
    /// and is stored when it changed enough, so the file's snapshot stays close to the rows.
    fn after_write(&self, store: &mut Store) -> Result<()> {
        if store.transaction_depth() > 0 || store.is_read_only() {
            return Ok(());
        }
        let mut state = self.lock_state();
        if state.hnsw.is_none() {
            return Ok(());
        }
        store.read(|conn| {
            let reg = self.registry(conn)?;
            state.catch_up(conn, &self.names, &reg)
        })?;
        if state.should_store() {
            store.write(|conn| state.store_snapshot(conn, &self.names))?;
        }
        Ok(())
    }

    /// The item with this id.
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupted`] for a damaged row.
    pub fn get(&self, store: &mut Store, id: i64) -> Result<Option<Item>> {
        store.read(|conn| self.fetch(conn, "id", &id))
    }

    /// The item with this key.
    ///
    /// # Errors
    /// As [`VectorTable::get`].
    pub fn get_by_key(&self, store: &mut Store, key: &[u8]) -> Result<Option<Item>> {
        store.read(|conn| self.fetch(conn, "key", &key))
    }

    pub(crate) fn fetch(
        &self,
        conn: &Connection,
        column: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Option<Item>> {
        let row = conn
            .prepare_cached(&format!(
                "SELECT id, key, key_kind, vector, value, encoding, metadata FROM {}
                 WHERE {column} = ?1",
                self.names.items
            ))?
            .query_row([value], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .optional()?;
        let Some((id, key, kind, vector, value, encoding, metadata)) = row else {
            return Ok(None);
        };
        let key = match (key, kind) {
            (Some(key), Some(kind)) => Some((key, KeyKind::from_i64(kind)?)),
            (None, _) => None,
            (Some(_), None) => {
                return Err(Error::Corrupted(format!(
                    "vector table {:?}: item {id} has a key without a kind",
                    self.names.name
                )))
            }
        };
        if vector.len() != self.spec.vector_bytes() {
            return Err(Error::Corrupted(format!(
                "vector table {:?}: item {id} has a {}-byte vector, not {}",
                self.names.name,
                vector.len(),
                self.spec.vector_bytes()
            )));
        }
        Ok(Some(Item {
            id,
            key,
            vector,
            value,
            encoding: Encoding::from_i64(encoding)?,
            metadata,
        }))
    }

    /// Number of items.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn count(&self, store: &mut Store) -> Result<u64> {
        store.read(|conn| Ok(self.registry(conn)?.items))
    }

    /// Whether an item with this id exists.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn exists(&self, store: &mut Store, id: i64) -> Result<bool> {
        store.read(|conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT 1 FROM {} WHERE id = ?1", self.names.items))?
                .exists([id])?)
        })
    }

    /// Up to `limit` `(id, key)` pairs of items with ids above `after`, ascending.
    ///
    /// # Errors
    /// SQLite errors.
    #[allow(clippy::type_complexity)]
    pub fn ids(
        &self,
        store: &mut Store,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Option<(Vec<u8>, KeyKind)>)>> {
        store.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT id, key, key_kind FROM {} WHERE id > ?1 ORDER BY id LIMIT ?2",
                self.names.items
            ))?;
            let rows = stmt
                .query_map(rusqlite::params![after, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<Vec<u8>>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(id, key, kind)| {
                    let key = match key {
                        Some(key) => Some((key, KeyKind::from_i64(kind.unwrap_or(-1))?)),
                        None => None,
                    };
                    Ok((id, key))
                })
                .collect()
        })
    }

    /// A summary: the registry row, the stored graph's size, and this handle's engines.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn info(&self, store: &mut Store) -> Result<TableInfo> {
        let (registry, index_bytes) = store.read(|conn| {
            let reg = self.registry(conn)?;
            let bytes: i64 = conn.query_row(
                &format!(
                    "SELECT coalesce(sum(length(data)), 0) FROM {INDEX_PARTS} WHERE name = ?1"
                ),
                [&self.names.name],
                |r| r.get(0),
            )?;
            Ok((reg, bytes as u64))
        })?;
        let state = self.lock_state();
        let mut loaded = Vec::new();
        if state.flat.is_some() {
            loaded.push("flat");
        }
        if state.hnsw.is_some() {
            loaded.push("hnsw");
        }
        Ok(TableInfo {
            registry,
            index_bytes,
            memory_bytes: state.memory_bytes() as u64,
            loaded,
        })
    }
}

fn check_value(value: &[u8]) -> Result<()> {
    kvault::check_item_value(value, MAX_VALUE_BYTES, "vectors")
}
