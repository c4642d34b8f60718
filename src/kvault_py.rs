//! `KVaultCore`, `BlobReaderCore` and `BlobWriterCore`: the native halves of the Python
//! `KVault` and its file objects. Every method converts its arguments, releases the GIL, locks
//! the vault and calls one core operation. File-level operations live on `VaultCore`.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use kvault::{
    BlobReader, BlobWriter, Condition, Dedup, Encoding, Eviction, History, HistoryEntry, KeyKind,
    KeyRange, Kv, PolicyChange, PutOptions, Store, StoredValue, ValueLocation, VersionEnd,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::convert::{key_from_py, key_to_py, non_negative, raw_key, value_from_py};
use crate::errors::{BindingError, InvalidArgument};
use crate::filled_bytes::{filled_bytes, UnfilledBytes};
use crate::vault_py::{run, PyVault};

/// One page of a key scan: the keys and the raw bytes of the last one (continuation point).
type KeyPage = (Vec<Py<PyAny>>, Option<Py<PyBytes>>);
/// One page of an item scan: the pairs (values as `get` returns them) and the continuation point.
type ItemPage = (Vec<(Py<PyAny>, Py<PyAny>)>, Option<Py<PyBytes>>);
/// See `KVaultCore.table_stats`.
type StatsTuple = (u64, u64, u64, u64, u64, u64, u64, u64, u64, i64, i64, i64);
/// See `KVaultCore.cache_policy`.
type PolicyTuple = (
    Option<u64>,
    &'static str,
    Option<i64>,
    &'static str,
    u64,
    u64,
    u64,
    u64,
    i64,
);
/// One history entry: `(kind, version, time_ms, value)`; kind is "value", "deleted" or
/// "expired" (a tombstone, whose value is None).
type HistoryTuple = (&'static str, i64, i64, Option<Py<PyAny>>);
/// `(size, version, created_at_ms, updated_at_ms, chunked, expires_at_ms, encoding)`.
type InfoTuple = (u64, i64, i64, i64, bool, Option<i64>, u8);

/// The native key-value table of a vault file.
#[pyclass(module = "ambervault._ambervault", name = "KVaultCore", frozen)]
pub struct PyKVault {
    kv: Kv,
}

#[pymethods]
impl PyKVault {
    /// The key-value table `table` of the open file `vault` (created if missing).
    #[new]
    fn new(
        py: Python<'_>,
        vault: &Bound<'_, PyVault>,
        table: String,
        chunk_size: i64,
    ) -> Result<Self, BindingError> {
        let chunk_size = Self::validate(&table, chunk_size)?;
        let vault = vault.get().vault().clone();
        let kv = py.detach(move || vault.kv_with(&table, chunk_size))?;
        Ok(Self { kv })
    }

    /// The table's compression setting for new chunks (`"zstd:3:0.05"`, ...), or None.
    #[getter]
    fn compression(&self) -> Option<String> {
        self.kv.table().compression().map(|c| c.to_setting())
    }

    /// Sets and records how the table compresses new chunks (`"none"` for none); values
    /// already stored keep their form.
    fn set_compression(&self, py: Python<'_>, setting: &str) -> Result<(), BindingError> {
        let compression = kvault::codec::Compression::parse(setting)?;
        let kv = self.kv.clone();
        py.detach(move || kv.table().set_compression(&mut kv.store(), compression))?;
        Ok(())
    }

    /// Checks a table name and chunk size without opening anything (a bad argument must
    /// create no file); returns the chunk size.
    #[staticmethod]
    fn validate(table: &str, chunk_size: i64) -> Result<usize, BindingError> {
        let chunk_size: usize = non_negative("chunk_size", chunk_size)?;
        kvault::validate_chunk_size(chunk_size)?;
        kvault::validate_table_name(table)?;
        Ok(chunk_size)
    }

    /// Stores one value (bytes-like, already encoded as `encoding` says) under a str or bytes
    /// key. `expires_at_ms` sets an expiry time; `if_version` / `if_absent` make the write
    /// conditional (`Conflict` otherwise).
    #[pyo3(signature = (key, value, expires_at_ms=None, if_version=None, if_absent=false,
                        encoding=0))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expires_at_ms: Option<i64>,
        if_version: Option<i64>,
        if_absent: bool,
        encoding: u8,
    ) -> Result<(), BindingError> {
        let mut options = put_options(expires_at_ms, if_version, if_absent)?;
        options.encoding = Encoding(encoding);
        let (key, kind) = key_from_py(key)?;
        let value = value_from_py(value)?;
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| {
            table.put_with(s, &key, kind, &value, options)
        })
    }

    /// The value's bytes (`(encoding, bytes)` when it is not raw), or None when the key is
    /// absent (or expired).
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
    ) -> Result<Option<Py<PyAny>>, BindingError> {
        let (key, _) = key_from_py(key)?;
        let table = self.kv.table();
        // An inline value is one indexed statement: found under the GIL when the store is free.
        // Chunked values (and a busy store) take the path that releases the GIL.
        let quick = self.kv.vault().try_with(|store| {
            let now = store.now_ms();
            store
                .read_latest_once(|conn| table.locate(conn, &key, now))
                .map(|found| (now, found))
        });
        match quick.transpose()? {
            Some((now, None)) => {
                table.note_read(&key, false, now);
                return Ok(None);
            }
            Some((now, Some((ValueLocation::Inline(bytes), encoding)))) => {
                table.note_read(&key, true, now);
                return Ok(Some(stored_to_py(py, &bytes, encoding)?));
            }
            Some((now, Some((ValueLocation::Chunked(blob), encoding)))) => {
                if let Some(data) = read_chunked(py, self.kv.vault(), table, &blob)? {
                    table.note_read(&key, true, now);
                    return Ok(Some(encoded_to_py(py, data, encoding)?));
                }
            }
            None => {}
        }
        let found = run(py, self.kv.vault(), |s| table.get_value(s, &key))?;
        Ok(found.map(|v| value_to_py(py, &v)).transpose()?)
    }

    /// Removes the key; returns whether it existed.
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> Result<bool, BindingError> {
        let (key, _) = key_from_py(key)?;
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.delete(s, &key))
    }

    /// Whether the key is present.
    fn exists(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> Result<bool, BindingError> {
        let (key, _) = key_from_py(key)?;
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.exists(s, &key))
    }

    /// Number of live keys in a range.
    #[pyo3(signature = (prefix=None, start=None, end=None))]
    fn count(
        &self,
        py: Python<'_>,
        prefix: Option<&Bound<'_, PyAny>>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> Result<u64, BindingError> {
        let range = key_range(prefix, start, end, None, false)?;
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.count_range(s, &range))
    }

    /// Removes every key; returns how many rows there were.
    fn clear(&self, py: Python<'_>) -> Result<u64, BindingError> {
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.clear(s))
    }

    /// Stores many values in one transaction. Items are `(key, value)` pairs, each value
    /// stored as it is if it is `bytes` and otherwise encoded by `encode(value) -> (bytes-like,
    /// encoding)` (raw when `encode` is None), all expiring at `expires_at_ms`; or, from the
    /// write-back cache, `(key, bytes, expires_at_ms, encoding)` items already encoded. Every
    /// item is converted before anything is written.
    #[pyo3(signature = (items, expires_at_ms=None, encode=None))]
    fn put_many(
        &self,
        py: Python<'_>,
        items: &Bound<'_, PyList>,
        expires_at_ms: Option<i64>,
        encode: Option<&Bound<'_, PyAny>>,
    ) -> Result<(), BindingError> {
        let owned: Vec<Bound<'_, PyAny>> = items.iter().collect();
        let mut parts = Vec::with_capacity(owned.len());
        for item in &owned {
            let bad =
                || crate::errors::type_error("put_many items must be (key, value) pairs".into());
            let tuple = item.cast::<PyTuple>().map_err(|_| bad())?;
            let (key, value) = (tuple.get_item(0)?, tuple.get_item(1)?);
            match tuple.len() {
                2 => match encode {
                    Some(encode) if !value.is_exact_instance_of::<PyBytes>() => {
                        let encoded = encode.call1((&value,))?;
                        let encoded = encoded.cast::<PyTuple>().map_err(PyErr::from)?;
                        let code: u8 = encoded.get_item(1)?.extract()?;
                        parts.push((key, encoded.get_item(0)?, expires_at_ms, code));
                    }
                    _ => parts.push((key, value, expires_at_ms, 0)),
                },
                4 => {
                    let expires: Option<i64> = tuple.get_item(2)?.extract()?;
                    let code: u8 = tuple.get_item(3)?.extract()?;
                    parts.push((key, value, expires, code));
                }
                _ => return Err(bad()),
            }
        }
        let mut converted = Vec::with_capacity(parts.len());
        for (key, value, expires, encoding) in &parts {
            let (key, kind) = key_from_py(key)?;
            converted.push((key, kind, value_from_py(value)?, *expires, *encoding));
        }
        let refs: Vec<kvault::PutItem<'_>> = converted
            .iter()
            .map(|(k, kind, v, e, enc)| {
                kvault::PutItem::new(k, *kind, v)
                    .expiring(*e)
                    .encoded(Encoding(*enc))
            })
            .collect();
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.put_many(s, &refs))
    }

    /// Values for many keys (as `get` returns them; None where absent), read under one lock
    /// and one snapshot.
    fn get_many(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyList>,
    ) -> Result<Vec<Option<Py<PyAny>>>, BindingError> {
        let owned: Vec<Bound<'_, PyAny>> = keys.iter().collect();
        let mut raw = Vec::with_capacity(owned.len());
        for key in &owned {
            raw.push(key_from_py(key)?.0);
        }
        let table = self.kv.table();
        let vault = self.kv.vault();
        let (now, located) = run(py, vault, |s| table.locate_many(s, &raw))?;
        if let Some(values) = read_located(py, vault, table, &located)? {
            for (key, found) in raw.iter().zip(&located) {
                table.note_read(key, found.is_some(), now);
            }
            return Ok(values);
        }
        // A value was replaced between locating and reading: all again, from one snapshot.
        let values = run(py, vault, |s| table.get_many_values(s, &raw))?;
        let values = values
            .iter()
            .map(|v| v.as_ref().map(|v| value_to_py(py, v)).transpose())
            .collect::<PyResult<Vec<_>>>()?;
        Ok(values)
    }

    /// One page of keys in bytewise order (descending with `reverse`): `(keys, last_raw_key)`;
    /// pass `last_raw_key` as `after` for the next page. An empty list ends the scan.
    #[pyo3(signature = (prefix, start, end, after, limit, reverse=false))]
    #[allow(clippy::too_many_arguments)]
    fn scan_keys(
        &self,
        py: Python<'_>,
        prefix: Option<&Bound<'_, PyAny>>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
        after: Option<Vec<u8>>,
        limit: usize,
        reverse: bool,
    ) -> Result<KeyPage, BindingError> {
        let range = key_range(prefix, start, end, after, reverse)?;
        let table = self.kv.table();
        let rows = run(py, self.kv.vault(), |s| {
            table.scan_keys(s, &range, limit.max(1))
        })?;
        Ok(key_page(py, &rows)?)
    }

    /// One page of `(key, value)` pairs: at most `limit`, fewer once `max_bytes` of values are
    /// collected (always at least one). Keys deleted mid-scan are skipped.
    #[pyo3(signature = (prefix, start, end, after, limit, max_bytes, reverse=false))]
    #[allow(clippy::too_many_arguments)]
    fn scan_items(
        &self,
        py: Python<'_>,
        prefix: Option<&Bound<'_, PyAny>>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
        after: Option<Vec<u8>>,
        limit: usize,
        max_bytes: usize,
        reverse: bool,
    ) -> Result<ItemPage, BindingError> {
        let range = key_range(prefix, start, end, after, reverse)?;
        let table = self.kv.table();
        let vault = self.kv.vault();
        let located = run(py, vault, |s| {
            table.locate_items(s, &range, limit, max_bytes)
        })?;
        let (keys, values): (Vec<_>, Vec<_>) = located
            .items
            .into_iter()
            .map(|(key, kind, found)| ((key, kind), Some(found)))
            .unzip();
        if let Some(values) = read_located(py, vault, table, &values)? {
            let items = keys
                .iter()
                .zip(values)
                .map(|((key, kind), value)| {
                    let value = value.expect("every located item has a value");
                    Ok((key_to_py(py, key, *kind)?, value))
                })
                .collect::<PyResult<Vec<_>>>()?;
            let last = located.last_key.map(|k| PyBytes::new(py, &k).unbind());
            return Ok((items, last));
        }
        // A value was replaced between locating and reading: the page again, from one snapshot.
        let page = run(py, vault, |s| table.scan_items(s, &range, limit, max_bytes))?;
        let items = page
            .items
            .into_iter()
            .map(|(k, kind, v)| Ok((key_to_py(py, &k, kind)?, value_to_py(py, &v)?)))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((items, page.last_key.map(|k| PyBytes::new(py, &k).unbind())))
    }

    /// The key's version, or None when absent.
    fn version(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> Result<Option<i64>, BindingError> {
        let (key, _) = key_from_py(key)?;
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.version(s, &key))
    }

    /// Sets or clears the key's expiry time; returns whether the key exists.
    #[pyo3(signature = (key, expires_at_ms=None))]
    fn touch(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        expires_at_ms: Option<i64>,
    ) -> Result<bool, BindingError> {
        let (key, _) = key_from_py(key)?;
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.touch(s, &key, expires_at_ms))
    }

    /// Deletes expired keys; returns how many.
    fn prune(&self, py: Python<'_>) -> Result<u64, BindingError> {
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.prune(s))
    }

    /// A reader for the key's value, or None when absent.
    fn open_reader(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
    ) -> Result<Option<PyBlobReader>, BindingError> {
        let (key, _) = key_from_py(key)?;
        let table = self.kv.table();
        let reader = run(py, self.kv.vault(), |s| BlobReader::open(table, s, &key))?;
        Ok(reader.map(|reader| PyBlobReader {
            vault: self.kv.vault().clone(),
            reader: Mutex::new(Some(reader)),
        }))
    }

    /// A writer for a new value; nothing is visible until `finish(key)`.
    #[pyo3(signature = (chunk_size=None))]
    fn open_writer(&self, chunk_size: Option<i64>) -> Result<PyBlobWriter, BindingError> {
        let chunk_size = chunk_size
            .map(|c| non_negative::<usize>("chunk_size", c))
            .transpose()?;
        if let Some(c) = chunk_size {
            kvault::validate_chunk_size(c)?;
        }
        self.kv.store().check_writable()?;
        Ok(PyBlobWriter {
            vault: self.kv.vault().clone(),
            writer: Mutex::new(Some(BlobWriter::new(self.kv.table().clone(), chunk_size))),
        })
    }

    /// `(size, version, created_at_ms, updated_at_ms, chunked, expires_at_ms)` or None.
    fn info(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
    ) -> Result<Option<InfoTuple>, BindingError> {
        let (key, _) = key_from_py(key)?;
        let table = self.kv.table();
        let info = run(py, self.kv.vault(), |s| table.info(s, &key))?;
        Ok(info.map(|i| {
            (
                i.size,
                i.version,
                i.created_at_ms,
                i.updated_at_ms,
                i.chunked,
                i.expires_at_ms,
                i.encoding.0,
            )
        }))
    }

    /// Table and file figures: `(keys, logical_bytes, chunks, chunk_bytes, pending_uploads,
    /// inline_bytes, unique_chunks, content_bytes, expired_keys, page_size, page_count,
    /// free_pages)`.
    fn table_stats(&self, py: Python<'_>) -> Result<StatsTuple, BindingError> {
        let table = self.kv.table();
        let (t, (page_size, pages, free)) = run(py, self.kv.vault(), |s| -> kvault::Result<_> {
            Ok((table.stats(s)?, s.page_stats()?))
        })?;
        Ok((
            t.keys,
            t.logical_bytes,
            t.chunks,
            t.chunk_bytes,
            t.pending_uploads,
            t.inline_bytes,
            t.unique_chunks,
            t.content_bytes,
            t.expired_keys,
            page_size,
            pages,
            free,
        ))
    }

    /// Deletes chunks of uploads whose process died; returns how many uploads were reclaimed.
    fn reclaim_orphans(&self, py: Python<'_>) -> Result<u64, BindingError> {
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.reclaim_orphans(s))
    }

    /// The table's chunk size.
    #[getter]
    fn chunk_size(&self) -> usize {
        self.kv.table().chunk_size()
    }

    /// The stored cache policy and its counters: `(max_bytes, eviction, default_ttl_ms,
    /// dedup, stored_bytes, evictions, hits, misses)`; hits and misses include reads recorded
    /// in memory and not yet written.
    fn cache_policy(&self, py: Python<'_>) -> Result<PolicyTuple, BindingError> {
        let table = self.kv.table();
        let (policy, counters) = run(py, self.kv.vault(), |s| table.cache_policy(s))?;
        let (hits, misses) = table.unwritten_counts();
        Ok((
            policy.max_bytes,
            policy.eviction.name(),
            policy.default_ttl_ms,
            policy.dedup.name(),
            counters.stored_bytes,
            counters.evictions,
            counters.hits + hits,
            counters.misses + misses,
            policy.history.code(),
        ))
    }

    /// Changes the stored cache policy; a `set_*` flag says whether its field changes (so
    /// None can mean "remove"). Evicts at once when the table is over a new limit.
    #[pyo3(signature = (*, set_max_bytes=false, max_bytes=None, eviction=None,
                        set_default_ttl=false, default_ttl_ms=None, dedup=None, history=None))]
    #[allow(clippy::too_many_arguments)]
    fn set_cache_policy(
        &self,
        py: Python<'_>,
        set_max_bytes: bool,
        max_bytes: Option<i64>,
        eviction: Option<&str>,
        set_default_ttl: bool,
        default_ttl_ms: Option<i64>,
        dedup: Option<&str>,
        history: Option<i64>,
    ) -> Result<(), BindingError> {
        let history = history
            .map(|code| {
                if code < -1 {
                    return Err(BindingError::Vault(kvault::Error::InvalidArgument(
                        format!("history must be 'all', 0 or a positive count, not {code}"),
                    )));
                }
                History::from_code(code).map_err(|_| {
                    BindingError::Vault(kvault::Error::InvalidArgument(format!(
                        "history count {code} is too large"
                    )))
                })
            })
            .transpose()?;
        let max_bytes = max_bytes
            .map(|m| non_negative::<u64>("max_bytes", m))
            .transpose()?;
        let change = PolicyChange {
            max_bytes: set_max_bytes.then_some(max_bytes),
            eviction: eviction.map(Eviction::parse).transpose()?,
            default_ttl_ms: set_default_ttl.then_some(default_ttl_ms),
            dedup: dedup.map(Dedup::parse).transpose()?,
            history,
        };
        let kv = &self.kv;
        py.detach(|| kv.set_cache_policy(change))?;
        Ok(())
    }

    /// Deletes keys that expired, were written more than `max_age_ms` ago or not used for
    /// `max_idle_ms`; returns how many.
    #[pyo3(signature = (max_age_ms=None, max_idle_ms=None))]
    fn prune_by(
        &self,
        py: Python<'_>,
        max_age_ms: Option<i64>,
        max_idle_ms: Option<i64>,
    ) -> Result<u64, BindingError> {
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| {
            table.prune_by(s, max_age_ms, max_idle_ms)
        })
    }

    /// Prunes expired keys every `interval_ms` on the vault's maintenance thread (None: stop).
    #[pyo3(signature = (interval_ms=None))]
    fn set_auto_prune(&self, py: Python<'_>, interval_ms: Option<i64>) -> Result<(), BindingError> {
        let interval = interval_ms
            .map(|ms| non_negative::<u64>("auto_prune", ms).map(Duration::from_millis))
            .transpose()?;
        if interval.is_some_and(|i| i.is_zero()) {
            return Err(BindingError::Vault(kvault::Error::InvalidArgument(
                "auto_prune must be a positive number of seconds".into(),
            )));
        }
        let kv = &self.kv;
        py.detach(|| kv.set_auto_prune(interval));
        Ok(())
    }

    /// Number of distinct stored values among live keys.
    fn count_unique_values(&self, py: Python<'_>) -> Result<u64, BindingError> {
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.count_unique_values(s))
    }

    /// Drops stored contents nothing refers to; returns how many.
    fn sweep(&self, py: Python<'_>) -> Result<u64, BindingError> {
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.sweep(s))
    }

    /// The key's history, newest first (see `HistoryTuple`); `limit` counts values.
    #[pyo3(signature = (key, limit=None))]
    fn history(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        limit: Option<usize>,
    ) -> Result<Vec<HistoryTuple>, BindingError> {
        let (key, _) = key_from_py(key)?;
        let table = self.kv.table();
        let entries = run(py, self.kv.vault(), |s| table.history(s, &key, limit))?;
        let end_name = |end: VersionEnd| match end {
            VersionEnd::Expired => "expired",
            _ => "deleted",
        };
        entries
            .into_iter()
            .map(|entry| {
                Ok(match entry {
                    HistoryEntry::Value {
                        version,
                        written_at_ms,
                        value,
                        ..
                    } => (
                        "value",
                        version,
                        written_at_ms,
                        Some(value_to_py(py, &value)?),
                    ),
                    HistoryEntry::Tombstone {
                        version,
                        at_ms,
                        end,
                    } => (end_name(end), version, at_ms, None),
                })
            })
            .collect()
    }

    /// The value of the key at `version`, or None (as `get` returns values).
    fn get_version(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        version: i64,
    ) -> Result<Option<Py<PyAny>>, BindingError> {
        self.read_one(py, key, |table, s, key| table.get_version(s, key, version))
    }

    /// The value the key had at `at_ms`, or None.
    fn get_as_of(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        at_ms: i64,
    ) -> Result<Option<Py<PyAny>>, BindingError> {
        self.read_one(py, key, |table, s, key| table.get_as_of(s, key, at_ms))
    }

    /// One page of the keys that existed at `at_ms`, after the raw key `after`:
    /// `(keys, last_raw_key)`.
    #[pyo3(signature = (at_ms, after, limit))]
    fn keys_as_of(
        &self,
        py: Python<'_>,
        at_ms: i64,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<KeyPage, BindingError> {
        let table = self.kv.table();
        let rows = run(py, self.kv.vault(), |s| {
            table.keys_as_of(s, at_ms, after.as_deref(), limit.max(1))
        })?;
        Ok(key_page(py, &rows)?)
    }

    /// Drops kept versions beyond `keep` per key and those that ended more than
    /// `older_than_ms` ago; returns how many.
    #[pyo3(signature = (keep=None, older_than_ms=None))]
    fn prune_history(
        &self,
        py: Python<'_>,
        keep: Option<i64>,
        older_than_ms: Option<i64>,
    ) -> Result<u64, BindingError> {
        let keep = keep.map(|k| non_negative::<u32>("keep", k)).transpose()?;
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| {
            table.prune_history(s, keep, older_than_ms)
        })
    }

    /// `(kept versions, their bytes)`.
    fn history_stats(&self, py: Python<'_>) -> Result<(u64, u64), BindingError> {
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.history_stats(s))
    }
}

impl PyKVault {
    /// The Python handle of a native table handle (a branch's).
    pub(crate) fn from_kv(kv: Kv) -> Self {
        Self { kv }
    }

    /// The native table handle.
    pub(crate) fn kv(&self) -> &Kv {
        &self.kv
    }

    /// One value read by `read` (a version, a past value) with the GIL released, as `get`
    /// returns values (None when absent).
    fn read_one(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        read: impl FnOnce(&kvault::KvTable, &mut Store, &[u8]) -> kvault::Result<Option<StoredValue>>
            + Send,
    ) -> Result<Option<Py<PyAny>>, BindingError> {
        let (key, _) = key_from_py(key)?;
        let table = self.kv.table();
        let found = run(py, self.kv.vault(), |s| read(table, s, &key))?;
        Ok(found.map(|v| value_to_py(py, &v)).transpose()?)
    }
}

fn put_options(
    expires_at_ms: Option<i64>,
    if_version: Option<i64>,
    if_absent: bool,
) -> Result<PutOptions, BindingError> {
    let condition = match (if_version, if_absent) {
        (Some(_), true) => {
            return Err(BindingError::Py(InvalidArgument::new_err(
                "give at most one of if_version and if_absent",
            )))
        }
        (Some(v), false) => Condition::IfVersion(v),
        (None, true) => Condition::IfAbsent,
        (None, false) => Condition::Always,
    };
    Ok(PutOptions {
        expires_at_ms,
        condition,
        encoding: Encoding::RAW,
    })
}

/// A stored value as `get` returns it: raw bytes as `bytes`, anything else as `(encoding,
/// bytes)` for the Python layer to decode.
fn stored_to_py(py: Python<'_>, bytes: &[u8], encoding: Encoding) -> PyResult<Py<PyAny>> {
    encoded_to_py(py, PyBytes::new(py, bytes), encoding)
}

/// Raw bytes as they are; any other encoding as `(code, bytes)` for the Python codec.
fn encoded_to_py(
    py: Python<'_>,
    data: Bound<'_, PyBytes>,
    encoding: Encoding,
) -> PyResult<Py<PyAny>> {
    if encoding == Encoding::RAW {
        return Ok(data.into_any().unbind());
    }
    Ok((encoding.0, data).into_pyobject(py)?.into_any().unbind())
}

/// Chunked values up to this size are read under the GIL when the store is free: one copy,
/// straight into the bytes object, and no second look-up (a 100 KB get spent a third of its
/// time re-locating the key and copying through an intermediate buffer).
const QUICK_READ_MAX: u64 = 1 << 20;

/// Reads a located chunked value straight into a new bytes object; None sends the caller down
/// the path that locates it again with the GIL released (the store was busy, or the value was
/// replaced since it was located: its chunks are immutable and never reused, so a replaced
/// value shows as missing chunks, never as a mix).
///
/// Up to [`QUICK_READ_MAX`] the read runs under the GIL if the store can be had without
/// waiting. A larger value is checked against its last chunk before its size is allocated,
/// then read whole with the GIL released: one copy out of the file, where reading into a `Vec`
/// first made two (and held the value twice).
fn read_chunked<'py>(
    py: Python<'py>,
    vault: &kvault::Vault,
    table: &kvault::KvTable,
    blob: &kvault::BlobRef,
) -> Result<Option<Bound<'py, PyBytes>>, BindingError> {
    let Ok(len) = usize::try_from(blob.size) else {
        return Ok(None);
    };
    if blob.size <= QUICK_READ_MAX {
        let attempt = vault.try_with(|store| {
            store.read_latest_once(|conn| -> kvault::Result<Option<Bound<'py, PyBytes>>> {
                table.verify_extent(conn, blob)?;
                match filled_bytes(py, len, |buf| {
                    table.read_blob_range_uninit(conn, blob, 0, buf)
                }) {
                    Ok(read) => read.map(Some),
                    // The bytes object itself could not be made: let the slow path report it.
                    Err(_) => Ok(None),
                }
            })
        });
        return match attempt {
            None => Ok(None),
            Some(read) => Ok(unless_changed(read)?.flatten()),
        };
    }
    let checked =
        py.detach(|| vault.with(|store| store.read(|conn| table.verify_extent(conn, blob))));
    if unless_changed(checked)?.is_none() {
        return Ok(None);
    }
    let read = filled_bytes(py, len, |buf| {
        py.detach(|| vault.with(|store| table.read_value_into(store, blob, buf)))
    })?;
    unless_changed(read)
}

/// Located values as Python objects (`get`'s form; None where absent), chunked ones read
/// straight into their bytes objects from one snapshot with the GIL released: one copy, where
/// reading into `Vec`s first made two and zeroed each (a `get_many` of 100 KB values took
/// 3.5x as long as the same `get`s, a scan of their items 2.3-2.5x). None if a value was
/// replaced since it was located. For `get_many` and item scans.
fn read_located(
    py: Python<'_>,
    vault: &kvault::Vault,
    table: &kvault::KvTable,
    located: &[Option<kvault::Located>],
) -> Result<Option<Vec<Option<Py<PyAny>>>>, BindingError> {
    let mut unfilled = Vec::new();
    for found in located {
        if let Some((ValueLocation::Chunked(blob), _)) = found {
            let Ok(len) = usize::try_from(blob.size) else {
                return Ok(None);
            };
            unfilled.push((blob, UnfilledBytes::new(py, len)?));
        }
    }
    if !unfilled.is_empty() {
        let mut reads: Vec<_> = unfilled
            .iter_mut()
            .map(|(blob, bytes)| (*blob, bytes.buffer()))
            .collect();
        let read = py.detach(|| vault.with(|store| table.read_values_into(store, &mut reads)));
        if unless_changed(read)?.is_none() {
            return Ok(None);
        }
    }
    // SAFETY: `read_values_into` returned Ok: it filled every byte of every buffer.
    let mut filled = unfilled
        .into_iter()
        .map(|(_, bytes)| unsafe { bytes.assume_filled() });
    let values = located
        .iter()
        .map(|found| match found {
            None => Ok(None),
            Some((ValueLocation::Inline(bytes), encoding)) => {
                stored_to_py(py, bytes, *encoding).map(Some)
            }
            Some((ValueLocation::Chunked(_), encoding)) => match filled.next() {
                Some(data) => encoded_to_py(py, data, *encoding).map(Some),
                None => unreachable!("one bytes object per chunked value"),
            },
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Some(values))
}

/// A read's result, with a value found replaced since it was located (`ValueChanged`) as
/// None: the caller then starts again on the path that locates it.
fn unless_changed<T>(read: kvault::Result<T>) -> Result<Option<T>, BindingError> {
    match read {
        Ok(found) => Ok(Some(found)),
        Err(kvault::Error::ValueChanged) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// A page of keys for Python: the keys, and the raw bytes of the last (the continuation
/// point of the next page).
fn key_page(py: Python<'_>, rows: &[(Vec<u8>, KeyKind)]) -> PyResult<KeyPage> {
    let last = rows.last().map(|(k, _)| PyBytes::new(py, k).unbind());
    let keys = rows
        .iter()
        .map(|(k, kind)| key_to_py(py, k, *kind))
        .collect::<PyResult<Vec<_>>>()?;
    Ok((keys, last))
}

fn value_to_py(py: Python<'_>, value: &StoredValue) -> PyResult<Py<PyAny>> {
    stored_to_py(py, &value.bytes, value.encoding)
}

fn key_range(
    prefix: Option<&Bound<'_, PyAny>>,
    start: Option<&Bound<'_, PyAny>>,
    end: Option<&Bound<'_, PyAny>>,
    after: Option<Vec<u8>>,
    reverse: bool,
) -> Result<KeyRange, BindingError> {
    Ok(KeyRange {
        prefix: prefix.map(raw_key).transpose()?,
        start: start.map(raw_key).transpose()?,
        end: end.map(raw_key).transpose()?,
        after,
        reverse,
    })
}

/// Native reader behind `KVault.open(key)`.
#[pyclass(module = "ambervault._ambervault", name = "BlobReaderCore", frozen)]
pub struct PyBlobReader {
    vault: kvault::Vault,
    reader: Mutex<Option<BlobReader>>,
}

impl PyBlobReader {
    /// Runs `op` on the reader and the store, both locked (the caller has released the GIL).
    fn locked<T>(
        &self,
        op: impl FnOnce(&mut BlobReader, &mut Store) -> kvault::Result<T>,
    ) -> kvault::Result<T> {
        let mut guard = self
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reader = guard.as_mut().ok_or(kvault::Error::Closed("reader"))?;
        op(reader, &mut self.vault.store())
    }

    fn with<T: Send>(
        &self,
        py: Python<'_>,
        op: impl FnOnce(&mut BlobReader, &mut Store) -> kvault::Result<T> + Send,
    ) -> Result<T, BindingError> {
        Ok(py.detach(|| self.locked(op))?)
    }
}

#[pymethods]
impl PyBlobReader {
    /// Reads up to `size` bytes (all remaining when negative).
    #[pyo3(signature = (size=-1))]
    fn read(&self, py: Python<'_>, size: i64) -> Result<Py<PyBytes>, BindingError> {
        // Sized under the GIL: the reader's lock is only ever held for one read, never while
        // waiting for the GIL, so this cannot deadlock, and it saves releasing the GIL twice.
        let want = {
            let guard = self
                .reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let reader = guard.as_ref().ok_or(kvault::Error::Closed("reader"))?;
            let remaining = reader.size().saturating_sub(reader.position());
            let want = if size < 0 {
                remaining
            } else {
                remaining.min(size as u64)
            };
            usize::try_from(want).unwrap_or(usize::MAX)
        };
        // Read straight into the bytes object (nothing in Python can see it yet), with the GIL
        // released: one copy out of the file's pages, no intermediate buffer.
        // A shorter read (another thread moved this reader between the two steps) comes back
        // as what was read.
        let filled = filled_bytes(py, want, |buf| {
            py.detach(|| self.locked(|reader, store| reader.read_uninit(store, buf)))
        })??;
        Ok(filled.unbind())
    }

    /// Writes the rest of the value to the open file descriptor `fd` (not closed), a piece of
    /// up to `piece` bytes at a time, and returns how many bytes were written. The GIL is
    /// released throughout except for a check for signals between pieces; the vault is locked
    /// only while a piece is read, not while it is written.
    fn copy_to_fd(&self, py: Python<'_>, fd: i32, piece: usize) -> Result<u64, BindingError> {
        if fd < 0 || piece == 0 {
            return Err(kvault::Error::InvalidArgument(format!(
                "copy_to_fd needs a descriptor and a positive piece size, not {fd} and {piece}"
            ))
            .into());
        }
        // SAFETY: the caller's descriptor stays open for the call; ManuallyDrop never closes it.
        let mut out = std::mem::ManuallyDrop::new(unsafe {
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd)
        });
        let mut buf = vec![0u8; piece];
        let mut total = 0u64;
        loop {
            let written = py.detach(|| -> kvault::Result<usize> {
                let n = self.locked(|reader, store| reader.read(store, &mut buf))?;
                std::io::Write::write_all(&mut *out, &buf[..n])?;
                Ok(n)
            })?;
            if written == 0 {
                return Ok(total);
            }
            total += written as u64;
            py.check_signals()?;
        }
    }

    /// Moves to absolute position `pos`.
    fn seek(&self, py: Python<'_>, pos: u64) -> Result<(), BindingError> {
        self.with(py, |reader, _| {
            reader.seek(pos);
            Ok(())
        })
    }

    /// Current position.
    fn tell(&self, py: Python<'_>) -> Result<u64, BindingError> {
        self.with(py, |reader, _| Ok(reader.position()))
    }

    /// Total size of the value.
    fn size(&self, py: Python<'_>) -> Result<u64, BindingError> {
        self.with(py, |reader, _| Ok(reader.size()))
    }

    /// Releases the reader.
    fn close(&self) {
        self.reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

/// Native writer behind `KVault.open(key, "wb")` and `put_file`.
#[pyclass(module = "ambervault._ambervault", name = "BlobWriterCore", frozen)]
pub struct PyBlobWriter {
    vault: kvault::Vault,
    writer: Mutex<Option<BlobWriter>>,
}

impl PyBlobWriter {
    fn guard(&self) -> MutexGuard<'_, Option<BlobWriter>> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[pymethods]
impl PyBlobWriter {
    /// Appends bytes-like `data`; returns its length.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> Result<usize, BindingError> {
        let data = value_from_py(data)?;
        let n = data.len();
        py.detach(|| {
            let mut guard = self.guard();
            let writer = guard.as_mut().ok_or(kvault::Error::Closed("writer"))?;
            writer.write(&mut self.vault.store(), &data)
        })?;
        Ok(n)
    }

    /// Bytes accepted so far.
    #[getter]
    fn bytes_written(&self) -> u64 {
        self.guard().as_ref().map_or(0, BlobWriter::bytes_written)
    }

    /// Makes the value visible under `key` (replacing any old value); returns its length.
    #[pyo3(signature = (key, expires_at_ms=None, if_version=None, if_absent=false))]
    fn finish(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        expires_at_ms: Option<i64>,
        if_version: Option<i64>,
        if_absent: bool,
    ) -> Result<u64, BindingError> {
        let options = put_options(expires_at_ms, if_version, if_absent)?;
        let (key, kind) = key_from_py(key)?;
        let writer = self.guard().take().ok_or(kvault::Error::Closed("writer"))?;
        Ok(py.detach(|| writer.finish_with(&mut self.vault.store(), &key, kind, options))?)
    }

    /// Discards everything written (idempotent).
    fn abort(&self, py: Python<'_>) -> Result<(), BindingError> {
        let Some(mut writer) = self.guard().take() else {
            return Ok(());
        };
        Ok(py.detach(|| writer.abort(&mut self.vault.store()))?)
    }

    /// Whether the writer was finished or aborted.
    #[getter]
    fn closed(&self) -> bool {
        self.guard().is_none()
    }
}

/// Adds this file's classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyKVault>()?;
    m.add_class::<PyBlobReader>()?;
    m.add_class::<PyBlobWriter>()?;
    Ok(())
}
